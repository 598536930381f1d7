"""Benchmark of ring attention across GPUs (``python -m baracuda bench ring``).

One process per GPU (:func:`baracuda._launch.spawn`) times :meth:`baracuda.RingAttentionPlan.run`
around an NCCL ring against baracuda's single-GPU flash attention on one ring step's shape
and, with two GPUs or more, PyTorch's context parallelism on the same global problem. The
ranks agree on every decision through gloo collectives; rank 0 sends each result to the
parent, which writes the JSON after every measurement. :data:`METHOD` and
``benchmarks/README.md`` describe the method; ``torch`` is imported only once a GPU is found.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import numpy as np

from baracuda import _bench_common as common
from baracuda import _launch
from baracuda._bench_common import STATUS_ERROR, STATUS_OK, STATUS_SKIPPED, STATUS_UNSUPPORTED

SCHEMA = "baracuda-bench-ring/1"
TARGET_NAME = "ring"
PROGRAM = "baracuda bench ring"

BATCH = 1
DEFAULT_HEADS = 32
DEFAULT_HEADS_K = 8
DEFAULT_HEAD_DIM = 128
DEFAULT_DTYPES = ("bf16",)
DEFAULT_CHUNKS = tuple(size * common.KIBI for size in (1, 2, 4, 8, 16, 32))
SEQUENCE_AXIS = 2

NONCAUSAL = "noncausal"
CONTIGUOUS = "contiguous"
ZIGZAG = "zigzag"
OVERLAPPED = "overlapped"
SCHEDULES = (OVERLAPPED, "serial")


class CaseKind(NamedTuple):
    """The mask and the layout of a ring case."""

    causal: bool
    layout: str


CASE_KINDS = {
    NONCAUSAL: CaseKind(causal=False, layout=CONTIGUOUS),
    "causal-contiguous": CaseKind(causal=True, layout=CONTIGUOUS),
    "causal-zigzag": CaseKind(causal=True, layout=ZIGZAG),
}

QUICK_PRESET = {"chunks": (1 * common.KIBI, 8 * common.KIBI), "warmup": 2, "repeats": 10}

# Counts that follow the probe call's time when --warmup / --repeats are not given.
WARMUP_TARGET_S = 1.0
REPEATS_TARGET_S = 3.0
MIN_ADAPTIVE_WARMUP = 1
MAX_ADAPTIVE_WARMUP = common.DEFAULT_WARMUP
MIN_ADAPTIVE_REPEATS = 5
MAX_ADAPTIVE_REPEATS = 50
ADAPTIVE = "adaptive"

# The goal: with overlap, at least this fraction of single-GPU flash per GPU from this many
# tokens per GPU on.
TARGET_FRACTION = 0.90
TARGET_MIN_CHUNK = 8 * common.KIBI
TARGET_SCHEDULE = OVERLAPPED

# PyTorch context parallelism: its SDPA backends by result name, and how K/V heads reach it.
MIN_PEER_WORLD_SIZE = 2
PEER_BACKENDS = {"torch_cp_cudnn": "CUDNN_ATTENTION", "torch_cp_flash": "FLASH_ATTENTION"}
PEER_LABELS = {"torch_cp_cudnn": "cp cudnn", "torch_cp_flash": "cp flash"}
KV_HEADS_SAME = "same as H"
KV_HEADS_NATIVE = "native GQA (enable_gqa=True)"
KV_HEADS_EXPANDED = "expanded to H (K/V made with H heads, as after repeat_interleave)"
# Modules that implement context_parallel and hold its _cp_options, newest first; the public
# module (an alias of one of them) is the fallback.
CP_IMPLEMENTATION_MODULES = (
    "torch.distributed.tensor.experimental.context_parallel._attention",
    "torch.distributed.tensor.experimental._context_parallel._attention",
    "torch.distributed.tensor.experimental._attention",
)
CP_PUBLIC_MODULE = "torch.distributed.tensor.experimental"
SDPA_KERNEL_MODULE = "torch.nn.attention"

# NVLink multicast (NVLS) stays off on the machines this runs on.
NCCL_ENVIRONMENT = {"NCCL_NVLS_ENABLE": "0"}
# Host-side agreement over gloo; with the peers, CUDA tensors (their device mesh) over NCCL.
BACKEND = "gloo"
PEER_BACKEND = "cpu:gloo,cuda:nccl"
REFERENCE_RANK = 0
RANK_TIMEOUT_S = 900.0
"""Longest silence of the ranks (one measurement, or the start) before the run is ended."""

USAGE_EXIT = 2
RANK_FAILURE_EXIT = 1
INTERRUPTED_EXIT = 130

STOP_INTERRUPTED = "interrupted"
STOP_BUDGET = "time budget spent"
STOP_FAILURE = "a rank failed"

# Agreed outcome of a step of the PyTorch peer: the minimum over the ranks.
CODE_FAILED, CODE_REFUSED, CODE_OK = 0.0, 1.0, 2.0

METHOD = (
    "One process per GPU. Each rank selects the RingAttentionPlan once, allocates y, lse, "
    "both K/V scratch buffers and the accumulator scratch once, and passes its K/V chunk as "
    "k=/v= so that staging is inside every timed call; calls rotate over random input sets "
    "that together exceed twice the L2 cache. CUDA events on each rank's legacy default "
    "stream time every call after a cold call, a probe call and a warm-up. A call's time is "
    "the slowest rank's (the maximum over ranks of that call's time); the result is the "
    "median of those maxima. Per-GPU FLOPs are the global 4*B*H*S*S*D (halved when causal, "
    "S = world_size * chunk) over world_size. The reference is baracuda.flash_attention on "
    "rank 0's GPU on one ring step (chunk queries, chunk keys, non-causal); fraction_kept is "
    "the ring's per-GPU TFLOP/s over it. PyTorch context parallelism (torch_cp) runs SDPA "
    "inside torch.distributed.tensor.experimental.context_parallel on the same global "
    "problem, with load balancing on for causal and off otherwise, timed the same way; "
    "with GQA it first gets the Hk K/V heads (enable_gqa=True) and, where the backend "
    "refuses them, K/V of H heads (kv_heads says which)."
)


class ConfigError(ValueError):
    """Options that parse but do not go together."""


def format_tokens(count: int) -> str:
    """Return ``8192`` as ``"8k"`` and other counts as plain integers."""
    return f"{count // common.KIBI}k" if count % common.KIBI == 0 else str(count)


def _mask_name(causal: bool) -> str:
    return "causal" if causal else NONCAUSAL


@dataclass(frozen=True)
class Problem:
    """One rank's share of a ring problem: ``chunk`` queries and ``chunk`` keys."""

    dtype: str
    chunk: int
    heads: int
    heads_k: int
    head_dim: int
    batch: int = BATCH

    def q_shape(self, length: int | None = None) -> tuple[int, ...]:
        """Return ``[B, H, length, D]`` (``length`` defaults to ``chunk``)."""
        return (self.batch, self.heads, length or self.chunk, self.head_dim)

    def kv_shape(self, length: int | None = None, *, heads: int | None = None) -> tuple[int, ...]:
        """Return ``[B, Hk, length, D]`` (``heads`` replaces ``Hk`` when given)."""
        return (self.batch, heads or self.heads_k, length or self.chunk, self.head_dim)

    def fields(self) -> dict[str, Any]:
        """Return the problem as JSON fields."""
        names = ("dtype", "chunk", "batch", "heads", "heads_k", "head_dim")
        return {name: getattr(self, name) for name in names}

    def label(self) -> str:
        """Return a short human-readable name."""
        return (
            f"{self.dtype} chunk {format_tokens(self.chunk)} H={self.heads} Hk={self.heads_k} "
            f"D={self.head_dim}"
        )


