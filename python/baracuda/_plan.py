"""What the flash and ring attention plans share: the score options, the selected plan's
reports and lifetime, the device check and the plan cache of the one-call functions.

``_flash_sdpa.py`` and ``_ring_attention.py`` each add their descriptor, their plan's
arguments and run, and their function on top of this.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple

from . import _capi
from ._checks import as_bool, as_real, name_in, window_bound, window_pair
from ._cuda import current_device
from ._errors import InvalidProblemError
from ._lifetime import NotCopyable
from ._tensor import common_device, element_name

QKV_RANK = 4
"""Rank of Q, K, V and Y: ``[B, H, S, D]``."""

ALIBI_SLOPES_RANK = 2
"""Rank of the ALiBi slopes the C library takes: ``[1|B, H]``."""

BACKENDS = tuple(_capi.BACKENDS)
"""The backend names: ``("auto", "portable", "hopper")``."""

PLAN_CACHE_CAPACITY = 64
"""Plans that :func:`flash_attention` and :func:`ring_attention` each keep selected, least
recently used dropped first."""

_WINDOW_FIELDS = ("window_size_left", "window_size_right")


# ---------------------------------------------------------------- score options


def score_fields(descriptor, op: str) -> dict:
    """The normalised score options and element of a descriptor dataclass: window bounds (int
    or None), scale (float or None), is_causal (bool), element name and softcap (float)."""
    fields = {name: window_bound(getattr(descriptor, name), name, op) for name in _WINDOW_FIELDS}
    fields["scale"] = None if descriptor.scale is None else as_real(descriptor.scale, "scale", op)
    fields["is_causal"] = as_bool(descriptor.is_causal, "is_causal", op)
    fields["element"] = element_name(descriptor.element, op)
    fields["softcap"] = as_real(descriptor.softcap, "softcap", op)
    return fields


def call_score_options(causal, scale, window, softcap, op: str) -> tuple:
    """``(causal, scale, left, right, softcap)`` of an attention call's arguments, normalised as
    :func:`score_fields` normalises a descriptor's (so that they can key the plan cache)."""
    left, right = window_pair(window, op)
    return (
        as_bool(causal, "causal", op),
        None if scale is None else as_real(scale, "scale", op),
        window_bound(left, "window_size_left", op),
        window_bound(right, "window_size_right", op),
        as_real(softcap, "softcap", op),
    )


# ---------------------------------------------------------------- selected plans


class KernelSku(NamedTuple):
    """What a selected plan runs.

    Attributes
    ----------
    name : str
        Such as ``"flash_sdpa.portable.bf16.d128.sm90"``.
    backend : str
        ``"portable"`` or ``"hopper"``.
    element : str
        Element of Q, K, V and Y.
    head_dim_bucket : int
        Largest head dim of the compiled instance.
    arch : int
        Compute capability x 10 of the device selected for, e.g. 90.
    """

    name: str
    backend: str
    element: str
    head_dim_bucket: int
    arch: int


class PrecisionGuarantee(NamedTuple):
    """The arithmetic a plan promises.

    Attributes
    ----------
    math_precision : str
        Element of the score and softmax arithmetic.
    accumulator : str
        Element of the running output accumulator.
    deterministic : bool
        Same inputs, same outputs (no atomics).
    bit_stable_on_same_hardware : bool
        Bit-identical results across runs on the same hardware.
    """

    math_precision: str
    accumulator: str
    deterministic: bool
    bit_stable_on_same_hardware: bool


class SelectedPlan(NotCopyable):
    """What every selected plan shares: its descriptor, its reports and its lifetime.

    A subclass names its descriptor type (``_DESCRIPTOR``) and its C handle type
    (``_HANDLE``), and is made by ``select``, which calls :meth:`_select`. It holds C resources
    until :meth:`close` (or the end of a ``with`` block, or collection), so it cannot be
    pickled or copied (:class:`TypeError`): select a plan in each process instead.
    """

    __slots__ = ("_handle", "_descriptor", "__weakref__")
    _OWNED_RESOURCE = "a C plan and the device resources it prepared"
    _DESCRIPTOR: type
    _HANDLE: type

    def __init__(self, *args, **kwargs) -> None:
        name = type(self).__name__
        raise TypeError(f"{name} cannot be made directly; use {name}.select")

    @classmethod
    def _select(cls, descriptor, backend: str):
        """Check the arguments' types and names, then select the C plan."""
        op = f"{cls.__name__}.select"
        expected = cls._DESCRIPTOR.__name__
        if not isinstance(descriptor, cls._DESCRIPTOR):
            raise TypeError(
                f"{op}: descriptor is not a {expected} "
                f"(got {type(descriptor).__name__}, expected {expected})"
            )
        name_in(backend, BACKENDS, "backend", op)
        plan = cls.__new__(cls)
        plan._descriptor = descriptor
        plan._handle = cls._HANDLE.select(descriptor, backend)
        return plan

    # ------------------------------------------------------------ reports

    @property
    def descriptor(self):
        """The problem the plan was selected for."""
        return self._descriptor

    @property
    def backend(self) -> str:
        """The backend the plan runs (``"portable"`` or ``"hopper"``)."""
        return self._handle.backend()

    @property
    def sku(self) -> KernelSku:
        """The kernel the plan runs."""
        return KernelSku(*self._handle.sku())

    @property
    def precision_guarantee(self) -> PrecisionGuarantee:
        """The arithmetic the plan promises."""
        return PrecisionGuarantee(*self._handle.precision_guarantee())

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Release the plan; later calls raise :class:`InvalidProblemError`.

        Safe while another thread runs the plan: ``close`` waits for the calls already in
        flight (a run releases the GIL while the C library enqueues) to return before the C
        plan is destroyed, and calls that start once ``close`` has begun raise
        :class:`InvalidProblemError`. Closing twice is harmless.
        """
        self._handle.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._handle.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"backend={self.backend!r}"
        return f"{type(self).__name__}({self._descriptor!r}, {state})"


def check_current_device(views, op: str):
    """The current ``cuda.core.Device``, after checking that every tensor reporting a device
    is on it.

    Parameters
    ----------
    views : sequence of (str, TensorView or None)
        The arguments by name; ``None`` for an absent one.
    op : str
        The operation, for the message.

    Raises
    ------
    InvalidProblemError
        A tensor is on another device.
    """
    device_id = common_device(views, op)
    current = current_device(op)
    if device_id is not None and device_id != current.device_id:
        raise InvalidProblemError(
            f"{op}: the tensors are not on the current device (got device {device_id}, "
            f"expected device {current.device_id})"
        )
    return current


# ---------------------------------------------------------------- plan cache


class PlanCache:
    """Selected plans by problem, backend and device, least recently used dropped first.

    The key holds the arguments a descriptor is made of, so that a hit builds no descriptor.
    A dropped plan is destroyed when the last call using it lets it go.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._plans: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key) -> SelectedPlan | None:
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
            return plan

    def put(self, key, plan: SelectedPlan) -> SelectedPlan:
        with self._lock:
            self._plans[key] = plan
            self._plans.move_to_end(key)
            while len(self._plans) > self._capacity:
                self._plans.popitem(last=False)
        return plan

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()
