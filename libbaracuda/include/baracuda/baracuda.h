/*
 * baracuda: exact attention kernels behind a C ABI.
 *
 * One header, plain C. Semantics (shapes, score order, alignment, LSE) are those of
 * docs/ARCHITECTURE.md and are repeated where each function is declared.
 *
 * Errors: every function that can fail returns a baracuda_status. The thread's exact
 * reason is baracuda_last_error_message(), in the form
 * "<op>: <what> (got X, expected Y)". The library never prints, exits or aborts.
 */
#ifndef BARACUDA_BARACUDA_H
#define BARACUDA_BARACUDA_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define BARACUDA_API __declspec(dllexport)
#else
#define BARACUDA_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Same type as cudaStream_t (typedef struct CUstream_st* cudaStream_t); 0 is the legacy
 * default stream. Declared here so that this header needs no CUDA header. */
struct CUstream_st;
typedef struct CUstream_st* baracuda_stream;

/* ---------------------------------------------------------------- status */

typedef enum baracuda_status {
  BARACUDA_STATUS_SUCCESS = 0,
  BARACUDA_STATUS_UNSUPPORTED = 1,         /* valid problem this build or device cannot run */
  BARACUDA_STATUS_INVALID_PROBLEM = 2,     /* the descriptor or arguments are inconsistent */
  BARACUDA_STATUS_BUFFER_TOO_SMALL = 3,    /* a tensor's buffer is smaller than its view */
  BARACUDA_STATUS_WORKSPACE_TOO_SMALL = 4, /* workspace smaller than workspace_size() */
  BARACUDA_STATUS_CUDA_ERROR = 5,          /* a CUDA runtime call failed (no device, launch) */
  BARACUDA_STATUS_NCCL_ERROR = 6,          /* an NCCL call failed */
  BARACUDA_STATUS_LIBRARY_NOT_LOADED = 7,  /* a run-time loaded library (NCCL) is absent */
  BARACUDA_STATUS_INTERNAL = 8             /* a bug in baracuda */
} baracuda_status;

/* Fixed text naming the status ("success", "unsupported", ...); never NULL. */
BARACUDA_API const char* baracuda_status_string(baracuda_status status);

/* This thread's reason for the last failing call; "" after a success. Valid until the
 * thread's next baracuda call. */
BARACUDA_API const char* baracuda_last_error_message(void);

/* For BUFFER_TOO_SMALL and WORKSPACE_TOO_SMALL: the size needed and the size given, in
 * elements for tensors and bytes for workspace. Both are 0 after other statuses. */
BARACUDA_API void baracuda_last_error_sizes(int64_t* needed, int64_t* got);

/* "MAJOR.MINOR.PATCH". */
BARACUDA_API const char* baracuda_version(void);

/* ---------------------------------------------------------------- tensors */

typedef enum baracuda_element {
  BARACUDA_ELEMENT_F32 = 1,
  BARACUDA_ELEMENT_F16 = 2,
  BARACUDA_ELEMENT_BF16 = 3,
  BARACUDA_ELEMENT_F64 = 4
} baracuda_element;

/* Fixed name of an element type ("f32", "f16", "bf16", "f64"); "invalid" otherwise. */
BARACUDA_API const char* baracuda_element_string(baracuda_element element);

/* Size of one element in bytes; 0 for an invalid element. */
BARACUDA_API size_t baracuda_element_size(baracuda_element element);

#define BARACUDA_MAX_RANK 4

/*
 * A strided view of device memory. Shape and strides are in elements; a zero stride
 * broadcasts an axis. buffer_elements is how many elements the allocation holds from
 * data on: the view's physical span (1 + sum((shape[i] - 1) * strides[i]) over
 * non-empty axes) must not exceed it. An optional tensor is absent when rank is 0.
 *
 * Memory rules, checked by can_implement and run: data is aligned for the element (2 bytes
 * for f16 / bf16, 4 for f32, 8 for f64); a written tensor has no two elements at one address
 * (no zero stride on an axis of extent > 1, no strides that fold the view onto itself); and
 * the bytes a written tensor spans, from data to its last element, are shared with no other
 * argument of the call (inputs may share bytes with each other, such as q, k and v of one
 * packed tensor).
 */
