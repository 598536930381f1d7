"""NCCL communicators for ring attention, through the NCCL that libbaracuda loads at run time.

NCCL is found in this order: an explicit :func:`load` path, ``$BARACUDA_NCCL_LIBRARY``, a
``libnccl.so.2`` already loaded in the process (PyTorch's, for instance), the
``nvidia-nccl-cu12`` / ``-cu13`` wheel in site-packages, then the system. Every function loads
it on first use; :class:`~baracuda.LibraryNotLoadedError` names each place tried.

A ring needs one communicator per rank, all made from the same unique id::

    unique_id = baracuda.nccl.get_unique_id()        # on rank 0, sent to the others
    with baracuda.nccl.Communicator(world_size, rank, unique_id) as comm:
        y, lse = baracuda.ring_attention(q, k, v, comm, causal=True, layout="zigzag")

Processes started by ``torchrun`` or ``mpirun`` can use :meth:`Communicator.from_env`.
"""

from __future__ import annotations

import operator
import os
import pickle
import time
from pathlib import Path

from . import _capi
from ._cuda import stream_handle
from ._errors import CudaError, InvalidProblemError, NcclError

__all__ = ["Communicator", "get_unique_id", "library_path", "load", "version"]

UNIQUE_ID_BYTES = _capi.NCCL_UNIQUE_ID_BYTES
"""Size of an NCCL unique id."""

DEFAULT_RENDEZVOUS_TIMEOUT = 300.0
"""Seconds :meth:`Communicator.from_env` waits for rank 0's unique id."""

_RENDEZVOUS_POLL_SECONDS = 0.05
_STORE_KEY = "baracuda.nccl.unique_id"
_TORCHELASTIC_RUN_VARIABLE = "TORCHELASTIC_RUN_ID"
_store_rendezvous_count = 0

# (rank, world size, local rank) variables of the launchers, in the order they are tried.
_LAUNCHER_VARIABLES = (
    ("RANK", "WORLD_SIZE", "LOCAL_RANK"),  # torchrun, torch.distributed.launch
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),  # Open MPI
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),  # MPICH, Intel MPI
    ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),  # srun
)
_MPI_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK")


def load(path: str | os.PathLike | None = None) -> None:
    """Load NCCL now, from ``path`` or by the search order; a loaded NCCL stays loaded.

    Raises
    ------
    LibraryNotLoadedError
        No NCCL could be loaded; the message names every place tried and why it failed.
    """
    _capi.nccl_load(None if path is None else os.fspath(path))


def version() -> int:
    """The loaded NCCL's version code, such as 22803 for 2.28.3 (loads NCCL if needed)."""
    load()
    return _capi.nccl_version()


def library_path() -> str:
    """Path of the loaded NCCL library; ``""`` while none is loaded."""
    return _capi.nccl_library_path()


def get_unique_id() -> bytes:
    """A new NCCL unique id (``ncclGetUniqueId``), made once and given to every rank.

    Returns
    -------
    bytes
        :data:`UNIQUE_ID_BYTES` bytes; send them to the other ranks by any channel (a pipe, a
        ``torch.distributed`` store, MPI).
    """
    return _capi.nccl_get_unique_id()


