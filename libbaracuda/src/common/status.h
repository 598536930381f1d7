// Status reporting: every failing path records "<op>: <what> (got X, expected Y)" in a
// thread-local message and returns its status. Nothing prints, exits or aborts.
#pragma once

#include <cstdint>
#include <exception>
#include <new>

#include "baracuda/baracuda.h"

namespace baracuda {

// Records the formatted reason for this thread and returns status.
baracuda_status fail(baracuda_status status, const char* op, const char* format, ...) noexcept
    __attribute__((format(printf, 3, 4)));

// As fail, and records the sizes reported by baracuda_last_error_sizes.
baracuda_status fail_with_sizes(baracuda_status status, int64_t needed, int64_t got, const char* op,
                                const char* format, ...) noexcept
    __attribute__((format(printf, 5, 6)));

// Clears this thread's message; returns BARACUDA_STATUS_SUCCESS.
baracuda_status succeed() noexcept;

// Maps a CUDA runtime error to BARACUDA_STATUS_CUDA_ERROR with its name and text.
// `what` names the call that failed. Returns success for cudaSuccess (given as int so that
// host files need no CUDA header).
baracuda_status check_cuda(int cuda_error, const char* op, const char* what);

// The C ABI's barrier against C++ exceptions: runs `body` (which returns a status) and turns
// anything it throws into BARACUDA_STATUS_INTERNAL with the reason. Every extern "C" function
// that can reach code which throws (std::string, std::vector, the NCCL loader) runs its body
// through this, so no exception crosses the ABI.
template <class Body>
baracuda_status guard(const char* op, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(BARACUDA_STATUS_INTERNAL, op,
                "host allocation failed (got std::bad_alloc, expected memory for the call)");
  } catch (const std::exception& error) {
    return fail(BARACUDA_STATUS_INTERNAL, op,
                "unexpected C++ exception (got \"%s\", expected none)", error.what());
  } catch (...) {
    return fail(BARACUDA_STATUS_INTERNAL, op,
                "unexpected C++ exception (got one of unknown type, expected none)");
  }
}

}  // namespace baracuda
