// The portable flash-attention forward kernel (SIMT; sm_80 and newer; every element type).
//
// One block owns kPortableBlockRows query rows of one (batch, head); each of its warps owns
// kRowsPerWarp of those rows. The block walks the keys the rows can see in tiles of 32:
//   1. stage the K tile in shared memory; lane j scores key j against the warp's rows,
//   2. apply the score modifiers (softcap, ALiBi, mask, causal / window),
//   3. stage the V tile in the same buffer; fold the tile into each row's online softmax
//      (running max m, running sum l, output accumulator o, all in the compute type),
//   4. o += p V, lane d owning output dims d, d + 32, ...
// and finally writes y = o / l and lse = m + log(l). Memory is O(tile): no Sq x Sk buffer.
// With a running state (Params::running, ring attention steps) the rows are merged into the
// stored (o, m, l) instead of writing y and lse.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "common/element_traits.cuh"
#include "common/status.h"
#include "flash_sdpa/flash_sdpa_portable.h"
#include "flash_sdpa/flash_sdpa_score_modifiers.cuh"

namespace baracuda::flash_sdpa {
namespace portable {

constexpr int kWarpSize = 32;
constexpr unsigned kFullWarpMask = 0xffffffffu;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarpSize;
constexpr int kRowsPerWarp = kPortableBlockRows / kWarps;
constexpr int kTileKeys = kWarpSize;  // one key per lane
// One element of padding per staged K/V row, so that lanes reading "their" key rows at the
// same column hit distinct shared-memory banks.
constexpr int kTileRowPadding = 1;

static_assert(kPortableBlockRows % kWarps == 0, "block rows must split evenly over warps");

template <typename Compute>
__device__ __forceinline__ Compute warp_max(Compute x) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    x = fmax(x, __shfl_xor_sync(kFullWarpMask, x, offset));
  }
  return x;
}

template <typename Compute>
__device__ __forceinline__ Compute warp_sum(Compute x) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    x += __shfl_xor_sync(kFullWarpMask, x, offset);
  }
  return x;
}

template <typename Compute>
__host__ __device__ constexpr int tile_row_stride(int d_k, int d_v) {
  return (d_k > d_v ? d_k : d_v) + kTileRowPadding;
}

// Dynamic shared memory: the block's query rows, then one K-or-V tile.
template <typename Compute>
__host__ __device__ constexpr size_t shared_bytes(int d_k, int d_v) {
  return (static_cast<size_t>(kPortableBlockRows) * d_k +
          static_cast<size_t>(kTileKeys) * tile_row_stride<Compute>(d_k, d_v)) *
         sizeof(Compute);
}

// Copies rows [first, first + rows) of a [*, width] view into a shared tile, converting to
// the compute type; rows at or past `limit` are zero-filled. Warps take rows, lanes columns.
template <typename Element, typename Compute>
__device__ __forceinline__ void stage_rows(Compute* tile, int tile_stride, const Element* source,
                                           int64_t row_stride, int64_t first, int64_t limit,
                                           int rows, int width) {
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  for (int r = warp; r < rows; r += kWarps) {
    const int64_t row = first + r;
    for (int d = lane; d < width; d += kWarpSize) {
      tile[r * tile_stride + d] =
          row < limit ? ElementTraits<Element>::load(source[row * row_stride + d]) : Compute(0);
    }
  }
}

// One query row's online-softmax state; lane l holds output dims l, l + 32, ...
template <typename Compute, int kDimsPerLane>
struct RowState {
  Compute max;  // running maximum score
  Compute sum;  // running sum of exp(score - max)
  Compute output[kDimsPerLane];
};

// Folds one tile of scores (this lane's key) into a row: rescales the state to the new
// maximum and returns this lane's probability exp(score - max).
template <typename Compute, int kDimsPerLane>
__device__ __forceinline__ Compute online_softmax_update(RowState<Compute, kDimsPerLane>& row,
                                                         Compute score) {
  const Compute new_max = fmax(row.max, warp_max(score));
  if (new_max == negative_infinity<Compute>()) return Compute(0);  // nothing visible yet
  const Compute correction = exp_of(row.max - new_max);
  const Compute probability = exp_of(score - new_max);
  row.sum = row.sum * correction + warp_sum(probability);
#pragma unroll
  for (int e = 0; e < kDimsPerLane; ++e) row.output[e] *= correction;
  row.max = new_max;
  return probability;
}

template <typename Compute, int kDimsPerLane>
__device__ __forceinline__ void start_empty(RowState<Compute, kDimsPerLane>& row) {
  row.max = negative_infinity<Compute>();
  row.sum = Compute(0);
#pragma unroll
  for (int e = 0; e < kDimsPerLane; ++e) row.output[e] = Compute(0);
}

