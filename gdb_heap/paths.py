"""glibc's malloc and free paths, version by version, as functions of the memory image.

What would free(p) or malloc(n) do now?  This module runs glibc's own steps (malloc/malloc.c's
__libc_free, _int_free and its 2.39+ pieces, __libc_malloc, _int_malloc, unlink_chunk,
malloc_consolidate, systrim) over a copy-on-write view of the inferior's memory: every read
goes to the memory image unless the path wrote that word first, and nothing is written to
the inferior.  Checks run in glibc's order for the version; a failing one ends the path with
its message from glibc_checks' table (by name: a check that version lacks is skipped).  Only
the bins and the chunk's neighbours are read, so a heap of a million chunks costs nothing
more, except malloc_consolidate, which visits every fast chunk and its neighbours; every loop is
bounded (glibc's own MAX_ITERS for the unsorted bin, a budget of reads that grows with the
chunks a heap-sized loop visits, up to what the arena's memory holds).

Version rules come from layouts.py's features (fastbins, tcache counts vs num_slots, the
tcache key, safe-linking) and from the releases glibc_checks records for each message; the
rest is named here where it changed: 2.30 (tcache counts checked instead of entries), 2.41
(small chunks freed straight to their small bin), 2.42 (__libc_free's new order, the
double-free walk over every tcache bin then a retry), 2.43 (no fastbins, no consolidation).
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Set, Tuple

from . import glibc_checks as gc
from .errors import MemoryReadError
from .layouts import NBINS, NSMALLBINS, GlibcLayout
from .memory import PAGE, Reader
from .model import (IS_MMAPPED, NON_MAIN_ARENA, PREV_INUSE, SIZE_BITS, MallocPar, StructBytes, bin_at, bin_label,
                    heap_for_ptr, heap_initialised, read_malloc_state)

if TYPE_CHECKING:
    from .heap import Heap

MAX_ITERS = 10000  # _int_malloc's bound on the unsorted bin loop
BUDGET = 1 << 18  # words read or written by one prediction besides its heap-sized loops' grants
# A loop whose length is the heap's (malloc_consolidate over every fast chunk, the unsorted
# bin's MAX_ITERS, a large bin's nextsize list) grants this many more words per chunk it
# visits (malloc_consolidate's worst step, two unlinks of large chunks, is about 70), and
# visits at most the chunks the arena's memory can hold (system_mem / MINSIZE): the budget
# grows with the heap and stays bounded.  A walk back to a chunk it met ends sooner: a list
# glibc only reads loops forever; malloc_consolidate, which rewrites what it met, gives up
# once it has met as many chunks again as it met at all.
WORDS_PER_CHUNK = 96
MAX_ARENA_BYTES = 1 << 40  # system_mem above this is damage: the bound on chunks stays finite
LOOKAHEAD = 1 << 12  # bytes read in one go from a chunk malloc_consolidate visits (its neighbours)
FASTBIN_CONSOLIDATION_THRESHOLD = 65536
BINMAPSHIFT = 5
MMAP_HP = 0x1  # 2.43: prev_size's flag for a huge-page mapping


def misaligned_chunk(L: GlibcLayout, p: int) -> bool:
    return bool((p if L.malloc_alignment == L.header_size else p + L.header_size) & (L.malloc_alignment - 1))


class Abort(Exception):
    """glibc's malloc_printerr: the path ends with this message."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name, self.text = name, text


class Crash(Exception):
    """The path reads memory the process does not have: glibc would fault (SIGSEGV)."""


