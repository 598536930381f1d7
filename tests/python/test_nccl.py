"""baracuda.nccl without a GPU: which NCCL is loaded (each case in a fresh interpreter, since a
loaded NCCL stays loaded), the Communicator's single ownership and its leases, wait's
failure handling, and the file rendezvous of ``Communicator.from_env``.

The Communicator cases stand in for NCCL by replacing the ``_capi`` calls, so no NCCL is
needed; the cases that need a real NCCL use the nvidia-nccl wheel and skip without it.
"""

import ast
import copy
import math
import os
import pickle
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import baracuda
import pytest
from baracuda import _capi, _ring_attention, nccl

FAKE_HANDLE = 0x1000
FAKE_UNIQUE_ID = bytes(range(nccl.UNIQUE_ID_BYTES))
OTHER_UNIQUE_ID = bytes(reversed(FAKE_UNIQUE_ID))
RUN_ID = "run-under-test"
# Long enough for a rank to be waiting when the other one acts; short enough for a quick suite.
WAIT_SECONDS = 10.0
SETTLE_SECONDS = 0.2
SHORT_TIMEOUT = 0.3
LONG_PATH_BYTES = 3000
PATH_COMPONENT_BYTES = 100


def _run_python(code, **environment):
    """Run code in a fresh interpreter; its stdout (stripped)."""
    env = dict(os.environ, **environment)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _error_of(call):
    """Python code that prints type and message of the error `call` raises, or 'no error'."""
    return (
        "import baracuda, pathlib\n"
        "try:\n"
        f"    {call}\n"
        "except Exception as error:\n"
        "    print(type(error).__name__, error)\n"
        "else:\n"
        "    print('no error')\n"
    )


def _wheel_nccl():
    """The nvidia-nccl wheel's libnccl.so.2, or skip."""
    try:
        import nvidia.nccl
    except ImportError:
        pytest.skip("needs the nvidia-nccl-cu13 wheel (the 'nccl' extra)")
    for folder in nvidia.nccl.__path__:
        library = Path(folder) / "lib" / "libnccl.so.2"
        if library.is_file():
            return library
    pytest.skip("the nvidia-nccl wheel holds no lib/libnccl.so.2")


# ---------------------------------------------------------------- which NCCL is loaded


def test_load_refuses_an_empty_path():
    out = _run_python(_error_of("baracuda.nccl.load('')"))
    assert out == (
        'InvalidProblemError nccl_load: path is empty (got "", expected the path '
        "of libnccl.so.2, or NULL for the search order)"
    )


@pytest.mark.parametrize("path", ["/tmp/lib\0nccl.so.2", b"/tmp/lib\0nccl.so.2"])
def test_load_refuses_a_nul_byte(path):
    with pytest.raises(baracuda.InvalidProblemError, match="nccl_load: path holds a NUL byte"):
        nccl.load(path)


@pytest.mark.parametrize(
    "spelling",
    [
        "'/nonexistent/café/libnccl.so.2'",
        "'/nonexistent/café/libnccl.so.2'.encode()",
        "pathlib.Path('/nonexistent/café/libnccl.so.2')",
    ],
)
def test_load_encodes_str_bytes_and_paths_alike(spelling):
    out = _run_python(_error_of(f"baracuda.nccl.load({spelling})"))
    assert out.startswith(
        "LibraryNotLoadedError nccl_load: cannot load NCCL (got explicit path "
        "'/nonexistent/café/libnccl.so.2': "
    )


def test_load_rejects_a_non_path():
    with pytest.raises(TypeError):
        nccl.load(3)


def test_a_long_refusal_comes_back_whole():
    path = "/nonexistent" + "".join(
        "/" if n % PATH_COMPONENT_BYTES == 0 else "p"
        for n in range(len("/nonexistent"), LONG_PATH_BYTES)
    )
    assert len(path) == LONG_PATH_BYTES
    out = _run_python(_error_of(f"baracuda.nccl.load({path!r})"))
    assert out.startswith(
        f"LibraryNotLoadedError nccl_load: cannot load NCCL (got explicit path '{path}': "
    )
    assert out.endswith(", expected that path to be libnccl.so.2)")


