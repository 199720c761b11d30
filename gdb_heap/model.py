"""glibc's heap as plain data: arenas, heaps, bins, tcache and chunks.

Knows nothing of gdb: everything is read through a memory.Reader and described by a
layouts.GlibcLayout.  Damage found on the way is collected as Problems, never raised; every
loop over inferior data is bounded (a heap's end, a chain's length cap, a visited set).
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from itertools import accumulate, repeat
from functools import reduce
from operator import and_, or_
from dataclasses import dataclass, field
from typing import (Callable, Container, Dict, Generator, Iterable, Iterator, List, Literal, Optional, Sequence, Tuple,
                    TypeVar, Union)

from . import glibc_checks as gc
from .errors import HeapError, MemoryReadError
from .free_index import FreeIndex
from .layouts import NBINS, NSMALLBINS, GlibcLayout, StructLayout, bin_kind
from .links import BOUND, LOOP, UNALIGNED, Kind, Trail, doubly, follow, join_groups, singly, size_groups
from .mappings import Mapping
from .memory import PAGE, Bytes, Reader

T = TypeVar("T")

BIN_KINDS = ("tcache", "fast", "unsorted", "small", "large")
PREV_INUSE, IS_MMAPPED, NON_MAIN_ARENA = 0x1, 0x2, 0x4
SIZE_BITS = 0x7
NONCONTIGUOUS_BIT = 0x2  # malloc_state.flags: the main arena fell back to mmap (malloc.c)
MAX_ARENAS = 4096  # far above glibc's own limit (8 x cores)
MAX_HEAPS_PER_ARENA = 1 << 16
MAX_TCACHE_CHAIN = 1 << 16  # counts are uint16: a longer chain is a loop or damage
MAX_MAIN_REGIONS = 1 << 12  # regions of a non-contiguous main arena
REGION_PROBES = 1 << 22  # candidate region starts looked at, at most, when searching for them


def bin_label(kind: str, index: int) -> str:
    """How every command names a bin: tcache[3], fast[0], unsorted, small[16], large[2]."""
    return kind if kind == "unsorted" else f"{kind}[{index}]"


def state_text(state: str, kind: Optional[str], index: Optional[int]) -> str:
    """A chunk's state as the commands print it: "in use", "top", "free tcache[3]"."""
    if state == "free" and kind is not None and index is not None:
        return f"free {bin_label(kind, index)}"
    return "in use" if state == "in_use" else state


# The links a problem's message shows, for the commands to name where shown: (the words just
# before one in the message, its value).
Pointers = Tuple[Tuple[str, int], ...]


@dataclass
class Problem:
    """`glibc_abort`: what the path the problem's documentation names prints (check.py);
    `other_paths`: (path, message) for other paths of glibc that check the same damage and
    print something else, each named as glibc_checks names it."""

    address: int
    message: str
    glibc_abort: Optional[str] = None
    other_paths: Tuple[Tuple[str, str], ...] = ()
    # The links the message shows, for naming them (render): not part of what the problem is.
    pointers: Pointers = field(default=(), compare=False)


@dataclass
class MallocPar:
    address: int
    trim_threshold: int
    top_pad: int
    mmap_threshold: int
    n_mmaps: int
    mmapped_mem: int
    sbrk_base: int
    tcache_bins: int = 0
    tcache_max_bytes: int = 0
    tcache_count: int = 0


@dataclass
class MallocState:
    """One arena (struct malloc_state) as read from memory."""

    address: int
    flags: int
    have_fastchunks: int
    fastbinsY: Tuple[int, ...]
    top: int
    last_remainder: int
    bins: Tuple[int, ...]  # the 254 fd/bk words
    binmap: Tuple[int, ...]
    next: int
    next_free: int
    attached_threads: int
    system_mem: int
    max_system_mem: int
    mutex: int = 0  # the arena's lock: non-zero while a thread holds it (mid-update)


@dataclass
class HeapRegion:
    """A stretch of chunks: one region of the main arena's heap (the sbrk heap; more where it
    was not contiguous), or one mmapped heap of a thread arena."""

    start: int  # the region's first byte (sbrk_base, where sysmalloc carried on, or the heap_info)
    end: int  # one past the region's last byte
    first_chunk: int
    heap_info: Optional[int] = None
    fenceposts: bool = False  # an old heap of a thread arena ends with fencepost chunks
    fencepost: Optional[int] = None  # a main-arena region left behind: where its fencepost pair starts
    info_size: int = 0  # heap_info.size: bytes of the heap in use
    mprotect_size: int = 0  # heap_info.mprotect_size: bytes made read-write so far


class Arena:
    """An arena, its heap regions and what is wrong with them.  The main arena's regions are
    found by walking its heap (main_heap): a whole walk, so it is done only when a command
    asks for them (`heap bins` never does)."""

    def __init__(self, state: MallocState, main: bool,
                 heaps: Union[List[HeapRegion], Callable[[List[Problem]], List[HeapRegion]]],
                 problems: Optional[List[Problem]] = None) -> None:
        self.state = state
        self.main = main
        self._heaps = heaps
        self._problems: List[Problem] = problems if problems is not None else []

    @property
    def loaded(self) -> bool:
        return not callable(self._heaps)

    @property
    def heaps(self) -> List[HeapRegion]:
        if callable(self._heaps):
            found: List[Problem] = []
            self._heaps = self._heaps(found)
            self._problems[:0] = found
        return self._heaps

    def found(self, heaps: List[HeapRegion]) -> None:
        """The regions, known from a walk that proved them (Heap.chunk_batches)."""
        if callable(self._heaps):
            self._heaps = heaps

    @property
    def problems(self) -> List[Problem]:
        self.heaps  # noqa: B018 (finding the regions finds their problems)
        return self._problems

    @property
    def address(self) -> int:
        return self.state.address


@dataclass
class BinChain:
    """One bin: its chunks (chunk addresses) in list order."""

    kind: str
    index: int
    size: int
    count: int
    chunks: List[int]
    problems: List[Problem] = field(default_factory=list)
    # Each chunk's size, where the walk read it: an array('Q') from the bin walks (a bin of a big
    # heap holds millions, and sizes are rarely small ints Python shares).
    sizes: Sequence[int] = field(default_factory=list)
    # A large bin's chunks' fd_nextsize and bk_nextsize, in turn, where the bin walk read them
    # (None: not read, or not for each chunk).
    nextsizes: Optional[Sequence[int]] = None


@dataclass
class Chunk:
    """One chunk, classified."""

    address: int
    size_field: int
    state: str  # in_use, free, top
    bin: Optional[str]
    bin_index: Optional[int]
    size_sz: int
    prev_size: Optional[int] = None  # read with the header where a command shows it

    @property
    def size(self) -> int:
        return self.size_field & ~SIZE_BITS

    @property
    def prev_inuse(self) -> bool:
        return bool(self.size_field & PREV_INUSE)

    @property
    def is_mmapped(self) -> bool:
        return bool(self.size_field & IS_MMAPPED)

    @property
    def non_main_arena(self) -> bool:
        return bool(self.size_field & NON_MAIN_ARENA)

    @property
    def user_address(self) -> int:
        return self.address + 2 * self.size_sz

    @property
    def usable_size(self) -> int:
        return max(0, self.size - (2 if self.is_mmapped else 1) * self.size_sz)


# ---------------------------------------------------------------------------------------------
# Structs


