"""heap snapshots' and heap diff's text and JSON (render_snapshot.py) on hand-written records:
every line written out by hand, both sides of each choice (unchanged or not, before or after
missing, a bin gained and lost)."""

from array import array

from gdb_heap import render_snapshot as rs
from gdb_heap.snapshot import ArenaDiff, MmappedDiff, Snapshot, diff_arena
from gdb_heap.style import Style
from tests.test_snapshot import BASE, rec


class Tagged(Style):
    """A style that shows its role: the heading role is part of what is checked."""

    def __init__(self) -> None:
        super().__init__(False)

    def __call__(self, role: str, text: str) -> str:
        return f"<{role}>{text}</{role}>"


tagged = Tagged()


def test_no_snapshots():
    assert list(rs.snapshots_lines([], tagged)) == ["no snapshots: take one with heap snapshot [NAME]"]
    assert rs.snapshots_doc([]) == {"snapshots": []}


def test_snapshots_listed_with_columns():
    one = Snapshot("first", "stop 3, 12:00:01", 8, [rec(BASE, 0x12e0, 0x20d20)])
    two = Snapshot("2", "stop 9, 12:00:05", 8, [rec(BASE), rec(BASE[:1], address=0x8000)],
                   0, array("Q", [0x7f0000000000]), array("Q", [0x21002]))
    lines = list(rs.snapshots_lines([one, two], tagged))
    # name <12, when <24, arenas >6, chunks >10, record (bytes) >15, one space apart
    assert lines == [
        "<heading>name" + " " * 8 + " when" + " " * 20 + " arenas     chunks  record (bytes)</heading>",
        "first" + " " * 7 + " stop 3, 12:00:01" + " " * 8 + "      1          4              48",
        "2" + " " * 11 + " stop 9, 12:00:05" + " " * 8 + "      2          6              94",
    ]  # an arena: 6 bytes a chunk, 16 for its first chunk (a gap), 8 for its first mark; a mmapped chunk 16
    # (4 chunks: 24 + 16 + 8; then 48 and one chunk's 6 + 16 + 8, and 16)
    assert rs.snapshots_doc([one, two]) == {"snapshots": [
        {"name": "first", "when": "stop 3, 12:00:01", "arenas": 1, "chunks": 4, "bytes": 48},
        {"name": "2", "when": "stop 9, 12:00:05", "arenas": 2, "chunks": 6, "bytes": 94}]}


def test_chunk_object_is_heap_chunks_json():
    assert rs.chunk_obj((0x12e0, 0x41, "in_use", None, None), 8) == {
        "address": 0x12e0, "size": 0x40, "prev_inuse": True, "is_mmapped": False, "non_main_arena": False,
        "state": "in_use", "bin": None, "bin_index": None, "user_address": 0x12f0, "usable_size": 0x38}
    assert rs.chunk_obj((0x2000, 0x1006, "free", "tcache", 3), 4) == {
        "address": 0x2000, "size": 0x1000, "prev_inuse": False, "is_mmapped": True, "non_main_arena": True,
        "state": "free", "bin": "tcache", "bin_index": 3, "user_address": 0x2008, "usable_size": 0xff8}


def test_no_change_in_the_main_arena():
    d = diff_arena(0x7000, rec(BASE, 0x12e0, 0x20d20), rec(BASE, 0x12e0, 0x20d20))
    assert list(rs.diff_lines(d, "a", "b", tagged)) == ["<heading>a -> b, main arena 0x7000</heading>", "  no change"]


def test_a_thread_arena_that_appeared_and_one_that_went():
    r = rec([(0x9000, 0x255, 0, None), (0x9250, 0x1000, 1, None)], 0x9250, 0x1000, address=0x8000)
    r.main = False
    appeared = diff_arena(0x8000, None, r)
    assert list(rs.diff_lines(appeared, "s1", "now", tagged)) == [
        "<heading>s1 -> now, arena 0x8000: appeared after s1</heading>",
        "  appeared     0x9000  size 0x250  P.N  in use"]
    went = diff_arena(0x8000, r, None)
    assert list(rs.diff_lines(went, "s1", "now", tagged)) == [
        "<heading>s1 -> now, arena 0x8000: gone in now</heading>",
        "  disappeared  0x9000  size 0x250  P.N  in use"]
    doc = rs.diff_doc(went, "s1", "now", 8)
    assert doc["top"] == {"before": 0x9250, "after": None, "size_before": 0x1000, "size_after": None}
    assert doc["system_mem"] == {"before": 0x21000, "after": None}
    assert doc["arena"] == 0x8000 and doc["appeared"] == [] and doc["changed"] == []
    assert [c["address"] for c in doc["disappeared"]] == [0x9000]
    doc = rs.diff_doc(appeared, "s1", "now", 8)
    assert doc["top"] == {"before": None, "after": 0x9250, "size_before": None, "size_after": 0x1000}
    assert doc["system_mem"] == {"before": None, "after": 0x21000}


