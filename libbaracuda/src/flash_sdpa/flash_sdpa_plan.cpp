// FlashSdpaPlan: describe (descriptor), can_implement, workspace size, run.
//
// Every check of the operation lives in this file: descriptor checks in check_descriptor
// (no device needed), argument checks in check_args. Each refusal names the field and gives
// what it got and what it expected.
#include <cinttypes>
#include <cmath>
#include <new>

#include "baracuda/baracuda.h"
#include "common/descriptor_check.h"
#include "common/device.h"
#include "common/plan_report.h"
#include "common/status.h"
#include "common/tensor_check.h"
#include "flash_sdpa/flash_sdpa_kernels.h"
#include "flash_sdpa/flash_sdpa_params.h"
#include "flash_sdpa/flash_sdpa_portable.h"

namespace {

using baracuda::Access;
using baracuda::Broadcast;
using baracuda::DeviceInfo;
using baracuda::fail;
using baracuda::NamedExtent;
using baracuda::TensorRule;
using baracuda::flash_sdpa::FlashKernels;
using baracuda::flash_sdpa::Params;

constexpr const char* kSelectOp = "flash_sdpa_plan_select";
constexpr const char* kCanImplementOp = "flash_sdpa_can_implement";
constexpr const char* kRunOp = "flash_sdpa_run";
constexpr const char* kCheckArgsOp = "flash_sdpa_check_args";

}  // namespace

struct baracuda_flash_sdpa_plan_s {
  baracuda_flash_sdpa_descriptor desc;
  FlashKernels kernels;
  DeviceInfo device;
  baracuda::KernelReport report;
};

namespace {

// Every check that needs only the descriptor and the preference.
baracuda_status check_descriptor(const char* op, const baracuda_flash_sdpa_descriptor& desc,
                                 const baracuda_plan_preference& preference) {
  baracuda_status status = baracuda::check_element(op, desc.element);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  const NamedExtent extents[] = {{"batch_size", desc.batch_size},
                                 {"num_heads", desc.num_heads},
                                 {"query_len", desc.query_len},
                                 {"key_len", desc.key_len},
                                 {"d_k", desc.d_k},
                                 {"d_v", desc.d_v}};
  status = baracuda::check_extents(op, extents, sizeof(extents) / sizeof(extents[0]));
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = baracuda::check_score_options(op, desc.element, desc.scale, desc.softcap, desc.is_causal,
                                         desc.window_size_left, desc.window_size_right);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  if (desc.alignment != BARACUDA_ALIGN_TOP_LEFT && desc.alignment != BARACUDA_ALIGN_BOTTOM_RIGHT) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "alignment is not an alignment (got %d, expected BARACUDA_ALIGN_TOP_LEFT or "
                "BARACUDA_ALIGN_BOTTOM_RIGHT)",
                static_cast<int>(desc.alignment));
  }
  status = baracuda::check_preference(op, preference);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = baracuda::check_head_dim(op, "d_k", desc.d_k);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = baracuda::check_head_dim(op, "d_v", desc.d_v);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  return baracuda::check_grid(op, desc.batch_size, desc.num_heads, desc.query_len,
                              baracuda::flash_sdpa::kPortableBlockRows);
}

bool broadcasts_all_heads(const baracuda_tensor& tensor, int32_t num_heads) {
  return tensor.rank == 4 && tensor.shape[1] == num_heads && tensor.strides[1] == 0;
}