@dataclass(frozen=True)
class FlashStep:
    """The single-GPU reference: :func:`baracuda.flash_attention` on one ring step's shape."""

    problem: Problem

    def label(self) -> str:
        """Return a short human-readable name."""
        return f"{self.problem.label()} flash step (rank {REFERENCE_RANK})"


@dataclass(frozen=True)
class RingCase:
    """One ring measurement: a problem, a case of :data:`CASE_KINDS` and a schedule."""

    problem: Problem
    case: str
    schedule: str

    @property
    def causal(self) -> bool:
        """Whether keys after each query's global position are hidden."""
        return CASE_KINDS[self.case].causal

    @property
    def layout(self) -> str:
        """``"contiguous"`` or ``"zigzag"``."""
        return CASE_KINDS[self.case].layout

    def label(self) -> str:
        """Return a short human-readable name."""
        return f"{self.problem.label()} {self.case} {self.schedule}"


@dataclass(frozen=True)
class TorchCpCase:
    """PyTorch context parallelism over SDPA forced to one backend, on the same global problem."""

    problem: Problem
    causal: bool
    peer: str

    def label(self) -> str:
        """Return a short human-readable name."""
        return f"{self.problem.label()} {_mask_name(self.causal)} {self.peer}"


WorkItem = FlashStep | RingCase | TorchCpCase

CONFIG_DEFAULTS = {
    "dtypes": DEFAULT_DTYPES,
    "chunks": DEFAULT_CHUNKS,
    "heads": DEFAULT_HEADS,
    "heads_k": DEFAULT_HEADS_K,
    "head_dim": DEFAULT_HEAD_DIM,
    "cases": tuple(CASE_KINDS),
    "schedules": SCHEDULES,
    "warmup": None,
    "repeats": None,
}
"""The options that ``--quick`` may set, with their defaults (None: adaptive)."""


@dataclass(frozen=True)
class RingBenchConfig:
    """Resolved settings of one ring benchmark run."""

    dtypes: tuple[str, ...] = DEFAULT_DTYPES
    chunks: tuple[int, ...] = DEFAULT_CHUNKS
    heads: int = DEFAULT_HEADS
    heads_k: int = DEFAULT_HEADS_K
    head_dim: int = DEFAULT_HEAD_DIM
    cases: tuple[str, ...] = tuple(CASE_KINDS)
    schedules: tuple[str, ...] = SCHEDULES
    world_size: int | None = None
    warmup: int | None = None
    repeats: int | None = None
    peers: bool = True
    max_seconds: float | None = None
    out: Path | None = None


def work_items(config: RingBenchConfig, *, torch_cp: bool) -> list[WorkItem]:
    """Expand a configuration into its measurements, in the order every rank runs them.

    Per dtype and chunk: the flash step, every case under every schedule, then (with
    ``torch_cp``) each causal setting of the cases under each SDPA backend.
    """
    items: list[WorkItem] = []
    causal_settings = tuple(dict.fromkeys(CASE_KINDS[case].causal for case in config.cases))
    for dtype in config.dtypes:
        for chunk in config.chunks:
            problem = Problem(dtype, chunk, config.heads, config.heads_k, config.head_dim)
            items.append(FlashStep(problem))
            items += [RingCase(problem, c, s) for c in config.cases for s in config.schedules]
            if torch_cp:
                items += [
                    TorchCpCase(problem, c, p) for c in causal_settings for p in PEER_BACKENDS
                ]
    return items


# ---------------------------------------------------------------------------------
# Arithmetic
# ---------------------------------------------------------------------------------


def global_seqlen(problem: Problem, world_size: int) -> int:
    """Return the global sequence length ``world_size * chunk``."""
    return world_size * problem.chunk


def _attention_flops(problem: Problem, seqlen: int, causal: bool) -> int:
    total = 4 * problem.batch * problem.heads * seqlen * seqlen * problem.head_dim
    return total // 2 if causal else total


def ring_flops(problem: Problem, world_size: int, *, causal: bool) -> int:
    """Return ``4*B*H*S*S*D`` over the global sequence, halved when causal."""
    return _attention_flops(problem, global_seqlen(problem, world_size), causal)


def flops_per_gpu(problem: Problem, world_size: int, *, causal: bool) -> int:
    """Return each GPU's share of :func:`ring_flops`."""
    return ring_flops(problem, world_size, causal=causal) // world_size


def step_flops(problem: Problem) -> int:
    """Return the FLOPs of one ring step: ``chunk`` queries against ``chunk`` keys, non-causal."""
    return _attention_flops(problem, problem.chunk, False)


def fraction_kept(ring_tflops: float | None, flash_tflops: float | None) -> float | None:
    """Return the ring's per-GPU TFLOP/s over single-GPU flash's (None if either is missing)."""
    if ring_tflops is None or flash_tflops is None or flash_tflops <= 0:
        return None
    return ring_tflops / flash_tflops


def meets_target(record: Mapping[str, Any]) -> bool | None:
    """Tell whether a ring record keeps ``TARGET_FRACTION``; None where the goal does not
    apply (another schedule, a chunk under ``TARGET_MIN_CHUNK``, no fraction)."""
    if record["schedule"] != TARGET_SCHEDULE or record["chunk"] < TARGET_MIN_CHUNK:
        return None
    kept = record.get("fraction_kept")
    return None if kept is None else kept >= TARGET_FRACTION


