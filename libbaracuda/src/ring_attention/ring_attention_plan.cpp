// RingAttentionPlan: describe (descriptor), can_implement, scratch sizes, run.
//
// Every check of the operation lives in this file: descriptor checks in check_descriptor (no
// device needed), argument checks in check_args, communicator checks in ring_of. The step is
// the flash kernel with a running state; this file decides which (query part, key part) pairs
// of each step can see each other on global positions, and moves the K/V chunks around the
// ring with NCCL.
#include <cuda_runtime_api.h>

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
#include "nccl/nccl_api.h"
#include "ring_attention/ring_attention_kernels.h"
#include "ring_attention/ring_attention_layout.h"

namespace {

using baracuda::Access;
using baracuda::Broadcast;
using baracuda::DeviceInfo;
using baracuda::fail;
using baracuda::NamedExtent;
using baracuda::TensorRule;
using baracuda::flash_sdpa::FlashKernels;
using baracuda::flash_sdpa::Params;
using baracuda::ring_attention::Accumulators;
using baracuda::ring_attention::Segment;
using baracuda::ring_attention::SegmentList;

constexpr const char* kSelectOp = "ring_attention_plan_select";
constexpr const char* kCanImplementOp = "ring_attention_can_implement";
constexpr const char* kRunOp = "ring_attention_run";
constexpr const char* kCheckArgsOp = "ring_attention_check_args";

// The accumulator scratch must start on this boundary (bytes).
constexpr size_t kAccumulatorAlignment = 16;

}  // namespace

struct baracuda_ring_attention_plan_s {
  baracuda_ring_attention_descriptor desc;
  FlashKernels kernels;
  DeviceInfo device;
  baracuda::KernelReport report;
  cudaStream_t transfer_stream;  // the overlapped schedule's NCCL transfers
  cudaEvent_t compute_done;      // on the caller's stream: the buffer to receive into is free
  cudaEvent_t transfer_done;     // on the transfer stream: the next chunk has arrived
};

