"""What the flash and the ring benchmarks share (``python -m baracuda bench``): the GPU
probe and document header, the array libraries and input sets, CUDA-event timing and its
statistics, the option types, the config resolution with presets, the text table, progress
lines and the JSON writer. ``torch``, ``cupy`` and ``cuda.core`` are imported only by the
functions that need them; ``benchmarks/README.md`` describes the method.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import platform
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

KIBI = 1024
MIBI = 1024 * 1024
GIBI = 1024 * 1024 * 1024
ALL_DTYPES = ("bf16", "f16", "f32", "f64")
ITEM_BYTES = {"bf16": 2, "f16": 2, "f32": 4, "f64": 8}
DEFAULT_WARMUP = 10
RESULTS_DIR = Path("benchmarks") / "results"

FALLBACK_L2_BYTES = 64 * MIBI
L2_SPAN = 2
MIN_INPUT_SETS = 3
MAX_INPUT_SETS = 64
RANDOM_SEED = 0

TERA = 1e12
MS_PER_S = 1e3
QUANTILES = (0.10, 0.50, 0.90)
"""p10, median and p90 of the call times (linear interpolation between samples)."""

STATUS_OK = "ok"
STATUS_UNSUPPORTED = "unsupported"
STATUS_ERROR = "error"
STATUS_SKIPPED = "skipped"

NO_GPU_EXIT = 0
MISSING_DEPENDENCY_EXIT = 1

DRIVER_VERSION_PART_DIGITS = 2
TABLE_GAP = "  "
_SIZE_SUFFIXES = {"k": KIBI, "m": MIBI}


class HarnessUnsupportedError(Exception):
    """The harness cannot build inputs for a case with the array library at hand."""


# ---------------------------------------------------------------------------------
# GPU and document header
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuInfo:
    """What the GPU probe found about device 0.

    Attributes
    ----------
    present : bool
        True when at least one CUDA device is usable.
    reason : str
        Why no device is usable (empty when ``present``).
    name, compute_capability : str
        Device 0's name and ``"major.minor"``.
    l2_cache_bytes, device_count : int
        Device 0's L2 size in bytes; the number of visible devices.
    driver_cuda_version : str
        Highest CUDA version the driver supports, ``"major.minor"``.
    """

    present: bool
    reason: str = ""
    name: str = ""
    compute_capability: str = ""
    l2_cache_bytes: int = 0
    device_count: int = 0
    driver_cuda_version: str = ""


def _version_text(query: Callable[[], Sequence[int]], *, part_digits: int = 1) -> str | None:
    """Return the version that ``query`` returns as parts, dotted; None when the query fails.

    Parts after the first are zero-padded to ``part_digits``: ``(580, 65, 6)`` becomes
    ``"580.65.06"`` with 2, as NVIDIA writes its driver versions; ``(13, 0)`` becomes
    ``"13.0"`` with 1.
    """
    try:
        first, *rest = query()
    except Exception:  # NVML missing or refusing: the version is then unknown
        return None
    return ".".join([str(first), *(f"{part:0{part_digits}d}" for part in rest)])


def probe_gpu() -> GpuInfo:
    """Find out whether a CUDA GPU is usable and describe device 0.

    The driver is asked first (:mod:`baracuda._cuda`, once per process): without a device,
    ``cuda.core`` is never reached.

    Returns
    -------
    GpuInfo
        ``present=False`` with the driver's reason when there is no usable device.
    """
    from baracuda import _cuda

    absence = _cuda._device_absence()
    if absence is not None:
        return GpuInfo(present=False, reason=absence)
    from cuda.core import Device, system

    device = Device(0)
    capability = device.compute_capability
    return GpuInfo(
        present=True,
        name=device.name,
        compute_capability=f"{capability.major}.{capability.minor}",
        l2_cache_bytes=device.properties.l2_cache_size,
        device_count=len(Device.get_all_devices()),
        driver_cuda_version=_version_text(system.get_user_mode_driver_version) or "",
    )


def no_gpu_exit(program: str, gpu: GpuInfo) -> int:
    """Print the one line of a run without GPU and return its exit status."""
    print(f"{program}: no CUDA GPU is present ({gpu.reason}); nothing to time.", file=sys.stderr)
    return NO_GPU_EXIT


def optional_import(name: str) -> Any:
    """Return the module ``name``, or None when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _module_version(module: Any) -> str | None:
    return getattr(module, "__version__", None) if module is not None else None


