"""Property-based fuzzing of the C API's checks (hypothesis), through ctypes.

Hostile descriptors, tensor arguments (shapes, strides, buffer sizes, pointers that are NULL,
misaligned, near the end of the address space, or overlapping other arguments) and the seed
entry points. Each call must return a known status, with a message exactly when it fails, and
never crash; and whatever the checks accept is audited here, independently of the library:
every view inside its declared buffer and inside memory, every pointer aligned for its
element, no written view folded onto itself, and no written byte shared with another
argument.

The run is seeded (``derandomize``) and bounded: BARACUDA_FUZZ_EXAMPLES sets the examples per
property (a longer run on request); the case counts are printed at the end of the session.
The argument checks need no device (``*_check_args``); the seed entry points run their checks
before any device call, so they are fuzzed only where no device is present, where a call
that passes the checks stops at the missing device instead of launching on made-up pointers.
"""

from __future__ import annotations

import collections
import ctypes
import functools
import itertools
import math
import os

import _c_abi as abi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("BARACUDA_FUZZ_EXAMPLES", "1500"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)

# Cases run per property, printed by conftest's terminal summary; accepted ones counted apart.
CASE_COUNTS: collections.Counter = collections.Counter()

ADDRESS_SPACE = 1 << 64
ACCUMULATOR_ALIGNMENT = 16
ARENA_BASE = 0x7F00_0000_0000
ARENA_SPACING = 1 << 32  # disjoint slots for views of ordinary size
# Views above this many elements are audited for self-overlap by their strides, not by listing
# every element.
ENUMERATED_ELEMENTS = 4096
HEAD_DIMS = (8, 16, 24, 32, 64, 128, 256)
HOSTILE_INTS = (-1, 0, 1, 2**31 - 1, -(2**31))
ELEMENTS = (abi.F32, abi.F16, abi.BF16, abi.F64)

# ---------------------------------------------------------------- strategies
#
# A case is valid, or valid but for one hostile site (a descriptor field, or one aspect of one
# argument: its strides, extents, rank, element, buffer size or address), or hostile
# everywhere, in equal parts: most defects then meet the check that names them alone, and
# enough cases pass the checks for the audit to see every kind of accepted layout.

small_extents = st.integers(0, 5)
lengths = st.integers(0, 40)
hostile_extents = st.one_of(small_extents, st.sampled_from(HOSTILE_INTS))
head_dims = st.sampled_from(HEAD_DIMS)
hostile_head_dims = st.one_of(head_dims, st.integers(-9, 300))
elements = st.sampled_from(ELEMENTS)
hostile_elements = st.sampled_from((0, 5, -1) + ELEMENTS)
scales = st.floats(-4.0, 4.0)
hostile_scales = st.sampled_from(
    (math.nan, math.inf, -math.inf, 1e300, -1e300, 1e39, 2.3e38, 1e-300, 0.0)
)
softcaps = st.one_of(st.just(0.0), st.floats(0.5, 60.0))
hostile_softcaps = st.sampled_from(
    (-1.0, math.nan, math.inf, 1e-300, 1e-40, 1.2e-38, 1e39, 1e300, -0.0)
)
flags = st.sampled_from((0, 1))
hostile_flags = st.sampled_from((2, -1, 7))
windows = st.one_of(st.just(abi.WINDOW_UNBOUNDED), st.integers(0, 50))
hostile_windows = st.sampled_from((-2, 2**31 - 1, -(2**31)))
hostile_strides = st.sampled_from((0, -1, 1, 2, 3, 7, 2**40, 2**62, 2**63 - 1))
hostile_slack = st.sampled_from((-3, -1, 1, -(2**62), 2**62, 2**63 - 1))

TENSOR_ASPECTS = ("strides", "shape", "rank", "element", "buffer", "address")


class Hostility:
    """Which sites of one case are hostile: none, one, or all."""

    def __init__(self, draw, sites):
        mode = draw(st.integers(0, 2))
        if mode == 0:
            self.sites = frozenset()
        elif mode == 1:
            self.sites = frozenset({draw(st.sampled_from(sorted(sites)))})
        else:
            self.sites = frozenset(sites)

    def __call__(self, site: str) -> bool:
        return site in self.sites

    def field(self, draw, site, valid, hostile):
        return draw(hostile) if self(site) else draw(valid)


