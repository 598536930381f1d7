#include "common/tensor_check.h"

#include <cinttypes>

#include "common/status.h"

namespace baracuda {

bool is_valid_element(baracuda_element element) {
  switch (element) {
    case BARACUDA_ELEMENT_F32:
    case BARACUDA_ELEMENT_F16:
    case BARACUDA_ELEMENT_BF16:
    case BARACUDA_ELEMENT_F64:
      return true;
  }
  return false;
}

bool is_empty(const baracuda_tensor& tensor) {
  for (int axis = 0; axis < tensor.rank; ++axis) {
    if (tensor.shape[axis] == 0) return true;
  }
  return false;
}

int64_t physical_span(const baracuda_tensor& tensor) {
  if (is_empty(tensor)) return 0;
  int64_t span = 1;
  for (int axis = 0; axis < tensor.rank; ++axis) {
    int64_t reach = 0;
    if (__builtin_mul_overflow(tensor.shape[axis] - 1, tensor.strides[axis], &reach) ||
        __builtin_add_overflow(span, reach, &span)) {
      return kSpanOverflow;
    }
  }
  return span;
}

std::string format_extents(const int64_t* extents, int rank) {
  std::string text = "[";
  for (int axis = 0; axis < rank; ++axis) {
    if (axis > 0) text += ", ";
    text += std::to_string(extents[axis]);
  }
  return text + "]";
}

namespace {

std::string format_expected_shape(const TensorRule& rule) {
  if (rule.broadcast == Broadcast::kNone) return format_extents(rule.shape, rule.rank);
  std::string text = "[";
  for (int axis = 0; axis < rule.rank; ++axis) {
    if (axis > 0) text += ", ";
    text += std::to_string(rule.shape[axis]);
    if (rule.shape[axis] != 1) text += "|1";
  }
  return text + "]";
}

bool shape_matches(const baracuda_tensor& tensor, const TensorRule& rule) {
  for (int axis = 0; axis < rule.rank; ++axis) {
    const int64_t got = tensor.shape[axis];
    const bool broadcast_ok = rule.broadcast == Broadcast::kExtentOne && got == 1;
    if (got != rule.shape[axis] && !broadcast_ok) return false;
  }
  return true;
}

}  // namespace

baracuda_status check_tensor(const char* op, const baracuda_tensor& tensor,
                             const TensorRule& rule) {
  if (tensor.rank != rule.rank) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op, "%s rank mismatch (got %d, expected %d)",
                rule.name, tensor.rank, rule.rank);
  }
  if (tensor.element != rule.element) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op, "%s element mismatch (got %s, expected %s)",
                rule.name, baracuda_element_string(tensor.element),
                baracuda_element_string(rule.element));
  }
  if (!shape_matches(tensor, rule)) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op, "%s shape mismatch (got %s, expected %s)",
                rule.name, format_extents(tensor.shape, tensor.rank).c_str(),
                format_expected_shape(rule).c_str());
  }
  if (is_empty(tensor)) return BARACUDA_STATUS_SUCCESS;  // an empty view touches no memory
  for (int axis = 0; axis < rule.rank; ++axis) {
    if (tensor.strides[axis] < 0) {
      return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                  "%s stride of axis %d is negative (got %" PRId64 ", expected >= 0)", rule.name,
                  axis, tensor.strides[axis]);
    }
    if (rule.access == Access::kWrite && tensor.shape[axis] > 1 && tensor.strides[axis] == 0) {
      return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                  "%s is written, so axis %d (extent %" PRId64
                  ") cannot broadcast (got stride 0, expected > 0)",
                  rule.name, axis, tensor.shape[axis]);
    }
  }
  const int last = rule.rank - 1;
  if (rule.unit_last_stride && tensor.shape[last] > 1 && tensor.strides[last] != 1) {
    return fail(BARACUDA_STATUS_UNSUPPORTED, op,
                "%s last-axis stride must be 1 (got %" PRId64 ", expected 1)", rule.name,
                tensor.strides[last]);
  }
  const int64_t span = physical_span(tensor);
  if (span == kSpanOverflow) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "%s view addresses more than 2^63 elements (got shape %s with strides %s, "
                "expected a view that fits in memory)",
                rule.name, format_extents(tensor.shape, tensor.rank).c_str(),
                format_extents(tensor.strides, tensor.rank).c_str());
  }
  if (tensor.data == nullptr) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "%s data is NULL (got NULL, expected a device pointer to %" PRId64
                " elements)",
                rule.name, span);
  }
  if (span > tensor.buffer_elements) {
    return fail_with_sizes(BARACUDA_STATUS_BUFFER_TOO_SMALL, span, tensor.buffer_elements, op,
                           "%s buffer too small (got %" PRId64 " elements, expected at least %" PRId64
                           ")",
                           rule.name, tensor.buffer_elements, span);
  }
  return BARACUDA_STATUS_SUCCESS;
}

baracuda_status check_alibi_slopes(const char* op, const baracuda_tensor& slopes, int64_t batch,
                                   int64_t num_heads) {
  const bool shape_ok = slopes.rank == 2 && slopes.shape[1] == num_heads &&
                        (slopes.shape[0] == 1 || slopes.shape[0] == batch);
  if (slopes.rank == 2 && !shape_ok) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "alibi_slopes shape mismatch (got %s, expected [1, %" PRId64 "] or [%" PRId64
                ", %" PRId64 "])",
                format_extents(slopes.shape, slopes.rank).c_str(), num_heads, batch, num_heads);
  }
  const int64_t slopes_shape[2] = {batch, num_heads};
  const TensorRule rule = {"alibi_slopes", BARACUDA_ELEMENT_F32, 2, slopes_shape,
                           Broadcast::kExtentOne, Access::kRead, false};
  return check_tensor(op, slopes, rule);
}

}  // namespace baracuda

extern "C" {

const char* baracuda_element_string(baracuda_element element) {
  switch (element) {
    case BARACUDA_ELEMENT_F32: return "f32";
    case BARACUDA_ELEMENT_F16: return "f16";
    case BARACUDA_ELEMENT_BF16: return "bf16";
    case BARACUDA_ELEMENT_F64: return "f64";
  }
  return "invalid";
}

size_t baracuda_element_size(baracuda_element element) {
  switch (element) {
    case BARACUDA_ELEMENT_F32: return 4;
    case BARACUDA_ELEMENT_F16: return 2;
    case BARACUDA_ELEMENT_BF16: return 2;
    case BARACUDA_ELEMENT_F64: return 8;
  }
  return 0;
}

}  // extern "C"
