// Init, finalize and staging kernels of the ring. Each is elementwise over a grid-stride loop:
// memory-bound, launched once per run (init and finalize) or per staged tensor.
#include <cuda_runtime.h>

#include <cstdint>

#include "common/element_traits.cuh"
#include "common/status.h"
#include "flash_sdpa/flash_sdpa_score_modifiers.cuh"
#include "ring_attention/ring_attention_kernels.h"

namespace baracuda::ring_attention {
namespace {

constexpr int kThreads = 256;
// Enough blocks to fill any current GPU several times over; the loops stride past the rest.
constexpr int64_t kMaxBlocks = 4096;
unsigned blocks_for(int64_t count) {
  const int64_t blocks = (count + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

__device__ __forceinline__ int64_t first_index() {
  return int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ int64_t index_stride() {
  return int64_t{gridDim.x} * blockDim.x;
}

template <typename Compute>
__global__ void __launch_bounds__(kThreads) init_kernel(Compute* output, Compute* max, Compute* sum,
                                                        int64_t output_count, int64_t row_count) {
  for (int64_t n = first_index(); n < output_count; n += index_stride()) output[n] = Compute(0);
  for (int64_t n = first_index(); n < row_count; n += index_stride()) {
    max[n] = flash_sdpa::negative_infinity<Compute>();
    sum[n] = Compute(0);
  }
}

// One thread per output element: y[b, h, i, d] = o / l; the d = 0 thread of a row writes lse.
template <typename Element>
__global__ void __launch_bounds__(kThreads) finalize_kernel(const FinalizeParams params) {
  using Traits = ElementTraits<Element>;
  using Compute = typename Traits::Compute;
  const Compute* output = static_cast<const Compute*>(params.accumulators.output);
  const Compute* max = static_cast<const Compute*>(params.accumulators.max);
  const Compute* sum = static_cast<const Compute*>(params.accumulators.sum);
  const int64_t head_dim = params.head_dim;
  const int64_t query_len = params.query_len;
  const int64_t num_heads = params.num_heads;
  const int64_t count = int64_t{params.batch_size} * num_heads * query_len * head_dim;
  for (int64_t n = first_index(); n < count; n += index_stride()) {
    const int64_t row = n / head_dim;
    const int64_t d = n % head_dim;
    const int64_t i = row % query_len;
    const int64_t h = (row / query_len) % num_heads;
    const int64_t b = row / (query_len * num_heads);
    const Compute row_sum = sum[row];
    const bool has_keys = row_sum != Compute(0);  // NaN propagates, as in the flash kernels
    // As the flash kernel normalises: one ring step over all keys gives its bits exactly.
    const Compute inverse_sum = has_keys ? Compute(1) / row_sum : Compute(0);
    const Compute value = output[n] * inverse_sum;
    static_cast<Element*>(params.y)[b * params.y_strides[0] + h * params.y_strides[1] +
                                    i * params.y_strides[2] + d * params.y_strides[3]] =
        Traits::store(value);
    if (d == 0 && params.lse != nullptr) {
      static_cast<Compute*>(params.lse)[b * params.lse_strides[0] + h * params.lse_strides[1] +
                                        i * params.lse_strides[2]] =
          has_keys ? max[row] + log_of(row_sum) : flash_sdpa::negative_infinity<Compute>();
    }
  }
}

struct StageParams {
  const void* source;
  int64_t shape[BARACUDA_MAX_RANK];
  int64_t strides[BARACUDA_MAX_RANK];
  void* destination;
};

// A copy by element size: staging never converts, so one instance per width serves all types.
template <typename Word>
__global__ void __launch_bounds__(kThreads) stage_kernel(const StageParams params) {
  const Word* source = static_cast<const Word*>(params.source);
  Word* destination = static_cast<Word*>(params.destination);
  const int64_t count = params.shape[0] * params.shape[1] * params.shape[2] * params.shape[3];
  for (int64_t n = first_index(); n < count; n += index_stride()) {
    int64_t rest = n;
    int64_t offset = 0;
    for (int axis = BARACUDA_MAX_RANK - 1; axis >= 0; --axis) {
      offset += (rest % params.shape[axis]) * params.strides[axis];
      rest /= params.shape[axis];
    }
    destination[n] = source[offset];
  }
}

template <typename Compute>
baracuda_status launch_init_of(const Accumulators& accumulators, int64_t output_count,
                               int64_t row_count, baracuda_stream stream, const char* op) {
  init_kernel<Compute><<<blocks_for(output_count), kThreads, 0, stream>>>(
      static_cast<Compute*>(accumulators.output), static_cast<Compute*>(accumulators.max),
      static_cast<Compute*>(accumulators.sum), output_count, row_count);
  return check_cuda(cudaGetLastError(), op, "launch of ring_attention init_kernel");
}

template <typename Element>
baracuda_status launch_finalize_of(const FinalizeParams& params, int64_t count,
                                   baracuda_stream stream, const char* op) {
  finalize_kernel<Element><<<blocks_for(count), kThreads, 0, stream>>>(params);
  return check_cuda(cudaGetLastError(), op, "launch of ring_attention finalize_kernel");
}

template <typename Word>
baracuda_status launch_stage_of(const StageParams& params, int64_t count, baracuda_stream stream,
                                const char* op) {
  stage_kernel<Word><<<blocks_for(count), kThreads, 0, stream>>>(params);
  return check_cuda(cudaGetLastError(), op, "launch of ring_attention stage_kernel");
}

}  // namespace

int64_t accumulator_bytes(int64_t rows, int64_t head_dim, size_t compute_size) {
  return rows * (head_dim + 2) * static_cast<int64_t>(compute_size);
}

Accumulators accumulators_in(void* scratch, int64_t rows, int64_t head_dim, size_t compute_size) {
  const int64_t size = static_cast<int64_t>(compute_size);
  unsigned char* base = static_cast<unsigned char*>(scratch);
  Accumulators accumulators;
  accumulators.output = base;
  accumulators.max = base + rows * head_dim * size;
  accumulators.sum = base + rows * (head_dim + 1) * size;
  return accumulators;
}

baracuda_status launch_init(baracuda_element element, const Accumulators& accumulators,
                            int64_t output_count, int64_t row_count, baracuda_stream stream,
                            const char* op) {
  if (output_count == 0 && row_count == 0) return BARACUDA_STATUS_SUCCESS;
  if (element == BARACUDA_ELEMENT_F64) {
    return launch_init_of<double>(accumulators, output_count, row_count, stream, op);
  }
  return launch_init_of<float>(accumulators, output_count, row_count, stream, op);
}

baracuda_status launch_finalize(baracuda_element element, const FinalizeParams& params,
                                baracuda_stream stream, const char* op) {
  const int64_t count =
      int64_t{params.batch_size} * params.num_heads * params.query_len * params.head_dim;
  if (count == 0) return BARACUDA_STATUS_SUCCESS;
  switch (element) {
    case BARACUDA_ELEMENT_F32: return launch_finalize_of<float>(params, count, stream, op);
    case BARACUDA_ELEMENT_F16: return launch_finalize_of<__half>(params, count, stream, op);
    case BARACUDA_ELEMENT_BF16: return launch_finalize_of<__nv_bfloat16>(params, count, stream, op);
    case BARACUDA_ELEMENT_F64: return launch_finalize_of<double>(params, count, stream, op);
  }
  return fail(BARACUDA_STATUS_INTERNAL, op,
              "finalize of an unknown element (got %d, expected "
              "f32, f16, bf16 or f64)",
              static_cast<int>(element));
}

baracuda_status launch_stage(const baracuda_tensor& source, void* destination,
                             baracuda_stream stream, const char* op) {
  StageParams params;
  params.source = source.data;
  params.destination = destination;
  int64_t count = 1;
  for (int axis = 0; axis < BARACUDA_MAX_RANK; ++axis) {
    params.shape[axis] = source.shape[axis];
    params.strides[axis] = source.strides[axis];
    count *= source.shape[axis];
  }
  if (count == 0) return BARACUDA_STATUS_SUCCESS;
  switch (baracuda_element_size(source.element)) {
    case sizeof(uint16_t): return launch_stage_of<uint16_t>(params, count, stream, op);
    case sizeof(uint32_t): return launch_stage_of<uint32_t>(params, count, stream, op);
    case sizeof(uint64_t): return launch_stage_of<uint64_t>(params, count, stream, op);
  }
  return fail(BARACUDA_STATUS_INTERNAL, op,
              "staging of an element of unknown size (got %zu "
              "bytes, expected 2, 4 or 8)",
              baracuda_element_size(source.element));
}

}  // namespace baracuda::ring_attention
