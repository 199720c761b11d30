"""in_progress.py's sentences, exact: the note every command prints about a call inside the
allocator, and who is in it (records made up by hand, no gdb)."""

from gdb_heap import in_progress
from gdb_heap.in_progress import InProgress


def call(**kw) -> InProgress:
    base = dict(thread=2, lwp=102, function="_int_free", entry="free", arena=0x1000, arena_from="frame",
                thread_arena=None, locked=True, aborting=False)
    base.update(kw)
    return InProgress(**base)  # type: ignore[arg-type]


def test_who():
    assert call().who() == "thread 2 (LWP 102) is in _int_free (called by free)"
    assert call(entry="_int_free").who() == "thread 2 (LWP 102) is in _int_free"
    assert call(entry=None).who() == "thread 2 (LWP 102) is in _int_free"
    assert call(function=None, entry=None).who() == "thread 2 (LWP 102) is in ?"
    assert call(thread=None).who() == "no thread"


def test_notes():
    assert in_progress.note(call()) == (
        "thread 2 (LWP 102) is in _int_free (called by free) on arena 0x1000 (its mutex held): the heap is "
        "mid-update, and problems in that arena may be glibc's update in progress, not damage (`thread 2` then "
        "`finish` until it leaves the allocator, and look again)")
    assert in_progress.note(call(arena=None, locked=False, thread=3)) == (
        "thread 3 (LWP 102) is in _int_free (called by free): the heap is mid-update, and problems in that arena "
        "may be glibc's update in progress, not damage (`thread 3` then `finish` until it leaves the allocator, "
        "and look again)")
    assert in_progress.note(call(aborting=True)) == (
        "thread 2 (LWP 102) is in _int_free (called by free) on arena 0x1000: glibc found damage there and is "
        "aborting; the problems are real, not an update in progress")
    assert in_progress.note(call(thread=None, lwp=None, function=None, entry=None)) == (
        "arena 0x1000's mutex is held, but no thread is inside malloc (a thread in fork(), or one that died "
        "holding it): its state may be mid-update")


def test_doc_and_arenas():
    assert in_progress.doc(call()) == {"thread": 2, "lwp": 102, "function": "_int_free", "entry": "free",
                                       "arena": 0x1000, "arena_from": "frame", "locked": True, "aborting": False}
    assert call(thread_arena=0x2000).arenas() == [0x1000, 0x2000]
    assert call(arena=None).arenas() is None
