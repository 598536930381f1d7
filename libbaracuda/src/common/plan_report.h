// What every plan reports once selected: the kernel it runs (baracuda_kernel_sku) and the
// arithmetic it promises (baracuda_precision_guarantee).
#pragma once

#include <cstdint>
#include <string>

#include "baracuda/baracuda.h"

namespace baracuda {

struct KernelReport {
  std::string name;  // "<family>.<backend>.<element>.d<bucket>.sm<arch>", owned by the plan
  baracuda_backend backend = BARACUDA_BACKEND_AUTO;
  baracuda_element element = BARACUDA_ELEMENT_F32;
  int32_t head_dim_bucket = 0;
  int32_t arch = 0;
};

// family names the operation: "flash_sdpa", "ring_attention".
KernelReport make_kernel_report(const char* family, baracuda_backend backend,
                                baracuda_element element, int32_t head_dim_bucket, int32_t arch);

// INVALID_PROBLEM for a plan query given a NULL plan or a NULL `name` output pointer.
baracuda_status fail_null_plan_or(const char* op, const char* name);

// INVALID_PROBLEM for a plan_select given no place to store the plan.
baracuda_status fail_null_plan_place(const char* op);

// The NULL-pointer refusals every op's entry points share: the descriptor, the arguments and the
// plan of a call.
baracuda_status fail_null_descriptor(const char* op);
baracuda_status fail_null_args(const char* op);
baracuda_status fail_null_plan(const char* op);

// What every plan_select checks before its op's own checks: a place for the plan (cleared to
// NULL at once, so that a failed select leaves NULL there) and a descriptor; `chosen` gets the
// preference, AUTO when it is NULL.
template <typename Plan, typename Descriptor>
baracuda_status check_select_pointers(const char* op, const Descriptor* desc,
                                      const baracuda_plan_preference* preference, Plan* plan,
                                      baracuda_plan_preference* chosen) {
  if (plan == nullptr) return fail_null_plan_place(op);
  *plan = nullptr;
  if (desc == nullptr) return fail_null_descriptor(op);
  *chosen = preference != nullptr ? *preference : baracuda_plan_preference{BARACUDA_BACKEND_AUTO};
  return BARACUDA_STATUS_SUCCESS;
}

// The sku of a report; sku->name stays valid while the report lives.
void fill_sku(const KernelReport& report, baracuda_kernel_sku* sku);

// f32 arithmetic and accumulators for f16 / bf16 / f32, f64 for f64. One block writes each
// output row and the reduction order is fixed: no atomics, bit-stable run to run on one GPU.
void fill_precision_guarantee(baracuda_element element, baracuda_precision_guarantee* guarantee);

}  // namespace baracuda
