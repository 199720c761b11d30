"""glibc's heap as plain data: arenas, heaps, bins, tcache and chunks.

Knows nothing of gdb: everything is read through a memory.Reader and described by a
layouts.GlibcLayout.  Damage found on the way is collected as Problems, never raised; every
loop over inferior data is bounded (a heap's end, a chain's length cap, a visited set).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from itertools import accumulate, repeat
from operator import and_
from dataclasses import dataclass, field
from typing import Container, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from .errors import HeapError, MemoryReadError
from .layouts import NBINS, NSMALLBINS, GlibcLayout, StructLayout
from .memory import Bytes, Reader

BIN_KINDS = ("tcache", "fast", "unsorted", "small", "large")
PREV_INUSE, IS_MMAPPED, NON_MAIN_ARENA = 0x1, 0x2, 0x4
SIZE_BITS = 0x7
MAX_ARENAS = 4096  # far above glibc's own limit (8 x cores)
MAX_HEAPS_PER_ARENA = 1 << 16
MAX_TCACHE_CHAIN = 1 << 16  # counts are uint16: a longer chain is a loop or damage


@dataclass
class Problem:
    address: int
    message: str
    glibc_abort: Optional[str] = None


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


@dataclass
class HeapRegion:
    """A stretch of chunks: the main arena's sbrk heap, or one mmapped heap of a thread arena."""

    start: int  # the region's first byte (sbrk_base, or the heap_info)
    end: int  # one past the last byte holding chunks
    first_chunk: int
    heap_info: Optional[int] = None
    fenceposts: bool = False  # an old heap of a thread arena ends with fencepost chunks
    info_size: int = 0  # heap_info.size: bytes of the heap in use
    mprotect_size: int = 0  # heap_info.mprotect_size: bytes made read-write so far


@dataclass
class Arena:
    state: MallocState
    main: bool
    heaps: List[HeapRegion]
    problems: List[Problem] = field(default_factory=list)

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
    sizes: List[int] = field(default_factory=list)  # each chunk's size, where the walk read it


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

    def __init__(self, reader: Reader, layout: StructLayout, address: int) -> None:
        self.layout = layout
        self.raw = reader.read(address, layout.size)
        self.order = reader.order

    def has(self, name: str) -> bool:
        return self.layout.has(name)

    def get(self, name: str) -> int:
        return self.array(name)[0]

    def array(self, name: str) -> Tuple[int, ...]:
        """The field's elements (one for a scalar; none for a field this version lacks)."""
        if not self.layout.has(name):
            return ()
        off, size, count = self.layout.fields[name]
        return tuple(int.from_bytes(self.raw[off + i * size:off + (i + 1) * size], self.order)
                     for i in range(count))


def read_malloc_par(reader: Reader, layout: GlibcLayout, address: int) -> MallocPar:
    s = StructBytes(reader, layout.malloc_par, address)
    get = s.get
    mp = MallocPar(address, get("trim_threshold"), get("top_pad"), get("mmap_threshold"),
                   get("n_mmaps"), get("mmapped_mem"), get("sbrk_base"))
    if s.has("tcache_count"):
        mp.tcache_bins, mp.tcache_max_bytes, mp.tcache_count = (
            get("tcache_small_bins" if s.has("tcache_small_bins") else "tcache_bins"),
            get("tcache_max_bytes"), get("tcache_count"))
    return mp


def read_malloc_state(reader: Reader, layout: GlibcLayout, address: int) -> MallocState:
    s = StructBytes(reader, layout.malloc_state, address)
    get, arr = s.get, s.array
    return MallocState(
        address=address, flags=get("flags"),
        have_fastchunks=get("have_fastchunks") if s.has("have_fastchunks") else 0,
        fastbinsY=arr("fastbinsY"), top=get("top"), last_remainder=get("last_remainder"),
        bins=arr("bins"), binmap=arr("binmap"), next=get("next"), next_free=get("next_free"),
        attached_threads=get("attached_threads"), system_mem=get("system_mem"),
        max_system_mem=get("max_system_mem"))


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