typedef struct baracuda_tensor {
  void* data;
  baracuda_element element;
  int32_t rank;
  int64_t shape[BARACUDA_MAX_RANK];
  int64_t strides[BARACUDA_MAX_RANK];
  int64_t buffer_elements;
} baracuda_tensor;

/* ---------------------------------------------------------------- plans */

typedef enum baracuda_backend {
  BARACUDA_BACKEND_AUTO = 0,     /* preference only: let the plan choose */
  BARACUDA_BACKEND_PORTABLE = 1, /* SIMT kernels, sm_80 and newer, every dtype and feature */
  BARACUDA_BACKEND_HOPPER = 2    /* wgmma + TMA kernels, sm_90a, f16 and bf16, every feature */
} baracuda_backend;

/* Fixed name of a backend ("auto", "portable", "hopper"); "invalid" otherwise. */
BARACUDA_API const char* baracuda_backend_string(baracuda_backend backend);

typedef struct baracuda_plan_preference {
  baracuda_backend backend; /* AUTO, or a backend to honour or refuse with the reason */
} baracuda_plan_preference;

/* What a selected plan will run. name, such as "flash_sdpa.portable.bf16.d128.sm90", stays
 * valid while the plan lives. */
typedef struct baracuda_kernel_sku {
  const char* name;
  baracuda_backend backend;
  baracuda_element element;
  int32_t head_dim_bucket; /* largest head dim of the compiled instance */
  int32_t arch;            /* compute capability x10 of the device selected for, e.g. 90 */
} baracuda_kernel_sku;

typedef struct baracuda_precision_guarantee {
  baracuda_element math_precision; /* element of the score and softmax arithmetic */
  baracuda_element accumulator;    /* element of the running output accumulator */
  int32_t deterministic;           /* same inputs, same outputs; no atomics */
  int32_t bit_stable_on_same_hardware;
} baracuda_precision_guarantee;

/* ---------------------------------------------------------------- flash attention forward
 *
 * Q [B, H, Sq, Dk], K [B, Hk, Sk, Dk], V [B, Hk, Sk, Dv], Y [B, H, Sq, Dv], LSE [B, H, Sq].
 * Hk is K's shape[1] and must divide H; query head h reads K/V head h / (H / Hk). A K/V
 * head axis of extent H with stride 0 broadcasts one head to all (MQA). The last axis of
 * Q, K, V and Y has stride 1; every other stride is free (a B, S, H, D tensor is a strided
 * view). Q, K, V, Y have the descriptor's element; LSE is f32, or f64 for f64 inputs.
 *
 * Scores, in this order:  s = scale * q.k
 *   softcap > 0:          s = softcap * tanh(s / softcap)
 *   ALiBi slopes [1|B, H]: s -= slope[b, h] * |i - j + off|
 *   mask [B|1, H|1, Sq|1, Sk|1] (f32, additive; an axis of extent 1 or stride 0
 *                         broadcasts):  s += mask[b, h, i, j]
 *   causal / window:      s = -inf outside  i + off - left <= j <= i + off + right
 *                         (causal sets right = 0 when it is larger or unbounded)
 * off = 0 for BARACUDA_ALIGN_TOP_LEFT (query i sees key j <= i under causal, as PyTorch's
 * is_causal), off = Sk - Sq for BARACUDA_ALIGN_BOTTOM_RIGHT (the KV-cache convention).
 * Y = softmax(s) V, accumulated in f32 (f64 for f64). LSE = natural-log log-sum-exp of each
 * row's scores, always written. A row with no visible key gives Y = 0 and LSE = -inf; a NaN
 * score among a row's visible keys (a NaN in q, k, the mask) gives that row NaN Y and LSE.
 */

typedef enum baracuda_alignment {
  BARACUDA_ALIGN_TOP_LEFT = 0,
  BARACUDA_ALIGN_BOTTOM_RIGHT = 1
} baracuda_alignment;