// Every check of the arguments against a checked descriptor.
baracuda_status check_args(const char* op, const baracuda_flash_sdpa_descriptor& d,
                           const baracuda_flash_sdpa_args* args) {
  if (args == nullptr) return baracuda::fail_null_args(op);
  const int64_t batch = d.batch_size, heads = d.num_heads, query_len = d.query_len,
                key_len = d.key_len, d_k = d.d_k, d_v = d.d_v;

  // K's head count sets the GQA group; V must use the same convention.
  if (args->k.rank != 4) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op, "k rank mismatch (got %d, expected 4)",
                args->k.rank);
  }
  const int64_t heads_k = args->k.shape[1];
  if (heads == 0 && heads_k != 0) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "k shape[1] (num_heads_k) must be 0 when num_heads is 0 (got %" PRId64
                ", expected 0)",
                heads_k);
  }
  if (heads > 0 && (heads_k <= 0 || heads % heads_k != 0)) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "k shape[1] (num_heads_k) must divide num_heads (got %" PRId64
                ", expected a divisor of %" PRId64 ")",
                heads_k, heads);
  }
  if (args->v.rank == 4 && args->v.shape[1] != heads_k &&
      broadcasts_all_heads(args->k, d.num_heads) != broadcasts_all_heads(args->v, d.num_heads)) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "k and v disagree on the head-broadcast convention (got k heads %" PRId64
                " with stride %" PRId64 " and v heads %" PRId64 " with stride %" PRId64
                ", expected the same heads: both [B, %" PRId64 "] with stride 0, or both [B, Hk])",
                heads_k, args->k.strides[1], args->v.shape[1], args->v.strides[1], heads);
  }

  const baracuda_element element = d.element;
  const int64_t q_shape[4] = {batch, heads, query_len, d_k};
  const int64_t k_shape[4] = {batch, heads_k, key_len, d_k};
  const int64_t v_shape[4] = {batch, heads_k, key_len, d_v};
  const int64_t y_shape[4] = {batch, heads, query_len, d_v};
  const int64_t lse_shape[3] = {batch, heads, query_len};
  const int64_t mask_shape[4] = {batch, heads, query_len, key_len};
  const TensorRule rules[] = {
      {"q", element, 4, q_shape, Broadcast::kNone, Access::kRead, true},
      {"k", element, 4, k_shape, Broadcast::kNone, Access::kRead, true},
      {"v", element, 4, v_shape, Broadcast::kNone, Access::kRead, true},
      {"y", element, 4, y_shape, Broadcast::kNone, Access::kWrite, true},
      {"lse", baracuda::accumulator_element(element), 3, lse_shape, Broadcast::kNone,
       Access::kWrite, false},
  };
  const baracuda_tensor* tensors[] = {&args->q, &args->k, &args->v, &args->y, &args->lse};
  for (size_t n = 0; n < sizeof(rules) / sizeof(rules[0]); ++n) {
    const baracuda_status status = baracuda::check_tensor(op, *tensors[n], rules[n]);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
  }

  if (baracuda::is_present(args->mask)) {
    const TensorRule rule = {
        "mask", BARACUDA_ELEMENT_F32, 4, mask_shape, Broadcast::kExtentOne, Access::kRead, false};
    const baracuda_status status = baracuda::check_tensor(op, args->mask, rule);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
  }

  if (baracuda::is_present(args->alibi_slopes)) {
    const baracuda_status status =
        baracuda::check_alibi_slopes(op, args->alibi_slopes, batch, heads);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
  }

  using baracuda::byte_range;
  const baracuda::ByteRange written[] = {byte_range("y", args->y), byte_range("lse", args->lse)};
  const baracuda::ByteRange read[] = {byte_range("q", args->q), byte_range("k", args->k),
                                      byte_range("v", args->v), byte_range("mask", args->mask),
                                      byte_range("alibi_slopes", args->alibi_slopes)};
  return baracuda::check_memory_ranges(op, written, sizeof(written) / sizeof(written[0]), read,
                                       sizeof(read) / sizeof(read[0]));
}

baracuda_status check_plan_args(const char* op, const baracuda_flash_sdpa_plan_s* plan,
                                const baracuda_flash_sdpa_args* args) {
  if (plan == nullptr) return baracuda::fail_null_plan(op);
  return check_args(op, plan->desc, args);
}

void copy_strides(int64_t* to, const baracuda_tensor& from) {
  for (int axis = 0; axis < from.rank; ++axis) to[axis] = from.strides[axis];
}