class StructBytes:
    """One struct's bytes, read in one go, with its fields picked out by name."""

    def __init__(self, reader: Optional[Reader], layout: StructLayout, address: int,
                 raw: Optional[Bytes] = None, order: str = "little") -> None:
        """raw: the struct's bytes read already (then `reader` may be None)."""
        self.layout = layout
        if raw is None:
            assert reader is not None
            raw, order = reader.read(address, layout.size), reader.order
        self.raw: Bytes = raw
        self.order: Literal["little", "big"] = "big" if order == "big" else "little"
        self._unpackers = _unpackers(layout, order)

    def has(self, name: str) -> bool:
        return self.layout.has(name)

    def get(self, name: str) -> int:
        return self.array(name)[0]

    def array(self, name: str) -> Tuple[int, ...]:
        """The field's elements (one for a scalar; none for a field this version lacks)."""
        unpacker = self._unpackers.get(name)
        if unpacker is not None:  # one unpack for the whole array (heap trace reads arenas per call)
            return unpacker.unpack_from(self.raw, self.layout.fields[name][0])
        if not self.layout.has(name):
            return ()
        off, size, count = self.layout.fields[name]
        return tuple(int.from_bytes(self.raw[off + i * size:off + (i + 1) * size], self.order)
                     for i in range(count))


    def whole(self) -> Tuple[Tuple[int, ...], Dict[str, Tuple[int, int]]]:
        """Every field in one unpack: (the values, field -> (its first value's index, count))."""
        unpacker, at = _whole(self.layout, self.order)
        return unpacker.unpack_from(self.raw), at


_UNSIGNED = {1: "B", 2: "H", 4: "I", 8: "Q"}
# (id(layout), byte order) -> (the layout, kept so its id stays its own; field -> its unpacker)
_UNPACKERS: Dict[Tuple[int, str], Tuple[StructLayout, Dict[str, struct.Struct]]] = {}
_WHOLE: Dict[Tuple[int, str], Tuple[StructLayout, struct.Struct, Dict[str, Tuple[int, int]]]] = {}


def _whole(layout: StructLayout, order: str) -> Tuple[struct.Struct, Dict[str, Tuple[int, int]]]:
    key = (id(layout), order)
    hit = _WHOLE.get(key)
    if hit is None:
        fmt, pos, index, at = ["<" if order == "little" else ">"], 0, 0, {}
        for name, (off, size, count) in sorted(layout.fields.items(), key=lambda f: f[1][0]):
            fmt.append(f"{off - pos}x{count}{_UNSIGNED[size]}")  # padding, then the field
            at[name] = (index, count)
            pos, index = off + size * count, index + count
        hit = _WHOLE[key] = (layout, struct.Struct("".join(fmt)), at)
    return hit[1], hit[2]


def _unpackers(layout: StructLayout, order: str) -> Dict[str, struct.Struct]:
    """Each field's compiled unpacker, made once per layout: parsing is per call in heap trace."""
    key = (id(layout), order)
    hit = _UNPACKERS.get(key)
    if hit is None:
        end = "<" if order == "little" else ">"
        hit = _UNPACKERS[key] = (layout, {name: struct.Struct(f"{end}{count}{_UNSIGNED[size]}")
                                          for name, (_, size, count) in layout.fields.items() if size in _UNSIGNED})
    return hit[1]


def read_malloc_par(reader: Reader, layout: GlibcLayout, address: int) -> MallocPar:
    return malloc_par_from(StructBytes(reader, layout.malloc_par, address), address)


def malloc_par_from(s: StructBytes, address: int) -> MallocPar:
    """mp_ from its bytes."""
    get = s.get
    mp = MallocPar(address, get("trim_threshold"), get("top_pad"), get("mmap_threshold"),
                   get("n_mmaps"), get("mmapped_mem"), get("sbrk_base"))
    if s.has("tcache_count"):
        mp.tcache_bins, mp.tcache_max_bytes, mp.tcache_count = (
            get("tcache_small_bins" if s.has("tcache_small_bins") else "tcache_bins"),
            get("tcache_max_bytes"), get("tcache_count"))
    return mp


def read_malloc_state(reader: Reader, layout: GlibcLayout, address: int) -> MallocState:
    return malloc_state_from(StructBytes(reader, layout.malloc_state, address), address)


def malloc_state_from(s: StructBytes, address: int) -> MallocState:
    """An arena from its bytes (one unpack: heap trace parses an arena per call)."""
    v, at = s.whole()

    def arr(name: str) -> Tuple[int, ...]:
        first, count = at.get(name, (0, 0))  # none for a field this version lacks (fastbinsY, 2.43)
        return v[first:first + count]

    def get(name: str) -> int:
        return v[at[name][0]]

    return MallocState(
        address=address, flags=get("flags"),
        have_fastchunks=get("have_fastchunks") if "have_fastchunks" in at else 0,
        fastbinsY=arr("fastbinsY"), top=get("top"), last_remainder=get("last_remainder"),
        bins=arr("bins"), binmap=arr("binmap"), next=get("next"), next_free=get("next_free"),
        attached_threads=get("attached_threads"), system_mem=get("system_mem"),
        max_system_mem=get("max_system_mem"), mutex=get("mutex"))


def bin_at(layout: GlibcLayout, arena: int, index: int) -> int:
    """bin_at(m, i): the fake chunk whose fd/bk are bins[2(i-1)] and bins[2(i-1)+1]."""
    S = layout.size_sz
    return arena + layout.malloc_state.offset("bins") + (index - 1) * 2 * S - 2 * S


def chunksize(reader: Reader, chunk: int) -> int:
    return reader.word(chunk + reader.size_sz) & ~SIZE_BITS


def heap_initialised(layout: GlibcLayout, state: MallocState) -> bool:
    """False before the arena's first sbrk/mmap: top is 0 or still initial_top (bin 1)."""
    return state.top not in (0, bin_at(layout, state.address, 1))


# ---------------------------------------------------------------------------------------------
# Arenas and their heaps


def arena_ring(reader: Reader, layout: GlibcLayout, main_arena: int) -> Tuple[List[MallocState], List[Problem]]:
    """Every arena on the `next` ring, starting at main_arena."""
    states: List[MallocState] = []
    problems: List[Problem] = []
    seen = set()
    address = main_arena
    while len(states) < MAX_ARENAS:
        try:
            state = read_malloc_state(reader, layout, address)
        except MemoryReadError:
            problems.append(Problem(address, f"arena {address:#x} is not readable; the arena list is cut here"))
            break
        states.append(state)
        seen.add(address)
        if state.next == main_arena:
            break
        if state.next in seen or state.next == 0:
            problems.append(Problem(address, f"arena list: next {state.next:#x} does not lead back to "
                                             f"main_arena; the list is cut here"))
            break
        address = state.next
    return states, problems


