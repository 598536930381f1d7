"""Ring attention on one GPU (marked ``gpu``): one rank against flash and the reference, and
the seed's init / step x N / finalize over N K/V chunks.

* One rank, contiguous layout: the ring runs the flash kernel once over every key and
  normalises as it does, so y and LSE are bit-identical to :func:`baracuda.flash_attention`.
* One rank, zigzag layout: the same positions in two parts, so the same tolerances as flash
  against the float64 reference (``test_flash_gpu``'s checks).
* N chunks: the error against the reference stays within flash's tolerances for N up to 64,
  since the accumulators stay in f32 (f64) across the steps.
"""

import ctypes
import math
from pathlib import Path

import baracuda
import numpy as np
import pytest
from baracuda import _capi, reference
from test_flash_gpu import (
    LOW_PRECISION_EPSILON,
    assert_bit_identical,
    assert_matches_reference,
    lse_dtype,
    to_numpy,
    torch_dtype,
)

pytestmark = pytest.mark.gpu

ELEMENTS = ("f64", "f32", "f16", "bf16")
NAN = float("nan")
# Numbers of K/V chunks that the seed loop folds in, up to the 64.
CHUNK_COUNTS = (1, 2, 8, 64)
CHUNK_KEYS = 32


def randn(torch, shape, element, generator):
    return torch.randn(shape, generator=generator, device="cuda", dtype=torch.float64).to(
        torch_dtype(torch, element)
    )


def naive_attention(torch, q, k, v, *, causal, window=(None, None), softcap=0.0, alibi_slopes=None):
    """Attention as a user writes it in q's dtype, top-left aligned (the ring's positions)."""
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if softcap > 0.0:
        scores = softcap * torch.tanh(scores / softcap)
    rows = torch.arange(q.shape[2], device=q.device)[:, None]
    cols = torch.arange(k.shape[2], device=q.device)[None, :]
    distance = rows - cols
    if alibi_slopes is not None:
        scores = scores - (alibi_slopes.reshape(1, -1, 1, 1) * distance.abs()).to(q.dtype)
    left, right = (math.inf if side is None else side for side in window)
    if causal:
        right = min(right, 0)
    scores = scores.masked_fill(~((distance <= left) & (distance >= -right)), -math.inf)
    probabilities = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)
    return torch.matmul(probabilities, v)


def reference_of(q, k, v, *, causal, window=(None, None), softcap=0.0, alibi_slopes=None):
    slopes = None if alibi_slopes is None else to_numpy(alibi_slopes)
    return reference.attention(
        to_numpy(q),
        to_numpy(k),
        to_numpy(v),
        causal=causal,
        window=window,
        softcap=softcap,
        alibi_slopes=slopes,
    )


# ---------------------------------------------------------------- one rank against flash


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("element", ELEMENTS)
def test_one_rank_contiguous_is_flash_bit_for_bit(torch, seed, element, causal):
    generator = torch.Generator(device="cuda").manual_seed(seed)
    q = randn(torch, (2, 4, 77, 64), element, generator)
    k = randn(torch, (2, 2, 77, 64), element, generator)
    v = randn(torch, (2, 2, 77, 64), element, generator)
    flash_y, flash_lse = baracuda.flash_attention(q, k, v, causal=causal, return_lse=True)
    ring_y, ring_lse = baracuda.ring_attention(q, k, v, causal=causal, return_lse=True)
    torch.cuda.synchronize()
    assert_bit_identical(torch, torch.from_dlpack(ring_y), torch.from_dlpack(flash_y), "y")
    assert_bit_identical(torch, torch.from_dlpack(ring_lse), torch.from_dlpack(flash_lse), "lse")


CASES = [
    dict(causal=False),
    dict(causal=True),
    dict(causal=True, window=(19, None)),
    dict(causal=False, window=(11, 6)),
    dict(causal=True, softcap=5.0),
    dict(causal=True, alibi=True),
]


