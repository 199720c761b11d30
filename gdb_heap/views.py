"""What each command shows, as plain data computed from a Heap.

gdb-free: the commands parse their arguments, call one function here, and hand the result to
render.py; the tests call the same functions on synthetic heaps.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from . import listed, model
from .check import Checker
from .errors import HeapError, MemoryReadError
from .free_index import FreeIndex
from .heap import Heap, Split, Tail, ThreadInfo, ThreadTcache, Top, Where
from .memory import Reader
from .mmapped import mmapped_span
from .model import BIN_KINDS, SIZE_BITS, Arena, BinChain, Chunk, Problem

PREVIEW_BYTES = 16  # the user bytes a chunk's preview shows: two words on 64-bit

# One chunk of `heap chunks`: address, size field, state, bin, bin index.
Row = Tuple[int, int, str, Optional[str], Optional[int]]
State = Tuple[str, Optional[str], Optional[int]]  # model.classify's answer
IN_USE: State = ("in_use", None, None)
TOP: State = ("top", None, None)
# A walk batch's chosen chunks: addresses, size fields, {position: state} of those not in use.
ClassifiedBatch = Tuple[List[int], List[int], Dict[int, State]]


# -- heap --------------------------------------------------------------------------------------

@dataclass
class Overview:
    counts: Dict[str, int]  # "in_use" and each bin kind, over every arena (top chunks not counted)
    problems: List[Problem]  # what the walks and the bin chains found damaged


def overview(heap: Heap) -> Overview:
    counts: Counter[str] = Counter({k: 0 for k in ("in_use",) + BIN_KINDS})
    problems: List[Problem] = []
    for arena in heap.arenas:
        rows = walk_summary(heap, arena, problems)
        for (state, kind, _), n in rows.items():
            if state != "top":
                counts[kind or "in_use"] += n
        # The chains free_index walked (cached) cut where damaged: say so here too.
        problems += heap.bins(arena, tuple(k for k in BIN_KINDS if k != "tcache"))[1]
        if arena is heap.selected_arena():
            problems += heap.bins(arena, ("tcache",))[1]
    return Overview(dict(counts), problems)


def walk_summary(heap: Heap, arena: Arena, problems: List[Problem],
                 bins: bool = True) -> Counter[Tuple[str, Optional[str], int]]:
    """model.summarise of the arena's whole walk, as quick as it goes: the size fields counted
    as gdb walks the heap while a helper follows the bins and counts their chunks by bin and
    size (listed.py), then the walk vouching for each chunk they list; where it cannot (damage),
    the exact count, over the free index.  `bins` False: the caller asks for no bins after (the
    helper need not send them)."""
    top = arena.state.top
    counted = model.SizeCount(top)
    kinds = heap.free_kinds()
    spans = heap.walk_spans(arena)

    def work() -> Tuple[Optional[Tuple[List[BinChain], List[Problem]]], Optional[listed.Listed]]:
        chains = heap.bins(arena, kinds)
        return chains if bins else None, listed.listed(heap.all_tcache_chains() + chains[0], spans, top)

    mine: List[Problem] = []
    answer, walk, _ = heap.walk_ahead(arena, mine, work, ready=heap.has_bins(arena, kinds), each=counted,
                                      sizes=False)
    if answer is None:  # no helper: gdb follows the bins (now, or it did before)
        answer = work()
    elif answer[0] is not None:
        heap.keep_bins(arena, answer[0], kinds)
    found = answer[1]
    vouch = listed.Vouch(found.addresses if found is not None else array("Q"), spans)
    heap.reader.walk_fills_cache = False  # (no block is read twice: the cache's room is not spent on them)
    try:
        for region, (addresses, _) in walk:
            if not addresses:
                break
            vouch.batch(region.first_chunk, region.end, addresses)
    finally:
        heap.reader.walk_fills_cache = True
    problems += mine
    if found is not None and not mine and vouch.sound():
        return listed.summary_rows(counted.every, found, counted.top_sizef)
    return model.summarise(heap.chunk_batches(arena, []), top, heap.free_index(arena))


# -- heap chunks -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChunkFilter:
    """Which chunks `heap chunks` shows: all conditions must hold (None: no condition)."""

    state: Optional[str] = None  # in_use, free, top
    bin: Optional[str] = None  # a bin kind: free chunks of that kind only
    min_size: Optional[int] = None
    max_size: Optional[int] = None
    start: Optional[int] = None  # --from: chunks at or after this address
    end: Optional[int] = None  # --to: chunks before this address

    @property
    def active(self) -> bool:
        return self != ChunkFilter()

    def accepts(self, row: Row) -> bool:
        address, sizef, state, kind, _ = row
        size = sizef & ~SIZE_BITS
        return ((self.state is None or state == self.state) and (self.bin is None or kind == self.bin)
                and (self.min_size is None or size >= self.min_size)
                and (self.max_size is None or size <= self.max_size)
                and (self.start is None or address >= self.start) and (self.end is None or address < self.end))


NO_FILTER = ChunkFilter()


class ChunkRows:
    """One arena's chunks in address order, each classified by model.classify, those the
    filter accepts, up to `limit`.

    Iterate once (the rows stream: a million chunks); afterwards `problems` holds what the walk
    found and `stopped` says whether the limit cut the list."""

    def __init__(self, heap: Heap, arena: Arena, limit: Optional[int] = None,
                 only: ChunkFilter = NO_FILTER, free: Optional[FreeIndex] = None, reads: bool = False) -> None:
        """`free`: the arena's heap.free_index when the caller has it already (one index, not two,
        on a heap of millions of free chunks); `reads`: the caller reads each batch's chunks
        (Heap.walk_ahead)."""
        self.heap, self.arena, self.limit, self.only = heap, arena, limit, only
        self._free = free
        self.reads = reads
        self.tail: Optional[Tail] = None  # made(): what a helper makes of the walk's tail
        self.split: Optional[Split] = None  # ... and where it does (Heap.walk_index_split)
        self.problems: List[Problem] = []
        self.stopped = False

    def __iter__(self) -> Iterator[Row]:
        for addresses, sizes, special in self.classified():
            for i, (address, sizef) in enumerate(zip(addresses, sizes)):
                yield (address, sizef) + special.get(i, IN_USE)

    def classified(self) -> Iterator[ClassifiedBatch]:
        """The rows as batches of one walk batch each (so within one memory block of the walk):
        (addresses, size fields, {position: classification} of the chunks not in use), for
        renderers that treat the in-use chunks, most of a heap, a batch at a time."""
        if self.only.active:
            yield from self._filtered()
            return
        free, walk = self._free_and_walk()
        yield from classify_batches(free, self.arena.state.top, self._limited(walk))

    def _limited(self, walk: Iterator[model.Batch]) -> Iterator[model.Batch]:
        """The walk's batches up to the limit (`stopped`: it cut them)."""
        limit = self.limit
        n = 0
        for addresses, sizes in walk:
            if limit is not None and n + len(addresses) > limit:
                addresses, sizes = addresses[:limit - n], sizes[:limit - n]
                self.stopped = True
            n += len(addresses)
            yield addresses, sizes
            if self.stopped:
                return

    def _free_and_walk(self) -> Tuple[FreeIndex, Iterator[model.Batch]]:
        """The free index and the walk's batches: worked out at once (Heap.walk_index_split)
        unless the caller gave the index or a limit may stop the walk early."""
        if self._free is None and self.limit is None:
            free, walk, self.split = self.heap.walk_index_split(self.arena, self.problems, reads=self.reads,
                                                                tail=self.tail)
            return free, walk
        free = self._free if self._free is not None else self.heap.free_index(self.arena)
        return free, self.heap.chunk_batches(self.arena, self.problems)

    def _filtered(self) -> Iterator[ClassifiedBatch]:
        free, walk = self._free_and_walk()
        top = self.arena.state.top
        only, limit, n = self.only, self.limit, 0
        for addresses, sizes in walk:
            here = free.around(addresses[0], addresses[-1]) if addresses else {}
            chosen: ClassifiedBatch = ([], [], {})
            for address, sizef in zip(addresses, sizes):
                row = (address, sizef) + model.classify(address, top, here)
                if not only.accepts(row):
                    continue
                if limit is not None and n >= limit:
                    self.stopped = True
                    break
                n += 1
                if row[2] != "in_use":
                    chosen[2][len(chosen[0])] = row[2:]
                chosen[0].append(address)
                chosen[1].append(sizef)
            if chosen[0]:
                yield chosen
            if self.stopped:
                return

    def made(self, make: Callable[[Reader, ClassifiedBatch], str]) -> Iterator[str]:
        """The rows as text: make(reader, batch) of each classified batch with chunks, in turn
        (`reader`: the heap's).  With no filter and no limit, on a big live heap a helper makes
        the text of the walk's tail, about its second half (Heap.walk_index_split), while gdb
        makes the first: the same text, given in pieces; where the helper's cannot stand for
        gdb's own (gdb's walk does not meet where it began, or it failed), gdb makes it too."""
        if not self.only.active:
            top = self.arena.state.top

            def tail(reader: Reader, free: FreeIndex, walk: Iterator[model.Batch], file: BinaryIO) -> None:
                for batch in classify_batches(free, top, walk):  # (in the helper)
                    if batch[0]:
                        file.write(make(reader, batch).encode())

            self.tail = tail
        try:
            for batch in self.classified():
                split = self.split
                if split is not None and split.begins_in(batch[0]):
                    self.split = None  # the helper's part begins in this batch
                    head, batch = _cut(batch, bisect_left(batch[0], split.start))
                    if head[0]:
                        yield make(self.heap.reader, head)
                    if split.met and not self.problems and split.finished():
                        yield from split.text(self.heap.progress)
                        return
                    split.cancel()
                if batch[0]:
                    yield make(self.heap.reader, batch)
        finally:
            if self.split is not None:
                self.split.cancel()

    def batches(self) -> Iterator[model.Batch]:
        """The accepted rows as walk batches (address list, size list), for model.summarise."""
        for addresses, sizes, _ in self.classified():
            if addresses:
                yield addresses, sizes


