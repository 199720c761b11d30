"""What each command shows, as plain data computed from a Heap.

gdb-free: the commands parse their arguments, call one function here, and hand the result to
render.py; the tests call the same functions on synthetic heaps.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from . import model
from .check import Checker
from .errors import HeapError, MemoryReadError
from .heap import Heap, ThreadInfo, ThreadTcache, Top, Where
from .mmapped import mmapped_span
from .model import BIN_KINDS, SIZE_BITS, Arena, BinChain, Chunk, Problem

# One chunk of `heap chunks`: address, size field, state, bin, bin index.
Row = Tuple[int, int, str, Optional[str], Optional[int]]


# -- heap --------------------------------------------------------------------------------------

@dataclass
class Overview:
    counts: Dict[str, int]  # "in_use" and each bin kind, over every arena (top chunks not counted)
    problems: List[Problem]  # what the walks and the bin chains found damaged


def overview(heap: Heap) -> Overview:
    counts: Counter[str] = Counter({k: 0 for k in ("in_use",) + BIN_KINDS})
    problems: List[Problem] = []
    for arena in heap.arenas:
        rows = model.summarise(heap.chunk_batches(arena, problems), arena.state.top, heap.free_index(arena))
        for (state, kind, _), n in rows.items():
            if state != "top":
                counts[kind or "in_use"] += n
        # The chains free_index walked (cached) cut where damaged: say so here too.
        problems += heap.bins(arena, tuple(k for k in BIN_KINDS if k != "tcache"))[1]
        if arena is heap.selected_arena():
            problems += heap.bins(arena, ("tcache",))[1]
    return Overview(dict(counts), problems)


# -- heap chunks -------------------------------------------------------------------------------

class ChunkRows:
    """One arena's chunks in address order, each classified by model.classify, up to `limit`.

    Iterate once (the rows stream: a million chunks); afterwards `problems` holds what the walk
    found and `stopped` says whether the limit cut the list."""

    def __init__(self, heap: Heap, arena: Arena, limit: Optional[int] = None) -> None:
        self.heap, self.arena, self.limit = heap, arena, limit
        self.problems: List[Problem] = []
        self.stopped = False

    def __iter__(self) -> Iterator[Row]:
        free = self.heap.free_index(self.arena)
        top = self.arena.state.top
        classify = model.classify
        limit = self.limit
        n = 0
        for addresses, sizes in self.heap.chunk_batches(self.arena, self.problems):
            if limit is not None and n + len(addresses) > limit:
                addresses, sizes = addresses[:limit - n], sizes[:limit - n]
                self.stopped = True
            n += len(addresses)
            for address, sizef in zip(addresses, sizes):
                yield (address, sizef) + classify(address, top, free)
            if self.stopped:
                return


def tcache_structs(heap: Heap) -> Dict[int, Optional[ThreadInfo]]:
    """The chunks holding a tcache_perthread_struct -> their thread (None: the selected one's)."""
    H = heap.layout.header_size
    out: Dict[int, Optional[ThreadInfo]] = {t.tcache - H: t for t in heap.threads if t.tcache and not t.selected}
    if heap.tcache:
        out[heap.tcache - H] = None
    return out


# -- heap chunk --------------------------------------------------------------------------------

@dataclass
class Neighbour:
    address: int
    size: int
    state: str
    bin: Optional[str]
    bin_index: Optional[int]


@dataclass
class ChunkView:
    where: Where
    chunk: Chunk
    requests: Optional[Tuple[int, int]]  # the malloc(n) range giving this size
    links: List[Tuple[str, int]] = field(default_factory=list)  # a free chunk's list pointers, decoded
    next: Optional[Neighbour] = None
    mapping: Optional[Tuple[int, int]] = None  # an mmapped chunk's own mapping (start, end)


def chunk_view(heap: Heap, address: int) -> ChunkView:
    if not heap.initialised:
        raise HeapError("the heap is not initialised yet: the program has not called malloc; continue "
                        "past its first malloc")
    where = heap.chunk_where(address)
    arena, layout = where.arena, heap.layout
    if arena is not None:
        top, free = arena.state.top, heap.free_index(arena)
    else:
        top, free = -1, {}
    c = model.chunk_at(heap.reader, layout, where.chunk, top, free)
    if not where.reached:  # a header no walk reached: classified by every arena's bins
        c.state, c.bin, c.bin_index = where.state, where.bin, where.bin_index
    requests = layout.mmapped_requests_for(c.size) if c.is_mmapped else layout.requests_for(c.size)
    view = ChunkView(where, c, requests, chunk_links(heap, c))
    if c.is_mmapped and where.state == "mmapped" and c.prev_size is not None:
        start = c.address - c.prev_size
        view.mapping = (start, start + mmapped_span(layout, c.prev_size, c.size))
    if arena is not None and c.state != "top":
        nxt = c.address + c.size
        try:
            nsize = heap.reader.word(nxt + layout.size_sz)
            view.next = Neighbour(nxt, nsize & ~SIZE_BITS, *model.classify(nxt, top, free))
        except MemoryReadError:
            pass
    return view


def chunk_links(heap: Heap, c: Chunk) -> List[Tuple[str, int]]:
    """The list pointers a free chunk carries, decoded as glibc reads them."""
    S, H, layout, r = heap.layout.size_sz, heap.layout.header_size, heap.layout, heap.reader
    try:
        if c.bin == "tcache":
            nxt = layout.reveal_ptr(c.user_address, r.word(c.user_address))
            links = [("tcache next", nxt - H if nxt else 0)]
            if layout.features.tcache_key:
                links.append(("tcache key", r.word(c.user_address + S)))
            return links
        if c.bin == "fast":
            return [("fd", layout.reveal_ptr(c.user_address, r.word(c.user_address)))]
        if c.bin in ("unsorted", "small", "large"):
            names = ["fd", "bk"] + (["fd_nextsize", "bk_nextsize"] if c.bin == "large" else [])
            return list(zip(names, r.words(c.address + 2 * S, len(names))))
    except MemoryReadError:
        pass
    return []


# -- heap bins ---------------------------------------------------------------------------------

@dataclass
class ArenaBins:
    """One arena's part of `heap bins`."""

    arena: Arena
    chains: List[BinChain]
    problems: List[Problem]
    tcache: Optional[int] = None  # the selected thread's tcache_perthread_struct, when its bins are in chains
    owner: Optional[ThreadInfo] = None  # the thread whose tcache bins are in chains
    threads: Optional[List[ThreadTcache]] = None  # --all-threads: every thread's tcache, shown with this arena


def bins_view(heap: Heap, arenas: Sequence[Arena], kinds: Sequence[str] = BIN_KINDS,
              all_threads: bool = False) -> List[ArenaBins]:
    """The bins of `kinds` in each arena.  The selected thread's tcache goes with its arena;
    with `all_threads` every thread's tcache goes there instead (or to the first arena shown,
    when the selected thread's is not among them)."""
    all_threads = all_threads and "tcache" in kinds
    selected = heap.selected_arena()
    home = selected if selected in arenas else arenas[0]
    own_kinds = tuple(k for k in kinds if k != "tcache") if all_threads else tuple(kinds)
    me = next((t for t in heap.threads if t.selected), None) if "tcache" in kinds and not all_threads else None
    out = []
    for arena in arenas:
        chains, problems = heap.bins(arena, own_kinds)
        view = ArenaBins(arena, chains, problems)
        if all_threads and arena is home:
            view.threads = heap.thread_tcaches()
        elif arena is selected and "tcache" in own_kinds:
            view.tcache, view.owner = heap.tcache, me
        out.append(view)
    return out


# -- heap top ----------------------------------------------------------------------------------

@dataclass
class TopView:
    top: Top
    problems: List[Problem]  # a damaged top size, named here as heap check names it


def top_view(heap: Heap, arena: Arena) -> TopView:
    top = heap.top(arena)
    checker = Checker(heap, arena)
    checker.top()
    return TopView(top, checker.finish())
