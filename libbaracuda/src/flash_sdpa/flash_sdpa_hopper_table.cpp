// The hopper instances of this build (generated table) and the choice among them.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <array>

#include "common/status.h"
#include "flash_sdpa/flash_sdpa_hopper.h"
#include "flash_sdpa/flash_sdpa_instance_search.h"

namespace baracuda::flash_sdpa {
namespace {

// The hopper family runs on compute capability 9.0 exactly: its sm_90a code (wgmma,
// setmaxnreg) runs on no other architecture.
constexpr int kHopperArch = 90;

// The compiled instances, ascending by bucket within each element.
#include "flash_sdpa_hopper_table.inc"

}  // namespace

baracuda_status select_hopper(const char* op, baracuda_element element, int head_dim,
                              const DeviceInfo& device, const HopperInstance** instance) {
  if (element != BARACUDA_ELEMENT_F16 && element != BARACUDA_ELEMENT_BF16) {
    return fail(BARACUDA_STATUS_UNSUPPORTED, op,
                "the hopper backend runs f16 and bf16 (got %s, expected f16 or bf16)",
                baracuda_element_string(element));
  }
  if (device.arch != kHopperArch) {
    return fail(BARACUDA_STATUS_UNSUPPORTED, op,
                "the hopper backend needs a compute capability %d.%d GPU (got %d.%d, expected "
                "%d.%d)",
                kHopperArch / 10, kHopperArch % 10, device.arch / 10, device.arch % 10,
                kHopperArch / 10, kHopperArch % 10);
  }
  const HopperInstance* found = nullptr;
  baracuda_status status = find_instance(
      op, "hopper", "BARACUDA_CUDA_ARCHITECTURES (needs 90a) and BARACUDA_HEAD_DIM_BUCKETS",
      kHopperInstances, element, head_dim, &found);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = found->prepare(device, op);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  *instance = found;
  return BARACUDA_STATUS_SUCCESS;
}

}  // namespace baracuda::flash_sdpa
