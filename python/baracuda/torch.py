"""PyTorch integration: :func:`flash_attention` as a torch custom op that ``torch.compile``
and ``torch.export`` trace.

Imported only by ``import baracuda.torch`` (``import baracuda`` never imports torch). The import
registers ``torch.ops.baracuda.flash_attention``:

- the CUDA implementation allocates ``y`` and ``lse`` with ``torch.empty`` on q's device
  (torch's caching allocator, so CUDA graph capture works) and runs on
  ``torch.cuda.current_stream()`` through baracuda's plan cache;
- the fake (meta) implementation returns empty tensors of the output shapes, dtypes and
  devices, after the C library's argument checks (``baracuda_flash_sdpa_check_args``, which
  needs no device) on descriptions of the tensors with made-up addresses: a traced call is
  refused with the same message as an eager one;
- the autograd formula refuses the backward pass (``NotImplementedError``).

The op's schema::

    baracuda::flash_attention(Tensor q, Tensor k, Tensor v, bool causal, float? scale,
        SymInt? window_left, SymInt? window_right, float softcap, Tensor? alibi_slopes,
        Tensor? mask, str alignment) -> (Tensor y, Tensor lse)

:func:`flash_attention` is the keyword-argument wrapper of the op; it returns ``y`` alone
unless ``return_lse``.
"""

import torch

from . import _capi
from ._checks import as_bool, name_in
from ._errors import InvalidProblemError
from ._flash_sdpa import (
    ALIGNMENTS,
    cached_plan,
    call_view,
    check_call_layouts,
    flash_descriptor,
    views_in_order,
)
from ._plan import QKV_RANK, call_score_options, check_current_device
from ._tensor import ELEMENT_NAMES, accumulator_element

__all__ = ["OP_NAME", "flash_attention"]

OP_NAME = "baracuda::flash_attention"
"""The qualified name of the custom op: ``torch.ops.baracuda.flash_attention``."""

NO_BACKWARD_MESSAGE = (
    "baracuda.flash_attention has no backward yet: run it under torch.no_grad() or "
    "torch.inference_mode(), or pass inputs that do not require grad"
)

_OP = "flash_attention"
_BACKEND = "auto"
_ELEMENTS = {
    torch.float32: "f32",
    torch.float16: "f16",
    torch.bfloat16: "bf16",
    torch.float64: "f64",
}
_TORCH_DTYPES = {element: dtype for dtype, element in _ELEMENTS.items()}
_EXPECTED_ELEMENTS = f"{', '.join(ELEMENT_NAMES[:-1])} or {ELEMENT_NAMES[-1]}"
_TRACED_DEVICE_TYPES = ("cuda", "meta")
_WORKSPACE_DTYPE = torch.uint8


# ---------------------------------------------------------------- the problem of a call


def _element(tensor: torch.Tensor, name: str) -> str:
    element = _ELEMENTS.get(tensor.dtype)
    if element is None:
        got = str(tensor.dtype).removeprefix("torch.")
        raise InvalidProblemError(
            f"{_OP}: {name} element is not supported (got {got}, expected {_EXPECTED_ELEMENTS})"
        )
    return element


def _check_rank(tensor: torch.Tensor, name: str, rank: int | None) -> None:
    got = tensor.dim()
    if rank is not None and got != rank:
        raise InvalidProblemError(f"{_OP}: {name} rank mismatch (got {got}, expected {rank})")
    if not 1 <= got <= _capi.MAX_RANK:
        raise InvalidProblemError(
            f"{_OP}: {name} rank is not supported (got {got}, expected 1 to {_capi.MAX_RANK})"
        )


def _example_value(value) -> int | None:
    """An extent or stride as an int without adding a guard: a ``SymInt``'s hint (the value
    it was traced with), ``None`` for one that has none (a data-dependent size)."""
    if isinstance(value, torch.SymInt):
        node = value.node
        return int(node.hint) if node.has_hint() else None
    return int(value)


def _layout(tensor: torch.Tensor) -> tuple[tuple, tuple] | None:
    """``(shape, strides)`` as ints, or ``None`` when one of them has no example value."""
    shape = tuple(_example_value(extent) for extent in tensor.shape)
    strides = tuple(_example_value(stride) for stride in tensor.stride())
    if None in shape or None in strides:
        return None
    return shape, strides


def _inputs(q, k, v, alibi_slopes, mask):
    """``(name, tensor, rank)`` of each given input, in the C ABI's order."""
    named = [("q", q, QKV_RANK), ("k", k, QKV_RANK), ("v", v, QKV_RANK)]
    if mask is not None:
        named.append(("mask", mask, None))
    if alibi_slopes is not None:
        named.append(("alibi_slopes", alibi_slopes, None))
    return named


