"""Flash attention forward: the descriptor, the plan and :func:`flash_attention`.

Semantics (docs/ARCHITECTURE.md): Q ``[B, H, Sq, Dk]``, K ``[B, Hk, Sk, Dk]``,
V ``[B, Hk, Sk, Dv]``, Y ``[B, H, Sq, Dv]``, LSE ``[B, H, Sq]``; ``Hk`` divides ``H`` and query
head ``h`` reads K/V head ``h // (H // Hk)``. Scores, in order:

1. ``s = scale * q.k``;
2. softcap: ``s = softcap * tanh(s / softcap)`` when ``softcap > 0``;
3. ALiBi: ``s -= slope[b, h] * |i - j + off|``;
4. the additive mask: ``s += mask[b, h, i, j]``;
5. causal and window limits: ``s = -inf`` outside ``i + off - left <= j <= i + off + right``.

``off`` is 0 for ``"top_left"`` alignment and ``Sk - Sq`` for ``"bottom_right"``.
``Y = softmax(s) V``; LSE is the natural-log log-sum-exp of each row's scores; a row with no
visible key gives ``Y = 0`` and ``LSE = -inf``.
"""

from __future__ import annotations

import dataclasses

from . import _capi
from ._checks import as_bool, as_int32, name_in
from ._cuda import allocate, stream_handle
from ._device_array import DeviceArray
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
from ._tensor import (
    NO_SYNC,
    TensorView,
    accumulator_element,
    as_tensor,
    as_workspace,
    element_size,
    physical_span,
    prepend_axes,
)

MASK_RANK = 4
ALIGNMENTS = tuple(_capi.ALIGNMENTS)
"""The alignment names: ``("top_left", "bottom_right")``."""

_EXTENT_FIELDS = ("batch_size", "num_heads", "query_len", "key_len", "d_k")


@dataclasses.dataclass(frozen=True)
class FlashSdpaDescriptor:
    """A flash attention forward problem: extents, element and score options.

    Only what the C descriptor cannot hold is refused here (types, int32 range, unknown
    names); the C library checks the values when a plan is selected
    (:meth:`FlashSdpaPlan.select`) and names the first one it refuses.

    Parameters
    ----------
    batch_size, num_heads, query_len, key_len : int
        ``B``, ``H`` (query heads), ``Sq``, ``Sk``.
    d_k : int
        Head dim of Q and K.
    d_v : int, optional
        Head dim of V and Y; ``None`` means ``d_k`` (and is stored as ``d_k``).
    scale : float, optional
        Factor of ``q.k``; ``None`` means ``1 / sqrt(d_k)``.
    is_causal : bool
        Hide keys after the query's aligned position (right window bound 0).
    element : str or dtype
        ``"f32"``, ``"f16"``, ``"bf16"``, ``"f64"`` or a numpy / torch / cupy dtype of one of
        them; stored as the name.
    window_size_left, window_size_right : int, optional
        Keys visible before and after the aligned position; ``None`` is unbounded.
    softcap : float
        ``s = softcap * tanh(s / softcap)`` when positive; 0 disables it.
    alignment : {"top_left", "bottom_right"}
        Offset of query positions against keys: 0 (PyTorch's ``is_causal``) or ``Sk - Sq``
        (the KV-cache convention).
    """

    batch_size: int
    num_heads: int
    query_len: int
    key_len: int
    d_k: int
    d_v: int | None = None
    _: dataclasses.KW_ONLY
    scale: float | None = None
    is_causal: bool = False
    element: str = "f32"
    window_size_left: int | None = None
    window_size_right: int | None = None
    softcap: float = 0.0
    alignment: str = "top_left"

    def __post_init__(self) -> None:
        op = type(self).__name__
        fields = {name: as_int32(getattr(self, name), name, op) for name in _EXTENT_FIELDS}
        fields["d_v"] = fields["d_k"] if self.d_v is None else as_int32(self.d_v, "d_v", op)
        fields.update(score_fields(self, op))
        fields["alignment"] = name_in(self.alignment, ALIGNMENTS, "alignment", op)
        for name, value in fields.items():
            object.__setattr__(self, name, value)


