"""Descriptor validation from Python (CPU): each check of flash_sdpa_plan_select.

Descriptor checks need no device, so these run everywhere. Each test asserts the exception
type, its status and the exact message the C library wrote
(libbaracuda/src/flash_sdpa/flash_sdpa_plan.cpp). The checks of the arguments against a
selected plan (can_implement) need a device: they are in test_flash_gpu.py.
"""

import math
import pickle
import re

import pytest

import baracuda

SELECT = "flash_sdpa_plan_select"

STATUS_UNSUPPORTED = 1
STATUS_INVALID_PROBLEM = 2
STATUS_CUDA_ERROR = 5

VALID = dict(batch_size=2, num_heads=8, query_len=128, key_len=256, d_k=64, d_v=64)

# Head dims the library supports: multiples of 8 in [8, 256].
HEAD_DIM_RULE = "expected a multiple of 8 in [8, 256]"
INT_MAX = 2**31 - 1


def descriptor(**fields):
    """A valid f32 descriptor with `fields` replaced; scale is explicit so that no extent
    enters the default 1 / sqrt(d_k)."""
    extents = {**VALID, **{name: fields.pop(name) for name in list(fields) if name in VALID}}
    options = {"scale": 0.125, "element": "f32", **fields}
    return baracuda.FlashSdpaDescriptor(**extents, **options)


def select_error(desc, error_type):
    with pytest.raises(error_type) as caught:
        baracuda.FlashSdpaPlan.select(desc)
    return caught.value


def assert_select_refuses(desc, error_type, status, message):
    error = select_error(desc, error_type)
    assert error.status == status
    assert error.message == message
    assert str(error) == message
    return error


@pytest.mark.parametrize("field", list(VALID))
def test_negative_extent(field):
    error = assert_select_refuses(
        descriptor(**{field: -1}), baracuda.InvalidProblemError, STATUS_INVALID_PROBLEM,
        f"{SELECT}: {field} must be non-negative (got -1, expected >= 0)",
    )
    assert isinstance(error, ValueError)
    assert isinstance(error, baracuda.BaracudaError)


@pytest.mark.parametrize("scale,text", [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")])
def test_scale_not_finite(scale, text):
    assert_select_refuses(
        descriptor(scale=scale), baracuda.InvalidProblemError, STATUS_INVALID_PROBLEM,
        f"{SELECT}: scale must be finite (got {text}, expected a finite number)",
    )


@pytest.mark.parametrize(
    "softcap,text", [(-1.0, "-1"), (-0.5, "-0.5"), (math.inf, "inf"), (math.nan, "nan")]
)
def test_softcap_negative_or_not_finite(softcap, text):
    assert_select_refuses(
        descriptor(softcap=softcap), baracuda.InvalidProblemError, STATUS_INVALID_PROBLEM,
        f"{SELECT}: softcap must be finite and non-negative (got {text}, expected 0 to disable "
        "or a finite value > 0)",
    )


@pytest.mark.parametrize("field", ["window_size_left", "window_size_right"])
@pytest.mark.parametrize("bound", [-1, -2, -100])
def test_window_bound_negative(field, bound):
    # Python spells an unbounded side None; C's sentinel -1 is refused like any negative.
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        descriptor(**{field: bound})
    assert str(caught.value) == (
        f"FlashSdpaDescriptor: {field} must be >= 0 or None (got {bound}, expected >= 0, "
        "or None for unbounded)"
    )


@pytest.mark.parametrize(
    "field,value",
    [("d_k", 0), ("d_k", 4), ("d_k", 12), ("d_k", 264), ("d_k", 512),
     ("d_v", 0), ("d_v", 20), ("d_v", 257)],
)
def test_head_dim_not_supported(field, value):
    assert_select_refuses(
        descriptor(**{field: value}), baracuda.UnsupportedError, STATUS_UNSUPPORTED,
        f"{SELECT}: {field} is not a supported head dim (got {value}, {HEAD_DIM_RULE})",
    )


@pytest.mark.parametrize(
    "batch_size,num_heads,query_len",
    [(65536, 65536, 16), (2**31 - 1, 2, 1), (1, 32, 2**31 - 1)],
    ids=["2^32-blocks", "batch-times-heads", "query-tiles-times-heads"],
)
def test_grid_larger_than_one_launch(batch_size, num_heads, query_len):
    # One block per 16 query rows of each (batch, head); each case needs more than INT_MAX.
    assert batch_size * num_heads * -(-query_len // 16) > INT_MAX
    assert_select_refuses(
        descriptor(batch_size=batch_size, num_heads=num_heads, query_len=query_len),
        baracuda.UnsupportedError, STATUS_UNSUPPORTED,
        f"{SELECT}: batch_size x num_heads x query tiles of 16 rows exceeds one launch "
        f"(got {batch_size} x {num_heads} x {query_len} rows, expected <= {INT_MAX} blocks)",
    )


def test_first_failing_check_is_reported():
    """Extents are checked before the scale, the scale before head dims."""
    assert_select_refuses(
        descriptor(query_len=-3, scale=math.nan, d_k=12), baracuda.InvalidProblemError,
        STATUS_INVALID_PROBLEM, f"{SELECT}: query_len must be non-negative (got -3, expected >= 0)",
    )
    assert_select_refuses(
        descriptor(scale=math.nan, d_k=12), baracuda.InvalidProblemError,
        STATUS_INVALID_PROBLEM, f"{SELECT}: scale must be finite (got nan, expected a finite number)",
    )


@pytest.mark.parametrize(
    "fields,name",
    [({"element": "f8"}, "element"), ({"alignment": "middle"}, "alignment")],
    ids=["element", "alignment"],
)
def test_unknown_names_are_refused(fields, name):
    """Names that the typed descriptor maps to C enums are refused before reaching C."""
    with pytest.raises(ValueError, match=name):
        baracuda.FlashSdpaPlan.select(descriptor(**fields))


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend"):
        baracuda.FlashSdpaPlan.select(descriptor(), backend="tensor_core")


def test_errors_pickle_with_status_and_message():
    error = select_error(descriptor(d_k=12), baracuda.UnsupportedError)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert copy.status == error.status and copy.message == error.message
    assert str(copy) == str(error)


def _cuda_device_count():
    """Devices the CUDA runtime sees (0 without a driver), or None when nothing can tell."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        runtime = None
    if runtime is not None:
        error, count = runtime.cudaGetDeviceCount()
        return count if error == runtime.cudaError_t.cudaSuccess else 0
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


NO_DEVICE_MESSAGE = re.compile(
    rf"{SELECT}: cudaGetDevice \(is a CUDA device present\?\) failed "
    r"\(got cudaError\w+: .+, expected cudaSuccess\)"
)


@pytest.mark.parametrize("element", ["f32", "f16", "bf16", "f64"])
def test_valid_descriptor_without_a_device(element):
    count = _cuda_device_count()
    if count is None:
        pytest.skip("neither cuda.bindings nor torch is installed to tell whether a device is present")
    if count > 0:
        pytest.skip("a CUDA device is present")
    error = select_error(descriptor(element=element), baracuda.CudaError)
    assert error.status == STATUS_CUDA_ERROR
    assert NO_DEVICE_MESSAGE.fullmatch(error.message), error.message
    assert str(error) == error.message
