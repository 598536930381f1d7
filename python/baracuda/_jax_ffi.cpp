// The XLA FFI handler of flash attention forward for JAX (baracuda.jax): the call's buffers as
// baracuda tensors (dense, row-major, as XLA lays them out), a plan from a small cache, and a
// run on the stream XLA gives the call. Built only where the XLA FFI headers are found
// (jax.ffi.include_dir() at configure time); the library's checks give every refusal.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstring>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "baracuda/baracuda.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr const char* kOp = "baracuda.jax.flash_attention";
// Plans kept for the shapes seen last; a miss selects one (a few microseconds of host work).
constexpr size_t kPlanCacheSize = 64;
// The kernels' tensor alignment: XLA's buffers are aligned far beyond it.
constexpr size_t kWorkspaceAlignment = 256;
// The optional inputs after q, k and v, in this order, when their attribute says so.
constexpr int kRequiredInputs = 3;

std::optional<baracuda_element> element_of(ffi::DataType type) {
  switch (type) {
    case ffi::DataType::F16: return BARACUDA_ELEMENT_F16;
    case ffi::DataType::BF16: return BARACUDA_ELEMENT_BF16;
    case ffi::DataType::F32: return BARACUDA_ELEMENT_F32;
    case ffi::DataType::F64: return BARACUDA_ELEMENT_F64;
    default: return std::nullopt;
  }
}

// A dense row-major buffer as a baracuda tensor; rank 0 for a buffer beyond the C ABI's rank
// (the library refuses it by name).
std::optional<baracuda_tensor> tensor_of(void* data, ffi::DataType type,
                                         ffi::Span<const int64_t> dims) {
  const std::optional<baracuda_element> element = element_of(type);
  if (!element || dims.size() > BARACUDA_MAX_RANK) return std::nullopt;
  baracuda_tensor tensor;
  std::memset(&tensor, 0, sizeof tensor);
  tensor.data = data;
  tensor.element = *element;
  tensor.rank = static_cast<int32_t>(dims.size());
  int64_t stride = 1;
  for (int axis = tensor.rank - 1; axis >= 0; --axis) {
    tensor.shape[axis] = dims[axis];
    tensor.strides[axis] = stride;
    stride *= dims[axis];
  }
  tensor.buffer_elements = stride;
  return tensor;
}

ffi::ErrorCode error_code(baracuda_status status) {
  switch (status) {
    case BARACUDA_STATUS_UNSUPPORTED: return ffi::ErrorCode::kUnimplemented;
    case BARACUDA_STATUS_INVALID_PROBLEM:
    case BARACUDA_STATUS_BUFFER_TOO_SMALL:
    case BARACUDA_STATUS_WORKSPACE_TOO_SMALL: return ffi::ErrorCode::kInvalidArgument;
    default: return ffi::ErrorCode::kInternal;
  }
}

// The library's message of its last failure on this thread.
ffi::Error failure(baracuda_status status) {
  return ffi::Error(error_code(status), std::string(kOp) + ": " + baracuda_last_error_message());
}

// Selected plans by descriptor and device, most recently used first.
class PlanCache {
 public:
  ~PlanCache() {
    for (Entry& entry : entries_) baracuda_flash_sdpa_plan_destroy(entry.plan);
  }

  baracuda_status find(const baracuda_flash_sdpa_descriptor& desc, int device,
                       baracuda_flash_sdpa_plan* plan) {
    const std::lock_guard<std::mutex> lock(mutex_);
    for (auto entry = entries_.begin(); entry != entries_.end(); ++entry) {
      if (entry->device == device && std::memcmp(&entry->desc, &desc, sizeof desc) == 0) {
        entries_.splice(entries_.begin(), entries_, entry);
        *plan = entry->plan;
        return BARACUDA_STATUS_SUCCESS;
      }
    }
    const baracuda_status status = baracuda_flash_sdpa_plan_select(&desc, nullptr, plan);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
    entries_.push_front({desc, device, *plan});
    if (entries_.size() > kPlanCacheSize) {
      // Runs enqueued with the plan hold their own copy of its parameters.
      baracuda_flash_sdpa_plan_destroy(entries_.back().plan);
      entries_.pop_back();
    }
    return BARACUDA_STATUS_SUCCESS;
  }

 private:
  struct Entry {
    baracuda_flash_sdpa_descriptor desc;
    int device;
    baracuda_flash_sdpa_plan plan;
  };
  std::mutex mutex_;
  std::list<Entry> entries_;
};

PlanCache& plan_cache() {
  static PlanCache cache;
  return cache;
}

