"""A plain numpy float64 implementation of baracuda's attention semantics: the test oracle.

Nothing here is tiled or fused. The full ``[B, H, Sq, Sk]`` score matrix is built, each
score modifier is applied in the order that ``baracuda.h`` states, and the softmax is taken
in one pass. The code follows the semantics so that a reader can check it line by line.
"""

import math

import numpy as np

from ._checks import (
    as_bool,
    as_real,
    check_head_dim,
    check_scale_and_softcap,
    name_in,
    window_bound,
    window_pair,
)
from ._errors import InvalidProblemError
from ._flash_sdpa import ALIGNMENTS
from ._plan import QKV_RANK
from ._tensor import accumulator_element, element_of_dtype

__all__ = ["attention"]

_OP = "reference.attention"


def _extents(shape):
    """C's spelling of a shape in messages: ``[2, 8, 64, 64]``."""
    return "[" + ", ".join(str(extent) for extent in shape) + "]"


def _as_float64(name, array, rank):
    try:
        values = np.asarray(array).astype(np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidProblemError(
            f"{_OP}: {name} is not an array of numbers (got {type(array).__name__}: {error}, "
            "expected a float array)"
        ) from None
    if values.ndim != rank:
        raise InvalidProblemError(
            f"{_OP}: {name} rank mismatch (got {values.ndim}, expected {rank})"
        )
    return values


def _check_heads(q, k, v):
    """``check_args`` of flash_sdpa_plan.cpp on the shapes of q, k and v."""
    batch_size, num_heads, _, d_k = q.shape
    num_heads_k, key_len = k.shape[1], k.shape[2]
    if num_heads == 0 and num_heads_k != 0:
        raise InvalidProblemError(
            f"{_OP}: k shape[1] (num_heads_k) must be 0 when num_heads is 0 (got {num_heads_k}, "
            "expected 0)"
        )
    if num_heads > 0 and (num_heads_k == 0 or num_heads % num_heads_k != 0):
        raise InvalidProblemError(
            f"{_OP}: k shape[1] (num_heads_k) must divide num_heads (got {num_heads_k}, "
            f"expected a divisor of {num_heads})"
        )
    expected_k = (batch_size, num_heads_k, key_len, d_k)
    if k.shape != expected_k:
        raise InvalidProblemError(
            f"{_OP}: k shape mismatch (got {_extents(k.shape)}, expected {_extents(expected_k)})"
        )
    expected_v = (batch_size, num_heads_k, key_len, v.shape[3])
    if v.shape != expected_v:
        raise InvalidProblemError(
            f"{_OP}: v shape mismatch (got {_extents(v.shape)}, expected {_extents(expected_v)})"
        )


def _window_limits(left, right, causal):
    left = math.inf if left is None else left
    right = math.inf if right is None else right
    if causal:
        right = min(right, 0)
    return left, right


def _alibi_bias(alibi_slopes, batch_size, num_heads, distance):
    slopes = _as_float64("alibi_slopes", alibi_slopes, np.ndim(alibi_slopes))
    if slopes.ndim == 1:
        slopes = slopes[np.newaxis, :]
    if slopes.ndim != 2 or slopes.shape[1] != num_heads or slopes.shape[0] not in (1, batch_size):
        raise InvalidProblemError(
            f"{_OP}: alibi_slopes shape mismatch (got {_extents(slopes.shape)}, "
            f"expected [{num_heads}], [1, {num_heads}] or [{batch_size}, {num_heads}])"
        )
    return slopes[:, :, np.newaxis, np.newaxis] * distance


def _broadcast_mask(mask, target_shape):
    values = _as_float64("mask", mask, np.ndim(mask))
    try:
        return np.broadcast_to(values, target_shape)
    except ValueError:
        raise InvalidProblemError(
            f"{_OP}: mask shape mismatch (got {_extents(values.shape)}, "
            f"expected broadcastable to {_extents(target_shape)})"
        ) from None


def attention(
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
):
    """Exact attention in float64, materialising every score.

    Parameters
    ----------
    q : array_like
        Queries, ``[B, H, Sq, Dk]``, any float dtype (``ml_dtypes.bfloat16`` included).
    k : array_like
        Keys, ``[B, Hk, Sk, Dk]``; ``Hk`` divides ``H`` and query head ``h`` reads key
        head ``h // (H // Hk)``.
    v : array_like
        Values, ``[B, Hk, Sk, Dv]``.
    causal : bool, optional
        Limits the right side of the window to the diagonal (``right = min(right, 0)``).
    scale : float, optional
        Multiplies ``q . k``; ``None`` means ``1 / sqrt(Dk)``.
    window : tuple of (int or None, int or None), optional
        ``(left, right)``: query ``i`` sees key ``j`` when
        ``i + off - left <= j <= i + off + right``; ``None`` leaves a side unbounded.
    softcap : float, optional
        When positive, scores become ``softcap * tanh(s / softcap)``; 0 disables.
    alibi_slopes : array_like, optional
        ``[H]``, ``[1, H]`` or ``[B, H]``; subtracts ``slope[b, h] * |i - j + off|``.
    mask : array_like, optional
        Additive mask broadcastable (numpy rules) to ``[B, H, Sq, Sk]``.
    alignment : {"top_left", "bottom_right"}, optional
        ``off = 0`` for ``"top_left"``, ``off = Sk - Sq`` for ``"bottom_right"``.

    Returns
    -------
    y : numpy.ndarray
        ``[B, H, Sq, Dv]`` float64; rows with no visible key are 0, rows with a NaN score
        among their visible keys are NaN.
    lse : numpy.ndarray
        ``[B, H, Sq]`` float64 natural-log log-sum-exp of each row's scores; ``-inf`` for
        rows with no visible key, NaN for rows with a NaN score among their visible keys.

    Raises
    ------
    InvalidProblemError
        What the C library refuses as an invalid problem, with a message of the same form:
        a non-finite scale, a negative or non-finite softcap, a negative window bound,
        ``causal`` not a bool (or 0 / 1), an unknown alignment, K/V heads that do not divide
        the query heads, shapes that disagree. Also a :class:`ValueError`.
    UnsupportedError
        A head dim (``Dk`` or ``Dv``) that is not a multiple of 8 in [8, 256], as the C
        library refuses it.

    Notes
    -----
    Scores are, in order: ``s = scale * q . k``; softcap; ALiBi; ``s += mask``; then ``-inf``
    outside the causal / window limits. A key is visible to a row when its score is not
    ``-inf`` after the limits and the mask. A row with no visible key gives 0 and LSE
    ``-inf``; a NaN score among a row's visible keys (a NaN in its query, in a key it sees,
    in the mask) makes its y and LSE NaN, as in the kernels; a NaN in a key a row does not
    see leaves the row alone. No numpy warning escapes.
    """
    # The compute type the kernels would use for q's element.
    compute = accumulator_element(element_of_dtype(np.asarray(q).dtype))
    q = _as_float64("q", q, QKV_RANK)
    k = _as_float64("k", k, QKV_RANK)
    v = _as_float64("v", v, QKV_RANK)
    batch_size, num_heads, query_len, d_k = q.shape
    num_heads_k, key_len, d_v = k.shape[1], k.shape[2], v.shape[3]

    # The checks of check_descriptor, in its order, then those of check_args.
    if scale is None:
        scale = 1.0 / math.sqrt(d_k) if d_k > 0 else 1.0
    scale = as_real(scale, "scale", _OP)
    softcap = as_real(softcap, "softcap", _OP)
    check_scale_and_softcap(scale, softcap, _OP, compute=compute)
    causal = as_bool(causal, "causal", _OP)
    left, right = window_pair(window, _OP)
    left = window_bound(left, "window_size_left", _OP)
    right = window_bound(right, "window_size_right", _OP)
    alignment = name_in(alignment, ALIGNMENTS, "alignment", _OP)
    check_head_dim(d_k, "d_k", _OP)
    check_head_dim(d_v, "d_v", _OP)
    _check_heads(q, k, v)

    offset = 0 if alignment == "top_left" else key_len - query_len
    left, right = _window_limits(left, right, causal)

    # Query head h reads K/V head h // (H // Hk).
    if num_heads > 0:
        group = num_heads // num_heads_k
        k = np.repeat(k, group, axis=1)
        v = np.repeat(v, group, axis=1)

    # Signed distance of key j from query i's diagonal: i + off - j.
    rows = np.arange(query_len)[:, np.newaxis]
    cols = np.arange(key_len)[np.newaxis, :]
    distance = (rows + offset - cols).astype(np.float64)

    target_shape = (batch_size, num_heads, query_len, key_len)
    with np.errstate(all="ignore"):
        scores = scale * np.matmul(q, np.swapaxes(k, -1, -2))
        if softcap > 0.0:
            scores = softcap * np.tanh(scores / softcap)
        if alibi_slopes is not None:
            scores = scores - _alibi_bias(alibi_slopes, batch_size, num_heads, np.abs(distance))
        if mask is not None:
            scores = scores + _broadcast_mask(mask, target_shape)

        # Causal / window: key j is visible when -right <= i + off - j <= left.
        visible = (distance <= left) & (distance >= -right)
        scores = np.where(visible, scores, -np.inf)

        # Softmax over keys. A row has a visible key when one of its scores is not -inf (a NaN
        # score is one); the maximum, and so the row, is NaN when a visible score is NaN.
        has_keys = np.any(scores != -np.inf, axis=-1, keepdims=True)
        row_max = np.max(scores, axis=-1, keepdims=True, initial=-np.inf)
        shift = np.where(has_keys, row_max, 0.0)
        weights = np.exp(scores - shift)
        row_sum = np.where(has_keys, np.sum(weights, axis=-1, keepdims=True), 1.0)
        y = np.where(has_keys, np.matmul(weights / row_sum, v), 0.0)
        lse = np.where(has_keys, shift + np.log(row_sum), -np.inf)[..., 0]
    return y, lse
