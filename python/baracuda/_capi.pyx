# cython: language_level=3
"""Thin binding of the baracuda C ABI.

Tensors arrive as descriptions built by ``_tensor.py`` (attributes ``ptr``, ``element``,
``shape``, ``strides`` in elements and ``buffer_elements``) or ``None`` for an absent optional
tensor; they are copied into ``baracuda_tensor`` structs here. Every failing status becomes
the matching exception of ``_errors.py`` through :func:`check_status`. The GIL is released
around the calls that may touch the device (plan select and run).
"""

from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid, PyCapsule_New
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc

import os

from ._checks import as_bool
from ._errors import InvalidProblemError, error_from_status
from ._lifetime import InFlight, refuse_copy

# ---------------------------------------------------------------- names of the C enums

ELEMENTS = {
    baracuda_element_string(<baracuda_element>element).decode(): element
    for element in (BARACUDA_ELEMENT_F32, BARACUDA_ELEMENT_F16, BARACUDA_ELEMENT_BF16,
                    BARACUDA_ELEMENT_F64)
}
"""Element name ("f32", "f16", "bf16", "f64") -> ``baracuda_element``."""

ELEMENT_SIZES = {name: baracuda_element_size(element) for name, element in ELEMENTS.items()}
"""Element name -> bytes per element."""

BACKENDS = {
    baracuda_backend_string(<baracuda_backend>backend).decode(): backend
    for backend in (BARACUDA_BACKEND_AUTO, BARACUDA_BACKEND_PORTABLE, BARACUDA_BACKEND_HOPPER)
}
"""Backend name ("auto", "portable", "hopper") -> ``baracuda_backend``."""

ALIGNMENTS = {"top_left": BARACUDA_ALIGN_TOP_LEFT, "bottom_right": BARACUDA_ALIGN_BOTTOM_RIGHT}
"""Alignment name -> ``baracuda_alignment``."""

MAX_RANK = BARACUDA_MAX_RANK
WINDOW_UNBOUNDED = BARACUDA_WINDOW_UNBOUNDED

cdef dict _ELEMENT_NAMES = {element: name for name, element in ELEMENTS.items()}
cdef dict _BACKEND_NAMES = {backend: name for name, backend in BACKENDS.items()}


def version():
    """Return the C library's version, ``"MAJOR.MINOR.PATCH"``."""
    return baracuda_version().decode()


def status_string(int status):
    """Return the C library's fixed text for a ``baracuda_status``."""
    return baracuda_status_string(<baracuda_status>status).decode()


# ---------------------------------------------------------------- status check

cdef int check_status(baracuda_status status) except -1:
    """Raise the exception that mirrors ``status`` with this thread's C message."""
    cdef int64_t needed = 0
    cdef int64_t got = 0
    if status == BARACUDA_STATUS_SUCCESS:
        return 0
    message = baracuda_last_error_message().decode("utf-8", "replace")
    baracuda_last_error_sizes(&needed, &got)
    raise error_from_status(<int>status, message, needed, got)


# ---------------------------------------------------------------- tensors

cdef int fill_tensor(baracuda_tensor* tensor, object view) except -1:
    """Copy a tensor description into ``tensor``; ``None`` leaves it absent (rank 0)."""
    cdef int axis
    tensor.rank = 0
    tensor.data = NULL
    tensor.buffer_elements = 0
    if view is None:
        return 0
    shape = view.shape
    strides = view.strides
    rank = len(shape)
    if rank > BARACUDA_MAX_RANK or len(strides) != rank:
        raise InvalidProblemError(
            f"tensor: rank does not fit the C ABI (got {rank} axes and {len(strides)} strides, "
            f"expected at most {BARACUDA_MAX_RANK} of each, as many strides as axes)")
    tensor.data = <void*><uintptr_t>view.ptr
    tensor.element = <baracuda_element>ELEMENTS[view.element]
    tensor.rank = rank
    for axis in range(rank):
        tensor.shape[axis] = shape[axis]
        tensor.strides[axis] = strides[axis]
    tensor.buffer_elements = view.buffer_elements
    return 0


