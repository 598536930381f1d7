"""The launcher of the ring benchmark and the multi-GPU tests, on the CPU with gloo.

Two processes run fake work functions through :func:`baracuda._launch.spawn`: a normal run,
a rank that raises, one that exits hard, one that hangs, one that leaves early with code 0.
Skipped without torch (the launcher needs ``torch.multiprocessing`` and ``torch.distributed``).
"""

import os
import subprocess
import sys
import time

import pytest
from baracuda import _launch

pytest.importorskip("torch.distributed")

TIMEOUT_S = 60.0
HANG_TIMEOUT_S = 8.0
# Process start and torch import, the timeout, then SIGTERM and SIGKILL grace.
BOUND_S = 45.0 + 2 * _launch.GRACE_S


def collective_work(rank, offset):
    """Every collective of Rank; rank 0 returns what it saw, the others their index."""
    rank.send(f"hello from {rank.rank}")
    gathered = rank.gather({"rank": rank.rank, "value": offset + rank.rank})
    slowest = rank.max([1.0 + rank.rank, 5.0 - rank.rank, float(rank.rank)])
    least = rank.min(10.0 - rank.rank)
    agreed = rank.broadcast(f"decided by {rank.rank}")
    ok = rank.all_ok(True), rank.all_ok(rank.rank == 0)
    rank.barrier()
    assert rank.max([]) == []
    if rank.rank:
        assert gathered is None
        return rank.rank
    return gathered, slowest, least, agreed, ok, rank.world_size


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


def environment_work(rank):
    return os.environ.get("BARACUDA_LAUNCH_TEST")


def run(fn, *args, timeout=TIMEOUT_S, **kwargs):
    start = time.monotonic()
    try:
        return _launch.spawn(fn, 2, args, timeout=timeout, **kwargs), time.monotonic() - start
    finally:
        assert time.monotonic() - start < BOUND_S


def test_collectives_gather_in_rank_order_and_reduce():
    messages = []
    (first, second), _ = run(
        collective_work, 100, on_message=lambda rank, payload: messages.append((rank, payload))
    )
    gathered, slowest, least, agreed, ok, world_size = first
    assert gathered == [{"rank": 0, "value": 100}, {"rank": 1, "value": 101}]
    assert slowest == [2.0, 5.0, 1.0]
    assert least == 9.0
    assert agreed == "decided by 0"
    assert ok == (True, False)
    assert world_size == 2 and second == 1
    assert sorted(messages) == [(0, "hello from 0"), (1, "hello from 1")]


def test_a_raising_rank_names_itself_with_its_traceback():
    with pytest.raises(_launch.LaunchError) as info:
        run(raising_work)
    message = str(info.value)
    assert message.startswith("rank 1 failed:\nTraceback")
    assert "ValueError: rank one broke" in message


def test_a_rank_that_exits_hard_names_its_exit_code():
    with pytest.raises(_launch.LaunchError, match=r"^rank 1 exited with code 3$"):
        run(exiting_work)


def test_a_hanging_rank_ends_the_run_within_the_bound():
    start = time.monotonic()
    with pytest.raises(_launch.LaunchError) as info:
        run(hanging_work, timeout=HANG_TIMEOUT_S)
    assert str(info.value) == (
        f"no message from the ranks for {HANG_TIMEOUT_S:g} s: rank(s) [1] still running, stopped"
    )
    assert time.monotonic() - start >= HANG_TIMEOUT_S


def test_a_rank_may_leave_early_with_code_zero():
    assert run(leaving_work)[0] == ["peer gone", None]


def test_environment_reaches_the_ranks():
    values, _ = run(environment_work, env={"BARACUDA_LAUNCH_TEST": "yes"})
    assert values == ["yes", "yes"]


def test_importing_the_launcher_imports_no_torch():
    code = "import sys, baracuda._launch; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
