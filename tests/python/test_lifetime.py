"""Objects that own C or device resources (CPU): no pickling or copying, and ``close`` from
another thread while a call is in flight waits for it instead of freeing the plan under it.

The plans here are never selected (that needs a device): a handle made directly holds no C
plan, which is enough to check the copy refusals and that every call is counted in flight.
"""

import copy
import pickle
import threading

import baracuda
import pytest
from baracuda import _capi
from baracuda._device_array import DeviceArray
from baracuda._lifetime import InFlight

PLAN_RESOURCE = "a C plan and the device resources it prepared"
# Long enough for a thread that does not wait to have finished; far below any test timeout.
STILL_WAITING_SECONDS = 0.3
JOIN_SECONDS = 10.0


def unselected_plan(plan_type, handle_type, descriptor):
    plan = plan_type.__new__(plan_type)
    plan._handle = handle_type()
    plan._descriptor = descriptor
    return plan


def unallocated_array():
    array = object.__new__(DeviceArray)
    array._buffer = None
    array._ptr = 0x7F12_3400_0000
    array._shape = (4,)
    array._element = "f32"
    array._device_id = 0
    array._stream = 0
    return array


OWNERS = {
    "FlashSdpaPlanHandle": (lambda: _capi.FlashSdpaPlanHandle(), PLAN_RESOURCE),
    "RingAttentionPlanHandle": (lambda: _capi.RingAttentionPlanHandle(), PLAN_RESOURCE),
    "FlashSdpaPlan": (
        lambda: unselected_plan(
            baracuda.FlashSdpaPlan,
            _capi.FlashSdpaPlanHandle,
            baracuda.FlashSdpaDescriptor(1, 1, 16, 16, 64),
        ),
        PLAN_RESOURCE,
    ),
    "RingAttentionPlan": (
        lambda: unselected_plan(
            baracuda.RingAttentionPlan,
            _capi.RingAttentionPlanHandle,
            baracuda.RingAttentionDescriptor(1, 1, 16, 16, 64),
        ),
        PLAN_RESOURCE,
    ),
    "DeviceArray": (unallocated_array, "device memory"),
}
COPIES = {
    **{
        f"pickle-{protocol}": (lambda obj, protocol=protocol: pickle.dumps(obj, protocol))
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1)
    },
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
}


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("owner", list(OWNERS))
def test_owning_objects_refuse_pickle_and_copy(owner, how):
    make, resource = OWNERS[owner]
    with pytest.raises(TypeError) as caught:
        COPIES[how](make())
    assert str(caught.value) == (
        f"{owner}: cannot be pickled or copied, it owns {resource} (got a copy or pickle of a "
        f"{owner}, expected the object itself to be shared, or a new one made where it is "
        "needed)"
    )


def test_descriptors_still_pickle_and_copy():
    """Descriptors own nothing: they travel between processes."""
    desc = baracuda.FlashSdpaDescriptor(1, 2, 16, 16, 64, is_causal=True)
    assert pickle.loads(pickle.dumps(desc)) == desc
    assert copy.deepcopy(desc) == desc


# ---------------------------------------------------------------- the in-flight count


def start(target):
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_close_waits_for_the_call_in_flight():
    guard = InFlight("plan")
    in_call, release = threading.Event(), threading.Event()
    events = []

    def call():
        guard.enter("op")
        in_call.set()
        release.wait(JOIN_SECONDS)
        events.append("call returned")
        guard.exit()

    def close():
        if guard.close():
            events.append("released")

    caller = start(call)
    assert in_call.wait(JOIN_SECONDS)
    closer = start(close)
    closer.join(STILL_WAITING_SECONDS)
    assert closer.is_alive(), "close returned while a call was in flight"
    assert guard.closed and guard.calls == 1
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        guard.enter("late_op")
    assert caught.value.message == (
        "late_op: the plan is closed (got a closed plan, expected an open one)"
    )
    release.set()
    caller.join(JOIN_SECONDS)
    closer.join(JOIN_SECONDS)
    assert events == ["call returned", "released"]
    assert guard.close() is False, "only the first close releases"


