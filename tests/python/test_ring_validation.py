"""Ring attention without a GPU: the descriptor, the C library's descriptor checks, the layout
helpers, and baracuda.nccl's refusals.

The C checks of the descriptor run before select looks for a device, so each refusal here is
the same with or without one.
"""

import os
import subprocess
import sys

import baracuda
import numpy as np
import pytest
from baracuda import nccl

SELECT_OP = "ring_attention_plan_select"


def descriptor(**fields):
    values = dict(batch_size=2, num_heads=8, query_len=64, key_len=64, head_dim=64)
    values.update(fields)
    extents = [
        values.pop(name) for name in ("batch_size", "num_heads", "query_len", "key_len", "head_dim")
    ]
    return baracuda.RingAttentionDescriptor(*extents, **values)


# ---------------------------------------------------------------- descriptor


def test_descriptor_defaults_and_names():
    plain = descriptor()
    assert plain.num_heads_k == 8
    assert (plain.scale, plain.is_causal, plain.element) == (None, False, "f32")
    assert (plain.layout, plain.schedule) == ("contiguous", "overlapped")
    assert descriptor(element=np.float16).element == "f16"
    assert descriptor(num_heads_k=2).num_heads_k == 2


@pytest.mark.parametrize(
    "field,value,reason",
    [
        ("layout", "ring", "unknown layout (got 'ring', expected 'contiguous' or 'zigzag')"),
        ("schedule", "eager", "unknown schedule (got 'eager', expected 'overlapped' or 'serial')"),
        ("window_size_left", -1, "window_size_left must be >= 0 or None (got -1"),
        ("query_len", 2**31, "query_len does not fit in int32 (got 2147483648"),
    ],
)
def test_descriptor_refuses_what_c_cannot_hold(field, value, reason):
    with pytest.raises(baracuda.InvalidProblemError) as error:
        descriptor(**{field: value})
    assert f"RingAttentionDescriptor: {reason}" in str(error.value)


@pytest.mark.parametrize(
    "fields,error_type,reason",
    [
        (
            dict(num_heads_k=3),
            baracuda.InvalidProblemError,
            "num_heads_k must divide num_heads (got 3, expected a divisor of 8)",
        ),
        (
            dict(num_heads_k=0),
            baracuda.InvalidProblemError,
            "num_heads_k must divide num_heads (got 0, expected a divisor of 8)",
        ),
        (
            dict(batch_size=-1),
            baracuda.InvalidProblemError,
            "batch_size must be non-negative (got -1, expected >= 0)",
        ),
        (
            dict(layout="zigzag", query_len=63),
            baracuda.InvalidProblemError,
            "query_len must be even for the zigzag layout",
        ),
        (
            dict(layout="zigzag", key_len=9),
            baracuda.InvalidProblemError,
            "key_len must be even for the zigzag layout",
        ),
        (
            dict(head_dim=100),
            baracuda.UnsupportedError,
            "head_dim is not a supported head dim (got 100, expected a multiple of 8 in [8, 256])",
        ),
        (
            dict(softcap=-1.0),
            baracuda.InvalidProblemError,
            "softcap must be finite and non-negative (got -1",
        ),
        (dict(scale=float("inf")), baracuda.InvalidProblemError, "scale must be finite (got inf"),
    ],
)
def test_select_refuses_descriptor(fields, error_type, reason):
    with pytest.raises(error_type) as error:
        baracuda.RingAttentionPlan.select(descriptor(**fields))
    assert str(error.value).startswith(f"{SELECT_OP}: {reason}")


def test_select_refuses_unknown_backend():
    with pytest.raises(baracuda.InvalidProblemError, match="unknown backend"):
        baracuda.RingAttentionPlan.select(descriptor(), backend="fast")


def test_plan_cannot_be_made_directly():
    with pytest.raises(TypeError, match="use RingAttentionPlan.select"):
        baracuda.RingAttentionPlan()


# ---------------------------------------------------------------- layouts