namespace {

// ---------------------------------------------------------------- sizes

size_t element_size(const baracuda_ring_attention_descriptor& d) {
  return baracuda_element_size(d.element);
}

size_t compute_size(const baracuda_ring_attention_descriptor& d) {
  return baracuda_element_size(baracuda::accumulator_element(d.element));
}

// Elements of one of K or V: B * Hk * Sk * D.
int64_t chunk_elements(const baracuda_ring_attention_descriptor& d) {
  return int64_t{d.batch_size} * d.num_heads_k * d.key_len * d.head_dim;
}

int64_t kv_scratch_elements(const baracuda_ring_attention_descriptor& d) {
  return 2 * chunk_elements(d);
}

int64_t query_rows(const baracuda_ring_attention_descriptor& d) {
  return int64_t{d.batch_size} * d.num_heads * d.query_len;
}

int64_t accumulator_scratch_bytes(const baracuda_ring_attention_descriptor& d) {
  return baracuda::ring_attention::accumulator_bytes(query_rows(d), d.head_dim, compute_size(d));
}

// ---------------------------------------------------------------- descriptor

// The scratch sizes in bytes fit in int64, so that every size below (elements and bytes of
// the K/V chunk and of the accumulators) is exact.
baracuda_status check_sizes(const char* op, const baracuda_ring_attention_descriptor& d) {
  constexpr int64_t kChunksPerScratch = 2;  // K then V
  constexpr int64_t kRowStatistics = 2;     // m and l beside each row of o
  int64_t bytes = 0;
  baracuda_status status = baracuda::checked_size(
      op, "kv_scratch bytes (2 x batch_size x num_heads_k x key_len x head_dim x element size)",
      {kChunksPerScratch, d.batch_size, d.num_heads_k, d.key_len, d.head_dim}, element_size(d),
      &bytes);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  return baracuda::checked_size(
      op,
      "accumulator_scratch bytes (batch_size x num_heads x query_len x (head_dim + 2) x compute "
      "size)",
      {d.batch_size, d.num_heads, d.query_len, int64_t{d.head_dim} + kRowStatistics},
      compute_size(d), &bytes);
}

// Every check that needs only the descriptor and the preference.
baracuda_status check_descriptor(const char* op, const baracuda_ring_attention_descriptor& desc,
                                 const baracuda_plan_preference& preference) {
  baracuda_status status = baracuda::check_element(op, desc.element);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  const NamedExtent extents[] = {{"batch_size", desc.batch_size},   {"num_heads", desc.num_heads},
                                 {"num_heads_k", desc.num_heads_k}, {"query_len", desc.query_len},
                                 {"key_len", desc.key_len},         {"head_dim", desc.head_dim}};
  status = baracuda::check_extents(op, extents, sizeof(extents) / sizeof(extents[0]));
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = baracuda::check_score_options(op, desc.element, desc.scale, desc.softcap, desc.is_causal,
                                         desc.window_size_left, desc.window_size_right);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  if (desc.layout != BARACUDA_RING_LAYOUT_CONTIGUOUS &&
      desc.layout != BARACUDA_RING_LAYOUT_ZIGZAG) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "layout is not a ring layout (got %d, expected BARACUDA_RING_LAYOUT_CONTIGUOUS or "
                "BARACUDA_RING_LAYOUT_ZIGZAG)",
                static_cast<int>(desc.layout));
  }
  if (desc.schedule != BARACUDA_RING_SCHEDULE_OVERLAPPED &&
      desc.schedule != BARACUDA_RING_SCHEDULE_SERIAL) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "schedule is not a ring schedule (got %d, expected "
                "BARACUDA_RING_SCHEDULE_OVERLAPPED or BARACUDA_RING_SCHEDULE_SERIAL)",
                static_cast<int>(desc.schedule));
  }
  status = baracuda::check_preference(op, preference);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  if (desc.num_heads == 0 && desc.num_heads_k != 0) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "num_heads_k must be 0 when num_heads is 0 (got %d, expected 0)", desc.num_heads_k);
  }
  if (desc.num_heads > 0 && (desc.num_heads_k == 0 || desc.num_heads % desc.num_heads_k != 0)) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "num_heads_k must divide num_heads (got %d, expected a divisor of %d)",
                desc.num_heads_k, desc.num_heads);
  }
  if (desc.layout == BARACUDA_RING_LAYOUT_ZIGZAG) {
    const NamedExtent halves[] = {{"query_len", desc.query_len}, {"key_len", desc.key_len}};
    for (const NamedExtent& half : halves) {
      if (half.value % 2 != 0) {
        return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                    "%s must be even for the zigzag layout, which holds two chunks of %s / 2 "
                    "per rank (got %d, expected an even number)",
                    half.field, half.field, half.value);
      }
    }
  }
  status = baracuda::check_head_dim(op, "head_dim", desc.head_dim);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = baracuda::check_grid(op, desc.batch_size, desc.num_heads, desc.query_len,
                                baracuda::flash_sdpa::kPortableBlockRows);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  return check_sizes(op, desc);
}

// ---------------------------------------------------------------- arguments

// A K/V scratch buffer: rank 1 of the element, contiguous, holding at least `needed` elements.
baracuda_status check_kv_scratch(const char* op, const char* name, const baracuda_tensor& scratch,
                                 baracuda_element element, int64_t needed) {
  if (scratch.rank != 1) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op, "%s rank mismatch (got %d, expected 1)", name,
                scratch.rank);
  }
  if (scratch.element != element) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op, "%s element mismatch (got %s, expected %s)",
                name, baracuda_element_string(scratch.element), baracuda_element_string(element));
  }
  if (scratch.shape[0] > 1 && scratch.strides[0] != 1) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "%s must be contiguous (got stride %" PRId64 ", expected 1)", name,
                scratch.strides[0]);
  }
  if (needed > 0 && scratch.data == nullptr) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "%s data is NULL (got NULL, expected a device pointer to %" PRId64 " elements)",
                name, needed);
  }
  const baracuda_status aligned =
      baracuda::check_aligned(op, name, scratch.data, baracuda_element_size(element), element);
  if (aligned != BARACUDA_STATUS_SUCCESS) return aligned;
  const int64_t held =
      scratch.shape[0] < scratch.buffer_elements ? scratch.shape[0] : scratch.buffer_elements;
  if (held < needed) {
    return baracuda::fail_with_sizes(BARACUDA_STATUS_BUFFER_TOO_SMALL, needed, held, op,
                                     "%s holds too few elements for K then V (got %" PRId64
                                     ", expected at least %" PRId64 " = kv_scratch_elements)",
                                     name, held, needed);
  }
  return BARACUDA_STATUS_SUCCESS;
}

