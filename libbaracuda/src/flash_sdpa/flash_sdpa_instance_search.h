// The choice of a kernel instance from a family's generated table: the smallest head-dim
// bucket of the element that covers the problem's head dim.
#pragma once

#include <string>

#include "baracuda/baracuda.h"
#include "common/status.h"

namespace baracuda::flash_sdpa {

// The first instance of `element` in `instances` (ascending by bucket within each element)
// whose bucket is at least `head_dim`, in *found. UNSUPPORTED otherwise, naming the family,
// the element's buckets in this build and the build options that set them (`options`).
template <typename Instances, typename Instance>
baracuda_status find_instance(const char* op, const char* family, const char* options,
                              const Instances& instances, baracuda_element element, int head_dim,
                              const Instance** found) {
  std::string buckets;
  for (const Instance& candidate : instances) {
    if (candidate.element != element) continue;
    if (!buckets.empty()) buckets += ", ";
    buckets += std::to_string(candidate.head_dim_bucket);
    if (candidate.head_dim_bucket >= head_dim) {
      *found = &candidate;
      return BARACUDA_STATUS_SUCCESS;
    }
  }
  return fail(BARACUDA_STATUS_UNSUPPORTED, op,
              "no %s %s instance covers head dim %d in this build (got buckets [%s], expected "
              "one >= %d; see %s)",
              family, baracuda_element_string(element), head_dim, buckets.c_str(), head_dim,
              options);
}

}  // namespace baracuda::flash_sdpa
