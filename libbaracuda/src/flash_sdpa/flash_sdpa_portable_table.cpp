// The portable instances of this build (generated table) and the choice among them.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/status.h"
#include "flash_sdpa/flash_sdpa_instance_search.h"
#include "flash_sdpa/flash_sdpa_portable.h"

namespace baracuda::flash_sdpa {
namespace {

// The portable family runs on Ampere (compute capability 8.0) and newer.
constexpr int kPortableMinArch = 80;

// The compiled instances, ascending by bucket within each element.
#include "flash_sdpa_portable_table.inc"

}  // namespace

baracuda_status select_portable(const char* op, baracuda_element element, int head_dim,
                                const PortableInstance** instance, DeviceInfo* device) {
  const PortableInstance* found = nullptr;
  baracuda_status status = find_instance(op, "portable", "BARACUDA_HEAD_DIM_BUCKETS",
                                         kPortableInstances, element, head_dim, &found);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = current_device(op, device);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  if (device->arch < kPortableMinArch) {
    return fail(BARACUDA_STATUS_UNSUPPORTED, op,
                "the portable backend needs a newer GPU (got compute capability %d.%d, expected "
                ">= %d.%d)",
                device->arch / 10, device->arch % 10, kPortableMinArch / 10, kPortableMinArch % 10);
  }
  status = found->prepare(*device, op);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  *instance = found;
  return BARACUDA_STATUS_SUCCESS;
}

}  // namespace baracuda::flash_sdpa