def tensor_sites(names):
    return {f"{name}.{aspect}" for name in names for aspect in TENSOR_ASPECTS}


def contiguous_strides(shape):
    strides, step = [], 1
    for extent in reversed(shape):
        strides.append(step)
        step *= max(extent, 1)
    return list(reversed(strides))


def span_of(shape, strides):
    """Elements from element 0 to the last addressed, inclusive; 0 for an empty view."""
    if any(extent == 0 for extent in shape):
        return 0
    return 1 + sum((extent - 1) * stride for extent, stride in zip(shape, strides, strict=True))


def draw_view(draw, hostile, name, shape, element, *, broadcast_axes=()):
    """A view of `shape`: contiguous or with permuted outer axes, extent-1 broadcasts on
    `broadcast_axes`; hostile strides, extents, rank, element or buffer size where `hostile`
    says. Returns (rank, element, shape, strides, buffer_elements)."""
    shape = [max(extent, 0) for extent in shape]
    rank = len(shape)
    strides = contiguous_strides(shape)
    if rank > 2 and draw(st.booleans()):
        order = draw(st.permutations(range(rank - 1)))
        permuted = contiguous_strides([shape[axis] for axis in order] + [shape[-1]])
        for position, axis in enumerate(order):
            strides[axis] = permuted[position]
    for axis in broadcast_axes:
        if draw(st.integers(0, 2)) == 0:
            shape[axis], strides[axis] = 1, 0
    if hostile(f"{name}.strides"):
        axis = draw(st.integers(0, rank - 1))
        strides[axis] = draw(hostile_strides)
    if hostile(f"{name}.shape"):
        axis = draw(st.integers(0, rank - 1))
        shape[axis] = draw(st.sampled_from((0, 1, shape[axis] + 1, max(shape[axis] - 1, 0), 2**31)))
    if hostile(f"{name}.rank"):
        rank = draw(st.integers(0, abi.MAX_RANK))
        shape, strides = (shape + [1] * 4)[:rank], (strides + [1] * 4)[:rank]
    if hostile(f"{name}.element"):
        element = draw(hostile_elements)
    span = span_of(shape, strides) if all(stride >= 0 for stride in strides) else 1
    slack = draw(hostile_slack) if hostile(f"{name}.buffer") else 0
    buffer_elements = max(min(span + slack, 2**63 - 1), -(2**63))
    return rank, element, shape, strides, buffer_elements


def draw_addresses(draw, hostile, names):
    """A data address per argument: its own slot of the arena, or, where hostile, NULL,
    misaligned, near the end of the address space, or inside another argument."""
    addresses = {}
    for slot, name in enumerate(names):
        address = ARENA_BASE + slot * ARENA_SPACING
        if hostile(f"{name}.address"):
            kind = draw(st.integers(0, 3))
            if kind == 0:
                address = 0
            elif kind == 1:
                address += draw(st.sampled_from((1, 2, 3, 4, 6)))
            elif kind == 2:
                address = ADDRESS_SPACE - draw(st.sampled_from((16, 64, 4096)))
            elif slot > 0:
                other = addresses[names[draw(st.integers(0, slot - 1))]]
                address = other + draw(st.sampled_from((0, 16, 64, 1024)))
        addresses[name] = address % ADDRESS_SPACE
    return addresses


@st.composite
def seed_pointers(draw, names):
    """Addresses for a seed call: every argument hostile or none, or one."""
    hostile = Hostility(draw, {f"{name}.address" for name in names})
    return [address or None for address in draw_addresses(draw, hostile, list(names)).values()]


def fill(tensor, data, rank, element, shape, strides, buffer_elements):
    tensor.data = data or None
    tensor.element = element
    tensor.rank = rank
    for axis in range(abi.MAX_RANK):
        tensor.shape[axis] = shape[axis] if axis < rank else 0
        tensor.strides[axis] = strides[axis] if axis < rank else 0
    tensor.buffer_elements = buffer_elements


