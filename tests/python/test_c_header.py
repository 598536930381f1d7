"""The Python constants against the C header (CPU): each enum and constant of ``baracuda.h``
that Python names has the header's values and names, every status has its exception class,
and the header declares no enum that Python does not know.

The header is read as text (``typedef enum NAME { MEMBER = value, ... } NAME;`` blocks and
``#define BARACUDA_X value`` lines), so a status, element or layout added to the header
without Python fails here.
"""

import functools
import re
from pathlib import Path

import _c_abi as abi
import baracuda
import pytest
from baracuda import _capi, _errors, _flash_sdpa, _plan, _ring_attention, _tensor, nccl

HEADER = Path(__file__).resolve().parents[2] / "libbaracuda/include/baracuda/baracuda.h"

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)
_ENUM = re.compile(r"typedef\s+enum\s+(\w+)\s*\{(.*?)\}\s*(\w+)\s*;", re.DOTALL)
_MEMBER = re.compile(r"(\w+)\s*=\s*(-?\d+)")
_DEFINE = re.compile(r"^#define\s+(BARACUDA_\w+)\s+\(?\s*(-?\d+)\s*\)?\s*$", re.MULTILINE)

# Each header enum and the prefix of its members; the rest of a member's name, lower case, is
# the name Python gives the value.
ENUM_PREFIXES = {
    "baracuda_status": "BARACUDA_STATUS_",
    "baracuda_element": "BARACUDA_ELEMENT_",
    "baracuda_backend": "BARACUDA_BACKEND_",
    "baracuda_alignment": "BARACUDA_ALIGN_",
    "baracuda_ring_layout": "BARACUDA_RING_LAYOUT_",
    "baracuda_ring_schedule": "BARACUDA_RING_SCHEDULE_",
}


def _header_text() -> str:
    return _COMMENT.sub(" ", HEADER.read_text())


def _parse_enums(text: str) -> dict[str, dict[str, int]]:
    """``{enum: {member: value}}`` of every ``typedef enum`` block, in declaration order.

    Raises
    ------
    AssertionError
        A block whose typedef name differs from its tag, or a member without an explicit
        integer value (the test compares values, so it refuses to guess one).
    """
    enums = {}
    for tag, body, name in _ENUM.findall(text):
        assert tag == name, f"typedef enum {tag} {{...}} {name}: tag and name differ"
        members = {}
        for item in filter(None, (part.strip() for part in body.split(","))):
            match = _MEMBER.fullmatch(item)
            assert match, f"{name}: member {item!r} has no explicit integer value"
            members[match.group(1)] = int(match.group(2))
        enums[name] = members
    return enums


@functools.cache
def header_enums() -> dict[str, dict[str, int]]:
    """The header's enums (:func:`_parse_enums`), read once."""
    return _parse_enums(_header_text())


@functools.cache
def header_defines() -> dict[str, int]:
    """The header's integer ``#define BARACUDA_*`` constants, read once."""
    return {name: int(value) for name, value in _DEFINE.findall(_header_text())}


def _named(enum: str) -> dict[str, int]:
    """The members of a header enum by the name Python gives them (prefix dropped, lower
    case)."""
    prefix = ENUM_PREFIXES[enum]
    members = header_enums()[enum]
    assert all(member.startswith(prefix) for member in members), (enum, list(members))
    return {member[len(prefix) :].lower(): value for member, value in members.items()}


# ---------------------------------------------------------------- the parse itself


def test_header_declares_only_the_enums_python_knows():
    """A new enum in the header needs its Python names and a check here."""
    assert list(header_enums()) == list(ENUM_PREFIXES)
    assert all(header_enums().values())


def test_parse_refuses_a_member_without_a_value():
    with pytest.raises(AssertionError, match="BARACUDA_STATUS_NEW"):
        _parse_enums(
            "typedef enum baracuda_status { BARACUDA_STATUS_SUCCESS = 0, "
            "BARACUDA_STATUS_NEW } baracuda_status;"
        )


# ---------------------------------------------------------------- statuses


def _python_statuses() -> dict[str, int]:
    """The ``STATUS_*`` constants of ``_errors``, by the header's member name."""
    return {
        f"BARACUDA_{name}": value
        for name, value in vars(_errors).items()
        if name.startswith("STATUS_") and isinstance(value, int)
    }


