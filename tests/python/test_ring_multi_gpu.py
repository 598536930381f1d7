"""Ring attention across GPUs, one process per GPU (marked ``gpu``). Every visible GPU takes a
rank; with one GPU the ring runs with world size 1 through the same launcher, and the dead-peer
test, which needs two, skips.

A module-scoped fixture starts ``world_size`` workers (``_ring_worker.run_worker``) once through
the launcher of the ring benchmark (``baracuda._launch.spawn``): all GPUs, or
``BARACUDA_TEST_WORLD_SIZE`` of them when that is set. They join one NCCL communicator and run
every case of ``CASES`` in the same order; rank 0 also runs single-GPU
flash attention on each case's whole sequence. Each test then checks one case's gathered
result:

* against ``baracuda.reference.attention`` in float64 on the whole global sequence, with the
  tolerances of ``test_flash_gpu`` (f64 ``1e-12`` and f32 ``1e-5`` relative to the largest
  output; f16 / bf16 within twice the error of a naive same-dtype attention plus one ULP at
  the largest output; LSE ``-inf`` exactly where the reference has it, and otherwise within
  ``1e-12`` / ``1e-5``);
* against ``baracuda.flash_attention`` on the whole sequence, with the same bounds;
* a case run with the serial schedule against its overlapped twin: bit-identical, since the
  arithmetic is the same and only the order of transfers and steps differs.

A separate test starts its own two ranks; one leaves abruptly after a first successful call:
the survivor's next call must raise ``baracuda.NcclError`` within its timeout, not hang.
"""

import dataclasses
import itertools
import os
import re
import subprocess
import sys
import time

import baracuda
import numpy as np
import pytest
from _ring_worker import (
    DEAD_PEER_RANK,
    DEAD_PEER_RING_TIMEOUT_S,
    NCCL_ENVIRONMENT,
    RING_TIMEOUT_S,
    SINGLE_GPU_RANK,
    RingCase,
    global_inputs,
    run_dead_peer_worker,
    run_worker,
)
from baracuda import _launch, reference
from test_flash_gpu import assert_matches_reference, lse_dtype, to_numpy, torch_dtype

pytestmark = pytest.mark.gpu

MIN_WORLD_SIZE = 1
WORLD_SIZE_VARIABLE = "BARACUDA_TEST_WORLD_SIZE"

ELEMENTS = ("f32", "f16", "bf16", "f64")
LAYOUTS = ("contiguous", "zigzag")
HEAD_DIMS = (64, 128)
# Per-rank lengths; even, as zigzag splits each rank's part into two chunks.
SEQ_LENS_PER_RANK = (64, 96, 130)

# Longest silence from the workers before the run counts as hung: process start, imports and
# NCCL init, or a ring call that runs into its own RING_TIMEOUT_S, with margin.
MESSAGE_TIMEOUT_S = RING_TIMEOUT_S + 120.0

# Dead peer: the survivor's failing call must raise within DEAD_PEER_RAISE_BOUND_S (its ring
# timeout is DEAD_PEER_RING_TIMEOUT_S), and the whole test must end within the launcher's
# bound: start and first call, the raise, the stop of the ranks.
DEAD_PEER_WORLD_SIZE = 2
DEAD_PEER_RAISE_BOUND_S = 60.0
DEAD_PEER_TEST_BOUND_S = MESSAGE_TIMEOUT_S + DEAD_PEER_RAISE_BOUND_S + 2 * _launch.GRACE_S
DEAD_PEER_CASE = RingCase("bf16", causal=True, layout="zigzag", head_dim=128, seq_len_per_rank=128)
# What the survivor's NcclError message must name: the timeout, or the NCCL error.
DEAD_PEER_MESSAGE = re.compile(r"time(d)?[ -]?out|nccl", re.IGNORECASE)


# ---------------------------------------------------------------- the cases


