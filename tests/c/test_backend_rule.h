/* The plans' backend rule (libbaracuda/src/flash_sdpa/flash_sdpa_kernels.h), as the C tests
 * expect it: AUTO picks hopper for f16 / bf16 on a compute capability 9.0 device (this build has
 * 90a and the head dims of the tests), portable otherwise; a named preference is honoured. */
#pragma once

#include <stddef.h>
#include <stdio.h>

#include <baracuda/baracuda.h>

enum { kHopperArch = 90 };

static inline baracuda_backend expected_backend(baracuda_element element, int arch,
                                                const baracuda_plan_preference* preference) {
  if (preference != NULL && preference->backend != BARACUDA_BACKEND_AUTO) {
    return preference->backend;
  }
  const int sixteen_bit = element == BARACUDA_ELEMENT_F16 || element == BARACUDA_ELEMENT_BF16;
  return sixteen_bit && arch == kHopperArch ? BARACUDA_BACKEND_HOPPER : BARACUDA_BACKEND_PORTABLE;
}

/* "<family>.<backend>.<element>.d<bucket>.sm<arch>": the sku name a plan reports. */
static inline void expected_sku_name(char* name, size_t capacity, const char* family,
                                     const baracuda_kernel_sku* sku) {
  snprintf(name, capacity, "%s.%s.%s.d%d.sm%d", family, baracuda_backend_string(sku->backend),
           baracuda_element_string(sku->element), (int)sku->head_dim_bucket, (int)sku->arch);
}