@pytest.mark.parametrize(
    "value, reason",
    [
        (
            "/nonexistent/baracuda-env/libnccl.so.2",
            "/nonexistent/baracuda-env/libnccl.so.2: cannot open shared object file: No such file "
            "or directory",
        ),
        ("libm.so.6", "no symbol ncclGetVersion (not an NCCL 2.13+ library)"),
    ],
)
def test_the_variable_is_the_only_place_tried(value, reason):
    """Even where an NCCL is loadable by the search order (the wheel), it is not used."""
    out = _run_python(_error_of("baracuda.nccl.get_unique_id()"), BARACUDA_NCCL_LIBRARY=value)
    assert out == (
        f"LibraryNotLoadedError nccl_get_unique_id: cannot load NCCL (got "
        f"BARACUDA_NCCL_LIBRARY '{value}': {reason}, expected BARACUDA_NCCL_LIBRARY "
        "to name libnccl.so.2, the only place tried while it is set)"
    )


def test_a_second_load_of_another_file_is_refused(tmp_path):
    library = _wheel_nccl()
    link = tmp_path / "libnccl.so.2"
    link.symlink_to(library)
    out = _run_python(
        "import baracuda, pathlib\n"
        f"baracuda.nccl.load({str(library)!r})\n"
        f"baracuda.nccl.load({str(library).encode()!r})\n"
        f"baracuda.nccl.load(pathlib.Path({str(link)!r}))\n"
        "baracuda.nccl.load()\n"
        "print(baracuda.nccl.library_path())\n"
        + _error_of("baracuda.nccl.load('libm.so.6')").split("\n", 1)[1]
    )
    loaded, refusal = out.split("\n")
    assert Path(loaded).resolve() == library.resolve()
    assert refusal == (
        f"InvalidProblemError nccl_load: another NCCL is loaded already (got "
        f"path 'libm.so.6', expected '{loaded}', the library loaded first: a "
        "loaded NCCL stays loaded for the life of the process)"
    )


def test_the_variable_opens_no_second_copy(tmp_path):
    """A framework loaded the wheel's NCCL: the variable naming another file is refused, the
    same file (through a link) is used."""
    library = _wheel_nccl()
    link = tmp_path / "libnccl.so.2"
    link.symlink_to(library)
    preload = f"import ctypes\nctypes.CDLL({str(library)!r}, mode=ctypes.RTLD_GLOBAL)\n"
    out = _run_python(
        preload + _error_of("baracuda.nccl.load()"), BARACUDA_NCCL_LIBRARY="libm.so.6"
    )
    assert out.startswith(
        "LibraryNotLoadedError nccl_load: cannot load NCCL (got "
        "BARACUDA_NCCL_LIBRARY 'libm.so.6': another libnccl.so.2 is loaded "
        "in this process already, from '"
    )
    assert "a second NCCL copy beside it is not opened" in out
    out = _run_python(
        preload + "import baracuda\nbaracuda.nccl.load()\nprint(baracuda.nccl.library_path())\n",
        BARACUDA_NCCL_LIBRARY=str(link),
    )
    assert Path(out).resolve() == library.resolve()


# ---------------------------------------------------------------- a stand-in communicator


class FakeNccl:
    """Replaces the communicator calls of ``_capi`` and records them."""

    def __init__(self, monkeypatch):
        self.calls = []
        self.wait_error = None
        self.wait_started = threading.Event()
        self.wait_release = None
        monkeypatch.setattr(_capi, "nccl_comm_world_size", lambda handle: 1)
        monkeypatch.setattr(_capi, "nccl_comm_rank", lambda handle: 0)
        monkeypatch.setattr(_capi, "nccl_comm_device", lambda handle: 0)
        monkeypatch.setattr(
            _capi, "nccl_comm_destroy", lambda handle: self.calls.append(("destroy", handle))
        )
        monkeypatch.setattr(
            _capi, "nccl_comm_abort", lambda handle: self.calls.append(("abort", handle))
        )
        monkeypatch.setattr(_capi, "nccl_comm_wait", self.wait)

    def wait(self, handle, stream, seconds, abort):
        self.calls.append(("wait", handle, stream, seconds, abort))
        self.wait_started.set()
        if self.wait_release is not None:
            assert self.wait_release.wait(WAIT_SECONDS)
        if self.wait_error is not None:
            raise self.wait_error

    def ends(self):
        return [call for call in self.calls if call[0] in ("destroy", "abort")]


@pytest.fixture
def fake(monkeypatch):
    return FakeNccl(monkeypatch)


