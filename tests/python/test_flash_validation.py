"""Descriptor validation from Python (CPU): each check of flash_sdpa_plan_select.

Descriptor checks need no device, so these run everywhere. Each test asserts the exception
type, its status and the exact message the C library wrote
(libbaracuda/src/flash_sdpa/flash_sdpa_plan.cpp). The checks of the arguments against a
selected plan (can_implement) need a device: they are in test_flash_gpu.py.
"""

import math
import pickle
import re

import baracuda
import numpy as np
import pytest
from baracuda._errors import STATUS_CUDA_ERROR, STATUS_INVALID_PROBLEM, STATUS_UNSUPPORTED

SELECT = "flash_sdpa_plan_select"


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
        descriptor(**{field: -1}),
        baracuda.InvalidProblemError,
        STATUS_INVALID_PROBLEM,
        f"{SELECT}: {field} must be non-negative (got -1, expected >= 0)",
    )
    assert isinstance(error, ValueError)
    assert isinstance(error, baracuda.BaracudaError)


@pytest.mark.parametrize("scale,text", [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")])
def test_scale_not_finite(scale, text):
    assert_select_refuses(
        descriptor(scale=scale),
        baracuda.InvalidProblemError,
        STATUS_INVALID_PROBLEM,
        f"{SELECT}: scale must be finite (got {text}, expected a finite number)",
    )


@pytest.mark.parametrize(
    "softcap,text", [(-1.0, "-1"), (-0.5, "-0.5"), (math.inf, "inf"), (math.nan, "nan")]
)
def test_softcap_negative_or_not_finite(softcap, text):
    assert_select_refuses(
        descriptor(softcap=softcap),
        baracuda.InvalidProblemError,
        STATUS_INVALID_PROBLEM,
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
    [
        ("d_k", 0),
        ("d_k", 4),
        ("d_k", 12),
        ("d_k", 264),
        ("d_k", 512),
        ("d_v", 0),
        ("d_v", 20),
        ("d_v", 257),
    ],
)
def test_head_dim_not_supported(field, value):
    assert_select_refuses(
        descriptor(**{field: value}),
        baracuda.UnsupportedError,
        STATUS_UNSUPPORTED,
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
        baracuda.UnsupportedError,
        STATUS_UNSUPPORTED,
        f"{SELECT}: batch_size x num_heads x query tiles of 16 rows exceeds one launch "
        f"(got {batch_size} x {num_heads} x {query_len} rows, expected <= {INT_MAX} blocks)",
    )


def test_first_failing_check_is_reported():
    """Extents are checked before the scale, the scale before head dims."""
    assert_select_refuses(
        descriptor(query_len=-3, scale=math.nan, d_k=12),
        baracuda.InvalidProblemError,
        STATUS_INVALID_PROBLEM,
        f"{SELECT}: query_len must be non-negative (got -3, expected >= 0)",
    )
    assert_select_refuses(
        descriptor(scale=math.nan, d_k=12),
        baracuda.InvalidProblemError,
        STATUS_INVALID_PROBLEM,
        f"{SELECT}: scale must be finite (got nan, expected a finite number)",
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
        pytest.skip(
            "neither cuda.bindings nor torch is installed to tell whether a device is present"
        )
    if count > 0:
        pytest.skip("a CUDA device is present")
    error = select_error(descriptor(element=element), baracuda.CudaError)
    assert error.status == STATUS_CUDA_ERROR
    assert NO_DEVICE_MESSAGE.fullmatch(error.message), error.message
    assert str(error) == error.message


# ---------------------------------------------------------------- strict coercion of fields

BOOL_REFUSED = [
    ("False", "str 'False'"),
    ("True", "str 'True'"),
    ("", "str ''"),
    (0.0, "float 0.0"),
    (1.0, "float 1.0"),
    (2, "int 2"),
    (-1, "int -1"),
    (None, "NoneType None"),
    ([0], "list [0]"),
]
BOOL_ACCEPTED = [
    (True, True),
    (False, False),
    (0, False),
    (1, True),
    (np.bool_(True), True),
    (np.int64(1), True),
    (np.uint8(0), False),
]


@pytest.mark.parametrize("value,got", BOOL_REFUSED, ids=[got for _, got in BOOL_REFUSED])
def test_descriptor_bool_field_is_strict(value, got):
    """is_causal takes a bool or an integer 0 / 1; "False" is not read as truthy."""
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        descriptor(is_causal=value)
    assert caught.value.message == (
        f"FlashSdpaDescriptor: is_causal is not a bool (got {got}, expected True, False, 0 or 1)"
    )


@pytest.mark.parametrize("value,expected", BOOL_ACCEPTED)
def test_descriptor_bool_field_accepts_bools_and_0_1(value, expected):
    desc = descriptor(is_causal=value)
    assert desc.is_causal is expected


INT_REFUSED = [
    (2.0, "float 2.0"),
    ("2", "str '2'"),
    (True, "bool True"),
    (None, "NoneType None"),
    (np.float32(2), f"float32 {np.float32(2)!r}"),
    (np.bool_(False), f"bool {np.bool_(False)!r}"),
]


@pytest.mark.parametrize(
    "field",
    [
        "batch_size",
        "num_heads",
        "query_len",
        "key_len",
        "d_k",
        "d_v",
        "window_size_left",
        "window_size_right",
    ],
)
@pytest.mark.parametrize(
    "value,got",
    [case for case in INT_REFUSED if case[0] is not None],
    ids=[got for value, got in INT_REFUSED if value is not None],
)
def test_descriptor_integer_fields_are_strict(field, value, got):
    """Integer fields take what operator.index takes: no float truncation, no bools."""
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        descriptor(**{field: value})
    assert caught.value.message == (
        f"FlashSdpaDescriptor: {field} is not an integer (got {got}, expected an int)"
    )


@pytest.mark.parametrize("field", ["batch_size", "d_k"])
def test_descriptor_extent_none_is_refused(field):
    with pytest.raises(
        baracuda.InvalidProblemError,
        match=f"{field} is not an integer "
        r"\(got NoneType None, expected an int\)",
    ):
        descriptor(**{field: None})


@pytest.mark.parametrize(
    "field,value,got",
    [
        ("scale", "0.5", "str '0.5'"),
        ("scale", True, "bool True"),
        ("scale", 1j, "complex 1j"),
        ("softcap", "1", "str '1'"),
        ("softcap", None, "NoneType None"),
        ("softcap", b"1", "bytes b'1'"),
    ],
)
def test_descriptor_real_fields_are_strict(field, value, got):
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        descriptor(**{field: value})
    assert caught.value.message == (
        f"FlashSdpaDescriptor: {field} is not a real number (got {got}, expected a float or an int)"
    )


def test_descriptor_real_fields_accept_numbers():
    desc = descriptor(scale=np.float16(0.5), softcap=np.int32(3))
    assert (desc.scale, desc.softcap) == (0.5, 3.0)
    assert type(desc.scale) is float and type(desc.softcap) is float


def test_descriptor_names_must_be_strings():
    with pytest.raises(
        baracuda.InvalidProblemError, match=r"unknown alignment \(got \['top_left'\]"
    ):
        descriptor(alignment=["top_left"])


class _NeverRead:
    """A tensor whose protocols fail the test when read: options are checked first."""

    @property
    def __cuda_array_interface__(self):
        pytest.fail("a tensor was read before the options were checked")


@pytest.mark.parametrize(
    "options,message",
    [
        (
            {"causal": "False"},
            "causal is not a bool (got str 'False', expected True, False, 0 or 1)",
        ),
        ({"causal": 0.0}, "causal is not a bool (got float 0.0, expected True, False, 0 or 1)"),
        (
            {"return_lse": "yes"},
            "return_lse is not a bool (got str 'yes', expected True, False, 0 or 1)",
        ),
        (
            {"window": (1.5, None)},
            "window_size_left is not an integer (got float 1.5, expected an int)",
        ),
        (
            {"window": (None, -1)},
            "window_size_right must be >= 0 or None (got -1, expected >= 0, or None for unbounded)",
        ),
        (
            {"scale": "0.5"},
            "scale is not a real number (got str '0.5', expected a float or an int)",
        ),
        (
            {"softcap": None},
            "softcap is not a real number (got NoneType None, expected a float or an int)",
        ),
        (
            {"alignment": ["top_left"]},
            "unknown alignment (got ['top_left'], expected 'top_left' or 'bottom_right')",
        ),
        ({"backend": {}}, "unknown backend (got {}, expected 'auto' or 'portable' or 'hopper')"),
    ],
    ids=[
        "causal-str",
        "causal-float",
        "return_lse",
        "window-float",
        "window-negative",
        "scale-str",
        "softcap-none",
        "alignment-list",
        "backend-dict",
    ],
)
def test_flash_attention_options_are_strict(options, message):
    tensor = _NeverRead()
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        baracuda.flash_attention(tensor, tensor, tensor, **options)
    assert caught.value.message == f"flash_attention: {message}"
