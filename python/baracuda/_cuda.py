"""Streams, the current device and stream-ordered allocation, through cuda.core.

A stream crosses the C ABI as a ``cudaStream_t`` held in an int; 0 is the legacy default
stream. Nothing here touches the driver at import: cuda.core and cuda.bindings are imported
by the functions that need a device, so ``import baracuda`` works on a machine without one.
"""

from __future__ import annotations

import operator

from ._errors import CudaError, InvalidProblemError

LEGACY_DEFAULT_STREAM = 0
"""The stream handle that ``stream=None`` means: the legacy default stream."""

# Special handles of the CUDA API (CU_STREAM_LEGACY, CU_STREAM_PER_THREAD); DLPack and the
# CUDA Array Interface use the same two values for the two default streams.
CU_STREAM_LEGACY = 1
CU_STREAM_PER_THREAD = 2

STREAM_PROTOCOL_VERSION = 0
"""The version of the ``__cuda_stream__`` protocol understood here."""


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
        A negative handle, or an unknown ``__cuda_stream__`` protocol version.
    """
    if stream is None:
        return LEGACY_DEFAULT_STREAM
    protocol = getattr(type(stream), "__cuda_stream__", None)
    if protocol is not None:
        version, handle = stream.__cuda_stream__()
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


def core_stream(handle: int):
    """Return the ``cuda.core.Stream`` of a handle (the shared objects for default streams)."""
    from cuda.core import LEGACY_DEFAULT_STREAM as CORE_LEGACY_STREAM
    from cuda.core import PER_THREAD_DEFAULT_STREAM as CORE_PER_THREAD_STREAM
    from cuda.core import Stream

    if _canonical(handle) == CU_STREAM_LEGACY:
        return CORE_LEGACY_STREAM
    if handle == CU_STREAM_PER_THREAD:
        return CORE_PER_THREAD_STREAM
    return Stream.from_handle(handle)


def order_after(producer: int, consumer: int) -> None:
    """Make work enqueued later on ``consumer`` wait for the work already on ``producer``."""
    if same_stream(producer, consumer):
        return
    core_stream(consumer).wait(core_stream(producer))


def current_device(op: str):
    """Return the current ``cuda.core.Device``, making its primary context current if none is.

    With no current context, the device is 0, as the CUDA runtime (and so libbaracuda)
    picks it.

    Raises
    ------
    CudaError
        No driver or no device.
    """
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


def allocate(nbytes: int, stream: int, device):
    """Allocate ``nbytes`` of memory on ``device`` (a ``cuda.core.Device``), ordered on
    ``stream``.

    Returns
    -------
    cuda.core.Buffer
        Returned to the device's memory pool on ``stream`` when collected, after the work
        enqueued there before.
    """
    return device.memory_resource.allocate(nbytes, stream=core_stream(stream))
