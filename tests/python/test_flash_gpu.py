"""Flash attention on the GPU against baracuda.reference (torch tensors; marked ``gpu``).

Every case draws fresh random inputs (``randn``, seeded by the test id), poisons every output
with NaN before the run, and compares with the float64 reference:

* f64: elementwise within ``1e-12`` relative to the largest reference output;
* f32: elementwise within ``1e-5`` relative to the largest reference output;
* f16 / bf16: the largest absolute error is at most twice that of a naive implementation
  written in the same dtype (scores, softmax and ``P V`` in f16 / bf16, as a user would write
  it), plus one unit in the last place of the dtype at the largest reference output. That
  absolute term is the least a correct kernel can need: y is stored in f16 / bf16, and the
  final rounding alone may cost half an ULP.

LSE is ``-inf`` exactly where the reference has ``-inf``; elsewhere it is within ``1e-12``
(f64) or ``1e-5`` (f32 LSE of f32 / f16 / bf16 inputs), absolute plus relative, since it is
stored in a floating type whose rounding is relative.

The matrix covers every value of every axis (dtype, head dim, causal and alignment, window,
softcap, ALiBi, mask, GQA / MQA / stride-0 heads, strided layouts, odd lengths) and the pairs
that interact, not the Cartesian product. Each case runs through ``flash_attention`` (y passed
poisoned as ``out=``) and through ``FlashSdpaPlan.run`` (y and LSE passed poisoned); the two
results must be bit-identical.
"""

import dataclasses
import math

import baracuda
import numpy as np
import pytest
from baracuda import reference
from baracuda._errors import STATUS_INVALID_PROBLEM, STATUS_UNSUPPORTED

pytestmark = pytest.mark.gpu

ELEMENTS = ("f64", "f32", "f16", "bf16")
HEAD_DIMS = (8, 32, 64, 80, 96, 128, 192, 256)
ALIGNMENTS = ("top_left", "bottom_right")

# Tolerance of y relative to max |reference y|, and of LSE (absolute and relative).
OUTPUT_TOLERANCE = {"f64": 1e-12, "f32": 1e-5}
LSE_TOLERANCE = {"f64": 1e-12, "f32": 1e-5, "f16": 1e-5, "bf16": 1e-5}
# Spacing of the dtype at 1 (one ULP relative): 2^-10 for f16, 2^-7 for bf16.
LOW_PRECISION_EPSILON = {"f16": 2.0**-10, "bf16": 2.0**-7}
# Naive error may be at most this multiple of ours (docs/ARCHITECTURE.md, Tests).
NAIVE_ERROR_FACTOR = 2.0

# Fraction of mask entries set to -inf.
MASK_NEG_INF_FRACTION = 0.1
# Extra rows / columns around a "sliced" view, so that none of its strides is the dense one.
SLICE_ROW_PADDING = 3
SLICE_DIM_PADDING = 8


def torch_dtype(torch, element):
    return {
        "f64": torch.float64,
        "f32": torch.float32,
        "f16": torch.float16,
        "bf16": torch.bfloat16,
    }[element]


def lse_dtype(torch, element):
    return torch.float64 if element == "f64" else torch.float32


@dataclasses.dataclass(frozen=True)
class Case:
    """One problem of the matrix; fields left at their default stay out of the id."""

    element: str = "f32"
    batch_size: int = 2
    num_heads: int = 4
    num_heads_k: int | None = None  # None: as num_heads
    query_len: int = 33
    key_len: int = 70
    d_k: int = 64
    d_v: int | None = None  # None: as d_k
    causal: bool = False
    alignment: str = "top_left"
    window: tuple = (None, None)
    softcap: float = 0.0
    scale: float | None = None
    alibi: str = "none"  # "none", or a key of ALIBI_SHAPES
    mask: str = "none"  # "none", or a key of MASK_SHAPES
    kv_heads: str = "dense"  # "dense" (Hk heads), or "expand": one head, stride 0 over H
    # "bhsd", "bshd" (transposed view), "sliced" (strided B, S, offset) or "odd" (rows one
    # element apart from dense: a stride TMA cannot describe)
    layout: str = "bhsd"

    @property
    def heads_k(self):
        return self.num_heads if self.num_heads_k is None else self.num_heads_k

    @property
    def value_dim(self):
        return self.d_k if self.d_v is None else self.d_v

    @property
    def offset(self):
        return 0 if self.alignment == "top_left" else self.key_len - self.query_len

    @property
    def id(self):
        parts = [
            self.element,
            f"d{self.d_k}" + (f"v{self.d_v}" if self.d_v is not None else ""),
            f"b{self.batch_size}h{self.num_heads}"
            + (f"k{self.num_heads_k}" if self.num_heads_k is not None else ""),
            f"q{self.query_len}k{self.key_len}",
        ]
        if self.causal:
            parts.append("causal")
        if self.causal or self.window != (None, None) or self.alibi != "none":
            parts.append("br" if self.alignment == "bottom_right" else "tl")
        if self.window != (None, None):
            left, right = ("inf" if side is None else side for side in self.window)
            parts.append(f"win{left}-{right}")
        if self.softcap:
            parts.append(f"cap{self.softcap:g}")
        if self.scale is not None:
            parts.append(f"scale{self.scale:g}")
        if self.alibi != "none":
            parts.append(f"alibi-{self.alibi}")
        if self.mask != "none":
            parts.append(f"mask-{self.mask}")
        if self.kv_heads != "dense":
            parts.append(f"kv-{self.kv_heads}")
        if self.layout != "bhsd":
            parts.append(self.layout)
        return "-".join(parts)

    def descriptor(self):
        left, right = self.window
        return baracuda.FlashSdpaDescriptor(
            self.batch_size,
            self.num_heads,
            self.query_len,
            self.key_len,
            self.d_k,
            self.d_v,
            scale=self.scale,
            is_causal=self.causal,
            element=self.element,
            window_size_left=left,
            window_size_right=right,
            softcap=self.softcap,
            alignment=self.alignment,
        )


ALIBI_SHAPES = {
    "h": lambda b, h: (h,),
    "1h": lambda b, h: (1, h),
    "bh": lambda b, h: (b, h),
}

# Shape of each mask variant, or the shape it is a view of ("expand", "transposed").
MASK_SHAPES = {
    "full": lambda b, h, sq, sk: (b, h, sq, sk),
    "11qk": lambda b, h, sq, sk: (1, 1, sq, sk),
    "b11k": lambda b, h, sq, sk: (b, 1, 1, sk),
    "rank2-qk": lambda b, h, sq, sk: (sq, sk),
    "rank2-1k": lambda b, h, sq, sk: (1, sk),
    "rank3-h1k": lambda b, h, sq, sk: (h, 1, sk),
    "expand": lambda b, h, sq, sk: (1, 1, sq, sk),
    "transposed": lambda b, h, sq, sk: (b, h, sk, sq),
}


# ---------------------------------------------------------------- inputs and outputs


