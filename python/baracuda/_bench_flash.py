"""Benchmark of :func:`baracuda.flash_attention` (``python -m baracuda bench [flash]``).

The forward pass over a grid of problems (fixed tokens ``B * S`` and model width ``H * D``),
each as one or more :data:`VARIANTS`, against PyTorch SDPA forced to its FlashAttention,
cuDNN and (for variants with an ``attn_mask``) memory-efficient backend in the same run.
``benchmarks/README.md`` describes the method and the JSON document.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import math
import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from baracuda import _bench_common as common

SCHEMA = "baracuda-bench-flash/2"
PROGRAM = "baracuda bench"
TARGET = "flash"
MODEL_WIDTH = 2048
CAUSAL_CHOICES = {"both": (False, True), "no": (False,), "yes": (True,)}
LAYOUTS = ("bshd", "bhsd")
DEFAULT_INPUT_BUDGET_BYTES = 32 * common.GIBI
"""Device memory a case's inputs may take; a case above it is skipped."""

VARIANTS = ("plain", "alibi", "softcap", "window", "mask", "gqa")
PLAIN, ALIBI, SOFTCAP, WINDOW, MASK, GQA = VARIANTS
ATTN_MASK_VARIANTS = (ALIBI, MASK)
"""Variants whose torch peers get their modifier as an additive ``attn_mask``."""
ALIBI_SLOPE_EXPONENT = 8
"""ALiBi slopes are ``2 ** (-ALIBI_SLOPE_EXPONENT * (h + 1) / H)`` (Press et al., 2022)."""
SOFTCAP_VALUE = 30.0
WINDOW_LEFT, WINDOW_RIGHT, WINDOW_RIGHT_CAUSAL = 1024, 1024, 0
GQA_QUERY_HEADS_PER_KV_HEAD = 8
SDPA_ENABLE_GQA_VERSION = (2, 5)
"""First PyTorch release whose SDPA takes ``enable_gqa``."""
SCORE_ELEMENT = "f32"
"""Element of baracuda's mask and ALiBi slopes."""

QUICK_PRESET = {"dtypes": ("bf16",), "head_dims": (64, 128), "seqlens": (1024, 4096)}
QUICK_PRESET.update(warmup=3, repeats=20)
TIMING = {
    "method": "CUDA events around each call on the legacy default stream",
    "statistic": "median; p10, p90 and min also recorded",
    "outputs": "baracuda: preallocated out=; torch peers: allocated by the call",
}
FLOPS_FORMULA = "4*B*H*Sq*Sk*D, halved when causal"
VARIANT_SETTINGS = {
    ALIBI: (
        f"baracuda: alibi_slopes {SCORE_ELEMENT} [H], 2^(-{ALIBI_SLOPE_EXPONENT} (h + 1) / H); "
        "torch peers: attn_mask -slope * |i - j| in the input dtype, [1, H, S, S]"
    ),
    SOFTCAP: f"softcap {SOFTCAP_VALUE:g}; torch peers: unsupported (SDPA has no softcap)",
    WINDOW: (
        f"window ({WINDOW_LEFT}, {WINDOW_RIGHT}), ({WINDOW_LEFT}, {WINDOW_RIGHT_CAUSAL}) when "
        "causal; FLOPs count only the pairs inside it; torch peers: unsupported (SDPA has no "
        "window)"
    ),
    MASK: (
        f"baracuda: mask {SCORE_ELEMENT} [B, H, S, S] randn; torch peers: attn_mask, the same "
        "values in the input dtype"
    ),
    GQA: (
        f"heads_k: the largest divisor of H up to max(1, H // {GQA_QUERY_HEADS_PER_KV_HEAD}); "
        "torch peers: enable_gqa=True (PyTorch 2.5+, unsupported before)"
    ),
    "causal_attn_mask": (
        "causal cases fold the causal mask into the torch peers' attn_mask (-inf above the "
        "diagonal) and pass is_causal=False: SDPA takes one or the other"
    ),
}
"""How each variant other than ``plain`` is set up, as the JSON document records it."""


class CaseUnsupportedError(Exception):
    """An implementation cannot express a case (its variant); recorded as ``unsupported``."""