def adaptive_count(call_s: float, *, target_s: float, minimum: int, maximum: int) -> int:
    """Return how many calls of ``call_s`` seconds fill ``target_s``, within bounds
    (``maximum`` when ``call_s`` is 0 or less: unknown)."""
    if call_s <= 0:
        return maximum
    return min(maximum, max(minimum, math.ceil(target_s / call_s)))


def summarize_ranks(
    slowest_ms: Sequence[float], rank_medians_ms: Sequence[float], warmup: int, flops: int
) -> dict[str, Any]:
    """Return :func:`baracuda._bench_common.summarize` of the slowest rank's time per call,
    with each rank's median (``per_rank_median_ms``) and the warm-up count."""
    result = common.summarize(slowest_ms, flops)
    result["per_rank_median_ms"] = [float(median) for median in rank_medians_ms]
    result["warmup"] = warmup
    return result


# ---------------------------------------------------------------------------------
# Records and document
# ---------------------------------------------------------------------------------


def _ok_tflops(result: Mapping[str, Any] | None) -> float | None:
    return result["tflops"] if result is not None and result["status"] == STATUS_OK else None


def _global_fields(item: RingCase | TorchCpCase, world_size: int) -> dict[str, Any]:
    return {
        **item.problem.fields(),
        "world_size": world_size,
        "global_seqlen": global_seqlen(item.problem, world_size),
    }


def flash_step_entry(item: FlashStep, part: Mapping[str, Any]) -> dict[str, Any]:
    """Return the JSON entry of a flash step from rank 0's ``{result, plan}``."""
    return {
        **item.problem.fields(),
        "flops": step_flops(item.problem),
        "plan": part.get("plan"),
        "result": part["result"],
    }


def ring_entry(item: RingCase, world_size: int, part: Mapping[str, Any]) -> dict[str, Any]:
    """Return the JSON record of a ring case; :func:`join_references` fills its references."""
    return {
        **_global_fields(item, world_size),
        "case": item.case,
        "causal": item.causal,
        "layout": item.layout,
        "schedule": item.schedule,
        "flops": ring_flops(item.problem, world_size, causal=item.causal),
        "flops_per_gpu": flops_per_gpu(item.problem, world_size, causal=item.causal),
        "plan": part.get("plan"),
        "ring": part["result"],
        "flash_step_tflops": None,
        "fraction_kept": None,
        "meets_target": None,
        "peers": {},
    }


def torch_cp_entry(item: TorchCpCase, world_size: int, part: Mapping[str, Any]) -> dict[str, Any]:
    """Return the JSON entry of a PyTorch context parallelism measurement."""
    entry = {
        **_global_fields(item, world_size),
        "causal": item.causal,
        "peer": item.peer,
        "backend": PEER_BACKENDS[item.peer],
        "load_balance": item.causal,
        "kv_heads": part.get("kv_heads"),
        "flops_per_gpu": flops_per_gpu(item.problem, world_size, causal=item.causal),
        "result": part["result"],
    }
    if part.get("kv_heads_note"):
        entry["kv_heads_note"] = part["kv_heads_note"]
    return entry


def join_references(document: dict[str, Any]) -> dict[str, Any]:
    """Fill each ring record's flash reference, fraction kept, target verdict and peers
    (in place); return ``document``."""
    flash = {(entry["dtype"], entry["chunk"]): entry["result"] for entry in document["flash_steps"]}
    peers = {
        (entry["dtype"], entry["chunk"], entry["causal"], entry["peer"]): entry["result"]
        for entry in document["torch_cp"]
    }
    summary_keys = ("status", "median_ms", "tflops", "error")
    for record in document["records"]:
        flash_tflops = _ok_tflops(flash.get((record["dtype"], record["chunk"])))
        record["flash_step_tflops"] = flash_tflops
        record["fraction_kept"] = fraction_kept(_ok_tflops(record["ring"]), flash_tflops)
        record["meets_target"] = meets_target(record)
        record["peers"] = {
            name: {key: peer[key] for key in summary_keys if key in peer}
            for name in PEER_BACKENDS
            if (peer := peers.get((record["dtype"], record["chunk"], record["causal"], name)))
        }
    return document


def build_ring_document(
    config: RingBenchConfig,
    gpu: common.GpuInfo,
    *,
    world_size: int,
    software: dict[str, Any],
    timer_method: str,
    arrays_name: str,
    peers_reason: str | None,
    now: datetime.datetime,
) -> dict[str, Any]:
    """Return the JSON document's metadata with empty measurement lists (``peers_reason``:
    why PyTorch context parallelism is not timed, None when it is)."""
    return {
        **common.document_header(SCHEMA, gpu=gpu, software=software, now=now),
        "world_size": world_size,
        "method": METHOD,
        "timing": {
            "events": timer_method,
            "arrays": arrays_name,
            "warmup": ADAPTIVE if config.warmup is None else config.warmup,
            "repeats": ADAPTIVE if config.repeats is None else config.repeats,
            "adaptive": {
                "warmup_target_s": WARMUP_TARGET_S,
                "warmup_bounds": [MIN_ADAPTIVE_WARMUP, MAX_ADAPTIVE_WARMUP],
                "repeats_target_s": REPEATS_TARGET_S,
                "repeats_bounds": [MIN_ADAPTIVE_REPEATS, MAX_ADAPTIVE_REPEATS],
            },
            "statistic": (
                "median over calls of the slowest rank's time per call (the maximum over "
                "ranks of each call's time); p10, p90 and min of the same, and each rank's "
                "own median"
            ),
            "input_rotation": common.input_rotation(" per rank"),
            "max_seconds": config.max_seconds,
        },
        "config": {
            "dtypes": list(config.dtypes),
            "chunks": list(config.chunks),
            "batch": BATCH,
            "heads": config.heads,
            "heads_k": config.heads_k,
            "head_dim": config.head_dim,
            "cases": list(config.cases),
            "schedules": list(config.schedules),
            "flops": (
                "4*B*H*S*S*D with S = world_size * chunk, halved when causal; per GPU: "
                "over world_size. Flash step: 4*B*H*chunk*chunk*D"
            ),
        },
        "target": {
            "fraction": TARGET_FRACTION,
            "min_chunk": TARGET_MIN_CHUNK,
            "schedule": TARGET_SCHEDULE,
        },
        "peers": {
            "enabled": peers_reason is None,
            "reason": peers_reason,
            "implementations": [
                {"name": name, "label": PEER_LABELS[name], "sdpa_backend": backend}
                for name, backend in PEER_BACKENDS.items()
            ],
        },
        "setup": {},
        "flash_steps": [],
        "records": [],
        "torch_cp": [],
        "skipped": [],
        "failures": [],
    }


# ---------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------


def _optional_cell(value: float | None, template: str) -> str:
    return "-" if value is None else template.format(value)