class Inputs:
    """Device tensors of one case, made from one torch generator."""

    def __init__(self, torch, case, generator):
        self.case = case
        dtype = torch_dtype(torch, case.element)
        b, h, hk = case.batch_size, case.num_heads, case.heads_k
        self.q = strided_randn(
            torch, (b, h, case.query_len, case.d_k), dtype, case.layout, generator
        )
        kv_heads = 1 if case.kv_heads == "expand" else hk
        self.k = strided_randn(
            torch, (b, kv_heads, case.key_len, case.d_k), dtype, case.layout, generator
        )
        self.v = strided_randn(
            torch, (b, kv_heads, case.key_len, case.value_dim), dtype, case.layout, generator
        )
        if case.kv_heads == "expand":
            self.k = self.k.expand(b, h, case.key_len, case.d_k)
            self.v = self.v.expand(b, h, case.key_len, case.value_dim)
        self.alibi_slopes = make_alibi_slopes(torch, case, generator)
        self.mask = make_mask(torch, case, generator)

    def copy_from(self, other):
        for name in ("q", "k", "v", "alibi_slopes", "mask"):
            target = getattr(self, name)
            if target is not None:
                target.copy_(getattr(other, name))

    def plan_mask(self):
        """The mask as the C ABI takes it: rank 4, extent-1 axes broadcasting."""
        if self.mask is None:
            return None
        return self.mask[(None,) * (4 - self.mask.dim())]

    def plan_alibi_slopes(self):
        """The slopes as the C ABI takes them: [1, H] or [B, H]."""
        if self.alibi_slopes is None or self.alibi_slopes.dim() == 2:
            return self.alibi_slopes
        return self.alibi_slopes[None]

    def reference(self):
        case = self.case
        return reference.attention(
            to_numpy(self.q),
            to_numpy(self.k),
            to_numpy(self.v),
            causal=case.causal,
            scale=case.scale,
            window=case.window,
            softcap=case.softcap,
            alibi_slopes=None if self.alibi_slopes is None else to_numpy(self.alibi_slopes),
            mask=None if self.mask is None else to_numpy(self.mask),
            alignment=case.alignment,
        )


def strided_randn(torch, shape, dtype, layout, generator):
    """A [B, H, S, D] tensor of randn values, laid out as `layout` asks."""
    b, h, s, d = shape
    if layout == "bhsd":
        return torch.randn(shape, dtype=dtype, device="cuda", generator=generator)
    if layout == "bshd":
        return torch.randn((b, s, h, d), dtype=dtype, device="cuda", generator=generator).transpose(
            1, 2
        )
    if layout == "sliced":
        base = torch.randn(
            (2 * b, h, s + SLICE_ROW_PADDING, d + SLICE_DIM_PADDING),
            dtype=dtype,
            device="cuda",
            generator=generator,
        )
        return base[::2, :, 1 : s + 1, :d]
    if layout == "odd":
        base = torch.randn((b, h, s, d + 1), dtype=dtype, device="cuda", generator=generator)
        return base[..., :d]
    raise AssertionError(f"unknown layout {layout!r}")


def poisoned_output(torch, shape, dtype, layout):
    """(view, base): a NaN-filled [B, H, S, D] view in `layout` and the tensor it lives in."""
    b, h, s, d = shape
    if layout == "bhsd":
        base = torch.full(shape, math.nan, dtype=dtype, device="cuda")
        return base, base
    if layout == "bshd":
        base = torch.full((b, s, h, d), math.nan, dtype=dtype, device="cuda")
        return base.transpose(1, 2), base
    if layout == "odd":
        base = torch.full((b, h, s, d + 1), math.nan, dtype=dtype, device="cuda")
        return base[..., :d], base
    base = torch.full(
        (2 * b, h, s + SLICE_ROW_PADDING, d + SLICE_DIM_PADDING),
        math.nan,
        dtype=dtype,
        device="cuda",
    )
    return base[::2, :, 1 : s + 1, :d], base


def poisoned_lse(torch, case):
    return torch.full(
        (case.batch_size, case.num_heads, case.query_len),
        math.nan,
        dtype=lse_dtype(torch, case.element),
        device="cuda",
    )


def make_alibi_slopes(torch, case, generator):
    """Geometric slopes 2^(-8 (h + 1) / H), scaled per batch by U(0.5, 1.5) for [B, H]."""
    if case.alibi == "none":
        return None
    h = case.num_heads
    heads = torch.arange(1, h + 1, dtype=torch.float32, device="cuda")
    slopes = torch.pow(2.0, -8.0 * heads / h)
    shape = ALIBI_SHAPES[case.alibi](case.batch_size, h)
    if len(shape) == 2:
        factor = (
            torch.rand((shape[0], 1), dtype=torch.float32, device="cuda", generator=generator) + 0.5
        )
        slopes = slopes[None] * factor
    return slopes.reshape(shape).contiguous()


def make_mask(torch, case, generator):
    """An f32 additive mask of randn values with a fraction of -inf entries."""
    if case.mask == "none":
        return None
    b, h, sq, sk = case.batch_size, case.num_heads, case.query_len, case.key_len
    shape = MASK_SHAPES[case.mask](b, h, sq, sk)
    mask = torch.randn(shape, dtype=torch.float32, device="cuda", generator=generator)
    hidden = torch.rand(shape, device="cuda", generator=generator) < MASK_NEG_INF_FRACTION
    mask = mask.masked_fill(hidden, -math.inf)
    if case.mask == "expand":
        return mask.expand(b, h, sq, sk)
    if case.mask == "transposed":
        return mask.transpose(-1, -2)
    return mask


def to_numpy(tensor):
    """A float64 host copy of a device tensor (works for bf16 and stride-0 views)."""
    return tensor.detach().double().cpu().numpy()


# ---------------------------------------------------------------- naive same-dtype attention


def naive_attention(torch, q, k, v, case, alibi_slopes=None, mask=None):
    """Attention as a user writes it in q's dtype: scores, softmax and P V all in that dtype."""
    dtype = q.dtype
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    scale = 1.0 / math.sqrt(q.shape[-1]) if case.scale is None else case.scale
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if case.softcap > 0.0:
        scores = case.softcap * torch.tanh(scores / case.softcap)
    query_len, key_len = q.shape[2], k.shape[2]
    rows = torch.arange(query_len, device=q.device)[:, None]
    cols = torch.arange(key_len, device=q.device)[None, :]
    distance = rows + case.offset - cols
    if alibi_slopes is not None:
        slopes = alibi_slopes.reshape(-1, q.shape[1], 1, 1)
        scores = scores - (slopes * distance.abs()).to(dtype)
    if mask is not None:
        scores = scores + mask.to(dtype)
    left, right = (math.inf if side is None else side for side in case.window)
    if case.causal:
        right = min(right, 0)
    visible = (distance <= left) & (distance >= -right)
    scores = scores.masked_fill(~visible, -math.inf)
    probabilities = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)  # no-key rows: 0
    return torch.matmul(probabilities, v)


# ---------------------------------------------------------------- checks


