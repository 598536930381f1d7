"""Benchmark harness for :func:`baracuda.flash_attention` (``python -m baracuda bench``).

The harness times the forward pass over a grid of problems and, where PyTorch is
installed, times the implementations a user would otherwise pick in the same run:
``torch.nn.functional.scaled_dot_product_attention`` forced to its FlashAttention
backend and to its cuDNN backend.

Method
------
- The grid keeps the number of tokens ``B * S`` and the model width ``H * D`` fixed
  (16k tokens and 2048 by default), so every case moves the same amount of Q/K/V data
  and the work grows linearly with the sequence length.
- Every call is timed with a pair of CUDA events recorded on the legacy default
  stream around it, after a warm-up whose first call selects (and caches) the plan.
  The median of the runs is the result; p10, p90 and the minimum are recorded too.
- Calls rotate over several sets of random inputs (``randn``, never zeros) whose
  total size exceeds twice the L2 cache, so no call finds its inputs in L2.
- baracuda writes into preallocated outputs (``out=``); the PyTorch peers allocate
  their outputs through PyTorch's caching allocator, as users of them do.
- FLOPs are ``4 * B * H * Sq * Sk * D`` for the forward pass, halved when causal.

The module imports ``baracuda``, ``torch``, ``cupy`` and ``cuda.core`` only when a
benchmark actually runs, after the GPU probe has found a device.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import importlib
import json
import math
import platform
import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

SCHEMA = "baracuda-bench-flash/1"

ALL_DTYPES = ("bf16", "f16", "f32", "f64")
DEFAULT_DTYPES = ("bf16", "f16", "f32")
DEFAULT_HEAD_DIMS = (64, 128, 256)
DEFAULT_SEQLENS = (512, 1024, 2048, 4096, 8192, 16384)
DEFAULT_TOKENS = 16 * 1024
MODEL_WIDTH = 2048
DEFAULT_WARMUP = 10
DEFAULT_REPEATS = 100
CAUSAL_CHOICES = {"both": (False, True), "no": (False,), "yes": (True,)}
LAYOUTS = ("bshd", "bhsd")
DEFAULT_LAYOUT = "bshd"

QUICK_PRESET = {
    "dtypes": ("bf16",),
    "head_dims": (64, 128),
    "seqlens": (1024, 4096),
    "warmup": 3,
    "repeats": 20,
}

RESULTS_DIR = Path("benchmarks") / "results"
KIBI = 1024
MIBI = 1024 * 1024
FALLBACK_L2_BYTES = 64 * MIBI
L2_SPAN = 2
MIN_INPUT_SETS = 3
MAX_INPUT_SETS = 64
TENSORS_PER_SET = 4
RANDOM_SEED = 0
TERA = 1e12
MS_PER_S = 1e3
P10 = 0.10
MEDIAN = 0.50
P90 = 0.90

STATUS_OK = "ok"
STATUS_UNSUPPORTED = "unsupported"
STATUS_ERROR = "error"
STATUS_SKIPPED = "skipped"

NO_GPU_EXIT = 0
MISSING_DEPENDENCY_EXIT = 1


class HarnessUnsupportedError(Exception):
    """The harness cannot build inputs for a case with the array library at hand."""


# ---------------------------------------------------------------------------------
# GPU probe (ctypes on the driver library: needs neither torch nor a working driver)
# ---------------------------------------------------------------------------------

_DRIVER_LIBRARY_NAMES = ("libcuda.so.1", "libcuda.so", "nvcuda.dll")
_CUDA_SUCCESS = 0
_CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE = 38
_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
_DEVICE_NAME_CAPACITY = 256
_DRIVER_VERSION_MAJOR = 1000
_DRIVER_VERSION_MINOR = 10
_NVIDIA_PROC_VERSION = Path("/proc/driver/nvidia/version")


@dataclass(frozen=True)
class GpuInfo:
    """What the GPU probe found.

    Attributes
    ----------
    present : bool
        True when at least one CUDA device is usable.
    reason : str
        Why no device is usable (empty when ``present``).
    name : str
        Name of device 0.
    compute_capability : str
        ``"major.minor"`` of device 0.
    l2_cache_bytes : int
        L2 cache size of device 0 in bytes.
    device_count : int
        Number of visible CUDA devices.
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


