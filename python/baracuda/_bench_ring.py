"""Benchmark of ring attention across GPUs (``python -m baracuda bench ring``).

One process per GPU (:func:`baracuda._launch.spawn`) times :meth:`baracuda.RingAttentionPlan.run`
around an NCCL ring against baracuda's single-GPU flash attention on one ring step's shape
and, with two GPUs or more, PyTorch's context parallelism on the same global problem. The
ranks agree on every decision through gloo collectives; rank 0 sends each result to the
parent, which writes the JSON after every measurement. :data:`METHOD` and
``benchmarks/README.md`` describe the method.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from baracuda import _bench_common as common
from baracuda import _launch
from baracuda._bench_common import STATUS_ERROR, STATUS_OK, STATUS_SKIPPED, STATUS_UNSUPPORTED

SCHEMA = "baracuda-bench-ring/1"
PROGRAM = "baracuda bench ring"
TARGET = "ring"
BATCH = 1
SEQUENCE_AXIS = 2
SCHEDULES = ("overlapped", "serial")
CASE_KINDS = {
    "noncausal": (False, "contiguous"),
    "causal-contiguous": (True, "contiguous"),
    "causal-zigzag": (True, "zigzag"),
}
"""Each case's ``(causal, layout)``."""
QUICK_PRESET = {"chunks": (1 * common.KIBI, 8 * common.KIBI), "warmup": 2, "repeats": 10}
ADAPTIVE = {"warmup": (1.0, 1, common.DEFAULT_WARMUP), "repeats": (3.0, 5, 50)}
"""``(seconds, minimum, maximum)`` of the counts that follow the probe call when not given."""
TARGET_FRACTION, TARGET_MIN_CHUNK, TARGET_SCHEDULE = 0.90, 8 * common.KIBI, "overlapped"
"""The goal: with overlap, this fraction of single-GPU flash per GPU from this chunk on."""

MIN_PEER_WORLD_SIZE = 2
PEER_BACKENDS = {"torch_cp_cudnn": "CUDNN_ATTENTION", "torch_cp_flash": "FLASH_ATTENTION"}
PEER_LABELS = {"torch_cp_cudnn": "cp cudnn", "torch_cp_flash": "cp flash"}
KV_HEADS_SAME = "same as H"
KV_HEADS_NATIVE = "native GQA (enable_gqa=True)"
KV_HEADS_EXPANDED = "expanded to H (K/V made with H heads, as after repeat_interleave)"
CP_IMPLEMENTATION_MODULES = (
    "torch.distributed.tensor.experimental.context_parallel._attention",
    "torch.distributed.tensor.experimental._context_parallel._attention",
    "torch.distributed.tensor.experimental._attention",
)
"""Modules that implement ``context_parallel`` and hold its ``_cp_options``, newest first."""
CP_PUBLIC_MODULE = "torch.distributed.tensor.experimental"
SDPA_KERNEL_MODULE = "torch.nn.attention"
CODE_FAILED, CODE_REFUSED, CODE_OK = 0.0, 1.0, 2.0
"""Outcome of a step of the PyTorch peer; the ranks agree on the minimum."""

NCCL_ENVIRONMENT = {"NCCL_NVLS_ENABLE": "0"}
BACKEND, PEER_BACKEND = "gloo", "cpu:gloo,cuda:nccl"
REFERENCE_RANK = 0
RANK_TIMEOUT_S = 900.0
"""Longest silence of the ranks (one measurement, or the start) before the run is ended."""
USAGE_EXIT, RANK_FAILURE_EXIT, INTERRUPTED_EXIT = 2, 1, 130
STOP_INTERRUPTED, STOP_BUDGET, STOP_FAILURE = "interrupted", "time budget spent", "a rank failed"

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


@dataclasses.dataclass(frozen=True)
class Problem:
    """One rank's share of a ring problem: ``chunk`` queries and ``chunk`` keys."""

    dtype: str
    chunk: int
    heads: int
    heads_k: int
    head_dim: int
    batch: int = BATCH

    @property
    def extents(self) -> tuple[int, int, int, int, int]:
        """``(B, H, Sq, Sk, D)`` of one ring step, as the descriptors take them."""
        return self.batch, self.heads, self.chunk, self.chunk, self.head_dim

    def shape(self, heads: int | None = None, length: int | None = None) -> tuple[int, ...]:
        """Return ``[B, heads, length, D]`` (defaults ``H`` and ``chunk``)."""
        return self.batch, heads or self.heads, length or self.chunk, self.head_dim

    def fields(self) -> dict[str, Any]:
        """Return the problem as JSON fields."""
        names = ("dtype", "chunk", "batch", "heads", "heads_k", "head_dim")
        return {name: getattr(self, name) for name in names}

    def flops(self, seqlen: int, *, causal: bool) -> int:
        """Return :func:`baracuda._bench_common.attention_flops` over ``seqlen`` positions."""
        return common.attention_flops(self.batch, self.heads, seqlen, self.head_dim, causal=causal)

    def label(self) -> str:
        """Return a short human-readable name."""
        sizes = f"H={self.heads} Hk={self.heads_k} D={self.head_dim}"
        return f"{self.dtype} chunk {format_tokens(self.chunk)} {sizes}"


