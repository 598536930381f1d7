"""baracuda.torch: the custom op ``baracuda::flash_attention`` (skipped without torch).

On the CPU (torch's CPU build is enough): the import boundary, the fake implementation under
``FakeTensorMode`` on fake CUDA tensors (which it makes without a device) and on meta tensors,
its refusals with the C library's messages (``baracuda_flash_sdpa_check_args``), tracing by
``torch.export`` and ``torch.compile(fullgraph=True)`` on meta tensors, dynamic shapes without
specialisation, ``torch.library.opcheck`` on meta tensors, and the refusal of the backward pass.

Marked ``gpu``: eager and compiled calls against ``baracuda.reference``, CUDA graph capture and
replay, a non-default current stream, outputs from torch's allocator, ``opcheck`` on CUDA
tensors and the README's snippet.
"""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import baracuda  # noqa: E402
import baracuda.torch as bt  # noqa: E402
from baracuda import reference  # noqa: E402
from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: E402

OP = torch.ops.baracuda.flash_attention.default
CHECK_ARGS = "flash_sdpa_check_args"
README = Path(__file__).resolve().parents[2] / "README.md"

# FakeTensorMode initialises the CUDA device of a fake tensor when CUDA is present: a fake tensor
# on cuda:1 then needs a second GPU. Without CUDA (a CPU build of torch) any index works.
SECOND_FAKE_DEVICE = not torch.cuda.is_available() or torch.cuda.device_count() >= 2
NO_SECOND_FAKE_DEVICE = "a fake tensor on cuda:1 needs a second GPU where CUDA is present"

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16, "f64": torch.float64}


def empty(shape, dtype=torch.float32, device="cuda"):
    return torch.empty(shape, dtype=dtype, device=device)


def qkv(
    *,
    batch=2,
    heads=8,
    heads_k=None,
    query_len=16,
    key_len=24,
    d_k=64,
    d_v=None,
    dtype=torch.float32,
    device="cuda",
):
    heads_k = heads if heads_k is None else heads_k
    d_v = d_k if d_v is None else d_v
    return (
        empty((batch, heads, query_len, d_k), dtype, device),
        empty((batch, heads_k, key_len, d_k), dtype, device),
        empty((batch, heads_k, key_len, d_v), dtype, device),
    )


def op_args(q, k, v, **options):
    """The op's positional arguments for keyword options of the wrapper."""
    window = options.get("window", (None, None))
    return (
        q,
        k,
        v,
        options.get("causal", False),
        options.get("scale"),
        window[0],
        window[1],
        options.get("softcap", 0.0),
        options.get("alibi_slopes"),
        options.get("mask"),
        options.get("alignment", "top_left"),
    )


