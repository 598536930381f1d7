"""Tensors from DLPack and the CUDA Array Interface, described as the C ABI takes them.

A :class:`TensorView` holds what a ``baracuda_tensor`` needs: device address, element name,
shape and strides in elements, and the physical span of the view (``buffer_elements``). The
checks here are only those of what the C ABI cannot express (host memory, elements it has no
name for, more than four axes, devices); every other rule (shapes, broadcasting, last-axis
stride, negative strides) is checked by the C library, which names the first one broken.
"""

from __future__ import annotations

import math
import operator
from typing import Any, NamedTuple

from . import _capi
from ._cuda import CU_STREAM_LEGACY, LEGACY_DEFAULT_STREAM, order_after
from ._errors import InvalidProblemError

ELEMENT_NAMES = tuple(_capi.ELEMENTS)
"""The element names: ``("f32", "f16", "bf16", "f64")``."""

_EXPECTED_ELEMENTS = "f32, f16, bf16 or f64"
_NUMPY_NAMES = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "float64": "f64"}
_ELEMENT_NUMPY_NAMES = {element: name for name, element in _NUMPY_NAMES.items()}
_TORCH_DTYPE_PREFIX = "torch."

NO_SYNC = -1
"""Consumer stream that asks the producer for no ordering (metadata-only reads)."""

# DLPack device types (dlpack.h, DLDeviceType).
DL_DEVICE_NAMES = {
    1: "kDLCPU",
    2: "kDLCUDA",
    3: "kDLCUDAHost",
    4: "kDLOpenCL",
    7: "kDLVulkan",
    8: "kDLMetal",
    9: "kDLVPI",
    10: "kDLROCM",
    11: "kDLROCMHost",
    12: "kDLExtDev",
    13: "kDLCUDAManaged",
    14: "kDLOneAPI",
    15: "kDLWebGPU",
    16: "kDLHexagon",
    17: "kDLMAIA",
}
DL_CUDA = 2
DL_CUDA_MANAGED = 13
# Memory a CUDA kernel of the current device reads: device and managed allocations.
DL_KERNEL_ACCESSIBLE = (DL_CUDA, DL_CUDA_MANAGED)

# CUDA Array Interface typestrs (little-endian or byte order not applicable).
_LITTLE_ENDIAN_MARKS = ("<", "|", "=")
_CAI_FLOAT_ELEMENTS = {"f4": "f32", "f2": "f16", "f8": "f64"}
# ml_dtypes' (and JAX's) spelling of bfloat16: a 2-byte void, shared with any 2-byte record.
_CAI_BFLOAT16_SPELLING = "V2"


class TensorView(NamedTuple):
    """One tensor as the C ABI takes it.

    Attributes
    ----------
    ptr : int
        Device address of element 0 (the producer's byte offset included).
    element : str
        ``"f32"``, ``"f16"``, ``"bf16"`` or ``"f64"``.
    shape : tuple of int
        Extents.
    strides : tuple of int
        Strides in elements.
    buffer_elements : int
        Physical span of the view: ``1 + sum((shape[i] - 1) * strides[i])`` over the axes, 0
        when an extent is 0.
    device_id : int or None
        CUDA device ordinal; ``None`` when the producer does not say (CUDA Array Interface).
    owner : object
        What keeps the producer's export alive while the view is used.
    """

    ptr: int
    element: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    buffer_elements: int
    device_id: int | None
    owner: Any


class _Memory(NamedTuple):
    """What either protocol reports, before the element is checked."""

    ptr: int
    element: str | None  # None: not one of the four
    unsupported: str  # the producer's element, named for a message when element is None
    itemsize: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    device_id: int | None
    owner: Any


# ---------------------------------------------------------------- elements


def element_name(value: object, op: str) -> str:
    """Return the element name of ``value``: one of the four names, or a numpy / torch / cupy /
    ml_dtypes dtype (or scalar type) of f32, f16, bf16 or f64.

    Raises
    ------
    InvalidProblemError
        Any other value.
    """
    if isinstance(value, str):
        if value in ELEMENT_NAMES:
            return value
        raise InvalidProblemError(
            f"{op}: unknown element (got {value!r}, expected {_EXPECTED_ELEMENTS})"
        )
    name = _dtype_name(value)
    if name in _NUMPY_NAMES:
        return _NUMPY_NAMES[name]
    raise InvalidProblemError(
        f"{op}: element is not supported (got {name or repr(value)}, "
        f"expected {_EXPECTED_ELEMENTS})"
    )


def _dtype_name(value: object) -> str | None:
    """numpy's name of a dtype-like value (torch dtypes by their own name), or None."""
    text = str(value)
    if type(value).__module__ == "torch" and text.startswith(_TORCH_DTYPE_PREFIX):
        return text[len(_TORCH_DTYPE_PREFIX):]
    import numpy

    try:
        return numpy.dtype(value).name
    except TypeError:
        return None


