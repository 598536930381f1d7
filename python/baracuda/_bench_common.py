"""What the flash and the ring benchmarks share (``python -m baracuda bench``): the GPU probe,
the document header, random inputs and CUDA-event timing with PyTorch, the statistics, the
option types, the text table and the JSON writer. ``benchmarks/README.md`` describes the
method; ``torch`` and ``cuda.core`` are imported only once a GPU is found.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import platform
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

KIBI, MIBI, GIBI = 1024, 1024**2, 1024**3
ALL_DTYPES = ("bf16", "f16", "f32", "f64")
ITEM_BYTES = {"bf16": 2, "f16": 2, "f32": 4, "f64": 8}
TORCH_DTYPES = {"bf16": "bfloat16", "f16": "float16", "f32": "float32", "f64": "float64"}
DEFAULT_WARMUP = 10
RESULTS_DIR = Path("benchmarks") / "results"
FALLBACK_L2_BYTES = 64 * MIBI
L2_SPAN = 2
MIN_INPUT_SETS, MAX_INPUT_SETS = 3, 64
RANDOM_SEED = 0
QUANTILES = (0.10, 0.50, 0.90)
"""p10, median and p90 of the call times (``numpy.quantile``, linear interpolation)."""
EVENTS = "torch.cuda.Event"
ARRAYS = "torch"

STATUS_OK, STATUS_UNSUPPORTED, STATUS_ERROR, STATUS_SKIPPED = (
    "ok",
    "unsupported",
    "error",
    "skipped",
)
NO_GPU_EXIT, MISSING_DEPENDENCY_EXIT = 0, 1


@dataclasses.dataclass(frozen=True)
class GpuInfo:
    """What the probe found: whether a device is usable (else ``reason``), device 0's name,
    ``"major.minor"`` capability and L2 bytes, the visible devices and the driver's CUDA."""

    present: bool
    reason: str = ""
    name: str = ""
    compute_capability: str = ""
    l2_cache_bytes: int = 0
    device_count: int = 0
    driver_cuda_version: str = ""


def _version(query: Callable[[], Sequence[int]], *, digits: int = 1) -> str | None:
    """Return ``query()``'s parts dotted, those after the first zero-padded to ``digits``
    (``(580, 65, 6)`` as ``"580.65.06"`` with 2); None when the query fails."""
    try:
        first, *rest = query()
    except Exception:  # NVML missing or refusing: the version is unknown
        return None
    return ".".join([str(first), *(f"{part:0{digits}d}" for part in rest)])


def probe_gpu() -> GpuInfo:
    """Describe device 0; the driver is asked first, so ``cuda.core`` needs a device."""
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
        driver_cuda_version=_version(system.get_user_mode_driver_version) or "",
    )


def no_gpu_exit(program: str, gpu: GpuInfo) -> int:
    """Print the one line of a run without GPU and return its exit status."""
    print(f"{program}: no CUDA GPU is present ({gpu.reason}); nothing to time.", file=sys.stderr)
    return NO_GPU_EXIT


def import_torch(program: str, why: str) -> Any:
    """Return ``torch``, or None after saying that ``program`` needs it for ``why``."""
    try:
        import torch
    except ImportError:
        print(f"{program}: needs torch ({why}).", file=sys.stderr)
        return None
    return torch


def document_header(
    schema: str, gpu: GpuInfo, *, baracuda: Any, torch: Any, now: datetime.datetime
) -> dict[str, Any]:
    """Return the fields every results document starts with (``complete`` False until the
    run ends), the versions of everything that shapes the numbers among them."""
    from cuda.core import system

    version = "__version__"
    return {
        "schema": schema,
        "date": now.date().isoformat(),
        "timestamp": now.isoformat(timespec="seconds"),
        "complete": False,
        "gpu": {
            key: value
            for key, value in dataclasses.asdict(gpu).items()
            if key not in ("present", "reason")
        },
        "software": {
            "baracuda": getattr(baracuda, version, None),
            "torch": getattr(torch, version, None),
            "cupy": None,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "nvidia_driver": _version(system.get_kernel_mode_driver_version, digits=2),
            "cuda_runtime": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        },
    }