cdef int fill_flash_sdpa_args(baracuda_flash_sdpa_args* args, q, k, v, y, lse, mask,
                              alibi_slopes) except -1:
    fill_tensor(&args.q, q)
    fill_tensor(&args.k, k)
    fill_tensor(&args.v, v)
    fill_tensor(&args.y, y)
    fill_tensor(&args.lse, lse)
    fill_tensor(&args.mask, mask)
    fill_tensor(&args.alibi_slopes, alibi_slopes)
    return 0


# ---------------------------------------------------------------- plan helpers

cdef int32_t _window_bound(bound) except? -2:
    return BARACUDA_WINDOW_UNBOUNDED if bound is None else bound


cdef int fill_flash_sdpa_descriptor(baracuda_flash_sdpa_descriptor* c_desc, desc,
                                    str op) except -1:
    """Copy a ``FlashSdpaDescriptor`` (names valid, d_v set) into ``c_desc``.

    ``scale=None`` keeps the C default, ``1 / sqrt(d_k)``; a window bound of ``None`` is
    unbounded.
    """
    baracuda_flash_sdpa_descriptor_init(
        c_desc, desc.batch_size, desc.num_heads, desc.query_len, desc.key_len, desc.d_k,
        desc.d_v, <baracuda_element>ELEMENTS[desc.element])
    if desc.scale is not None:
        c_desc.scale = desc.scale
    c_desc.is_causal = as_bool(desc.is_causal, "is_causal", op)
    c_desc.window_size_left = _window_bound(desc.window_size_left)
    c_desc.window_size_right = _window_bound(desc.window_size_right)
    c_desc.softcap = desc.softcap
    c_desc.alignment = <baracuda_alignment>ALIGNMENTS[desc.alignment]
    return 0


cdef tuple _sku_tuple(const baracuda_kernel_sku* sku):
    return (sku.name.decode(), _BACKEND_NAMES[sku.backend], _ELEMENT_NAMES[sku.element],
            sku.head_dim_bucket, sku.arch)


cdef tuple _guarantee_tuple(const baracuda_precision_guarantee* guarantee):
    return (_ELEMENT_NAMES[guarantee.math_precision], _ELEMENT_NAMES[guarantee.accumulator],
            guarantee.deterministic != 0, guarantee.bit_stable_on_same_hardware != 0)


cdef int _check_open(void* plan, str op) except -1:
    if plan == NULL:
        raise InvalidProblemError(f"{op}: the plan is closed (got a closed plan, expected an "
                                  "open one)")
    return 0


_PLAN_RESOURCE = "a C plan and the device resources it prepared"


cdef class _PlanHandle:
    """What both plan handles share: no pickling or copying, and the count of the calls in
    flight that :meth:`close` waits for.

    Every method that reads the C plan runs inside ``with self._in_flight.use(op)``; a run
    releases the GIL, so ``close`` from another thread waits for it instead of destroying the
    plan under it.
    """

    cdef object _in_flight

    def __cinit__(self):
        self._in_flight = InFlight("plan")

    def __reduce_ex__(self, protocol):
        refuse_copy(self, _PLAN_RESOURCE)

    def __copy__(self):
        refuse_copy(self, _PLAN_RESOURCE)

    def __deepcopy__(self, memo):
        refuse_copy(self, _PLAN_RESOURCE)


# ---------------------------------------------------------------- flash attention plan