// Folds one row's state of this launch (m, l, o over its keys) into the running state of the
// launches before: both are rescaled to the larger maximum and summed. A running state that
// saw no key yet takes this launch's state unchanged, bit for bit (exp(0) = 1, and the empty
// state's terms are 0), so one step over all keys gives the flash kernel's bits.
template <typename Compute, int kDimsPerLane>
__device__ __forceinline__ void merge_into_running_state(const RowState<Compute, kDimsPerLane>& row,
                                                         const RunningState& running, int64_t b,
                                                         int64_t h, int64_t i, int d_v) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row_offset = b * running.row_strides[0] + h * running.row_strides[1] + i;
  Compute* max = static_cast<Compute*>(running.max) + row_offset;
  Compute* sum = static_cast<Compute*>(running.sum) + row_offset;
  const Compute earlier_max = *max;
  const Compute merged_max = fmax(earlier_max, row.max);
  if (merged_max == negative_infinity<Compute>()) return;  // no key seen by either
  const Compute earlier_scale = exp_of(earlier_max - merged_max);
  const Compute scale = exp_of(row.max - merged_max);
  Compute* output = static_cast<Compute*>(running.output) + b * running.output_strides[0] +
                    h * running.output_strides[1] + i * running.output_strides[2];
#pragma unroll
  for (int e = 0; e < kDimsPerLane; ++e) {
    const int d = lane + e * kWarpSize;
    if (d < d_v) output[d] = output[d] * earlier_scale + row.output[e] * scale;
  }
  // Every lane has read max and sum above before lane 0 overwrites them.
  __syncwarp();
  if (lane == 0) {
    *max = merged_max;
    *sum = *sum * earlier_scale + row.sum * scale;
  }
}

template <typename Element, int kHeadDimBucket>
__global__ void __launch_bounds__(kThreads) flash_sdpa_portable_kernel(const Params params) {
  using Traits = ElementTraits<Element>;
  using Compute = typename Traits::Compute;
  constexpr int kDimsPerLane = (kHeadDimBucket + kWarpSize - 1) / kWarpSize;

  extern __shared__ __align__(16) unsigned char shared_storage[];
  Compute* query_tile = reinterpret_cast<Compute*>(shared_storage);
  Compute* key_value_tile = query_tile + kPortableBlockRows * params.d_k;
  const int tile_stride = tile_row_stride<Compute>(params.d_k, params.d_v);

  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;

  // Which (batch, head, query tile) this block owns. Tiles vary fastest, so the blocks of one
  // head run together and share its K / V in L2.
  const int64_t query_len = params.query_len;
  const int64_t key_len = params.key_len;
  const int64_t tiles_per_head = (query_len + kPortableBlockRows - 1) / kPortableBlockRows;
  const int64_t tile = blockIdx.x % tiles_per_head;
  const int64_t head_index = blockIdx.x / tiles_per_head;
  const int64_t h = head_index % params.num_heads;
  const int64_t b = head_index / params.num_heads;
  const int64_t kv_head = h / (params.num_heads / params.num_heads_k);
  const int64_t first_row = tile * kPortableBlockRows;
  const int64_t last_row = min(first_row + kPortableBlockRows, query_len) - 1;

  const Element* q =
      static_cast<const Element*>(params.q) + b * params.q_strides[0] + h * params.q_strides[1];
  const Element* k = static_cast<const Element*>(params.k) + b * params.k_strides[0] +
                     kv_head * params.k_strides[1];
  const Element* v = static_cast<const Element*>(params.v) + b * params.v_strides[0] +
                     kv_head * params.v_strides[1];

  const ScoreModifiers& modifiers = params.modifiers;
  const HeadModifiers<Compute> head = head_modifiers<Compute>(modifiers, b, h);

  stage_rows(query_tile, params.d_k, q, params.q_strides[2], first_row, query_len,
             kPortableBlockRows, params.d_k);

  RowState<Compute, kDimsPerLane> rows[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) start_empty(rows[r]);

  // Only the keys some row of this block can see: the window of the first row opens the
  // range, the window of the last row closes it.
  const int64_t key_begin = max(int64_t{0}, first_row + modifiers.offset - modifiers.window_left);
  const int64_t key_end = min(key_len, last_row + modifiers.offset + modifiers.window_right + 1);

  for (int64_t key0 = key_begin; key0 < key_end; key0 += kTileKeys) {
    // 1. Scores of this lane's key against the warp's rows.
    __syncthreads();
    stage_rows(key_value_tile, tile_stride, k, params.k_strides[2], key0, key_len, kTileKeys,
               params.d_k);
    __syncthreads();

    Compute dot[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) dot[r] = Compute(0);
    const Compute* key_row = key_value_tile + lane * tile_stride;
    for (int d = 0; d < params.d_k; ++d) {
      const Compute key_element = key_row[d];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        dot[r] += query_tile[(warp * kRowsPerWarp + r) * params.d_k + d] * key_element;
      }
    }

    // 2. Score modifiers; keys past the end and rows past the end score -inf.
    const int64_t j = key0 + lane;
    Compute score[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int64_t i = first_row + warp * kRowsPerWarp + r;
      score[r] = (i < query_len && j < key_len) ? modified_score(dot[r], modifiers, head, i, j)
                                                : negative_infinity<Compute>();
    }

    // 3. V tile into the same buffer, then the online-softmax update of each row.
    __syncthreads();
    stage_rows(key_value_tile, tile_stride, v, params.v_strides[2], key0, key_len, kTileKeys,
               params.d_v);
    __syncthreads();

    Compute probability[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      probability[r] = online_softmax_update(rows[r], score[r]);
    }

    // 4. o += p V: key jj's probability is broadcast from lane jj.
    for (int jj = 0; jj < kTileKeys; ++jj) {
      const Compute* value_row = key_value_tile + jj * tile_stride;
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const Compute p = __shfl_sync(kFullWarpMask, probability[r], jj);
#pragma unroll
        for (int e = 0; e < kDimsPerLane; ++e) {
          const int d = lane + e * kWarpSize;
          if (d < params.d_v) rows[r].output[e] += p * value_row[d];
        }
      }
    }
  }

  // A ring step merges this launch's rows into the running state, after the key loop, where
  // registers are free.
  if (params.running.output != nullptr) {
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int64_t i = first_row + warp * kRowsPerWarp + r;
      if (i < query_len) merge_into_running_state(rows[r], params.running, b, h, i, params.d_v);
    }
    return;
  }

  // Normalise and write this warp's rows: y = o / l, lse = m + log(l); a row that saw no key
  // writes y = 0 and lse = -inf.
  Element* y = static_cast<Element*>(params.y) + b * params.y_strides[0] + h * params.y_strides[1];
  Compute* lse =
      static_cast<Compute*>(params.lse) + b * params.lse_strides[0] + h * params.lse_strides[1];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t i = first_row + warp * kRowsPerWarp + r;
    if (i >= query_len) continue;
    // A sum of exponentials is 0 only for a row with no visible key; a NaN score makes it
    // NaN, which propagates.
    const bool has_keys = rows[r].sum != Compute(0);
    const Compute inverse_sum = has_keys ? Compute(1) / rows[r].sum : Compute(0);