def main_heap(reader: Reader, layout: GlibcLayout, state: MallocState, mp: MallocPar) -> List[HeapRegion]:
    """The main arena's sbrk heap: from mp_.sbrk_base to the end of top."""
    if not heap_initialised(layout, state) or mp.sbrk_base == 0:
        return []
    first = layout.first_chunk(mp.sbrk_base)
    # Contiguous sbrk heap: it ends at the program break, sbrk_base + system_mem, which is
    # also where top ends; a corrupted top size must not move that end.
    end = mp.sbrk_base + state.system_mem
    if not first <= state.top < end:
        try:
            end = state.top + chunksize(reader, state.top)
        except MemoryReadError:
            pass
    return [HeapRegion(start=mp.sbrk_base, end=end, first_chunk=first)]


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
                                             f"{state.address:#x}; older heaps are not shown"))
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


def read_arenas(reader: Reader, layout: GlibcLayout, main_arena: int, mp: MallocPar) -> List[Arena]:
    states, problems = arena_ring(reader, layout, main_arena)
    arenas = []
    for state in states:
        main = state.address == main_arena
        arena_problems: List[Problem] = []
        heaps = (main_heap(reader, layout, state, mp) if main
                 else thread_heaps(reader, layout, state, arena_problems))
        arenas.append(Arena(state, main, heaps, arena_problems))
    if arenas:
        arenas[-1].problems.extend(problems)
    return arenas


# ---------------------------------------------------------------------------------------------
# Bins


def walk_singly_linked(reader: Reader, layout: GlibcLayout, label: str, first: int, member: int,
                       bound: int, unaligned_abort: str, skew: int) -> Tuple[List[int], List[int], List[Problem]]:
    """A tcache bin or a fastbin: (chunks, their sizes, problems), in list order.

    Both keep their link in the word at the user pointer, safe-linked from 2.32 with that
    word's address; a tcache link is the next user pointer, a fastbin fd the next chunk, so
    `skew` (0 or CHUNK_HDR_SZ) turns a link into a user pointer.  `first` is the head's user
    pointer, `member` where the head lives.
    A link that is unaligned, unreadable, loops or exceeds `bound` cuts the list, and the
    problem is reported at the member holding that link.
    """
    S, H = layout.size_sz, layout.header_size
    amask = layout.malloc_alignment - 1
    safe_linking = layout.features.safe_linking
    unpack2 = reader.unpacker(2).unpack_from
    start, end = 0, 0  # the span of memory last read (hot loop: no call per link)
    data: Bytes = b""
    chunks: List[int] = []
    sizes: List[int] = []
    problems: List[Problem] = []
    seen: Set[int] = set()
    mem = first
    while mem:
        # One test for the usual case; the reasons to stop are sorted out only when it fails.
        if mem & amask or mem in seen or len(chunks) >= bound or not start <= mem - S <= end - 2 * S:
            cut: Optional[Tuple[str, Optional[str]]] = None
            if mem & amask:
                cut = (f"{label}: {member:#x} links to {mem - H:#x}, which is not aligned; the chain is cut "
                       "here", unaligned_abort)
            elif mem in seen:
                cut = (f"{label}: {member:#x} links back to {mem - H:#x}, a loop ({mem - H:#x} is in the list "
                       "twice: freed twice, or a link overwritten); the chain is cut here", None)
            elif len(chunks) >= bound:
                cut = (f"{label}: longer than it can be ({bound} chunks); the chain is cut here", None)
            else:
                try:
                    start, data = reader.span(mem - S, 2 * S)
                    end = start + len(data)
                except MemoryReadError:
                    cut = (f"{label}: {member:#x} links to {mem - H:#x}, which is not readable; the chain is "
                           "cut here", None)
            if cut:
                problems.append(Problem(member, cut[0], cut[1]))
                break
        sizef, stored = unpack2(data, mem - S - start)
        seen.add(mem)
        member = mem - H
        chunks.append(member)
        sizes.append(sizef & ~SIZE_BITS)
        link = (mem >> 12) ^ stored if safe_linking else stored  # REVEAL_PTR, inlined: hot
        mem = link + skew if link else 0
    return chunks, sizes, problems