/* A window bound of this value leaves that side unbounded. */
#define BARACUDA_WINDOW_UNBOUNDED (-1)

typedef struct baracuda_flash_sdpa_descriptor {
  int32_t batch_size; /* B */
  int32_t num_heads;  /* H, query heads */
  int32_t query_len;  /* Sq */
  int32_t key_len;    /* Sk */
  int32_t d_k;        /* head dim of Q and K */
  int32_t d_v;        /* head dim of V and Y */
  double scale;       /* finite, |scale| <= max / log2(e) of the compute type (f32; f64 for
                         f64); baracuda_flash_sdpa_descriptor_init sets 1 / sqrt(d_k) */
  int32_t is_causal;  /* 0 or 1 */
  baracuda_element element;
  int32_t window_size_left;  /* >= 0, or BARACUDA_WINDOW_UNBOUNDED */
  int32_t window_size_right; /* >= 0, or BARACUDA_WINDOW_UNBOUNDED */
  double softcap;            /* 0 disables; otherwise a normal number of the compute type,
                                at most max / log2(e), with |scale| / softcap <= max */
  baracuda_alignment alignment;
} baracuda_flash_sdpa_descriptor;

/* Fills every field: the extents and element given, scale 1 / sqrt(d_k) (1 when d_k is 0),
 * not causal, unbounded window, no softcap, top-left alignment. */
BARACUDA_API void baracuda_flash_sdpa_descriptor_init(baracuda_flash_sdpa_descriptor* desc,
                                                      int32_t batch_size, int32_t num_heads,
                                                      int32_t query_len, int32_t key_len,
                                                      int32_t d_k, int32_t d_v,
                                                      baracuda_element element);

typedef struct baracuda_flash_sdpa_args {
  baracuda_tensor q;            /* [B, H, Sq, Dk] */
  baracuda_tensor k;            /* [B, Hk, Sk, Dk] */
  baracuda_tensor v;            /* [B, Hk, Sk, Dv] */
  baracuda_tensor y;            /* [B, H, Sq, Dv], written */
  baracuda_tensor lse;          /* [B, H, Sq], f32 (f64 for f64), written */
  baracuda_tensor mask;         /* optional (rank 0 = none): f32 [B|1, H|1, Sq|1, Sk|1] */
  baracuda_tensor alibi_slopes; /* optional (rank 0 = none): f32 [1, H] or [B, H] */
} baracuda_flash_sdpa_args;

typedef struct baracuda_flash_sdpa_plan_s* baracuda_flash_sdpa_plan;

/* Checks the descriptor (no device needed for that), then picks a kernel for the current
 * device and prepares it (attributes are set here, never at run). preference may be NULL
 * (AUTO). On success *plan owns a plan to destroy with baracuda_flash_sdpa_plan_destroy. */
BARACUDA_API baracuda_status baracuda_flash_sdpa_plan_select(
    const baracuda_flash_sdpa_descriptor* desc, const baracuda_plan_preference* preference,
    baracuda_flash_sdpa_plan* plan);

/* Checks args against the plan's descriptor: shapes, strides, elements, buffer sizes and the
 * memory rules of baracuda_tensor. */
BARACUDA_API baracuda_status baracuda_flash_sdpa_can_implement(
    baracuda_flash_sdpa_plan plan, const baracuda_flash_sdpa_args* args);

/* The checks of select that need only the descriptor, then those of can_implement, without a
 * plan: no device is needed (a framework's shape-inference or fake implementation checks a
 * call with it). */
BARACUDA_API baracuda_status baracuda_flash_sdpa_check_args(
    const baracuda_flash_sdpa_descriptor* desc, const baracuda_flash_sdpa_args* args);

/* Bytes of device workspace that run needs (0 for the portable backend). */
BARACUDA_API baracuda_status baracuda_flash_sdpa_workspace_size(baracuda_flash_sdpa_plan plan,
                                                                size_t* bytes);

/* Re-checks args, then enqueues the kernel on stream. No host synchronisation and no
 * allocation: safe under CUDA graph capture. */
