"""The launcher of the ring benchmark and the multi-GPU tests, on the CPU with gloo.

Two processes run fake work functions through :func:`baracuda._launch.spawn`: a normal run,
a rank that raises, exits hard, hangs or leaves early with code 0. Skipped without torch.
"""

import os
import subprocess
import sys
import time

import pytest
from baracuda import _launch

pytest.importorskip("torch.distributed")

TIMEOUT_S, HANG_TIMEOUT_S = 60.0, 8.0
BOUND_S = 45.0 + 2 * _launch.GRACE_S
"""Process start and torch import, the timeout, then SIGTERM and SIGKILL grace."""


def collective_work(rank, offset):
    """Every collective of Rank; rank 0 returns what it saw, the others their index."""
    rank.send(f"hello from {rank.rank}")
    gathered = rank.gather({"rank": rank.rank, "value": offset + rank.rank})
    slowest = rank.max([1.0 + rank.rank, 5.0 - rank.rank, float(rank.rank)])
    least = rank.min(10.0 - rank.rank)
    agreed = rank.broadcast(f"decided by {rank.rank}")
    ok = rank.all_ok(True), rank.all_ok(rank.rank == 0)
    rank.barrier()
    assert rank.max([]) == [] and (gathered is None) == (rank.rank != 0)
    seen = (gathered, slowest, least, agreed, ok, rank.world_size, os.environ.get("LAUNCH_TEST"))
    return seen if rank.rank == 0 else rank.rank


def raising_work(rank):
    if rank.rank == 1:
        raise ValueError("rank one broke")
    rank.barrier()


def exiting_work(rank):
    if rank.rank == 1:
        os._exit(3)
    rank.barrier()


def hanging_work(rank):
    if rank.rank == 1:
        time.sleep(3600)


def leaving_work(rank):
    """Rank 1 leaves with code 0 and no return; rank 0 waits until its process is gone."""
    pids = rank.gather(os.getpid())
    rank.barrier()
    if rank.rank == 1:
        os._exit(0)
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            os.kill(pids[1], 0)
        except ProcessLookupError:
            return "peer gone"
        time.sleep(0.05)
    return "peer still there"


def run(fn, *args, timeout=TIMEOUT_S, **kwargs):
    start = time.monotonic()
    try:
        return _launch.spawn(fn, 2, args, timeout=timeout, **kwargs)
    finally:
        assert time.monotonic() - start < BOUND_S


def test_collectives_gather_in_rank_order_reduce_and_see_the_environment():
    messages = []
    first, second = run(
        collective_work,
        100,
        on_message=lambda rank, payload: messages.append((rank, payload)),
        env={"LAUNCH_TEST": "yes"},
    )
    assert first == (
        [{"rank": 0, "value": 100}, {"rank": 1, "value": 101}],
        [2.0, 5.0, 1.0],
        9.0,
        "decided by 0",
        (True, False),
        2,
        "yes",
    )
    assert second == 1
    assert sorted(messages) == [(0, "hello from 0"), (1, "hello from 1")]


@pytest.mark.parametrize(
    ("fn", "timeout", "message"),
    [
        (raising_work, TIMEOUT_S, r"^rank 1 failed:\nTraceback (.|\n)*ValueError: rank one broke$"),
        (exiting_work, TIMEOUT_S, r"^rank 1 exited with code 3$"),
        (
            hanging_work,
            HANG_TIMEOUT_S,
            rf"^no message from the ranks for {HANG_TIMEOUT_S:g} s: rank\(s\) \[1\] still running, "
            "stopped$",
        ),
    ],
    ids=["raises", "exits", "hangs"],
)
def test_a_failing_rank_ends_the_run_and_names_itself(fn, timeout, message):
    start = time.monotonic()
    with pytest.raises(_launch.LaunchError, match=message):
        run(fn, timeout=timeout)
    assert time.monotonic() - start >= (timeout if fn is hanging_work else 0)


def test_a_rank_may_leave_early_with_code_zero():
    assert run(leaving_work) == ["peer gone", None]


def test_importing_the_launcher_imports_no_torch():
    code = "import sys, baracuda._launch; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
