// The choice of flash-attention kernel (see flash_sdpa_kernels.h) and the launch of it.
#include "flash_sdpa/flash_sdpa_kernels.h"

#include "common/status.h"

namespace baracuda::flash_sdpa {

baracuda_status FlashKernels::launch(const Params& params, baracuda_stream stream,
                                     const char* op) const {
  if (hopper != nullptr && hopper_can_describe(params)) return hopper->launch(params, stream, op);
  return portable->launch(params, stream, op);
}

baracuda_status select_flash_kernels(const char* op, baracuda_element element, int head_dim,
                                     baracuda_backend preference, FlashKernels* kernels,
                                     DeviceInfo* device) {
  FlashKernels chosen;
  baracuda_status status = select_portable(op, element, head_dim, &chosen.portable, device);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  chosen.head_dim_bucket = chosen.portable->head_dim_bucket;
  if (preference != BARACUDA_BACKEND_PORTABLE) {
    status = select_hopper(op, element, head_dim, *device, &chosen.hopper);
    if (status == BARACUDA_STATUS_SUCCESS) {
      chosen.backend = BARACUDA_BACKEND_HOPPER;
      chosen.head_dim_bucket = chosen.hopper->head_dim_bucket;
    } else if (preference == BARACUDA_BACKEND_HOPPER) {
      return status;
    }
  }
  *kernels = chosen;
  return BARACUDA_STATUS_SUCCESS;
}

}  // namespace baracuda::flash_sdpa
