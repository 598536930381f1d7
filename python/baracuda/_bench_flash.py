"""Benchmark of :func:`baracuda.flash_attention` (``python -m baracuda bench [flash]``).

The forward pass is timed over a grid of problems (fixed tokens ``B * S`` and model width
``H * D``), each as one or more :data:`VARIANTS`, against PyTorch SDPA forced to its
FlashAttention, cuDNN (and, for variants with an ``attn_mask``, memory-efficient) backend
in the same run. ``benchmarks/README.md`` describes the method; ``torch`` and ``cupy`` are
imported only after the GPU probe has found a device.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from baracuda import _bench_common as common

SCHEMA = "baracuda-bench-flash/2"
PROGRAM = "baracuda bench"

DEFAULT_DTYPES = ("bf16", "f16", "f32")
DEFAULT_HEAD_DIMS = (64, 128, 256)
DEFAULT_SEQLENS = (512, 1024, 2048, 4096, 8192, 16384)
DEFAULT_TOKENS = 16 * common.KIBI
MODEL_WIDTH = 2048
DEFAULT_REPEATS = 100
CAUSAL_CHOICES = {"both": (False, True), "no": (False,), "yes": (True,)}
LAYOUTS = ("bshd", "bhsd")
DEFAULT_LAYOUT = "bshd"
QUERY_SIDE_TENSORS = 2
"""Tensors of an input set with the query heads: Q and the output."""
KEY_SIDE_TENSORS = 2
"""Tensors of an input set with the key/value heads: K and V."""
DEFAULT_INPUT_BUDGET_BYTES = 32 * common.GIBI
"""Device memory a case's inputs may take; a case above it is skipped (the peers' own
allocations and the transients of building the inputs come on top)."""

PLAIN = "plain"
ALIBI = "alibi"
SOFTCAP = "softcap"
WINDOW = "window"
MASK = "mask"
GQA = "gqa"
VARIANTS = (PLAIN, ALIBI, SOFTCAP, WINDOW, MASK, GQA)
DEFAULT_VARIANTS = (PLAIN,)
ATTN_MASK_VARIANTS = (ALIBI, MASK)
"""Variants whose torch peers get their modifier as an additive ``attn_mask``."""

ALIBI_SLOPE_EXPONENT = 8
"""ALiBi slopes are ``2 ** (-ALIBI_SLOPE_EXPONENT * (h + 1) / H)`` (Press et al., 2022)."""
SOFTCAP_VALUE = 30.0
WINDOW_LEFT = 1024
WINDOW_RIGHT = 1024
"""Right window bound of a non-causal window case."""
WINDOW_RIGHT_CAUSAL = 0
"""Right window bound of a causal window case: no key after the query."""
GQA_QUERY_HEADS_PER_KV_HEAD = 8
SDPA_ENABLE_GQA_VERSION = (2, 5)
"""First PyTorch release whose SDPA takes ``enable_gqa``."""
SDPA_ENABLE_GQA_RELEASE = ".".join(map(str, SDPA_ENABLE_GQA_VERSION))
SCORE_TENSOR_ELEMENT = "f32"
"""Element of baracuda's mask and ALiBi slopes."""
HIDDEN_SCORE = -math.inf
"""What the torch peers' ``attn_mask`` adds to the scores a causal case hides."""

QUICK_PRESET = {
    "dtypes": ("bf16",),
    "head_dims": (64, 128),
    "seqlens": (1024, 4096),
    "warmup": 3,
    "repeats": 20,
}

TIMING_METHOD = "CUDA events around each call on the legacy default stream"
STATISTIC = "median; p10, p90 and min also recorded"
OUTPUTS = "baracuda: preallocated out=; torch peers: allocated by the call"
FLOPS_FORMULA = "4*B*H*Sq*Sk*D, halved when causal"
FAILED_STATUSES = (common.STATUS_ERROR, common.STATUS_SKIPPED)
VARIANT_SETTINGS = {
    ALIBI: (
        f"baracuda: alibi_slopes {SCORE_TENSOR_ELEMENT} [H], "
        f"2^(-{ALIBI_SLOPE_EXPONENT} (h + 1) / H); torch peers: attn_mask -slope * |i - j| in "
        "the input dtype, [1, H, S, S]"
    ),
    SOFTCAP: f"softcap {SOFTCAP_VALUE:g}; torch peers: unsupported (SDPA has no softcap)",
    WINDOW: (
        f"window ({WINDOW_LEFT}, {WINDOW_RIGHT}), ({WINDOW_LEFT}, {WINDOW_RIGHT_CAUSAL}) when "
        "causal; FLOPs count only the pairs inside it; torch peers: unsupported (SDPA has no "
        "window)"
    ),
    MASK: (
        f"baracuda: mask {SCORE_TENSOR_ELEMENT} [B, H, S, S] randn; torch peers: attn_mask, "
        "the same values in the input dtype"
    ),
    GQA: (
        f"heads_k: the largest divisor of H up to max(1, H // {GQA_QUERY_HEADS_PER_KV_HEAD}); "
        f"torch peers: enable_gqa=True (PyTorch {SDPA_ENABLE_GQA_RELEASE}+, unsupported before)"
    ),
}
"""How each variant other than ``plain`` is set up, as the JSON document records it."""
CAUSAL_ATTN_MASK = (
    "causal cases fold the causal mask into the torch peers' attn_mask (-inf above the "
    "diagonal) and pass is_causal=False: SDPA takes one or the other"
)