def _hold_lease(comm, op="a ring run"):
    """Start a thread that holds a lease on comm until the returned event is set."""
    held, release = threading.Event(), threading.Event()

    def run():
        with _ring_attention._comm_lease(comm, op) as handle:
            assert handle == comm.handle
            held.set()
            release.wait(WAIT_SECONDS)

    thread = threading.Thread(target=run)
    thread.start()
    assert held.wait(WAIT_SECONDS)
    return thread, release


@pytest.mark.parametrize(
    "duplicate, what",
    [
        (lambda comm: pickle.dumps(comm), "cannot be pickled"),
        (lambda comm: pickle.dumps(comm, protocol=0), "cannot be pickled"),
        (copy.copy, "cannot be copied"),
        (copy.deepcopy, "cannot be deep-copied"),
    ],
)
def test_a_communicator_has_one_owner(fake, duplicate, what):
    comm = nccl.Communicator.from_handle(FAKE_HANDLE, owned=True)
    with pytest.raises(TypeError, match=f"Communicator {what}"):
        duplicate(comm)
    comm.destroy()
    assert fake.ends() == [("destroy", FAKE_HANDLE)]


@pytest.mark.parametrize("end", ["destroy", "abort"])
def test_ending_is_refused_while_a_run_holds_the_handle(fake, end):
    comm = nccl.Communicator.from_handle(FAKE_HANDLE, owned=True)
    thread, release = _hold_lease(comm)
    try:
        with pytest.raises(
            baracuda.InvalidProblemError,
            match=rf"Communicator.{end}: the communicator is in use \(got 1 ",
        ):
            getattr(comm, end)()
        assert not comm.closed and fake.ends() == []
    finally:
        release.set()
        thread.join(WAIT_SECONDS)
    getattr(comm, end)()
    assert comm.closed and fake.ends() == [(end, FAKE_HANDLE)]


def test_ending_is_refused_while_wait_runs(fake):
    comm = nccl.Communicator.from_handle(FAKE_HANDLE, owned=True)
    fake.wait_release = threading.Event()
    waiter = threading.Thread(target=comm.wait, kwargs={"timeout": WAIT_SECONDS})
    waiter.start()
    try:
        assert fake.wait_started.wait(WAIT_SECONDS)
        with pytest.raises(baracuda.InvalidProblemError, match="the communicator is in use"):
            comm.destroy()
        assert fake.ends() == []
    finally:
        fake.wait_release.set()
        waiter.join(WAIT_SECONDS)
    comm.destroy()
    assert fake.ends() == [("destroy", FAKE_HANDLE)]


def test_a_lease_of_a_closed_communicator_is_refused(fake):
    comm = nccl.Communicator.from_handle(FAKE_HANDLE, owned=True)
    lease = _ring_attention._comm_lease(comm, "a ring run")
    comm.destroy()
    with pytest.raises(
        baracuda.InvalidProblemError, match=r"a ring run: the communicator is closed"
    ):
        lease.__enter__()
    with pytest.raises(baracuda.InvalidProblemError, match="the communicator is closed"):
        _ring_attention._comm_lease(comm, "a ring run")
    with _ring_attention._comm_lease(None, "a ring run") as handle:
        assert handle == 0


@pytest.mark.parametrize("timeout", [math.nan, -math.inf, 0.0, -1.0])
def test_wait_refuses_a_timeout_that_is_not_a_duration(fake, timeout):
    comm = nccl.Communicator.from_handle(FAKE_HANDLE, owned=True)
    with pytest.raises(
        baracuda.InvalidProblemError, match=r"Communicator.wait: timeout must be positive seconds"
    ):
        comm.wait(timeout=timeout)
    assert fake.calls == [] and not comm.closed


@pytest.mark.parametrize("timeout, seconds", [(None, math.inf), (math.inf, math.inf), (2, 2.0)])
def test_wait_passes_the_timeout_and_never_lets_c_abort(fake, timeout, seconds):
    comm = nccl.Communicator.from_handle(FAKE_HANDLE, owned=True)
    comm.wait(timeout=timeout)
    assert fake.calls == [("wait", FAKE_HANDLE, 0, seconds, False)]


@pytest.mark.parametrize("owned", [True, False])
def test_a_cuda_error_of_wait_leaves_the_communicator(fake, owned):
    comm = nccl.Communicator.from_handle(FAKE_HANDLE, owned=owned)
    fake.wait_error = baracuda.CudaError("nccl_comm_wait_no_abort: cudaStreamQuery failed")
    with pytest.raises(baracuda.CudaError):
        comm.wait(timeout=1.0)
    assert not comm.closed and fake.ends() == []