// Every argument's bytes lie inside memory, and what the ring writes (y, lse, the three
// scratch buffers) shares no byte with anything else.
baracuda_status check_ring_memory(const char* op, const baracuda_ring_attention_descriptor& d,
                                  const baracuda_ring_attention_args& args) {
  const int64_t kv_bytes = kv_scratch_elements(d) * static_cast<int64_t>(element_size(d));
  using baracuda::byte_range;
  const baracuda::ByteRange written[] = {
      byte_range("y", args.y),
      byte_range("lse", args.lse),
      {"kv_scratch_a", args.kv_scratch_a.data, kv_bytes},
      {"kv_scratch_b", args.kv_scratch_b.data, kv_bytes},
      {"accumulator_scratch", args.accumulator_scratch, accumulator_scratch_bytes(d)}};
  const baracuda::ByteRange read[] = {byte_range("q", args.q), byte_range("k", args.k),
                                      byte_range("v", args.v),
                                      byte_range("alibi_slopes", args.alibi_slopes)};
  return baracuda::check_memory_ranges(op, written, sizeof(written) / sizeof(written[0]), read,
                                       sizeof(read) / sizeof(read[0]));
}

// Every check of the arguments against a checked descriptor.
baracuda_status check_args(const char* op, const baracuda_ring_attention_descriptor& d,
                           const baracuda_ring_attention_args* args) {
  if (args == nullptr) return baracuda::fail_null_args(op);
  const int64_t batch = d.batch_size, heads = d.num_heads, heads_k = d.num_heads_k,
                query_len = d.query_len, key_len = d.key_len, head_dim = d.head_dim;
  const baracuda_element element = d.element;
  const int64_t q_shape[4] = {batch, heads, query_len, head_dim};
  const int64_t kv_shape[4] = {batch, heads_k, key_len, head_dim};
  const int64_t lse_shape[3] = {batch, heads, query_len};

  const TensorRule q_rule = {"q", element, 4, q_shape, Broadcast::kNone, Access::kRead, true};
  baracuda_status status = baracuda::check_tensor(op, args->q, q_rule);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  if (baracuda::is_present(args->k) != baracuda::is_present(args->v)) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "k and v go together (got k %s and v %s, expected both, to be staged into "
                "kv_scratch_a, or neither, when kv_scratch_a holds them already)",
                baracuda::is_present(args->k) ? "present" : "absent",
                baracuda::is_present(args->v) ? "present" : "absent");
  }
  if (baracuda::is_present(args->k)) {
    // Staging copies any strides into the contiguous scratch.
    const TensorRule k_rule = {"k", element, 4, kv_shape, Broadcast::kNone, Access::kRead, false};
    const TensorRule v_rule = {"v", element, 4, kv_shape, Broadcast::kNone, Access::kRead, false};
    status = baracuda::check_tensor(op, args->k, k_rule);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
    status = baracuda::check_tensor(op, args->v, v_rule);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
  }
  const TensorRule y_rule = {"y", element, 4, q_shape, Broadcast::kNone, Access::kWrite, true};
  status = baracuda::check_tensor(op, args->y, y_rule);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  if (baracuda::is_present(args->lse)) {
    const TensorRule lse_rule = {"lse",
                                 baracuda::accumulator_element(element),
                                 3,
                                 lse_shape,
                                 Broadcast::kNone,
                                 Access::kWrite,
                                 false};
    status = baracuda::check_tensor(op, args->lse, lse_rule);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
  }
  if (baracuda::is_present(args->alibi_slopes)) {
    status = baracuda::check_alibi_slopes(op, args->alibi_slopes, batch, heads);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
  }

  const int64_t kv_needed = kv_scratch_elements(d);
  status = check_kv_scratch(op, "kv_scratch_a", args->kv_scratch_a, element, kv_needed);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = check_kv_scratch(op, "kv_scratch_b", args->kv_scratch_b, element, kv_needed);
  if (status != BARACUDA_STATUS_SUCCESS) return status;

  const int64_t accumulator_needed = accumulator_scratch_bytes(d);
  const size_t accumulator_got = args->accumulator_scratch_bytes;
  if (accumulator_got < static_cast<size_t>(accumulator_needed)) {
    return baracuda::fail_with_sizes(
        BARACUDA_STATUS_WORKSPACE_TOO_SMALL, accumulator_needed,
        static_cast<int64_t>(accumulator_got), op,
        "accumulator_scratch too small (got %zu bytes, expected at least %" PRId64
        " bytes = accumulator_scratch_bytes)",
        accumulator_got, accumulator_needed);
  }
  if (accumulator_needed > 0 && args->accumulator_scratch == nullptr) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "accumulator_scratch is NULL (got NULL, expected device memory for %" PRId64
                " bytes)",
                accumulator_needed);
  }
  const baracuda_status aligned = baracuda::check_aligned(
      op, "accumulator_scratch", args->accumulator_scratch, kAccumulatorAlignment);
  if (aligned != BARACUDA_STATUS_SUCCESS) return aligned;
  return check_ring_memory(op, d, *args);
}