cdef class FlashSdpaPlanHandle(_PlanHandle):
    """Owns one ``baracuda_flash_sdpa_plan``; destroyed by :meth:`close` or when collected."""

    cdef baracuda_flash_sdpa_plan _plan

    def __cinit__(self):
        self._plan = NULL

    def __dealloc__(self):
        baracuda_flash_sdpa_plan_destroy(self._plan)

    @staticmethod
    def select(desc, str backend):
        """Select a plan for ``desc``, a ``FlashSdpaDescriptor`` (names valid, d_v set).

        ``scale=None`` keeps the C default, ``1 / sqrt(d_k)``; a window bound of ``None`` is
        unbounded.
        """
        cdef baracuda_flash_sdpa_descriptor c_desc
        cdef baracuda_plan_preference preference
        cdef baracuda_status status
        cdef FlashSdpaPlanHandle handle = FlashSdpaPlanHandle.__new__(FlashSdpaPlanHandle)
        fill_flash_sdpa_descriptor(&c_desc, desc, "FlashSdpaPlan.select")
        preference.backend = <baracuda_backend>BACKENDS[backend]
        with nogil:
            status = baracuda_flash_sdpa_plan_select(&c_desc, &preference, &handle._plan)
        check_status(status)
        return handle

    def close(self):
        """Destroy the plan; later calls raise. Closing twice is harmless.

        Waits for the calls in flight on other threads (a run releases the GIL) to return
        first; calls that start once ``close`` has begun raise ``InvalidProblemError``.
        """
        if self._in_flight.close():
            baracuda_flash_sdpa_plan_destroy(self._plan)
            self._plan = NULL

    @property
    def closed(self):
        return self._in_flight.closed or self._plan == NULL

    def can_implement(self, q, k, v, y, lse, mask, alibi_slopes):
        """Check the tensor descriptions against the plan; raise the C reason if they fail."""
        cdef baracuda_flash_sdpa_args args
        cdef baracuda_status status
        op = "FlashSdpaPlan.can_implement"
        with self._in_flight.use(op):
            fill_flash_sdpa_args(&args, q, k, v, y, lse, mask, alibi_slopes)
            _check_open(self._plan, op)
            status = baracuda_flash_sdpa_can_implement(self._plan, &args)
        check_status(status)

    def run(self, q, k, v, y, lse, mask, alibi_slopes, uintptr_t workspace,
            size_t workspace_bytes, uintptr_t stream):
        """Enqueue the kernel on ``stream`` (a ``cudaStream_t`` as an int)."""
        cdef baracuda_flash_sdpa_args args
        cdef baracuda_status status
        op = "FlashSdpaPlan.run"
        with self._in_flight.use(op):
            fill_flash_sdpa_args(&args, q, k, v, y, lse, mask, alibi_slopes)
            _check_open(self._plan, op)
            with nogil:
                status = baracuda_flash_sdpa_run(self._plan, &args, <void*>workspace,
                                                 workspace_bytes, <baracuda_stream>stream)
        check_status(status)

    def workspace_size(self):
        """Bytes of device workspace that :meth:`run` needs."""
        cdef size_t workspace_bytes = 0
        cdef baracuda_status status
        op = "FlashSdpaPlan.workspace_size"
        with self._in_flight.use(op):
            _check_open(self._plan, op)
            status = baracuda_flash_sdpa_workspace_size(self._plan, &workspace_bytes)
        check_status(status)
        return workspace_bytes

    def backend(self):
        """Name of the backend the plan runs."""
        op = "FlashSdpaPlan.backend"
        with self._in_flight.use(op):
            _check_open(self._plan, op)
            return _BACKEND_NAMES[baracuda_flash_sdpa_backend(self._plan)]

    def sku(self):
        """``(name, backend, element, head_dim_bucket, arch)`` of the selected kernel."""
        cdef baracuda_kernel_sku sku
        op = "FlashSdpaPlan.sku"
        with self._in_flight.use(op):
            _check_open(self._plan, op)
            check_status(baracuda_flash_sdpa_sku(self._plan, &sku))
            # The name lives in the plan: copied before the plan may be closed.
            return _sku_tuple(&sku)

    def precision_guarantee(self):
        """``(math_precision, accumulator, deterministic, bit_stable_on_same_hardware)``."""
        cdef baracuda_precision_guarantee guarantee
        op = "FlashSdpaPlan.precision_guarantee"
        with self._in_flight.use(op):
            _check_open(self._plan, op)
            check_status(baracuda_flash_sdpa_precision_guarantee(self._plan, &guarantee))
        return _guarantee_tuple(&guarantee)


