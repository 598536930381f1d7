"""Streams, the current device and stream-ordered allocation, through cuda.core.

A stream crosses the C ABI as a ``cudaStream_t`` held in an int; 0 is the legacy default
stream. Nothing here touches the driver at import: cuda.core and cuda.bindings are imported
by the functions that need a device, so ``import baracuda`` works on a machine without one.

Every function here that reaches cuda.core or cuda.bindings first calls :func:`require_device`,
which asks the driver once per process whether a device is usable. Without one, cuda.core must
not be reached at all: its first driver call fails while holding a lock that it never releases,
so every later device call of the process would block. Each failure of a cuda.core or
cuda.bindings call is raised as :class:`CudaError` naming the call.
"""

from __future__ import annotations

import operator
import threading

from ._errors import CudaError, InvalidProblemError

LEGACY_DEFAULT_STREAM = 0
"""The stream handle that ``stream=None`` means: the legacy default stream."""

# Special handles of the CUDA API (CU_STREAM_LEGACY, CU_STREAM_PER_THREAD); DLPack and the
# CUDA Array Interface use the same two values for the two default streams.
CU_STREAM_LEGACY = 1
CU_STREAM_PER_THREAD = 2

STREAM_PROTOCOL_VERSION = 0
"""The version of the ``__cuda_stream__`` protocol understood here."""
STREAM_PROTOCOL_FIELDS = 2
"""``__cuda_stream__()`` returns ``(version, handle)``."""


def stream_handle(stream: object, op: str) -> int:
    """Return the ``cudaStream_t`` (as an int) that ``stream`` names.

    Parameters
    ----------
    stream : None, int or object with ``__cuda_stream__``
        ``None`` is the legacy default stream (0); an int is a stream handle; an object with
        ``__cuda_stream__`` (cuda.core, PyTorch, CuPy streams) returns
        ``(version, handle)``.
    op : str
        The operation named in error messages.

    Returns
    -------
    int
        The handle.

    Raises
    ------
    TypeError
        ``stream`` is none of the above.
    InvalidProblemError
        A negative handle, a ``__cuda_stream__`` that fails or returns no ``(version,
        handle)`` pair of ints, or an unknown ``__cuda_stream__`` protocol version.
    """
    if stream is None:
        return LEGACY_DEFAULT_STREAM
    protocol = getattr(type(stream), "__cuda_stream__", None)
    if protocol is not None:
        try:
            reported = stream.__cuda_stream__()
        except Exception as error:
            raise InvalidProblemError(
                f"{op}: stream.__cuda_stream__() failed (got {type(error).__name__}: {error}, "
                "expected (version, handle))"
            ) from error
        if not isinstance(reported, (tuple, list)) or len(reported) != STREAM_PROTOCOL_FIELDS:
            raise InvalidProblemError(
                f"{op}: stream.__cuda_stream__() is not a (version, handle) pair (got "
                f"{type(reported).__name__} {reported!r:.60}, expected a 2-tuple of int)"
            )
        version, handle = reported
        if version != STREAM_PROTOCOL_VERSION:
            raise InvalidProblemError(
                f"{op}: stream speaks an unknown __cuda_stream__ protocol version "
                f"(got {version!r}, expected {STREAM_PROTOCOL_VERSION})"
            )
        return _handle_value(handle, op)
    if isinstance(stream, bool) or not hasattr(type(stream), "__index__"):
        raise TypeError(
            f"{op}: stream is not a CUDA stream (got {type(stream).__name__}, expected None, "
            "an int handle or an object with __cuda_stream__)"
        )
    return _handle_value(stream, op)


def _handle_value(handle: object, op: str) -> int:
    if isinstance(handle, bool) or not hasattr(type(handle), "__index__"):
        raise InvalidProblemError(
            f"{op}: stream handle is not an integer (got {type(handle).__name__} {handle!r:.60}, "
            "expected a cudaStream_t as an int)"
        )
    value = operator.index(handle)
    if value < 0:
        raise InvalidProblemError(
            f"{op}: stream handle is negative (got {value}, expected a cudaStream_t >= 0)"
        )
    return value


def same_stream(first: int, second: int) -> bool:
    """Whether two handles name one stream (0 and ``CU_STREAM_LEGACY`` are both legacy)."""
    return _canonical(first) == _canonical(second)


def _canonical(handle: int) -> int:
    return CU_STREAM_LEGACY if handle == LEGACY_DEFAULT_STREAM else handle


# ---------------------------------------------------------------- device presence

_probe_lock = threading.Lock()
_probed = False
_absence: str | None = None  # why no device is usable; None when one is


def require_device(op: str) -> None:
    """Raise :class:`CudaError` unless a CUDA driver and at least one device are usable.

    The driver is asked once per process (``cuInit``, then ``cuDeviceGetCount``): a driver that
    fails to initialise stays failed for the process, and asking again through cuda.core would
    block. Every later call answers from that first probe.

    Parameters
    ----------
    op : str
        The operation named in the message.

    Raises
    ------
    CudaError
        No driver, a driver that fails to initialise, or no device.
    """
    reason = _device_absence()
    if reason is not None:
        raise CudaError(
            f"{op}: no usable CUDA device (got {reason}, expected a CUDA driver "
            "and at least one device)"
        )


