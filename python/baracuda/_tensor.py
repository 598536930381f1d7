"""Tensors from DLPack and the CUDA Array Interface, described as the C ABI takes them.

A :class:`TensorView` holds what a ``baracuda_tensor`` needs: device address, element name,
shape and strides in elements, and the physical span of the view (``buffer_elements``). The
checks here are only those of what the C ABI cannot express (host memory, elements it has no
name for, more than four axes, devices); every other rule (shapes, broadcasting, last-axis
stride, negative strides) is checked by the C library, which names the first one broken.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from . import _capi
from ._checks import as_bool, as_int, describe
from ._cuda import CU_STREAM_LEGACY, LEGACY_DEFAULT_STREAM, ensure_context, order_after
from ._errors import BaracudaError, InvalidProblemError

ELEMENT_NAMES = tuple(_capi.ELEMENTS)
"""The element names: ``("f32", "f16", "bf16", "f64")``."""

_EXPECTED_ELEMENTS = f"{', '.join(ELEMENT_NAMES[:-1])} or {ELEMENT_NAMES[-1]}"
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

DLPACK_DEVICE_FIELDS = 2
"""``__dlpack_device__()`` returns ``(device_type, device_id)``."""

# CUDA Array Interface: required keys, the (pointer, read_only) pair, 64-bit addresses.
_CAI_REQUIRED_KEYS = ("shape", "typestr", "data")
_CAI_REQUIRED_TEXT = "'shape', 'typestr' and 'data'"
CAI_DATA_FIELDS = 2
UINTPTR_MAX = 2**64 - 1
_DIGITS = "0123456789"

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
        f"{op}: element is not supported (got {name or repr(value)}, expected {_EXPECTED_ELEMENTS})"
    )


def _dtype_name(value: object) -> str | None:
    """numpy's name of a dtype-like value (torch dtypes by their own name), or None."""
    text = str(value)
    if type(value).__module__ == "torch" and text.startswith(_TORCH_DTYPE_PREFIX):
        return text[len(_TORCH_DTYPE_PREFIX) :]
    import numpy

    try:
        return numpy.dtype(value).name
    except (TypeError, ValueError):
        return None


_dtype_elements: dict | None = None


def element_of_dtype(dtype) -> str | None:
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


def accumulator_element(element: str | None) -> str:
    """The compute element of inputs of ``element``: that of the score arithmetic, the
    accumulators and the LSE.

    ``"f64"`` for f64, ``"f32"`` for every other element (and for ``None``, an input of none
    of the four), as the C library's ``baracuda::accumulator_element``.
    """
    return "f64" if element == "f64" else "f32"


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