def flash_sdpa_check_args(desc, q, k, v, y, lse, mask, alibi_slopes):
    """Check a problem and its tensor descriptions without a plan or a device.

    ``baracuda_flash_sdpa_check_args``: the descriptor checks of select (those that need no
    device: a head dim this build has no kernel for passes here), then those of
    can_implement. ``desc`` is a ``FlashSdpaDescriptor``; the tensors are descriptions as for
    :meth:`FlashSdpaPlanHandle.run` (``None`` for an absent mask or slopes), whose addresses
    need not be real: only their alignment and overlaps are checked, nothing is read.
    """
    cdef baracuda_flash_sdpa_descriptor c_desc
    cdef baracuda_flash_sdpa_args args
    fill_flash_sdpa_descriptor(&c_desc, desc, "flash_sdpa_check_args")
    fill_flash_sdpa_args(&args, q, k, v, y, lse, mask, alibi_slopes)
    check_status(baracuda_flash_sdpa_check_args(&c_desc, &args))


# ---------------------------------------------------------------- ring attention plan

RING_LAYOUTS = {
    baracuda_ring_layout_string(<baracuda_ring_layout>layout).decode(): layout
    for layout in (BARACUDA_RING_LAYOUT_CONTIGUOUS, BARACUDA_RING_LAYOUT_ZIGZAG)
}
"""Ring layout name ("contiguous", "zigzag") -> ``baracuda_ring_layout``."""

RING_SCHEDULES = {
    baracuda_ring_schedule_string(<baracuda_ring_schedule>schedule).decode(): schedule
    for schedule in (BARACUDA_RING_SCHEDULE_OVERLAPPED, BARACUDA_RING_SCHEDULE_SERIAL)
}
"""Ring schedule name ("overlapped", "serial") -> ``baracuda_ring_schedule``."""


cdef int fill_ring_attention_args(baracuda_ring_attention_args* args, q, k, v, y, lse,
                                  alibi_slopes, kv_scratch_a, kv_scratch_b,
                                  uintptr_t accumulator_scratch,
                                  size_t accumulator_scratch_bytes) except -1:
    fill_tensor(&args.q, q)
    fill_tensor(&args.k, k)
    fill_tensor(&args.v, v)
    fill_tensor(&args.y, y)
    fill_tensor(&args.lse, lse)
    fill_tensor(&args.alibi_slopes, alibi_slopes)
    fill_tensor(&args.kv_scratch_a, kv_scratch_a)
    fill_tensor(&args.kv_scratch_b, kv_scratch_b)
    args.accumulator_scratch = <void*>accumulator_scratch
    args.accumulator_scratch_bytes = accumulator_scratch_bytes
    return 0


