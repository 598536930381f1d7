#include "common/device.h"

#include <cuda_runtime_api.h>

#include "common/status.h"

namespace baracuda {

baracuda_status current_device_ordinal(const char* op, int* ordinal) {
  return check_cuda(cudaGetDevice(ordinal), op, "cudaGetDevice (is a CUDA device present?)");
}

baracuda_status current_device(const char* op, DeviceInfo* info) {
  baracuda_status status = current_device_ordinal(op, &info->ordinal);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  int major = 0;
  int minor = 0;
  status = check_cuda(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, info->ordinal),
                      op, "cudaDeviceGetAttribute(ComputeCapabilityMajor)");
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = check_cuda(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, info->ordinal),
                      op, "cudaDeviceGetAttribute(ComputeCapabilityMinor)");
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  info->arch = major * 10 + minor;
  return check_cuda(cudaDeviceGetAttribute(&info->max_shared_memory_optin,
                                           cudaDevAttrMaxSharedMemoryPerBlockOptin, info->ordinal),
                    op, "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin)");
}

baracuda_status check_current_device(const char* op, const DeviceInfo& device) {
  int ordinal = -1;
  const baracuda_status status = current_device_ordinal(op, &ordinal);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  if (ordinal == device.ordinal) return BARACUDA_STATUS_SUCCESS;
  return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
              "the current device is not the plan's (got device %d, expected device %d)",
              ordinal, device.ordinal);
}

}  // namespace baracuda