class FlashSdpaPlan(SelectedPlan):
    """A selected flash attention forward kernel for one :class:`FlashSdpaDescriptor`.

    Made by :meth:`select`; holds C resources until :meth:`close` (or the end of a ``with``
    block, or collection).
    """

    __slots__ = ()
    _DESCRIPTOR = FlashSdpaDescriptor
    _HANDLE = _capi.FlashSdpaPlanHandle

    @classmethod
    def select(cls, descriptor: FlashSdpaDescriptor, *, backend: str = "auto") -> FlashSdpaPlan:
        """Check ``descriptor`` and pick a kernel for the current device.

        Parameters
        ----------
        descriptor : FlashSdpaDescriptor
            The problem.
        backend : {"auto", "portable", "hopper"}
            ``"auto"`` lets the plan choose: ``"hopper"`` for f16 / bf16 on compute capability
            9.0 where the build has the head dim, ``"portable"`` otherwise. A named backend is
            honoured or refused with the reason, never replaced. A hopper plan runs operands
            that TMA cannot describe (rows or heads not 16-byte aligned) on the portable
            kernel.

        Returns
        -------
        FlashSdpaPlan

        Raises
        ------
        InvalidProblemError
            A descriptor value is out of range (negative extent, non-finite scale, ...).
        UnsupportedError
            A valid problem this build or device cannot run (head dim, backend, arch).
        CudaError
            No CUDA device or driver.
        """
        return cls._select(descriptor, backend)

    # ------------------------------------------------------------ reports

    @property
    def workspace_size(self) -> int:
        """Bytes of device workspace that :meth:`run` needs (0 for the portable backend)."""
        return self._handle.workspace_size()

    # ------------------------------------------------------------ arguments and run

    def can_implement(self, q, k, v, y, lse, *, mask=None, alibi_slopes=None) -> None:
        """Check tensors against the plan (shapes, strides, elements, buffer sizes).

        Reads only the tensors' metadata: no stream ordering, nothing enqueued. The tensors
        are as :meth:`run` takes them.

        Raises
        ------
        InvalidProblemError, UnsupportedError, BufferTooSmallError
            The first check that fails, with the C library's reason.
        """
        op = "FlashSdpaPlan.can_implement"
        views = _plan_views(op, NO_SYNC, q, k, v, y, lse, mask, alibi_slopes)
        check_current_device(views, op)
        self._handle.can_implement(*(view for _, view in views))

    def run(
        self, q, k, v, y, lse, *, mask=None, alibi_slopes=None, workspace=None, stream=None
    ) -> None:
        """Enqueue the kernel on ``stream``: writes ``y`` and ``lse``.

        No host synchronisation and no allocation: safe under CUDA graph capture.

        Parameters
        ----------
        q, k, v : device tensors
            ``[B, H, Sq, Dk]``, ``[B, Hk, Sk, Dk]``, ``[B, Hk, Sk, Dv]`` of the plan's
            element; any strides with a last-axis stride of 1; a K/V head axis of extent ``H``
            and stride 0 broadcasts one head (MQA).
        y : device tensor
            ``[B, H, Sq, Dv]`` of the plan's element, written.
        lse : device tensor
            ``[B, H, Sq]``, f32 (f64 for f64 plans), written: the natural-log log-sum-exp of
            each row's scores, ``-inf`` for rows with no visible key (whose ``y`` is 0).
        mask : device tensor, optional
            f32 ``[B|1, H|1, Sq|1, Sk|1]``, added to the scores; extent-1 axes and zero
            strides broadcast.
        alibi_slopes : device tensor, optional
            f32 ``[1, H]`` or ``[B, H]``.
        workspace : device buffer, optional
            At least :attr:`workspace_size` bytes (any element type).
        stream : None, int or object with ``__cuda_stream__``, optional
            ``None`` is the legacy default stream. DLPack producers order their pending work
            before it.

        Raises
        ------
        InvalidProblemError, UnsupportedError, BufferTooSmallError, WorkspaceTooSmallError
            The arguments do not fit the plan (the C library's reason).
        CudaError
            The current device is not the plan's, or the launch failed.
        """
        op = "FlashSdpaPlan.run"
        handle = stream_handle(stream, op)
        views = _plan_views(op, handle, q, k, v, y, lse, mask, alibi_slopes)
        scratch = None if workspace is None else as_workspace(workspace, op=op, stream=handle)
        check_current_device(views + [("workspace", scratch)], op)
        self._run_views(
            *(view for _, view in views),
            0 if scratch is None else scratch.ptr,
            0 if scratch is None else scratch.nbytes,
            handle,
        )

    def _run_views(
        self, q, k, v, y, lse, mask, alibi_slopes, workspace, workspace_bytes, stream
    ) -> None:
        """Run on tensor views (``None`` for an absent mask or slopes) and a raw workspace."""
        self._handle.run(q, k, v, y, lse, mask, alibi_slopes, workspace, workspace_bytes, stream)