def test_every_kind_of_line():
    before = [(0x1000, 0x291, 0, None), (0x1290, 0x21, 2, 0), (0x12b0, 0x31, 0, None), (0x12e0, 0x91, 5, 9),
              (0x1370, 0x21, 0, None), (0x1390, 0x20c71, 1, None)]
    after = [(0x1000, 0x291, 0, None), (0x1290, 0x21, 0, None), (0x12b0, 0x60, 0, None),
             (0x1310, 0x21, 3, 0), (0x1390, 0x41, 0, None), (0x13d0, 0x41c31, 1, None)]
    d = diff_arena(0x7000, rec(before, 0x1390, 0x20c70), rec(after, 0x13d0, 0x41c30, system_mem=0x42000))
    assert list(rs.diff_lines(d, "a", "b", tagged)) == [
        "<heading>a -> b, main arena 0x7000</heading>",
        "  appeared     0x1310  size 0x20  P..  free fast[0]",
        "  appeared     0x1390  size 0x40  P..  in use",
        "  disappeared  0x12e0  size 0x90  P..  free small[9]",
        "  disappeared  0x1370  size 0x20  P..  in use",
        "  changed      0x1290  free tcache[0] -> in use",
        "  changed      0x12b0  size 0x30 -> 0x60; flags P.. -> ...",
        "  top          0x1390 -> 0x13d0 (moved +0x40), size 0x20c70 -> 0x41c30 (+0x20fc0)",
        "  system mem   0x21000 -> 0x42000 (+0x21000, 132.0 KiB -> 264.0 KiB)",
        "  bins         tcache[0] -1, fast[0] +1, small[9] -1"]
    doc = rs.diff_doc(d, "a", "b", 8)
    assert (doc["from"], doc["to"], doc["arena"]) == ("a", "b", 0x7000)
    assert [c["address"] for c in doc["appeared"]] == [0x1310, 0x1390]
    assert [c["address"] for c in doc["disappeared"]] == [0x12e0, 0x1370]
    assert [(c["address"], c["before"]["size"], c["after"]["size"], c["before"]["state"], c["after"]["state"])
            for c in doc["changed"]] == [(0x1290, 0x20, 0x20, "free", "in_use"),
                                         (0x12b0, 0x30, 0x60, "in_use", "in_use")]
    assert doc["top"] == {"before": 0x1390, "after": 0x13d0, "size_before": 0x20c70, "size_after": 0x41c30}
    assert doc["system_mem"] == {"before": 0x21000, "after": 0x42000}


def test_a_change_of_all_three_and_a_shrinking_heap():
    before = [(0x1000, 0x21, 0, None), (0x1020, 0x1000, 1, None)]
    after = [(0x1000, 0x30, 4, 1), (0x1020, 0x1000, 1, None)]
    d = diff_arena(0x7000, rec(before, 0x1020, 0x1000, system_mem=0x42000), rec(after, 0x1020, 0x800))
    lines = list(rs.diff_lines(d, "a", "b", tagged))
    assert lines[1] == "  changed      0x1000  size 0x20 -> 0x30; flags P.. -> ...; in use -> free unsorted"
    assert lines[2] == "  top          0x1020 -> 0x1020 (not moved), size 0x1000 -> 0x800 (-0x800)"
    assert lines[3] == "  system mem   0x42000 -> 0x21000 (-0x21000, 264.0 KiB -> 132.0 KiB)"
    assert lines[4] == "  bins         unsorted +1"


def test_a_bin_that_gained_and_lost():
    before = [(0x1000, 0x31, 2, 1), (0x1030, 0x31, 0, None), (0x1060, 0x1000, 1, None)]
    after = [(0x1000, 0x31, 0, None), (0x1030, 0x31, 2, 1), (0x1060, 0x1000, 1, None)]
    d = diff_arena(0x7000, rec(before, 0x1060, 0x1000), rec(after, 0x1060, 0x1000))
    assert list(rs.diff_lines(d, "a", "b", tagged))[-1] == "  bins         tcache[1] +1 -1"


def test_top_lines():
    assert rs._top_text(0x1020, 0x1000, 0x1020, 0x1000) == "0x1020, size 0x1000, unchanged"
    assert rs._top_text(0x7100, 0, 0x1020, 0x20fe0) == "none -> 0x1020 (top appeared), size 0x20fe0"
    assert rs._top_text(0x1060, 0x1000, 0x1020, 0x1000) == \
        "0x1060 -> 0x1020 (moved -0x40), size 0x1000 -> 0x1000 (+0x0)"


def test_only_top_changed_and_system_mem_unchanged():
    d = diff_arena(0x7000, rec(BASE, 0x12e0, 0x20d20), rec(BASE, 0x12e0, 0x20d10))
    assert list(rs.diff_lines(d, "a", "b", tagged)) == [
        "<heading>a -> b, main arena 0x7000</heading>",
        "  top          0x12e0 -> 0x12e0 (not moved), size 0x20d20 -> 0x20d10 (-0x10)",
        "  system mem   0x21000 (132.0 KiB), unchanged"]


def test_a_diff_of_records_that_are_not_main():
    a = rec(BASE, 0x12e0, 0x20d20)
    a.main = False
    b = rec(BASE, 0x12e0, 0x20d20)
    b.main = False
    assert next(rs.diff_lines(ArenaDiff(0x7000, a, b), "a", "b", tagged)) == "<heading>a -> b, arena 0x7000</heading>"
    b.main = True  # either record's main flag names the main arena
    assert next(rs.diff_lines(ArenaDiff(0x7000, a, b), "a", "b", tagged)) == \
        "<heading>a -> b, main arena 0x7000</heading>"


def test_mmapped_lines():
    d = MmappedDiff([(0x7f0000200000, 0x21002)], [(0x7f0000000000, 0x100002)])
    assert list(rs.mmapped_lines(d)) == [
        "mmapped chunk appeared  0x7f0000200000  size 0x21000 (132.0 KiB)",
        "mmapped chunk went      0x7f0000000000  size 0x100000 (1.0 MiB)"]


def test_no_snapshot_line():
    assert rs.no_snapshot_line() == \
        "no snapshot yet: nothing to compare (the heap now against itself); take one with heap snapshot"
