// Score modifiers of one (query i, key j) pair, shared by every kernel family.
// Order (baracuda.h): s = scale * q.k, softcap, ALiBi, additive mask, causal / window limits.
#pragma once

#include <cmath>
#include <cstdint>

#include "flash_sdpa/flash_sdpa_params.h"

namespace baracuda::flash_sdpa {

template <typename Compute>
__device__ __forceinline__ Compute negative_infinity() {
  return -static_cast<Compute>(INFINITY);
}

// Whether key j lies inside query i's causal / sliding window.
__device__ __forceinline__ bool key_is_visible(const ScoreModifiers& modifiers, int64_t i,
                                               int64_t j) {
  const int64_t diagonal = i + modifiers.offset;
  return j >= diagonal - modifiers.window_left && j <= diagonal + modifiers.window_right;
}

// The per-(batch, head) part of the modifiers, read once per block.
template <typename Compute>
struct HeadModifiers {
  Compute scale;
  Compute softcap;             // 0 disables
  Compute alibi_slope;         // 0 when ALiBi is off
  const float* mask_row_base;  // mask at (b, h, 0, 0), nullptr when there is no mask
};

template <typename Compute>
__device__ __forceinline__ HeadModifiers<Compute> head_modifiers(const ScoreModifiers& modifiers,
                                                                 int64_t b, int64_t h) {
  HeadModifiers<Compute> head;
  head.scale = static_cast<Compute>(modifiers.scale);
  head.softcap = static_cast<Compute>(modifiers.softcap);
  head.alibi_slope =
      modifiers.alibi_slopes == nullptr
          ? Compute(0)
          : static_cast<Compute>(modifiers.alibi_slopes[b * modifiers.alibi_strides[0] +
                                                        h * modifiers.alibi_strides[1]]);
  head.mask_row_base = modifiers.mask == nullptr ? nullptr
                                                 : modifiers.mask + b * modifiers.mask_strides[0] +
                                                       h * modifiers.mask_strides[1];
  return head;
}

__device__ __forceinline__ float tanh_of(float x) {
  return tanhf(x);
}
__device__ __forceinline__ double tanh_of(double x) {
  return tanh(x);
}

// s = scale * dot, then softcap, ALiBi and mask; -inf outside the causal / window limits.
template <typename Compute>
__device__ __forceinline__ Compute modified_score(Compute dot, const ScoreModifiers& modifiers,
                                                  const HeadModifiers<Compute>& head, int64_t i,
                                                  int64_t j) {
  if (!key_is_visible(modifiers, i, j)) return negative_infinity<Compute>();
  Compute s = head.scale * dot;
  if (head.softcap > Compute(0)) s = head.softcap * tanh_of(s / head.softcap);
  if (head.alibi_slope != Compute(0)) {
    const int64_t distance = i + modifiers.offset - j;
    s -= head.alibi_slope * static_cast<Compute>(distance < 0 ? -distance : distance);
  }
  if (head.mask_row_base != nullptr) {
    s += static_cast<Compute>(
        head.mask_row_base[i * modifiers.mask_strides[2] + j * modifiers.mask_strides[3]]);
  }
  return s;
}

}  // namespace baracuda::flash_sdpa