@pytest.mark.parametrize("layout", ["contiguous", "zigzag"])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_shard_and_gather_are_inverse(layout, world_size):
    length = 2 * world_size * 5
    x = np.arange(2 * 3 * length * 4).reshape(2, 3, length, 4)
    shards = [
        baracuda.shard_sequence(x, world_size, rank, layout=layout) for rank in range(world_size)
    ]
    assert all(shard.shape == (2, 3, length // world_size, 4) for shard in shards)
    np.testing.assert_array_equal(baracuda.gather_sequence(shards, layout=layout), x)
    for rank, shard in enumerate(shards):
        positions = baracuda.sequence_positions(
            length // world_size, world_size, rank, layout=layout
        )
        np.testing.assert_array_equal(shard[0, 0, :, 0], x[0, 0, positions, 0])


def test_zigzag_positions_pair_chunks_from_both_ends():
    world_size, per_rank = 4, 6
    chunk = per_rank // 2
    for rank in range(world_size):
        positions = baracuda.sequence_positions(per_rank, world_size, rank, layout="zigzag")
        mirror = 2 * world_size - 1 - rank
        np.testing.assert_array_equal(
            positions[:chunk], np.arange(rank * chunk, (rank + 1) * chunk)
        )
        np.testing.assert_array_equal(
            positions[chunk:], np.arange(mirror * chunk, (mirror + 1) * chunk)
        )
    every = np.concatenate(
        [
            baracuda.sequence_positions(per_rank, world_size, rank, layout="zigzag")
            for rank in range(world_size)
        ]
    )
    np.testing.assert_array_equal(np.sort(every), np.arange(world_size * per_rank))


def test_layout_refusals():
    x = np.zeros((1, 1, 10, 2))
    with pytest.raises(baracuda.InvalidProblemError, match="expected a multiple of 8"):
        baracuda.shard_sequence(x, 4, 0, layout="zigzag")
    with pytest.raises(baracuda.InvalidProblemError, match="rank is outside the world"):
        baracuda.shard_sequence(x, 2, 2)
    with pytest.raises(baracuda.InvalidProblemError, match="unknown layout"):
        baracuda.shard_sequence(x, 2, 0, layout="striped")
    with pytest.raises(baracuda.InvalidProblemError, match="no shards"):
        baracuda.gather_sequence([])
    with pytest.raises(baracuda.InvalidProblemError, match="shard 1 has another shape"):
        baracuda.gather_sequence([x, x[:, :, :4]])


@pytest.mark.parametrize(
    "field,value,reason",
    [
        (
            "is_causal",
            "False",
            "is_causal is not a bool (got str 'False', expected True, False, 0 or 1)",
        ),
        ("is_causal", 2, "is_causal is not a bool (got int 2, expected True, False, 0 or 1)"),
        ("num_heads_k", 2.0, "num_heads_k is not an integer (got float 2.0, expected an int)"),
        ("head_dim", "64", "head_dim is not an integer (got str '64', expected an int)"),
        (
            "window_size_right",
            0.5,
            "window_size_right is not an integer (got float 0.5, expected an int)",
        ),
        ("scale", "1", "scale is not a real number (got str '1', expected a float or an int)"),
        (
            "layout",
            ["zigzag"],
            "unknown layout (got ['zigzag'], expected 'contiguous' or 'zigzag')",
        ),
    ],
)
def test_descriptor_fields_are_strict(field, value, reason):
    with pytest.raises(baracuda.InvalidProblemError) as error:
        descriptor(**{field: value})
    assert error.value.message == f"RingAttentionDescriptor: {reason}"


@pytest.mark.parametrize(
    "value,expected", [(np.bool_(True), True), (0, False), (1, True), (np.int8(1), True)]
)
def test_descriptor_bool_accepts_bools_and_0_1(value, expected):
    assert descriptor(is_causal=value).is_causal is expected


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
        (
            {"window": (None, 2.0)},
            "window_size_right is not an integer (got float 2.0, expected an int)",
        ),
        ({"layout": "ring"}, "unknown layout (got 'ring', expected 'contiguous' or 'zigzag')"),
        ({"schedule": None}, "unknown schedule (got None, expected 'overlapped' or 'serial')"),
        (
            {"return_lse": "yes"},
            "return_lse is not a bool (got str 'yes', expected True, False, 0 or 1)",
        ),
    ],
)
def test_ring_attention_options_are_strict(options, message):
    tensor = _NeverRead()
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        baracuda.ring_attention(tensor, tensor, tensor, **options)
    assert caught.value.message == f"ring_attention: {message}"


# ---------------------------------------------------------------- layouts along any axis


def _global_sequence(shape):
    return np.arange(int(np.prod(shape))).reshape(shape)


@pytest.mark.parametrize("layout", ["contiguous", "zigzag"])
@pytest.mark.parametrize(
    "shape,axis,positive",
    [
        ((2, 3, 12, 4), -2, 2),
        ((2, 3, 4, 12), -1, 3),
        ((12, 3), -2, 0),
        ((3, 12), 1, 1),
        ((12, 2, 3), 0, 0),
        ((2, 12, 3, 4), -3, 1),
    ],
    ids=["bhsd-minus2", "last-minus1", "first-minus2", "rank2-axis1", "axis0", "minus3"],
)
def test_shard_and_gather_along_any_axis(layout, shape, axis, positive):
    """A negative axis names the axis numpy does; each shard holds the layout's positions."""
    world_size = 3
    x = _global_sequence(shape)
    length = shape[positive]
    shards = [
        baracuda.shard_sequence(x, world_size, rank, layout=layout, axis=axis)
        for rank in range(world_size)
    ]
    for rank, shard in enumerate(shards):
        positions = baracuda.sequence_positions(
            length // world_size, world_size, rank, layout=layout
        )
        np.testing.assert_array_equal(shard, np.take(x, positions, axis=positive))
        np.testing.assert_array_equal(
            shard, baracuda.shard_sequence(x, world_size, rank, layout=layout, axis=positive)
        )
    np.testing.assert_array_equal(baracuda.gather_sequence(shards, layout=layout, axis=axis), x)


