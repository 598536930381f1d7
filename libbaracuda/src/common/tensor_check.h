// Argument checks shared by every plan: one function checks one tensor against its rule and
// names the first thing wrong, in the house form "<op>: <tensor> <what> (got X, expected Y)".
#pragma once

#include <cstdint>
#include <string>

#include "baracuda/baracuda.h"

namespace baracuda {

bool is_valid_element(baracuda_element element);

// An optional tensor is absent when its rank is 0.
inline bool is_present(const baracuda_tensor& tensor) {
  return tensor.rank != 0;
}

// Whether some axis has extent 0 (the view holds no element).
bool is_empty(const baracuda_tensor& tensor);

// physical_span of a view whose reach does not fit in int64.
constexpr int64_t kSpanOverflow = INT64_MAX;

// Highest element offset the view can address, plus one; 0 for a view with no elements;
// kSpanOverflow when that does not fit. Zero-stride (broadcast) axes add nothing.
int64_t physical_span(const baracuda_tensor& tensor);

// "[2, 8, 128, 64]"
std::string format_extents(const int64_t* extents, int rank);

enum class Broadcast {
  kNone,       // the shape must equal the expected shape
  kExtentOne,  // each axis is either the expected extent or 1 (which broadcasts)
};

enum class Access {
  kRead,   // zero strides are fine (they broadcast)
  kWrite,  // written: no zero stride on an axis of extent > 1
};

struct TensorRule {
  const char* name;          // "q", "mask", ...
  baracuda_element element;  // required element
  int rank;                  // required rank
  const int64_t* shape;      // expected extents, `rank` of them
  Broadcast broadcast;
  Access access;
  bool unit_last_stride;  // the last axis must be contiguous
};

// Checks rank, element, shape, strides (a written view must not overlap itself), data pointer
// (not NULL, aligned for the element) and buffer size, in that order.
baracuda_status check_tensor(const char* op, const baracuda_tensor& tensor, const TensorRule& rule);

// INVALID_PROBLEM unless `data` is a multiple of `alignment` bytes: the data of a tensor or a
// typed buffer named `name` ("<name> data is misaligned for <element> ..."), or a raw buffer
// ("<name> is misaligned ...").
baracuda_status check_aligned(const char* op, const char* name, const void* data, size_t alignment,
                              baracuda_element element);
baracuda_status check_aligned(const char* op, const char* name, const void* data, size_t alignment);

// The device bytes one argument of a call touches, named for messages.
struct ByteRange {
  const char* name;
  const void* begin;
  int64_t bytes;  // 0: touches nothing
};

// The bytes a view checked by check_tensor touches: from data to the end of its last element;
// none for an absent or empty view.
ByteRange byte_range(const char* name, const baracuda_tensor& tensor);

// The memory rules of a call, over the byte ranges of all its arguments: each range lies inside
// the address space, and each written range shares no byte with another written range or with
// a read one (inputs may overlap each other: q, k and v of one packed tensor). A view that
// interleaves with another counts as sharing its bytes.
baracuda_status check_memory_ranges(const char* op, const ByteRange* written, size_t written_count,
                                    const ByteRange* read, size_t read_count);

// The stride that reads an axis: 0 on a broadcast axis (extent 1), so every index reads the
// same element.
inline int64_t broadcast_stride(const baracuda_tensor& tensor, int axis) {
  return tensor.shape[axis] == 1 ? 0 : tensor.strides[axis];
}

// ALiBi slopes: f32 [1, num_heads] or [batch, num_heads].
baracuda_status check_alibi_slopes(const char* op, const baracuda_tensor& slopes, int64_t batch,
                                   int64_t num_heads);

}  // namespace baracuda
