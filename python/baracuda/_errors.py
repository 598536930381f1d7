"""Exceptions of baracuda: one class per ``baracuda_status``, each carrying the C message.

Every exception's ``args`` are the arguments of its constructor, so the default pickling of
exceptions rebuilds it exactly (type, message, sizes); ``str(error)`` is the message alone.
"""

from __future__ import annotations

# The values of baracuda_status, written here once for Python: _capi imports this module, so
# it cannot take them from the binding. tests/python/test_c_header.py checks them (and that
# each failing status has its class) against baracuda.h.
STATUS_SUCCESS = 0
STATUS_UNSUPPORTED = 1
STATUS_INVALID_PROBLEM = 2
STATUS_BUFFER_TOO_SMALL = 3
STATUS_WORKSPACE_TOO_SMALL = 4
STATUS_CUDA_ERROR = 5
STATUS_NCCL_ERROR = 6
STATUS_LIBRARY_NOT_LOADED = 7
STATUS_INTERNAL = 8


class BaracudaError(Exception):
    """Base of every error that baracuda raises for a failing ``baracuda_status``.

    Parameters
    ----------
    message : str
        The reason, in the form ``"<op>: <what> (got X, expected Y)"``; for errors from the
        C library, ``baracuda_last_error_message()``.
    status : int
        The ``baracuda_status`` value.

    Attributes
    ----------
    status : int
        The ``baracuda_status`` value.
    message : str
        The reason; also ``str(error)``.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, status)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


class _StatusError(BaracudaError):
    """A :class:`BaracudaError` whose subclass fixes ``status`` (a class attribute)."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)
        self.message = message


class UnsupportedError(_StatusError):
    """A valid problem that this build or device cannot run (``BARACUDA_STATUS_UNSUPPORTED``)."""

    status = STATUS_UNSUPPORTED


class InvalidProblemError(_StatusError, ValueError):
    """The descriptor or the arguments are inconsistent (``BARACUDA_STATUS_INVALID_PROBLEM``).

    Also a :class:`ValueError`.
    """

    status = STATUS_INVALID_PROBLEM


class _SizeError(BaracudaError):
    """A :class:`BaracudaError` that reports the size needed and the size given; its
    subclass fixes ``status``."""

    def __init__(self, message: str, needed: int, got: int) -> None:
        Exception.__init__(self, message, needed, got)
        self.message = message
        self.needed = needed
        self.got = got


class BufferTooSmallError(_SizeError):
    """A tensor's buffer is smaller than its view (``BARACUDA_STATUS_BUFFER_TOO_SMALL``).

    Attributes
    ----------
    needed : int
        Elements the view spans.
    got : int
        Elements the buffer holds.
    """

    status = STATUS_BUFFER_TOO_SMALL


class WorkspaceTooSmallError(_SizeError):
    """The workspace is smaller than ``workspace_size`` (``BARACUDA_STATUS_WORKSPACE_TOO_SMALL``).

    Attributes
    ----------
    needed : int
        Bytes of workspace the plan needs.
    got : int
        Bytes of workspace given.
    """

    status = STATUS_WORKSPACE_TOO_SMALL


class CudaError(_StatusError):
    """A CUDA call failed: no device, no driver, a launch (``BARACUDA_STATUS_CUDA_ERROR``)."""

    status = STATUS_CUDA_ERROR


class NcclError(_StatusError):
    """An NCCL call failed (``BARACUDA_STATUS_NCCL_ERROR``)."""

    status = STATUS_NCCL_ERROR


class LibraryNotLoadedError(_StatusError):
    """A library loaded at run time (NCCL) is absent (``BARACUDA_STATUS_LIBRARY_NOT_LOADED``)."""

    status = STATUS_LIBRARY_NOT_LOADED


class InternalError(_StatusError):
    """A bug in baracuda (``BARACUDA_STATUS_INTERNAL``)."""

    status = STATUS_INTERNAL


_ERROR_BY_STATUS: dict[int, type[BaracudaError]] = {
    error.status: error
    for error in (
        UnsupportedError,
        InvalidProblemError,
        BufferTooSmallError,
        WorkspaceTooSmallError,
        CudaError,
        NcclError,
        LibraryNotLoadedError,
        InternalError,
    )
}


def error_from_status(status: int, message: str, needed: int = 0, got: int = 0) -> BaracudaError:
    """Return the exception that mirrors a failing ``baracuda_status``.

    Parameters
    ----------
    status : int
        A ``baracuda_status`` other than success.
    message : str
        The reason (``baracuda_last_error_message()``).
    needed, got : int, optional
        ``baracuda_last_error_sizes()``; kept by the two ``*TooSmallError`` classes.

    Returns
    -------
    BaracudaError
        An instance of the subclass for ``status``; a plain :class:`BaracudaError` for a
        status this package does not know (a newer library).
    """
    error_type = _ERROR_BY_STATUS.get(status)
    if error_type is None:
        return BaracudaError(message, status)
    if issubclass(error_type, _SizeError):
        return error_type(message, needed, got)
    return error_type(message)
