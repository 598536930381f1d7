"""Benchmark of ring attention across GPUs (``python -m baracuda bench ring``).

One process per GPU runs :meth:`baracuda.RingAttentionPlan.run` around an NCCL ring and
reports the ring's throughput per GPU against baracuda's own single-GPU flash attention on
the shape of one ring step: overlapped and serial schedules, non-causal and causal (the
contiguous and the zigzag layout), per-rank chunks of 1k to 32k tokens. Where PyTorch is
installed and at least two GPUs take part, PyTorch's context parallelism
(``torch.distributed.tensor.experimental.context_parallel`` over SDPA, forced to its cuDNN
and to its FlashAttention backend) runs the same global problems in the same run.

Method
------
- Problem: ``B = 1``, ``H`` query heads, ``Hk`` K/V heads, head dim ``D``; every rank holds
  ``chunk`` queries and ``chunk`` keys, so the global sequence is ``S = world_size * chunk``.
- Each rank selects the plan once and allocates ``y``, ``lse``, both K/V scratch buffers and
  the accumulator scratch once; its K/V chunk is passed as ``k=``/``v=``, so staging it into
  the scratch is part of every timed call. Calls rotate over sets of random inputs
  (``randn``, never zeros) that together exceed twice the L2 cache.
- Every call is timed with CUDA events on the legacy default stream of its rank, after a
  cold call (plan selection), one probe call and a warm-up. The ring keeps the ranks in
  lock step, so the i-th calls of all ranks run together: a call's time is the slowest
  rank's (the maximum over ranks of that call's time), and the result is the median of
  those maxima (p10, p90 and the minimum are recorded too).
- Per-GPU FLOPs are the global ``4*B*H*S*S*D`` (halved when causal) over ``world_size``.
- The reference is :func:`baracuda.flash_attention` on rank 0's GPU on one ring step's
  shape (``chunk`` queries against ``chunk`` keys, non-causal); ``fraction kept`` is the
  ring's per-GPU TFLOP/s over the reference's TFLOP/s.
- Without ``--warmup``/``--repeats``, the counts follow the probe call's time, so that
  each measurement takes a few seconds whatever the size.
- The ranks agree on every decision (whether to start the next measurement, the counts,
  a case a rank cannot set up) through shared memory and a barrier, so that they never
  fall out of step; a rank that fails or dies ends the run, and the parent stops the rest.

What the flash benchmark shares (the GPU probe, the document header, the arrays, the CUDA
event timing, the table and the option types) is :mod:`baracuda._bench_common`'s. ``torch``
and ``cupy`` are imported only when a benchmark actually runs, after the GPU probe has found
a device.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import math
import multiprocessing
import os
import queue
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import numpy as np

from baracuda import _bench_common as common

SCHEMA = "baracuda-bench-ring/1"
TARGET_NAME = "ring"

BATCH = 1
DEFAULT_HEADS = 32
DEFAULT_HEADS_K = 8
DEFAULT_HEAD_DIM = 128
DEFAULT_DTYPES = ("bf16",)
DEFAULT_CHUNKS = tuple(size * common.KIBI for size in (1, 2, 4, 8, 16, 32))
SEQUENCE_AXIS = 2

NONCAUSAL = "noncausal"
CAUSAL_CONTIGUOUS = "causal-contiguous"
CAUSAL_ZIGZAG = "causal-zigzag"
CONTIGUOUS = "contiguous"
ZIGZAG = "zigzag"
OVERLAPPED = "overlapped"
SERIAL = "serial"
SCHEDULES = (OVERLAPPED, SERIAL)


class CaseKind(NamedTuple):
    """The mask and the layout of a ring case."""

    causal: bool
    layout: str


CASE_KINDS = {
    NONCAUSAL: CaseKind(causal=False, layout=CONTIGUOUS),
    CAUSAL_CONTIGUOUS: CaseKind(causal=True, layout=CONTIGUOUS),
    CAUSAL_ZIGZAG: CaseKind(causal=True, layout=ZIGZAG),
}

QUICK_PRESET = {
    "chunks": (1 * common.KIBI, 8 * common.KIBI),
    "warmup": 2,
    "repeats": 10,
}

# Counts that follow the probe call's time when --warmup / --repeats are not given.
WARMUP_TARGET_S = 1.0
REPEATS_TARGET_S = 3.0
MIN_ADAPTIVE_WARMUP = 1
MAX_ADAPTIVE_WARMUP = common.DEFAULT_WARMUP
MIN_ADAPTIVE_REPEATS = 5
MAX_ADAPTIVE_REPEATS = 50
ADAPTIVE = "adaptive"

# The goal of the ring: with overlap, at least this fraction of single-GPU flash per GPU
# from this many tokens per GPU on.
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
# Modules that implement torch's context_parallel and hold its options (_cp_options),
# newest first; the public module is the fallback (its name is an alias of one of them).
CP_IMPLEMENTATION_MODULES = (
    "torch.distributed.tensor.experimental.context_parallel._attention",
    "torch.distributed.tensor.experimental._context_parallel._attention",
    "torch.distributed.tensor.experimental._attention",
)
CP_PUBLIC_MODULE = "torch.distributed.tensor.experimental"
SDPA_KERNEL_MODULE = "torch.nn.attention"

# NVLink multicast (NVLS) stays off on the machines this runs on.
NCCL_ENVIRONMENT = {"NCCL_NVLS_ENABLE": "0"}
LOCALHOST = "127.0.0.1"
REFERENCE_RANK = 0

BARRIER_TIMEOUT_S = 900.0
TORCH_PG_TIMEOUT_S = 300.0
SILENCE_TIMEOUT_S = BARRIER_TIMEOUT_S + 300.0
POLL_INTERVAL_S = 1.0
EXIT_DRAIN_S = 5.0
STOP_GRACE_S = 60.0
WORKER_EXIT_TIMEOUT_S = 30.0

USAGE_EXIT = 2
RANK_FAILURE_EXIT = 1

STATUS_OK = common.STATUS_OK
STATUS_UNSUPPORTED = common.STATUS_UNSUPPORTED
STATUS_ERROR = common.STATUS_ERROR
STATUS_SKIPPED = common.STATUS_SKIPPED

STOP_INTERRUPTED = "interrupted"
STOP_BUDGET = "time budget spent"
STOP_FAILURE = "a rank failed"

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

# Agreement tags: every rank must be at the same kind of agreement at the same time.
_TAG_TORCH_API = 1
_TAG_TORCH_READY = 2
_TAG_GO = 3
_TAG_PREPARED = 4
_TAG_ENTERED = 5
_TAG_COLD_CALL = 6
_TAG_PROBE = 7
_TAG_TIMED = 8
# Agreements a worker may make before its first item, and at most per item (the go
# decision, then two attempts of a torch peer with five agreements each).
SYNCS_BEFORE_ITEMS = 2
SYNCS_PER_ITEM = 1 + 2 * 5

# Verdicts of an agreement on a call: all ranks ran it, one refused it, one failed.
VERDICT_OK = 1.0
VERDICT_REFUSED = 0.0
VERDICT_FAILED = -1.0

# Worker message kinds.
RESULT = "result"  # payload: the rank's part of one measurement
INFO = "info"  # payload: what rank 0 found at start (torch context parallelism)
ERROR = "error"  # payload: traceback text; the rank stopped
DONE = "done"  # the rank finished its items


class ConfigError(ValueError):
    """Options that parse but do not go together."""


class RanksOutOfStepError(RuntimeError):
    """Two ranks reached different agreements: their sequences of work diverged."""


# ---------------------------------------------------------------------------------
# Grid
# ---------------------------------------------------------------------------------


def format_tokens(count: int) -> str:
    """Return ``8192`` as ``"8k"`` and other counts as plain integers."""
    return f"{count // common.KIBI}k" if count % common.KIBI == 0 else str(count)


@dataclass(frozen=True)
class Problem:
    """One rank's share of a ring problem: ``chunk`` queries and ``chunk`` keys."""

    dtype: str
    chunk: int
    heads: int
    heads_k: int
    head_dim: int
    batch: int = BATCH

    def q_shape(self, length: int | None = None) -> tuple[int, int, int, int]:
        """Return ``[B, H, length, D]`` (``length`` defaults to ``chunk``)."""
        return (self.batch, self.heads, self.chunk if length is None else length, self.head_dim)

    def kv_shape(
        self, length: int | None = None, *, heads: int | None = None
    ) -> tuple[int, int, int, int]:
        """Return ``[B, Hk, length, D]`` (``heads`` replaces ``Hk`` when given)."""
        return (
            self.batch,
            self.heads_k if heads is None else heads,
            self.chunk if length is None else length,
            self.head_dim,
        )

    def fields(self) -> dict[str, Any]:
        """Return the problem as JSON fields."""
        return {
            "dtype": self.dtype,
            "chunk": self.chunk,
            "batch": self.batch,
            "heads": self.heads,
            "heads_k": self.heads_k,
            "head_dim": self.head_dim,
        }

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

    def ranks(self, world_size: int) -> tuple[int, ...]:
        """Return the ranks that report this measurement."""
        return (REFERENCE_RANK,)

    def label(self) -> str:
        """Return a short human-readable name."""
        return f"{self.problem.label()} flash step (rank {REFERENCE_RANK})"


