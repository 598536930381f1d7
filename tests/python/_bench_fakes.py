"""Fakes of the benchmark tests: a device clock, CUDA events on it, numpy arrays, a GPU.

``python -m baracuda bench`` needs a device for its events and arrays; these stand in for
them on a machine without one (``test_bench_cli.py``, ``test_bench_ring_cli.py``).
"""

from __future__ import annotations

import datetime

import numpy as np
from baracuda import _bench_common as common
from baracuda.__main__ import build_parser, with_default_target

FAKE_GPU = common.GpuInfo(
    present=True,
    name="NVIDIA Test GPU 80GB",
    compute_capability="9.0",
    l2_cache_bytes=4 * common.MIBI,
    device_count=1,
    driver_cuda_version="13.0",
)
FIXED_NOW = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def parse(*argv: str):
    """Parse ``python -m baracuda <argv>`` without running it."""
    return build_parser().parse_args(with_default_target(argv))


class FakeClock:
    """A device clock that fake operations advance."""

    def __init__(self) -> None:
        self.now_ms = 0.0


class FakeTimer:
    """Events read the fake clock when recorded; elapsed time is what the calls advanced."""

    method = "fake events"

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.synchronizations = 0

    def new_event(self) -> dict:
        return {}

    def record(self, event: dict) -> None:
        event["ms"] = self.clock.now_ms

    def synchronize(self) -> None:
        self.synchronizations += 1

    def elapsed_ms(self, start: dict, end: dict) -> float:
        return end["ms"] - start["ms"]


class NumpyArrays:
    """Host stand-in for the device array libraries."""

    name = "numpy"
    dtypes = {"f16": np.float16, "f32": np.float32, "f64": np.float64}

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def randn(self, shape, dtype):
        return self.rng.standard_normal(shape).astype(self.dtypes[dtype])

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=self.dtypes[dtype])

    def asarray(self, host):
        return np.array(host)

    def where(self, condition, chosen, other):
        return np.where(condition, chosen, other)

    def release(self) -> None:
        pass


class TorchCpuArrays(common.TorchArrays):
    """PyTorch tensors on the host, for the torch peers' inputs on a machine without a device."""

    name = "torch-cpu"

    def randn(self, shape, dtype):
        return self._torch.randn(shape, dtype=self._dtypes[dtype])

    def empty(self, shape, dtype):
        return self._torch.empty(shape, dtype=self._dtypes[dtype])

    def asarray(self, host):
        return self._torch.as_tensor(host)

    def release(self) -> None:
        pass