def format_ring_table(document: Mapping[str, Any]) -> str:
    """Return the ring records as a text table: median ms of the slowest rank, per-GPU
    TFLOP/s, flash step TFLOP/s, their ratio (``kept``) and the peers' per-GPU TFLOP/s."""
    headers = ["dtype", "chunk", "S", "case", "schedule", "ring ms", "TF/s/GPU", "flash TF/s"]
    headers.append("kept")
    peer_names = [name for name in PEER_BACKENDS if document["peers"]["enabled"]]
    headers += [f"{PEER_LABELS[name]} TF/s/GPU" for name in peer_names]
    rows = [
        [
            record["dtype"],
            format_tokens(record["chunk"]),
            format_tokens(record["global_seqlen"]),
            record["case"],
            record["schedule"],
            *common.result_cells(record["ring"]),
            _optional_cell(record["flash_step_tflops"], "{:.1f}"),
            _optional_cell(record["fraction_kept"], "{:.0%}"),
            *(common.result_cells(record["peers"].get(name))[1] for name in peer_names),
        ]
        for record in document["records"]
    ]
    return common.render_table(headers, rows)


def target_summary(document: Mapping[str, Any]) -> str:
    """Return one line: how many ring records the goal applies to, and how many meet it."""
    judged = [r["meets_target"] for r in document["records"] if r["meets_target"] is not None]
    return (
        f"target ({TARGET_SCHEDULE}, chunk >= {format_tokens(TARGET_MIN_CHUNK)}, kept >= "
        f"{TARGET_FRACTION:.0%}): met by {sum(judged)} of {len(judged)} records"
    )


def print_ring_table(document: Mapping[str, Any], stream: TextIO | None = None) -> None:
    """Print the table, the target line, the failures and the skipped measurements
    (to ``stream``, by default the standard output)."""
    stream = sys.stdout if stream is None else stream
    print(format_ring_table(document), file=stream)
    print(target_summary(document), file=stream)
    if document["world_size"] == 1:
        print("world size 1: the ring ran on one GPU, without NCCL", file=stream)
    if not document["peers"]["enabled"]:
        print(f"torch context parallelism not timed: {document['peers']['reason']}", file=stream)

    def chunk(entry: Mapping[str, Any]) -> str:
        return f"{entry['dtype']} chunk {format_tokens(entry['chunk'])}"

    entries = [(f"{chunk(e)} flash step", e["result"]) for e in document["flash_steps"]]
    entries += [
        (f"{chunk(r)} {r['case']} {r['schedule']} ring", r["ring"]) for r in document["records"]
    ]
    entries += [
        (f"{chunk(e)} {_mask_name(e['causal'])} {e['peer']}", e["result"])
        for e in document["torch_cp"]
    ]
    for label, result in entries:
        if result["status"] != STATUS_OK:
            print(f"{label}: {result['status']}: {result.get('error', '')}", file=stream)
    for skipped in document["skipped"]:
        print(f"skipped {skipped['item']}: {skipped['reason']}", file=stream)


# ---------------------------------------------------------------------------------
# One rank
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSetup:
    """What every rank receives: the measurements in order and how to time them.

    ``warmup`` / ``repeats`` of None follow the probe call; after ``deadline``
    (``time.time()``) no further measurement starts; ``peers`` opens PyTorch's context
    parallelism.
    """

    items: tuple[WorkItem, ...]
    warmup: int | None
    repeats: int | None
    l2_cache_bytes: int
    deadline: float | None = None
    peers: bool = False


@dataclass
class RankContext:
    """What a rank measures with; ``rank`` is its :class:`baracuda._launch.Rank`."""

    rank: Any
    setup: WorkerSetup
    baracuda: Any
    arrays: Any
    timer: Any
    comm: Any = None
    torch_cp: TorchContextParallel | None = None
    torch_cp_reason: str | None = None


def _failure(status: str, exc: BaseException | str) -> dict[str, Any]:
    return {
        "status": status,
        "error": exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}",
    }


def _classified(baracuda: Any, exc: BaseException) -> dict[str, Any]:
    """``unsupported`` for baracuda's refusal, ``error`` for anything else."""
    unsupported = isinstance(exc, baracuda.UnsupportedError)
    return _failure(STATUS_UNSUPPORTED if unsupported else STATUS_ERROR, exc)


def _random_sets(
    ctx: RankContext, problem: Problem, *, length: int | None = None, kv_heads: int | None = None
) -> list[common.InputSet]:
    """Return sets of random q, k, v (``out`` None) that together exceed twice the L2."""
    heads = problem.heads + 2 * (kv_heads or problem.heads_k)
    elements = problem.batch * problem.chunk * problem.head_dim * heads
    count = common.sets_to_exceed_l2(
        elements * common.ITEM_BYTES[problem.dtype], ctx.setup.l2_cache_bytes
    )
    randn, dtype = ctx.arrays.randn, problem.dtype
    kv_shape = problem.kv_shape(length, heads=kv_heads)
    return [
        common.InputSet(
            q=randn(problem.q_shape(length), dtype),
            k=randn(kv_shape, dtype),
            v=randn(kv_shape, dtype),
            out=None,
        )
        for _ in range(count)
    ]


def _timed_calls(
    ctx: RankContext, fn: Callable[[int], object], set_count: int, *, agree: bool, cold: bool = True
) -> dict[str, Any]:
    """Make a cold call (unless made already), a probe call, pick the counts and time ``fn``.

    With ``agree``, the counts follow the slowest rank's probe, so that every rank makes
    the same number of calls. Returns ``{"status": "ok", "samples_ms", "warmup"}``.
    """
    if cold:
        fn(0)
        ctx.timer.synchronize()
    start = time.perf_counter()
    fn(1 % set_count)
    ctx.timer.synchronize()
    probe_s = time.perf_counter() - start
    if agree:
        probe_s = ctx.rank.max([probe_s])[0]
    warmup, repeats = ctx.setup.warmup, ctx.setup.repeats
    if warmup is None:
        warmup = adaptive_count(
            probe_s,
            target_s=WARMUP_TARGET_S,
            minimum=MIN_ADAPTIVE_WARMUP,
            maximum=MAX_ADAPTIVE_WARMUP,
        )
    if repeats is None:
        repeats = adaptive_count(
            probe_s,
            target_s=REPEATS_TARGET_S,
            minimum=MIN_ADAPTIVE_REPEATS,
            maximum=MAX_ADAPTIVE_REPEATS,
        )
    samples = common.time_calls(fn, set_count, timer=ctx.timer, warmup=warmup, repeats=repeats)
    return {"status": STATUS_OK, "samples_ms": samples, "warmup": warmup}