@dataclass(frozen=True)
class RingCase:
    """One ring measurement: a problem, a mask and layout, and a schedule."""

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

    def ranks(self, world_size: int) -> tuple[int, ...]:
        """Return the ranks that report this measurement."""
        return tuple(range(world_size))

    def label(self) -> str:
        """Return a short human-readable name."""
        return f"{self.problem.label()} {self.case} {self.schedule}"


@dataclass(frozen=True)
class TorchCpCase:
    """PyTorch context parallelism over SDPA forced to one backend, on the same global problem."""

    problem: Problem
    causal: bool
    peer: str

    def ranks(self, world_size: int) -> tuple[int, ...]:
        """Return the ranks that report this measurement."""
        return tuple(range(world_size))

    def label(self) -> str:
        """Return a short human-readable name."""
        mask = "causal" if self.causal else NONCAUSAL
        return f"{self.problem.label()} {mask} {self.peer}"


WorkItem = FlashStep | RingCase | TorchCpCase


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

    Parameters
    ----------
    config : RingBenchConfig
        The grid axes.
    torch_cp : bool
        Whether to add PyTorch's context parallelism, once per causal setting of the
        chosen cases and per SDPA backend.

    Returns
    -------
    list
        Per dtype and chunk: the flash step reference, every ring case under every
        schedule, then the PyTorch peers.
    """
    items: list[WorkItem] = []
    causal_settings = tuple(dict.fromkeys(CASE_KINDS[case].causal for case in config.cases))
    for dtype in config.dtypes:
        for chunk in config.chunks:
            problem = Problem(
                dtype=dtype,
                chunk=chunk,
                heads=config.heads,
                heads_k=config.heads_k,
                head_dim=config.head_dim,
            )
            items.append(FlashStep(problem))
            items += [
                RingCase(problem, case, schedule)
                for case in config.cases
                for schedule in config.schedules
            ]
            if torch_cp:
                items += [
                    TorchCpCase(problem, causal, peer)
                    for causal in causal_settings
                    for peer in PEER_BACKENDS
                ]
    return items


def sync_capacity(items: Sequence[WorkItem]) -> int:
    """Return how many agreements the workers may make over ``items``."""
    return SYNCS_BEFORE_ITEMS + SYNCS_PER_ITEM * len(items)


# ---------------------------------------------------------------------------------
# Arithmetic
# ---------------------------------------------------------------------------------


def attention_flops(problem: Problem, *, seqlen: int, causal: bool) -> int:
    """Return ``4*B*H*S*S*D`` for self-attention over ``seqlen`` tokens, halved when causal."""
    total = 4 * problem.batch * problem.heads * seqlen * seqlen * problem.head_dim
    return total // 2 if causal else total


def global_seqlen(problem: Problem, world_size: int) -> int:
    """Return the global sequence length ``world_size * chunk``."""
    return world_size * problem.chunk


def ring_flops(problem: Problem, world_size: int, *, causal: bool) -> int:
    """Return the FLOPs of the whole ring: attention over the global sequence."""
    return attention_flops(problem, seqlen=global_seqlen(problem, world_size), causal=causal)


def flops_per_gpu(problem: Problem, world_size: int, *, causal: bool) -> int:
    """Return each GPU's share of :func:`ring_flops`."""
    return ring_flops(problem, world_size, causal=causal) // world_size


def step_flops(problem: Problem) -> int:
    """Return the FLOPs of one ring step: ``chunk`` queries against ``chunk`` keys, non-causal."""
    return attention_flops(problem, seqlen=problem.chunk, causal=False)


def fraction_kept(ring_tflops: float | None, flash_tflops: float | None) -> float | None:
    """Return the ring's per-GPU TFLOP/s over single-GPU flash's, or None if either is missing."""
    if ring_tflops is None or flash_tflops is None or flash_tflops <= 0:
        return None
    return ring_tflops / flash_tflops


def meets_target(record: Mapping[str, Any]) -> bool | None:
    """Tell whether a ring record meets the goal; None where the goal does not apply.

    The goal applies to the overlapped schedule from ``TARGET_MIN_CHUNK`` tokens per GPU:
    at least ``TARGET_FRACTION`` of single-GPU flash's throughput per GPU.
    """
    if record["schedule"] != TARGET_SCHEDULE or record["chunk"] < TARGET_MIN_CHUNK:
        return None
    kept = record.get("fraction_kept")
    return None if kept is None else kept >= TARGET_FRACTION


def adaptive_count(call_s: float, *, target_s: float, minimum: int, maximum: int) -> int:
    """Return how many calls of ``call_s`` seconds fill ``target_s``, within bounds.

    Parameters
    ----------
    call_s : float
        Time of one call; 0 or less means unknown (``maximum`` is returned).
    target_s : float
        Time the calls should take together.
    minimum, maximum : int
        Bounds of the count.

    Returns
    -------
    int
    """
    if call_s <= 0:
        return maximum
    return min(maximum, max(minimum, math.ceil(target_s / call_s)))


def slowest_rank_samples(per_rank: Sequence[Sequence[float]]) -> list[float]:
    """Return, for each call, the slowest rank's time (the maximum over ranks).

    Parameters
    ----------
    per_rank : sequence of sequences of float
        Each rank's call times in call order; all of one length.

    Returns
    -------
    list of float
    """
    return [max(times) for times in zip(*per_rank, strict=True)]


def agreed_verdict(codes: Sequence[float]) -> float:
    """Return the ranks' common verdict on a call from each rank's own.

    ``VERDICT_FAILED`` when a rank failed, else ``VERDICT_REFUSED`` when a rank refused,
    else ``VERDICT_OK``.
    """
    if any(code == VERDICT_FAILED for code in codes):
        return VERDICT_FAILED
    if any(code == VERDICT_REFUSED for code in codes):
        return VERDICT_REFUSED
    return VERDICT_OK


def _median(samples: Sequence[float]) -> float:
    return float(np.median(samples))


def combine_rank_results(
    parts: Mapping[int, Mapping[str, Any]], ranks: Sequence[int], case_flops: int
) -> dict[str, Any]:
    """Combine the ranks' parts of one measurement into its result.

    Parameters
    ----------
    parts : mapping of int to dict
        Each rank's part: ``{"status": "ok", "samples_ms", "warmup"}`` or
        ``{"status", "error"}``.
    ranks : sequence of int
        The ranks that took part.
    case_flops : int
        FLOPs of one call per GPU.

    Returns
    -------
    dict
        :func:`baracuda._bench_common.summarize` of the slowest rank's times, with
        ``per_rank_median_ms`` and ``warmup``; or the first failed rank's
        ``{"status", "error", "rank"}``.
    """
    for rank in ranks:
        part = parts[rank]
        if part["status"] != STATUS_OK:
            return {"status": part["status"], "error": part.get("error", ""), "rank": rank}
    samples = slowest_rank_samples([parts[rank]["samples_ms"] for rank in ranks])
    result = common.summarize(samples, case_flops)
    result["per_rank_median_ms"] = [_median(parts[rank]["samples_ms"]) for rank in ranks]
    result["warmup"] = parts[ranks[0]]["warmup"]
    return result


