"""Ring attention forward: the descriptor, the plan, :func:`ring_attention` and the sequence
layout helpers.

Each of ``P`` ranks holds a query slice ``[B, H, Sq, D]`` and a K/V chunk ``[B, Hk, Sk, D]`` of
a global sequence of ``P * Sq`` queries and ``P * Sk`` keys. The K/V chunks travel around an
NCCL ring, every rank folds every chunk into f32 (f64 for f64) online-softmax accumulators,
and a finalize kernel writes ``y`` and ``lse``. The scores follow :func:`flash_attention`
(top-left alignment) on global positions, which the layout sets:

- ``"contiguous"``: rank ``r`` holds positions ``[r * S, (r + 1) * S)``;
- ``"zigzag"``: rank ``r`` holds chunks ``r`` and ``2P - 1 - r`` of ``S / 2`` positions, so
  that causal work is the same on every rank.

:func:`shard_sequence` and :func:`gather_sequence` convert between a global tensor and the
ranks' parts in either layout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib

import numpy as np

from . import _capi
from ._checks import as_bool, as_int, as_int32, name_in
from ._cuda import allocate, stream_handle
from ._device_array import DeviceArray
from ._errors import InvalidProblemError
from ._plan import (
    ALIBI_SLOPES_RANK,
    BACKENDS,
    PLAN_CACHE_CAPACITY,
    QKV_RANK,
    PlanCache,
    SelectedPlan,
    call_score_options,
    check_current_device,
    score_fields,
)
from ._tensor import NO_SYNC, accumulator_element, as_tensor, as_workspace, prepend_axes

LAYOUTS = tuple(_capi.RING_LAYOUTS)
"""The ring layouts: ``("contiguous", "zigzag")``."""

SCHEDULES = tuple(_capi.RING_SCHEDULES)
"""The ring schedules: ``("overlapped", "serial")``."""

SEQUENCE_AXIS = 2
"""The sequence axis of ``[B, H, S, D]`` tensors."""

_EXTENT_FIELDS = ("batch_size", "num_heads", "query_len", "key_len", "head_dim")
# Zigzag holds two chunks per rank.
_ZIGZAG_CHUNKS_PER_RANK = 2


@dataclasses.dataclass(frozen=True)
class RingAttentionDescriptor:
    """A ring attention forward problem, per rank: extents, element, score options, layout.

    Only what the C descriptor cannot hold is refused here (types, int32 range, unknown
    names); the C library checks the values when a plan is selected.

    Parameters
    ----------
    batch_size, num_heads : int
        ``B``, ``H`` (query heads).
    query_len, key_len : int
        ``Sq`` and ``Sk``: the queries and keys each rank holds (the global sequence is
        ``world_size`` times longer).
    head_dim : int
        ``D``, of Q, K, V and Y.
    num_heads_k : int, optional
        ``Hk``, the K/V heads (a divisor of ``H``; only these travel); ``None`` means ``H``.
    scale : float, optional
        Factor of ``q.k``; ``None`` means ``1 / sqrt(head_dim)``.
    is_causal : bool
        Hide keys after each query's global position.
    element : str or dtype
        ``"f32"``, ``"f16"``, ``"bf16"``, ``"f64"`` or a dtype of one of them.
    window_size_left, window_size_right : int, optional
        Keys visible before and after each query's global position; ``None`` is unbounded.
    softcap : float
        ``s = softcap * tanh(s / softcap)`` when positive; 0 disables it.
    layout : {"contiguous", "zigzag"}
        Where each rank's rows sit in the global sequence (zigzag needs even lengths).
    schedule : {"overlapped", "serial"}
        Transfer the next chunk while the step kernel runs, or after it (a baseline).
    """

    batch_size: int
    num_heads: int
    query_len: int
    key_len: int
    head_dim: int
    _: dataclasses.KW_ONLY
    num_heads_k: int | None = None
    scale: float | None = None
    is_causal: bool = False
    element: str = "f32"
    window_size_left: int | None = None
    window_size_right: int | None = None
    softcap: float = 0.0
    layout: str = "contiguous"
    schedule: str = "overlapped"

    def __post_init__(self) -> None:
        op = type(self).__name__
        fields = {name: as_int32(getattr(self, name), name, op) for name in _EXTENT_FIELDS}
        fields["num_heads_k"] = (
            fields["num_heads"]
            if self.num_heads_k is None
            else as_int32(self.num_heads_k, "num_heads_k", op)
        )
        fields.update(score_fields(self, op))
        fields["layout"] = name_in(self.layout, LAYOUTS, "layout", op)
        fields["schedule"] = name_in(self.schedule, SCHEDULES, "schedule", op)
        for name, value in fields.items():
            object.__setattr__(self, name, value)


class RingAttentionPlan(SelectedPlan):
    """A selected ring attention forward for one :class:`RingAttentionDescriptor`.

    Made by :meth:`select`; holds C resources (the step kernel's preparation, a transfer
    stream and two events) until :meth:`close`, the end of a ``with`` block, or collection. A
    plan runs one ring at a time. Its precision guarantee holds across every hop: the
    accumulators stay in f32 (f64 for f64).
    """

    __slots__ = ()
    _DESCRIPTOR = RingAttentionDescriptor
    _HANDLE = _capi.RingAttentionPlanHandle

    @classmethod
    def select(
        cls, descriptor: RingAttentionDescriptor, *, backend: str = "auto"
    ) -> RingAttentionPlan:
        """Check ``descriptor`` and prepare the ring for the current device.

        Parameters
        ----------
        descriptor : RingAttentionDescriptor
            The per-rank problem, the same on every rank.
        backend : {"auto", "portable", "hopper"}
            Kernel family of the step; a named backend is honoured or refused, never replaced.

        Raises
        ------
        InvalidProblemError, UnsupportedError
            A descriptor value the C library refuses, with its reason.
        CudaError
            No CUDA device or driver.
        """
        return cls._select(descriptor, backend)

    # ------------------------------------------------------------ scratch sizes

    @property
    def kv_scratch_elements(self) -> int:
        """Elements of each K/V scratch buffer: ``2 * B * Hk * Sk * D`` (K then V)."""
        return self._handle.kv_scratch_elements()

    @property
    def accumulator_scratch_bytes(self) -> int:
        """Bytes of the accumulator scratch: ``B * H * Sq * (D + 2)`` f32 (f64 for f64)."""
        return self._handle.accumulator_scratch_bytes()

    # ------------------------------------------------------------ arguments and run

    def can_implement(
        self,
        q,
        y,
        kv_scratch_a,
        kv_scratch_b,
        accumulator_scratch,
        *,
        k=None,
        v=None,
        lse=None,
        alibi_slopes=None,
    ) -> None:
        """Check the arguments against the plan (metadata only; nothing is enqueued).

        The arguments are as :meth:`run` takes them.

        Raises
        ------
        InvalidProblemError, UnsupportedError, BufferTooSmallError, WorkspaceTooSmallError
            The first check that fails, with the C library's reason.
        """
        op = "RingAttentionPlan.can_implement"
        views, scratch = _run_views(
            op,
            NO_SYNC,
            q,
            k,
            v,
            y,
            lse,
            alibi_slopes,
            kv_scratch_a,
            kv_scratch_b,
            accumulator_scratch,
        )
        check_current_device(views + [("accumulator_scratch", scratch)], op)
        self._handle.can_implement(*(view for _, view in views), scratch.ptr, scratch.nbytes)

    def run(
        self,
        q,
        y,
        kv_scratch_a,
        kv_scratch_b,
        accumulator_scratch,
        *,
        comm=None,
        k=None,
        v=None,
        lse=None,
        alibi_slopes=None,
        stream=None,
    ) -> None:
        """Enqueue the whole ring on ``stream``: writes ``y`` (and ``lse``).

        No host synchronisation and no allocation. Every rank of ``comm`` must run the same
        descriptor.

        Parameters
        ----------
        q : device tensor
            ``[B, H, Sq, D]``, this rank's queries; last-axis stride 1.
        y : device tensor
            ``[B, H, Sq, D]``, written.
        kv_scratch_a, kv_scratch_b : device tensors
            1-D, the plan's element, at least :attr:`kv_scratch_elements` each, disjoint.
            ``kv_scratch_a`` holds this rank's K then V (contiguous ``[B, Hk, Sk, D]`` each)
            unless ``k`` and ``v`` are given; both are overwritten.
        accumulator_scratch : device buffer
            At least :attr:`accumulator_scratch_bytes` bytes, 16-byte aligned.
        comm : Communicator, optional
            The ring; ``None`` runs one rank without NCCL.
        k, v : device tensors, optional
            ``[B, Hk, Sk, D]``, any strides: copied into ``kv_scratch_a`` first.
        lse : device tensor, optional
            ``[B, H, Sq]``, f32 (f64 for f64), written.
        alibi_slopes : device tensor, optional
            f32 ``[1, H]`` or ``[B, H]``.
        stream : None, int or object with ``__cuda_stream__``, optional
            ``None`` is the legacy default stream.

        Raises
        ------
        InvalidProblemError, UnsupportedError, BufferTooSmallError, WorkspaceTooSmallError
            The arguments do not fit the plan.
        NcclError, LibraryNotLoadedError
            NCCL failed or is absent (with ``comm``).
        CudaError
            The current device is not the plan's, or a launch failed.
        """
        op = "RingAttentionPlan.run"
        handle = stream_handle(stream, op)
        views, scratch = _run_views(
            op,
            handle,
            q,
            k,
            v,
            y,
            lse,
            alibi_slopes,
            kv_scratch_a,
            kv_scratch_b,
            accumulator_scratch,
        )
        check_current_device(views + [("accumulator_scratch", scratch)], op)
        with _comm_lease(comm, op) as comm_handle:
            self._run_views(
                *(view for _, view in views), scratch.ptr, scratch.nbytes, comm_handle, handle
            )

    def _run_views(
        self,
        q,
        k,
        v,
        y,
        lse,
        alibi_slopes,
        kv_scratch_a,
        kv_scratch_b,
        accumulator_scratch,
        accumulator_scratch_bytes,
        comm,
        stream,
    ) -> None:
        """Run on tensor views, a raw accumulator scratch and a raw communicator."""
        self._handle.run(
            q,
            k,
            v,
            y,
            lse,
            alibi_slopes,
            kv_scratch_a,
            kv_scratch_b,
            accumulator_scratch,
            accumulator_scratch_bytes,
            comm,
            stream,
        )


def _run_views(
    op, stream, q, k, v, y, lse, alibi_slopes, kv_scratch_a, kv_scratch_b, accumulator_scratch
):
    """(name, TensorView or None) of each tensor argument, and the accumulator workspace."""
    named = (
        ("q", q),
        ("k", k),
        ("v", v),
        ("y", y),
        ("lse", lse),
        ("alibi_slopes", alibi_slopes),
        ("kv_scratch_a", kv_scratch_a),
        ("kv_scratch_b", kv_scratch_b),
    )
    views = [
        (name, None if tensor is None else as_tensor(tensor, name, op=op, stream=stream))
        for name, tensor in named
    ]
    return views, as_workspace(accumulator_scratch, op=op, stream=stream)


def _comm_lease(comm, op: str):
    """A context manager giving the ``ncclComm_t`` of ``comm`` while it holds a lease on it
    (0, and no lease, for ``None``: one rank without NCCL); a closed one is refused here."""
    if comm is None:
        return contextlib.nullcontext(0)
    from .nccl import Communicator

    if not isinstance(comm, Communicator):
        raise TypeError(
            f"{op}: comm is not a Communicator (got {type(comm).__name__}, "
            "expected baracuda.nccl.Communicator or None)"
        )
    return comm._lease(op)


_plan_cache = PlanCache(PLAN_CACHE_CAPACITY)


def ring_attention(
    q,
    k,
    v,
    comm=None,
    *,
    causal=False,
    layout="contiguous",
    scale=None,
    window=(None, None),
    softcap=0.0,
    alibi_slopes=None,
    schedule="overlapped",
    out=None,
    stream=None,
    timeout=None,
    backend="auto",
    return_lse=False,
):
    """Exact attention over a sequence sharded across the ranks of an NCCL ring.

    Every rank calls it with its own part of the sequence and the same options. The K/V
    chunks travel around the ring (only the ``Hk`` K/V heads), each transfer overlapping the
    step kernel of the chunk before it; accumulators stay in f32 (f64 for f64) across every
    hop.

    Parameters
    ----------
    q : device tensor
        This rank's queries ``[B, H, Sq, D]`` (f32, f16, bf16 or f64; DLPack or the CUDA Array
        Interface; any strides with a last-axis stride of 1).
    k, v : device tensors
        This rank's keys and values ``[B, Hk, Sk, D]`` of q's element; ``Hk`` divides ``H``.
    comm : baracuda.nccl.Communicator, optional
        The ring; ``None`` runs one rank without NCCL.
    causal : bool
        Hide keys after each query's global position.
    layout : {"contiguous", "zigzag"}
        Where each rank's rows sit in the global sequence (see :func:`shard_sequence`);
        zigzag balances causal work and needs even ``Sq`` and ``Sk``.
    scale : float, optional
        Factor of ``q.k``; ``None`` means ``1 / sqrt(D)``.
    window : (int or None, int or None)
        ``(left, right)`` keys visible around each query's global position.
    softcap : float
        ``s = softcap * tanh(s / softcap)`` when positive.
    alibi_slopes : device tensor, optional
        f32 ``[H]``, ``[1, H]`` or ``[B, H]``: ``s -= slope * |i - j|`` on global positions.
    schedule : {"overlapped", "serial"}
        Overlap each transfer with the step kernel, or run them one after the other.
    out : device tensor, optional
        ``[B, H, Sq, D]`` of q's element, written and returned as ``y``.
    stream : None, int or object with ``__cuda_stream__``, optional
        ``None`` is the legacy default stream; everything is enqueued there.
    timeout : float, optional
        Also wait for the ring (:meth:`Communicator.wait`), raising :class:`NcclError` and
        aborting ``comm`` when a peer fails or the time passes.
    backend : {"auto", "portable", "hopper"}
        Kernel family of the step.
    return_lse : bool
        Also return the LSE, as :func:`flash_attention` does.

    Returns
    -------
    y : DeviceArray or out
        ``[B, H, Sq, D]``: this rank's queries against the whole global sequence.
    lse : DeviceArray
        Only with ``return_lse``: ``[B, H, Sq]`` natural-log log-sum-exp of each row's scores,
        f32 (f64 for f64); ``-inf`` for rows with no visible key (whose ``y`` is 0).
    """
    op = "ring_attention"
    causal, scale, left, right, softcap = call_score_options(causal, scale, window, softcap, op)
    layout = name_in(layout, LAYOUTS, "layout", op)
    schedule = name_in(schedule, SCHEDULES, "schedule", op)
    backend = name_in(backend, BACKENDS, "backend", op)
    return_lse = as_bool(return_lse, "return_lse", op)
    handle = stream_handle(stream, op)
    q_view, k_view, v_view = (
        as_tensor(tensor, name, op=op, stream=handle, rank=QKV_RANK)
        for name, tensor in (("q", q), ("k", k), ("v", v))
    )
    element = q_view.element
    batch_size, num_heads, query_len, head_dim = q_view.shape
    num_heads_k, key_len = k_view.shape[1], k_view.shape[2]
    slopes_view = None
    if alibi_slopes is not None:
        slopes_view = prepend_axes(
            as_tensor(alibi_slopes, "alibi_slopes", op=op, stream=handle), ALIBI_SLOPES_RANK
        )
    y_view = None if out is None else as_tensor(out, "y", op=op, stream=handle)
    comm_lease = _comm_lease(comm, op)
    device = check_current_device(
        [("q", q_view), ("k", k_view), ("v", v_view), ("alibi_slopes", slopes_view), ("y", y_view)],
        op,
    )

    key = (
        batch_size,
        num_heads,
        num_heads_k,
        query_len,
        key_len,
        head_dim,
        scale,
        causal,
        element,
        left,
        right,
        softcap,
        layout,
        schedule,
        backend,
        device.device_id,
    )
    plan = _plan_cache.get(key)
    if plan is None:
        descriptor = RingAttentionDescriptor(
            batch_size,
            num_heads,
            query_len,
            key_len,
            head_dim,
            num_heads_k=num_heads_k,
            scale=scale,
            is_causal=causal,
            element=element,
            window_size_left=left,
            window_size_right=right,
            softcap=softcap,
            layout=layout,
            schedule=schedule,
        )
        plan = _plan_cache.put(key, RingAttentionPlan.select(descriptor, backend=backend))

    y = out
    if y_view is None:
        y = DeviceArray._empty(
            (batch_size, num_heads, query_len, head_dim), element, handle, device
        )
        y_view = y.tensor_view()
    lse = DeviceArray._empty(
        (batch_size, num_heads, query_len), accumulator_element(element), handle, device
    )
    # Scratch comes from the stream-ordered pool and goes back to it on the stream, after the
    # ring: the plan orders its transfer stream's work before the stream's later work.
    kv_elements = plan.kv_scratch_elements
    kv_scratch_a = DeviceArray._empty((kv_elements,), element, handle, device)
    kv_scratch_b = DeviceArray._empty((kv_elements,), element, handle, device)
    accumulator_bytes = plan.accumulator_scratch_bytes
    accumulators = allocate(accumulator_bytes, handle, device, op) if accumulator_bytes else None
    with comm_lease as comm_handle:
        plan._run_views(
            q_view,
            k_view,
            v_view,
            y_view,
            lse.tensor_view(),
            slopes_view,
            kv_scratch_a.tensor_view(),
            kv_scratch_b.tensor_view(),
            0 if accumulators is None else int(accumulators.handle),
            accumulator_bytes,
            comm_handle,
            handle,
        )
    if timeout is not None and comm is not None:
        comm.wait(stream=handle, timeout=timeout)
    return (y, lse) if return_lse else y


# ---------------------------------------------------------------- sequence layouts


def _check_world(world_size: object, rank: object, op: str) -> tuple[int, int]:
    """``(world_size, rank)`` as ints, with ``world_size >= 1`` and ``0 <= rank < world_size``."""
    world_size = as_int(world_size, "world_size", op)
    rank = as_int(rank, "rank", op)
    if world_size < 1:
        raise InvalidProblemError(
            f"{op}: world_size must be positive (got {world_size}, expected >= 1)"
        )
    if not 0 <= rank < world_size:
        raise InvalidProblemError(
            f"{op}: rank is outside the world (got {rank}, expected 0 <= rank < {world_size})"
        )
    return world_size, rank


def _check_layout_split(length: int, world_size: int, layout: str, op: str) -> int:
    """The length of one chunk of ``layout`` in a global sequence of ``length``."""
    name_in(layout, LAYOUTS, "layout", op)
    chunks = world_size * (_ZIGZAG_CHUNKS_PER_RANK if layout == "zigzag" else 1)
    if length % chunks != 0:
        raise InvalidProblemError(
            f"{op}: the sequence does not split into {layout} chunks (got length {length}, "
            f"expected a multiple of {chunks} for world_size {world_size})"
        )
    return length // chunks


def _array_shape(x: object, name: str, op: str) -> tuple[int, ...]:
    """The shape of an array argument.

    Raises
    ------
    TypeError
        ``x`` has no ``shape``: it is not an array.
    """
    shape = getattr(x, "shape", None)
    if shape is None:
        raise TypeError(
            f"{op}: {name} is not an array (got {type(x).__name__}, expected a "
            "numpy, torch, CuPy or array-API array)"
        )
    return tuple(shape)


def _sequence_axis(axis: object, ndim: int, op: str) -> int:
    """``axis`` as a non-negative axis of an array of rank ``ndim`` (negative axes count from
    the last, as numpy's do).

    Raises
    ------
    InvalidProblemError
        ``axis`` is not an integer, or outside ``[-ndim, ndim)``.
    """
    number = as_int(axis, "axis", op)
    if not -ndim <= number < ndim:
        raise InvalidProblemError(
            f"{op}: axis is out of range (got {number}, expected {-ndim} <= axis < {ndim} for "
            f"an array of rank {ndim})"
        )
    return number % ndim


def _chunk_order(world_size: int, rank: int, layout: str) -> tuple[int, ...]:
    """The global chunks a rank holds, in local order."""
    if layout == "zigzag":
        return (rank, 2 * world_size - 1 - rank)
    return (rank,)


def sequence_positions(
    length_per_rank: int, world_size: int, rank: int, *, layout: str = "contiguous"
) -> np.ndarray:
    """Global positions of a rank's local rows.

    Parameters
    ----------
    length_per_rank : int
        Rows each rank holds (``Sq`` or ``Sk``).
    world_size, rank : int
        The ring and this rank.
    layout : {"contiguous", "zigzag"}

    Returns
    -------
    numpy.ndarray
        int64 ``[length_per_rank]``.

    Raises
    ------
    InvalidProblemError
        A non-integer or negative length, a rank outside the world, a length that does not
        split into the layout's chunks.
    """
    op = "sequence_positions"
    world_size, rank = _check_world(world_size, rank, op)
    length_per_rank = as_int(length_per_rank, "length_per_rank", op)
    if length_per_rank < 0:
        raise InvalidProblemError(
            f"{op}: length_per_rank must be non-negative (got {length_per_rank}, expected >= 0)"
        )
    chunk = _check_layout_split(length_per_rank * world_size, world_size, layout, op)
    return np.concatenate(
        [
            np.arange(index * chunk, (index + 1) * chunk, dtype=np.int64)
            for index in _chunk_order(world_size, rank, layout)
        ]
    )


def _along(axis: int, start: int, stop: int) -> tuple:
    """The index of ``[start, stop)`` along a non-negative ``axis``."""
    return (slice(None),) * axis + (slice(start, stop),)


def _concatenate(parts, axis: int):
    """Concatenate numpy, torch, CuPy or array-API arrays along ``axis``, in their library."""
    first = parts[0]
    module_name = type(first).__module__.split(".")[0]
    if module_name == "torch":
        import torch

        return torch.cat(list(parts), dim=axis)
    namespace = getattr(first, "__array_namespace__", None)
    if namespace is not None:
        return namespace().concat(list(parts), axis=axis)
    return importlib.import_module(module_name).concatenate(list(parts), axis=axis)


def shard_sequence(
    x, world_size: int, rank: int, *, layout: str = "contiguous", axis: int = SEQUENCE_AXIS
):
    """This rank's part of a global sequence tensor, in the ring layout.

    Parameters
    ----------
    x : array
        numpy, torch, CuPy or array-API array whose ``axis`` is the global sequence, of a
        length that splits into the layout's chunks (``world_size`` or ``2 * world_size``).
    world_size, rank : int
        The ring and this rank.
    layout : {"contiguous", "zigzag"}
        Contiguous: chunk ``rank``. Zigzag: chunks ``rank`` and ``2 * world_size - 1 - rank``,
        concatenated.
    axis : int
        The sequence axis (2 for ``[B, H, S, D]``); negative counts from the last axis.

    Returns
    -------
    array
        Of ``x``'s library; a view for contiguous, a new array for zigzag.

    Raises
    ------
    TypeError
        ``x`` is not an array.
    InvalidProblemError
        ``axis`` outside ``x``'s rank, a rank outside the world, an unknown layout, a
        sequence that does not split into the layout's chunks.
    """
    op = "shard_sequence"
    world_size, rank = _check_world(world_size, rank, op)
    shape = _array_shape(x, "x", op)
    axis = _sequence_axis(axis, len(shape), op)
    chunk = _check_layout_split(shape[axis], world_size, layout, op)
    parts = [
        x[_along(axis, index * chunk, (index + 1) * chunk)]
        for index in _chunk_order(world_size, rank, layout)
    ]
    return parts[0] if len(parts) == 1 else _concatenate(parts, axis)


def gather_sequence(shards, *, layout: str = "contiguous", axis: int = SEQUENCE_AXIS):
    """The global sequence tensor from every rank's part (the inverse of
    :func:`shard_sequence`).

    Parameters
    ----------
    shards : sequence of arrays
        Rank 0's part first; all of one library and shape.
    layout : {"contiguous", "zigzag"}
    axis : int
        The sequence axis; negative counts from the last axis.

    Raises
    ------
    TypeError
        A shard is not an array.
    InvalidProblemError
        No shards, shards of different shapes, ``axis`` outside the shards' rank, an unknown
        layout, a sequence that does not split into the layout's chunks.
    """
    op = "gather_sequence"
    shards = list(shards)
    world_size = len(shards)
    if world_size == 0:
        raise InvalidProblemError(f"{op}: no shards (got 0, expected one per rank)")
    shape = _array_shape(shards[0], "shard 0", op)
    for rank, shard in enumerate(shards):
        shard_shape = _array_shape(shard, f"shard {rank}", op)
        if shard_shape != shape:
            raise InvalidProblemError(
                f"{op}: shard {rank} has another shape than shard 0 (got {shard_shape}, "
                f"expected {shape})"
            )
    axis = _sequence_axis(axis, len(shape), op)
    chunks_per_rank = _ZIGZAG_CHUNKS_PER_RANK if layout == "zigzag" else 1
    chunk = _check_layout_split(shape[axis] * world_size, world_size, layout, op)
    located = {}
    for rank, shard in enumerate(shards):
        for local, index in enumerate(_chunk_order(world_size, rank, layout)):
            located[index] = shard[_along(axis, local * chunk, (local + 1) * chunk)]
    return _concatenate([located[index] for index in range(world_size * chunks_per_rank)], axis)
