// The hopper flash-attention forward kernel (sm_90a; f16 and bf16).
//
// One block owns kBlockM query rows of one (batch, head). Warpgroup 0 is the producer:
// one of its threads loads the block's Q tile once and then each K and V tile the rows can see,
// with TMA, into a ring of kStages shared-memory stages; mbarriers say when a stage is full and
// when it is free again (K and V each have their own ring, released separately). The other
// warpgroups (two, or three at head dim 64) are the consumers, 64 query rows each. For each key
// tile a consumer warpgroup
//   1. computes S = Q K^T on wgmma, both operands in shared memory, f32 accumulators,
//   2. turns S into scores in log2 units: scale, softcap, ALiBi and mask; the causal, window
//      and length limits only on tiles that cross them,
//   3. folds the scores into each row's online softmax (running max m, running sum l) and
//      rescales O when m moves,
//   4. computes O += P V on wgmma, P converted to 16 bits in registers,
//   5. hands the stages back to the producer.
// Steps 2-3 of tile n run while the GEMM of step 4 for tile n - 1 is in flight.
// Finally it writes y = O / l and lse = m ln 2 + log l, or, with a running state (ring
// attention steps), merges (O, m, l) into the state.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>
#include <cute/arch/copy_sm90_tma.hpp>
#include <cute/arch/mma_sm90.hpp>

#include "common/element_traits.cuh"
#include "common/status.h"
#include "flash_sdpa/flash_sdpa_hopper.h"
#include "flash_sdpa/flash_sdpa_hopper_tensor_map.h"
#include "flash_sdpa/flash_sdpa_score_modifiers.cuh"