cdef class RingAttentionPlanHandle(_PlanHandle):
    """Owns one ``baracuda_ring_attention_plan``; destroyed by :meth:`close` or when collected.

    Arguments are tensor descriptions in the order ``q, k, v, y, lse, alibi_slopes,
    kv_scratch_a, kv_scratch_b`` (``None`` for absent optional ones), then the accumulator
    scratch as ``(pointer, bytes)``.
    """

    cdef baracuda_ring_attention_plan _plan

    def __cinit__(self):
        self._plan = NULL

    def __dealloc__(self):
        baracuda_ring_attention_plan_destroy(self._plan)

    @staticmethod
    def select(desc, str backend):
        """Select a plan for ``desc``, a ``RingAttentionDescriptor`` (names valid)."""
        cdef baracuda_ring_attention_descriptor c_desc
        cdef baracuda_plan_preference preference
        cdef baracuda_status status
        cdef RingAttentionPlanHandle handle = RingAttentionPlanHandle.__new__(
            RingAttentionPlanHandle)
        baracuda_ring_attention_descriptor_init(
            &c_desc, desc.batch_size, desc.num_heads, desc.query_len, desc.key_len,
            desc.head_dim, <baracuda_element>ELEMENTS[desc.element])
        c_desc.num_heads_k = desc.num_heads_k
        if desc.scale is not None:
            c_desc.scale = desc.scale
        c_desc.is_causal = as_bool(desc.is_causal, "is_causal", "RingAttentionPlan.select")
        c_desc.window_size_left = _window_bound(desc.window_size_left)
        c_desc.window_size_right = _window_bound(desc.window_size_right)
        c_desc.softcap = desc.softcap
        c_desc.layout = <baracuda_ring_layout>RING_LAYOUTS[desc.layout]
        c_desc.schedule = <baracuda_ring_schedule>RING_SCHEDULES[desc.schedule]
        preference.backend = <baracuda_backend>BACKENDS[backend]
        with nogil:
            status = baracuda_ring_attention_plan_select(&c_desc, &preference, &handle._plan)
        check_status(status)
        return handle

    def close(self):
        """Destroy the plan; later calls raise. Closing twice is harmless.

        Waits for the calls in flight on other threads (a run releases the GIL) to return
        first; calls that start once ``close`` has begun raise ``InvalidProblemError``.
        """
        if self._in_flight.close():
            baracuda_ring_attention_plan_destroy(self._plan)
            self._plan = NULL

    @property
    def closed(self):
        return self._in_flight.closed or self._plan == NULL

    def can_implement(self, q, k, v, y, lse, alibi_slopes, kv_scratch_a, kv_scratch_b,
                      uintptr_t accumulator_scratch, size_t accumulator_scratch_bytes):
        """Check the arguments against the plan; raise the C reason if they fail."""
        cdef baracuda_ring_attention_args args
        cdef baracuda_status status
        op = "RingAttentionPlan.can_implement"
        with self._in_flight.use(op):
            fill_ring_attention_args(&args, q, k, v, y, lse, alibi_slopes, kv_scratch_a,
                                     kv_scratch_b, accumulator_scratch,
                                     accumulator_scratch_bytes)
            _check_open(self._plan, op)
            status = baracuda_ring_attention_can_implement(self._plan, &args)
        check_status(status)

    def run(self, q, k, v, y, lse, alibi_slopes, kv_scratch_a, kv_scratch_b,
            uintptr_t accumulator_scratch, size_t accumulator_scratch_bytes, uintptr_t comm,
            uintptr_t stream):
        """Enqueue the ring on ``stream``; ``comm`` is an ``ncclComm_t`` as an int (0: one
        rank)."""
        cdef baracuda_ring_attention_args args
        cdef baracuda_status status
        op = "RingAttentionPlan.run"
        with self._in_flight.use(op):
            fill_ring_attention_args(&args, q, k, v, y, lse, alibi_slopes, kv_scratch_a,
                                     kv_scratch_b, accumulator_scratch,
                                     accumulator_scratch_bytes)
            _check_open(self._plan, op)
            with nogil:
                status = baracuda_ring_attention_run(self._plan, &args,
                                                     <baracuda_nccl_comm>comm,
                                                     <baracuda_stream>stream)
        check_status(status)

    def kv_scratch_elements(self):
        """Elements of each K/V scratch buffer."""
        cdef int64_t elements = 0
        cdef baracuda_status status
        op = "RingAttentionPlan.kv_scratch_elements"
        with self._in_flight.use(op):
            _check_open(self._plan, op)
            status = baracuda_ring_attention_kv_scratch_elements(self._plan, &elements)
        check_status(status)
        return elements

    def accumulator_scratch_bytes(self):
        """Bytes of the accumulator scratch."""
        cdef size_t scratch_bytes = 0
        cdef baracuda_status status
        op = "RingAttentionPlan.accumulator_scratch_bytes"
        with self._in_flight.use(op):
            _check_open(self._plan, op)
            status = baracuda_ring_attention_accumulator_scratch_bytes(self._plan,
                                                                       &scratch_bytes)
        check_status(status)
        return scratch_bytes

    def backend(self):
        """Name of the backend the plan runs."""
        op = "RingAttentionPlan.backend"
        with self._in_flight.use(op):
            _check_open(self._plan, op)
            return _BACKEND_NAMES[baracuda_ring_attention_backend(self._plan)]

    def sku(self):
        """``(name, backend, element, head_dim_bucket, arch)`` of the step kernel."""
        cdef baracuda_kernel_sku sku
        op = "RingAttentionPlan.sku"
        with self._in_flight.use(op):
            _check_open(self._plan, op)
            check_status(baracuda_ring_attention_sku(self._plan, &sku))
            # The name lives in the plan: copied before the plan may be closed.
            return _sku_tuple(&sku)

    def precision_guarantee(self):
        """``(math_precision, accumulator, deterministic, bit_stable_on_same_hardware)``."""
        cdef baracuda_precision_guarantee guarantee
        op = "RingAttentionPlan.precision_guarantee"
        with self._in_flight.use(op):
            _check_open(self._plan, op)
            check_status(baracuda_ring_attention_precision_guarantee(self._plan, &guarantee))
        return _guarantee_tuple(&guarantee)


