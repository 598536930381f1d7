"""Benchmark of :func:`baracuda.flash_attention` (``python -m baracuda bench [flash]``).

The forward pass is timed over a grid of problems and, where PyTorch is installed, so are
the implementations a user would otherwise pick, in the same run:
``torch.nn.functional.scaled_dot_product_attention`` forced to its FlashAttention backend
and to its cuDNN backend.

Method
------
- The grid keeps the number of tokens ``B * S`` and the model width ``H * D`` fixed
  (16k tokens and 2048 by default), so every case moves the same amount of Q/K/V data
  and the work grows linearly with the sequence length.
- Every call is timed with a pair of CUDA events on the legacy default stream
  (:func:`baracuda._bench_common.time_calls`), after a warm-up whose first call selects
  (and caches) the plan. The median is the result; p10, p90 and the minimum are recorded.
- Calls rotate over several sets of random inputs (``randn``, never zeros) whose total
  size exceeds twice the L2 cache, so no call finds its inputs in L2.
- baracuda writes into preallocated outputs (``out=``); the PyTorch peers allocate
  their outputs through PyTorch's caching allocator, as users of them do.
- FLOPs are ``4 * B * H * Sq * Sk * D`` for the forward pass, halved when causal.

``torch`` and ``cupy`` are imported only when a benchmark runs, after the GPU probe has
found a device.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from baracuda import _bench_common as common

SCHEMA = "baracuda-bench-flash/1"
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
TENSORS_PER_SET = 4

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


# ---------------------------------------------------------------------------------
# Grid
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One problem of the grid: self-attention with ``Sq = Sk = seqlen`` and ``Dk = Dv``."""

    dtype: str
    head_dim: int
    heads: int
    batch: int
    seqlen: int
    causal: bool

    def label(self) -> str:
        """Return a short human-readable name of the case."""
        mask = "causal" if self.causal else "full"
        sizes = f"D={self.head_dim} H={self.heads} B={self.batch} S={self.seqlen}"
        return f"{self.dtype} {sizes} {mask}"


CASE_FIELDS = ("dtype", "head_dim", "heads", "batch", "seqlen", "causal")


@dataclass(frozen=True)
class BenchConfig:
    """Resolved settings of one benchmark run."""

    dtypes: tuple[str, ...] = DEFAULT_DTYPES
    head_dims: tuple[int, ...] = DEFAULT_HEAD_DIMS
    seqlens: tuple[int, ...] = DEFAULT_SEQLENS
    causal: tuple[bool, ...] = CAUSAL_CHOICES["both"]
    tokens: int = DEFAULT_TOKENS
    model_width: int = MODEL_WIDTH
    layout: str = DEFAULT_LAYOUT
    warmup: int = common.DEFAULT_WARMUP
    repeats: int = DEFAULT_REPEATS
    peers: bool = True
    out: Path | None = None


