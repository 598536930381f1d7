"""Tensor and stream interop (CPU, no driver): what DLPack and CUDA Array Interface producers
give becomes the right pointer, element, shape, strides and span; what the C ABI cannot take
is refused with a typed error; DeviceArray exports what consumers read.

The producers are fakes that never touch memory: a dict-only ``__cuda_array_interface__``
object, and a DLPack producer whose ``DLManagedTensor`` is built with ctypes.
"""

import ctypes
import gc
import json
import subprocess
import sys
import weakref

import baracuda
import ml_dtypes
import numpy as np
import pytest
from baracuda import _capi, _cuda, _tensor
from baracuda._device_array import DeviceArray
from baracuda._tensor import NO_SYNC, as_tensor, as_workspace, common_device, prepend_axes

OP = "interop_test"
FAKE_PTR = 0x7F12_3400_0000  # a device address that no test dereferences
CONSUMER_STREAM = 0x5A5A_0000
PRODUCER_STREAM = 0x6B6B_0000

# dlpack.h
KDL_CPU, KDL_CUDA, KDL_CUDA_HOST, KDL_CUDA_MANAGED = 1, 2, 3, 13
KDL_INT, KDL_UINT, KDL_FLOAT, KDL_BFLOAT = 0, 1, 2, 4
DLPACK_LEGACY_DEFAULT_STREAM = 1

# (element, DLPack code, bits, CUDA Array Interface typestr or None when it has none)
ELEMENTS = [
    ("f32", KDL_FLOAT, 32, "<f4"),
    ("f16", KDL_FLOAT, 16, "<f2"),
    ("bf16", KDL_BFLOAT, 16, None),
    ("f64", KDL_FLOAT, 64, "<f8"),
]
ITEMSIZE = {"f32": 4, "f16": 2, "bf16": 2, "f64": 8}


# ---------------------------------------------------------------- fakes


class CudaArrayInterface:
    """An object with only ``__cuda_array_interface__`` (version 3); strides in bytes."""

    def __init__(self, shape, typestr, strides=None, ptr=FAKE_PTR, stream=None, **extra):
        self.__cuda_array_interface__ = {
            "shape": tuple(shape),
            "typestr": typestr,
            "data": (ptr, False),
            "version": 3,
            "strides": strides,
            "stream": stream,
            **extra,
        }


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class DLManagedTensor(ctypes.Structure):
    pass


DLDeleter = ctypes.CFUNCTYPE(None, ctypes.POINTER(DLManagedTensor))
DLManagedTensor._fields_ = [
    ("dl_tensor", DLTensor),
    ("manager_ctx", ctypes.c_void_p),
    ("deleter", DLDeleter),
]


class DLPackVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [
        ("version", DLPackVersion),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
        ("flags", ctypes.c_uint64),
        ("dl_tensor", DLTensor),
    ]


_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule_is_valid = ctypes.pythonapi.PyCapsule_IsValid
_capsule_is_valid.restype = ctypes.c_int
_capsule_is_valid.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule_set_name = ctypes.pythonapi.PyCapsule_SetName
_capsule_set_name.restype = ctypes.c_int
_capsule_set_name.argtypes = [ctypes.py_object, ctypes.c_char_p]


class DLPackTensor:
    """A DLPack producer of a legacy ``"dltensor"`` capsule; records the streams asked for
    and counts the deleter's calls."""

    def __init__(
        self, shape, code, bits, strides=None, device=(KDL_CUDA, 0), ptr=FAKE_PTR, byte_offset=0
    ):
        rank = len(shape)
        self.device = device
        self.streams = []
        self.deleted = 0
        self._shape = (ctypes.c_int64 * rank)(*shape)
        self._strides = None if strides is None else (ctypes.c_int64 * rank)(*strides)
        self._deleter = DLDeleter(self._delete)
        self._managed = DLManagedTensor()
        tensor = self._managed.dl_tensor
        tensor.data = ptr
        tensor.device = DLDevice(*device)
        tensor.ndim = rank
        tensor.dtype = DLDataType(code, bits, 1)
        tensor.shape = self._shape
        if self._strides is not None:
            tensor.strides = self._strides
        tensor.byte_offset = byte_offset
        self._managed.deleter = self._deleter

    def _delete(self, managed):
        self.deleted += 1

    def __dlpack_device__(self):
        return self.device

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        self.streams.append(stream)
        return _capsule_new(ctypes.addressof(self._managed), b"dltensor", None)


def dlpack_of(element, shape, strides=None, **kwargs):
    _, code, bits, _ = next(entry for entry in ELEMENTS if entry[0] == element)
    return DLPackTensor(shape, code, bits, strides, **kwargs)


class Owner:
    """A weakly referenceable object whose lifetime a capsule must extend."""


def unallocated_array(shape, element, *, ptr=FAKE_PTR, device_id=0, stream=0):
    """A DeviceArray that describes memory it does not own (allocating needs a device)."""
    array = object.__new__(DeviceArray)
    array._buffer = None
    array._ptr = ptr
    array._shape = tuple(shape)
    array._element = element
    array._device_id = device_id
    array._stream = stream
    return array


# ---------------------------------------------------------------- import


