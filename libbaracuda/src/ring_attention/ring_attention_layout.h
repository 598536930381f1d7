// Where a rank's rows sit in the global sequence, and which parts of two ranks can see each
// other under the causal / window limits.
#pragma once

#include <cstdint>

#include "baracuda/baracuda.h"
#include "flash_sdpa/flash_sdpa_params.h"

namespace baracuda::ring_attention {

// Local rows [local_begin, local_begin + length) at global positions [position, position + length).
struct Segment {
  int64_t local_begin = 0;
  int64_t length = 0;
  int64_t position = 0;
};

// A rank holds one part of the sequence (contiguous) or two (zigzag).
constexpr int kMaxSegments = 2;

struct SegmentList {
  Segment parts[kMaxSegments];
  int count = 0;
};

// The parts of `length` local rows that `rank` of `world_size` holds:
//   contiguous: positions [rank * length, (rank + 1) * length);
//   zigzag: chunks rank and 2 * world_size - 1 - rank of length / 2 positions each.
inline SegmentList segments(baracuda_ring_layout layout, int64_t length, int world_size, int rank) {
  SegmentList list;
  if (layout == BARACUDA_RING_LAYOUT_ZIGZAG) {
    const int64_t half = length / 2;
    const int64_t mirror = 2 * int64_t{world_size} - 1 - rank;
    list.parts[0] = {0, half, rank * half};
    list.parts[1] = {half, half, mirror * half};
    list.count = 2;
  } else {
    list.parts[0] = {0, length, rank * length};
    list.count = 1;
  }
  return list;
}

// Whether some query of `queries` sees some key of `keys`: query position p sees key position
// t when p - left <= t <= p + right (window holds the limits as the kernel applies them).
inline bool parts_see_each_other(const Segment& queries, const Segment& keys,
                                 const flash_sdpa::ScoreModifiers& window) {
  if (queries.length == 0 || keys.length == 0) return false;
  const int64_t first_query = queries.position;
  const int64_t last_query = queries.position + queries.length - 1;
  const int64_t first_key = keys.position;
  const int64_t last_key = keys.position + keys.length - 1;
  return first_query - window.window_left <= last_key &&
         last_query + window.window_right >= first_key;
}

}  // namespace baracuda::ring_attention
