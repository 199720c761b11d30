"""One command's view of the heap: arenas, bins, tcache and chunks, read once and shared.

gdb-free: built from a Reader and the addresses locate.py found, so tests can build one over a
synthetic memory image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from . import model
from .errors import HeapError, MemoryReadError
from .layouts import GlibcLayout
from .memory import Reader
from .mappings import Mapping
from .mmapped import MmappedChunk, PageScan, find_all, mmapped_header
from .model import Arena, BinChain, FreeIndex, HeapRegion, MallocPar, Problem


@dataclass
class Anchors:
    """Where the allocator's state is: what locate.py found (or a test made up)."""

    main_arena: int
    mp: int
    glibc: Optional[str]  # "2.36", None when unknown
    located_by: str
    tcache: Optional[int] = None  # the selected thread's tcache_perthread_struct
    thread_arena: Optional[int] = None  # the selected thread's arena
    notes: List[str] = field(default_factory=list)
    # Every thread's tcache and arena, looked up only by the commands that need them (it
    # means visiting every thread).
    threads: Callable[[], List[ThreadInfo]] = list
    # The process's mappings and where they came from, for finding mmapped chunks.
    mappings: Callable[[], Tuple[List[Mapping], str]] = lambda: ([], "no mappings")
    tcache_key: Optional[int] = None  # the address of glibc's tcache_key (2.34+), from its symbol
    libc_data: List[Tuple[int, int]] = field(default_factory=list)  # the C library's writable data spans


# How much of the C library's data the search for tcache_key reads at most (libc's .data and
# .bss are a few pages; a static program's data may be more).
KEY_SEARCH_MAX = 8 << 20


@dataclass
class TcacheKey:
    """glibc's tcache key, what every intact tcache entry's key field holds, and how it was found."""

    value: int
    how: str


@dataclass
class ThreadInfo:
    """One thread of the inferior: gdb's number, its LWP, and its libc TLS pointers."""

    num: int
    lwp: int
    selected: bool
    tcache: Optional[int]  # its tcache_perthread_struct (None: none, or not readable)
    arena: Optional[int]  # its thread_arena (None: not attached to an arena yet, or not readable)


@dataclass
class ThreadTcache:
    """One thread's tcache bins, for `heap bins --all-threads`."""

    thread: ThreadInfo
    address: int  # its tcache_perthread_struct
    chains: List[BinChain]
    problems: List[Problem]


@dataclass
class MmappedView:
    chunks: List[MmappedChunk]
    unreadable: List[Mapping]  # mappings the scan could not read (lacking from a core)
    source: str  # where the mapping list came from
    glibc_count: int  # mp_.n_mmaps
    glibc_bytes: int  # mp_.mmapped_mem
    page_scan: Optional[PageScan] = None  # the scan of every page start, when it was needed


@dataclass
class Where:
    """What an address is: the chunk holding it, where in that chunk, and the chunk's state."""

    address: int  # the address asked about
    chunk: int  # the chunk holding it (its header's address)
    size_field: int
    header_size: int  # 2 * SIZE_SZ: the user pointer is chunk + header_size
    arena: Optional[Arena]  # None: an mmapped chunk, which no arena holds
    state: str  # in_use, free, top, mmapped (model.classify's states, plus mmapped)
    bin: Optional[str] = None  # the bin listing a free chunk
    bin_index: Optional[int] = None
    prev: Optional[int] = None  # the chunk before it in its heap, when a walk found it

    @property
    def user_address(self) -> int:
        return self.chunk + self.header_size

    @property
    def offset(self) -> int:
        """From the chunk's start (0: the address is the chunk)."""
        return self.address - self.chunk

    @property
    def user_offset(self) -> int:
        """From the user pointer (0: the address is what malloc returned; negative: in the header)."""
        return self.address - self.user_address

    @property
    def how(self) -> str:
        """"chunk", "user_pointer" (the address is one of them), or "inside" (neither)."""
        return "chunk" if self.offset == 0 else "user_pointer" if self.user_offset == 0 else "inside"


@dataclass
class Top:
    arena: int
    address: int
    size: int
    end: int
    region: Optional[HeapRegion]