@dataclasses.dataclass(frozen=True)
class FlashStep:
    """The single-GPU reference: :func:`baracuda.flash_attention` on one ring step's shape."""

    problem: Problem

    def label(self) -> str:
        """Return a short human-readable name."""
        return f"{self.problem.label()} flash step (rank {REFERENCE_RANK})"


@dataclasses.dataclass(frozen=True)
class RingCase:
    """One ring measurement: a problem, a case of :data:`CASE_KINDS` and a schedule."""

    problem: Problem
    case: str
    schedule: str

    @property
    def causal(self) -> bool:
        """Whether keys after each query's global position are hidden."""
        return CASE_KINDS[self.case][0]

    @property
    def layout(self) -> str:
        """``"contiguous"`` or ``"zigzag"``."""
        return CASE_KINDS[self.case][1]

    def label(self) -> str:
        """Return a short human-readable name."""
        return f"{self.problem.label()} {self.case} {self.schedule}"


@dataclasses.dataclass(frozen=True)
class TorchCpCase:
    """PyTorch context parallelism over SDPA forced to one backend, on the same global problem."""

    problem: Problem
    causal: bool
    peer: str

    def label(self) -> str:
        """Return a short human-readable name."""
        return f"{self.problem.label()} {'causal' if self.causal else 'noncausal'} {self.peer}"


WorkItem = FlashStep | RingCase | TorchCpCase


@dataclasses.dataclass(frozen=True)
class RingBenchConfig:
    """Resolved settings of one ring benchmark run (``warmup`` / ``repeats`` None: adaptive)."""

    dtypes: tuple[str, ...] = ("bf16",)
    chunks: tuple[int, ...] = tuple(size * common.KIBI for size in (1, 2, 4, 8, 16, 32))
    heads: int = 32
    heads_k: int = 8
    head_dim: int = 128
    cases: tuple[str, ...] = tuple(CASE_KINDS)
    schedules: tuple[str, ...] = SCHEDULES
    world_size: int | None = None
    warmup: int | None = None
    repeats: int | None = None
    peers: bool = True
    max_seconds: float | None = None
    out: Path | None = None


DEFAULTS = RingBenchConfig()


def work_items(config: RingBenchConfig, *, torch_cp: bool) -> list[WorkItem]:
    """Expand a configuration into its measurements, in the order every rank runs them: per
    dtype and chunk the flash step, every case under every schedule, then (with
    ``torch_cp``) each causal setting of the cases under each SDPA backend."""
    items: list[WorkItem] = []
    causal_settings = dict.fromkeys(CASE_KINDS[case][0] for case in config.cases)
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


def flops_per_gpu(problem: Problem, world_size: int, *, causal: bool) -> int:
    """Return each GPU's share of the global FLOPs (``S = world_size * chunk``)."""
    return problem.flops(world_size * problem.chunk, causal=causal) // world_size


def step_flops(problem: Problem) -> int:
    """Return the FLOPs of one ring step: ``chunk`` queries against ``chunk`` keys, non-causal."""
    return problem.flops(problem.chunk, causal=False)


def meets_target(record: Mapping[str, Any]) -> bool | None:
    """Tell whether a ring record keeps ``TARGET_FRACTION``; None where the goal does not
    apply (another schedule, a chunk under ``TARGET_MIN_CHUNK``, no fraction)."""
    kept = record.get("fraction_kept")
    if record["schedule"] != TARGET_SCHEDULE or record["chunk"] < TARGET_MIN_CHUNK or kept is None:
        return None
    return kept >= TARGET_FRACTION


def adaptive_count(call_s: float, target_s: float, minimum: int, maximum: int) -> int:
    """Return how many calls of ``call_s`` seconds fill ``target_s``, within bounds
    (``maximum`` when ``call_s`` is 0 or less: unknown)."""
    return maximum if call_s <= 0 else min(maximum, max(minimum, math.ceil(target_s / call_s)))


def summarize_ranks(
    slowest_ms: Sequence[float], rank_medians_ms: Sequence[float], warmup: int, flops: int
) -> dict[str, Any]:
    """Return :func:`baracuda._bench_common.summarize` of the slowest rank's time per call,
    with each rank's median (``per_rank_median_ms``) and the warm-up count."""
    result = common.summarize(slowest_ms, flops)
    return {**result, "per_rank_median_ms": [float(m) for m in rank_medians_ms], "warmup": warmup}


