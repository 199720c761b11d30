"""One command's view of the heap: arenas, bins, tcache and chunks, read once and shared.

gdb-free: built from a Reader and the addresses locate.py found, so tests can build one over a
synthetic memory image.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
from bisect import bisect_left
from array import array
from dataclasses import dataclass, field, replace
from itertools import chain
from typing import BinaryIO, Callable, Dict, Generator, Iterator, List, Optional, Sequence, Tuple, TypeVar

from . import helper, in_progress, model
from .errors import HeapError, MemoryReadError
from .in_progress import MidUpdate, ThreadFrames
from .layouts import GlibcLayout
from .memory import FileMemory, Reader
from .mappings import Mapping, containing
from .progress import QUIET, Progress
from .mmapped import MmappedChunk, PageScan, find_all, mmapped_header
from .free_index import FreeIndex
from .model import Arena, BinChain, HeapRegion, MallocPar, Problem
from .symbols import SymbolLookup, no_symbol


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
    # The symbol at an address (gdb's `info symbol`), None when none.
    symbol: SymbolLookup = no_symbol
    # Every thread's innermost frames (in_progress.py): who is inside the allocator.
    frames: Callable[[], List[ThreadFrames]] = list
    tcache_key: Optional[int] = None  # the address of glibc's tcache_key (2.34+), from its symbol
    libc_data: List[Tuple[int, int]] = field(default_factory=list)  # the C library's writable data spans
    single_thread: bool = True  # glibc's SINGLE_THREAD_P: no pthread_create yet (then never again)
    # A file of the live process's memory (/proc/PID/mem, open for reading, the caller's to
    # close), for a forked helper that must not read through gdb (helper.py); None: there is
    # none (a core file, a remote target, a test's image).
    memory_file: Callable[[], Optional[int]] = lambda: None


# What a helper sends back for walk_and_index: heap.bins's answer, the free index, and where
# it begins the walk's tail (walk_index_split), if it does.
IndexAnswer = Tuple[Optional[Tuple[List[BinChain], List[Problem]]], FreeIndex, Optional[int]]
T = TypeVar("T")

# What a command makes of the end of a walk, in a helper (walk_index_split's `tail`): given the
# helper's reader, the free index and the walk's batches from one chunk on, it writes its
# output for them into the file.
Tail = Callable[[Reader, FreeIndex, Iterator["model.Batch"], BinaryIO], None]

# Where the helper's tail begins, as a share of the way from the region's first chunk to top:
# the helper follows the bins first, then walks and makes its part while gdb makes the first
# part and writes it, and then writes the helper's too (a listing: about half each).
TAIL_FROM = 0.5

# walk_ahead keeps its batches' addresses (8 bytes a chunk, a quicker unpack) while its batches
# take less than this many bytes, then only their sizes (4 bytes a chunk): gdb stays under
# 500 MB at ten million chunks.
KEEP_ADDRESSES = 16 << 20

# walk_ahead asks whether the helper is done after this many batches (a system call each time).
ASK_EVERY = 8

# An arena smaller than this (MiB) has its bins followed in gdb itself: a helper's fork and
# answer cost about what they save (`set heap helper-min` changes it; 0: never a helper).
HELPER_MIN_MIB = 32

# How much of the C library's data the search for tcache_key reads at most (libc's .data and
# .bss are a few pages; a static program's data may be more).
KEY_SEARCH_MAX = 8 << 20



@dataclass
class Kept:
    """The batches Heap.walk_ahead walked while the helper worked, not given yet: each one's
    region, packed batch and progress."""

    batches: List[Tuple[HeapRegion, model.PackedBatch, Tuple[int, int]]] = field(default_factory=list)
    dropped: bool = False  # none of them is given any more (Split.drop_kept)


@dataclass
class Split:
    """A walk whose tail, from chunk `start` to top, a helper does (walk_index_split): what it
    made of it is in `file` once finished() says it did all of it."""

    start: int
    region: HeapRegion  # the helper walked it from start on
    job: helper.Job[IndexAnswer]
    file: BinaryIO
    before: int = 0  # the bytes of the arena's heaps a walk gives before the region's
    total: int = 0  # ... and of them all (a walk's progress)
    kept: Kept = field(default_factory=lambda: Kept())  # drop_kept()
    # whether gdb's walk met start in that region (so the helper's walk from it on is its own),
    # once it got there
    met: Optional[bool] = None
    in_region: bool = False  # the batch given last is the region's (a thread's older heap may lie above it)

    def watch(self, walk: Iterator[Tuple[HeapRegion, model.Batch]]) -> Iterator[model.Batch]:
        """The walk's batches; `met` set as the region's one reaching start is given."""
        for region, batch in walk:
            addresses = batch[0]
            self.in_region = region == self.region
            if self.met is None and self.in_region and addresses and addresses[-1] >= self.start:
                self.met = addresses[bisect_left(addresses, self.start)] == self.start
            yield batch

    def begins_in(self, addresses: List[int]) -> bool:
        """Whether the batch given last (its addresses) holds the chunk the helper's part
        begins at, or the first chunk past it."""
        return self.in_region and bool(addresses) and addresses[-1] >= self.start

    def finished(self) -> bool:
        """Waits for the helper; whether its output is whole (else it is gone: do it yourself)."""
        done = self.job.finished()
        if done:
            self.file.seek(0)
        else:
            self.file.close()
        return done

    def cancel(self) -> None:
        self.job.cancel()
        self.file.close()

    def drop_kept(self) -> List[array[int]]:
        """The walk gives no more of the batches walked while the helper worked (a caller that
        needs only what `each` did with them): only the rest of the walk, not walked yet.  The
        size fields of those it will not give (what `each` had of them)."""
        self.kept.dropped = True
        sizes = [packed[2] for _, packed, _ in self.kept.batches]
        self.kept.batches.clear()
        return sizes

    def load(self) -> object:
        """What the helper wrote as one pickle, once finished (None: not a whole one); the
        file closed."""
        try:
            return pickle.load(self.file)
        except Exception:  # noqa: BLE001 (the caller counts it itself)
            return None
        finally:
            self.file.close()

    def text(self, progress: Progress = QUIET) -> Iterator[str]:
        """What the helper wrote (UTF-8), a megabyte at a time, once finished; the file closed.
        `progress` is told how far it is as a walk's, the tail's share by the bytes given."""
        try:
            size = max(1, os.fstat(self.file.fileno()).st_size)
            at = self.before + self.start - self.region.first_chunk
            rest = self.region.end - self.start
            text = io.TextIOWrapper(self.file, encoding="utf-8", newline="")
            while True:
                piece = text.read(1 << 20)
                if not piece:
                    break
                progress.walked(at + rest * self.file.tell() // size, self.total)
                yield piece
        finally:
            self.file.close()


def _tail_start(index: FreeIndex, region: HeapRegion, top: int, share: float) -> Optional[int]:
    """The first chunk a bin lists from `share` of the way from the region's first chunk to
    top (a chunk start, if the bins are right), None when none lies before top."""
    a = index.addresses
    i = bisect_left(a, region.first_chunk + int((top - region.first_chunk) * share))
    return a[i] if i < len(a) and a[i] < top else None


def _given(walk: Iterator[Tuple[HeapRegion, model.Batch]],
           each: Callable[[model.Batch], None]) -> Iterator[Tuple[HeapRegion, model.Batch]]:
    return model.given(walk, lambda pair: each(pair[1]))


class _Mark(Progress):
    """Where a walk is (its last progress), shown by no one: walk_and_index shows it again as
    the batches it kept are given."""

    def __init__(self) -> None:
        super().__init__(None)
        self.at = (0, 0)

    def walked(self, done: int, total: int) -> None:
        self.at = (done, total)


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
    sp: Optional[int] = None  # its stack pointer, when gdb can read its registers
    tp: Optional[int] = None  # its thread pointer (the TCB, where its static TLS ends), when known


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
    # Whether the walk confirmed the chunk's extent (its size led to the next chunk, or it is
    # top); False for the chunk whose size broke the walk, and for headers no walk reached.
    size_checked: bool = True
    reached: bool = True  # found by a heap walk (False: the header was read where it was asked)
    notes: List[str] = field(default_factory=list)  # why it was not reached; where it lives
    problems: List[Problem] = field(default_factory=list)  # what is wrong with a header no walk reached
    location: Optional[Location] = None  # a header outside every heap: where it lives

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
class Location:
    """Where memory outside every heap lives: its mapping and the symbol there."""

    mapping: Optional[str]  # the mapping's file, "[stack]", "anonymous"; None: no mapping is known
    start: Optional[int]
    end: Optional[int]
    symbol: Optional[str]

    def text(self) -> str:
        if self.mapping is None:
            place = "no mapping the process lists"
        else:
            name = {"[stack]": "the stack", "anonymous": "an anonymous mapping"}.get(self.mapping,
                                                                                 f"a mapping of {self.mapping}")
            place = f"{name} ({self.start:#x}-{self.end:#x})"
        return place + (f", at {self.symbol}" if self.symbol else "")


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
        self._all_tcache: Optional[List[BinChain]] = None
        self._free: Dict[int, FreeIndex] = {}  # arena -> free_index
        self._threads: Optional[List[ThreadInfo]] = None
        self._resync: Dict[int, model.Resync] = {}
        self._mid_update: Optional[MidUpdate] = None
        self.progress = QUIET  # the commands show it on a terminal (progress.py)
        self.helper_min_mib = HELPER_MIN_MIB  # (walk_ahead)

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
    def mid_update(self) -> MidUpdate:
        """The threads stopped inside the allocator and the arenas whose mutex is held."""
        if self._mid_update is None:
            self._mid_update = in_progress.find(self.anchors.frames(),
                                                [a.address for a in self.arenas if a.state.mutex])
        return self._mid_update

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
        return bool(address) and any(start < address < end  # type: ignore[operator]
                                     for arena in self.arenas
                                     for start, end in model.heap_spans(self.reader, arena, self.mp.sbrk_base))

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

    def all_tcache_chains(self) -> List[BinChain]:
        """Every thread's tcache bins, the selected thread's first (the contract: their chunks
        are free, bin tcache)."""
        if self._all_tcache is None:
            self._all_tcache = []
            others = [t.tcache for t in self.threads if not t.selected]
            for address in [self.tcache] + others:
                if address and self._in_a_heap(address):
                    try:
                        self._all_tcache += model.read_tcache(self.reader, self.layout, address, self.mp)
                    except MemoryReadError:
                        continue  # its damage is reported where that thread's tcache is shown
        return self._all_tcache

    # -- bins ------------------------------------------------------------------------------
    def bins(self, arena: Arena, kinds: Sequence[str] = model.BIN_KINDS) -> Tuple[List[BinChain], List[Problem]]:
        """The arena's non-empty bins; tcache only in the selected thread's arena (contract)."""
        key = self._bins_key(arena, kinds)
        if key not in self._chains:
            tcache = self.tcache if arena is self.selected_arena() else None
            self._chains[key] = model.read_bins(self.reader, self.layout, arena.state, tcache, self.mp, kinds,
                                                self.anchors.single_thread)
        return self._chains[key]

    @staticmethod
    def _bins_key(arena: Arena, kinds: Sequence[str]) -> Tuple[int, Tuple[str, ...]]:
        return arena.address, tuple(kinds)

    @staticmethod
    def free_kinds() -> Tuple[str, ...]:
        """The kinds free_index follows in the arena (tcache: every thread's, apart)."""
        return tuple(k for k in model.BIN_KINDS if k != "tcache")

    def has_bins(self, arena: Arena, kinds: Sequence[str] = model.BIN_KINDS) -> bool:
        """Whether bins(arena, kinds) is known already."""
        return self._bins_key(arena, kinds) in self._chains

    def keep_bins(self, arena: Arena, bins: Tuple[List[BinChain], List[Problem]],
                  kinds: Sequence[str] = model.BIN_KINDS) -> None:
        """bins(arena, kinds) as a helper found them (walk_ahead)."""
        self._chains.setdefault(self._bins_key(arena, kinds), bins)

    def free_index(self, arena: Arena) -> FreeIndex:
        """The arena's free chunks and every thread's tcache's (tcache belongs to threads, not
        to arenas, and names a chunk a bin lists too)."""
        if arena.address not in self._free:
            chains, _ = self.bins(arena, self.free_kinds())
            self._free[arena.address] = model.free_index(self.all_tcache_chains() + chains)
        return self._free[arena.address]

    def walk_and_index(self, arena: Arena, problems: List[Problem],
                       reads: bool = False,
                       each: Optional[Callable[[model.Batch], None]] = None) -> Tuple[FreeIndex, Iterator[model.Batch]]:
        """The arena's free index and its chunk_batches, the two worked out at once (walk_ahead;
        `reads`: the caller reads each batch's chunks; `each`: given each batch as it is walked)."""
        free, walk, _ = self.walk_index_split(arena, problems, reads, each)
        return free, walk

    def walk_index_split(self, arena: Arena, problems: List[Problem], reads: bool = False,
                         each: Optional[Callable[[model.Batch], None]] = None, tail: Optional[Tail] = None,
                         tail_from: float = TAIL_FROM, bins: bool = True, keep: Optional[int] = None
                         ) -> Tuple[FreeIndex, Iterator[model.Batch], Optional[Split]]:
        """walk_and_index, and with `tail`: the helper, once it has sent its answer, also walks
        the region holding top from a chunk its bins list (`tail_from` of the way) to top, and
        runs `tail` on those batches (Split: the caller's to finish or cancel).  Its output
        stands for the caller's own from that chunk on only where gdb's walk, given up to it,
        meets that chunk, and the helper's walk found nothing wrong.  `bins` False: the caller
        will not ask for the bins, so the helper does not send them (millions of addresses).
        `keep`: walk_ahead's `keep`."""
        kinds = self.free_kinds()
        key = self._bins_key(arena, kinds)
        region = self._tail_region(arena) if tail is not None and self._helper_worth(arena) else None
        top = arena.state.top

        def work() -> IndexAnswer:
            index = self.free_index(arena)
            return (self._chains[key] if bins else None, index,
                    None if region is None else _tail_start(index, region, top, tail_from))

        file: Optional[BinaryIO] = None
        then: Optional[Callable[[IndexAnswer], None]] = None
        try:
            file = tempfile.TemporaryFile() if tail is not None and region is not None else None
        except OSError:  # no room for the helper's part (a full or read-only temporary folder): gdb's work
            file = region = None
        if tail is not None and region is not None and file is not None:
            out = file

            def then(answer: IndexAnswer) -> None:  # in the helper, after its answer
                start = answer[2]
                if start is None:
                    return
                mine: List[Problem] = []
                tail(self.reader, answer[1], model.walk_region_batches(
                    self.reader, self.layout, replace(region, first_chunk=start), top, mine), out)
                out.flush()
                if mine:  # gdb's walk says so, in order
                    raise HeapError("the walk's tail is damaged")

        kept = Kept()  # Split.drop_kept
        try:
            answer, walk, job = self.walk_ahead(arena, problems, work, ready=arena.address in self._free, reads=reads,
                                                each=each, then=then, holding=kept, keep=keep)
        except BaseException:
            if file is not None:
                file.close()
            raise
        split = None
        if job is not None and answer is not None and answer[2] is not None and file is not None and region:
            # where a walk's progress is at start, and its whole, as region_batches shows them
            regions = arena.heaps if arena.loaded else [region]
            before = sum(r.end - r.first_chunk for r in regions if r.first_chunk < region.first_chunk)
            split = Split(answer[2], region, job, file, before, sum(r.end - r.first_chunk for r in regions), kept)
        elif job is not None:
            job.cancel()
        if file is not None and split is None:
            file.close()
        if answer is not None and arena.address not in self._free:  # (a walk's resync may have made it)
            chains, self._free[arena.address], _ = answer
            if chains is not None:
                self.keep_bins(arena, chains, kinds)
        return self.free_index(arena), (batch for _, batch in walk) if split is None else split.watch(walk), split

    def walk_spans(self, arena: Arena) -> List[Tuple[int, int]]:
        """(first chunk, end) of each region region_chunk_batches gives, as it will give them:
        the main heap's usual single region until its regions are known."""
        if arena.main and not arena.loaded:
            region = model.contiguous_main_region(self.reader, self.layout, arena.state, self.mp)
            if region is not None:
                return [(region.first_chunk, region.end)]
        return [(r.first_chunk, r.end) for r in arena.heaps]

    def _tail_region(self, arena: Arena) -> Optional[HeapRegion]:
        """The region a walk of the arena gives last, if it holds top (where a helper may do the
        walk's tail): the main heap's usual single region, or its last region, or a thread
        arena's newest heap."""
        if arena.main and not arena.loaded:
            region = model.contiguous_main_region(self.reader, self.layout, arena.state, self.mp)
        else:
            region = arena.heaps[-1] if arena.heaps else None
        return region if region is not None and region.first_chunk < arena.state.top < region.end else None

    def walk_ahead(self, arena: Arena, problems: List[Problem], work: Callable[[], T], ready: bool = False,
                   reads: bool = False, each: Optional[Callable[[model.Batch], None]] = None,
                   then: Optional[Callable[[T], None]] = None, holding: Optional[Kept] = None,
                   keep: Optional[int] = None, sizes: bool = True
                   ) -> Tuple[Optional[T], Iterator[Tuple[HeapRegion, model.Batch]], Optional[helper.Job[T]]]:
        """`work`'s answer (following bins, built from this heap) and the arena's
        region_chunk_batches, the two at once on a big heap of a live process: a helper runs
        `work` (helper.py, over its own reader of the process's memory) while gdb walks the
        heap, keeping the batches (compact arrays) until the answer comes; then the batches
        walked so far (`reads`: the caller reads each batch's chunks, so the memory they lie
        in is read again, in big runs, as they are given), then the rest of the walk.  None
        for the answer when the helper was not worth it (`ready`: the answer is at hand; a
        small heap), not possible or failed: the caller works it out itself.  `each` is given
        each batch as it is walked (what needs no answer is done while the helper works).
        `then`: the helper goes on with it after its answer; the job, still at it, is returned
        then (the caller's to finish or cancel).  `holding` holds the batches kept; once it is
        dropped, they are not given: only those walked after the answer (`each` has had them all).  `keep`: the
        bytes of kept batches up to which their addresses are kept too (KEEP_ADDRESSES).  `sizes`
        False: `each` is all the caller wants of the size fields, so the kept batches keep their
        addresses alone (8 bytes a chunk, however many) and are given with no sizes."""
        walk = self.region_chunk_batches(arena, problems)
        if each is not None:
            walk = _given(walk, each)
        job = None if ready or not self._helper_worth(arena) else self._job(work, then)
        if job is None:
            return None, walk, None
        store = holding if holding is not None else Kept()
        held = store.batches
        shown, mark = self.progress, _Mark()
        held_bytes = 0  # what the kept batches take
        self.progress = mark  # the progress shown is the consumer's: as each batch is given
        self.reader.walk_fills_cache = False
        answer: Optional[T] = None
        try:
            for region, (addresses, fields) in walk:
                whole = not sizes or held_bytes < (KEEP_ADDRESSES if keep is None else keep)
                held_bytes += len(fields) * (12 if whole else 4)
                held.append((region, model.pack_batch(addresses, fields if sizes else [], whole), mark.at))
                if not len(held) % ASK_EVERY and job.ready():
                    break
            answer = job.result()
        finally:
            self.progress = shown
            self.reader.walk_fills_cache = True
            if then is None or answer is None:
                job.cancel()
        held.reverse()

        def kept() -> Iterator[Tuple[HeapRegion, model.Batch]]:
            while held:  # popped: each batch's memory goes as it is given
                if store.dropped:
                    held.clear()
                    return
                region, packed, at = held.pop()
                shown.walked(*at)
                if reads and packed[2]:
                    self.reader.walk_again(packed[0] + self.layout.size_sz)
                yield region, model.unpack_batch(packed)

        return answer, chain(kept(), walk), None if then is None or answer is None else job

    def _helper_worth(self, arena: Arena) -> bool:
        """Whether the arena is big enough for a helper (set heap helper-min)."""
        return bool(self.helper_min_mib) and arena.state.system_mem >= self.helper_min_mib << 20

    def _job(self, work: Callable[[], T], then: Optional[Callable[[T], None]] = None) -> Optional[helper.Job[T]]:
        """A helper running `work` (then `then`) with this heap reading the process through its
        own file (none on one processor: it would only take turns with gdb)."""
        if helper.cores() < 2:
            return None
        fd = self.anchors.memory_file()
        if fd is None:
            return None
        try:
            self.all_tcache_chains()  # gdb's part (every thread's tcache) here: the child must not ask gdb
            self.selected_arena()
            reader = Reader(FileMemory(fd), self.reader.size_sz, self.reader.order == "little")

            def run() -> T:
                self.reader = reader
                return work()

            return helper.start(run, then)
        finally:
            os.close(fd)  # the child has its own copy

    # -- chunks ----------------------------------------------------------------------------
    def resync(self, arena: Arena) -> model.Resync:
        """Where the arena's walk picks up after damage: the chunks its bins and every thread's
        tcache list (read only when a walk breaks)."""
        if arena.address not in self._resync:
            self._resync[arena.address] = model.Resync(lambda: {
                chunk: model.bin_label(kind, index) for chunk, (kind, index) in self.free_index(arena).items()})
        return self._resync[arena.address]

    def region_batches(self, arena: Arena, region: HeapRegion, problems: List[Problem]) -> Iterator[model.Batch]:
        """Batches of one heap region's chunks: the one walk every command uses, carrying on
        after damage where the bins say the heap resumes."""
        total = sum(r.end - r.first_chunk for r in arena.heaps)
        before = sum(r.end - r.first_chunk for r in arena.heaps if r.first_chunk < region.first_chunk)
        for batch in model.walk_region_batches(self.reader, self.layout, region, arena.state.top, problems,
                                               self.resync(arena)):
            if batch[0]:
                self.progress.walked(before + batch[0][-1] - region.first_chunk, total)
            yield batch

    def has_heap(self, arena: Arena) -> bool:
        """Whether the arena has chunks (a region), told without walking an unwalked main heap."""
        if arena.main and not arena.loaded:
            return model.heap_initialised(self.layout, arena.state) and self.mp.sbrk_base != 0
        return bool(arena.heaps)

    def chunk_batches(self, arena: Arena, problems: List[Problem]) -> Iterator[model.Batch]:
        """Batches of the arena's chunks (addresses, size fields), oldest heap first."""
        for _, batch in self.region_chunk_batches(arena, problems):
            yield batch

    def region_chunk_batches(self, arena: Arena,
                             problems: List[Problem]) -> Iterator[Tuple[HeapRegion, model.Batch]]:
        """(region, batch) for each batch of the arena's chunks, oldest heap first.

        A main heap whose regions are not known yet is walked once, as the usual single region,
        which that walk itself proves (finding the regions first would walk the heap twice).
        Otherwise its regions are found and the walk goes on past the chunks already given: up
        to where the first walk broke, both walks follow the same sizes from the same chunk."""
        skip = 0
        if arena.main and not arena.loaded:
            region = model.contiguous_main_region(self.reader, self.layout, arena.state, self.mp)
            if region is not None:
                given = yield from self._single_region(arena, region)
                if given is None:
                    return
                skip = given
        for region in arena.heaps:
            for addresses, sizes in self.region_batches(arena, region, problems):
                if skip:
                    k = min(skip, len(addresses))
                    skip -= k
                    addresses, sizes = addresses[k:], sizes[k:]
                    if not addresses:
                        continue
                yield region, (addresses, sizes)

    def _single_region(self, arena: Arena,
                       region: HeapRegion) -> Generator[Tuple[HeapRegion, model.Batch], None, Optional[int]]:
        """Walks `region` as the main heap's only region, one batch behind (the last batch is
        given only once the walk proved the region); returns None when it did, else how many
        chunks it gave."""
        mine: List[Problem] = []
        held: Optional[model.Batch] = None
        given = 0
        total = region.end - region.first_chunk
        for batch in model.walk_region_batches(self.reader, self.layout, region, arena.state.top, mine):
            if held is not None:
                given += len(held[0])
                yield region, held
            held = batch
            if batch[0]:
                self.progress.walked(batch[0][-1] - region.first_chunk, total)
        if not model.confirms_single_region(held, arena.state.top, mine):
            return given
        arena.found([region])
        if held is not None:
            yield region, held
        return None

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
                found = self._walk_to(arena, region, address)
                if found is not None:
                    return found
        found = self._mmapped_at(address)
        if found is not None:
            return found
        if not self.reader.readable(address):
            raise HeapError(f"{address:#x} is not in any heap of this process; that memory is not readable "
                            "(the process or the core file lacks it): give a chunk address or a pointer malloc "
                            "returned (heap chunks lists them)")
        raise HeapError(f"{address:#x} is not in any heap of this process; give a chunk address or a "
                        "pointer malloc returned (heap chunks lists them)")

    def chunk_where(self, address: int) -> Where:
        """The chunk `heap chunk ADDR` shows: the walked chunk holding the address (where()),
        except where no walk vouches for it: then the header at the address itself (or one
        header before it: a user pointer), inside a heap or not, with why no walk reached it,
        its problems and where it lives."""
        try:
            where = self.where(address)
        except HeapError:
            direct = self.header_at(address, None)
            if direct is None:
                raise
            return direct
        if where.size_checked or where.how != "inside" or where.arena is None:
            return where
        return self.header_at(address, where) or where

    def header_at(self, address: int, broken: Optional[Where]) -> Optional[Where]:
        """The chunk header at `address` (or at address - 2 * SIZE_SZ, when a bin lists that
        one or only its size is one glibc writes), read as it is; None where it is not
        readable.  `broken`: the walked chunk whose bad size covers the address."""
        L, H, S = self.layout, self.layout.header_size, self.layout.size_sz

        def named(chunk: int) -> Optional[Tuple[str, int]]:  # the first arena's bins that list it
            return next((p for p in (self.free_index(one).get(chunk) for one in self.arenas) if p), None)

        def plausible(chunk: int) -> bool:
            try:
                return model.plausible_size(L, self.reader.word(chunk + S))
            except MemoryReadError:
                return False
        user = address - H
        chunk = next((c for c in (user, address) if named(c)), None) or \
            next((c for c in (user, address) if plausible(c)), address)
        try:
            sizef = self.reader.word(chunk + S)
        except MemoryReadError:
            return None
        region = next(((a, r) for a in self.arenas for r in a.heaps if r.first_chunk <= chunk < r.end), None)
        arena = region[0] if region else None  # outside every heap: no arena's (a bin may still list it)
        kind, index = named(chunk) or (None, None)
        state = "top" if arena is not None and chunk == arena.state.top else "free" if kind else "in_use"
        where = Where(address, chunk, sizef, H, arena, state, kind, index, size_checked=False, reached=False)
        if broken is not None:
            where.notes.append(f"not reached by the heap walk: it lies inside chunk {broken.chunk:#x}, whose size "
                               f"{broken.size_field & ~model.SIZE_BITS:#x} broke the walk (heap check); this is the "
                               "header as memory holds it")
        elif region is not None:
            where.notes.append(f"not reached by the heap walk of the region {region[1].start:#x}-{region[1].end:#x}: "
                               "the walk broke before it (heap check); this is the header as memory holds it")
        else:
            maps = self.anchors.mappings()[0]
            m = containing(maps, chunk)
            sym = self.anchors.symbol(chunk)
            text = sym.text if sym is not None else None
            where.location = (Location(m.path or "anonymous", m.start, m.end, text) if m
                              else Location(None, None, None, text))
            where.notes.append(f"outside every heap: in {where.location.text()}")
            if kind is not None:
                where.problems.append(Problem(chunk, f"{model.bin_label(kind, index or 0)} lists chunk {chunk:#x}, "
                                                     "which lies outside every heap (a forged chunk)"))
        if (chunk + H) % L.malloc_alignment:
            where.problems.append(Problem(chunk, f"chunk {chunk:#x} is not aligned to {L.malloc_alignment} "
                                                 "bytes as glibc's chunks are"))
        if not model.plausible_size(L, sizef):
            where.problems.append(Problem(chunk, f"chunk {chunk:#x} has size field {sizef:#x}, not one glibc "
                                                 f"writes for a heap chunk (at least {L.minsize:#x}, a multiple of "
                                                 f"{L.malloc_alignment}, IS_MMAPPED clear)"))
        return where

    def _walk_to(self, arena: Arena, region: HeapRegion, address: int) -> Optional[Where]:
        """The walked chunk of `region` holding `address`: the last one starting at or before
        it, if its size reaches the address (a chunk before a gap the walk skipped reaches no
        further than the gap: its size is what broke the walk)."""
        H = self.layout.header_size
        last: Optional[Tuple[int, int]] = None
        before: Optional[Tuple[int, int]] = None
        nxt: Optional[int] = None
        problems: List[Problem] = []
        for chunk, sizef in model.walk_region(self.reader, self.layout, region, arena.state.top, problems,
                                              self.resync(arena)):
            if chunk > address:
                nxt = chunk
                break
            before, last = last, (chunk, sizef)
        if last is None:
            return None
        chunk, sizef = last
        size = sizef & ~model.SIZE_BITS
        if not address < chunk + max(H + 1, size):
            return None
        state, kind, index = model.classify(chunk, arena.state.top, self.free_index(arena))
        # The chunk before it is its neighbour only where the walk did not skip in between.
        prev = before[0] if before is not None and before[0] + (before[1] & ~model.SIZE_BITS) == chunk else None
        where = Where(address, chunk, sizef, H, arena, state, kind, index, prev)
        where.size_checked = chunk == arena.state.top or nxt == chunk + size
        where.problems = [p for p in problems if p.address == chunk]  # the walk broke on its size
        return where

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