#pragma unroll
    for (int e = 0; e < kDimsPerLane; ++e) {
      const int d = lane + e * kWarpSize;
      if (d < params.d_v)
        y[i * params.y_strides[2] + d] = Traits::store(rows[r].output[e] * inverse_sum);
    }
    if (lane == 0) {
      lse[i * params.lse_strides[2]] =
          has_keys ? rows[r].max + log_of(rows[r].sum) : negative_infinity<Compute>();
    }
  }
}

}  // namespace portable

template <typename Element, int kHeadDimBucket>
baracuda_status prepare_portable(const DeviceInfo& device, const char* op) {
  using Compute = typename ElementTraits<Element>::Compute;
  static PreparedDevices prepared{0};
  return prepare_kernel(
      prepared, device,
      reinterpret_cast<const void*>(portable::flash_sdpa_portable_kernel<Element, kHeadDimBucket>),
      portable::shared_bytes<Compute>(kHeadDimBucket, kHeadDimBucket), "portable",
      "flash_sdpa_portable_kernel", kHeadDimBucket, op);
}

template <typename Element, int kHeadDimBucket>
baracuda_status launch_portable(const Params& params, baracuda_stream stream, const char* op) {
  using Compute = typename ElementTraits<Element>::Compute;
  const int64_t tiles_per_head =
      (int64_t{params.query_len} + kPortableBlockRows - 1) / kPortableBlockRows;
  const int64_t blocks = int64_t{params.batch_size} * params.num_heads * tiles_per_head;
  if (blocks == 0) return BARACUDA_STATUS_SUCCESS;
  const size_t bytes = portable::shared_bytes<Compute>(params.d_k, params.d_v);
  portable::flash_sdpa_portable_kernel<Element, kHeadDimBucket>
      <<<static_cast<unsigned>(blocks), portable::kThreads, bytes, stream>>>(params);
  return check_cuda(cudaGetLastError(), op, "launch of flash_sdpa_portable_kernel");
}

}  // namespace baracuda::flash_sdpa
