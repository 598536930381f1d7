// The flash-attention kernel a plan runs, chosen among the kernel families of this build.
// The flash and ring plans both choose here, so a ring step runs the flash plan's kernel.
#pragma once

#include "baracuda/baracuda.h"
#include "common/device.h"
#include "flash_sdpa/flash_sdpa_hopper.h"
#include "flash_sdpa/flash_sdpa_params.h"
#include "flash_sdpa/flash_sdpa_portable.h"

namespace baracuda::flash_sdpa {

struct FlashKernels {
  baracuda_backend backend = BARACUDA_BACKEND_PORTABLE;
  const HopperInstance* hopper = nullptr;      // set when backend is HOPPER
  const PortableInstance* portable = nullptr;  // always set: it also runs what TMA cannot describe
  int head_dim_bucket = 0;                     // of the instance of `backend`

  // Runs the chosen instance, or the portable one for operands TMA cannot describe
  // (hopper_can_describe).
  baracuda_status launch(const Params& params, baracuda_stream stream, const char* op) const;
};

// The rule: AUTO picks HOPPER for f16 / bf16 on a compute capability 9.0 device where this
// build has a hopper instance for the head dim, and PORTABLE otherwise. A preference of
// PORTABLE picks it; one of HOPPER picks it or fails with the reason (UNSUPPORTED). The chosen
// instances are prepared for the current device, described in *device.
baracuda_status select_flash_kernels(const char* op, baracuda_element element, int head_dim,
                                     baracuda_backend preference, FlashKernels* kernels,
                                     DeviceInfo* device);

}  // namespace baracuda::flash_sdpa