@pytest.mark.parametrize(
    "options",
    CASES,
    ids=lambda options: "-".join(f"{name}={value}" for name, value in options.items()),
)
@pytest.mark.parametrize("layout", ["contiguous", "zigzag"])
@pytest.mark.parametrize("element", ELEMENTS)
def test_one_rank_matches_reference(torch, seed, element, layout, options):
    generator = torch.Generator(device="cuda").manual_seed(seed)
    causal = options["causal"]
    window = options.get("window", (None, None))
    softcap = options.get("softcap", 0.0)
    q = randn(torch, (2, 4, 66, 32), element, generator)
    k = randn(torch, (2, 1, 66, 32), element, generator)
    v = randn(torch, (2, 1, 66, 32), element, generator)
    slopes = None
    if options.get("alibi"):
        slopes = torch.rand(4, generator=generator, device="cuda", dtype=torch.float32)
    out = torch.full(q.shape, NAN, dtype=q.dtype, device="cuda")
    y, lse = baracuda.ring_attention(
        q,
        k,
        v,
        causal=causal,
        layout=layout,
        window=window,
        softcap=softcap,
        alibi_slopes=slopes,
        out=out,
        return_lse=True,
    )
    torch.cuda.synchronize()
    assert y is out
    lse = torch.from_dlpack(lse)
    assert lse.dtype == lse_dtype(torch, element) and tuple(lse.shape) == (2, 4, 66)
    ref_y, ref_lse = reference_of(
        q, k, v, causal=causal, window=window, softcap=softcap, alibi_slopes=slopes
    )
    naive_y = None
    if element in LOW_PRECISION_EPSILON:
        naive_y = naive_attention(
            torch, q, k, v, causal=causal, window=window, softcap=softcap, alibi_slopes=slopes
        )
    assert_matches_reference(torch, element, out, lse, ref_y, ref_lse, naive_y)


@pytest.mark.parametrize("schedule", ["overlapped", "serial"])
@pytest.mark.parametrize("element", ["f32", "bf16"])
def test_one_rank_communicator(torch, seed, element, schedule):
    """A real one-rank NCCL ring gives the bits of the communicator-less one."""
    try:
        baracuda.nccl.load()
    except baracuda.LibraryNotLoadedError as error:
        pytest.skip(f"NCCL is not loadable here: {error}")
    generator = torch.Generator(device="cuda").manual_seed(seed)
    q, k, v = (randn(torch, (1, 2, 48, 64), element, generator) for _ in range(3))
    with baracuda.nccl.Communicator(1, 0, baracuda.nccl.get_unique_id()) as comm:
        assert (comm.rank, comm.world_size) == (0, 1)
        assert comm.device_id == torch.cuda.current_device()
        y, lse = baracuda.ring_attention(
            q,
            k,
            v,
            comm,
            causal=True,
            layout="zigzag",
            schedule=schedule,
            timeout=60,
            return_lse=True,
        )
        comm.check()
    assert comm.closed
    alone_y, alone_lse = baracuda.ring_attention(
        q, k, v, causal=True, layout="zigzag", schedule=schedule, return_lse=True
    )
    torch.cuda.synchronize()
    assert_bit_identical(torch, torch.from_dlpack(y), torch.from_dlpack(alone_y), "y")
    assert_bit_identical(torch, torch.from_dlpack(lse), torch.from_dlpack(alone_lse), "lse")


# ---------------------------------------------------------------- the plan