@pytest.mark.parametrize("axis", [4, -5, 100])
def test_layout_axis_out_of_range(axis):
    x = np.zeros((1, 1, 8, 2))
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        baracuda.shard_sequence(x, 2, 0, axis=axis)
    assert caught.value.message == (
        f"shard_sequence: axis is out of range (got {axis}, "
        "expected -4 <= axis < 4 for an array of rank 4)"
    )
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        baracuda.gather_sequence([x, x], axis=axis)
    assert caught.value.message == (
        f"gather_sequence: axis is out of range (got {axis}, "
        "expected -4 <= axis < 4 for an array of rank 4)"
    )


@pytest.mark.parametrize(
    "call,message",
    [
        (
            lambda x: baracuda.shard_sequence(x, 2, 0, axis=2.0),
            "shard_sequence: axis is not an integer (got float 2.0, expected an int)",
        ),
        (
            lambda x: baracuda.shard_sequence(x, 2.0, 0),
            "shard_sequence: world_size is not an integer (got float 2.0, expected an int)",
        ),
        (
            lambda x: baracuda.shard_sequence(x, 2, "0"),
            "shard_sequence: rank is not an integer (got str '0', expected an int)",
        ),
        (
            lambda x: baracuda.shard_sequence(x, 0, 0),
            "shard_sequence: world_size must be positive (got 0, expected >= 1)",
        ),
        (
            lambda x: baracuda.gather_sequence([x, x], axis=None),
            "gather_sequence: axis is not an integer (got NoneType None, expected an int)",
        ),
        (
            lambda x: baracuda.sequence_positions(4.0, 2, 0),
            "sequence_positions: length_per_rank is not an integer (got float 4.0, expected an "
            "int)",
        ),
        (
            lambda x: baracuda.sequence_positions(-4, 2, 0),
            "sequence_positions: length_per_rank must be non-negative (got -4, expected >= 0)",
        ),
    ],
)
def test_layout_arguments_are_strict(call, message):
    with pytest.raises(baracuda.InvalidProblemError) as caught:
        call(np.zeros((1, 1, 8, 2)))
    assert caught.value.message == message


def test_layout_refuses_what_is_not_an_array():
    with pytest.raises(TypeError, match=r"shard_sequence: x is not an array \(got list"):
        baracuda.shard_sequence([[1, 2]], 1, 0)
    with pytest.raises(TypeError, match=r"gather_sequence: shard 1 is not an array \(got int"):
        baracuda.gather_sequence([np.zeros((1, 1, 2, 1)), 3])


# ---------------------------------------------------------------- baracuda.nccl


def _run_python(code, **environment):
    env = dict(os.environ, **environment)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_load_names_a_bad_explicit_path():
    """In a fresh process (a loaded NCCL stays loaded), an explicit bad path is refused."""
    result = _run_python(
        "import baracuda\n"
        "try:\n"
        "    baracuda.nccl.load('/nonexistent/libnccl.so.2')\n"
        "except baracuda.LibraryNotLoadedError as error:\n"
        "    print(error)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "nccl_load: cannot load NCCL (got explicit path '/nonexistent/libnccl.so.2': "
    )
    assert "expected that path to be libnccl.so.2)" in result.stdout


def test_unique_ids_from_the_loaded_nccl():
    """Where NCCL is loadable (the nvidia-nccl wheel, the system), ids are 128 fresh bytes."""
    result = _run_python(
        "import baracuda\n"
        "try:\n"
        "    first, second = baracuda.nccl.get_unique_id(), baracuda.nccl.get_unique_id()\n"
        "except baracuda.LibraryNotLoadedError as error:\n"
        "    print('absent', error)\n"
        "else:\n"
        "    print(len(first), len(second), first != second, any(first),\n"
        "          baracuda.nccl.version(), baracuda.nccl.library_path())\n",
        NCCL_SOCKET_IFNAME="lo",
    )
    assert result.returncode == 0, result.stderr
    if result.stdout.startswith("absent"):
        assert "nccl_get_unique_id: cannot load NCCL (got " in result.stdout
        pytest.skip(f"no NCCL loadable here: {result.stdout.strip()[:200]}")
    size, other_size, differ, non_zero, version, path = result.stdout.split()
    assert (int(size), int(other_size)) == (nccl.UNIQUE_ID_BYTES, nccl.UNIQUE_ID_BYTES)
    assert differ == "True" and non_zero == "True"
    assert int(version) >= 21300 and path.endswith("libnccl.so.2")


def test_communicator_refusals(tmp_path, monkeypatch, no_launcher_environment):
    with pytest.raises(baracuda.InvalidProblemError, match="handle is NULL"):
        nccl.Communicator.from_handle(0)
    with pytest.raises(baracuda.InvalidProblemError, match="no launcher variables"):
        nccl.Communicator.from_env()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(baracuda.InvalidProblemError, match="no channel for the unique id"):
        nccl.Communicator.from_env(device=None)
    with pytest.raises(
        baracuda.InvalidProblemError, match="rank 0 did not write the rendezvous file in time"
    ):
        nccl.Communicator.from_env(rendezvous_file=tmp_path / "id", run_id="test-run", timeout=0.2)