def main_heap(reader: Reader, layout: GlibcLayout, state: MallocState, mp: MallocPar,
              mappings: Callable[[], Sequence[Mapping]] = list,
              problems: Optional[List[Problem]] = None) -> List[HeapRegion]:
    """The main arena's heap: its regions in address order, the first at mp_.sbrk_base.

    Usually one: the sbrk heap, from sbrk_base to the end of top.  When sbrk could not extend
    it (a mapping above the break: sysmalloc then mmaps, and sets NONCONTIGUOUS_BIT) or the
    program moved the break itself, sysmalloc carried on elsewhere and ended the old top with
    a fencepost: two chunks of CHUNK_HDR_SZ.  glibc keeps no list of these regions, so they
    are found from what it leaves: each region is a chain of chunks that ends at top or at a
    fencepost pair, starting where sysmalloc carried on: after the foreign bytes in the sbrk
    area, or at a page of an anonymous mapping (`mappings`, asked only when there are more).
    """
    if not heap_initialised(layout, state) or mp.sbrk_base == 0:
        return []
    problems = problems if problems is not None else []
    first = layout.first_chunk(mp.sbrk_base)
    top_end = _top_end(reader, state.top)
    # No region can be longer than the arena's system memory.
    found = region_at(reader, layout, first, mp.sbrk_base + state.system_mem, state.top, top_end)
    if found is None:  # damaged: the contiguous heap ends at the program break, sbrk_base + system_mem
        end = mp.sbrk_base + state.system_mem
        if state.flags & NONCONTIGUOUS_BIT and first <= state.top < end and top_end is not None:
            end = top_end
        return [HeapRegion(start=mp.sbrk_base, end=end, first_chunk=first)]
    regions = [HeapRegion(start=mp.sbrk_base, end=found[0], first_chunk=first, fencepost=found[1])]
    if found[1] is None:
        return regions  # the usual case: one contiguous heap, ending at top
    regions += _more_regions(reader, layout, state, regions[0], list(mappings()), top_end, problems)
    if top_end is not None and not any(r.first_chunk <= state.top < r.end for r in regions):
        problems.append(Problem(state.top, f"top {state.top:#x} is in none of the main arena's heap regions "
                                           "found (see heap arenas)", pointers=(("top ", state.top),)))
    return regions


def contiguous_main_region(reader: Reader, layout: GlibcLayout, state: MallocState,
                           mp: MallocPar) -> Optional[HeapRegion]:
    """The region main_heap finds when the main heap is the usual one (one contiguous heap from
    sbrk_base to the end of top), as far as that can be told without walking it: None where it
    cannot be (NONCONTIGUOUS_BIT, top unreadable or out of reach, a first chunk without
    PREV_INUSE).  A walk of it that reaches top cleanly (confirms_single_region) proves it."""
    if not heap_initialised(layout, state) or mp.sbrk_base == 0 or state.flags & NONCONTIGUOUS_BIT:
        return None
    first = layout.first_chunk(mp.sbrk_base)
    top_end = _top_end(reader, state.top)
    if top_end is None or not first <= state.top < top_end <= mp.sbrk_base + state.system_mem:
        return None
    try:
        if not reader.word(first + layout.size_sz) & PREV_INUSE:
            return None
    except MemoryReadError:
        return None
    return HeapRegion(start=mp.sbrk_base, end=top_end, first_chunk=first)


def confirms_single_region(last: Optional[Batch], top: int, problems: Sequence[Problem]) -> bool:
    """Whether a walk of contiguous_main_region (its last batch, its problems) is what
    region_at accepts as the whole main heap: it reached top and nothing broke it."""
    return not problems and last is not None and bool(last[0]) and last[0][-1] == top


def heap_spans(reader: Reader, arena: Arena, sbrk_base: int) -> List[Tuple[int, int]]:
    """[start, end) of each of the arena's heap regions, or of one span holding them all: a
    contiguous main heap (NONCONTIGUOUS_BIT clear) lies within sbrk_base..the end of top, so
    its regions need not be found (a walk of the whole heap) to know what is inside it.  A top
    size past system_mem is damage (house of force), not the heap's end: the regions then."""
    if arena.main and not arena.loaded and not arena.state.flags & NONCONTIGUOUS_BIT and sbrk_base:
        top = arena.state.top
        end = _top_end(reader, top)
        if end is not None and sbrk_base <= top < end <= top + arena.state.system_mem:
            return [(sbrk_base, end)]
    return [(r.start, r.end) for r in arena.heaps]


def _top_end(reader: Reader, top: int) -> Optional[int]:
    try:
        return top + chunksize(reader, top)
    except MemoryReadError:
        return None


def region_at(reader: Reader, layout: GlibcLayout, first: int, limit: int, top: int,
              top_end: Optional[int]) -> Optional[Tuple[int, Optional[int]]]:
    """(end, fencepost) of a main-arena region whose first chunk is `first`: a chain of chunks
    as glibc writes them (the first with PREV_INUSE, none with IS_MMAPPED or NON_MAIN_ARENA)
    that ends at top (fencepost None) or at a fencepost pair before `limit` (the region then
    ends there, rounded up to MALLOC_ALIGNMENT).  None otherwise."""
    S, H = layout.size_sz, layout.header_size
    mask = layout.malloc_alignment - 1
    try:
        if not reader.word(first + S) & PREV_INUSE:
            return None
    except MemoryReadError:
        return None
    # The heap walk itself, told to stop quietly at a fencepost: it is the fast loop.
    trial = HeapRegion(start=first, end=limit, first_chunk=first, fenceposts=True)
    problems: List[Problem] = []
    pos = first
    flags = 0
    for addresses, sizes in walk_region_batches(reader, layout, trial, top, problems):
        if addresses:
            flags |= reduce(or_, sizes)
            pos = addresses[-1] + (sizes[-1] & ~SIZE_BITS)
            if addresses[-1] == top:
                return (top_end, None) if not problems and top_end is not None and top_end <= limit else None
    if problems or flags & (IS_MMAPPED | NON_MAIN_ARENA) or pos >= limit:
        return None
    try:
        pair = [reader.word(pos + S) & ~SIZE_BITS, reader.word(pos + H + S) & ~SIZE_BITS]
    except MemoryReadError:
        return None
    end = (pos + 2 * H + mask) & ~mask
    return (end, pos) if pair == [H, H] and pos != first and end <= limit else None


def _more_regions(reader: Reader, layout: GlibcLayout, state: MallocState, first: HeapRegion,
                  maps: List[Mapping], top_end: Optional[int], problems: List[Problem]) -> List[HeapRegion]:
    """The regions after the first: chains that end at top or a fencepost, starting at any
    MALLOC_ALIGNMENT step after the previous region in the sbrk area (a foreign sbrk moved the
    break by any amount), at page starts elsewhere (sysmalloc's mmap), lowest first."""
    mask = layout.malloc_alignment - 1
    S = layout.size_sz
    regions: List[HeapRegion] = []
    grown_up: List[HeapRegion] = []
    mapped: List[HeapRegion] = []
    probes = 0
    for m in sorted(maps, key=lambda m: m.start):
        if not m.readable or m.writable is False or not m.anonymous and m.path:
            continue
        sbrk_area = m.start <= first.start < m.end
        pos = first.end if sbrk_area else m.start
        if pos >= m.end:
            continue
        step = layout.malloc_alignment if sbrk_area else PAGE
        while pos < m.end and len(regions) < MAX_MAIN_REGIONS:
            if probes >= REGION_PROBES:
                problems.append(Problem(pos, f"the search for the main arena's heap regions stopped at {pos:#x} "
                                             f"after {REGION_PROBES} candidates; later regions are not shown"))
                return _oldest_first(grown_up, mapped)
            probes += 1
            candidate = layout.first_chunk(pos)
            try:
                sizef = reader.word(candidate + S)
            except MemoryReadError:
                pos = (pos + PAGE) & ~(PAGE - 1)  # an unreadable page (a core without it)
                continue
            # A first chunk says PREV_INUSE and is of a size glibc writes: most candidates stop here.
            if sizef & (PREV_INUSE | IS_MMAPPED | NON_MAIN_ARENA) != PREV_INUSE or \
                    (sizef & ~SIZE_BITS) < layout.minsize or sizef & mask & ~SIZE_BITS:
                pos += step
                continue
            found = region_at(reader, layout, candidate, m.end, state.top, top_end)
            if found is None:
                pos += step
                continue
            end, fencepost = found
            # After a foreign sbrk glibc kept no record of the break it got: the region is known from
            # its first chunk (on i386, 8 bytes past the MALLOC_ALIGNMENT step, which may be foreign).
            # A mapping is glibc's from its first page.
            start = candidate if sbrk_area else pos
            regions.append(HeapRegion(start=start, end=end, first_chunk=candidate, fencepost=fencepost))
            (grown_up if sbrk_area else mapped).append(regions[-1])
            pos = end if sbrk_area else (end + PAGE - 1) & ~(PAGE - 1)
    return _oldest_first(grown_up, mapped)