# ---------------------------------------------------------------- the audit


class View:
    """What a call was given for one tensor, in Python integers."""

    def __init__(self, name, tensor, *, written):
        self.name = name
        self.written = written
        self.address = tensor.data or 0
        self.element = tensor.element
        self.rank = tensor.rank
        self.shape = list(tensor.shape)[: self.rank]
        self.strides = list(tensor.strides)[: self.rank]
        self.buffer_elements = tensor.buffer_elements

    @property
    def present(self):
        return self.rank != 0

    def span(self):
        return span_of(self.shape, self.strides) if self.present else 0

    def byte_range(self):
        return self.address, self.span() * abi.ELEMENT_BYTES.get(self.element, 1)


def distinct_addresses(shape, strides) -> bool:
    """Whether every element of the view has its own offset."""
    if math.prod(shape) <= ENUMERATED_ELEMENTS:
        offsets = [
            sum(i * s for i, s in zip(index, strides, strict=True))
            for index in itertools.product(*(range(extent) for extent in shape))
        ]
        return len(offsets) == len(set(offsets))
    reach = 0
    for extent, stride in sorted(
        ((e, s) for e, s in zip(shape, strides, strict=True) if e > 1), key=lambda axis: axis[1]
    ):
        if stride <= reach:
            return False
        reach += (extent - 1) * stride
    return True


def audit_ranges(written, read):
    """Every range inside memory; written ranges disjoint from every other range."""
    ranges = [(name, begin, size) for name, begin, size in written + read]
    for name, begin, size in ranges:
        assert size == 0 or begin + size <= ADDRESS_SPACE, f"{name} runs past 2^64"
    for n, (name, begin, size) in enumerate(written):
        for other, other_begin, other_size in written[n + 1 :] + read:
            if size and other_size:
                assert begin + size <= other_begin or other_begin + other_size <= begin, (
                    f"{name} shares bytes with {other}"
                )


def audit_view(view: View):
    assert view.element in abi.ELEMENT_BYTES, f"{view.name}: element {view.element}"
    assert all(stride >= 0 for stride in view.strides) or view.span() == 0, view.name
    span = view.span()
    if span == 0:
        return
    assert span <= view.buffer_elements, f"{view.name}: span {span} > {view.buffer_elements}"
    assert view.address != 0, f"{view.name}: NULL"
    assert view.address % abi.ELEMENT_BYTES[view.element] == 0, f"{view.name}: misaligned"
    if view.written:
        assert distinct_addresses(view.shape, view.strides), f"{view.name} folds onto itself"


def audit_views(views_, extra_written=(), extra_read=()):
    for view in views_:
        if view.present:
            audit_view(view)
    written = [(v.name, *v.byte_range()) for v in views_ if v.written] + list(extra_written)
    read = [(v.name, *v.byte_range()) for v in views_ if not v.written] + list(extra_read)
    audit_ranges(written, read)


def check_status(status, op):
    """A known status; a message naming the op exactly when the call failed."""
    assert status in abi.STATUSES, f"{op}: unknown status {status}"
    message = abi.last_error_message()
    if status == abi.SUCCESS:
        assert message == "", f"{op}: success with message {message!r}"
    else:
        assert message.startswith(f"{op}: "), f"{op}: message {message!r}"
        assert "(got " in message and "expected " in message, f"{op}: message {message!r}"


def count(name, accepted):
    CASE_COUNTS[name] += 1
    if accepted:
        CASE_COUNTS[f"{name} (accepted)"] += 1


# ---------------------------------------------------------------- flash attention


FLASH_FIELDS = (
    "batch_size",
    "num_heads",
    "query_len",
    "key_len",
    "d_k",
    "d_v",
    "scale",
    "is_causal",
    "element",
    "window_size_left",
    "window_size_right",
    "softcap",
    "alignment",
    "num_heads_k",
)
FLASH_TENSORS = ("q", "k", "v", "y", "lse", "mask", "alibi_slopes")


def heads_k_choices(heads):
    return [n for n in range(1, heads + 1) if heads % n == 0] if 0 < heads <= 64 else [heads]