def combine_ranks(ctx: RankContext, own: Mapping[str, Any], flops: int) -> dict[str, Any] | None:
    """Combine every rank's part of one measurement into its result on rank 0 (None elsewhere).

    The parts are all ``ok`` or none (the ranks agreed before timing): the result is
    :func:`summarize_ranks` of the slowest rank's time per call, or the first failed rank's
    ``{"status", "error", "rank"}``.
    """
    rank = ctx.rank
    ok = rank.all_ok(own["status"] == STATUS_OK)
    slowest = rank.max(own["samples_ms"]) if ok else []
    summary = {"median": float(np.median(own["samples_ms"])) if ok else None, **own}
    summary.pop("samples_ms", None)
    parts = rank.gather(summary)
    if parts is None:
        return None
    if not ok:
        index, failed = next((r, p) for r, p in enumerate(parts) if p["status"] != STATUS_OK)
        return {"status": failed["status"], "error": failed.get("error", ""), "rank": index}
    medians = [part["median"] for part in parts]
    return summarize_ranks(slowest, medians, parts[0]["warmup"], flops)


def measure_flash_step(ctx: RankContext, item: FlashStep) -> dict[str, Any] | None:
    """Time single-GPU flash attention on one ring step's shape on rank 0 (others: None,
    without a collective); a failure is recorded and the ring goes on."""
    if ctx.rank.rank != REFERENCE_RANK:
        return None
    baracuda, problem = ctx.baracuda, item.problem
    try:
        sets = _random_sets(ctx, problem)
        out = ctx.arrays.empty(problem.q_shape(), problem.dtype)

        def call(index: int) -> object:
            inputs = sets[index]
            return baracuda.flash_attention(inputs.q, inputs.k, inputs.v, out=out)

        own = _timed_calls(ctx, call, len(sets), agree=False)
    except Exception as exc:
        own = _classified(baracuda, exc)
    finally:
        sets = out = None
        ctx.arrays.release()
    if own["status"] != STATUS_OK:
        return {"result": {**own, "rank": REFERENCE_RANK}}
    samples = own["samples_ms"]
    result = summarize_ranks(samples, [np.median(samples)], own["warmup"], step_flops(problem))
    descriptor = baracuda.FlashSdpaDescriptor(
        problem.batch,
        problem.heads,
        problem.chunk,
        problem.chunk,
        problem.head_dim,
        element=problem.dtype,
    )
    return {"result": result, "plan": common.flash_plan_info(baracuda, descriptor)}


def _prepare_ring(ctx: RankContext, item: RingCase) -> tuple[Any, Callable[[int], object], int]:
    """Select the plan, allocate every buffer once and check the arguments (no collective);
    return the plan, the call on input set ``i`` and the number of sets."""
    baracuda, problem, arrays = ctx.baracuda, item.problem, ctx.arrays
    descriptor = baracuda.RingAttentionDescriptor(
        problem.batch,
        problem.heads,
        problem.chunk,
        problem.chunk,
        problem.head_dim,
        num_heads_k=problem.heads_k,
        is_causal=item.causal,
        element=problem.dtype,
        layout=item.layout,
        schedule=item.schedule,
    )
    plan = baracuda.RingAttentionPlan.select(descriptor)
    try:
        sets = _random_sets(ctx, problem)
        y = arrays.empty(problem.q_shape(), problem.dtype)
        lse_dtype = "f64" if problem.dtype == "f64" else "f32"
        lse = arrays.empty((problem.batch, problem.heads, problem.chunk), lse_dtype)
        scratch = [arrays.empty((plan.kv_scratch_elements,), problem.dtype) for _ in range(2)]
        # The accumulator scratch is raw bytes; f32 words keep it 16-byte aligned.
        words = max(1, math.ceil(plan.accumulator_scratch_bytes / common.ITEM_BYTES["f32"]))
        accumulators = arrays.empty((words,), "f32")
        first = sets[0]
        plan.can_implement(first.q, y, *scratch, accumulators, k=first.k, v=first.v, lse=lse)
    except BaseException:
        plan.close()
        raise

    def call(index: int) -> object:
        inputs = sets[index]
        return plan.run(
            inputs.q, y, *scratch, accumulators, comm=ctx.comm, k=inputs.k, v=inputs.v, lse=lse
        )

    return plan, call, len(sets)


def measure_ring(ctx: RankContext, item: RingCase) -> dict[str, Any] | None:
    """Time one ring case on this rank, in lock step with the others (result on rank 0).

    A case that a rank cannot set up is recorded for all ranks without a ring call; a
    failure once the ring runs raises (the ranks may be out of step; the run ends).
    """
    prepared = failure = plan_info = None
    try:
        prepared = _prepare_ring(ctx, item)
    except Exception as exc:
        failure = _classified(ctx.baracuda, exc)
    if not ctx.rank.all_ok(failure is None):
        own = failure or _failure(STATUS_SKIPPED, "another rank could not set up this case")
        if prepared is not None:
            prepared[0].close()
    else:
        plan, call, set_count = prepared
        try:
            own = _timed_calls(ctx, call, set_count, agree=True)
            plan_info = {"backend": plan.backend, "sku": plan.sku.name}
        finally:
            plan.close()
    prepared = call = None
    ctx.arrays.release()
    flops = flops_per_gpu(item.problem, ctx.rank.world_size, causal=item.causal)
    result = combine_ranks(ctx, own, flops)
    return None if result is None else {"result": result, "plan": plan_info}


class TorchContextParallel:
    """PyTorch's context parallelism on this rank: its API and a 1-D CUDA device mesh."""

    def __init__(self, torch: Any, api: Mapping[str, Any], mesh: Any) -> None:
        self.torch = torch
        self.api = api
        self.mesh = mesh

    def describe(self) -> dict[str, Any]:
        """Return what shapes the peer's numbers: options module, rotate method."""
        options = self.api["options"]
        return {
            "module": self.api["module"],
            "rotate_method": None if options is None else str(options.rotate_method),
            "load_balance": "on for causal, off for non-causal",
        }


def _callable_or_none(candidate: Any) -> Callable[..., Any] | None:
    """Return ``candidate`` (or the value it aliases, ``__value__``) if callable, else None."""
    value = getattr(candidate, "__value__", candidate)
    return value if callable(value) else None