def _plan_views(op, stream, q, k, v, y, lse, mask, alibi_slopes):
    """(name, TensorView or None) of each argument, as given (no reshaping)."""
    named = (
        ("q", q),
        ("k", k),
        ("v", v),
        ("y", y),
        ("lse", lse),
        ("mask", mask),
        ("alibi_slopes", alibi_slopes),
    )
    return [
        (name, None if tensor is None else as_tensor(tensor, name, op=op, stream=stream))
        for name, tensor in named
    ]


# ---------------------------------------------------------------- plan cache


_plan_cache = PlanCache(PLAN_CACHE_CAPACITY)


def cached_plan(
    batch_size,
    num_heads,
    query_len,
    key_len,
    d_k,
    d_v,
    *,
    scale,
    causal,
    element,
    left,
    right,
    softcap,
    alignment,
    backend,
    device_id,
) -> FlashSdpaPlan:
    """The plan of a problem from the cache, selected (for the current device) on a miss.

    The arguments are normalised as :func:`flash_attention` normalises them (they key the
    cache); ``device_id`` is the current device's.
    """
    key = (
        batch_size,
        num_heads,
        query_len,
        key_len,
        d_k,
        d_v,
        scale,
        causal,
        element,
        left,
        right,
        softcap,
        alignment,
        backend,
        device_id,
    )
    plan = _plan_cache.get(key)
    if plan is None:
        descriptor = flash_descriptor(
            (batch_size, num_heads, query_len, d_k),
            key_len,
            d_v,
            scale=scale,
            causal=causal,
            element=element,
            left=left,
            right=right,
            softcap=softcap,
            alignment=alignment,
        )
        plan = _plan_cache.put(key, FlashSdpaPlan.select(descriptor, backend=backend))
    return plan


def flash_descriptor(
    q_shape, key_len, d_v, *, scale, causal, element, left, right, softcap, alignment
) -> FlashSdpaDescriptor:
    """The descriptor of a call with q of ``q_shape`` ([B, H, Sq, Dk]), ``key_len`` keys and
    ``d_v`` value dims; the options normalised as :func:`flash_attention` normalises them."""
    batch_size, num_heads, query_len, d_k = q_shape
    return FlashSdpaDescriptor(
        batch_size,
        num_heads,
        query_len,
        key_len,
        d_k,
        d_v,
        scale=scale,
        is_causal=causal,
        element=element,
        window_size_left=left,
        window_size_right=right,
        softcap=softcap,
        alignment=alignment,
    )


# ---------------------------------------------------------------- framework adapters

# The order in which the C ABI takes a call's tensors.
CALL_TENSORS = ("q", "k", "v", "y", "lse", "mask", "alibi_slopes")

# Made-up addresses of the tensor descriptions that check_call_layouts checks: each tensor gets
# its own range, aligned for every element and separated from the next, so that only a real
# layout fault (a written tensor folding onto itself, a shape or stride refused) fails the checks.
_CHECK_BASE_ADDRESS = 1 << 40
_CHECK_ALIGNMENT = 256