def test_status_values_match_the_header():
    assert _python_statuses() == header_enums()["baracuda_status"]


def test_every_failing_status_has_its_error_class():
    """Each status but success maps to a subclass of BaracudaError that carries it, one class
    per status, each exported by the package."""
    classes = set()
    for member, status in header_enums()["baracuda_status"].items():
        if member == "BARACUDA_STATUS_SUCCESS":
            continue
        error = _errors.error_from_status(status, "message")
        assert type(error) is not baracuda.BaracudaError, f"{member} has no error class"
        assert type(error).status == status == error.status, member
        assert getattr(baracuda, type(error).__name__) is type(error), member
        classes.add(type(error))
    assert len(classes) == len(header_enums()["baracuda_status"]) - 1


def test_library_names_every_header_status():
    """The compiled library has a text for each status of the header, and none beyond."""
    statuses = header_enums()["baracuda_status"].values()
    unknown = _capi.status_string(max(statuses) + 1)
    texts = [_capi.status_string(status) for status in statuses]
    assert unknown not in texts
    assert len(set(texts)) == len(texts), texts


# ---------------------------------------------------------------- names of the other enums


# Each enum's names in the binding (name -> value) and in the modules that check names.
BINDING_NAMES = {
    "baracuda_element": _capi.ELEMENTS,
    "baracuda_backend": _capi.BACKENDS,
    "baracuda_alignment": _capi.ALIGNMENTS,
    "baracuda_ring_layout": _capi.RING_LAYOUTS,
    "baracuda_ring_schedule": _capi.RING_SCHEDULES,
}
CHECKED_NAMES = {
    "baracuda_element": _tensor.ELEMENT_NAMES,
    "baracuda_backend": _plan.BACKENDS,
    "baracuda_alignment": _flash_sdpa.ALIGNMENTS,
    "baracuda_ring_layout": _ring_attention.LAYOUTS,
    "baracuda_ring_schedule": _ring_attention.SCHEDULES,
}


@pytest.mark.parametrize("enum", list(BINDING_NAMES))
def test_enum_names_and_values_match_the_header(enum):
    """The binding's ``name -> value`` dict of each enum is the header's, in its order."""
    assert list(BINDING_NAMES[enum].items()) == list(_named(enum).items())


@pytest.mark.parametrize("enum", list(CHECKED_NAMES))
def test_name_tuples_match_the_header(enum):
    assert CHECKED_NAMES[enum] == tuple(_named(enum))


# ---------------------------------------------------------------- constants


@pytest.mark.parametrize(
    "define,value",
    [
        ("BARACUDA_MAX_RANK", _capi.MAX_RANK),
        ("BARACUDA_WINDOW_UNBOUNDED", _capi.WINDOW_UNBOUNDED),
        ("BARACUDA_NCCL_UNIQUE_ID_BYTES", _capi.NCCL_UNIQUE_ID_BYTES),
        ("BARACUDA_NCCL_UNIQUE_ID_BYTES", nccl.UNIQUE_ID_BYTES),
    ],
    ids=["MAX_RANK", "WINDOW_UNBOUNDED", "NCCL_UNIQUE_ID_BYTES", "nccl.UNIQUE_ID_BYTES"],
)
def test_constants_match_the_header(define, value):
    assert value == header_defines()[define]


# ---------------------------------------------------------------- the ctypes mirror of the tests


def test_ctypes_mirror_matches_the_header():
    """``_c_abi``, which the fuzz run calls the C ABI through, numbers things as the header."""
    statuses = {
        f"BARACUDA_STATUS_{name}": getattr(abi, name)
        for name in (
            member[len("BARACUDA_STATUS_") :] for member in header_enums()["baracuda_status"]
        )
    }
    assert statuses == header_enums()["baracuda_status"]
    assert abi.STATUSES == frozenset(header_enums()["baracuda_status"].values())
    elements = {name: getattr(abi, name.upper()) for name in _named("baracuda_element")}
    assert elements == _named("baracuda_element")
    assert (abi.MAX_RANK, abi.WINDOW_UNBOUNDED, abi.NCCL_UNIQUE_ID_BYTES) == (
        header_defines()["BARACUDA_MAX_RANK"],
        header_defines()["BARACUDA_WINDOW_UNBOUNDED"],
        header_defines()["BARACUDA_NCCL_UNIQUE_ID_BYTES"],
    )