_dtype_elements: dict | None = None


def _element_of_dtype(dtype) -> str | None:
    """The element of a numpy dtype, or None (a dict lookup: ``dtype.name`` is slow)."""
    global _dtype_elements
    if _dtype_elements is None:
        _dtype_elements = {numpy_dtype(element): element for element in ELEMENT_NAMES}
    return _dtype_elements.get(dtype)


def numpy_dtype(element: str):
    """The numpy dtype of an element (``ml_dtypes.bfloat16`` for bf16)."""
    import numpy

    if element == "bf16":
        import ml_dtypes

        return numpy.dtype(ml_dtypes.bfloat16)
    return numpy.dtype(_ELEMENT_NUMPY_NAMES[element])


def element_size(element: str) -> int:
    """Bytes per element."""
    return _capi.ELEMENT_SIZES[element]


# ---------------------------------------------------------------- layout


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Row-major strides in elements."""
    strides = []
    step = 1
    for extent in reversed(shape):
        strides.append(step)
        step *= max(extent, 1)
    return tuple(reversed(strides))


def size_of(shape: tuple[int, ...]) -> int:
    """Number of elements of a shape."""
    return math.prod(shape)


def physical_span(shape: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """Elements from element 0 to the last one the view addresses, inclusive; 0 if empty."""
    span = 1
    for extent, stride in zip(shape, strides, strict=True):
        if extent == 0:
            return 0
        span += (extent - 1) * stride
    return span


def prepend_axes(view: TensorView, rank: int) -> TensorView:
    """``view`` with extent-1 axes (stride 0) prepended up to ``rank``; the C ABI broadcasts
    them."""
    missing = rank - len(view.shape)
    if missing <= 0:
        return view
    return view._replace(shape=(1,) * missing + view.shape, strides=(0,) * missing + view.strides)


# ---------------------------------------------------------------- protocols


def as_tensor(obj: object, name: str, *, op: str, stream: int, rank: int | None = None
              ) -> TensorView:
    """Describe a CUDA tensor for the C ABI.

    Parameters
    ----------
    obj : object
        Anything with ``__dlpack__`` (read through ``cuda.core``'s ``StridedMemoryView``) or
        only ``__cuda_array_interface__`` (read from the dict).
    name : str
        The tensor's name in messages (``"q"``, ``"mask"``).
    op : str
        The operation named in messages.
    stream : int
        The consumer stream: the producer orders its pending work before work enqueued there
        later. :data:`NO_SYNC` asks for no ordering.
    rank : int, optional
        The rank the caller needs (to read extents from the tensor); the C ABI checks the
        rest.

    Raises
    ------
    TypeError
        ``obj`` speaks neither protocol.
    InvalidProblemError
        Host memory, an unsupported element, a rank the C ABI cannot hold (or not ``rank``),
        byte strides that are not whole elements.
    """
    memory = _read(obj, name, op, stream)
    if memory.element is None:
        raise InvalidProblemError(
            f"{op}: {name} element is not supported (got {memory.unsupported}, "
            f"expected {_EXPECTED_ELEMENTS})"
        )
    got_rank = len(memory.shape)
    if rank is not None and got_rank != rank:
        raise InvalidProblemError(f"{op}: {name} rank mismatch (got {got_rank}, expected {rank})")
    if not 1 <= got_rank <= _capi.MAX_RANK:
        raise InvalidProblemError(
            f"{op}: {name} rank is not supported (got {got_rank}, expected 1 to {_capi.MAX_RANK})"
        )
    return TensorView(
        ptr=memory.ptr,
        element=memory.element,
        shape=memory.shape,
        strides=memory.strides,
        buffer_elements=physical_span(memory.shape, memory.strides),
        device_id=memory.device_id,
        owner=memory.owner,
    )


class Workspace(NamedTuple):
    """Device scratch memory: address, size in bytes, device (None if not reported)."""

    ptr: int
    nbytes: int
    device_id: int | None
    owner: Any


def as_workspace(obj: object, *, op: str, stream: int) -> Workspace:
    """Describe a device buffer of any element type as workspace (its span in bytes)."""
    memory = _read(obj, "workspace", op, stream)
    nbytes = physical_span(memory.shape, memory.strides) * memory.itemsize
    return Workspace(memory.ptr, nbytes, memory.device_id, memory.owner)


def common_device(tensors, op: str) -> int | None:
    """The device of the tensors that report one (``None`` if none does).

    Raises
    ------
    InvalidProblemError
        Two tensors report different devices.
    """
    found = None
    found_name = None
    for name, tensor in tensors:
        if tensor is None or tensor.device_id is None:
            continue
        if found is None:
            found, found_name = tensor.device_id, name
        elif tensor.device_id != found:
            raise InvalidProblemError(
                f"{op}: {name} is on another device than {found_name} "
                f"(got device {tensor.device_id}, expected device {found})"
            )
    return found


def _read(obj: object, name: str, op: str, stream: int) -> _Memory:
    kind = type(obj)
    if hasattr(kind, "__dlpack__") and hasattr(kind, "__dlpack_device__"):
        return _read_dlpack(obj, name, op, stream)
    if hasattr(obj, "__cuda_array_interface__"):
        return _read_cuda_array_interface(obj, name, op, stream)
    raise TypeError(
        f"{op}: {name} is not a device tensor (got {kind.__name__}, expected an object with "
        "__dlpack__ or __cuda_array_interface__)"
    )


def _read_dlpack(obj: object, name: str, op: str, stream: int) -> _Memory:
    device_type, device_id = obj.__dlpack_device__()
    if device_type not in DL_KERNEL_ACCESSIBLE:
        device_name = DL_DEVICE_NAMES.get(device_type, f"device type {device_type}")
        raise InvalidProblemError(
            f"{op}: {name} is not in CUDA device memory (got {device_name}, "
            "expected kDLCUDA or kDLCUDAManaged)"
        )
    from cuda.core.utils import StridedMemoryView

    view = StridedMemoryView.from_dlpack(obj, stream_ptr=_dlpack_stream(stream))
    shape = tuple(view.shape)
    strides = view.strides
    strides = contiguous_strides(shape) if strides is None else tuple(strides)
    try:
        dtype = view.dtype
    except (TypeError, NotImplementedError, ValueError) as error:
        return _Memory(view.ptr, None, f"a DLPack dtype numpy cannot name ({error})", 0, shape,
                       strides, device_id, view)
    element = _element_of_dtype(dtype)
    unsupported = "" if element is not None else dtype.name
    return _Memory(view.ptr, element, unsupported, dtype.itemsize, shape, strides, device_id,
                   view)


def _dlpack_stream(stream: int) -> int:
    """The ``stream`` argument of ``__dlpack__`` for a consumer stream handle.

    DLPack spells the legacy default stream 1 (0 is ambiguous there); -1 asks for no
    synchronisation.
    """
    if stream == LEGACY_DEFAULT_STREAM:
        return CU_STREAM_LEGACY
    return stream


def _read_cuda_array_interface(obj: object, name: str, op: str, stream: int) -> _Memory:
    # Read from the dict rather than through StridedMemoryView: its CAI path asks the driver
    # for the pointer's device (cuPointerGetAttribute), one driver call per tensor, which also
    # makes it unusable without a driver. The interface reports no device; the C ABI needs
    # none, and the caller checks the devices that DLPack tensors report.
    interface = obj.__cuda_array_interface__
    if interface.get("mask") is not None:
        raise InvalidProblemError(
            f"{op}: {name} is a masked array (got a __cuda_array_interface__ mask, "
            "expected none)"
        )
    ptr, _read_only = interface["data"]
    shape = tuple(operator.index(extent) for extent in interface["shape"])
    typestr = interface["typestr"]
    unsupported, element, itemsize = _parse_typestr(typestr, name, op)
    byte_strides = interface.get("strides")
    if byte_strides is None:
        strides = contiguous_strides(shape)
    else:
        strides = tuple(_element_stride(operator.index(step), itemsize, axis, name, op)
                        for axis, step in enumerate(byte_strides))
    producer = interface.get("stream")
    if stream != NO_SYNC and producer is not None:
        order_after(producer, stream, op)
    return _Memory(ptr or 0, element, unsupported, itemsize, shape, strides, None, obj)


def _parse_typestr(typestr: str, name: str, op: str) -> tuple[str, str | None, int]:
    """(name for messages, element or None, itemsize) of a CUDA Array Interface typestr."""
    order, code = typestr[0], typestr[1:]
    if order not in _LITTLE_ENDIAN_MARKS:
        raise InvalidProblemError(
            f"{op}: {name} is not little-endian (got typestr {typestr!r}, expected byte order "
            "'<', '|' or '=')"
        )
    if code == _CAI_BFLOAT16_SPELLING:
        raise InvalidProblemError(
            f"{op}: {name} has a typestr with no standard element (got {typestr!r}, expected "
            "'<f4', '<f2' or '<f8'; bf16 has no standard __cuda_array_interface__ typestr, "
            "so bf16 tensors must come through DLPack)"
        )
    itemsize = int(code[1:])
    element = _CAI_FLOAT_ELEMENTS.get(code)
    if element is not None:
        return _ELEMENT_NUMPY_NAMES[element], element, itemsize
    return _dtype_name(typestr) or typestr, None, itemsize


def _element_stride(byte_stride: int, itemsize: int, axis: int, name: str, op: str) -> int:
    elements, remainder = divmod(byte_stride, itemsize)
    if remainder:
        raise InvalidProblemError(
            f"{op}: {name} stride of axis {axis} is not a whole number of elements "
            f"(got {byte_stride} bytes, expected a multiple of {itemsize})"
        )
    return elements