class GaveUp(Exception):
    """The budget of reads ran out, or a walk came back to a chunk: a loop glibc itself may never
    leave."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@dataclass
class Context:
    """What the paths need besides memory: the arenas, mp_ and the calling thread."""

    layout: GlibcLayout
    main_arena: int
    mp: MallocPar
    tcache: Optional[int]  # the calling thread's tcache_perthread_struct (None: none yet)
    tcache_key: Optional[int] = None  # 2.34+'s random key, where known
    thread_arena: Optional[int] = None  # the arena a malloc of this thread uses
    global_max_fast: Optional[int] = None  # None: glibc's default (DEFAULT_MXFAST's chunk size)
    n_mmaps_max: int = 65536
    pagesize: int = PAGE
    single_thread: bool = True  # glibc's SINGLE_THREAD_P: no pthread_create yet (then never again)
    tcache_only: bool = False  # end the path where it leaves the thread's tcache (the trace's one-stop calls)


@dataclass
class Outcome:
    """A prediction: the steps, and how the path ends."""

    steps: List[str] = field(default_factory=list)
    side_effects: List[str] = field(default_factory=list)
    aborts: Optional[str] = None
    failed_check: Optional[str] = None  # the glibc_checks name of the failing check
    crashes: Optional[str] = None  # a read of unreadable memory (SIGSEGV), where glibc would fault
    gave_up: bool = False


@dataclass
class FreeResult(Outcome):
    address: int = 0  # the pointer given to free
    chunk: int = 0
    to: Optional[str] = None  # tcache[i], fast[i], small[i], unsorted, top, munmap, (nothing: aborts)
    bin_index: Optional[int] = None
    merged_with: List[int] = field(default_factory=list)
    top_after: Optional[int] = None
    trimmed: int = 0


@dataclass
class MallocResult(Outcome):
    request: int = 0
    chunk: Optional[int] = None
    user_address: Optional[int] = None
    source: Optional[str] = None  # "from": tcache, fast, small, unsorted, large, last_remainder, top, mmap
    bin_index: Optional[int] = None
    top_after: Optional[int] = None  # the arena's top once the call returns (None: unknown, sysmalloc)
    call: str = "malloc"  # malloc, calloc or realloc


class Sim:
    """A copy-on-write view of memory and one arena's state, with glibc's steps as methods."""

    def __init__(self, reader: Reader, ctx: Context, out: Outcome) -> None:
        self.reader, self.ctx, self.out = reader, ctx, out
        L = self.L = ctx.layout
        self.v = L.version
        self.S, self.H = L.size_sz, L.header_size
        self.mask = L.malloc_alignment - 1
        self.wrap = (1 << (8 * self.S)) - 1
        self.written: Dict[int, int] = {}
        self.budget = self.granted = BUDGET
        # A run of memory read in one go (look_ahead), as words: consolidation's neighbours.
        self.ahead: Sequence[int] = ()
        self.ahead_start = self.ahead_len = 0
        self.native = reader.order == sys.byteorder
        self.shift, self.word_bits = self.S.bit_length() - 1, self.S - 1
        self.capacity: Optional[int] = None
        self.tcache = ctx.tcache
        self.av = ctx.main_arena
        ms = L.malloc_state
        self.off_top, self.off_lr = ms.offset("top"), ms.offset("last_remainder")
        self.off_binmap, self.off_sysmem = ms.offset("binmap"), ms.offset("system_mem")
        self.off_fast = ms.offset("fastbinsY") if ms.has("fastbinsY") else None
        self.off_hfc = ms.offset("have_fastchunks") if ms.has("have_fastchunks") else None
        tp = L.tcache_perthread
        self.t_counts, self.t_csize, _ = tp.fields[L.counts_field] if L.features.tcache else (0, 1, 0)
        self.t_entries = tp.offset("entries") if L.features.tcache else 0

    # -- memory ------------------------------------------------------------------------------
    def word(self, address: int) -> int:
        self.budget -= 1
        if self.budget < 0:
            raise GaveUp(f"gave up after {self.granted} memory words: the path loops in damaged links")
        address &= self.wrap
        got = self.written.get(address)
        if got is not None:
            return got
        off = address - self.ahead_start
        if 0 <= off < self.ahead_len and not off & self.word_bits:
            return self.ahead[off >> self.shift]
        try:
            return self.reader.word(address)
        except MemoryReadError:
            raise Crash(f"reads {address:#x}, which is not mapped: SIGSEGV") from None

    def look_ahead(self, p: int) -> None:
        """The memory from chunk p on, read in one go (the Reader's cached block, or one read
        past its room): malloc_consolidate reads p's header, its next chunk's and the one after,
        mostly within a page, for every fast chunk of the heap."""
        if not self.native:
            return
        try:
            start, data = self.reader.span(p, LOOKAHEAD)
        except MemoryReadError:
            return  # near the end of a mapping: word by word
        if start % self.S:
            return
        view = memoryview(data).cast("B")
        usable = len(view) - len(view) % self.S
        self.ahead = view[:usable].cast("Q" if self.S == 8 else "I")
        self.ahead_start, self.ahead_len = start, usable

    def chunk_capacity(self) -> int:
        """How many chunks the arena's memory (system_mem) holds at most: no honest walk of its
        chunks visits more."""
        if self.capacity is None:
            self.capacity = min(self.system_mem, MAX_ARENA_BYTES) // self.L.minsize + 1
        return self.capacity

    def grant(self) -> None:
        """One more chunk on a heap-sized walk: WORDS_PER_CHUNK more words to read or write."""
        self.budget += WORDS_PER_CHUNK
        self.granted += WORDS_PER_CHUNK

    def walk_to(self, seen: Set[int], p: int, what: str) -> None:
        """One more chunk on a walk glibc makes without writing (a list it searches): met before,
        the walk never ends; else its words granted, at most chunk_capacity chunks."""
        if p in seen or len(seen) >= self.chunk_capacity():
            raise GaveUp(f"gave up: {what} comes back to {p:#x} (a list that loops)" if p in seen else
                         f"gave up: {what} is longer than the arena's memory holds")
        seen.add(p)
        self.grant()

    def put(self, address: int, value: int) -> None:
        """A write: it costs no budget, as every loop reads to go on."""
        self.written[address & self.wrap] = value & self.wrap

    def small(self, address: int, size: int) -> int:
        """A tcache count (char or uint16), through the written words' bytes."""
        base = address - address % self.S
        raw = self.word(base).to_bytes(self.S, "little")
        k = address - base
        return int.from_bytes(raw[k:k + size], "little")

    def put_small(self, address: int, size: int, value: int) -> None:
        base = address - address % self.S
        raw = bytearray(self.word(base).to_bytes(self.S, "little"))
        k = address - base
        raw[k:k + size] = (value % (1 << (8 * size))).to_bytes(size, "little")
        self.put(base, int.from_bytes(raw, "little"))

    def check(self, failed: bool, name: str) -> None:
        """malloc_printerr(name) if `failed` and this glibc has that check."""
        if failed:
            text = gc.text(name, self.v)
            if text is not None:
                raise Abort(name, text)

    def effect(self, text: str) -> None:
        self.out.side_effects.append(text)
        self.out.steps.append(text)

    # -- chunks ------------------------------------------------------------------------------
    def sizef(self, p: int) -> int:
        return self.word(p + self.S)

    def size(self, p: int) -> int:
        return self.sizef(p) & ~SIZE_BITS

    def set_head(self, p: int, v: int) -> None:
        self.put(p + self.S, v)

    def set_foot(self, p: int, s: int) -> None:
        self.put(p + s, s)

    def fd(self, p: int) -> int:
        return self.word(p + self.H)

    def bk(self, p: int) -> int:
        return self.word(p + self.H + self.S)

    def set_fd(self, p: int, v: int) -> None:
        self.put(p + self.H, v)

    def set_bk(self, p: int, v: int) -> None:
        self.put(p + self.H + self.S, v)

    def fdn(self, p: int) -> int:
        return self.word(p + self.H + 2 * self.S)

    def bkn(self, p: int) -> int:
        return self.word(p + self.H + 3 * self.S)

    def set_fdn(self, p: int, v: int) -> None:
        self.put(p + self.H + 2 * self.S, v)

    def set_bkn(self, p: int, v: int) -> None:
        self.put(p + self.H + 3 * self.S, v)

    def misaligned(self, mem: int) -> bool:
        """!aligned_OK(mem): a user pointer (a tcache entry)."""
        return bool(mem & self.mask)

    def misaligned_chunk(self, p: int) -> bool:
        """misaligned_chunk(p): the chunk itself where MALLOC_ALIGNMENT is CHUNK_HDR_SZ, else its
        user pointer (i386: 16-byte alignment, 8-byte headers)."""
        return misaligned_chunk(self.L, p)

    def protect(self, pos: int, ptr: int) -> int:
        return ((pos >> 12) ^ ptr) if self.L.features.safe_linking else ptr

    def reveal(self, pos: int, stored: int) -> int:
        return self.L.reveal_ptr(pos, stored)

    # -- the arena ---------------------------------------------------------------------------
    @property
    def top(self) -> int:
        return self.word(self.av + self.off_top)

    def set_top(self, p: int) -> None:
        self.put(self.av + self.off_top, p)

    @property
    def system_mem(self) -> int:
        return self.word(self.av + self.off_sysmem)

    @property
    def is_main(self) -> bool:
        return self.av == self.ctx.main_arena

    def contiguous(self) -> bool:
        return not self.small(self.av + 4, 4) & 2  # malloc_state.flags: NONCONTIGUOUS_BIT

    def bin(self, i: int) -> int:
        return bin_at(self.L, self.av, i)

    def mark_bin(self, i: int) -> None:
        at = self.av + self.off_binmap + (i >> BINMAPSHIFT) * 4
        self.put_small(at, 4, self.small(at, 4) | 1 << (i & 31))

    def fastbin_slot(self, i: int) -> int:
        assert self.off_fast is not None
        return self.av + self.off_fast + i * self.S

    def max_fast(self) -> int:
        if not self.L.features.fastbins:
            return 0
        if self.ctx.global_max_fast is not None:
            return self.ctx.global_max_fast
        return self.L.default_max_fast

    def have_fastchunks(self) -> bool:
        if not self.L.features.fastbins:
            return False
        if self.off_hfc is not None:
            return bool(self.small(self.av + self.off_hfc, 4))
        return not self.small(self.av + 4, 4) & 1  # 2.26: FASTCHUNKS_BIT clear in flags

    def set_have_fastchunks(self, on: bool) -> None:
        if self.off_hfc is not None:
            self.put_small(self.av + self.off_hfc, 4, int(on))
        elif self.L.features.fastbins:
            flags = self.small(self.av + 4, 4)
            self.put_small(self.av + 4, 4, flags & ~1 if on else flags | 1)

    # -- tcache ------------------------------------------------------------------------------
    def tidx(self, size: int) -> int:
        return self.L.csize2tidx(size)

    def count_at(self, i: int) -> int:
        assert self.tcache is not None
        return self.small(self.tcache + self.t_counts + i * self.t_csize, self.t_csize)

    def chunks_in(self, i: int) -> int:
        """How many chunks tcache bin i holds by its counter."""
        n = self.count_at(i)
        return max(0, self.ctx.mp.tcache_count - n) if self.L.features.tcache_free_slots else n

    def has_room(self, i: int) -> bool:
        if self.L.features.tcache_free_slots:
            return self.count_at(i) != 0
        return self.count_at(i) < self.ctx.mp.tcache_count

    def entry(self, i: int) -> int:
        assert self.tcache is not None
        return self.word(self.tcache + self.t_entries + i * self.S)

    def key(self) -> Optional[int]:
        if self.L.tcache_key_is_struct:
            return self.tcache
        return self.ctx.tcache_key

    def tcache_put(self, p: int, i: int) -> None:
        assert self.tcache is not None
        e = p + self.H
        if self.L.features.tcache_key:
            k = self.key()
            self.put(e + self.S, k if k is not None else 0)
        self.put(e, self.protect(e, self.entry(i)))
        self.put(self.tcache + self.t_entries + i * self.S, e)
        at = self.tcache + self.t_counts + i * self.t_csize
        delta = -1 if self.L.features.tcache_free_slots else 1
        self.put_small(at, self.t_csize, self.count_at(i) + delta)

    def tcache_get(self, i: int) -> int:
        e = self.entry(i)
        self.check(self.misaligned(e), "TCACHE_UNALIGNED")
        self.put(self.tcache + self.t_entries + i * self.S, self.reveal(e, self.word(e)))  # type: ignore[operator]
        at = self.tcache + self.t_counts + i * self.t_csize  # type: ignore[operator]
        delta = 1 if self.L.features.tcache_free_slots else -1
        self.put_small(at, self.t_csize, self.count_at(i) + delta)
        return e - self.H

    # -- unlink, consolidate, bins -------------------------------------------------------------
    def unlink_chunk(self, p: int) -> None:
        size = self.size(p)
        self.check(size != self.word(p + size), "UNLINK_PREV_SIZE")
        fd, bk = self.fd(p), self.bk(p)
        self.check(self.bk(fd) != p or self.fd(bk) != p, "UNLINK_DLL")
        self.set_bk(fd, bk)
        self.set_fd(bk, fd)
        if not self.L.in_smallbin_range(self.sizef(p)) and self.fdn(p) != 0:
            self.check(self.bkn(self.fdn(p)) != p or self.fdn(self.bkn(p)) != p, "UNLINK_NEXTSIZE")
            if self.fdn(fd) == 0:
                if self.fdn(p) == p:
                    self.set_fdn(fd, fd)
                    self.set_bkn(fd, fd)
                else:
                    self.set_fdn(fd, self.fdn(p))
                    self.set_bkn(fd, self.bkn(p))
                    self.set_bkn(self.fdn(p), fd)
                    self.set_fdn(self.bkn(p), fd)
            else:
                self.set_bkn(self.fdn(p), self.bkn(p))
                self.set_fdn(self.bkn(p), self.fdn(p))

    def malloc_consolidate(self) -> None:
        """Every fast bin's chunks merged with their free neighbours, into the unsorted bin or
        top, in glibc's order.  A heap-sized walk: each chunk grants its words and has its
        neighbourhood read in one go (look_ahead)."""
        self.effect("malloc_consolidate: every fast bin's chunks merged with their free neighbours, "
                    "into the unsorted bin or top")
        self.set_have_fastchunks(False)
        unsorted = self.bin(1)
        seen: Set[int] = set()
        again = 0
        # Locals and direct word offsets: this loop runs once per fast chunk of the heap.
        word, put, check, S, H, wrap = self.word, self.put, self.check, self.S, self.H, self.wrap
        L, top_slot, capacity = self.L, self.av + self.off_top, self.chunk_capacity()
        min_large = L.min_large_size  # in_smallbin_range
        for i in range(L.nfastbins):
            slot = self.fastbin_slot(i)
            p = word(slot)
            put(slot, 0)
            while p:
                if p in seen:
                    again += 1
                    if again > len(seen):
                        raise GaveUp(f"gave up: malloc_consolidate met {again} fast chunks a second time "
                                     "(a fast bin that loops)")
                elif len(seen) < capacity:
                    seen.add(p)
                else:
                    raise GaveUp("gave up: the fast bins hold more chunks than the arena's memory")
                self.grant()
                if not 0 <= p - self.ahead_start <= self.ahead_len - LOOKAHEAD:
                    self.look_ahead(p)
                if misaligned_chunk(L, p):
                    check(True, "CONSOLIDATE_UNALIGNED")
                sizef = word(p + S)
                size = sizef & ~SIZE_BITS
                if L.fastbin_index(size & 0xFFFFFFFF) != i:
                    check(True, "CONSOLIDATE_SIZE")
                nextp = L.reveal_ptr(p + H, word(p + H))
                nextchunk = (p + size) & wrap
                nextsize = word(nextchunk + S) & ~SIZE_BITS
                if not sizef & PREV_INUSE:
                    prevsize = word(p)
                    size += prevsize
                    p = (p - prevsize) & wrap
                    if word(p + S) & ~SIZE_BITS != prevsize:
                        check(True, "CONSOLIDATE_PREV_SIZE")
                    self.unlink_chunk(p)
                if nextchunk != word(top_slot):
                    if not word(nextchunk + nextsize + S) & PREV_INUSE:  # nextinuse
                        size += nextsize
                        self.unlink_chunk(nextchunk)
                    else:
                        put(nextchunk + S, word(nextchunk + S) & ~PREV_INUSE)
                    first = word(unsorted + H)
                    put(unsorted + H, p)  # unsorted_bin->fd
                    put(first + H + S, p)  # first->bk
                    if size >= min_large:
                        put(p + H + 2 * S, 0)  # fd_nextsize
                        put(p + H + 3 * S, 0)  # bk_nextsize
                    put(p + S, size | PREV_INUSE)
                    put(p + H + S, unsorted)
                    put(p + H, first)
                    put(p + size, size)  # set_foot
                else:
                    put(p + S, (size + nextsize) | PREV_INUSE)
                    put(top_slot, p)
                p = nextp


