// The seed's ring kernels: init, one step over one K/V chunk, finalize, on contiguous tensors
// and raw accumulators. They run the same kernels as the plan.
#include <cinttypes>

#include "baracuda/baracuda.h"
#include "common/descriptor_check.h"
#include "common/device.h"
#include "common/status.h"
#include "common/tensor_check.h"
#include "flash_sdpa/flash_sdpa_kernels.h"
#include "flash_sdpa/flash_sdpa_params.h"
#include "ring_attention/ring_attention_kernels.h"

namespace {

using baracuda::fail;
using baracuda::NamedExtent;

constexpr const char* kInitOp = "ring_attention_init_run";
constexpr const char* kStepOp = "ring_attention_step_run";
constexpr const char* kFinalizeOp = "ring_attention_finalize_run";

struct SeedStep {
  int32_t batch_size, num_heads, q_local, k_chunk, head_dim, q_global_base, k_global_base;
  float scale;
  int32_t is_causal;
};

// One raw buffer of a seed call: `elements` of `element_bytes` each from `data`.
struct SeedBuffer {
  const char* name;
  const void* data;
  int64_t elements;
  size_t element_bytes;
};

// The memory rules of baracuda_tensor for raw buffers: each is non-NULL and aligned for its
// element when it holds anything, inside memory, and what the call writes shares no byte with
// any other buffer of the call.
baracuda_status check_buffers(const char* op, const SeedBuffer* written, int written_count,
                              const SeedBuffer* read, int read_count) {
  constexpr int kMaxBuffers = 4;
  baracuda::ByteRange ranges[2][kMaxBuffers];
  const SeedBuffer* groups[2] = {written, read};
  const int counts[2] = {written_count, read_count};
  for (int group = 0; group < 2; ++group) {
    for (int n = 0; n < counts[group]; ++n) {
      const SeedBuffer& buffer = groups[group][n];
      int64_t bytes = 0;
      baracuda_status status =
          baracuda::checked_size(op, buffer.name, {buffer.elements}, buffer.element_bytes, &bytes);
      if (status != BARACUDA_STATUS_SUCCESS) return status;
      if (bytes > 0 && buffer.data == nullptr) {
        return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                    "%s is NULL (got NULL, expected device memory for %" PRId64 " elements)",
                    buffer.name, buffer.elements);
      }
      status = baracuda::check_aligned(op, buffer.name, buffer.data, buffer.element_bytes);
      if (status != BARACUDA_STATUS_SUCCESS) return status;
      ranges[group][n] = {buffer.name, buffer.data, bytes};
    }
  }
  return baracuda::check_memory_ranges(op, ranges[0], written_count, ranges[1], read_count);
}

// Elements of a contiguous [batch, heads, rows, head_dim] tensor, and of its [batch, heads,
// rows] row statistics; INVALID_PROBLEM when they do not fit in int64.
baracuda_status seed_sizes(const char* op, int32_t batch_size, int32_t num_heads, int32_t rows,
                           int32_t head_dim, int64_t* elements, int64_t* row_count) {
  baracuda_status status = baracuda::checked_size(op, "batch_size x num_heads x rows",
                                                  {batch_size, num_heads, rows}, 1, row_count);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  return baracuda::checked_size(op, "batch_size x num_heads x rows x head_dim",
                                {batch_size, num_heads, rows, head_dim}, 1, elements);
}

size_t compute_bytes(baracuda_element element) {
  return baracuda_element_size(baracuda::accumulator_element(element));
}

baracuda_status run_init(baracuda_element element, void* o_acc, void* m_acc, void* l_acc,
                         int64_t o_len, int64_t ml_len, baracuda_stream stream) {
  if (o_len < 0 || ml_len < 0 || o_len < ml_len) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, kInitOp,
                "o_len and ml_len must be non-negative with o_len >= ml_len (got o_len %" PRId64
                " and ml_len %" PRId64 ", expected o_len = ml_len x head_dim >= 0)",
                o_len, ml_len);
  }
  const size_t size = compute_bytes(element);
  const SeedBuffer written[] = {{"o_acc", o_acc, o_len, size},
                                {"m_acc", m_acc, ml_len, size},
                                {"l_acc", l_acc, ml_len, size}};
  baracuda_status status = check_buffers(kInitOp, written, 3, nullptr, 0);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  const baracuda::ring_attention::Accumulators accumulators = {o_acc, m_acc, l_acc};
  status =
      baracuda::ring_attention::launch_init(element, accumulators, o_len, ml_len, stream, kInitOp);
  return status == BARACUDA_STATUS_SUCCESS ? baracuda::succeed() : status;
}