# ---------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------


def _ok_tflops(result: Mapping[str, Any] | None) -> float | None:
    if result is None or result.get("status") != STATUS_OK:
        return None
    return result["tflops"]


def flash_step_entry(item: FlashStep, parts: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """Return the JSON entry of a flash step reference from rank 0's part."""
    part = parts[REFERENCE_RANK]
    return {
        **item.problem.fields(),
        "flops": step_flops(item.problem),
        "plan": part.get("plan"),
        "result": combine_rank_results(parts, item.ranks(1), step_flops(item.problem)),
    }


def ring_entry(
    item: RingCase, world_size: int, parts: Mapping[int, Mapping[str, Any]]
) -> dict[str, Any]:
    """Return the JSON record of a ring case from every rank's part.

    ``flash_step_tflops``, ``fraction_kept``, ``meets_target`` and ``peers`` are filled
    by :func:`join_references`.
    """
    per_gpu = flops_per_gpu(item.problem, world_size, causal=item.causal)
    return {
        **item.problem.fields(),
        "world_size": world_size,
        "global_seqlen": global_seqlen(item.problem, world_size),
        "case": item.case,
        "causal": item.causal,
        "layout": item.layout,
        "schedule": item.schedule,
        "flops": ring_flops(item.problem, world_size, causal=item.causal),
        "flops_per_gpu": per_gpu,
        "plan": parts[REFERENCE_RANK].get("plan"),
        "ring": combine_rank_results(parts, item.ranks(world_size), per_gpu),
        "flash_step_tflops": None,
        "fraction_kept": None,
        "meets_target": None,
        "peers": {},
    }


def torch_cp_entry(
    item: TorchCpCase, world_size: int, parts: Mapping[int, Mapping[str, Any]]
) -> dict[str, Any]:
    """Return the JSON entry of a PyTorch context parallelism measurement."""
    per_gpu = flops_per_gpu(item.problem, world_size, causal=item.causal)
    part = parts[REFERENCE_RANK]
    entry = {
        **item.problem.fields(),
        "world_size": world_size,
        "global_seqlen": global_seqlen(item.problem, world_size),
        "causal": item.causal,
        "peer": item.peer,
        "backend": PEER_BACKENDS[item.peer],
        "load_balance": item.causal,
        "kv_heads": part.get("kv_heads"),
        "flops_per_gpu": per_gpu,
        "result": combine_rank_results(parts, item.ranks(world_size), per_gpu),
    }
    if part.get("kv_heads_note"):
        entry["kv_heads_note"] = part["kv_heads_note"]
    return entry


def _peer_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("status", "median_ms", "tflops", "error")
    return {key: result[key] for key in keys if key in result}


def join_references(document: dict[str, Any]) -> dict[str, Any]:
    """Fill each ring record's reference, fraction kept, target verdict and peers.

    Returns
    -------
    dict
        ``document``, updated in place.
    """
    flash = {(entry["dtype"], entry["chunk"]): entry["result"] for entry in document["flash_steps"]}
    peers = {
        (entry["dtype"], entry["chunk"], entry["causal"], entry["peer"]): entry["result"]
        for entry in document["torch_cp"]
    }
    for record in document["records"]:
        flash_tflops = _ok_tflops(flash.get((record["dtype"], record["chunk"])))
        record["flash_step_tflops"] = flash_tflops
        record["fraction_kept"] = fraction_kept(_ok_tflops(record["ring"]), flash_tflops)
        record["meets_target"] = meets_target(record)
        record["peers"] = {
            name: _peer_summary(peers[key])
            for name in PEER_BACKENDS
            if (key := (record["dtype"], record["chunk"], record["causal"], name)) in peers
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
    """Return the JSON document's metadata with empty measurement lists.

    Parameters
    ----------
    peers_reason : str or None
        Why PyTorch context parallelism is not timed; None when it is.
    """
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
            "input_rotation": (
                f"at least {common.MIN_INPUT_SETS} random input sets per rank, together over "
                f"{common.L2_SPAN}x the L2 size"
            ),
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


def _time_cell(result: Mapping[str, Any] | None) -> str:
    if result is None:
        return "-"
    return f"{result['median_ms']:.3f}" if result["status"] == STATUS_OK else result["status"]


def _tflops_cell(result: Mapping[str, Any] | None) -> str:
    if result is None:
        return "-"
    return f"{result['tflops']:.1f}" if result["status"] == STATUS_OK else result["status"]


def _float_cell(value: float | None, template: str) -> str:
    return "-" if value is None else template.format(value)


def format_ring_table(document: Mapping[str, Any]) -> str:
    """Return the ring records as a fixed-width text table, one row per record.

    ``ring ms`` is the median of the slowest rank's call times; ``TF/s/GPU`` are per-GPU
    TFLOP/s; ``flash TF/s`` is single-GPU flash on one ring step; ``kept`` is their ratio;
    the ``cp`` columns are PyTorch context parallelism's per-GPU TFLOP/s on the same problem.
    """
    headers = ["dtype", "chunk", "S", "case", "schedule", "ring ms", "TF/s/GPU", "flash TF/s"]
    headers.append("kept")
    peer_names = [name for name in PEER_BACKENDS if document["peers"]["enabled"]]
    headers += [f"{PEER_LABELS[name]} TF/s/GPU" for name in peer_names]
    rows = []
    for record in document["records"]:
        row = [
            record["dtype"],
            format_tokens(record["chunk"]),
            format_tokens(record["global_seqlen"]),
            record["case"],
            record["schedule"],
            _time_cell(record["ring"]),
            _tflops_cell(record["ring"]),
            _float_cell(record["flash_step_tflops"], "{:.1f}"),
            _float_cell(record["fraction_kept"], "{:.0%}"),
        ]
        row += [_tflops_cell(record["peers"].get(name)) for name in peer_names]
        rows.append(row)
    return common.render_table(headers, rows)


def target_summary(document: Mapping[str, Any]) -> str:
    """Return one line: how many ring records the goal applies to, and how many meet it."""
    verdicts = [record["meets_target"] for record in document["records"]]
    judged = [verdict for verdict in verdicts if verdict is not None]
    return (
        f"target ({TARGET_SCHEDULE}, chunk >= {format_tokens(TARGET_MIN_CHUNK)}, kept >= "
        f"{TARGET_FRACTION:.0%}): met by {sum(judged)} of {len(judged)} records"
    )


def print_ring_table(document: Mapping[str, Any], stream: TextIO | None = None) -> None:
    """Print :func:`format_ring_table`, the target line, failures and skipped measurements.

    ``stream`` defaults to the standard output at the time of the call.
    """
    stream = sys.stdout if stream is None else stream
    print(format_ring_table(document), file=stream)
    print(target_summary(document), file=stream)
    if document["world_size"] == 1:
        print("world size 1: the ring ran on one GPU, without NCCL", file=stream)
    if not document["peers"]["enabled"]:
        print(f"torch context parallelism not timed: {document['peers']['reason']}", file=stream)
    entries = [
        (f"{entry['dtype']} chunk {format_tokens(entry['chunk'])} flash step", entry["result"])
        for entry in document["flash_steps"]
    ]
    entries += [
        (
            f"{record['dtype']} chunk {format_tokens(record['chunk'])} {record['case']} "
            f"{record['schedule']} ring",
            record["ring"],
        )
        for record in document["records"]
    ]
    entries += [
        (
            f"{entry['dtype']} chunk {format_tokens(entry['chunk'])} "
            f"{'causal' if entry['causal'] else NONCAUSAL} {entry['peer']}",
            entry["result"],
        )
        for entry in document["torch_cp"]
    ]
    for label, result in entries:
        if result["status"] != STATUS_OK:
            print(f"{label}: {result['status']}: {result.get('error', '')}", file=stream)
    for skipped in document["skipped"]:
        print(f"skipped {skipped['item']}: {skipped['reason']}", file=stream)


# ---------------------------------------------------------------------------------
# Lock step between the ranks
# ---------------------------------------------------------------------------------


class RankSync:
    """Agreement between the rank processes: shared memory, a barrier and a stop request.

    Every rank makes the same sequence of :meth:`gather` calls; each call has its own
    slots, so a fast rank never overwrites what a slow one has yet to read.

    Parameters
    ----------
    context : multiprocessing context
        The context the rank processes are started from.
    world_size : int
        Number of ranks.
    capacity : int
        Number of :meth:`gather` calls the ranks may make.
    timeout_s : float
        How long a rank waits for the others at the barrier.
    """

    _SLOT_FIELDS = 2  # tag, value

    def __init__(self, context: Any, world_size: int, capacity: int, *, timeout_s: float) -> None:
        self._world_size = world_size
        self._capacity = capacity
        self._barrier = context.Barrier(world_size, timeout=timeout_s)
        self._slots = context.RawArray("d", capacity * world_size * self._SLOT_FIELDS)
        self._stop = context.RawValue("b", 0)
        self._used = 0

    def request_stop(self) -> None:
        """Ask rank 0 to start no further measurement (the parent calls this)."""
        self._stop.value = 1

    def stop_requested(self) -> bool:
        """Tell whether :meth:`request_stop` was called."""
        return bool(self._stop.value)

    def gather(self, rank: int, tag: int, value: float) -> list[float]:
        """Publish ``value``, wait for every rank, and return all ranks' values by rank.

        Parameters
        ----------
        rank : int
            The calling rank.
        tag : int
            What is agreed on; every rank must pass the same tag.
        value : float
            This rank's contribution.

        Raises
        ------
        RanksOutOfStepError
            The ranks passed different tags, or the capacity is spent.
        threading.BrokenBarrierError
            A rank did not arrive within the timeout.
        """
        if self._used >= self._capacity:
            raise RanksOutOfStepError(f"more than {self._capacity} agreements between the ranks")
        base = self._used * self._world_size * self._SLOT_FIELDS
        self._used += 1
        own = base + rank * self._SLOT_FIELDS
        self._slots[own] = tag
        self._slots[own + 1] = value
        self._barrier.wait()
        tags = [self._slots[base + r * self._SLOT_FIELDS] for r in range(self._world_size)]
        if any(other != tag for other in tags):
            raise RanksOutOfStepError(
                f"rank {rank} is at agreement {tag} while the ranks are at {tags}"
            )
        return [self._slots[base + r * self._SLOT_FIELDS + 1] for r in range(self._world_size)]


# ---------------------------------------------------------------------------------
# One rank
# ---------------------------------------------------------------------------------


class WorkerMessage(NamedTuple):
    """One message from a rank to the parent."""

    kind: str
    rank: int
    item: int | None
    payload: Any


@dataclass(frozen=True)
class WorkerSetup:
    """What every rank process receives.

    Attributes
    ----------
    world_size : int
        Number of ranks; rank ``r`` runs on GPU ``r``.
    items : tuple
        The measurements, in order.
    unique_id : bytes or None
        The NCCL unique id (None for one rank, which runs without NCCL).
    warmup, repeats : int or None
        Fixed counts; None follows the probe call's time.
    l2_cache_bytes : int
        L2 size of the GPUs.
    deadline : float or None
        ``time.time()`` after which rank 0 lets no further measurement start.
    torch_init_method : str or None
        ``torch.distributed`` init method for the PyTorch peers; None times none.
    """

    world_size: int
    items: tuple[WorkItem, ...]
    unique_id: bytes | None
    warmup: int | None
    repeats: int | None
    l2_cache_bytes: int
    deadline: float | None = None
    torch_init_method: str | None = None


@dataclass
class RankContext:
    """What a rank measures with."""

    rank: int
    setup: WorkerSetup
    sync: RankSync
    baracuda: Any
    arrays: Any
    timer: Any
    comm: Any = None
    torch: Any = None
    torch_cp: TorchContextParallel | None = None
    torch_cp_reason: str | None = None

    def gather(self, tag: int, value: float) -> list[float]:
        """Agree with the other ranks (see :meth:`RankSync.gather`)."""
        return self.sync.gather(self.rank, tag, value)


def _failure(status: str, exc: BaseException | str) -> dict[str, Any]:
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return {"status": status, "error": text}


def _element_bytes(dtype: str) -> int:
    return common.ITEM_BYTES[dtype]


def _set_count(problem: Problem, l2_cache_bytes: int, *, kv_heads: int, length: int) -> int:
    elements = problem.batch * length * problem.head_dim * (problem.heads + 2 * kv_heads)
    return common.sets_to_exceed_l2(elements * _element_bytes(problem.dtype), l2_cache_bytes)


def _random_sets(
    arrays: Any,
    problem: Problem,
    count: int,
    *,
    length: int | None = None,
    kv_heads: int | None = None,
) -> list[common.InputSet]:
    """Return ``count`` sets of random q, k, v (the ``out`` of a set is unused: None)."""
    return [
        common.InputSet(
            q=arrays.randn(problem.q_shape(length), problem.dtype),
            k=arrays.randn(problem.kv_shape(length, heads=kv_heads), problem.dtype),
            v=arrays.randn(problem.kv_shape(length, heads=kv_heads), problem.dtype),
            out=None,
        )
        for _ in range(count)
    ]


def _timed_calls(
    ctx: RankContext, fn: Callable[[int], object], set_count: int, *, agree: bool
) -> dict[str, Any]:
    """Probe one call, pick the counts, and time ``fn`` (its cold call already made).

    With ``agree``, the ranks pick the counts from the slowest rank's probe, so that all
    make the same number of calls.

    Returns
    -------
    dict
        ``{"status": "ok", "samples_ms", "warmup", "probe_s"}``.
    """
    start = time.perf_counter()
    fn(1 % set_count)
    ctx.timer.synchronize()
    probe_s = time.perf_counter() - start
    if agree:
        probe_s = max(ctx.gather(_TAG_PROBE, probe_s))
    warmup = ctx.setup.warmup
    if warmup is None:
        warmup = adaptive_count(
            probe_s,
            target_s=WARMUP_TARGET_S,
            minimum=MIN_ADAPTIVE_WARMUP,
            maximum=MAX_ADAPTIVE_WARMUP,
        )
    repeats = ctx.setup.repeats
    if repeats is None:
        repeats = adaptive_count(
            probe_s,
            target_s=REPEATS_TARGET_S,
            minimum=MIN_ADAPTIVE_REPEATS,
            maximum=MAX_ADAPTIVE_REPEATS,
        )
    samples = common.time_calls(fn, set_count, timer=ctx.timer, warmup=warmup, repeats=repeats)
    return {"status": STATUS_OK, "samples_ms": samples, "warmup": warmup, "probe_s": probe_s}


def _flash_plan_info(baracuda: Any, problem: Problem) -> dict[str, Any]:
    descriptor = baracuda.FlashSdpaDescriptor(
        problem.batch,
        problem.heads,
        problem.chunk,
        problem.chunk,
        problem.head_dim,
        element=problem.dtype,
    )
    return common.flash_plan_info(baracuda, descriptor)


def measure_flash_step(ctx: RankContext, item: FlashStep) -> dict[str, Any] | None:
    """Time single-GPU flash attention on one ring step's shape (rank 0 only; others: None)."""
    if ctx.rank != REFERENCE_RANK:
        return None
    payload = _time_flash_step(ctx, item.problem)
    # The inputs are gone with _time_flash_step's frame; hand their memory back.
    ctx.arrays.release()
    return payload


def _time_flash_step(ctx: RankContext, problem: Problem) -> dict[str, Any]:
    baracuda = ctx.baracuda
    count = _set_count(
        problem, ctx.setup.l2_cache_bytes, kv_heads=problem.heads_k, length=problem.chunk
    )
    try:
        sets = _random_sets(ctx.arrays, problem, count)
        out = ctx.arrays.empty(problem.q_shape(), problem.dtype)
    except common.HarnessUnsupportedError as exc:
        return _failure(STATUS_SKIPPED, str(exc))

    def call(index: int) -> object:
        inputs = sets[index]
        return baracuda.flash_attention(inputs.q, inputs.k, inputs.v, out=out)

    # Rank 0 alone: a failure here is recorded and the ring goes on.
    try:
        call(0)
        ctx.timer.synchronize()
        payload = _timed_calls(ctx, call, len(sets), agree=False)
    except baracuda.UnsupportedError as exc:
        return _failure(STATUS_UNSUPPORTED, exc)
    except Exception as exc:
        return _failure(STATUS_ERROR, exc)
    payload["plan"] = _flash_plan_info(baracuda, problem)
    return payload


@dataclass
class _PreparedRing:
    plan: Any
    call: Callable[[int], object]
    set_count: int


def _prepare_ring(ctx: RankContext, item: RingCase) -> _PreparedRing:
    """Select the plan, allocate every buffer once and check the arguments (no collective)."""
    baracuda = ctx.baracuda
    problem = item.problem
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
        count = _set_count(
            problem, ctx.setup.l2_cache_bytes, kv_heads=problem.heads_k, length=problem.chunk
        )
        sets = _random_sets(ctx.arrays, problem, count)
        y = ctx.arrays.empty(problem.q_shape(), problem.dtype)
        lse_dtype = "f64" if problem.dtype == "f64" else "f32"
        lse = ctx.arrays.empty((problem.batch, problem.heads, problem.chunk), lse_dtype)
        kv_scratch_a = ctx.arrays.empty((plan.kv_scratch_elements,), problem.dtype)
        kv_scratch_b = ctx.arrays.empty((plan.kv_scratch_elements,), problem.dtype)
        # The accumulator scratch is raw bytes; f32 words keep it 16-byte aligned.
        words = max(1, math.ceil(plan.accumulator_scratch_bytes / _element_bytes("f32")))
        accumulators = ctx.arrays.empty((words,), "f32")
        first = sets[0]
        plan.can_implement(
            first.q, y, kv_scratch_a, kv_scratch_b, accumulators, k=first.k, v=first.v, lse=lse
        )
    except BaseException:
        plan.close()
        raise

    def call(index: int) -> object:
        inputs = sets[index]
        return plan.run(
            inputs.q,
            y,
            kv_scratch_a,
            kv_scratch_b,
            accumulators,
            comm=ctx.comm,
            k=inputs.k,
            v=inputs.v,
            lse=lse,
        )

    return _PreparedRing(plan=plan, call=call, set_count=len(sets))


def measure_ring(ctx: RankContext, item: RingCase) -> dict[str, Any]:
    """Time one ring case on this rank, in lock step with the others.

    A case that a rank cannot set up (plan refused, inputs the array library cannot make,
    memory) is recorded for all ranks without a collective call. A failure once the ring
    runs raises: the ranks may be out of step.
    """
    baracuda = ctx.baracuda
    prepared = None
    failure = None
    try:
        prepared = _prepare_ring(ctx, item)
    except common.HarnessUnsupportedError as exc:
        failure = _failure(STATUS_SKIPPED, str(exc))
    except baracuda.UnsupportedError as exc:
        failure = _failure(STATUS_UNSUPPORTED, exc)
    except Exception as exc:
        failure = _failure(STATUS_ERROR, exc)
    ready = ctx.gather(_TAG_PREPARED, 0.0 if failure else 1.0)
    if not all(ready):
        if prepared is not None:
            prepared.plan.close()
        ctx.arrays.release()
        return failure or _failure(STATUS_SKIPPED, "another rank could not set up this case")
    try:
        prepared.call(0)
        ctx.timer.synchronize()
        payload = _timed_calls(ctx, prepared.call, prepared.set_count, agree=True)
        payload["plan"] = {"backend": prepared.plan.backend, "sku": prepared.plan.sku.name}
    finally:
        prepared.plan.close()
        del prepared
        ctx.arrays.release()
    return payload


class TorchContextParallel:
    """PyTorch's context parallelism on this rank: its process group, a 1-D mesh, its API.

    Made by :meth:`open`; :meth:`close` destroys the process group.
    """

    def __init__(self, torch: Any, api: Mapping[str, Any], mesh: Any) -> None:
        self.torch = torch
        self.api = api
        self.mesh = mesh

    @classmethod
    def open(
        cls, torch: Any, api: Mapping[str, Any], *, rank: int, world_size: int, init_method: str
    ) -> TorchContextParallel:
        """Join the NCCL process group of the ranks and make a 1-D device mesh."""
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh

        options = {
            "backend": "nccl",
            "init_method": init_method,
            "rank": rank,
            "world_size": world_size,
            "timeout": datetime.timedelta(seconds=TORCH_PG_TIMEOUT_S),
        }
        try:
            dist.init_process_group(**options, device_id=torch.device("cuda", rank))
        except TypeError:
            dist.init_process_group(**options)
        return cls(torch, api, init_device_mesh("cuda", (world_size,)))

    def describe(self) -> dict[str, Any]:
        """Return what shapes the peer's numbers: options module, rotate method."""
        options = self.api["options"]
        return {
            "module": self.api["module"],
            "rotate_method": None if options is None else str(options.rotate_method),
            "load_balance": "on for causal, off for non-causal",
        }

    def close(self) -> None:
        """Destroy the process group."""
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def _callable_or_none(candidate: Any) -> Callable[..., Any] | None:
    """Return ``candidate`` (or the value it aliases, ``__value__``) if callable, else None."""
    value = getattr(candidate, "__value__", candidate)
    return value if callable(value) else None


def find_torch_cp_api(
    import_module: Callable[[str], Any] = importlib.import_module,
) -> dict[str, Any]:
    """Find PyTorch's ``context_parallel``, its options, ``sdpa_kernel`` and ``SDPBackend``.

    ``context_parallel`` is taken from the first implementation module that has it, with
    that module's ``_cp_options`` (None when it has no ``enable_load_balance``: load
    balancing then cannot be set); else from the public module.

    Raises
    ------
    ImportError, AttributeError
        This PyTorch has no SDPA backend selection or no context parallelism.
    """
    attention = import_module(SDPA_KERNEL_MODULE)
    found = None
    for name in CP_IMPLEMENTATION_MODULES:
        try:
            module = import_module(name)
        except ImportError:
            continue
        context_parallel = _callable_or_none(getattr(module, "context_parallel", None))
        if context_parallel is not None:
            options = getattr(module, "_cp_options", None)
            if not hasattr(options, "enable_load_balance"):
                options = None
            found = (context_parallel, name, options)
            break
    if found is None:
        public_module = import_module(CP_PUBLIC_MODULE)
        public = _callable_or_none(getattr(public_module, "context_parallel", None))
        if public is None:
            raise AttributeError(f"{CP_PUBLIC_MODULE} has no callable context_parallel")
        found = (public, CP_PUBLIC_MODULE, None)
    context_parallel, module_name, options = found
    return {
        "context_parallel": context_parallel,
        "module": module_name,
        "options": options,
        "sdpa_kernel": attention.sdpa_kernel,
        "SDPBackend": attention.SDPBackend,
    }


def _is_cp_refusal(exc: BaseException) -> bool:
    """Tell whether an exception from the first SDPA call means "not supported"."""
    return common.is_torch_unsupported(exc) or isinstance(exc, TypeError)


def _cp_attempt(ctx: RankContext, item: TorchCpCase, kv_mode: str) -> tuple[dict, float]:
    """Time SDPA inside ``context_parallel`` with K/V heads per ``kv_mode``.

    Every step that the ranks could disagree on ends with an agreement; an exception is
    caught inside the ``context_parallel`` block so that the block always exits normally
    (PyTorch restores SDPA only then).

    Returns
    -------
    payload : dict
        The rank's part of the measurement.
    verdict : float
        The agreed verdict (``VERDICT_OK``, ``VERDICT_REFUSED``, ``VERDICT_FAILED``).
    """
    cp = ctx.torch_cp
    problem = item.problem
    length = global_seqlen(problem, ctx.setup.world_size)
    kv_heads = problem.heads if kv_mode == KV_HEADS_EXPANDED else problem.heads_k
    options = cp.api["options"]

    # Global inputs on every rank; context_parallel keeps each rank's shard of them.
    failure = None
    buffers: list[Any] = []
    sets: list[common.InputSet] = []
    try:
        count = _set_count(
            problem, ctx.setup.l2_cache_bytes, kv_heads=kv_heads, length=problem.chunk
        )
        sets = _random_sets(ctx.arrays, problem, count, length=length, kv_heads=kv_heads)
        buffers = [tensor for inputs in sets for tensor in (inputs.q, inputs.k, inputs.v)]
    except Exception as exc:
        failure = _failure(STATUS_ERROR, exc)
    if not all(ctx.gather(_TAG_PREPARED, 0.0 if failure else 1.0)):
        return failure or _failure(STATUS_ERROR, "another rank could not allocate"), VERDICT_FAILED

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
        if not all(ctx.gather(_TAG_ENTERED, 0.0 if failure else 1.0)):
            failure = failure or _failure(STATUS_ERROR, "another rank could not shard its inputs")
            return failure, VERDICT_FAILED
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

    failure = None
    code = VERDICT_OK
    try:
        call(0)
        ctx.timer.synchronize()
    except Exception as exc:
        code = VERDICT_REFUSED if _is_cp_refusal(exc) else VERDICT_FAILED
        failure = _failure(STATUS_UNSUPPORTED if code == VERDICT_REFUSED else STATUS_ERROR, exc)
    verdict = agreed_verdict(ctx.gather(_TAG_COLD_CALL, code))
    if verdict != VERDICT_OK:
        status = STATUS_UNSUPPORTED if verdict == VERDICT_REFUSED else STATUS_ERROR
        return failure or _failure(status, "refused or failed on another rank"), verdict
    payload: dict[str, Any] = {}
    code = VERDICT_OK
    try:
        payload = _timed_calls(ctx, call, len(sets), agree=True)
    except Exception as exc:
        code = VERDICT_FAILED
        payload = _failure(STATUS_ERROR, exc)
    verdict = agreed_verdict(ctx.gather(_TAG_TIMED, code))
    if verdict != VERDICT_OK and payload.get("status") == STATUS_OK:
        payload = _failure(STATUS_ERROR, "failed on another rank while timing")
    return payload, verdict


def measure_torch_cp(ctx: RankContext, item: TorchCpCase) -> dict[str, Any]:
    """Time PyTorch's context parallelism on the global problem of ``item`` (every rank).

    With GQA, SDPA first gets the ``Hk`` K/V heads (``enable_gqa=True``); if the backend
    refuses, K/V are expanded to ``H`` heads, and the record says so.
    """
    if ctx.torch_cp is None:
        return _failure(STATUS_UNSUPPORTED, ctx.torch_cp_reason or "not available")
    if item.causal and ctx.torch_cp.api["options"] is None:
        return _failure(
            STATUS_UNSUPPORTED,
            "this PyTorch exposes no _cp_options.enable_load_balance to turn load balancing on",
        )
    problem = item.problem
    if problem.heads_k == problem.heads:
        modes: tuple[str, ...] = (KV_HEADS_SAME,)
    else:
        modes = (KV_HEADS_NATIVE, KV_HEADS_EXPANDED)
    notes = []
    for mode in modes:
        payload, verdict = _cp_attempt(ctx, item, mode)
        payload["kv_heads"] = mode
        if notes:
            payload["kv_heads_note"] = "; ".join(notes)
        if verdict != VERDICT_REFUSED or mode == modes[-1]:
            return payload
        notes.append(f"{mode} refused: {payload.get('error', '')}")
    return payload


_MEASURE: dict[type, Callable[[RankContext, Any], dict[str, Any] | None]] = {
    FlashStep: measure_flash_step,
    RingCase: measure_ring,
    TorchCpCase: measure_torch_cp,
}


def _open_torch_cp(ctx: RankContext) -> None:
    """Set ``ctx.torch_cp`` when every rank has PyTorch's API and joined its process group."""
    setup = ctx.setup
    api = None
    reason = None
    try:
        api = find_torch_cp_api()
    except (ImportError, AttributeError) as exc:
        reason = f"this PyTorch lacks context parallelism: {type(exc).__name__}: {exc}"
    if not all(ctx.gather(_TAG_TORCH_API, 0.0 if reason else 1.0)):
        ctx.torch_cp_reason = reason or "another rank's PyTorch lacks context parallelism"
        return
    cp = None
    try:
        cp = TorchContextParallel.open(
            ctx.torch,
            api,
            rank=ctx.rank,
            world_size=setup.world_size,
            init_method=setup.torch_init_method,
        )
    except Exception as exc:
        reason = f"torch.distributed did not start: {type(exc).__name__}: {exc}"
    if not all(ctx.gather(_TAG_TORCH_READY, 0.0 if reason else 1.0)):
        if cp is not None:
            cp.close()
        ctx.torch_cp_reason = reason or "torch.distributed did not start on another rank"
        return
    ctx.torch_cp = cp


def _open_rank(rank: int, setup: WorkerSetup, sync: RankSync) -> RankContext:
    """Make GPU ``rank`` current, pick the array library, join the ring (and PyTorch's)."""
    os.environ.update(NCCL_ENVIRONMENT)
    torch = common.optional_import("torch")
    cuda_core = importlib.import_module("cuda.core")
    cuda_core.Device(rank).set_current()
    if torch is not None:
        torch.cuda.set_device(rank)
        arrays = common.TorchArrays(torch)
        timer = common.TorchEventTimer(torch)
    else:
        cupy = importlib.import_module("cupy")
        cupy.cuda.Device(rank).use()
        arrays = common.CupyArrays(cupy)
        timer = common.CudaCoreEventTimer(cuda_core, device=rank)
    import baracuda

    ctx = RankContext(
        rank=rank,
        setup=setup,
        sync=sync,
        baracuda=baracuda,
        arrays=arrays,
        timer=timer,
        torch=torch,
    )
    if setup.world_size > 1:
        ctx.comm = baracuda.nccl.Communicator(setup.world_size, rank, setup.unique_id, device=rank)
    if setup.torch_init_method is not None:
        _open_torch_cp(ctx)
    return ctx


def _close_rank(ctx: RankContext, *, failed: bool) -> None:
    if ctx.torch_cp is not None and not failed:
        ctx.torch_cp.close()
    if ctx.comm is not None:
        if failed:
            ctx.comm.abort()
        else:
            ctx.comm.destroy()


def _may_continue(ctx: RankContext) -> bool:
    """Agree whether to start the next measurement: rank 0 decides (stop request, budget)."""
    go = 0.0
    if ctx.rank == REFERENCE_RANK:
        deadline = ctx.setup.deadline
        within_budget = deadline is None or time.time() < deadline
        go = 1.0 if within_budget and not ctx.sync.stop_requested() else 0.0
    return ctx.gather(_TAG_GO, go)[REFERENCE_RANK] > 0


def run_rank(rank: int, setup: WorkerSetup, messages: Any, sync: RankSync) -> None:
    """Body of rank ``rank``'s process: every measurement of ``setup.items`` in order.

    Sends ``RESULT`` per measurement (rank 0 also ``INFO`` once), then ``DONE``; on an
    exception, ``ERROR`` with the traceback, and the rank stops. Ctrl-C is left to the
    parent, which asks the ranks to stop between measurements.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctx = _open_rank(rank, setup, sync)
    except BaseException:
        messages.put(WorkerMessage(ERROR, rank, None, traceback.format_exc()))
        return
    if rank == REFERENCE_RANK:
        info = {"torch_cp": {"ready": ctx.torch_cp is not None, "reason": ctx.torch_cp_reason}}
        if ctx.torch_cp is not None:
            info["torch_cp"].update(ctx.torch_cp.describe())
        messages.put(WorkerMessage(INFO, rank, None, info))
    try:
        for index, item in enumerate(setup.items):
            if not _may_continue(ctx):
                break
            payload = _MEASURE[type(item)](ctx, item)
            if payload is not None:
                messages.put(WorkerMessage(RESULT, rank, index, payload))
        _close_rank(ctx, failed=False)
    except BaseException:
        messages.put(WorkerMessage(ERROR, rank, None, traceback.format_exc()))
        with contextlib.suppress(Exception):
            _close_rank(ctx, failed=True)
        return
    messages.put(WorkerMessage(DONE, rank, None, None))


# ---------------------------------------------------------------------------------
# The parent: start the ranks, collect, stop
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankTimeouts:
    """How long the parent and the ranks wait (seconds)."""

    barrier_s: float = BARRIER_TIMEOUT_S
    silence_s: float = SILENCE_TIMEOUT_S
    exit_drain_s: float = EXIT_DRAIN_S
    stop_grace_s: float = STOP_GRACE_S
    exit_s: float = WORKER_EXIT_TIMEOUT_S
    poll_s: float = POLL_INTERVAL_S


@dataclass
class RankRun:
    """How a run of the ranks ended."""

    failures: list[str] = field(default_factory=list)
    interrupted: bool = False
    done: set[int] = field(default_factory=set)


def _stop_processes(processes: Sequence[Any], *, wait_s: float, exit_s: float) -> None:
    """Join every process, terminating (then killing) those that do not exit in time."""
    deadline = time.monotonic() + wait_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(exit_s)
        if process.is_alive():
            process.kill()
            process.join()


def _collect(
    processes: Sequence[Any],
    messages: Any,
    sync: RankSync,
    on_message: Callable[[WorkerMessage], None],
    timeouts: RankTimeouts,
    progress: TextIO,
) -> RankRun:
    """Read the ranks' messages until all are done, one fails or dies, or the run hangs."""
    run = RankRun()
    waiting = set(range(len(processes)))
    last_message = time.monotonic()
    stop_deadline = None
    exited_at: dict[int, float] = {}
    while waiting:
        try:
            try:
                message = messages.get(timeout=timeouts.poll_s)
            except queue.Empty:
                now = time.monotonic()
                for rank in sorted(waiting):
                    code = processes[rank].exitcode
                    if code is not None and now - exited_at.setdefault(rank, now) >= (
                        timeouts.exit_drain_s
                    ):
                        run.failures.append(f"rank {rank} exited with code {code} before finishing")
                        return run
                if now - last_message >= timeouts.silence_s:
                    run.failures.append(
                        f"no message from rank(s) {sorted(waiting)} for {timeouts.silence_s:g} s"
                    )
                    return run
                if stop_deadline is not None and now >= stop_deadline:
                    print(
                        f"the ranks did not stop within {timeouts.stop_grace_s:g} s; ending them",
                        file=progress,
                    )
                    return run
                continue
            last_message = time.monotonic()
            if message.kind == ERROR:
                run.failures.append(f"rank {message.rank} failed:\n{message.payload}")
                return run
            if message.kind == DONE:
                run.done.add(message.rank)
                waiting.discard(message.rank)
            else:
                on_message(message)
        except KeyboardInterrupt:
            if run.interrupted:
                print("interrupted again; ending the ranks now", file=progress)
                return run
            run.interrupted = True
            sync.request_stop()
            stop_deadline = time.monotonic() + timeouts.stop_grace_s
            print(
                "interrupted: stopping after the current measurement (Ctrl-C again ends now)",
                file=progress,
                flush=True,
            )
    return run


def run_ranks(
    world_size: int,
    target: Callable[..., None],
    setup: Any,
    *,
    on_message: Callable[[WorkerMessage], None],
    capacity: int,
    timeouts: RankTimeouts = RankTimeouts(),
    progress: TextIO | None = None,
) -> RankRun:
    """Run ``target(rank, setup, messages, sync)`` in one spawned process per rank.

    Parameters
    ----------
    world_size : int
        Number of rank processes.
    target : callable
        Module-level function run by each process (``run_rank``).
    setup : picklable
        Passed to every rank.
    on_message : callable
        Receives each ``RESULT`` and ``INFO`` message as it arrives.
    capacity : int
        Agreements the ranks may make (:class:`RankSync`).
    timeouts : RankTimeouts
        How long to wait for what.
    progress : text stream, optional
        Where interruption notices go (default: the standard error at the time of the call).

    Returns
    -------
    RankRun
        The failures (a rank's traceback, a rank that died, silence), whether the run was
        interrupted, and the ranks that finished. Every process has ended on return.
    """
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    sync = RankSync(context, world_size, capacity, timeout_s=timeouts.barrier_s)
    processes = []
    run = RankRun()
    try:
        for rank in range(world_size):
            process = context.Process(
                target=target,
                args=(rank, setup, messages, sync),
                name=f"baracuda-ring-rank-{rank}",
                daemon=True,
            )
            process.start()
            processes.append(process)
        run = _collect(
            processes,
            messages,
            sync,
            on_message,
            timeouts,
            sys.stderr if progress is None else progress,
        )
    finally:
        finished = not run.failures and len(run.done) == world_size
        _stop_processes(
            processes, wait_s=timeouts.exit_s if finished else 0.0, exit_s=timeouts.exit_s
        )
        messages.close()
    return run


class RingCollector:
    """Builds the document from the ranks' messages, writing it after each measurement.

    Parameters
    ----------
    items : sequence
        The measurements, by index.
    world_size : int
        Number of ranks.
    document : dict
        From :func:`build_ring_document`; filled in place.
    write : callable
        Called after each change of ``document``.
    progress : text stream, optional
        Receives one line per finished measurement (default: the standard error).
    clock : callable
        Seconds, for the elapsed time of the progress lines.
    """

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
        self._parts: dict[int, dict[int, Any]] = {}
        self.finished: set[int] = set()

    def __call__(self, message: WorkerMessage) -> None:
        """Take one ``RESULT`` or ``INFO`` message."""
        if message.kind == INFO:
            self._document["setup"].update(message.payload)
            self._write()
            return
        parts = self._parts.setdefault(message.item, {})
        parts[message.rank] = message.payload
        item = self._items[message.item]
        if not set(item.ranks(self._world_size)) <= set(parts):
            return
        if isinstance(item, FlashStep):
            entry = flash_step_entry(item, parts)
            self._document["flash_steps"].append(entry)
            result = entry["result"]
        elif isinstance(item, RingCase):
            entry = ring_entry(item, self._world_size, parts)
            self._document["records"].append(entry)
            result = entry["ring"]
        else:
            entry = torch_cp_entry(item, self._world_size, parts)
            self._document["torch_cp"].append(entry)
            result = entry["result"]
        self.finished.add(message.item)
        join_references(self._document)
        self._write()
        print(self._progress_line(message.item, item, result), file=self._progress, flush=True)

    def _progress_line(self, index: int, item: WorkItem, result: Mapping[str, Any]) -> str:
        if result["status"] == STATUS_OK:
            unit = "TFLOP/s" if isinstance(item, FlashStep) else "TFLOP/s per GPU"
            text = f"{result['median_ms']:.3f} ms, {result['tflops']:.1f} {unit}"
        else:
            text = result["status"]
        elapsed = self._clock() - self._started
        return f"[{index + 1}/{len(self._items)}] {item.label()}: {text} ({elapsed:.0f} s elapsed)"

    def finish(self, *, stop_reason: str | None) -> dict[str, Any]:
        """Record the measurements that did not finish and whether the run is complete.

        The document is written once more.
        """
        reason = stop_reason or "not run"
        self._document["skipped"] = [
            {"item": item.label(), "reason": reason}
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


def parse_seconds(text: str) -> float:
    """Parse a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds (got {text!r})")
    return value


def _describe_quick_preset() -> str:
    return "; ".join(
        f"{key} {','.join(map(format_tokens, value)) if isinstance(value, tuple) else value}"
        for key, value in QUICK_PRESET.items()
    )


def add_ring_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``python -m baracuda bench ring`` to ``parser``."""
    parser.add_argument(
        "--chunks",
        type=common.size_list,
        help="comma-separated tokens per GPU, k suffix allowed (default 1k,2k,4k,8k,16k,32k)",
    )
    parser.add_argument(
        "--dtypes",
        type=common.dtype_list,
        help=(
            f"comma-separated dtypes from {','.join(common.ALL_DTYPES)} "
            f"(default {','.join(DEFAULT_DTYPES)})"
        ),
    )
    parser.add_argument(
        "--heads", type=common.size, help=f"query heads H (default {DEFAULT_HEADS})"
    )
    parser.add_argument(
        "--heads-k",
        type=common.size,
        help=f"K/V heads Hk, a divisor of H (default {DEFAULT_HEADS_K})",
    )
    parser.add_argument(
        "--head-dim", type=common.size, help=f"head dim D (default {DEFAULT_HEAD_DIM})"
    )
    parser.add_argument(
        "--world-size",
        type=common.size,
        help="ranks, one GPU each (default: every visible GPU)",
    )
    parser.add_argument(
        "--cases",
        type=common.choice_list(tuple(CASE_KINDS)),
        help=f"comma-separated cases from {','.join(CASE_KINDS)} (default all)",
    )
    parser.add_argument(
        "--schedules",
        type=common.choice_list(SCHEDULES),
        help=f"comma-separated schedules from {','.join(SCHEDULES)} (default both)",
    )
    parser.add_argument(
        "--warmup",
        type=common.count,
        help=(
            "untimed calls per measurement after the cold and probe calls (default: about "
            f"{WARMUP_TARGET_S:g} s worth, {MIN_ADAPTIVE_WARMUP} to {MAX_ADAPTIVE_WARMUP})"
        ),
    )
    parser.add_argument(
        "--repeats",
        type=common.size,
        help=(
            f"timed calls per measurement (default: about {REPEATS_TARGET_S:g} s worth, "
            f"{MIN_ADAPTIVE_REPEATS} to {MAX_ADAPTIVE_REPEATS})"
        ),
    )
    parser.add_argument(
        "--max-seconds",
        type=parse_seconds,
        help="start no measurement after this many seconds; the rest is recorded as skipped",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="JSON output path (default benchmarks/results/<gpu>-<yyyy-mm-dd>-ring.json)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a small grid ({_describe_quick_preset()}); explicit options override it",
    )
    parser.add_argument(
        "--no-peers",
        action="store_true",
        help="time baracuda only, not PyTorch's context parallelism",
    )


def resolve_ring_config(args: argparse.Namespace) -> RingBenchConfig:
    """Merge parsed options, the ``--quick`` preset and the defaults (in that priority).

    Raises
    ------
    ConfigError
        ``Hk`` does not divide ``H``, or a zigzag case has an odd chunk.
    """
    preset = QUICK_PRESET if args.quick else {}

    def pick(name: str, default: Any) -> Any:
        value = getattr(args, name)
        return value if value is not None else preset.get(name, default)

    config = RingBenchConfig(
        dtypes=pick("dtypes", DEFAULT_DTYPES),
        chunks=pick("chunks", DEFAULT_CHUNKS),
        heads=pick("heads", DEFAULT_HEADS),
        heads_k=pick("heads_k", DEFAULT_HEADS_K),
        head_dim=pick("head_dim", DEFAULT_HEAD_DIM),
        cases=pick("cases", tuple(CASE_KINDS)),
        schedules=pick("schedules", SCHEDULES),
        world_size=args.world_size,
        warmup=pick("warmup", None),
        repeats=pick("repeats", None),
        peers=not args.no_peers,
        max_seconds=args.max_seconds,
        out=args.out,
    )
    if config.heads % config.heads_k != 0:
        raise ConfigError(
            f"--heads-k must divide --heads (got H={config.heads}, Hk={config.heads_k})"
        )
    odd = [chunk for chunk in config.chunks if chunk % 2]
    if any(CASE_KINDS[case].layout == ZIGZAG for case in config.cases) and odd:
        raise ConfigError(
            f"the zigzag layout splits each chunk in two halves (got odd chunks {odd})"
        )
    return config


def resolve_world_size(requested: int | None, device_count: int) -> int:
    """Return the number of ranks: ``requested``, or every visible GPU (at least 1).

    Raises
    ------
    ConfigError
        More ranks than visible GPUs.
    """
    if requested is None:
        return max(1, device_count)
    if requested > device_count:
        raise ConfigError(
            f"--world-size {requested} needs {requested} GPUs (got {device_count} visible)"
        )
    return requested


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOCALHOST, 0))
        return probe.getsockname()[1]


def _software(baracuda: Any, torch: Any, cupy: Any, world_size: int) -> dict[str, Any]:
    software = common.software_versions(baracuda=baracuda, torch=torch, cupy=cupy)
    software["nccl"] = baracuda.nccl.version() if world_size > 1 else None
    software["nccl_library"] = baracuda.nccl.library_path() or None
    software["torch_nccl"] = None
    if torch is not None:
        with contextlib.suppress(Exception):
            software["torch_nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    return software


def peers_unavailable_reason(
    config: RingBenchConfig, *, torch_present: bool, world_size: int
) -> str | None:
    """Return why PyTorch's context parallelism is not timed, or None when it is."""
    if not config.peers:
        return "--no-peers"
    if not torch_present:
        return "torch is not installed"
    if world_size < MIN_PEER_WORLD_SIZE:
        return f"it needs at least {MIN_PEER_WORLD_SIZE} GPUs (world size {world_size})"
    return None


@contextlib.contextmanager
def _terminate_as_interrupt() -> Any:
    """Treat SIGTERM as Ctrl-C while the ranks run, so that they are stopped, not orphaned."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_reason(run: RankRun, *, budget: bool) -> str | None:
    """Return why measurements may be missing from a run: a failure, Ctrl-C, the budget."""
    if run.failures:
        return STOP_FAILURE
    if run.interrupted:
        return STOP_INTERRUPTED
    return STOP_BUDGET if budget else None


def run_ring(args: argparse.Namespace) -> int:
    """Entry point of ``python -m baracuda bench ring``.

    Returns
    -------
    int
        Exit status: 0 after a run or when no GPU is present; 1 when a rank failed or a
        required package is missing; 2 for options that do not go together.
    """
    prefix = "baracuda bench ring"
    try:
        config = resolve_ring_config(args)
    except ConfigError as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return USAGE_EXIT
    gpu = common.probe_gpu()
    if not gpu.present:
        return common.no_gpu_exit(prefix, gpu)
    try:
        world_size = resolve_world_size(config.world_size, gpu.device_count)
    except ConfigError as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return USAGE_EXIT

    libraries = common.import_libraries(prefix)
    if libraries is None:
        return common.MISSING_DEPENDENCY_EXIT
    torch, cupy = libraries.torch, libraries.cupy
    import baracuda

    # NCCL reads its environment when it starts, in this process and in the ranks.
    os.environ.update(NCCL_ENVIRONMENT)
    try:
        unique_id = baracuda.nccl.get_unique_id() if world_size > 1 else None
    except baracuda.BaracudaError as exc:
        print(f"{prefix}: the ring needs NCCL: {type(exc).__name__}: {exc}", file=sys.stderr)
        return common.MISSING_DEPENDENCY_EXIT

    peers_reason = peers_unavailable_reason(
        config, torch_present=torch is not None, world_size=world_size
    )
    items = work_items(config, torch_cp=peers_reason is None)
    now = datetime.datetime.now().astimezone()
    document = build_ring_document(
        config,
        gpu,
        world_size=world_size,
        software=_software(baracuda, torch, cupy, world_size),
        timer_method=libraries.events_name,
        arrays_name=libraries.arrays_name,
        peers_reason=peers_reason,
        now=now,
    )
    out = config.out or common.default_output_path(gpu.name, now.date(), target=TARGET_NAME)
    setup = WorkerSetup(
        world_size=world_size,
        items=tuple(items),
        unique_id=unique_id,
        warmup=config.warmup,
        repeats=config.repeats,
        l2_cache_bytes=gpu.l2_cache_bytes,
        deadline=None if config.max_seconds is None else time.time() + config.max_seconds,
        torch_init_method=None if peers_reason else f"tcp://{LOCALHOST}:{_free_port()}",
    )
    print(f"{prefix}: {len(items)} measurements on {world_size} x {gpu.name}", file=sys.stderr)
    if world_size == 1:
        print(f"{prefix}: one GPU: the ring runs with world size 1, without NCCL", file=sys.stderr)
    collector = RingCollector(
        items, world_size, document, write=lambda: common.write_json(out, document)
    )
    with _terminate_as_interrupt():
        run = run_ranks(
            world_size, run_rank, setup, on_message=collector, capacity=sync_capacity(items)
        )
    document["failures"] = run.failures
    collector.finish(stop_reason=stop_reason(run, budget=config.max_seconds is not None))
    print_ring_table(document)
    print(f"results written to {out}")
    for failure in run.failures:
        print(f"{prefix}: {failure}", file=sys.stderr)
    return RANK_FAILURE_EXIT if run.failures else 0