def read_tcache(reader: Reader, layout: GlibcLayout, tcache: int, mp: MallocPar,
                only: Optional[Container[int]] = None) -> List[BinChain]:
    """The non-empty bins of one thread's tcache_perthread_struct, each chain in list order
    (`only`: just those bin indices)."""
    t = layout.tcache_perthread
    nbins = layout.tcache_bins
    H = layout.header_size
    c_off, c_size, _ = t.fields[layout.counts_field]
    counts = reader.array(tcache + c_off, nbins, c_size)
    entries = reader.words(tcache + t.offset("entries"), nbins)
    chains = []
    for i in range(nbins):
        if layout.features.tcache_free_slots:
            count = (mp.tcache_count - counts[i]) if counts[i] <= mp.tcache_count else 0
        else:
            count = counts[i]
        if (entries[i] == 0 and count == 0) or (only is not None and i not in only):
            continue
        # The head's member is the tcache_perthread_struct's own chunk.
        chunks, sizes, problems = walk_singly_linked(reader, layout, f"tcache[{i}]", entries[i], tcache - H,
                                                     MAX_TCACHE_CHAIN, "malloc(): unaligned tcache chunk detected", 0)
        if len(chunks) != count:
            where = chunks[-1] if chunks else tcache
            problems.append(Problem(where, f"tcache[{i}]: the tcache counts {count} chunks but the chain "
                                           f"holds {len(chunks)}"))
        chains.append(BinChain("tcache", i, layout.tcache_bin_size(i), count, chunks, problems, sizes))
    return chains


