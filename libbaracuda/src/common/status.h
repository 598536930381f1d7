// Status reporting: every failing path records "<op>: <what> (got X, expected Y)" in a
// thread-local message and returns its status. Nothing prints, exits or aborts.
#pragma once

#include <cstdint>

#include "baracuda/baracuda.h"

namespace baracuda {

// Records the formatted reason for this thread and returns status.
baracuda_status fail(baracuda_status status, const char* op, const char* format, ...)
    __attribute__((format(printf, 3, 4)));

// As fail, and records the sizes reported by baracuda_last_error_sizes.
baracuda_status fail_with_sizes(baracuda_status status, int64_t needed, int64_t got,
                                const char* op, const char* format, ...)
    __attribute__((format(printf, 5, 6)));

// Clears this thread's message; returns BARACUDA_STATUS_SUCCESS.
baracuda_status succeed();

// Maps a CUDA runtime error to BARACUDA_STATUS_CUDA_ERROR with its name and text.
// `what` names the call that failed. Returns success for cudaSuccess (given as int so that
// host files need no CUDA header).
baracuda_status check_cuda(int cuda_error, const char* op, const char* what);

}  // namespace baracuda