@st.composite
def flash_cases(draw):
    hostile = Hostility(draw, set(FLASH_FIELDS) | tensor_sites(FLASH_TENSORS))
    field = functools.partial(hostile.field, draw)
    desc = abi.FlashDescriptor(
        field("batch_size", small_extents, hostile_extents),
        field("num_heads", small_extents, hostile_extents),
        field("query_len", lengths, hostile_extents),
        field("key_len", lengths, hostile_extents),
        field("d_k", head_dims, hostile_head_dims),
        field("d_v", head_dims, hostile_head_dims),
        field("scale", scales, hostile_scales),
        field("is_causal", flags, hostile_flags),
        field("element", elements, hostile_elements),
        field("window_size_left", windows, hostile_windows),
        field("window_size_right", windows, hostile_windows),
        field("softcap", softcaps, hostile_softcaps),
        field("alignment", flags, hostile_flags),
    )
    b, h, sq, sk = desc.batch_size, desc.num_heads, desc.query_len, desc.key_len
    hk = field("num_heads_k", st.sampled_from(heads_k_choices(h)), st.sampled_from((0, 3, h + 1)))
    element = desc.element
    address = draw_addresses(draw, hostile, FLASH_TENSORS)
    shapes = {
        "q": ([b, h, sq, desc.d_k], element, ()),
        "k": ([b, hk, sk, desc.d_k], element, ()),
        "v": ([b, hk, sk, desc.d_v], element, ()),
        "y": ([b, h, sq, desc.d_v], element, ()),
        "lse": ([b, h, sq], abi.accumulator_element(element), ()),
        "mask": ([b, h, sq, sk], abi.F32, (0, 1, 2, 3)),
        "alibi_slopes": ([b, h], abi.F32, (0,)),
    }
    args = abi.FlashArgs()
    for name in FLASH_TENSORS:
        if name in ("mask", "alibi_slopes") and draw(st.integers(0, 2)) != 0:
            continue
        shape, tensor_element, broadcast = shapes[name]
        view = draw_view(draw, hostile, name, shape, tensor_element, broadcast_axes=broadcast)
        fill(getattr(args, name), address[name], *view)
    return desc, args


@FUZZ_SETTINGS
@given(flash_cases())
def test_flash_check_args(case):
    desc, args = case
    status = abi.LIBRARY.baracuda_flash_sdpa_check_args(ctypes.byref(desc), ctypes.byref(args))
    check_status(status, "flash_sdpa_check_args")
    count("flash_sdpa_check_args", status == abi.SUCCESS)
    if status != abi.SUCCESS:
        return
    assert desc.element in abi.ELEMENT_BYTES
    audit_views(
        [View(name, getattr(args, name), written=name in ("y", "lse")) for name in FLASH_TENSORS]
    )


# ---------------------------------------------------------------- ring attention


RING_FIELDS = (
    "batch_size",
    "num_heads",
    "num_heads_k",
    "query_len",
    "key_len",
    "head_dim",
    "scale",
    "is_causal",
    "element",
    "window_size_left",
    "window_size_right",
    "softcap",
    "layout",
    "schedule",
    "accumulator_scratch_bytes",
    "presence",
)
RING_TENSORS = ("q", "k", "v", "y", "lse", "alibi_slopes", "kv_scratch_a", "kv_scratch_b")