def test_an_nccl_error_of_wait_aborts_an_owned_communicator(fake):
    comm = nccl.Communicator.from_handle(FAKE_HANDLE, owned=True)
    fake.wait_error = baracuda.NcclError("nccl_comm_wait_no_abort: peer gone")
    with pytest.raises(
        baracuda.NcclError, match="peer gone; Communicator.wait aborted the communicator"
    ):
        comm.wait(timeout=1.0)
    assert comm.closed and fake.ends() == [("abort", FAKE_HANDLE)]
    comm.destroy()
    assert fake.ends() == [("abort", FAKE_HANDLE)]


def test_an_nccl_error_of_wait_leaves_a_borrowed_communicator_to_its_owner(fake):
    comm = nccl.Communicator.from_handle(FAKE_HANDLE, owned=False)
    fake.wait_error = baracuda.NcclError("nccl_comm_wait_no_abort: left to its owner")
    with pytest.raises(baracuda.NcclError, match="^nccl_comm_wait_no_abort: left to its owner$"):
        comm.wait(timeout=1.0)
    assert not comm.closed and fake.ends() == []
    comm.abort()
    assert comm.closed and fake.ends() == []


def test_the_abort_after_a_failed_wait_waits_for_other_runs(fake):
    comm = nccl.Communicator.from_handle(FAKE_HANDLE, owned=True)
    fake.wait_error = baracuda.NcclError("nccl_comm_wait_no_abort: peer gone")
    thread, release = _hold_lease(comm)
    try:
        with pytest.raises(baracuda.NcclError):
            comm.wait(timeout=1.0)
        assert comm.closed and fake.ends() == []
    finally:
        release.set()
        thread.join(WAIT_SECONDS)
    assert fake.ends() == [("abort", FAKE_HANDLE)]


# ---------------------------------------------------------------- the file rendezvous


@pytest.fixture
def unique_ids(monkeypatch):
    """Rank 0's get_unique_id returns FAKE_UNIQUE_ID."""
    monkeypatch.setattr(nccl, "get_unique_id", lambda: FAKE_UNIQUE_ID)


def _share(path, rank, run_id=RUN_ID, count=1, timeout=WAIT_SECONDS):
    return nccl._share_through_file(path, rank, run_id, count, timeout, "rendezvous")


def _read_in_thread(path, **options):
    """Start rank 1 reading; returns (thread, results) with what it got or raised."""
    results = {}

    def read():
        try:
            results["id"] = _share(path, 1, **options)
        except Exception as error:
            results["error"] = error

    thread = threading.Thread(target=read)
    thread.start()
    return thread, results


