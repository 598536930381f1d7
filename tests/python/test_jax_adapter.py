"""baracuda.jax: flash attention as the XLA FFI call ``baracuda_flash_attention`` (skipped
without jax).

On the CPU (jax's CPU build is enough): shape inference under ``jax.eval_shape``, the refusals
while tracing with the C library's messages (``baracuda_flash_sdpa_check_args``), and the call
lowered for CUDA (``jax.jit(...).trace(...).lower(lowering_platforms=("cuda",))``), with the
operands and attributes the handler reads.

Marked ``gpu``: eager and jitted calls against ``baracuda.reference`` (every dtype, GQA, the
score modifiers, a mask and ALiBi), repeated jitted calls, ``jax.vmap`` and the README's
snippet. They need jax with
a CUDA backend and a build with the handler (``baracuda.jax.handler_available()``).
"""

import re
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import baracuda.jax as bj  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from baracuda import InvalidProblemError, reference  # noqa: E402

CHECK_ARGS = "flash_sdpa_check_args"
README = Path(__file__).resolve().parents[2] / "README.md"


def spec(shape, dtype=jnp.bfloat16):
    return jax.ShapeDtypeStruct(shape, dtype)


def qkv_specs(*, heads_k=2, d_v=32, dtype=jnp.bfloat16):
    return (
        spec((2, 4, 100, 64), dtype),
        spec((2, heads_k, 120, 64), dtype),
        spec((2, heads_k, 120, d_v), dtype),
    )


# ---------------------------------------------------------------- shape inference, refusals


@pytest.mark.parametrize(
    ("dtype", "lse_dtype"),
    [(jnp.bfloat16, jnp.float32), (jnp.float16, jnp.float32), (jnp.float32, jnp.float32)],
)
def test_eval_shape(dtype, lse_dtype):
    q, k, v = qkv_specs(dtype=dtype)
    y, lse = jax.eval_shape(
        lambda q, k, v: bj.flash_attention(q, k, v, causal=True, return_lse=True), q, k, v
    )
    assert (y.shape, y.dtype) == ((2, 4, 100, 32), np.dtype(dtype))
    assert (lse.shape, lse.dtype) == ((2, 4, 100), np.dtype(lse_dtype))
    alone = jax.eval_shape(lambda q, k, v: bj.flash_attention(q, k, v), q, k, v)
    assert alone.shape == (2, 4, 100, 32)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"v": spec((2, 2, 121, 32))}, f"{CHECK_ARGS}: v shape mismatch"),
        ({"q": spec((2, 4, 100, 64), jnp.int32)}, "flash_attention: q element is not supported"),
        ({"k": spec((2, 2, 120, 64), jnp.float16)}, "flash_attention: k element is not supported"),
        ({"q": spec((4, 100, 64))}, "flash_attention: q rank mismatch (got 3, expected 4)"),
        ({"mask": spec((100, 120), jnp.bfloat16)}, "flash_attention: mask element is not"),
        ({"mask": spec((100, 7), jnp.float32)}, f"{CHECK_ARGS}: mask"),
        ({"alibi_slopes": spec((5,), jnp.float32)}, f"{CHECK_ARGS}: alibi_slopes"),
        ({"heads_k": 3}, f"{CHECK_ARGS}:"),
    ],
)
def test_refused_while_tracing(edit, message):
    edit = dict(edit)
    q, k, v = qkv_specs(heads_k=edit.pop("heads_k", 2))
    tensors = {"q": q, "k": k, "v": v} | edit
    optional = {name: tensors.pop(name) for name in ("mask", "alibi_slopes") if name in tensors}

    def call(q, k, v, *extra):
        return bj.flash_attention(q, k, v, **dict(zip(optional, extra, strict=True)))

    with pytest.raises(InvalidProblemError, match=re.escape(message)):
        jax.eval_shape(call, tensors["q"], tensors["k"], tensors["v"], *optional.values())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"alignment": "middle"}, "alignment"),
        ({"window": 3}, "window is not a pair"),
        ({"causal": "yes"}, "causal"),
        ({"window": (-1, None)}, "window_size_left"),
    ],
)
def test_refused_options(options, message):
    q, k, v = qkv_specs()
    with pytest.raises(InvalidProblemError, match=message):
        jax.eval_shape(lambda q, k, v: bj.flash_attention(q, k, v, **options), q, k, v)