# ---------------------------------------------------------------------------------
# Grid
# ---------------------------------------------------------------------------------


class CaseUnsupportedError(Exception):
    """An implementation cannot express a case (its variant); recorded as ``unsupported``."""


@dataclass(frozen=True)
class Case:
    """One problem of the grid: self-attention with ``Sq = Sk = seqlen``, ``Dk = Dv`` and a
    variant of :data:`VARIANTS`."""

    dtype: str
    head_dim: int
    heads: int
    batch: int
    seqlen: int
    causal: bool
    variant: str = PLAIN

    @property
    def heads_k(self) -> int:
        """K/V heads: ``heads``, or for GQA the largest divisor of it up to
        ``max(1, heads // GQA_QUERY_HEADS_PER_KV_HEAD)``."""
        if self.variant != GQA:
            return self.heads
        most = max(1, self.heads // GQA_QUERY_HEADS_PER_KV_HEAD)
        return next(kv_heads for kv_heads in range(most, 0, -1) if self.heads % kv_heads == 0)

    @property
    def window(self) -> tuple[int, int] | None:
        """``(left, right)`` of a window case; None otherwise."""
        if self.variant != WINDOW:
            return None
        return WINDOW_LEFT, WINDOW_RIGHT_CAUSAL if self.causal else WINDOW_RIGHT

    def label(self) -> str:
        """Return a short human-readable name of the case."""
        mask = "causal" if self.causal else "full"
        heads = f"H={self.heads}" + (f" Hk={self.heads_k}" if self.variant == GQA else "")
        sizes = f"D={self.head_dim} {heads} B={self.batch} S={self.seqlen}"
        variant = "" if self.variant == PLAIN else f" {self.variant}"
        return f"{self.dtype} {sizes} {mask}{variant}"


CASE_FIELDS = ("dtype", "head_dim", "heads", "batch", "seqlen", "causal", "variant")
SIZE_FIELDS = ("head_dim", "heads", "batch", "seqlen")
"""The case fields shown as numbers in the table (D, H, B, S)."""


def case_from_record(record: dict[str, Any]) -> Case:
    """Return the case of a JSON case record (one without ``variant`` is ``plain``)."""
    return Case(**{key: record[key] for key in CASE_FIELDS if key in record})


CONFIG_DEFAULTS = {
    "dtypes": DEFAULT_DTYPES,
    "head_dims": DEFAULT_HEAD_DIMS,
    "seqlens": DEFAULT_SEQLENS,
    "variants": DEFAULT_VARIANTS,
    "tokens": DEFAULT_TOKENS,
    "warmup": common.DEFAULT_WARMUP,
    "repeats": DEFAULT_REPEATS,
}
"""The options that ``--quick`` may set, with their defaults."""


@dataclass(frozen=True)
class BenchConfig:
    """Resolved settings of one benchmark run."""

    dtypes: tuple[str, ...] = DEFAULT_DTYPES
    head_dims: tuple[int, ...] = DEFAULT_HEAD_DIMS
    seqlens: tuple[int, ...] = DEFAULT_SEQLENS
    causal: tuple[bool, ...] = CAUSAL_CHOICES["both"]
    tokens: int = DEFAULT_TOKENS
    model_width: int = MODEL_WIDTH
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    layout: str = DEFAULT_LAYOUT
    warmup: int = common.DEFAULT_WARMUP
    repeats: int = DEFAULT_REPEATS
    peers: bool = True
    out: Path | None = None
    input_budget_bytes: int = DEFAULT_INPUT_BUDGET_BYTES


def case_grid(config: BenchConfig) -> list[Case]:
    """Expand a configuration into its cases, in the order they run (the variants of one
    problem adjacent); ``H = model_width // D`` and ``B = tokens // S``, each at least 1."""
    return [
        Case(
            dtype=dtype,
            head_dim=head_dim,
            heads=max(1, config.model_width // head_dim),
            batch=max(1, config.tokens // seqlen),
            seqlen=seqlen,
            causal=causal,
            variant=variant,
        )
        for dtype in config.dtypes
        for head_dim in config.head_dims
        for seqlen in config.seqlens
        for causal in config.causal
        for variant in config.variants
    ]


def _pairs_beyond(bound: int, seqlen: int) -> int:
    """Return the (query, key) pairs of ``seqlen`` positions more than ``bound`` apart on one
    side (``i - j > bound``)."""
    apart = max(0, seqlen - bound - 1)
    return apart * (apart + 1) // 2


def flops(case: Case) -> int:
    """Return the forward-pass FLOPs of a case: ``4*B*H*Sq*Sk*D``, halved when causal.

    A window case counts only the pairs inside the window: ``4*B*H*D`` times the pairs
    beyond it is taken off.
    """
    per_pair = 4 * case.batch * case.heads * case.head_dim
    total = per_pair * case.seqlen * case.seqlen
    total = total // 2 if case.causal else total
    if case.window is not None:
        left, right = case.window
        outside = _pairs_beyond(left, case.seqlen)
        if not case.causal:
            outside += _pairs_beyond(right, case.seqlen)
        total -= per_pair * outside
    return total


@dataclass(frozen=True)
class InputFootprint:
    """The input sets a case rotates over and their bytes (score tensors included);
    ``shared_score_inputs``: the score tensors alone exceed the L2 span, so one copy is
    shared by every set."""

    set_count: int
    shared_score_inputs: bool
    total_bytes: int


def _qkv_bytes(case: Case) -> int:
    """Return the bytes of one set's Q, K, V and output."""
    per_head = case.batch * case.seqlen * case.head_dim * common.ITEM_BYTES[case.dtype]
    return per_head * (QUERY_SIDE_TENSORS * case.heads + KEY_SIDE_TENSORS * case.heads_k)


def _score_bytes(case: Case, *, peers: bool) -> int:
    """Return the bytes of one copy of the variant's score tensors (see :func:`score_inputs`)."""
    mask_item = common.ITEM_BYTES[SCORE_TENSOR_ELEMENT]
    peer_item = common.ITEM_BYTES[case.dtype] if peers else 0
    head_scores = case.heads * case.seqlen * case.seqlen
    if case.variant == ALIBI:
        return case.heads * mask_item + head_scores * peer_item
    if case.variant == MASK:
        peer_item = 0 if _peers_share_the_mask(case) else peer_item
        return case.batch * head_scores * (mask_item + peer_item)
    return 0


def input_footprint(case: Case, l2_cache_bytes: int, *, peers: bool = False) -> InputFootprint:
    """Return the input sets of a case, together over the L2 span, and their bytes
    (``peers``: the torch peers run and need their own ``attn_mask``)."""
    qkv_bytes = _qkv_bytes(case)
    score_bytes = _score_bytes(case, peers=peers)
    if score_bytes > common.l2_span_bytes(l2_cache_bytes):
        count = common.sets_to_exceed_l2(qkv_bytes, l2_cache_bytes)
        return InputFootprint(count, True, count * qkv_bytes + score_bytes)
    count = common.sets_to_exceed_l2(qkv_bytes + score_bytes, l2_cache_bytes)
    return InputFootprint(count, False, count * (qkv_bytes + score_bytes))


@dataclass(frozen=True)
class FlashInputSet(common.InputSet):
    """Q, K, V, an output and the variant's tensors: baracuda's f32 ``alibi_slopes`` and
    ``mask``, the torch peers' ``attn_mask`` in the input dtype (None where absent)."""

    alibi_slopes: Any = None
    mask: Any = None
    attn_mask: Any = None


def alibi_slopes(heads: int) -> np.ndarray:
    """Return the geometric ALiBi slopes ``2 ** (-ALIBI_SLOPE_EXPONENT * (h + 1) / heads)``,
    f32 ``[heads]``."""
    exponents = -ALIBI_SLOPE_EXPONENT * np.arange(1, heads + 1) / heads
    return np.exp2(exponents).astype(np.float32)


def _peers_share_the_mask(case: Case) -> bool:
    """Whether the torch peers take baracuda's mask itself (f32 inputs, nothing folded in)."""
    return case.dtype == SCORE_TENSOR_ELEMENT and not case.causal


def score_inputs(case: Case, arrays: Any, *, peers: bool) -> dict[str, Any]:
    """Return one copy of the variant's score tensors, as :class:`FlashInputSet` keywords.

    ``alibi``: the slopes and, with ``peers``, the bias ``-slope * |i - j|`` ``[1, H, S, S]``
    in the input dtype; ``mask``: a random f32 ``[B, H, S, S]`` mask and, with ``peers``, the
    same values in the input dtype. A causal case's peer mask also hides the later keys
    (``-inf``): SDPA refuses an ``attn_mask`` with ``is_causal``.
    """
    if case.variant == ALIBI:
        return _alibi_inputs(case, arrays, peers=peers)
    if case.variant == MASK:
        return _mask_inputs(case, arrays, peers=peers)
    return {}


def _key_offsets(seqlen: int, arrays: Any) -> Any:
    """Return ``j - i`` for query ``i`` and key ``j``, f32 ``[S, S]`` on the device."""
    positions = arrays.asarray(np.arange(seqlen, dtype=np.float32))
    return positions[None, :] - positions[:, None]


def _hide_future_keys(attn_mask: Any, offsets: Any, arrays: Any) -> None:
    """Add ``HIDDEN_SCORE`` to the scores of the keys after each query, in place."""
    attn_mask += arrays.where(offsets > 0, HIDDEN_SCORE, 0.0)


def _alibi_inputs(case: Case, arrays: Any, *, peers: bool) -> dict[str, Any]:
    slopes = alibi_slopes(case.heads)
    inputs: dict[str, Any] = {"alibi_slopes": arrays.asarray(slopes)}
    if not peers:
        return inputs
    offsets = _key_offsets(case.seqlen, arrays)
    distances = abs(offsets)
    attn_mask = arrays.empty((1, case.heads, case.seqlen, case.seqlen), case.dtype)
    for head, slope in enumerate(slopes.tolist()):
        attn_mask[0, head] = distances * -slope
    if case.causal:
        _hide_future_keys(attn_mask, offsets, arrays)
    return {**inputs, "attn_mask": attn_mask}


def _mask_inputs(case: Case, arrays: Any, *, peers: bool) -> dict[str, Any]:
    shape = (case.batch, case.heads, case.seqlen, case.seqlen)
    mask = arrays.randn(shape, SCORE_TENSOR_ELEMENT)
    if not peers:
        return {"mask": mask}
    if _peers_share_the_mask(case):
        return {"mask": mask, "attn_mask": mask}
    attn_mask = arrays.empty(shape, case.dtype)
    attn_mask[...] = mask
    if case.causal:
        _hide_future_keys(attn_mask, _key_offsets(case.seqlen, arrays), arrays)
    return {"mask": mask, "attn_mask": attn_mask}


def make_inputs(
    case: Case,
    count: int,
    arrays: Any,
    *,
    layout: str = DEFAULT_LAYOUT,
    peers: bool = False,
    shared_score_inputs: bool = False,
) -> list[FlashInputSet]:
    """Allocate ``count`` sets of random Q/K/V (K/V with ``case.heads_k`` heads), an output
    and score tensors (:func:`score_inputs`; one copy for all with ``shared_score_inputs``).

    ``layout="bshd"`` stores ``[B, S, H, D]`` and passes the ``[B, H, S, D]`` view;
    ``"bhsd"`` stores ``[B, H, S, D]``.
    """

    def tensor(make: Callable[[tuple[int, ...], str], Any], heads: int) -> Any:
        if layout == "bshd":
            shape = (case.batch, case.seqlen, heads, case.head_dim)
            return make(shape, case.dtype).swapaxes(1, 2)
        return make((case.batch, heads, case.seqlen, case.head_dim), case.dtype)

    shared = score_inputs(case, arrays, peers=peers) if shared_score_inputs else None
    return [
        FlashInputSet(
            q=tensor(arrays.randn, case.heads),
            k=tensor(arrays.randn, case.heads_k),
            v=tensor(arrays.randn, case.heads_k),
            out=tensor(arrays.empty, case.heads),
            **(shared if shared is not None else score_inputs(case, arrays, peers=peers)),
        )
        for _ in range(count)
    ]


# ---------------------------------------------------------------------------------
# Implementations under test
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Implementation:
    """An attention implementation the harness times: its JSON key and table heading,
    ``bind(case, sets)`` returning ``fn(i)`` on input set ``i`` (or raising
    :class:`CaseUnsupportedError`), whether it is a peer, ``is_unsupported(exc)`` for a
    first-call exception, and the context the calls run in."""

    name: str
    label: str
    bind: Callable[[Case, list[FlashInputSet]], Callable[[int], object]]
    is_peer: bool
    is_unsupported: Callable[[BaseException], bool]
    context: Callable[[], AbstractContextManager[Any]] = field(default=contextlib.nullcontext)


def score_options(case: Case) -> dict[str, Any]:
    """Return the score arguments of :func:`baracuda.flash_attention` that a case's variant
    sets, other than its tensors: ``softcap`` or ``window``."""
    if case.variant == SOFTCAP:
        return {"softcap": SOFTCAP_VALUE}
    if case.window is not None:
        return {"window": case.window}
    return {}


def baracuda_implementation(baracuda: Any) -> Implementation:
    """Return :func:`baracuda.flash_attention` with preallocated outputs."""

    def bind(case: Case, sets: list[FlashInputSet]) -> Callable[[int], object]:
        options = score_options(case)

        def call(index: int) -> object:
            inputs = sets[index]
            return baracuda.flash_attention(
                inputs.q,
                inputs.k,
                inputs.v,
                causal=case.causal,
                alibi_slopes=inputs.alibi_slopes,
                mask=inputs.mask,
                out=inputs.out,
                **options,
            )

        return call

    return Implementation(
        name="baracuda",
        label="baracuda",
        bind=bind,
        is_peer=False,
        is_unsupported=lambda exc: isinstance(exc, baracuda.UnsupportedError),
    )


def _version_at_least(version: str, minimum: tuple[int, ...]) -> bool:
    """Tell whether a version such as ``"2.5.1+cu124"`` is at least ``minimum``."""
    parts = tuple(int(part) for part in re.findall(r"\d+", version)[: len(minimum)])
    return parts >= minimum


def torch_peer_refusal(case: Case, *, enable_gqa: bool) -> str | None:
    """Return why the torch peers cannot express a case (None when they can); ``enable_gqa``
    tells whether this PyTorch's SDPA takes it."""
    if case.variant == SOFTCAP:
        return "torch SDPA has no softcap"
    if case.variant == WINDOW:
        return "torch SDPA has no sliding window"
    if case.variant == GQA and not enable_gqa:
        return f"this torch SDPA has no enable_gqa (PyTorch {SDPA_ENABLE_GQA_RELEASE}+)"
    return None


def torch_sdpa_implementations(
    torch: Any, *, variants: Sequence[str] = DEFAULT_VARIANTS
) -> list[Implementation]:
    """Return PyTorch SDPA forced to its FlashAttention and to its cuDNN backend.

    With a variant of ``ATTN_MASK_VARIANTS`` in ``variants``, SDPA forced to its
    memory-efficient backend too (FlashAttention takes no ``attn_mask``). A case's modifier
    reaches SDPA as the set's ``attn_mask``, causal folded in; GQA as ``enable_gqa=True``.

    Returns an empty list when this PyTorch lacks ``torch.nn.attention.sdpa_kernel``.
    """
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        return []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    enable_gqa = _version_at_least(torch.__version__, SDPA_ENABLE_GQA_VERSION)

    def bind(case: Case, sets: list[FlashInputSet]) -> Callable[[int], object]:
        refusal = torch_peer_refusal(case, enable_gqa=enable_gqa)
        if refusal is not None:
            raise CaseUnsupportedError(refusal)
        options = {"enable_gqa": True} if case.variant == GQA else {}
        is_causal = case.causal and case.variant not in ATTN_MASK_VARIANTS

        def call(index: int) -> object:
            inputs = sets[index]
            return sdpa(
                inputs.q,
                inputs.k,
                inputs.v,
                attn_mask=inputs.attn_mask,
                is_causal=is_causal,
                **options,
            )

        return call

    def peer(name: str, label: str, backend: Any) -> Implementation:
        return Implementation(
            name=name,
            label=label,
            bind=bind,
            is_peer=True,
            is_unsupported=common.is_torch_unsupported,
            context=lambda: sdpa_kernel(backend),
        )

    peers = [
        peer("torch_flash", "torch flash", SDPBackend.FLASH_ATTENTION),
        peer("torch_cudnn", "torch cudnn", SDPBackend.CUDNN_ATTENTION),
    ]
    if any(variant in ATTN_MASK_VARIANTS for variant in variants):
        peers.append(peer("torch_efficient", "torch efficient", SDPBackend.EFFICIENT_ATTENTION))
    return peers


def _failure(
    status: str, exc: BaseException, caught: Sequence[warnings.WarningMessage]
) -> dict[str, Any]:
    record: dict[str, Any] = {"status": status, "error": f"{type(exc).__name__}: {exc}"}
    reasons = list(dict.fromkeys(str(item.message) for item in caught))
    if reasons:
        record["warnings"] = reasons
    return record


def measure(
    implementation: Implementation,
    case: Case,
    sets: list[FlashInputSet],
    *,
    timer: Any,
    warmup: int,
    repeats: int,
) -> dict[str, Any]:
    """Time one implementation on one case, returning :func:`baracuda._bench_common.summarize`'s
    record or ``{"status", "error"[, "warnings"]}`` (never raising).

    An exception in the first call (alone, synchronised) is ``unsupported`` or ``error`` as
    the implementation classifies it; one while timing is an ``error``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with implementation.context():
            try:
                fn = implementation.bind(case, sets)
                fn(0)
                timer.synchronize()
            except Exception as exc:
                refused = isinstance(exc, CaseUnsupportedError)
                unsupported = refused or implementation.is_unsupported(exc)
                status = common.STATUS_UNSUPPORTED if unsupported else common.STATUS_ERROR
                return _failure(status, exc, caught)
            try:
                samples = common.time_calls(
                    fn, len(sets), timer=timer, warmup=warmup, repeats=repeats
                )
            except Exception as exc:
                return _failure(common.STATUS_ERROR, exc, caught)
    return common.summarize(samples, flops(case))


def baracuda_plan_info(baracuda: Any, case: Case) -> dict[str, Any]:
    """Return the backend and kernel SKU that baracuda's plan selection picks for a case.

    The descriptor holds the case's softcap and window; masks, slopes and K/V heads are
    not part of it.
    """
    options = score_options(case)
    left, right = options.pop("window", (None, None))
    descriptor = baracuda.FlashSdpaDescriptor(
        case.batch,
        case.heads,
        case.seqlen,
        case.seqlen,
        case.head_dim,
        is_causal=case.causal,
        element=case.dtype,
        window_size_left=left,
        window_size_right=right,
        **options,
    )
    return common.flash_plan_info(baracuda, descriptor)


def speedup_vs_best_peer(
    results: dict[str, dict[str, Any]], implementations: Sequence[Implementation]
) -> tuple[str | None, float | None]:
    """Return the fastest peer and its median over baracuda's (above 1: baracuda is faster).

    Returns ``(None, None)`` when baracuda or every peer failed the case.
    """
    timed_peers = [
        (results[item.name]["median_ms"], item.name)
        for item in implementations
        if item.is_peer and results.get(item.name, {}).get("status") == common.STATUS_OK
    ]
    ours = results.get("baracuda", {})
    if ours.get("status") != common.STATUS_OK or not timed_peers:
        return None, None
    best_ms, best_name = min(timed_peers)
    return best_name, best_ms / ours["median_ms"]


def run_case(
    case: Case,
    implementations: Sequence[Implementation],
    *,
    arrays: Any,
    timer: Any,
    config: BenchConfig,
    l2_cache_bytes: int,
    plan_info: Callable[[Case], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Allocate a case's inputs, time every implementation on them and return its JSON
    record; inputs over ``config.input_budget_bytes`` are not allocated (all ``skipped``)."""
    peers = any(item.is_peer for item in implementations)
    footprint = input_footprint(case, l2_cache_bytes, peers=peers)
    record: dict[str, Any] = {key: getattr(case, key) for key in CASE_FIELDS}
    if case.variant == GQA:
        record["heads_k"] = case.heads_k
    record.update(flops=flops(case), input_sets=footprint.set_count)
    if plan_info is not None:
        record["baracuda_plan"] = plan_info(case)

    def skip(reason: str) -> None:
        skipped = {"status": common.STATUS_SKIPPED, "error": reason}
        record["results"] = {item.name: dict(skipped) for item in implementations}

    if footprint.total_bytes > config.input_budget_bytes:
        skip(
            f"inputs would take {footprint.total_bytes / common.GIBI:.2f} GiB, over the "
            f"{config.input_budget_bytes / common.GIBI:.2f} GiB input budget"
        )
        return _with_best_peer(record, implementations)
    try:
        sets = make_inputs(
            case,
            footprint.set_count,
            arrays,
            layout=config.layout,
            peers=peers,
            shared_score_inputs=footprint.shared_score_inputs,
        )
    except common.HarnessUnsupportedError as exc:
        skip(str(exc))
    else:
        record["results"] = {
            item.name: measure(
                item, case, sets, timer=timer, warmup=config.warmup, repeats=config.repeats
            )
            for item in implementations
        }
        del sets
        arrays.release()
    return _with_best_peer(record, implementations)


def _with_best_peer(
    record: dict[str, Any], implementations: Sequence[Implementation]
) -> dict[str, Any]:
    record["best_peer"], record["speedup_vs_best_peer"] = speedup_vs_best_peer(
        record["results"], implementations
    )
    return record


def _progress_line(
    index: int, total: int, case: Case, record: dict[str, Any], elapsed_s: float
) -> str:
    results = ", ".join(
        f"{name} {result['median_ms']:.3f} ms"
        if result["status"] == common.STATUS_OK
        else f"{name} {result['status']}"
        for name, result in record["results"].items()
    )
    return common.progress_line(index, total, case.label(), results, elapsed_s)


def run_benchmark(
    config: BenchConfig,
    document: dict[str, Any],
    implementations: Sequence[Implementation],
    *,
    arrays: Any,
    timer: Any,
    l2_cache_bytes: int,
    plan_info: Callable[[Case], dict[str, Any]] | None = None,
    progress: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Run every case of the grid, appending records to ``document["cases"]`` and progress
    lines to ``progress`` (default: the standard error); Ctrl-C keeps the cases so far,
    ``document["complete"]`` tells whether the grid finished. Returns ``document``."""
    progress = sys.stderr if progress is None else progress
    cases = case_grid(config)
    started = clock()
    try:
        for index, case in enumerate(cases, start=1):
            record = run_case(
                case,
                implementations,
                arrays=arrays,
                timer=timer,
                config=config,
                l2_cache_bytes=l2_cache_bytes,
                plan_info=plan_info,
            )
            document["cases"].append(record)
            line = _progress_line(index, len(cases), case, record, clock() - started)
            print(line, file=progress, flush=True)
    except KeyboardInterrupt:
        print(f"interrupted after {len(document['cases'])} of {len(cases)} cases", file=progress)
        return document
    document["complete"] = True
    return document


# ---------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------


def _variant_settings(variants: Sequence[str]) -> dict[str, str]:
    """Return how the variants of a grid are set up (``VARIANT_SETTINGS``), with the causal
    folding of the torch peers' ``attn_mask`` where a variant has one."""
    settings = {variant: VARIANT_SETTINGS[variant] for variant in variants if variant != PLAIN}
    if any(variant in ATTN_MASK_VARIANTS for variant in variants):
        settings["causal_attn_mask"] = CAUSAL_ATTN_MASK
    return settings


def build_document(
    config: BenchConfig,
    gpu: common.GpuInfo,
    *,
    software: dict[str, Any],
    timer_method: str,
    arrays_name: str,
    implementations: Sequence[Implementation],
    now: datetime.datetime,
) -> dict[str, Any]:
    """Return the JSON document's metadata with an empty ``cases`` list."""
    return {
        **common.document_header(SCHEMA, gpu=gpu, software=software, now=now),
        "timing": {
            "method": TIMING_METHOD,
            "events": timer_method,
            "arrays": arrays_name,
            "warmup": config.warmup,
            "repeats": config.repeats,
            "statistic": STATISTIC,
            "input_rotation": common.input_rotation(),
            "outputs": OUTPUTS,
        },
        "grid": {
            "dtypes": list(config.dtypes),
            "head_dims": list(config.head_dims),
            "seqlens": list(config.seqlens),
            "causal": list(config.causal),
            "tokens": config.tokens,
            "model_width": config.model_width,
            "layout": config.layout,
            "flops": FLOPS_FORMULA,
            "variants": list(config.variants),
            "variant_settings": _variant_settings(config.variants),
        },
        "implementations": [
            {"name": item.name, "label": item.label, "peer": item.is_peer}
            for item in implementations
        ],
        "cases": [],
    }


def format_table(document: dict[str, Any]) -> str:
    """Return the results as a fixed-width text table, one row per case.

    Times are medians in milliseconds; ``speedup`` is the best peer's median over
    baracuda's (above 1: baracuda is faster). A ``variant`` column follows ``causal`` when
    the grid has variants other than ``plain``.
    """
    implementations = document["implementations"]
    has_peers = any(item["peer"] for item in implementations)
    has_variants = document["grid"].get("variants", list(DEFAULT_VARIANTS)) != [PLAIN]
    headers = ["dtype", "D", "H", "B", "S", "causal"]
    headers += ["variant"] if has_variants else []
    for item in implementations:
        headers += [f"{item['label']} ms", "TFLOP/s"]
    headers += ["speedup"] if has_peers else []
    rows = []
    for case in document["cases"]:
        row = [case["dtype"], *(str(case[key]) for key in SIZE_FIELDS)]
        row.append("yes" if case["causal"] else "no")
        if has_variants:
            row.append(case.get("variant", PLAIN))
        for item in implementations:
            row += common.result_cells(case["results"].get(item["name"]), failed_tflops="")
        if has_peers:
            speedup = case["speedup_vs_best_peer"]
            row.append("-" if speedup is None else f"{speedup:.2f}x")
        rows.append(row)
    return common.render_table(headers, rows)


def print_table(document: dict[str, Any], stream: TextIO | None = None) -> None:
    """Print :func:`format_table` and the messages of the failures (to standard output)."""
    stream = sys.stdout if stream is None else stream
    print(format_table(document), file=stream)
    for case in document["cases"]:
        label = case_from_record(case).label()
        for name, result in case["results"].items():
            if result["status"] in FAILED_STATUSES:
                print(f"{name} {result['status']} on {label}: {result['error']}", file=stream)


# ---------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------


def add_flash_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``python -m baracuda bench flash`` to ``parser``."""
    dtypes = f"{','.join(common.ALL_DTYPES)} (default {','.join(DEFAULT_DTYPES)})"
    common.add_options(
        parser,
        {
            "--dtypes": (common.dtype_list, f"comma-separated dtypes from {dtypes}"),
            "--head-dims": (
                common.size_list,
                f"comma-separated head dims (default {','.join(map(str, DEFAULT_HEAD_DIMS))})",
            ),
            "--seqlens": (
                common.size_list,
                "comma-separated sequence lengths, k suffix allowed (default 512,1k,2k,4k,8k,16k)",
            ),
        },
    )
    parser.add_argument(
        "--causal",
        choices=tuple(CAUSAL_CHOICES),
        default="both",
        help="causal cases, non-causal cases or both (default both)",
    )
    common.add_options(
        parser,
        {
            "--variants": (
                common.choice_list(VARIANTS, noun="variant"),
                f"comma-separated variants of each case from {','.join(VARIANTS)}: score "
                f"modifiers (ALiBi, softcap {SOFTCAP_VALUE:g}, window {WINDOW_LEFT}, "
                f"{SCORE_TENSOR_ELEMENT} mask [B,H,S,S]) or GQA with H/"
                f"{GQA_QUERY_HEADS_PER_KV_HEAD} K/V heads (default {','.join(DEFAULT_VARIANTS)})",
            ),
            "--tokens": (
                common.size,
                "tokens per call, B*S; the batch is tokens // S "
                f"(default {DEFAULT_TOKENS // common.KIBI}k)",
            ),
        },
    )
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default=DEFAULT_LAYOUT,
        help=(
            "memory layout of Q/K/V/out: [B,S,H,D] passed as a [B,H,S,D] view, or [B,H,S,D] "
            "(default bshd)"
        ),
    )
    common.add_options(
        parser,
        {
            "--warmup": (
                common.count,
                f"untimed calls per measurement (default {common.DEFAULT_WARMUP})",
            ),
            "--repeats": (common.size, f"timed calls per measurement (default {DEFAULT_REPEATS})"),
            "--out": (
                Path,
                "JSON output path (default benchmarks/results/<gpu>-<yyyy-mm-dd>-flash.json)",
            ),
        },
    )
    common.add_preset_options(
        parser,
        quick=f"a small grid for a smoke run ({common.describe_preset(QUICK_PRESET)})",
        no_peers="time baracuda only, not PyTorch SDPA",
    )


def resolve_config(args: argparse.Namespace) -> BenchConfig:
    """Merge parsed options, the ``--quick`` preset and the defaults (in that priority)."""
    return BenchConfig(
        **common.resolve_options(args, CONFIG_DEFAULTS, QUICK_PRESET),
        causal=CAUSAL_CHOICES[args.causal],
        layout=args.layout,
        peers=not args.no_peers,
        out=args.out,
    )


def run_flash(args: argparse.Namespace) -> int:
    """Entry point of ``python -m baracuda bench flash``: 0 after a run or without a GPU,
    1 when a required package is missing."""
    config = resolve_config(args)
    gpu = common.probe_gpu()
    if not gpu.present:
        return common.no_gpu_exit(PROGRAM, gpu)
    libraries = common.import_libraries(PROGRAM)
    if libraries is None:
        return common.MISSING_DEPENDENCY_EXIT
    import baracuda

    torch = libraries.torch
    arrays, timer = libraries.arrays_and_timer()
    implementations = [baracuda_implementation(baracuda)]
    if config.peers and torch is not None:
        implementations += torch_sdpa_implementations(torch, variants=config.variants)

    now = datetime.datetime.now().astimezone()
    document = build_document(
        config,
        gpu,
        software=common.software_versions(baracuda=baracuda, torch=torch, cupy=libraries.cupy),
        timer_method=libraries.events_name,
        arrays_name=libraries.arrays_name,
        implementations=implementations,
        now=now,
    )
    print(f"{PROGRAM}: {len(case_grid(config))} cases on {gpu.name}", file=sys.stderr)
    run_benchmark(
        config,
        document,
        implementations,
        arrays=arrays,
        timer=timer,
        l2_cache_bytes=gpu.l2_cache_bytes,
        plan_info=lambda case: baracuda_plan_info(baracuda, case),
    )
    print_table(document)
    out = config.out or common.default_output_path(gpu.name, now.date())
    print(f"results written to {common.write_json(out, document)}")
    return 0