@st.composite
def ring_cases(draw):
    hostile = Hostility(
        draw, set(RING_FIELDS) | tensor_sites(RING_TENSORS) | {"accumulator_scratch.address"}
    )
    field = functools.partial(hostile.field, draw)
    h = field("num_heads", small_extents, hostile_extents)
    layout = field("layout", flags, st.sampled_from((2, -1)))
    even_lengths = st.integers(0, 20).map(lambda n: 2 * n)
    length = even_lengths if layout == 1 else lengths
    desc = abi.RingDescriptor(
        field("batch_size", small_extents, hostile_extents),
        h,
        field("num_heads_k", st.sampled_from(heads_k_choices(h)), st.sampled_from((0, 3, -1))),
        field("query_len", length, hostile_extents),
        field("key_len", length, hostile_extents),
        field("head_dim", head_dims, hostile_head_dims),
        field("scale", scales, hostile_scales),
        field("is_causal", flags, hostile_flags),
        field("element", elements, hostile_elements),
        field("window_size_left", windows, hostile_windows),
        field("window_size_right", windows, hostile_windows),
        field("softcap", softcaps, hostile_softcaps),
        layout,
        field("schedule", flags, st.sampled_from((2, 5))),
    )
    b, hk, sq, sk, d = (
        desc.batch_size,
        desc.num_heads_k,
        desc.query_len,
        desc.key_len,
        desc.head_dim,
    )
    element = desc.element
    address = draw_addresses(draw, hostile, RING_TENSORS + ("accumulator_scratch",))
    kv_elements = 2 * max(b, 0) * max(hk, 0) * max(sk, 0) * max(d, 0)
    shapes = {
        "q": ([b, h, sq, d], element),
        "k": ([b, hk, sk, d], element),
        "v": ([b, hk, sk, d], element),
        "y": ([b, h, sq, d], element),
        "lse": ([b, h, sq], abi.accumulator_element(element)),
        "alibi_slopes": ([b, h], abi.F32),
        "kv_scratch_a": ([kv_elements], element),
        "kv_scratch_b": ([kv_elements], element),
    }
    with_kv = draw(st.booleans())
    present = {
        "k": with_kv,
        "v": with_kv != hostile("presence"),
        "lse": draw(st.integers(0, 3)) != 0,
        "alibi_slopes": draw(st.integers(0, 2)) == 0,
    }
    args = abi.RingArgs()
    for name, (shape, tensor_element) in shapes.items():
        if not present.get(name, True):
            continue
        view = draw_view(draw, hostile, name, shape, tensor_element)
        fill(getattr(args, name), address[name], *view)
    compute = abi.ELEMENT_BYTES.get(abi.accumulator_element(element), 4)
    needed = max(b, 0) * max(h, 0) * max(sq, 0) * (max(d, 0) + 2) * compute
    slack = field("accumulator_scratch_bytes", st.just(0), hostile_slack)
    args.accumulator_scratch = address["accumulator_scratch"] or None
    args.accumulator_scratch_bytes = max(0, min(needed + slack, 2**64 - 1))
    return desc, args


@FUZZ_SETTINGS
@given(ring_cases())
def test_ring_check_args(case):
    desc, args = case
    status = abi.LIBRARY.baracuda_ring_attention_check_args(ctypes.byref(desc), ctypes.byref(args))
    check_status(status, "ring_attention_check_args")
    count("ring_attention_check_args", status == abi.SUCCESS)
    if status != abi.SUCCESS:
        return
    element_bytes = abi.ELEMENT_BYTES[desc.element]
    compute = abi.ELEMENT_BYTES[abi.accumulator_element(desc.element)]
    kv_elements = 2 * desc.batch_size * desc.num_heads_k * desc.key_len * desc.head_dim
    rows = desc.batch_size * desc.num_heads * desc.query_len
    accumulator_bytes = rows * (desc.head_dim + 2) * compute
    assert kv_elements * element_bytes < 2**63
    scratch = []
    for name in ("kv_scratch_a", "kv_scratch_b"):
        tensor = getattr(args, name)
        assert tensor.rank == 1 and tensor.element == desc.element
        held = min(tensor.shape[0], tensor.buffer_elements)
        assert held >= kv_elements, f"{name} holds {held} < {kv_elements}"
        if kv_elements:
            assert tensor.data and tensor.data % element_bytes == 0, f"{name} pointer"
        scratch.append((name, tensor.data or 0, kv_elements * element_bytes))
    assert args.accumulator_scratch_bytes >= accumulator_bytes
    accumulator = args.accumulator_scratch or 0
    if accumulator_bytes:
        assert accumulator and accumulator % ACCUMULATOR_ALIGNMENT == 0
    scratch.append(("accumulator_scratch", accumulator, accumulator_bytes))
    names = ("q", "k", "v", "y", "lse", "alibi_slopes")
    audit_views(
        [View(name, getattr(args, name), written=name in ("y", "lse")) for name in names],
        extra_written=scratch,
    )