namespace baracuda::flash_sdpa {
namespace hopper {

namespace gmma = cute::SM90::GMMA;
using Barrier = cutlass::arch::ClusterTransactionBarrier;

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.69314718055994531f;

constexpr int kWarpSize = 32;
constexpr unsigned kFullWarpMask = 0xffffffffu;
constexpr int kWarpgroupThreads = 128;
constexpr int kWarpgroupWarps = kWarpgroupThreads / kWarpSize;
constexpr int kMmaRows = 64;         // M of one wgmma: the query rows of one warpgroup
constexpr int kMmaK = 16;            // K of one 16-bit wgmma
constexpr int kRowsPerWarp = 16;     // of a wgmma accumulator: each warp owns 16 rows
constexpr int kQuad = 4;             // lanes that share one accumulator row
constexpr int kHalfRows = 8;         // rows between the two accumulator rows of a lane
constexpr int kColumnsPerGroup = 8;  // accumulator columns of one register group of a quad

// setmaxnreg budgets: the producer returns registers to the consumers (65536 per block), which
// share them in steps of kRegisterStep.
constexpr int kProducerRegisters = 24;
constexpr int kRegistersPerBlock = 65536;
constexpr int kRegisterStep = 8;

// Shared-memory tiles are stored as TMA writes them with the 128-byte swizzle: a tile of
// rows x head dim is a sequence of chunks of kTmaChunkElements columns, each chunk rows x 128
// bytes, swizzled in atoms of 8 rows. wgmma reads the same layout through its descriptors.
constexpr int kChunkRowBytes = kTmaChunkElements * kTmaElementBytes;
constexpr int kSwizzleAtomBytes = 8 * kChunkRowBytes;
constexpr int kMmaKBytes = kMmaK * kTmaElementBytes;
// The L2 policy of every TMA load (the cache-hint operand): normal eviction.
constexpr uint64_t kEvictNormal = static_cast<uint64_t>(cute::TMA::CacheHintSm90::EVICT_NORMAL);

// Tile shape of each head-dim bucket: keys per tile and pipeline depth, within shared memory.
// A bucket that is not whole TMA chunks (96) stores its tiles kTileColumns wide, the columns
// past the bucket zero-filled by TMA and never read: the GEMMs run kHeadDim wide.
template <int kHeadDim>
struct TileConfig {
  static_assert(kHeadDim % kMmaK == 0, "head-dim buckets are whole wgmma k-steps");
  // Consumer warpgroups, one wgmma of 64 query rows each. At head dim 64 a key tile's GEMMs are
  // short next to its softmax: with a third warpgroup two can run their softmax while the
  // tensor cores work for the third (benchmarks/NOTES.md, v19).
  static constexpr int kConsumers = kHeadDim <= 64 ? 3 : 2;
  static constexpr int kConsumerWarps = kConsumers * kWarpgroupWarps;
  static constexpr int kThreads = (1 + kConsumers) * kWarpgroupThreads;
  static constexpr int kConsumerRegisters =
      (kRegistersPerBlock / kWarpgroupThreads - kProducerRegisters) / kConsumers / kRegisterStep *
      kRegisterStep;
  static constexpr int kBlockM = kConsumers * kMmaRows;
  // Keys per tile: 128 up to head dim 128; at 64 a tile of 96 keeps the S, P and O registers of
  // three consumers within their 160 (128 keys spill 336 bytes); above 128, 64 for shared memory.
  static constexpr int kBlockN = kHeadDim <= 64 ? 96 : kHeadDim <= 128 ? 128 : 64;
  static constexpr int kStages = 2;
  static constexpr int kChunks = (kHeadDim + kTmaChunkElements - 1) / kTmaChunkElements;
  static constexpr int kTileColumns = kChunks * kTmaChunkElements;
  // The consumer warpgroups take turns to issue their GEMMs (ping-pong) up to head dim 128;
  // at 256 the softmax is short next to the GEMMs and the turns only cost (measured: v2 576
  // against v3 534 TFLOP/s at d256 8k bf16, benchmarks/NOTES.md).
  static constexpr bool kTakeTurns = kHeadDim <= 128;
};

// The additive mask's values of one key tile for one consumer thread, as its scores hold them:
// two rows (halves) of kBlockN / kColumnsPerGroup column groups, two adjacent keys a pair.
template <int kBlockN>
constexpr int kMaskPairs = 2 * (kBlockN / kColumnsPerGroup);

template <int kHeadDim>
struct SharedStorage {
  using Config = TileConfig<kHeadDim>;
  alignas(kSwizzleAtomBytes) uint16_t q[Config::kBlockM * Config::kTileColumns];
  alignas(kSwizzleAtomBytes) uint16_t k[Config::kStages][Config::kBlockN * Config::kTileColumns];
  alignas(kSwizzleAtomBytes) uint16_t v[Config::kStages][Config::kBlockN * Config::kTileColumns];
  uint64_t q_full;
  uint64_t q_empty;  // the consumers have issued their last Q K^T of the tile
  uint64_t k_full[Config::kStages];
  uint64_t v_full[Config::kStages];
  uint64_t k_empty[Config::kStages];
  uint64_t v_empty[Config::kStages];
  // Each consumer's stage of the mask (stage_mask), pair-major so that a warp's reads of one
  // pair are 256 consecutive bytes. Last: a launch without it leaves it out of its shared memory.
  float2 mask[Config::kConsumers][kMaskPairs<Config::kBlockN>][kWarpgroupThreads];
};

// Dynamic shared memory is aligned by hand to the swizzle atom, hence the extra bytes; a launch
// that does not stage the mask needs none of its stage.
template <int kHeadDim>
constexpr size_t shared_bytes(bool stage_mask) {
  return (stage_mask ? sizeof(SharedStorage<kHeadDim>) : offsetof(SharedStorage<kHeadDim>, mask)) +
         kSwizzleAtomBytes;
}

// How the persistent blocks walk the launch's query tiles (unit_at): heads per L2 group, and
// whether a unit pairs a long query tile with a short one.
struct TileOrder {
  int32_t group_heads;
  int32_t paired;  // 0 or 1
};

// The kernel's parameters: TMA descriptors of q, k and v, the tile order, then the common launch
// parameters.
struct HopperParams {
  CUtensorMap q_map;
  CUtensorMap k_map;
  CUtensorMap v_map;
  TileOrder order;
  // 1 when the consumers copy the mask's tiles into shared memory one key tile ahead
  // (mask_stageable); 0 when they read it from global memory as they use it, or have none.
  int32_t stage_mask;
  Params params;
};

// ---------------------------------------------------------------- wgmma

template <typename Element>
struct MmaElement;
template <>
struct MmaElement<__half> {
  using type = cute::half_t;
};
template <>
struct MmaElement<__nv_bfloat16> {
  using type = cute::bfloat16_t;
};

// 64 x kN x 16 wgmma with f32 accumulators: A and B in shared memory (S = Q K^T, both K-major).
template <typename Element, int kN>
using QkMma =
    decltype(gmma::ss_op_selector<typename MmaElement<Element>::type,
                                  typename MmaElement<Element>::type, float,
                                  cute::Shape<cute::Int<kMmaRows>, cute::Int<kN>, cute::Int<kMmaK>>,
                                  gmma::Major::K, gmma::Major::K>());
// A in registers, B in shared memory, N-major (O += P V: V is [keys][head dim]).
template <typename Element, int kN>
using PvMma =
    decltype(gmma::rs_op_selector<typename MmaElement<Element>::type,
                                  typename MmaElement<Element>::type, float,
                                  cute::Shape<cute::Int<kMmaRows>, cute::Int<kN>, cute::Int<kMmaK>>,
                                  gmma::Major::K, gmma::Major::MN>());

template <typename Mma, int kRegisters, size_t... I>
__device__ __forceinline__ void mma_smem_smem(uint64_t a, uint64_t b, float (&d)[kRegisters],
                                              gmma::ScaleOut scale, std::index_sequence<I...>) {
  Mma::fma(a, b, d[I]..., scale);
}

template <typename Mma, int kRegisters, size_t... I>
__device__ __forceinline__ void mma_regs_smem(const uint32_t (&a)[4], uint64_t b,
                                              float (&d)[kRegisters], std::index_sequence<I...>) {
  Mma::fma(a[0], a[1], a[2], a[3], b, d[I]..., gmma::ScaleOut::One);
}

// Keeps the compiler from moving accumulator reads or writes across an asynchronous wgmma.
template <int kRegisters>
__device__ __forceinline__ void fence_accumulators(float (&d)[kRegisters]) {
#pragma unroll
  for (int r = 0; r < kRegisters; ++r) cute::warpgroup_fence_operand(d[r]);
}

// A shared-memory matrix descriptor of the 128-byte swizzle; offsets in bytes.
__device__ __forceinline__ uint64_t matrix_descriptor(const void* start, uint32_t leading_bytes,
                                                      uint32_t stride_bytes) {
  cute::GmmaDescriptor descriptor;
  descriptor.bitfield.start_address_ =
      static_cast<uint16_t>(cute::cast_smem_ptr_to_uint(start) >> 4);
  descriptor.bitfield.leading_byte_offset_ = static_cast<uint16_t>(leading_bytes >> 4);
  descriptor.bitfield.stride_byte_offset_ = static_cast<uint16_t>(stride_bytes >> 4);
  descriptor.bitfield.base_offset_ = 0;
  descriptor.bitfield.layout_type_ = static_cast<uint8_t>(gmma::LayoutType::B128);
  return descriptor.desc_;
}

// The start address is the descriptor's low field, in 16-byte units, and shared-memory addresses
// stay below 2^18 bytes: a byte offset into the tile is one 32-bit add to the descriptor's low
// word, with no carry into the fields above. The loops build each descriptor once and step it by
// compile-time offsets. The descriptor passes through an empty asm so that the compiler keeps it
// as one value instead of re-deriving it from the address at every step.
__device__ __forceinline__ uint64_t opaque_descriptor(uint64_t descriptor) {
  asm("" : "+l"(descriptor));
  return descriptor;
}

__device__ __forceinline__ uint64_t advance_descriptor(uint64_t descriptor, uint32_t bytes) {
  uint32_t low;
  uint32_t high;
  asm("mov.b64 {%0, %1}, %2;" : "=r"(low), "=r"(high) : "l"(descriptor));
  low += bytes >> 4;
  asm("mov.b64 %0, {%1, %2};" : "=l"(descriptor) : "r"(low), "r"(high));
  return descriptor;
}

// K-major operand (Q or K rows): the tile's rows from `first_row` on, as the descriptor of its
// first k-step; k_major_step_bytes moves it to k-step `step` (head dims 16 step .. 16 step + 15).
__device__ __forceinline__ uint64_t k_major_operand(const uint16_t* tile, int first_row) {
  return matrix_descriptor(
      reinterpret_cast<const unsigned char*>(tile) + first_row * kChunkRowBytes, kTmaAlignmentBytes,
      kSwizzleAtomBytes);
}

// Chunks of 64 head dims lie tile_rows x 128 bytes apart; within a 128-byte row the k-step moves
// the start address, and the hardware applies the swizzle to it.
template <int kTileRows>
__host__ __device__ constexpr uint32_t k_major_step_bytes(int step) {
  constexpr int kStepsPerChunk = kTmaChunkElements / kMmaK;
  return (step / kStepsPerChunk) * kTileRows * kChunkRowBytes +
         (step % kStepsPerChunk) * kMmaKBytes;
}

// N-major operand (V): all head dims of the tile's keys, as the descriptor of its first k-step;
// consecutive chunks of 64 head dims lie tile_rows x 128 bytes apart.
__device__ __forceinline__ uint64_t n_major_operand(const uint16_t* tile, int tile_rows) {
  return matrix_descriptor(tile, tile_rows * kChunkRowBytes, kSwizzleAtomBytes);
}

// k-step `step` of an N-major operand: keys [16 step, 16 step + 16).
__host__ __device__ constexpr uint32_t n_major_step_bytes(int step) {
  return step * kMmaK * kChunkRowBytes;
}

// ---------------------------------------------------------------- accumulator fragments
//
// A 64 x N f32 accumulator of a warpgroup: warp w owns rows 16 w .. 16 w + 15; lane l holds
// rows l / 4 (half 0) and l / 4 + 8 (half 1), columns 8 g + 2 (l % 4) + {0, 1} of each
// column group g, in register 4 g + 2 half + {0, 1}.

__device__ __forceinline__ int fragment_index(int group, int half, int pair) {
  return group * 4 + half * 2 + pair;
}

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(kFullWarpMask, x, 1));
  return fmaxf(x, __shfl_xor_sync(kFullWarpMask, x, 2));
}

__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(kFullWarpMask, x, 1);
  return x + __shfl_xor_sync(kFullWarpMask, x, 2);
}

// 2^x on the special-function unit (relative error ~2^-22; results below 2^-126 flush to 0).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// An asynchronous 8-byte copy from global to shared memory of which the first `bytes` (0, 4 or 8)
// are read and the rest zero-filled; 0 reads nothing.
__device__ __forceinline__ void copy_async_8(float2* shared, const float* global, uint32_t bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;" ::"r"(
                   static_cast<uint32_t>(__cvta_generic_to_shared(shared))),
               "l"(global), "r"(bytes)
               : "memory");
}

__device__ __forceinline__ void copy_async_commit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}

__device__ __forceinline__ void copy_async_wait_all() {
  asm volatile("cp.async.wait_all;" ::: "memory");
}

// 1 / x on the special-function unit (about 1 ulp).
__device__ __forceinline__ float fast_reciprocal(float x) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// tanh(x) = 1 - 2 / (2^(2 x log2(e)) + 1), given `two_x_log2e` = 2 x log2(e): one exp2 and one
// reciprocal, absolute error about 2^-22 (tanhf adds a polynomial branch for small |x| and
// twice the instructions). Large |x| saturates to +-1: the exponential goes to inf or 0.
__device__ __forceinline__ float tanh_of_exponent(float two_x_log2e) {
  return 1.0f - 2.0f * fast_reciprocal(fast_exp2(two_x_log2e) + 1.0f);
}

