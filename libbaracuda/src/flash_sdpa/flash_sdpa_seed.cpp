// The seed's raw entry points: contiguous tensors described from the extents, then the same
// plan (select, run, destroy) as every other caller.
#include "baracuda/baracuda.h"
#include "common/descriptor_check.h"
#include "common/status.h"

namespace {

struct SeedProblem {
  int32_t batch_size, num_heads, query_len, key_len, d_k, d_v;
  float scale;
  int32_t is_causal;
};

constexpr const char* kSeedOp = "flash_sdpa_seed_run";

// A contiguous tensor of the given extents, its buffer exactly the view (the seed's callers
// size buffers so); INVALID_PROBLEM when its element count does not fit in int64. A negative
// extent is left for the descriptor checks to name.
baracuda_status contiguous(const char* name, const void* data, baracuda_element element, int rank,
                           const int64_t* shape, baracuda_tensor* tensor) {
  *tensor = {};
  tensor->data = const_cast<void*>(data);
  tensor->element = element;
  tensor->rank = rank;
  int64_t stride = 1;
  for (int axis = rank - 1; axis >= 0; --axis) {
    tensor->shape[axis] = shape[axis];
    tensor->strides[axis] = stride;
    if (shape[axis] < 0) return BARACUDA_STATUS_SUCCESS;
    const baracuda_status status =
        baracuda::checked_size(kSeedOp, name, {stride, shape[axis]}, 1, &stride);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
  }
  tensor->buffer_elements = stride;
  return BARACUDA_STATUS_SUCCESS;
}

baracuda_status run_seed(baracuda_element element, const SeedProblem& problem, const void* q,
                         const void* k, const void* v, const float* mask, void* y, void* lse,
                         void* workspace, size_t workspace_bytes, baracuda_stream stream) {
  baracuda_flash_sdpa_descriptor desc;
  baracuda_flash_sdpa_descriptor_init(&desc, problem.batch_size, problem.num_heads,
                                      problem.query_len, problem.key_len, problem.d_k, problem.d_v,
                                      element);
  desc.scale = problem.scale;
  desc.is_causal = problem.is_causal;

  const int64_t b = problem.batch_size, h = problem.num_heads, sq = problem.query_len,
                sk = problem.key_len;
  const int64_t q_shape[4] = {b, h, sq, problem.d_k};
  const int64_t k_shape[4] = {b, h, sk, problem.d_k};
  const int64_t v_shape[4] = {b, h, sk, problem.d_v};
  const int64_t y_shape[4] = {b, h, sq, problem.d_v};
  const int64_t lse_shape[3] = {b, h, sq};
  const int64_t mask_shape[4] = {b, h, sq, sk};
  const baracuda_element lse_element = baracuda::accumulator_element(element);

  baracuda_flash_sdpa_args args = {};
  const struct {
    const char* name;
    const void* data;
    baracuda_element element;
    int rank;
    const int64_t* shape;
    baracuda_tensor* tensor;
  } tensors[] = {{"q elements", q, element, 4, q_shape, &args.q},
                 {"k elements", k, element, 4, k_shape, &args.k},
                 {"v elements", v, element, 4, v_shape, &args.v},
                 {"y elements", y, element, 4, y_shape, &args.y},
                 {"lse elements", lse, lse_element, 3, lse_shape, &args.lse},
                 {"mask elements", mask, BARACUDA_ELEMENT_F32, 4, mask_shape, &args.mask}};
  for (const auto& tensor : tensors) {
    if (tensor.tensor == &args.mask && mask == nullptr) continue;
    const baracuda_status status = contiguous(tensor.name, tensor.data, tensor.element, tensor.rank,
                                              tensor.shape, tensor.tensor);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
  }
  // Every check first (none needs a device), then the plan for the current device.
  baracuda_status status = baracuda_flash_sdpa_check_args(&desc, &args);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  baracuda_flash_sdpa_plan plan = nullptr;
  status = baracuda_flash_sdpa_plan_select(&desc, nullptr, &plan);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = baracuda_flash_sdpa_run(plan, &args, workspace, workspace_bytes, stream);
  baracuda_flash_sdpa_plan_destroy(plan);
  return status;
}

}  // namespace

#define BARACUDA_DEFINE_SEED_FLASH_SDPA_RUN(name, element)                                    \
  BARACUDA_SEED_FLASH_SDPA_RUN(name) {                                                        \
    const SeedProblem problem = {batch_size, num_heads, query_len, key_len,                   \
                                 d_k,        d_v,       scale,     is_causal};                \
    return baracuda::guard(kSeedOp, [&] {                                                     \
      return run_seed(element, problem, q, k, v, nullptr, y, lse, workspace, workspace_bytes, \
                      stream);                                                                \
    });                                                                                       \
  }
#define BARACUDA_DEFINE_SEED_SDPA_ARBMASK_RUN(name, element)                               \
  BARACUDA_SEED_SDPA_ARBMASK_RUN(name) {                                                   \
    const SeedProblem problem = {batch_size, num_heads, query_len, key_len,                \
                                 d_k,        d_v,       scale,     is_causal};             \
    return baracuda::guard(kSeedOp, [&] {                                                  \
      return run_seed(element, problem, q, k, v, mask, y, lse, workspace, workspace_bytes, \
                      stream);                                                             \
    });                                                                                    \
  }

extern "C" {

BARACUDA_DEFINE_SEED_FLASH_SDPA_RUN(baracuda_kernels_flash_sdpa_f32_run, BARACUDA_ELEMENT_F32)
BARACUDA_DEFINE_SEED_FLASH_SDPA_RUN(baracuda_kernels_flash_sdpa_f16_run, BARACUDA_ELEMENT_F16)
BARACUDA_DEFINE_SEED_FLASH_SDPA_RUN(baracuda_kernels_flash_sdpa_bf16_run, BARACUDA_ELEMENT_BF16)
BARACUDA_DEFINE_SEED_FLASH_SDPA_RUN(baracuda_kernels_flash_sdpa_f64_run, BARACUDA_ELEMENT_F64)
BARACUDA_DEFINE_SEED_SDPA_ARBMASK_RUN(baracuda_kernels_sdpa_f32_arbmask_run, BARACUDA_ELEMENT_F32)
BARACUDA_DEFINE_SEED_SDPA_ARBMASK_RUN(baracuda_kernels_sdpa_f16_arbmask_run, BARACUDA_ELEMENT_F16)
BARACUDA_DEFINE_SEED_SDPA_ARBMASK_RUN(baracuda_kernels_sdpa_bf16_arbmask_run, BARACUDA_ELEMENT_BF16)
BARACUDA_DEFINE_SEED_SDPA_ARBMASK_RUN(baracuda_kernels_sdpa_f64_arbmask_run, BARACUDA_ELEMENT_F64)

}  // extern "C"