def assert_matches_reference(torch, element, y, lse, ref_y, ref_lse, naive_y=None):
    """Checks y and LSE (device tensors) against the float64 reference (numpy)."""
    y64, lse64 = to_numpy(y), to_numpy(lse)
    assert not np.isnan(y64).any(), f"{np.isnan(y64).sum()} elements of y were not written"
    assert not np.isnan(lse64).any(), f"{np.isnan(lse64).sum()} elements of lse were not written"

    empty = np.isneginf(ref_lse)
    np.testing.assert_array_equal(
        np.isneginf(lse64), empty, err_msg="lse is -inf exactly on rows with no visible key"
    )
    assert np.isfinite(lse64[~empty]).all()
    lse_tolerance = LSE_TOLERANCE[element]
    np.testing.assert_allclose(
        lse64[~empty], ref_lse[~empty], rtol=lse_tolerance, atol=lse_tolerance
    )
    assert np.all(y64[empty] == 0.0), "rows with no visible key are 0"

    largest = float(np.max(np.abs(ref_y), initial=0.0))
    if element in OUTPUT_TOLERANCE:
        tolerance = OUTPUT_TOLERANCE[element]
        np.testing.assert_allclose(y64, ref_y, rtol=tolerance, atol=tolerance * largest)
        return
    ours = float(np.max(np.abs(y64 - ref_y), initial=0.0))
    naive = float(np.max(np.abs(to_numpy(naive_y) - ref_y), initial=0.0))
    allowed = NAIVE_ERROR_FACTOR * naive + LOW_PRECISION_EPSILON[element] * largest
    assert ours <= allowed, (
        f"{element} max abs error {ours:.3e} exceeds {NAIVE_ERROR_FACTOR:g} x naive "
        f"{naive:.3e} + 1 ULP at max |y| {largest:.3e} (allowed {allowed:.3e})"
    )


def assert_bit_identical(torch, first, second, what):
    assert first.shape == second.shape and first.dtype == second.dtype
    bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[first.element_size()]
    assert torch.equal(first.contiguous().view(bits), second.contiguous().view(bits)), (
        f"{what} differs bit for bit between two runs of the same inputs"
    )


def assert_untouched_outside_view(torch, view, base):
    """Elements of `base` outside `view` keep their NaN poison."""
    inside = torch.zeros(base.shape, dtype=torch.bool, device=base.device)
    inside.as_strided(view.shape, view.stride(), view.storage_offset()).fill_(True)
    outside = base[~inside]
    assert torch.isnan(outside).all(), "the kernel wrote outside the output view"


def run_plan(torch, plan, inputs, y, lse, *, stream=None):
    workspace = None
    if plan.workspace_size > 0:
        workspace = torch.empty(plan.workspace_size, dtype=torch.uint8, device="cuda")
    plan.run(
        inputs.q,
        inputs.k,
        inputs.v,
        y,
        lse,
        mask=inputs.plan_mask(),
        alibi_slopes=inputs.plan_alibi_slopes(),
        workspace=workspace,
        stream=torch.cuda.current_stream() if stream is None else stream,
    )


def check_case(torch, case, seed, backend="auto"):
    """Runs one case both ways and checks each against the reference and the other."""
    generator = torch.Generator(device="cuda").manual_seed(seed)
    inputs = Inputs(torch, case, generator)
    ref_y, ref_lse = inputs.reference()
    naive_y = None
    if case.element in LOW_PRECISION_EPSILON:
        naive_y = naive_attention(
            torch, inputs.q, inputs.k, inputs.v, case, inputs.alibi_slopes, inputs.mask
        )

    y_shape = (case.batch_size, case.num_heads, case.query_len, case.value_dim)
    dtype = torch_dtype(torch, case.element)

    y_out, y_base = poisoned_output(torch, y_shape, dtype, case.layout)
    _, lse = baracuda.flash_attention(
        inputs.q,
        inputs.k,
        inputs.v,
        causal=case.causal,
        scale=case.scale,
        window=case.window,
        softcap=case.softcap,
        alibi_slopes=inputs.alibi_slopes,
        mask=inputs.mask,
        alignment=case.alignment,
        return_lse=True,
        out=y_out,
        backend=backend,
    )
    torch.cuda.synchronize()
    lse = torch.from_dlpack(lse)
    assert tuple(lse.shape) == y_shape[:3] and lse.dtype == lse_dtype(torch, case.element)
    assert_matches_reference(torch, case.element, y_out, lse, ref_y, ref_lse, naive_y)
    assert_untouched_outside_view(torch, y_out, y_base)

    plan_y, _ = poisoned_output(torch, y_shape, dtype, case.layout)
    plan_lse = poisoned_lse(torch, case)
    with baracuda.FlashSdpaPlan.select(case.descriptor(), backend=backend) as plan:
        run_plan(torch, plan, inputs, plan_y, plan_lse)
        torch.cuda.synchronize()
    assert_matches_reference(torch, case.element, plan_y, plan_lse, ref_y, ref_lse, naive_y)
    assert_bit_identical(torch, y_out, plan_y, "y (flash_attention vs plan)")
    assert_bit_identical(torch, lse, plan_lse, "lse (flash_attention vs plan)")


# ---------------------------------------------------------------- the matrix


