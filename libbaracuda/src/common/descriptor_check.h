// Descriptor checks shared by the plans: each checks one field (or one group of score options)
// and names it in the house form "<op>: <field> <what> (got X, expected Y)".
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "baracuda/baracuda.h"

namespace baracuda {

// Head dims every backend supports: 8 to 256 in steps of 8.
constexpr int kMinHeadDim = 8;
constexpr int kMaxHeadDim = 256;
constexpr int kHeadDimStep = 8;

struct NamedExtent {
  const char* field;
  int32_t value;
};

baracuda_status check_element(const char* op, baracuda_element element);

// Each extent must be >= 0; names the first that is not.
baracuda_status check_extents(const char* op, const NamedExtent* extents, size_t count);

// scale finite, softcap finite and >= 0, is_causal 0 or 1, window bounds >= 0 or unbounded;
// then scale and softcap within the range of the compute type of `element` (f32 for f16, bf16
// and f32; f64 for f64), so that the constants the kernels derive from them (scale log2(e),
// softcap log2(e), scale / softcap) are finite there and a softcap never rounds to 0 (off).
// An invalid element skips the range check (check_element names it).
baracuda_status check_score_options(const char* op, baracuda_element element, double scale,
                                    double softcap, int32_t is_causal, int32_t window_size_left,
                                    int32_t window_size_right);

// size = the product of the non-negative factors, times unit_bytes (1 for a count of
// elements); INVALID_PROBLEM naming `what` when it does not fit in int64. Every size that
// the plans and seed entry points derive from extents goes through this.
baracuda_status checked_size(const char* op, const char* what,
                             std::initializer_list<int64_t> factors, size_t unit_bytes,
                             int64_t* size);

baracuda_status check_preference(const char* op, const baracuda_plan_preference& preference);

// A multiple of kHeadDimStep in [kMinHeadDim, kMaxHeadDim]; UNSUPPORTED otherwise.
baracuda_status check_head_dim(const char* op, const char* field, int32_t value);

// batch x heads x query tiles of tile_rows must fit one launch (at most INT_MAX blocks);
// UNSUPPORTED otherwise.
baracuda_status check_grid(const char* op, int32_t batch_size, int32_t num_heads, int32_t query_len,
                           int tile_rows);

// f32 for f16 / bf16 / f32, f64 for f64: the element of LSE and of the accumulators.
baracuda_element accumulator_element(baracuda_element element);

}  // namespace baracuda