def default_output_path(gpu_name: str, date: datetime.date, *, target: str) -> Path:
    """Return ``benchmarks/results/<gpu-slug>-<yyyy-mm-dd>-<target>.json`` (relative)."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-") or "unknown-gpu"
    return RESULTS_DIR / f"{slug}-{date.isoformat()}-{target}.json"


def write_json(path: Path, document: dict[str, Any]) -> Path:
    """Write ``document`` as indented JSON, creating the directory; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def sets_to_exceed_l2(set_bytes: int, l2_cache_bytes: int) -> int:
    """Return how many input sets of ``set_bytes`` together exceed :func:`l2_span_bytes`,
    within ``MIN_INPUT_SETS`` and ``MAX_INPUT_SETS``."""
    return min(MAX_INPUT_SETS, max(MIN_INPUT_SETS, l2_span_bytes(l2_cache_bytes) // set_bytes + 1))


def l2_span_bytes(l2_cache_bytes: int) -> int:
    """Return ``L2_SPAN`` L2 caches (``FALLBACK_L2_BYTES`` each for a size of 0: unknown)."""
    return L2_SPAN * (l2_cache_bytes if l2_cache_bytes > 0 else FALLBACK_L2_BYTES)


def input_rotation(per: str = "") -> str:
    """Return the JSON description of the input rotation."""
    return f"at least {MIN_INPUT_SETS} random input sets{per}, together over {L2_SPAN}x the L2 size"


class TorchArrays:
    """Random (standard normal) and uninitialised tensors of a dtype name on ``device``."""

    def __init__(self, torch: Any, *, device: str = "cuda") -> None:
        self.torch, self.device = torch, device
        torch.manual_seed(RANDOM_SEED)

    def dtype(self, name: str) -> Any:
        """Return the ``torch.dtype`` of ``"bf16"``, ``"f16"``, ``"f32"`` or ``"f64"``."""
        return getattr(self.torch, TORCH_DTYPES[name])

    def randn(self, shape: tuple[int, ...], dtype: str) -> Any:
        """Return a tensor of standard normal values."""
        return self.torch.randn(shape, dtype=self.dtype(dtype), device=self.device)

    def empty(self, shape: tuple[int, ...], dtype: str) -> Any:
        """Return an uninitialised tensor."""
        return self.torch.empty(shape, dtype=self.dtype(dtype), device=self.device)

    def release(self) -> None:
        """Return the caching allocator's free blocks to the driver between cases."""
        self.torch.cuda.empty_cache()


def time_calls(
    fn: Callable[[int], object], set_count: int, *, cuda: Any, warmup: int, repeats: int
) -> list[float]:
    """Time ``fn(i)`` (asynchronous, on input set ``i``) with a pair of CUDA events per call.

    Parameters
    ----------
    fn : callable
        The call on input set ``i``; calls rotate over ``set_count`` sets.
    set_count : int
        Number of input sets.
    cuda : module
        ``torch.cuda``: its ``Event(enable_timing=True)`` and ``synchronize()``.
    warmup, repeats : int
        Untimed calls first (at least one per set), then timed calls.

    Returns
    -------
    list of float
        Milliseconds of each timed call, in call order.
    """
    for call in range(max(warmup, set_count)):
        fn(call % set_count)
    events = [
        (cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)) for _ in range(repeats)
    ]
    cuda.synchronize()
    for call, (start, end) in enumerate(events):
        start.record()
        fn(call % set_count)
        end.record()
    cuda.synchronize()
    return [start.elapsed_time(end) for start, end in events]


def attention_flops(batch: int, heads: int, seqlen: int, head_dim: int, *, causal: bool) -> int:
    """Return the forward FLOPs ``4*B*H*S*S*D`` of self-attention over ``seqlen`` positions,
    halved when causal."""
    total = 4 * batch * heads * seqlen * seqlen * head_dim
    return total // 2 if causal else total


def summarize(samples_ms: Sequence[float], flops: int) -> dict[str, Any]:
    """Return the record of a measurement: ``status`` ok, ``median_ms``, ``p10_ms``,
    ``p90_ms``, ``min_ms``, ``runs`` and ``tflops`` (``flops`` per call, at the median)."""
    p10, median, p90 = (float(value) for value in np.quantile(samples_ms, QUANTILES))
    return {
        "status": STATUS_OK,
        "median_ms": median,
        "p10_ms": p10,
        "p90_ms": p90,
        "min_ms": float(np.min(samples_ms)),
        "runs": len(samples_ms),
        "tflops": flops / (median / 1e3) / 1e12,
    }


def failure(status: str, exc: BaseException | str, warned: Sequence[Any] = ()) -> dict[str, Any]:
    """Return ``{"status", "error"}`` of an exception or a reason, with ``warnings`` (the
    distinct messages of ``warned``) where there are any."""
    record: dict[str, Any] = {
        "status": status,
        "error": exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}",
    }
    if warned:
        record["warnings"] = list(dict.fromkeys(str(item.message) for item in warned))
    return record


def is_torch_unsupported(exc: BaseException) -> bool:
    """Tell whether PyTorch refused a case (not out of memory, not a CUDA fault)."""
    message = str(exc)
    out_of_memory = type(exc).__name__ == "OutOfMemoryError" or "out of memory" in message
    refusal = isinstance(exc, (RuntimeError, NotImplementedError))
    return refusal and not out_of_memory and "CUDA error" not in message


