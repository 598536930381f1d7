"""One process per GPU on ``torch.multiprocessing``, joined by ``torch.distributed``.

:func:`spawn` runs ``fn(rank, *args)`` in ``world_size`` processes, each in the default
process group (gloo unless told otherwise), with a :class:`Rank`: its index, the collectives
that the ring benchmark and the multi-GPU tests need, :meth:`Rank.send` to the parent and
:meth:`Rank.nccl_communicator`. A rank that raises, exits with a non-zero code or dies ends
the run with :class:`LaunchError` naming it, as does silence of every rank for ``timeout``
seconds; Ctrl-C and SIGTERM stop every rank first. ``torch`` is imported only in the calls.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

LOCALHOST = "127.0.0.1"
POLL_S = 0.1
GRACE_S = 5.0
"""How long a rank may take to exit after the run failed, before SIGTERM, then SIGKILL."""


class LaunchError(RuntimeError):
    """A rank raised, exited with a non-zero code, or the ranks were silent too long."""


class Rank:
    """What ``fn`` gets in rank ``rank`` of ``world_size``: collectives and the parent."""

    def __init__(self, rank: int, world_size: int, queue: Any) -> None:
        import torch
        import torch.distributed as dist

        self.rank, self.world_size = rank, world_size
        self._queue, self._torch, self._dist = queue, torch, dist

    def send(self, payload: Any) -> None:
        """Hand ``payload`` to the parent's ``on_message(rank, payload)``."""
        self._queue.put(("message", self.rank, payload))

    def _reduce(self, values: Sequence[float], op: Any) -> list[float]:
        tensor = self._torch.tensor(list(values), dtype=self._torch.float64)
        if tensor.numel():
            self._dist.all_reduce(tensor, op=op)
        return tensor.tolist()

    def min(self, value: float) -> float:
        """Return the minimum of ``value`` over the ranks."""
        return self._reduce([value], self._dist.ReduceOp.MIN)[0]

    def max(self, values: Sequence[float]) -> list[float]:
        """Return, element by element, the maximum over the ranks (all pass one length)."""
        return self._reduce(values, self._dist.ReduceOp.MAX)

    def all_ok(self, ok: bool) -> bool:
        """Return whether ``ok`` is true on every rank."""
        return self.min(1.0 if ok else 0.0) > 0

    def gather(self, obj: Any) -> list[Any] | None:
        """Return every rank's ``obj`` in rank order on rank 0; None on the others."""
        out = [None] * self.world_size if self.rank == 0 else None
        self._dist.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Return rank 0's ``obj`` on every rank."""
        box = [obj]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait for every rank."""
        self._dist.barrier()

    def nccl_communicator(self, *, device: int | None = None) -> Any:
        """Return this rank's :class:`baracuda.nccl.Communicator` (``device`` made current);
        rank 0's :func:`baracuda.nccl.get_unique_id` reaches the others as its raw bytes."""
        from baracuda import nccl

        unique_id = nccl.get_unique_id() if self.rank == 0 else bytes(nccl.UNIQUE_ID_BYTES)
        raw = self._torch.tensor(list(unique_id), dtype=self._torch.uint8)
        self._dist.broadcast(raw, src=0)
        return nccl.Communicator(self.world_size, self.rank, bytes(raw.tolist()), device=device)


def _run_rank(
    index: int,
    fn: Callable[..., Any],
    args: tuple,
    world_size: int,
    address: str,
    backend: str,
    timeout: float,
    env: Mapping[str, str],
    queue: Any,
) -> None:
    """Body of one process: join the process group, run ``fn``, send its return value."""
    os.environ.update(env)
    import torch.distributed as dist

    timeout_delta = datetime.timedelta(seconds=timeout)
    dist.init_process_group(
        backend, init_method=address, rank=index, world_size=world_size, timeout=timeout_delta
    )
    queue.put(("return", index, fn(Rank(index, world_size, queue), *args)))
    dist.destroy_process_group()


def _stop(processes: Sequence[Any]) -> None:
    """SIGTERM every live process, then SIGKILL those still there after ``GRACE_S``."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + GRACE_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def spawn(
    fn: Callable[..., Any],
    world_size: int,
    args: tuple = (),
    *,
    timeout: float,
    on_message: Callable[[int, Any], object] | None = None,
    backend: str = "gloo",
    env: Mapping[str, str] | None = None,
) -> list[Any]:
    """Run ``fn(rank, *args)`` in ``world_size`` processes; return their values by rank.

    Parameters
    ----------
    fn : callable
        A module-level function (the processes import it); its first argument is a
        :class:`Rank`, whose index is also the rank's GPU where there are GPUs.
    world_size : int
        Number of processes.
    args : tuple
        Picklable arguments after the rank.
    timeout : float
        Seconds without a message (:meth:`Rank.send` or a return) after which the run is
        stopped; also the process group's timeout for one collective.
    on_message : callable, optional
        Called in this process with ``(rank, payload)`` for each :meth:`Rank.send`, in order.
    backend : str
        ``torch.distributed`` backend, such as ``"gloo"`` or ``"cpu:gloo,cuda:nccl"``.
    env : mapping, optional
        Environment variables set in every rank before anything else runs there.

    Returns
    -------
    list
        What ``fn`` returned on each rank (None for a rank that exited with code 0 without
        returning).

    Raises
    ------
    LaunchError
        A rank raised (its traceback is in the message), exited with a non-zero code or a
        signal, or every rank was silent for ``timeout`` seconds. Every process has ended
        by then, within ``timeout`` plus ``2 * GRACE_S`` of the last message.
    """
    import torch.multiprocessing as mp

    queue = mp.get_context("spawn").SimpleQueue()
    with socket.socket() as probe:  # a free port of LOCALHOST
        probe.bind((LOCALHOST, 0))
        address = f"tcp://{LOCALHOST}:{probe.getsockname()[1]}"
    arguments = (fn, tuple(args), world_size, address, backend, timeout, dict(env or {}), queue)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
    returns: dict[int, Any] = {}
    context, last = None, time.monotonic()

    def drain() -> float:
        nonlocal last
        while not queue.empty():
            kind, rank, payload = queue.get()
            last = time.monotonic()
            if kind == "return":
                returns[rank] = payload
            elif on_message is not None:
                on_message(rank, payload)
        return time.monotonic() - last

    try:
        context = mp.start_processes(
            _run_rank, args=arguments, nprocs=world_size, join=False, start_method="spawn"
        )
        while True:
            drain()
            try:
                if context.join(timeout=POLL_S, grace_period=GRACE_S):
                    break
            except mp.ProcessRaisedException as exc:
                drain()
                trace = str(exc).split("terminated with the following error:\n", 1)[-1].rstrip()
                raise LaunchError(f"rank {exc.error_index} failed:\n{trace}") from None
            except mp.ProcessExitedException as exc:
                drain()
                how = f"signal {exc.signal_name}" if exc.exit_code < 0 else f"code {exc.exit_code}"
                raise LaunchError(f"rank {exc.error_index} exited with {how}") from None
            if time.monotonic() - last > timeout and drain() > timeout:
                alive = [r for r, p in enumerate(context.processes) if p.is_alive()]
                raise LaunchError(
                    f"no message from the ranks for {timeout:g} s: rank(s) {alive} still "
                    "running, stopped"
                )
        drain()
    finally:
        if context is not None:
            _stop(context.processes)
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    return [returns.get(rank) for rank in range(world_size)]