Params make_params(const baracuda_flash_sdpa_descriptor& d, const baracuda_flash_sdpa_args& args) {
  Params params;
  params.q = args.q.data;
  params.k = args.k.data;
  params.v = args.v.data;
  params.y = args.y.data;
  params.lse = args.lse.data;
  params.batch_size = d.batch_size;
  params.num_heads = d.num_heads;
  params.num_heads_k = static_cast<int32_t>(args.k.shape[1]);
  params.query_len = d.query_len;
  params.key_len = d.key_len;
  params.d_k = d.d_k;
  params.d_v = d.d_v;
  copy_strides(params.q_strides, args.q);
  copy_strides(params.k_strides, args.k);
  copy_strides(params.v_strides, args.v);
  copy_strides(params.y_strides, args.y);
  copy_strides(params.lse_strides, args.lse);

  baracuda::flash_sdpa::ScoreModifiers& modifiers = params.modifiers;
  modifiers.scale = d.scale;
  modifiers.softcap = d.softcap;
  baracuda::flash_sdpa::set_alibi_slopes(modifiers, args.alibi_slopes);
  if (baracuda::is_present(args.mask)) {
    modifiers.mask = static_cast<const float*>(args.mask.data);
    for (int axis = 0; axis < 4; ++axis) {
      modifiers.mask_strides[axis] = baracuda::broadcast_stride(args.mask, axis);
    }
  }
  baracuda::flash_sdpa::set_window(modifiers, d.window_size_left, d.window_size_right,
                                   d.is_causal != 0);
  modifiers.offset =
      d.alignment == BARACUDA_ALIGN_BOTTOM_RIGHT ? int64_t{d.key_len} - d.query_len : 0;
  return params;
}

}  // namespace