def _matrix():
    cases = []
    # Every dtype with every head dim.
    for element in ELEMENTS:
        for d in HEAD_DIMS:
            cases.append(Case(element, batch_size=2, num_heads=3, query_len=33, key_len=70, d_k=d))
    for element in ELEMENTS:
        # Causal x alignment x (Sq < Sk, Sq > Sk, Sq = Sk); Sq > Sk bottom-right has empty rows.
        for alignment in ALIGNMENTS:
            for query_len, key_len in ((17, 100), (100, 17), (64, 64)):
                cases.append(
                    Case(
                        element,
                        query_len=query_len,
                        key_len=key_len,
                        causal=True,
                        alignment=alignment,
                    )
                )
        # Window: left only, right only, both, zero-width; alone and with causal.
        for n, window in enumerate(((16, None), (None, 8), (16, 8), (0, 0))):
            for causal in (False, True):
                cases.append(
                    Case(
                        element,
                        query_len=50,
                        key_len=90,
                        window=window,
                        causal=causal,
                        alignment=ALIGNMENTS[(n + causal) % 2],
                    )
                )
        # Softcap: unscaled (sharp) scores where the cap bites, and with causal.
        cases.append(Case(element, softcap=5.0, scale=1.0))
        cases.append(Case(element, softcap=30.0, causal=True, d_k=128))
        # Explicit scale, sharp softmax (scores of std ~11 at d 128).
        cases.append(Case(element, scale=1.0, d_k=128))
        # ALiBi: [H], [1, H], [B, H]; with both alignments and causal.
        cases.append(Case(element, alibi="h"))
        cases.append(Case(element, alibi="1h", causal=True))
        cases.append(
            Case(
                element,
                alibi="bh",
                causal=True,
                alignment="bottom_right",
                query_len=40,
                key_len=100,
            )
        )
        # Mask: every shape and stride variant.
        for mask in MASK_SHAPES:
            cases.append(Case(element, batch_size=2, num_heads=3, mask=mask))
        # Grouped heads (GQA, MQA, stride-0 MQA), alone and with a full mask and causal.
        for heads in (
            dict(num_heads=8, num_heads_k=2),
            dict(num_heads=8, num_heads_k=1),
            dict(num_heads=8, kv_heads="expand"),
        ):
            cases.append(Case(element, **heads))
            cases.append(Case(element, mask="full", causal=True, **heads))
        # d_v != d_k, across head-dim buckets.
        for d_k, d_v in ((64, 32), (32, 128), (256, 64), (80, 96), (192, 128)):
            cases.append(Case(element, d_k=d_k, d_v=d_v))
        # Strided layouts: B, S, H, D views and sliced views (strided B and S, offset start).
        cases.append(Case(element, layout="bshd"))
        cases.append(Case(element, layout="sliced", causal=True))
        # Odd lengths: 1, 17, 1000 with Sq != Sk.
        cases.append(Case(element, batch_size=1, num_heads=2, query_len=1, key_len=1))
        cases.append(
            Case(
                element,
                batch_size=1,
                num_heads=2,
                query_len=1,
                key_len=1000,
                causal=True,
                alignment="bottom_right",
            )
        )
        cases.append(Case(element, batch_size=1, num_heads=2, query_len=1000, key_len=1))
        cases.append(
            Case(element, batch_size=1, num_heads=2, query_len=17, key_len=1000, causal=True)
        )
        cases.append(
            Case(
                element,
                batch_size=1,
                num_heads=2,
                query_len=1000,
                key_len=17,
                causal=True,
                alignment="bottom_right",
            )
        )
        cases.append(
            Case(element, batch_size=1, num_heads=2, query_len=1000, key_len=1000, causal=True)
        )
    # Every feature at once, at every head dim (dtypes in turn), in turn on each layout.
    layouts = ("bhsd", "bshd", "sliced")
    for n, d in enumerate(HEAD_DIMS):
        cases.append(
            Case(
                ELEMENTS[n % len(ELEMENTS)],
                batch_size=2,
                num_heads=4,
                num_heads_k=2,
                query_len=57,
                key_len=130,
                d_k=d,
                d_v=HEAD_DIMS[-1 - n],
                causal=True,
                alignment=ALIGNMENTS[n % 2],
                window=(40, None),
                softcap=8.0,
                alibi=("h", "1h", "bh")[n % 3],
                mask=("b11k", "full", "expand", "rank2-qk")[n % 4],
                layout=layouts[n % len(layouts)],
            )
        )
    for element in ELEMENTS:
        cases.append(
            Case(
                element,
                num_heads=6,
                kv_heads="expand",
                query_len=90,
                key_len=45,
                d_k=96,
                d_v=64,
                window=(7, 5),
                softcap=3.0,
                alibi="bh",
                mask="transposed",
                layout="bshd",
            )
        )
    # Tensor-core sizes: several query tiles and key tiles per head, so that the hopper
    # kernel's K / V pipeline wraps around its stages, at every bucket of the 16-bit elements.
    for element in ("f16", "bf16"):
        for d in (64, 96, 128, 192, 256):
            cases.append(
                Case(element, batch_size=2, num_heads=2, query_len=300, key_len=700, d_k=d)
            )
            cases.append(
                Case(
                    element,
                    batch_size=1,
                    num_heads=4,
                    num_heads_k=2,
                    query_len=700,
                    key_len=500,
                    d_k=d,
                    causal=True,
                    alignment="bottom_right",
                )
            )
        cases.append(
            Case(
                element,
                batch_size=1,
                num_heads=2,
                query_len=600,
                key_len=600,
                d_k=128,
                window=(200, 50),
                softcap=20.0,
                alibi="bh",
                mask="full",
            )
        )
        # Rows whose stride TMA cannot describe run on the portable kernel, as the plan says.
        cases.append(Case(element, layout="odd", causal=True))
    return cases


MATRIX = _matrix()


@pytest.mark.parametrize("case", MATRIX, ids=[case.id for case in MATRIX])
def test_matches_reference(torch, seed, case):
    check_case(torch, case, seed)


# ---------------------------------------------------------------- empty rows


@pytest.mark.parametrize("element", ELEMENTS)
def test_rows_with_no_visible_key(torch, seed, element):
    """Causal bottom-right with Sq > Sk, plus a mask row of all -inf: y 0 and LSE -inf."""
    case = Case(
        element,
        batch_size=2,
        num_heads=3,
        query_len=40,
        key_len=17,
        causal=True,
        alignment="bottom_right",
    )
    generator = torch.Generator(device="cuda").manual_seed(seed)
    inputs = Inputs(torch, case, generator)
    # A [B, 1, Sq, Sk] mask hiding every key of one row of batch 1 (a row that sees keys).
    hidden_row = 35
    inputs.mask = torch.randn(
        (case.batch_size, 1, case.query_len, case.key_len),
        dtype=torch.float32,
        device="cuda",
        generator=generator,
    )
    inputs.mask[1, 0, hidden_row, :] = -math.inf
    ref_y, ref_lse = inputs.reference()
    no_key_rows = case.query_len - case.key_len  # off = -23: rows 0..22 see no key
    assert np.isneginf(ref_lse[:, :, :no_key_rows]).all()
    assert np.isneginf(ref_lse[1, :, hidden_row]).all()

    y = poisoned_output(torch, (2, 3, 40, case.value_dim), torch_dtype(torch, element), "bhsd")[0]
    lse = poisoned_lse(torch, case)
    with baracuda.FlashSdpaPlan.select(case.descriptor()) as plan:
        run_plan(torch, plan, inputs, y, lse)
        torch.cuda.synchronize()
    naive_y = None
    if element in LOW_PRECISION_EPSILON:
        naive_y = naive_attention(torch, inputs.q, inputs.k, inputs.v, case, mask=inputs.mask)
    assert_matches_reference(torch, element, y, lse, ref_y, ref_lse, naive_y)
    assert torch.all(y[:, :, :no_key_rows] == 0)
    assert torch.all(y[1, :, hidden_row] == 0)
    assert torch.all(torch.isneginf(lse[:, :, :no_key_rows]))
    assert torch.all(torch.isneginf(lse[1, :, hidden_row]))


@pytest.mark.parametrize("element", ELEMENTS)
def test_nan_key_propagates_as_in_the_reference(torch, seed, element):
    """A NaN in one key gives NaN y and LSE exactly in the rows that see that key (the
    reference's NaN rows); rows with no visible key stay 0 / -inf, the others finite."""
    case = Case(
        element,
        batch_size=1,
        num_heads=2,
        query_len=40,
        key_len=17,
        causal=True,
        alignment="bottom_right",
    )
    inputs = Inputs(torch, case, torch.Generator(device="cuda").manual_seed(seed))
    nan_key = 9
    inputs.k[0, 1, nan_key, 3] = math.nan
    ref_y, ref_lse = inputs.reference()
    nan_rows = np.isnan(ref_lse)
    assert nan_rows[0, 1].any() and not nan_rows[0, 0].any()
    y = poisoned_output(torch, (1, 2, 40, case.value_dim), torch_dtype(torch, element), "bhsd")[0]
    lse = poisoned_lse(torch, case)
    with baracuda.FlashSdpaPlan.select(case.descriptor()) as plan:
        run_plan(torch, plan, inputs, y, lse)
        torch.cuda.synchronize()
    np.testing.assert_array_equal(np.isnan(to_numpy(lse)), nan_rows)
    np.testing.assert_array_equal(np.isnan(to_numpy(y)).any(axis=-1), nan_rows)
    empty = np.isneginf(ref_lse)
    assert empty.any()
    assert np.isneginf(to_numpy(lse)[empty]).all()
    assert (to_numpy(y)[empty] == 0).all()


