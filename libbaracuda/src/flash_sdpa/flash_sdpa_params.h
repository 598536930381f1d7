// What a flash-attention launch needs, in a form every kernel family reads: pointers,
// extents, strides in elements (64-bit), and the run-time score modifiers.
#pragma once

#include <cstdint>

#include "baracuda/baracuda.h"

namespace baracuda::flash_sdpa {

// A window side that is unbounded; large enough that i + offset -/+ it never wraps.
constexpr int64_t kUnboundedWindow = int64_t{1} << 62;

// Run-time score modifiers, applied in this order to s = scale * q.k (see baracuda.h):
// softcap, ALiBi, additive mask, then the causal / window limits.
struct ScoreModifiers {
  double scale = 1.0;
  double softcap = 0.0;                 // 0 disables
  const float* alibi_slopes = nullptr;  // [B|1, H], nullptr disables
  int64_t alibi_strides[2] = {0, 0};    // batch, head (0 on a broadcast axis)
  const float* mask = nullptr;          // [B|1, H|1, Sq|1, Sk|1], nullptr disables
  int64_t mask_strides[4] = {0, 0, 0, 0};
  int64_t window_left = kUnboundedWindow;   // key j is visible when
  int64_t window_right = kUnboundedWindow;  //   i + offset - left <= j <= i + offset + right
  int64_t offset = 0;                       // 0 top-left, Sk - Sq bottom-right
};

struct Params {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* y = nullptr;
  void* lse = nullptr;
  int32_t batch_size = 0;
  int32_t num_heads = 0;
  int32_t num_heads_k = 0;
  int32_t query_len = 0;
  int32_t key_len = 0;
  int32_t d_k = 0;
  int32_t d_v = 0;
  int64_t q_strides[4] = {};
  int64_t k_strides[4] = {};
  int64_t v_strides[4] = {};
  int64_t y_strides[4] = {};
  int64_t lse_strides[3] = {};
  ScoreModifiers modifiers;
};

}  // namespace baracuda::flash_sdpa