# ---------------------------------------------------------------- NCCL

NCCL_UNIQUE_ID_BYTES = BARACUDA_NCCL_UNIQUE_ID_BYTES


def nccl_load(path=None):
    """Load NCCL (``path``: str, bytes or os.PathLike, encoded by ``os.fsencode``; ``None``:
    ``$BARACUDA_NCCL_LIBRARY`` or the search order)."""
    cdef bytes encoded
    if path is None:
        check_status(baracuda_nccl_load(NULL))
        return
    encoded = os.fsencode(path)
    if b"\0" in encoded:
        raise InvalidProblemError(
            f"nccl_load: path holds a NUL byte (got {encoded!r}, expected a file path without "
            "NUL)")
    check_status(baracuda_nccl_load(encoded))


def nccl_version():
    """The loaded NCCL's version code."""
    cdef int version = 0
    check_status(baracuda_nccl_version(&version))
    return version


def nccl_library_path():
    """The loaded NCCL's path, ``""`` when none is loaded."""
    return os.fsdecode(baracuda_nccl_library_path())


def nccl_get_unique_id():
    """A fresh ``ncclUniqueId`` as bytes."""
    cdef baracuda_nccl_unique_id unique_id
    cdef baracuda_status status
    with nogil:
        status = baracuda_nccl_get_unique_id(&unique_id)
    check_status(status)
    return unique_id.internal[:BARACUDA_NCCL_UNIQUE_ID_BYTES]


def nccl_comm_init_rank(int world_size, bytes unique_id, int rank):
    """``ncclCommInitRank`` on the current device; the communicator as an int."""
    cdef baracuda_nccl_unique_id c_id
    cdef baracuda_nccl_comm comm = NULL
    cdef baracuda_status status
    cdef int n
    if len(unique_id) != BARACUDA_NCCL_UNIQUE_ID_BYTES:
        raise InvalidProblemError(
            f"nccl_comm_init_rank: unique_id has the wrong size (got {len(unique_id)} bytes, "
            f"expected {BARACUDA_NCCL_UNIQUE_ID_BYTES} from get_unique_id())")
    for n in range(BARACUDA_NCCL_UNIQUE_ID_BYTES):
        c_id.internal[n] = <char>unique_id[n]
    with nogil:
        status = baracuda_nccl_comm_init_rank(&comm, world_size, &c_id, rank)
    check_status(status)
    return <uintptr_t>comm


def nccl_comm_destroy(uintptr_t comm):
    """``ncclCommDestroy``."""
    cdef baracuda_status status
    with nogil:
        status = baracuda_nccl_comm_destroy(<baracuda_nccl_comm>comm)
    check_status(status)


def nccl_comm_abort(uintptr_t comm):
    """``ncclCommAbort``."""
    cdef baracuda_status status
    with nogil:
        status = baracuda_nccl_comm_abort(<baracuda_nccl_comm>comm)
    check_status(status)


