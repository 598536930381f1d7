"""JAX integration: :func:`flash_attention` as an XLA FFI call that ``jax.jit`` compiles.

Imported only by ``import baracuda.jax`` (``import baracuda`` never imports jax). The import
registers the FFI target ``baracuda_flash_attention`` for the CUDA platform: a handler in
baracuda's ``_jax_ffi`` module (built with the XLA FFI headers of the jax present when baracuda
was built) that describes the call's buffers to the C library, takes a plan from a small cache
and runs on the stream XLA gives the call; outputs and workspace come from XLA's allocator.
While tracing, the call is checked by the C library (``baracuda_flash_sdpa_check_args``, which
needs no device), so a jitted call is refused with the message of an eager one.

Under ``jax.vmap`` the call runs once per mapped element (``vmap_method="sequential"``); fold a
mapped axis into the batch axis instead where the data allows it.
"""

from __future__ import annotations

import ctypes
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from . import _capi
from ._checks import as_bool, name_in
from ._errors import InvalidProblemError, UnsupportedError
from ._flash_sdpa import ALIGNMENTS, check_call_layouts, flash_descriptor
from ._plan import QKV_RANK, call_score_options
from ._tensor import ELEMENT_NAMES, accumulator_element, contiguous_strides

__all__ = ["TARGET_NAME", "flash_attention", "handler_available"]

TARGET_NAME = "baracuda_flash_attention"
"""The XLA FFI target of the call, registered for the CUDA platform."""

_OP = "flash_attention"
_HANDLER_LIBRARY = pathlib.Path(__file__).with_name("_jax_ffi.so")
_HANDLER_SYMBOL = "baracuda_jax_flash_attention"
_ELEMENTS = {
    np.dtype(jnp.float32): "f32",
    np.dtype(jnp.float16): "f16",
    np.dtype(jnp.bfloat16): "bf16",
    np.dtype(jnp.float64): "f64",
}
_NUMPY_DTYPES = {element: dtype for dtype, element in _ELEMENTS.items()}
_EXPECTED_ELEMENTS = f"{', '.join(ELEMENT_NAMES[:-1])} or {ELEMENT_NAMES[-1]}"


def _register() -> bool:
    """Register the handler with XLA; False when this build has none."""
    if not _HANDLER_LIBRARY.exists():
        return False
    handler = getattr(ctypes.CDLL(str(_HANDLER_LIBRARY)), _HANDLER_SYMBOL)
    jax.ffi.register_ffi_target(TARGET_NAME, jax.ffi.pycapsule(handler), platform="CUDA")
    return True


_HANDLER_REGISTERED = _register()


def handler_available() -> bool:
    """Whether this build of baracuda has the XLA FFI handler (it needs jax at build time)."""
    return _HANDLER_REGISTERED


def _element(array, name: str, expected: str | None = None) -> str:
    element = _ELEMENTS.get(np.dtype(array.dtype))
    if element is None or (expected is not None and element != expected):
        wanted = _EXPECTED_ELEMENTS if expected is None else expected
        raise InvalidProblemError(
            f"{_OP}: {name} element is not supported (got {np.dtype(array.dtype).name}, "
            f"expected {wanted})"
        )
    return element