baracuda_status check_plan_args(const char* op, const baracuda_ring_attention_plan_s* plan,
                                const baracuda_ring_attention_args* args) {
  if (plan == nullptr) return baracuda::fail_null_plan(op);
  return check_args(op, plan->desc, args);
}

// ---------------------------------------------------------------- the ring

struct Ring {
  int world_size = 1;
  int rank = 0;
  const baracuda::nccl::Api* api = nullptr;  // nullptr for one rank without a communicator
  baracuda::nccl::ncclComm_t comm = nullptr;
};

// This rank's place in the ring, from comm (NULL: one rank); comm must live on the plan's device.
baracuda_status ring_of(baracuda_nccl_comm comm, const baracuda_ring_attention_plan_s& plan,
                        Ring* ring) {
  if (comm == nullptr) return BARACUDA_STATUS_SUCCESS;
  ring->api = baracuda::nccl::load_api(kRunOp);
  if (ring->api == nullptr) return BARACUDA_STATUS_LIBRARY_NOT_LOADED;
  ring->comm = comm;
  const baracuda::nccl::Api& api = *ring->api;
  int comm_device = -1;
  baracuda_status status = baracuda::nccl::check_nccl(api, api.CommCount(comm, &ring->world_size),
                                                      comm, kRunOp, "ncclCommCount");
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = baracuda::nccl::check_nccl(api, api.CommUserRank(comm, &ring->rank), comm, kRunOp,
                                      "ncclCommUserRank");
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status = baracuda::nccl::check_nccl(api, api.CommCuDevice(comm, &comm_device), comm, kRunOp,
                                      "ncclCommCuDevice");
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  if (comm_device != plan.device.ordinal) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, kRunOp,
                "comm lives on another device than the plan (got device %d, expected device %d)",
                comm_device, plan.device.ordinal);
  }
  return BARACUDA_STATUS_SUCCESS;
}

// Sends `send` to the next rank and receives `receive` from the previous one, as one NCCL group.
baracuda_status exchange(const Ring& ring, const void* send, void* receive, size_t bytes,
                         cudaStream_t stream) {
  const baracuda::nccl::Api& api = *ring.api;
  const int next = (ring.rank + 1) % ring.world_size;
  const int previous = (ring.rank + ring.world_size - 1) % ring.world_size;
  using baracuda::nccl::check_nccl;
  baracuda_status status = check_nccl(api, api.GroupStart(), ring.comm, kRunOp, "ncclGroupStart");
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status =
      check_nccl(api, api.Send(send, bytes, baracuda::nccl::ncclUint8, next, ring.comm, stream),
                 ring.comm, kRunOp, "ncclSend of the K/V chunk to the next rank");
  if (status == BARACUDA_STATUS_SUCCESS) {
    status = check_nccl(
        api, api.Recv(receive, bytes, baracuda::nccl::ncclUint8, previous, ring.comm, stream),
        ring.comm, kRunOp, "ncclRecv of the K/V chunk from the previous rank");
  }
  // The group is closed even after a failure, so that NCCL's group state stays consistent.
  baracuda::nccl::ncclResult_t ended = api.GroupEnd();
  // A non-blocking communicator finishes the group asynchronously.
  while (ended == baracuda::nccl::ncclInProgress) {
    if (api.CommGetAsyncError(ring.comm, &ended) != baracuda::nccl::ncclSuccess) break;
  }
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  return check_nccl(api, ended, ring.comm, kRunOp, "ncclGroupEnd of the K/V exchange");
}

unsigned char* bytes_of(void* pointer) {
  return static_cast<unsigned char*>(pointer);
}
const unsigned char* bytes_of(const void* pointer) {
  return static_cast<const unsigned char*>(pointer);
}

