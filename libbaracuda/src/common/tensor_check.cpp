#include "common/tensor_check.h"

#include <cinttypes>

#include "common/status.h"

namespace baracuda {

bool is_valid_element(baracuda_element element) {
  switch (element) {
    case BARACUDA_ELEMENT_F32:
    case BARACUDA_ELEMENT_F16:
    case BARACUDA_ELEMENT_BF16:
    case BARACUDA_ELEMENT_F64: return true;
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

// Whether two elements of a view can share an address. Axes of extent > 1, by stride: when each
// stride exceeds the reach of the smaller-strided axes before it, every index maps to its own
// offset (the test is exact for the layouts of real tensors and errs only towards "overlaps").
bool overlaps_itself(const baracuda_tensor& tensor) {
  int64_t strides[BARACUDA_MAX_RANK];
  int64_t extents[BARACUDA_MAX_RANK];
  int axes = 0;
  for (int axis = 0; axis < tensor.rank; ++axis) {
    if (tensor.shape[axis] > 1) {
      strides[axes] = tensor.strides[axis];
      extents[axes] = tensor.shape[axis];
      ++axes;
    }
  }
  // Insertion sort by stride (at most four axes).
  for (int n = 1; n < axes; ++n) {
    for (int m = n; m > 0 && strides[m] < strides[m - 1]; --m) {
      const int64_t stride = strides[m];
      strides[m] = strides[m - 1];
      strides[m - 1] = stride;
      const int64_t extent = extents[m];
      extents[m] = extents[m - 1];
      extents[m - 1] = extent;
    }
  }
  int64_t reach = 0;  // highest offset of the axes taken so far (fits: the span was checked)
  for (int n = 0; n < axes; ++n) {
    if (strides[n] <= reach) return true;
    reach += (extents[n] - 1) * strides[n];
  }
  return false;
}

uintptr_t address_of(const void* pointer) {
  return reinterpret_cast<uintptr_t>(pointer);
}

}  // namespace

baracuda_status check_aligned(const char* op, const char* name, const void* data, size_t alignment,
                              baracuda_element element) {
  if (address_of(data) % alignment == 0) return BARACUDA_STATUS_SUCCESS;
  return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
              "%s data is misaligned for %s (got %p, expected a multiple of %zu bytes)", name,
              baracuda_element_string(element), data, alignment);
}

baracuda_status check_aligned(const char* op, const char* name, const void* data,
                              size_t alignment) {
  if (address_of(data) % alignment == 0) return BARACUDA_STATUS_SUCCESS;
  return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
              "%s is misaligned (got %p, expected a multiple of %zu bytes)", name, data, alignment);
}

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
  const size_t element_bytes = baracuda_element_size(rule.element);
  if (span > INT64_MAX / static_cast<int64_t>(element_bytes)) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "%s view spans more than 2^63 bytes (got %" PRId64
                " elements of %zu bytes, expected a view that fits in memory)",
                rule.name, span, element_bytes);
  }
  if (rule.access == Access::kWrite && overlaps_itself(tensor)) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "%s is written, so no two of its elements may share memory (got shape %s with "
                "strides %s, expected strides under which every element has its own address)",
                rule.name, format_extents(tensor.shape, tensor.rank).c_str(),
                format_extents(tensor.strides, tensor.rank).c_str());
  }
  if (tensor.data == nullptr) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "%s data is NULL (got NULL, expected a device pointer to %" PRId64 " elements)",
                rule.name, span);
  }
  const baracuda_status aligned =
      check_aligned(op, rule.name, tensor.data, element_bytes, rule.element);
  if (aligned != BARACUDA_STATUS_SUCCESS) return aligned;
  if (span > tensor.buffer_elements) {
    return fail_with_sizes(BARACUDA_STATUS_BUFFER_TOO_SMALL, span, tensor.buffer_elements, op,
                           "%s buffer too small (got %" PRId64
                           " elements, expected at least %" PRId64 ")",
                           rule.name, tensor.buffer_elements, span);
  }
  return BARACUDA_STATUS_SUCCESS;
}

ByteRange byte_range(const char* name, const baracuda_tensor& tensor) {
  if (!is_present(tensor)) return {name, tensor.data, 0};
  // A checked view's bytes fit in int64 (check_tensor).
  const uint64_t bytes =
      static_cast<uint64_t>(physical_span(tensor)) * baracuda_element_size(tensor.element);
  return {name, tensor.data, static_cast<int64_t>(bytes)};
}

baracuda_status check_memory_ranges(const char* op, const ByteRange* written, size_t written_count,
                                    const ByteRange* read, size_t read_count) {
  using Wide = unsigned __int128;
  constexpr Wide kAddressSpace = Wide{1} << (8 * sizeof(uintptr_t));
  const auto end_of = [](const ByteRange& range) {
    return Wide{address_of(range.begin)} + static_cast<uint64_t>(range.bytes);
  };
  const auto overlap = [&](const ByteRange& a, const ByteRange& b) {
    return a.bytes > 0 && b.bytes > 0 && Wide{address_of(a.begin)} < end_of(b) &&
           Wide{address_of(b.begin)} < end_of(a);
  };
  const auto refuse_overlap = [&](const ByteRange& out, const ByteRange& other) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "%s and %s share memory (got %s at %p for %" PRId64
                " bytes and %s at %p for %" PRId64
                " bytes, expected %s to share no byte with another argument)",
                out.name, other.name, out.name, out.begin, out.bytes, other.name, other.begin,
                other.bytes, out.name);
  };
  for (const auto* ranges : {written, read}) {
    const size_t count = ranges == written ? written_count : read_count;
    for (size_t n = 0; n < count; ++n) {
      if (ranges[n].bytes > 0 && end_of(ranges[n]) > kAddressSpace) {
        return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                    "%s runs past the end of the address space (got %" PRId64
                    " bytes from %p, expected a range inside memory)",
                    ranges[n].name, ranges[n].bytes, ranges[n].begin);
      }
    }
  }
  for (size_t out = 0; out < written_count; ++out) {
    for (size_t other = out + 1; other < written_count; ++other) {
      if (overlap(written[out], written[other]))
        return refuse_overlap(written[out], written[other]);
    }
    for (size_t other = 0; other < read_count; ++other) {
      if (overlap(written[out], read[other])) return refuse_overlap(written[out], read[other]);
    }
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
  const TensorRule rule = {"alibi_slopes",        BARACUDA_ELEMENT_F32, 2,    slopes_shape,
                           Broadcast::kExtentOne, Access::kRead,        false};
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