extern "C" {

const char* baracuda_backend_string(baracuda_backend backend) {
  switch (backend) {
    case BARACUDA_BACKEND_AUTO: return "auto";
    case BARACUDA_BACKEND_PORTABLE: return "portable";
    case BARACUDA_BACKEND_HOPPER: return "hopper";
  }
  return "invalid";
}

void baracuda_flash_sdpa_descriptor_init(baracuda_flash_sdpa_descriptor* desc, int32_t batch_size,
                                         int32_t num_heads, int32_t query_len, int32_t key_len,
                                         int32_t d_k, int32_t d_v, baracuda_element element) {
  if (desc == nullptr) return;
  desc->batch_size = batch_size;
  desc->num_heads = num_heads;
  desc->query_len = query_len;
  desc->key_len = key_len;
  desc->d_k = d_k;
  desc->d_v = d_v;
  desc->scale = d_k > 0 ? 1.0 / std::sqrt(static_cast<double>(d_k)) : 1.0;
  desc->is_causal = 0;
  desc->element = element;
  desc->window_size_left = BARACUDA_WINDOW_UNBOUNDED;
  desc->window_size_right = BARACUDA_WINDOW_UNBOUNDED;
  desc->softcap = 0.0;
  desc->alignment = BARACUDA_ALIGN_TOP_LEFT;
}

baracuda_status baracuda_flash_sdpa_plan_select(const baracuda_flash_sdpa_descriptor* desc,
                                                const baracuda_plan_preference* preference,
                                                baracuda_flash_sdpa_plan* plan) {
  return baracuda::guard(kSelectOp, [&] {
    baracuda_plan_preference chosen;
    baracuda_status status =
        baracuda::check_select_pointers(kSelectOp, desc, preference, plan, &chosen);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
    status = check_descriptor(kSelectOp, *desc, chosen);
    if (status != BARACUDA_STATUS_SUCCESS) return status;

    // The backend by the rule of flash_sdpa_kernels.h: hopper for f16 / bf16 on sm_90 where it
    // has the head dim, portable otherwise.
    FlashKernels kernels;
    DeviceInfo device;
    const int head_dim = desc->d_k > desc->d_v ? desc->d_k : desc->d_v;
    status = baracuda::flash_sdpa::select_flash_kernels(kSelectOp, desc->element, head_dim,
                                                        chosen.backend, &kernels, &device);
    if (status != BARACUDA_STATUS_SUCCESS) return status;

    auto* selected = new (std::nothrow) baracuda_flash_sdpa_plan_s{
        *desc, kernels, device,
        baracuda::make_kernel_report("flash_sdpa", kernels.backend, desc->element,
                                     kernels.head_dim_bucket, device.arch)};
    if (selected == nullptr) {
      return fail(BARACUDA_STATUS_INTERNAL, kSelectOp,
                  "host allocation of the plan failed (got no memory, expected %zu bytes)",
                  sizeof(baracuda_flash_sdpa_plan_s));
    }
    *plan = selected;
    return baracuda::succeed();
  });
}

baracuda_status baracuda_flash_sdpa_check_args(const baracuda_flash_sdpa_descriptor* desc,
                                               const baracuda_flash_sdpa_args* args) {
  return baracuda::guard(kCheckArgsOp, [&] {
    if (desc == nullptr) return baracuda::fail_null_descriptor(kCheckArgsOp);
    const baracuda_plan_preference any = {BARACUDA_BACKEND_AUTO};
    baracuda_status status = check_descriptor(kCheckArgsOp, *desc, any);
    if (status == BARACUDA_STATUS_SUCCESS) status = check_args(kCheckArgsOp, *desc, args);
    return status == BARACUDA_STATUS_SUCCESS ? baracuda::succeed() : status;
  });
}

baracuda_status baracuda_flash_sdpa_can_implement(baracuda_flash_sdpa_plan plan,
                                                  const baracuda_flash_sdpa_args* args) {
  return baracuda::guard(kCanImplementOp, [&] {
    const baracuda_status status = check_plan_args(kCanImplementOp, plan, args);
    return status == BARACUDA_STATUS_SUCCESS ? baracuda::succeed() : status;
  });
}

baracuda_status baracuda_flash_sdpa_workspace_size(baracuda_flash_sdpa_plan plan, size_t* bytes) {
  return baracuda::guard("flash_sdpa_workspace_size", [&] {
    if (plan == nullptr || bytes == nullptr) {
      return baracuda::fail_null_plan_or("flash_sdpa_workspace_size", "bytes");
    }
    *bytes = 0;
    return baracuda::succeed();
  });
}

baracuda_status baracuda_flash_sdpa_run(baracuda_flash_sdpa_plan plan,
                                        const baracuda_flash_sdpa_args* args, void* workspace,
                                        size_t workspace_bytes, baracuda_stream stream) {
  return baracuda::guard(kRunOp, [&] {
    baracuda_status status = check_plan_args(kRunOp, plan, args);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
    size_t needed = 0;
    baracuda_flash_sdpa_workspace_size(plan, &needed);
    if (workspace_bytes < needed || (needed > 0 && workspace == nullptr)) {
      return baracuda::fail_with_sizes(
          BARACUDA_STATUS_WORKSPACE_TOO_SMALL, static_cast<int64_t>(needed),
          static_cast<int64_t>(workspace_bytes), kRunOp,
          "workspace too small (got %zu bytes, expected at least %zu)", workspace_bytes, needed);
    }
    status = baracuda::check_current_device(kRunOp, plan->device);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
    status = plan->kernels.launch(make_params(plan->desc, *args), stream, kRunOp);
    return status == BARACUDA_STATUS_SUCCESS ? baracuda::succeed() : status;
  });
}

baracuda_backend baracuda_flash_sdpa_backend(baracuda_flash_sdpa_plan plan) {
  return plan != nullptr ? plan->report.backend : BARACUDA_BACKEND_AUTO;
}

baracuda_status baracuda_flash_sdpa_sku(baracuda_flash_sdpa_plan plan, baracuda_kernel_sku* sku) {
  return baracuda::guard("flash_sdpa_sku", [&] {
    if (plan == nullptr || sku == nullptr) {
      return baracuda::fail_null_plan_or("flash_sdpa_sku", "sku");
    }
    baracuda::fill_sku(plan->report, sku);
    return baracuda::succeed();
  });
}

baracuda_status baracuda_flash_sdpa_precision_guarantee(baracuda_flash_sdpa_plan plan,
                                                        baracuda_precision_guarantee* guarantee) {
  return baracuda::guard("flash_sdpa_precision_guarantee", [&] {
    if (plan == nullptr || guarantee == nullptr) {
      return baracuda::fail_null_plan_or("flash_sdpa_precision_guarantee", "guarantee");
    }
    baracuda::fill_precision_guarantee(plan->desc.element, guarantee);
    return baracuda::succeed();
  });
}

void baracuda_flash_sdpa_plan_destroy(baracuda_flash_sdpa_plan plan) {
  delete plan;
}

}  // extern "C"