ffi::Error flash_attention(cudaStream_t stream, ffi::ScratchAllocator scratch,
                           ffi::RemainingArgs inputs, ffi::RemainingRets outputs, bool causal,
                           double scale, int64_t window_left, int64_t window_right, double softcap,
                           int64_t alignment, bool has_mask, bool has_alibi) {
  const int expected = kRequiredInputs + (has_mask ? 1 : 0) + (has_alibi ? 1 : 0);
  if (inputs.size() != static_cast<size_t>(expected) || outputs.size() != 2) {
    return ffi::Error::InvalidArgument(std::string(kOp) + ": the call has " +
                                       std::to_string(inputs.size()) + " inputs and " +
                                       std::to_string(outputs.size()) + " outputs (expected " +
                                       std::to_string(expected) + " and 2)");
  }
  const char* names[] = {"q", "k", "v", has_mask ? "mask" : "alibi_slopes", "alibi_slopes"};
  baracuda_tensor tensors[5] = {};
  for (size_t n = 0; n < inputs.size(); ++n) {
    const ffi::ErrorOr<ffi::AnyBuffer> buffer = inputs.get<ffi::AnyBuffer>(n);
    if (buffer.has_error()) return buffer.error();
    const std::optional<baracuda_tensor> tensor =
        tensor_of(buffer->untyped_data(), buffer->element_type(), buffer->dimensions());
    if (!tensor) {
      return ffi::Error::InvalidArgument(std::string(kOp) + ": " + names[n] +
                                         " has an element or rank baracuda does not take");
    }
    tensors[n] = *tensor;
  }
  baracuda_flash_sdpa_args args;
  std::memset(&args, 0, sizeof args);
  args.q = tensors[0];
  args.k = tensors[1];
  args.v = tensors[2];
  if (has_mask) args.mask = tensors[kRequiredInputs];
  if (has_alibi) args.alibi_slopes = tensors[kRequiredInputs + (has_mask ? 1 : 0)];
  const char* output_names[] = {"y", "lse"};
  baracuda_tensor* written[] = {&args.y, &args.lse};
  for (size_t n = 0; n < 2; ++n) {
    ffi::ErrorOr<ffi::Result<ffi::AnyBuffer>> buffer = outputs.get<ffi::AnyBuffer>(n);
    if (buffer.has_error()) return buffer.error();
    ffi::Result<ffi::AnyBuffer>& result = *buffer;
    const std::optional<baracuda_tensor> tensor =
        tensor_of(result->untyped_data(), result->element_type(), result->dimensions());
    if (!tensor) {
      return ffi::Error::InvalidArgument(std::string(kOp) + ": " + output_names[n] +
                                         " has an element or rank baracuda does not take");
    }
    *written[n] = *tensor;
  }
  if (args.q.rank != 4 || args.k.rank != 4 || args.v.rank != 4) {
    return ffi::Error::InvalidArgument(std::string(kOp) +
                                       ": q, k and v must be rank 4 ([B, H, S, D])");
  }

  baracuda_flash_sdpa_descriptor desc;
  baracuda_flash_sdpa_descriptor_init(
      &desc, static_cast<int32_t>(args.q.shape[0]), static_cast<int32_t>(args.q.shape[1]),
      static_cast<int32_t>(args.q.shape[2]), static_cast<int32_t>(args.k.shape[2]),
      static_cast<int32_t>(args.q.shape[3]), static_cast<int32_t>(args.v.shape[3]), args.q.element);
  desc.scale = scale;
  desc.is_causal = causal ? 1 : 0;
  desc.window_size_left = static_cast<int32_t>(window_left);
  desc.window_size_right = static_cast<int32_t>(window_right);
  desc.softcap = softcap;
  desc.alignment = static_cast<baracuda_alignment>(alignment);

  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    return ffi::Error::Internal(std::string(kOp) + ": cudaGetDevice failed");
  }
  baracuda_flash_sdpa_plan plan = nullptr;
  baracuda_status status = plan_cache().find(desc, device, &plan);
  if (status != BARACUDA_STATUS_SUCCESS) return failure(status);
  size_t workspace_bytes = 0;
  status = baracuda_flash_sdpa_workspace_size(plan, &workspace_bytes);
  if (status != BARACUDA_STATUS_SUCCESS) return failure(status);
  void* workspace = nullptr;
  if (workspace_bytes > 0) {
    const std::optional<void*> allocated = scratch.Allocate(workspace_bytes, kWorkspaceAlignment);
    if (!allocated) {
      return ffi::Error(ffi::ErrorCode::kResourceExhausted,
                        std::string(kOp) + ": no scratch memory for the workspace (" +
                            std::to_string(workspace_bytes) + " bytes)");
    }
    workspace = *allocated;
  }
  status = baracuda_flash_sdpa_run(plan, &args, workspace, workspace_bytes, stream);
  if (status != BARACUDA_STATUS_SUCCESS) return failure(status);
  return ffi::Error::Success();
}

}  // namespace

// Exported (the module hides everything else); baracuda.jax finds it with ctypes.
extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* baracuda_jax_flash_attention(
    XLA_FFI_CallFrame* call_frame);

XLA_FFI_DEFINE_HANDLER_SYMBOL(baracuda_jax_flash_attention, flash_attention,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                  .Ctx<ffi::ScratchAllocator>()
                                  .RemainingArgs()
                                  .RemainingRets()
                                  .Attr<bool>("causal")
                                  .Attr<double>("scale")
                                  .Attr<int64_t>("window_left")
                                  .Attr<int64_t>("window_right")
                                  .Attr<double>("softcap")
                                  .Attr<int64_t>("alignment")
                                  .Attr<bool>("has_mask")
                                  .Attr<bool>("has_alibi"));