def test_lowered_for_cuda_with_every_input():
    """The custom call the handler decodes: operands q, k, v, the rank-4 mask and the rank-2
    slopes, two results, and every attribute of the binding."""
    q, k, v = qkv_specs()
    lowered = (
        jax.jit(
            lambda q, k, v, mask, slopes: bj.flash_attention(
                q,
                k,
                v,
                mask=mask,
                alibi_slopes=slopes,
                window=(10, None),
                softcap=30.0,
                alignment="bottom_right",
            )
        )
        .trace(q, k, v, spec((100, 120), jnp.float32), spec((4,), jnp.float32))
        .lower(lowering_platforms=("cuda",))
    )
    text = lowered.as_text()
    calls = [line for line in text.splitlines() if f"custom_call @{bj.TARGET_NAME}" in line]
    assert len(calls) == 1
    call = calls[0]
    for attribute in (
        "alignment = 1 : i64",
        "causal = false",
        "has_alibi = true",
        "has_mask = true",
        "scale = 1.250000e-01 : f64",
        "softcap = 3.000000e+01 : f64",
        "window_left = 10 : i64",
        "window_right = -1 : i64",
    ):
        assert attribute in call, (attribute, call)
    assert "tensor<1x1x100x120xf32>" in call
    assert "tensor<1x4xf32>" in call


# ---------------------------------------------------------------- on the GPU


def _cuda_ready():
    try:
        return jax.default_backend() == "gpu" and bj.handler_available()
    except RuntimeError:
        return False


needs_cuda = pytest.mark.skipif(
    not _cuda_ready(), reason="needs jax with a CUDA backend and a build with the XLA FFI handler"
)

TOLERANCES = {jnp.float32: 1e-5, jnp.float16: 3e-2, jnp.bfloat16: 3e-2}


def random_inputs(dtype, *, batch=2, heads=4, heads_k=2, query_len=130, key_len=200, d=64, seed=0):
    rng = np.random.default_rng(seed)
    shapes = (
        (batch, heads, query_len, d),
        (batch, heads_k, key_len, d),
        (batch, heads_k, key_len, d),
    )
    return [
        jnp.asarray(rng.standard_normal(shape, dtype=np.float32), dtype=dtype) for shape in shapes
    ]


def assert_y_matches(y, expected_y, tolerance):
    got_y = np.asarray(y, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(expected_y))))
    assert np.max(np.abs(got_y - expected_y)) <= tolerance * scale


def assert_matches(y, lse, expected, tolerance):
    expected_y, expected_lse = expected
    assert_y_matches(y, expected_y, tolerance)
    finite = np.isfinite(expected_lse)
    got_lse = np.asarray(lse, dtype=np.float64)
    assert np.array_equal(np.isfinite(got_lse), finite)
    assert np.max(np.abs(got_lse[finite] - expected_lse[finite]), initial=0.0) <= 1e-4


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
@pytest.mark.parametrize("jit", [False, True])
def test_matches_reference(dtype, jit):
    q, k, v = random_inputs(dtype)
    options = {"causal": True, "alignment": "bottom_right", "window": (70, None)}
    call = lambda q, k, v: bj.flash_attention(q, k, v, return_lse=True, **options)  # noqa: E731
    y, lse = (jax.jit(call) if jit else call)(q, k, v)
    expected = reference.attention(np.asarray(q), np.asarray(k), np.asarray(v), **options)
    assert y.dtype == dtype and lse.dtype == jnp.float32
    assert_matches(y, lse, expected, TOLERANCES[dtype])


@pytest.mark.gpu
@needs_cuda
def test_every_modifier_jitted_twice():
    """A mask of rank 2, slopes of rank 1, softcap and a window; the second call reuses the
    handler's plan."""
    q, k, v = random_inputs(jnp.bfloat16, query_len=300, key_len=260)
    rng = np.random.default_rng(1)
    mask = jnp.asarray(rng.standard_normal((300, 260), dtype=np.float32))
    slopes = jnp.asarray(rng.uniform(0.01, 0.2, 4).astype(np.float32))
    options = {"softcap": 20.0, "window": (90, 40)}
    call = jax.jit(
        lambda q, k, v, m, s: bj.flash_attention(
            q, k, v, mask=m, alibi_slopes=s, return_lse=True, **options
        )
    )
    expected = reference.attention(
        np.asarray(q),
        np.asarray(k),
        np.asarray(v),
        mask=np.asarray(mask),
        alibi_slopes=np.asarray(slopes),
        **options,
    )
    for _ in range(2):
        y, lse = call(q, k, v, mask, slopes)
        assert_matches(y, lse, expected, TOLERANCES[jnp.bfloat16])


@pytest.mark.gpu
@needs_cuda
def test_vmap_over_a_leading_axis():
    stacks = [random_inputs(jnp.bfloat16, seed=seed) for seed in range(3)]
    q, k, v = (jnp.stack(parts) for parts in zip(*stacks, strict=True))
    y = jax.jit(jax.vmap(lambda q, k, v: bj.flash_attention(q, k, v, causal=True)))(q, k, v)
    for n, (qn, kn, vn) in enumerate(stacks):
        expected_y, _ = reference.attention(
            np.asarray(qn), np.asarray(kn), np.asarray(vn), causal=True
        )
        assert_y_matches(y[n], expected_y, TOLERANCES[jnp.bfloat16])


@pytest.mark.gpu
@needs_cuda
def test_gpu_readme_snippet():
    section = README.read_text().split("### JAX", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md (JAX)", "exec"), {})