def case_grid(config: BenchConfig) -> list[Case]:
    """Expand a configuration into its cases, in the order they run.

    ``H = model_width // D`` and ``B = tokens // S`` (each at least 1).

    Returns
    -------
    list of Case
        One case per (dtype, head dim, sequence length, causal) combination.
    """
    return [
        Case(
            dtype=dtype,
            head_dim=head_dim,
            heads=max(1, config.model_width // head_dim),
            batch=max(1, config.tokens // seqlen),
            seqlen=seqlen,
            causal=causal,
        )
        for dtype in config.dtypes
        for head_dim in config.head_dims
        for seqlen in config.seqlens
        for causal in config.causal
    ]


def flops(case: Case) -> int:
    """Return the forward-pass FLOPs of a case: ``4*B*H*Sq*Sk*D``, halved when causal."""
    total = 4 * case.batch * case.heads * case.seqlen * case.seqlen * case.head_dim
    return total // 2 if case.causal else total


def input_set_count(case: Case, l2_cache_bytes: int) -> int:
    """Return how many sets of Q, K, V and output to rotate so that they exceed the L2 span."""
    elements = case.batch * case.heads * case.seqlen * case.head_dim
    set_bytes = TENSORS_PER_SET * elements * common.ITEM_BYTES[case.dtype]
    return common.sets_to_exceed_l2(set_bytes, l2_cache_bytes)


def make_inputs(
    case: Case, count: int, arrays: Any, *, layout: str = DEFAULT_LAYOUT
) -> list[common.InputSet]:
    """Allocate ``count`` independent sets of random Q/K/V and an output for each.

    Parameters
    ----------
    case : Case
        The problem.
    count : int
        Number of sets to rotate over.
    arrays : TorchArrays or CupyArrays
        The array library (``randn`` and ``empty`` whose results have ``swapaxes``).
    layout : {"bshd", "bhsd"}
        ``"bshd"`` stores each tensor as ``[B, S, H, D]`` and passes the ``[B, H, S, D]``
        view (the layout a projection produces); ``"bhsd"`` stores ``[B, H, S, D]``.

    Returns
    -------
    list of InputSet
    """

    def tensor(make: Callable[[tuple[int, ...], str], Any]) -> Any:
        if layout == "bshd":
            shape = (case.batch, case.seqlen, case.heads, case.head_dim)
            return make(shape, case.dtype).swapaxes(1, 2)
        return make((case.batch, case.heads, case.seqlen, case.head_dim), case.dtype)

    return [
        common.InputSet(
            q=tensor(arrays.randn),
            k=tensor(arrays.randn),
            v=tensor(arrays.randn),
            out=tensor(arrays.empty),
        )
        for _ in range(count)
    ]


# ---------------------------------------------------------------------------------
# Implementations under test
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Implementation:
    """An attention implementation the harness times.

    Attributes
    ----------
    name, label : str
        Key in the JSON results (``"baracuda"``, ``"torch_flash"``, ``"torch_cudnn"``)
        and column heading in the table.
    bind : callable
        ``bind(case, sets)`` returns ``fn(i)`` that runs the case on input set ``i``.
    is_peer : bool
        True for the implementations baracuda is compared against.
    is_unsupported : callable
        ``is_unsupported(exc)`` tells whether an exception from the first call means that
        the implementation does not support the case (rather than a failure).
    context : callable
        Returns the context manager the calls run in.
    """

    name: str
    label: str
    bind: Callable[[Case, list[common.InputSet]], Callable[[int], object]]
    is_peer: bool
    is_unsupported: Callable[[BaseException], bool]
    context: Callable[[], AbstractContextManager[Any]] = field(default=contextlib.nullcontext)


def baracuda_implementation(baracuda: Any) -> Implementation:
    """Return :func:`baracuda.flash_attention` with preallocated outputs."""

    def bind(case: Case, sets: list[common.InputSet]) -> Callable[[int], object]:
        def call(index: int) -> object:
            inputs = sets[index]
            return baracuda.flash_attention(
                inputs.q, inputs.k, inputs.v, causal=case.causal, out=inputs.out
            )

        return call

    return Implementation(
        name="baracuda",
        label="baracuda",
        bind=bind,
        is_peer=False,
        is_unsupported=lambda exc: isinstance(exc, baracuda.UnsupportedError),
    )


def torch_sdpa_implementations(torch: Any) -> list[Implementation]:
    """Return PyTorch SDPA forced to its FlashAttention and to its cuDNN backend.

    Returns an empty list when this PyTorch lacks ``torch.nn.attention.sdpa_kernel``.
    """
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        return []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def bind(case: Case, sets: list[common.InputSet]) -> Callable[[int], object]:
        def call(index: int) -> object:
            inputs = sets[index]
            return sdpa(inputs.q, inputs.k, inputs.v, is_causal=case.causal)

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

    return [
        peer("torch_flash", "torch flash", SDPBackend.FLASH_ATTENTION),
        peer("torch_cudnn", "torch cudnn", SDPBackend.CUDNN_ATTENTION),
    ]


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
    sets: list[common.InputSet],
    *,
    timer: Any,
    warmup: int,
    repeats: int,
) -> dict[str, Any]:
    """Time one implementation on one case; a failure is recorded, never raised.

    The first call runs alone and is synchronised: it selects the plan or the backend,
    and an exception there is ``"unsupported"`` or ``"error"`` as the implementation
    classifies it. An exception while timing is an ``"error"``. The warnings of a failed
    case are kept.

    Returns
    -------
    dict
        :func:`baracuda._bench_common.summarize`'s record, or
        ``{"status", "error"[, "warnings"]}``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with implementation.context():
            try:
                fn = implementation.bind(case, sets)
                fn(0)
                timer.synchronize()
            except Exception as exc:
                unsupported = implementation.is_unsupported(exc)
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
    """Return the backend and kernel SKU that baracuda's plan selection picks for a case."""
    descriptor = baracuda.FlashSdpaDescriptor(
        case.batch,
        case.heads,
        case.seqlen,
        case.seqlen,
        case.head_dim,
        is_causal=case.causal,
        element=case.dtype,
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
    """Allocate a case's inputs, time every implementation on them and build its record.

    Returns
    -------
    dict
        The case's JSON record (see ``benchmarks/README.md``).
    """
    set_count = input_set_count(case, l2_cache_bytes)
    record: dict[str, Any] = {key: getattr(case, key) for key in CASE_FIELDS}
    record.update(flops=flops(case), input_sets=set_count)
    if plan_info is not None:
        record["baracuda_plan"] = plan_info(case)
    try:
        sets = make_inputs(case, set_count, arrays, layout=config.layout)
    except common.HarnessUnsupportedError as exc:
        skipped = {"status": common.STATUS_SKIPPED, "error": str(exc)}
        record["results"] = {item.name: dict(skipped) for item in implementations}
    else:
        record["results"] = {
            item.name: measure(
                item, case, sets, timer=timer, warmup=config.warmup, repeats=config.repeats
            )
            for item in implementations
        }
        del sets
        arrays.release()
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
    return f"[{index}/{total}] {case.label()}: {results} ({elapsed_s:.0f} s elapsed)"


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
    """Run every case of the grid, appending records to ``document["cases"]``.

    An interrupt (Ctrl-C) stops the run and keeps the cases measured so far;
    ``document["complete"]`` tells whether the grid finished. Progress lines go to
    ``progress``, by default the standard error at the time of the call.

    Returns
    -------
    dict
        ``document``, filled in.
    """
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
            "input_rotation": (
                f"at least {common.MIN_INPUT_SETS} random input sets, together over "
                f"{common.L2_SPAN}x the L2 size"
            ),
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
        },
        "implementations": [
            {"name": item.name, "label": item.label, "peer": item.is_peer}
            for item in implementations
        ],
        "cases": [],
    }