baracuda_status run_step(baracuda_element element, const SeedStep& step, const void* q,
                         const void* k, const void* v, void* o_acc, void* m_acc, void* l_acc,
                         baracuda_stream stream) {
  const NamedExtent extents[] = {{"batch_size", step.batch_size},
                                 {"num_heads", step.num_heads},
                                 {"q_local", step.q_local},
                                 {"k_chunk", step.k_chunk},
                                 {"head_dim", step.head_dim}};
  baracuda_status status =
      baracuda::check_extents(kStepOp, extents, sizeof(extents) / sizeof(extents[0]));
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = baracuda::check_element(kStepOp, element);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = baracuda::check_score_options(kStepOp, element, step.scale, 0.0, step.is_causal,
                                         BARACUDA_WINDOW_UNBOUNDED, BARACUDA_WINDOW_UNBOUNDED);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = baracuda::check_head_dim(kStepOp, "head_dim", step.head_dim);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = baracuda::check_grid(kStepOp, step.batch_size, step.num_heads, step.q_local,
                                baracuda::flash_sdpa::kPortableBlockRows);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  int64_t q_elements = 0, rows = 0, kv_elements = 0, keys = 0;
  status = seed_sizes(kStepOp, step.batch_size, step.num_heads, step.q_local, step.head_dim,
                      &q_elements, &rows);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = seed_sizes(kStepOp, step.batch_size, step.num_heads, step.k_chunk, step.head_dim,
                      &kv_elements, &keys);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  // With no key the step touches nothing.
  const bool touches = step.k_chunk > 0;
  const size_t element_bytes = baracuda_element_size(element);
  const size_t size = compute_bytes(element);
  const SeedBuffer written[] = {{"o_acc", o_acc, touches ? q_elements : 0, size},
                                {"m_acc", m_acc, touches ? rows : 0, size},
                                {"l_acc", l_acc, touches ? rows : 0, size}};
  const SeedBuffer read[] = {{"q", q, touches ? q_elements : 0, element_bytes},
                             {"k", k, touches && rows > 0 ? kv_elements : 0, element_bytes},
                             {"v", v, touches && rows > 0 ? kv_elements : 0, element_bytes}};
  status = check_buffers(kStepOp, written, 3, read, 3);
  if (status != BARACUDA_STATUS_SUCCESS) return status;

  baracuda::flash_sdpa::FlashKernels kernels;
  baracuda::DeviceInfo device;
  status = baracuda::flash_sdpa::select_flash_kernels(kStepOp, element, step.head_dim,
                                                      BARACUDA_BACKEND_AUTO, &kernels, &device);
  if (status != BARACUDA_STATUS_SUCCESS) return status;

  const int64_t d = step.head_dim;
  const int64_t heads = step.num_heads;
  const int64_t query_len = step.q_local;
  const int64_t key_len = step.k_chunk;
  baracuda::flash_sdpa::Params params;
  params.q = q;
  params.k = k;
  params.v = v;
  params.batch_size = step.batch_size;
  params.num_heads = step.num_heads;
  params.num_heads_k = step.num_heads;
  params.query_len = step.q_local;
  params.key_len = step.k_chunk;
  params.d_k = step.head_dim;
  params.d_v = step.head_dim;
  const int64_t q_strides[4] = {heads * query_len * d, query_len * d, d, 1};
  const int64_t kv_strides[4] = {heads * key_len * d, key_len * d, d, 1};
  for (int axis = 0; axis < 4; ++axis) {
    params.q_strides[axis] = q_strides[axis];
    params.k_strides[axis] = kv_strides[axis];
    params.v_strides[axis] = kv_strides[axis];
  }
  params.modifiers.scale = step.scale;
  baracuda::flash_sdpa::set_window(params.modifiers, BARACUDA_WINDOW_UNBOUNDED,
                                   BARACUDA_WINDOW_UNBOUNDED, step.is_causal != 0);
  params.modifiers.offset = int64_t{step.q_global_base} - step.k_global_base;
  params.running.output = o_acc;
  params.running.max = m_acc;
  params.running.sum = l_acc;
  params.running.output_strides[0] = q_strides[0];
  params.running.output_strides[1] = q_strides[1];
  params.running.output_strides[2] = d;
  params.running.row_strides[0] = heads * query_len;
  params.running.row_strides[1] = query_len;
  if (!touches) return baracuda::succeed();
  status = kernels.launch(params, stream, kStepOp);
  return status == BARACUDA_STATUS_SUCCESS ? baracuda::succeed() : status;
}