BARACUDA_API baracuda_status baracuda_flash_sdpa_run(baracuda_flash_sdpa_plan plan,
                                                     const baracuda_flash_sdpa_args* args,
                                                     void* workspace, size_t workspace_bytes,
                                                     baracuda_stream stream);

BARACUDA_API baracuda_backend baracuda_flash_sdpa_backend(baracuda_flash_sdpa_plan plan);

BARACUDA_API baracuda_status baracuda_flash_sdpa_sku(baracuda_flash_sdpa_plan plan,
                                                     baracuda_kernel_sku* sku);

BARACUDA_API baracuda_status baracuda_flash_sdpa_precision_guarantee(
    baracuda_flash_sdpa_plan plan, baracuda_precision_guarantee* guarantee);

/* Accepts NULL. */
BARACUDA_API void baracuda_flash_sdpa_plan_destroy(baracuda_flash_sdpa_plan plan);

/* ---------------------------------------------------------------- NCCL, loaded at run time
 *
 * The build never needs NCCL: the library is opened with dlopen on first use. An explicit
 * path given to baracuda_nccl_load is the only place tried; else the environment variable
 * BARACUDA_NCCL_LIBRARY, when set and not empty, is the only place tried; else the search
 * order: a libnccl.so.2 already loaded in the process, the nvidia-nccl-cu12 / -cu13 wheel
 * beside this library (site-packages/nvidia/nccl/lib), then the system's libnccl.so.2. An
 * explicit path or the variable is loaded or refused, never replaced by another NCCL; when a
 * libnccl.so.2 from another file is loaded in the process already (a framework's), neither
 * opens a second copy beside it (naming that same file, or a link to it, uses it). Once
 * loaded, NCCL stays loaded for the life of the process.
 */

/* Loads NCCL (path NULL: the variable, else the search order above) and resolves the symbols
 * baracuda uses. LIBRARY_NOT_LOADED names every place tried and why each failed (dlopen's
 * reason, a missing symbol, a second copy refused). INVALID_PROBLEM for an empty path. After
 * a success, path NULL or a path naming the loaded file succeeds; another path returns
 * INVALID_PROBLEM naming both files, and the loaded library stays. */
BARACUDA_API baracuda_status baracuda_nccl_load(const char* path);

/* NCCL's version code (e.g. 22703 for 2.27.3) of the loaded library; LIBRARY_NOT_LOADED
 * when NCCL is not loaded. */
BARACUDA_API baracuda_status baracuda_nccl_version(int* version);

/* Path of the loaded NCCL library as dlopen resolved it; "" when none is loaded. */
BARACUDA_API const char* baracuda_nccl_library_path(void);

/* ---------------------------------------------------------------- NCCL communicators
 *
 * Thin wrappers of NCCL's communicator calls through the loaded library (each loads NCCL
 * first if needed), so that callers without NCCL headers can make the communicator a ring
 * plan runs on. A failing NCCL call returns BARACUDA_STATUS_NCCL_ERROR; the message holds
 * NCCL's result code, ncclGetErrorString and ncclGetLastError.
 */

struct ncclComm;
/* The same type as NCCL's ncclComm_t: a communicator made with NCCL directly is passed as is. */
typedef struct ncclComm* baracuda_nccl_comm;

#define BARACUDA_NCCL_UNIQUE_ID_BYTES 128
/* The same bytes as NCCL's ncclUniqueId. */
typedef struct baracuda_nccl_unique_id {
  char internal[BARACUDA_NCCL_UNIQUE_ID_BYTES];
} baracuda_nccl_unique_id;

/* ncclGetUniqueId: made once (rank 0) and passed to every rank by the caller's own channel. */
BARACUDA_API baracuda_status baracuda_nccl_get_unique_id(baracuda_nccl_unique_id* unique_id);

/* ncclCommInitRank on the current device: rank in [0, world_size), the same unique id on
 * every rank. Blocks until every rank has joined. */
BARACUDA_API baracuda_status baracuda_nccl_comm_init_rank(baracuda_nccl_comm* comm, int world_size,
                                                          const baracuda_nccl_unique_id* unique_id,
                                                          int rank);