def _oldest_first(grown_up: List[HeapRegion], mapped: List[HeapRegion]) -> List[HeapRegion]:
    """glibc records no order: the sbrk area grows up, the kernel places each new mapping
    below the last, and the region holding top (no fencepost) is the newest."""
    ordered = grown_up + mapped[::-1]
    return [r for r in ordered if r.fencepost is not None] + [r for r in ordered if r.fencepost is None]


def heap_for_ptr(layout: GlibcLayout, address: int) -> int:
    return address & ~(layout.heap_max_size - 1)


def thread_heaps(reader: Reader, layout: GlibcLayout, state: MallocState,
                 problems: List[Problem]) -> List[HeapRegion]:
    """A thread arena's heaps, oldest first: from heap_for_ptr(top) along heap_info.prev."""
    if not heap_initialised(layout, state):
        return []
    hi = layout.heap_info
    regions: List[HeapRegion] = []
    seen = set()
    address = heap_for_ptr(layout, state.top)
    while address and address not in seen and len(regions) < MAX_HEAPS_PER_ARENA:
        seen.add(address)
        try:
            info = StructBytes(reader, hi, address)
        except MemoryReadError:
            problems.append(Problem(address, f"heap_info at {address:#x} is not readable; older heaps are not shown"))
            break
        ar_ptr, prev, size = info.get("ar_ptr"), info.get("prev"), info.get("size")
        if ar_ptr != state.address:
            problems.append(Problem(address, f"heap_info at {address:#x} names arena {ar_ptr:#x}, not "
                                             f"{state.address:#x}; older heaps are not shown",
                                    pointers=(("names arena ", ar_ptr),)))
            break
        first = address + hi.size
        if first == state.address:  # the arena's first heap holds the malloc_state itself
            first += layout.malloc_state.size
        first = layout.first_chunk(first)
        end = address + size
        if not regions:  # the newest heap ends where top ends
            try:
                end = max(end, state.top + chunksize(reader, state.top))
            except MemoryReadError:
                pass
        regions.append(HeapRegion(start=address, end=end, first_chunk=first, heap_info=address,
                                  fenceposts=bool(regions), info_size=size,
                                  mprotect_size=info.get("mprotect_size")))
        address = prev
    regions.reverse()
    return regions


def read_arenas(reader: Reader, layout: GlibcLayout, main_arena: int, mp: MallocPar,
                mappings: Callable[[], Sequence[Mapping]] = list) -> List[Arena]:
    """Every arena and its heaps; `mappings`: the process's, asked only for the regions of a
    main arena that is not contiguous."""
    states, problems = arena_ring(reader, layout, main_arena)
    arenas = []
    for state in states:
        arena_problems: List[Problem] = []
        if state.address == main_arena:
            def regions(found: List[Problem], state: MallocState = state) -> List[HeapRegion]:
                return main_heap(reader, layout, state, mp, mappings, found)
            arenas.append(Arena(state, True, regions))
        else:
            heaps = thread_heaps(reader, layout, state, arena_problems)
            arenas.append(Arena(state, False, heaps, arena_problems))
    if arenas:
        arenas[-1]._problems.extend(problems)
    return arenas


# ---------------------------------------------------------------------------------------------
# Bins


# One singly linked list to follow (a tcache bin or a fastbin): (label, the head's user
# pointer, where the head lives, its bound, what glibc prints on meeting an unaligned node at
# position k of the list (0: the head), skew).  Both keep their link in the word at the user
# pointer, safe-linked from 2.32 with that word's address; a tcache link is the next user
# pointer, a fastbin fd the next chunk, so skew (0 or CHUNK_HDR_SZ) turns a link into a user
# pointer.  A link that is unaligned, unreadable, loops or exceeds the bound cuts the list,
# and the problem is reported at the member holding that link (singly_results).
SinglyList = Tuple[str, int, int, int, Callable[[int], Optional[str]], int]


def singly_trails(lists: Sequence[SinglyList]) -> List[Trail]:
    """The lists as trails for links.follow, each from its head."""
    return [Trail(first, 0, bound, skew) for _, first, _, bound, _, skew in lists]


def singly_kind(reader: Reader, layout: GlibcLayout) -> Kind:
    return singly(reader, layout.header_size, layout.malloc_alignment - 1, layout.features.safe_linking)


def singly_results(layout: GlibcLayout, lists: Sequence[SinglyList],
                   trails: Sequence[Trail]) -> List[Tuple[List[int], Sequence[int], List[Problem]]]:
    """(chunks, sizes, problems) of each list, once its trail was followed."""
    H = layout.header_size
    out: List[Tuple[List[int], Sequence[int], List[Problem]]] = []
    for (label, _, member, bound, unaligned_abort, _), trail in zip(lists, trails):
        problems: List[Problem] = []
        if trail.stop is not None:
            holder, to = trail.chunks[-1] if trail.chunks else member, trail.at - H
            if trail.stop == UNALIGNED:
                cut: Tuple[str, Optional[str]] = (
                    f"{label}: {holder:#x} links to {to:#x}, which is not aligned; the chain is cut here",
                    unaligned_abort(len(trail.chunks)))
            elif trail.stop == LOOP:
                cut = (f"{label}: {holder:#x} links back to {to:#x}, a loop ({to:#x} is in the list twice: freed "
                       "twice, or a link overwritten); the chain is cut here", None)
            elif trail.stop == BOUND:
                cut = (f"{label}: longer than it can be ({bound} chunks); the chain is cut here", None)
            else:
                cut = (f"{label}: {holder:#x} links to {to:#x}, which is not readable; the chain is cut here", None)
            problems.append(Problem(holder, cut[0], cut[1], pointers=(("to ", to),)))
        out.append((list(trail.chunks), trail.sizes, problems))
    return out


# A bin reader in two steps (see together()): it yields the lists it wants followed, then
# returns its chains once they were.
BinReading = Generator[List[Tuple[Kind, List[Trail]]], None, List[BinChain]]


def together(reader: Reader, readings: Sequence[BinReading]) -> List[List[BinChain]]:
    """Each reading's chains, their lists all followed together: every kind of bin shares the
    runs of memory read (links.follow), so a big heap is read about once, not once per kind."""
    groups = [group for reading in readings for group in next(reading)]
    follow(reader, groups)
    out = []
    for reading in readings:
        try:
            next(reading)
        except StopIteration as done:
            out.append(done.value)
    return out