class Communicator:
    """One rank's NCCL communicator, owned (destroyed by :meth:`destroy`) unless wrapped.

    Parameters
    ----------
    world_size : int
        Number of ranks.
    rank : int
        This rank, ``0 <= rank < world_size``.
    unique_id : bytes
        The same :func:`get_unique_id` on every rank.
    device : int, optional
        CUDA device of this rank, made current first; ``None`` keeps the current device.

    Notes
    -----
    Construction blocks until every rank has joined. As a context manager it is destroyed on a
    normal exit and aborted when an exception leaves the block (a peer may be gone).
    """

    __slots__ = ("_handle", "_owned", "_rank", "_world_size", "_device_id", "__weakref__")

    def __init__(self, world_size: int, rank: int, unique_id: bytes, *,
                 device: int | None = None) -> None:
        op = "Communicator"
        world_size = operator.index(world_size)
        rank = operator.index(rank)
        unique_id = bytes(unique_id)
        if device is not None:
            _make_current(operator.index(device), op)
        self._handle = 0
        self._owned = True
        self._handle = _capi.nccl_comm_init_rank(world_size, unique_id, rank)
        self._read_identity()

    @classmethod
    def from_handle(cls, handle: int, *, owned: bool = False) -> Communicator:
        """Wrap a raw ``ncclComm_t`` (an int), such as one a framework made.

        Parameters
        ----------
        handle : int
            The communicator's address.
        owned : bool
            Whether :meth:`destroy` and :meth:`abort` may end it; a borrowed one is only
            forgotten.
        """
        handle = operator.index(handle)
        if handle == 0:
            raise InvalidProblemError(
                "Communicator.from_handle: handle is NULL (got 0, expected an ncclComm_t)")
        comm = cls.__new__(cls)
        comm._handle = handle
        comm._owned = bool(owned)
        comm._read_identity()
        return comm

    @classmethod
    def from_env(cls, *, rendezvous_file: str | os.PathLike | None = None,
                 timeout: float = DEFAULT_RENDEZVOUS_TIMEOUT,
                 device: int | None = None) -> Communicator:
        """The communicator of a process started by ``torchrun``, ``mpirun`` or ``srun``.

        Rank and world size come from the launcher's variables (``RANK`` / ``WORLD_SIZE``,
        ``OMPI_COMM_WORLD_*``, ``PMI_*``, ``SLURM_*``). Rank 0's unique id reaches the others
        through mpi4py when running under MPI, else a ``torch.distributed.TCPStore`` at
        ``MASTER_ADDR:MASTER_PORT`` when torch is installed and those are set, else
        ``rendezvous_file`` (a path on a file system every rank sees).

        Parameters
        ----------
        rendezvous_file : path, optional
            Where rank 0 writes the unique id when neither MPI nor a torch store is available.
        timeout : float
            Seconds to wait for rank 0's unique id.
        device : int, optional
            This rank's CUDA device; by default the launcher's local rank, when it sets one.

        Raises
        ------
        InvalidProblemError
            No launcher variables, or no channel to pass the unique id.
        """
        op = "Communicator.from_env"
        rank, world_size, local_rank = _launcher_identity(op)
        if device is None:
            device = local_rank
        if device is not None:
            _make_current(device, op)
        unique_id = _share_unique_id(rank, world_size, rendezvous_file, timeout, op)
        return cls(world_size, rank, unique_id)

    def _read_identity(self) -> None:
        self._world_size = _capi.nccl_comm_world_size(self._handle)
        self._rank = _capi.nccl_comm_rank(self._handle)
        self._device_id = _capi.nccl_comm_device(self._handle)

    # ------------------------------------------------------------ identity

    @property
    def handle(self) -> int:
        """The ``ncclComm_t`` as an int; 0 once destroyed or aborted."""
        return self._handle

    @property
    def rank(self) -> int:
        """This rank."""
        return self._rank

    @property
    def world_size(self) -> int:
        """Number of ranks."""
        return self._world_size

    @property
    def device_id(self) -> int:
        """The CUDA device the communicator lives on."""
        return self._device_id

    @property
    def closed(self) -> bool:
        """Whether :meth:`destroy` or :meth:`abort` ended it (or a failed :meth:`wait`)."""
        return self._handle == 0

    def _live_handle(self, op: str) -> int:
        if self._handle == 0:
            raise InvalidProblemError(
                f"{op}: the communicator is closed (got a destroyed or aborted communicator, "
                "expected a live one)")
        return self._handle

    # ------------------------------------------------------------ errors and waiting

    def check(self) -> None:
        """Raise :class:`~baracuda.NcclError` when NCCL reports an asynchronous error."""
        _capi.nccl_comm_check(self._live_handle("Communicator.check"))

    def wait(self, *, stream=None, timeout: float | None = None) -> None:
        """Block until the work enqueued on ``stream`` has finished, watching for NCCL errors.

        Parameters
        ----------
        stream : None, int or object with ``__cuda_stream__``, optional
            ``None`` is the legacy default stream.
        timeout : float, optional
            Seconds; ``None`` waits without limit (still stopping on an NCCL error).

        Raises
        ------
        NcclError
            NCCL reported an asynchronous error (a peer died, a network failure), or the
            timeout passed first. The communicator is then aborted, which ends its pending
            transfers, and :attr:`closed` (a borrowed one too: it can no longer be used).
        """
        op = "Communicator.wait"
        handle = self._live_handle(op)
        seconds = 0.0 if timeout is None else float(timeout)
        if timeout is not None and seconds <= 0:
            raise InvalidProblemError(
                f"{op}: timeout must be positive (got {timeout!r}, expected seconds > 0, or "
                "None to wait without limit)")
        try:
            _capi.nccl_comm_wait(handle, stream_handle(stream, op), seconds)
        except (NcclError, CudaError):
            # The C library aborted the communicator before reporting.
            self._handle = 0
            raise

    # ------------------------------------------------------------ lifetime

    def destroy(self) -> None:
        """Free the communicator after its pending work (``ncclCommDestroy``); idempotent."""
        handle, self._handle = self._handle, 0
        if handle and self._owned:
            _capi.nccl_comm_destroy(handle)

    def abort(self) -> None:
        """Free the communicator now, ending its pending transfers (``ncclCommAbort``)."""
        handle, self._handle = self._handle, 0
        if handle and self._owned:
            _capi.nccl_comm_abort(handle)

    def __enter__(self) -> Communicator:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.destroy()
        else:
            self.abort()

    def __repr__(self) -> str:
        if self.closed:
            return "Communicator(closed)"
        return (f"Communicator(rank={self._rank}, world_size={self._world_size}, "
                f"device={self._device_id})")