def test_plan_prestaged_scratch_equals_staged_k_v(torch, seed):
    """kv_scratch_a staged by the caller (K then V) and k / v staged by run agree bit for bit."""
    generator = torch.Generator(device="cuda").manual_seed(seed)
    q = randn(torch, (1, 4, 40, 64), "bf16", generator)
    # K / V as B, S, H, D tensors viewed as B, H, S, D: staging copies the strides.
    k = randn(torch, (1, 40, 2, 64), "bf16", generator).transpose(1, 2)
    v = randn(torch, (1, 40, 2, 64), "bf16", generator).transpose(1, 2)
    descriptor = baracuda.RingAttentionDescriptor(
        1, 4, 40, 40, 64, num_heads_k=2, element="bf16", is_causal=True
    )
    with baracuda.RingAttentionPlan.select(descriptor) as plan:
        assert plan.kv_scratch_elements == 2 * 1 * 2 * 40 * 64
        assert plan.accumulator_scratch_bytes == 1 * 4 * 40 * (64 + 2) * 4
        on_hopper = torch.cuda.get_device_capability() == (9, 0)
        assert plan.backend == ("hopper" if on_hopper else "portable")
        assert plan.sku.name.startswith(f"ring_attention.{plan.backend}.bf16.d64.sm")
        assert plan.precision_guarantee == baracuda.PrecisionGuarantee("f32", "f32", True, True)
        results = []
        for staged_by_run in (True, False):
            scratch_a = torch.empty(plan.kv_scratch_elements, dtype=torch.bfloat16, device="cuda")
            scratch_b = torch.full_like(scratch_a, NAN)
            if not staged_by_run:
                scratch_a.copy_(torch.cat([k.contiguous().flatten(), v.contiguous().flatten()]))
            accumulators = torch.full(
                (plan.accumulator_scratch_bytes // 4,), NAN, dtype=torch.float32, device="cuda"
            )
            y = torch.full(q.shape, NAN, dtype=q.dtype, device="cuda")
            lse = torch.full(q.shape[:3], NAN, dtype=torch.float32, device="cuda")
            extra = dict(k=k, v=v) if staged_by_run else {}
            plan.can_implement(q, y, scratch_a, scratch_b, accumulators, lse=lse, **extra)
            plan.run(
                q,
                y,
                scratch_a,
                scratch_b,
                accumulators,
                lse=lse,
                stream=torch.cuda.current_stream(),
                **extra,
            )
            results.append((y, lse))
        torch.cuda.synchronize()
    assert_bit_identical(torch, results[0][0], results[1][0], "y")
    assert_bit_identical(torch, results[0][1], results[1][1], "lse")
    flash_y = baracuda.flash_attention(q, k, v, causal=True)
    torch.cuda.synchronize()
    assert_bit_identical(torch, results[0][0], torch.from_dlpack(flash_y), "y against flash")


def test_plan_argument_checks(torch):
    descriptor = baracuda.RingAttentionDescriptor(1, 2, 16, 16, 64, element="f32")
    plan = baracuda.RingAttentionPlan.select(descriptor)
    q = torch.zeros(1, 2, 16, 64, device="cuda")
    y = torch.zeros_like(q)
    needed = plan.kv_scratch_elements
    scratch_a = torch.zeros(needed, device="cuda")
    scratch_b = torch.zeros(needed, device="cuda")
    accumulators = torch.zeros(plan.accumulator_scratch_bytes // 4, device="cuda")
    plan.can_implement(q, y, scratch_a, scratch_b, accumulators)

    with pytest.raises(baracuda.BufferTooSmallError) as short:
        plan.can_implement(q, y, scratch_a, scratch_b[:-1], accumulators)
    assert (short.value.needed, short.value.got) == (needed, needed - 1)
    assert "kv_scratch_b holds too few elements" in str(short.value)

    with pytest.raises(baracuda.WorkspaceTooSmallError) as small:
        plan.can_implement(q, y, scratch_a, scratch_b, accumulators[:-1])
    assert small.value.needed == plan.accumulator_scratch_bytes

    with pytest.raises(
        baracuda.InvalidProblemError, match="kv_scratch_a and kv_scratch_b share memory"
    ):
        plan.can_implement(q, y, scratch_a, scratch_a, accumulators)

    with pytest.raises(baracuda.InvalidProblemError, match="k and v go together"):
        plan.can_implement(q, y, scratch_a, scratch_b, accumulators, k=q)

    with pytest.raises(baracuda.InvalidProblemError, match="kv_scratch_a element mismatch"):
        plan.can_implement(q, y, scratch_a.half(), scratch_b, accumulators)

    with pytest.raises(baracuda.InvalidProblemError, match="y shape mismatch"):
        plan.can_implement(q, y[:, :1], scratch_a, scratch_b, accumulators)

    with pytest.raises(TypeError, match="comm is not a Communicator"):
        plan.run(q, y, scratch_a, scratch_b, accumulators, comm=object())
    plan.close()
    with pytest.raises(baracuda.InvalidProblemError, match="the plan is closed"):
        plan.can_implement(q, y, scratch_a, scratch_b, accumulators)


# ---------------------------------------------------------------- the seed loop over N chunks


def _library():
    library = ctypes.CDLL(str(Path(_capi.__file__).parent / "libbaracuda.so"))
    pointer, i32, i64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64
    for name in (
        "baracuda_kernels_ring_attention_init_run",
        "baracuda_kernels_ring_attention_f64_init_run",
    ):
        getattr(library, name).argtypes = [pointer, pointer, pointer, i64, i64, pointer]
    for element in ELEMENTS:
        step = getattr(library, f"baracuda_kernels_ring_attention_{element}_step_run")
        step.argtypes = [i32] * 7 + [ctypes.c_float, i32] + [pointer] * 7
        finalize = getattr(library, f"baracuda_kernels_ring_attention_{element}_finalize_run")
        finalize.argtypes = [i32] * 4 + [pointer] * 6
    library.baracuda_last_error_message.restype = ctypes.c_char_p
    return library


def _call(library, name, *arguments):
    status = getattr(library, name)(*arguments)
    assert status == 0, library.baracuda_last_error_message().decode()


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("chunks", CHUNK_COUNTS)
@pytest.mark.parametrize("element", ELEMENTS)
def test_seed_steps_over_chunks(torch, seed, element, chunks, causal):
    """init, then one step per K/V chunk at its global position, then finalize: the error
    against the reference does not grow with the number of chunks."""
    library = _library()
    generator = torch.Generator(device="cuda").manual_seed(seed)
    batch, heads, head_dim = 1, 2, 64
    key_len = chunks * CHUNK_KEYS
    query_len = key_len
    q = randn(torch, (batch, heads, query_len, head_dim), element, generator)
    k = randn(torch, (batch, heads, key_len, head_dim), element, generator)
    v = randn(torch, (batch, heads, key_len, head_dim), element, generator)
    compute = torch.float64 if element == "f64" else torch.float32
    rows = batch * heads * query_len
    o_acc = torch.full((rows * head_dim,), NAN, dtype=compute, device="cuda")
    m_acc = torch.full((rows,), NAN, dtype=compute, device="cuda")
    l_acc = torch.full((rows,), NAN, dtype=compute, device="cuda")
    y = torch.full(q.shape, NAN, dtype=q.dtype, device="cuda")
    lse = torch.full(q.shape[:3], NAN, dtype=compute, device="cuda")
    stream = torch.cuda.current_stream().cuda_stream
    init = (
        "baracuda_kernels_ring_attention_f64_init_run"
        if element == "f64"
        else "baracuda_kernels_ring_attention_init_run"
    )
    _call(
        library,
        init,
        o_acc.data_ptr(),
        m_acc.data_ptr(),
        l_acc.data_ptr(),
        o_acc.numel(),
        rows,
        stream,
    )
    scale = 1.0 / math.sqrt(head_dim)
    for chunk in range(chunks):
        k_chunk = k[:, :, chunk * CHUNK_KEYS : (chunk + 1) * CHUNK_KEYS].contiguous()
        v_chunk = v[:, :, chunk * CHUNK_KEYS : (chunk + 1) * CHUNK_KEYS].contiguous()
        _call(
            library,
            f"baracuda_kernels_ring_attention_{element}_step_run",
            batch,
            heads,
            query_len,
            CHUNK_KEYS,
            head_dim,
            0,
            chunk * CHUNK_KEYS,
            scale,
            int(causal),
            q.data_ptr(),
            k_chunk.data_ptr(),
            v_chunk.data_ptr(),
            o_acc.data_ptr(),
            m_acc.data_ptr(),
            l_acc.data_ptr(),
            stream,
        )
    _call(
        library,
        f"baracuda_kernels_ring_attention_{element}_finalize_run",
        batch,
        heads,
        query_len,
        head_dim,
        o_acc.data_ptr(),
        m_acc.data_ptr(),
        l_acc.data_ptr(),
        y.data_ptr(),
        lse.data_ptr(),
        stream,
    )
    torch.cuda.synchronize()
    ref_y, ref_lse = reference_of(q, k, v, causal=causal)
    naive_y = None
    if element in LOW_PRECISION_EPSILON:
        naive_y = naive_attention(torch, q, k, v, causal=causal)
    assert_matches_reference(torch, element, y, lse, ref_y, ref_lse, naive_y)

    # Against flash on the whole sequence: the same accuracy, whatever the number of chunks.
    flash_y = torch.from_dlpack(baracuda.flash_attention(q, k, v, causal=causal))
    torch.cuda.synchronize()
    ours = float(np.max(np.abs(to_numpy(y) - ref_y)))
    flash = float(np.max(np.abs(to_numpy(flash_y) - ref_y)))
    largest = float(np.max(np.abs(ref_y)))
    unit = LOW_PRECISION_EPSILON.get(element, 0.0) * largest
    relative = {"f64": 1e-13, "f32": 1e-6}.get(element, 0.0) * largest
    assert ours <= 2.0 * flash + unit + relative, (
        f"{chunks} chunks: max error {ours:.3e} against flash's {flash:.3e} on the whole sequence"
    )