baracuda_status run_finalize(baracuda_element element, int32_t batch_size, int32_t num_heads,
                             int32_t q_local, int32_t head_dim, const void* o_acc,
                             const void* m_acc, const void* l_acc, void* y, void* lse,
                             baracuda_stream stream) {
  const NamedExtent extents[] = {{"batch_size", batch_size},
                                 {"num_heads", num_heads},
                                 {"q_local", q_local},
                                 {"head_dim", head_dim}};
  baracuda_status status =
      baracuda::check_extents(kFinalizeOp, extents, sizeof(extents) / sizeof(extents[0]));
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = baracuda::check_element(kFinalizeOp, element);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  int64_t elements = 0, rows = 0;
  status = seed_sizes(kFinalizeOp, batch_size, num_heads, q_local, head_dim, &elements, &rows);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  // With head_dim 0 there is no output element, and the kernel reads nothing.
  const int64_t row_count = head_dim > 0 ? rows : 0;
  const size_t size = compute_bytes(element);
  const SeedBuffer written[] = {{"y", y, elements, baracuda_element_size(element)},
                                {"lse", lse, lse != nullptr ? row_count : 0, size}};
  const SeedBuffer read[] = {{"o_acc", o_acc, elements, size},
                             {"m_acc", m_acc, row_count, size},
                             {"l_acc", l_acc, row_count, size}};
  status = check_buffers(kFinalizeOp, written, 2, read, 3);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  const int64_t d = head_dim;
  const int64_t heads = num_heads;
  const int64_t query_len = q_local;
  baracuda::ring_attention::FinalizeParams params;
  params.accumulators = {const_cast<void*>(o_acc), const_cast<void*>(m_acc),
                         const_cast<void*>(l_acc)};
  params.y = y;
  params.y_strides[0] = heads * query_len * d;
  params.y_strides[1] = query_len * d;
  params.y_strides[2] = d;
  params.y_strides[3] = 1;
  params.lse = lse;
  params.lse_strides[0] = heads * query_len;
  params.lse_strides[1] = query_len;
  params.lse_strides[2] = 1;
  params.batch_size = batch_size;
  params.num_heads = num_heads;
  params.query_len = q_local;
  params.head_dim = head_dim;
  status = baracuda::ring_attention::launch_finalize(element, params, stream, kFinalizeOp);
  return status == BARACUDA_STATUS_SUCCESS ? baracuda::succeed() : status;
}

}  // namespace

#define BARACUDA_DEFINE_SEED_RING_ATTENTION_STEP_RUN(name, element)                              \
  BARACUDA_SEED_RING_ATTENTION_STEP_RUN(name) {                                                  \
    const SeedStep step = {batch_size,    num_heads,     q_local, k_chunk,  head_dim,            \
                           q_global_base, k_global_base, scale,   is_causal};                    \
    return baracuda::guard(                                                                      \
        kStepOp, [&] { return run_step(element, step, q, k, v, o_acc, m_acc, l_acc, stream); }); \
  }
#define BARACUDA_DEFINE_SEED_RING_ATTENTION_FINALIZE_RUN(name, element)                           \
  BARACUDA_SEED_RING_ATTENTION_FINALIZE_RUN(name) {                                               \
    return baracuda::guard(kFinalizeOp, [&] {                                                     \
      return run_finalize(element, batch_size, num_heads, q_local, head_dim, o_acc, m_acc, l_acc, \
                          y, lse, stream);                                                        \
    });                                                                                           \
  }

extern "C" {

baracuda_status baracuda_kernels_ring_attention_init_run(float* o_acc, float* m_acc, float* l_acc,
                                                         int64_t o_len, int64_t ml_len,
                                                         baracuda_stream stream) {
  return baracuda::guard(kInitOp, [&] {
    return run_init(BARACUDA_ELEMENT_F32, o_acc, m_acc, l_acc, o_len, ml_len, stream);
  });
}

baracuda_status baracuda_kernels_ring_attention_f64_init_run(double* o_acc, double* m_acc,
                                                             double* l_acc, int64_t o_len,
                                                             int64_t ml_len,
                                                             baracuda_stream stream) {
  return baracuda::guard(kInitOp, [&] {
    return run_init(BARACUDA_ELEMENT_F64, o_acc, m_acc, l_acc, o_len, ml_len, stream);
  });
}

BARACUDA_DEFINE_SEED_RING_ATTENTION_STEP_RUN(baracuda_kernels_ring_attention_f32_step_run,
                                             BARACUDA_ELEMENT_F32)
BARACUDA_DEFINE_SEED_RING_ATTENTION_STEP_RUN(baracuda_kernels_ring_attention_f16_step_run,
                                             BARACUDA_ELEMENT_F16)
BARACUDA_DEFINE_SEED_RING_ATTENTION_STEP_RUN(baracuda_kernels_ring_attention_bf16_step_run,
                                             BARACUDA_ELEMENT_BF16)
BARACUDA_DEFINE_SEED_RING_ATTENTION_STEP_RUN(baracuda_kernels_ring_attention_f64_step_run,
                                             BARACUDA_ELEMENT_F64)
BARACUDA_DEFINE_SEED_RING_ATTENTION_FINALIZE_RUN(baracuda_kernels_ring_attention_f32_finalize_run,
                                                 BARACUDA_ELEMENT_F32)
BARACUDA_DEFINE_SEED_RING_ATTENTION_FINALIZE_RUN(baracuda_kernels_ring_attention_f16_finalize_run,
                                                 BARACUDA_ELEMENT_F16)
BARACUDA_DEFINE_SEED_RING_ATTENTION_FINALIZE_RUN(baracuda_kernels_ring_attention_bf16_finalize_run,
                                                 BARACUDA_ELEMENT_BF16)
BARACUDA_DEFINE_SEED_RING_ATTENTION_FINALIZE_RUN(baracuda_kernels_ring_attention_f64_finalize_run,
                                                 BARACUDA_ELEMENT_F64)

}  // extern "C"