def test_import_needs_no_driver():
    """Importing baracuda loads neither cuda.core nor cuda.bindings (they need a driver)."""
    code = (
        "import sys, baracuda; print(sorted(m for m in sys.modules if m.split('.')[0] == 'cuda'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------- CUDA Array Interface


@pytest.mark.parametrize("element,typestr", [(e, t) for e, _, _, t in ELEMENTS if t])
def test_cai_contiguous(element, typestr):
    view = as_tensor(CudaArrayInterface((2, 3, 4, 5), typestr), "q", op=OP, stream=0)
    assert view.ptr == FAKE_PTR
    assert view.element == element
    assert view.shape == (2, 3, 4, 5)
    assert view.strides == (60, 20, 5, 1)
    assert view.buffer_elements == 120
    assert view.device_id is None


def test_cai_byte_strides_of_a_transposed_view():
    # A [2, 3, 5, 4] f16 tensor seen as [2, 5, 3, 4] (B, S, H, D passed as B, H, S, D).
    element_strides = (60, 4, 20, 1)
    fake = CudaArrayInterface((2, 5, 3, 4), "<f2", strides=tuple(2 * s for s in element_strides))
    view = as_tensor(fake, "k", op=OP, stream=0)
    assert view.strides == element_strides
    assert view.buffer_elements == 1 + 60 + 4 * 4 + 2 * 20 + 3
    assert view.element == "f16"


def test_cai_zero_strides_broadcast():
    fake = CudaArrayInterface((2, 8, 100, 64), "<f4", strides=(0, 0, 256, 4))
    view = as_tensor(fake, "k", op=OP, stream=0)
    assert view.strides == (0, 0, 64, 1)
    assert view.buffer_elements == 1 + 99 * 64 + 63


def test_cai_strided_slice():
    fake = CudaArrayInterface((2, 3), "<f8", strides=(80, 8), ptr=FAKE_PTR + 24)
    view = as_tensor(fake, "alibi_slopes", op=OP, stream=0)
    assert (view.ptr, view.strides, view.buffer_elements) == (FAKE_PTR + 24, (10, 1), 13)
    assert view.element == "f64"


def test_cai_empty_tensor_spans_nothing():
    view = as_tensor(CudaArrayInterface((2, 0, 4, 8), "<f4", ptr=0), "q", op=OP, stream=0)
    assert (view.ptr, view.buffer_elements) == (0, 0)


def test_cai_bf16_needs_dlpack():
    bf16 = CudaArrayInterface((4, 4), np.dtype(ml_dtypes.bfloat16).str)
    with pytest.raises(baracuda.InvalidProblemError, match="must come through DLPack") as caught:
        as_tensor(bf16, "q", op=OP, stream=0)
    assert caught.value.message.startswith(
        f"{OP}: q has a typestr with no standard element (got '<V2', expected"
    )


@pytest.mark.parametrize("typestr,name", [("<i4", "int32"), ("|u1", "uint8"), ("<c8", "complex64")])
def test_cai_unsupported_element(typestr, name):
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        as_tensor(CudaArrayInterface((4,), typestr), "mask", op=OP, stream=0)
    assert caught.value.message == (
        f"{OP}: mask element is not supported (got {name}, expected f32, f16, bf16 or f64)"
    )


def test_cai_big_endian_refused():
    with pytest.raises(baracuda.InvalidProblemError, match="not little-endian"):
        as_tensor(CudaArrayInterface((4,), ">f4"), "q", op=OP, stream=0)


def test_cai_stride_not_a_whole_element():
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        as_tensor(CudaArrayInterface((4, 4), "<f4", strides=(18, 4)), "q", op=OP, stream=0)
    assert caught.value.message == (
        f"{OP}: q stride of axis 0 is not a whole number of "
        "elements (got 18 bytes, expected a multiple of 4)"
    )


def test_cai_masked_array_refused():
    masked = CudaArrayInterface((4,), "<f4", mask=CudaArrayInterface((4,), "|b1"))
    with pytest.raises(baracuda.InvalidProblemError, match="masked array"):
        as_tensor(masked, "q", op=OP, stream=0)


def test_cai_producer_stream_ordering(monkeypatch):
    """The producer's stream is ordered before the consumer's, unless no sync is asked for
    or the producer has nothing pending (stream None)."""
    calls = []
    monkeypatch.setattr(
        _tensor, "order_after", lambda producer, consumer, op: calls.append((producer, consumer))
    )
    as_tensor(
        CudaArrayInterface((4,), "<f4", stream=PRODUCER_STREAM), "q", op=OP, stream=CONSUMER_STREAM
    )
    assert calls == [(PRODUCER_STREAM, CONSUMER_STREAM)]
    as_tensor(CudaArrayInterface((4,), "<f4", stream=PRODUCER_STREAM), "q", op=OP, stream=NO_SYNC)
    as_tensor(CudaArrayInterface((4,), "<f4", stream=None), "q", op=OP, stream=CONSUMER_STREAM)
    assert calls == [(PRODUCER_STREAM, CONSUMER_STREAM)]


@pytest.mark.parametrize(
    "first,second,same",
    [
        (0, 0, True),
        (0, 1, True),
        (1, 0, True),
        (0, 2, False),
        (2, 2, True),
        (PRODUCER_STREAM, PRODUCER_STREAM, True),
        (PRODUCER_STREAM, CONSUMER_STREAM, False),
    ],
)
def test_same_stream(first, second, same):
    assert _cuda.same_stream(first, second) is same


def test_order_after_same_stream_needs_no_driver():
    _cuda.order_after(0, _cuda.CU_STREAM_LEGACY, OP)
    _cuda.order_after(PRODUCER_STREAM, PRODUCER_STREAM, OP)


def _device_count():
    """Devices the CUDA runtime sees (0 without a driver); it never reaches cuda.core."""
    from cuda.bindings import runtime

    error, count = runtime.cudaGetDeviceCount()
    return count if error == runtime.cudaError_t.cudaSuccess else 0


NO_DEVICE_CALLS = """
import json, time
import baracuda

class Producer:
    __cuda_array_interface__ = {"shape": (1, 8, 64, 64), "typestr": "<f4",
                                "data": (0x7F1234000000, False), "version": 3, "stream": 12345}

producer = Producer()
calls = [lambda: baracuda.flash_attention(producer, producer, producer),
         lambda: baracuda.flash_attention(producer, producer, producer),
         lambda: baracuda.DeviceArray((4,), "f32")]
results = []
for call in calls:
    start = time.monotonic()
    try:
        call()
        results.append(["returned", "", 0.0])
    except BaseException as error:
        results.append([type(error).__name__, str(error), time.monotonic() - start])
print(json.dumps(results))
"""
PROMPT_SECONDS = 10


def test_producer_stream_without_a_device_raises_and_never_blocks():
    """Without a driver, ordering after a producer's stream raises CudaError, and so does every
    later device call, at once (cuda.core is never reached, so its lock is never left held).
    A subprocess with a timeout turns a hang into a failure."""
    if _device_count() > 0:
        pytest.skip("a CUDA device is present")
    result = subprocess.run(
        [sys.executable, "-c", NO_DEVICE_CALLS],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (first, second, third) = json.loads(result.stdout)
    assert first[0] == "CudaError", first
    assert first[1].startswith("flash_attention: no usable CUDA device (got "), first[1]
    assert first[1].endswith(", expected a CUDA driver and at least one device)")
    assert second[:2] == first[:2]
    assert third[0] == "CudaError"
    assert third[1] == first[1].replace("flash_attention:", "DeviceArray:", 1)
    assert max(first[2], second[2], third[2]) < PROMPT_SECONDS


def test_device_probe_runs_once(monkeypatch):
    probes = []
    # Both restored afterwards: the process's own probe is kept for the other tests.
    monkeypatch.setattr(_cuda, "_probed", False)
    monkeypatch.setattr(_cuda, "_absence", None)
    monkeypatch.setattr(
        _cuda, "_probe_device", lambda: probes.append(1) or "cuInit returned CUDA_ERROR_NO_DEVICE"
    )
    for _ in range(3):
        with pytest.raises(baracuda.CudaError) as caught:
            _cuda.require_device(OP)
        assert caught.value.message == (
            f"{OP}: no usable CUDA device (got cuInit returned "
            "CUDA_ERROR_NO_DEVICE, expected a CUDA driver and at "
            "least one device)"
        )
    assert probes == [1]
    with pytest.raises(baracuda.CudaError, match=f"{OP}: no usable CUDA device"):
        _cuda.order_after(PRODUCER_STREAM, CONSUMER_STREAM, OP)
    with pytest.raises(baracuda.CudaError, match=f"{OP}: no usable CUDA device"):
        _cuda.current_device(OP)
    assert probes == [1]


def test_context_is_checked_once_per_thread(monkeypatch):
    """ensure_context, on the path of every DLPack tensor, asks the driver once per thread."""
    import threading

    from cuda.bindings import driver

    asked = []

    def current_context():
        asked.append(threading.get_ident())
        return driver.CUresult.CUDA_SUCCESS, 1  # a context is current

    monkeypatch.setattr(_cuda, "_probed", True)
    monkeypatch.setattr(_cuda, "_absence", None)
    monkeypatch.setattr(_cuda, "_thread_context", threading.local())
    monkeypatch.setattr(driver, "cuCtxGetCurrent", current_context)
    for _ in range(3):
        _cuda.ensure_context(0, OP)
    assert asked == [threading.get_ident()]
    worker = threading.Thread(target=_cuda.ensure_context, args=(0, OP))
    worker.start()
    worker.join()
    assert len(asked) == 2 and asked[1] != asked[0]


class _FailingStream:
    def wait(self, other):
        raise RuntimeError("CUDA_ERROR_INVALID_HANDLE")


class _FailingDevice:
    class memory_resource:
        @staticmethod
        def allocate(nbytes, stream):
            raise MemoryError("out of memory")


def test_cuda_core_failures_are_cuda_errors(monkeypatch):
    """A cuda.core failure arrives as CudaError naming the call."""
    monkeypatch.setattr(_cuda, "core_stream", lambda handle, op: _FailingStream())
    with pytest.raises(baracuda.CudaError) as caught:
        _cuda.order_after(PRODUCER_STREAM, CONSUMER_STREAM, OP)
    assert caught.value.message == (
        f"{OP}: Stream.wait failed (got RuntimeError: CUDA_ERROR_INVALID_HANDLE, expected "
        f"stream {CONSUMER_STREAM:#x} ordered after stream {PRODUCER_STREAM:#x})"
    )
    assert isinstance(caught.value.__cause__, RuntimeError)
    with pytest.raises(baracuda.CudaError) as caught:
        _cuda.allocate(256, CONSUMER_STREAM, _FailingDevice(), OP)
    assert caught.value.message == (
        f"{OP}: allocating 256 bytes failed (got MemoryError: out "
        "of memory, expected 256 bytes of device memory)"
    )


# ---------------------------------------------------------------- ranks and protocols


def test_rank_the_c_abi_cannot_hold():
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        as_tensor(CudaArrayInterface((1, 2, 3, 4, 5), "<f4"), "mask", op=OP, stream=0)
    assert caught.value.message == f"{OP}: mask rank is not supported (got 5, expected 1 to 4)"
    with pytest.raises(baracuda.InvalidProblemError, match=r"got 0, expected 1 to 4"):
        as_tensor(CudaArrayInterface((), "<f4"), "mask", op=OP, stream=0)


def test_rank_the_caller_needs():
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        as_tensor(CudaArrayInterface((8, 64, 64), "<f4"), "q", op=OP, stream=0, rank=4)
    assert caught.value.message == f"{OP}: q rank mismatch (got 3, expected 4)"


def test_not_a_tensor():
    with pytest.raises(TypeError) as caught:
        as_tensor([1.0, 2.0], "v", op=OP, stream=0)
    assert str(caught.value) == (
        f"{OP}: v is not a device tensor (got list, expected an object "
        "with __dlpack__ or __cuda_array_interface__)"
    )


def test_dlpack_preferred_over_cai():
    class Both(DLPackTensor):
        __cuda_array_interface__ = property(lambda self: pytest.fail("CAI read"))

    view = as_tensor(Both((4, 4), KDL_FLOAT, 32), "q", op=OP, stream=0)
    assert view.element == "f32" and view.device_id == 0


# ---------------------------------------------------------------- DLPack


@pytest.mark.parametrize("element,code,bits", [(e, c, b) for e, c, b, _ in ELEMENTS])
def test_dlpack_each_element(element, code, bits):
    producer = DLPackTensor((2, 3, 5, 8), code, bits, device=(KDL_CUDA, 3))
    view = as_tensor(producer, "q", op=OP, stream=0)
    assert view.ptr == FAKE_PTR
    assert view.element == element
    assert view.shape == (2, 3, 5, 8)
    assert view.strides == (120, 40, 8, 1)
    assert view.buffer_elements == 240
    assert view.device_id == 3


def test_dlpack_strides_zero_strides_and_byte_offset():
    producer = dlpack_of("f16", (2, 8, 100, 64), strides=(12800, 0, 128, 1), byte_offset=256)
    view = as_tensor(producer, "k", op=OP, stream=0)
    assert view.ptr == FAKE_PTR + 256
    assert view.strides == (12800, 0, 128, 1)
    assert view.buffer_elements == 1 + 12800 + 99 * 128 + 63


def test_cuda_core_strided_memory_view_is_a_tensor():
    """A cuda.core StridedMemoryView, as cuda.core users hold tensors, reads as its producer."""
    from cuda.core.utils import StridedMemoryView

    producer = dlpack_of("f16", (2, 8, 100, 64), strides=(12800, 0, 128, 1), byte_offset=256)
    view = as_tensor(StridedMemoryView.from_dlpack(producer, stream_ptr=-1), "k", op=OP, stream=0)
    assert view.ptr == FAKE_PTR + 256
    assert (view.element, view.shape, view.strides) == ("f16", (2, 8, 100, 64), (12800, 0, 128, 1))
    assert view.buffer_elements == 1 + 12800 + 99 * 128 + 63


@pytest.mark.parametrize(
    "consumer,asked",
    [
        (0, DLPACK_LEGACY_DEFAULT_STREAM),
        (CONSUMER_STREAM, CONSUMER_STREAM),
        (NO_SYNC, -1),
    ],
)
def test_dlpack_consumer_stream(consumer, asked):
    """The producer is told the consumer's stream (legacy default as 1, DLPack's spelling)."""
    producer = dlpack_of("f32", (4, 4))
    as_tensor(producer, "q", op=OP, stream=consumer)
    assert producer.streams == [asked]


def test_dlpack_tensor_released_with_the_view():
    producer = dlpack_of("f32", (4, 4))
    view = as_tensor(producer, "q", op=OP, stream=0)
    assert producer.deleted == 0
    del view
    gc.collect()
    assert producer.deleted == 1


@pytest.mark.parametrize(
    "device,name",
    [
        ((KDL_CPU, 0), "kDLCPU"),
        ((KDL_CUDA_HOST, 0), "kDLCUDAHost"),
        ((99, 0), "device type 99"),
    ],
)
def test_dlpack_not_in_device_memory(device, name):
    producer = dlpack_of("f32", (4, 4), device=device)
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        as_tensor(producer, "q", op=OP, stream=0)
    assert caught.value.message == (
        f"{OP}: q is not in CUDA device memory (got {name}, expected kDLCUDA or kDLCUDAManaged)"
    )
    assert producer.streams == [], "refused before asking for an export"


def test_dlpack_managed_memory_accepted():
    view = as_tensor(dlpack_of("f32", (4,), device=(KDL_CUDA_MANAGED, 1)), "q", op=OP, stream=0)
    assert view.device_id == 1


@pytest.mark.parametrize(
    "code,bits,name", [(KDL_INT, 8, "int8"), (KDL_UINT, 16, "uint16"), (KDL_INT, 64, "int64")]
)
def test_dlpack_unsupported_element(code, bits, name):
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        as_tensor(DLPackTensor((4,), code, bits), "v", op=OP, stream=0)
    assert caught.value.message == (
        f"{OP}: v element is not supported (got {name}, expected f32, f16, bf16 or f64)"
    )


# ---------------------------------------------------------------- malformed producers

CAI = "q __cuda_array_interface__"
BOOL_RULE = "expected True, False, 0 or 1"


class RawInterface:
    """An object whose ``__cuda_array_interface__`` is exactly the value given."""

    def __init__(self, interface):
        self.__cuda_array_interface__ = interface


def interface_with(**fields):
    """A valid f32 [2, 4] interface with `fields` replaced (a value of ... removes the key)."""
    interface = {
        "shape": (2, 4),
        "typestr": "<f4",
        "data": (FAKE_PTR, False),
        "version": 3,
        "strides": None,
        "stream": None,
    }
    interface.update(fields)
    return {key: value for key, value in interface.items() if value is not ...}


@pytest.mark.parametrize(
    "fields,message",
    [
        (
            {"data": ...},
            f"{CAI} has no 'data' (got keys ['shape', 'stream', 'strides', 'typestr', "
            "'version'], expected 'shape', 'typestr' and 'data')",
        ),
        (
            {"shape": ...},
            f"{CAI} has no 'shape' (got keys ['data', 'stream', 'strides', 'typestr', "
            "'version'], expected 'shape', 'typestr' and 'data')",
        ),
        (
            {"typestr": ...},
            f"{CAI} has no 'typestr' (got keys ['data', 'shape', 'stream', 'strides', "
            "'version'], expected 'shape', 'typestr' and 'data')",
        ),
        (
            {"data": FAKE_PTR},
            f"{CAI} data is not a (pointer, read_only) pair (got int {FAKE_PTR}, "
            "expected a 2-tuple of int and bool)",
        ),
        (
            {"data": (FAKE_PTR, False, 0)},
            f"{CAI} data is not a (pointer, read_only) pair (got tuple ({FAKE_PTR}, False, 0), "
            "expected a 2-tuple of int and bool)",
        ),
        (
            {"data": ("0x10", False)},
            f"{CAI} data pointer is not an integer (got str '0x10', expected an int)",
        ),
        (
            {"data": (1.5, False)},
            f"{CAI} data pointer is not an integer (got float 1.5, expected an int)",
        ),
        (
            {"data": (None, False)},
            f"{CAI} data pointer is not an integer (got NoneType None, expected an int)",
        ),
        (
            {"data": (True, False)},
            f"{CAI} data pointer is not an integer (got bool True, expected an int)",
        ),
        (
            {"data": (-16, False)},
            f"{CAI} data pointer is not an address (got -16, expected 0 to 0xffffffffffffffff)",
        ),
        (
            {"data": (2**64, False)},
            f"{CAI} data pointer is not an address (got {2**64}, expected 0 to 0xffffffffffffffff)",
        ),
        (
            {"data": (FAKE_PTR, "no")},
            f"{CAI} data read_only flag is not a bool (got str 'no', {BOOL_RULE})",
        ),
        (
            {"shape": 4},
            f"{CAI} shape is not a sequence of extents (got int 4, expected a tuple of int)",
        ),
        (
            {"shape": "24"},
            f"{CAI} shape is not a sequence of extents (got str '24', expected a tuple of int)",
        ),
        ({"shape": (2, 4.0)}, f"{CAI} shape[1] is not an integer (got float 4.0, expected an int)"),
        ({"shape": (2, -4)}, f"{CAI} shape[1] is negative (got -4, expected >= 0)"),
        (
            {"strides": (16,)},
            f"{CAI} strides do not match the shape (got tuple (16,), expected None "
            "or 2 byte strides, one per axis)",
        ),
        (
            {"strides": 16},
            f"{CAI} strides do not match the shape (got int 16, expected None or 2 "
            "byte strides, one per axis)",
        ),
        (
            {"strides": (16.0, 4)},
            f"{CAI} strides[0] is not an integer (got float 16.0, expected an int)",
        ),
        (
            {"typestr": ""},
            f"{CAI} typestr is not a type string (got str '', expected a string such as '<f4')",
        ),
        (
            {"typestr": 4},
            f"{CAI} typestr is not a type string (got int 4, expected a string such as '<f4')",
        ),
        (
            {"typestr": "<f"},
            "q typestr has no item size (got '<f', expected a byte order, a kind and "
            "a size in bytes, such as '<f4')",
        ),
        (
            {"typestr": "<"},
            "q typestr has no item size (got '<', expected a byte order, a kind and "
            "a size in bytes, such as '<f4')",
        ),
        (
            {"typestr": "<fx"},
            "q typestr has no item size (got '<fx', expected a byte order, a kind "
            "and a size in bytes, such as '<f4')",
        ),
        (
            {"typestr": "<4f"},
            "q typestr has no item size (got '<4f', expected a byte order, a kind "
            "and a size in bytes, such as '<f4')",
        ),
        (
            {"typestr": "<f0", "strides": (16, 4)},
            "q typestr has item size 0 (got '<f0', expected a size of at least 1 byte)",
        ),
        ({"stream": "1"}, f"{CAI} stream is not an integer (got str '1', expected an int)"),
        ({"stream": 1.0}, f"{CAI} stream is not an integer (got float 1.0, expected an int)"),
        (
            {"stream": -3},
            f"{CAI} stream is negative (got -3, expected a stream handle >= 0, or None)",
        ),
    ],
    ids=lambda value: None if isinstance(value, str) else str(value)[:48],
)
def test_cai_malformed_interface(fields, message):
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        as_tensor(RawInterface(interface_with(**fields)), "q", op=OP, stream=CONSUMER_STREAM)
    assert caught.value.message == f"{OP}: {message}"


@pytest.mark.parametrize(
    "interface,got", [([1], "list [1]"), (None, "NoneType None"), ("shape", "str 'shape'")]
)
def test_cai_interface_not_a_dict(interface, got):
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        as_tensor(RawInterface(interface), "q", op=OP, stream=0)
    assert caught.value.message == (
        f"{OP}: {CAI} is not a dict (got {got}, expected a dict with 'shape', 'typestr' and 'data')"
    )


def test_cai_interface_that_raises():
    class Raising:
        @property
        def __cuda_array_interface__(self):
            raise RuntimeError("device lost")

    with pytest.raises(baracuda.InvalidProblemError) as caught:
        as_tensor(Raising(), "q", op=OP, stream=0)
    assert caught.value.message == (
        f"{OP}: {CAI} failed (got RuntimeError: device lost, expected a dict)"
    )


def test_cai_optional_keys_may_be_absent():
    """version, strides, stream and mask may be absent; a list shape and data are taken."""
    minimal = {"shape": [2, 4], "typestr": "<f4", "data": [FAKE_PTR, 1]}
    view = as_tensor(RawInterface(minimal), "q", op=OP, stream=CONSUMER_STREAM)
    assert (view.ptr, view.shape, view.strides) == (FAKE_PTR, (2, 4), (4, 1))
    view = as_tensor(
        RawInterface(interface_with(shape=(np.int64(3),), data=(np.uint64(64), 0))),
        "q",
        op=OP,
        stream=0,
    )
    assert (view.ptr, view.shape, type(view.shape[0])) == (64, (3,), int)


def test_flash_attention_refuses_a_malformed_interface():
    q = RawInterface(interface_with(shape=(1, 8, 64, 64), typestr="<f0"))
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        baracuda.flash_attention(q, q, q)
    assert caught.value.message == (
        "flash_attention: q typestr has item size 0 (got '<f0', expected a size of at least 1 byte)"
    )


class ClaimingProducer:
    """A DLPack producer whose ``__dlpack_device__`` and ``__dlpack__`` are given apart."""

    def __init__(self, device, export):
        self._device = device
        self._export = export

    def __dlpack_device__(self):
        if isinstance(self._device, BaseException):
            raise self._device
        return self._device

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        if isinstance(self._export, BaseException):
            raise self._export
        return self._export() if callable(self._export) else self._export


HOST_ARRAY = np.arange(16, dtype=np.float32).reshape(4, 4)
DEVICE_RULE = "expected a 2-tuple of int"
# A refused view is freed with the test's traceback, in a garbage cycle whose order is
# arbitrary: the fake capsules' structs (and deleters) must outlive it.
_CAPSULE_OWNERS = []


def exported_by(element, shape, device):
    """A ``__dlpack__`` whose capsule holds a fake tensor on ``device``."""
    owner = dlpack_of(element, shape, device=device)
    _CAPSULE_OWNERS.append(owner)
    return owner.__dlpack__


@pytest.mark.parametrize(
    "device,message",
    [
        (
            RuntimeError("no device"),
            "q __dlpack_device__() failed (got RuntimeError: no device, expected (device_type, "
            "device_id))",
        ),
        (
            "cuda",
            f"q __dlpack_device__() is not a (device_type, device_id) pair (got str 'cuda', "
            f"{DEVICE_RULE})",
        ),
        (
            (KDL_CUDA,),
            f"q __dlpack_device__() is not a (device_type, device_id) pair (got tuple "
            f"(2,), {DEVICE_RULE})",
        ),
        (
            (KDL_CUDA, 0, 0),
            f"q __dlpack_device__() is not a (device_type, device_id) pair (got "
            f"tuple (2, 0, 0), {DEVICE_RULE})",
        ),
        (
            ("2", 0),
            "q __dlpack_device__() device_type is not an integer (got str '2', expected an int)",
        ),
        (
            (KDL_CUDA, 0.0),
            "q __dlpack_device__() device_id is not an integer (got float 0.0, expected an int)",
        ),
        (
            (KDL_CUDA, -1),
            "q __dlpack_device__() device_id is negative (got -1, expected a CUDA "
            "device ordinal >= 0)",
        ),
    ],
    ids=["raises", "str", "one", "three", "type-str", "id-float", "id-negative"],
)
def test_dlpack_malformed_device(device, message):
    producer = ClaimingProducer(device, lambda: pytest.fail("exported before the device check"))
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        as_tensor(producer, "q", op=OP, stream=0)
    assert caught.value.message == f"{OP}: {message}"


@pytest.mark.parametrize(
    "export",
    [BufferError("cannot export"), 42, None, "capsule"],
    ids=["raises", "int", "none", "str"],
)
def test_dlpack_export_that_is_not_a_tensor(export):
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        as_tensor(ClaimingProducer((KDL_CUDA, 0), export), "q", op=OP, stream=0)
    message = caught.value.message
    assert message.startswith(f"{OP}: q __dlpack__() gave no tensor (got "), message
    assert message.endswith(", expected a DLPack capsule)")
    if isinstance(export, BufferError):
        assert "(got BufferError: cannot export," in message


def test_dlpack_export_raising_a_baracuda_error_keeps_its_type():
    error = baracuda.CudaError("producer: no usable CUDA device (got none, expected one)")
    with pytest.raises(baracuda.CudaError) as caught:
        as_tensor(ClaimingProducer((KDL_CUDA, 0), error), "q", op=OP, stream=0)
    assert caught.value is error


@pytest.mark.parametrize("claim", [(KDL_CUDA, 0), (KDL_CUDA_MANAGED, 0)])
def test_dlpack_host_capsule_claiming_cuda_is_refused(claim):
    """numpy's capsule holds host memory: a producer that says CUDA is not believed."""
    producer = ClaimingProducer(claim, HOST_ARRAY.__dlpack__)
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        as_tensor(producer, "q", op=OP, stream=0)
    claimed = "kDLCUDA" if claim[0] == KDL_CUDA else "kDLCUDAManaged"
    assert caught.value.message == (
        f"{OP}: q is not in CUDA device memory (got a kDLCPU tensor from __dlpack__() where "
        f"__dlpack_device__() says {claimed}, expected kDLCUDA or kDLCUDAManaged)"
    )


def test_dlpack_pinned_host_capsule_claiming_cuda_is_refused():
    producer = ClaimingProducer((KDL_CUDA, 0), exported_by("f32", (4, 4), (KDL_CUDA_HOST, 0)))
    with pytest.raises(
        baracuda.InvalidProblemError,
        match=r"got a kDLCUDAHost tensor from "
        r"__dlpack__\(\) where __dlpack_device__\(\) says kDLCUDA,",
    ):
        as_tensor(producer, "q", op=OP, stream=0)


def test_dlpack_capsule_on_another_device_is_refused():
    producer = ClaimingProducer((KDL_CUDA, 0), exported_by("f32", (4, 4), (KDL_CUDA, 3)))
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        as_tensor(producer, "q", op=OP, stream=0)
    assert caught.value.message == (
        f"{OP}: q __dlpack__() exports a tensor on another device "
        "than __dlpack_device__() says (got kDLCUDA:3, expected "
        "kDLCUDA:0)"
    )


def test_dlpack_managed_capsule_claiming_device_memory_is_refused():
    producer = ClaimingProducer((KDL_CUDA, 0), exported_by("f32", (4, 4), (KDL_CUDA_MANAGED, 0)))
    with pytest.raises(
        baracuda.InvalidProblemError,
        match=r"exports a tensor on another device "
        r"than __dlpack_device__\(\) says \(got kDLCUDAManaged:\d+, expected "
        r"kDLCUDA:0\)",
    ):
        as_tensor(producer, "q", op=OP, stream=0)


# ---------------------------------------------------------------- workspace, devices, shapes


def test_workspace_of_any_element():
    assert as_workspace(DLPackTensor((1000,), KDL_UINT, 8), op=OP, stream=0).nbytes == 1000
    assert as_workspace(CudaArrayInterface((256,), "|u1"), op=OP, stream=0).nbytes == 256
    workspace = as_workspace(dlpack_of("f32", (10,), device=(KDL_CUDA, 2)), op=OP, stream=0)
    assert (workspace.ptr, workspace.nbytes, workspace.device_id) == (FAKE_PTR, 40, 2)


def test_inconsistent_devices():
    on_0 = as_tensor(dlpack_of("f32", (4,)), "q", op=OP, stream=0)
    on_1 = as_tensor(dlpack_of("f32", (4,), device=(KDL_CUDA, 1)), "k", op=OP, stream=0)
    unknown = as_tensor(CudaArrayInterface((4,), "<f4"), "v", op=OP, stream=0)
    assert common_device([("q", on_0), ("v", unknown), ("mask", None)], OP) == 0
    assert common_device([("v", unknown)], OP) is None
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        common_device([("q", on_0), ("v", unknown), ("k", on_1)], OP)
    assert caught.value.message == (
        f"{OP}: k is on another device than q (got device 1, expected device 0)"
    )


@pytest.mark.parametrize(
    "shape,strides,rank,expanded_shape,expanded_strides",
    [
        ((64, 100), (100, 1), 4, (1, 1, 64, 100), (0, 0, 100, 1)),
        ((1, 100), (100, 1), 4, (1, 1, 1, 100), (0, 0, 100, 1)),
        ((8, 1, 100), (100, 100, 1), 4, (1, 8, 1, 100), (0, 100, 100, 1)),
        ((2, 8, 64, 100), (51200, 6400, 100, 1), 4, (2, 8, 64, 100), (51200, 6400, 100, 1)),
        ((8,), (1,), 2, (1, 8), (0, 1)),
    ],
)
def test_prepend_axes(shape, strides, rank, expanded_shape, expanded_strides):
    byte_strides = tuple(4 * s for s in strides)
    view = as_tensor(
        CudaArrayInterface(shape, "<f4", strides=byte_strides), "mask", op=OP, stream=0
    )
    expanded = prepend_axes(view, rank)
    assert (expanded.shape, expanded.strides) == (expanded_shape, expanded_strides)
    assert expanded.buffer_elements == view.buffer_elements


# ---------------------------------------------------------------- streams


class CudaStream:
    def __init__(self, version, handle):
        self._protocol = (version, handle)

    def __cuda_stream__(self):
        return self._protocol


@pytest.mark.parametrize(
    "stream,handle",
    [
        (None, 0),
        (0, 0),
        (CONSUMER_STREAM, CONSUMER_STREAM),
        (np.uint64(7), 7),
        (CudaStream(0, PRODUCER_STREAM), PRODUCER_STREAM),
        (CudaStream(0, 0), 0),
    ],
)
def test_stream_handles(stream, handle):
    assert _cuda.stream_handle(stream, OP) == handle


def test_stream_protocol_version_checked():
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        _cuda.stream_handle(CudaStream(3, PRODUCER_STREAM), OP)
    assert caught.value.message == (
        f"{OP}: stream speaks an unknown __cuda_stream__ protocol version (got 3, expected 0)"
    )


def test_negative_stream_handle():
    with pytest.raises(baracuda.InvalidProblemError, match=r"got -5, expected a cudaStream_t"):
        _cuda.stream_handle(-5, OP)


@pytest.mark.parametrize("stream", ["0", 1.0, True, object()])
def test_not_a_stream(stream):
    with pytest.raises(TypeError, match=f"{OP}: stream is not a CUDA stream"):
        _cuda.stream_handle(stream, OP)


# ---------------------------------------------------------------- element names


@pytest.mark.parametrize(
    "value,element",
    [
        ("f32", "f32"),
        ("bf16", "bf16"),
        (np.float16, "f16"),
        (np.dtype("float64"), "f64"),
        (np.float32, "f32"),
        (ml_dtypes.bfloat16, "bf16"),
        (np.dtype(ml_dtypes.bfloat16), "bf16"),
    ],
)
def test_element_names(value, element):
    assert _tensor.element_name(value, OP) == element
    assert baracuda.FlashSdpaDescriptor(1, 2, 3, 4, 64, element=value).element == element


@pytest.mark.parametrize(
    "value,got",
    [("f8", "'f8'"), ("float32", "'float32'"), (np.int8, "int8"), (np.complex64, "complex64")],
)
def test_element_names_refused(value, got):
    with pytest.raises(baracuda.InvalidProblemError, match="f32, f16, bf16 or f64") as caught:
        _tensor.element_name(value, OP)
    assert f"(got {got}," in caught.value.message


@pytest.mark.parametrize(
    "dtype,element",
    [
        (np.float32, "f32"),
        (np.float16, "f16"),
        (ml_dtypes.bfloat16, "bf16"),
        (np.float64, "f64"),
        (np.int32, None),
        (np.complex128, None),
    ],
)
def test_element_of_dtype(dtype, element):
    assert _tensor.element_of_dtype(np.dtype(dtype)) == element


@pytest.mark.parametrize(
    "element,compute",
    [
        ("f32", "f32"),
        ("f16", "f32"),
        ("bf16", "f32"),
        ("f64", "f64"),
        (None, "f32"),
    ],
)
def test_accumulator_element(element, compute):
    """f64 inputs compute, accumulate and return the LSE in f64; the others in f32."""
    assert _tensor.accumulator_element(element) == compute


def test_descriptor_normalises_fields():
    desc = baracuda.FlashSdpaDescriptor(
        np.int64(2), 8, 128, 256, np.int32(64), scale=1, is_causal=1, window_size_left=np.int16(4)
    )
    assert desc.d_v == 64
    assert (type(desc.batch_size), type(desc.d_k), type(desc.window_size_left)) == (int, int, int)
    assert desc.scale == 1.0 and isinstance(desc.scale, float)
    assert desc.is_causal is True
    assert desc == baracuda.FlashSdpaDescriptor(
        2, 8, 128, 256, 64, 64, scale=1.0, is_causal=True, window_size_left=4
    )


def test_descriptor_extent_beyond_int32():
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        baracuda.FlashSdpaDescriptor(1, 1, 2**31, 1, 64)
    assert caught.value.message == (
        "FlashSdpaDescriptor: query_len does not fit in int32 "
        f"(got {2**31}, expected {-(2**31)} to {2**31 - 1})"
    )


# ---------------------------------------------------------------- DLPack export


def read_capsule(capsule, name):
    assert _capsule_is_valid(capsule, name)
    return _capsule_pointer(capsule, name)


def test_capsule_fields_and_deleter():
    owner = Owner()
    alive = weakref.ref(owner)
    capsule = _capi.dlpack_capsule(owner, FAKE_PTR, (2, 3, 4), (12, 4, 1), "bf16", 5, False)
    managed = DLManagedTensor.from_address(read_capsule(capsule, b"dltensor"))
    tensor = managed.dl_tensor
    assert tensor.data == FAKE_PTR
    assert (tensor.device.device_type, tensor.device.device_id) == (KDL_CUDA, 5)
    assert tensor.ndim == 3
    assert (tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes) == (KDL_BFLOAT, 16, 1)
    assert tensor.shape[:3] == [2, 3, 4] and tensor.strides[:3] == [12, 4, 1]
    assert tensor.byte_offset == 0
    # A consumer renames the capsule, then calls the deleter when its tensor dies.
    assert _capsule_set_name(capsule, b"used_dltensor") == 0
    del owner, capsule
    gc.collect()
    assert alive() is not None, "the consumer's tensor still holds the owner"
    managed.deleter(ctypes.pointer(managed))
    gc.collect()
    assert alive() is None


def test_unused_capsule_releases_its_owner():
    owner = Owner()
    alive = weakref.ref(owner)
    capsule = _capi.dlpack_capsule(owner, FAKE_PTR, (4,), (1,), "f32", 0, False)
    del owner
    gc.collect()
    assert alive() is not None
    del capsule
    gc.collect()
    assert alive() is None


def test_versioned_capsule():
    owner = Owner()
    alive = weakref.ref(owner)
    capsule = _capi.dlpack_capsule(owner, FAKE_PTR, (3, 7), (7, 1), "f64", 1, True)
    managed = DLManagedTensorVersioned.from_address(read_capsule(capsule, b"dltensor_versioned"))
    assert (managed.version.major, managed.version.minor) == _capi.DLPACK_VERSION
    assert managed.flags == 0
    tensor = managed.dl_tensor
    assert (tensor.dtype.code, tensor.dtype.bits) == (KDL_FLOAT, 64)
    assert tensor.shape[:2] == [3, 7] and tensor.device.device_id == 1
    del owner, capsule
    gc.collect()
    assert alive() is None


@pytest.mark.parametrize("element", ITEMSIZE)
def test_device_array_through_strided_memory_view(element):
    """cuda.core, a real DLPack consumer, reads a DeviceArray's export; the array outlives
    the export."""
    array = unallocated_array((2, 3, 5), element, device_id=0)
    alive = weakref.ref(array)
    view = as_tensor(array, "y", op=OP, stream=NO_SYNC)
    assert (view.ptr, view.element, view.shape, view.strides) == (
        FAKE_PTR,
        element,
        (2, 3, 5),
        (15, 5, 1),
    )
    assert (view.buffer_elements, view.device_id) == (30, 0)
    del array
    gc.collect()
    assert alive() is not None
    del view
    gc.collect()
    assert alive() is None


def test_device_array_attributes():
    array = unallocated_array((2, 4, 6), "bf16", device_id=1)
    assert array.strides == (24, 6, 1)
    assert array.dtype == np.dtype(ml_dtypes.bfloat16)
    assert (array.size, array.nbytes, array.element, array.ptr) == (48, 96, "bf16", FAKE_PTR)
    assert array.__dlpack_device__() == (KDL_CUDA, 1)


@pytest.mark.parametrize("stream,reported", [(0, 1), (2, 2), (PRODUCER_STREAM, PRODUCER_STREAM)])
def test_device_array_cuda_array_interface(stream, reported):
    interface = unallocated_array((3, 4), "f16", stream=stream).__cuda_array_interface__
    assert interface == {
        "shape": (3, 4),
        "typestr": "<f2",
        "data": (FAKE_PTR, False),
        "version": 3,
        "strides": None,
        "stream": reported,
    }
    view = as_tensor(
        CudaArrayInterface(**{key: interface[key] for key in ("shape", "typestr", "strides")}),
        "y",
        op=OP,
        stream=0,
    )
    assert view.strides == (4, 1)


def test_bf16_device_array_has_no_cuda_array_interface():
    assert not hasattr(unallocated_array((3,), "bf16"), "__cuda_array_interface__")
    assert hasattr(unallocated_array((3,), "f32"), "__cuda_array_interface__")


def test_device_array_dlpack_refusals():
    array = unallocated_array((3,), "f32", device_id=0)
    with pytest.raises(BufferError, match="copy"):
        array.__dlpack__(stream=-1, copy=True)
    with pytest.raises(BufferError, match=r"got \(2, 1\), expected \(2, 0\)"):
        array.__dlpack__(stream=-1, dl_device=(KDL_CUDA, 1))
    # Consumer on the array's own stream (the legacy default): no ordering needed.
    assert _capsule_is_valid(array.__dlpack__(stream=None), b"dltensor")
    assert _capsule_is_valid(array.__dlpack__(stream=1, max_version=(1, 1)), b"dltensor_versioned")


# ---------------------------------------------------------------- flash_attention inputs


def test_flash_attention_needs_rank_4_inputs():
    q = CudaArrayInterface((8, 64, 64), "<f4")
    k = v = CudaArrayInterface((1, 8, 64, 64), "<f4")
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        baracuda.flash_attention(q, k, v)
    assert caught.value.message == "flash_attention: q rank mismatch (got 3, expected 4)"


def test_flash_attention_refuses_host_tensors():
    q = dlpack_of("f32", (1, 8, 64, 64), device=(KDL_CPU, 0))
    k = v = CudaArrayInterface((1, 8, 64, 64), "<f4")
    with pytest.raises(baracuda.InvalidProblemError, match="q is not in CUDA device memory"):
        baracuda.flash_attention(q, k, v)


def test_flash_attention_window_is_a_pair():
    q = k = v = CudaArrayInterface((1, 8, 64, 64), "<f4")
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        baracuda.flash_attention(q, k, v, window=(1, 2, 3))
    assert caught.value.message == (
        "flash_attention: window is not a pair (got (1, 2, 3), "
        "expected (left, right) of int or None)"
    )


@pytest.mark.parametrize(
    "shape,message",
    [
        (
            (4, 2.0),
            "DeviceArray: extent of axis 1 is not an integer (got float 2.0, expected an int)",
        ),
        (
            (True,),
            "DeviceArray: extent of axis 0 is not an integer (got bool True, expected an int)",
        ),
        (4, "DeviceArray: shape is not a sequence of extents (got int, expected a tuple of int)"),
        (
            "44",
            "DeviceArray: shape is not a sequence of extents (got str, expected a tuple of int)",
        ),
        ((4, -1), "DeviceArray: extent of axis 1 is negative (got -1, expected >= 0)"),
    ],
)
def test_device_array_shape_is_checked_before_any_device_call(shape, message):
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        DeviceArray(shape, "f32")
    assert caught.value.message == message


def test_device_array_dlpack_copy_flag_is_strict():
    array = unallocated_array((3,), "f32", device_id=0)
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        array.__dlpack__(stream=-1, copy="no")
    assert caught.value.message == (
        "DeviceArray.__dlpack__: copy is not a bool (got str 'no', expected True, False, 0 or 1)"
    )
    assert _capsule_is_valid(array.__dlpack__(stream=-1, copy=False), b"dltensor")


@pytest.mark.parametrize(
    "reported,message",
    [
        (
            (0,),
            "stream.__cuda_stream__() is not a (version, handle) pair (got tuple (0,), expected "
            "a 2-tuple of int)",
        ),
        (
            7,
            "stream.__cuda_stream__() is not a (version, handle) pair (got int 7, expected a "
            "2-tuple of int)",
        ),
        (
            (0, 1.5),
            "stream handle is not an integer (got float 1.5, expected a cudaStream_t as an int)",
        ),
        (
            (0, None),
            "stream handle is not an integer (got NoneType None, expected a cudaStream_t as "
            "an int)",
        ),
    ],
)
def test_malformed_stream_protocol(reported, message):
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        _cuda.stream_handle(
            CudaStream(*reported)
            if isinstance(reported, tuple) and len(reported) == 2
            else _RawStream(reported),
            OP,
        )
    assert caught.value.message == f"{OP}: {message}"


class _RawStream:
    def __init__(self, reported):
        self._reported = reported

    def __cuda_stream__(self):
        if isinstance(self._reported, BaseException):
            raise self._reported
        return self._reported


def test_stream_protocol_that_raises():
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        _cuda.stream_handle(_RawStream(RuntimeError("stream destroyed")), OP)
    assert caught.value.message == (
        f"{OP}: stream.__cuda_stream__() failed (got RuntimeError: "
        "stream destroyed, expected (version, handle))"
    )


@pytest.mark.parametrize("value", [[("a",)], "not a dtype name"])
def test_element_name_of_an_unreadable_dtype(value):
    with pytest.raises(baracuda.InvalidProblemError, match="expected f32, f16, bf16 or f64"):
        _tensor.element_name(value, OP)