// The step kernel's launch for one (query part, key part) pair of a step.
Params step_params(const baracuda_ring_attention_descriptor& d,
                   const baracuda_ring_attention_args& args, const Accumulators& accumulators,
                   const void* kv_chunk, const Segment& queries, const Segment& keys) {
  const int64_t element_bytes = static_cast<int64_t>(element_size(d));
  const int64_t compute_bytes = static_cast<int64_t>(compute_size(d));
  const int64_t head_dim = d.head_dim;
  Params params;
  params.q = bytes_of(args.q.data) + queries.local_begin * args.q.strides[2] * element_bytes;
  params.k = bytes_of(kv_chunk) + keys.local_begin * head_dim * element_bytes;
  params.v = bytes_of(kv_chunk) + (chunk_elements(d) + keys.local_begin * head_dim) * element_bytes;
  params.batch_size = d.batch_size;
  params.num_heads = d.num_heads;
  params.num_heads_k = d.num_heads_k;
  params.query_len = static_cast<int32_t>(queries.length);
  params.key_len = static_cast<int32_t>(keys.length);
  params.d_k = d.head_dim;
  params.d_v = d.head_dim;
  for (int axis = 0; axis < 4; ++axis) params.q_strides[axis] = args.q.strides[axis];
  // The scratch chunk is contiguous [B, Hk, Sk, D], K then V.
  const int64_t kv_strides[4] = {int64_t{d.num_heads_k} * d.key_len * head_dim,
                                 int64_t{d.key_len} * head_dim, head_dim, 1};
  for (int axis = 0; axis < 4; ++axis) {
    params.k_strides[axis] = kv_strides[axis];
    params.v_strides[axis] = kv_strides[axis];
  }

  baracuda::flash_sdpa::ScoreModifiers& modifiers = params.modifiers;
  modifiers.scale = d.scale;
  modifiers.softcap = d.softcap;
  baracuda::flash_sdpa::set_alibi_slopes(modifiers, args.alibi_slopes);
  baracuda::flash_sdpa::set_window(modifiers, d.window_size_left, d.window_size_right,
                                   d.is_causal != 0);
  // Local row i and local key j sit at global positions queries.position + i and
  // keys.position + j: the kernel's diagonal offset is the difference of the two.
  modifiers.offset = queries.position - keys.position;

  baracuda::flash_sdpa::RunningState& running = params.running;
  const int64_t query_len = d.query_len;
  running.output = bytes_of(accumulators.output) + queries.local_begin * head_dim * compute_bytes;
  running.max = bytes_of(accumulators.max) + queries.local_begin * compute_bytes;
  running.sum = bytes_of(accumulators.sum) + queries.local_begin * compute_bytes;
  running.output_strides[0] = int64_t{d.num_heads} * query_len * head_dim;
  running.output_strides[1] = query_len * head_dim;
  running.output_strides[2] = head_dim;
  running.row_strides[0] = int64_t{d.num_heads} * query_len;
  running.row_strides[1] = query_len;
  return params;
}

// Folds the chunk that `origin` started with into the accumulators: one launch per pair of
// parts that the causal / window limits let see each other.
baracuda_status run_step(const baracuda_ring_attention_plan_s& plan,
                         const baracuda_ring_attention_args& args, const Accumulators& accumulators,
                         const Ring& ring, int origin, const void* kv_chunk, cudaStream_t stream) {
  const baracuda_ring_attention_descriptor& d = plan.desc;
  const SegmentList queries =
      baracuda::ring_attention::segments(d.layout, d.query_len, ring.world_size, ring.rank);
  const SegmentList keys =
      baracuda::ring_attention::segments(d.layout, d.key_len, ring.world_size, origin);
  baracuda::flash_sdpa::ScoreModifiers window;
  baracuda::flash_sdpa::set_window(window, d.window_size_left, d.window_size_right,
                                   d.is_causal != 0);
  for (int q = 0; q < queries.count; ++q) {
    for (int k = 0; k < keys.count; ++k) {
      if (!baracuda::ring_attention::parts_see_each_other(queries.parts[q], keys.parts[k],
                                                          window)) {
        continue;
      }
      const Params params =
          step_params(d, args, accumulators, kv_chunk, queries.parts[q], keys.parts[k]);
      const baracuda_status status = plan.kernels.launch(params, stream, kRunOp);
      if (status != BARACUDA_STATUS_SUCCESS) return status;
    }
  }
  return BARACUDA_STATUS_SUCCESS;
}