template <typename Element>
__device__ __forceinline__ uint32_t pack_pair(float low, float high);
template <>
__device__ __forceinline__ uint32_t pack_pair<__half>(float low, float high) {
  const __half2 pair = __floats2half2_rn(low, high);
  return *reinterpret_cast<const uint32_t*>(&pair);
}
template <>
__device__ __forceinline__ uint32_t pack_pair<__nv_bfloat16>(float low, float high) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);
  return *reinterpret_cast<const uint32_t*>(&pair);
}

// ---------------------------------------------------------------- score modifiers

// How a consumer turns the GEMM's scores into softmax exponents; the kernel runs one tile loop
// of each kind, chosen per launch (ScorePath of the parameters).
//  - kScaled: the scale and the causal / window / length limits only, with a positive scale.
//    The scores stay as the GEMM gives them and the softmax applies the scale in its exponent,
//    2^(s c - m c) with c = scale log2(e), one FFMA per score (the max of s c is c times the
//    max of s).
//  - kModified: softcap, ALiBi or the mask as well (or a scale that is not positive):
//    score_tile turns the scores into log2 units first.
// The two loops are separate so that the common one holds no registers for the modifiers: with
// both in one loop the d128 and d256 consumers spill their softmax state (benchmarks/NOTES.md).
enum class ScorePath { kScaled, kModified };

__device__ __forceinline__ ScorePath score_path(const ScoreModifiers& modifiers) {
  const bool scaled_only = modifiers.softcap == 0.0 && modifiers.alibi_slopes == nullptr &&
                           modifiers.mask == nullptr && modifiers.scale > 0.0;
  return scaled_only ? ScorePath::kScaled : ScorePath::kModified;
}

// The score modifiers of one (batch, head) in log2 units: t = s log2(e), so that
// exp(s - max s) = 2^(t - max t). Strides and the offset stay in the kernel parameters.
struct HeadScores {
  float scale_log2;     // scale log2(e), without softcap
  float softcap_scale;  // 2 log2(e) scale / softcap: tanh_of_exponent of s times it
  float softcap_log2;   // softcap log2(e); 0 disables softcap
  float alibi_log2;     // slope log2(e); 0 disables ALiBi
  const float* mask;    // the mask at (b, h, 0, 0); nullptr disables it
};

// What the softmax multiplies the scores by in its exponent: the scale on the kScaled path, 1
// once score_tile has put them in log2 units.
template <ScorePath kPath>
__device__ __forceinline__ float exponent_scale(const HeadScores& scores) {
  return kPath == ScorePath::kScaled ? scores.scale_log2 : 1.0f;
}

__device__ __forceinline__ HeadScores head_scores(const ScoreModifiers& modifiers, int64_t b,
                                                  int64_t h) {
  const HeadModifiers<float> head = head_modifiers<float>(modifiers, b, h);
  HeadScores scores;
  scores.scale_log2 = head.scale * kLog2e;
  scores.softcap_scale = head.softcap > 0.0f ? 2.0f * kLog2e * head.scale / head.softcap : 0.0f;
  scores.softcap_log2 = head.softcap * kLog2e;
  scores.alibi_log2 = head.alibi_slope * kLog2e;
  scores.mask = head.mask_row_base;
  return scores;
}

// One accumulator row of this thread: its query position, the keys its causal / window limits
// let it see (clamped to [0, key_len - 1]; first > last when none), and whether it is a row of
// the problem. Positions fit int32 (query_len and key_len do).
struct RowPlace {
  int32_t query;
  int32_t first_key;
  int32_t last_key;
  bool in_problem;
};

__device__ __forceinline__ RowPlace row_place(const ScoreModifiers& modifiers, int64_t query,
                                              int64_t query_len, int64_t key_len) {
  const int64_t diagonal = query + modifiers.offset;
  RowPlace row;
  row.query = static_cast<int32_t>(query);
  row.first_key =
      static_cast<int32_t>(min(key_len, max(int64_t{0}, diagonal - modifiers.window_left)));
  row.last_key =
      static_cast<int32_t>(max(int64_t{-1}, min(key_len - 1, diagonal + modifiers.window_right)));
  row.in_problem = query < query_len;
  return row;
}

// This thread's two accumulator rows, kHalfRows apart from `query0`. The score modifiers and the
// epilogue compute them where they need them, so that the tile loop keeps no registers for them.
__device__ __forceinline__ void thread_rows(const Params& params, int32_t query0,
                                            RowPlace (&rows)[2]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    rows[half] = row_place(params.modifiers, int64_t{query0} + half * kHalfRows, params.query_len,
                           params.key_len);
  }
}

// The mask values of the key tile at `key0` that this thread's scores take, copied
// asynchronously into its slots of its warpgroup's stage (pair 2 g + half holds the pair of
// column group g in row half). Keys past a row's last visible key and rows outside the problem
// are zero-filled without a read: their scores are -inf or never stored. Committed as one group.
template <int kN>
__device__ __forceinline__ void copy_mask_tile(float2 (*stage)[kWarpgroupThreads],
                                               const HeadScores& scores, const Params& params,
                                               int32_t query0, int32_t key0) {
  constexpr int kGroups = kN / kColumnsPerGroup;
  const int thread = threadIdx.x % kWarpgroupThreads;
  const int32_t lane_key0 = key0 + 2 * (threadIdx.x % kQuad);
  RowPlace rows[2];
  thread_rows(params, query0, rows);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const float* mask_row =
        scores.mask + int64_t{rows[half].query} * params.modifiers.mask_strides[2];
    const int32_t last_key = rows[half].in_problem ? rows[half].last_key : -1;
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      const int32_t key = lane_key0 + g * kColumnsPerGroup;
      const int32_t visible = max(0, min(2, last_key - key + 1));
      copy_async_8(&stage[2 * g + half][thread], visible > 0 ? mask_row + key : scores.mask,
                   static_cast<uint32_t>(visible * sizeof(float)));
    }
  }
  copy_async_commit();
}

// Scores of one key tile (first key `key0`) in place: on the kModified path in log2 units, each
// modifier one uniform branch around its own loop (a modifier that is off costs one test per
// tile); on the kScaled path left as the GEMM gave them. Only tiles that cross a row's limits
// (`needs_limits`) test keys against them. The mask comes from `mask_stage` when the tile's
// values have been copied there (copy_mask_tile, complete), else from global memory.
template <int kN, ScorePath kPath>
__device__ __forceinline__ void score_tile(float (&s)[kN / 2], const HeadScores& scores,
                                           const Params& params, int32_t query0, int32_t key0,
                                           bool needs_limits,
                                           const float2 (*mask_stage)[kWarpgroupThreads]) {
  constexpr bool kModified = kPath == ScorePath::kModified;
  constexpr int kGroups = kN / kColumnsPerGroup;
  const ScoreModifiers& modifiers = params.modifiers;
  const int32_t lane_key0 = key0 + 2 * (threadIdx.x % kQuad);
  const bool needs_rows =
      (kModified && (scores.alibi_log2 != 0.0f || scores.mask != nullptr)) || needs_limits;
  RowPlace rows[2];
  if (needs_rows) thread_rows(params, query0, rows);
  if (kModified && scores.softcap_log2 > 0.0f) {
#pragma unroll
    for (int r = 0; r < kN / 2; ++r) {
      s[r] = scores.softcap_log2 * tanh_of_exponent(s[r] * scores.softcap_scale);
    }
  } else if (kModified) {
#pragma unroll
    for (int r = 0; r < kN / 2; ++r) s[r] *= scores.scale_log2;
  }
  if (kModified && scores.alibi_log2 != 0.0f) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      // The row's distance to the lane's first key, once; each score's is that less the
      // column's compile-time offset (exact in f32 up to 2^24 positions).
      const float lane_distance =
          static_cast<float>(rows[half].query + modifiers.offset - lane_key0);
#pragma unroll
      for (int g = 0; g < kGroups; ++g) {
#pragma unroll
        for (int pair = 0; pair < 2; ++pair) {
          const float distance = lane_distance - static_cast<float>(g * kColumnsPerGroup + pair);
          s[fragment_index(g, half, pair)] -= scores.alibi_log2 * fabsf(distance);
        }
      }
    }
  }
  if (kModified && mask_stage != nullptr) {
    const int thread = threadIdx.x % kWarpgroupThreads;
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const float2 values = mask_stage[2 * g + half][thread];
        s[fragment_index(g, half, 0)] += values.x * kLog2e;
        s[fragment_index(g, half, 1)] += values.y * kLog2e;
      }
    }
  } else if (kModified && scores.mask != nullptr) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      if (!rows[half].in_problem) continue;
      const float* mask_row = scores.mask + rows[half].query * modifiers.mask_strides[2];