def read_tcache(reader: Reader, layout: GlibcLayout, tcache: int, mp: MallocPar,
                only: Optional[Container[int]] = None) -> List[BinChain]:
    """The non-empty bins of one thread's tcache_perthread_struct, each chain in list order
    (`only`: just those bin indices)."""
    return together(reader, [tcache_reading(reader, layout, tcache, mp, only)])[0]


def tcache_reading(reader: Reader, layout: GlibcLayout, tcache: int, mp: MallocPar,
                   only: Optional[Container[int]] = None) -> BinReading:
    """read_tcache in two steps (together())."""
    t = layout.tcache_perthread
    nbins = layout.tcache_bins
    H = layout.header_size
    c_off, c_size, _ = t.fields[layout.counts_field]
    counts = reader.array(tcache + c_off, nbins, c_size)
    entries = reader.words(tcache + t.offset("entries"), nbins)
    chains = []
    unaligned = gc.text("TCACHE_UNALIGNED", layout.version)  # tcache_get, at whichever position
    wanted: List[Tuple[int, int]] = []  # (bin, its count)
    for i in range(nbins):
        if layout.features.tcache_free_slots:
            count = (mp.tcache_count - counts[i]) if counts[i] <= mp.tcache_count else 0
        else:
            count = counts[i]
        if (entries[i] == 0 and count == 0) or (only is not None and i not in only):
            continue
        wanted.append((i, count))
    # The head's member is the tcache_perthread_struct's own chunk.
    lists = [(bin_label("tcache", i), entries[i], tcache - H, MAX_TCACHE_CHAIN, lambda k: unaligned, 0)
             for i, _ in wanted]
    trails = singly_trails(lists)

    def reading() -> BinReading:  # the struct is read above: a damaged one raises at once
        yield [(singly_kind(reader, layout), trails)]
        for (i, count), (chunks, sizes, problems) in zip(wanted, singly_results(layout, lists, trails)):
            if len(chunks) != count:
                where = chunks[-1] if chunks else tcache
                problems.append(Problem(where, f"{bin_label('tcache', i)}: the tcache counts {count} chunks but the "
                                               f"chain holds {len(chunks)}"))
            chains.append(BinChain("tcache", i, layout.tcache_bin_size(i), count, chunks, problems, sizes))
        return chains

    return reading()


def is_victim(position: int, fill: int) -> bool:
    """Whether malloc takes the chunk at `position` of a fast or small bin (0: the chunk it takes
    first) as its victim, or stashes it into the tcache unchecked: each malloc of the bin's size
    that reaches _int_malloc takes one victim and then stashes up to `fill` (mp_.tcache_count,
    0 without a tcache) more into the then empty tcache bin, which the next mallocs use up."""
    return position % (fill + 1) == 0


def read_fastbins(reader: Reader, layout: GlibcLayout, state: MallocState, fill: int = 0,
                  only: Optional[Container[int]] = None, single_thread: bool = True) -> List[BinChain]:
    """The fast bins; a problem's abort is what the mallocs of the bin's size print: a misaligned
    link is found when malloc takes the chunk (its victim: "2", or stashed: "3"), or, when not
    single_thread, one chunk earlier by REMOVE_FB reading the taken chunk's fd (no number);
    `only`: just those bin indices."""
    return together(reader, [fastbins_reading(reader, layout, state, fill, only, single_thread)])[0]