def find_torch_cp_api(
    import_module: Callable[[str], Any] = importlib.import_module,
) -> dict[str, Any]:
    """Find PyTorch's ``context_parallel``, its options, ``sdpa_kernel`` and ``SDPBackend``.

    ``context_parallel`` comes from the first of :data:`CP_IMPLEMENTATION_MODULES` that has
    it, with its ``_cp_options`` (None without ``enable_load_balance``), else from the public
    module (options None).

    Raises
    ------
    ImportError, AttributeError
        This PyTorch has no SDPA backend selection or no context parallelism.
    """
    attention = import_module(SDPA_KERNEL_MODULE)
    for name in CP_IMPLEMENTATION_MODULES:
        try:
            module = import_module(name)
        except ImportError:
            continue
        context_parallel = _callable_or_none(getattr(module, "context_parallel", None))
        if context_parallel is not None:
            options = getattr(module, "_cp_options", None)
            options = options if hasattr(options, "enable_load_balance") else None
            break
    else:
        name, options = CP_PUBLIC_MODULE, None
        context_parallel = _callable_or_none(getattr(import_module(name), "context_parallel", None))
        if context_parallel is None:
            raise AttributeError(f"{CP_PUBLIC_MODULE} has no callable context_parallel")
    return {
        "context_parallel": context_parallel,
        "module": name,
        "options": options,
        "sdpa_kernel": attention.sdpa_kernel,
        "SDPBackend": attention.SDPBackend,
    }


def _cp_attempt(ctx: RankContext, item: TorchCpCase, kv_mode: str) -> tuple[dict, float]:
    """Time SDPA inside ``context_parallel`` with K/V heads per ``kv_mode``.

    Each step the ranks could disagree on ends in an agreement (the minimum of their
    codes); exceptions are caught inside the block so that it exits normally (PyTorch
    restores SDPA only then). Returns this rank's part and the agreed code.
    """
    cp, problem = ctx.torch_cp, item.problem
    length = global_seqlen(problem, ctx.rank.world_size)
    kv_heads = problem.heads if kv_mode == KV_HEADS_EXPANDED else problem.heads_k
    options = cp.api["options"]
    failure = None
    buffers: list[Any] = []
    sets: list[common.InputSet] = []
    # Global inputs on every rank; context_parallel keeps each rank's shard of them.
    try:
        sets = _random_sets(ctx, problem, length=length, kv_heads=kv_heads)
        buffers = [tensor for inputs in sets for tensor in (inputs.q, inputs.k, inputs.v)]
    except Exception as exc:
        failure = _failure(STATUS_ERROR, exc)
    if not ctx.rank.all_ok(failure is None):
        return failure or _failure(STATUS_ERROR, "another rank could not allocate"), CODE_FAILED
    previous = None if options is None else options.enable_load_balance
    stack = contextlib.ExitStack()
    try:
        if options is not None:
            options.enable_load_balance = item.causal
        try:
            stack.enter_context(
                cp.api["context_parallel"](
                    cp.mesh,
                    buffers=buffers,
                    buffer_seq_dims=[SEQUENCE_AXIS] * len(buffers),
                    no_restore_buffers=set(buffers),
                )
            )
            stack.enter_context(
                cp.api["sdpa_kernel"](getattr(cp.api["SDPBackend"], PEER_BACKENDS[item.peer]))
            )
        except Exception as exc:
            failure = _failure(STATUS_ERROR, exc)
        if not ctx.rank.all_ok(failure is None):
            reason = "another rank could not shard its inputs"
            return failure or _failure(STATUS_ERROR, reason), CODE_FAILED
        return _cp_time(ctx, item, sets, kv_mode)
    finally:
        stack.close()
        if options is not None:
            options.enable_load_balance = previous
        del buffers, sets
        ctx.arrays.release()


def _cp_time(
    ctx: RankContext, item: TorchCpCase, sets: list[common.InputSet], kv_mode: str
) -> tuple[dict, float]:
    """The timed part of :func:`_cp_attempt`, inside ``context_parallel``."""
    torch = ctx.torch_cp.torch
    extra = {"enable_gqa": True} if kv_mode == KV_HEADS_NATIVE else {}

    def call(index: int) -> object:
        inputs = sets[index]
        # Looked up at each call: context_parallel replaces it while the block is open.
        sdpa = torch.nn.functional.scaled_dot_product_attention
        return sdpa(inputs.q, inputs.k, inputs.v, is_causal=item.causal, **extra)

    own, code = {}, CODE_OK
    try:
        call(0)
        ctx.timer.synchronize()
    except Exception as exc:
        refused = common.is_torch_unsupported(exc) or isinstance(exc, TypeError)
        code = CODE_REFUSED if refused else CODE_FAILED
        own = _failure(STATUS_UNSUPPORTED if refused else STATUS_ERROR, exc)
    code = ctx.rank.min(code)
    if code != CODE_OK:
        status = STATUS_UNSUPPORTED if code == CODE_REFUSED else STATUS_ERROR
        return own or _failure(status, "refused or failed on another rank"), code
    try:
        own = _timed_calls(ctx, call, len(sets), agree=True, cold=False)
    except Exception as exc:
        own = _failure(STATUS_ERROR, exc)
    code = ctx.rank.min(CODE_OK if own["status"] == STATUS_OK else CODE_FAILED)
    if code != CODE_OK and own["status"] == STATUS_OK:
        own = _failure(STATUS_ERROR, "failed on another rank while timing")
    return own, code


def measure_torch_cp(ctx: RankContext, item: TorchCpCase) -> dict[str, Any] | None:
    """Time PyTorch's context parallelism on the global problem of ``item`` (every rank).

    With GQA, SDPA first gets the ``Hk`` K/V heads (``enable_gqa=True``); if the backend
    refuses, K/V are expanded to ``H`` heads, and the record says so.
    """
    problem = item.problem
    flops = flops_per_gpu(problem, ctx.rank.world_size, causal=item.causal)
    if ctx.torch_cp is None:
        own = _failure(STATUS_UNSUPPORTED, ctx.torch_cp_reason or "not available")
        return _with(combine_ranks(ctx, own, flops))
    if item.causal and ctx.torch_cp.api["options"] is None:
        reason = "this PyTorch exposes no _cp_options.enable_load_balance to turn load balancing on"
        return _with(combine_ranks(ctx, _failure(STATUS_UNSUPPORTED, reason), flops))
    same = problem.heads_k == problem.heads
    modes = (KV_HEADS_SAME,) if same else (KV_HEADS_NATIVE, KV_HEADS_EXPANDED)
    notes: list[str] = []
    for mode in modes:
        own, code = _cp_attempt(ctx, item, mode)
        if code != CODE_REFUSED or mode == modes[-1]:
            break
        notes.append(f"{mode} refused: {own.get('error', '')}")
    return _with(combine_ranks(ctx, own, flops), kv_heads=mode, kv_heads_note="; ".join(notes))