# ---------------------------------------------------------------- seed entry points

NO_DEVICE = not abi.device_present()
needs_no_device = pytest.mark.skipif(
    not NO_DEVICE,
    reason="with a device, a seed call that passes its checks would launch on made-up pointers",
)
SEED_NAMES = {abi.F32: "f32", abi.F16: "f16", abi.BF16: "bf16", abi.F64: "f64"}
# Statuses of a seed call that passed every check: the device is missing (or, for an empty
# problem, nothing to do).
PASSED_CHECKS = (abi.SUCCESS, abi.CUDA_ERROR)


def seed_extents():
    return st.one_of(small_extents, small_extents, st.sampled_from(HOSTILE_INTS))


seed_head_dims = st.one_of(head_dims, head_dims, hostile_head_dims)
seed_flags = st.one_of(flags, flags, hostile_flags)


@needs_no_device
@FUZZ_SETTINGS
@given(
    element=st.sampled_from(ELEMENTS),
    masked=st.booleans(),
    extents_=st.tuples(
        seed_extents(),
        seed_extents(),
        seed_extents(),
        seed_extents(),
        seed_head_dims,
        seed_head_dims,
    ),
    scale=st.floats(allow_nan=True, allow_infinity=True, width=32),
    causal=seed_flags,
    data=st.data(),
)
def test_flash_seed(element, masked, extents_, scale, causal, data):
    b, h, sq, sk, dk, dv = extents_
    names = ("q", "k", "v", "mask", "y", "lse")
    q, k, v, mask, y, lse = data.draw(seed_pointers(names))
    name = SEED_NAMES[element]
    if masked:
        op = f"baracuda_kernels_sdpa_{name}_arbmask_run"
        status = getattr(abi.LIBRARY, op)(
            b, h, sq, sk, dk, dv, scale, causal, q, k, v, mask, y, lse, None, 0, None
        )
    else:
        op = f"baracuda_kernels_flash_sdpa_{name}_run"
        status = getattr(abi.LIBRARY, op)(
            b, h, sq, sk, dk, dv, scale, causal, q, k, v, y, lse, None, 0, None
        )
    assert status in abi.STATUSES
    assert (status == abi.SUCCESS) == (abi.last_error_message() == "")
    count("seed flash_sdpa", status in PASSED_CHECKS)
    if status not in PASSED_CHECKS:
        return
    size = abi.ELEMENT_BYTES[element]
    lse_size = abi.ELEMENT_BYTES[abi.accumulator_element(element)]
    buffers = {
        "q": (q, b * h * sq * dk * size),
        "k": (k, b * h * sk * dk * size),
        "v": (v, b * h * sk * dv * size),
        "y": (y, b * h * sq * dv * size),
        "lse": (lse, b * h * sq * lse_size),
    }
    if masked and mask:  # the arbmask entry points read a NULL mask as no mask
        buffers["mask"] = (mask, b * h * sq * sk * 4)
    audit_seed(buffers, written=("y", "lse"), sizes={"lse": lse_size, "mask": 4}, default=size)


def audit_seed(buffers, *, written, sizes, default):
    for name, (pointer, nbytes) in buffers.items():
        if nbytes:
            assert pointer, f"{name} NULL"
            assert pointer % sizes.get(name, default) == 0, f"{name} misaligned"
    ranges = {name: (name, pointer or 0, nbytes) for name, (pointer, nbytes) in buffers.items()}
    audit_ranges(
        [ranges[name] for name in written if name in ranges],
        [ranges[name] for name in ranges if name not in written],
    )