def software_versions(*, baracuda: Any, torch: Any = None, cupy: Any = None) -> dict[str, Any]:
    """Return the versions of everything that shapes the numbers."""
    from cuda.core import system

    versions: dict[str, Any] = {
        "baracuda": _module_version(baracuda),
        "torch": _module_version(torch),
        "cupy": _module_version(cupy),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "nvidia_driver": _version_text(
            system.get_kernel_mode_driver_version, part_digits=DRIVER_VERSION_PART_DIGITS
        ),
        "cuda_runtime": None,
        "cudnn": None,
    }
    if torch is not None:
        versions["cuda_runtime"] = torch.version.cuda
        versions["cudnn"] = torch.backends.cudnn.version()
    elif cupy is not None:
        versions["cuda_runtime"] = str(cupy.cuda.runtime.runtimeGetVersion())
    return versions


def document_header(
    schema: str, *, gpu: GpuInfo, software: dict[str, Any], now: datetime.datetime
) -> dict[str, Any]:
    """Return the fields every results document starts with.

    ``complete`` is False until the run ends.
    """
    return {
        "schema": schema,
        "date": now.date().isoformat(),
        "timestamp": now.isoformat(timespec="seconds"),
        "complete": False,
        "gpu": {
            "name": gpu.name,
            "compute_capability": gpu.compute_capability,
            "l2_cache_bytes": gpu.l2_cache_bytes,
            "device_count": gpu.device_count,
            "driver_cuda_version": gpu.driver_cuda_version,
        },
        "software": software,
    }


def gpu_slug(name: str) -> str:
    """Return a GPU name as a file-name part: ``"NVIDIA H100 80GB HBM3"`` gives
    ``"nvidia-h100-80gb-hbm3"``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown-gpu"


def default_output_path(gpu_name: str, date: datetime.date, *, target: str = "flash") -> Path:
    """Return ``benchmarks/results/<gpu-slug>-<yyyy-mm-dd>-<target>.json`` (a relative path)."""
    return RESULTS_DIR / f"{gpu_slug(gpu_name)}-{date.isoformat()}-{target}.json"


def write_json(path: Path, document: dict[str, Any]) -> Path:
    """Write ``document`` as indented JSON, creating the directory; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


# ---------------------------------------------------------------------------------
# Array libraries and inputs
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputSet:
    """Q, K, V and a preallocated output (None where a benchmark needs none)."""

    q: Any
    k: Any
    v: Any
    out: Any


def l2_span_bytes(l2_cache_bytes: int) -> int:
    """Return the bytes that the inputs of one measurement must exceed: ``L2_SPAN`` L2 caches.

    ``l2_cache_bytes`` of 0 or less means unknown (``FALLBACK_L2_BYTES`` is used).
    """
    return L2_SPAN * (l2_cache_bytes if l2_cache_bytes > 0 else FALLBACK_L2_BYTES)


