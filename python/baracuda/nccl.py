"""NCCL communicators for ring attention, through the NCCL that libbaracuda loads at run time.

An explicit :func:`load` path, else ``$BARACUDA_NCCL_LIBRARY`` when set, is the only place
tried: loaded or refused, never replaced by another NCCL. Otherwise NCCL is found in this
order: a ``libnccl.so.2`` already loaded in the process (PyTorch's, for instance), the
``nvidia-nccl-cu12`` / ``-cu13`` wheel in site-packages, then the system. Every function loads
it on first use; :class:`~baracuda.LibraryNotLoadedError` names each place tried.

A ring needs one communicator per rank, all made from the same unique id::

    unique_id = baracuda.nccl.get_unique_id()        # on rank 0, sent to the others
    with baracuda.nccl.Communicator(world_size, rank, unique_id) as comm:
        y = baracuda.ring_attention(q, k, v, comm, causal=True, layout="zigzag")

Processes started by ``torchrun`` or ``mpirun`` can use :meth:`Communicator.from_env`.
"""

from __future__ import annotations

import contextlib
import math
import operator
import os
import secrets
import stat
import struct
import threading
import time
from pathlib import Path

from . import _capi
from ._cuda import stream_handle
from ._errors import BaracudaError, InvalidProblemError, NcclError

__all__ = ["Communicator", "get_unique_id", "library_path", "load", "version"]

UNIQUE_ID_BYTES = _capi.NCCL_UNIQUE_ID_BYTES
"""Size of an NCCL unique id."""

DEFAULT_RENDEZVOUS_TIMEOUT = 300.0
"""Seconds :meth:`Communicator.from_env` waits for rank 0's unique id."""

RUN_ID_VARIABLE = "BARACUDA_RUN_ID"
"""The variable that names a run for the file rendezvous of :meth:`Communicator.from_env`."""

_RENDEZVOUS_POLL_SECONDS = 0.05
_STORE_KEY = "baracuda.nccl.unique_id"
_TORCHELASTIC_RUN_VARIABLE = "TORCHELASTIC_RUN_ID"
_TORCHELASTIC_RESTART_VARIABLE = "TORCHELASTIC_RESTART_COUNT"
# torchrun's run id when --rdzv-id is not given: the same for every run, so no run id at all.
_TORCHELASTIC_DEFAULT_RUN_ID = "none"
# How many rendezvous this process has taken part in: every rank makes the same calls, so the
# count tells one call's unique id from an earlier call's under the same run id.
_rendezvous_count = 0

# The rendezvous file: the magic (with its format version), the run id's length (u16) and
# UTF-8 bytes, the rendezvous count (u64), then the raw unique id. Nothing else is accepted.
_RENDEZVOUS_MAGIC = b"BARACUDA-NCCL-UNIQUE-ID\x00\x01"
_RENDEZVOUS_LENGTH = struct.Struct(">H")
_RENDEZVOUS_COUNT = struct.Struct(">Q")
_MAX_RUN_ID_BYTES = 1024
_MAX_RENDEZVOUS_BYTES = (
    len(_RENDEZVOUS_MAGIC)
    + _RENDEZVOUS_LENGTH.size
    + _MAX_RUN_ID_BYTES
    + _RENDEZVOUS_COUNT.size
    + UNIQUE_ID_BYTES
)
_RENDEZVOUS_FILE_MODE = 0o600
# Permission bits that let another user replace the content of the rendezvous file.
_FOREIGN_WRITE_BITS = stat.S_IWGRP | stat.S_IWOTH

# (rank, world size, local rank) variables of the launchers, in the order they are tried.
_LAUNCHER_VARIABLES = (
    ("RANK", "WORLD_SIZE", "LOCAL_RANK"),  # torchrun, torch.distributed.launch
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),  # Open MPI
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),  # MPICH, Intel MPI
    ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),  # srun
)
_MPI_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK")