@needs_no_device
@FUZZ_SETTINGS
@given(
    element=st.sampled_from(ELEMENTS),
    extents_=st.tuples(
        seed_extents(), seed_extents(), seed_extents(), seed_extents(), seed_head_dims
    ),
    bases=st.tuples(st.sampled_from(HOSTILE_INTS), st.sampled_from(HOSTILE_INTS)),
    scale=st.floats(allow_nan=True, allow_infinity=True, width=32),
    causal=seed_flags,
    data=st.data(),
)
def test_ring_seed_step(element, extents_, bases, scale, causal, data):
    b, h, q_local, k_chunk, d = extents_
    names = ("q", "k", "v", "o_acc", "m_acc", "l_acc")
    q, k, v, o, m, l_acc = data.draw(seed_pointers(names))
    op = f"baracuda_kernels_ring_attention_{SEED_NAMES[element]}_step_run"
    status = getattr(abi.LIBRARY, op)(
        b, h, q_local, k_chunk, d, *bases, scale, causal, q, k, v, o, m, l_acc, None
    )
    assert status in abi.STATUSES
    count("seed ring_attention step", status in PASSED_CHECKS)
    if status not in PASSED_CHECKS or k_chunk == 0:
        return
    size = abi.ELEMENT_BYTES[element]
    compute = abi.ELEMENT_BYTES[abi.accumulator_element(element)]
    rows = b * h * q_local
    buffers = {
        "q": (q, rows * d * size),
        "k": (k, b * h * k_chunk * d * size if rows else 0),
        "v": (v, b * h * k_chunk * d * size if rows else 0),
        "o_acc": (o, rows * d * compute),
        "m_acc": (m, rows * compute),
        "l_acc": (l_acc, rows * compute),
    }
    audit_seed(
        buffers,
        written=("o_acc", "m_acc", "l_acc"),
        sizes={"o_acc": compute, "m_acc": compute, "l_acc": compute},
        default=size,
    )


@needs_no_device
@FUZZ_SETTINGS
@given(
    element=st.sampled_from(ELEMENTS),
    extents_=st.tuples(seed_extents(), seed_extents(), seed_extents(), seed_head_dims),
    with_lse=st.booleans(),
    data=st.data(),
)
def test_ring_seed_finalize(element, extents_, with_lse, data):
    b, h, q_local, d = extents_
    names = ("o_acc", "m_acc", "l_acc", "y", "lse")
    o, m, l_acc, y, lse = data.draw(seed_pointers(names))
    lse = lse if with_lse else None
    op = f"baracuda_kernels_ring_attention_{SEED_NAMES[element]}_finalize_run"
    status = getattr(abi.LIBRARY, op)(b, h, q_local, d, o, m, l_acc, y, lse, None)
    assert status in abi.STATUSES
    count("seed ring_attention finalize", status in PASSED_CHECKS)
    if status not in PASSED_CHECKS:
        return
    size = abi.ELEMENT_BYTES[element]
    compute = abi.ELEMENT_BYTES[abi.accumulator_element(element)]
    rows = b * h * q_local if d > 0 else 0
    buffers = {
        "o_acc": (o, b * h * q_local * d * compute),
        "m_acc": (m, rows * compute),
        "l_acc": (l_acc, rows * compute),
        "y": (y, b * h * q_local * d * size),
        "lse": (lse, rows * compute if lse else 0),
    }
    audit_seed(
        buffers,
        written=("y", "lse"),
        sizes={"o_acc": compute, "m_acc": compute, "l_acc": compute, "lse": compute},
        default=size,
    )


@needs_no_device
@FUZZ_SETTINGS
@given(
    f64=st.booleans(),
    lengths_=st.tuples(st.integers(-3, 2**40), st.integers(-3, 2**40)),
    data=st.data(),
)
def test_ring_seed_init(f64, lengths_, data):
    o_len, ml_len = lengths_
    o, m, l_acc = data.draw(seed_pointers(("o_acc", "m_acc", "l_acc")))
    name = "f64_init_run" if f64 else "init_run"
    status = getattr(abi.LIBRARY, f"baracuda_kernels_ring_attention_{name}")(
        o, m, l_acc, o_len, ml_len, None
    )
    assert status in abi.STATUSES
    count("seed ring_attention init", status in PASSED_CHECKS)
    if status not in PASSED_CHECKS:
        return
    compute = 8 if f64 else 4
    audit_seed(
        {
            "o_acc": (o, o_len * compute),
            "m_acc": (m, ml_len * compute),
            "l_acc": (l_acc, ml_len * compute),
        },
        written=("o_acc", "m_acc", "l_acc"),
        sizes={},
        default=compute,
    )