// The overlapped schedule's hand-offs: the transfer stream waits for the compute so far, the
// compute stream for the transfer.
baracuda_status hand_over(cudaEvent_t event, cudaStream_t from, cudaStream_t to, const char* what) {
  baracuda_status status = baracuda::check_cuda(cudaEventRecord(event, from), kRunOp, what);
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  return baracuda::check_cuda(cudaStreamWaitEvent(to, event, 0), kRunOp, what);
}

// Init, P steps with the rotation between them, finalize: all enqueued on `stream`.
baracuda_status run_ring(const baracuda_ring_attention_plan_s& plan,
                         const baracuda_ring_attention_args& args, const Ring& ring,
                         cudaStream_t stream) {
  const baracuda_ring_attention_descriptor& d = plan.desc;
  const int64_t rows = query_rows(d);
  const Accumulators accumulators = baracuda::ring_attention::accumulators_in(
      args.accumulator_scratch, rows, d.head_dim, compute_size(d));
  const size_t element_bytes = element_size(d);
  void* const kv_buffers[2] = {args.kv_scratch_a.data, args.kv_scratch_b.data};

  baracuda_status status;
  if (baracuda::is_present(args.k)) {
    status = baracuda::ring_attention::launch_stage(args.k, kv_buffers[0], stream, kRunOp);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
    void* v_part = bytes_of(kv_buffers[0]) + chunk_elements(d) * element_bytes;
    status = baracuda::ring_attention::launch_stage(args.v, v_part, stream, kRunOp);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
  }
  status = baracuda::ring_attention::launch_init(d.element, accumulators, rows * d.head_dim, rows,
                                                 stream, kRunOp);
  if (status != BARACUDA_STATUS_SUCCESS) return status;

  const size_t kv_bytes = static_cast<size_t>(kv_scratch_elements(d)) * element_bytes;
  const bool overlapped = d.schedule == BARACUDA_RING_SCHEDULE_OVERLAPPED;
  for (int step = 0; step < ring.world_size; ++step) {
    void* current = kv_buffers[step % 2];
    void* next = kv_buffers[(step + 1) % 2];
    const int origin = (ring.rank - step + ring.world_size) % ring.world_size;
    const bool rotates = step + 1 < ring.world_size && kv_bytes > 0;
    if (rotates && overlapped) {
      // The receive overwrites the buffer that the previous step read.
      status = hand_over(plan.compute_done, stream, plan.transfer_stream,
                         "ordering the K/V exchange after the previous step");
      if (status != BARACUDA_STATUS_SUCCESS) return status;
      status = exchange(ring, current, next, kv_bytes, plan.transfer_stream);
      if (status != BARACUDA_STATUS_SUCCESS) return status;
    }
    status = run_step(plan, args, accumulators, ring, origin, current, stream);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
    if (rotates && overlapped) {
      status = hand_over(plan.transfer_done, plan.transfer_stream, stream,
                         "ordering the next step after the K/V exchange");
    } else if (rotates) {
      status = exchange(ring, current, next, kv_bytes, stream);
    }
    if (status != BARACUDA_STATUS_SUCCESS) return status;
  }

  baracuda::ring_attention::FinalizeParams finalize;
  finalize.accumulators = accumulators;
  finalize.y = args.y.data;
  for (int axis = 0; axis < 4; ++axis) finalize.y_strides[axis] = args.y.strides[axis];
  if (baracuda::is_present(args.lse)) {
    finalize.lse = args.lse.data;
    for (int axis = 0; axis < 3; ++axis) finalize.lse_strides[axis] = args.lse.strides[axis];
  }
  finalize.batch_size = d.batch_size;
  finalize.num_heads = d.num_heads;
  finalize.query_len = d.query_len;
  finalize.head_dim = d.head_dim;
  return baracuda::ring_attention::launch_finalize(d.element, finalize, stream, kRunOp);
}

// The plan's transfer stream and its two events, on the current device.
baracuda_status make_transfer_resources(baracuda_ring_attention_plan_s* plan) {
  baracuda_status status =
      baracuda::check_cuda(cudaStreamCreateWithFlags(&plan->transfer_stream, cudaStreamNonBlocking),
                           kSelectOp, "cudaStreamCreateWithFlags(transfer stream)");
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  status =
      baracuda::check_cuda(cudaEventCreateWithFlags(&plan->compute_done, cudaEventDisableTiming),
                           kSelectOp, "cudaEventCreateWithFlags(compute_done)");
  if (status != BARACUDA_STATUS_SUCCESS) return status;
  return baracuda::check_cuda(
      cudaEventCreateWithFlags(&plan->transfer_done, cudaEventDisableTiming), kSelectOp,
      "cudaEventCreateWithFlags(transfer_done)");
}