@dataclasses.dataclass(frozen=True)
class Case:
    """One problem of the grid: self-attention with ``Sq = Sk = seqlen``, ``Dk = Dv``."""

    dtype: str
    head_dim: int
    heads: int
    batch: int
    seqlen: int
    causal: bool
    variant: str = PLAIN

    @property
    def heads_k(self) -> int:
        """K/V heads: ``heads``, for GQA the largest divisor of it up to
        ``max(1, heads // GQA_QUERY_HEADS_PER_KV_HEAD)``."""
        most = max(1, self.heads // GQA_QUERY_HEADS_PER_KV_HEAD) if self.variant == GQA else 0
        return next((kv for kv in range(most, 0, -1) if self.heads % kv == 0), self.heads)

    @property
    def window(self) -> tuple[int, int] | None:
        """``(left, right)`` of a window case; None otherwise."""
        right = WINDOW_RIGHT_CAUSAL if self.causal else WINDOW_RIGHT
        return (WINDOW_LEFT, right) if self.variant == WINDOW else None

    def label(self) -> str:
        """Return a short human-readable name of the case."""
        heads = f"H={self.heads}" + (f" Hk={self.heads_k}" if self.variant == GQA else "")
        variant = "" if self.variant == PLAIN else f" {self.variant}"
        mask = "causal" if self.causal else "full"
        return (
            f"{self.dtype} D={self.head_dim} {heads} B={self.batch} S={self.seqlen} {mask}{variant}"
        )


CASE_FIELDS = tuple(field.name for field in dataclasses.fields(Case))


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Resolved settings of one benchmark run."""

    dtypes: tuple[str, ...] = ("bf16", "f16", "f32")
    head_dims: tuple[int, ...] = (64, 128, 256)
    seqlens: tuple[int, ...] = (512, 1024, 2048, 4096, 8192, 16384)
    causal: tuple[bool, ...] = CAUSAL_CHOICES["both"]
    tokens: int = 16 * common.KIBI
    model_width: int = MODEL_WIDTH
    variants: tuple[str, ...] = (PLAIN,)
    layout: str = "bshd"
    warmup: int = common.DEFAULT_WARMUP
    repeats: int = 100
    peers: bool = True
    out: Path | None = None
    input_budget_bytes: int = DEFAULT_INPUT_BUDGET_BYTES


DEFAULTS = BenchConfig()


def case_grid(config: BenchConfig) -> list[Case]:
    """Expand a configuration into its cases, in the order they run (the variants of one
    problem adjacent); ``H = model_width // D`` and ``B = tokens // S``, each at least 1."""
    return [
        Case(
            dtype,
            head_dim,
            max(1, config.model_width // head_dim),
            max(1, config.tokens // seqlen),
            seqlen,
            causal,
            variant,
        )
        for dtype in config.dtypes
        for head_dim in config.head_dims
        for seqlen in config.seqlens
        for causal in config.causal
        for variant in config.variants
    ]


def flops(case: Case) -> int:
    """Return the forward FLOPs ``4*B*H*Sq*Sk*D``, halved when causal; a window case counts
    only the pairs inside the window."""
    per_pair = 4 * case.batch * case.heads * case.head_dim
    total = common.attention_flops(
        case.batch, case.heads, case.seqlen, case.head_dim, causal=case.causal
    )
    bounds = () if case.window is None else case.window[: 1 if case.causal else 2]
    for bound in bounds:  # the pairs more than ``bound`` apart on one side
        apart = max(0, case.seqlen - bound - 1)
        total -= per_pair * apart * (apart + 1) // 2
    return total


@dataclasses.dataclass(frozen=True)
class InputFootprint:
    """The input sets a case rotates over and their bytes; ``shared_score_inputs``: the score
    tensors alone exceed the L2 span, so one copy serves every set."""

    set_count: int
    shared_score_inputs: bool
    total_bytes: int


def _peers_share_the_mask(case: Case) -> bool:
    """Whether the torch peers take baracuda's mask itself (f32 inputs, nothing folded in)."""
    return case.dtype == SCORE_ELEMENT and not case.causal


def input_footprint(case: Case, l2_cache_bytes: int, *, peers: bool = False) -> InputFootprint:
    """Return the input sets of a case, together over the L2 span, and their bytes (Q, K, V,
    the output and the score tensors; ``peers``: with the torch peers' ``attn_mask``)."""
    per_head = case.batch * case.seqlen * case.head_dim * common.ITEM_BYTES[case.dtype]
    qkv_bytes = per_head * 2 * (case.heads + case.heads_k)
    score_item = common.ITEM_BYTES[SCORE_ELEMENT]
    peer_item = common.ITEM_BYTES[case.dtype] if peers else 0
    head_scores = case.heads * case.seqlen**2
    score_bytes = {
        ALIBI: case.heads * score_item + head_scores * peer_item,
        MASK: case.batch
        * head_scores
        * (score_item + (0 if _peers_share_the_mask(case) else peer_item)),
    }.get(case.variant, 0)
    if score_bytes > common.l2_span_bytes(l2_cache_bytes):
        count = common.sets_to_exceed_l2(qkv_bytes, l2_cache_bytes)
        return InputFootprint(count, True, count * qkv_bytes + score_bytes)
    count = common.sets_to_exceed_l2(qkv_bytes + score_bytes, l2_cache_bytes)
    return InputFootprint(count, False, count * (qkv_bytes + score_bytes))


@dataclasses.dataclass(frozen=True)
class InputSet:
    """Q, K, V, the output and the variant's tensors: baracuda's f32 ``alibi_slopes`` and
    ``mask``, the torch peers' ``attn_mask`` in the input dtype (None where absent)."""

    q: Any
    k: Any
    v: Any
    out: Any
    alibi_slopes: Any = None
    mask: Any = None
    attn_mask: Any = None


def alibi_slopes(heads: int) -> np.ndarray:
    """Return the ALiBi slopes ``2 ** (-ALIBI_SLOPE_EXPONENT * (h + 1) / heads)``, f32."""
    return np.exp2(-ALIBI_SLOPE_EXPONENT * np.arange(1, heads + 1) / heads).astype(np.float32)


def score_inputs(case: Case, arrays: common.TorchArrays, *, peers: bool) -> dict[str, Any]:
    """Return one copy of the variant's score tensors, as :class:`InputSet` keywords.

    ``alibi``: the slopes and, with ``peers``, the bias ``-slope * |i - j|`` ``[1, H, S, S]``
    in the input dtype; ``mask``: a random f32 ``[B, H, S, S]`` mask and, with ``peers``, the
    same values in the input dtype. A causal case's peer mask is also ``-inf`` above the
    diagonal: SDPA refuses an ``attn_mask`` with ``is_causal``.
    """
    torch, shape = arrays.torch, (case.batch, case.heads, case.seqlen, case.seqlen)
    if case.variant == ALIBI:
        slopes = alibi_slopes(case.heads)
        inputs = {"alibi_slopes": torch.as_tensor(slopes, device=arrays.device)}
        attn_mask = arrays.empty((1, *shape[1:]), case.dtype) if peers else None
    elif case.variant == MASK:
        inputs = {"mask": arrays.randn(shape, SCORE_ELEMENT)}
        if peers and _peers_share_the_mask(case):
            return {**inputs, "attn_mask": inputs["mask"]}
        attn_mask = inputs["mask"].to(arrays.dtype(case.dtype), copy=True) if peers else None
    else:
        return {}
    if attn_mask is None:
        return inputs
    positions = torch.arange(case.seqlen, dtype=torch.float32, device=arrays.device)
    offsets = positions[None, :] - positions[:, None]  # j - i for query i and key j
    if case.variant == ALIBI:
        distances = offsets.abs()
        for head, slope in enumerate(slopes.tolist()):
            attn_mask[0, head] = distances * -slope
    if case.causal:
        attn_mask.masked_fill_(offsets > 0, -math.inf)
    return {**inputs, "attn_mask": attn_mask}


def make_inputs(
    case: Case,
    count: int,
    arrays: common.TorchArrays,
    *,
    layout: str = DEFAULTS.layout,
    peers: bool = False,
    shared_score_inputs: bool = False,
) -> list[InputSet]:
    """Allocate ``count`` sets of random Q/K/V (K/V with ``case.heads_k`` heads), an output
    and score tensors (:func:`score_inputs`; one copy for all with ``shared_score_inputs``).

    ``layout="bshd"`` stores ``[B, S, H, D]`` and passes the ``[B, H, S, D]`` view;
    ``"bhsd"`` stores ``[B, H, S, D]``.
    """

    def tensor(make: Callable[[tuple[int, ...], str], Any], heads: int) -> Any:
        if layout == "bshd":
            return make((case.batch, case.seqlen, heads, case.head_dim), case.dtype).transpose(1, 2)
        return make((case.batch, heads, case.seqlen, case.head_dim), case.dtype)

    shared = score_inputs(case, arrays, peers=peers) if shared_score_inputs else None
    return [
        InputSet(
            q=tensor(arrays.randn, case.heads),
            k=tensor(arrays.randn, case.heads_k),
            v=tensor(arrays.randn, case.heads_k),
            out=tensor(arrays.empty, case.heads),
            **(score_inputs(case, arrays, peers=peers) if shared is None else shared),
        )
        for _ in range(count)
    ]


@dataclasses.dataclass(frozen=True)
class Implementation:
    """An implementation the harness times: its JSON key and table heading, ``bind(case,
    sets)`` returning the call on set ``i`` (or raising :class:`CaseUnsupportedError`),
    whether it is a peer, ``is_unsupported(exc)`` for a first-call exception, and the
    context the calls run in."""

    name: str
    label: str
    bind: Callable[[Case, list[InputSet]], Callable[[int], object]]
    is_peer: bool
    is_unsupported: Callable[[BaseException], bool]
    context: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext


def score_options(case: Case) -> dict[str, Any]:
    """Return the ``softcap`` or ``window`` argument of a case's variant (none for others)."""
    if case.variant == SOFTCAP:
        return {"softcap": SOFTCAP_VALUE}
    return {} if case.window is None else {"window": case.window}


def baracuda_implementation(baracuda: Any) -> Implementation:
    """Return :func:`baracuda.flash_attention` with preallocated outputs."""

    def bind(case: Case, sets: list[InputSet]) -> Callable[[int], object]:
        options = {"causal": case.causal, **score_options(case)}

        def call(index: int) -> object:
            s = sets[index]
            return baracuda.flash_attention(
                s.q, s.k, s.v, alibi_slopes=s.alibi_slopes, mask=s.mask, out=s.out, **options
            )

        return call

    unsupported = baracuda.UnsupportedError
    return Implementation(
        "baracuda", "baracuda", bind, False, lambda exc: isinstance(exc, unsupported)
    )


def torch_peer_refusal(case: Case, *, enable_gqa: bool) -> str | None:
    """Return why the torch peers cannot express a case (None when they can); ``enable_gqa``
    tells whether this PyTorch's SDPA takes it."""
    if case.variant == GQA and not enable_gqa:
        release = ".".join(map(str, SDPA_ENABLE_GQA_VERSION))
        return f"this torch SDPA has no enable_gqa (PyTorch {release}+)"
    return {SOFTCAP: "torch SDPA has no softcap", WINDOW: "torch SDPA has no sliding window"}.get(
        case.variant
    )


def torch_sdpa_implementations(
    torch: Any, *, variants: Sequence[str] = DEFAULTS.variants
) -> list[Implementation]:
    """Return PyTorch SDPA forced to its FlashAttention and to its cuDNN backend and, with a
    variant of ``ATTN_MASK_VARIANTS`` in ``variants``, to its memory-efficient one
    (FlashAttention takes no ``attn_mask``). A modifier reaches SDPA as the set's
    ``attn_mask``, causal folded in; GQA as ``enable_gqa=True``. None without
    ``torch.nn.attention.sdpa_kernel``."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        return []
    version = tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2])
    enable_gqa = version >= SDPA_ENABLE_GQA_VERSION

    def bind(case: Case, sets: list[InputSet]) -> Callable[[int], object]:
        refusal = torch_peer_refusal(case, enable_gqa=enable_gqa)
        if refusal is not None:
            raise CaseUnsupportedError(refusal)
        options = {"enable_gqa": True} if case.variant == GQA else {}
        is_causal = case.causal and case.variant not in ATTN_MASK_VARIANTS
        sdpa = torch.nn.functional.scaled_dot_product_attention

        def call(index: int) -> object:
            s = sets[index]
            return sdpa(s.q, s.k, s.v, attn_mask=s.attn_mask, is_causal=is_causal, **options)

        return call

    backends = {"flash": "FLASH_ATTENTION", "cudnn": "CUDNN_ATTENTION"}
    if any(variant in ATTN_MASK_VARIANTS for variant in variants):
        backends["efficient"] = "EFFICIENT_ATTENTION"

    def peer(name: str, backend: Any) -> Implementation:
        context = functools.partial(sdpa_kernel, backend)
        unsupported = common.is_torch_unsupported
        return Implementation(f"torch_{name}", f"torch {name}", bind, True, unsupported, context)

    return [peer(name, getattr(SDPBackend, backend)) for name, backend in backends.items()]


def measure(
    implementation: Implementation,
    case: Case,
    sets: list[InputSet],
    *,
    cuda: Any,
    warmup: int,
    repeats: int,
) -> dict[str, Any]:
    """Time one implementation on one case: :func:`baracuda._bench_common.summarize`'s record
    or a :func:`baracuda._bench_common.failure` (never raising).

    An exception in the first call (alone, synchronised) is ``unsupported`` or ``error`` as
    the implementation classifies it; one while timing is an ``error``.
    """
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        with implementation.context():
            try:
                fn = implementation.bind(case, sets)
                fn(0)
                cuda.synchronize()
            except Exception as exc:
                refused = isinstance(exc, CaseUnsupportedError) or implementation.is_unsupported(
                    exc
                )
                status = common.STATUS_UNSUPPORTED if refused else common.STATUS_ERROR
                return common.failure(status, exc, warned)
            try:
                samples = common.time_calls(
                    fn, len(sets), cuda=cuda, warmup=warmup, repeats=repeats
                )
            except Exception as exc:
                return common.failure(common.STATUS_ERROR, exc, warned)
    return common.summarize(samples, flops(case))


def baracuda_plan_info(baracuda: Any, case: Case) -> dict[str, Any]:
    """Return the backend and kernel that baracuda's plan selection picks for a case (the
    descriptor holds its softcap and window, not its masks, slopes or K/V heads)."""
    options = score_options(case)
    left, right = options.pop("window", (None, None))
    options.update(is_causal=case.causal, element=case.dtype)
    options.update(window_size_left=left, window_size_right=right)
    extents = case.batch, case.heads, case.seqlen, case.seqlen, case.head_dim
    return common.flash_plan_info(baracuda, baracuda.FlashSdpaDescriptor(*extents, **options))


def best_peer(record: dict[str, Any], implementations: Sequence[Implementation]) -> dict[str, Any]:
    """Set the record's fastest peer and its median over baracuda's (above 1: baracuda is
    faster; None when baracuda or every peer failed); return the record."""
    results = record["results"]
    timed = [
        (results[item.name]["median_ms"], item.name)
        for item in implementations
        if item.is_peer and results[item.name]["status"] == common.STATUS_OK
    ]
    ours = results.get("baracuda", {})
    if ours.get("status") != common.STATUS_OK or not timed:
        record.update(best_peer=None, speedup_vs_best_peer=None)
    else:
        best_ms, name = min(timed)
        record.update(best_peer=name, speedup_vs_best_peer=best_ms / ours["median_ms"])
    return record


def run_case(
    case: Case,
    implementations: Sequence[Implementation],
    config: BenchConfig,
    *,
    arrays: common.TorchArrays,
    cuda: Any,
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
    if footprint.total_bytes > config.input_budget_bytes:
        reason = (
            f"inputs would take {footprint.total_bytes / common.GIBI:.2f} GiB, over the "
            f"{config.input_budget_bytes / common.GIBI:.2f} GiB input budget"
        )
        skipped = common.failure(common.STATUS_SKIPPED, reason)
        record["results"] = {item.name: dict(skipped) for item in implementations}
        return best_peer(record, implementations)
    shared = {"peers": peers, "shared_score_inputs": footprint.shared_score_inputs}
    sets = make_inputs(case, footprint.set_count, arrays, layout=config.layout, **shared)
    timing = {"cuda": cuda, "warmup": config.warmup, "repeats": config.repeats}
    record["results"] = {item.name: measure(item, case, sets, **timing) for item in implementations}
    del sets
    arrays.release()
    return best_peer(record, implementations)


def run_benchmark(
    config: BenchConfig,
    document: dict[str, Any],
    implementations: Sequence[Implementation],
    *,
    arrays: common.TorchArrays,
    cuda: Any,
    l2_cache_bytes: int,
    plan_info: Callable[[Case], dict[str, Any]] | None = None,
    progress: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Run every case of the grid (:func:`run_case`), appending records to
    ``document["cases"]`` and progress lines to ``progress`` (default: the standard error);
    Ctrl-C keeps the cases so far, ``document["complete"]`` tells whether the grid finished.
    Returns ``document``."""
    progress = sys.stderr if progress is None else progress
    cases, started = case_grid(config), clock()
    context = {"arrays": arrays, "cuda": cuda, "l2_cache_bytes": l2_cache_bytes}
    try:
        for index, case in enumerate(cases, start=1):
            record = run_case(case, implementations, config, **context, plan_info=plan_info)
            document["cases"].append(record)
            text = ", ".join(
                f"{name} {result['median_ms']:.3f} ms"
                if result["status"] == common.STATUS_OK
                else f"{name} {result['status']}"
                for name, result in record["results"].items()
            )
            line = common.progress_line(index, len(cases), case.label(), text, clock() - started)
            print(line, file=progress, flush=True)
    except KeyboardInterrupt:
        print(f"interrupted after {len(document['cases'])} of {len(cases)} cases", file=progress)
        return document
    document["complete"] = True
    return document


def build_document(
    config: BenchConfig, header: dict[str, Any], implementations: Sequence[Implementation]
) -> dict[str, Any]:
    """Return the JSON document: ``header`` (:func:`baracuda._bench_common.document_header`),
    the timing, the grid, the implementations and an empty ``cases`` list."""
    variant_settings = {name: VARIANT_SETTINGS[name] for name in config.variants if name != PLAIN}
    if any(name in ATTN_MASK_VARIANTS for name in config.variants):
        variant_settings["causal_attn_mask"] = VARIANT_SETTINGS["causal_attn_mask"]
    return {
        **header,
        "timing": {
            "method": TIMING["method"],
            "events": common.EVENTS,
            "arrays": common.ARRAYS,
            "warmup": config.warmup,
            "repeats": config.repeats,
            "statistic": TIMING["statistic"],
            "input_rotation": common.input_rotation(),
            "outputs": TIMING["outputs"],
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
            "variant_settings": variant_settings,
        },
        "implementations": [
            {"name": item.name, "label": item.label, "peer": item.is_peer}
            for item in implementations
        ],
        "cases": [],
    }


def format_table(document: dict[str, Any]) -> str:
    """Return the results as a text table, one row per case: medians in milliseconds,
    TFLOP/s and ``speedup`` (the best peer's median over baracuda's); a ``variant`` column
    after ``causal`` when the grid has variants other than ``plain``."""
    implementations = document["implementations"]
    has_peers = any(item["peer"] for item in implementations)
    has_variants = document["grid"].get("variants", [PLAIN]) != [PLAIN]
    headers = ["dtype", "D", "H", "B", "S", "causal", *(["variant"] if has_variants else [])]
    headers += [cell for item in implementations for cell in (f"{item['label']} ms", "TFLOP/s")]
    rows = []
    for case in document["cases"]:
        row = [case["dtype"], *(str(case[key]) for key in ("head_dim", "heads", "batch", "seqlen"))]
        row += [
            "yes" if case["causal"] else "no",
            *([case.get("variant", PLAIN)] if has_variants else []),
        ]
        for item in implementations:
            row += common.result_cells(case["results"].get(item["name"]), failed_tflops="")
        if has_peers:
            speedup = case["speedup_vs_best_peer"]
            row.append("-" if speedup is None else f"{speedup:.2f}x")
        rows.append(row)
    return common.render_table(headers + (["speedup"] if has_peers else []), rows)


def print_table(document: dict[str, Any], stream: TextIO | None = None) -> None:
    """Print :func:`format_table` and the errors and skips (to standard output)."""
    stream = sys.stdout if stream is None else stream
    print(format_table(document), file=stream)
    for case in document["cases"]:
        label = Case(**{key: case[key] for key in CASE_FIELDS if key in case}).label()
        for name, result in case["results"].items():
            if result["status"] in (common.STATUS_ERROR, common.STATUS_SKIPPED):
                print(f"{name} {result['status']} on {label}: {result['error']}", file=stream)


def add_flash_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``python -m baracuda bench flash`` to ``parser``."""
    variants = (
        f"comma-separated variants of each case from {','.join(VARIANTS)}: score modifiers "
        f"(ALiBi, softcap {SOFTCAP_VALUE:g}, window {WINDOW_LEFT}, {SCORE_ELEMENT} mask "
        f"[B,H,S,S]) or GQA with H/{GQA_QUERY_HEADS_PER_KV_HEAD} K/V heads (default plain)"
    )
    layout = "memory layout of Q/K/V/out: [B,S,H,D] passed as a [B,H,S,D] view, or [B,H,S,D]"
    common.add_options(
        parser,
        {
            "--head-dims": (common.size_list, "comma-separated head dims (default 64,128,256)"),
            "--seqlens": (
                common.size_list,
                "comma-separated sequence lengths, k suffix allowed (default 512,1k,2k,4k,8k,16k)",
            ),
            "--causal": (
                tuple(CAUSAL_CHOICES),
                "causal cases, non-causal cases or both (default both)",
            ),
            "--variants": (common.choice_list(VARIANTS, noun="variant"), variants),
            "--tokens": (
                common.size,
                "tokens per call, B*S; the batch is tokens // S (default 16k)",
            ),
            "--layout": (LAYOUTS, f"{layout} (default bshd)"),
        },
        target=TARGET,
        defaults={
            "dtypes": ",".join(DEFAULTS.dtypes),
            "warmup": DEFAULTS.warmup,
            "repeats": DEFAULTS.repeats,
        },
        quick=f"a small grid for a smoke run ({common.describe_preset(QUICK_PRESET)})",
        no_peers="time baracuda only, not PyTorch SDPA",
    )


def resolve_config(args: argparse.Namespace) -> BenchConfig:
    """Merge parsed options, the ``--quick`` preset and the defaults (in that priority)."""
    causal = CAUSAL_CHOICES[args.causal or "both"]
    return common.resolve(args, BenchConfig, QUICK_PRESET, causal=causal, peers=not args.no_peers)


def run_flash(args: argparse.Namespace) -> int:
    """Entry point of ``python -m baracuda bench flash``: 0 after a run or without a GPU,
    1 without torch."""
    config = resolve_config(args)
    gpu = common.probe_gpu()
    if not gpu.present:
        return common.no_gpu_exit(PROGRAM, gpu)
    torch = common.import_torch(PROGRAM, "it allocates the inputs and times them")
    if torch is None:
        return common.MISSING_DEPENDENCY_EXIT
    import baracuda

    implementations = [baracuda_implementation(baracuda)]
    if config.peers:
        implementations += torch_sdpa_implementations(torch, variants=config.variants)
    now = datetime.datetime.now().astimezone()
    header = common.document_header(SCHEMA, gpu, baracuda=baracuda, torch=torch, now=now)
    document = build_document(config, header, implementations)
    print(f"{PROGRAM}: {len(case_grid(config))} cases on {gpu.name}", file=sys.stderr)
    run_benchmark(
        config,
        document,
        implementations,
        arrays=common.TorchArrays(torch),
        cuda=torch.cuda,
        l2_cache_bytes=gpu.l2_cache_bytes,
        plan_info=lambda case: baracuda_plan_info(baracuda, case),
    )
    print_table(document)
    out = config.out or common.default_output_path(gpu.name, now.date(), target=TARGET)
    print(f"results written to {common.write_json(out, document)}")
    return 0