def nccl_comm_world_size(uintptr_t comm):
    """``ncclCommCount``."""
    cdef int world_size = 0
    check_status(baracuda_nccl_comm_world_size(<baracuda_nccl_comm>comm, &world_size))
    return world_size


def nccl_comm_rank(uintptr_t comm):
    """``ncclCommUserRank``."""
    cdef int rank = 0
    check_status(baracuda_nccl_comm_rank(<baracuda_nccl_comm>comm, &rank))
    return rank


def nccl_comm_device(uintptr_t comm):
    """``ncclCommCuDevice``."""
    cdef int device = 0
    check_status(baracuda_nccl_comm_device(<baracuda_nccl_comm>comm, &device))
    return device


def nccl_comm_check(uintptr_t comm):
    """Raise ``NcclError`` when the communicator has an asynchronous error."""
    check_status(baracuda_nccl_comm_check(<baracuda_nccl_comm>comm))


def nccl_comm_wait(uintptr_t comm, uintptr_t stream, double timeout_seconds, bint abort):
    """Wait for ``stream`` while watching ``comm``; on an NCCL error or the timeout, ``comm`` is
    aborted when ``abort`` is true, else left alive (``baracuda_nccl_comm_wait_no_abort``)."""
    cdef baracuda_status status
    with nogil:
        if abort:
            status = baracuda_nccl_comm_wait(<baracuda_nccl_comm>comm, <baracuda_stream>stream,
                                             timeout_seconds)
        else:
            status = baracuda_nccl_comm_wait_no_abort(<baracuda_nccl_comm>comm,
                                                      <baracuda_stream>stream, timeout_seconds)
    check_status(status)


# ---------------------------------------------------------------- DLPack export
#
# The structs of dlpack.h (DLPack 1.x ABI), declared here so that the build needs no DLPack
# header. A capsule owns one malloc'd block: the managed tensor, then its shape and strides.

cdef enum:
    DL_CUDA = 2
    DL_FLOAT = 2
    DL_BFLOAT = 4
    DLPACK_MAJOR_VERSION = 1
    DLPACK_MINOR_VERSION = 0

cdef struct DLDevice:
    int32_t device_type
    int32_t device_id

cdef struct DLDataType:
    uint8_t code
    uint8_t bits
    uint16_t lanes

cdef struct DLTensor:
    void* data
    DLDevice device
    int32_t ndim
    DLDataType dtype
    int64_t* shape
    int64_t* strides
    uint64_t byte_offset

cdef struct DLManagedTensor:
    DLTensor dl_tensor
    void* manager_ctx
    void (*deleter)(DLManagedTensor*) noexcept nogil

cdef struct DLPackVersion:
    uint32_t major
    uint32_t minor

cdef struct DLManagedTensorVersioned:
    DLPackVersion version
    void* manager_ctx
    void (*deleter)(DLManagedTensorVersioned*) noexcept nogil
    uint64_t flags
    DLTensor dl_tensor

DLPACK_VERSION = (DLPACK_MAJOR_VERSION, DLPACK_MINOR_VERSION)
"""The DLPack version of the versioned capsules made here."""

DL_DEVICE_CUDA = DL_CUDA
"""``kDLCUDA``."""

cdef dict _DL_DATA_TYPES = {
    "f32": (DL_FLOAT, 32),
    "f16": (DL_FLOAT, 16),
    "bf16": (DL_BFLOAT, 16),
    "f64": (DL_FLOAT, 64),
}


cdef void _release_owner(void* owner) noexcept nogil:
    with gil:
        Py_DECREF(<object>owner)


cdef void _delete_managed(DLManagedTensor* managed) noexcept nogil:
    _release_owner(managed.manager_ctx)
    free(managed)


cdef void _delete_managed_versioned(DLManagedTensorVersioned* managed) noexcept nogil:
    _release_owner(managed.manager_ctx)
    free(managed)


