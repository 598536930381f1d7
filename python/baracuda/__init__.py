"""baracuda: exact attention kernels for CUDA, behind a C ABI.

The public surface:

- :func:`flash_attention` and the plan it runs, :class:`FlashSdpaPlan` selected for a
  :class:`FlashSdpaDescriptor` (reporting a :class:`KernelSku` and a
  :class:`PrecisionGuarantee`);
- :func:`ring_attention` across GPUs and its plan, :class:`RingAttentionPlan` selected for a
  :class:`RingAttentionDescriptor`, over a :class:`baracuda.nccl.Communicator`; the layout
  helpers :func:`shard_sequence`, :func:`gather_sequence` and :func:`sequence_positions`;
- :class:`DeviceArray`, the outputs baracuda allocates (DLPack and CUDA Array Interface);
- the exceptions, one per ``baracuda_status``, each carrying the C library's message;
- :mod:`baracuda.reference`, a plain numpy float64 implementation of the semantics.

Importing needs no GPU and no driver: the CUDA runtime is linked statically into
libbaracuda, and cuda.core is imported only by calls that use a device.
"""

from . import nccl, reference
from ._capi import version as _library_version
from ._device_array import DeviceArray
from ._errors import (
    BaracudaError,
    BufferTooSmallError,
    CudaError,
    InternalError,
    InvalidProblemError,
    LibraryNotLoadedError,
    NcclError,
    UnsupportedError,
    WorkspaceTooSmallError,
)
from ._flash_sdpa import FlashSdpaDescriptor, FlashSdpaPlan, flash_attention
from ._plan import KernelSku, PrecisionGuarantee
from ._ring_attention import (
    RingAttentionDescriptor,
    RingAttentionPlan,
    gather_sequence,
    ring_attention,
    sequence_positions,
    shard_sequence,
)

__version__ = _library_version()

__all__ = [
    "BaracudaError",
    "BufferTooSmallError",
    "CudaError",
    "DeviceArray",
    "FlashSdpaDescriptor",
    "FlashSdpaPlan",
    "InternalError",
    "InvalidProblemError",
    "KernelSku",
    "LibraryNotLoadedError",
    "NcclError",
    "PrecisionGuarantee",
    "RingAttentionDescriptor",
    "RingAttentionPlan",
    "UnsupportedError",
    "WorkspaceTooSmallError",
    "__version__",
    "flash_attention",
    "gather_sequence",
    "nccl",
    "reference",
    "ring_attention",
    "sequence_positions",
    "shard_sequence",
]
