"""The C ABI of libbaracuda through ctypes, for tests that call it directly (the fuzz run).

Only what those tests need: the tensor, descriptor and argument structs of ``baracuda.h``,
the status and element values, and the prototypes of the functions they call. The library is
the one installed in the ``baracuda`` package.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from baracuda import _capi

MAX_RANK = 4
WINDOW_UNBOUNDED = -1
NCCL_UNIQUE_ID_BYTES = 128

# baracuda_status
SUCCESS = 0
UNSUPPORTED = 1
INVALID_PROBLEM = 2
BUFFER_TOO_SMALL = 3
WORKSPACE_TOO_SMALL = 4
CUDA_ERROR = 5
NCCL_ERROR = 6
LIBRARY_NOT_LOADED = 7
INTERNAL = 8
STATUSES = frozenset(range(SUCCESS, INTERNAL + 1))

# baracuda_element and its size in bytes
F32, F16, BF16, F64 = 1, 2, 3, 4
ELEMENT_BYTES = {F32: 4, F16: 2, BF16: 2, F64: 8}


def accumulator_element(element: int) -> int:
    """The element of LSE and of the accumulators: f64 for f64, f32 otherwise."""
    return F64 if element == F64 else F32


class Tensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("element", ctypes.c_int),
        ("rank", ctypes.c_int32),
        ("shape", ctypes.c_int64 * MAX_RANK),
        ("strides", ctypes.c_int64 * MAX_RANK),
        ("buffer_elements", ctypes.c_int64),
    ]


class FlashDescriptor(ctypes.Structure):
    _fields_ = [
        ("batch_size", ctypes.c_int32),
        ("num_heads", ctypes.c_int32),
        ("query_len", ctypes.c_int32),
        ("key_len", ctypes.c_int32),
        ("d_k", ctypes.c_int32),
        ("d_v", ctypes.c_int32),
        ("scale", ctypes.c_double),
        ("is_causal", ctypes.c_int32),
        ("element", ctypes.c_int),
        ("window_size_left", ctypes.c_int32),
        ("window_size_right", ctypes.c_int32),
        ("softcap", ctypes.c_double),
        ("alignment", ctypes.c_int),
    ]


class FlashArgs(ctypes.Structure):
    _fields_ = [(name, Tensor) for name in ("q", "k", "v", "y", "lse", "mask", "alibi_slopes")]


class RingDescriptor(ctypes.Structure):
    _fields_ = [
        ("batch_size", ctypes.c_int32),
        ("num_heads", ctypes.c_int32),
        ("num_heads_k", ctypes.c_int32),
        ("query_len", ctypes.c_int32),
        ("key_len", ctypes.c_int32),
        ("head_dim", ctypes.c_int32),
        ("scale", ctypes.c_double),
        ("is_causal", ctypes.c_int32),
        ("element", ctypes.c_int),
        ("window_size_left", ctypes.c_int32),
        ("window_size_right", ctypes.c_int32),
        ("softcap", ctypes.c_double),
        ("layout", ctypes.c_int),
        ("schedule", ctypes.c_int),
    ]


class RingArgs(ctypes.Structure):
    _fields_ = [
        (name, Tensor)
        for name in ("q", "k", "v", "y", "lse", "alibi_slopes", "kv_scratch_a", "kv_scratch_b")
    ] + [
        ("accumulator_scratch", ctypes.c_void_p),
        ("accumulator_scratch_bytes", ctypes.c_size_t),
    ]


def _load() -> ctypes.CDLL:
    library = ctypes.CDLL(str(Path(_capi.__file__).parent / "libbaracuda.so"))
    status, ptr, i32, i64, f32 = (
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int32,
        ctypes.c_int64,
        ctypes.c_float,
    )
    prototypes = {
        "baracuda_last_error_message": (ctypes.c_char_p, []),
        "baracuda_flash_sdpa_check_args": (
            status,
            [ctypes.POINTER(FlashDescriptor), ctypes.POINTER(FlashArgs)],
        ),
        "baracuda_ring_attention_check_args": (
            status,
            [ctypes.POINTER(RingDescriptor), ctypes.POINTER(RingArgs)],
        ),
        "baracuda_flash_sdpa_plan_select": (
            status,
            [ctypes.POINTER(FlashDescriptor), ptr, ctypes.POINTER(ptr)],
        ),
        "baracuda_flash_sdpa_plan_destroy": (None, [ptr]),
        "baracuda_kernels_ring_attention_init_run": (status, [ptr, ptr, ptr, i64, i64, ptr]),
        "baracuda_kernels_ring_attention_f64_init_run": (status, [ptr, ptr, ptr, i64, i64, ptr]),
    }
    # The seed entry points of baracuda.h: extents, scale and is_causal, then the pointers.
    seed_problem = [i32, i32, i32, i32, i32, i32, f32, i32]
    seed_flash = [*seed_problem, *[ptr] * 6, ctypes.c_size_t, ptr]  # q k v y lse workspace
    seed_arbmask = [*seed_problem, *[ptr] * 7, ctypes.c_size_t, ptr]  # ... with the mask
    seed_step = [i32, i32, i32, i32, i32, i32, i32, f32, i32, ptr, ptr, ptr, ptr, ptr, ptr, ptr]
    seed_finalize = [i32, i32, i32, i32, ptr, ptr, ptr, ptr, ptr, ptr]
    for name in ("f32", "f16", "bf16", "f64"):
        prototypes[f"baracuda_kernels_flash_sdpa_{name}_run"] = (status, seed_flash)
        prototypes[f"baracuda_kernels_sdpa_{name}_arbmask_run"] = (status, seed_arbmask)
        prototypes[f"baracuda_kernels_ring_attention_{name}_step_run"] = (status, seed_step)
        prototypes[f"baracuda_kernels_ring_attention_{name}_finalize_run"] = (status, seed_finalize)
    for name, (restype, argtypes) in prototypes.items():
        function = getattr(library, name)
        function.restype = restype
        function.argtypes = argtypes
    return library


LIBRARY = _load()


def last_error_message() -> str:
    """This thread's message of the last failing call."""
    return LIBRARY.baracuda_last_error_message().decode()


def device_present() -> bool:
    """Whether select finds a CUDA device (a valid select succeeds rather than a CUDA error)."""
    desc = FlashDescriptor(
        1, 1, 1, 1, 64, 64, 0.125, 0, F16, WINDOW_UNBOUNDED, WINDOW_UNBOUNDED, 0.0, 0
    )
    plan = ctypes.c_void_p()
    status = LIBRARY.baracuda_flash_sdpa_plan_select(ctypes.byref(desc), None, ctypes.byref(plan))
    if status == SUCCESS:
        LIBRARY.baracuda_flash_sdpa_plan_destroy(plan)
    return status != CUDA_ERROR