def _cut(batch: ClassifiedBatch, at: int) -> Tuple[ClassifiedBatch, ClassifiedBatch]:
    """A classified batch's chunks before position `at`, and from it on."""
    addresses, sizes, special = batch
    return ((addresses[:at], sizes[:at], {i: s for i, s in special.items() if i < at}),
            (addresses[at:], sizes[at:], {i - at: s for i, s in special.items() if i >= at}))


def classify_batches(free: FreeIndex, top: int, walk: Iterable[model.Batch]) -> Iterator[ClassifiedBatch]:
    """Each walk batch with model.classify's answers for its chunks not in use, a batch at a
    time: the batch's free chunks in order (a lookup of each chunk in the index costs more
    than the rest of a line), top before free."""
    states = {bin_: ("free",) + bin_ for bin_ in set(free.values())}
    for addresses, sizes in walk:
        at, places = free.held_in(addresses)  # (a bin that points between chunks, damage: none of these)
        special: Dict[int, State] = dict(zip(at, map(states.__getitem__, places)))
        if addresses:
            t = bisect_left(addresses, top)
            if t < len(addresses) and addresses[t] == top:
                special[t] = TOP
        yield addresses, sizes, special


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
class Link:
    """One list pointer a free chunk carries: glibc's field name, where it is stored, the
    word stored there and, for a safe-linked word (tcache next, fastbin fd, 2.32+), the
    pointer glibc reveals from it."""

    name: str  # fd, bk, fd_nextsize, bk_nextsize; tcache's next and key
    address: int
    stored: int
    revealed: Optional[int] = None

    @property
    def value(self) -> int:
        """What glibc follows."""
        return self.stored if self.revealed is None else self.revealed