def baracuda_error_in(error):
    """The baracuda error that ``error`` is or wraps (torch.compile wraps the op's errors)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, baracuda.BaracudaError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def error_chain_has(error, kind, text):
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind) and text in str(error):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


class Attention(torch.nn.Module):
    def __init__(self, **options):
        super().__init__()
        self.options = options

    def forward(self, q, k, v):
        return bt.flash_attention(q, k, v, **self.options)


# ---------------------------------------------------------------- import boundary


def test_import_baracuda_imports_no_torch():
    code = (
        "import sys, baracuda, baracuda.reference, baracuda.nccl\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'torch'"
        " or m == 'baracuda.torch')\n"
        "print(loaded)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "[]"


def test_op_is_registered_with_its_schema():
    assert bt.OP_NAME == "baracuda::flash_attention"
    assert str(OP._schema) == (
        "baracuda::flash_attention(Tensor q, Tensor k, Tensor v, bool causal, float? scale, "
        "SymInt? window_left, SymInt? window_right, float softcap, Tensor? alibi_slopes, "
        "Tensor? mask, str alignment) -> (Tensor, Tensor)"
    )


# ---------------------------------------------------------------- fake implementation


FAKE_CASES = {
    "mha-f32": dict(dtype=torch.float32),
    "gqa-bf16": dict(dtype=torch.bfloat16, heads=8, heads_k=2),
    "mqa-f16": dict(dtype=torch.float16, heads=4, heads_k=1),
    "dv-ne-dk-f16": dict(dtype=torch.float16, d_k=64, d_v=32),
    "f64": dict(dtype=torch.float64, d_k=32, d_v=48),
    "sq-ne-sk": dict(query_len=5, key_len=70),
}


@pytest.mark.parametrize("case", list(FAKE_CASES), ids=list(FAKE_CASES))
def test_fake_shapes_dtypes_devices(case):
    spec = FAKE_CASES[case]
    with FakeTensorMode():
        q, k, v = qkv(**spec)
        y, lse = bt.flash_attention(q, k, v, causal=True, return_lse=True)
        alone = bt.flash_attention(q, k, v)
    batch, heads, query_len, _ = q.shape
    d_v = v.shape[3]
    assert tuple(y.shape) == (batch, heads, query_len, d_v)
    assert tuple(alone.shape) == tuple(y.shape)
    assert y.dtype == q.dtype
    assert y.device == q.device == torch.device("cuda", 0)
    assert y.is_contiguous()
    assert tuple(lse.shape) == (batch, heads, query_len)
    assert lse.dtype == (torch.float64 if q.dtype == torch.float64 else torch.float32)
    assert lse.device == q.device
    assert lse.is_contiguous()


@pytest.mark.skipif(not SECOND_FAKE_DEVICE, reason=NO_SECOND_FAKE_DEVICE)
def test_fake_on_another_device_index():
    with FakeTensorMode():
        q, k, v = qkv(device="cuda:1")
        y, lse = bt.flash_attention(q, k, v, return_lse=True)
    assert y.device == lse.device == torch.device("cuda", 1)


def test_fake_with_every_option_and_strided_inputs():
    with FakeTensorMode():
        # B, S, H, D storage passed as B, H, S, D views.
        q = empty((2, 16, 8, 64)).transpose(1, 2)
        k = empty((2, 24, 2, 64)).transpose(1, 2)
        v = empty((2, 24, 2, 64)).transpose(1, 2)
        for mask in (empty((16, 24)), empty((8, 1, 24)), empty((2, 1, 16, 24))):
            y = bt.flash_attention(
                q,
                k,
                v,
                causal=True,
                scale=0.5,
                window=(4, 2),
                softcap=30.0,
                alibi_slopes=empty((8,)),
                mask=mask,
                alignment="bottom_right",
            )
            assert tuple(y.shape) == (2, 8, 16, 64)
            assert y.is_contiguous()
        y = bt.flash_attention(q, k, v, alibi_slopes=empty((2, 8)))
        assert tuple(y.shape) == (2, 8, 16, 64)


def test_meta_tensors_run_the_fake_implementation():
    q, k, v = qkv(device="meta", heads_k=4, d_v=32)
    y, lse = bt.flash_attention(q, k, v, return_lse=True)
    assert y.device.type == "meta"
    assert tuple(y.shape) == (2, 8, 16, 32)
    assert tuple(lse.shape) == (2, 8, 16)
    assert lse.dtype == torch.float32


def fake_error(error_type, make_args, **options):
    with FakeTensorMode():
        q, k, v = make_args()
        with pytest.raises(error_type) as caught:
            bt.flash_attention(q, k, v, **options)
    return caught.value


C_REFUSALS = {
    "head-dim-12": (
        dict(d_k=12),
        {},
        baracuda.UnsupportedError,
        f"{CHECK_ARGS}: d_k is not a supported head dim (got 12, expected a multiple of 8 in "
        "[8, 256])",
    ),
    "dv-not-supported": (
        dict(d_v=20),
        {},
        baracuda.UnsupportedError,
        f"{CHECK_ARGS}: d_v is not a supported head dim (got 20, expected a multiple of 8 in "
        "[8, 256])",
    ),
    "heads-not-divisible": (
        dict(heads=8, heads_k=3),
        {},
        baracuda.InvalidProblemError,
        f"{CHECK_ARGS}: k shape[1] (num_heads_k) must divide num_heads (got 3, expected a "
        "divisor of 8)",
    ),
    "scale-not-finite": (
        {},
        dict(scale=float("nan")),
        baracuda.InvalidProblemError,
        f"{CHECK_ARGS}: scale must be finite (got nan, expected a finite number)",
    ),
    "softcap-negative": (
        {},
        dict(softcap=-1.0),
        baracuda.InvalidProblemError,
        None,
    ),
}


@pytest.mark.parametrize("case", list(C_REFUSALS), ids=list(C_REFUSALS))
def test_fake_refuses_with_the_c_message(case):
    shape, options, error_type, message = C_REFUSALS[case]
    error = fake_error(error_type, lambda: qkv(**shape), **options)
    assert str(error).startswith(f"{CHECK_ARGS}: ")
    if message is not None:
        assert str(error) == message


def test_fake_refusal_matches_plan_select():
    """The fake implementation runs select's descriptor checks, with select's reason."""
    error = fake_error(baracuda.UnsupportedError, lambda: qkv(d_k=12, d_v=64))
    descriptor = baracuda.FlashSdpaDescriptor(2, 8, 16, 24, 12, 64, scale=0.125)
    with pytest.raises(baracuda.UnsupportedError) as caught:
        baracuda.FlashSdpaPlan.select(descriptor)
    select_reason = str(caught.value).split(": ", 1)[1]
    assert str(error).split(": ", 1)[1] == select_reason


def test_fake_refuses_mismatched_tensors():
    def k_of_other_dtype():
        q, k, v = qkv()
        return q, k.half(), v

    error = fake_error(baracuda.InvalidProblemError, k_of_other_dtype)
    assert str(error) == f"{CHECK_ARGS}: k element mismatch (got f16, expected f32)"

    def wrong_key_len():
        q, k, _ = qkv()
        return q, k, empty((2, 8, 23, 64))

    error = fake_error(baracuda.InvalidProblemError, wrong_key_len)
    assert str(error) == (
        f"{CHECK_ARGS}: v shape mismatch (got [2, 8, 23, 64], expected [2, 8, 24, 64])"
    )

    def last_axis_strided():
        q, k, v = qkv()
        return torch.empty_strided((2, 8, 16, 64), (16384, 2048, 128, 2), device="cuda"), k, v

    error = fake_error(baracuda.UnsupportedError, last_axis_strided)
    assert str(error) == f"{CHECK_ARGS}: q last-axis stride must be 1 (got 2, expected 1)"


def test_fake_refuses_bad_mask_and_slopes():
    cases = [
        (
            dict(mask=lambda: empty((16, 24), torch.float16)),
            "mask element mismatch (got f16, expected f32)",
        ),
        (
            dict(mask=lambda: empty((3, 16, 24))),
            "mask shape mismatch (got [1, 3, 16, 24], expected [2|1, 8|1, 16|1, 24|1])",
        ),
        (
            dict(alibi_slopes=lambda: empty((5,))),
            "alibi_slopes shape mismatch (got [1, 5], expected [1, 8] or [2, 8])",
        ),
    ]
    with FakeTensorMode():
        q, k, v = qkv()
        for makers, reason in cases:
            options = {name: make() for name, make in makers.items()}
            with pytest.raises(baracuda.InvalidProblemError) as caught:
                bt.flash_attention(q, k, v, **options)
            assert str(caught.value) == f"{CHECK_ARGS}: {reason}"


def test_python_refusals_use_flash_attentions_messages():
    with FakeTensorMode():
        q, k, v = qkv()
        cases = [
            (
                (empty((8, 16, 64)), k, v),
                {},
                "flash_attention: q rank mismatch (got 3, expected 4)",
            ),
            (
                (empty((2, 8, 16, 64), torch.int32), k, v),
                {},
                "flash_attention: q element is not supported (got int32, expected f32, f16, "
                "bf16 or f64)",
            ),
            (
                (q, k, v),
                dict(mask=empty((1, 1, 1, 2, 24))),
                "flash_attention: mask rank is not supported (got 5, expected 1 to 4)",
            ),
            (
                (q, k, v),
                dict(alignment="centre"),
                None,
            ),
            ((q, k, v), dict(causal="yes"), None),
            (
                (q, k, v),
                dict(window=(-2, None)),
                "flash_attention: window_size_left must be >= 0 or None (got -2, expected >= 0, "
                "or None for unbounded)",
            ),
        ]
        for args, options, message in cases:
            with pytest.raises(baracuda.InvalidProblemError) as caught:
                bt.flash_attention(*args, **options)
            text = str(caught.value)
            assert text.startswith("flash_attention: ")
            if message is not None:
                assert text == message


@pytest.mark.skipif(not SECOND_FAKE_DEVICE, reason=NO_SECOND_FAKE_DEVICE)
def test_python_refuses_inputs_on_two_devices():
    with FakeTensorMode():
        q, k, _ = qkv()
        v = empty((2, 8, 24, 64), device="cuda:1")
        with pytest.raises(baracuda.InvalidProblemError) as caught:
            bt.flash_attention(q, k, v)
    assert str(caught.value) == (
        "flash_attention: v is on another device than q (got cuda:1, expected cuda:0)"
    )


def test_fake_refuses_cpu_tensors():
    with FakeTensorMode():
        q, k, v = qkv(device="cpu")
        with pytest.raises(baracuda.InvalidProblemError, match="q is not a CUDA tensor"):
            bt.flash_attention(q, k, v)


def test_cuda_implementation_refuses_cpu_tensors_without_a_device():
    q, k, v = (torch.zeros(1, 2, 4, 64) for _ in range(3))
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        bt.flash_attention(q, k, v)
    assert str(caught.value) == (
        "flash_attention: q is not a CUDA tensor (got device cpu, expected a cuda device)"
    )


def test_opcheck_on_meta_tensors():
    q, k, v = qkv(device="meta", heads_k=2, d_v=32)
    results = torch.library.opcheck(OP, op_args(q, k, v, causal=True, window=(3, None)))
    assert set(results.values()) == {"SUCCESS"}, results


# ---------------------------------------------------------------- tracing


def test_export_on_fake_cuda_tensors():
    with FakeTensorMode(allow_non_fake_inputs=True):
        q, k, v = qkv(heads_k=2)
    program = torch.export.export(Attention(causal=True, window=(8, None)), (q, k, v))
    calls = [node for node in program.graph.nodes if node.target is OP]
    assert len(calls) == 1
    assert calls[0].args[3:] == (True, None, 8, None, 0.0, None, None, "top_left")
    y, lse = calls[0].meta["val"]
    assert tuple(y.shape) == (2, 8, 16, 64)
    assert y.device == torch.device("cuda", 0)
    assert tuple(lse.shape) == (2, 8, 16)


def test_export_on_meta_tensors_with_every_input():
    q, k, v = qkv(device="meta", heads_k=4)

    class WithModifiers(torch.nn.Module):
        def forward(self, q, k, v, mask, slopes):
            return bt.flash_attention(q, k, v, mask=mask, alibi_slopes=slopes, return_lse=True)

    mask = torch.empty(16, 24, device="meta")
    slopes = torch.empty(8, device="meta")
    program = torch.export.export(WithModifiers(), (q, k, v, mask, slopes))
    assert sum(node.target is OP for node in program.graph.nodes) == 1
    y, lse = program.module()(q, k, v, mask, slopes)
    assert tuple(y.shape) == (2, 8, 16, 64)
    assert tuple(lse.shape) == (2, 8, 16)


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_compile_fullgraph_on_meta_tensors(backend):
    torch._dynamo.reset()
    graphs = []

    def counting(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    compiled = torch.compile(
        Attention(causal=True, softcap=20.0, return_lse=True),
        fullgraph=True,
        backend=counting if backend == "eager" else backend,
    )
    q, k, v = qkv(device="meta", heads_k=2, d_v=32)
    y, lse = compiled(q, k, v)
    assert tuple(y.shape) == (2, 8, 16, 32)
    assert tuple(lse.shape) == (2, 8, 16)
    if backend == "eager":
        assert len(graphs) == 1
        assert sum(node.target is OP for node in graphs[0].graph.nodes) == 1


def test_compile_dynamic_shapes_do_not_specialise():
    """The fake implementation checks the example values without guarding on them."""
    torch._dynamo.reset()
    graphs = []

    def counting(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    compiled = torch.compile(Attention(causal=True), fullgraph=True, backend=counting)
    for query_len, key_len in ((16, 24), (40, 72)):
        q, k, v = qkv(device="meta", query_len=query_len, key_len=key_len)
        torch._dynamo.mark_dynamic(q, 2)
        torch._dynamo.mark_dynamic(k, 2)
        torch._dynamo.mark_dynamic(v, 2)
        y = compiled(q, k, v)
        assert tuple(y.shape) == (2, 8, query_len, 64)
    assert len(graphs) == 1


def test_compile_refuses_with_the_c_error_at_trace_time():
    torch._dynamo.reset()
    compiled = torch.compile(Attention(), fullgraph=True, backend="eager")
    q, k, v = qkv(device="meta", d_k=12)
    with pytest.raises(Exception) as caught:
        compiled(q, k, v)
    error = baracuda_error_in(caught.value)
    assert isinstance(error, baracuda.UnsupportedError)
    assert str(error) == (
        f"{CHECK_ARGS}: d_k is not a supported head dim (got 12, expected a multiple of 8 in "
        "[8, 256])"
    )


# ---------------------------------------------------------------- no backward yet


def test_backward_is_refused_eagerly():
    q, k, v = (t.requires_grad_() for t in qkv(device="meta"))
    y = bt.flash_attention(q, k, v)
    assert y.requires_grad
    with pytest.raises(NotImplementedError, match=re.escape(bt.NO_BACKWARD_MESSAGE)):
        y.sum().backward()


def test_forward_needs_no_grad_mode_off_eagerly():
    q, k, v = (t.requires_grad_() for t in qkv(device="meta"))
    with torch.no_grad():
        y = bt.flash_attention(q, k, v)
    assert not y.requires_grad


@pytest.mark.filterwarnings("ignore:Error detected in:UserWarning")
def test_compile_refuses_the_backward_while_compiling():
    torch._dynamo.reset()
    compiled = torch.compile(Attention(), fullgraph=True, backend="aot_eager")
    q, k, v = (t.requires_grad_() for t in qkv(device="meta"))
    with pytest.raises(Exception) as caught:
        compiled(q, k, v)
    assert error_chain_has(caught.value, NotImplementedError, bt.NO_BACKWARD_MESSAGE)
    with torch.no_grad():
        assert tuple(compiled(q, k, v).shape) == (2, 8, 16, 64)


# ---------------------------------------------------------------- GPU

GPU_CASES = {
    "f32-causal-gqa": dict(
        shape=dict(batch=2, heads=8, heads_k=2, query_len=33, key_len=70, d_k=64),
        dtype="f32",
        options=dict(causal=True),
        tolerance=1e-5,
    ),
    "bf16-modifiers": dict(
        shape=dict(batch=1, heads=4, query_len=40, key_len=40, d_k=64),
        dtype="bf16",
        options=dict(window=(8, 4), softcap=20.0, alignment="bottom_right"),
        tolerance=3e-2,
    ),
    "f64-dv32": dict(
        shape=dict(batch=1, heads=2, query_len=17, key_len=29, d_k=64, d_v=32),
        dtype="f64",
        options=dict(causal=True, scale=0.3),
        tolerance=1e-12,
    ),
}


def random_inputs(case, seed):
    spec = GPU_CASES[case]
    generator = torch.Generator().manual_seed(seed)
    shapes = [t.shape for t in qkv(device="meta", **spec["shape"])]
    dtype = DTYPES[spec["dtype"]]
    return [torch.randn(shape, generator=generator).to("cuda", dtype) for shape in shapes]


def reference_of(q, k, v, **options):
    arrays = [t.detach().to(torch.float64).cpu().numpy() for t in (q, k, v)]
    return reference.attention(*arrays, **options)


def assert_matches_reference(y, lse, expected, tolerance):
    expected_y, expected_lse = expected
    got_y = y.to(torch.float64).cpu().numpy()
    scale = max(float(np.max(np.abs(expected_y))), 1.0)
    assert np.max(np.abs(got_y - expected_y)) <= tolerance * scale
    got_lse = lse.cpu().numpy()
    assert np.array_equal(np.isneginf(got_lse), np.isneginf(expected_lse))
    finite = np.isfinite(expected_lse)
    assert np.allclose(got_lse[finite], expected_lse[finite], rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("case", list(GPU_CASES), ids=list(GPU_CASES))
def test_gpu_eager_and_compiled_match_the_reference(case, seed):
    spec = GPU_CASES[case]
    q, k, v = random_inputs(case, seed)
    options = spec["options"]
    eager_y, eager_lse = bt.flash_attention(q, k, v, return_lse=True, **options)
    torch._dynamo.reset()
    compiled = torch.compile(Attention(return_lse=True, **options), fullgraph=True)
    compiled_y, compiled_lse = compiled(q, k, v)
    torch.cuda.synchronize()
    assert torch.equal(eager_y, compiled_y)
    assert torch.equal(eager_lse, compiled_lse)
    expected = reference_of(q, k, v, **options)
    assert_matches_reference(eager_y, eager_lse, expected, spec["tolerance"])
    # The baracuda entry point on the same inputs: one kernel, bit-identical results.
    y_dl, lse_dl = baracuda.flash_attention(
        q, k, v, return_lse=True, stream=torch.cuda.current_stream(), **options
    )
    torch.cuda.synchronize()
    assert torch.equal(torch.from_dlpack(y_dl), eager_y)
    assert torch.equal(torch.from_dlpack(lse_dl), eager_lse)


@pytest.mark.gpu
def test_gpu_outputs_are_torch_tensors_from_torchs_allocator(seed):
    q, k, v = random_inputs("f32-causal-gqa", seed)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    y, lse = bt.flash_attention(q, k, v, return_lse=True)
    after = torch.cuda.memory_allocated()
    assert type(y) is torch.Tensor and type(lse) is torch.Tensor
    assert y.device == q.device and lse.device == q.device
    assert y.is_contiguous() and lse.is_contiguous()
    assert after - before >= y.nbytes + lse.nbytes


@pytest.mark.gpu
def test_gpu_runs_on_the_current_stream(seed):
    q, k, v = random_inputs("f32-causal-gqa", seed)
    expected = reference_of(q, k, v, causal=True)
    staged = torch.full_like(q, float("nan"))
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        # The kernel must wait for the copy, which waits for the sleep: a launch on another
        # stream would read the NaN.
        torch.cuda._sleep(50_000_000)
        staged.copy_(q)
        y, lse = bt.flash_attention(staged, k, v, causal=True, return_lse=True)
    stream.synchronize()
    assert_matches_reference(y, lse, expected, 1e-5)


@pytest.mark.gpu
def test_gpu_cuda_graph_capture_and_replay(seed):
    q, k, v = random_inputs("bf16-modifiers", seed)
    options = GPU_CASES["bf16-modifiers"]["options"]
    static = [t.clone() for t in (q, k, v)]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: the plan is selected before capture
        bt.flash_attention(*static, **options)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y, lse = bt.flash_attention(*static, return_lse=True, **options)
    fresh = [torch.randn_like(t) for t in static]
    for target, source in zip(static, fresh, strict=True):
        target.copy_(source)
    graph.replay()
    expected_y, expected_lse = bt.flash_attention(*fresh, return_lse=True, **options)
    torch.cuda.synchronize()
    assert torch.equal(y, expected_y)
    assert torch.equal(lse, expected_lse)


@pytest.mark.gpu
def test_gpu_opcheck(seed):
    q, k, v = random_inputs("f32-causal-gqa", seed)
    mask = torch.zeros(33, 70, device="cuda")
    slopes = torch.rand(8, device="cuda")
    for args in (
        op_args(q, k, v, causal=True),
        op_args(q, k, v, window=(5, 3), softcap=10.0, mask=mask, alibi_slopes=slopes),
    ):
        results = torch.library.opcheck(OP, args)
        assert set(results.values()) == {"SUCCESS"}, results


@pytest.mark.gpu
def test_gpu_eager_refusal_is_the_traced_one():
    q, k, v = qkv(d_k=12)
    with pytest.raises(baracuda.UnsupportedError) as caught:
        bt.flash_attention(q, k, v)
    assert str(caught.value) == (
        f"{CHECK_ARGS}: d_k is not a supported head dim (got 12, expected a multiple of 8 in "
        "[8, 256])"
    )


@pytest.mark.gpu
def test_gpu_backward_is_refused(seed):
    q, k, v = (t.requires_grad_() for t in random_inputs("f32-causal-gqa", seed))
    y = bt.flash_attention(q, k, v)
    with pytest.raises(NotImplementedError, match=re.escape(bt.NO_BACKWARD_MESSAGE)):
        y.sum().backward()


@pytest.mark.gpu
def test_gpu_readme_snippet():
    text = README.read_text()
    section = text.split("### PyTorch", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md (PyTorch)", "exec"), {})