/* ncclCommDestroy (waits for the communicator's pending work) and ncclCommAbort (does not). */
BARACUDA_API baracuda_status baracuda_nccl_comm_destroy(baracuda_nccl_comm comm);
BARACUDA_API baracuda_status baracuda_nccl_comm_abort(baracuda_nccl_comm comm);

/* ncclCommCount, ncclCommUserRank and ncclCommCuDevice. */
BARACUDA_API baracuda_status baracuda_nccl_comm_world_size(baracuda_nccl_comm comm,
                                                           int* world_size);
BARACUDA_API baracuda_status baracuda_nccl_comm_rank(baracuda_nccl_comm comm, int* rank);
BARACUDA_API baracuda_status baracuda_nccl_comm_device(baracuda_nccl_comm comm, int* device);

/* NCCL_ERROR when ncclCommGetAsyncError reports an error on comm (a peer that died, a network
 * failure); success otherwise. */
BARACUDA_API baracuda_status baracuda_nccl_comm_check(baracuda_nccl_comm comm);

/* Blocks the calling thread until the work enqueued so far on stream has finished, checking
 * comm for asynchronous errors while it waits. timeout_seconds: a positive finite limit;
 * +inf, 0 or a negative finite value wait without limit; NaN and -inf return INVALID_PROBLEM.
 * On an NCCL failure (an asynchronous error of comm, or ncclCommGetAsyncError failing), or
 * when the timeout passes first (a peer that stopped taking part), it aborts comm with
 * ncclCommAbort, which ends its pending transfers and frees it, and returns NCCL_ERROR saying
 * which; after that failure comm is gone: do not destroy or use it again. Nothing else aborts
 * comm: a failing cudaStreamQuery of stream returns CUDA_ERROR and leaves comm as it was. */
BARACUDA_API baracuda_status baracuda_nccl_comm_wait(baracuda_nccl_comm comm,
                                                     baracuda_stream stream,
                                                     double timeout_seconds);

/* As baracuda_nccl_comm_wait, but never aborts comm: on an NCCL failure or a timeout it
 * returns NCCL_ERROR and comm stays alive, for its owner to abort (a communicator borrowed
 * from a framework, or one other threads still use). */
BARACUDA_API baracuda_status baracuda_nccl_comm_wait_no_abort(baracuda_nccl_comm comm,
                                                              baracuda_stream stream,
                                                              double timeout_seconds);

/* ---------------------------------------------------------------- ring attention forward
 *
 * Sequence-parallel attention over P ranks of an NCCL communicator. Each rank holds a query
 * slice Q [B, H, Sq, D] and a K/V chunk [B, Hk, Sk, D] of a global sequence of P * Sq queries
 * and P * Sk keys; the K/V chunks travel around the ring (rank r sends to r + 1 and receives
 * from r - 1) so that every rank folds every chunk into its f32 (f64 for f64) online-softmax
 * accumulators, then writes Y [B, H, Sq, D] and LSE [B, H, Sq]. Only the Hk K/V heads travel.
 *
 * Positions are global, and the score semantics are those of flash attention (top-left
 * alignment) on the global sequence: causal, window, softcap and ALiBi see the positions of
 * the layout:
 *   CONTIGUOUS  rank r holds positions [r * S, (r + 1) * S)
 *   ZIGZAG      S is even; rank r holds chunks r and 2P - 1 - r of S / 2 positions each, so
 *               that every rank has the same causal work
 * (S is Sq for queries and Sk for keys).
 *
 * The caller owns the communicator and the buffers. Two K/V scratch buffers of
 * kv_scratch_elements() elements each hold K then V, contiguous ([B, Hk, Sk, D] each);
 * the run starts from kv_scratch_a, which holds this rank's chunk: staged by the caller,
 * or copied there by run from args.k and args.v when they are given. The accumulator scratch
 * holds o [B, H, Sq, D], then m [B, H, Sq], then l [B, H, Sq], in f32 (f64 for f64).
 *
 * Schedules: OVERLAPPED sends the current chunk and receives the next one on a stream of the
 * plan's own while the step kernel runs on the caller's stream (events order them; the host
 * never waits); SERIAL runs the transfer after each step on the caller's stream (the seed's
 * loop; a baseline for benchmarks).
 */