# ---------------------------------------------------------------------------------------------
# free


def arena_for_chunk(sim: Sim, p: int) -> int:
    if sim.sizef(p) & NON_MAIN_ARENA:
        return sim.word(heap_for_ptr(sim.L, p))  # heap_info.ar_ptr
    return sim.ctx.main_arena


def try_free(reader: Reader, ctx: Context, mem: int, written: Optional[Dict[int, int]] = None) -> FreeResult:
    """What free(mem) does now.  `written`: a dict that receives the words the path writes
    (the memory after it, where it differs)."""
    S = ctx.layout.size_sz
    p = (mem - 2 * S) & ((1 << (8 * S)) - 1)
    out = FreeResult(address=mem, chunk=p)
    if mem == 0:  # __libc_free: "free(0) has no effect"
        out.steps.append("free(NULL) does nothing")
        return out
    sim = Sim(reader, ctx, out)
    if written is not None:
        sim.written = written
    _run(sim, out, lambda: _free(sim, out, p, True))
    return out


def _run(sim: Sim, out: Outcome, body: Callable[[], None]) -> None:
    try:
        body()
    except Abort as a:
        out.aborts, out.failed_check = a.text, a.name
        out.steps.append(f"abort: {a.text}")
    except Crash as c:
        out.crashes = str(c)
        out.steps.append(f"crash: {c}")
    except GaveUp as g:
        out.gave_up = True
        out.steps.append(g.why)


def _free(sim: Sim, out: FreeResult, p: int, retry: bool, have_lock: bool = False) -> None:
    L, v = sim.L, sim.v
    size = sim.size(p)
    sizef = sim.sizef(p)
    out.steps.append(f"free({p + sim.H:#x}): chunk {p:#x}, size {size:#x}")
    if v >= (2, 42):
        sim.check(sim.misaligned_chunk(p), "FREE_INVALID_POINTER")
        if sim.tcache is not None and size < sim.ctx.mp.tcache_max_bytes:
            if _tcache_free(sim, out, p, size, retry):
                return
        if sim.ctx.tcache_only:
            return
        sim.check(p + ((size - L.minsize) & sim.wrap) > sim.wrap, "FREE_INVALID_SIZE")  # INT_ADD_OVERFLOW
        if sizef & IS_MMAPPED:
            _munmap(sim, out, p, size)
            return
        sim.av = arena_for_chunk(sim, p)
        _int_free_chunk(sim, out, p, size, have_lock)
        return
    if sizef & IS_MMAPPED:
        if not sim.ctx.tcache_only:
            _munmap(sim, out, p, size)
        return
    sim.av = arena_for_chunk(sim, p)
    sim.check(p > (-size & sim.wrap) or sim.misaligned_chunk(p), "FREE_INVALID_POINTER")
    sim.check(size < L.minsize or bool(size & sim.mask), "FREE_INVALID_SIZE")
    out.steps.append("the pointer and size pass: aligned, at least MINSIZE, no wrap")
    if L.features.tcache and sim.tcache is None:
        _tcache_init(sim, out)
    if sim.tcache is not None:
        i = sim.tidx(size)
        if i < sim.ctx.mp.tcache_bins:
            if _tcache_free(sim, out, p, size, retry):
                return
    if not sim.ctx.tcache_only:
        _int_free_chunk(sim, out, p, size, have_lock)


