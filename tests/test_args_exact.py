"""gdb_heap.args: counted options (heap chunk --dump [N]) and the exact error sentences."""

from __future__ import annotations

import pytest

from gdb_heap.args import is_number, parse, parse_count
from gdb_heap.errors import HeapError


def test_is_number():
    assert is_number("5") and is_number("0x10") and is_number("0") and is_number("010")  # 010: decimal digits
    assert not is_number("abc") and not is_number("") and not is_number("0xg") and not is_number("p")


@pytest.mark.parametrize("text,flags,values,rest", [
    ("--dump", {"--dump": True}, {}, []),
    ("--dump 3", {"--dump": True}, {"--dump": "3"}, []),
    ("--dump=0x20 p", {"--dump": True}, {"--dump": "0x20"}, ["p"]),
    ("--dump p", {"--dump": True}, {}, ["p"]),  # a word that is no number is the address, not N
    ("p --dump", {"--dump": True}, {}, ["p"]),
    ("--dump 010 --json", {"--dump": True, "--json": True}, {"--dump": "010"}, []),
    ("--dump --json 4", {"--dump": True, "--json": True}, {}, ["4"]),
])
def test_counted(text, flags, values, rest):
    a = parse("heap chunk", text, ("--json",), (), ("--dump",))
    assert (a.flags, a.values, a.rest) == (flags, values, rest)


def test_error_sentences():
    with pytest.raises(HeapError) as e:
        parse("heap chunk", "--x", ("--json",), ("--arena",), ("--dump",))
    assert str(e.value) == "unknown option '--x' for heap chunk; its options are: --json, --arena VALUE, --dump [N]"
    with pytest.raises(HeapError) as e:
        parse("heap", "--x", ())
    assert str(e.value) == "unknown option '--x' for heap; its options are: none"
    with pytest.raises(HeapError) as e:
        parse("heap bins", "--arena --json", ("--json",), ("--arena",))
    assert str(e.value) == "--arena needs a value; see help heap bins"
    with pytest.raises(HeapError) as e:
        parse("heap chunks", "--arena 1 --all-arenas", ("--all-arenas",), ("--arena",))
    assert str(e.value) == "--arena and --all-arenas exclude each other; give one (see help heap chunks)"
    with pytest.raises(HeapError) as e:
        parse_count("heap chunks", "x")
    assert str(e.value) == "--limit wants a number of chunks, not 'x'; see help heap chunks"
    with pytest.raises(HeapError) as e:
        parse_count("heap map", "y", "--count", "a count")
    assert str(e.value) == "--count wants a count, not 'y'; see help heap map"
    with pytest.raises(HeapError) as e:
        parse_count("heap chunks", "-0x1")
    assert str(e.value) == "--limit wants a number >= 0, not -1"


def test_decimal_with_a_leading_zero_and_values_forms():
    assert parse_count("heap chunks", "010") == 10 and parse_count("heap chunks", "0o10") == 8
    a = parse("heap chunks", "--limit=3 --arena 0x10 x", ("--json",), ("--limit", "--arena"))
    assert (a.flags, a.values, a.rest) == ({}, {"--limit": "3", "--arena": "0x10"}, ["x"])
    assert a.flag("--json") is False and a.value("--nothing") is None
