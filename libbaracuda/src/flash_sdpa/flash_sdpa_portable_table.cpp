// The portable instances of this build (generated table) and the choice among them.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>

#include "common/status.h"
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
  std::string buckets;
  for (const PortableInstance& candidate : kPortableInstances) {
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
                "no portable %s instance covers head dim %d in this build (got buckets [%s], "
                "expected one >= %d; see BARACUDA_HEAD_DIM_BUCKETS)",
                baracuda_element_string(element), head_dim, buckets.c_str(), head_dim);
  }
  baracuda_status status = current_device(op, device);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  if (device->arch < kPortableMinArch) {
    return fail(BARACUDA_STATUS_UNSUPPORTED, op,
                "the portable backend needs a newer GPU (got compute capability %d.%d, expected "
                ">= %d.%d)",
                device->arch / 10, device->arch % 10, kPortableMinArch / 10,
                kPortableMinArch % 10);
  }
  status = found->prepare(*device, op);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  *instance = found;
  return BARACUDA_STATUS_SUCCESS;
}

}  // namespace baracuda::flash_sdpa