typedef enum baracuda_ring_layout {
  BARACUDA_RING_LAYOUT_CONTIGUOUS = 0,
  BARACUDA_RING_LAYOUT_ZIGZAG = 1
} baracuda_ring_layout;

typedef enum baracuda_ring_schedule {
  BARACUDA_RING_SCHEDULE_OVERLAPPED = 0,
  BARACUDA_RING_SCHEDULE_SERIAL = 1
} baracuda_ring_schedule;

/* Fixed names ("contiguous", "zigzag"; "overlapped", "serial"); "invalid" otherwise. */
BARACUDA_API const char* baracuda_ring_layout_string(baracuda_ring_layout layout);
BARACUDA_API const char* baracuda_ring_schedule_string(baracuda_ring_schedule schedule);

typedef struct baracuda_ring_attention_descriptor {
  int32_t batch_size;  /* B */
  int32_t num_heads;   /* H, query heads */
  int32_t num_heads_k; /* Hk, K/V heads; divides H */
  int32_t query_len;   /* Sq, queries per rank */
  int32_t key_len;     /* Sk, keys per rank (the chunk that travels) */
  int32_t head_dim;    /* D, of Q, K, V and Y */
  double scale;        /* as in flash attention; init sets 1 / sqrt(head_dim) */
  int32_t is_causal;   /* 0 or 1, on global positions */
  baracuda_element element;
  int32_t window_size_left;  /* >= 0, or BARACUDA_WINDOW_UNBOUNDED; global positions */
  int32_t window_size_right; /* >= 0, or BARACUDA_WINDOW_UNBOUNDED */
  double softcap;            /* 0 disables; otherwise as in flash attention */
  baracuda_ring_layout layout;
  baracuda_ring_schedule schedule;
} baracuda_ring_attention_descriptor;

/* Fills every field: the extents and element given, num_heads_k = num_heads, scale
 * 1 / sqrt(head_dim) (1 when it is 0), not causal, unbounded window, no softcap, contiguous
 * layout, overlapped schedule. */
BARACUDA_API void baracuda_ring_attention_descriptor_init(baracuda_ring_attention_descriptor* desc,
                                                          int32_t batch_size, int32_t num_heads,
                                                          int32_t query_len, int32_t key_len,
                                                          int32_t head_dim,
                                                          baracuda_element element);

typedef struct baracuda_ring_attention_args {
  baracuda_tensor q;            /* [B, H, Sq, D], last stride 1 */
  baracuda_tensor k;            /* optional: [B, Hk, Sk, D], staged into kv_scratch_a by run */
  baracuda_tensor v;            /* optional, with k: [B, Hk, Sk, D] */
  baracuda_tensor y;            /* [B, H, Sq, D], written */
  baracuda_tensor lse;          /* optional: [B, H, Sq], f32 (f64 for f64), written */
  baracuda_tensor alibi_slopes; /* optional: f32 [1, H] or [B, H] */
  baracuda_tensor kv_scratch_a; /* rank 1, the element, >= kv_scratch_elements() */
  baracuda_tensor kv_scratch_b; /* rank 1, the element, >= kv_scratch_elements(); distinct */
  void* accumulator_scratch;    /* >= accumulator_scratch_bytes(), 16-byte aligned */
  size_t accumulator_scratch_bytes;
} baracuda_ring_attention_args;

typedef struct baracuda_ring_attention_plan_s* baracuda_ring_attention_plan;

/* Checks the descriptor (no device needed for that; the bytes of each scratch buffer must fit
 * in int64), then picks the step kernel for the current device, prepares it, and makes the
 * plan's transfer stream and events. */
BARACUDA_API baracuda_status baracuda_ring_attention_plan_select(
    const baracuda_ring_attention_descriptor* desc, const baracuda_plan_preference* preference,
    baracuda_ring_attention_plan* plan);