def test_close_from_another_thread_while_running(torch, seed):
    """Runs on one thread, close on another: every run either completes or is refused as
    closed; none runs on a destroyed plan."""
    import threading

    case = Case("f32", num_heads=4, query_len=256, key_len=512)
    inputs = Inputs(torch, case, torch.Generator(device="cuda").manual_seed(seed))
    y = poisoned_output(torch, (2, 4, 256, case.value_dim), torch.float32, "bhsd")[0]
    lse = poisoned_lse(torch, case)
    plan = baracuda.FlashSdpaPlan.select(case.descriptor())
    started = threading.Event()
    outcomes = []

    def runs():
        for _ in range(200):
            try:
                run_plan(torch, plan, inputs, y, lse)
                outcomes.append("ran")
            except baracuda.InvalidProblemError as error:
                assert "the plan is closed" in error.message
                outcomes.append("closed")
            started.set()

    runner = threading.Thread(target=runs)
    runner.start()
    assert started.wait(60)
    plan.close()
    runner.join(60)
    torch.cuda.synchronize()
    assert plan.closed and outcomes[0] == "ran"
    assert outcomes == sorted(outcomes, key=lambda outcome: outcome == "closed")


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("element", ELEMENTS)
def test_bit_identical_across_runs(torch, seed, element):
    case = Case(
        element,
        num_heads=8,
        num_heads_k=2,
        query_len=300,
        key_len=517,
        d_k=128,
        causal=True,
        alignment="bottom_right",
        softcap=10.0,
        alibi="bh",
        mask="b11k",
    )
    inputs = Inputs(torch, case, torch.Generator(device="cuda").manual_seed(seed))
    y_shape = (case.batch_size, case.num_heads, case.query_len, case.value_dim)
    dtype = torch_dtype(torch, element)
    results = []
    with baracuda.FlashSdpaPlan.select(case.descriptor()) as plan:
        for _ in range(2):
            y = poisoned_output(torch, y_shape, dtype, "bhsd")[0]
            lse = poisoned_lse(torch, case)
            run_plan(torch, plan, inputs, y, lse)
            results.append((y, lse))
        torch.cuda.synchronize()
    (y_first, lse_first), (y_second, lse_second) = results
    assert not torch.isnan(y_first).any()
    assert_bit_identical(torch, y_first, y_second, "y")
    assert_bit_identical(torch, lse_first, lse_second, "lse")


# ---------------------------------------------------------------- CUDA graphs


def test_cuda_graph_replay_on_new_inputs(torch, seed):
    case = Case(
        "f16",
        num_heads=4,
        num_heads_k=2,
        query_len=40,
        key_len=75,
        causal=True,
        alignment="bottom_right",
        alibi="bh",
        mask="b11k",
    )
    generator = torch.Generator(device="cuda").manual_seed(seed)
    captured = Inputs(torch, case, generator)
    y_shape = (case.batch_size, case.num_heads, case.query_len, case.value_dim)
    y = poisoned_output(torch, y_shape, torch.float16, "bhsd")[0]
    lse = poisoned_lse(torch, case)
    plan = baracuda.FlashSdpaPlan.select(case.descriptor())
    try:
        # Warm up on a side stream, as torch asks before capture.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            run_plan(torch, plan, captured, y, lse, stream=side)
        torch.cuda.current_stream().wait_stream(side)

        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            run_plan(torch, plan, captured, y, lse, stream=torch.cuda.current_stream())

        for _ in range(2):
            fresh = Inputs(torch, case, generator)
            captured.copy_from(fresh)
            y.fill_(math.nan)
            lse.fill_(math.nan)
            graph.replay()
            torch.cuda.synchronize()
            ref_y, ref_lse = fresh.reference()
            naive_y = naive_attention(
                torch, fresh.q, fresh.k, fresh.v, case, fresh.alibi_slopes, fresh.mask
            )
            assert_matches_reference(torch, "f16", y, lse, ref_y, ref_lse, naive_y)
    finally:
        plan.close()


# ---------------------------------------------------------------- interop


@pytest.mark.parametrize("element", ELEMENTS)
def test_returned_arrays_through_dlpack(torch, seed, element):
    """Outputs that flash_attention allocates reach torch without a copy and to the host."""
    case = Case(
        element, num_heads=4, num_heads_k=1, query_len=21, key_len=64, d_k=32, d_v=64, causal=True
    )
    inputs = Inputs(torch, case, torch.Generator(device="cuda").manual_seed(seed))
    y, lse = baracuda.flash_attention(inputs.q, inputs.k, inputs.v, causal=True, return_lse=True)
    assert isinstance(y, baracuda.DeviceArray) and isinstance(lse, baracuda.DeviceArray)
    y_shape = (case.batch_size, case.num_heads, case.query_len, case.value_dim)
    assert tuple(y.shape) == y_shape and tuple(lse.shape) == y_shape[:3]
    assert y.element == element
    assert lse.element == ("f64" if element == "f64" else "f32")
    assert y.device_id == torch.cuda.current_device()
    y_torch = torch.from_dlpack(y)
    lse_torch = torch.from_dlpack(lse)
    assert y_torch.data_ptr() == y.ptr and lse_torch.data_ptr() == lse.ptr
    assert y_torch.dtype == torch_dtype(torch, element)
    assert tuple(y_torch.stride()) == tuple(y.strides)
    torch.cuda.synchronize()

    ref_y, ref_lse = inputs.reference()
    naive_y = None
    if element in LOW_PRECISION_EPSILON:
        naive_y = naive_attention(torch, inputs.q, inputs.k, inputs.v, case)
    assert_matches_reference(torch, element, y_torch, lse_torch, ref_y, ref_lse, naive_y)

    host = y.copy_to_host()
    assert isinstance(host, np.ndarray) and host.dtype == np.dtype(y.dtype)
    np.testing.assert_array_equal(host.astype(np.float64), to_numpy(y_torch))


@pytest.mark.parametrize("element", ["f32", "f16"])
def test_cupy_inputs_and_outputs(seed, element):
    cupy = pytest.importorskip("cupy")
    dtype = {"f32": cupy.float32, "f16": cupy.float16}[element]
    generator = cupy.random.default_rng(seed)
    b, h, sq, sk, d = 2, 4, 37, 80, 64

    def randn(*shape):
        return generator.standard_normal(shape, dtype=cupy.float32).astype(dtype)

    q, k, v = randn(b, h, sq, d), randn(b, h, sk, d), randn(b, h, sk, d)
    mask = generator.standard_normal((b, 1, 1, sk), dtype=cupy.float32)
    out = cupy.full((b, h, sq, d), cupy.nan, dtype=dtype)
    _, lse = baracuda.flash_attention(q, k, v, causal=True, mask=mask, return_lse=True, out=out)
    y = baracuda.flash_attention(q, k, v, causal=True, mask=mask)
    cupy.cuda.runtime.deviceSynchronize()
    y = cupy.asarray(y)
    lse = cupy.asarray(lse)
    assert y.dtype == dtype and y.shape == (b, h, sq, d)
    assert bool((y == out).all()), "the same problem gives the same y with and without out="

    ref_y, ref_lse = reference.attention(
        *(cupy.asnumpy(t) for t in (q, k, v)), causal=True, mask=cupy.asnumpy(mask)
    )
    y64 = cupy.asnumpy(y).astype(np.float64)
    lse64 = cupy.asnumpy(lse).astype(np.float64)
    assert not np.isnan(y64).any() and not np.isnan(lse64).any()
    np.testing.assert_allclose(
        lse64, ref_lse, rtol=LSE_TOLERANCE[element], atol=LSE_TOLERANCE[element]
    )
    largest = float(np.abs(ref_y).max())
    if element == "f32":
        tolerance = OUTPUT_TOLERANCE["f32"]
        np.testing.assert_allclose(y64, ref_y, rtol=tolerance, atol=tolerance * largest)
    else:
        # The output stored in f16 is the exact result to within one rounding plus the f32
        # arithmetic: one f16 ULP at the largest output bounds both here.
        np.testing.assert_allclose(y64, ref_y, rtol=0, atol=LOW_PRECISION_EPSILON["f16"] * largest)