def sets_to_exceed_l2(set_bytes: int, l2_cache_bytes: int) -> int:
    """Return how many input sets of ``set_bytes`` together exceed ``L2_SPAN`` L2 caches.

    Parameters
    ----------
    set_bytes : int
        Bytes of one input set.
    l2_cache_bytes : int
        L2 size of the device; 0 or less means unknown (``FALLBACK_L2_BYTES`` is used).

    Returns
    -------
    int
        Between ``MIN_INPUT_SETS`` and ``MAX_INPUT_SETS``.
    """
    span = l2_span_bytes(l2_cache_bytes)
    return min(MAX_INPUT_SETS, max(MIN_INPUT_SETS, span // set_bytes + 1))


class TorchArrays:
    """Allocates benchmark tensors with PyTorch on the current CUDA device."""

    name = "torch"

    def __init__(self, torch: Any) -> None:
        self._torch = torch
        self._dtypes = {
            "bf16": torch.bfloat16,
            "f16": torch.float16,
            "f32": torch.float32,
            "f64": torch.float64,
        }
        torch.manual_seed(RANDOM_SEED)

    def randn(self, shape: tuple[int, ...], dtype: str) -> Any:
        """Return a tensor of standard normal values."""
        return self._torch.randn(shape, dtype=self._dtypes[dtype], device="cuda")

    def empty(self, shape: tuple[int, ...], dtype: str) -> Any:
        """Return an uninitialised tensor."""
        return self._torch.empty(shape, dtype=self._dtypes[dtype], device="cuda")

    def asarray(self, host: np.ndarray) -> Any:
        """Return a device copy of a numpy array, of its dtype."""
        return self._torch.as_tensor(host, device="cuda")

    def where(self, condition: Any, chosen: Any, other: Any) -> Any:
        """Return ``chosen`` where ``condition`` holds and ``other`` elsewhere (broadcast)."""
        return self._torch.where(condition, chosen, other)

    def release(self) -> None:
        """Return cached blocks to the driver between cases."""
        self._torch.cuda.empty_cache()


class CupyArrays:
    """Allocates benchmark arrays with CuPy (used when PyTorch is absent)."""

    name = "cupy"

    def __init__(self, cupy: Any) -> None:
        self._cupy = cupy
        self._dtypes = {"f16": cupy.float16, "f32": cupy.float32, "f64": cupy.float64}
        cupy.random.seed(RANDOM_SEED)

    def _dtype(self, dtype: str) -> Any:
        if dtype not in self._dtypes:
            raise HarnessUnsupportedError(f"{dtype} inputs need torch (CuPy has no {dtype} dtype)")
        return self._dtypes[dtype]

    def randn(self, shape: tuple[int, ...], dtype: str) -> Any:
        """Return an array of standard normal values (sampled in f32, or f64 for f64)."""
        target = self._dtype(dtype)
        sample_dtype = self._cupy.float64 if target == self._cupy.float64 else self._cupy.float32
        return self._cupy.random.standard_normal(shape, dtype=sample_dtype).astype(target)

    def empty(self, shape: tuple[int, ...], dtype: str) -> Any:
        """Return an uninitialised array."""
        return self._cupy.empty(shape, dtype=self._dtype(dtype))

    def asarray(self, host: np.ndarray) -> Any:
        """Return a device copy of a numpy array, of its dtype."""
        return self._cupy.asarray(host)

    def where(self, condition: Any, chosen: Any, other: Any) -> Any:
        """Return ``chosen`` where ``condition`` holds and ``other`` elsewhere (broadcast)."""
        return self._cupy.where(condition, chosen, other)

    def release(self) -> None:
        """Return pooled blocks to the driver between cases."""
        self._cupy.get_default_memory_pool().free_all_blocks()


@dataclass(frozen=True)
class Libraries:
    """The libraries a run allocates and times with: PyTorch, or CuPy and cuda.core."""

    torch: Any
    cupy: Any
    cuda_core: Any

    @property
    def arrays_name(self) -> str:
        """Name of the array library, as the JSON documents record it."""
        return TorchArrays.name if self.torch is not None else CupyArrays.name

    @property
    def events_name(self) -> str:
        """Name of the CUDA event source, as the JSON documents record it."""
        return TorchEventTimer.method if self.torch is not None else CudaCoreEventTimer.method

    def arrays_and_timer(self) -> tuple[Any, Any]:
        """Return the array library and the CUDA event timer on device 0."""
        if self.torch is not None:
            return TorchArrays(self.torch), TorchEventTimer(self.torch)
        return CupyArrays(self.cupy), CudaCoreEventTimer(self.cuda_core)


def import_libraries(program: str) -> Libraries | None:
    """Import PyTorch, or else CuPy and cuda.core; None (after saying so) when neither is there."""
    torch = optional_import("torch")
    cupy = optional_import("cupy") if torch is None else None
    cuda_core = optional_import("cuda.core") if torch is None else None
    if torch is None and (cupy is None or cuda_core is None):
        print(
            f"{program}: needs torch, or cupy and cuda-core, to allocate inputs and time them.",
            file=sys.stderr,
        )
        return None
    return Libraries(torch=torch, cupy=cupy, cuda_core=cuda_core)


# ---------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------


class TorchEventTimer:
    """CUDA events from ``torch.cuda.Event``, recorded on PyTorch's current stream."""

    method = "torch.cuda.Event"

    def __init__(self, torch: Any) -> None:
        self._torch = torch

    def new_event(self) -> Any:
        """Return an event that records timing."""
        return self._torch.cuda.Event(enable_timing=True)

    def record(self, event: Any) -> None:
        """Record ``event`` on the current stream."""
        event.record()

    def synchronize(self) -> None:
        """Wait for all work on the device."""
        self._torch.cuda.synchronize()

    def elapsed_ms(self, start: Any, end: Any) -> float:
        """Return the GPU time between two completed events in milliseconds."""
        return start.elapsed_time(end)


class CudaCoreEventTimer:
    """CUDA events from ``cuda.core``, recorded on the legacy default stream of ``device``."""

    method = "cuda.core Event"

    def __init__(self, cuda_core: Any, *, device: int = 0) -> None:
        self._device = cuda_core.Device(device)
        self._device.set_current()
        self._stream = self._device.default_stream
        self._options = cuda_core.EventOptions(timing_enabled=True)

    def new_event(self) -> Any:
        """Return an event that records timing."""
        return self._device.create_event(options=self._options)

    def record(self, event: Any) -> None:
        """Record ``event`` on the default stream."""
        self._stream.record(event)

    def synchronize(self) -> None:
        """Wait for all work on the device."""
        self._device.sync()

    def elapsed_ms(self, start: Any, end: Any) -> float:
        """Return the GPU time between two completed events in milliseconds."""
        return end - start


def time_calls(
    fn: Callable[[int], object], set_count: int, *, timer: Any, warmup: int, repeats: int
) -> list[float]:
    """Time ``fn(i)`` with a pair of CUDA events around each call.

    Parameters
    ----------
    fn : callable
        Runs the operation on input set ``i`` (asynchronously).
    set_count : int
        Number of input sets; calls rotate over them.
    timer : TorchEventTimer or CudaCoreEventTimer
        Event source.
    warmup : int
        Untimed calls before timing; at least one per input set is made.
    repeats : int
        Timed calls.

    Returns
    -------
    list of float
        Milliseconds of each timed call, in call order.
    """
    for call in range(max(warmup, set_count)):
        fn(call % set_count)
    starts = [timer.new_event() for _ in range(repeats)]
    ends = [timer.new_event() for _ in range(repeats)]
    timer.synchronize()
    for call in range(repeats):
        timer.record(starts[call])
        fn(call % set_count)
        timer.record(ends[call])
    timer.synchronize()
    return [timer.elapsed_ms(start, end) for start, end in zip(starts, ends, strict=True)]


def summarize(samples_ms: Sequence[float], case_flops: int) -> dict[str, Any]:
    """Return the record of a successful measurement.

    Parameters
    ----------
    samples_ms : sequence of float
        Per-call times in milliseconds.
    case_flops : int
        FLOPs of one call.

    Returns
    -------
    dict
        ``status``, ``median_ms``, ``p10_ms``, ``p90_ms``, ``min_ms``, ``runs`` and
        ``tflops`` (from the median).
    """
    p10, median, p90 = (float(value) for value in np.quantile(samples_ms, QUANTILES))
    return {
        "status": STATUS_OK,
        "median_ms": median,
        "p10_ms": p10,
        "p90_ms": p90,
        "min_ms": float(np.min(samples_ms)),
        "runs": len(samples_ms),
        "tflops": case_flops / (median / MS_PER_S) / TERA,
    }


def is_torch_unsupported(exc: BaseException) -> bool:
    """Tell whether PyTorch refused a case (not out of memory, not a CUDA fault)."""
    if not isinstance(exc, (RuntimeError, NotImplementedError)):
        return False
    message = str(exc)
    out_of_memory = type(exc).__name__ == "OutOfMemoryError" or "out of memory" in message
    return not out_of_memory and "CUDA error" not in message


def flash_plan_info(baracuda: Any, descriptor: Any) -> dict[str, Any]:
    """Return the backend and kernel that ``FlashSdpaPlan.select`` picks, or why it refuses."""
    try:
        with baracuda.FlashSdpaPlan.select(descriptor) as plan:
            return {"backend": plan.backend, "sku": plan.sku.name}
    except baracuda.BaracudaError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------------------------
# Report and command line
# ---------------------------------------------------------------------------------


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return right-aligned columns under their headers and a rule of dashes."""
    lines = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(headers))]
    text = [
        TABLE_GAP.join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines
    ]
    text.insert(1, TABLE_GAP.join("-" * width for width in widths))
    return "\n".join(text)


def size(text: str) -> int:
    """``argparse`` type: a positive integer, optionally with a ``k`` (1024) or ``m`` suffix."""
    cleaned = text.strip().lower()
    multiplier = _SIZE_SUFFIXES.get(cleaned[-1:], 1)
    digits = cleaned[:-1] if multiplier != 1 else cleaned
    if not digits.isdigit() or int(digits) == 0:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer such as 4096 or 4k (got {text!r})"
        )
    return int(digits) * multiplier


def count(text: str) -> int:
    """``argparse`` type: a non-negative integer."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a non-negative integer (got {text!r})")
    return int(text)


def size_list(text: str) -> tuple[int, ...]:
    """``argparse`` type: comma-separated :func:`size` values."""
    return tuple(size(item) for item in text.split(","))


def choice_list(choices: Sequence[str], *, noun: str = "name") -> Callable[[str], tuple[str, ...]]:
    """Return an ``argparse`` type: comma-separated names from ``choices``, duplicates dropped.

    Parameters
    ----------
    choices : sequence of str
        The names allowed.
    noun : str
        What a name is, in the message about an unknown one.
    """

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(item.strip() for item in text.split(",")))
        for name in names:
            if name not in choices:
                raise argparse.ArgumentTypeError(
                    f"unknown {noun} {name!r} (expected one of {', '.join(choices)})"
                )
        return names

    return parse


