// What a flash-attention launch needs, in a form every kernel family reads: pointers,
// extents, strides in elements (64-bit), and the run-time score modifiers.
#pragma once

#include <cstdint>

#include "baracuda/baracuda.h"
#include "common/tensor_check.h"

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

// The window of `modifiers` from a descriptor's bounds: BARACUDA_WINDOW_UNBOUNDED sides become
// kUnboundedWindow, and causal closes the right side at the diagonal.
inline void set_window(ScoreModifiers& modifiers, int32_t window_size_left,
                       int32_t window_size_right, bool is_causal) {
  modifiers.window_left =
      window_size_left == BARACUDA_WINDOW_UNBOUNDED ? kUnboundedWindow : window_size_left;
  modifiers.window_right =
      window_size_right == BARACUDA_WINDOW_UNBOUNDED ? kUnboundedWindow : window_size_right;
  if (is_causal && modifiers.window_right > 0) modifiers.window_right = 0;
}

// The ALiBi slopes of `modifiers` from an f32 [1|B, H] tensor (absent: ALiBi stays off).
inline void set_alibi_slopes(ScoreModifiers& modifiers, const baracuda_tensor& slopes) {
  if (!is_present(slopes)) return;
  modifiers.alibi_slopes = static_cast<const float*>(slopes.data);
  for (int axis = 0; axis < 2; ++axis) {
    modifiers.alibi_strides[axis] = broadcast_stride(slopes, axis);
  }
}

// Each query row's online-softmax state kept between launches, for callers that fold the keys
// in over several launches (ring attention steps). When `output` is set the kernel merges its
// rows' (o, m, l) into the state here instead of writing y and lse. All three are in the
// compute type (f32, or f64 for f64), rows and dims contiguous.
struct RunningState {
  void* output = nullptr;          // o [B, H, Sq, Dv]: unnormalised sum of p V
  void* max = nullptr;             // m [B, H, Sq]: running maximum score
  void* sum = nullptr;             // l [B, H, Sq]: running sum of exp(score - m)
  int64_t output_strides[3] = {};  // batch, head, row
  int64_t row_strides[2] = {};     // batch, head (of m and l)
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
  RunningState running;
};

}  // namespace baracuda::flash_sdpa