def _cells(result: dict[str, Any] | None) -> list[str]:
    if result is None:
        return ["-", "-"]
    if result["status"] == common.STATUS_OK:
        return [f"{result['median_ms']:.3f}", f"{result['tflops']:.1f}"]
    return [result["status"], ""]


def format_table(document: dict[str, Any]) -> str:
    """Return the results as a fixed-width text table, one row per case.

    Times are medians in milliseconds; ``speedup`` is the best peer's median over
    baracuda's (above 1: baracuda is faster).
    """
    implementations = document["implementations"]
    has_peers = any(item["peer"] for item in implementations)
    headers = ["dtype", "D", "H", "B", "S", "causal"]
    for item in implementations:
        headers += [f"{item['label']} ms", "TFLOP/s"]
    headers += ["speedup"] if has_peers else []
    rows = []
    for case in document["cases"]:
        row = [case["dtype"], *(str(case[key]) for key in CASE_FIELDS[1:-1])]
        row.append("yes" if case["causal"] else "no")
        for item in implementations:
            row += _cells(case["results"].get(item["name"]))
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
        label = Case(**{key: case[key] for key in CASE_FIELDS}).label()
        for name, result in case["results"].items():
            if result["status"] in FAILED_STATUSES:
                print(f"{name} {result['status']} on {label}: {result['error']}", file=stream)