def _tcache_init(sim: Sim, out: Outcome) -> None:
    """tcache_init: the thread's tcache_perthread_struct is malloc'd first (its first call),
    whatever mp_.tcache_count (0 only keeps every chunk out of it)."""
    if sim.v >= (2, 42):
        return
    nb = sim.L.tcache_chunk_size
    sub = MallocResult()
    inner = Sim(sim.reader, sim.ctx, sub)
    inner.written, inner.budget, inner.granted = sim.written, sim.budget, sim.granted
    chunk = _int_malloc(inner, sub, nb)
    sim.budget, sim.granted = inner.budget, inner.granted
    out.steps += [f"tcache_init: {s}" for s in sub.steps]
    if chunk is None:
        return
    mem = chunk + sim.H
    for k in range(0, sim.L.tcache_perthread.size, sim.S):
        sim.put(mem + k, 0)
    sim.tcache = mem
    sim.effect(f"tcache_init: this thread's tcache is allocated at {mem:#x}")


def _tcache_free(sim: Sim, out: FreeResult, p: int, size: int, retry: bool) -> bool:
    """The tcache part of free: the double-free check, then tcache_put if the bin has room."""
    L, v = sim.L, sim.v
    e = p + sim.H
    i = sim.tidx(size)
    if L.features.tcache_key:
        k = sim.key()
        stored = sim.word(e + sim.S)
        if k is None:
            out.steps.append(f"tcache key: unknown (2.34+ keeps it in libc's tcache_key); the chunk's key word "
                             f"{stored:#x} is taken as not the key")
        elif stored == k:
            out.steps.append("the chunk's tcache key matches: glibc walks the tcache for a double free")
            bins = range(L.tcache_bins) if v >= (2, 42) else [i]
            for b in bins:
                tmp, cnt = sim.entry(b), 0
                while tmp:
                    sim.check(cnt >= sim.ctx.mp.tcache_count, "TCACHE_FREE_TOO_MANY")
                    sim.check(sim.misaligned(tmp), "TCACHE_FREE_UNALIGNED")
                    sim.check(tmp == e, "TCACHE_DOUBLE_FREE")
                    tmp, cnt = sim.reveal(tmp, sim.word(tmp)), cnt + 1
            out.steps.append("not found in the tcache: a coincidence")
            if v >= (2, 42):  # the key is cleared and free starts over
                sim.put(e + sim.S, 0)
                if retry:
                    _free(sim, out, p, False)
                    return True
        else:
            out.steps.append("the chunk's tcache key does not match: no double-free walk")
    if v >= (2, 42) and i >= L.features.tcache_small_bins:
        if size < L.minsize or sim.sizef(p) & IS_MMAPPED and v == (2, 42):
            return False
        i = L.tcache_index(size)
    if i >= L.tcache_bins:
        return False
    if sim.has_room(i):
        sim.tcache_put(p, i)
        out.to, out.bin_index = bin_label("tcache", i), i
        out.steps.append(f"tcache[{i}] has room ({sim.chunks_in(i) - 1} of {sim.ctx.mp.tcache_count}): "
                         f"the chunk goes to {out.to}")
        return True
    out.steps.append(f"tcache[{i}] is full ({sim.ctx.mp.tcache_count} chunks)")
    return False


def _munmap(sim: Sim, out: FreeResult, p: int, size: int) -> None:
    offset = sim.word(p)
    if sim.L.features.mmap_chunk_v2:  # mmap_base_offset: prev_size without MMAP_HP; a trailing header
        offset &= ~MMAP_HP
        size += sim.H
    block = p - offset
    total = offset + size
    # From 2.29 the user pointer's offset in its page must be 0 or a power of two too.
    in_page = (p + sim.H) & (sim.ctx.pagesize - 1) if sim.v >= (2, 29) else 0
    sim.check(bool((block | total) & (sim.ctx.pagesize - 1)) or bool(in_page & (in_page - 1)),
              "MUNMAP_INVALID_POINTER")
    out.to = "munmap"
    out.steps.append(f"an mmapped chunk: munmap of {total:#x} bytes at {block:#x}")


def _int_free_chunk(sim: Sim, out: FreeResult, p: int, size: int, have_lock: bool) -> None:
    """have_lock: 1 from realloc's _int_free (av, oldp, 1); free() passes 0."""
    L = sim.L
    if size <= sim.max_fast():  # next to top too: glibc builds with TRIM_FASTBINS 0
        nxt = (p + size) & sim.wrap
        sim.check(sim.sizef(nxt) <= sim.H or sim.size(nxt) >= sim.system_mem, "FREE_FAST_NEXT_SIZE")
        sim.set_have_fastchunks(True)
        i = L.fastbin_index(size)
        slot = sim.fastbin_slot(i)
        old = sim.word(slot)
        sim.check(old == p, "FREE_FASTTOP")
        sim.put(p + sim.H, sim.protect(p + sim.H, old))
        sim.put(slot, p)
        # Only under the arena's lock may glibc read the old head (free() has none yet).
        sim.check(have_lock and old != 0 and L.fastbin_index(sim.size(old) & 0xFFFFFFFF) != i, "FREE_FAST_ENTRY")
        out.to, out.bin_index = bin_label("fast", i), i
        out.steps.append(f"size {size:#x} <= global_max_fast: the chunk goes to {out.to}")
        return
    if sim.sizef(p) & IS_MMAPPED:
        _munmap(sim, out, p, size)
        return
    _merge_chunk(sim, out, p, size)


def _merge_chunk(sim: Sim, out: FreeResult, p: int, size: int) -> None:
    L = sim.L
    nextchunk = (p + size) & sim.wrap
    top = sim.top
    sim.check(p == top, "FREE_TOP")
    sim.check(sim.contiguous() and nextchunk >= top + sim.size(top), "FREE_OUT")
    sim.check(not sim.sizef(nextchunk) & PREV_INUSE, "FREE_PREV")
    nextsize = sim.size(nextchunk)
    sim.check(sim.sizef(nextchunk) <= sim.H or nextsize >= sim.system_mem, "FREE_NEXT_SIZE")
    out.steps.append("top, out, !prev and the next chunk's size pass")
    if not sim.sizef(p) & PREV_INUSE:
        prevsize = sim.word(p)
        size += prevsize
        p = (p - prevsize) & sim.wrap
        sim.check(sim.size(p) != prevsize, "FREE_CONSOLIDATE_PREV_SIZE")
        sim.unlink_chunk(p)
        out.merged_with.append(p)
        sim.effect(f"merged backwards with the free chunk {p:#x} (taken out of its bin)")
    if nextchunk != top:
        if not sim.sizef(nextchunk + nextsize) & PREV_INUSE:
            sim.unlink_chunk(nextchunk)
            size += nextsize
            out.merged_with.append(nextchunk)
            sim.effect(f"merged forwards with the free chunk {nextchunk:#x} (taken out of its bin)")
        else:
            sim.set_head(nextchunk, sim.sizef(nextchunk) & ~PREV_INUSE)
        to_small = L.in_smallbin_range(size) and gc.text("SMALLBIN_INSERT_FREE", sim.v) is not None
        if to_small:
            i = L.smallbin_index(size)
            bck = sim.bin(i)
            fwd = sim.fd(bck)
            sim.check(sim.bk(fwd) != bck, "SMALLBIN_INSERT_FREE")
            sim.mark_bin(i)
            out.to, out.bin_index = bin_label("small", i), i
        else:
            bck = sim.bin(1)
            fwd = sim.fd(bck)
            sim.check(sim.bk(fwd) != bck, "UNSORTED_INSERT_FREE")
            if not L.in_smallbin_range(size):
                sim.set_fdn(p, 0)
                sim.set_bkn(p, 0)
            out.to, out.bin_index = "unsorted", 1
        sim.set_fd(p, fwd)
        sim.set_bk(p, bck)
        sim.set_fd(bck, p)
        sim.set_bk(fwd, p)
        sim.set_head(p, size | PREV_INUSE)
        sim.set_foot(p, size)
        out.steps.append(f"chunk {p:#x} of size {size:#x} goes to {out.to}")
    else:
        size += nextsize
        sim.set_head(p, size | PREV_INUSE)
        sim.set_top(p)
        out.to = "top"
        out.merged_with.append(nextchunk)
        out.steps.append(f"the next chunk is top: merged into top, which becomes {p:#x} of size {size:#x}")
    threshold_met = size >= FASTBIN_CONSOLIDATION_THRESHOLD
    if threshold_met:
        if sim.have_fastchunks():
            sim.malloc_consolidate()
        _trim(sim, out)
    out.top_after = sim.top


