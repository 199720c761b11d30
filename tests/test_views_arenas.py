"""views.bins_view's choice of arena for the tcache (tests/test_thread_arena.py's main and thread
arenas; the selected thread 1 uses the main arena and owns the tcache the builder wrote)."""

from __future__ import annotations

from gdb_heap import views
from gdb_heap.heap import ThreadInfo
from tests.test_thread_arena import ARENA_T, with_thread_arena


def heap_and_arenas():
    s, heap = with_thread_arena()
    me = ThreadInfo(1, 101, True, s.tcache, s.arena)
    s.anchors.threads = lambda: [me, ThreadInfo(2, 102, False, None, ARENA_T)]
    from gdb_heap.heap import Heap
    heap = Heap(heap.reader, s.layout, s.anchors)
    main = next(a for a in heap.arenas if a.main)
    thread = next(a for a in heap.arenas if not a.main)
    return s, heap, main, thread, me


def test_the_tcache_goes_with_the_selected_threads_arena():
    s, heap, main, thread, me = heap_and_arenas()
    a, b = views.bins_view(heap, [main, thread])
    assert (a.arena, a.tcache, a.owner, a.threads) == (main, s.tcache, me, None)
    assert (b.arena, b.tcache, b.owner, b.threads) == (thread, None, None, None)
    assert "tcache" in [c.kind for c in a.chains] and "tcache" not in [c.kind for c in b.chains]
    (only,) = views.bins_view(heap, [thread])
    assert (only.tcache, only.owner, only.threads) == (None, None, None)
    (fast,) = views.bins_view(heap, [main], ("fast",))
    assert fast.tcache is None and {c.kind for c in fast.chains} == {"fast"}


def test_every_threads_tcache_goes_to_the_first_arena_shown_without_the_selected_one():
    s, heap, main, thread, me = heap_and_arenas()
    (t,) = views.bins_view(heap, [thread], all_threads=True)
    assert t.threads is not None and [(x.thread.num, x.address) for x in t.threads] == [(1, s.tcache)]
    a, b = views.bins_view(heap, [thread, main], all_threads=True)
    assert (a.threads, b.threads is not None) == (None, True)  # the selected thread's arena is shown: there
    (f,) = views.bins_view(heap, [main], ("fast",), all_threads=True)  # no tcache asked for
    assert f.threads is None and f.tcache is None