def _with(result: dict[str, Any] | None, **extra: Any) -> dict[str, Any] | None:
    """Rank 0's part ``{"result", **extra}`` without the empty extras (None elsewhere)."""
    return None if result is None else {"result": result, **{k: v for k, v in extra.items() if v}}


_MEASURE: dict[type, Callable[[RankContext, Any], dict[str, Any] | None]] = {
    FlashStep: measure_flash_step,
    RingCase: measure_ring,
    TorchCpCase: measure_torch_cp,
}


def _open_torch_cp(ctx: RankContext, torch: Any) -> None:
    """Set ``ctx.torch_cp`` when every rank has PyTorch's API and its CUDA device mesh."""
    cp = reason = None
    try:
        from torch.distributed.device_mesh import init_device_mesh

        api = find_torch_cp_api()
    except (ImportError, AttributeError) as exc:
        reason = f"this PyTorch lacks context parallelism: {type(exc).__name__}: {exc}"
    if not ctx.rank.all_ok(reason is None):
        ctx.torch_cp_reason = reason or "another rank's PyTorch lacks context parallelism"
        return
    try:
        cp = TorchContextParallel(torch, api, init_device_mesh("cuda", (ctx.rank.world_size,)))
    except Exception as exc:
        reason = f"the device mesh did not start: {type(exc).__name__}: {exc}"
    if not ctx.rank.all_ok(reason is None):
        ctx.torch_cp_reason = reason or "the device mesh did not start on another rank"
        return
    ctx.torch_cp = cp


def run_rank(rank: Any, setup: WorkerSetup) -> None:
    """Body of one rank (:func:`baracuda._launch.spawn`): every measurement in order.

    Rank 0 sends ``("setup", info)`` once, then ``("item", index, part)`` per finished
    measurement. Every rank runs the same sequence of collectives.
    """
    import torch
    from cuda.core import Device

    import baracuda

    Device(rank.rank).set_current()
    torch.cuda.set_device(rank.rank)
    ctx = RankContext(
        rank=rank,
        setup=setup,
        baracuda=baracuda,
        arrays=common.TorchArrays(torch),
        timer=common.TorchEventTimer(torch),
    )
    if rank.world_size > 1:
        ctx.comm = rank.nccl_communicator(device=rank.rank)
    if setup.peers:
        _open_torch_cp(ctx, torch)
    if rank.rank == REFERENCE_RANK:
        info = {"ready": ctx.torch_cp is not None, "reason": ctx.torch_cp_reason}
        info.update(ctx.torch_cp.describe() if ctx.torch_cp is not None else {})
        rank.send(("setup", {"torch_cp": info}))
    try:
        for index, item in enumerate(setup.items):
            go = setup.deadline is None or time.time() < setup.deadline
            if not rank.broadcast(go):
                break
            part = _MEASURE[type(item)](ctx, item)
            if part is not None:
                rank.send(("item", index, part))
    except BaseException:
        if ctx.comm is not None:
            ctx.comm.abort()
        raise
    if ctx.comm is not None:
        ctx.comm.destroy()


# ---------------------------------------------------------------------------------
# The parent: the document from rank 0's messages
# ---------------------------------------------------------------------------------


