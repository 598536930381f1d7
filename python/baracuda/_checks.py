"""Strict coercion of Python arguments, and the Python copy of the C descriptor checks.

Every boolean, integer and real argument of the package goes through one helper here:

- :func:`as_bool` takes ``bool``, ``numpy.bool_`` or an integer equal to 0 or 1 (so ``"False"``
  or ``0.0`` is refused, never read as truthy or falsy);
- :func:`as_int` and :func:`as_int32` take what ``operator.index`` takes (Python and numpy
  integers), never a float (no silent truncation) and never a bool;
- :func:`as_real` takes a real number (``float``, ``int``, numpy scalars), never a string.

Each refuses with :class:`InvalidProblemError` naming the field. The checks of the score options
and head dims mirror ``libbaracuda/src/common/descriptor_check.cpp`` with the same messages;
descriptors leave them to the C library at select, and :mod:`baracuda.reference` (which has no
C call to defer to) runs them here.
"""

from __future__ import annotations

import math
import operator
import reprlib
import sys

import numpy as np

from ._errors import InvalidProblemError, UnsupportedError

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

# descriptor_check.h: supported head dims are multiples of 8 in [8, 256].
MIN_HEAD_DIM = 8
MAX_HEAD_DIM = 256
HEAD_DIM_STEP = 8

_BOOL_TYPES = (bool, np.bool_)
_BOOL_INTEGERS = (0, 1)
_TEXT_TYPES = (str, bytes, bytearray)

_short_repr = reprlib.Repr()
_short_repr.maxstring = 40
_short_repr.maxother = 40


def describe(value: object) -> str:
    """``"<type> <short repr>"`` of a value, for the ``got`` part of a message."""
    return f"{type(value).__name__} {_short_repr.repr(value)}"


# ---------------------------------------------------------------- coercion


def as_bool(value: object, field: str, op: str) -> bool:
    """Return ``value`` as a bool: a ``bool``, a ``numpy.bool_`` or an integer equal to 0 or 1.

    Raises
    ------
    InvalidProblemError
        Anything else (a string, a float, an integer other than 0 and 1, None, ...).
    """
    if isinstance(value, _BOOL_TYPES):
        return bool(value)
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if number in _BOOL_INTEGERS:
        return bool(number)
    raise InvalidProblemError(
        f"{op}: {field} is not a bool (got {describe(value)}, expected True, False, 0 or 1)"
    )


def as_int(value: object, field: str, op: str) -> int:
    """Return ``operator.index(value)``; bools and non-integers are refused.

    Raises
    ------
    InvalidProblemError
        A float (even integral), a string, a bool, None, or any other non-integer.
    """
    if not isinstance(value, _BOOL_TYPES):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise InvalidProblemError(
        f"{op}: {field} is not an integer (got {describe(value)}, expected an int)"
    )


def as_int32(value: object, field: str, op: str) -> int:
    """Return ``value`` as an int that fits a C ``int32_t``.

    Raises
    ------
    InvalidProblemError
        Not an integer (see :func:`as_int`), or outside the int32 range.
    """
    number = as_int(value, field, op)
    if not INT32_MIN <= number <= INT32_MAX:
        raise InvalidProblemError(
            f"{op}: {field} does not fit in int32 (got {number}, expected {INT32_MIN} to "
            f"{INT32_MAX})"
        )
    return number


def as_real(value: object, field: str, op: str) -> float:
    """Return ``value`` as a float: a real number (``float``, ``int``, numpy scalars, anything
    with ``__float__``), never a string or a bool.

    Raises
    ------
    InvalidProblemError
        Anything else, or an integer too large for a float.
    """
    if not isinstance(value, _BOOL_TYPES + _TEXT_TYPES) and hasattr(type(value), "__float__"):
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError):
            pass
    raise InvalidProblemError(
        f"{op}: {field} is not a real number (got {describe(value)}, expected a float or an int)"
    )


def name_in(value: object, names, field: str, op: str) -> str:
    """Return ``value`` when it is one of ``names`` (strings).

    Raises
    ------
    InvalidProblemError
        Any other value.
    """
    if not isinstance(value, str) or value not in names:
        expected = " or ".join(repr(name) for name in names)
        raise InvalidProblemError(f"{op}: unknown {field} (got {value!r}, expected {expected})")
    return value