def _check_inputs(inputs, device_types) -> str:
    """The checks that the C ABI cannot express (elements, ranks, devices); q's element."""
    q = inputs[0][1]
    for name, tensor, rank in inputs:
        _element(tensor, name)
        _check_rank(tensor, name, rank)
        if tensor.device.type not in device_types:
            expected = " or ".join(device_types)
            raise InvalidProblemError(
                f"{_OP}: {name} is not a CUDA tensor (got device {tensor.device}, expected "
                f"a {expected} device)"
            )
        if tensor.device != q.device:
            raise InvalidProblemError(
                f"{_OP}: {name} is on another device than q (got {tensor.device}, expected "
                f"{q.device})"
            )
    return _element(q, "q")


def _output_shapes(q: torch.Tensor, v: torch.Tensor) -> tuple[tuple, tuple]:
    """``y``'s ``[B, H, Sq, Dv]`` and ``lse``'s ``[B, H, Sq]`` (symbolic when traced so)."""
    lse_shape = tuple(q.shape[:3])
    return (*lse_shape, v.shape[3]), lse_shape


def _empty_outputs(q: torch.Tensor, v: torch.Tensor, element: str):
    y_shape, lse_shape = _output_shapes(q, v)
    y = torch.empty(y_shape, dtype=q.dtype, device=q.device)
    lse_dtype = _TORCH_DTYPES[accumulator_element(element)]
    lse = torch.empty(lse_shape, dtype=lse_dtype, device=q.device)
    return y, lse


def _descriptor(q_shape, k_shape, v_shape, element, causal, scale, left, right, softcap, alignment):
    return flash_descriptor(
        q_shape,
        k_shape[2],
        v_shape[3],
        scale=scale,
        causal=causal,
        element=element,
        left=left,
        right=right,
        softcap=softcap,
        alignment=alignment,
    )


# ---------------------------------------------------------------- the custom op