class RingCollector:
    """Builds ``document`` (:func:`build_ring_document`) from rank 0's messages, calling
    ``write`` after each change and printing a progress line per measurement to
    ``progress`` (default: the standard error)."""

    def __init__(
        self,
        items: Sequence[WorkItem],
        world_size: int,
        document: dict[str, Any],
        *,
        write: Callable[[], object],
        progress: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._items = items
        self._world_size = world_size
        self._document = document
        self._write = write
        self._progress = sys.stderr if progress is None else progress
        self._clock = clock
        self._started = clock()
        self.finished: set[int] = set()

    def __call__(self, rank: int, message: tuple) -> None:
        """Take ``("setup", info)`` or ``("item", index, part)`` from a rank."""
        if message[0] == "setup":
            self._document["setup"].update(message[1])
            self._write()
            return
        _, index, part = message
        item, document = self._items[index], self._document
        if isinstance(item, FlashStep):
            document["flash_steps"].append(flash_step_entry(item, part))
        elif isinstance(item, RingCase):
            document["records"].append(ring_entry(item, self._world_size, part))
        else:
            document["torch_cp"].append(torch_cp_entry(item, self._world_size, part))
        self.finished.add(index)
        join_references(document)
        self._write()
        result = part["result"]
        text = result["status"]
        if text == STATUS_OK:
            unit = "TFLOP/s" if isinstance(item, FlashStep) else "TFLOP/s per GPU"
            text = f"{result['median_ms']:.3f} ms, {result['tflops']:.1f} {unit}"
        elapsed = self._clock() - self._started
        line = common.progress_line(index + 1, len(self._items), item.label(), text, elapsed)
        print(line, file=self._progress, flush=True)

    def finish(self, *, stop_reason: str | None) -> dict[str, Any]:
        """Record the measurements that did not finish and whether the run is complete;
        write the document once more and return it."""
        self._document["skipped"] = [
            {"item": item.label(), "reason": stop_reason or "not run"}
            for index, item in enumerate(self._items)
            if index not in self.finished
        ]
        self._document["complete"] = not self._document["skipped"]
        join_references(self._document)
        self._write()
        return self._document


# ---------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------


def add_ring_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``python -m baracuda bench ring`` to ``parser``."""
    dtypes = ",".join(common.ALL_DTYPES)
    common.add_options(
        parser,
        {
            "--chunks": (
                common.size_list,
                "comma-separated tokens per GPU, k suffix allowed (default 1k,2k,4k,8k,16k,32k)",
            ),
            "--dtypes": (
                common.dtype_list,
                f"comma-separated dtypes from {dtypes} (default {','.join(DEFAULT_DTYPES)})",
            ),
            "--heads": (common.size, f"query heads H (default {DEFAULT_HEADS})"),
            "--heads-k": (common.size, f"K/V heads Hk, a divisor of H (default {DEFAULT_HEADS_K})"),
            "--head-dim": (common.size, f"head dim D (default {DEFAULT_HEAD_DIM})"),
            "--world-size": (common.size, "ranks, one GPU each (default: every visible GPU)"),
            "--cases": (
                common.choice_list(tuple(CASE_KINDS)),
                f"comma-separated cases from {','.join(CASE_KINDS)} (default all)",
            ),
            "--schedules": (
                common.choice_list(SCHEDULES),
                f"comma-separated schedules from {','.join(SCHEDULES)} (default both)",
            ),
            "--warmup": (
                common.count,
                "untimed calls per measurement after the cold and probe calls (default: about "
                f"{WARMUP_TARGET_S:g} s worth, {MIN_ADAPTIVE_WARMUP} to {MAX_ADAPTIVE_WARMUP})",
            ),
            "--repeats": (
                common.size,
                f"timed calls per measurement (default: about {REPEATS_TARGET_S:g} s worth, "
                f"{MIN_ADAPTIVE_REPEATS} to {MAX_ADAPTIVE_REPEATS})",
            ),
            "--max-seconds": (
                common.seconds,
                "start no measurement after this many seconds; the rest is recorded as skipped",
            ),
            "--out": (
                Path,
                "JSON output path (default benchmarks/results/<gpu>-<yyyy-mm-dd>-ring.json)",
            ),
        },
    )
    common.add_preset_options(
        parser,
        quick=f"a small grid ({common.describe_preset(QUICK_PRESET, format_tokens)})",
        no_peers="time baracuda only, not PyTorch's context parallelism",
    )


def resolve_ring_config(args: argparse.Namespace) -> RingBenchConfig:
    """Merge parsed options, the ``--quick`` preset and the defaults (in that priority).

    Raises
    ------
    ConfigError
        ``Hk`` does not divide ``H``, or a zigzag case has an odd chunk.
    """
    config = RingBenchConfig(
        **common.resolve_options(args, CONFIG_DEFAULTS, QUICK_PRESET),
        world_size=args.world_size,
        peers=not args.no_peers,
        max_seconds=args.max_seconds,
        out=args.out,
    )
    if config.heads % config.heads_k != 0:
        raise ConfigError(
            f"--heads-k must divide --heads (got H={config.heads}, Hk={config.heads_k})"
        )
    odd = [chunk for chunk in config.chunks if chunk % 2]
    if odd and any(CASE_KINDS[case].layout == ZIGZAG for case in config.cases):
        raise ConfigError(
            f"the zigzag layout splits each chunk in two halves (got odd chunks {odd})"
        )
    return config


def resolve_world_size(requested: int | None, device_count: int) -> int:
    """Return ``requested`` ranks, or one per visible GPU (at least 1); ConfigError when
    more ranks than visible GPUs are requested."""
    if requested is None:
        return max(1, device_count)
    if requested > device_count:
        raise ConfigError(
            f"--world-size {requested} needs {requested} GPUs (got {device_count} visible)"
        )
    return requested


def _software(baracuda: Any, torch: Any, world_size: int) -> dict[str, Any]:
    software = common.software_versions(baracuda=baracuda, torch=torch)
    software["nccl"] = baracuda.nccl.version() if world_size > 1 else None
    software["nccl_library"] = baracuda.nccl.library_path() or None
    software["torch_nccl"] = None
    with contextlib.suppress(Exception):
        software["torch_nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    return software


def peers_unavailable_reason(config: RingBenchConfig, *, world_size: int) -> str | None:
    """Return why PyTorch's context parallelism is not timed, or None when it is."""
    if not config.peers:
        return "--no-peers"
    if world_size < MIN_PEER_WORLD_SIZE:
        return f"it needs at least {MIN_PEER_WORLD_SIZE} GPUs (world size {world_size})"
    return None


def stop_reason(*, failed: bool, interrupted: bool, budget: bool) -> str | None:
    """Return why measurements may be missing from a run: a failure, Ctrl-C, the budget."""
    if failed:
        return STOP_FAILURE
    if interrupted:
        return STOP_INTERRUPTED
    return STOP_BUDGET if budget else None


def run_ring(args: argparse.Namespace) -> int:
    """Entry point of ``python -m baracuda bench ring``.

    Returns 0 after a run or without a GPU; 1 when a rank failed or a required package is
    missing; 2 for options that do not go together; 130 after Ctrl-C (the measurements so
    far are kept).
    """
    try:
        config = resolve_ring_config(args)
        gpu = common.probe_gpu()
        if not gpu.present:
            return common.no_gpu_exit(PROGRAM, gpu)
        world_size = resolve_world_size(config.world_size, gpu.device_count)
    except ConfigError as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        return USAGE_EXIT
    torch = common.optional_import("torch")
    if torch is None:
        print(
            f"{PROGRAM}: needs torch (torch.multiprocessing starts the ranks, torch.distributed "
            "joins them).",
            file=sys.stderr,
        )
        return common.MISSING_DEPENDENCY_EXIT
    import baracuda

    try:
        software = _software(baracuda, torch, world_size)
    except baracuda.BaracudaError as exc:
        print(f"{PROGRAM}: the ring needs NCCL: {type(exc).__name__}: {exc}", file=sys.stderr)
        return common.MISSING_DEPENDENCY_EXIT
    peers_reason = peers_unavailable_reason(config, world_size=world_size)
    items = work_items(config, torch_cp=peers_reason is None)
    now = datetime.datetime.now().astimezone()
    document = build_ring_document(
        config,
        gpu,
        world_size=world_size,
        software=software,
        timer_method=common.TorchEventTimer.method,
        arrays_name=common.TorchArrays.name,
        peers_reason=peers_reason,
        now=now,
    )
    out = config.out or common.default_output_path(gpu.name, now.date(), target=TARGET_NAME)
    setup = WorkerSetup(
        items=tuple(items),
        warmup=config.warmup,
        repeats=config.repeats,
        l2_cache_bytes=gpu.l2_cache_bytes,
        deadline=None if config.max_seconds is None else time.time() + config.max_seconds,
        peers=peers_reason is None,
    )
    print(f"{PROGRAM}: {len(items)} measurements on {world_size} x {gpu.name}", file=sys.stderr)
    if world_size == 1:
        print(f"{PROGRAM}: one GPU: the ring runs with world size 1, without NCCL", file=sys.stderr)
    collector = RingCollector(
        items, world_size, document, write=lambda: common.write_json(out, document)
    )
    interrupted = False
    try:
        _launch.spawn(
            run_rank,
            world_size,
            (setup,),
            timeout=RANK_TIMEOUT_S,
            on_message=collector,
            backend=BACKEND if peers_reason else PEER_BACKEND,
            env={**os.environ, **NCCL_ENVIRONMENT},
        )
    except _launch.LaunchError as exc:
        document["failures"].append(str(exc))
    except KeyboardInterrupt:
        interrupted = True
    failed = bool(document["failures"])
    budget = config.max_seconds is not None
    collector.finish(stop_reason=stop_reason(failed=failed, interrupted=interrupted, budget=budget))
    print_ring_table(document)
    print(f"results written to {out}")
    for failure in document["failures"]:
        print(f"{PROGRAM}: {failure}", file=sys.stderr)
    if interrupted:
        return INTERRUPTED_EXIT
    return RANK_FAILURE_EXIT if failed else 0