def entry(item: WorkItem, world_size: int, part: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Return the document list and the JSON entry of a measurement from rank 0's part; a
    ring record's references are filled by :func:`join_references`."""
    problem = item.problem
    if isinstance(item, FlashStep):
        fields = {**problem.fields(), "flops": step_flops(problem), "plan": part.get("plan")}
        return "flash_steps", {**fields, "result": part["result"]}
    shared = {**problem.fields(), "world_size": world_size}
    shared["global_seqlen"] = world_size * problem.chunk
    per_gpu = flops_per_gpu(problem, world_size, causal=item.causal)
    if isinstance(item, RingCase):
        return "records", {
            **shared,
            "case": item.case,
            "causal": item.causal,
            "layout": item.layout,
            "schedule": item.schedule,
            "flops": problem.flops(shared["global_seqlen"], causal=item.causal),
            "flops_per_gpu": per_gpu,
            "plan": part.get("plan"),
            "ring": part["result"],
            **dict.fromkeys(("flash_step_tflops", "fraction_kept", "meets_target")),
            "peers": {},
        }
    peer = {"causal": item.causal, "peer": item.peer, "backend": PEER_BACKENDS[item.peer]}
    peer.update(load_balance=item.causal, kv_heads=part.get("kv_heads"), flops_per_gpu=per_gpu)
    note = {"kv_heads_note": part["kv_heads_note"]} if part.get("kv_heads_note") else {}
    return "torch_cp", {**shared, **peer, "result": part["result"], **note}


def _ok_tflops(result: Mapping[str, Any] | None) -> float | None:
    return result["tflops"] if result is not None and result["status"] == STATUS_OK else None


def join_references(document: dict[str, Any]) -> dict[str, Any]:
    """Fill each ring record's flash reference, fraction kept, target verdict and peers
    (in place); return ``document``."""
    flash = {(e["dtype"], e["chunk"]): e["result"] for e in document["flash_steps"]}
    peers = {
        (e["dtype"], e["chunk"], e["causal"], e["peer"]): e["result"] for e in document["torch_cp"]
    }
    for record in document["records"]:
        key = record["dtype"], record["chunk"]
        flash_tflops = _ok_tflops(flash.get(key))
        ring_tflops = _ok_tflops(record["ring"])
        record["flash_step_tflops"] = flash_tflops
        usable = ring_tflops is not None and flash_tflops is not None and flash_tflops > 0
        record["fraction_kept"] = ring_tflops / flash_tflops if usable else None
        record["meets_target"] = meets_target(record)
        record["peers"] = {
            name: {k: peer[k] for k in ("status", "median_ms", "tflops", "error") if k in peer}
            for name in PEER_BACKENDS
            if (peer := peers.get((*key, record["causal"], name)))
        }
    return document


def build_ring_document(
    config: RingBenchConfig, header: dict[str, Any], *, world_size: int, peers_reason: str | None
) -> dict[str, Any]:
    """Return the JSON document: ``header`` (:func:`baracuda._bench_common.document_header`),
    the method and settings, and empty measurement lists (``peers_reason``: why PyTorch
    context parallelism is not timed, None when it is)."""
    return {
        **header,
        "world_size": world_size,
        "method": METHOD,
        "timing": {
            "events": common.EVENTS,
            "arrays": common.ARRAYS,
            "warmup": "adaptive" if config.warmup is None else config.warmup,
            "repeats": "adaptive" if config.repeats is None else config.repeats,
            "adaptive": {
                f"{name}{suffix}": value
                for name, (target_s, *bounds) in ADAPTIVE.items()
                for suffix, value in (("_target_s", target_s), ("_bounds", bounds))
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
        **{key: [] for key in ("flash_steps", "records", "torch_cp", "skipped", "failures")},
    }


def format_ring_table(document: Mapping[str, Any]) -> str:
    """Return the ring records as a text table: median ms of the slowest rank, per-GPU
    TFLOP/s, flash step TFLOP/s, their ratio (``kept``) and the peers' per-GPU TFLOP/s."""
    peer_names = [name for name in PEER_BACKENDS if document["peers"]["enabled"]]
    headers = ["dtype", "chunk", "S", "case", "schedule", "ring ms", "TF/s/GPU", "flash TF/s"]
    headers += ["kept", *(f"{PEER_LABELS[name]} TF/s/GPU" for name in peer_names)]
    rows = [
        [
            record["dtype"],
            format_tokens(record["chunk"]),
            format_tokens(record["global_seqlen"]),
            record["case"],
            record["schedule"],
            *common.result_cells(record["ring"]),
            "-" if record["flash_step_tflops"] is None else f"{record['flash_step_tflops']:.1f}",
            "-" if record["fraction_kept"] is None else f"{record['fraction_kept']:.0%}",
            *(common.result_cells(record["peers"].get(name))[1] for name in peer_names),
        ]
        for record in document["records"]
    ]
    return common.render_table(headers, rows)


def print_ring_table(document: Mapping[str, Any], stream: TextIO | None = None) -> None:
    """Print the table, the target line, the failures and the skipped measurements (to
    ``stream``, by default the standard output)."""
    stream = sys.stdout if stream is None else stream
    judged = [r["meets_target"] for r in document["records"] if r["meets_target"] is not None]
    lines = [
        format_ring_table(document),
        f"target ({TARGET_SCHEDULE}, chunk >= {format_tokens(TARGET_MIN_CHUNK)}, kept >= "
        f"{TARGET_FRACTION:.0%}): met by {sum(judged)} of {len(judged)} records",
    ]
    if document["world_size"] == 1:
        lines.append("world size 1: the ring ran on one GPU, without NCCL")
    if not document["peers"]["enabled"]:
        lines.append(f"torch context parallelism not timed: {document['peers']['reason']}")

    def chunk(e: Mapping[str, Any]) -> str:
        return f"{e['dtype']} chunk {format_tokens(e['chunk'])}"

    results = [(f"{chunk(e)} flash step", e["result"]) for e in document["flash_steps"]]
    results += [
        (f"{chunk(r)} {r['case']} {r['schedule']} ring", r["ring"]) for r in document["records"]
    ]
    results += [
        (f"{chunk(e)} {'causal' if e['causal'] else 'noncausal'} {e['peer']}", e["result"])
        for e in document["torch_cp"]
    ]
    lines += [
        f"{label}: {r['status']}: {r.get('error', '')}"
        for label, r in results
        if r["status"] != STATUS_OK
    ]
    lines += [f"skipped {s['item']}: {s['reason']}" for s in document["skipped"]]
    print("\n".join(lines), file=stream)


@dataclasses.dataclass(frozen=True)
class WorkerSetup:
    """What every rank receives: the measurements, the counts (None: after the probe call),
    the L2 size, the ``time.time()`` after which no measurement starts, and whether to open
    PyTorch's context parallelism."""

    items: tuple[WorkItem, ...]
    warmup: int | None
    repeats: int | None
    l2_cache_bytes: int
    deadline: float | None = None
    peers: bool = False


@dataclasses.dataclass(frozen=True)
class TorchContextParallel:
    """PyTorch's context parallelism: ``context_parallel``, the module it comes from, its
    ``_cp_options`` (None without ``enable_load_balance``), ``sdpa_kernel`` and
    ``SDPBackend``; on a rank, ``torch`` and the 1-D CUDA device mesh."""

    context_parallel: Callable[..., Any]
    module: str
    options: Any
    sdpa_kernel: Callable[[Any], Any]
    backends: Any
    torch: Any = None
    mesh: Any = None

    def describe(self) -> dict[str, Any]:
        """Return what shapes the peer's numbers: the module, the rotate method."""
        rotate = None if self.options is None else str(self.options.rotate_method)
        return {
            "module": self.module,
            "rotate_method": rotate,
            "load_balance": "on for causal, off for non-causal",
        }


@dataclasses.dataclass
class RankContext:
    """What a rank measures with; ``rank`` is its :class:`baracuda._launch.Rank`, ``cuda``
    is ``torch.cuda``."""

    rank: Any
    setup: WorkerSetup
    baracuda: Any
    arrays: common.TorchArrays
    cuda: Any
    comm: Any = None
    torch_cp: TorchContextParallel | None = None
    torch_cp_reason: str | None = None


def _classified(baracuda: Any, exc: BaseException) -> dict[str, Any]:
    """``unsupported`` for baracuda's refusal, ``error`` for anything else."""
    unsupported = isinstance(exc, baracuda.UnsupportedError)
    return common.failure(STATUS_UNSUPPORTED if unsupported else STATUS_ERROR, exc)


def _agreed(ctx: RankContext, own: dict[str, Any] | None, status: str, reason: str) -> Any:
    """Return None where no rank has a failure, else this rank's ``own`` or the failure
    ``status`` for ``reason`` (a failure on another rank)."""
    return None if ctx.rank.all_ok(own is None) else own or common.failure(status, reason)


def _random_sets(
    ctx: RankContext, problem: Problem, *, length: int | None = None, kv_heads: int | None = None
) -> list[tuple[Any, Any, Any]]:
    """Return ``(q, k, v)`` sets of random values; as many as a rank's ``chunk`` of them
    needs to exceed twice the L2 (``length`` positions each, default ``chunk``)."""
    kv_heads = kv_heads or problem.heads_k
    elements = problem.batch * problem.chunk * problem.head_dim * (problem.heads + 2 * kv_heads)
    item_bytes = common.ITEM_BYTES[problem.dtype]
    count = common.sets_to_exceed_l2(elements * item_bytes, ctx.setup.l2_cache_bytes)
    shapes = problem.shape(length=length), *[problem.shape(kv_heads, length)] * 2
    return [tuple(ctx.arrays.randn(shape, problem.dtype) for shape in shapes) for _ in range(count)]


def _timed_calls(
    ctx: RankContext, fn: Callable[[int], object], set_count: int, *, agree: bool, cold: bool = True
) -> dict[str, Any]:
    """Make a cold call (unless made already), a probe call, pick the counts and time ``fn``.

    With ``agree``, the counts follow the slowest rank's probe, so that every rank makes
    the same number of calls. Returns ``{"status": "ok", "samples_ms", "warmup"}``.
    """
    if cold:
        fn(0)
        ctx.cuda.synchronize()
    start = time.perf_counter()
    fn(1 % set_count)
    ctx.cuda.synchronize()
    probe_s = time.perf_counter() - start
    probe_s = ctx.rank.max([probe_s])[0] if agree else probe_s
    given = {name: getattr(ctx.setup, name) for name in ADAPTIVE}
    counts = {
        name: adaptive_count(probe_s, *ADAPTIVE[name]) if value is None else value
        for name, value in given.items()
    }
    samples = common.time_calls(fn, set_count, cuda=ctx.cuda, **counts)
    return {"status": STATUS_OK, "samples_ms": samples, "warmup": counts["warmup"]}


def combine_ranks(
    ctx: RankContext, own: Mapping[str, Any], item: RingCase | TorchCpCase, **extra: Any
) -> dict[str, Any] | None:
    """Combine every rank's part of one measurement of ``item`` into rank 0's message
    ``{"result", **extra}`` (None elsewhere).

    The parts are all ``ok`` or none (the ranks agreed before timing): the result is
    :func:`summarize_ranks` of the slowest rank's time per call, or the first failed rank's
    ``{"status", "error", "rank"}``.
    """
    flops = flops_per_gpu(item.problem, ctx.rank.world_size, causal=item.causal)
    ok = ctx.rank.all_ok(own["status"] == STATUS_OK)
    slowest = ctx.rank.max(own["samples_ms"]) if ok else []
    summary = {k: v for k, v in own.items() if k != "samples_ms"}
    summary["median"] = float(np.median(own["samples_ms"])) if ok else None
    parts = ctx.rank.gather(summary)
    if parts is None:
        return None
    if not ok:
        index, failed = next((r, p) for r, p in enumerate(parts) if p["status"] != STATUS_OK)
        result = {"status": failed["status"], "error": failed.get("error", ""), "rank": index}
    else:
        medians = [part["median"] for part in parts]
        result = summarize_ranks(slowest, medians, parts[0]["warmup"], flops)
    return {"result": result, **extra}


def measure_flash_step(ctx: RankContext, item: FlashStep) -> dict[str, Any] | None:
    """Time single-GPU flash attention on one ring step's shape on rank 0 (others: None,
    without a collective); a failure is recorded and the ring goes on."""
    if ctx.rank.rank != REFERENCE_RANK:
        return None
    baracuda, problem = ctx.baracuda, item.problem
    try:
        sets = _random_sets(ctx, problem)
        out = ctx.arrays.empty(problem.shape(), problem.dtype)
        own = _timed_calls(
            ctx, lambda i: baracuda.flash_attention(*sets[i], out=out), len(sets), agree=False
        )
    except Exception as exc:
        own = _classified(baracuda, exc)
    finally:
        sets = out = None
        ctx.arrays.release()
    if own["status"] != STATUS_OK:
        return {"result": {**own, "rank": REFERENCE_RANK}}
    samples = own["samples_ms"]
    result = summarize_ranks(samples, [np.median(samples)], own["warmup"], step_flops(problem))
    descriptor = baracuda.FlashSdpaDescriptor(*problem.extents, element=problem.dtype)
    return {"result": result, "plan": common.flash_plan_info(baracuda, descriptor)}


def _prepare_ring(ctx: RankContext, item: RingCase) -> tuple[Any, Callable[[int], object], int]:
    """Select the plan, allocate every buffer once and check the arguments (no collective);
    return the plan, the call on input set ``i`` and the number of sets."""
    baracuda, problem, arrays = ctx.baracuda, item.problem, ctx.arrays
    descriptor = baracuda.RingAttentionDescriptor(
        *problem.extents,
        num_heads_k=problem.heads_k,
        is_causal=item.causal,
        element=problem.dtype,
        layout=item.layout,
        schedule=item.schedule,
    )
    plan = baracuda.RingAttentionPlan.select(descriptor)
    try:
        sets = _random_sets(ctx, problem)
        y = arrays.empty(problem.shape(), problem.dtype)
        lse_dtype = "f64" if problem.dtype == "f64" else "f32"
        lse = arrays.empty(problem.shape()[:3], lse_dtype)
        scratch = [arrays.empty((plan.kv_scratch_elements,), problem.dtype) for _ in range(2)]
        # The accumulator scratch is raw bytes; f32 words keep it 16-byte aligned.
        words = max(1, math.ceil(plan.accumulator_scratch_bytes / common.ITEM_BYTES["f32"]))
        accumulators = arrays.empty((words,), "f32")
        q, k, v = sets[0]
        plan.can_implement(q, y, *scratch, accumulators, k=k, v=v, lse=lse)
    except BaseException:
        plan.close()
        raise

    def call(index: int) -> object:
        q, k, v = sets[index]
        return plan.run(q, y, *scratch, accumulators, comm=ctx.comm, k=k, v=v, lse=lse)

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
    own = _agreed(ctx, failure, STATUS_SKIPPED, "another rank could not set up this case")
    if own is not None and prepared is not None:
        prepared[0].close()
    elif own is None:
        plan, call, set_count = prepared
        try:
            own = _timed_calls(ctx, call, set_count, agree=True)
            plan_info = {"backend": plan.backend, "sku": plan.sku.name}
        finally:
            plan.close()
    prepared = call = None
    ctx.arrays.release()
    return combine_ranks(ctx, own, item, plan=plan_info)


def _callable_or_none(candidate: Any) -> Callable[..., Any] | None:
    """Return ``candidate`` (or the value it aliases, ``__value__``) if callable, else None."""
    value = getattr(candidate, "__value__", candidate)
    return value if callable(value) else None


def find_torch_cp_api(
    import_module: Callable[[str], Any] = importlib.import_module,
) -> TorchContextParallel:
    """Find PyTorch's ``context_parallel``: from the first of :data:`CP_IMPLEMENTATION_MODULES`
    that has it, with its ``_cp_options``, else from the public module (options None).

    Raises
    ------
    ImportError, AttributeError
        This PyTorch has no SDPA backend selection or no context parallelism.
    """
    attention = import_module(SDPA_KERNEL_MODULE)
    for name in (*CP_IMPLEMENTATION_MODULES, CP_PUBLIC_MODULE):
        try:
            module = import_module(name)
        except ImportError:
            if name == CP_PUBLIC_MODULE:
                raise
            continue
        context_parallel = _callable_or_none(getattr(module, "context_parallel", None))
        if context_parallel is not None:
            options = getattr(module, "_cp_options", None) if name != CP_PUBLIC_MODULE else None
            options = options if hasattr(options, "enable_load_balance") else None
            return TorchContextParallel(
                context_parallel, name, options, attention.sdpa_kernel, attention.SDPBackend
            )
    raise AttributeError(f"{CP_PUBLIC_MODULE} has no callable context_parallel")


def _cp_attempt(ctx: RankContext, item: TorchCpCase, kv_mode: str) -> tuple[dict[str, Any], float]:
    """Time SDPA inside ``context_parallel`` with K/V heads per ``kv_mode``; return this
    rank's part and the agreed code.

    Each step the ranks could disagree on ends in an agreement (the minimum of their
    codes); exceptions are caught inside the block so that it exits normally (PyTorch
    restores SDPA only then).
    """
    cp, problem = ctx.torch_cp, item.problem
    length = ctx.rank.world_size * problem.chunk
    kv_heads = problem.heads if kv_mode == KV_HEADS_EXPANDED else problem.heads_k
    failure, sets = None, []
    try:  # global inputs on every rank; context_parallel keeps each rank's shard of them
        sets = _random_sets(ctx, problem, length=length, kv_heads=kv_heads)
    except Exception as exc:
        failure = common.failure(STATUS_ERROR, exc)
    failure = _agreed(ctx, failure, STATUS_ERROR, "another rank could not allocate")
    if failure is not None:
        return failure, CODE_FAILED
    buffers = [tensor for inputs in sets for tensor in inputs]
    previous = None if cp.options is None else cp.options.enable_load_balance
    stack = contextlib.ExitStack()
    try:
        if cp.options is not None:
            cp.options.enable_load_balance = item.causal
        dims = [SEQUENCE_AXIS] * len(buffers)
        try:
            stack.enter_context(
                cp.context_parallel(
                    cp.mesh, buffers=buffers, buffer_seq_dims=dims, no_restore_buffers=set(buffers)
                )
            )
            stack.enter_context(cp.sdpa_kernel(getattr(cp.backends, PEER_BACKENDS[item.peer])))
        except Exception as exc:
            failure = common.failure(STATUS_ERROR, exc)
        failure = _agreed(ctx, failure, STATUS_ERROR, "another rank could not shard its inputs")
        if failure is not None:
            return failure, CODE_FAILED
        return _cp_time(ctx, item, sets, kv_mode)
    finally:
        stack.close()
        if cp.options is not None:
            cp.options.enable_load_balance = previous
        del buffers, sets
        ctx.arrays.release()


def _cp_time(
    ctx: RankContext, item: TorchCpCase, sets: list[tuple[Any, Any, Any]], kv_mode: str
) -> tuple[dict[str, Any], float]:
    """The timed part of :func:`_cp_attempt`, inside ``context_parallel``."""
    extra = {"enable_gqa": True} if kv_mode == KV_HEADS_NATIVE else {}
    functional = ctx.torch_cp.torch.nn.functional

    def call(index: int) -> object:
        # Looked up at each call: context_parallel replaces it while the block is open.
        return functional.scaled_dot_product_attention(*sets[index], is_causal=item.causal, **extra)

    own, code = {}, CODE_OK
    try:
        call(0)
        ctx.cuda.synchronize()
    except Exception as exc:
        refused = common.is_torch_unsupported(exc) or isinstance(exc, TypeError)
        code = CODE_REFUSED if refused else CODE_FAILED
        own = common.failure(STATUS_UNSUPPORTED if refused else STATUS_ERROR, exc)
    code = ctx.rank.min(code)
    if code != CODE_OK:
        status = STATUS_UNSUPPORTED if code == CODE_REFUSED else STATUS_ERROR
        return own or common.failure(status, "refused or failed on another rank"), code
    try:
        own = _timed_calls(ctx, call, len(sets), agree=True, cold=False)
    except Exception as exc:
        own = common.failure(STATUS_ERROR, exc)
    code = ctx.rank.min(CODE_OK if own["status"] == STATUS_OK else CODE_FAILED)
    if code != CODE_OK and own["status"] == STATUS_OK:
        own = common.failure(STATUS_ERROR, "failed on another rank while timing")
    return own, code


def measure_torch_cp(ctx: RankContext, item: TorchCpCase) -> dict[str, Any] | None:
    """Time PyTorch's context parallelism on the global problem of ``item`` (every rank).

    With GQA, SDPA first gets the ``Hk`` K/V heads (``enable_gqa=True``); if the backend
    refuses, K/V are expanded to ``H`` heads, and the record says so.
    """
    problem, extra = item.problem, {}
    if ctx.torch_cp is None:
        own = common.failure(STATUS_UNSUPPORTED, ctx.torch_cp_reason or "not available")
    elif item.causal and ctx.torch_cp.options is None:
        reason = "this PyTorch exposes no _cp_options.enable_load_balance to turn load balancing on"
        own = common.failure(STATUS_UNSUPPORTED, reason)
    else:
        modes = (
            (KV_HEADS_SAME,)
            if problem.heads_k == problem.heads
            else (KV_HEADS_NATIVE, KV_HEADS_EXPANDED)
        )
        notes = []
        for mode in modes:
            own, code = _cp_attempt(ctx, item, mode)
            if code != CODE_REFUSED or mode == modes[-1]:
                break
            notes.append(f"{mode} refused: {own.get('error', '')}")
        extra = {"kv_heads": mode, "kv_heads_note": "; ".join(notes)}
    return combine_ranks(ctx, own, item, **{k: v for k, v in extra.items() if v})


_MEASURE: dict[type, Callable[[RankContext, Any], dict[str, Any] | None]] = {
    FlashStep: measure_flash_step,
    RingCase: measure_ring,
    TorchCpCase: measure_torch_cp,
}


def _open_torch_cp(ctx: RankContext, torch: Any) -> None:
    """Set ``ctx.torch_cp`` when every rank has PyTorch's API and its CUDA device mesh."""
    reason = None
    try:
        from torch.distributed.device_mesh import init_device_mesh

        api = find_torch_cp_api()
    except (ImportError, AttributeError) as exc:
        reason = f"this PyTorch lacks context parallelism: {type(exc).__name__}: {exc}"
    if not ctx.rank.all_ok(reason is None):
        ctx.torch_cp_reason = reason or "another rank's PyTorch lacks context parallelism"
        return
    try:
        cp = dataclasses.replace(
            api, torch=torch, mesh=init_device_mesh("cuda", (ctx.rank.world_size,))
        )
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
    ctx = RankContext(rank, setup, baracuda, common.TorchArrays(torch), torch.cuda)
    if rank.world_size > 1:
        ctx.comm = rank.nccl_communicator(device=rank.rank)
    if setup.peers:
        _open_torch_cp(ctx, torch)
    if rank.rank == REFERENCE_RANK:
        info = {"ready": ctx.torch_cp is not None, "reason": ctx.torch_cp_reason}
        rank.send(
            ("setup", {"torch_cp": {**info, **(ctx.torch_cp.describe() if ctx.torch_cp else {})}})
        )
    try:
        for index, item in enumerate(setup.items):
            if not rank.broadcast(setup.deadline is None or time.time() < setup.deadline):
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
        self.items, self.world_size, self.document, self.write = items, world_size, document, write
        self.progress = sys.stderr if progress is None else progress
        self.clock, self.started, self.finished = clock, clock(), set()

    def __call__(self, rank: int, message: tuple) -> None:
        """Take ``("setup", info)`` or ``("item", index, part)`` from a rank."""
        if message[0] == "setup":
            self.document["setup"].update(message[1])
            self.write()
            return
        _, index, part = message
        item = self.items[index]
        key, value = entry(item, self.world_size, part)
        self.document[key].append(value)
        self.finished.add(index)
        join_references(self.document)
        self.write()
        result, text = part["result"], part["result"]["status"]
        if text == STATUS_OK:
            unit = "TFLOP/s" if isinstance(item, FlashStep) else "TFLOP/s per GPU"
            text = f"{result['median_ms']:.3f} ms, {result['tflops']:.1f} {unit}"
        line = common.progress_line(
            index + 1, len(self.items), item.label(), text, self.clock() - self.started
        )
        print(line, file=self.progress, flush=True)

    def finish(self, *, stop_reason: str | None) -> dict[str, Any]:
        """Record the measurements that did not finish and whether the run is complete;
        write the document once more and return it."""
        self.document["skipped"] = [
            {"item": item.label(), "reason": stop_reason or "not run"}
            for index, item in enumerate(self.items)
            if index not in self.finished
        ]
        self.document["complete"] = not self.document["skipped"]
        join_references(self.document)
        self.write()
        return self.document


def add_ring_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``python -m baracuda bench ring`` to ``parser``."""
    counts = {name: "about {:g} s worth, {} to {}".format(*ADAPTIVE[name]) for name in ADAPTIVE}
    chunks = "comma-separated tokens per GPU, k suffix allowed (default 1k,2k,4k,8k,16k,32k)"
    budget = "start no measurement after this many seconds; the rest is recorded as skipped"
    common.add_options(
        parser,
        {
            "--chunks": (common.size_list, chunks),
            "--heads": (common.size, f"query heads H (default {DEFAULTS.heads})"),
            "--heads-k": (
                common.size,
                f"K/V heads Hk, a divisor of H (default {DEFAULTS.heads_k})",
            ),
            "--head-dim": (common.size, f"head dim D (default {DEFAULTS.head_dim})"),
            "--world-size": (common.size, "ranks, one GPU each (default: every visible GPU)"),
            "--cases": (
                common.choice_list(tuple(CASE_KINDS)),
                f"comma-separated cases from {','.join(CASE_KINDS)} (default all)",
            ),
            "--schedules": (
                common.choice_list(SCHEDULES),
                f"comma-separated schedules from {','.join(SCHEDULES)} (default both)",
            ),
            "--max-seconds": (common.seconds, budget),
        },
        target=TARGET,
        defaults={
            "dtypes": "bf16",
            "warmup": f"{counts['warmup']}, after the cold and probe calls",
            "repeats": counts["repeats"],
        },
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
    config = common.resolve(args, RingBenchConfig, QUICK_PRESET, peers=not args.no_peers)
    if config.heads % config.heads_k != 0:
        raise ConfigError(
            f"--heads-k must divide --heads (got H={config.heads}, Hk={config.heads_k})"
        )
    odd = [chunk for chunk in config.chunks if chunk % 2]
    if odd and any(CASE_KINDS[case][1] == "zigzag" for case in config.cases):
        raise ConfigError(
            f"the zigzag layout splits each chunk in two halves (got odd chunks {odd})"
        )
    return config


def resolve_world_size(requested: int | None, device_count: int) -> int:
    """Return ``requested`` ranks, or one per visible GPU (at least 1); ConfigError when
    more ranks than visible GPUs are requested."""
    if requested is not None and requested > device_count:
        raise ConfigError(
            f"--world-size {requested} needs {requested} GPUs (got {device_count} visible)"
        )
    return max(1, device_count) if requested is None else requested


def stop_reason(*, failed: bool, interrupted: bool, budget: bool) -> str | None:
    """Return why measurements may be missing from a run: a failure, Ctrl-C, the budget."""
    reasons = ((failed, STOP_FAILURE), (interrupted, STOP_INTERRUPTED), (budget, STOP_BUDGET))
    return next((reason for flag, reason in reasons if flag), None)


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
    torch = common.import_torch(
        PROGRAM, "torch.multiprocessing starts the ranks, torch.distributed joins them"
    )
    if torch is None:
        return common.MISSING_DEPENDENCY_EXIT
    import baracuda

    now = datetime.datetime.now().astimezone()
    header = common.document_header(SCHEMA, gpu, baracuda=baracuda, torch=torch, now=now)
    try:
        header["software"]["nccl"] = baracuda.nccl.version() if world_size > 1 else None
        header["software"]["nccl_library"] = baracuda.nccl.library_path() or None
    except baracuda.BaracudaError as exc:
        print(f"{PROGRAM}: the ring needs NCCL: {type(exc).__name__}: {exc}", file=sys.stderr)
        return common.MISSING_DEPENDENCY_EXIT
    header["software"]["torch_nccl"] = None
    with contextlib.suppress(Exception):
        header["software"]["torch_nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    peers_reason = None
    if not config.peers:
        peers_reason = "--no-peers"
    elif world_size < MIN_PEER_WORLD_SIZE:
        peers_reason = f"it needs at least {MIN_PEER_WORLD_SIZE} GPUs (world size {world_size})"
    items = work_items(config, torch_cp=peers_reason is None)
    document = build_ring_document(config, header, world_size=world_size, peers_reason=peers_reason)
    out = config.out or common.default_output_path(gpu.name, now.date(), target=TARGET)
    deadline = None if config.max_seconds is None else time.time() + config.max_seconds
    counts = config.warmup, config.repeats
    setup = WorkerSetup(tuple(items), *counts, gpu.l2_cache_bytes, deadline, peers_reason is None)
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
