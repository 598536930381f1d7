"""Lifetimes of the objects that own C or device resources.

Such an object (a plan handle, a plan, a :class:`DeviceArray`) cannot be pickled or copied: a
copy would name the same C plan or device memory and release it a second time, and a pickle
cannot carry a device resource to another process. :func:`refuse_copy` is the one refusal;
:class:`NotCopyable` applies it to Python classes, and the Cython handles call it.

A plan handle's calls release the GIL while the C library runs, so another thread may call
``close`` meanwhile. :class:`InFlight` counts the calls using a handle; ``close`` waits for
them to return before the C plan is destroyed, and refuses calls that start after it began.
"""

from __future__ import annotations

import threading

from ._errors import InvalidProblemError


def refuse_copy(obj: object, resource: str):
    """Raise the :class:`TypeError` of an attempt to pickle or copy ``obj``.

    Parameters
    ----------
    obj : object
        The owning object.
    resource : str
        What it owns, for the message (``"device memory"``).

    Raises
    ------
    TypeError
        Always.
    """
    name = type(obj).__name__
    raise TypeError(
        f"{name}: cannot be pickled or copied, it owns {resource} (got a copy or pickle of a "
        f"{name}, expected the object itself to be shared, or a new one made where it is "
        "needed)"
    )


class NotCopyable:
    """Mixin of the Python classes that own a resource: ``pickle``, ``copy.copy`` and
    ``copy.deepcopy`` raise :class:`TypeError` (see :func:`refuse_copy`).

    A subclass names what it owns in ``_OWNED_RESOURCE``.
    """

    __slots__ = ()
    _OWNED_RESOURCE = "a device resource"

    def __reduce_ex__(self, protocol):
        refuse_copy(self, self._OWNED_RESOURCE)

    def __copy__(self):
        refuse_copy(self, self._OWNED_RESOURCE)

    def __deepcopy__(self, memo):
        refuse_copy(self, self._OWNED_RESOURCE)


class InFlight:
    """The calls in flight on one C resource, and its closing.

    Every call that uses the resource runs between :meth:`enter` and :meth:`exit`;
    :meth:`close` marks the resource closed (later :meth:`enter` calls raise), waits until no
    call is in flight, and tells its one caller to release the resource.

    Parameters
    ----------
    what : str
        The resource in messages (``"plan"``).
    """

    __slots__ = ("_condition", "_calls", "_closed", "_what")

    def __init__(self, what: str = "plan") -> None:
        self._condition = threading.Condition(threading.Lock())
        self._calls = 0
        self._closed = False
        self._what = what

    def enter(self, op: str) -> None:
        """Count a call that starts using the resource.

        Raises
        ------
        InvalidProblemError
            :meth:`close` has begun.
        """
        with self._condition:
            if self._closed:
                raise InvalidProblemError(
                    f"{op}: the {self._what} is closed (got a closed {self._what}, expected "
                    "an open one)"
                )
            self._calls += 1

    def use(self, op: str) -> InFlight:
        """Count one call for a ``with`` block: :meth:`enter` now, :meth:`exit` when the block
        ends, however it ends.

        Raises
        ------
        InvalidProblemError
            :meth:`close` has begun (the block does not run).
        """
        self.enter(op)
        return self

    def __enter__(self) -> InFlight:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.exit()

    def exit(self) -> None:
        """Count a call that stopped using the resource; wakes a waiting :meth:`close`."""
        with self._condition:
            self._calls -= 1
            if self._calls == 0:
                self._condition.notify_all()

    def close(self) -> bool:
        """Refuse new calls, then wait for the calls in flight to return.

        Returns
        -------
        bool
            True for the first call of ``close``, whose caller must release the resource now;
            False for any later one.
        """
        with self._condition:
            if self._closed:
                return False
            self._closed = True
            while self._calls:
                self._condition.wait()
            return True

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has begun."""
        return self._closed

    @property
    def calls(self) -> int:
        """Calls in flight now."""
        return self._calls