def call_view(name, element, ptr, shape, strides, device_id, owner) -> TensorView:
    """The description of a call's tensor ``name``, a mask or ALiBi slopes of lower rank with
    their leading axes prepended as the C ABI takes them."""
    view = TensorView(ptr, element, shape, strides, physical_span(shape, strides), device_id, owner)
    if name == "mask":
        return prepend_axes(view, MASK_RANK)
    if name == "alibi_slopes":
        return prepend_axes(view, ALIBI_SLOPES_RANK)
    return view


def views_in_order(views: dict) -> tuple:
    """The views of a call (``None`` for an absent optional one) in the C ABI's order."""
    return tuple(views.get(name) for name in CALL_TENSORS)


def check_call_layouts(descriptor: FlashSdpaDescriptor, layouts: dict) -> None:
    """The C library's checks of a call on descriptions of its tensors at made-up addresses
    (``baracuda_flash_sdpa_check_args``: no device, no data), for a framework's shape inference.

    ``layouts`` maps each given tensor's name (``CALL_TENSORS``) to ``(element, shape,
    strides)``.

    Raises
    ------
    InvalidProblemError, UnsupportedError
        As ``flash_attention`` would for the same call.
    """
    views = {}
    address = _CHECK_BASE_ADDRESS
    for name, (element, shape, strides) in layouts.items():
        views[name] = call_view(name, element, address, shape, strides, None, None)
        span_bytes = physical_span(shape, strides) * element_size(element)
        address += (span_bytes // _CHECK_ALIGNMENT + 2) * _CHECK_ALIGNMENT
    _capi.flash_sdpa_check_args(descriptor, *views_in_order(views))


# ---------------------------------------------------------------- flash_attention


def flash_attention(
    q,
    k,
    v,
    *,
    causal=False,
    scale=None,
    window=(None, None),
    softcap=0.0,
    alibi_slopes=None,
    mask=None,
    alignment="top_left",
    return_lse=False,
    out=None,
    stream=None,
    backend="auto",
):
    """Exact attention, ``softmax(scale * q k^T + modifiers) v``, in one fused kernel.

    Parameters
    ----------
    q : device tensor
        ``[B, H, Sq, Dk]``, f32, f16, bf16 or f64, through DLPack or the CUDA Array
        Interface. Logical order is B, H, S, D: pass a B, S, H, D tensor as
        ``t.transpose(1, 2)``; any strides, except that the last axis must have stride 1.
    k, v : device tensors
        ``[B, Hk, Sk, Dk]`` and ``[B, Hk, Sk, Dv]``, of q's element. ``Hk`` divides ``H``:
        query head ``h`` reads K/V head ``h // (H // Hk)``; a head axis of extent ``H`` with
        stride 0 broadcasts one head (MQA).
    causal : bool
        Hide keys after each query's aligned position.
    scale : float, optional
        Factor of ``q.k``; ``None`` means ``1 / sqrt(Dk)``.
    window : (int or None, int or None)
        ``(left, right)``: keys visible before and after the aligned position; ``None`` is
        unbounded on that side.
    softcap : float
        ``s = softcap * tanh(s / softcap)`` when positive (applied after scaling, before
        ALiBi and the mask); 0 disables it.
    alibi_slopes : device tensor, optional
        f32 ``[H]``, ``[1, H]`` or ``[B, H]``: ``s -= slope[b, h] * |i - j + off|``.
    mask : device tensor, optional
        f32, added to the scores, broadcastable to ``[B, H, Sq, Sk]``: rank 2
        ``[Sq|1, Sk|1]``, rank 3 ``[H|1, Sq|1, Sk|1]`` or rank 4 ``[B|1, H|1, Sq|1, Sk|1]``;
        extent-1 axes and zero strides broadcast. ``-inf`` hides a key.
    alignment : {"top_left", "bottom_right"}
        ``off = 0`` (query ``i`` sees key ``j <= i`` under causal, as PyTorch's
        ``is_causal``) or ``off = Sk - Sq`` (the KV-cache convention). The window keeps keys
        ``i + off - left <= j <= i + off + right``.
    return_lse : bool
        Also return the LSE.
    out : device tensor, optional
        ``[B, H, Sq, Dv]`` of q's element, written; returned as ``y``.
    stream : None, int or object with ``__cuda_stream__``, optional
        ``None`` is the legacy default stream. Inputs exported through DLPack are ordered
        before it; outputs are allocated and written on it.
    backend : {"auto", "portable", "hopper"}
        Kernel family; ``"auto"`` lets the plan choose.

    Returns
    -------
    y : DeviceArray or out
        ``[B, H, Sq, Dv]``. Rows with no visible key are 0.
    lse : DeviceArray
        Only with ``return_lse``: ``[B, H, Sq]`` natural-log log-sum-exp of each row's
        scores, f32 (f64 for f64 inputs); ``-inf`` for rows with no visible key.

    Raises
    ------
    InvalidProblemError, UnsupportedError
        The inputs do not form a problem baracuda runs; the message names the first thing
        wrong.
    CudaError
        No device, or the launch failed.

    Notes
    -----
    Plans are selected once per (problem, backend, device) and kept in a small
    least-recently-used cache. Accumulation is f32 (f64 for f64 inputs); results are
    deterministic and bit-stable on the same hardware.
    """
    op = "flash_attention"
    causal, scale, left, right, softcap = call_score_options(causal, scale, window, softcap, op)
    alignment = name_in(alignment, ALIGNMENTS, "alignment", op)
    backend = name_in(backend, BACKENDS, "backend", op)
    return_lse = as_bool(return_lse, "return_lse", op)
    handle = stream_handle(stream, op)
    q_view, k_view, v_view = (
        as_tensor(tensor, name, op=op, stream=handle, rank=QKV_RANK)
        for name, tensor in (("q", q), ("k", k), ("v", v))
    )
    element = q_view.element
    batch_size, num_heads, query_len, d_k = q_view.shape
    key_len = k_view.shape[2]
    d_v = v_view.shape[3]

    mask_view = None
    if mask is not None:
        mask_view = as_tensor(mask, "mask", op=op, stream=handle)
        mask_view = prepend_axes(mask_view, MASK_RANK)
    slopes_view = None
    if alibi_slopes is not None:
        slopes_view = as_tensor(alibi_slopes, "alibi_slopes", op=op, stream=handle)
        slopes_view = prepend_axes(slopes_view, ALIBI_SLOPES_RANK)
    y_view = None if out is None else as_tensor(out, "y", op=op, stream=handle)

    device = check_current_device(
        [
            ("q", q_view),
            ("k", k_view),
            ("v", v_view),
            ("mask", mask_view),
            ("alibi_slopes", slopes_view),
            ("y", y_view),
        ],
        op,
    )
    plan = cached_plan(
        batch_size,
        num_heads,
        query_len,
        key_len,
        d_k,
        d_v,
        scale=scale,
        causal=causal,
        element=element,
        left=left,
        right=right,
        softcap=softcap,
        alignment=alignment,
        backend=backend,
        device_id=device.device_id,
    )

    y = out
    if y_view is None:
        y = DeviceArray._empty((batch_size, num_heads, query_len, d_v), element, handle, device)
        y_view = y.tensor_view()
    lse = DeviceArray._empty(
        (batch_size, num_heads, query_len), accumulator_element(element), handle, device
    )
    workspace_bytes = plan.workspace_size
    # Returned to the pool on the stream once dropped, after the kernel that uses it.
    workspace = allocate(workspace_bytes, handle, device, op) if workspace_bytes else None
    plan._run_views(
        q_view,
        k_view,
        v_view,
        y_view,
        lse.tensor_view(),
        mask_view,
        slopes_view,
        0 if workspace is None else int(workspace.handle),
        workspace_bytes,
        handle,
    )
    return (y, lse) if return_lse else y