def test_close_with_nothing_in_flight_returns_at_once():
    guard = InFlight("plan")
    guard.enter("op")
    guard.exit()
    assert guard.close() is True
    assert guard.calls == 0


class BlockingView:
    """A tensor description whose ``shape`` blocks until released: the handle reads it while
    the call is counted in flight."""

    def __init__(self):
        self.reading, self.release = threading.Event(), threading.Event()
        self.ptr, self.element, self.strides, self.buffer_elements = 0, "f32", (1,), 4

    @property
    def shape(self):
        self.reading.set()
        self.release.wait(JOIN_SECONDS)
        return (4,)


def flash_run(handle, view):
    handle.run(view, None, None, None, None, None, None, 0, 0, 0)


def flash_can_implement(handle, view):
    handle.can_implement(view, None, None, None, None, None, None)


def ring_run(handle, view):
    handle.run(view, None, None, None, None, None, None, None, 0, 0, 0, 0)


def ring_can_implement(handle, view):
    handle.can_implement(view, None, None, None, None, None, None, None, 0, 0)


@pytest.mark.parametrize(
    "handle_type,call,op",
    [
        (_capi.FlashSdpaPlanHandle, flash_run, "FlashSdpaPlan.run"),
        (_capi.FlashSdpaPlanHandle, flash_can_implement, "FlashSdpaPlan.can_implement"),
        (_capi.RingAttentionPlanHandle, ring_run, "RingAttentionPlan.run"),
        (_capi.RingAttentionPlanHandle, ring_can_implement, "RingAttentionPlan.can_implement"),
    ],
    ids=["flash-run", "flash-can_implement", "ring-run", "ring-can_implement"],
)
def test_handle_close_from_another_thread_waits_for_the_call(handle_type, call, op):
    handle = handle_type()
    view = BlockingView()
    errors = []

    def caller():
        try:
            call(handle, view)
        except baracuda.InvalidProblemError as error:
            errors.append(error.message)

    calling = start(caller)
    assert view.reading.wait(JOIN_SECONDS)
    closer = start(handle.close)
    closer.join(STILL_WAITING_SECONDS)
    assert closer.is_alive(), "close returned while a call was in flight"
    assert handle.closed
    view.release.set()
    calling.join(JOIN_SECONDS)
    closer.join(JOIN_SECONDS)
    assert not closer.is_alive() and not calling.is_alive()
    # This handle was never selected: the call finds no plan once its arguments are read.
    assert errors == [f"{op}: the plan is closed (got a closed plan, expected an open one)"]
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        call(handle, BlockingView())
    assert caught.value.message == (
        f"{op}: the plan is closed (got a closed plan, expected an open one)"
    )


@pytest.mark.parametrize(
    "handle_type,prefix",
    [
        (_capi.FlashSdpaPlanHandle, "FlashSdpaPlan"),
        (_capi.RingAttentionPlanHandle, "RingAttentionPlan"),
    ],
)
def test_closed_handle_refuses_every_call(handle_type, prefix):
    handle = handle_type()
    handle.close()
    handle.close()
    for method in ("backend", "sku", "precision_guarantee"):
        with pytest.raises(baracuda.InvalidProblemError) as caught:
            getattr(handle, method)()
        assert caught.value.message == (
            f"{prefix}.{method}: the plan is closed (got a closed plan, expected an open one)"
        )


def test_use_counts_one_call_for_a_with_block_however_it_ends():
    guard = InFlight("plan")
    with guard.use("op"):
        assert guard.calls == 1
    assert guard.calls == 0
    with pytest.raises(RuntimeError), guard.use("op"):
        assert guard.calls == 1
        raise RuntimeError("the body fails")
    assert guard.calls == 0
    assert guard.close()
    with (
        pytest.raises(baracuda.InvalidProblemError, match="op: the plan is closed"),
        guard.use("op"),
    ):
        pytest.fail("the block of a closed resource must not run")
    assert guard.calls == 0
