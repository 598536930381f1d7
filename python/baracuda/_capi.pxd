# Declarations of the C header baracuda/baracuda.h, as the binding uses them.

from libc.stdint cimport int32_t, int64_t


cdef extern from "baracuda/baracuda.h" nogil:
    ctypedef struct CUstream_st
    ctypedef CUstream_st* baracuda_stream

    ctypedef enum baracuda_status:
        BARACUDA_STATUS_SUCCESS
        BARACUDA_STATUS_UNSUPPORTED
        BARACUDA_STATUS_INVALID_PROBLEM
        BARACUDA_STATUS_BUFFER_TOO_SMALL
        BARACUDA_STATUS_WORKSPACE_TOO_SMALL
        BARACUDA_STATUS_CUDA_ERROR
        BARACUDA_STATUS_NCCL_ERROR
        BARACUDA_STATUS_LIBRARY_NOT_LOADED
        BARACUDA_STATUS_INTERNAL

    const char* baracuda_status_string(baracuda_status status)
    const char* baracuda_last_error_message()
    void baracuda_last_error_sizes(int64_t* needed, int64_t* got)
    const char* baracuda_version()

    ctypedef enum baracuda_element:
        BARACUDA_ELEMENT_F32
        BARACUDA_ELEMENT_F16
        BARACUDA_ELEMENT_BF16
        BARACUDA_ELEMENT_F64

    const char* baracuda_element_string(baracuda_element element)
    size_t baracuda_element_size(baracuda_element element)

    enum:
        BARACUDA_MAX_RANK

    ctypedef struct baracuda_tensor:
        void* data
        baracuda_element element
        int32_t rank
        int64_t shape[BARACUDA_MAX_RANK]
        int64_t strides[BARACUDA_MAX_RANK]
        int64_t buffer_elements

    ctypedef enum baracuda_backend:
        BARACUDA_BACKEND_AUTO
        BARACUDA_BACKEND_PORTABLE
        BARACUDA_BACKEND_HOPPER

    const char* baracuda_backend_string(baracuda_backend backend)

    ctypedef struct baracuda_plan_preference:
        baracuda_backend backend

    ctypedef struct baracuda_kernel_sku:
        const char* name
        baracuda_backend backend
        baracuda_element element
        int32_t head_dim_bucket
        int32_t arch

    ctypedef struct baracuda_precision_guarantee:
        baracuda_element math_precision
        baracuda_element accumulator
        int32_t deterministic
        int32_t bit_stable_on_same_hardware

    ctypedef enum baracuda_alignment:
        BARACUDA_ALIGN_TOP_LEFT
        BARACUDA_ALIGN_BOTTOM_RIGHT

    enum:
        BARACUDA_WINDOW_UNBOUNDED

    ctypedef struct baracuda_flash_sdpa_descriptor:
        int32_t batch_size
        int32_t num_heads
        int32_t query_len
        int32_t key_len
        int32_t d_k
        int32_t d_v
        double scale
        int32_t is_causal
        baracuda_element element
        int32_t window_size_left
        int32_t window_size_right
        double softcap
        baracuda_alignment alignment

    void baracuda_flash_sdpa_descriptor_init(
        baracuda_flash_sdpa_descriptor* desc, int32_t batch_size, int32_t num_heads,
        int32_t query_len, int32_t key_len, int32_t d_k, int32_t d_v, baracuda_element element)

    ctypedef struct baracuda_flash_sdpa_args:
        baracuda_tensor q
        baracuda_tensor k
        baracuda_tensor v
        baracuda_tensor y
        baracuda_tensor lse
        baracuda_tensor mask
        baracuda_tensor alibi_slopes

    ctypedef struct baracuda_flash_sdpa_plan_s
    ctypedef baracuda_flash_sdpa_plan_s* baracuda_flash_sdpa_plan

    baracuda_status baracuda_flash_sdpa_plan_select(
        const baracuda_flash_sdpa_descriptor* desc, const baracuda_plan_preference* preference,
        baracuda_flash_sdpa_plan* plan)
    baracuda_status baracuda_flash_sdpa_can_implement(
        baracuda_flash_sdpa_plan plan, const baracuda_flash_sdpa_args* args)
    baracuda_status baracuda_flash_sdpa_check_args(
        const baracuda_flash_sdpa_descriptor* desc, const baracuda_flash_sdpa_args* args)
    baracuda_status baracuda_flash_sdpa_workspace_size(baracuda_flash_sdpa_plan plan,
                                                       size_t* bytes)
    baracuda_status baracuda_flash_sdpa_run(
        baracuda_flash_sdpa_plan plan, const baracuda_flash_sdpa_args* args, void* workspace,
        size_t workspace_bytes, baracuda_stream stream)
    baracuda_backend baracuda_flash_sdpa_backend(baracuda_flash_sdpa_plan plan)
    baracuda_status baracuda_flash_sdpa_sku(baracuda_flash_sdpa_plan plan,
                                            baracuda_kernel_sku* sku)
    baracuda_status baracuda_flash_sdpa_precision_guarantee(
        baracuda_flash_sdpa_plan plan, baracuda_precision_guarantee* guarantee)
    void baracuda_flash_sdpa_plan_destroy(baracuda_flash_sdpa_plan plan)

    baracuda_status baracuda_nccl_load(const char* path)
    baracuda_status baracuda_nccl_version(int* version)
    const char* baracuda_nccl_library_path()

    ctypedef struct ncclComm
    ctypedef ncclComm* baracuda_nccl_comm

    enum:
        BARACUDA_NCCL_UNIQUE_ID_BYTES

    ctypedef struct baracuda_nccl_unique_id:
        char internal[BARACUDA_NCCL_UNIQUE_ID_BYTES]

    baracuda_status baracuda_nccl_get_unique_id(baracuda_nccl_unique_id* unique_id)
    baracuda_status baracuda_nccl_comm_init_rank(
        baracuda_nccl_comm* comm, int world_size, const baracuda_nccl_unique_id* unique_id,
        int rank)
    baracuda_status baracuda_nccl_comm_destroy(baracuda_nccl_comm comm)
    baracuda_status baracuda_nccl_comm_abort(baracuda_nccl_comm comm)
    baracuda_status baracuda_nccl_comm_world_size(baracuda_nccl_comm comm, int* world_size)
    baracuda_status baracuda_nccl_comm_rank(baracuda_nccl_comm comm, int* rank)
    baracuda_status baracuda_nccl_comm_device(baracuda_nccl_comm comm, int* device)
    baracuda_status baracuda_nccl_comm_check(baracuda_nccl_comm comm)
    baracuda_status baracuda_nccl_comm_wait(baracuda_nccl_comm comm, baracuda_stream stream,
                                            double timeout_seconds)
    baracuda_status baracuda_nccl_comm_wait_no_abort(baracuda_nccl_comm comm,
                                                     baracuda_stream stream,
                                                     double timeout_seconds)

    ctypedef enum baracuda_ring_layout:
        BARACUDA_RING_LAYOUT_CONTIGUOUS
        BARACUDA_RING_LAYOUT_ZIGZAG

    ctypedef enum baracuda_ring_schedule:
        BARACUDA_RING_SCHEDULE_OVERLAPPED
        BARACUDA_RING_SCHEDULE_SERIAL

    const char* baracuda_ring_layout_string(baracuda_ring_layout layout)
    const char* baracuda_ring_schedule_string(baracuda_ring_schedule schedule)

    ctypedef struct baracuda_ring_attention_descriptor:
        int32_t batch_size
        int32_t num_heads
        int32_t num_heads_k
        int32_t query_len
        int32_t key_len
        int32_t head_dim
        double scale
        int32_t is_causal
        baracuda_element element
        int32_t window_size_left
        int32_t window_size_right
        double softcap
        baracuda_ring_layout layout
        baracuda_ring_schedule schedule

    void baracuda_ring_attention_descriptor_init(
        baracuda_ring_attention_descriptor* desc, int32_t batch_size, int32_t num_heads,
        int32_t query_len, int32_t key_len, int32_t head_dim, baracuda_element element)

    ctypedef struct baracuda_ring_attention_args:
        baracuda_tensor q
        baracuda_tensor k
        baracuda_tensor v
        baracuda_tensor y
        baracuda_tensor lse
        baracuda_tensor alibi_slopes
        baracuda_tensor kv_scratch_a
        baracuda_tensor kv_scratch_b
        void* accumulator_scratch
        size_t accumulator_scratch_bytes

    ctypedef struct baracuda_ring_attention_plan_s
    ctypedef baracuda_ring_attention_plan_s* baracuda_ring_attention_plan

    baracuda_status baracuda_ring_attention_plan_select(
        const baracuda_ring_attention_descriptor* desc,
        const baracuda_plan_preference* preference, baracuda_ring_attention_plan* plan)
    baracuda_status baracuda_ring_attention_can_implement(
        baracuda_ring_attention_plan plan, const baracuda_ring_attention_args* args)
    baracuda_status baracuda_ring_attention_kv_scratch_elements(
        baracuda_ring_attention_plan plan, int64_t* elements)
    baracuda_status baracuda_ring_attention_accumulator_scratch_bytes(
        baracuda_ring_attention_plan plan, size_t* bytes)
    baracuda_status baracuda_ring_attention_run(
        baracuda_ring_attention_plan plan, const baracuda_ring_attention_args* args,
        baracuda_nccl_comm comm, baracuda_stream stream)
    baracuda_backend baracuda_ring_attention_backend(baracuda_ring_attention_plan plan)
    baracuda_status baracuda_ring_attention_sku(baracuda_ring_attention_plan plan,
                                                baracuda_kernel_sku* sku)
    baracuda_status baracuda_ring_attention_precision_guarantee(
        baracuda_ring_attention_plan plan, baracuda_precision_guarantee* guarantee)
    void baracuda_ring_attention_plan_destroy(baracuda_ring_attention_plan plan)