def read_fastbins(reader: Reader, layout: GlibcLayout, state: MallocState,
                  only: Optional[Container[int]] = None) -> List[BinChain]:
    S, H = layout.size_sz, layout.header_size
    bound = max(64, state.system_mem // layout.minsize + 1)
    chains = []
    for i, head in enumerate(state.fastbinsY):
        if not head or (only is not None and i not in only):
            continue
        size = layout.fastbin_size(i)
        slot = state.address + layout.malloc_state.offset("fastbinsY") + i * S  # the head's member
        chunks, sizes, problems = walk_singly_linked(reader, layout, f"fastbin[{i}]", head + H, slot, bound,
                                                     "malloc(): unaligned fastbin chunk detected", H)
        for chunk, got in zip(chunks, sizes):
            if got != size:
                problems.append(Problem(chunk, f"fastbin[{i}]: chunk {chunk:#x} has size {got:#x}, not {size:#x}",
                                        "malloc(): memory corruption (fast)"))
        chains.append(BinChain("fast", i, size, len(chunks), chunks, problems, sizes))
    return chains


# What glibc prints when it unlinks a chunk whose bk does not point back (malloc.c).
BK_ABORTS = {"unsorted": "malloc(): corrupted unsorted chunks",
             "small": "malloc(): smallbin double linked list corrupted",
             "large": "malloc(): largebin double linked list corrupted (bk)"}


def read_regular_bins(reader: Reader, layout: GlibcLayout, state: MallocState,
                      kinds: Sequence[str] = ("unsorted", "small", "large"),
                      only: Optional[Container[int]] = None) -> List[BinChain]:
    """Bins 1..126 (unsorted, small, large), following fd and checking each bk (`only`: just
    those bin indices)."""
    S = layout.size_sz
    bound = max(64, state.system_mem // layout.minsize + 1)
    unpack3 = reader.unpacker(3).unpack_from
    start, end = 0, 0  # the span of memory last read (hot loop: no call per link)
    data: Bytes = b""
    chains = []
    for i in range(1, NBINS - 1):
        kind = "unsorted" if i == 1 else "small" if i < NSMALLBINS else "large"
        if kind not in kinds or (only is not None and i not in only):
            continue
        header = bin_at(layout, state.address, i)
        fd = state.bins[2 * (i - 1)]
        if fd in (header, 0):  # empty, or not set up yet (before malloc_init)
            continue
        chunks: List[int] = []
        problems: List[Problem] = []
        seen = set()
        sizes: List[int] = []
        prev, p = header, fd
        # The sizes this bin may hold (any, for the unsorted bin).
        low, high = (0, 1 << 64) if i == 1 else (layout.bin_min_size(i), layout.bin_min_size(i + 1)
                                                 if i < NBINS - 2 else 1 << 64)
        while p != header:
            if len(chunks) >= bound:
                problems.append(Problem(prev, f"{kind} bin {i}: longer than the arena can hold; cut here"))
                break
            if p in seen:
                problems.append(Problem(prev, f"{kind} bin {i}: the chain loops back to {p:#x}; cut here"))
                break
            if not start <= p + S <= end - 3 * S:
                try:
                    start, data = reader.span(p + S, 3 * S)
                    end = start + len(data)
                except MemoryReadError:
                    problems.append(Problem(prev, f"{kind} bin {i}: fd {p:#x} is not readable; the chain is "
                                                  "cut here"))
                    break
            sizef, nfd, nbk = unpack3(data, p + S - start)
            seen.add(p)
            chunks.append(p)
            sizes.append(sizef & ~SIZE_BITS)
            if nbk != prev:
                problems.append(Problem(p, f"{kind} bin {i}: chunk {p:#x} has bk {nbk:#x}, expected {prev:#x}",
                                        BK_ABORTS[kind]))
            size = sizef & ~SIZE_BITS
            if not low <= size < high:
                problems.append(Problem(p, f"{kind} bin {i}: chunk {p:#x} has size {size:#x}, which belongs "
                                           f"in bin {layout.bin_index(size)}"))
            prev, p = p, nfd
        chains.append(BinChain(kind, i, layout.bin_min_size(i), len(chunks), chunks, problems, sizes))
    return chains


def read_bins(reader: Reader, layout: GlibcLayout, state: MallocState, tcache: Optional[int],
              mp: MallocPar, kinds: Sequence[str] = BIN_KINDS) -> Tuple[List[BinChain], List[Problem]]:
    """The arena's non-empty bins of the given kinds (tcache: the given thread's), in contract order."""
    chains: List[BinChain] = []
    problems: List[Problem] = []
    if "tcache" in kinds and tcache:
        try:
            chains += read_tcache(reader, layout, tcache, mp)
        except MemoryReadError as e:
            problems.append(Problem(tcache, f"the tcache at {tcache:#x} is not readable ({e})"))
    if "fast" in kinds:
        chains += read_fastbins(reader, layout, state)
    chains += read_regular_bins(reader, layout, state, [k for k in kinds if k in ("unsorted", "small", "large")])
    for one in chains:
        problems += one.problems
    return chains, problems


FreeIndex = Dict[int, Tuple[str, int]]


def free_index(chains: Sequence[BinChain]) -> FreeIndex:
    """chunk address -> (bin kind, index), for classifying chunks in one lookup each."""
    index: FreeIndex = {}
    for bin_chain in reversed(chains):  # a chunk in two bins (damage) is named by the first
        index.update(dict.fromkeys(bin_chain.chunks, (bin_chain.kind, bin_chain.index)))
    return index


# ---------------------------------------------------------------------------------------------
# Chunks


# A stretch of walked chunks: their addresses and their raw size fields, side by side.
Batch = Tuple[List[int], List[int]]


def walk_region_batches(reader: Reader, layout: GlibcLayout, region: HeapRegion, top: int,
                        problems: List[Problem]) -> Iterator[Batch]:
    """Every chunk of a region, in address order, as batches of one memory block each: a
    million chunks cost a million cheap steps, and consumers can count whole batches at C
    speed (Counter, set intersection) instead of looking at each chunk in Python.

    Stops at top, at the region's end, or where a size breaks the walk (then a Problem names
    the chunk carrying that size).
    """
    S = layout.size_sz
    minsize = layout.minsize
    mask = layout.malloc_alignment - 1
    shift = 3 if S == 8 else 2
    # (csize - MINSIZE) & bad is non-zero exactly when csize < MINSIZE or csize is misaligned:
    # one test instead of two, a million times.
    bad = mask | (1 << (8 * S + 1))
    notbits = ~SIZE_BITS
    pos, end = region.first_chunk, region.end
    last_size = 0
    top_here = region.first_chunk <= top < end
    limit = top if top_here else end  # ordinary chunks end where top begins
    while pos < limit:
        try:
            base, words = reader.block_words(pos + S)
        except MemoryReadError:
            problems.append(Problem(pos, f"chunk {pos:#x} is not readable; the walk stops here"))
            return
        stop = min(limit, base + len(words) * S - S)
        skew = S - base
        first = pos
        sizes: List[int] = []
        add_size = sizes.append
        sizef = 0
        # The hot loop: a million turns, so it keeps only the size fields; the addresses are
        # their running sum, done at C speed below.  A size running past the limit is
        # noticed after the loop.
        while pos < stop:
            sizef = words[(pos + skew) >> shift]
            csize = sizef & notbits
            if (csize - minsize) & bad:
                break  # a size glibc would never write: handled below
            add_size(sizef)
            pos += csize
        else:
            last_size = sizef & notbits  # the batch's last chunk: it may have run past the limit
            yield _addresses(first, sizes), sizes
            continue
        csize = sizef & notbits
        if region.fenceposts and csize in (0, 2 * S):
            yield _addresses(first, sizes), sizes  # an old thread heap ends with fenceposts
            return
        add_size(sizef)
        yield _addresses(first, sizes), sizes
        problems.append(Problem(pos, f"chunk {pos:#x} has an invalid size {csize:#x} (below MINSIZE "
                                     f"{minsize:#x} or not a multiple of {mask + 1}); the walk stops here",
                                "free(): invalid size"))
        return
    if pos > limit:  # the last chunk's size ran past where chunks may go
        last = pos - last_size
        lsize = last_size
        where = f"into the top chunk at {top:#x}" if top_here else f"past the end of its heap ({end:#x})"
        # free() of it in a contiguous (sbrk) heap: its next chunk lies past top's end.
        out = "double free or corruption (out)" if region.heap_info is None and pos >= end else None
        problems.append(Problem(last, f"chunk {last:#x} of size {lsize:#x} runs {where}; the walk stops here", out))
        return
    if not top_here:
        return
    if pos != top:
        problems.append(Problem(pos, f"the walk ended at {pos:#x} without reaching top {top:#x}"))
        return
    try:
        yield [top], [reader.word(top + S)]
    except MemoryReadError:
        problems.append(Problem(top, f"the top chunk at {top:#x} is not readable"))


def _addresses(first: int, sizes: List[int]) -> List[int]:
    """The chunk addresses of a batch: `first`, then each plus its chunk size (C speed)."""
    return list(accumulate(map(and_, sizes[:-1], repeat(~SIZE_BITS)), initial=first)) if sizes else []


def walk_region(reader: Reader, layout: GlibcLayout, region: HeapRegion, top: int,
                problems: List[Problem]) -> Iterator[Tuple[int, int]]:
    """(chunk address, raw size field) for every chunk of a region, in address order."""
    for addresses, sizes in walk_region_batches(reader, layout, region, top, problems):
        yield from zip(addresses, sizes)


def classify(address: int, top: int, free: FreeIndex) -> Tuple[str, Optional[str], Optional[int]]:
    if address == top:
        return "top", None, None
    hit = free.get(address)
    if hit is None:
        return "in_use", None, None
    return "free", hit[0], hit[1]


def summarise(batches: Iterable[Batch], top: int, free: FreeIndex,
              limit: Optional[int] = None) -> Counter[Tuple[str, Optional[str], int]]:
    """Counts of chunks by (state, bin, size), from walk_region_batches' batches.

    Every chunk is counted by its size field at C speed (Counter.update on whole batches);
    only the free chunks are then looked at one by one (the sorted free addresses within the
    batch's range, each found by a forward scan) and moved to their bin's row.  Top stays top
    (as in classify).
    """
    every: Counter[int] = Counter()  # size field (flags in) -> chunks
    pairs: List[Tuple[Tuple[str, int], int]] = []  # ((bin, index), size field) per free chunk
    free_sorted = sorted(free)
    top_sizef: Optional[int] = None
    seen = 0
    for addresses, sizes in batches:
        if limit is not None and seen + len(addresses) > limit:
            addresses, sizes = addresses[:max(0, limit - seen)], sizes[:max(0, limit - seen)]
        if not addresses:
            break
        seen += len(addresses)
        every.update(sizes)
        lo = bisect_left(free_sorted, addresses[0])
        hi = bisect_right(free_sorted, addresses[-1])
        k = 0
        for address in free_sorted[lo:hi]:  # both sorted: each search resumes where the last ended
            try:
                k = addresses.index(address, k)
            except ValueError:  # a bin points between chunks (damage): not a chunk of this walk
                continue
            if address != top:
                pairs.append((free[address], sizes[k]))
        if addresses[-1] == top:
            top_sizef = sizes[-1]
        if limit is not None and seen >= limit:
            break
    rows: Counter[Tuple[str, Optional[str], int]] = Counter()
    for ((kind, _), sizef), count in Counter(pairs).items():
        every[sizef] -= count
        rows["free", kind, sizef & ~SIZE_BITS] += count
    if top_sizef is not None:
        every[top_sizef] -= 1
        rows["top", None, top_sizef & ~SIZE_BITS] += 1
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
