// The hopper instances of this build (generated table) and the choice among them.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <array>
#include <string>

#include "common/status.h"
#include "flash_sdpa/flash_sdpa_hopper.h"

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
  std::string buckets;
  for (const HopperInstance& candidate : kHopperInstances) {
    if (candidate.element != element) continue;
    if (!buckets.empty()) buckets += ", ";
    buckets += std::to_string(candidate.head_dim_bucket);
    if (candidate.head_dim_bucket >= head_dim) {
      found = &candidate;
      break;
    }
  }
  if (found == nullptr) {
    return fail(BARACUDA_STATUS_UNSUPPORTED, op,
                "no hopper %s instance covers head dim %d in this build (got buckets [%s], "
                "expected one >= %d; see BARACUDA_CUDA_ARCHITECTURES (needs 90a) and "
                "BARACUDA_HEAD_DIM_BUCKETS)",
                baracuda_element_string(element), head_dim, buckets.c_str(), head_dim);
  }
  const baracuda_status status = found->prepare(device, op);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  *instance = found;
  return BARACUDA_STATUS_SUCCESS;
}

}  // namespace baracuda::flash_sdpa
