"""baracuda.reference against a direct per-element evaluation of the semantics (CPU).

The direct form below walks every (batch, head, query) row in plain Python and evaluates
each score from its definition in baracuda.h, so that it shares no code and no
vectorisation with the reference it checks.
"""

import math

import baracuda
import numpy as np
import pytest
from baracuda import InvalidProblemError, UnsupportedError, reference

pytestmark = pytest.mark.filterwarnings("error")

RTOL = 1e-12
ATOL = 1e-12


def _broadcast_index(shape, index):
    """Index into an array of `shape` (right-aligned, numpy rules) at a 4-axis `index`."""
    trailing = index[len(index) - len(shape) :]
    return tuple(
        0 if extent == 1 else position for extent, position in zip(shape, trailing, strict=True)
    )


def direct_attention(
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
    """Attention evaluated one score at a time from the definition."""
    q, k, v = (np.asarray(t).astype(np.float64) for t in (q, k, v))
    batch_size, num_heads, query_len, d_k = q.shape
    num_heads_k, key_len, d_v = k.shape[1], k.shape[2], v.shape[3]
    scale = 1.0 / math.sqrt(d_k) if scale is None else scale
    offset = 0 if alignment == "top_left" else key_len - query_len
    left, right = window
    if causal:
        right = 0 if right is None else min(right, 0)
    slopes = None if alibi_slopes is None else np.asarray(alibi_slopes).astype(np.float64)
    mask = None if mask is None else np.asarray(mask).astype(np.float64)

    y = np.zeros((batch_size, num_heads, query_len, d_v))
    lse = np.full((batch_size, num_heads, query_len), -math.inf)
    for b in range(batch_size):
        for h in range(num_heads):
            kv_head = h // (num_heads // num_heads_k)
            for i in range(query_len):
                keys, scores = [], []
                for j in range(key_len):
                    if left is not None and j < i + offset - left:
                        continue
                    if right is not None and j > i + offset + right:
                        continue
                    s = scale * math.fsum(q[b, h, i, d] * k[b, kv_head, j, d] for d in range(d_k))
                    if softcap > 0.0:
                        s = softcap * math.tanh(s / softcap)
                    if slopes is not None:
                        slope = (
                            slopes[h]
                            if slopes.ndim == 1
                            else slopes[_broadcast_index(slopes.shape, (b, h))]
                        )
                        s -= slope * abs(i - j + offset)
                    if mask is not None:
                        s += mask[_broadcast_index(mask.shape, (b, h, i, j))]
                    keys.append(j)
                    scores.append(s)
                finite = [s for s in scores if s != -math.inf]
                if not finite:
                    continue
                row_max = max(finite)
                weights = [math.exp(s - row_max) for s in scores]
                total = math.fsum(weights)
                lse[b, h, i] = row_max + math.log(total)
                for d in range(d_v):
                    y[b, h, i, d] = math.fsum(
                        w / total * v[b, kv_head, j, d] for w, j in zip(weights, keys, strict=True)
                    )
    return y, lse


def random_problem(
    rng, batch_size=2, num_heads=3, num_heads_k=None, query_len=5, key_len=7, d_k=8, d_v=None
):
    num_heads_k = num_heads if num_heads_k is None else num_heads_k
    d_v = d_k if d_v is None else d_v
    q = rng.standard_normal((batch_size, num_heads, query_len, d_k))
    k = rng.standard_normal((batch_size, num_heads_k, key_len, d_k))
    v = rng.standard_normal((batch_size, num_heads_k, key_len, d_v))
    return q, k, v


def assert_matches_direct(q, k, v, **options):
    y, lse = reference.attention(q, k, v, **options)
    y_direct, lse_direct = direct_attention(q, k, v, **options)
    assert y.dtype == np.float64 and lse.dtype == np.float64
    assert y.shape == y_direct.shape and lse.shape == lse_direct.shape
    assert not np.isnan(y).any() and not np.isnan(lse).any()
    np.testing.assert_allclose(y, y_direct, rtol=RTOL, atol=ATOL)
    # assert_allclose also requires -inf at exactly the same places.
    np.testing.assert_allclose(lse, lse_direct, rtol=RTOL, atol=ATOL)
    return y, lse


def test_plain(rng):
    assert_matches_direct(*random_problem(rng))


def test_default_scale_is_inverse_sqrt_dk(rng):
    q, k, v = random_problem(rng, d_k=24)
    y_default, lse_default = assert_matches_direct(q, k, v)
    y_explicit, lse_explicit = reference.attention(q, k, v, scale=1.0 / math.sqrt(24))
    np.testing.assert_array_equal(y_default, y_explicit)
    np.testing.assert_array_equal(lse_default, lse_explicit)


def test_explicit_scale(rng):
    assert_matches_direct(*random_problem(rng), scale=0.37)


@pytest.mark.parametrize("alignment", ["top_left", "bottom_right"])
@pytest.mark.parametrize(
    "query_len,key_len",
    [(5, 9), (9, 4), (6, 6), (1, 9), (9, 1)],
    ids=["sq<sk", "sq>sk", "sq=sk", "sq1", "sk1"],
)
def test_causal(rng, alignment, query_len, key_len):
    assert_matches_direct(
        *random_problem(rng, query_len=query_len, key_len=key_len), causal=True, alignment=alignment
    )


def test_causal_alignment_visible_keys():
    """Which keys each row sees, spelled out for one small case of each alignment."""
    query_len, key_len, head_dim = 3, 5, 8
    q = np.zeros((1, 1, query_len, head_dim))
    k = np.zeros((1, 1, key_len, head_dim))
    v = np.repeat(np.arange(key_len, dtype=np.float64).reshape(1, 1, key_len, 1), head_dim, -1)
    # Uniform scores: y is the mean of the visible keys' positions.
    y_top, lse_top = reference.attention(q, k, v, causal=True, alignment="top_left")
    y_bottom, lse_bottom = reference.attention(q, k, v, causal=True, alignment="bottom_right")
    np.testing.assert_allclose(y_top[0, 0, :, 0], [0.0, 0.5, 1.0], rtol=RTOL)
    np.testing.assert_allclose(lse_top[0, 0], np.log([1.0, 2.0, 3.0]), rtol=RTOL)
    np.testing.assert_allclose(y_bottom[0, 0, :, 0], [1.0, 1.5, 2.0], rtol=RTOL)
    np.testing.assert_allclose(lse_bottom[0, 0], np.log([3.0, 4.0, 5.0]), rtol=RTOL)


@pytest.mark.parametrize("causal", [False, True], ids=["noncausal", "causal"])
@pytest.mark.parametrize("alignment", ["top_left", "bottom_right"])
@pytest.mark.parametrize(
    "window",
    [(2, None), (None, 1), (2, 1), (0, 0), (3, 3)],
    ids=["left2", "right1", "left2-right1", "left0-right0", "left3-right3"],
)
def test_window(rng, window, alignment, causal):
    assert_matches_direct(
        *random_problem(rng, query_len=7, key_len=9),
        window=window,
        alignment=alignment,
        causal=causal,
    )


@pytest.mark.parametrize("softcap", [0.5, 3.0, 50.0])
def test_softcap(rng, softcap):
    assert_matches_direct(*random_problem(rng), softcap=softcap, scale=1.0)


@pytest.mark.parametrize("alignment", ["top_left", "bottom_right"])
@pytest.mark.parametrize("slopes_shape", ["h", "1h", "bh"])
def test_alibi(rng, slopes_shape, alignment):
    batch_size, num_heads = 2, 3
    shape = {"h": (num_heads,), "1h": (1, num_heads), "bh": (batch_size, num_heads)}[slopes_shape]
    slopes = rng.uniform(0.05, 1.0, size=shape).astype(np.float32)
    assert_matches_direct(
        *random_problem(rng, batch_size, num_heads, query_len=6, key_len=9),
        alibi_slopes=slopes,
        alignment=alignment,
    )


MASK_SHAPES = {
    "full": lambda b, h, sq, sk: (b, h, sq, sk),
    "11qk": lambda b, h, sq, sk: (1, 1, sq, sk),
    "b11k": lambda b, h, sq, sk: (b, 1, 1, sk),
    "1h11": lambda b, h, sq, sk: (1, h, 1, 1),
    "rank2-qk": lambda b, h, sq, sk: (sq, sk),
    "rank2-1k": lambda b, h, sq, sk: (1, sk),
    "rank3-h1k": lambda b, h, sq, sk: (h, 1, sk),
}


@pytest.mark.parametrize("mask_shape", list(MASK_SHAPES))
def test_mask(rng, mask_shape):
    batch_size, num_heads, query_len, key_len = 2, 3, 5, 8
    shape = MASK_SHAPES[mask_shape](batch_size, num_heads, query_len, key_len)
    mask = rng.standard_normal(shape).astype(np.float32)
    mask[rng.random(shape) < 0.2] = -np.inf
    assert_matches_direct(
        *random_problem(rng, batch_size, num_heads, query_len=query_len, key_len=key_len), mask=mask
    )


def test_mask_zero_stride_view(rng):
    batch_size, num_heads, query_len, key_len = 2, 3, 5, 8
    row = rng.standard_normal((1, 1, query_len, key_len)).astype(np.float32)
    mask = np.broadcast_to(row, (batch_size, num_heads, query_len, key_len))
    assert_matches_direct(
        *random_problem(rng, batch_size, num_heads, query_len=query_len, key_len=key_len), mask=mask
    )


@pytest.mark.parametrize(
    "num_heads,num_heads_k", [(4, 2), (4, 1), (3, 1)], ids=["gqa-4-2", "mqa-4-1", "mqa-3-1"]
)
def test_grouped_heads(rng, num_heads, num_heads_k):
    q, k, v = random_problem(rng, num_heads=num_heads, num_heads_k=num_heads_k)
    y, _ = assert_matches_direct(q, k, v)
    # Query head h reads K/V head h // (H // Hk): the same as repeating K/V heads.
    group = num_heads // num_heads_k
    y_repeated, _ = reference.attention(q, np.repeat(k, group, axis=1), np.repeat(v, group, axis=1))
    np.testing.assert_allclose(y, y_repeated, rtol=RTOL, atol=ATOL)


def test_stride_zero_head_broadcast(rng):
    num_heads = 4
    q, k, v = random_problem(rng, num_heads=num_heads, num_heads_k=1)
    k_view = np.broadcast_to(k, (k.shape[0], num_heads) + k.shape[2:])
    v_view = np.broadcast_to(v, (v.shape[0], num_heads) + v.shape[2:])
    y_view, lse_view = assert_matches_direct(q, k_view, v_view)
    y_mqa, lse_mqa = reference.attention(q, k, v)
    np.testing.assert_allclose(y_view, y_mqa, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(lse_view, lse_mqa, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("d_k,d_v", [(8, 16), (24, 8), (16, 40)])
def test_value_dim_differs(rng, d_k, d_v):
    y, _ = assert_matches_direct(*random_problem(rng, d_k=d_k, d_v=d_v))
    assert y.shape[-1] == d_v


def _assert_empty_rows(y, lse, empty):
    """Rows flagged in `empty` ([B, H, Sq]) are exactly 0 with lse -inf; the others finite."""
    assert not np.isnan(y).any() and not np.isnan(lse).any()
    assert np.all(y[empty] == 0.0)
    assert np.all(lse[empty] == -np.inf)
    assert np.all(np.isfinite(lse[~empty]))


def test_empty_rows_causal_bottom_right(rng):
    query_len, key_len = 9, 4
    q, k, v = random_problem(rng, query_len=query_len, key_len=key_len)
    y, lse = assert_matches_direct(q, k, v, causal=True, alignment="bottom_right")
    # off = Sk - Sq = -5: query i sees keys j <= i - 5, so rows 0..4 see none.
    empty = np.zeros(lse.shape, dtype=bool)
    empty[:, :, : query_len - key_len] = True
    _assert_empty_rows(y, lse, empty)


def test_empty_rows_masked_out(rng):
    batch_size, num_heads, query_len, key_len = 2, 3, 5, 7
    q, k, v = random_problem(rng, batch_size, num_heads, query_len=query_len, key_len=key_len)
    mask = rng.standard_normal((batch_size, 1, query_len, key_len)).astype(np.float32)
    mask[1, 0, 2, :] = -np.inf
    y, lse = assert_matches_direct(q, k, v, mask=mask)
    empty = np.zeros(lse.shape, dtype=bool)
    empty[1, :, 2] = True
    _assert_empty_rows(y, lse, empty)


def test_empty_rows_window_past_the_keys(rng):
    query_len, key_len = 8, 3
    q, k, v = random_problem(rng, query_len=query_len, key_len=key_len)
    y, lse = assert_matches_direct(q, k, v, window=(0, 0))
    empty = np.zeros(lse.shape, dtype=bool)
    empty[:, :, key_len:] = True
    _assert_empty_rows(y, lse, empty)


def test_no_keys_at_all(rng):
    q, k, v = random_problem(rng, key_len=0)
    y, lse = reference.attention(q, k, v)
    _assert_empty_rows(y, lse, np.ones(lse.shape, dtype=bool))


@pytest.mark.parametrize("alignment", ["top_left", "bottom_right"])
@pytest.mark.parametrize("query_len,key_len", [(6, 9), (9, 6)], ids=["sq<sk", "sq>sk"])
def test_every_feature_together(rng, query_len, key_len, alignment):
    batch_size, num_heads, num_heads_k = 2, 4, 2
    q, k, v = random_problem(
        rng, batch_size, num_heads, num_heads_k, query_len, key_len, d_k=16, d_v=8
    )
    slopes = rng.uniform(0.05, 0.5, size=(batch_size, num_heads)).astype(np.float32)
    mask = rng.standard_normal((batch_size, 1, 1, key_len)).astype(np.float32)
    mask[0, 0, 0, 1] = -np.inf
    assert_matches_direct(
        q,
        k,
        v,
        causal=True,
        scale=0.8,
        window=(3, 2),
        softcap=2.5,
        alibi_slopes=slopes,
        mask=mask,
        alignment=alignment,
    )


@pytest.mark.parametrize("dtype", ["float16", "float32", "bfloat16"])
def test_low_precision_inputs_are_upcast(rng, dtype):
    if dtype == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        dtype = ml_dtypes.bfloat16
    q, k, v = (t.astype(dtype) for t in random_problem(rng))
    y, lse = assert_matches_direct(q, k, v, causal=True)
    y_upcast, lse_upcast = reference.attention(
        *(t.astype(np.float64) for t in (q, k, v)), causal=True
    )
    np.testing.assert_array_equal(y, y_upcast)
    np.testing.assert_array_equal(lse, lse_upcast)


def test_lse_is_natural_log_of_the_row_sum(rng):
    q, k, v = random_problem(rng)
    _, lse = reference.attention(q, k, v, scale=1.0)
    scores = np.einsum("bhid,bhjd->bhij", q, k)
    np.testing.assert_allclose(lse, np.log(np.exp(scores).sum(axis=-1)), rtol=RTOL)


@pytest.mark.parametrize(
    "options,match",
    [
        ({"alignment": "middle"}, "unknown alignment"),
        ({"window": (-1, None)}, "window_size_left must be >= 0 or None"),
        ({"window": (None, -2)}, "window_size_right must be >= 0 or None"),
        ({"mask": np.zeros((4, 5, 7))}, "mask shape mismatch"),
        ({"alibi_slopes": np.zeros(2)}, "alibi_slopes shape mismatch"),
    ],
    ids=["alignment", "window-left", "window-right", "mask-shape", "alibi-shape"],
)
def test_rejects_invalid_options(rng, options, match):
    with pytest.raises(ValueError, match=match):
        reference.attention(*random_problem(rng), **options)


def test_rejects_heads_that_do_not_divide(rng):
    with pytest.raises(ValueError, match=r"k shape\[1\] \(num_heads_k\) must divide num_heads"):
        reference.attention(*random_problem(rng, num_heads=3, num_heads_k=2))


# ---------------------------------------------------------------- NaN propagates as in the kernels


def test_nan_key_makes_the_rows_that_see_it_nan(rng):
    """A NaN in one key: rows that see it are NaN (y and LSE), rows that do not see it are
    unchanged, rows with no visible key stay 0 / -inf. Visibility comes from the limits."""
    query_len, key_len = 9, 4
    q, k, v = random_problem(rng, query_len=query_len, key_len=key_len)
    clean_y, clean_lse = reference.attention(q, k, v, causal=True, alignment="bottom_right")
    nan_key = 2
    k[1, 0, nan_key, 3] = np.nan
    y, lse = reference.attention(q, k, v, causal=True, alignment="bottom_right")
    # off = Sk - Sq = -5: query i sees keys j <= i - 5, so rows 0..4 see none and key 2 is
    # seen by rows 7 and 8.
    sees_nan = np.zeros(lse.shape, dtype=bool)
    sees_nan[1, 0, nan_key + query_len - key_len :] = True
    empty = np.zeros(lse.shape, dtype=bool)
    empty[:, :, : query_len - key_len] = True
    np.testing.assert_array_equal(np.isnan(lse), sees_nan)
    np.testing.assert_array_equal(np.isnan(y).all(axis=-1), sees_nan)
    np.testing.assert_array_equal(np.isnan(y).any(axis=-1), sees_nan)
    assert np.all(y[empty] == 0.0) and np.all(lse[empty] == -np.inf)
    keep = ~sees_nan
    np.testing.assert_array_equal(y[keep], clean_y[keep])
    np.testing.assert_array_equal(lse[keep], clean_lse[keep])


def test_nan_query_makes_its_row_nan(rng):
    q, k, v = random_problem(rng)
    q[0, 1, 3, 0] = np.nan
    y, lse = reference.attention(q, k, v)
    nan_rows = np.zeros(lse.shape, dtype=bool)
    nan_rows[0, 1, 3] = True
    np.testing.assert_array_equal(np.isnan(lse), nan_rows)
    np.testing.assert_array_equal(np.isnan(y).all(axis=-1), nan_rows)


def test_nan_mask_entry_counts_only_where_the_key_is_visible(rng):
    """A NaN mask entry on a visible key makes the row NaN; on a key outside the window it is
    hidden like any other score there."""
    q, k, v = random_problem(rng, query_len=6, key_len=6)
    mask = np.zeros((6, 6))
    mask[2, 1] = np.nan  # visible under causal (j <= i)
    mask[3, 5] = np.nan  # hidden under causal
    y, lse = reference.attention(q, k, v, causal=True, mask=mask)
    clean_y, clean_lse = reference.attention(q, k, v, causal=True)
    nan_rows = np.zeros(lse.shape, dtype=bool)
    nan_rows[:, :, 2] = True
    np.testing.assert_array_equal(np.isnan(lse), nan_rows)
    np.testing.assert_array_equal(np.isnan(y).all(axis=-1), nan_rows)
    np.testing.assert_array_equal(y[~nan_rows], clean_y[~nan_rows])
    np.testing.assert_array_equal(lse[~nan_rows], clean_lse[~nan_rows])


def test_row_masked_out_beside_a_nan_row_stays_empty(rng):
    q, k, v = random_problem(rng, batch_size=1, num_heads=1, query_len=3, key_len=5)
    mask = np.zeros((3, 5))
    mask[0, :] = -np.inf
    mask[1, 2] = np.nan
    y, lse = reference.attention(q, k, v, mask=mask)
    assert lse[0, 0, 0] == -np.inf and np.all(y[0, 0, 0] == 0.0)
    assert np.isnan(lse[0, 0, 1]) and np.isnan(y[0, 0, 1]).all()
    assert np.isfinite(lse[0, 0, 2]) and np.isfinite(y[0, 0, 2]).all()


# ---------------------------------------------------------------- refusals, as C refuses

OP = "reference.attention"


@pytest.mark.parametrize(
    "options,error_type,message",
    [
        (
            {"scale": math.nan},
            InvalidProblemError,
            "scale must be finite (got nan, expected a finite number)",
        ),
        (
            {"scale": -math.inf},
            InvalidProblemError,
            "scale must be finite (got -inf, expected a finite number)",
        ),
        (
            {"scale": "0.5"},
            InvalidProblemError,
            "scale is not a real number (got str '0.5', expected a float or an int)",
        ),
        (
            {"softcap": -0.5},
            InvalidProblemError,
            "softcap must be finite and non-negative (got "
            "-0.5, expected 0 to disable or a finite value > 0)",
        ),
        (
            {"softcap": math.inf},
            InvalidProblemError,
            "softcap must be finite and non-negative (got "
            "inf, expected 0 to disable or a finite value > 0)",
        ),
        (
            {"causal": "False"},
            InvalidProblemError,
            "causal is not a bool (got str 'False', expected True, False, 0 or 1)",
        ),
        (
            {"causal": 2},
            InvalidProblemError,
            "causal is not a bool (got int 2, expected True, False, 0 or 1)",
        ),
        (
            {"window": (-1, None)},
            InvalidProblemError,
            "window_size_left must be >= 0 or None (got -1, expected >= 0, or None for unbounded)",
        ),
        (
            {"window": (None, 1.5)},
            InvalidProblemError,
            "window_size_right is not an integer (got float 1.5, expected an int)",
        ),
        (
            {"window": 3},
            InvalidProblemError,
            "window is not a pair (got 3, expected (left, right) of int or None)",
        ),
        (
            {"alignment": "middle"},
            InvalidProblemError,
            "unknown alignment (got 'middle', expected 'top_left' or 'bottom_right')",
        ),
    ],
    ids=[
        "scale-nan",
        "scale-inf",
        "scale-str",
        "softcap-negative",
        "softcap-inf",
        "causal-str",
        "causal-2",
        "window-negative",
        "window-float",
        "window-not-a-pair",
        "alignment",
    ],
)
def test_refuses_options_as_c_does(rng, options, error_type, message):
    with pytest.raises(error_type) as caught:
        reference.attention(*random_problem(rng), **options)
    assert type(caught.value) is error_type
    assert caught.value.message == f"{OP}: {message}"


@pytest.mark.parametrize(
    "shapes,error_type,message",
    [
        (
            dict(d_k=12),
            UnsupportedError,
            "d_k is not a supported head dim (got 12, expected a multiple of 8 in [8, 256])",
        ),
        (
            dict(d_k=264),
            UnsupportedError,
            "d_k is not a supported head dim (got 264, expected a multiple of 8 in [8, 256])",
        ),
        (
            dict(d_v=4),
            UnsupportedError,
            "d_v is not a supported head dim (got 4, expected a multiple of 8 in [8, 256])",
        ),
        (
            dict(num_heads=3, num_heads_k=2),
            InvalidProblemError,
            "k shape[1] (num_heads_k) must divide num_heads (got 2, expected a divisor of 3)",
        ),
        (
            dict(num_heads=3, num_heads_k=0),
            InvalidProblemError,
            "k shape[1] (num_heads_k) must divide num_heads (got 0, expected a divisor of 3)",
        ),
        (
            dict(num_heads=0, num_heads_k=2),
            InvalidProblemError,
            "k shape[1] (num_heads_k) must be 0 when num_heads is 0 (got 2, expected 0)",
        ),
    ],
    ids=["dk-12", "dk-264", "dv-4", "heads-3-2", "heads-3-0", "heads-0-2"],
)
def test_refuses_shapes_as_c_does(rng, shapes, error_type, message):
    with pytest.raises(error_type) as caught:
        reference.attention(*random_problem(rng, **shapes))
    assert type(caught.value) is error_type
    assert caught.value.message == f"{OP}: {message}"


def test_refuses_shape_mismatches(rng):
    q, k, v = random_problem(rng)
    with pytest.raises(InvalidProblemError) as caught:
        reference.attention(q, k[:1], v)
    assert caught.value.message == (
        f"{OP}: k shape mismatch (got [1, 3, 7, 8], expected [2, 3, 7, 8])"
    )
    with pytest.raises(InvalidProblemError) as caught:
        reference.attention(q, k, v[:, :, :5])
    assert caught.value.message == (
        f"{OP}: v shape mismatch (got [2, 3, 5, 8], expected [2, 3, 7, 8])"
    )
    with pytest.raises(InvalidProblemError) as caught:
        reference.attention(q[0], k, v)
    assert caught.value.message == f"{OP}: q rank mismatch (got 3, expected 4)"
    with pytest.raises(InvalidProblemError, match=f"{OP}: q is not an array of numbers"):
        reference.attention([["a"]], k, v)


def test_no_heads_at_all(rng):
    y, lse = reference.attention(*random_problem(rng, num_heads=0, num_heads_k=0))
    assert y.shape == (2, 0, 5, 8) and lse.shape == (2, 0, 5)


def _c_reason(**fields):
    """The C library's reason for refusing a flash descriptor, without its op."""
    extents = dict(batch_size=2, num_heads=3, query_len=5, key_len=7, d_k=8)
    extents.update({name: fields.pop(name) for name in list(fields) if name in extents})
    desc = baracuda.FlashSdpaDescriptor(**extents, **fields)
    with pytest.raises(baracuda.BaracudaError) as caught:
        baracuda.FlashSdpaPlan.select(desc)
    return type(caught.value), caught.value.message.split(": ", 1)[1]


@pytest.mark.parametrize(
    "options,fields",
    [
        ({"scale": math.inf}, {"scale": math.inf}),
        ({"softcap": -2.0}, {"softcap": -2.0}),
        ({"softcap": math.nan}, {"softcap": math.nan}),
    ],
    ids=["scale", "softcap-negative", "softcap-nan"],
)
def test_option_messages_are_the_c_messages(rng, options, fields):
    with pytest.raises(baracuda.BaracudaError) as caught:
        reference.attention(*random_problem(rng), **options)
    assert (type(caught.value), caught.value.message.split(": ", 1)[1]) == _c_reason(**fields)


@pytest.mark.parametrize("d_k,d_v", [(12, 8), (8, 20), (0, 8)])
def test_head_dim_messages_are_the_c_messages(rng, d_k, d_v):
    with pytest.raises(baracuda.BaracudaError) as caught:
        reference.attention(*random_problem(rng, d_k=d_k, d_v=d_v), scale=0.5)
    assert (type(caught.value), caught.value.message.split(": ", 1)[1]) == _c_reason(
        d_k=d_k, d_v=d_v, scale=0.5
    )


@pytest.mark.parametrize(
    "element,options",
    [
        ("f32", {"scale": 1e300}),
        ("f32", {"softcap": 1e-300}),
        ("f32", {"softcap": 1e39}),
        ("f32", {"scale": 1e20, "softcap": 1e-20}),
        ("f64", {"softcap": 1e-310}),
    ],
    ids=["f32-scale-huge", "f32-softcap-tiny", "f32-softcap-huge", "f32-quotient", "f64-subnormal"],
)
def test_compute_range_messages_are_the_c_messages(rng, element, options):
    """Options beyond the compute type's range (f32 for f32 inputs, f64 for f64 ones) are
    refused with C's reason."""
    dtype = np.float64 if element == "f64" else np.float32
    q, k, v = (array.astype(dtype) for array in random_problem(rng))
    with pytest.raises(baracuda.BaracudaError) as caught:
        reference.attention(q, k, v, **options)
    assert (type(caught.value), caught.value.message.split(": ", 1)[1]) == _c_reason(
        element=element, **options
    )


def test_compute_range_follows_the_inputs(rng):
    """A softcap that f64 holds as a normal number is accepted for f64 inputs."""
    q, k, v = random_problem(rng)
    y, lse = reference.attention(q, k, v, softcap=1e-300)
    assert np.isfinite(lse).all()