def as_tensor(
    obj: object, name: str, *, op: str, stream: int, rank: int | None = None
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
    interface = _cuda_array_interface_of(obj, name, op)
    if interface is not _NO_INTERFACE:
        return _read_cuda_array_interface(interface, obj, name, op, stream)
    raise TypeError(
        f"{op}: {name} is not a device tensor (got {kind.__name__}, expected an object with "
        "__dlpack__ or __cuda_array_interface__)"
    )


def _failure(error: BaseException) -> str:
    """``"<type>: <message>"`` of an exception (the type alone when it has no message)."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# ---------------------------------------------------------------- DLPack


def _device_name(device_type: int, device_id: int | None = None) -> str:
    name = DL_DEVICE_NAMES.get(device_type, f"device type {device_type}")
    return name if device_id is None else f"{name}:{device_id}"


def _dlpack_device(obj: object, name: str, op: str) -> tuple[int, int]:
    """``(device_type, device_id)`` that ``obj.__dlpack_device__()`` claims, as ints."""
    where = f"{name} __dlpack_device__()"
    try:
        claimed = obj.__dlpack_device__()
    except Exception as error:
        raise InvalidProblemError(
            f"{op}: {where} failed (got {_failure(error)}, expected (device_type, device_id))"
        ) from error
    if not isinstance(claimed, (tuple, list)) or len(claimed) != DLPACK_DEVICE_FIELDS:
        raise InvalidProblemError(
            f"{op}: {where} is not a (device_type, device_id) pair (got {describe(claimed)}, "
            "expected a 2-tuple of int)"
        )
    return (
        as_int(claimed[0], f"{where} device_type", op),
        as_int(claimed[1], f"{where} device_id", op),
    )


def _read_dlpack(obj: object, name: str, op: str, stream: int) -> _Memory:
    device_type, device_id = _dlpack_device(obj, name, op)
    if device_type not in DL_KERNEL_ACCESSIBLE:
        raise InvalidProblemError(
            f"{op}: {name} is not in CUDA device memory (got {_device_name(device_type)}, "
            "expected kDLCUDA or kDLCUDAManaged)"
        )
    if device_id < 0:
        raise InvalidProblemError(
            f"{op}: {name} __dlpack_device__() device_id is negative (got {device_id}, "
            "expected a CUDA device ordinal >= 0)"
        )
    from cuda.core.utils import StridedMemoryView

    ensure_context(device_id, op)
    try:
        view = StridedMemoryView.from_dlpack(obj, stream_ptr=_dlpack_stream(stream))
    except BaracudaError:
        raise
    except Exception as error:
        raise InvalidProblemError(
            f"{op}: {name} __dlpack__() gave no tensor (got {_failure(error)}, expected a "
            "DLPack capsule)"
        ) from error
    shape = tuple(view.shape)
    # An empty view touches no memory (and cuda.core reports a NULL one as host memory).
    if math.prod(shape) != 0:
        _check_exported_device(view, device_type, device_id, name, op)
    strides = view.strides
    strides = contiguous_strides(shape) if strides is None else tuple(strides)
    try:
        dtype = view.dtype
    except (TypeError, NotImplementedError, ValueError) as error:
        return _Memory(
            view.ptr,
            None,
            f"a DLPack dtype numpy cannot name ({error})",
            0,
            shape,
            strides,
            device_id,
            view,
        )
    element = element_of_dtype(dtype)
    unsupported = "" if element is not None else dtype.name
    return _Memory(view.ptr, element, unsupported, dtype.itemsize, shape, strides, device_id, view)


def _check_exported_device(view, device_type: int, device_id: int, name: str, op: str) -> None:
    """Refuse an export whose tensor is not where ``__dlpack_device__()`` said (a host capsule
    from a producer that claims CUDA, another device)."""
    exported_type, exported_id = view.__dlpack_device__()
    if exported_type not in DL_KERNEL_ACCESSIBLE or not view.is_device_accessible:
        raise InvalidProblemError(
            f"{op}: {name} is not in CUDA device memory (got a {_device_name(exported_type)} "
            f"tensor from __dlpack__() where __dlpack_device__() says "
            f"{_device_name(device_type)}, expected kDLCUDA or kDLCUDAManaged)"
        )
    # cuda.core reports the ordinal of a kDLCUDA tensor from the tensor itself; that of
    # managed memory, which every device reads, it does not keep.
    if exported_type != device_type or (exported_type == DL_CUDA and exported_id != device_id):
        raise InvalidProblemError(
            f"{op}: {name} __dlpack__() exports a tensor on another device than "
            f"__dlpack_device__() says (got {_device_name(exported_type, exported_id)}, "
            f"expected {_device_name(device_type, device_id)})"
        )


def _dlpack_stream(stream: int) -> int:
    """The ``stream`` argument of ``__dlpack__`` for a consumer stream handle.

    DLPack spells the legacy default stream 1 (0 is ambiguous there); -1 asks for no
    synchronisation.
    """
    if stream == LEGACY_DEFAULT_STREAM:
        return CU_STREAM_LEGACY
    return stream


# ---------------------------------------------------------------- CUDA Array Interface


class _Interface(NamedTuple):
    """The checked fields of a ``__cuda_array_interface__`` dict."""

    ptr: int
    shape: tuple[int, ...]
    typestr: str
    byte_strides: tuple[int, ...] | None
    stream: int | None


_NO_INTERFACE = object()


def _cuda_array_interface_of(obj: object, name: str, op: str):
    """``obj.__cuda_array_interface__`` (any value), or ``_NO_INTERFACE`` when it has none."""
    try:
        return obj.__cuda_array_interface__
    except AttributeError:
        return _NO_INTERFACE
    except Exception as error:
        raise InvalidProblemError(
            f"{op}: {name} __cuda_array_interface__ failed (got {_failure(error)}, expected a dict)"
        ) from error


def _interface_fields(interface: object, name: str, op: str) -> _Interface:
    """Check a ``__cuda_array_interface__`` dict (version 3); the one place that reads it.

    ``version`` may be absent; ``mask`` must be absent or None; ``strides`` and ``stream`` may
    be absent or None.

    Raises
    ------
    InvalidProblemError
        Not a dict, a required key missing, a mask, or a field of the wrong form.
    """
    where = f"{name} __cuda_array_interface__"
    if not isinstance(interface, Mapping):
        raise InvalidProblemError(
            f"{op}: {where} is not a dict (got {describe(interface)}, expected a dict with "
            f"{_CAI_REQUIRED_TEXT})"
        )
    for key in _CAI_REQUIRED_KEYS:
        if key not in interface:
            raise InvalidProblemError(
                f"{op}: {where} has no {key!r} (got keys {sorted(map(str, interface))}, "
                f"expected {_CAI_REQUIRED_TEXT})"
            )
    if interface.get("mask") is not None:
        raise InvalidProblemError(
            f"{op}: {name} is a masked array (got a __cuda_array_interface__ mask, expected none)"
        )

    data = interface["data"]
    if not isinstance(data, (tuple, list)) or len(data) != CAI_DATA_FIELDS:
        raise InvalidProblemError(
            f"{op}: {where} data is not a (pointer, read_only) pair (got {describe(data)}, "
            "expected a 2-tuple of int and bool)"
        )
    ptr = as_int(data[0], f"{where} data pointer", op)
    if not 0 <= ptr <= UINTPTR_MAX:
        raise InvalidProblemError(
            f"{op}: {where} data pointer is not an address (got {ptr}, expected 0 to "
            f"{UINTPTR_MAX:#x})"
        )
    as_bool(data[1], f"{where} data read_only flag", op)

    extents = interface["shape"]
    if not isinstance(extents, (tuple, list)):
        raise InvalidProblemError(
            f"{op}: {where} shape is not a sequence of extents (got {describe(extents)}, "
            "expected a tuple of int)"
        )
    shape = tuple(
        as_int(extent, f"{where} shape[{axis}]", op) for axis, extent in enumerate(extents)
    )
    for axis, extent in enumerate(shape):
        if extent < 0:
            raise InvalidProblemError(
                f"{op}: {where} shape[{axis}] is negative (got {extent}, expected >= 0)"
            )

    typestr = interface["typestr"]
    if not isinstance(typestr, str) or not typestr:
        raise InvalidProblemError(
            f"{op}: {where} typestr is not a type string (got {describe(typestr)}, expected a "
            "string such as '<f4')"
        )

    steps = interface.get("strides")
    byte_strides = None
    if steps is not None:
        if not isinstance(steps, (tuple, list)) or len(steps) != len(shape):
            raise InvalidProblemError(
                f"{op}: {where} strides do not match the shape (got {describe(steps)}, "
                f"expected None or {len(shape)} byte strides, one per axis)"
            )
        byte_strides = tuple(
            as_int(step, f"{where} strides[{axis}]", op) for axis, step in enumerate(steps)
        )

    stream = interface.get("stream")
    if stream is not None:
        stream = as_int(stream, f"{where} stream", op)
        if stream < 0:
            raise InvalidProblemError(
                f"{op}: {where} stream is negative (got {stream}, expected a stream handle "
                ">= 0, or None)"
            )
    return _Interface(ptr, shape, typestr, byte_strides, stream)


def _read_cuda_array_interface(
    interface: object, obj: object, name: str, op: str, stream: int
) -> _Memory:
    # Read from the dict rather than through StridedMemoryView: its CAI path asks the driver
    # for the pointer's device (cuPointerGetAttribute), one driver call per tensor, which also
    # makes it unusable without a driver. The interface reports no device; the C ABI needs
    # none, and the caller checks the devices that DLPack tensors report.
    fields = _interface_fields(interface, name, op)
    unsupported, element, itemsize = _parse_typestr(fields.typestr, name, op)
    if fields.byte_strides is None:
        strides = contiguous_strides(fields.shape)
    else:
        strides = tuple(
            _element_stride(step, itemsize, axis, name, op)
            for axis, step in enumerate(fields.byte_strides)
        )
    if stream != NO_SYNC and fields.stream is not None:
        order_after(fields.stream, stream, op)
    return _Memory(fields.ptr, element, unsupported, itemsize, fields.shape, strides, None, obj)


def _parse_typestr(typestr: str, name: str, op: str) -> tuple[str, str | None, int]:
    """(name for messages, element or None, itemsize) of a CUDA Array Interface typestr:
    a byte order, a kind letter and a size in bytes (``'<f4'``), numpy's unit suffixes
    allowed after the size."""
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
    tail = code[1:]
    digits = tail[: len(tail) - len(tail.lstrip(_DIGITS))]
    if not code[:1].isalpha() or not digits:
        raise InvalidProblemError(
            f"{op}: {name} typestr has no item size (got {typestr!r}, expected a byte order, "
            "a kind and a size in bytes, such as '<f4')"
        )
    itemsize = int(digits)
    if itemsize == 0:
        raise InvalidProblemError(
            f"{op}: {name} typestr has item size 0 (got {typestr!r}, expected a size of at "
            "least 1 byte)"
        )
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