dtype_list = choice_list(ALL_DTYPES, noun="dtype")
"""``argparse`` type: comma-separated dtypes from ``ALL_DTYPES``."""


def seconds(text: str) -> float:
    """``argparse`` type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds (got {text!r})")
    return value


def add_options(parser: argparse.ArgumentParser, options: dict[str, tuple[Any, str]]) -> None:
    """Add ``{option: (type, help)}`` to ``parser``."""
    for option, (kind, text) in options.items():
        parser.add_argument(option, type=kind, help=text)


def add_preset_options(parser: argparse.ArgumentParser, *, quick: str, no_peers: str) -> None:
    """Add ``--quick`` (a preset that explicit options override) and ``--no-peers``."""
    parser.add_argument(
        "--quick", action="store_true", help=f"{quick}; explicit options override it"
    )
    parser.add_argument("--no-peers", action="store_true", help=no_peers)


def describe_preset(preset: dict[str, Any], show: Callable[[Any], str] = str) -> str:
    """Return ``"key value; ..."`` for a preset, tuples comma-joined through ``show``."""
    return "; ".join(
        f"{key.replace('_', ' ')} "
        f"{','.join(map(show, value)) if isinstance(value, tuple) else value}"
        for key, value in preset.items()
    )


def resolve_options(
    args: argparse.Namespace, defaults: dict[str, Any], preset: dict[str, Any]
) -> dict[str, Any]:
    """Return each option of ``defaults``: given, else from ``preset`` (with ``--quick``),
    else the default."""
    chosen = preset if args.quick else {}
    picked = {}
    for name, default in defaults.items():
        value = getattr(args, name)
        picked[name] = value if value is not None else chosen.get(name, default)
    return picked


def result_cells(result: dict[str, Any] | None, *, failed_tflops: str | None = None) -> list[str]:
    """Return a result's median ms and TFLOP/s as table cells: ``-`` for none; where not ok,
    its status and ``failed_tflops`` (default: the status again)."""
    if result is None:
        return ["-", "-"]
    status = result["status"]
    if status != STATUS_OK:
        return [status, status if failed_tflops is None else failed_tflops]
    return [f"{result['median_ms']:.3f}", f"{result['tflops']:.1f}"]


def input_rotation(per: str = "") -> str:
    """Return the JSON description of the input rotation."""
    return f"at least {MIN_INPUT_SETS} random input sets{per}, together over {L2_SPAN}x the L2 size"


def progress_line(index: int, total: int, label: str, text: str, elapsed_s: float) -> str:
    """Return ``[index/total] label: text (N s elapsed)``."""
    return f"[{index}/{total}] {label}: {text} ({elapsed_s:.0f} s elapsed)"