# ---------------------------------------------------------------- plan reports


@pytest.mark.parametrize("element", ("f16", "bf16"))
def test_portable_preference_is_honoured(torch, seed, element):
    """A forced portable plan runs the portable kernel and agrees with the reference."""
    case = Case(element, query_len=200, key_len=300, causal=True)
    with baracuda.FlashSdpaPlan.select(case.descriptor(), backend="portable") as plan:
        assert plan.backend == "portable"
    check_case(torch, case, seed, backend="portable")


def test_hopper_preference_refuses_f32_with_the_reason(torch):
    with pytest.raises(baracuda.UnsupportedError, match="hopper backend runs f16 and bf16"):
        baracuda.FlashSdpaPlan.select(Case("f32").descriptor(), backend="hopper")


def expected_backend(torch, element):
    """The plan's rule: hopper for f16 / bf16 on compute capability 9.0, portable otherwise."""
    on_hopper = torch.cuda.get_device_capability() == (9, 0)
    return "hopper" if on_hopper and element in ("f16", "bf16") else "portable"


@pytest.mark.parametrize("element", ELEMENTS)
def test_plan_reports_what_it_runs(torch, element):
    case = Case(element, d_k=80, d_v=96)
    major, minor = torch.cuda.get_device_capability()
    with baracuda.FlashSdpaPlan.select(case.descriptor()) as plan:
        assert plan.backend == expected_backend(torch, element)
        assert plan.sku.backend == plan.backend
        assert plan.sku.name.startswith(f"flash_sdpa.{plan.backend}.{element}.d")
        assert plan.sku.element == element
        assert plan.sku.head_dim_bucket >= 96
        assert plan.sku.arch == 10 * major + minor
        assert element in plan.sku.name
        accumulator = "f64" if element == "f64" else "f32"
        assert plan.precision_guarantee.accumulator == accumulator
        assert plan.precision_guarantee.math_precision == accumulator
        assert plan.precision_guarantee.deterministic
        assert plan.precision_guarantee.bit_stable_on_same_hardware
        assert plan.workspace_size >= 0


# ---------------------------------------------------------------- more than 2^31 elements

LARGE_HEADS = 8
LARGE_HEAD_DIM = 128
LARGE_LEN = 2**21 + 17  # 8 x (2^21 + 17) x 128 = 2^31 + 17408 elements per tensor
LARGE_WINDOW_LEFT = 64
LARGE_BLOCK_ROWS = 16


def test_tensors_of_more_than_2_31_elements(torch, seed):
    """bf16 Q, K, V, Y of 2^31 + 17408 elements each, causal with a 64-key sliding window.

    Rows are checked in blocks spread over the sequence, the last ones included (in head 7,
    rows at or past 2^21 - 119 lie beyond element 2^31), against the reference on just the
    keys each block can see.
    """
    shape = (1, LARGE_HEADS, LARGE_LEN, LARGE_HEAD_DIM)
    elements = math.prod(shape)
    assert elements > 2**31
    bytes_needed = 4 * elements * 2 + LARGE_HEADS * LARGE_LEN * 4
    free_bytes, _ = torch.cuda.mem_get_info()
    if free_bytes < 1.25 * bytes_needed:
        pytest.skip(
            f"needs {bytes_needed / 2**30:.1f} GiB of free device memory "
            f"(got {free_bytes / 2**30:.1f} GiB)"
        )

    generator = torch.Generator(device="cuda").manual_seed(seed)
    q, k, v = (
        torch.randn(shape, dtype=torch.bfloat16, device="cuda", generator=generator)
        for _ in range(3)
    )
    y = torch.full(shape, math.nan, dtype=torch.bfloat16, device="cuda")
    lse = torch.full(shape[:3], math.nan, dtype=torch.float32, device="cuda")
    case = Case(
        "bf16",
        batch_size=1,
        num_heads=LARGE_HEADS,
        query_len=LARGE_LEN,
        key_len=LARGE_LEN,
        d_k=LARGE_HEAD_DIM,
        causal=True,
        window=(LARGE_WINDOW_LEFT, None),
    )
    try:
        with baracuda.FlashSdpaPlan.select(case.descriptor()) as plan:
            plan.run(q, k, v, y, lse, stream=torch.cuda.current_stream())
            torch.cuda.synchronize()
        assert not torch.isnan(y).any().item(), "some elements of y were not written"
        assert not torch.isnan(lse).any().item(), "some elements of lse were not written"

        beyond_2_31 = LARGE_LEN - (elements - 2**31) // (LARGE_HEAD_DIM)  # first such row, head 7
        starts = [
            0,
            LARGE_WINDOW_LEFT + 3,
            2**20 + 5,
            beyond_2_31 - LARGE_BLOCK_ROWS // 2,
            LARGE_LEN - 3 * LARGE_BLOCK_ROWS,
            LARGE_LEN - LARGE_BLOCK_ROWS,
        ]
        for start in starts:
            check_large_block(torch, q, k, v, y, lse, start)
    finally:
        del q, k, v, y, lse
        torch.cuda.empty_cache()


def check_large_block(torch, q, k, v, y, lse, start):
    """Rows [start, start + LARGE_BLOCK_ROWS) against the reference on the keys they see."""
    stop = start + LARGE_BLOCK_ROWS
    key_start = max(0, start - LARGE_WINDOW_LEFT)
    # On the slice, row r sees keys r + off - 64 ... r + off with off = start - key_start:
    # bottom-right alignment when the slice opens 64 keys early, top-left at the start.
    alignment = "top_left" if key_start == start else "bottom_right"
    assert key_start == start or start - key_start == LARGE_WINDOW_LEFT
    block = Case(
        "bf16",
        batch_size=1,
        num_heads=LARGE_HEADS,
        query_len=LARGE_BLOCK_ROWS,
        key_len=stop - key_start,
        d_k=LARGE_HEAD_DIM,
        causal=True,
        alignment=alignment,
        window=(LARGE_WINDOW_LEFT, None),
    )
    q_rows, k_rows, v_rows = q[:, :, start:stop], k[:, :, key_start:stop], v[:, :, key_start:stop]
    ref_y, ref_lse = reference.attention(
        to_numpy(q_rows),
        to_numpy(k_rows),
        to_numpy(v_rows),
        causal=True,
        window=block.window,
        alignment=alignment,
    )
    naive_y = naive_attention(torch, q_rows, k_rows, v_rows, block)
    assert_matches_reference(
        torch, "bf16", y[:, :, start:stop], lse[:, :, start:stop], ref_y, ref_lse, naive_y
    )