def _device_absence() -> str | None:
    global _probed, _absence
    if not _probed:
        with _probe_lock:
            if not _probed:
                _absence = _probe_device()
                _probed = True
    return _absence


def _probe_device() -> str | None:
    """Why no device is usable (a phrase naming the failing call), or None."""
    try:
        from cuda.bindings import driver

        (error,) = driver.cuInit(0)
        if error != driver.CUresult.CUDA_SUCCESS:
            return f"cuInit returned {error.name}"
        error, count = driver.cuDeviceGetCount()
        if error != driver.CUresult.CUDA_SUCCESS:
            return f"cuDeviceGetCount returned {error.name}"
    except Exception as error:  # no driver library, a broken installation
        return f"cuInit raised {type(error).__name__}: {error}"
    if count == 0:
        return "cuDeviceGetCount returned 0 devices"
    return None


def _cuda_error(op: str, call: str, error: Exception, expected: str) -> CudaError:
    return CudaError(
        f"{op}: {call} failed (got {type(error).__name__}: {error}, expected {expected})"
    )


# ---------------------------------------------------------------- streams and devices


def core_stream(handle: int, op: str):
    """Return the ``cuda.core.Stream`` of a handle (the shared objects for default streams).

    Raises
    ------
    CudaError
        No usable device, or cuda.core refuses the handle.
    """
    require_device(op)
    try:
        from cuda.core import LEGACY_DEFAULT_STREAM as CORE_LEGACY_STREAM
        from cuda.core import PER_THREAD_DEFAULT_STREAM as CORE_PER_THREAD_STREAM
        from cuda.core import Stream

        if _canonical(handle) == CU_STREAM_LEGACY:
            return CORE_LEGACY_STREAM
        if handle == CU_STREAM_PER_THREAD:
            return CORE_PER_THREAD_STREAM
        return Stream.from_handle(handle)
    except Exception as error:
        raise _cuda_error(
            op, f"Stream.from_handle({handle:#x})", error, "a stream of the current device"
        ) from error


def order_after(producer: int, consumer: int, op: str) -> None:
    """Make work enqueued later on ``consumer`` wait for the work already on ``producer``.

    Needs no device when both name one stream.

    Raises
    ------
    CudaError
        No usable device, or the wait could not be enqueued.
    """
    if same_stream(producer, consumer):
        return
    consumer_stream = core_stream(consumer, op)
    producer_stream = core_stream(producer, op)
    try:
        consumer_stream.wait(producer_stream)
    except Exception as error:
        raise _cuda_error(
            op, "Stream.wait", error, f"stream {consumer:#x} ordered after stream {producer:#x}"
        ) from error


def current_device(op: str):
    """Return the current ``cuda.core.Device``, making its primary context current if none is.

    With no current context, the device is 0, as the CUDA runtime (and so libbaracuda)
    picks it.

    Raises
    ------
    CudaError
        No driver or no device.
    """
    require_device(op)
    try:
        from cuda.bindings import driver
        from cuda.core import Device

        device = Device()
        error, context = driver.cuCtxGetCurrent()
        if error != driver.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"cuCtxGetCurrent returned {error.name}")
        if int(context) == 0:
            device.set_current()
    except Exception as error:
        raise CudaError(
            f"{op}: no usable CUDA device (got {type(error).__name__}: {error}, "
            "expected a current CUDA device)"
        ) from error
    return device


# Per thread: whether ensure_context has seen a current context there. A context, once current
# on a thread, stays current (nothing in baracuda pops it), so each call of the hot path (one
# per DLPack tensor) asks the driver once per thread, not once per tensor.
_thread_context = threading.local()


def ensure_context(device_id: int, op: str) -> None:
    """Make ``device_id``'s primary context current on this thread if no context is.

    A thread that has not used CUDA yet has none, and cuda.core's DLPack import orders the
    producer's stream through the driver, which needs one. Without a usable device this does
    nothing: the caller's later steps name what is missing. The driver is asked once per
    thread.

    Raises
    ------
    CudaError
        The context could not be made current.
    """
    if getattr(_thread_context, "current", False) or _device_absence() is not None:
        return
    try:
        from cuda.bindings import driver
        from cuda.core import Device

        error, context = driver.cuCtxGetCurrent()
        if error != driver.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"cuCtxGetCurrent returned {error.name}")
        if int(context) == 0:
            Device(device_id).set_current()
    except Exception as error:
        raise _cuda_error(
            op, f"making device {device_id} current", error, "a current CUDA context"
        ) from error
    _thread_context.current = True


def allocate(nbytes: int, stream: int, device, op: str):
    """Allocate ``nbytes`` of memory on ``device`` (a ``cuda.core.Device``), ordered on
    ``stream``.

    Returns
    -------
    cuda.core.Buffer
        Returned to the device's memory pool on ``stream`` when collected, after the work
        enqueued there before.

    Raises
    ------
    CudaError
        No usable device, or the allocation failed (out of memory).
    """
    core = core_stream(stream, op)
    try:
        return device.memory_resource.allocate(nbytes, stream=core)
    except Exception as error:
        raise _cuda_error(
            op, f"allocating {nbytes} bytes", error, f"{nbytes} bytes of device memory"
        ) from error