/* Checks args against the plan: shapes, strides, elements, buffer and scratch sizes, and the
 * memory rules of baracuda_tensor (y, lse and the three scratch buffers are written). */
BARACUDA_API baracuda_status baracuda_ring_attention_can_implement(
    baracuda_ring_attention_plan plan, const baracuda_ring_attention_args* args);

/* The checks of select that need only the descriptor, then those of can_implement, without a
 * plan or a device. */
BARACUDA_API baracuda_status baracuda_ring_attention_check_args(
    const baracuda_ring_attention_descriptor* desc, const baracuda_ring_attention_args* args);

/* Elements of each K/V scratch buffer: 2 * B * Hk * Sk * D (K then V). */
BARACUDA_API baracuda_status
baracuda_ring_attention_kv_scratch_elements(baracuda_ring_attention_plan plan, int64_t* elements);

/* Bytes of accumulator scratch: B * H * Sq * (D + 2) * 4 (8 for f64). */
BARACUDA_API baracuda_status
baracuda_ring_attention_accumulator_scratch_bytes(baracuda_ring_attention_plan plan, size_t* bytes);

/* Re-checks args, then enqueues the whole ring on stream: stage (when args.k is given),
 * init, P steps with the K/V rotation, finalize. comm is the ring (its rank and size are read
 * from it, and it must live on the plan's device); NULL runs one rank without NCCL. Every
 * rank runs the same descriptor. No host synchronisation and no allocation. kv_scratch_a and
 * kv_scratch_b are overwritten. */
BARACUDA_API baracuda_status baracuda_ring_attention_run(baracuda_ring_attention_plan plan,
                                                         const baracuda_ring_attention_args* args,
                                                         baracuda_nccl_comm comm,
                                                         baracuda_stream stream);

BARACUDA_API baracuda_backend baracuda_ring_attention_backend(baracuda_ring_attention_plan plan);

BARACUDA_API baracuda_status baracuda_ring_attention_sku(baracuda_ring_attention_plan plan,
                                                         baracuda_kernel_sku* sku);

BARACUDA_API baracuda_status baracuda_ring_attention_precision_guarantee(
    baracuda_ring_attention_plan plan, baracuda_precision_guarantee* guarantee);

/* Accepts NULL. */
BARACUDA_API void baracuda_ring_attention_plan_destroy(baracuda_ring_attention_plan plan);

/* ---------------------------------------------------------------- seed entry points
 *
 * The seed's raw launches, for C consumers that manage everything themselves. Contiguous
 * Q [B, H, Sq, Dk], K [B, H, Sk, Dk], V [B, H, Sk, Dv], Y [B, H, Sq, Dv], LSE [B, H, Sq]
 * (f32; f64 for the f64 entry points); mask contiguous f32 [B, H, Sq, Sk]. They run the same
 * checks and kernels as the plan (selected for the current device on every call) and
 * return its status. workspace may be NULL (the kernels need none).
 */
#define BARACUDA_SEED_FLASH_SDPA_RUN(name)                                                      \
  BARACUDA_API baracuda_status name(                                                            \
      int32_t batch_size, int32_t num_heads, int32_t query_len, int32_t key_len, int32_t d_k,   \
      int32_t d_v, float scale, int32_t is_causal, const void* q, const void* k, const void* v, \
      void* y, void* lse, void* workspace, size_t workspace_bytes, baracuda_stream stream)
#define BARACUDA_SEED_SDPA_ARBMASK_RUN(name)                                                    \
  BARACUDA_API baracuda_status name(                                                            \
      int32_t batch_size, int32_t num_heads, int32_t query_len, int32_t key_len, int32_t d_k,   \
      int32_t d_v, float scale, int32_t is_causal, const void* q, const void* k, const void* v, \
      const float* mask, void* y, void* lse, void* workspace, size_t workspace_bytes,           \
      baracuda_stream stream)