#pragma unroll
      for (int g = 0; g < kGroups; ++g) {
#pragma unroll
        for (int pair = 0; pair < 2; ++pair) {
          const int32_t key = lane_key0 + g * kColumnsPerGroup + pair;
          if (key <= rows[half].last_key) {
            s[fragment_index(g, half, pair)] +=
                __ldg(mask_row + key * modifiers.mask_strides[3]) * kLog2e;
          }
        }
      }
    }
  }
  if (needs_limits) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
#pragma unroll
      for (int g = 0; g < kGroups; ++g) {
#pragma unroll
        for (int pair = 0; pair < 2; ++pair) {
          const int32_t key = lane_key0 + g * kColumnsPerGroup + pair;
          if (key < rows[half].first_key || key > rows[half].last_key) {
            s[fragment_index(g, half, pair)] = -INFINITY;
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------- online softmax

// Each of this thread's two rows: running max m (in the units of the scores, log2 units once
// the tile loop ends) and this thread's part of the running sum l (the quad's parts are added
// at the end).
struct SoftmaxState {
  float max[2];
  float sum[2];
};

// Folds one tile of scores into the rows: moves m to the tile's max, replaces the scores by
// p = 2^(c t - c m) (one FFMA and one exp2 each; c = `exponent_scale`, positive), and returns
// in `correction` the factor 2^(c m_old - c m) that O must take.
template <int kN>
__device__ __forceinline__ void online_softmax_update(SoftmaxState& state, float (&t)[kN / 2],
                                                      float exponent_scale,
                                                      float (&correction)[2]) {
  constexpr int kGroups = kN / kColumnsPerGroup;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float tile_max = state.max[half];
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      tile_max =
          fmaxf(tile_max, fmaxf(t[fragment_index(g, half, 0)], t[fragment_index(g, half, 1)]));
    }
    tile_max = quad_max(tile_max);
    // A row that has seen no key yet keeps p = 0 with a reference of 0 instead of -inf.
    const float reference = tile_max == -INFINITY ? 0.0f : tile_max;
    correction[half] = fast_exp2((state.max[half] - reference) * exponent_scale);
    state.max[half] = tile_max;
    const float scaled_reference = reference * exponent_scale;
    float tile_sum = 0.0f;
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
#pragma unroll
      for (int pair = 0; pair < 2; ++pair) {
        float& p = t[fragment_index(g, half, pair)];
        p = fast_exp2(fmaf(p, exponent_scale, -scaled_reference));
        tile_sum += p;
      }
    }
    state.sum[half] = state.sum[half] * correction[half] + tile_sum;
  }
}

// O takes the rows' corrections. Once the running max settles most tiles leave it where it was
// (correction exactly 1): a warp none of whose rows moved skips the multiplies.
template <int kN>
__device__ __forceinline__ void rescale_output(float (&o)[kN / 2], const float (&correction)[2]) {
  constexpr int kGroups = kN / kColumnsPerGroup;
  const bool moved = correction[0] != 1.0f || correction[1] != 1.0f;
  if (!__any_sync(kFullWarpMask, moved)) return;
#pragma unroll
  for (int g = 0; g < kGroups; ++g) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      o[fragment_index(g, half, 0)] *= correction[half];
      o[fragment_index(g, half, 1)] *= correction[half];
    }
  }
}

// ---------------------------------------------------------------- epilogue

// y = O / l and lse = m ln 2 + log l for this thread's rows; rows with no visible key write
// y = 0 and lse = -inf. The arithmetic is the ring finalize's, so that a one-step ring gives
// these bits.
template <typename Element, int kHeadDim>
__device__ __forceinline__ void store_output(const Params& params, const float (&o)[kHeadDim / 2],
                                             const SoftmaxState& state, const RowPlace (&rows)[2],
                                             int64_t b, int64_t h) {
  constexpr int kGroups = kHeadDim / kColumnsPerGroup;
  const int lane_column = 2 * (threadIdx.x % kQuad);
  Element* y = static_cast<Element*>(params.y) + b * params.y_strides[0] + h * params.y_strides[1];
  float* lse =
      static_cast<float*>(params.lse) + b * params.lse_strides[0] + h * params.lse_strides[1];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    if (!rows[half].in_problem) continue;
    const float sum = state.sum[half];
    // A sum of exponentials is 0 only for a row with no visible key; a NaN score makes it NaN,
    // which propagates.
    const bool has_keys = sum != 0.0f;
    const float inverse_sum = has_keys ? 1.0f / sum : 0.0f;
    Element* y_row = y + rows[half].query * params.y_strides[2];
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      const int column = g * kColumnsPerGroup + lane_column;
      if (column < params.d_v) {
        *reinterpret_cast<uint32_t*>(y_row + column) =
            pack_pair<Element>(o[fragment_index(g, half, 0)] * inverse_sum,
                               o[fragment_index(g, half, 1)] * inverse_sum);
      }
    }
    if (params.lse != nullptr && threadIdx.x % kQuad == 0) {
      lse[rows[half].query * params.lse_strides[2]] =
          has_keys ? __fmul_rn(state.max[half], kLn2) + log_of(sum) : -INFINITY;
    }
  }
}

// Merges this thread's rows (O, m, l of this launch) into the running state of the launches
// before, as the portable kernel does: both rescaled to the larger max and summed.
template <int kHeadDim>
__device__ __forceinline__ void merge_into_running_state(const Params& params,
                                                         const float (&o)[kHeadDim / 2],
                                                         const SoftmaxState& state,
                                                         const RowPlace (&rows)[2], int64_t b,
                                                         int64_t h) {
  constexpr int kGroups = kHeadDim / kColumnsPerGroup;
  const int lane_column = 2 * (threadIdx.x % kQuad);
  const RunningState& running = params.running;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int64_t row_offset =
        b * running.row_strides[0] + h * running.row_strides[1] + rows[half].query;
    float* max = static_cast<float*>(running.max) + row_offset;
    float* sum = static_cast<float*>(running.sum) + row_offset;
    const float this_max = state.sum[half] != 0.0f ? __fmul_rn(state.max[half], kLn2) : -INFINITY;
    const float earlier_max = rows[half].in_problem ? *max : -INFINITY;
    const float merged_max = fmaxf(earlier_max, this_max);
    // Every lane of the quad has read max before its first lane overwrites it.
    __syncwarp();
    if (!rows[half].in_problem || merged_max == -INFINITY) continue;
    const float earlier_scale = exp_of(earlier_max - merged_max);
    const float scale = exp_of(this_max - merged_max);
    float* output = static_cast<float*>(running.output) + b * running.output_strides[0] +
                    h * running.output_strides[1] + rows[half].query * running.output_strides[2];
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      const int column = g * kColumnsPerGroup + lane_column;
      if (column < params.d_v) {
#pragma unroll
        for (int pair = 0; pair < 2; ++pair) {
          output[column + pair] =
              output[column + pair] * earlier_scale + o[fragment_index(g, half, pair)] * scale;
        }
      }
    }
    if (threadIdx.x % kQuad == 0) {
      *max = merged_max;
      *sum = *sum * earlier_scale + state.sum[half] * scale;
    }
  }
}

// ---------------------------------------------------------------- the block's work