@torch.library.custom_op(OP_NAME, mutates_args=())
def _flash_attention_op(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool,
    scale: float | None,
    window_left: int | None,
    window_right: int | None,
    softcap: float,
    alibi_slopes: torch.Tensor | None,
    mask: torch.Tensor | None,
    alignment: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the kernel on torch's current stream; ``(y, lse)`` allocated by torch."""
    inputs = _inputs(q, k, v, alibi_slopes, mask)
    element = _check_inputs(inputs, ("cuda",))
    with torch.cuda.device(q.device):
        y, lse = _empty_outputs(q, v, element)
        device_id = q.device.index
        views = {
            name: call_view(
                name,
                _element(tensor, name),
                tensor.data_ptr(),
                tuple(tensor.shape),
                tuple(tensor.stride()),
                device_id,
                tensor,
            )
            for name, tensor, _ in [*inputs, ("y", y, None), ("lse", lse, None)]
        }
        descriptor = _descriptor(
            views["q"].shape,
            views["k"].shape,
            views["v"].shape,
            element,
            causal,
            scale,
            window_left,
            window_right,
            softcap,
            alignment,
        )
        # The checks of the fake implementation first, so that an eager call and a traced one
        # are refused with the same message.
        args = views_in_order(views)
        _capi.flash_sdpa_check_args(descriptor, *args)
        device = check_current_device([(name, view) for name, view in views.items()], _OP)
        plan = cached_plan(
            descriptor.batch_size,
            descriptor.num_heads,
            descriptor.query_len,
            descriptor.key_len,
            descriptor.d_k,
            descriptor.d_v,
            scale=descriptor.scale,
            causal=descriptor.is_causal,
            element=element,
            left=descriptor.window_size_left,
            right=descriptor.window_size_right,
            softcap=descriptor.softcap,
            alignment=descriptor.alignment,
            backend=_BACKEND,
            device_id=device.device_id,
        )
        stream = torch.cuda.current_stream(q.device).cuda_stream
        workspace_bytes = plan.workspace_size
        workspace = None
        if workspace_bytes:
            # From torch's allocator on the stream of the launch: reused only after it.
            workspace = torch.empty(workspace_bytes, dtype=_WORKSPACE_DTYPE, device=q.device)
        plan._run_views(
            *args,
            0 if workspace is None else workspace.data_ptr(),
            workspace_bytes,
            stream,
        )
    return y, lse


@_flash_attention_op.register_fake
def _flash_attention_fake(
    q, k, v, causal, scale, window_left, window_right, softcap, alibi_slopes, mask, alignment
):
    """Empty ``(y, lse)`` of the call's shapes, after the C library's checks of the call."""
    inputs = _inputs(q, k, v, alibi_slopes, mask)
    element = _check_inputs(inputs, _TRACED_DEVICE_TYPES)
    layouts = {name: _layout(tensor) for name, tensor, _ in inputs}
    y, lse = _empty_outputs(q, v, element)
    layouts["y"], layouts["lse"] = _layout(y), _layout(lse)
    if None in layouts.values():
        # A size known only at run time: the CUDA implementation checks the call then.
        return y, lse
    tensors = {name: tensor for name, tensor, _ in inputs} | {"y": y, "lse": lse}
    descriptor = _descriptor(
        layouts["q"][0],
        layouts["k"][0],
        layouts["v"][0],
        element,
        causal,
        scale,
        window_left,
        window_right,
        softcap,
        alignment,
    )
    check_call_layouts(
        descriptor,
        {name: (_element(tensors[name], name), *layout) for name, layout in layouts.items()},
    )
    return y, lse


def _setup_backward(ctx, inputs, output) -> None:
    """Nothing to save: the backward pass is refused."""


def _refuse_backward(ctx, grad_y, grad_lse):
    raise NotImplementedError(NO_BACKWARD_MESSAGE)


_flash_attention_op.register_autograd(_refuse_backward, setup_context=_setup_backward)


# ---------------------------------------------------------------- the wrapper


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
):
    """Exact attention on torch tensors, through the custom op ``baracuda::flash_attention``.

    The semantics, shapes and options are those of :func:`baracuda.flash_attention`; inputs
    and outputs are torch tensors on one CUDA device, and the kernel runs on
    ``torch.cuda.current_stream()``. ``torch.compile`` (``fullgraph=True`` included) and
    ``torch.export`` trace the call as one op; CUDA graphs capture it.

    Parameters
    ----------
    q : torch.Tensor
        ``[B, H, Sq, Dk]``, float32, float16, bfloat16 or float64; any strides with a
        last-axis stride of 1 (a B, S, H, D tensor is passed as ``t.transpose(1, 2)``).
    k, v : torch.Tensor
        ``[B, Hk, Sk, Dk]`` and ``[B, Hk, Sk, Dv]`` of q's dtype; ``Hk`` divides ``H``.
    causal : bool
        Hide keys after each query's aligned position.
    scale : float, optional
        Factor of ``q.k``; ``None`` means ``1 / sqrt(Dk)``.
    window : (int or None, int or None)
        ``(left, right)`` keys visible around the aligned position; ``None`` is unbounded.
    softcap : float
        ``s = softcap * tanh(s / softcap)`` when positive; 0 disables it.
    alibi_slopes : torch.Tensor, optional
        float32 ``[H]``, ``[1, H]`` or ``[B, H]``.
    mask : torch.Tensor, optional
        float32, added to the scores, broadcastable to ``[B, H, Sq, Sk]`` (rank 2 to 4).
    alignment : {"top_left", "bottom_right"}
        Offset of query positions against keys: 0 or ``Sk - Sq``.
    return_lse : bool
        Also return the LSE.

    Returns
    -------
    y : torch.Tensor
        ``[B, H, Sq, Dv]`` of q's dtype, contiguous, from torch's allocator.
    lse : torch.Tensor
        Only with ``return_lse``: ``[B, H, Sq]``, float32 (float64 for float64 inputs).

    Raises
    ------
    InvalidProblemError, UnsupportedError
        The inputs do not form a problem baracuda runs (the C library's message); raised
        while tracing too, where ``torch.compile`` wraps it in its own error.
    CudaError
        No device, or the launch failed.
    NotImplementedError
        From the backward pass: the op has no gradient yet. Eagerly, a forward pass with
        inputs that require grad runs, and ``backward()`` raises; ``torch.compile`` with an
        AOTAutograd backend (inductor, the default) traces the backward when an input
        requires grad, so it raises while compiling. Run inference under
        ``torch.no_grad()`` or ``torch.inference_mode()``.
    """
    causal, scale, left, right, softcap = call_score_options(causal, scale, window, softcap, _OP)
    alignment = name_in(alignment, ALIGNMENTS, "alignment", _OP)
    return_lse = as_bool(return_lse, "return_lse", _OP)
    y, lse = _flash_attention_op(
        q, k, v, causal, scale, left, right, softcap, alibi_slopes, mask, alignment
    )
    return (y, lse) if return_lse else y
