"""Device arrays that baracuda allocates for outputs the caller did not pass."""

from __future__ import annotations

from . import _capi
from ._checks import as_bool, as_int
from ._cuda import (
    CU_STREAM_LEGACY,
    LEGACY_DEFAULT_STREAM,
    allocate,
    core_stream,
    current_device,
    order_after,
    stream_handle,
)
from ._errors import CudaError, InvalidProblemError
from ._lifetime import NotCopyable
from ._tensor import (
    TensorView,
    contiguous_strides,
    element_name,
    element_size,
    numpy_dtype,
    size_of,
)

DLPACK_NO_SYNC = -1
"""``__dlpack__(stream=-1)``: the consumer asks for no synchronisation."""


class DeviceArray(NotCopyable):
    """A C-contiguous array in CUDA device memory, allocated stream-ordered through cuda.core.

    It exports ``__dlpack__`` / ``__dlpack_device__`` and ``__cuda_array_interface__``, so
    ``torch.from_dlpack(a)``, ``cupy.asarray(a)`` and ``jax.dlpack.from_dlpack(a)`` take it
    without a copy. The memory returns to the device's pool on the allocation stream when the
    array and every DLPack export of it are gone; work that a consumer enqueues on another
    stream must be ordered before that (as for any stream-ordered allocation).

    Parameters
    ----------
    shape : sequence of int
        Extents.
    element : str or dtype
        ``"f32"``, ``"f16"``, ``"bf16"``, ``"f64"`` or a matching numpy / torch / cupy dtype.
    stream : None, int or object with ``__cuda_stream__``, optional
        Stream the allocation is ordered on, and on which the contents are produced;
        ``None`` is the legacy default stream.

    Notes
    -----
    The contents are uninitialised. The array lives on the current device. It owns its memory,
    so it cannot be pickled or copied (:class:`TypeError`); copy it to the host with
    :meth:`copy_to_host`, or share it through DLPack.
    bf16 has no standard ``__cuda_array_interface__`` typestr: a bf16 array exports DLPack
    only, and its ``__cuda_array_interface__`` raises :class:`AttributeError`.
    """

    __slots__ = ("_buffer", "_ptr", "_shape", "_element", "_device_id", "_stream", "__weakref__")
    _OWNED_RESOURCE = "device memory"

    def __init__(self, shape, element, *, stream=None) -> None:
        op = "DeviceArray"
        if not hasattr(shape, "__iter__") or isinstance(shape, (str, bytes)):
            raise InvalidProblemError(
                f"{op}: shape is not a sequence of extents (got {type(shape).__name__}, "
                "expected a tuple of int)"
            )
        shape = tuple(
            as_int(extent, f"extent of axis {axis}", op) for axis, extent in enumerate(shape)
        )
        for axis, extent in enumerate(shape):
            if extent < 0:
                raise InvalidProblemError(
                    f"{op}: extent of axis {axis} is negative (got {extent}, expected >= 0)"
                )
        self._allocate(
            shape, element_name(element, op), stream_handle(stream, op), current_device(op)
        )

    @classmethod
    def _empty(cls, shape: tuple[int, ...], element: str, stream: int, device) -> DeviceArray:
        """An array of checked arguments on ``device`` (a ``cuda.core.Device``)."""
        array = cls.__new__(cls)
        array._allocate(shape, element, stream, device)
        return array

    def _allocate(self, shape, element, stream, device) -> None:
        self._shape = shape
        self._element = element
        self._stream = stream
        self._device_id = device.device_id
        nbytes = self.nbytes
        self._buffer = allocate(nbytes, stream, device, "DeviceArray") if nbytes else None
        self._ptr = int(self._buffer.handle) if self._buffer is not None else 0

    # ------------------------------------------------------------ attributes

    @property
    def shape(self) -> tuple[int, ...]:
        """Extents."""
        return self._shape

    @property
    def strides(self) -> tuple[int, ...]:
        """Strides in elements (row-major)."""
        return contiguous_strides(self._shape)

    @property
    def element(self) -> str:
        """``"f32"``, ``"f16"``, ``"bf16"`` or ``"f64"``."""
        return self._element

    @property
    def dtype(self):
        """The numpy dtype (``ml_dtypes.bfloat16`` for bf16)."""
        return numpy_dtype(self._element)

    @property
    def ptr(self) -> int:
        """Device address of element 0 (0 for an empty array)."""
        return self._ptr

    @property
    def device_id(self) -> int:
        """CUDA device ordinal."""
        return self._device_id

    @property
    def size(self) -> int:
        """Number of elements."""
        return size_of(self._shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the array."""
        return self.size * element_size(self._element)

    @property
    def stream(self) -> int:
        """Handle of the stream the array is allocated and produced on."""
        return self._stream

    def __repr__(self) -> str:
        return (
            f"DeviceArray(shape={self._shape}, element={self._element!r}, "
            f"device_id={self._device_id}, ptr={self._ptr:#x})"
        )

    def tensor_view(self) -> TensorView:
        """The array as the C ABI takes it."""
        return TensorView(
            self._ptr, self._element, self._shape, self.strides, self.size, self._device_id, self
        )

    # ------------------------------------------------------------ host copy

    def copy_to_host(self):
        """Copy the array to a new numpy array, after the work pending on its stream.

        Returns
        -------
        numpy.ndarray
            Of ``shape`` and ``dtype``.

        Raises
        ------
        CudaError
            No usable device, or the copy failed.
        """
        import numpy

        op = "DeviceArray.copy_to_host"
        host = numpy.empty(self._shape, dtype=self.dtype)
        if self._buffer is None:
            return host
        stream = core_stream(self._stream, op).handle
        try:
            from cuda.bindings import driver

            (error,) = driver.cuMemcpyDtoHAsync(host.ctypes.data, self._ptr, self.nbytes, stream)
            if error == driver.CUresult.CUDA_SUCCESS:
                (error,) = driver.cuStreamSynchronize(stream)
        except Exception as failure:
            raise CudaError(
                f"{op}: cuMemcpyDtoHAsync failed (got {type(failure).__name__}: "
                f"{failure}, expected CUDA_SUCCESS)"
            ) from failure
        if error != driver.CUresult.CUDA_SUCCESS:
            raise CudaError(
                f"{op}: copying to the host failed (got {error.name}, expected CUDA_SUCCESS)"
            )
        return host

    # ------------------------------------------------------------ CUDA Array Interface

    @property
    def __cuda_array_interface__(self) -> dict:
        """CUDA Array Interface v3: C-contiguous (``strides`` None), the stream it is produced
        on (``stream``; the legacy default stream is 1, as the protocol spells it)."""
        if self._element == "bf16":
            raise AttributeError(
                "DeviceArray.__cuda_array_interface__: bf16 has no standard typestr "
                "(got bf16, expected f32, f16 or f64); take bf16 arrays through DLPack"
            )
        stream = CU_STREAM_LEGACY if self._stream == LEGACY_DEFAULT_STREAM else self._stream
        return {
            "shape": self._shape,
            "typestr": self.dtype.str,
            "data": (self._ptr, False),
            "version": 3,
            "strides": None,
            "stream": stream,
        }

    # ------------------------------------------------------------ DLPack

    def __dlpack_device__(self) -> tuple[int, int]:
        """``(kDLCUDA, device_id)``."""
        return (_capi.DL_DEVICE_CUDA, self._device_id)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """Export the array as a DLPack capsule, without a copy.

        Parameters
        ----------
        stream : int, optional
            The consumer's stream: work enqueued there after this call waits for the work
            pending on the array's stream. ``None`` or 1 is the legacy default stream, 2 the
            per-thread default stream, -1 asks for no synchronisation.
        max_version : tuple of int, optional
            The highest DLPack version the consumer takes; ``(1, x)`` or newer gets a
            versioned (``"dltensor_versioned"``) capsule, otherwise a legacy ``"dltensor"``
            one.
        dl_device : tuple of int, optional
            Must be this array's device when given.
        copy : bool, optional
            ``True`` is refused (the export never copies).

        Returns
        -------
        PyCapsule
            Keeps the array alive until the consumer's tensor is deleted.
        """
        op = "DeviceArray.__dlpack__"
        if copy is not None and as_bool(copy, "copy", op):
            raise BufferError(
                f"{op}: a copy was requested (got copy=True, expected None or "
                "False; the export never copies)"
            )
        if dl_device is not None and tuple(dl_device) != self.__dlpack_device__():
            raise BufferError(
                f"{op}: the array is not on the requested device "
                f"(got {tuple(dl_device)}, expected {self.__dlpack_device__()})"
            )
        if stream != DLPACK_NO_SYNC:
            consumer = CU_STREAM_LEGACY if stream is None else stream_handle(stream, op)
            order_after(self._stream, consumer, op)
        versioned = max_version is not None and tuple(max_version) >= _capi.DLPACK_VERSION
        return _capi.dlpack_capsule(
            self, self._ptr, self._shape, self.strides, self._element, self._device_id, versioned
        )