// The order of the launch's query tiles. The (batch, head) pairs come in groups of
// `group_heads` whose K and V fit in half the L2 cache together (launch_hopper), one group
// after the other, so that the blocks running at one time read keys the L2 holds. Within a group
// the work goes in units, heads fastest, and the persistent blocks take the units in turn
// (blockIdx.x, blockIdx.x + gridDim.x, ...). A unit is one query tile, from the last to the
// first so that under a causal mask the longest start first; or, when `paired`, the query
// tiles t and tiles - 1 - t of one head, the long one first: under a causal mask or a window
// the two see a constant number of key tiles between them, so every block gets about the same
// work where single tiles, the long ones first, leave the blocks that got them the longest
// (benchmarks/NOTES.md, v15).
struct BlockTile {
  int64_t b;
  int64_t h;
  int64_t kv_head;
  int64_t first_row;
  int64_t last_row;  // the tile's last row of the problem
};

// Query tiles of kBlockM rows of one (batch, head), and of the whole launch.
template <int kBlockM>
__host__ __device__ __forceinline__ int64_t query_tiles(const Params& params) {
  return (int64_t{params.query_len} + kBlockM - 1) / kBlockM;
}

template <int kBlockM>
__host__ __device__ __forceinline__ int64_t tile_count(const Params& params) {
  return int64_t{params.batch_size} * params.num_heads * query_tiles<kBlockM>(params);
}

// Units of one (batch, head), and of the whole launch.
template <int kBlockM>
__host__ __device__ __forceinline__ int64_t head_units(const Params& params,
                                                       const TileOrder& order) {
  const int64_t tiles = query_tiles<kBlockM>(params);
  return order.paired ? (tiles + 1) / 2 : tiles;
}

template <int kBlockM>
__host__ __device__ __forceinline__ int64_t unit_count(const Params& params,
                                                       const TileOrder& order) {
  return int64_t{params.batch_size} * params.num_heads * head_units<kBlockM>(params, order);
}

// Unit `index`: its (batch, head) as one index over B x H, and its rank among the head's units.
struct Unit {
  int64_t head_index;
  int64_t rank;
};

template <int kBlockM>
__device__ __forceinline__ Unit unit_at(const Params& params, const TileOrder& order,
                                        int64_t index) {
  const int64_t heads = int64_t{params.batch_size} * params.num_heads;
  const int64_t units = head_units<kBlockM>(params, order);
  const int64_t group = index / (order.group_heads * units);
  const int64_t first_head = group * order.group_heads;
  const int64_t heads_in_group = min(int64_t{order.group_heads}, heads - first_head);
  const int64_t in_group = index - first_head * units;
  return {first_head + in_group % heads_in_group, in_group / heads_in_group};
}

// The query tiles of a unit: one, or two when paired and the unit is not the middle tile of an
// odd count; part 0 is the later (longer) tile.
template <int kBlockM>
__device__ __forceinline__ int unit_parts(const Params& params, const TileOrder& order,
                                          const Unit& unit) {
  const int64_t tiles = query_tiles<kBlockM>(params);
  return order.paired && tiles - 1 - unit.rank != unit.rank ? 2 : 1;
}

template <int kBlockM>
__device__ __forceinline__ BlockTile block_tile(const Params& params, const Unit& unit, int part) {
  const int64_t tiles = query_tiles<kBlockM>(params);
  const int64_t query_tile = part == 0 ? tiles - 1 - unit.rank : unit.rank;
  BlockTile tile;
  tile.first_row = query_tile * kBlockM;
  tile.last_row = min(tile.first_row + kBlockM, int64_t{params.query_len}) - 1;
  tile.h = unit.head_index % params.num_heads;
  tile.b = unit.head_index / params.num_heads;
  tile.kv_head = tile.h / (params.num_heads / params.num_heads_k);
  return tile;
}

// The key tiles the block's rows can see, [begin, end) in tiles of kBlockN keys, and within them
// the tiles [unlimited_begin, unlimited_end) where no row has a causal / window / length limit:
// only the tiles outside that range test keys against the limits. Tile indices fit int32
// (key_len does).
struct KeyTiles {
  int32_t begin;
  int32_t end;
  int32_t unlimited_begin;
  int32_t unlimited_end;

  __device__ __forceinline__ bool needs_limits(int32_t n) const {
    return n < unlimited_begin || n >= unlimited_end;
  }
};

template <int kBlockN>
__device__ __forceinline__ KeyTiles key_tiles(const ScoreModifiers& modifiers,
                                              const BlockTile& tile, int64_t key_len) {
  // The keys some row sees: [first_key, end_key); the keys every row sees: [all_first,
  // all_end).
  const int64_t first_key =
      max(int64_t{0}, tile.first_row + modifiers.offset - modifiers.window_left);
  const int64_t end_key =
      min(key_len, tile.last_row + modifiers.offset + modifiers.window_right + 1);
  const int64_t all_first =
      min(key_len, max(int64_t{0}, tile.last_row + modifiers.offset - modifiers.window_left));
  const int64_t all_end =
      max(int64_t{0}, min(key_len, tile.first_row + modifiers.offset + modifiers.window_right + 1));
  KeyTiles tiles;
  tiles.begin = static_cast<int32_t>(first_key / kBlockN);
  tiles.end =
      end_key > first_key ? static_cast<int32_t>((end_key + kBlockN - 1) / kBlockN) : tiles.begin;
  // Whole tiles inside [all_first, all_end): the first that starts at or after all_first, up
  // to the last that ends at or before all_end.
  tiles.unlimited_begin = static_cast<int32_t>((all_first + kBlockN - 1) / kBlockN);
  tiles.unlimited_end = static_cast<int32_t>(all_end / kBlockN);
  return tiles;
}

// A TMA coordinate on a batch or head axis: a broadcast axis (stride 0) is read at 0.
__device__ __forceinline__ int32_t axis_coordinate(int64_t stride, int64_t index) {
  return stride == 0 ? 0 : static_cast<int32_t>(index);
}

// Stage and mbarrier phase of the iteration-th tile of a K or V ring of kStages stages.
template <int kStages>
struct PipelineSlot {
  int stage;
  uint32_t phase;
  // Ring positions are never negative; unsigned, the division by kStages is a shift.
  __device__ __forceinline__ explicit PipelineSlot(uint32_t iteration)
      : stage(static_cast<int>(iteration % kStages)), phase((iteration / kStages) & 1u) {}
};

// One K or V tile by TMA: waits until the consumers have released the stage, then loads the
// tile's head-dim chunks, completing on the stage's full barrier.
template <int kHeadDim>
__device__ __forceinline__ void load_key_tile(const CUtensorMap* map, uint64_t* full,
                                              uint64_t* empty, uint16_t* tile,
                                              PipelineSlot<TileConfig<kHeadDim>::kStages> slot,
                                              int32_t key0, int32_t head, int32_t batch) {
  using Config = TileConfig<kHeadDim>;
  // TMA counts a box's zero-filled elements among the bytes it delivers.
  constexpr uint32_t kBytes = Config::kBlockN * Config::kTileColumns * kTmaElementBytes;
  constexpr int kChunk = Config::kBlockN * kTmaChunkElements;
  // A stage's first use waits on the phase before the barrier's first: it passes at once.
  Barrier::wait(&empty[slot.stage], slot.phase ^ 1u);
  Barrier::arrive_and_expect_tx(&full[slot.stage], kBytes);
#pragma unroll
  for (int c = 0; c < Config::kChunks; ++c) {
    cute::SM90_TMA_LOAD_4D::copy(
        map, &full[slot.stage], kEvictNormal,
        tile + slot.stage * Config::kBlockN * Config::kTileColumns + c * kChunk,
        c * kTmaChunkElements, key0, head, batch);
  }
}