# ---------------------------------------------------------------- argument checks
#
# Each check that flash_sdpa_can_implement makes (flash_sdpa_plan.cpp, check_args), from
# Python: the exception type, its status and the exact C message. run re-checks the same
# arguments and refuses them with the same reason.

CAN_IMPLEMENT = "flash_sdpa_can_implement"
RUN = "flash_sdpa_run"

# B=2, H=8, Sq=64, Sk=100, Dk=64, Dv=32: every extent differs, so a swapped one shows.
CHECKED = Case("f32", batch_size=2, num_heads=8, query_len=64, key_len=100, d_k=64, d_v=32)


def checked_arguments(torch, case=CHECKED):
    """Valid arguments of `case`: contiguous q, k, v, y, lse; no mask, no slopes."""
    dtype = torch_dtype(torch, case.element)
    b, h, sq, sk = case.batch_size, case.num_heads, case.query_len, case.key_len

    def randn(*shape, dtype=dtype):
        return torch.randn(shape, dtype=dtype, device="cuda")

    return dict(
        q=randn(b, h, sq, case.d_k),
        k=randn(b, h, sk, case.d_k),
        v=randn(b, h, sk, case.value_dim),
        y=randn(b, h, sq, case.value_dim),
        lse=randn(b, h, sq, dtype=lse_dtype(torch, case.element)),
        mask=None,
        alibi_slopes=None,
    )


def _every_other_column(torch, shape, dtype=None):
    """A view of `shape` whose last axis has stride 2."""
    base = torch.randn(shape[:-1] + (2 * shape[-1],), dtype=dtype or torch.float32, device="cuda")
    return base[..., ::2]


def _zeros(torch, *shape, dtype=None):
    return torch.zeros(shape, dtype=dtype or torch.float32, device="cuda")


