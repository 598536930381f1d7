// The current CUDA device, as a plan needs it at select time.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "baracuda/baracuda.h"

namespace baracuda {

struct DeviceInfo {
  int ordinal = -1;
  int arch = 0;                     // compute capability x10, e.g. 90
  int max_shared_memory_optin = 0;  // bytes of dynamic shared memory a block may opt into
};

// Fills info for the current device, or fails with BARACUDA_STATUS_CUDA_ERROR naming op
// (no device, no driver).
baracuda_status current_device(const char* op, DeviceInfo* info);

// The current device's ordinal, or the CUDA error as a status.
baracuda_status current_device_ordinal(const char* op, int* ordinal);

// INVALID_PROBLEM unless the current device is `device` (the one a plan was selected for).
baracuda_status check_current_device(const char* op, const DeviceInfo& device);

// The devices (a bit per ordinal, below 64) one kernel instance has been prepared for.
using PreparedDevices = std::atomic<uint64_t>;

// Once per device and kernel instance: checks that `device` offers `shared_bytes` of dynamic
// shared memory, that `kernel` has code for it, and opts the kernel into those bytes.
// Messages name "the <family> kernel for head dims up to <head_dim_bucket>" and, for CUDA
// errors, `kernel_name`.
baracuda_status prepare_kernel(PreparedDevices& prepared, const DeviceInfo& device,
                               const void* kernel, size_t shared_bytes, const char* family,
                               const char* kernel_name, int head_dim_bucket, const char* op);

}  // namespace baracuda
