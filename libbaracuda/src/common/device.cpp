#include "common/device.h"

#include <cuda_runtime_api.h>

#include <string>

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
  status =
      check_cuda(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, info->ordinal),
                 op, "cudaDeviceGetAttribute(ComputeCapabilityMajor)");
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status =
      check_cuda(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, info->ordinal),
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
              "the current device is not the plan's (got device %d, expected device %d)", ordinal,
              device.ordinal);
}

baracuda_status prepare_kernel(PreparedDevices& prepared, const DeviceInfo& device,
                               const void* kernel, size_t shared_bytes, const char* family,
                               const char* kernel_name, int head_dim_bucket, const char* op) {
  constexpr int kTrackedDevices = 64;
  const uint64_t device_bit = device.ordinal < kTrackedDevices ? uint64_t{1} << device.ordinal : 0;
  if (device_bit != 0 && (prepared.load() & device_bit) != 0) return BARACUDA_STATUS_SUCCESS;

  if (shared_bytes > static_cast<size_t>(device.max_shared_memory_optin)) {
    return fail(BARACUDA_STATUS_UNSUPPORTED, op,
                "the %s kernel for head dims up to %d needs more shared memory than device %d "
                "offers (got %d bytes, expected at least %zu)",
                family, head_dim_bucket, device.ordinal, device.max_shared_memory_optin,
                shared_bytes);
  }
  cudaFuncAttributes attributes;
  const std::string get_call = std::string("cudaFuncGetAttributes(") + kernel_name + ")";
  baracuda_status status =
      check_cuda(cudaFuncGetAttributes(&attributes, kernel), op, get_call.c_str());
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  const std::string set_call =
      std::string("cudaFuncSetAttribute(") + kernel_name + ", MaxDynamicSharedMemorySize)";
  status = check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(shared_bytes)),
                      op, set_call.c_str());
  if (status == BARACUDA_STATUS_SUCCESS) prepared.fetch_or(device_bit);
  return status;
}

}  // namespace baracuda
