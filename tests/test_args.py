"""gdb_heap.args: the heap commands' own option parser."""

from __future__ import annotations

import pytest

from gdb_heap.args import parse, parse_count
from gdb_heap.errors import HeapError

FLAGS = ("--json", "--summary", "--all-arenas")
VALUED = ("--limit", "--arena")


def test_flags_and_rest():
    a = parse("heap chunks", "--json --summary", FLAGS, VALUED)
    assert a.flag("--json") and a.flag("--summary") and not a.flag("--all-arenas")
    assert a.rest == [] and a.values == {}
    b = parse("heap bins", "tcache  fast --json", ("--json",))
    assert b.rest == ["tcache", "fast"] and b.flag("--json")


def test_empty():
    a = parse("heap", "", ("--json",))
    assert a.rest == [] and a.flags == {} and a.value("--limit") is None


@pytest.mark.parametrize("text", ["--limit 5", "--limit=5", "--json --limit 5", "--limit=5 --json"])
def test_valued_option_both_forms(text):
    a = parse("heap chunks", text, FLAGS, VALUED)
    assert a.value("--limit") == "5"
    assert parse_count("heap chunks", a.values["--limit"]) == 5


def test_arena_expression():
    a = parse("heap chunks", "--arena 0x7ffff7e19c80 --json", FLAGS, VALUED)
    assert a.value("--arena") == "0x7ffff7e19c80" and a.flag("--json")
    a = parse("heap chunk", "p --json", ("--json",))
    assert a.rest == ["p"]


def test_unknown_option_is_named():
    with pytest.raises(HeapError) as e:
        parse("heap chunks", "--jsno", FLAGS, VALUED)
    assert "--jsno" in str(e.value) and "heap chunks" in str(e.value)
    with pytest.raises(HeapError, match="--all-threads"):
        parse("heap top", "--all-threads", ("--json",), ("--arena",))


def test_flag_given_a_value_is_an_error():
    with pytest.raises(HeapError, match="--json"):
        parse("heap chunks", "--json=yes", FLAGS, VALUED)


def test_missing_value():
    with pytest.raises(HeapError) as e:
        parse("heap chunks", "--json --limit", FLAGS, VALUED)
    assert "--limit" in str(e.value)
    with pytest.raises(HeapError, match="--arena"):
        parse("heap bins", "--arena", ("--json",), ("--arena",))


def test_arena_and_all_arenas_exclude_each_other():
    with pytest.raises(HeapError, match="--all-arenas"):
        parse("heap chunks", "--arena 0x1000 --all-arenas", FLAGS, VALUED)
    with pytest.raises(HeapError):
        parse("heap chunks", "--all-arenas --arena=0x1000", FLAGS, VALUED)


@pytest.mark.parametrize("text,n", [("0", 0), ("5", 5), ("0x10", 16), ("1000000", 1000000)])
def test_parse_count(text, n):
    assert parse_count("heap chunks", text) == n


@pytest.mark.parametrize("text", ["abc", "", "5.0", "-1", "-5", "0xg"])
def test_parse_count_errors(text):
    with pytest.raises(HeapError) as e:
        parse_count("heap chunks", text)
    assert "--limit" in str(e.value)