def test_no_pickle_in_nccl():
    tree = ast.parse(Path(nccl.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "pickle" not in imported and "pickle" not in vars(nccl)


def test_rank_zero_hands_its_id_to_a_waiting_rank(tmp_path, unique_ids):
    path = tmp_path / "rendezvous"
    thread, results = _read_in_thread(path)
    time.sleep(SETTLE_SECONDS)
    assert _share(path, 0) == FAKE_UNIQUE_ID
    thread.join(WAIT_SECONDS)
    assert results == {"id": FAKE_UNIQUE_ID}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["rendezvous"]
    data = path.read_bytes()
    assert data == nccl._rendezvous_record(RUN_ID, 1, FAKE_UNIQUE_ID)
    assert data.endswith(FAKE_UNIQUE_ID)


@pytest.mark.parametrize("stale_run, stale_count", [("an-earlier-run", 1), (RUN_ID, 0)])
def test_a_file_of_another_run_or_call_is_not_read(tmp_path, unique_ids, stale_run, stale_count):
    path = tmp_path / "rendezvous"
    nccl._write_rendezvous(path, nccl._rendezvous_record(stale_run, stale_count, OTHER_UNIQUE_ID))
    with pytest.raises(
        baracuda.InvalidProblemError,
        match=rf"rank 0 did not write the rendezvous file in time \(got only the "
        rf"file of run '{stale_run}', call {stale_count} at ",
    ):
        _share(path, 1, timeout=SHORT_TIMEOUT)
    thread, results = _read_in_thread(path)
    time.sleep(SETTLE_SECONDS)
    _share(path, 0)
    thread.join(WAIT_SECONDS)
    assert results == {"id": FAKE_UNIQUE_ID}


def _tamper(record):
    magic = len(nccl._RENDEZVOUS_MAGIC)
    return {
        "pickled": pickle.dumps(FAKE_UNIQUE_ID),
        "another header": b"X" + record[1:],
        "truncated": record[:-1],
        "one byte more": record + b"\0",
        "a run id length past the end": record[:magic] + b"\xff\xff" + record[magic + 2 :],
        "empty": b"",
    }


@pytest.mark.parametrize("kind", list(_tamper(b"x" * 64)))
def test_a_tampered_file_is_refused_at_once(tmp_path, kind):
    path = tmp_path / "rendezvous"
    record = nccl._rendezvous_record(RUN_ID, 1, FAKE_UNIQUE_ID)
    nccl._write_rendezvous(path, _tamper(record)[kind])
    start = time.monotonic()
    with pytest.raises(
        baracuda.InvalidProblemError,
        match=r"rendezvous: .* is not a baracuda rendezvous file \(got ",
    ):
        _share(path, 1)
    assert time.monotonic() - start < WAIT_SECONDS / 2


def test_a_file_others_can_write_is_refused(tmp_path):
    path = tmp_path / "rendezvous"
    nccl._write_rendezvous(path, nccl._rendezvous_record(RUN_ID, 1, FAKE_UNIQUE_ID))
    path.chmod(0o620)
    with pytest.raises(
        baracuda.InvalidProblemError,
        match=r"could come from another user \(got owner \d+ and mode 620",
    ):
        _share(path, 1)


def test_a_link_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    nccl._write_rendezvous(target, nccl._rendezvous_record(RUN_ID, 1, FAKE_UNIQUE_ID))
    path = tmp_path / "rendezvous"
    path.symlink_to(target)
    with pytest.raises(
        baracuda.InvalidProblemError,
        match=r"cannot open the rendezvous file .* expected a regular file, not "
        r"a link",
    ):
        _share(path, 1)


@pytest.fixture
def launched_rank_one(monkeypatch, no_launcher_environment):
    """A process that looks like rank 1 of 2 under a launcher without MPI or a torch store."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")


@pytest.mark.parametrize("elastic", [None, "none"])
def test_the_file_rendezvous_needs_a_run_id(tmp_path, monkeypatch, launched_rank_one, elastic):
    if elastic is not None:
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", elastic)
    with pytest.raises(
        baracuda.InvalidProblemError,
        match=r"Communicator.from_env: the file rendezvous needs a run id \(got "
        r"no run_id argument, no \$BARACUDA_RUN_ID",
    ):
        nccl.Communicator.from_env(rendezvous_file=tmp_path / "id", timeout=SHORT_TIMEOUT)
    assert not (tmp_path / "id").exists()


@pytest.mark.parametrize(
    "setting, expected",
    [
        ({"run_id": "explicit"}, "explicit"),
        ({"BARACUDA_RUN_ID": "from-variable"}, "from-variable"),
        ({"TORCHELASTIC_RUN_ID": "job7", "TORCHELASTIC_RESTART_COUNT": "2"}, "job7/restart-2"),
        ({"TORCHELASTIC_RUN_ID": "job7"}, "job7/restart-0"),
    ],
)
def test_where_the_run_id_comes_from(tmp_path, monkeypatch, launched_rank_one, setting, expected):
    argument = setting.pop("run_id", None)
    for name, value in setting.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(
        baracuda.InvalidProblemError,
        match=rf"rank 0 did not write the rendezvous file in time \(got no file "
        rf"at .* expected run '{expected}', call \d+",
    ):
        nccl.Communicator.from_env(
            rendezvous_file=tmp_path / "id", run_id=argument, timeout=SHORT_TIMEOUT
        )


def test_mpi_broadcasts_the_raw_bytes(monkeypatch):
    """Under MPI the id goes through Bcast of a byte buffer, not a pickled object."""
    sent = {}

    class World:
        @staticmethod
        def Bcast(message, root):
            buffer, kind = message
            assert (kind, root, len(buffer)) == ("BYTE", 0, nccl.UNIQUE_ID_BYTES)
            buffer[:] = sent.setdefault("id", FAKE_UNIQUE_ID)

    mpi = type("MPI", (), {"COMM_WORLD": World, "BYTE": "BYTE"})
    assert nccl._share_through_mpi(mpi, 1) == FAKE_UNIQUE_ID
    monkeypatch.setattr(nccl, "get_unique_id", lambda: OTHER_UNIQUE_ID)
    sent["id"] = OTHER_UNIQUE_ID
    assert nccl._share_through_mpi(mpi, 0) == OTHER_UNIQUE_ID