def flash_plan_info(baracuda: Any, descriptor: Any) -> dict[str, Any]:
    """Return the backend and kernel that ``FlashSdpaPlan.select`` picks, or why it refuses."""
    try:
        with baracuda.FlashSdpaPlan.select(descriptor) as plan:
            return {"backend": plan.backend, "sku": plan.sku.name}
    except baracuda.BaracudaError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return right-aligned columns under their headers and a rule of dashes."""
    lines = [list(headers), *map(list, rows)]
    widths = [max(map(len, column)) for column in zip(*lines, strict=True)]
    text = ["  ".join(map(str.rjust, line, widths)) for line in lines]
    return "\n".join([text[0], "  ".join("-" * width for width in widths), *text[1:]])


def result_cells(result: dict[str, Any] | None, *, failed_tflops: str | None = None) -> list[str]:
    """Return a result's median ms and TFLOP/s cells: ``-`` for none; where not ok, its
    status and ``failed_tflops`` (default: the status again)."""
    if result is None:
        return ["-", "-"]
    if result["status"] != STATUS_OK:
        return [result["status"], result["status"] if failed_tflops is None else failed_tflops]
    return [f"{result['median_ms']:.3f}", f"{result['tflops']:.1f}"]


def progress_line(index: int, total: int, label: str, text: str, elapsed_s: float) -> str:
    """Return ``[index/total] label: text (N s elapsed)``."""
    return f"[{index}/{total}] {label}: {text} ({elapsed_s:.0f} s elapsed)"


def _option_type(parse: Callable[[str], Any], expected: str) -> Callable[[str], Any]:
    """Return an ``argparse`` type: ``parse`` of the stripped, lower-case text; a usage error
    naming ``expected`` where it raises ValueError or returns None."""

    def option_type(text: str) -> Any:
        try:
            value = parse(text.strip().lower())
        except ValueError:
            value = None
        if value is None:
            raise argparse.ArgumentTypeError(f"expected {expected} (got {text!r})")
        return value

    return option_type


def _size(text: str) -> int | None:
    multiplier = {"k": KIBI, "m": MIBI}.get(text[-1:], 1)
    digits = text[:-1] if multiplier > 1 else text
    return int(digits) * multiplier if digits.isdigit() and int(digits) > 0 else None


size = _option_type(_size, "a positive integer such as 4096 or 4k")
"""``argparse`` type: a positive integer, optionally with a ``k`` (1024) or ``m`` suffix."""
count = _option_type(lambda text: int(text) if text.isdigit() else None, "a non-negative integer")
"""``argparse`` type: a non-negative integer."""
seconds = _option_type(
    lambda text: float(text) if 0 < float(text) < math.inf else None, "a positive number of seconds"
)
"""``argparse`` type: a positive, finite number of seconds."""


def size_list(text: str) -> tuple[int, ...]:
    """``argparse`` type: comma-separated :data:`size` values."""
    return tuple(size(item) for item in text.split(","))


def choice_list(choices: Sequence[str], *, noun: str = "name") -> Callable[[str], tuple[str, ...]]:
    """Return an ``argparse`` type: comma-separated names from ``choices``, duplicates dropped
    (``noun`` says what they are in the message about an unknown one)."""

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(item.strip() for item in text.split(",")))
        for name in names:
            if name not in choices:
                expected = ", ".join(choices)
                message = f"unknown {noun} {name!r} (expected one of {expected})"
                raise argparse.ArgumentTypeError(message)
        return names

    return parse


def add_options(
    parser: argparse.ArgumentParser,
    options: dict[str, tuple[Any, str]],
    *,
    target: str,
    defaults: dict[str, str],
    quick: str,
    no_peers: str,
) -> None:
    """Add ``{option: (type or tuple of choices, help)}`` to ``parser`` after ``--dtypes``,
    then ``--warmup``, ``--repeats`` and ``--out`` (``defaults`` describes the first three),
    ``--quick`` (a preset, described by ``quick``, that explicit options override) and
    ``--no-peers``."""
    dtypes = f"comma-separated dtypes from {','.join(ALL_DTYPES)} (default {defaults['dtypes']})"
    options = {
        "--dtypes": (choice_list(ALL_DTYPES, noun="dtype"), dtypes),
        **options,
        "--warmup": (count, f"untimed calls per measurement (default {defaults['warmup']})"),
        "--repeats": (size, f"timed calls per measurement (default {defaults['repeats']})"),
        "--out": (
            Path,
            f"JSON output path (default {RESULTS_DIR}/<gpu>-<yyyy-mm-dd>-{target}.json)",
        ),
    }
    for option, (kind, text) in options.items():
        how = {"choices" if isinstance(kind, tuple) else "type": kind}
        parser.add_argument(option, help=text, **how)
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


def resolve(args: argparse.Namespace, config: type, preset: dict[str, Any], **fixed: Any) -> Any:
    """Return the dataclass ``config`` of the options given, else of ``preset`` (with
    ``--quick``), else of its defaults; the ``fixed`` fields as given."""
    given = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(config)
        if getattr(args, field.name, None) is not None and field.name not in fixed
    }
    return config(**{**(preset if args.quick else {}), **given, **fixed})