// The producer thread, for one query tile: its Q (once the consumers are done with the Q of
// the block's previous tile), then K and V tiles in the order the consumers use them (K0, K1,
// V0, K2, V1, ...), each into its own ring of stages. The rings run on across the block's
// tiles: `ring_position` and `q_parity` say where (for_each_tile).
template <int kHeadDim>
__device__ __forceinline__ void produce(const HopperParams& hp, SharedStorage<kHeadDim>& shared,
                                        const BlockTile& tile, const KeyTiles& tiles,
                                        int32_t ring_position, int32_t q_parity) {
  using Config = TileConfig<kHeadDim>;
  using Slot = PipelineSlot<Config::kStages>;
  const Params& params = hp.params;
  constexpr uint32_t kQBytes = Config::kBlockM * Config::kTileColumns * kTmaElementBytes;
  constexpr int kQChunk = Config::kBlockM * kTmaChunkElements;

  const int32_t q_batch = axis_coordinate(params.q_strides[0], tile.b);
  const int32_t q_head = axis_coordinate(params.q_strides[1], tile.h);
  // The first Q load waits on the phase before the barrier's first: it passes at once.
  Barrier::wait(&shared.q_empty, static_cast<uint32_t>(q_parity) ^ 1u);
  Barrier::arrive_and_expect_tx(&shared.q_full, kQBytes);
#pragma unroll
  for (int c = 0; c < Config::kChunks; ++c) {
    cute::SM90_TMA_LOAD_4D::copy(&hp.q_map, &shared.q_full, kEvictNormal, shared.q + c * kQChunk,
                                 c * kTmaChunkElements, static_cast<int32_t>(tile.first_row),
                                 q_head, q_batch);
  }

  const int32_t k_batch = axis_coordinate(params.k_strides[0], tile.b);
  const int32_t k_head = axis_coordinate(params.k_strides[1], tile.kv_head);
  const int32_t v_batch = axis_coordinate(params.v_strides[0], tile.b);
  const int32_t v_head = axis_coordinate(params.v_strides[1], tile.kv_head);
  // Key tiles per query tile fit in 32 bits (key_len is an int32).
  const auto key0 = [&](int32_t iteration) { return (tiles.begin + iteration) * Config::kBlockN; };
  const auto slot = [&](int32_t iteration) {
    return Slot(static_cast<uint32_t>(ring_position + iteration));
  };
  const int32_t count = tiles.end - tiles.begin;
  for (int32_t iteration = 0; iteration <= count; ++iteration) {
    if (iteration < count) {
      load_key_tile<kHeadDim>(&hp.k_map, shared.k_full, shared.k_empty, &shared.k[0][0],
                              slot(iteration), key0(iteration), k_head, k_batch);
    }
    if (iteration > 0) {
      load_key_tile<kHeadDim>(&hp.v_map, shared.v_full, shared.v_empty, &shared.v[0][0],
                              slot(iteration - 1), key0(iteration - 1), v_head, v_batch);
    }
  }
}

// Ping-pong of the consumer warpgroups: they take turns to issue their GEMMs, in order, so that
// the others' softmax runs while the tensor cores work for one. Warpgroup c waits on its named
// barrier before it issues and then signals the next one's (c + 1, the last the first's). Each
// issues count + 1 times per query tile, so the turns run on from one tile to the next: the
// first warpgroup starts a tile's GEMMs as soon as the last has issued its last of the tile
// before, while the others still store their rows. The last warpgroup opens the first one's
// barrier once, before the block's first GEMM, and the first takes the turn that the last
// passes after the block's last (Turns).
constexpr uint32_t kTurnThreads = 2 * kWarpgroupThreads;

__device__ __forceinline__ uint32_t turn_barrier(int consumer) {
  return static_cast<uint32_t>(consumer);  // CUTLASS user barriers 0 .. consumers - 1
}

// A consumer warpgroup's part of the turns over the block's tiles: whether they have started
// (the first query tile with a key tile), so that the opening pass comes once and the closing
// wait only after one.
template <typename Config>
struct Turns {
  int consumer;
  bool started = false;

  __device__ __forceinline__ void begin_tile() {
    if (!Config::kTakeTurns || started) return;
    started = true;
    if (consumer == Config::kConsumers - 1) pass();
  }
  __device__ __forceinline__ void take() {
    if constexpr (Config::kTakeTurns) wait();
  }
  __device__ __forceinline__ void end() {
    if constexpr (Config::kTakeTurns) pass();
  }
  // After the block's last tile: the last warpgroup's last pass is the first one's to take.
  __device__ __forceinline__ void finish() {
    if (Config::kTakeTurns && started && consumer == 0) wait();
  }

 private:
  __device__ __forceinline__ void wait() const {
    cutlass::arch::NamedBarrier::sync(kTurnThreads, turn_barrier(consumer));
  }
  __device__ __forceinline__ void pass() const {
    cutlass::arch::NamedBarrier::arrive(kTurnThreads,
                                        turn_barrier((consumer + 1) % Config::kConsumers));
  }
};

// Hands a stage back to the producer: one arrival per consumer warp, once each of its lanes
// is past the wgmma wait that finished reading it.
__device__ __forceinline__ void release_stage(uint64_t* empty) {
  __syncwarp();
  if (threadIdx.x % kWarpSize == 0) Barrier::arrive(empty);
}