def _split_heads(sim: Sim, victim: int, nb: int, rem: int, rsize: int) -> None:
    """What _int_malloc writes when it splits `victim`: the remainder's nextsize links cleared
    (a large one), both headers and the remainder's footer."""
    if not sim.L.in_smallbin_range(rsize):
        sim.set_fdn(rem, 0)
        sim.set_bkn(rem, 0)
    sim.set_head(victim, nb | PREV_INUSE | (0 if sim.is_main else NON_MAIN_ARENA))
    sim.set_head(rem, rsize | PREV_INUSE)
    sim.set_foot(rem, rsize)


def _trim(sim: Sim, out: FreeResult) -> None:
    """systrim (the main arena) or heap_trim (a thread arena's newest heap; a heap going away is
    only named): the same arithmetic, top's size above trim_threshold less top_pad, in pages."""
    mp = sim.ctx.mp
    top = sim.top
    top_size = sim.size(top)
    L = sim.L
    if not sim.is_main and top == L.first_chunk(heap_for_ptr(L, top) + L.heap_info.size):
        out.steps.append("heap_trim: top is the heap's first chunk: the heap may be unmapped")
    if top_size < mp.trim_threshold:
        out.steps.append(f"top's size {top_size:#x} is below trim_threshold {mp.trim_threshold:#x}: no trim")
        return
    top_area = top_size - L.minsize - 1
    if top_area <= mp.top_pad:
        return
    extra = (top_area - mp.top_pad) // sim.ctx.pagesize * sim.ctx.pagesize
    if extra == 0:
        return
    sim.set_head(top, (top_size - extra) | PREV_INUSE)
    out.trimmed = extra
    if sim.is_main:
        sim.effect(f"systrim: top {top_size:#x} >= trim_threshold {mp.trim_threshold:#x}: sbrk(-{extra:#x}), "
                   f"top's size becomes {top_size - extra:#x}")
    else:
        sim.effect(f"heap_trim: shrink_heap by {extra:#x}, top's size becomes {top_size - extra:#x}")


# ---------------------------------------------------------------------------------------------
# malloc


def checked_request2size(L: GlibcLayout, n: int) -> Optional[int]:
    if n > (1 << (8 * L.size_sz - 1)) - 1:  # PTRDIFF_MAX
        return None
    return L.request2size(n)


def try_malloc(reader: Reader, ctx: Context, request: int, calloc: bool = False,
               written: Optional[Dict[int, int]] = None) -> MallocResult:
    """What malloc(request) (or calloc, which skips the tcache) does now.  `written`: as try_free's."""
    out = MallocResult(request=request, call="calloc" if calloc else "malloc")
    sim = Sim(reader, ctx, out)
    if written is not None:
        sim.written = written
    if ctx.thread_arena:
        sim.av = ctx.thread_arena

    def body() -> None:
        nb = checked_request2size(sim.L, request)
        if nb is None:
            out.steps.append("the request exceeds PTRDIFF_MAX: NULL, errno ENOMEM")
            return
        out.steps.append(f"{'calloc' if calloc else 'malloc'}({request:#x}): chunk size {nb:#x}")
        # calloc asks the tcache from 2.41 (tcache_try_malloc, then __libc_calloc's own copy)
        if (not calloc or sim.v >= (2, 41)) and _tcache_malloc(sim, out, nb) or ctx.tcache_only:
            return
        _int_malloc(sim, out, nb)
    _run(sim, out, body)
    if out.chunk is not None:
        out.user_address = out.chunk + sim.H
    if out.aborts is None and out.crashes is None and not out.gave_up and not out.steps[-1].startswith("sysmalloc") \
            and not ctx.tcache_only:
        out.top_after = sim.top
    return out


def try_realloc(reader: Reader, ctx: Context, mem: int, request: int) -> MallocResult:
    """What realloc(mem, request) does now: "from" is "in place" (shrunk or already big enough,
    the rest freed), "top" (grown into top), "next" (grown over the free chunk after it), or
    where the malloc of a new chunk takes it from (the old chunk is then freed)."""
    if mem == 0:  # __libc_realloc: "realloc of null is supposed to be same as malloc"
        out = try_malloc(reader, ctx, request)
        out.call = "realloc"
        out.steps.insert(0, "realloc(NULL, n) is malloc(n)")
        return out
    out = MallocResult(request=request, call="realloc")
    sim = Sim(reader, ctx, out)
    S = ctx.layout.size_sz
    oldp = (mem - 2 * S) & sim.wrap

    def body() -> None:
        L = sim.L
        if request == 0:
            out.steps.append("realloc(p, 0) frees p and returns NULL")
            sub = FreeResult(address=mem, chunk=oldp)
            _free(sim, sub, oldp, True)
            _merge_outcome(out, sub)
            return
        oldsize = sim.size(oldp)
        out.steps.append(f"realloc({mem:#x}, {request:#x}): chunk {oldp:#x} of size {oldsize:#x}")
        if not sim.sizef(oldp) & IS_MMAPPED:
            sim.av = arena_for_chunk(sim, oldp)
        sim.check(oldp > (-oldsize & sim.wrap) or sim.misaligned_chunk(oldp), "REALLOC_INVALID_POINTER")
        nb = checked_request2size(L, request)
        if nb is None:
            out.steps.append("the request exceeds PTRDIFF_MAX: NULL, errno ENOMEM")
            return
        if sim.sizef(oldp) & IS_MMAPPED:
            out.steps.append("an mmapped chunk: mremap_chunk (the kernel picks the address)")
            out.source = "mmap"
            return
        sim.check(sim.sizef(oldp) <= sim.H or oldsize >= sim.system_mem, "REALLOC_OLD_SIZE")
        nxt = (oldp + oldsize) & sim.wrap
        nextsize = sim.size(nxt)
        sim.check(sim.sizef(nxt) <= sim.H or nextsize >= sim.system_mem, "REALLOC_NEXT_SIZE")
        flag = 0 if sim.is_main else NON_MAIN_ARENA
        if oldsize >= nb:
            newp, newsize, source = oldp, oldsize, "in place"
        elif nxt == sim.top and oldsize + nextsize >= nb + L.minsize:
            sim.set_head(oldp, (sim.sizef(oldp) & SIZE_BITS) | nb | flag)
            sim.set_top(oldp + nb)
            sim.set_head(oldp + nb, (oldsize + nextsize - nb) | PREV_INUSE)
            sim.effect(f"grown into top: top becomes {oldp + nb:#x}")
            _found(out, oldp, "top")
            return
        elif nxt != sim.top and not sim.sizef(nxt + nextsize) & PREV_INUSE and oldsize + nextsize >= nb:
            sim.unlink_chunk(nxt)
            newp, newsize, source = oldp, oldsize + nextsize, "next"
            sim.effect(f"grown over the free chunk {nxt:#x} after it (taken out of its bin)")
        else:
            newc = _int_malloc(sim, out, nb)
            if newc is None:
                return
            if out.steps[-1].startswith("sysmalloc") and newc == nxt:
                # the heap grows and the chunk is cut at the old top, right after oldp: glibc
                # merges them (newp == next) and splits past memory that is not there yet
                _found(out, oldp, "top")
                return
            if newc == nxt:  # the chunk after it: merged
                newp, newsize, source = oldp, sim.size(newc) + oldsize, "next"
            else:
                sim.effect(f"moved to {newc + sim.H:#x}; the old chunk {oldp:#x} is freed")
                sub = FreeResult(address=mem, chunk=oldp)
                _free_inside(sim, sub, oldp)
                _merge_outcome(out, sub)
                return
        rsize = newsize - nb
        if rsize < L.minsize:
            sim.set_head(newp, (sim.sizef(newp) & SIZE_BITS) | newsize)
            sim.set_head(newp + newsize, sim.sizef(newp + newsize) | PREV_INUSE)
        else:
            rem = newp + nb
            sim.set_head(newp, (sim.sizef(newp) & SIZE_BITS) | nb)
            sim.set_head(rem, rsize | PREV_INUSE | flag)
            sim.set_head(rem + rsize, sim.sizef(rem + rsize) | PREV_INUSE)
            sim.effect(f"the rest {rem:#x} of size {rsize:#x} is freed")
            sub = FreeResult(address=rem + sim.H, chunk=rem)
            _free_inside(sim, sub, rem)
            _merge_outcome(out, sub)
        _found(out, newp, source)

    _run(sim, out, body)
    if out.chunk is not None:
        out.user_address = out.chunk + sim.H
    if out.aborts is None and out.crashes is None and not out.gave_up and out.source != "mmap" and \
            not any(e.startswith("sysmalloc") for e in out.side_effects):
        out.top_after = sim.top  # (after sysmalloc the grown heap's top is not known)
    return out