def fastbins_reading(reader: Reader, layout: GlibcLayout, state: MallocState, fill: int = 0,
                     only: Optional[Container[int]] = None, single_thread: bool = True) -> BinReading:
    """read_fastbins in two steps (together())."""
    S, H = layout.size_sz, layout.header_size
    v = layout.version
    bound = max(64, state.system_mem // layout.minsize + 1)
    wrap = 1 << (8 * S)
    chains = []

    def unaligned(position: int) -> Optional[str]:
        if position == 0 or single_thread:  # the head is checked as the victim before REMOVE_FB
            return gc.text("FASTBIN_UNALIGNED_VICTIM" if is_victim(position, fill) else "FASTBIN_UNALIGNED_STASH", v)
        return gc.text("FASTBIN_UNALIGNED_REMOVE", v)

    wanted = [i for i, head in enumerate(state.fastbinsY) if head and (only is None or i in only)]
    # Each head's member: its slot (2.43 has no fast bins, nor fastbinsY).
    slots = state.address + layout.malloc_state.offset("fastbinsY") if wanted else 0
    lists = [(bin_label("fast", i), state.fastbinsY[i] + H, slots + i * S, bound, unaligned, H) for i in wanted]
    trails = singly_trails(lists)
    yield [(singly_kind(reader, layout), trails)]
    for i, (chunks, sizes, problems) in zip(wanted, singly_results(layout, lists, trails)):
        size = layout.fastbin_size(i)
        label = bin_label("fast", i)
        if sizes.count(size) != len(sizes):  # C speed: a damaged size is rare
            for k, (chunk, got) in enumerate(zip(chunks, sizes)):
                if got == size:
                    continue
                if is_victim(k, fill):  # fastbin_index(chunksize(victim)) != idx
                    abort = gc.text("FASTBIN_VICTIM_SIZE", v) if layout.fastbin_index(got) != i else None
                else:  # stashed: 2.42 compares csize2tidx, in size_t arithmetic
                    tidx = (got - layout.minsize + layout.malloc_alignment - 1) % wrap // layout.malloc_alignment
                    abort = gc.text("FASTBIN_STASH_SIZE", v) if tidx != layout.tcache_index(size) else None
                consolidate = gc.text("CONSOLIDATE_SIZE", v) if layout.fastbin_index(got) != i else None
                problems.append(Problem(chunk, f"{label}: chunk {chunk:#x} has size {got:#x}, not {size:#x}", abort,
                                        (("malloc_consolidate", consolidate),) if consolidate else ()))
        chains.append(BinChain("fast", i, size, len(chunks), chunks, problems, sizes))
    return chains


def bk_abort(layout: GlibcLayout, kind: str, from_tail: Optional[int], fill: int) -> Optional[str]:
    """What the mallocs taking a chunk whose bk does not point back print; `from_tail` is its
    place counted from the bin's last chunk, where malloc starts (None: unknown)."""
    v = layout.version
    if kind == "unsorted":  # each chunk in turn is the unsorted loop's victim
        return gc.first(v, "UNSORTED_DLL", "UNSORTED_REMOVE")
    if kind == "small":  # only the victim's bk is checked, the stashed chunks' are not
        return gc.text("SMALLBIN_DLL", v) if from_tail is not None and is_victim(from_tail, fill) else None
    return gc.text("UNLINK_DLL", v)  # a large bin's chunk is taken by unlink_chunk


def sorting_bk_paths(layout: GlibcLayout, kind: str, sizes: Sequence[int], k: int) -> Tuple[Tuple[str, str], ...]:
    """The unsorted loop, sorting a chunk into a large bin, checks the bk of the chunk it goes in
    front of (fwd): the first of its size for a bigger chunk, the second of its size for an equal
    one (malloc.c: bck = fwd->bk; bck->fd != fwd)."""
    text = gc.text("LARGEBIN_BK", layout.version)
    first_of_size = k == 0 or sizes[k] != sizes[k - 1]
    second_of_size = k > 0 and sizes[k] == sizes[k - 1] and (k == 1 or sizes[k - 2] != sizes[k])
    if kind != "large" or text is None or not (first_of_size or second_of_size):
        return ()
    return ((SORTING_INTO_LARGE_BIN, text),)


SORTING_INTO_LARGE_BIN = "sorting a chunk into its large bin"


def read_regular_bins(reader: Reader, layout: GlibcLayout, state: MallocState,
                      kinds: Sequence[str] = ("unsorted", "small", "large"), fill: int = 0,
                      only: Optional[Container[int]] = None) -> List[BinChain]:
    """Bins 1..126 (unsorted, small, large), following fd and checking each bk (`only`: just
    those bin indices)."""
    return together(reader, [regular_bins_reading(reader, layout, state, kinds, fill, only)])[0]


def regular_bins_reading(reader: Reader, layout: GlibcLayout, state: MallocState,
                         kinds: Sequence[str] = ("unsorted", "small", "large"), fill: int = 0,
                         only: Optional[Container[int]] = None) -> BinReading:
    """read_regular_bins in two steps (together())."""
    S, v = layout.size_sz, layout.version
    bound = max(64, state.system_mem // layout.minsize + 1)
    wanted: List[int] = []
    trails: List[Trail] = []
    for i in range(1, NBINS - 1):
        kind = bin_kind(i)
        header = bin_at(layout, state.address, i)
        fd = state.bins[2 * (i - 1)]
        if kind not in kinds or (only is not None and i not in only) or fd in (header, 0):
            continue  # not asked for, empty, or not set up yet (before malloc_init)
        wanted.append(i)
        trails.append(Trail(fd, header, bound))
    # Large bins' chunks with their fd_nextsize and bk_nextsize (heap check's), each bin
    # followed as its size groups where its skip list allows (links.size_groups).
    wide = doubly(reader, wide=True)
    split = [(t, size_groups(reader, wide, t)) for i, t in zip(wanted, trails) if i >= NSMALLBINS]
    yield [(doubly(reader), [t for i, t in zip(wanted, trails) if i < NSMALLBINS]),
           (wide, [g for t, groups in split for g in (groups or [t])])]
    again = [t for t, groups in split if groups is not None and not join_groups(t, groups)]
    if again:
        follow(reader, [(wide, again)])
    chains = []
    for i, trail in zip(wanted, trails):
        kind = bin_kind(i)
        label = bin_label(kind, i)
        header, chunks, sizes = trail.end, list(trail.chunks), trail.sizes
        problems: List[Problem] = []
        prev = chunks[-1] if chunks else header
        # The sizes this bin may hold (any, for the unsorted bin).
        low, high = (0, 1 << 64) if i == 1 else (layout.bin_min_size(i), layout.bin_min_size(i + 1)
                                                 if i < NBINS - 2 else 1 << 64)
        if i == 1:
            low, high = 2 * S + 1, state.system_mem + 1  # the unsorted loop's first check
        if sizes and not (low <= min(sizes) and max(sizes) < high):  # C speed: a bad size is rare
            for p, size in zip(chunks, sizes):
                if i != 1 and not low <= size < high:
                    problems.append(Problem(p, f"{label}: chunk {p:#x} has size {size:#x}, which belongs "
                                               f"in bin {layout.bin_index(size)}"))
                elif i == 1 and not 2 * S < size <= state.system_mem:
                    what = f"more than the arena's system_mem {state.system_mem:#x}" if size > 2 * S else "no chunk's"
                    problems.append(Problem(p, f"{label}: chunk {p:#x} has size {size:#x}, {what}",
                                            gc.first(v, "UNSORTED_INVALID_SIZE", "UNSORTED_MEMORY_CORRUPTION")))
        if trail.stop == BOUND:
            problems.append(Problem(prev, f"{label}: longer than the arena can hold; cut here"))
        elif trail.stop == LOOP:
            problems.append(Problem(prev, f"{label}: the chain loops back to {trail.at:#x}; cut here"))
        elif trail.stop is not None:
            problems.append(Problem(prev, f"{label}: fd {trail.at:#x} is not readable; the chain is cut here",
                                    pointers=(("fd ", trail.at),)))
        whole = trail.at == header and state.bins[2 * (i - 1) + 1] == prev  # glibc starts at the bin's bk
        backs = trail.bks
        if chunks and (backs[0] != header or backs[1:] != trail.chunks[:-1]):  # C speed (arrays): a bad bk is rare
            for k, chunk in enumerate(chunks):
                expected = chunks[k - 1] if k else header
                if backs[k] == expected:
                    continue
                abort = bk_abort(layout, kind, len(chunks) - 1 - k if whole else None, fill)
                problems.append(Problem(chunk, f"{label}: chunk {chunk:#x} has bk {backs[k]:#x}, expected "
                                               f"{expected:#x}", abort, sorting_bk_paths(layout, kind, sizes, k),
                                        (("bk ", backs[k]), ("expected ", expected))))
        chains.append(BinChain(kind, i, layout.bin_min_size(i), len(chunks), chunks, problems, sizes,
                               trail.nextsizes if len(trail.nextsizes) == 2 * len(chunks) else None))
    return chains


def read_bins(reader: Reader, layout: GlibcLayout, state: MallocState, tcache: Optional[int],
              mp: MallocPar, kinds: Sequence[str] = BIN_KINDS,
              single_thread: bool = True) -> Tuple[List[BinChain], List[Problem]]:
    """The arena's non-empty bins of the given kinds (tcache: the given thread's), in contract order;
    single_thread: glibc's SINGLE_THREAD_P, which decides how malloc unlinks a fast bin's head."""
    chains: List[BinChain] = []
    problems: List[Problem] = []
    readings: List[BinReading] = []
    if "tcache" in kinds and tcache:
        try:
            readings.append(tcache_reading(reader, layout, tcache, mp))
        except MemoryReadError as e:
            problems.append(Problem(tcache, f"the tcache at {tcache:#x} is not readable ({e})"))
    fill = mp.tcache_count if tcache else 0  # how many chunks malloc stashes after its victim
    if "fast" in kinds:
        readings.append(fastbins_reading(reader, layout, state, fill, single_thread=single_thread))
    readings.append(regular_bins_reading(reader, layout, state,
                                         [k for k in kinds if k in ("unsorted", "small", "large")], fill))
    for some in together(reader, readings):
        chains += some
    for one in chains:
        problems += one.problems
    return chains, problems


def free_index(chains: Sequence[BinChain]) -> FreeIndex:
    """chunk address -> (bin kind, index); a chunk in two bins (damage) is named by the first."""
    return FreeIndex.build(((c.kind, c.index), c.chunks) for c in chains)


# ---------------------------------------------------------------------------------------------
# Chunks


# A stretch of walked chunks: their addresses and their raw size fields, side by side.
Batch = Tuple[List[int], List[int]]


class Resync:
    """Where a walk broken by a damaged size may pick up again: the chunks glibc itself names
    (a bin or a tcache entry lists them), sorted once, the first time a walk breaks: a healthy
    heap never asks for them."""

    def __init__(self, names: Callable[[], Dict[int, str]]) -> None:
        self._names = names
        self._sorted: Optional[List[int]] = None
        self.labels: Dict[int, str] = {}
        self.asked = False  # whether a walk broke and looked for where to resume

    def after(self, low: int, high: int) -> List[int]:
        """The named chunks strictly between low and high, lowest first."""
        self.asked = True
        if self._sorted is None:
            self.labels = self._names()
            self._sorted = sorted(self.labels)
        return self._sorted[bisect_right(self._sorted, low):bisect_left(self._sorted, high)]


def plausible_size(layout: GlibcLayout, sizef: int) -> bool:
    """A size glibc writes for a heap chunk: at least MINSIZE, aligned, not IS_MMAPPED."""
    csize = sizef & ~SIZE_BITS
    return csize >= layout.minsize and not csize & (layout.malloc_alignment - 1) and not sizef & IS_MMAPPED


def resume_point(reader: Reader, layout: GlibcLayout, broken: int, limit: int, top: Optional[int],
                 resync: Resync) -> Optional[Tuple[int, str]]:
    """(chunk, who names it) where a walk that broke at chunk `broken` can carry on: the lowest
    named chunk after it whose neighbours agree (an aligned header of a plausible size that
    ends at `limit` or at another plausible chunk; with PREV_INUSE clear, a prev_size leading
    back no further than `broken`), else top (`top`: the arena's top in this region).  Each
    candidate is looked at once per walk: the walk only moves forward."""
    H = layout.header_size
    mask = layout.malloc_alignment - 1
    for chunk in resync.after(broken, limit):
        if (chunk + H) & mask:
            continue
        try:
            prev_size, sizef = reader.words(chunk, 2)
            nxt = chunk + (sizef & ~SIZE_BITS)
            if not plausible_size(layout, sizef) or nxt > limit or \
                    nxt < limit and not plausible_size(layout, reader.word(nxt + layout.size_sz)):
                continue
        except MemoryReadError:
            continue
        if sizef & PREV_INUSE or broken <= chunk - prev_size < chunk and not prev_size & mask:
            return chunk, f"which {resync.labels[chunk]} lists"
    if top is not None and top > broken and reader.readable(top + layout.size_sz):
        return top, "the arena's top chunk"
    return None


def walk_region_batches(reader: Reader, layout: GlibcLayout, region: HeapRegion, top: int,
                        problems: List[Problem], resync: Optional[Resync] = None) -> Iterator[Batch]:
    """Every chunk of a region, in address order, as batches of one memory block each: a
    million chunks cost a million cheap steps, and consumers can count whole batches at C
    speed (Counter, set intersection) instead of looking at each chunk in Python.

    Stops at top, at the region's end, or where a size breaks the walk (then a Problem names
    the chunk carrying that size).  With `resync`, a broken walk carries on at the next chunk
    a bin lists, or at top, whose neighbours agree (resume_point), and the Problem says how
    many bytes it skipped: the chunk before the gap keeps its bogus size, and the chunk after
    it does not start where that size ends (consumers see the gap that way).
    """
    S = layout.size_sz
    minsize = layout.minsize
    mask = layout.malloc_alignment - 1
    shift = 3 if S == 8 else 2
    # (csize - MINSIZE) & bad is non-zero exactly when csize < MINSIZE or csize is misaligned:
    # one test instead of two, a million times.
    bad = mask | (1 << (8 * S + 1))
    notbits = ~SIZE_BITS
    pos = region.first_chunk
    # A main-arena region left behind ends in a fencepost pair: not chunks, glibc's marker.
    end = region.end if region.fencepost is None else region.fencepost
    top_here = region.first_chunk <= top < end
    limit = top if top_here else end  # ordinary chunks end where top begins
    while True:
        last_size = 0
        broke: Optional[Tuple[int, str, Optional[str]]] = None  # (chunk, why, what free() of it prints)
        while pos < limit:
            try:
                base, words = reader.block_words(pos + S)
            except MemoryReadError:
                broke = (pos, f"chunk {pos:#x} is not readable", None)
                break
            stop = min(limit, base + len(words) * S - S)
            skew = S - base
            first = pos
            sizes: List[int] = []
            add_size = sizes.append
            sizef = 0
            # The hot loop: a million turns, so it keeps only the size fields, and steps in words
            # (j: the size field's index in the block), not bytes; the addresses are the sizes'
            # running sum, done at C speed below.  A size running past the limit is noticed
            # after the loop.  (`low`: how far pos lies past a word, 0 but after damage.)
            low = (pos + skew) & (S - 1)
            j = (pos + skew) >> shift
            stop_j = (stop + skew - low + S - 1) >> shift  # j < stop_j exactly when pos < stop
            while j < stop_j:
                sizef = words[j]
                csize = sizef & notbits
                if (csize - minsize) & bad:
                    break  # a size glibc would never write: handled below
                add_size(sizef)
                j += csize >> shift
            else:
                pos = (j << shift) + low - skew
                last_size = sizef & notbits  # the batch's last chunk: it may have run past the limit
                yield _addresses(first, sizes), sizes
                continue
            pos = (j << shift) + low - skew
            csize = sizef & notbits
            if region.fenceposts and csize in (0, 2 * S):
                yield _addresses(first, sizes), sizes  # an old thread heap ends with fenceposts
                return
            add_size(sizef)
            yield _addresses(first, sizes), sizes
            broke = (pos, f"chunk {pos:#x} has an invalid size {csize:#x} (below MINSIZE {minsize:#x} or not a "
                          f"multiple of {mask + 1})", free_invalid_size_abort(layout, pos, sizef))
            break
        if broke is None and pos > limit:  # the last chunk's size ran past where chunks may go
            last = pos - last_size
            where = f"into the top chunk at {top:#x}" if top_here else f"past the end of its heap ({end:#x})"
            # free() of it in a contiguous (sbrk) heap: its next chunk lies past top's end.
            out = gc.text("FREE_OUT", layout.version) if region.heap_info is None and pos >= end else None
            broke = (last, f"chunk {last:#x} of size {last_size:#x} runs {where}", out)
        if broke is None:
            break
        chunk, why, abort = broke
        resumed = resume_point(reader, layout, chunk, limit, top if top_here else None, resync) if resync else None
        if resumed is None:
            problems.append(Problem(chunk, f"{why}; the walk stops here", abort))
            return
        pos, named = resumed
        problems.append(Problem(chunk, f"{why}; the walk skips {pos - chunk:#x} bytes and resumes at {pos:#x}, "
                                       f"{named}", abort))
    if not top_here:
        return
    if pos != top:
        problems.append(Problem(pos, f"the walk ended at {pos:#x} without reaching top {top:#x}"))
        return
    try:
        yield [top], [reader.word(top + S)]
    except MemoryReadError:
        problems.append(Problem(top, f"the top chunk at {top:#x} is not readable"))


def free_invalid_size_abort(layout: GlibcLayout, chunk: int, size_field: int) -> Optional[str]:
    """What free() of a chunk whose size is below MINSIZE or misaligned prints."""
    if size_field & IS_MMAPPED:
        return None  # munmap_chunk's checks: not predicted
    size = size_field & ~SIZE_BITS
    wrap = 1 << (8 * layout.size_sz)
    if layout.version <= (2, 41):  # p > -size (unsigned: size 0 makes it p > 0), then the size
        return gc.text("FREE_INVALID_POINTER" if chunk > -size % wrap else "FREE_INVALID_SIZE", layout.version)
    # From 2.42 __libc_free checks the size after the tcache: csize2tidx of a size below MINSIZE
    # wraps past the small tcache bins and the large ones want size >= MINSIZE, so such a size
    # reaches the check, where p + (size - MINSIZE) overflows (unsigned); a misaligned size of
    # MINSIZE or more goes to its tcache bin unchecked when that has room, which the walk does
    # not know.
    overflows = chunk + (size - layout.minsize) % wrap >= wrap
    return gc.text("FREE_INVALID_SIZE", layout.version) if overflows else None


def _addresses(first: int, sizes: List[int]) -> List[int]:
    """The chunk addresses of a batch: `first`, then each plus its chunk size (C speed)."""
    return list(accumulate(map(and_, sizes[:-1], repeat(~SIZE_BITS)), initial=first)) if sizes else []


# A walk batch kept for later (Heap.walk_ahead keeps millions of chunks so): its first and last
# addresses, its size fields as a compact array (4 bytes each where they fit), and its addresses
# as one too, or None, to save 8 bytes a chunk: the addresses are the sizes' running sum.
PackedBatch = Tuple[int, int, "array[int]", Optional["array[int]"]]


def pack_batch(addresses: List[int], sizes: List[int], keep_addresses: bool = True) -> PackedBatch:
    """A batch as unpack_batch gives it back; `keep_addresses`: quicker to unpack, 3 times the
    memory."""
    ends = (addresses[0], addresses[-1]) if addresses else (0, 0)
    return ends[0], ends[1], compact(sizes), array("Q", addresses) if keep_addresses or not addresses else None


def compact(numbers: Sequence[int]) -> array[int]:
    """`numbers` as an array of 4-byte items where they fit (a size field almost always does),
    else of 8."""
    try:
        return array("I", numbers)
    except OverflowError:
        return array("Q", numbers)


def unpack_batch(batch: PackedBatch) -> Batch:
    first, last, packed, kept = batch
    sizes = packed.tolist()
    if kept is not None:
        return kept.tolist(), sizes
    addresses = _addresses(first, sizes)
    if addresses[-1] != last:  # the walk gives running sums (walk_region_batches): never met
        raise HeapError(f"internal error: a kept batch from {first:#x} does not end at {last:#x}; "
                        "report it to gdb_heap's developers")
    return addresses, sizes


def given(items: Iterable[T], each: Callable[[T], None]) -> Iterator[T]:
    """The items, each handed to `each` as it passes (a walk's batches counted on the way)."""
    for item in items:
        each(item)
        yield item


def walk_region(reader: Reader, layout: GlibcLayout, region: HeapRegion, top: int,
                problems: List[Problem], resync: Optional[Resync] = None) -> Iterator[Tuple[int, int]]:
    """(chunk address, raw size field) for every chunk of a region, in address order."""
    for addresses, sizes in walk_region_batches(reader, layout, region, top, problems, resync):
        yield from zip(addresses, sizes)


def classify(address: int, top: int,
             free: Union[FreeIndex, Dict[int, Tuple[str, int]]]) -> Tuple[str, Optional[str], Optional[int]]:
    """(state, bin kind, bin index) of a chunk; `free` the free index, or the part of it a batch
    holds (FreeIndex.around)."""
    if address == top:
        return "top", None, None
    hit = free.get(address)
    if hit is None:
        return "in_use", None, None
    return "free", hit[0], hit[1]


class SizeCount:
    """The size fields of a walk's batches counted as they come (Heap.walk_and_index's `each`),
    up to the first empty batch (where summarise stops), for summarise's `every`; and top's
    (`top_sizef`), once met."""

    def __init__(self, top: int = -1) -> None:
        self.every: Counter[int] = Counter()
        self.top = top
        self.top_sizef: Optional[int] = None
        self._stopped = False

    def __call__(self, batch: Batch) -> None:
        if not batch[0]:
            self._stopped = True
        if not self._stopped:
            self.every.update(batch[1])
            if batch[0][-1] == self.top:
                self.top_sizef = batch[1][-1]


@dataclass
class FreeCounts:
    """The part of summarise that needs the free index: a walk's free chunks by (bin, size
    field), and top's size field once the walk met it (a helper counts a walk's tail so)."""

    pairs: Counter[Tuple[Tuple[str, int], int]] = field(default_factory=Counter)
    top_sizef: Optional[int] = None

    def add(self, addresses: List[int], sizes: List[int], top: int, free: FreeIndex) -> None:
        """One walk batch's (addresses ascending, each chunk's size field beside it)."""
        self.pairs.update(free.walked(addresses, sizes))
        if addresses and addresses[-1] == top:
            self.top_sizef = sizes[-1]

    def merge(self, other: FreeCounts) -> None:
        """Another stretch of the walk's, after this one's."""
        self.pairs.update(other.pairs)
        if other.top_sizef is not None:
            self.top_sizef = other.top_sizef


def free_counts(batches: Iterable[Batch], top: int, free: FreeIndex) -> FreeCounts:
    """FreeCounts of a walk's batches, up to the first empty one (as summarise)."""
    counts = FreeCounts()
    for addresses, sizes in batches:
        if not addresses:
            break
        counts.add(addresses, sizes, top, free)
    return counts


def summarise(batches: Iterable[Batch], top: int, free: FreeIndex, limit: Optional[int] = None,
              every: Optional[Counter[int]] = None) -> Counter[Tuple[str, Optional[str], int]]:
    """Counts of chunks by (state, bin, size), from walk_region_batches' batches.

    Every chunk is counted at C speed: each batch's size fields whole (Counter.update), and
    its free chunks apart by (bin, size field) (FreeIndex.walked); the in-use counts are the
    difference.  Top stays top (as in classify), even where a bin lists it (damage).  `every`:
    the batches' size fields counted already (SizeCount; no limit then).
    """
    given = every  # counted as the walk goes on: read once summarise has taken every batch
    every = Counter()  # size field (flags in) -> walked chunks
    counts = FreeCounts()
    seen = 0
    for addresses, sizes in batches:
        if limit is not None and seen + len(addresses) > limit:
            addresses, sizes = addresses[:max(0, limit - seen)], sizes[:max(0, limit - seen)]
        if not addresses:
            break
        seen += len(addresses)
        if given is None:
            every.update(sizes)
        counts.add(addresses, sizes, top, free)
        if limit is not None and seen >= limit:
            break
    return summary_rows(given if given is not None else every, counts, top, free)


def summary_rows(every: Counter[int], counts: FreeCounts, top: int,
                 free: FreeIndex) -> Counter[Tuple[str, Optional[str], int]]:
    """summarise's rows from the walk's size fields counted (`every`, size field -> chunks) and
    its free chunks (`counts`)."""
    every = Counter(every)
    pairs = Counter(counts.pairs)
    rows: Counter[Tuple[str, Optional[str], int]] = Counter()
    if counts.top_sizef is not None:
        where = free.get(top)
        if where is not None:
            pairs[where, counts.top_sizef] -= 1
        every[counts.top_sizef] -= 1
        rows["top", None, counts.top_sizef & ~SIZE_BITS] += 1
    for (where, sizef), count in pairs.items():
        every[sizef] -= count
        if count:
            rows["free", where[0], sizef & ~SIZE_BITS] += count
    for sizef, count in every.items():
        if count:
            rows["in_use", None, sizef & ~SIZE_BITS] += count
    return rows


def chunk_at(reader: Reader, layout: GlibcLayout, address: int, top: int, free: FreeIndex) -> Chunk:
    try:
        prev_size, sizef = reader.words(address, 2)  # the whole header in one read
    except MemoryReadError:
        raise HeapError(f"cannot read a chunk header at {address:#x}; give an address inside a heap") from None
    state, kind, index = classify(address, top, free)
    return Chunk(address, sizef, state, kind, index, layout.size_sz, prev_size)
