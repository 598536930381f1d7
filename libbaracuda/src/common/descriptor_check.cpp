#include "common/descriptor_check.h"

#include <cfloat>
#include <cinttypes>
#include <climits>
#include <cmath>
#include <string>

#include "common/status.h"
#include "common/tensor_check.h"

namespace baracuda {
namespace {

constexpr int64_t kMaxGridBlocks = INT_MAX;
constexpr double kLog2e = 1.4426950408889634;

// The finite range of a compute type: its smallest normal and its largest value.
struct ComputeRange {
  const char* name;
  double smallest_normal;
  double largest;
};

ComputeRange compute_range(baracuda_element element) {
  if (element == BARACUDA_ELEMENT_F64) return {"f64", DBL_MIN, DBL_MAX};
  return {"f32", FLT_MIN, FLT_MAX};
}

// scale log2(e) and softcap log2(e) must be finite, scale / softcap too, and a softcap must
// stay a normal number (its reciprocal finite, never rounded to 0).
baracuda_status check_score_range(const char* op, baracuda_element element, double scale,
                                  double softcap) {
  if (!is_valid_element(element)) return BARACUDA_STATUS_SUCCESS;
  const ComputeRange range = compute_range(element);
  const double largest_factor = range.largest / kLog2e;
  if (std::fabs(scale) > largest_factor) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "scale overflows the %s compute type (got %g, expected |scale| <= %g)", range.name,
                scale, largest_factor);
  }
  if (softcap == 0.0) return BARACUDA_STATUS_SUCCESS;
  if (softcap < range.smallest_normal || softcap > largest_factor) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "softcap is outside the range of the %s compute type (got %g, expected 0 or a "
                "value in [%g, %g])",
                range.name, softcap, range.smallest_normal, largest_factor);
  }
  if (std::fabs(scale) / softcap > range.largest) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "scale / softcap overflows the %s compute type (got %g / %g, expected a "
                "quotient <= %g)",
                range.name, scale, softcap, range.largest);
  }
  return BARACUDA_STATUS_SUCCESS;
}

baracuda_status check_window_bound(const char* op, const char* field, int32_t value) {
  if (value >= 0 || value == BARACUDA_WINDOW_UNBOUNDED) return BARACUDA_STATUS_SUCCESS;
  return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
              "%s must be a bound >= 0 or unbounded (got %d, expected >= 0 or "
              "BARACUDA_WINDOW_UNBOUNDED = %d)",
              field, value, BARACUDA_WINDOW_UNBOUNDED);
}

}  // namespace

baracuda_status check_element(const char* op, baracuda_element element) {
  if (is_valid_element(element)) return BARACUDA_STATUS_SUCCESS;
  return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
              "element is not an element type (got %d, expected f32, f16, bf16 or f64)",
              static_cast<int>(element));
}

baracuda_status check_extents(const char* op, const NamedExtent* extents, size_t count) {
  for (size_t n = 0; n < count; ++n) {
    if (extents[n].value < 0) {
      return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                  "%s must be non-negative (got %d, expected >= 0)", extents[n].field,
                  extents[n].value);
    }
  }
  return BARACUDA_STATUS_SUCCESS;
}

baracuda_status check_score_options(const char* op, baracuda_element element, double scale,
                                    double softcap, int32_t is_causal, int32_t window_size_left,
                                    int32_t window_size_right) {
  if (!std::isfinite(scale)) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "scale must be finite (got %g, expected a finite number)", scale);
  }
  if (!std::isfinite(softcap) || softcap < 0.0) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "softcap must be finite and non-negative (got %g, expected 0 to disable or a "
                "finite value > 0)",
                softcap);
  }
  if (is_causal != 0 && is_causal != 1) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "is_causal must be 0 or 1 (got %d, expected 0 or 1)", is_causal);
  }
  baracuda_status status = check_window_bound(op, "window_size_left", window_size_left);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = check_window_bound(op, "window_size_right", window_size_right);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  return check_score_range(op, element, scale, softcap);
}

baracuda_status checked_size(const char* op, const char* what,
                             std::initializer_list<int64_t> factors, size_t unit_bytes,
                             int64_t* size) {
  int64_t product = static_cast<int64_t>(unit_bytes);
  bool overflow = unit_bytes > static_cast<size_t>(INT64_MAX);
  for (const int64_t factor : factors) {
    overflow = overflow || factor < 0 || __builtin_mul_overflow(product, factor, &product);
  }
  if (!overflow) {
    *size = product;
    return BARACUDA_STATUS_SUCCESS;
  }
  std::string factors_text;
  for (const int64_t factor : factors) {
    factors_text += std::to_string(factor) + " x ";
  }
  factors_text += std::to_string(unit_bytes);
  return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
              "%s does not fit in 64 bits (got %s, expected a product below 2^63)", what,
              factors_text.c_str());
}

baracuda_status check_preference(const char* op, const baracuda_plan_preference& preference) {
  if (preference.backend == BARACUDA_BACKEND_AUTO ||
      preference.backend == BARACUDA_BACKEND_PORTABLE ||
      preference.backend == BARACUDA_BACKEND_HOPPER) {
    return BARACUDA_STATUS_SUCCESS;
  }
  return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
              "preference backend is not a backend (got %d, expected BARACUDA_BACKEND_AUTO, "
              "BARACUDA_BACKEND_PORTABLE or BARACUDA_BACKEND_HOPPER)",
              static_cast<int>(preference.backend));
}

baracuda_status check_head_dim(const char* op, const char* field, int32_t value) {
  if (value >= kMinHeadDim && value <= kMaxHeadDim && value % kHeadDimStep == 0) {
    return BARACUDA_STATUS_SUCCESS;
  }
  return fail(BARACUDA_STATUS_UNSUPPORTED, op,
              "%s is not a supported head dim (got %d, expected a multiple of %d in [%d, %d])",
              field, value, kHeadDimStep, kMinHeadDim, kMaxHeadDim);
}

baracuda_status check_grid(const char* op, int32_t batch_size, int32_t num_heads, int32_t query_len,
                           int tile_rows) {
  // batch x heads x tiles can exceed int64, so batch x heads is compared with limit / tiles.
  const int64_t tiles = (int64_t{query_len} + tile_rows - 1) / tile_rows;
  const int64_t heads = int64_t{batch_size} * num_heads;
  if (tiles == 0 || heads <= kMaxGridBlocks / tiles) return BARACUDA_STATUS_SUCCESS;
  return fail(BARACUDA_STATUS_UNSUPPORTED, op,
              "batch_size x num_heads x query tiles of %d rows exceeds one launch (got %d x %d x "
              "%d rows, expected <= %" PRId64 " blocks)",
              tile_rows, batch_size, num_heads, query_len, kMaxGridBlocks);
}

baracuda_element accumulator_element(baracuda_element element) {
  return element == BARACUDA_ELEMENT_F64 ? BARACUDA_ELEMENT_F64 : BARACUDA_ELEMENT_F32;
}

}  // namespace baracuda