def _make_current(device: int, op: str) -> None:
    try:
        from cuda.core import Device

        Device(device).set_current()
    except Exception as error:
        raise InvalidProblemError(
            f"{op}: cannot make device {device} current (got {type(error).__name__}: {error}, "
            "expected a usable CUDA device ordinal)") from error


def _launcher_identity(op: str) -> tuple[int, int, int | None]:
    """(rank, world size, local rank or None) from the first launcher whose variables are set."""
    for rank_name, size_name, local_name in _LAUNCHER_VARIABLES:
        if rank_name in os.environ and size_name in os.environ:
            local = os.environ.get(local_name)
            return (int(os.environ[rank_name]), int(os.environ[size_name]),
                    None if local is None else int(local))
    names = ", ".join(f"{rank}/{size}" for rank, size, _ in _LAUNCHER_VARIABLES)
    raise InvalidProblemError(
        f"{op}: no launcher variables (got none of {names}, expected a process started by "
        "torchrun, mpirun or srun)")


def _share_unique_id(rank: int, world_size: int, rendezvous_file, timeout: float,
                     op: str) -> bytes:
    """Rank 0's unique id, on every rank, through MPI, a torch store or a file."""
    if any(name in os.environ for name in _MPI_VARIABLES):
        try:
            from mpi4py import MPI
        except ImportError:
            MPI = None
        if MPI is not None:
            unique_id = get_unique_id() if rank == 0 else None
            return MPI.COMM_WORLD.bcast(unique_id, root=0)
    if "MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ:
        try:
            from torch.distributed import TCPStore
        except ImportError:
            TCPStore = None
        if TCPStore is not None:
            return _share_through_store(TCPStore, rank, world_size, timeout)
    if rendezvous_file is not None:
        return _share_through_file(Path(rendezvous_file), rank, timeout, op)
    raise InvalidProblemError(
        f"{op}: no channel for the unique id (got no mpi4py under MPI, no torch store at "
        "MASTER_ADDR/MASTER_PORT and no rendezvous_file, expected one of them)")


def _share_through_store(TCPStore, rank: int, world_size: int, timeout: float) -> bytes:
    """Through the store at MASTER_ADDR:MASTER_PORT: torchrun's agent hosts one there; without
    an agent, rank 0 hosts it."""
    import datetime

    global _store_rendezvous_count
    _store_rendezvous_count += 1
    run_id = os.environ.get(_TORCHELASTIC_RUN_VARIABLE)
    store = TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                     rank == 0 and run_id is None, timeout=datetime.timedelta(seconds=timeout))
    # Each call on every rank takes the next key, so that repeated calls never read an old id.
    key = f"{_STORE_KEY}/{run_id or ''}/{_store_rendezvous_count}"
    if rank == 0:
        store.set(key, get_unique_id())
    return bytes(store.get(key))


def _share_through_file(path: Path, rank: int, timeout: float, op: str) -> bytes:
    if rank == 0:
        # Written whole, then renamed: readers never see a partial id.
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(pickle.dumps(get_unique_id()))
        partial.replace(path)
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise InvalidProblemError(
                f"{op}: rank 0 did not write the rendezvous file in time (got no {path} after "
                f"{timeout} s, expected rank 0 to write it)")
        time.sleep(_RENDEZVOUS_POLL_SECONDS)
    return pickle.loads(path.read_bytes())