# (id, replacements from torch, error type name, status, message after "<op>: ").
ARGUMENT_CHECKS = [
    (
        "k-rank",
        lambda t: dict(k=_zeros(t, 8, 100, 64)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "k rank mismatch (got 3, expected 4)",
    ),
    (
        "heads-k-divides",
        lambda t: dict(k=_zeros(t, 2, 3, 100, 64), v=_zeros(t, 2, 3, 100, 32)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "k shape[1] (num_heads_k) must divide num_heads (got 3, expected a divisor of 8)",
    ),
    (
        "heads-k-zero",
        lambda t: dict(k=_zeros(t, 2, 0, 100, 64), v=_zeros(t, 2, 0, 100, 32)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "k shape[1] (num_heads_k) must divide num_heads (got 0, expected a divisor of 8)",
    ),
    (
        "kv-broadcast-k-expanded",
        lambda t: dict(
            k=_zeros(t, 2, 1, 100, 64).expand(2, 8, 100, 64), v=_zeros(t, 2, 2, 100, 32)
        ),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "k and v disagree on the head-broadcast convention (got k heads 8 with stride 0 and v "
        "heads 2 with stride 3200, expected the same heads: both [B, 8] with stride 0, or both "
        "[B, Hk])",
    ),
    (
        "kv-broadcast-v-expanded",
        lambda t: dict(
            k=_zeros(t, 2, 2, 100, 64), v=_zeros(t, 2, 1, 100, 32).expand(2, 8, 100, 32)
        ),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "k and v disagree on the head-broadcast convention (got k heads 2 with stride 6400 and v "
        "heads 8 with stride 0, expected the same heads: both [B, 8] with stride 0, or both "
        "[B, Hk])",
    ),
    (
        "q-rank",
        lambda t: dict(q=_zeros(t, 8, 64, 64)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "q rank mismatch (got 3, expected 4)",
    ),
    (
        "q-element",
        lambda t: dict(q=_zeros(t, 2, 8, 64, 64, dtype=t.float16)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "q element mismatch (got f16, expected f32)",
    ),
    (
        "k-element",
        lambda t: dict(k=_zeros(t, 2, 8, 100, 64, dtype=t.bfloat16)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "k element mismatch (got bf16, expected f32)",
    ),
    (
        "v-element",
        lambda t: dict(v=_zeros(t, 2, 8, 100, 32, dtype=t.float64)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "v element mismatch (got f64, expected f32)",
    ),
    (
        "y-element",
        lambda t: dict(y=_zeros(t, 2, 8, 64, 32, dtype=t.float16)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "y element mismatch (got f16, expected f32)",
    ),
    (
        "q-batch",
        lambda t: dict(q=_zeros(t, 1, 8, 64, 64)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "q shape mismatch (got [1, 8, 64, 64], expected [2, 8, 64, 64])",
    ),
    (
        "q-heads",
        lambda t: dict(q=_zeros(t, 2, 4, 64, 64)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "q shape mismatch (got [2, 4, 64, 64], expected [2, 8, 64, 64])",
    ),
    (
        "q-query-len",
        lambda t: dict(q=_zeros(t, 2, 8, 65, 64)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "q shape mismatch (got [2, 8, 65, 64], expected [2, 8, 64, 64])",
    ),
    (
        "q-d-k",
        lambda t: dict(q=_zeros(t, 2, 8, 64, 32)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "q shape mismatch (got [2, 8, 64, 32], expected [2, 8, 64, 64])",
    ),
    (
        "k-batch",
        lambda t: dict(k=_zeros(t, 1, 8, 100, 64)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "k shape mismatch (got [1, 8, 100, 64], expected [2, 8, 100, 64])",
    ),
    (
        "k-key-len",
        lambda t: dict(k=_zeros(t, 2, 8, 99, 64)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "k shape mismatch (got [2, 8, 99, 64], expected [2, 8, 100, 64])",
    ),
    (
        "k-d-k",
        lambda t: dict(k=_zeros(t, 2, 8, 100, 32)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "k shape mismatch (got [2, 8, 100, 32], expected [2, 8, 100, 64])",
    ),
    (
        "v-heads",
        lambda t: dict(v=_zeros(t, 2, 4, 100, 32)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "v shape mismatch (got [2, 4, 100, 32], expected [2, 8, 100, 32])",
    ),
    (
        "v-key-len",
        lambda t: dict(v=_zeros(t, 2, 8, 99, 32)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "v shape mismatch (got [2, 8, 99, 32], expected [2, 8, 100, 32])",
    ),
    (
        "v-d-v",
        lambda t: dict(v=_zeros(t, 2, 8, 100, 64)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "v shape mismatch (got [2, 8, 100, 64], expected [2, 8, 100, 32])",
    ),
    (
        "y-query-len",
        lambda t: dict(y=_zeros(t, 2, 8, 63, 32)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "y shape mismatch (got [2, 8, 63, 32], expected [2, 8, 64, 32])",
    ),
    (
        "y-d-v",
        lambda t: dict(y=_zeros(t, 2, 8, 64, 64)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "y shape mismatch (got [2, 8, 64, 64], expected [2, 8, 64, 32])",
    ),
    (
        "y-broadcast-write",
        lambda t: dict(y=_zeros(t, 2, 1, 64, 32).expand(2, 8, 64, 32)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "y is written, so axis 1 (extent 8) cannot broadcast (got stride 0, expected > 0)",
    ),
    (
        "lse-element",
        lambda t: dict(lse=_zeros(t, 2, 8, 64, dtype=t.float64)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "lse element mismatch (got f64, expected f32)",
    ),
    (
        "lse-rank",
        lambda t: dict(lse=_zeros(t, 2, 8, 64, 1)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "lse rank mismatch (got 4, expected 3)",
    ),
    (
        "lse-shape",
        lambda t: dict(lse=_zeros(t, 2, 8, 65)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "lse shape mismatch (got [2, 8, 65], expected [2, 8, 64])",
    ),
    (
        "lse-broadcast-write",
        lambda t: dict(lse=_zeros(t, 2, 8, 1).expand(2, 8, 64)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "lse is written, so axis 2 (extent 64) cannot broadcast (got stride 0, expected > 0)",
    ),
    (
        "q-last-stride",
        lambda t: dict(q=_every_other_column(t, (2, 8, 64, 64))),
        "UnsupportedError",
        STATUS_UNSUPPORTED,
        "q last-axis stride must be 1 (got 2, expected 1)",
    ),
    (
        "k-last-stride",
        lambda t: dict(k=_every_other_column(t, (2, 8, 100, 64))),
        "UnsupportedError",
        STATUS_UNSUPPORTED,
        "k last-axis stride must be 1 (got 2, expected 1)",
    ),
    (
        "v-last-stride",
        lambda t: dict(v=_every_other_column(t, (2, 8, 100, 32))),
        "UnsupportedError",
        STATUS_UNSUPPORTED,
        "v last-axis stride must be 1 (got 2, expected 1)",
    ),
    (
        "y-last-stride",
        lambda t: dict(y=_every_other_column(t, (2, 8, 64, 32))),
        "UnsupportedError",
        STATUS_UNSUPPORTED,
        "y last-axis stride must be 1 (got 2, expected 1)",
    ),
    (
        "mask-key-len",
        lambda t: dict(mask=_zeros(t, 2, 8, 64, 99)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "mask shape mismatch (got [2, 8, 64, 99], expected [2|1, 8|1, 64|1, 100|1])",
    ),
    (
        "mask-batch",
        lambda t: dict(mask=_zeros(t, 3, 1, 1, 100)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "mask shape mismatch (got [3, 1, 1, 100], expected [2|1, 8|1, 64|1, 100|1])",
    ),
    (
        "mask-heads",
        lambda t: dict(mask=_zeros(t, 1, 4, 64, 100)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "mask shape mismatch (got [1, 4, 64, 100], expected [2|1, 8|1, 64|1, 100|1])",
    ),
    (
        "mask-element",
        lambda t: dict(mask=_zeros(t, 2, 8, 64, 100, dtype=t.float16)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "mask element mismatch (got f16, expected f32)",
    ),
    (
        "alibi-heads",
        lambda t: dict(alibi_slopes=_zeros(t, 2, 9)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "alibi_slopes shape mismatch (got [2, 9], expected [1, 8] or [2, 8])",
    ),
    (
        "alibi-batch",
        lambda t: dict(alibi_slopes=_zeros(t, 3, 8)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "alibi_slopes shape mismatch (got [3, 8], expected [1, 8] or [2, 8])",
    ),
    (
        "alibi-rank",
        lambda t: dict(alibi_slopes=_zeros(t, 1, 2, 8)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "alibi_slopes rank mismatch (got 3, expected 2)",
    ),
    (
        "alibi-element",
        lambda t: dict(alibi_slopes=_zeros(t, 2, 8, dtype=t.float64)),
        "InvalidProblemError",
        STATUS_INVALID_PROBLEM,
        "alibi_slopes element mismatch (got f64, expected f32)",
    ),
]


def _call(method, arguments):
    args = dict(arguments)
    return method(
        args.pop("q"), args.pop("k"), args.pop("v"), args.pop("y"), args.pop("lse"), **args
    )


def test_valid_arguments_are_accepted(torch):
    arguments = checked_arguments(torch)
    arguments["mask"] = _zeros(torch, 2, 1, 64, 100)
    arguments["alibi_slopes"] = _zeros(torch, 1, 8)
    with baracuda.FlashSdpaPlan.select(CHECKED.descriptor()) as plan:
        _call(plan.can_implement, arguments)
        # MQA by a stride-0 head axis: the physical span of K and V counts no broadcast head,
        # so views of [B, 1, Sk, D] buffers fit.
        arguments["k"] = _zeros(torch, 2, 1, 100, 64).expand(2, 8, 100, 64)
        arguments["v"] = _zeros(torch, 2, 1, 100, 32).expand(2, 8, 100, 32)
        _call(plan.can_implement, arguments)


@pytest.mark.parametrize(
    "replace,error_name,status,reason",
    [check[1:] for check in ARGUMENT_CHECKS],
    ids=[check[0] for check in ARGUMENT_CHECKS],
)
def test_argument_check(torch, replace, error_name, status, reason):
    error_type = getattr(baracuda, error_name)
    arguments = checked_arguments(torch)
    arguments.update(replace(torch))
    with baracuda.FlashSdpaPlan.select(CHECKED.descriptor()) as plan:
        with pytest.raises(error_type) as caught:
            _call(plan.can_implement, arguments)
        assert caught.value.status == status
        assert caught.value.message == f"{CAN_IMPLEMENT}: {reason}"
        assert str(caught.value) == caught.value.message

        # run refuses the same arguments for the same reason, before launching anything.
        with pytest.raises(error_type) as caught:
            _call(plan.run, {**arguments, "stream": torch.cuda.current_stream()})
        assert caught.value.status == status
        assert caught.value.message in (f"{RUN}: {reason}", f"{CAN_IMPLEMENT}: {reason}")


def test_f64_plan_wants_f64_lse(torch):
    case = dataclasses.replace(CHECKED, element="f64")
    arguments = checked_arguments(torch, case)
    arguments["lse"] = _zeros(torch, 2, 8, 64)
    with baracuda.FlashSdpaPlan.select(case.descriptor()) as plan:
        with pytest.raises(baracuda.InvalidProblemError) as caught:
            _call(plan.can_implement, arguments)
    assert caught.value.message == f"{CAN_IMPLEMENT}: lse element mismatch (got f32, expected f64)"


def test_no_query_heads_wants_no_key_heads(torch):
    case = dataclasses.replace(CHECKED, num_heads=0)
    arguments = checked_arguments(torch, case)
    arguments["k"] = _zeros(torch, 2, 1, 100, 64)
    arguments["v"] = _zeros(torch, 2, 1, 100, 32)
    with baracuda.FlashSdpaPlan.select(case.descriptor()) as plan:
        with pytest.raises(baracuda.InvalidProblemError) as caught:
            _call(plan.can_implement, arguments)
    assert caught.value.message == (
        f"{CAN_IMPLEMENT}: k shape[1] (num_heads_k) must be 0 when num_heads is 0 "
        "(got 1, expected 0)"
    )
