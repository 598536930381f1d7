"""Exceptions (CPU): each class mirrors its baracuda_status, carries the message (and the sizes
of the two *TooSmall errors), and survives pickling unchanged."""

import pickle

import baracuda
import pytest
from baracuda import _capi, _errors

MESSAGE = "flash_sdpa_run: y buffer is too small (got 100 elements, expected >= 128)"
NEEDED, GOT = 128, 100

# (class, baracuda_status value); test_c_header.py checks the values against baracuda.h.
STATUS_CLASSES = [
    (baracuda.UnsupportedError, _errors.STATUS_UNSUPPORTED),
    (baracuda.InvalidProblemError, _errors.STATUS_INVALID_PROBLEM),
    (baracuda.BufferTooSmallError, _errors.STATUS_BUFFER_TOO_SMALL),
    (baracuda.WorkspaceTooSmallError, _errors.STATUS_WORKSPACE_TOO_SMALL),
    (baracuda.CudaError, _errors.STATUS_CUDA_ERROR),
    (baracuda.NcclError, _errors.STATUS_NCCL_ERROR),
    (baracuda.LibraryNotLoadedError, _errors.STATUS_LIBRARY_NOT_LOADED),
    (baracuda.InternalError, _errors.STATUS_INTERNAL),
]
STATUS_IDS = [error_type.__name__ for error_type, _ in STATUS_CLASSES]
SIZE_CLASSES = (baracuda.BufferTooSmallError, baracuda.WorkspaceTooSmallError)


@pytest.mark.parametrize("error_type,status", STATUS_CLASSES, ids=STATUS_IDS)
def test_status_maps_to_its_class(error_type, status):
    error = _errors.error_from_status(status, MESSAGE, NEEDED, GOT)
    assert type(error) is error_type
    assert isinstance(error, baracuda.BaracudaError)
    assert error.status == status
    assert error.message == MESSAGE
    assert str(error) == MESSAGE
    if error_type in SIZE_CLASSES:
        assert (error.needed, error.got) == (NEEDED, GOT)
    else:
        assert not hasattr(error, "needed")


def test_each_error_status_has_its_own_library_text():
    """The C library names each failing status, with a text of its own, not success's."""
    names = [_capi.status_string(status) for _, status in STATUS_CLASSES]
    assert len(set(names)) == len(names), names
    assert _capi.status_string(_errors.STATUS_SUCCESS) not in names
    assert all(name and name != "invalid" for name in names)


def test_unknown_status_gives_the_base_class():
    error = _errors.error_from_status(42, MESSAGE)
    assert type(error) is baracuda.BaracudaError
    assert (error.status, error.message, str(error)) == (42, MESSAGE, MESSAGE)


def test_invalid_problem_is_a_value_error():
    assert issubclass(baracuda.InvalidProblemError, ValueError)
    assert not issubclass(baracuda.UnsupportedError, ValueError)


@pytest.mark.parametrize("error_type,status", STATUS_CLASSES, ids=STATUS_IDS)
def test_pickle_round_trip(error_type, status):
    error = _errors.error_from_status(status, MESSAGE, NEEDED, GOT)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is error_type
    assert (copy.status, copy.message, str(copy)) == (status, MESSAGE, MESSAGE)
    assert copy.args == error.args
    if error_type in SIZE_CLASSES:
        assert (copy.needed, copy.got) == (NEEDED, GOT)


def test_pickle_round_trip_of_the_base_class():
    error = baracuda.BaracudaError(MESSAGE, 42)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is baracuda.BaracudaError
    assert (copy.status, copy.message, str(copy)) == (42, MESSAGE, MESSAGE)


def test_size_errors_built_directly():
    error = baracuda.WorkspaceTooSmallError(MESSAGE, NEEDED, GOT)
    assert (error.status, error.needed, error.got) == (4, NEEDED, GOT)
    assert str(error) == MESSAGE


def test_c_failure_raises_with_the_c_message():
    """A refusal from the C library (no device needed) arrives typed, with its message."""
    desc = baracuda.FlashSdpaDescriptor(-1, 1, 1, 1, 64, scale=0.125)
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        baracuda.FlashSdpaPlan.select(desc)
    error = caught.value
    assert error.status == 2
    assert error.message == (
        "flash_sdpa_plan_select: batch_size must be non-negative (got -1, expected >= 0)"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is baracuda.InvalidProblemError and copy.message == error.message