def _free_inside(sim: Sim, out: FreeResult, p: int) -> None:
    """_int_free (av, p, 1) up to 2.41, with its checks and the tcache; _int_free_chunk from 2.42."""
    if sim.v >= (2, 42):
        _int_free_chunk(sim, out, p, sim.size(p), True)
    else:
        _free(sim, out, p, True, have_lock=True)


def _merge_outcome(out: MallocResult, sub: FreeResult) -> None:
    out.steps += [f"free: {s}" for s in sub.steps]
    out.side_effects += sub.side_effects
    if sub.to:
        out.side_effects.append(f"chunk {sub.chunk:#x} freed to {sub.to}")


def _found(out: MallocResult, chunk: int, source: str, index: Optional[int] = None) -> int:
    out.chunk, out.source, out.bin_index = chunk, source, index
    return chunk


def _tcache_malloc(sim: Sim, out: MallocResult, nb: int) -> bool:
    L, v = sim.L, sim.v
    if not L.features.tcache:
        return False
    if v >= (2, 42):
        if nb >= sim.ctx.mp.tcache_max_bytes or sim.tcache is None:
            return False
        i = sim.tidx(nb)
        if i < L.features.tcache_small_bins:
            if sim.entry(i) == 0:
                return False
        else:
            i = L.tcache_index(nb)
            e = sim.entry(i)
            while e and sim.size(e - sim.H) < nb:  # tcache_location_large
                e = sim.reveal(e, sim.word(e))
            if not e or sim.size(e - sim.H) != nb:
                return False
            out.steps.append(f"tcache[{i}] holds a chunk of size {nb:#x}")
            return _found(out, e - sim.H, "tcache", i) is not None and _take_large(sim, i, e)
    else:
        if sim.tcache is None:
            _tcache_init(sim, out)
        i = sim.tidx(nb)
        if i >= sim.ctx.mp.tcache_bins or sim.tcache is None:
            return False
        has = sim.entry(i) != 0 if v < (2, 30) else sim.count_at(i) > 0
        if not has:
            return False
    chunk = sim.tcache_get(i)
    out.steps.append(f"tcache[{i}] is not empty: its first chunk")
    _found(out, chunk, "tcache", i)
    return True


def _take_large(sim: Sim, i: int, e: int) -> bool:
    """tcache_get_n on a large tcache bin's entry (2.42+): unlinked from the middle of the list."""
    sim.check(sim.misaligned(e), "TCACHE_UNALIGNED")
    return True


def _int_malloc(sim: Sim, out: MallocResult, nb: int) -> Optional[int]:
    L = sim.L
    if nb <= sim.max_fast():
        got = _from_fastbin(sim, out, nb)
        if got is not None:
            return got
    if L.in_smallbin_range(nb):
        idx = L.smallbin_index(nb)
        got = _from_smallbin(sim, out, nb, idx)
        if got is not None:
            return got
    else:
        idx = L.largebin_index(nb)
        if sim.have_fastchunks():
            sim.malloc_consolidate()
    tc_idx = sim.tidx(nb)
    tcache_nb = nb if sim.tcache is not None and tc_idx < _tcache_small_limit(sim) else 0
    return_cached = False
    unsorted_count = 0
    for _ in range(2):  # the outer loop runs again only after a consolidation
        iters = 0
        unsorted = sim.bin(1)
        while True:
            victim = sim.bk(unsorted)
            if victim == unsorted:
                break
            bck, size, nxt = _unsorted_victim(sim, victim, unsorted)
            lr = sim.word(sim.av + sim.off_lr)
            if L.in_smallbin_range(nb) and bck == unsorted and victim == lr and size > nb + L.minsize:
                rsize = size - nb
                rem = victim + nb
                sim.set_fd(unsorted, rem)
                sim.set_bk(unsorted, rem)
                sim.put(sim.av + sim.off_lr, rem)
                sim.set_fd(rem, unsorted)
                sim.set_bk(rem, unsorted)
                _split_heads(sim, victim, nb, rem, rsize)
                sim.effect(f"last_remainder {victim:#x} split: the remainder {rem:#x} of size {rsize:#x} "
                           "stays in the unsorted bin as last_remainder")
                return _found(out, victim, "last_remainder")
            sim.grant()  # MAX_ITERS of these at most
            sim.check(sim.fd(bck) != victim, "UNSORTED_REMOVE")
            sim.set_bk(unsorted, bck)
            sim.set_fd(bck, unsorted)
            if size == nb:
                sim.set_head(nxt, sim.sizef(nxt) | PREV_INUSE)
                if tcache_nb and sim.has_room(tc_idx):
                    sim.tcache_put(victim, tc_idx)
                    return_cached = True
                    sim.effect(f"unsorted chunk {victim:#x} fits exactly: put in tcache[{tc_idx}]")
                    continue
                out.steps.append(f"unsorted chunk {victim:#x} fits exactly")
                return _found(out, victim, "unsorted", 1)
            if L.in_smallbin_range(size):
                vi = L.smallbin_index(size)
                bck = sim.bin(vi)
                fwd = sim.fd(bck)
            else:
                vi = L.largebin_index(size)
                bck = sim.bin(vi)
                fwd = sim.fd(bck)
                if fwd != bck:
                    size |= PREV_INUSE
                    if size < sim.sizef(sim.bk(bck)):
                        fwd = bck
                        bck = sim.bk(bck)
                        if sim.v >= (2, 42):
                            sim.check(sim.fdn(sim.bkn(sim.fd(fwd))) != sim.fd(fwd), "LARGEBIN_NEXTSIZE")
                        sim.set_fdn(victim, sim.fd(fwd))
                        sim.set_bkn(victim, sim.bkn(sim.fd(fwd)))
                        sim.set_bkn(sim.fd(fwd), victim)
                        sim.set_fdn(sim.bkn(victim), victim)
                    else:
                        seen: Set[int] = set()
                        while size < sim.sizef(fwd):
                            sim.walk_to(seen, fwd, f"{bin_label('large', vi)}'s fd_nextsize list")
                            fwd = sim.fdn(fwd)
                        if size == sim.sizef(fwd):
                            fwd = sim.fd(fwd)
                        else:
                            sim.set_fdn(victim, fwd)
                            sim.set_bkn(victim, sim.bkn(fwd))
                            sim.check(sim.fdn(sim.bkn(fwd)) != fwd, "LARGEBIN_NEXTSIZE")
                            sim.set_bkn(fwd, victim)
                            sim.set_fdn(sim.bkn(victim), victim)
                        bck = sim.bk(fwd)
                        sim.check(sim.fd(bck) != fwd, "LARGEBIN_BK")
                else:
                    sim.set_fdn(victim, victim)
                    sim.set_bkn(victim, victim)
            sim.mark_bin(vi)
            sim.set_bk(victim, bck)
            sim.set_fd(victim, fwd)
            sim.set_bk(fwd, victim)
            sim.set_fd(bck, victim)
            kind = "small" if vi < NSMALLBINS else "large"
            sim.effect(f"unsorted chunk {victim:#x} (size {size & ~SIZE_BITS:#x}) sorted into "
                       f"{bin_label(kind, vi)}")
            unsorted_count += 1
            limit = _unsorted_limit(sim)
            if return_cached and limit > 0 and unsorted_count > limit:
                return _found(out, sim.tcache_get(tc_idx), "tcache", tc_idx)
            iters += 1
            if iters >= MAX_ITERS:
                break
        if return_cached:
            out.steps.append(f"the exact fits went to tcache[{tc_idx}]: malloc returns its first")
            return _found(out, sim.tcache_get(tc_idx), "tcache", tc_idx)
        if not L.in_smallbin_range(nb):
            got = _from_largebin(sim, out, nb, idx)
            if got is not None:
                return got
        got = _from_binmap(sim, out, nb, idx + 1)
        if got is not None:
            return got
        top = sim.top
        size = sim.size(top)
        sim.check(size > sim.system_mem, "TOP_SIZE")
        if size >= nb + L.minsize:
            rem = top + nb
            sim.set_top(rem)
            sim.set_head(top, nb | PREV_INUSE | (0 if sim.is_main else NON_MAIN_ARENA))
            sim.set_head(rem, (size - nb) | PREV_INUSE)
            sim.effect(f"split from top: top becomes {rem:#x} of size {size - nb:#x}")
            return _found(out, top, "top")
        if sim.have_fastchunks():
            sim.malloc_consolidate()
            idx = L.smallbin_index(nb) if L.in_smallbin_range(nb) else L.largebin_index(nb)
            continue
        return _sysmalloc(sim, out, nb)
    return _sysmalloc(sim, out, nb)