cdef void _delete_unused_capsule(object capsule) noexcept:
    """Capsule destructor: frees the tensor when no consumer took it (name still unused)."""
    cdef DLManagedTensor* managed
    cdef DLManagedTensorVersioned* versioned
    if PyCapsule_IsValid(capsule, b"dltensor"):
        managed = <DLManagedTensor*>PyCapsule_GetPointer(capsule, b"dltensor")
        managed.deleter(managed)
    elif PyCapsule_IsValid(capsule, b"dltensor_versioned"):
        versioned = <DLManagedTensorVersioned*>PyCapsule_GetPointer(capsule,
                                                                    b"dltensor_versioned")
        versioned.deleter(versioned)


cdef int _fill_dl_tensor(DLTensor* tensor, int64_t* extents, uintptr_t ptr, tuple shape,
                         tuple strides, str element, int device_id) except -1:
    cdef int rank = len(shape)
    cdef int axis
    code, bits = _DL_DATA_TYPES[element]
    tensor.data = <void*>ptr
    tensor.device.device_type = DL_CUDA
    tensor.device.device_id = device_id
    tensor.ndim = rank
    tensor.dtype.code = code
    tensor.dtype.bits = bits
    tensor.dtype.lanes = 1
    tensor.shape = extents
    tensor.strides = extents + rank
    tensor.byte_offset = 0
    for axis in range(rank):
        tensor.shape[axis] = shape[axis]
        tensor.strides[axis] = strides[axis]
    return 0


def dlpack_capsule(owner, uintptr_t ptr, tuple shape, tuple strides, str element,
                   int device_id, bint versioned):
    """Return a DLPack capsule of a CUDA tensor that keeps ``owner`` alive until deleted.

    Parameters
    ----------
    owner : object
        Kept alive (one reference) until the consumer calls the deleter, or until the capsule
        is collected unused.
    ptr : int
        Device address of element 0.
    shape, strides : tuple of int
        Extents and strides in elements.
    element : str
        ``"f32"``, ``"f16"``, ``"bf16"`` or ``"f64"``.
    device_id : int
        CUDA device ordinal.
    versioned : bool
        Make a DLPack 1.x ``"dltensor_versioned"`` capsule rather than a legacy
        ``"dltensor"`` one.
    """
    cdef int rank = len(shape)
    cdef size_t extents_bytes = 2 * rank * sizeof(int64_t)
    cdef DLManagedTensor* managed
    cdef DLManagedTensorVersioned* managed_versioned
    if len(strides) != rank:
        raise InvalidProblemError(
            f"dlpack_capsule: strides do not match the shape (got {len(strides)} strides, "
            f"expected {rank})")
    if versioned:
        managed_versioned = <DLManagedTensorVersioned*>malloc(
            sizeof(DLManagedTensorVersioned) + extents_bytes)
        if managed_versioned == NULL:
            raise MemoryError()
        try:
            _fill_dl_tensor(&managed_versioned.dl_tensor, <int64_t*>(managed_versioned + 1),
                            ptr, shape, strides, element, device_id)
        except BaseException:
            free(managed_versioned)
            raise
        managed_versioned.version.major = DLPACK_MAJOR_VERSION
        managed_versioned.version.minor = DLPACK_MINOR_VERSION
        managed_versioned.flags = 0
        managed_versioned.manager_ctx = <void*>owner
        managed_versioned.deleter = _delete_managed_versioned
        Py_INCREF(owner)
        return PyCapsule_New(managed_versioned, b"dltensor_versioned", _delete_unused_capsule)
    managed = <DLManagedTensor*>malloc(sizeof(DLManagedTensor) + extents_bytes)
    if managed == NULL:
        raise MemoryError()
    try:
        _fill_dl_tensor(&managed.dl_tensor, <int64_t*>(managed + 1), ptr, shape, strides,
                        element, device_id)
    except BaseException:
        free(managed)
        raise
    managed.manager_ctx = <void*>owner
    managed.deleter = _delete_managed
    Py_INCREF(owner)
    return PyCapsule_New(managed, b"dltensor", _delete_unused_capsule)