// A consumer warpgroup, for one query tile. The softmax of one key tile overlaps a GEMM of the
// key tile before: each iteration issues S(n) = Q K(n)^T and O += P(n - 1) V(n - 1) together,
// and runs the softmax of tile n while the P V GEMM of tile n - 1 is still in flight.
// `ring_position` and `q_parity` are the producer's (for_each_tile).
template <typename Element, int kHeadDim, ScorePath kPath>
__device__ __forceinline__ void consume(const Params& params, SharedStorage<kHeadDim>& shared,
                                        const BlockTile& tile, const KeyTiles& tiles,
                                        Turns<TileConfig<kHeadDim>>& turns, bool stage_mask,
                                        int32_t ring_position, int32_t q_parity) {
  const int consumer = turns.consumer;
  const int32_t count = tiles.end - tiles.begin;
  using Config = TileConfig<kHeadDim>;
  using Slot = PipelineSlot<Config::kStages>;
  // The ring slot of this tile's key tile `iteration`.
  const auto slot = [&](int32_t iteration) {
    return Slot(static_cast<uint32_t>(ring_position + iteration));
  };
  constexpr int kBlockN = Config::kBlockN;
  constexpr int kSRegisters = kBlockN / 2;
  constexpr int kORegisters = kHeadDim / 2;
  constexpr int kQkSteps = kHeadDim / kMmaK;
  constexpr int kPvSteps = kBlockN / kMmaK;
  using Qk = QkMma<Element, kBlockN>;
  using Pv = PvMma<Element, kHeadDim>;

  const int warp_in_group = (threadIdx.x % kWarpgroupThreads) / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int wgmma_row0 = consumer * kMmaRows;
  // This thread's first accumulator row (queries fit int32).
  const int32_t query0 = static_cast<int32_t>(tile.first_row) + wgmma_row0 +
                         warp_in_group * kRowsPerWarp + lane / kQuad;
  const HeadScores scores = head_scores(params.modifiers, tile.b, tile.h);

  float o[kORegisters];
#pragma unroll
  for (int r = 0; r < kORegisters; ++r) o[r] = 0.0f;
  SoftmaxState state = {{-INFINITY, -INFINITY}, {0.0f, 0.0f}};
  float s[kSRegisters];
  uint32_t p[kPvSteps][4];

  // Operand descriptors of the first k-step: Q's rows of this warpgroup, and stage 0 of the K
  // and V rings (the stages lie kStageBytes apart).
  constexpr uint32_t kStageBytes = kBlockN * Config::kTileColumns * kTmaElementBytes;
  const uint64_t q_operand = opaque_descriptor(k_major_operand(shared.q, wgmma_row0));
  const uint64_t k_operand = opaque_descriptor(k_major_operand(shared.k[0], 0));
  const uint64_t v_operand = opaque_descriptor(n_major_operand(shared.v[0], kBlockN));

  // S = Q K^T of one tile, issued (asynchronous).
  const auto issue_scores = [&](Slot slot) {
    Barrier::wait(&shared.k_full[slot.stage], slot.phase);
    const uint64_t k_stage = advance_descriptor(k_operand, slot.stage * kStageBytes);
    fence_accumulators(s);
    cute::warpgroup_arrive();
#pragma unroll
    for (int step = 0; step < kQkSteps; ++step) {
      mma_smem_smem<Qk>(advance_descriptor(q_operand, k_major_step_bytes<Config::kBlockM>(step)),
                        advance_descriptor(k_stage, k_major_step_bytes<kBlockN>(step)), s,
                        step == 0 ? gmma::ScaleOut::Zero : gmma::ScaleOut::One,
                        std::make_index_sequence<kSRegisters>{});
    }
    cute::warpgroup_commit_batch();
  };
  // O += P V of one tile, issued (asynchronous); P stays in its registers until it completes.
  const auto issue_output = [&](Slot slot) {
    Barrier::wait(&shared.v_full[slot.stage], slot.phase);
    const uint64_t v_stage = advance_descriptor(v_operand, slot.stage * kStageBytes);
    fence_accumulators(o);
    cute::warpgroup_arrive();
#pragma unroll
    for (int step = 0; step < kPvSteps; ++step) {
      mma_regs_smem<Pv>(p[step], advance_descriptor(v_stage, n_major_step_bytes(step)), o,
                        std::make_index_sequence<kORegisters>{});
    }
    cute::warpgroup_commit_batch();
  };
  // On the kModified path with a staged mask, the copy of tile n + 1's mask values runs while
  // tile n goes through the GEMMs; it is issued once the softmax of tile n has used every value
  // of the stage (its sums depend on them all). The stage's address is derived where it is used,
  // so that the tile loop holds no register for it.
  const bool staged = kPath == ScorePath::kModified && stage_mask;
  const auto mask_stage = [&]() { return staged ? shared.mask[consumer] : nullptr; };
  const auto copy_mask = [&](int32_t iteration) {
    if (staged && iteration < count) {
      copy_mask_tile<kBlockN>(mask_stage(), scores, params, query0,
                              (tiles.begin + iteration) * kBlockN);
    }
  };
  // Scores and online softmax of tile `iteration` once its S has arrived; returns O's
  // correction.
  const auto softmax = [&](int32_t iteration, float (&correction)[2]) {
    fence_accumulators(s);
    const int32_t n = tiles.begin + iteration;
    if (staged) copy_async_wait_all();
    score_tile<kBlockN, kPath>(s, scores, params, query0, n * kBlockN, tiles.needs_limits(n),
                               mask_stage());
    online_softmax_update<kBlockN>(state, s, exponent_scale<kPath>(scores), correction);
    copy_mask(iteration + 1);
  };
  // P in 16 bits: the accumulator layout of S is the register layout of wgmma's A operand,
  // two column groups per k-step.
  const auto convert_probabilities = [&]() {
#pragma unroll
    for (int step = 0; step < kPvSteps; ++step) {
#pragma unroll
      for (int part = 0; part < 4; ++part) {
        p[step][part] = pack_pair<Element>(s[fragment_index(2 * step + part / 2, part % 2, 0)],
                                           s[fragment_index(2 * step + part / 2, part % 2, 1)]);
      }
    }
  };
  const auto output_done = [&]() {
    fence_accumulators(o);
#pragma unroll
    for (int step = 0; step < kPvSteps; ++step) {
#pragma unroll
      for (int part = 0; part < 4; ++part) cute::warpgroup_fence_operand(p[step][part]);
    }
  };

  if (count > 0) turns.begin_tile();

  // The correction of the last softmax: O takes it just before its next P V, while the
  // tensor cores work on the Q K^T issued just before.
  float correction[2];
  if (count > 0) {
    copy_mask(0);
    Barrier::wait(&shared.q_full, static_cast<uint32_t>(q_parity));
    turns.take();
    issue_scores(slot(0));
    turns.end();
    cute::warpgroup_wait<0>();
    release_stage(&shared.k_empty[slot(0).stage]);
    if (count == 1) release_stage(&shared.q_empty);  // the tile's last read of Q
    softmax(0, correction);
    convert_probabilities();
  }
  for (int32_t iteration = 1; iteration < count; ++iteration) {
    // 1. S(n) = Q K(n)^T in flight; O takes the correction of tile n - 1 (relative to its max
    //    now, as P(n - 1) is), then O += P(n-1) V(n-1) in flight too.
    turns.take();
    issue_scores(slot(iteration));
    rescale_output<kHeadDim>(o, correction);
    issue_output(slot(iteration - 1));
    turns.end();
    // 2. Softmax of tile n while O += P V runs; K(n) is free once S has arrived.
    cute::warpgroup_wait<1>();
    release_stage(&shared.k_empty[slot(iteration).stage]);
    // The tile's last read of Q is done. On the kScaled path Q is released after the softmax
    // instead: the release's branch ends the softmax's basic block, so that ptxas cannot hoist
    // the wait of step 3 above the softmax, which it does within one block (the softmax then
    // runs after its own P V GEMM instead of beside it; benchmarks/NOTES.md, v18). On the
    // kModified path the mask copy's branch ends the block, and the later release costs a spill.
    const bool last_q_read = iteration == count - 1;
    if (kPath == ScorePath::kModified && last_q_read) release_stage(&shared.q_empty);
    softmax(iteration, correction);
    if (kPath == ScorePath::kScaled && last_q_read) release_stage(&shared.q_empty);
    // 3. Once P(n-1) V(n-1) is done: V(n-1) is free and P(n) replaces P.
    cute::warpgroup_wait<0>();
    output_done();
    release_stage(&shared.v_empty[slot(iteration - 1).stage]);
    convert_probabilities();
  }
  if (count > 0) {
    turns.take();
    rescale_output<kHeadDim>(o, correction);
    issue_output(slot(count - 1));
    turns.end();
    cute::warpgroup_wait<0>();
    output_done();
    release_stage(&shared.v_empty[slot(count - 1).stage]);
  }

#pragma unroll
  for (int half = 0; half < 2; ++half) {
    state.sum[half] = quad_sum(state.sum[half]);
    state.max[half] *= exponent_scale<kPath>(scores);  // to log2 units
  }
  RowPlace rows[2];
  thread_rows(params, query0, rows);
  if (params.running.output != nullptr) {
    merge_into_running_state<kHeadDim>(params, o, state, rows, tile.b, tile.h);
  } else {
    store_output<Element, kHeadDim>(params, o, state, rows, tile.b, tile.h);
  }
}

// Walks this block's tiles (those of the units blockIdx.x, blockIdx.x + gridDim.x, ...) with,
// for each, the key tiles its rows see, where the K / V rings stand (the key tiles of the block's
// tiles before, kept modulo the two phases of every stage: all a ring slot depends on) and the
// parity of the Q loads before (tiles with at least one key tile).
template <typename Config, typename Body>
__device__ __forceinline__ void for_each_tile(const HopperParams& hp, Body&& body) {
  const Params& params = hp.params;
  constexpr int32_t kRingPeriod = 2 * Config::kStages;
  int32_t ring_position = 0;
  int32_t q_parity = 0;
  // The plan's grid check bounds the tiles (B x H x query tiles), and so the units, by INT_MAX.
  constexpr int kBlockM = Config::kBlockM;
  const int32_t total = static_cast<int32_t>(unit_count<kBlockM>(params, hp.order));
  for (int32_t index = blockIdx.x; index < total; index += gridDim.x) {
    const Unit unit = unit_at<kBlockM>(params, hp.order, index);
    const int parts = unit_parts<kBlockM>(params, hp.order, unit);
    for (int part = 0; part < parts; ++part) {
      const BlockTile tile = block_tile<kBlockM>(params, unit, part);
      const KeyTiles tiles = key_tiles<Config::kBlockN>(params.modifiers, tile, params.key_len);
      body(tile, tiles, ring_position, q_parity);
      const int32_t count = tiles.end - tiles.begin;
      ring_position = (ring_position + count % kRingPeriod) % kRingPeriod;
      q_parity ^= count > 0 ? 1 : 0;
    }
  }
}

