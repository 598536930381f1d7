#include "common/plan_report.h"

#include "common/descriptor_check.h"
#include "common/status.h"

namespace baracuda {

KernelReport make_kernel_report(const char* family, baracuda_backend backend,
                                baracuda_element element, int32_t head_dim_bucket, int32_t arch) {
  KernelReport report;
  report.name = std::string(family) + "." + baracuda_backend_string(backend) + "." +
                baracuda_element_string(element) + ".d" + std::to_string(head_dim_bucket) + ".sm" +
                std::to_string(arch);
  report.backend = backend;
  report.element = element;
  report.head_dim_bucket = head_dim_bucket;
  report.arch = arch;
  return report;
}

baracuda_status fail_null_plan_or(const char* op, const char* name) {
  return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
              "plan and %s must not be NULL (got NULL, expected pointers)", name);
}

baracuda_status fail_null_plan_place(const char* op) {
  return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
              "plan is NULL (got NULL, expected a place to store the plan)");
}

baracuda_status fail_null_descriptor(const char* op) {
  return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
              "desc is NULL (got NULL, expected a descriptor)");
}

baracuda_status fail_null_args(const char* op) {
  return fail(BARACUDA_STATUS_INVALID_PROBLEM, op, "args is NULL (got NULL, expected args)");
}

baracuda_status fail_null_plan(const char* op) {
  return fail(BARACUDA_STATUS_INVALID_PROBLEM, op, "plan is NULL (got NULL, expected a plan)");
}

void fill_sku(const KernelReport& report, baracuda_kernel_sku* sku) {
  sku->name = report.name.c_str();
  sku->backend = report.backend;
  sku->element = report.element;
  sku->head_dim_bucket = report.head_dim_bucket;
  sku->arch = report.arch;
}

void fill_precision_guarantee(baracuda_element element, baracuda_precision_guarantee* guarantee) {
  const baracuda_element math = accumulator_element(element);
  guarantee->math_precision = math;
  guarantee->accumulator = math;
  guarantee->deterministic = 1;
  guarantee->bit_stable_on_same_hardware = 1;
}

}  // namespace baracuda