def _cases():
    """(cases, schedule pairs): the matrix, and (overlapped, serial) twins inside it."""
    cases = []
    pairs = []

    def add(case, serial_twin=False):
        cases.append(case)
        if serial_twin:
            twin = dataclasses.replace(case, schedule="serial")
            cases.append(twin)
            pairs.append((case, twin))

    # Every dtype x causal x layout, MHA; head dims and per-rank lengths in turn.
    for n, (element, causal, layout) in enumerate(
        itertools.product(ELEMENTS, (False, True), LAYOUTS)
    ):
        add(
            RingCase(
                element,
                causal=causal,
                layout=layout,
                head_dim=HEAD_DIMS[(n + n // 4) % len(HEAD_DIMS)],
                seq_len_per_rank=SEQ_LENS_PER_RANK[n % len(SEQ_LENS_PER_RANK)],
            ),
            serial_twin=(element, causal, layout) == ("f16", True, "zigzag"),
        )
    # GQA (H=8, Hk=2) and MQA (Hk=1): causal zigzag, and non-causal with y allocated.
    for element, heads_k in (("bf16", 2), ("f16", 1)):
        add(
            RingCase(
                element,
                num_heads=8,
                num_heads_k=heads_k,
                causal=True,
                layout="zigzag",
                head_dim=128,
                seq_len_per_rank=96,
            )
        )
        add(
            RingCase(
                element,
                num_heads=8,
                num_heads_k=heads_k,
                seq_len_per_rank=130,
                preallocated_out=False,
            ),
            serial_twin=heads_k == 2,
        )
    # Sliding windows on global positions, both layouts: causal left 37, non-causal 20 / 5.
    for layout in LAYOUTS:
        add(
            RingCase("f16", causal=True, window=(37, 0), layout=layout, seq_len_per_rank=96),
            serial_twin=layout == "contiguous",
        )
        add(
            RingCase(
                "f32" if layout == "contiguous" else "bf16",
                window=(20, 5),
                layout=layout,
                head_dim=128,
            )
        )
    # Softcap (unscaled scores, where the cap bites) and ALiBi on zigzag causal.
    add(RingCase("f16", causal=True, layout="zigzag", softcap=5.0, scale=1.0, seq_len_per_rank=130))
    add(
        RingCase("f32", causal=True, layout="zigzag", alibi=True, head_dim=128, seq_len_per_rank=96)
    )
    add(
        RingCase("f64", causal=True, layout="zigzag", softcap=5.0, scale=1.0, alibi=True),
        serial_twin=True,
    )
    # Every feature at once, at head dim 256.
    add(
        RingCase(
            "bf16",
            num_heads=8,
            num_heads_k=2,
            causal=True,
            layout="zigzag",
            window=(50, 0),
            softcap=8.0,
            alibi=True,
            head_dim=256,
        )
    )
    return cases, pairs


CASES, SCHEDULE_PAIRS = _cases()


# ---------------------------------------------------------------- workers


class RingRun:
    """What one run of the workers sent, by case, and how it ended."""

    def __init__(self, world_size):
        self.world_size = world_size
        self.failure = None
        self.results = {}
        self.finished = []

    def add(self, rank, message):
        case_id, outcome = message
        self.results.setdefault(case_id, {})[rank] = outcome

    def outcomes(self, case):
        """Every rank's ``RankOutcome`` of ``case``, in rank order; fails when one is missing."""
        per_rank = self.results.get(case.id, {})
        missing = [rank for rank in range(self.world_size) if rank not in per_rank]
        if missing:
            pytest.fail(
                f"case {case.id}: no result from rank(s) {missing}\n{self.failure or ''}",
                pytrace=False,
            )
        return [per_rank[rank] for rank in range(self.world_size)]


def spawn(fn, world_size, *args, **kwargs):
    """``fn(rank, *args)`` on ``world_size`` ranks through the launcher of the ring benchmark."""
    env = {**os.environ, **NCCL_ENVIRONMENT}
    return _launch.spawn(fn, world_size, args, timeout=MESSAGE_TIMEOUT_S, env=env, **kwargs)


@pytest.fixture(scope="module")
def world_size():
    """The number of ranks; skips unless torch, a GPU and NCCL are available."""
    torch = pytest.importorskip("torch")
    count = torch.cuda.device_count()
    if count < MIN_WORLD_SIZE:
        pytest.skip(
            f"ring attention tests need at least {MIN_WORLD_SIZE} GPUs "
            f"(torch.cuda.device_count() is {count})"
        )
    from baracuda import nccl

    try:
        nccl.load()
    except baracuda.LibraryNotLoadedError as error:
        pytest.skip(f"ring attention tests need NCCL: {error}")
    requested = os.environ.get(WORLD_SIZE_VARIABLE)
    if requested is None:
        return count
    if not requested.isdigit():
        pytest.fail(
            f"{WORLD_SIZE_VARIABLE} must be a whole number (got {requested!r})", pytrace=False
        )
    size = min(count, int(requested))
    if size < MIN_WORLD_SIZE:
        pytest.skip(f"{WORLD_SIZE_VARIABLE}={requested} asks for fewer than {MIN_WORLD_SIZE} ranks")
    return size


@pytest.fixture(scope="module")
def ring_run(world_size):
    """Every case of CASES run once by ``world_size`` workers."""
    run = RingRun(world_size)
    try:
        run.finished = spawn(run_worker, world_size, CASES, on_message=run.add)
    except _launch.LaunchError as error:
        run.failure = str(error)
    return run


# ---------------------------------------------------------------- checks


def gathered(torch, case, outcomes, world_size):
    """The ranks' y and LSE gathered into the global sequence, as CPU float64 tensors."""
    local = (case.batch_size, case.num_heads, case.seq_len_per_rank)
    for rank, outcome in enumerate(outcomes):
        assert outcome.y.shape == local + (case.head_dim,), f"rank {rank} y shape"
        assert outcome.lse.shape == local, f"rank {rank} lse shape"
        assert outcome.y_dtype == str(torch_dtype(torch, case.element)), f"rank {rank} y dtype"
        assert outcome.lse_dtype == str(lse_dtype(torch, case.element)), f"rank {rank} lse dtype"
    y = baracuda.gather_sequence([outcome.y for outcome in outcomes], layout=case.layout)
    lse = baracuda.gather_sequence([outcome.lse for outcome in outcomes], layout=case.layout)
    length = case.global_len(world_size)
    assert y.shape == (case.batch_size, case.num_heads, length, case.head_dim)
    assert lse.shape == (case.batch_size, case.num_heads, length)
    return torch.from_numpy(np.asarray(y)), torch.from_numpy(np.asarray(lse))


def global_reference(torch, case, world_size):
    inputs = global_inputs(torch, case, world_size)
    return reference.attention(
        to_numpy(inputs.q),
        to_numpy(inputs.k),
        to_numpy(inputs.v),
        causal=case.causal,
        scale=case.scale,
        window=case.window,
        softcap=case.softcap,
        alibi_slopes=inputs.alibi_slopes,
    )


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_matches_reference_and_flash(torch, ring_run, case):
    outcomes = ring_run.outcomes(case)
    y, lse = gathered(torch, case, outcomes, ring_run.world_size)
    single = outcomes[SINGLE_GPU_RANK]
    assert single.single_gpu_error is None, (
        f"single-GPU flash / naive attention failed on rank {SINGLE_GPU_RANK}:\n"
        f"{single.single_gpu_error}"
    )
    naive_y = None if single.naive_y is None else torch.from_numpy(single.naive_y)

    ref_y, ref_lse = global_reference(torch, case, ring_run.world_size)
    assert_matches_reference(torch, case.element, y, lse, ref_y, ref_lse, naive_y)
    assert_matches_reference(torch, case.element, y, lse, single.flash_y, single.flash_lse, naive_y)


@pytest.mark.parametrize(
    "overlapped,serial", SCHEDULE_PAIRS, ids=[case.id for case, _ in SCHEDULE_PAIRS]
)
def test_serial_schedule_is_bit_identical(ring_run, overlapped, serial):
    """The serial and overlapped schedules give the same bits on every rank."""
    for rank, (first, second) in enumerate(
        zip(ring_run.outcomes(overlapped), ring_run.outcomes(serial), strict=True)
    ):
        # The float64 copies are exact, so equal bits there are equal bits of the outputs.
        for name in ("y", "lse"):
            np.testing.assert_array_equal(
                getattr(first, name).view(np.uint64),
                getattr(second, name).view(np.uint64),
                err_msg=f"rank {rank} {name}: serial and overlapped schedules differ",
            )


def test_workers_finished_cleanly(ring_run):
    """Every rank ran every case and destroyed its communicator without an error."""
    if ring_run.failure is not None:
        pytest.fail(ring_run.failure, pytrace=False)
    assert ring_run.finished == [True] * ring_run.world_size


# ---------------------------------------------------------------- dead peer


def test_dead_peer_raises_nccl_error(torch, world_size):
    """A rank whose peer died gets NcclError from its next call, within the timeout."""
    if torch.cuda.device_count() < DEAD_PEER_WORLD_SIZE:
        pytest.skip(
            f"the dead-peer test needs {DEAD_PEER_WORLD_SIZE} GPUs "
            f"(torch.cuda.device_count() is {torch.cuda.device_count()})"
        )
    start = time.monotonic()
    try:
        reports = spawn(run_dead_peer_worker, DEAD_PEER_WORLD_SIZE, DEAD_PEER_CASE)
    except _launch.LaunchError as error:
        pytest.fail(f"the dead-peer run failed: {error}", pytrace=False)
    survivor = 1 - DEAD_PEER_RANK
    assert reports[DEAD_PEER_RANK] is None
    report = reports[survivor]
    assert report.error_type is not None, (
        f"ring_attention returned normally after {report.elapsed_s:.1f} s with its peer gone"
    )
    assert report.is_nccl_error, (
        f"expected baracuda.NcclError, got {report.error_type}: {report.message}"
    )
    assert report.error_type == "NcclError"
    assert DEAD_PEER_MESSAGE.search(report.message), (
        f"the NcclError message names neither the timeout nor an NCCL error: {report.message!r}"
    )
    assert report.elapsed_s <= DEAD_PEER_RAISE_BOUND_S, (
        f"NcclError came after {report.elapsed_s:.1f} s (timeout "
        f"{DEAD_PEER_RING_TIMEOUT_S:g} s, bound {DEAD_PEER_RAISE_BOUND_S:g} s)"
    )
    elapsed = time.monotonic() - start
    assert elapsed <= DEAD_PEER_TEST_BOUND_S, (
        f"the dead-peer test took {elapsed:.0f} s (bound {DEAD_PEER_TEST_BOUND_S:g} s)"
    )


# ---------------------------------------------------------------- a torchrun launch

FROM_ENV_SCRIPT = os.path.join(os.path.dirname(__file__), "_ring_from_env.py")
FROM_ENV_TIMEOUT_S = 300.0


def test_torchrun_from_env(world_size, tmp_path):
    """``Communicator.from_env`` in processes that torchrun starts: the README's recipe."""
    pytest.importorskip("torch.distributed.run")
    environment = dict(os.environ, **NCCL_ENVIRONMENT)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [os.path.dirname(__file__), environment.get("PYTHONPATH")])
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={world_size}",
            FROM_ENV_SCRIPT,
        ],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=FROM_ENV_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"ring from_env ok world_size={world_size}" in result.stdout, result.stdout[-3000:]