template <typename Element, int kHeadDim>
__global__ void __launch_bounds__(TileConfig<kHeadDim>::kThreads, 1)
    flash_sdpa_hopper_kernel(const __grid_constant__ HopperParams hp) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Config = TileConfig<kHeadDim>;
  extern __shared__ unsigned char shared_raw[];
  const uintptr_t aligned = (reinterpret_cast<uintptr_t>(shared_raw) + kSwizzleAtomBytes - 1) &
                            ~static_cast<uintptr_t>(kSwizzleAtomBytes - 1);
  SharedStorage<kHeadDim>& shared = *reinterpret_cast<SharedStorage<kHeadDim>*>(aligned);

  const Params& params = hp.params;

  if (threadIdx.x == 0) {
    Barrier::init(&shared.q_full, 1);
    Barrier::init(&shared.q_empty, Config::kConsumerWarps);
#pragma unroll
    for (int stage = 0; stage < Config::kStages; ++stage) {
      Barrier::init(&shared.k_full[stage], 1);
      Barrier::init(&shared.v_full[stage], 1);
      Barrier::init(&shared.k_empty[stage], Config::kConsumerWarps);
      Barrier::init(&shared.v_empty[stage], Config::kConsumerWarps);
    }
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();

  // Persistent blocks: each takes the tiles blockIdx.x, blockIdx.x + gridDim.x, ... The
  // producer and the consumers walk the same tiles, so they agree on the ring positions and on
  // the Q loads; each role has its own loop, inside its register budget.
  // Read from lane 0, the warpgroup index is known to be warp-uniform: the compiler can keep
  // what derives from it (the consumer's Q descriptor) in uniform registers.
  const int warpgroup = __shfl_sync(kFullWarpMask, threadIdx.x / kWarpgroupThreads, 0);
  if (warpgroup == 0) {
    cutlass::arch::warpgroup_reg_dealloc<kProducerRegisters>();
    if (threadIdx.x == 0) {
      for_each_tile<Config>(hp, [&](const BlockTile& tile, const KeyTiles& tiles,
                                    int32_t ring_position, int32_t q_parity) {
        if (tiles.end > tiles.begin) {
          produce<kHeadDim>(hp, shared, tile, tiles, ring_position, q_parity);
        }
      });
    }
  } else {
    cutlass::arch::warpgroup_reg_alloc<Config::kConsumerRegisters>();
    const auto consume_tiles = [&](auto path) {
      Turns<Config> turns{warpgroup - 1};
      for_each_tile<Config>(hp, [&](const BlockTile& tile, const KeyTiles& tiles,
                                    int32_t ring_position, int32_t q_parity) {
        consume<Element, kHeadDim, decltype(path)::value>(
            params, shared, tile, tiles, turns, hp.stage_mask != 0, ring_position, q_parity);
      });
      turns.finish();
    };
    if (score_path(params.modifiers) == ScorePath::kScaled) {
      consume_tiles(std::integral_constant<ScorePath, ScorePath::kScaled>{});
    } else {
      consume_tiles(std::integral_constant<ScorePath, ScorePath::kModified>{});
    }
  }
#endif
}

}  // namespace hopper

template <typename Element, int kHeadDimBucket>
baracuda_status prepare_hopper(const DeviceInfo& device, const char* op) {
  static PreparedDevices prepared{0};
  return prepare_kernel(
      prepared, device,
      reinterpret_cast<const void*>(hopper::flash_sdpa_hopper_kernel<Element, kHeadDimBucket>),
      hopper::shared_bytes<kHeadDimBucket>(true), "hopper", "flash_sdpa_hopper_kernel",
      kHeadDimBucket, op);
}

// The tile order of a launch on `multiprocessors` persistent blocks (hopper::unit_at).
//  - Heads per group: as many (batch, head) pairs as have their K and V in half the L2 cache,
//    query heads of one K / V head (GQA) counting once between them.
//  - Pairs when a causal mask or a window makes the query tiles see different numbers of key
//    tiles and some block takes more than one tile; with one tile per block, pairs would only
//    halve the blocks.
template <int kBlockM>
hopper::TileOrder tile_order(const Params& params, int multiprocessors, int l2_bytes) {
  const int64_t kv_bytes = int64_t{params.key_len} * (params.d_k + params.d_v) * kTmaElementBytes;
  const int64_t heads_per_kv_head = params.num_heads / params.num_heads_k;
  const int64_t heads = int64_t{params.batch_size} * params.num_heads;
  const int64_t group =
      (int64_t{l2_bytes} / 2) * heads_per_kv_head / std::max<int64_t>(kv_bytes, 1);
  const ScoreModifiers& modifiers = params.modifiers;
  const bool lengths_vary =
      modifiers.window_left < kUnboundedWindow || modifiers.window_right < kUnboundedWindow;
  hopper::TileOrder order;
  order.group_heads = static_cast<int32_t>(std::clamp<int64_t>(group, 1, heads));
  order.paired = lengths_vary && hopper::tile_count<kBlockM>(params) > multiprocessors ? 1 : 0;
  return order;
}

// Whether the consumers can copy the mask's values in 8-byte pairs (hopper::copy_mask_tile):
// keys adjacent in memory and every row of every (batch, head) on 8 bytes.
inline bool mask_stageable(const ScoreModifiers& modifiers) {
  if (modifiers.mask == nullptr || modifiers.mask_strides[3] != 1) return false;
  const bool even_strides = modifiers.mask_strides[0] % 2 == 0 &&
                            modifiers.mask_strides[1] % 2 == 0 &&
                            modifiers.mask_strides[2] % 2 == 0;
  return even_strides && reinterpret_cast<uintptr_t>(modifiers.mask) % sizeof(float2) == 0;
}

template <typename Element, int kHeadDimBucket>
baracuda_status launch_hopper(const Params& params, baracuda_stream stream, const char* op) {
  using Config = hopper::TileConfig<kHeadDimBucket>;
  if (hopper::tile_count<Config::kBlockM>(params) == 0) return BARACUDA_STATUS_SUCCESS;

  const baracuda_element element =
      std::is_same_v<Element, __nv_bfloat16> ? BARACUDA_ELEMENT_BF16 : BARACUDA_ELEMENT_F16;
  const TmaOperands operands = tma_operands(params);
  hopper::HopperParams hp;
  hp.params = params;
  baracuda_status status =
      encode_tma_operand(&hp.q_map, operands.q, element, Config::kBlockM, op, "q");
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = encode_tma_operand(&hp.k_map, operands.k, element, Config::kBlockN, op, "k");
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = encode_tma_operand(&hp.v_map, operands.v, element, Config::kBlockN, op, "v");
  if (status != BARACUDA_STATUS_SUCCESS) return status;

  // One persistent block per SM (the kernel's shared memory holds one per SM), never more
  // blocks than units of work.
  int device = 0;
  int multiprocessors = 0;
  int l2_bytes = 0;
  status = check_cuda(cudaGetDevice(&device), op, "cudaGetDevice");
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status =
      check_cuda(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device),
                 op, "cudaDeviceGetAttribute(MultiProcessorCount)");
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = check_cuda(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device), op,
                      "cudaDeviceGetAttribute(L2CacheSize)");
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  hp.order = tile_order<Config::kBlockM>(params, multiprocessors, l2_bytes);
  hp.stage_mask = mask_stageable(params.modifiers) ? 1 : 0;
  const int64_t grid =
      std::min<int64_t>(hopper::unit_count<Config::kBlockM>(params, hp.order), multiprocessors);
  hopper::flash_sdpa_hopper_kernel<Element, kHeadDimBucket>
      <<<static_cast<unsigned>(grid), Config::kThreads,
         hopper::shared_bytes<kHeadDimBucket>(hp.stage_mask != 0), stream>>>(hp);
  return check_cuda(cudaGetLastError(), op, "launch of flash_sdpa_hopper_kernel");
}

}  // namespace baracuda::flash_sdpa
