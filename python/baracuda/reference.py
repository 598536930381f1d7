"""A plain numpy float64 implementation of baracuda's attention semantics: the test oracle.

Nothing here is tiled or fused. The full ``[B, H, Sq, Sk]`` score matrix is built, each
score modifier is applied in the order that ``baracuda.h`` states, and the softmax is taken
in one pass. The code follows the semantics so that a reader can check it line by line.
"""

import math

import numpy as np

__all__ = ["attention"]

_ALIGNMENTS = ("top_left", "bottom_right")


def _as_float64(name, array, rank):
    values = np.asarray(array).astype(np.float64)
    if values.ndim != rank:
        raise ValueError(
            f"reference.attention: {name} rank mismatch (got {values.ndim}, expected {rank})"
        )
    return values


def _alignment_offset(alignment, query_len, key_len):
    if alignment not in _ALIGNMENTS:
        raise ValueError(
            f"reference.attention: unknown alignment (got {alignment!r}, "
            f"expected one of {_ALIGNMENTS})"
        )
    return 0 if alignment == "top_left" else key_len - query_len


def _window_bounds(window, causal):
    left, right = window
    for side, bound in (("left", left), ("right", right)):
        if bound is not None and bound < 0:
            raise ValueError(
                f"reference.attention: window {side} must be None or >= 0 (got {bound})"
            )
    left = math.inf if left is None else left
    right = math.inf if right is None else right
    if causal:
        right = min(right, 0)
    return left, right


def _alibi_bias(alibi_slopes, batch_size, num_heads, distance):
    slopes = np.asarray(alibi_slopes).astype(np.float64)
    if slopes.ndim == 1:
        slopes = slopes[np.newaxis, :]
    if slopes.ndim != 2 or slopes.shape[1] != num_heads or slopes.shape[0] not in (1, batch_size):
        raise ValueError(
            f"reference.attention: alibi_slopes shape mismatch (got {list(slopes.shape)}, "
            f"expected [{num_heads}], [1, {num_heads}] or [{batch_size}, {num_heads}])"
        )
    return slopes[:, :, np.newaxis, np.newaxis] * distance


def _broadcast_mask(mask, target_shape):
    values = np.asarray(mask).astype(np.float64)
    try:
        return np.broadcast_to(values, target_shape)
    except ValueError:
        raise ValueError(
            f"reference.attention: mask shape mismatch (got {list(values.shape)}, "
            f"expected broadcastable to {list(target_shape)})"
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
        ``[B, H, Sq, Dv]`` float64; rows with no visible key are 0.
    lse : numpy.ndarray
        ``[B, H, Sq]`` float64 natural-log log-sum-exp of each row's scores; ``-inf`` for
        rows with no visible key.

    Raises
    ------
    ValueError
        When shapes disagree, a window bound is negative or the alignment is unknown.

    Notes
    -----
    Scores are, in order: ``s = scale * q . k``; softcap; ALiBi; ``s += mask``; then ``-inf``
    outside the causal / window limits. No numpy warning escapes, and no NaN is produced
    for rows whose scores are all ``-inf``.
    """
    q = _as_float64("q", q, 4)
    k = _as_float64("k", k, 4)
    v = _as_float64("v", v, 4)
    batch_size, num_heads, query_len, d_k = q.shape
    num_heads_k, key_len = k.shape[1], k.shape[2]
    if k.shape[0] != batch_size or k.shape[3] != d_k or num_heads_k == 0:
        raise ValueError(
            f"reference.attention: k shape mismatch (got {list(k.shape)}, "
            f"expected [{batch_size}, Hk, Sk, {d_k}])"
        )
    if num_heads % num_heads_k != 0:
        raise ValueError(
            f"reference.attention: key heads must divide query heads "
            f"(got Hk={num_heads_k}, H={num_heads})"
        )
    if v.shape[:3] != k.shape[:3]:
        raise ValueError(
            f"reference.attention: v shape mismatch (got {list(v.shape)}, "
            f"expected [{batch_size}, {num_heads_k}, {key_len}, Dv])"
        )
    if scale is None:
        scale = 1.0 / math.sqrt(d_k) if d_k > 0 else 1.0
    offset = _alignment_offset(alignment, query_len, key_len)
    left, right = _window_bounds(window, causal)

    # Query head h reads K/V head h // (H // Hk).
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

        # Softmax over keys; a row whose scores are all -inf has no visible key.
        row_max = np.max(scores, axis=-1, keepdims=True, initial=-np.inf)
        has_keys = row_max > -np.inf
        shift = np.where(has_keys, row_max, 0.0)
        weights = np.exp(scores - shift)
        row_sum = np.where(has_keys, np.sum(weights, axis=-1, keepdims=True), 1.0)
        y = np.where(has_keys, np.matmul(weights / row_sum, v), 0.0)
        lse = np.where(has_keys, shift + np.log(row_sum), -np.inf)[..., 0]
    return y, lse