@dataclass
class ChunkView:
    where: Where
    chunk: Chunk
    requests: Optional[Tuple[int, int]]  # the malloc(n) range giving this size
    links: List[Link] = field(default_factory=list)  # a free chunk's list pointers
    next: Optional[Neighbour] = None
    mapping: Optional[Tuple[int, int]] = None  # an mmapped chunk's own mapping (start, end)
    prev: Optional[Neighbour] = None  # the chunk before it in its heap, when the walk found it
    data: bytes = b""  # its first user bytes (PREVIEW_BYTES), for the preview


def chunk_view(heap: Heap, address: int) -> ChunkView:
    if not heap.initialised:
        raise HeapError("the heap is not initialised yet: the program has not called malloc; continue "
                        "past its first malloc")
    where = heap.chunk_where(address)
    arena, layout = where.arena, heap.layout
    if arena is not None:
        top, free = arena.state.top, heap.free_index(arena)
    else:
        top, free = -1, FreeIndex()
    c = model.chunk_at(heap.reader, layout, where.chunk, top, free)
    if not where.reached:  # a header no walk reached: classified by every arena's bins
        c.state, c.bin, c.bin_index = where.state, where.bin, where.bin_index
    requests = layout.mmapped_requests_for(c.size) if c.is_mmapped else layout.requests_for(c.size)
    view = ChunkView(where, c, requests, chunk_links(heap, c))
    try:
        view.data = heap.reader.read(c.user_address, min(PREVIEW_BYTES, max(0, c.size - 2 * layout.size_sz)))
    except MemoryReadError:
        pass
    if c.is_mmapped and where.state == "mmapped" and c.prev_size is not None:
        start = c.address - c.prev_size
        view.mapping = (start, start + mmapped_span(layout, c.prev_size, c.size))
    if arena is not None:
        view.prev = neighbour(heap, where.prev, top, free)
        if c.state != "top":
            view.next = neighbour(heap, c.address + c.size, top, free)
    return view