BARACUDA_SEED_FLASH_SDPA_RUN(baracuda_kernels_flash_sdpa_f32_run);
BARACUDA_SEED_FLASH_SDPA_RUN(baracuda_kernels_flash_sdpa_f16_run);
BARACUDA_SEED_FLASH_SDPA_RUN(baracuda_kernels_flash_sdpa_bf16_run);
BARACUDA_SEED_FLASH_SDPA_RUN(baracuda_kernels_flash_sdpa_f64_run);
BARACUDA_SEED_SDPA_ARBMASK_RUN(baracuda_kernels_sdpa_f32_arbmask_run);
BARACUDA_SEED_SDPA_ARBMASK_RUN(baracuda_kernels_sdpa_f16_arbmask_run);
BARACUDA_SEED_SDPA_ARBMASK_RUN(baracuda_kernels_sdpa_bf16_arbmask_run);
BARACUDA_SEED_SDPA_ARBMASK_RUN(baracuda_kernels_sdpa_f64_arbmask_run);

/*
 * The seed's ring kernels, for callers that drive the ring themselves. Contiguous tensors:
 * Q [B, H, q_local, D], K and V [B, H, k_chunk, D], Y [B, H, q_local, D], LSE [B, H, q_local]
 * (f32; f64 for f64; may be NULL). Accumulators o [B, H, q_local, D], m and l [B, H, q_local]
 * are f32 (f64 for the f64 entry points). init sets o = 0, m = -inf, l = 0; each step folds
 * one K/V chunk whose first key sits at global position k_global_base into them, causal on
 * global positions (query q_global_base + i sees key k_global_base + j when j-position <=
 * i-position); finalize writes Y = o / l and LSE = m + log(l) (0 and -inf for rows that saw no
 * key).
 */
#define BARACUDA_SEED_RING_ATTENTION_STEP_RUN(name)                                                \
  BARACUDA_API baracuda_status name(                                                               \
      int32_t batch_size, int32_t num_heads, int32_t q_local, int32_t k_chunk, int32_t head_dim,   \
      int32_t q_global_base, int32_t k_global_base, float scale, int32_t is_causal, const void* q, \
      const void* k, const void* v, void* o_acc, void* m_acc, void* l_acc, baracuda_stream stream)
#define BARACUDA_SEED_RING_ATTENTION_FINALIZE_RUN(name)                                     \
  BARACUDA_API baracuda_status name(int32_t batch_size, int32_t num_heads, int32_t q_local, \
                                    int32_t head_dim, const void* o_acc, const void* m_acc, \
                                    const void* l_acc, void* y, void* lse, baracuda_stream stream)

BARACUDA_API baracuda_status baracuda_kernels_ring_attention_init_run(float* o_acc, float* m_acc,
                                                                      float* l_acc, int64_t o_len,
                                                                      int64_t ml_len,
                                                                      baracuda_stream stream);
BARACUDA_API baracuda_status
baracuda_kernels_ring_attention_f64_init_run(double* o_acc, double* m_acc, double* l_acc,
                                             int64_t o_len, int64_t ml_len, baracuda_stream stream);
BARACUDA_SEED_RING_ATTENTION_STEP_RUN(baracuda_kernels_ring_attention_f32_step_run);
BARACUDA_SEED_RING_ATTENTION_STEP_RUN(baracuda_kernels_ring_attention_f16_step_run);
BARACUDA_SEED_RING_ATTENTION_STEP_RUN(baracuda_kernels_ring_attention_bf16_step_run);
BARACUDA_SEED_RING_ATTENTION_STEP_RUN(baracuda_kernels_ring_attention_f64_step_run);
BARACUDA_SEED_RING_ATTENTION_FINALIZE_RUN(baracuda_kernels_ring_attention_f32_finalize_run);
BARACUDA_SEED_RING_ATTENTION_FINALIZE_RUN(baracuda_kernels_ring_attention_f16_finalize_run);
BARACUDA_SEED_RING_ATTENTION_FINALIZE_RUN(baracuda_kernels_ring_attention_bf16_finalize_run);
BARACUDA_SEED_RING_ATTENTION_FINALIZE_RUN(baracuda_kernels_ring_attention_f64_finalize_run);

#ifdef __cplusplus
}
#endif

#endif /* BARACUDA_BARACUDA_H */