def load(path: str | bytes | os.PathLike | None = None) -> None:
    """Load NCCL now, from ``path`` or by the search order; a loaded NCCL stays loaded.

    Parameters
    ----------
    path : str, bytes or os.PathLike, optional
        The library file (encoded with :func:`os.fsencode`), the only place tried. ``None``:
        ``$BARACUDA_NCCL_LIBRARY`` when set (then the only place tried), else the search order.

    Raises
    ------
    LibraryNotLoadedError
        No NCCL could be loaded; the message names every place tried and why it failed. An
        explicit path or the variable is never replaced by another NCCL, nor opened as a second
        copy beside a ``libnccl.so.2`` from another file already in the process.
    InvalidProblemError
        ``path`` is empty or holds a NUL byte, or another NCCL file is loaded already (the
        message names both); loading the same file again succeeds.
    """
    _capi.nccl_load(path)


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

    Every call that hands the communicator to NCCL (a ring run, :meth:`wait`, :meth:`check`)
    holds a lease on it for the call's length. :meth:`destroy` and :meth:`abort` while a lease
    is held on another thread are refused with :class:`~baracuda.InvalidProblemError` and
    leave the communicator as it was: nothing a running call uses is freed under it (bound a
    hang with :meth:`wait`'s ``timeout`` instead). A communicator belongs to its process and
    to one object: pickling and copying raise :class:`TypeError`.
    """

    __slots__ = (
        "_handle",
        "_owned",
        "_rank",
        "_world_size",
        "_device_id",
        "_lock",
        "_leases",
        "_deferred_abort",
        "__weakref__",
    )

    def __init__(
        self, world_size: int, rank: int, unique_id: bytes, *, device: int | None = None
    ) -> None:
        op = "Communicator"
        world_size = operator.index(world_size)
        rank = operator.index(rank)
        unique_id = bytes(unique_id)
        if device is not None:
            _make_current(operator.index(device), op)
        self._start(0, owned=True)
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
            forgotten, and never aborted by baracuda (not even by a failed :meth:`wait`).
        """
        handle = operator.index(handle)
        if handle == 0:
            raise InvalidProblemError(
                "Communicator.from_handle: handle is NULL (got 0, expected an ncclComm_t)"
            )
        comm = cls.__new__(cls)
        comm._start(handle, owned=bool(owned))
        comm._read_identity()
        return comm

    @classmethod
    def from_env(
        cls,
        *,
        rendezvous_file: str | os.PathLike | None = None,
        run_id: str | None = None,
        timeout: float = DEFAULT_RENDEZVOUS_TIMEOUT,
        device: int | None = None,
    ) -> Communicator:
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
            The file holds the 128 id bytes, the run id and the call's count behind a fixed
            header (no pickle), is made with mode 0600 and renamed into place whole. Readers
            accept only a regular file of that exact format, owned by their user and writable
            by no one else, whose run id and count are theirs; a file of another run is
            waited past (rank 0 replaces it), any other file is refused. Whoever can read it
            can join the communicator: use a folder only the job's user can read.
        run_id : str, optional
            Names this run for the file rendezvous: the same on every rank, and different
            from every earlier run that used the same file. By default
            ``$BARACUDA_RUN_ID``, else torchrun's ``$TORCHELASTIC_RUN_ID`` with
            ``$TORCHELASTIC_RESTART_COUNT`` (not its default ``"none"``). The file rendezvous
            refuses to run without one.
        timeout : float
            Seconds to wait for rank 0's unique id.
        device : int, optional
            This rank's CUDA device; by default the launcher's local rank, when it sets one.

        Raises
        ------
        InvalidProblemError
            No launcher variables, no channel to pass the unique id, no run id for the file
            rendezvous, a rendezvous file that is not one of baracuda's, or no id in time.
        """
        op = "Communicator.from_env"
        rank, world_size, local_rank = _launcher_identity(op)
        if device is None:
            device = local_rank
        if device is not None:
            _make_current(device, op)
        unique_id = _share_unique_id(rank, world_size, rendezvous_file, run_id, timeout, op)
        return cls(world_size, rank, unique_id)

    def _start(self, handle: int, *, owned: bool) -> None:
        self._handle = handle
        self._owned = owned
        self._lock = threading.Lock()
        self._leases = 0
        self._deferred_abort = 0

    def _read_identity(self) -> None:
        self._world_size = _capi.nccl_comm_world_size(self._handle)
        self._rank = _capi.nccl_comm_rank(self._handle)
        self._device_id = _capi.nccl_comm_device(self._handle)

    # ------------------------------------------------------------ one object, one process

    def __reduce_ex__(self, protocol):
        raise TypeError(
            "Communicator cannot be pickled: it holds a pointer to an NCCL communicator of "
            "this process, meaningless in another one; make one Communicator per process "
            "from the same unique id (get_unique_id)"
        )

    def __copy__(self):
        raise TypeError(
            "Communicator cannot be copied: two objects would each end the same NCCL "
            "communicator; pass the one object around instead"
        )

    def __deepcopy__(self, memo):
        raise TypeError(
            "Communicator cannot be deep-copied: an NCCL communicator cannot be duplicated, "
            "and two objects would each end the same one; pass the one object around instead"
        )

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

    # ------------------------------------------------------------ leases

    def _live_handle(self, op: str) -> int:
        """The handle, or :class:`InvalidProblemError` once the communicator is closed."""
        handle = self._handle
        if handle == 0:
            raise InvalidProblemError(
                f"{op}: the communicator is closed (got a destroyed or aborted communicator, "
                "expected a live one)"
            )
        return handle

    def _lease(self, op: str) -> _Lease:
        """A context manager that holds the handle for one call: ``with comm._lease(op) as
        handle``. A closed communicator is refused here and again on entry."""
        self._live_handle(op)
        return _Lease(self, op)

    def _acquire(self, op: str) -> int:
        with self._lock:
            handle = self._live_handle(op)
            self._leases += 1
            return handle

    def _release(self) -> None:
        with self._lock:
            self._leases -= 1
            handle = self._deferred_abort if self._leases == 0 else 0
            if handle:
                self._deferred_abort = 0
        if handle:
            # The abort of a communicator NCCL already failed: its own failure is not
            # reported over the first one (as baracuda_nccl_comm_wait does).
            with contextlib.suppress(BaracudaError):
                _capi.nccl_comm_abort(handle)

    def _end(self, op: str, *, abort: bool) -> None:
        """Close the communicator; an owned one is destroyed or aborted. Refused while a lease
        is held."""
        with self._lock:
            handle = self._handle
            if handle == 0:
                return
            if self._leases:
                raise InvalidProblemError(
                    f"{op}: the communicator is in use (got {self._leases} ring run(s) or "
                    "wait(s) in flight on other threads, expected none: it stays open; end it "
                    "after they return)"
                )
            self._handle = 0
        if self._owned:
            (_capi.nccl_comm_abort if abort else _capi.nccl_comm_destroy)(handle)

    def _fail_in_lease(self) -> None:
        """Close the communicator after an NCCL failure seen inside a lease: an owned one is
        aborted when the last lease ends (at once when that is the caller's own)."""
        with self._lock:
            handle, self._handle = self._handle, 0
            if self._owned and handle:
                self._deferred_abort = handle

    # ------------------------------------------------------------ errors and waiting

    def check(self) -> None:
        """Raise :class:`~baracuda.NcclError` when NCCL reports an asynchronous error."""
        with self._lease("Communicator.check") as handle:
            _capi.nccl_comm_check(handle)

    def wait(self, *, stream=None, timeout: float | None = None) -> None:
        """Block until the work enqueued on ``stream`` has finished, watching for NCCL errors.

        Parameters
        ----------
        stream : None, int or object with ``__cuda_stream__``, optional
            ``None`` is the legacy default stream.
        timeout : float, optional
            Seconds, positive; ``None`` or ``math.inf`` waits without limit (still stopping on
            an NCCL error).

        Raises
        ------
        NcclError
            NCCL reported an asynchronous error (a peer died, a network failure), or the
            timeout passed first. An owned communicator is then aborted, which ends its
            pending transfers, and :attr:`closed` (once calls on other threads that hold it
            return). A borrowed one (:meth:`from_handle` with ``owned=False``) is left alive
            and open: ending it is its owner's call.
        CudaError
            The stream query failed (a CUDA error, not NCCL's): the communicator is left as
            it was.
        InvalidProblemError
            ``timeout`` is not positive, or is NaN; the communicator is closed.
        """
        op = "Communicator.wait"
        seconds = math.inf if timeout is None else float(timeout)
        if math.isnan(seconds) or seconds <= 0:
            raise InvalidProblemError(
                f"{op}: timeout must be positive seconds (got {timeout!r}, expected seconds > 0, "
                "or None or math.inf to wait without limit)"
            )
        stream_value = stream_handle(stream, op)
        with self._lease(op) as handle:
            try:
                _capi.nccl_comm_wait(handle, stream_value, seconds, False)
            except NcclError as error:
                if not self._owned:
                    raise
                self._fail_in_lease()
                raise NcclError(f"{error}; {op} aborted the communicator: it is closed") from None

    # ------------------------------------------------------------ lifetime

    def destroy(self) -> None:
        """Free the communicator after its pending work (``ncclCommDestroy``); idempotent.

        Raises
        ------
        InvalidProblemError
            A ring run or :meth:`wait` on another thread holds it: nothing is freed.
        """
        self._end("Communicator.destroy", abort=False)

    def abort(self) -> None:
        """Free the communicator now, ending its pending transfers (``ncclCommAbort``).

        Raises
        ------
        InvalidProblemError
            A ring run or :meth:`wait` on another thread holds it: nothing is freed.
        """
        self._end("Communicator.abort", abort=True)

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
        return (
            f"Communicator(rank={self._rank}, world_size={self._world_size}, "
            f"device={self._device_id})"
        )


class _Lease:
    """One call's hold on a :class:`Communicator`: entering gives its handle and keeps
    :meth:`~Communicator.destroy` and :meth:`~Communicator.abort` from freeing it until exit."""

    __slots__ = ("_comm", "_op")

    def __init__(self, comm: Communicator, op: str) -> None:
        self._comm = comm
        self._op = op

    def __enter__(self) -> int:
        return self._comm._acquire(self._op)

    def __exit__(self, exc_type, exc, traceback) -> None:
        self._comm._release()


def _make_current(device: int, op: str) -> None:
    try:
        from cuda.core import Device

        Device(device).set_current()
    except Exception as error:
        raise InvalidProblemError(
            f"{op}: cannot make device {device} current (got {type(error).__name__}: {error}, "
            "expected a usable CUDA device ordinal)"
        ) from error


def _launcher_identity(op: str) -> tuple[int, int, int | None]:
    """(rank, world size, local rank or None) from the first launcher whose variables are set."""
    for rank_name, size_name, local_name in _LAUNCHER_VARIABLES:
        if rank_name in os.environ and size_name in os.environ:
            local = os.environ.get(local_name)
            return (
                int(os.environ[rank_name]),
                int(os.environ[size_name]),
                None if local is None else int(local),
            )
    names = ", ".join(f"{rank}/{size}" for rank, size, _ in _LAUNCHER_VARIABLES)
    raise InvalidProblemError(
        f"{op}: no launcher variables (got none of {names}, expected a process started by "
        "torchrun, mpirun or srun)"
    )


def _share_unique_id(
    rank: int, world_size: int, rendezvous_file, run_id: str | None, timeout: float, op: str
) -> bytes:
    """Rank 0's unique id, on every rank, through MPI, a torch store or a file."""
    global _rendezvous_count
    _rendezvous_count += 1
    if any(name in os.environ for name in _MPI_VARIABLES):
        try:
            from mpi4py import MPI
        except ImportError:
            MPI = None
        if MPI is not None:
            return _share_through_mpi(MPI, rank)
    if "MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ:
        try:
            from torch.distributed import TCPStore
        except ImportError:
            TCPStore = None
        if TCPStore is not None:
            return _share_through_store(TCPStore, rank, world_size, timeout, _rendezvous_count)
    if rendezvous_file is not None:
        return _share_through_file(
            Path(rendezvous_file), rank, _run_id(run_id, op), _rendezvous_count, timeout, op
        )
    raise InvalidProblemError(
        f"{op}: no channel for the unique id (got no mpi4py under MPI, no torch store at "
        "MASTER_ADDR/MASTER_PORT and no rendezvous_file, expected one of them)"
    )


def _share_through_mpi(MPI, rank: int) -> bytes:
    """Through MPI_Bcast of the raw bytes from rank 0."""
    buffer = bytearray(get_unique_id() if rank == 0 else bytes(UNIQUE_ID_BYTES))
    MPI.COMM_WORLD.Bcast([buffer, MPI.BYTE], root=0)
    return bytes(buffer)


def _share_through_store(TCPStore, rank: int, world_size: int, timeout: float, count: int) -> bytes:
    """Through the store at MASTER_ADDR:MASTER_PORT: torchrun's agent hosts one there; without
    an agent, rank 0 hosts it."""
    import datetime

    run_id = os.environ.get(_TORCHELASTIC_RUN_VARIABLE)
    store = TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world_size,
        rank == 0 and run_id is None,
        timeout=datetime.timedelta(seconds=timeout),
    )
    # Each call on every rank takes the next key, so that repeated calls never read an old id.
    key = f"{_STORE_KEY}/{run_id or ''}/{count}"
    if rank == 0:
        store.set(key, get_unique_id())
    return bytes(store.get(key))


def _run_id(run_id: str | None, op: str) -> str:
    """The run id of the file rendezvous: the argument, ``$BARACUDA_RUN_ID``, or torchrun's
    run id with its restart count."""
    if run_id is None:
        run_id = os.environ.get(RUN_ID_VARIABLE) or None
    if run_id is None:
        elastic = os.environ.get(_TORCHELASTIC_RUN_VARIABLE)
        if elastic and elastic != _TORCHELASTIC_DEFAULT_RUN_ID:
            restarts = os.environ.get(_TORCHELASTIC_RESTART_VARIABLE, "0")
            run_id = f"{elastic}/restart-{restarts}"
    if run_id is None:
        raise InvalidProblemError(
            f"{op}: the file rendezvous needs a run id (got no run_id argument, no "
            f"${RUN_ID_VARIABLE} and no ${_TORCHELASTIC_RUN_VARIABLE} other than "
            f"{_TORCHELASTIC_DEFAULT_RUN_ID!r}, expected one, the same on every rank and new "
            "for each run, so that no rank reads the unique id of an earlier run)"
        )
    if not isinstance(run_id, str) or not run_id:
        raise InvalidProblemError(
            f"{op}: run_id must be a non-empty str (got {run_id!r}, expected a name of this run)"
        )
    if len(run_id.encode()) > _MAX_RUN_ID_BYTES:
        raise InvalidProblemError(
            f"{op}: run_id is too long (got {len(run_id.encode())} bytes of UTF-8, expected at "
            f"most {_MAX_RUN_ID_BYTES})"
        )
    return run_id


def _rendezvous_record(run_id: str, count: int, unique_id: bytes) -> bytes:
    """The rendezvous file's bytes."""
    encoded = run_id.encode()
    return (
        _RENDEZVOUS_MAGIC
        + _RENDEZVOUS_LENGTH.pack(len(encoded))
        + encoded
        + _RENDEZVOUS_COUNT.pack(count)
        + unique_id
    )


def _parse_rendezvous(data: bytes, path: Path, op: str) -> tuple[str, int, bytes]:
    """(run id, count, unique id) of a rendezvous file; :class:`InvalidProblemError` for
    anything but that exact format."""

    def refuse(what: str):
        return InvalidProblemError(
            f"{op}: {path} is not a baracuda rendezvous file ({what}); remove it, or give "
            "another rendezvous_file"
        )

    if not data.startswith(_RENDEZVOUS_MAGIC):
        raise refuse(
            f"got {data[: len(_RENDEZVOUS_MAGIC)]!r} first, expected the header "
            f"{_RENDEZVOUS_MAGIC!r}"
        )
    at = len(_RENDEZVOUS_MAGIC)
    if len(data) < at + _RENDEZVOUS_LENGTH.size:
        raise refuse(f"got {len(data)} bytes, expected the run id's length after the header")
    (run_id_bytes,) = _RENDEZVOUS_LENGTH.unpack_from(data, at)
    at += _RENDEZVOUS_LENGTH.size
    expected = at + run_id_bytes + _RENDEZVOUS_COUNT.size + UNIQUE_ID_BYTES
    if len(data) != expected:
        raise refuse(
            f"got {len(data)} bytes, expected {expected} for a run id of {run_id_bytes} bytes"
        )
    try:
        run_id = data[at : at + run_id_bytes].decode()
    except UnicodeDecodeError:
        raise refuse("got a run id that is not UTF-8, expected UTF-8") from None
    at += run_id_bytes
    (count,) = _RENDEZVOUS_COUNT.unpack_from(data, at)
    at += _RENDEZVOUS_COUNT.size
    return run_id, count, data[at:]


def _write_rendezvous(path: Path, record: bytes) -> None:
    """Write record to a new file of mode 0600 beside path, then rename it onto path: readers
    see no file or the whole record."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.partial")
    descriptor = os.open(
        partial,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        _RENDEZVOUS_FILE_MODE,
    )
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(record)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise


def _read_rendezvous(path: Path, op: str) -> tuple[str, int, bytes] | None:
    """The parsed rendezvous file, or None while there is none. Refuses a link, a file that is
    not regular, not this user's, or writable by others."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise InvalidProblemError(
            f"{op}: cannot open the rendezvous file {path} (got {type(error).__name__}: "
            f"{error}, expected a regular file, not a link)"
        ) from error
    with os.fdopen(descriptor, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InvalidProblemError(
                f"{op}: the rendezvous file {path} is not a regular file (got mode "
                f"{info.st_mode:o}, expected a file rank 0 wrote)"
            )
        if info.st_uid != os.getuid() or info.st_mode & _FOREIGN_WRITE_BITS:
            raise InvalidProblemError(
                f"{op}: the rendezvous file {path} could come from another user (got owner "
                f"{info.st_uid} and mode {stat.S_IMODE(info.st_mode):o}, expected owner "
                f"{os.getuid()} and no write permission for group or others)"
            )
        data = file.read(_MAX_RENDEZVOUS_BYTES + 1)
    return _parse_rendezvous(data, path, op)


def _share_through_file(
    path: Path, rank: int, run_id: str, count: int, timeout: float, op: str
) -> bytes:
    """Rank 0 writes its unique id with the run id and count; the others wait for the file of
    their run id and count (a file of an earlier run or call is waited past)."""
    if rank == 0:
        unique_id = get_unique_id()
        _write_rendezvous(path, _rendezvous_record(run_id, count, unique_id))
        return unique_id
    deadline = time.monotonic() + timeout
    while True:
        found = _read_rendezvous(path, op)
        if found is not None and found[:2] == (run_id, count):
            return found[2]
        if time.monotonic() > deadline:
            seen = (
                "no file"
                if found is None
                else f"only the file of run {found[0]!r}, call {found[1]}"
            )
            raise InvalidProblemError(
                f"{op}: rank 0 did not write the rendezvous file in time (got {seen} at {path} "
                f"after {timeout} s, expected run {run_id!r}, call {count}, written by rank 0)"
            )
        time.sleep(_RENDEZVOUS_POLL_SECONDS)