def _check_rank(array, name: str, ranks: range) -> None:
    if array.ndim not in ranks:
        expected = str(ranks[0]) if len(ranks) == 1 else f"{ranks[0]} to {ranks[-1]}"
        raise InvalidProblemError(
            f"{_OP}: {name} rank mismatch (got {array.ndim}, expected {expected})"
        )


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
    """Exact attention on JAX arrays, as the XLA FFI call ``baracuda_flash_attention``.

    The semantics, shapes and options are those of :func:`baracuda.flash_attention`; inputs
    and outputs are JAX arrays on one CUDA device. Usable eagerly and inside ``jax.jit``.

    Parameters
    ----------
    q : jax.Array
        ``[B, H, Sq, Dk]``, float32, float16, bfloat16 or float64 (float64 needs
        ``jax_enable_x64``).
    k, v : jax.Array
        ``[B, Hk, Sk, Dk]`` and ``[B, Hk, Sk, Dv]`` of q's dtype; ``Hk`` divides ``H``.
    causal : bool
        Hide keys after each query's aligned position.
    scale : float, optional
        Factor of ``q.k``; ``None`` means ``1 / sqrt(Dk)``.
    window : (int or None, int or None)
        ``(left, right)`` keys visible around the aligned position; ``None`` is unbounded.
    softcap : float
        ``s = softcap * tanh(s / softcap)`` when positive; 0 disables it.
    alibi_slopes : jax.Array, optional
        float32 ``[H]``, ``[1, H]`` or ``[B, H]``.
    mask : jax.Array, optional
        float32, added to the scores, broadcastable to ``[B, H, Sq, Sk]`` (rank 2 to 4; an
        axis of extent 1 broadcasts).
    alignment : {"top_left", "bottom_right"}
        Offset of query positions against keys: 0 or ``Sk - Sq``.
    return_lse : bool
        Also return the LSE.

    Returns
    -------
    y : jax.Array
        ``[B, H, Sq, Dv]`` of q's dtype.
    lse : jax.Array
        Only with ``return_lse``: ``[B, H, Sq]``, float32 (float64 for float64 inputs).

    Raises
    ------
    InvalidProblemError, UnsupportedError
        The inputs do not form a problem baracuda runs (the C library's message), raised
        while tracing; ``UnsupportedError`` too when JAX's default backend is a GPU and this
        build has no XLA FFI handler (elsewhere the call still traces and lowers, for
        ``jax.export``).
    """
    causal, scale, left, right, softcap = call_score_options(causal, scale, window, softcap, _OP)
    alignment = name_in(alignment, ALIGNMENTS, "alignment", _OP)
    return_lse = as_bool(return_lse, "return_lse", _OP)
    if not _HANDLER_REGISTERED and jax.default_backend() == "gpu":
        raise UnsupportedError(
            f"{_OP}: this build of baracuda has no XLA FFI handler (got no "
            f"{_HANDLER_LIBRARY.name}, expected one built with jax installed: pip install "
            "--no-build-isolation . in an environment with jax)"
        )
    for name, array in (("q", q), ("k", k), ("v", v)):
        _check_rank(array, name, range(QKV_RANK, QKV_RANK + 1))
    element = _element(q, "q")
    _element(k, "k", element)
    _element(v, "v", element)
    inputs = [q, k, v]
    layouts = {}
    if mask is not None:
        _check_rank(mask, "mask", range(2, 5))
        _element(mask, "mask", "f32")
        # Leading axes of extent 1 broadcast; the handler takes the rank-4 view.
        mask = jnp.reshape(mask, (1,) * (4 - mask.ndim) + tuple(mask.shape))
        inputs.append(mask)
    if alibi_slopes is not None:
        _check_rank(alibi_slopes, "alibi_slopes", range(1, 3))
        _element(alibi_slopes, "alibi_slopes", "f32")
        alibi_slopes = jnp.reshape(alibi_slopes, (-1, alibi_slopes.shape[-1]))
        inputs.append(alibi_slopes)
    batch_size, num_heads, query_len, d_k = q.shape
    d_v = v.shape[3]
    y_shape = (batch_size, num_heads, query_len, d_v)
    lse_shape = (batch_size, num_heads, query_len)
    lse_dtype = _NUMPY_DTYPES[accumulator_element(element)]
    descriptor = flash_descriptor(
        tuple(q.shape),
        k.shape[2],
        d_v,
        scale=scale,
        causal=causal,
        element=element,
        left=left,
        right=right,
        softcap=softcap,
        alignment=alignment,
    )
    given = {"q": q, "k": k, "v": v, "mask": mask, "alibi_slopes": alibi_slopes}
    for name, array in given.items():
        if array is not None:
            layouts[name] = (
                _ELEMENTS[np.dtype(array.dtype)],
                tuple(array.shape),
                contiguous_strides(tuple(array.shape)),
            )
    layouts["y"] = (element, y_shape, contiguous_strides(y_shape))
    layouts["lse"] = (accumulator_element(element), lse_shape, contiguous_strides(lse_shape))
    check_call_layouts(descriptor, layouts)
    call = jax.ffi.ffi_call(
        TARGET_NAME,
        (jax.ShapeDtypeStruct(y_shape, q.dtype), jax.ShapeDtypeStruct(lse_shape, lse_dtype)),
        vmap_method="sequential",
    )
    y, lse = call(
        *inputs,
        causal=np.bool_(causal),
        scale=np.float64(1.0 / math.sqrt(d_k) if scale is None else scale),
        window_left=np.int64(_capi.WINDOW_UNBOUNDED if left is None else left),
        window_right=np.int64(_capi.WINDOW_UNBOUNDED if right is None else right),
        softcap=np.float64(softcap),
        alignment=np.int64(_capi.ALIGNMENTS[alignment]),
        has_mask=np.bool_(mask is not None),
        has_alibi=np.bool_(alibi_slopes is not None),
    )
    return (y, lse) if return_lse else y