def _load_driver() -> ctypes.CDLL | None:
    for library_name in _DRIVER_LIBRARY_NAMES:
        try:
            return ctypes.CDLL(library_name)
        except OSError:
            continue
    return None


def _driver_error(driver: ctypes.CDLL, status: int) -> str:
    text = ctypes.c_char_p()
    if driver.cuGetErrorString(status, ctypes.byref(text)) == _CUDA_SUCCESS and text.value:
        return f"{text.value.decode()} (CUresult {status})"
    return f"CUresult {status}"


def probe_gpu() -> GpuInfo:
    """Find out whether a CUDA GPU is usable, through the driver library alone.

    Returns
    -------
    GpuInfo
        ``present=False`` with a reason when the driver library is missing, fails
        to initialise or reports no device.
    """
    driver = _load_driver()
    if driver is None:
        return GpuInfo(present=False, reason="the CUDA driver library (libcuda) is not installed")
    status = driver.cuInit(0)
    if status != _CUDA_SUCCESS:
        return GpuInfo(present=False, reason=f"cuInit failed: {_driver_error(driver, status)}")
    count = ctypes.c_int(0)
    status = driver.cuDeviceGetCount(ctypes.byref(count))
    if status != _CUDA_SUCCESS or count.value == 0:
        return GpuInfo(present=False, reason="the CUDA driver reports no device")

    device = ctypes.c_int(0)
    driver.cuDeviceGet(ctypes.byref(device), 0)
    name = ctypes.create_string_buffer(_DEVICE_NAME_CAPACITY)
    driver.cuDeviceGetName(name, _DEVICE_NAME_CAPACITY, device)

    def attribute(code: int) -> int:
        value = ctypes.c_int(0)
        driver.cuDeviceGetAttribute(ctypes.byref(value), code, device)
        return value.value

    version = ctypes.c_int(0)
    driver.cuDriverGetVersion(ctypes.byref(version))
    major = attribute(_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
    minor = attribute(_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
    return GpuInfo(
        present=True,
        name=name.value.decode(errors="replace"),
        compute_capability=f"{major}.{minor}",
        l2_cache_bytes=attribute(_CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE),
        device_count=count.value,
        driver_cuda_version=(
            f"{version.value // _DRIVER_VERSION_MAJOR}."
            f"{version.value % _DRIVER_VERSION_MAJOR // _DRIVER_VERSION_MINOR}"
        ),
    )


def nvidia_driver_version() -> str | None:
    """Return the NVIDIA kernel driver version (e.g. ``"580.65.06"``), if Linux reports it."""
    try:
        text = _NVIDIA_PROC_VERSION.read_text()
    except OSError:
        return None
    return driver_version_of(text)


def driver_version_of(text: str) -> str | None:
    """The version in the text of ``/proc/driver/nvidia/version``, such as
    ``NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build ...``."""
    match = re.search(r"Kernel Module\b.*?\s(\d+(?:\.\d+)+)\s", text)
    return match.group(1) if match else None


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
        return (
            f"{self.dtype} D={self.head_dim} H={self.heads} B={self.batch} S={self.seqlen} {mask}"
        )


CASE_FIELDS = ("dtype", "head_dim", "heads", "batch", "seqlen", "causal")


def case_of(record: dict[str, Any]) -> Case:
    """Return the case a JSON case record describes."""
    return Case(**{key: record[key] for key in CASE_FIELDS})


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
    warmup: int = DEFAULT_WARMUP
    repeats: int = DEFAULT_REPEATS
    peers: bool = True
    out: Path | None = None


def heads_for(head_dim: int, model_width: int = MODEL_WIDTH) -> int:
    """Return the number of heads that keeps ``H * D`` at ``model_width`` (at least 1)."""
    return max(1, model_width // head_dim)


def batch_for(seqlen: int, tokens: int = DEFAULT_TOKENS) -> int:
    """Return the batch size that keeps ``B * S`` at ``tokens`` (at least 1)."""
    return max(1, tokens // seqlen)


def case_grid(config: BenchConfig) -> list[Case]:
    """Expand a configuration into its cases, in the order they run.

    Parameters
    ----------
    config : BenchConfig
        The grid axes.

    Returns
    -------
    list of Case
        One case per (dtype, head dim, sequence length, causal) combination.
    """
    return [
        Case(
            dtype=dtype,
            head_dim=head_dim,
            heads=heads_for(head_dim, config.model_width),
            batch=batch_for(seqlen, config.tokens),
            seqlen=seqlen,
            causal=causal,
        )
        for dtype in config.dtypes
        for head_dim in config.head_dims
        for seqlen in config.seqlens
        for causal in config.causal
    ]


def flops(case: Case) -> int:
    """Return the forward-pass FLOPs of a case: ``4*B*H*Sq*Sk*D``, halved when causal.

    Parameters
    ----------
    case : Case
        The problem.

    Returns
    -------
    int
        Two matrix products of ``2*B*H*Sq*Sk*D`` FLOPs each; a causal mask skips half.
    """
    total = 4 * case.batch * case.heads * case.seqlen * case.seqlen * case.head_dim
    return total // 2 if case.causal else total


# ---------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------

_ITEM_BYTES = {"bf16": 2, "f16": 2, "f32": 4, "f64": 8}


def input_set_bytes(case: Case) -> int:
    """Return the bytes of one input set: Q, K, V and the output, all ``B*H*S*D``."""
    elements = case.batch * case.heads * case.seqlen * case.head_dim
    return TENSORS_PER_SET * elements * _ITEM_BYTES[case.dtype]


def input_set_count(case: Case, l2_cache_bytes: int) -> int:
    """Return how many input sets to rotate so that together they exceed ``L2_SPAN`` L2 caches.

    Parameters
    ----------
    case : Case
        The problem.
    l2_cache_bytes : int
        L2 size of the device; 0 or less means unknown (``FALLBACK_L2_BYTES`` is used).

    Returns
    -------
    int
        Between ``MIN_INPUT_SETS`` and ``MAX_INPUT_SETS``.
    """
    return sets_to_exceed_l2(input_set_bytes(case), l2_cache_bytes)


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
    l2 = l2_cache_bytes if l2_cache_bytes > 0 else FALLBACK_L2_BYTES
    needed = L2_SPAN * l2 // set_bytes + 1
    return min(MAX_INPUT_SETS, max(MIN_INPUT_SETS, needed))


@dataclass(frozen=True)
class InputSet:
    """Q, K, V and a preallocated output, each a ``[B, H, S, D]`` (possibly strided) view."""

    q: Any
    k: Any
    v: Any
    out: Any


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
        """Return an array of standard normal values."""
        target = self._dtype(dtype)
        sample_dtype = self._cupy.float64 if target == self._cupy.float64 else self._cupy.float32
        return self._cupy.random.standard_normal(shape, dtype=sample_dtype).astype(target)

    def empty(self, shape: tuple[int, ...], dtype: str) -> Any:
        """Return an uninitialised array."""
        return self._cupy.empty(shape, dtype=self._dtype(dtype))

    def release(self) -> None:
        """Return pooled blocks to the driver between cases."""
        self._cupy.get_default_memory_pool().free_all_blocks()


def make_inputs(
    case: Case, count: int, arrays: Any, *, layout: str = DEFAULT_LAYOUT
) -> list[InputSet]:
    """Allocate ``count`` independent sets of random Q/K/V and an output for each.

    Parameters
    ----------
    case : Case
        The problem.
    count : int
        Number of sets to rotate over.
    arrays : TorchArrays or CupyArrays
        The array library (anything with ``randn``, ``empty`` whose results have
        ``swapaxes``).
    layout : {"bshd", "bhsd"}
        ``"bshd"`` stores each tensor as ``[B, S, H, D]`` and passes the
        ``[B, H, S, D]`` view (the layout a projection produces); ``"bhsd"`` stores
        ``[B, H, S, D]`` contiguously.

    Returns
    -------
    list of InputSet
    """

    bhsd = (case.batch, case.heads, case.seqlen, case.head_dim)
    bshd = (case.batch, case.seqlen, case.heads, case.head_dim)

    def tensor(make: Callable[[tuple[int, ...], str], Any]) -> Any:
        if layout == "bshd":
            return make(bshd, case.dtype).swapaxes(1, 2)
        return make(bhsd, case.dtype)

    return [
        InputSet(
            q=tensor(arrays.randn),
            k=tensor(arrays.randn),
            v=tensor(arrays.randn),
            out=tensor(arrays.empty),
        )
        for _ in range(count)
    ]


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
        self._options = _timing_event_options(cuda_core)

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


def _timing_event_options(cuda_core: Any) -> Any:
    """Return ``EventOptions`` with timing on (the field was renamed across cuda.core releases)."""
    try:
        return cuda_core.EventOptions(timing_enabled=True)
    except TypeError:
        return cuda_core.EventOptions(enable_timing=True)


def time_fn(
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


def percentile(sorted_samples: Sequence[float], fraction: float) -> float:
    """Return the ``fraction`` quantile of sorted samples, interpolating linearly."""
    position = fraction * (len(sorted_samples) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_samples) - 1)
    weight = position - lower
    return sorted_samples[lower] * (1.0 - weight) + sorted_samples[upper] * weight


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
    ordered = sorted(samples_ms)
    median = percentile(ordered, MEDIAN)
    return {
        "status": STATUS_OK,
        "median_ms": median,
        "p10_ms": percentile(ordered, P10),
        "p90_ms": percentile(ordered, P90),
        "min_ms": ordered[0],
        "runs": len(ordered),
        "tflops": case_flops / (median / MS_PER_S) / TERA,
    }


# ---------------------------------------------------------------------------------
# Implementations under test
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Implementation:
    """An attention implementation the harness times.

    Attributes
    ----------
    name : str
        Key in the JSON results (``"baracuda"``, ``"torch_flash"``, ``"torch_cudnn"``).
    label : str
        Column heading in the table.
    bind : callable
        ``bind(case, sets)`` returns ``fn(i)`` that runs the case on input set ``i``.
    is_peer : bool
        True for the implementations baracuda is compared against.
    is_unsupported : callable
        ``is_unsupported(exc)`` tells whether an exception from the first call means
        the implementation does not support the case (rather than a failure).
    context : callable
        Returns the context manager the calls run in.
    """

    name: str
    label: str
    bind: Callable[[Case, list[InputSet]], Callable[[int], object]]
    is_peer: bool
    is_unsupported: Callable[[BaseException], bool]
    context: Callable[[], AbstractContextManager[Any]] = field(default=contextlib.nullcontext)


def baracuda_implementation(baracuda: Any) -> Implementation:
    """Return :func:`baracuda.flash_attention` with preallocated outputs."""

    def bind(case: Case, sets: list[InputSet]) -> Callable[[int], object]:
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


def _is_torch_unsupported(exc: BaseException) -> bool:
    """Tell whether a PyTorch SDPA backend refused a case on its first call."""
    if not isinstance(exc, (RuntimeError, NotImplementedError)):
        return False
    message = str(exc)
    out_of_memory = type(exc).__name__ == "OutOfMemoryError" or "out of memory" in message
    return not out_of_memory and "CUDA error" not in message


def torch_sdpa_implementations(torch: Any) -> list[Implementation]:
    """Return PyTorch SDPA forced to its FlashAttention and to its cuDNN backend.

    Returns an empty list when this PyTorch lacks ``torch.nn.attention.sdpa_kernel``.
    """
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        return []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def bind(case: Case, sets: list[InputSet]) -> Callable[[int], object]:
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
            is_unsupported=_is_torch_unsupported,
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
    sets: list[InputSet],
    *,
    timer: Any,
    warmup: int,
    repeats: int,
) -> dict[str, Any]:
    """Time one implementation on one case; a failure is recorded, never raised.

    The first call runs alone and is synchronised: it selects the plan or the
    backend, and an exception there is classified as ``"unsupported"`` or
    ``"error"``. An exception while timing is an ``"error"``.

    Returns
    -------
    dict
        :func:`summarize`'s record, or ``{"status", "error"[, "warnings"]}``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with implementation.context():
            try:
                fn = implementation.bind(case, sets)
                fn(0)
                timer.synchronize()
            except Exception as exc:
                status = STATUS_UNSUPPORTED if implementation.is_unsupported(exc) else STATUS_ERROR
                return _failure(status, exc, caught)
            try:
                samples = time_fn(fn, len(sets), timer=timer, warmup=warmup, repeats=repeats)
            except Exception as exc:
                return _failure(STATUS_ERROR, exc, caught)
    return summarize(samples, flops(case))


def baracuda_plan_info(baracuda: Any, case: Case) -> dict[str, Any]:
    """Return the backend and kernel SKU that baracuda's plan selection picks for a case."""
    descriptor = baracuda.FlashSdpaDescriptor(
        batch_size=case.batch,
        num_heads=case.heads,
        query_len=case.seqlen,
        key_len=case.seqlen,
        d_k=case.head_dim,
        is_causal=case.causal,
        element=case.dtype,
    )
    return flash_plan_info(baracuda, descriptor)


def flash_plan_info(baracuda: Any, descriptor: Any) -> dict[str, Any]:
    """The backend and kernel that ``FlashSdpaPlan.select`` picks, or why it refuses."""
    try:
        with baracuda.FlashSdpaPlan.select(descriptor) as plan:
            return {"backend": plan.backend, "sku": plan.sku.name}
    except baracuda.BaracudaError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def speedup_vs_best_peer(
    results: dict[str, dict[str, Any]], implementations: Sequence[Implementation]
) -> tuple[str | None, float | None]:
    """Return the fastest peer and ``peer median / baracuda median`` (above 1: baracuda is faster).

    Returns ``(None, None)`` when baracuda or every peer failed the case.
    """
    ours = results.get("baracuda", {})
    timed_peers = [
        (results[item.name]["median_ms"], item.name)
        for item in implementations
        if item.is_peer and results.get(item.name, {}).get("status") == STATUS_OK
    ]
    if ours.get("status") != STATUS_OK or not timed_peers:
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
    record: dict[str, Any] = {
        **{key: getattr(case, key) for key in CASE_FIELDS},
        "flops": flops(case),
        "input_sets": set_count,
    }
    if plan_info is not None:
        record["baracuda_plan"] = plan_info(case)
    try:
        sets = make_inputs(case, set_count, arrays, layout=config.layout)
    except HarnessUnsupportedError as exc:
        skipped = {"status": STATUS_SKIPPED, "error": str(exc)}
        record["results"] = {item.name: dict(skipped) for item in implementations}
        record["best_peer"], record["speedup_vs_best_peer"] = None, None
        return record
    results = {
        item.name: measure(
            item, case, sets, timer=timer, warmup=config.warmup, repeats=config.repeats
        )
        for item in implementations
    }
    del sets
    arrays.release()
    record["results"] = results
    record["best_peer"], record["speedup_vs_best_peer"] = speedup_vs_best_peer(
        results, implementations
    )
    return record


# ---------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------


def gpu_slug(name: str) -> str:
    """Return a GPU name as a file-name part.

    ``"NVIDIA H100 80GB HBM3"`` becomes ``"nvidia-h100-80gb-hbm3"``.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "unknown-gpu"


def default_output_path(gpu_name: str, date: datetime.date, *, target: str = "flash") -> Path:
    """Return ``benchmarks/results/<gpu-slug>-<yyyy-mm-dd>-<target>.json`` (a relative path)."""
    return RESULTS_DIR / f"{gpu_slug(gpu_name)}-{date.isoformat()}-{target}.json"


def _cell(result: dict[str, Any] | None) -> tuple[str, str]:
    if result is None:
        return "-", "-"
    if result["status"] == STATUS_OK:
        return f"{result['median_ms']:.3f}", f"{result['tflops']:.1f}"
    return result["status"], ""


def format_table(document: dict[str, Any]) -> str:
    """Return the results as a fixed-width text table, one row per case.

    Times are medians in milliseconds; ``speedup`` is the best peer's median over
    baracuda's (above 1: baracuda is faster).
    """
    implementations = document["implementations"]
    headers = ["dtype", "D", "H", "B", "S", "causal"]
    for item in implementations:
        headers += [f"{item['label']} ms", "TFLOP/s"]
    has_peers = any(item["peer"] for item in implementations)
    if has_peers:
        headers.append("speedup")
    rows = []
    for case in document["cases"]:
        row = [
            case["dtype"],
            str(case["head_dim"]),
            str(case["heads"]),
            str(case["batch"]),
            str(case["seqlen"]),
            "yes" if case["causal"] else "no",
        ]
        for item in implementations:
            row += list(_cell(case["results"].get(item["name"])))
        if has_peers:
            speedup = case["speedup_vs_best_peer"]
            row.append("-" if speedup is None else f"{speedup:.2f}x")
        rows.append(row)
    widths = [max(len(line[column]) for line in [headers, *rows]) for column in range(len(headers))]
    lines = [
        "  ".join(text.rjust(width) for text, width in zip(line, widths, strict=True))
        for line in [headers, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def print_table(document: dict[str, Any], stream: TextIO = sys.stdout) -> None:
    """Print :func:`format_table` and the failures' messages."""
    print(format_table(document), file=stream)
    for case in document["cases"]:
        for name, result in case["results"].items():
            if result["status"] in (STATUS_ERROR, STATUS_SKIPPED):
                label = case_of(case).label()
                print(f"{name} {result['status']} on {label}: {result['error']}", file=stream)


def write_json(path: Path, document: dict[str, Any]) -> Path:
    """Write the results document as indented JSON, creating the directory.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def _module_version(module: Any) -> str | None:
    return getattr(module, "__version__", None) if module is not None else None


def software_versions(*, baracuda: Any, torch: Any = None, cupy: Any = None) -> dict[str, Any]:
    """Return the versions of everything that shapes the numbers."""
    versions: dict[str, Any] = {
        "baracuda": _module_version(baracuda),
        "torch": _module_version(torch),
        "cupy": _module_version(cupy),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "nvidia_driver": nvidia_driver_version(),
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
    schema: str, gpu: GpuInfo, software: dict[str, Any], now: datetime.datetime
) -> dict[str, Any]:
    """The fields every benchmark document starts with: schema, date, completeness (False
    until the run ends), the GPU and the software."""
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


def build_document(
    config: BenchConfig,
    gpu: GpuInfo,
    *,
    software: dict[str, Any],
    timer_method: str,
    arrays_name: str,
    implementations: Sequence[Implementation],
    now: datetime.datetime,
) -> dict[str, Any]:
    """Return the JSON document's metadata with an empty ``cases`` list."""
    return {
        **document_header(SCHEMA, gpu, software, now),
        "timing": {
            "method": "CUDA events around each call on the legacy default stream",
            "events": timer_method,
            "arrays": arrays_name,
            "warmup": config.warmup,
            "repeats": config.repeats,
            "statistic": "median; p10, p90 and min also recorded",
            "input_rotation": (
                f"at least {MIN_INPUT_SETS} random input sets, together over {L2_SPAN}x the L2 size"
            ),
            "outputs": "baracuda: preallocated out=; torch peers: allocated by the call",
        },
        "grid": {
            "dtypes": list(config.dtypes),
            "head_dims": list(config.head_dims),
            "seqlens": list(config.seqlens),
            "causal": list(config.causal),
            "tokens": config.tokens,
            "model_width": config.model_width,
            "layout": config.layout,
            "flops": "4*B*H*Sq*Sk*D, halved when causal",
        },
        "implementations": [
            {"name": item.name, "label": item.label, "peer": item.is_peer}
            for item in implementations
        ],
        "cases": [],
    }


def _progress_line(
    index: int, total: int, case: Case, record: dict[str, Any], elapsed_s: float
) -> str:
    results = []
    for name, result in record["results"].items():
        text = (
            f"{result['median_ms']:.3f} ms" if result["status"] == STATUS_OK else result["status"]
        )
        results.append(f"{name} {text}")
    return f"[{index}/{total}] {case.label()}: {', '.join(results)} ({elapsed_s:.0f} s elapsed)"


def run_benchmark(
    config: BenchConfig,
    document: dict[str, Any],
    implementations: Sequence[Implementation],
    *,
    arrays: Any,
    timer: Any,
    l2_cache_bytes: int,
    plan_info: Callable[[Case], dict[str, Any]] | None = None,
    progress: TextIO = sys.stderr,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Run every case of the grid, appending records to ``document["cases"]``.

    An interrupt (Ctrl-C) stops the run and keeps the cases measured so far;
    ``document["complete"]`` tells whether the grid finished.

    Returns
    -------
    dict
        ``document``, filled in.
    """
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
            print(
                _progress_line(index, len(cases), case, record, clock() - started),
                file=progress,
                flush=True,
            )
    except KeyboardInterrupt:
        print(f"interrupted after {len(document['cases'])} of {len(cases)} cases", file=progress)
        return document
    document["complete"] = True
    return document


# ---------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------

_SIZE_SUFFIXES = {"k": KIBI, "m": MIBI}


def parse_size(text: str) -> int:
    """Parse a positive integer, optionally with a ``k`` (1024) or ``m`` (1024**2) suffix."""
    cleaned = text.strip().lower()
    multiplier = _SIZE_SUFFIXES.get(cleaned[-1:], 1)
    digits = cleaned[:-1] if multiplier != 1 else cleaned
    if not digits.isdigit() or int(digits) == 0:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer such as 4096 or 4k (got {text!r})"
        )
    return int(digits) * multiplier


def parse_size_list(text: str) -> tuple[int, ...]:
    """Parse a comma-separated list of :func:`parse_size` values."""
    return tuple(parse_size(item) for item in text.split(","))


def parse_dtype_list(text: str) -> tuple[str, ...]:
    """Parse a comma-separated list of dtype names from ``ALL_DTYPES``."""
    names = tuple(item.strip() for item in text.split(","))
    for name in names:
        if name not in ALL_DTYPES:
            raise argparse.ArgumentTypeError(
                f"unknown dtype {name!r} (expected one of {', '.join(ALL_DTYPES)})"
            )
    return names


def parse_count(text: str) -> int:
    """Parse a non-negative integer."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a non-negative integer (got {text!r})")
    return int(text)


def _describe_quick_preset() -> str:
    def text(value: Any) -> str:
        return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)

    return "; ".join(
        f"{key.replace('_', ' ')} {text(value)}" for key, value in QUICK_PRESET.items()
    )


def add_flash_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``python -m baracuda bench flash`` to ``parser``."""
    parser.add_argument(
        "--dtypes",
        type=parse_dtype_list,
        help=(
            f"comma-separated dtypes from {','.join(ALL_DTYPES)} "
            f"(default {','.join(DEFAULT_DTYPES)})"
        ),
    )
    parser.add_argument(
        "--head-dims",
        type=parse_size_list,
        help=f"comma-separated head dims (default {','.join(map(str, DEFAULT_HEAD_DIMS))})",
    )
    parser.add_argument(
        "--seqlens",
        type=parse_size_list,
        help="comma-separated sequence lengths, k suffix allowed (default 512,1k,2k,4k,8k,16k)",
    )
    parser.add_argument(
        "--causal",
        choices=tuple(CAUSAL_CHOICES),
        default="both",
        help="causal cases, non-causal cases or both (default both)",
    )
    parser.add_argument(
        "--tokens",
        type=parse_size,
        help=f"tokens per call, B*S; the batch is tokens // S (default {DEFAULT_TOKENS // KIBI}k)",
    )
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default=DEFAULT_LAYOUT,
        help=(
            "memory layout of Q/K/V/out: [B,S,H,D] passed as a [B,H,S,D] view, "
            "or [B,H,S,D] (default bshd)"
        ),
    )
    parser.add_argument(
        "--warmup",
        type=parse_count,
        help=f"untimed calls per measurement (default {DEFAULT_WARMUP})",
    )
    parser.add_argument(
        "--repeats",
        type=parse_size,
        help=f"timed calls per measurement (default {DEFAULT_REPEATS})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="JSON output path (default benchmarks/results/<gpu>-<yyyy-mm-dd>-flash.json)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=(
            f"a small grid for a smoke run ({_describe_quick_preset()}); "
            "explicit options override it"
        ),
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="time baracuda only, not PyTorch SDPA"
    )


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
        warmup=pick("warmup", DEFAULT_WARMUP),
        repeats=pick("repeats", DEFAULT_REPEATS),
        peers=not args.no_peers,
        out=args.out,
    )


def _optional_import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def run_flash(args: argparse.Namespace) -> int:
    """Entry point of ``python -m baracuda bench flash``.

    Returns
    -------
    int
        Exit status: 0 after a run or when no GPU is present, 1 when a required
        package is missing.
    """
    config = resolve_config(args)
    gpu = probe_gpu()
    if not gpu.present:
        print(
            f"baracuda bench: no CUDA GPU is present ({gpu.reason}); nothing to time.",
            file=sys.stderr,
        )
        return NO_GPU_EXIT

    torch = _optional_import("torch")
    cupy = _optional_import("cupy") if torch is None else None
    cuda_core = _optional_import("cuda.core") if torch is None else None
    if torch is None and (cupy is None or cuda_core is None):
        print(
            "baracuda bench: needs torch, or cupy and cuda-core, to allocate inputs and time them.",
            file=sys.stderr,
        )
        return MISSING_DEPENDENCY_EXIT

    import baracuda

    arrays = TorchArrays(torch) if torch is not None else CupyArrays(cupy)
    timer = TorchEventTimer(torch) if torch is not None else CudaCoreEventTimer(cuda_core)
    implementations = [baracuda_implementation(baracuda)]
    if config.peers and torch is not None:
        implementations += torch_sdpa_implementations(torch)

    now = datetime.datetime.now().astimezone()
    document = build_document(
        config,
        gpu,
        software=software_versions(baracuda=baracuda, torch=torch, cupy=cupy),
        timer_method=timer.method,
        arrays_name=arrays.name,
        implementations=implementations,
        now=now,
    )
    print(f"baracuda bench: {len(case_grid(config))} cases on {gpu.name}", file=sys.stderr)
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
    path = write_json(config.out or default_output_path(gpu.name, now.date()), document)
    print(f"results written to {path}")
    return 0
