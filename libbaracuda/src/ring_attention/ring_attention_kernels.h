// The ring's own kernels around the step (which is the flash kernel with a running state):
// init of the accumulators, finalize into y and lse, and staging of K / V into the scratch.
#pragma once

#include <cstdint>

#include "baracuda/baracuda.h"

namespace baracuda::ring_attention {

// The accumulator scratch, in the compute type (f32, or f64 for f64), contiguous:
// o [B, H, Sq, D], then m [B, H, Sq], then l [B, H, Sq].
struct Accumulators {
  void* output = nullptr;
  void* max = nullptr;
  void* sum = nullptr;
};

// Where the accumulators of `rows` = B * H * Sq rows of `head_dim` lie in a scratch buffer
// (each array is aligned for its element when the scratch is: head_dim is a multiple of 8).
Accumulators accumulators_in(void* scratch, int64_t rows, int64_t head_dim, size_t compute_size);

// Bytes of the accumulators of `rows` rows of `head_dim` in a compute type of compute_size.
int64_t accumulator_bytes(int64_t rows, int64_t head_dim, size_t compute_size);

struct FinalizeParams {
  Accumulators accumulators;
  void* y = nullptr;
  int64_t y_strides[4] = {};
  void* lse = nullptr;  // nullptr: LSE is not written
  int64_t lse_strides[3] = {};
  int32_t batch_size = 0;
  int32_t num_heads = 0;
  int32_t query_len = 0;
  int32_t head_dim = 0;
};

// o = 0 over output_count elements, m = -inf and l = 0 over row_count rows.
baracuda_status launch_init(baracuda_element element, const Accumulators& accumulators,
                            int64_t output_count, int64_t row_count, baracuda_stream stream,
                            const char* op);

// y = o / l and lse = m + log(l); rows with l = 0 give y = 0 and lse = -inf.
baracuda_status launch_finalize(baracuda_element element, const FinalizeParams& params,
                                baracuda_stream stream, const char* op);

// Copies a strided rank-4 tensor into `destination`, contiguous, element for element.
baracuda_status launch_stage(const baracuda_tensor& source, void* destination,
                             baracuda_stream stream, const char* op);

}  // namespace baracuda::ring_attention
