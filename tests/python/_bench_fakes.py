"""Fakes of the benchmark tests (``test_bench_cli.py``, ``test_bench_ring_cli.py``): a GPU, a
PyTorch, ``torch.cuda`` events on a clock that the fake calls advance, tensors on the host."""

from __future__ import annotations

import datetime
import json
import types
from pathlib import Path

import pytest
from baracuda import _bench_common as common
from baracuda.__main__ import build_parser, with_default_target

RESULTS = Path(__file__).parents[2] / "benchmarks" / "results"
FAKE_GPU = common.GpuInfo(True, "", "NVIDIA Test GPU 80GB", "9.0", 4 * common.MIBI, 1, "13.0")
FIXED_NOW = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
FAKE_TORCH = types.SimpleNamespace(
    __version__="0.0-fake",
    version=types.SimpleNamespace(cuda="13.0"),
    backends=types.SimpleNamespace(cudnn=types.SimpleNamespace(version=lambda: 91000)),
    cuda=types.SimpleNamespace(nccl=types.SimpleNamespace(version=lambda: (2, 28, 3))),
)


class FakeUnsupportedError(Exception):
    """The fake ``baracuda.UnsupportedError``."""


def recorded(name: str) -> dict:
    """The recorded results document ``benchmarks/results/<name>.json``."""
    return json.loads((RESULTS / f"{name}.json").read_text())


def parse(*argv: str):
    """Parse ``python -m baracuda <argv>`` without running it."""
    return build_parser().parse_args(with_default_target(argv))


def header(schema: str, *, baracuda=None) -> dict:
    """The document header of a run on the fake GPU and the fake PyTorch."""
    return common.document_header(
        schema, FAKE_GPU, baracuda=baracuda, torch=FAKE_TORCH, now=FIXED_NOW
    )


class FakeCuda:
    """``torch.cuda``: an event records the clock ``now_ms``, which the fake calls advance."""

    def __init__(self) -> None:
        self.now_ms = 0.0
        self.synchronizations = 0

    def Event(self, *, enable_timing):  # noqa: N802 (torch.cuda's name)
        cuda = self

        class Event:
            def record(self):
                self.ms = cuda.now_ms

            def elapsed_time(self, end):
                return end.ms - self.ms

        return Event()

    def synchronize(self) -> None:
        self.synchronizations += 1


def cpu_arrays() -> common.TorchArrays:
    """PyTorch tensors on the host (the test skips without torch)."""
    return common.TorchArrays(pytest.importorskip("torch"), device="cpu")