# ---------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------


def _describe_quick_preset() -> str:
    def text(key: str, value: Any) -> str:
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        return f"{key.replace('_', ' ')} {shown}"

    return "; ".join(text(key, value) for key, value in QUICK_PRESET.items())


def add_flash_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``python -m baracuda bench flash`` to ``parser``."""
    option = parser.add_argument
    dtypes = f"{','.join(common.ALL_DTYPES)} (default {','.join(DEFAULT_DTYPES)})"
    option("--dtypes", type=common.dtype_list, help=f"comma-separated dtypes from {dtypes}")
    head_dims = ",".join(map(str, DEFAULT_HEAD_DIMS))
    option(
        "--head-dims",
        type=common.size_list,
        help=f"comma-separated head dims (default {head_dims})",
    )
    option(
        "--seqlens",
        type=common.size_list,
        help="comma-separated sequence lengths, k suffix allowed (default 512,1k,2k,4k,8k,16k)",
    )
    option(
        "--causal",
        choices=tuple(CAUSAL_CHOICES),
        default="both",
        help="causal cases, non-causal cases or both (default both)",
    )
    option(
        "--tokens",
        type=common.size,
        help=(
            "tokens per call, B*S; the batch is tokens // S "
            f"(default {DEFAULT_TOKENS // common.KIBI}k)"
        ),
    )
    option(
        "--layout",
        choices=LAYOUTS,
        default=DEFAULT_LAYOUT,
        help=(
            "memory layout of Q/K/V/out: [B,S,H,D] passed as a [B,H,S,D] view, or [B,H,S,D] "
            "(default bshd)"
        ),
    )
    option(
        "--warmup",
        type=common.count,
        help=f"untimed calls per measurement (default {common.DEFAULT_WARMUP})",
    )
    option(
        "--repeats",
        type=common.size,
        help=f"timed calls per measurement (default {DEFAULT_REPEATS})",
    )
    option(
        "--out",
        type=Path,
        help="JSON output path (default benchmarks/results/<gpu>-<yyyy-mm-dd>-flash.json)",
    )
    option(
        "--quick",
        action="store_true",
        help=(
            f"a small grid for a smoke run ({_describe_quick_preset()}); "
            "explicit options override it"
        ),
    )
    option("--no-peers", action="store_true", help="time baracuda only, not PyTorch SDPA")


def resolve_config(args: argparse.Namespace) -> BenchConfig:
    """Merge parsed options, the ``--quick`` preset and the defaults (in that priority).

    Parameters
    ----------
    args : argparse.Namespace
        Result of parsing :func:`add_flash_arguments`'s options.

    Returns
    -------
    BenchConfig
    """
    preset = QUICK_PRESET if args.quick else {}

    def pick(name: str, default: Any) -> Any:
        value = getattr(args, name)
        return value if value is not None else preset.get(name, default)

    return BenchConfig(
        dtypes=pick("dtypes", DEFAULT_DTYPES),
        head_dims=pick("head_dims", DEFAULT_HEAD_DIMS),
        seqlens=pick("seqlens", DEFAULT_SEQLENS),
        causal=CAUSAL_CHOICES[args.causal],
        tokens=pick("tokens", DEFAULT_TOKENS),
        layout=args.layout,
        warmup=pick("warmup", common.DEFAULT_WARMUP),
        repeats=pick("repeats", DEFAULT_REPEATS),
        peers=not args.no_peers,
        out=args.out,
    )


def run_flash(args: argparse.Namespace) -> int:
    """Entry point of ``python -m baracuda bench flash``.

    Returns
    -------
    int
        Exit status: 0 after a run or when no GPU is present, 1 when a required
        package is missing.
    """
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
        implementations += torch_sdpa_implementations(torch)

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
