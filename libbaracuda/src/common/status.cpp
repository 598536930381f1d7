#include "common/status.h"

#include <cuda_runtime_api.h>

#include <cstdarg>
#include <cstdio>
#include <string>

namespace baracuda {
namespace {

// A message that does not fit here is kept whole in `message`; this buffer holds it (cut to
// its size) only when the host cannot allocate that string.
constexpr size_t kFallbackCapacity = 1024;

struct ThreadError {
  std::string message;
  char fallback[kFallbackCapacity] = "";
  bool in_fallback = false;
  int64_t needed = 0;
  int64_t got = 0;
};

ThreadError& thread_error() noexcept {
  thread_local ThreadError error;
  return error;
}

// Formats "<op>: <reason>" into this thread's message, whatever its length.
void record(const char* op, const char* format, va_list args) noexcept {
  ThreadError& error = thread_error();
  va_list measure;
  va_copy(measure, args);
  const int prefix = std::snprintf(nullptr, 0, "%s: ", op);
  const int reason = std::vsnprintf(nullptr, 0, format, measure);
  va_end(measure);
  error.in_fallback = false;
  if (prefix >= 0 && reason >= 0) {
    try {
      error.message.resize(static_cast<size_t>(prefix) + static_cast<size_t>(reason));
      std::snprintf(error.message.data(), static_cast<size_t>(prefix) + 1, "%s: ", op);
      std::vsnprintf(error.message.data() + prefix, static_cast<size_t>(reason) + 1, format, args);
      return;
    } catch (...) {
      error.message.clear();
    }
  }
  error.in_fallback = true;
  const int written = std::snprintf(error.fallback, kFallbackCapacity, "%s: ", op);
  if (written < 0 || static_cast<size_t>(written) >= kFallbackCapacity) return;
  std::vsnprintf(error.fallback + written, kFallbackCapacity - written, format, args);
}

}  // namespace

baracuda_status fail(baracuda_status status, const char* op, const char* format, ...) noexcept {
  ThreadError& error = thread_error();
  error.needed = 0;
  error.got = 0;
  va_list args;
  va_start(args, format);
  record(op, format, args);
  va_end(args);
  return status;
}

baracuda_status fail_with_sizes(baracuda_status status, int64_t needed, int64_t got, const char* op,
                                const char* format, ...) noexcept {
  va_list args;
  va_start(args, format);
  record(op, format, args);
  va_end(args);
  ThreadError& error = thread_error();
  error.needed = needed;
  error.got = got;
  return status;
}

baracuda_status succeed() noexcept {
  ThreadError& error = thread_error();
  error.message.clear();
  error.fallback[0] = '\0';
  error.in_fallback = false;
  error.needed = 0;
  error.got = 0;
  return BARACUDA_STATUS_SUCCESS;
}

baracuda_status check_cuda(int cuda_error, const char* op, const char* what) {
  auto error = static_cast<cudaError_t>(cuda_error);
  if (error == cudaSuccess) return BARACUDA_STATUS_SUCCESS;
  return fail(BARACUDA_STATUS_CUDA_ERROR, op, "%s failed (got %s: %s, expected cudaSuccess)", what,
              cudaGetErrorName(error), cudaGetErrorString(error));
}

}  // namespace baracuda

extern "C" {

const char* baracuda_status_string(baracuda_status status) {
  switch (status) {
    case BARACUDA_STATUS_SUCCESS: return "success";
    case BARACUDA_STATUS_UNSUPPORTED: return "unsupported";
    case BARACUDA_STATUS_INVALID_PROBLEM: return "invalid problem";
    case BARACUDA_STATUS_BUFFER_TOO_SMALL: return "buffer too small";
    case BARACUDA_STATUS_WORKSPACE_TOO_SMALL: return "workspace too small";
    case BARACUDA_STATUS_CUDA_ERROR: return "CUDA error";
    case BARACUDA_STATUS_NCCL_ERROR: return "NCCL error";
    case BARACUDA_STATUS_LIBRARY_NOT_LOADED: return "library not loaded";
    case BARACUDA_STATUS_INTERNAL: return "internal error";
  }
  return "unknown status";
}

const char* baracuda_last_error_message(void) {
  const baracuda::ThreadError& error = baracuda::thread_error();
  return error.in_fallback ? error.fallback : error.message.c_str();
}

void baracuda_last_error_sizes(int64_t* needed, int64_t* got) {
  const baracuda::ThreadError& error = baracuda::thread_error();
  if (needed) *needed = error.needed;
  if (got) *got = error.got;
}

const char* baracuda_version(void) {
  return BARACUDA_VERSION_STRING;
}

}  // extern "C"