void destroy_plan(baracuda_ring_attention_plan_s* plan) {
  if (plan == nullptr) return;
  if (plan->transfer_done != nullptr) cudaEventDestroy(plan->transfer_done);
  if (plan->compute_done != nullptr) cudaEventDestroy(plan->compute_done);
  if (plan->transfer_stream != nullptr) cudaStreamDestroy(plan->transfer_stream);
  delete plan;
}

}  // namespace

extern "C" {

const char* baracuda_ring_layout_string(baracuda_ring_layout layout) {
  switch (layout) {
    case BARACUDA_RING_LAYOUT_CONTIGUOUS: return "contiguous";
    case BARACUDA_RING_LAYOUT_ZIGZAG: return "zigzag";
  }
  return "invalid";
}

const char* baracuda_ring_schedule_string(baracuda_ring_schedule schedule) {
  switch (schedule) {
    case BARACUDA_RING_SCHEDULE_OVERLAPPED: return "overlapped";
    case BARACUDA_RING_SCHEDULE_SERIAL: return "serial";
  }
  return "invalid";
}

void baracuda_ring_attention_descriptor_init(baracuda_ring_attention_descriptor* desc,
                                             int32_t batch_size, int32_t num_heads,
                                             int32_t query_len, int32_t key_len, int32_t head_dim,
                                             baracuda_element element) {
  if (desc == nullptr) return;
  desc->batch_size = batch_size;
  desc->num_heads = num_heads;
  desc->num_heads_k = num_heads;
  desc->query_len = query_len;
  desc->key_len = key_len;
  desc->head_dim = head_dim;
  desc->scale = head_dim > 0 ? 1.0 / std::sqrt(static_cast<double>(head_dim)) : 1.0;
  desc->is_causal = 0;
  desc->element = element;
  desc->window_size_left = BARACUDA_WINDOW_UNBOUNDED;
  desc->window_size_right = BARACUDA_WINDOW_UNBOUNDED;
  desc->softcap = 0.0;
  desc->layout = BARACUDA_RING_LAYOUT_CONTIGUOUS;
  desc->schedule = BARACUDA_RING_SCHEDULE_OVERLAPPED;
}

baracuda_status baracuda_ring_attention_plan_select(const baracuda_ring_attention_descriptor* desc,
                                                    const baracuda_plan_preference* preference,
                                                    baracuda_ring_attention_plan* plan) {
  return baracuda::guard(kSelectOp, [&] {
    baracuda_plan_preference chosen;
    baracuda_status status =
        baracuda::check_select_pointers(kSelectOp, desc, preference, plan, &chosen);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
    status = check_descriptor(kSelectOp, *desc, chosen);
    if (status != BARACUDA_STATUS_SUCCESS) return status;

    // The step is the flash kernel the flash plan would choose (flash_sdpa_kernels.h).
    FlashKernels kernels;
    DeviceInfo device;
    status = baracuda::flash_sdpa::select_flash_kernels(kSelectOp, desc->element, desc->head_dim,
                                                        chosen.backend, &kernels, &device);
    if (status != BARACUDA_STATUS_SUCCESS) return status;

    auto* selected = new (std::nothrow) baracuda_ring_attention_plan_s{
        *desc,
        kernels,
        device,
        baracuda::make_kernel_report("ring_attention", kernels.backend, desc->element,
                                     kernels.head_dim_bucket, device.arch),
        nullptr,
        nullptr,
        nullptr};
    if (selected == nullptr) {
      return fail(BARACUDA_STATUS_INTERNAL, kSelectOp,
                  "host allocation of the plan failed (got no memory, expected %zu bytes)",
                  sizeof(baracuda_ring_attention_plan_s));
    }
    status = make_transfer_resources(selected);
    if (status != BARACUDA_STATUS_SUCCESS) {
      destroy_plan(selected);
      return status;
    }
    *plan = selected;
    return baracuda::succeed();
  });
}

baracuda_status baracuda_ring_attention_check_args(const baracuda_ring_attention_descriptor* desc,
                                                   const baracuda_ring_attention_args* args) {
  return baracuda::guard(kCheckArgsOp, [&] {
    if (desc == nullptr) return baracuda::fail_null_descriptor(kCheckArgsOp);
    const baracuda_plan_preference any = {BARACUDA_BACKEND_AUTO};
    baracuda_status status = check_descriptor(kCheckArgsOp, *desc, any);
    if (status == BARACUDA_STATUS_SUCCESS) status = check_args(kCheckArgsOp, *desc, args);
    return status == BARACUDA_STATUS_SUCCESS ? baracuda::succeed() : status;
  });
}

baracuda_status baracuda_ring_attention_can_implement(baracuda_ring_attention_plan plan,
                                                      const baracuda_ring_attention_args* args) {
  return baracuda::guard(kCanImplementOp, [&] {
    const baracuda_status status = check_plan_args(kCanImplementOp, plan, args);
    return status == BARACUDA_STATUS_SUCCESS ? baracuda::succeed() : status;
  });
}

baracuda_status baracuda_ring_attention_kv_scratch_elements(baracuda_ring_attention_plan plan,
                                                            int64_t* elements) {
  return baracuda::guard("ring_attention_kv_scratch_elements", [&] {
    if (plan == nullptr || elements == nullptr) {
      return baracuda::fail_null_plan_or("ring_attention_kv_scratch_elements", "elements");
    }
    *elements = kv_scratch_elements(plan->desc);
    return baracuda::succeed();
  });
}

baracuda_status baracuda_ring_attention_accumulator_scratch_bytes(baracuda_ring_attention_plan plan,
                                                                  size_t* bytes) {
  return baracuda::guard("ring_attention_accumulator_scratch_bytes", [&] {
    if (plan == nullptr || bytes == nullptr) {
      return baracuda::fail_null_plan_or("ring_attention_accumulator_scratch_bytes", "bytes");
    }
    *bytes = static_cast<size_t>(accumulator_scratch_bytes(plan->desc));
    return baracuda::succeed();
  });
}

baracuda_status baracuda_ring_attention_run(baracuda_ring_attention_plan plan,
                                            const baracuda_ring_attention_args* args,
                                            baracuda_nccl_comm comm, baracuda_stream stream) {
  return baracuda::guard(kRunOp, [&] {
    baracuda_status status = check_plan_args(kRunOp, plan, args);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
    status = baracuda::check_current_device(kRunOp, plan->device);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
    Ring ring;
    status = ring_of(comm, *plan, &ring);
    if (status != BARACUDA_STATUS_SUCCESS) return status;
    // Every rank runs the same descriptor: with no query row anywhere there is nothing to send.
    if (query_rows(plan->desc) == 0) return baracuda::succeed();
    status = run_ring(*plan, *args, ring, stream);
    return status == BARACUDA_STATUS_SUCCESS ? baracuda::succeed() : status;
  });
}

baracuda_backend baracuda_ring_attention_backend(baracuda_ring_attention_plan plan) {
  return plan != nullptr ? plan->report.backend : BARACUDA_BACKEND_AUTO;
}

baracuda_status baracuda_ring_attention_sku(baracuda_ring_attention_plan plan,
                                            baracuda_kernel_sku* sku) {
  return baracuda::guard("ring_attention_sku", [&] {
    if (plan == nullptr || sku == nullptr) {
      return baracuda::fail_null_plan_or("ring_attention_sku", "sku");
    }
    baracuda::fill_sku(plan->report, sku);
    return baracuda::succeed();
  });
}

baracuda_status baracuda_ring_attention_precision_guarantee(
    baracuda_ring_attention_plan plan, baracuda_precision_guarantee* guarantee) {
  return baracuda::guard("ring_attention_precision_guarantee", [&] {
    if (plan == nullptr || guarantee == nullptr) {
      return baracuda::fail_null_plan_or("ring_attention_precision_guarantee", "guarantee");
    }
    // Accumulators stay in f32 (f64 for f64) across every hop; each step's kernel and the
    // rotation order are fixed, so a rank's result is bit-stable for a given world size.
    baracuda::fill_precision_guarantee(plan->desc.element, guarantee);
    return baracuda::succeed();
  });
}

void baracuda_ring_attention_plan_destroy(baracuda_ring_attention_plan plan) {
  destroy_plan(plan);
}

}  // extern "C"