# ---------------------------------------------------------------- windows


def window_pair(window: object, op: str) -> tuple[object, object]:
    """The ``(left, right)`` of a ``window`` argument, unchecked.

    Raises
    ------
    InvalidProblemError
        ``window`` is not a pair.
    """
    try:
        left, right = window
    except (TypeError, ValueError):
        raise InvalidProblemError(
            f"{op}: window is not a pair (got {window!r}, expected (left, right) of int or None)"
        ) from None
    return left, right


def window_bound(bound: object, field: str, op: str) -> int | None:
    """A window bound: ``None`` (unbounded) or an int32 >= 0.

    C reads -1 as unbounded; in Python that is spelled ``None``, and every negative bound is
    refused.

    Raises
    ------
    InvalidProblemError
        Not an integer, outside int32, or negative.
    """
    if bound is None:
        return None
    number = as_int32(bound, field, op)
    if number < 0:
        raise InvalidProblemError(
            f"{op}: {field} must be >= 0 or None (got {number}, expected >= 0, or None for "
            "unbounded)"
        )
    return number


# ---------------------------------------------------------------- C descriptor checks


def check_extent(value: int, field: str, op: str) -> None:
    """``check_extents``: an extent is non-negative (InvalidProblemError)."""
    if value < 0:
        raise InvalidProblemError(
            f"{op}: {field} must be non-negative (got {value}, expected >= 0)"
        )


_LOG2E = 1.4426950408889634
# The smallest normal and the largest finite value of each compute type.
_COMPUTE_RANGES = {
    "f32": (2.0**-126, float(np.finfo(np.float32).max)),
    "f64": (sys.float_info.min, sys.float_info.max),
}


def check_scale_and_softcap(scale: float, softcap: float, op: str, *, compute: str = "f32") -> None:
    """``check_score_options``: a finite scale, a finite non-negative softcap, both within the
    range of the compute type (``"f32"`` for f16 / bf16 / f32, ``"f64"`` for f64): scale
    log2(e), softcap log2(e) and scale / softcap finite, a softcap that is a normal number
    (InvalidProblemError)."""
    if not math.isfinite(scale):
        raise InvalidProblemError(
            f"{op}: scale must be finite (got {scale:g}, expected a finite number)"
        )
    if not math.isfinite(softcap) or softcap < 0.0:
        raise InvalidProblemError(
            f"{op}: softcap must be finite and non-negative (got {softcap:g}, expected 0 to "
            "disable or a finite value > 0)"
        )
    smallest_normal, largest = _COMPUTE_RANGES[compute]
    largest_factor = largest / _LOG2E
    if abs(scale) > largest_factor:
        raise InvalidProblemError(
            f"{op}: scale overflows the {compute} compute type (got {scale:g}, expected "
            f"|scale| <= {largest_factor:g})"
        )
    if softcap == 0.0:
        return
    if not smallest_normal <= softcap <= largest_factor:
        raise InvalidProblemError(
            f"{op}: softcap is outside the range of the {compute} compute type (got "
            f"{softcap:g}, expected 0 or a value in [{smallest_normal:g}, {largest_factor:g}])"
        )
    if abs(scale) / softcap > largest:
        raise InvalidProblemError(
            f"{op}: scale / softcap overflows the {compute} compute type (got {scale:g} / "
            f"{softcap:g}, expected a quotient <= {largest:g})"
        )


def check_head_dim(value: int, field: str, op: str) -> None:
    """``check_head_dim``: a multiple of 8 in [8, 256] (UnsupportedError)."""
    if not (MIN_HEAD_DIM <= value <= MAX_HEAD_DIM and value % HEAD_DIM_STEP == 0):
        raise UnsupportedError(
            f"{op}: {field} is not a supported head dim (got {value}, expected a multiple of "
            f"{HEAD_DIM_STEP} in [{MIN_HEAD_DIM}, {MAX_HEAD_DIM}])"
        )