def _tcache_small_limit(sim: Sim) -> int:
    return sim.L.features.tcache_small_bins if sim.v >= (2, 42) else sim.ctx.mp.tcache_bins


def _unsorted_limit(sim: Sim) -> int:
    if not sim.L.features.tcache_unsorted_limit or sim.L.malloc_par is None:
        return 0
    mp = sim.L.malloc_par
    try:
        return sim.word(sim.ctx.mp.address + mp.offset("tcache_unsorted_limit"))
    except KeyError:
        return 0


def _sysmalloc(sim: Sim, out: MallocResult, nb: int) -> Optional[int]:
    mp = sim.ctx.mp
    if nb >= mp.mmap_threshold and mp.n_mmaps < sim.ctx.n_mmaps_max:
        sim.effect(f"sysmalloc: size {nb:#x} >= mmap_threshold {mp.mmap_threshold:#x}: a new mapping "
                   "(the kernel picks its address)")
        out.source = "mmap"
        return None
    top = sim.top
    sim.effect(f"sysmalloc: top {top:#x} (size {sim.size(top):#x}) is too small: the heap grows and the "
               "chunk is cut from the grown top")
    return _found(out, top, "top")


def _from_fastbin(sim: Sim, out: MallocResult, nb: int) -> Optional[int]:
    L = sim.L
    idx = L.fastbin_index(nb)
    slot = sim.fastbin_slot(idx)
    victim = sim.word(slot)
    if not victim:
        return None
    sim.check(sim.misaligned_chunk(victim), "FASTBIN_UNALIGNED_VICTIM")
    _remove_fb(sim, slot, victim)
    sim.check(L.fastbin_index(sim.size(victim) & 0xFFFFFFFF) != idx, "FASTBIN_VICTIM_SIZE")
    out.steps.append(f"fast[{idx}] is not empty: its first chunk {victim:#x}")
    tc_idx = sim.tidx(nb)
    if sim.tcache is not None and tc_idx < _tcache_small_limit(sim):
        moved = 0
        while sim.has_room(tc_idx):
            tc_victim = sim.word(slot)
            if not tc_victim:
                break
            sim.check(sim.misaligned_chunk(tc_victim), "FASTBIN_UNALIGNED_STASH")
            sim.check(sim.tidx(sim.size(tc_victim)) != tc_idx, "FASTBIN_STASH_SIZE")
            _remove_fb(sim, slot, tc_victim)
            sim.tcache_put(tc_victim, tc_idx)
            moved += 1
        if moved:
            sim.effect(f"{moved} more chunk{'s' * (moved != 1)} of fast[{idx}] moved to tcache[{tc_idx}]")
    return _found(out, victim, "fast", idx)


def _unsorted_victim(sim: Sim, victim: int, unsorted: int) -> Tuple[int, int, int]:
    """The unsorted loop's checks on its victim (the bin's bk), per version, before it is
    split or removed: its bck, size and next chunk."""
    bck = sim.bk(victim)
    size = sim.size(victim)
    nxt = (victim + size) & sim.wrap
    if sim.v < (2, 29):
        sizef = sim.sizef(victim)  # chunksize_nomask: the flag bits count
        sim.check(sizef <= 2 * sim.S or sizef > sim.system_mem, "UNSORTED_MEMORY_CORRUPTION")
    sim.check(size <= sim.H or size > sim.system_mem, "UNSORTED_INVALID_SIZE")
    if sim.v >= (2, 29):
        sim.check(sim.sizef(nxt) < sim.H or sim.sizef(nxt) > sim.system_mem, "UNSORTED_INVALID_NEXT_SIZE")
        sim.check(sim.word(nxt) & ~SIZE_BITS != size, "UNSORTED_PREV_SIZE")
        sim.check(sim.fd(bck) != victim or sim.fd(victim) != unsorted, "UNSORTED_DLL")
        sim.check(bool(sim.sizef(nxt) & PREV_INUSE), "UNSORTED_NEXT_PREV_INUSE")
    return bck, size, nxt


def victim_abort(reader: Reader, ctx: Context, arena: int, kind: str, victim: int) -> Optional[str]:
    """What malloc prints on taking `victim`, the bk of arena's unsorted or small bin, as its
    victim: the unsorted loop's checks and its removal's, or the small bin's bck->fd check; None
    when they pass (or memory stops the path first: heap check reports that on its own)."""
    sim = Sim(reader, ctx, Outcome())
    sim.av = arena
    try:
        if kind == "unsorted":
            bck, _, _ = _unsorted_victim(sim, victim, sim.bin(1))
            sim.check(sim.fd(bck) != victim, "UNSORTED_REMOVE")
        elif kind == "small":
            sim.check(sim.fd(sim.bk(victim)) != victim, "SMALLBIN_DLL")
    except Abort as e:
        return e.text
    except (Crash, GaveUp):
        return None
    return None


def _remove_fb(sim: Sim, slot: int, victim: int) -> None:
    """Unlink a fast bin's head: a plain store when SINGLE_THREAD_P, else REMOVE_FB's
    compare-and-swap loop, which first checks the next chunk's alignment (2.32+)."""
    nxt = sim.reveal(victim + sim.H, sim.fd(victim))
    if not sim.ctx.single_thread:
        sim.check(nxt != 0 and sim.misaligned_chunk(nxt), "FASTBIN_UNALIGNED_REMOVE")
    sim.put(slot, nxt)


def _from_smallbin(sim: Sim, out: MallocResult, nb: int, idx: int) -> Optional[int]:
    b = sim.bin(idx)
    victim = sim.bk(b)
    if victim == b:
        return None
    bck = sim.bk(victim)
    sim.check(sim.fd(bck) != victim, "SMALLBIN_DLL")  # as victim_abort
    sim.set_head(victim + nb, sim.sizef(victim + nb) | PREV_INUSE)
    sim.set_bk(b, bck)
    sim.set_fd(bck, b)
    if not sim.is_main:
        sim.set_head(victim, sim.sizef(victim) | NON_MAIN_ARENA)
    out.steps.append(f"small[{idx}] is not empty: its last chunk {victim:#x}")
    tc_idx = sim.tidx(nb)
    if sim.tcache is not None and tc_idx < _tcache_small_limit(sim):
        moved = 0
        while sim.has_room(tc_idx):
            tc_victim = sim.bk(b)
            if tc_victim == b:
                break
            bck = sim.bk(tc_victim)
            sim.set_head(tc_victim + nb, sim.sizef(tc_victim + nb) | PREV_INUSE)
            sim.set_bk(b, bck)
            sim.set_fd(bck, b)
            sim.tcache_put(tc_victim, tc_idx)
            moved += 1
        if moved:
            sim.effect(f"{moved} more chunk{'s' * (moved != 1)} of small[{idx}] moved to tcache[{tc_idx}]")
    return _found(out, victim, "small", idx)