class Heap:
    def __init__(self, reader: Reader, layout: GlibcLayout, anchors: Anchors) -> None:
        self.reader = reader
        self.layout = layout
        self.anchors = anchors
        self._mp: Optional[MallocPar] = None
        self._arenas: Optional[List[Arena]] = None
        self._chains: Dict[Tuple[int, Tuple[str, ...]], Tuple[List[BinChain], List[Problem]]] = {}
        self._all_tcache: Optional[FreeIndex] = None
        self._threads: Optional[List[ThreadInfo]] = None

    # -- state -----------------------------------------------------------------------------
    @property
    def mp(self) -> MallocPar:
        if self._mp is None:
            try:
                self._mp = model.read_malloc_par(self.reader, self.layout, self.anchors.mp)
            except MemoryReadError:
                raise HeapError(f"cannot read mp_ at {self.anchors.mp:#x}; the C library's data is not "
                                "readable (a core file without it?)") from None
        return self._mp

    @property
    def arenas(self) -> List[Arena]:
        if self._arenas is None:
            try:
                self._arenas = model.read_arenas(self.reader, self.layout, self.anchors.main_arena, self.mp,
                                                 lambda: self.anchors.mappings()[0])
            except MemoryReadError:
                raise HeapError(f"cannot read main_arena at {self.anchors.main_arena:#x}; the C library's "
                                "data is not readable (a core file without it?)") from None
            if not self._arenas:
                raise HeapError(f"main_arena at {self.anchors.main_arena:#x} is not readable; check the "
                                "process or core file")
        return self._arenas

    @property
    def main_arena(self) -> Arena:
        return self.arenas[0]

    @property
    def initialised(self) -> bool:
        return model.heap_initialised(self.layout, self.main_arena.state) and self.mp.sbrk_base != 0

    def arena(self, address: Optional[int] = None) -> Arena:
        """The arena at `address`; by default the selected thread's, else the main arena."""
        if address is None:
            address = self.anchors.thread_arena or self.anchors.main_arena
            for arena in self.arenas:
                if arena.address == address:
                    return arena
            return self.main_arena
        for arena in self.arenas:
            if arena.address == address:
                return arena
        known = ", ".join(f"{a.address:#x}" for a in self.arenas)
        raise HeapError(f"{address:#x} is not an arena (the arenas are {known}); see heap arenas")

    def selected_arena(self) -> Arena:
        return self.arena(None)

    def tcache_key(self, seen: Sequence[int]) -> Optional[TcacheKey]:
        """The key every intact tcache entry carries: before 2.34 the tcache struct's address;
        from 2.34 the random tcache_key, read at its symbol or, without symbols, found in the
        C library's data as one of the `seen` key fields (a random word, not an address of this
        process); None when neither says."""
        L = self.layout
        if not L.features.tcache_key:
            return None
        if L.tcache_key_is_struct:
            return TcacheKey(self.tcache, "the tcache struct's address, before glibc 2.34") if self.tcache else None
        if self.anchors.tcache_key is not None:
            try:
                return TcacheKey(self.reader.word(self.anchors.tcache_key),
                                 f"read at tcache_key's symbol, {self.anchors.tcache_key:#x}")
            except MemoryReadError:
                pass
        maps = self.anchors.mappings()[0]
        wanted = {k for k in seen if k and not any(m.start <= k < m.end for m in maps)}
        if not wanted:
            return None
        S, piece = self.layout.size_sz, 1 << 16
        budget = KEY_SEARCH_MAX
        for start, end in self.anchors.libc_data:
            for at in range(start, end, piece):  # in pieces: a hole costs only its piece
                length = min(end - at, piece, budget) // S * S
                if length <= 0:
                    return None
                budget -= length
                try:
                    data = self.reader.read(at, length)
                except MemoryReadError:
                    continue
                for i, word in enumerate(self.reader.unpacker(length // S).unpack(data)):
                    if word in wanted:
                        return TcacheKey(word, f"found in the C library's data at {at + i * S:#x}")
        return None

    @property
    def tcache(self) -> Optional[int]:
        """The selected thread's tcache_perthread_struct, if it is a chunk of some heap."""
        return self.anchors.tcache if self._in_a_heap(self.anchors.tcache) else None

    def _in_a_heap(self, address: Optional[int]) -> bool:
        """glibc 2.43 points `tcache` at a static all-zero dummy until the thread's first free:
        that is not a tcache to walk (its zero num_slots would read as full bins)."""
        return bool(address) and any(r.first_chunk < address < r.end  # type: ignore[operator]
                                     for arena in self.arenas for r in arena.heaps)

    @property
    def threads(self) -> List[ThreadInfo]:
        if self._threads is None:
            self._threads = self.anchors.threads()
        return self._threads

    def arena_threads(self, arena: Arena) -> List[ThreadInfo]:
        """The threads whose thread_arena is this arena."""
        return [t for t in self.threads if t.arena == arena.address]

    def thread_tcaches(self) -> List[ThreadTcache]:
        """Every thread's tcache bins, in gdb's thread order (threads without one left out)."""
        out = []
        for t in self.threads:
            address = self.anchors.tcache if t.selected else t.tcache
            if address is None or not self._in_a_heap(address):
                continue
            chains, problems = model.read_bins(self.reader, self.layout, self.main_arena.state, address, self.mp,
                                               ("tcache",))
            out.append(ThreadTcache(t, address, chains, problems))
        return out

    def all_tcache_index(self) -> FreeIndex:
        """Chunks in any thread's tcache (the contract: they are free, bin tcache)."""
        if self._all_tcache is None:
            index: FreeIndex = {}
            others = [t.tcache for t in self.threads if not t.selected]
            for address in [self.tcache] + others:
                if address and self._in_a_heap(address):
                    try:
                        chains = model.read_tcache(self.reader, self.layout, address, self.mp)
                    except MemoryReadError:
                        continue  # its damage is reported where that thread's tcache is shown
                    for chunk, where in model.free_index(chains).items():
                        index.setdefault(chunk, where)
            self._all_tcache = index
        return self._all_tcache

    # -- bins ------------------------------------------------------------------------------
    def bins(self, arena: Arena, kinds: Sequence[str] = model.BIN_KINDS) -> Tuple[List[BinChain], List[Problem]]:
        """The arena's non-empty bins; tcache only in the selected thread's arena (contract)."""
        key = (arena.address, tuple(kinds))
        if key not in self._chains:
            tcache = self.tcache if arena is self.selected_arena() else None
            self._chains[key] = model.read_bins(self.reader, self.layout, arena.state, tcache, self.mp, kinds)
        return self._chains[key]

    def free_index(self, arena: Arena) -> FreeIndex:
        chains, _ = self.bins(arena, tuple(k for k in model.BIN_KINDS if k != "tcache"))
        index = model.free_index(chains)
        index.update(self.all_tcache_index())  # tcache belongs to threads, not to arenas
        return index

    # -- chunks ----------------------------------------------------------------------------
    def chunk_batches(self, arena: Arena, problems: List[Problem]) -> Iterator[model.Batch]:
        """Batches of the arena's chunks (addresses, size fields), oldest heap first."""
        for region in arena.heaps:
            yield from model.walk_region_batches(self.reader, self.layout, region, arena.state.top, problems)

    def chunks(self, arena: Arena, problems: List[Problem]) -> Iterator[Tuple[int, int]]:
        """(address, size field) of every chunk of the arena's heaps, oldest heap first."""
        for addresses, sizes in self.chunk_batches(arena, problems):
            yield from zip(addresses, sizes)

    def top(self, arena: Arena) -> Top:
        if not model.heap_initialised(self.layout, arena.state):
            raise HeapError("the heap is not initialised yet: the program has not called malloc; "
                            "continue past its first malloc")
        top = arena.state.top
        try:
            size = model.chunksize(self.reader, top)
        except MemoryReadError:
            raise HeapError(f"the top chunk at {top:#x} is not readable; the arena's top pointer is "
                            "damaged (see heap check)") from None
        region = next((r for r in arena.heaps if r.start <= top < r.end), None)
        return Top(arena.address, top, size, top + size, region)

    def where(self, address: int) -> Where:
        """The chunk holding `address`, in a heap or an mmapped chunk, and its state.

        Heap chunks are found by walking the heap that holds the address, so only real chunk
        starts count (an address may be a chunk, its user pointer, or anywhere inside it, top
        included).  Outside every heap, a valid IS_MMAPPED header at the address (or one
        header before it) makes it an mmapped chunk; otherwise the mmapped chunks found at the
        starts of mappings are searched for one containing it.
        """
        H = self.layout.header_size
        for arena in self.arenas:
            for region in arena.heaps:
                if not region.first_chunk <= address < region.end + H:
                    continue
                if region.fencepost is not None and region.fencepost <= address < region.fencepost + 3 * H:
                    raise HeapError(f"{address:#x} is in glibc's fencepost at {region.fencepost:#x}, two chunks of "
                                    f"{H:#x} bytes that end the heap region {region.start:#x}-{region.end:#x} "
                                    "where malloc carried on elsewhere; not a chunk the program got (heap arenas "
                                    "lists the regions)")
                scratch: List[Problem] = []
                prev: Optional[int] = None
                sizef = 0
                for chunk, sizef in model.walk_region(self.reader, self.layout, region, arena.state.top, scratch):
                    if chunk <= address < chunk + max(H + 1, sizef & ~model.SIZE_BITS):
                        state, kind, index = model.classify(chunk, arena.state.top, self.free_index(arena))
                        return Where(address, chunk, sizef, H, arena, state, kind, index, prev)
                    if chunk > address:
                        break
                    prev = chunk
                else:
                    if scratch and prev is not None and address > prev:  # past where the walk broke
                        raise HeapError(f"{address:#x} lies in heap {region.start:#x}-{region.end:#x} after the walk "
                                        f"broke at chunk {prev:#x} (size {sizef & ~model.SIZE_BITS:#x}): no chunk "
                                        f"there can be trusted; heap chunk {prev:#x} shows the damaged chunk")
        found = self._mmapped_at(address)
        if found is not None:
            return found
        if not self.reader.readable(address):
            raise HeapError(f"{address:#x} is not in any heap of this process; that memory is not readable "
                            "(the process or the core file lacks it): give a chunk address or a pointer malloc "
                            "returned (heap chunks lists them)")
        raise HeapError(f"{address:#x} is not in any heap of this process; give a chunk address or a "
                        "pointer malloc returned (heap chunks lists them)")

    def _mmapped_at(self, address: int) -> Optional[Where]:
        H = self.layout.header_size
        for chunk in (address - H, address):  # the user pointer, the chunk: no scan needed
            sizef = self._mmapped_header(chunk)
            if sizef is not None:
                return Where(address, chunk, sizef, H, None, "mmapped")
        if not self.reader.readable(address):
            return None
        for c in self.mmapped().chunks:
            if c.address <= address < c.address + (c.size_field & ~model.SIZE_BITS):
                return Where(address, c.address, c.size_field, H, None, "mmapped")
        return None

    def _mmapped_header(self, chunk: int) -> Optional[int]:
        """The size field of a plausible mmapped chunk at `chunk` (a header glibc would write,
        its whole span readable), else None."""
        try:
            prev_size, sizef = self.reader.words(chunk, 2)
        except MemoryReadError:
            return None
        if chunk >= 0 and mmapped_header(self.layout, chunk, prev_size, sizef) \
                and self.reader.readable(chunk + (sizef & ~model.SIZE_BITS) - 1):
            return sizef
        return None

    def mmapped(self) -> MmappedView:
        """The mmapped chunks found in anonymous mappings (no arena lists them)."""
        mappings, source = self.anchors.mappings()
        heaps = [(r.start, r.end) for arena in self.arenas for r in arena.heaps]
        chunks, unreadable, pages = find_all(self.reader, self.layout, mappings, heaps, self.mp.n_mmaps,
                                             self.mp.mmapped_mem)
        return MmappedView(chunks, unreadable, source, self.mp.n_mmaps, self.mp.mmapped_mem, pages)
