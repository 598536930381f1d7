// The current CUDA device, as a plan needs it at select time.
#pragma once

#include "baracuda/baracuda.h"

namespace baracuda {

struct DeviceInfo {
  int ordinal = -1;
  int arch = 0;                    // compute capability x10, e.g. 90
  int max_shared_memory_optin = 0; // bytes of dynamic shared memory a block may opt into
};

// Fills info for the current device, or fails with BARACUDA_STATUS_CUDA_ERROR naming op
// (no device, no driver).
baracuda_status current_device(const char* op, DeviceInfo* info);

// The current device's ordinal, or the CUDA error as a status.
baracuda_status current_device_ordinal(const char* op, int* ordinal);

// INVALID_PROBLEM unless the current device is `device` (the one a plan was selected for).
baracuda_status check_current_device(const char* op, const DeviceInfo& device);

}  // namespace baracuda
