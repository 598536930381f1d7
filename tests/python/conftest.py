"""Shared pytest configuration: the ``gpu`` marker, device detection and common fixtures."""

import functools
import importlib
import warnings
import zlib

import numpy as np
import pytest

GPU_MARKER = "gpu"


@functools.cache
def cuda_unavailable_reason():
    """Why GPU tests cannot run here, or ``None`` when a CUDA device is usable.

    Returns
    -------
    str or None
        A sentence naming what is missing (torch, or a usable CUDA device).

    Notes
    -----
    ``torch.cuda.is_available()`` returns ``False`` on a machine with no driver rather than
    raising; the warning it may emit there is silenced, and any other failure while probing
    is reported as the reason instead of crashing collection.
    """
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return "GPU tests need torch, which is not installed"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            available = torch.cuda.is_available() and torch.cuda.device_count() > 0
    except Exception as error:  # a broken driver installation must not abort collection
        return f"GPU tests need a usable CUDA device (probing it failed: {error})"
    if not available:
        return "GPU tests need a usable CUDA device (torch.cuda.is_available() is False)"
    return None


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"{GPU_MARKER}: needs a CUDA device and torch; skipped with the reason when absent",
    )


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if item.get_closest_marker(GPU_MARKER) is not None]
    if not gpu_items:
        return
    reason = cuda_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture
def torch():
    """The ``torch`` module; the test is skipped when torch is not installed."""
    return pytest.importorskip("torch")


# The variables through which launchers (torchrun, Open MPI, MPICH, Slurm, torch elastic) and
# baracuda's rendezvous tell a process its place; tests of Communicator.from_env start without.
LAUNCHER_ENVIRONMENT = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "PMI_RANK",
    "PMI_SIZE",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "MASTER_ADDR",
    "MASTER_PORT",
    "BARACUDA_RUN_ID",
    "TORCHELASTIC_RUN_ID",
    "TORCHELASTIC_RESTART_COUNT",
)


@pytest.fixture
def no_launcher_environment(monkeypatch):
    """The test runs with none of the launcher variables set."""
    for name in LAUNCHER_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def seed(request):
    """A seed fixed by the test's id: each case draws fresh inputs, reproducibly."""
    return zlib.crc32(request.node.nodeid.encode())


@pytest.fixture
def rng(seed):
    """A numpy random generator seeded per test."""
    return np.random.default_rng(seed)


def pytest_terminal_summary(terminalreporter):
    """The case counts of the fuzz run (test_fuzz_c_api), when it ran."""
    import sys

    fuzz = sys.modules.get("test_fuzz_c_api")
    counts = getattr(fuzz, "CASE_COUNTS", None)
    if not counts:
        return
    terminalreporter.section("fuzz cases (C API)")
    for name in sorted(name for name in counts if not name.endswith("(accepted)")):
        accepted = counts.get(f"{name} (accepted)", 0)
        terminalreporter.write_line(
            f"{name}: {counts[name]} cases, {accepted} passed the checks and were audited"
        )