def neighbour(heap: Heap, address: Optional[int], top: int, free: FreeIndex) -> Optional[Neighbour]:
    if address is None:
        return None
    try:
        size = heap.reader.word(address + heap.layout.size_sz)
    except MemoryReadError:
        return None
    return Neighbour(address, size & ~SIZE_BITS, *model.classify(address, top, free))


def chunk_links(heap: Heap, c: Chunk) -> List[Link]:
    """The list pointers a free chunk carries, as stored and as glibc reads them."""
    S, layout, r = heap.layout.size_sz, heap.layout, heap.reader
    user = c.user_address
    try:
        if c.bin in ("tcache", "fast"):
            stored = r.word(user)
            revealed = layout.reveal_ptr(user, stored) if layout.features.safe_linking else None
            links = [Link("next" if c.bin == "tcache" else "fd", user, stored, revealed)]
            if c.bin == "tcache" and layout.features.tcache_key:
                links.append(Link("key", user + S, r.word(user + S)))
            return links
        if c.bin in ("unsorted", "small", "large"):
            names = ["fd", "bk"] + (["fd_nextsize", "bk_nextsize"] if c.bin == "large" else [])
            return [Link(n, user + i * S, w) for i, (n, w) in enumerate(zip(names, r.words(user, len(names))))]
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


# -- heap map ----------------------------------------------------------------------------------

MAP_LINES = 8  # a chunk longer than this many lines shows its first ones and its last one
MAP_COUNT = 10  # chunks shown when --count is not given
MAP_MAX_COUNT = 100000


@dataclass
class MapChunk:
    """One chunk of `heap map`: its header and bytes (all of them, or the start and the end)."""

    address: int
    size_field: int
    state: str
    bin: Optional[str]
    bin_index: Optional[int]
    head: bytes  # bytes from the chunk's start
    tail: bytes = b""  # the chunk's last line, when the middle is left out
    links: List[Link] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.size_field & ~SIZE_BITS


@dataclass
class MapView:
    arena: Arena
    chunks: List[MapChunk]
    problems: List[Problem]
    more: Optional[int]  # the chunk after the ones shown, when there is one


def map_view(heap: Heap, arena: Optional[Arena], address: Optional[int], count: int) -> MapView:
    """`count` chunks of a heap from the one holding `address` (default: the arena's first)."""
    if not heap.initialised:
        raise HeapError("the heap is not initialised yet: the program has not called malloc; continue "
                        "past its first malloc")
    start = None
    if address is not None:
        where = heap.where(address)
        if where.arena is None:
            raise HeapError(f"{address:#x} is in an mmapped chunk, a mapping of its own with no neighbours; "
                            f"see heap chunk {where.chunk:#x} --dump")
        arena, start = where.arena, where.chunk
    arena = arena or heap.selected_arena()
    S, per = heap.layout.size_sz, 16 // heap.layout.size_sz * heap.layout.size_sz
    free, top = heap.free_index(arena), arena.state.top
    problems: List[Problem] = []
    out: List[MapChunk] = []
    more = None
    for chunk, sizef in heap.chunks(arena, problems):
        if start is not None and chunk < start:
            continue
        if len(out) >= count:
            more = chunk
            break
        state, kind, index = model.classify(chunk, top, free)
        size = sizef & ~SIZE_BITS
        c = MapChunk(chunk, sizef, state, kind, index, b"")
        try:
            if state == "top" or size < 2 * S:
                c.head = heap.reader.read(chunk, 2 * S)
            elif size // per <= MAP_LINES:
                c.head = heap.reader.read(chunk, size)
            else:
                c.head = heap.reader.read(chunk, (MAP_LINES - 2) * per)
                c.tail = heap.reader.read(chunk + size - per, per)
        except MemoryReadError:
            c.head = b""
        if state == "free":
            c.links = chunk_links(heap, Chunk(chunk, sizef, state, kind, index, S))
        out.append(c)
    return MapView(arena, out, problems, more)