def _split(sim: Sim, out: MallocResult, victim: int, size: int, nb: int, name: str, last_remainder: bool) -> None:
    L = sim.L
    sim.unlink_chunk(victim)
    rsize = size - nb
    if rsize < L.minsize:
        sim.set_head(victim + size, sim.sizef(victim + size) | PREV_INUSE)
        out.steps.append(f"chunk {victim:#x} of size {size:#x} taken whole (remainder below MINSIZE)")
        return
    rem = victim + nb
    bck = sim.bin(1)
    fwd = sim.fd(bck)
    sim.check(sim.bk(fwd) != bck, name)
    sim.set_bk(rem, bck)
    sim.set_fd(rem, fwd)
    sim.set_fd(bck, rem)
    sim.set_bk(fwd, rem)
    if last_remainder and L.in_smallbin_range(nb):
        sim.put(sim.av + sim.off_lr, rem)
    _split_heads(sim, victim, nb, rem, rsize)
    sim.effect(f"chunk {victim:#x} of size {size:#x} split: the remainder {rem:#x} of size {rsize:#x} goes to "
               f"the unsorted bin" + (" as last_remainder" if last_remainder and L.in_smallbin_range(nb) else ""))


def _from_largebin(sim: Sim, out: MallocResult, nb: int, idx: int) -> Optional[int]:
    b = sim.bin(idx)
    victim = sim.fd(b)
    if victim == b or sim.sizef(victim) < nb:
        return None
    victim = sim.bkn(victim)
    while True:
        size = sim.size(victim)
        if size >= nb:
            break
        victim = sim.bkn(victim)
    if victim != sim.bk(b) and sim.sizef(victim) == sim.sizef(sim.fd(victim)):
        victim = sim.fd(victim)
    out.steps.append(f"large[{idx}]: the smallest chunk that fits is {victim:#x} (size {size:#x})")
    _split(sim, out, victim, size, nb, "UNSORTED_INSERT_MALLOC", False)
    return _found(out, victim, "large", idx)


def _from_binmap(sim: Sim, out: MallocResult, nb: int, idx: int) -> Optional[int]:
    """The binmap search: the next non-empty bin above the request's, its last chunk."""
    for i in range(idx, NBINS - 1):
        word = sim.small(sim.av + sim.off_binmap + (i >> BINMAPSHIFT) * 4, 4)
        if not word >> (i & 31) & 1:
            continue
        b = sim.bin(i)
        victim = sim.bk(b)
        if victim == b:
            continue  # a false alarm: glibc clears the bit
        size = sim.size(victim)
        kind = "small" if i < NSMALLBINS else "large"
        out.steps.append(f"binmap: {bin_label(kind, i)} is the next non-empty bin: its last chunk {victim:#x} "
                         f"(size {size:#x})")
        _split(sim, out, victim, size, nb, "UNSORTED_INSERT_MALLOC_2", True)
        return _found(out, victim, kind, i)
    return None


# ---------------------------------------------------------------------------------------------
# fake chunks


@dataclass
class FakeChunk:
    chunk: int
    size_field: int
    size: int
    fits: List[str]
    distance: int  # TARGET - chunk


def fake_chunks(reader: Reader, layout: GlibcLayout, target: int, tcache_bins: int, window: int = 0x100,
                want: Optional[int] = None) -> List[FakeChunk]:
    """Chunk addresses c in [target - window, target] whose header glibc would take:
    fast[i]: malloc takes c from fast bin i (up to 2.42): fastbin_index of the size word's low
      32 bits (flag bits masked) is i, and c is MALLOC_ALIGNMENT-aligned from 2.32
      (misaligned_chunk), any byte before (the size word is read unaligned);
    tcache[i]: free(c + CHUNK_HDR_SZ) puts c in tcache bin i: c aligned, the size at least
      MINSIZE and a multiple of MALLOC_ALIGNMENT below the tcache's bins, not IS_MMAPPED
      (before 2.42 free takes mmapped chunks to munmap first), no wrap (p > -size).
    tcache_get itself checks only the entry's alignment: any aligned place is a tcache fit for
    a poisoned link, so it is not listed."""
    S = layout.size_sz
    A = layout.malloc_alignment
    wrap = (1 << (8 * S)) - 1
    step = A if layout.features.safe_linking else 1
    start = max(0, target - window)
    try:
        lo = start
        data = bytes(reader.read(lo, target - lo + 2 * S))
    except MemoryReadError:
        return []
    out: List[FakeChunk] = []
    fast = layout.features.fastbins
    max_fast = layout.default_max_fast
    for c in range(target, start - 1, -1):
        aligned = not misaligned_chunk(layout, c)
        if not aligned and step != 1:
            continue
        off = c - lo + S
        word = int.from_bytes(data[off:off + S], "little")
        size = word & ~SIZE_BITS
        fits: List[str] = []
        if fast:
            fidx = ((size & 0xFFFFFFFF) >> (4 if S == 8 else 3)) - 2
            if 0 <= fidx < layout.nfastbins and layout.fastbin_size(fidx) <= max_fast:
                fits.append(bin_label("fast", fidx))
        if aligned and layout.features.tcache and not word & IS_MMAPPED and size >= layout.minsize \
                and not size & (A - 1) and c <= (-size & wrap):
            tidx = layout.tcache_index(size)
            if tidx < tcache_bins:
                fits.append(bin_label("tcache", tidx))
        if not fits:
            continue
        if want is not None and want not in (size, size & 0xFFFFFFFF):
            sizes = [layout.fastbin_size(int(f[5:-1])) for f in fits if f.startswith("fast")]
            if want not in sizes:
                continue
        out.append(FakeChunk(c, word, size, fits, target - c))
    return out


def common_key(reader: Reader, layout: GlibcLayout, entries: List[int]) -> Optional[int]:
    """2.34+'s tcache_key as the word most tcache entries carry after their next pointer."""
    keys: Counter[int] = Counter()
    for e in entries[:64]:
        try:
            keys[reader.word(e + layout.size_sz)] += 1
        except MemoryReadError:
            continue
    return keys.most_common(1)[0][0] if keys else None



def live_tcache(reader: Reader, L: GlibcLayout, tcache: Optional[int]) -> Optional[int]:
    """The thread's tcache_perthread_struct, if it is one: a chunk of the struct's size (2.43's
    static dummy before the first free is not a chunk); no heap walk, unlike Heap.tcache."""
    if not tcache:
        return None
    try:
        return tcache if reader.word(tcache - L.size_sz) & ~SIZE_BITS == L.tcache_chunk_size else None
    except MemoryReadError:
        return None


def heap_ready(heap: Heap) -> bool:
    """Heap.initialised without finding the heap's regions (a walk of the main heap)."""
    try:
        state = read_malloc_state(heap.reader, heap.layout, heap.anchors.main_arena)
    except MemoryReadError:
        return False
    return heap_initialised(heap.layout, state) and heap.mp.sbrk_base != 0


def context_for(heap: Heap, tcache_key: Optional[int] = None) -> Context:
    """The paths' context from a Heap: the selected thread's tcache and arena; 2.34+'s random
    tcache_key as given (libc's symbol) or, failing that, the key the thread's tcache entries carry."""
    L = heap.layout
    mp = heap.mp
    tcache = live_tcache(heap.reader, L, heap.anchors.tcache)
    if tcache_key is None and L.features.tcache_key_random and tcache is not None:
        try:
            entries = [e for e in heap.reader.words(tcache + L.tcache_perthread.offset("entries"), L.tcache_bins) if e]
        except MemoryReadError:
            entries = []
        tcache_key = common_key(heap.reader, L, entries)
    n_mmaps_max = 65536
    try:
        n_mmaps_max = StructBytes(heap.reader, L.malloc_par, mp.address).get("n_mmaps_max")
    except MemoryReadError:
        pass
    arena = heap.anchors.thread_arena
    return Context(L, heap.anchors.main_arena, mp, tcache, tcache_key, arena if arena else None,
                   n_mmaps_max=n_mmaps_max, single_thread=heap.anchors.single_thread)
