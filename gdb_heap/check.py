"""`heap check`: an arena's integrity, checked the way glibc's own checks do, and a few more.

gdb-free, over the model: the problems the walks already collect (sizes that break the heap
walk, bin chains that loop, unaligned or unreadable links, bk pointers that do not point back,
tcache counts) plus the checks that need the walk and the bins side by side: the next chunk's
PREV_INUSE and prev_size against the bins, chunks listed in a bin that the walk does not find,
links leaving every heap, a chunk in two bins, the large bins' nextsize ring, tcache sizes and
keys, each chunk's NON_MAIN_ARENA bit against its arena, and top.  Each Problem names the chunk
whose header or links are damaged and, where glibc has one, the message glibc prints when it
trips over that damage (glibc_checks' table): for a chunk in a bin, what the mallocs that take
it out of its bin print (single-threaded); for an in-use chunk, what free() of it prints; None
where that path does not check this damage.  Other paths of glibc that check the same damage and
print something else go in the Problem's other_paths, by name: "malloc_consolidate" (a fast bin
chunk's size, on a large request or the free of a large chunk), "sorting a chunk into its large
bin" (the bk of the chunk a newcomer is sorted in front of).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field, replace
from itertools import chain as chain_from, compress, islice, repeat
from operator import and_, eq, not_
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from . import glibc_checks as gc
from . import paths
from .errors import MemoryReadError
from .free_index import FreeIndex
from .heap import Heap
from .model import (IS_MMAPPED, NON_MAIN_ARENA, NONCONTIGUOUS_BIT, PREV_INUSE, SIZE_BITS, Arena, Batch, BinChain,
                    HeapRegion, Pointers, Problem, bin_at, bin_label, free_index, heap_for_ptr, heap_initialised)

REGULAR = ("unsorted", "small", "large")


@dataclass
class Report:
    """One arena's check: its problems, and how much was looked at."""

    arena: Arena
    problems: List[Problem]
    chunks: int  # chunks walked
    listed: int  # chunks found in bins (tcache included)
    # Why every problem may be glibc's update in progress ("thread 2 (LWP 7) is in _int_free"):
    # a thread is inside the allocator on this arena, or its mutex is held.  None: not so.
    in_progress: Optional[str] = None

    @property
    def damage(self) -> int:
        """The problems that count as damage: none of them when the arena is mid-update."""
        return 0 if self.in_progress else len(self.problems)


@dataclass
class Walked:
    """What the walk found, checked batch by batch: how many chunks, the problems of neighbours
    and arena_bits (in address order), and where each listed chunk the walk did not find lies."""

    chunks: int = 0
    neighbours: List[Problem] = field(default_factory=list)
    arena_bits: List[Problem] = field(default_factory=list)
    inside: Dict[int, Tuple[int, int]] = field(default_factory=dict)  # listed chunk -> (walked chunk, size field)


def label(chain: BinChain) -> str:
    return bin_label(chain.kind, chain.index)


class Checker:
    """The checks of one arena; `run` returns its Report."""

    def __init__(self, heap: Heap, arena: Arena) -> None:
        self.heap, self.arena = heap, arena
        self.layout, self.reader = heap.layout, heap.reader
        self.S = self.layout.size_sz
        self.version = self.layout.version
        self.problems: List[Problem] = []
        self.tcache_counts: Dict[int, int] = {}  # the selected thread's tcache: bin -> chunks
        # The prev_size words of each walked batch's chunks with PREV_INUSE clear, the only ones
        # `neighbours` reads, read as the walk meets them (Heap.walk_ahead's `each`): after a walk
        # that went ahead of the checks, its blocks are gone.  Batch's first chunk -> (those
        # chunks, their words).
        self._footers: Dict[int, Tuple[array[int], array[int]]] = {}
        self._paths_context: Optional[paths.Context] = None
        self._chains: List[BinChain] = []
        self._fast: Optional[array[int]] = None  # in_fast's, made the first time it is asked

    @property
    def regions(self) -> List[HeapRegion]:
        """Every arena's regions (asked after the walk, which finds the main heap's)."""
        return [r for a in self.heap.arenas for r in a.heaps]

    def add(self, address: int, message: str, abort: Optional[str] = None, pointers: Pointers = ()) -> None:
        self.problems.append(Problem(address, message, abort, pointers=pointers))

    def in_heaps(self, chunk: int, regions: Sequence[HeapRegion]) -> bool:
        return any(r.first_chunk <= chunk < r.end for r in regions)

    def run(self) -> Report:
        arena = self.arena
        # The bins followed by a helper while the heap is walked (Heap.walk_ahead); the walk's
        # problems come after the bins' (as when the bins are followed first).
        walk_problems: List[Problem] = []
        helped, batches, _ = self.heap.walk_ahead(arena, walk_problems, self.bins,
                                                  ready=self.heap.has_bins(arena), each=self.footers)
        (chains, bin_problems), regular, listed = helped or self.bins()
        self._chains = chains
        self.heap.keep_bins(arena, (chains, bin_problems))
        self.problems += bin_problems
        self.tcache_counts = {c.index: c.count for c in chains if c.kind == "tcache"}
        walked = self.walk(batches, regular, listed)
        self.problems += walk_problems
        self.problems[:0] = arena.problems  # known once walked (the walk finds the main heap's regions)
        frees = {gc.text(n, self.version) for n in ("FREE_INVALID_SIZE", "FREE_INVALID_POINTER", "FREE_OUT")}
        for i, p in enumerate(self.problems):
            if p.glibc_abort in frees and (holds(listed, p.address) or not self.free_merges_or_checks(p)):
                # A free chunk is not freed again (its bin's mallocs say what glibc prints),
                # and a chunk the tcache or a fast bin takes never reaches the check.
                self.problems[i] = replace(p, glibc_abort=None)
        self.problems += walked.neighbours
        self.problems += walked.arena_bits
        self.top()
        for chain in chains:
            self.chain_links(chain)
            if chain.kind == "large" and not chain.problems:
                self.nextsize_ring(chain)
            if chain.kind in REGULAR and not chain.problems:
                self.last_link(chain)
        self.tcache_entries([c for c in chains if c.kind == "tcache"])
        self.listed_but_not_walked(chains, walked.inside)
        self.in_two_bins(chains, listed)
        self.top_in_a_bin(chains)
        return Report(arena, self.finish(), walked.chunks, len(listed))

    def bins(self) -> Tuple[Tuple[List[BinChain], List[Problem]], FreeIndex, array[int]]:
        """Every bin of the arena (heap.bins), the index of its regular bins' chunks, and all its
        bins' chunks, sorted: an array, not a set (10^7 chunks put millions in the bins)."""
        chains, problems = self.heap.bins(self.arena)
        regular = free_index([chain for chain in chains if chain.kind in REGULAR])
        listed = array("Q", sorted(chain_from.from_iterable(c.chunks for c in chains)))
        return (chains, problems), regular, listed

    def in_fast(self, chunk: int) -> bool:
        """Whether a fast bin lists the chunk: asked only where the walk found damage, so its
        sorted array is made then, by gdb, not by the helper before its answer (at 10^7 chunks a
        sort of millions)."""
        if self._fast is None:
            self._fast = array("Q", sorted(chain_from.from_iterable(c.chunks for c in self._chains
                                                                    if c.kind == "fast")))
        return holds(self._fast, chunk)

    def footers(self, batch: Batch) -> None:
        """Keeps the prev_size words of the batch's chunks with PREV_INUSE clear (see _footers)."""
        addresses, sizes = batch
        if not addresses:
            return
        clear = list(compress(addresses, map(not_, map(and_, sizes, repeat(PREV_INUSE)))))
        read = self.reader.words_at(clear)  # the blocks the walk has just read
        if None in read:  # unreadable: read again (and unreadable again) when needed
            clear = [chunk for chunk, word in zip(clear, read) if word is not None]
        self._footers[addresses[0]] = array("Q", clear), array("Q", [word for word in read if word is not None])

    def footer(self, first: int, chunk: int) -> int:
        """The prev_size word of `chunk` (PREV_INUSE clear) of the batch starting at `first`."""
        chunks, words = self._footers.get(first, ((), ()))
        try:
            return words[chunks.index(chunk)]
        except ValueError:
            return self.reader.word(chunk)

    def finish(self) -> List[Problem]:
        """Each problem once, by address."""
        seen = set()
        out = []
        for p in self.problems:
            if (p.address, p.message) in seen:
                continue
            seen.add((p.address, p.message))
            out.append(p)
        out.sort(key=lambda p: p.address)
        return out

    # -- which of free()'s paths runs ------------------------------------------------------------
    def free_merges(self, size_field: int) -> bool:
        """Whether free() of an in-use chunk with this size field reaches _int_free's merging
        path (its (top), (out), (!prev) and next-size checks): not an mmapped chunk, not taken
        by a tcache bin with room (this thread's), not a fast bin size (default max_fast)."""
        if size_field & IS_MMAPPED:
            return False
        L, mp = self.layout, self.heap.mp
        size = size_field & ~SIZE_BITS
        if self.heap.tcache:
            if L.version >= (2, 42):
                index, fits = L.tcache_index(size), size < mp.tcache_max_bytes
            else:
                index = L.csize2tidx(size)
                fits = index < mp.tcache_bins
            if fits and self.tcache_counts.get(index, 0) < mp.tcache_count:
                return False
        return size > L.default_max_fast

    def free_merges_or_checks(self, p: Problem) -> bool:
        """free(): invalid size/pointer are checked before the tcache up to 2.41 (model.py decides
        from 2.42); (out) is a merging-path check."""
        if p.glibc_abort != gc.text("FREE_OUT", self.version):
            return True
        try:
            return self.free_merges(self.reader.word(p.address + self.S))
        except MemoryReadError:
            return False

    # -- the chunk walk --------------------------------------------------------------------
    def walk(self, batches: Iterable[Tuple[HeapRegion, Batch]], regular: FreeIndex,
             listed: Sequence[int]) -> Walked:
        """The one walk of the arena's heap, each batch checked as it comes and then let go
        (nothing is kept per chunk: a heap of 10^7 chunks costs no more memory than a small
        one): neighbours, arena_bits, and where each chunk a bin lists (`listed`, sorted) lies."""
        walked = Walked()
        current: Optional[HeapRegion] = None
        last: Optional[Tuple[int, int]] = None  # the region's last chunk walked so far (address, size field)
        cursor = 0  # the listed chunks before it are placed
        for region, (addresses, sizes) in batches:
            if not addresses:
                continue
            if current is None or region.first_chunk != current.first_chunk:  # a region's first batch
                if current is not None and last is not None:
                    self.listed_at_end(current, last, listed, cursor, walked.inside)
                last, cursor = None, bisect_left(listed, addresses[0])
            current = region  # the first region's batches may come from two walks (Heap.region_chunk_batches)
            walked.chunks += len(addresses)
            # the batch's chunks in a regular bin, and the chunk before the batch's
            here = regular.around(last[0] if last is not None else addresses[0], addresses[-1])
            self.neighbours(addresses, sizes, last, here, walked.neighbours)
            self._footers.pop(addresses[0], None)  # read: let go
            self.arena_bits(addresses, sizes, here, walked.arena_bits)
            cursor = self.listed_in(addresses, sizes, last, listed, cursor, walked.inside)
            last = addresses[-1], sizes[-1]
        if current is not None and last is not None:
            self.listed_at_end(current, last, listed, cursor, walked.inside)
        return walked

    def neighbours(self, addresses: List[int], sizes: List[int], last: Optional[Tuple[int, int]],
                   regular: Dict[int, Tuple[str, int]], found: List[Problem]) -> None:
        """PREV_INUSE and prev_size of each chunk of a batch against the chunk before it (`last`:
        the region's chunk before the batch): clear exactly after a chunk in a regular bin, whose
        size the prev_size footer repeats.  Only the chunks with PREV_INUSE clear, those after a
        chunk in a regular bin and the batch's first are looked at one by one (the chunks of a
        batch follow each other by their sizes)."""
        n = len(addresses)
        clear = list(compress(range(n), map(not_, map(and_, sizes, repeat(PREV_INUSE)))))
        after: List[int] = []  # the chunks after one in a regular bin
        k = 0
        for chunk in regular:  # sorted (FreeIndex.around)
            if chunk < addresses[0]:
                continue
            try:
                k = addresses.index(chunk, k)
            except ValueError:  # a bin lists a chunk the walk does not find (listed_but_not_walked)
                continue
            after.append(k + 1)
        look = {0} if self.as_sound(addresses[0], sizes, clear, after) else set(clear).union(after, (0,))
        for i in sorted(look):
            if i >= n:
                continue
            address, sizef = addresses[i], sizes[i]
            if i:
                prev: Optional[int] = addresses[i - 1]
                prev_sizef = sizes[i - 1]
            else:
                prev, prev_sizef = last if last is not None else (None, 0)
                if prev is not None and prev + (prev_sizef & ~SIZE_BITS) != address:
                    continue  # the walk skipped damage: the chunk before is unknown
            where = regular.get(prev) if prev is not None else None
            if sizef & PREV_INUSE:
                if where is not None and prev is not None:  # checked by the unsorted loop only
                    found.append(Problem(prev, f"chunk {prev:#x} is in {bin_label(*where)} but the next chunk "
                                               f"{address:#x} has PREV_INUSE set: the walk sees it in use",
                                         gc.text("UNSORTED_NEXT_PREV_INUSE", self.version)
                                         if where[0] == "unsorted" else None))
            elif prev is None:
                found.append(Problem(address, f"chunk {address:#x} is the first of its heap but has PREV_INUSE clear"))
            elif where is None:  # free() of the chunk before checks it, if it gets that far
                in_fast = self.in_fast(prev)
                state = "in a fast bin" if in_fast else "in use"
                abort = gc.text("FREE_PREV", self.version) if not in_fast and self.free_merges(
                    prev_sizef) else None
                found.append(Problem(address, f"chunk {address:#x} has PREV_INUSE clear, but the chunk before it, "
                                              f"{prev:#x}, is {state} (not in a regular bin)", abort))
            else:
                try:
                    prev_size = self.footer(addresses[0], address)
                except MemoryReadError:
                    continue
                psize = address - prev
                if prev_size != psize:
                    found.append(Problem(prev, f"chunk {prev:#x} in {bin_label(*where)} has size {psize:#x} "
                                               f"but the next chunk's prev_size is {prev_size:#x}",
                                         self.prev_size_abort(where[0], prev_size, psize)))

    def as_sound(self, first: int, sizes: List[int], clear: List[int], after: List[int]) -> bool:
        """Whether the batch's chunks past its first are as a sound heap has them: PREV_INUSE clear
        (`clear`) exactly after a chunk in a regular bin (`after`), and each one's prev_size
        footer that chunk's size; then `neighbours` need look at none of them one by one (most
        batches: at C speed, not a Python step per free chunk)."""
        rest = clear[1:] if clear and clear[0] == 0 else clear
        if rest != [i for i in after if i < len(sizes)]:
            return False
        footers = self._footers.get(first)
        if footers is None or len(footers[1]) != len(clear):  # not kept, or one was unreadable
            return False
        return footers[1][len(clear) - len(rest):].tolist() == [sizes[i - 1] & ~SIZE_BITS for i in rest]

    def arena_bits(self, addresses: List[int], sizes: List[int], regular: Dict[int, Tuple[str, int]],
                   found: List[Problem]) -> None:
        """NON_MAIN_ARENA (arena_for_chunk): never set in the main arena's chunks; set in a thread
        arena's chunks except those in a regular bin (glibc writes their headers without it).
        Top is no chunk free() is given (its size is checked as top's).  Only the chunks whose
        bit is wrong are looked at one by one."""
        main = self.arena.main
        top = self.arena.state.top
        bits = map(and_, sizes, repeat(NON_MAIN_ARENA))
        for i in compress(range(len(sizes)), bits if main else map(not_, bits)):
            address = addresses[i]
            if address == top:
                continue
            if main:
                found.append(Problem(address, f"chunk {address:#x} of the main arena has NON_MAIN_ARENA set (house "
                                              f"of mind?): {self.arena_for_chunk(address)}"))
            elif address not in regular:
                found.append(Problem(address, f"chunk {address:#x} of the thread arena {self.arena.address:#x} has "
                                              "NON_MAIN_ARENA clear: free() of it would hand it to the main arena"))

    def arena_for_chunk(self, chunk: int) -> str:
        """What glibc's free() makes of a chunk with NON_MAIN_ARENA set (up to 2.41 every free;
        from 2.42 those the tcache does not take): heap_for_ptr, the heap_info at the chunk's
        HEAP_MAX_SIZE-aligned base, and its ar_ptr."""
        L = self.layout
        base = heap_for_ptr(L, chunk)
        try:
            ar_ptr = self.reader.word(base + L.heap_info.offset("ar_ptr"))
        except MemoryReadError:
            return (f"free() looks for its heap_info at {base:#x} (the chunk's address rounded down to "
                    f"HEAP_MAX_SIZE {L.heap_max_size:#x}), which is not readable: free() would crash there "
                    "(SIGSEGV)")
        known = {a.address for a in self.heap.arenas}
        what = "an arena of this process" if ar_ptr in known else "not an arena of this process"
        if ar_ptr not in known:
            try:  # _int_free reads the arena it was given (its fastbins, its mutex, its top)
                self.reader.word(ar_ptr)
            except MemoryReadError:
                what += ", not readable: free() crashes there (SIGSEGV) unless the tcache takes the chunk"
            else:  # whatever those words are, glibc locks and walks them as an arena
                what += (": free() takes those words for an arena (its mutex, bins, top), so unless the tcache "
                         "takes the chunk it crashes (SIGSEGV) or aborts on whatever they hold")
        return (f"free() takes its arena from the heap_info at {base:#x} (the chunk's address rounded down to "
                f"HEAP_MAX_SIZE {L.heap_max_size:#x}): ar_ptr {ar_ptr:#x}, {what}")

    def prev_size_abort(self, kind: str, prev_size: int, size: int) -> Optional[str]:
        """The unsorted loop compares prev_size without its low bits; a large bin's chunk is taken
        by unlink_chunk, which compares it; a small bin's victim is taken without either."""
        if kind == "unsorted":
            return gc.text("UNSORTED_PREV_SIZE", self.version) if prev_size & ~SIZE_BITS != size else None
        return gc.text("UNLINK_PREV_SIZE", self.version) if kind == "large" else None

    def top(self) -> None:
        state = self.arena.state
        top = state.top
        if not heap_initialised(self.layout, state):
            return  # no heap yet: nothing to check
        region = next((r for r in self.arena.heaps if r.first_chunk <= top < r.end), None)
        if region is None:
            self.add(top, f"top {top:#x} is outside the arena's heaps", pointers=(("top ", top),))
            return
        try:
            size = self.reader.word(top + self.S) & ~SIZE_BITS
        except MemoryReadError:
            self.add(top, f"the top chunk at {top:#x} is not readable")
            return
        end = self.heap_end(region)
        if size > state.system_mem:
            self.add(top, f"top chunk {top:#x} has size {size:#x}, more than the arena's system_mem "
                          f"{state.system_mem:#x} (house of force?)", gc.text("TOP_SIZE", self.version))
        elif size < self.layout.minsize or (self.S == 8 and size % self.layout.malloc_alignment):
            self.add(top, f"top chunk {top:#x} has an invalid size {size:#x}")
        elif end is not None and top + size != end:
            self.add(top, f"top chunk {top:#x} of size {size:#x} ends at {top + size:#x}, but its heap ends at "
                          f"{end:#x}")

    def heap_end(self, region: HeapRegion) -> Optional[int]:
        """Where top must end: the program break (sbrk_base + system_mem, foreign sbrk bytes
        included) for a contiguous main arena, the heap_info's start + size for a thread heap;
        None where nothing says (a non-contiguous main arena's mmapped region)."""
        if region.heap_info is None:
            if self.arena.state.flags & NONCONTIGUOUS_BIT:
                return None
            return self.heap.mp.sbrk_base + self.arena.state.system_mem
        try:
            return region.heap_info + self.reader.word(region.heap_info + self.layout.heap_info.offset("size"))
        except MemoryReadError:
            return None

    # -- bins --------------------------------------------------------------------------------
    def head_member(self, chain: BinChain) -> int:
        """Where the chain's first link lives: the tcache struct's chunk, the fastbinsY slot,
        or the bin header."""
        L = self.layout
        if chain.kind == "tcache":
            return (self.heap.tcache or 0) - L.header_size
        if chain.kind == "fast":
            return self.arena.address + L.malloc_state.offset("fastbinsY") + chain.index * self.S
        return bin_at(L, self.arena.address, chain.index)

    def chain_links(self, chain: BinChain) -> None:
        """Members outside every heap (a forged link) and members of the wrong size."""
        regions = self.regions if chain.kind == "tcache" else self.arena.heaps
        member = self.head_member(chain)
        low, high = (min(chain.chunks), max(chain.chunks)) if chain.chunks else (0, -1)
        inside = any(r.first_chunk <= low and high < r.end for r in regions)  # C speed: all in one heap
        for chunk in () if inside else chain.chunks:
            if not self.in_heaps(chunk, regions):
                whose = "any heap" if chain.kind == "tcache" else "the arena's heaps"
                self.add(member, f"{label(chain)}: {member:#x} links to {chunk:#x}, outside {whose} "
                                 "(a forged or overwritten link)", pointers=(("links to ", chunk),))
                return
            member = chunk
        if chain.kind == "tcache" and chain.index < self.layout.features.tcache_small_bins:
            want = chain.size
            for chunk, size in zip(chain.chunks, chain.sizes):
                if size != want:
                    self.add(chunk, f"{label(chain)}: chunk {chunk:#x} has size {size:#x}, not {want:#x}")

    def last_link(self, chain: BinChain) -> None:
        """The bin header's bk must be the last chunk of the fd chain (bk->fd == chunk)."""
        header = bin_at(self.layout, self.arena.address, chain.index)
        bk = self.arena.state.bins[2 * (chain.index - 1) + 1]
        if chain.chunks and bk != chain.chunks[-1]:
            self.add(header, f"{label(chain)}: the bin's bk is {bk:#x}, but the last chunk on its fd chain is "
                             f"{chain.chunks[-1]:#x}", self.last_abort(chain.kind, bk),
                     (("bk is ", bk), ("chain is ", chain.chunks[-1])))

    def last_abort(self, kind: str, victim: int) -> Optional[str]:
        """malloc takes the bin's bk as its victim: glibc's checks on it (paths.py's, over memory as
        it is; a large bin is searched by size along bk_nextsize, not taken by its bk)."""
        if kind not in ("unsorted", "small"):
            return None
        if self._paths_context is None:
            self._paths_context = paths.context_for(self.heap)
        return paths.victim_abort(self.reader, self._paths_context, self.arena.address, kind, victim)

    def nextsize_ring(self, chain: BinChain) -> None:
        """A large bin is sorted by decreasing size; the first chunk of each size is on the
        fd_nextsize/bk_nextsize ring, the others have fd_nextsize NULL."""
        chunks, sizes = chain.chunks, chain.sizes
        firsts = [c for i, c in enumerate(chunks) if i == 0 or sizes[i] != sizes[i - 1]]
        ring = {c: (firsts[(i + 1) % len(firsts)], firsts[i - 1]) for i, c in enumerate(firsts)}
        known = chain.nextsizes
        for i, chunk in enumerate(chunks):
            if i and sizes[i] > sizes[i - 1]:
                self.add(chunk, f"{label(chain)}: chunk {chunk:#x} of size {sizes[i]:#x} follows a smaller one "
                                f"({sizes[i - 1]:#x}); large bins are sorted by decreasing size")
            if known is not None:  # read by the bin walk
                fd_ns, bk_ns = known[2 * i], known[2 * i + 1]
            else:
                try:
                    fd_ns, bk_ns = self.reader.words(chunk + 4 * self.S, 2)
                except MemoryReadError:
                    continue
            want = ring.get(chunk)
            if want is None and fd_ns:
                self.add(chunk, f"{label(chain)}: chunk {chunk:#x} is not the first of its size, yet its "
                                f"fd_nextsize is {fd_ns:#x} (should be NULL)", gc.text("UNLINK_NEXTSIZE", self.version),
                         (("fd_nextsize is ", fd_ns),))
            elif want is not None and (fd_ns, bk_ns) != want:
                self.add(chunk, f"{label(chain)}: chunk {chunk:#x} has fd_nextsize {fd_ns:#x} and bk_nextsize "
                                f"{bk_ns:#x}, expected {want[0]:#x} and {want[1]:#x}",
                         gc.text("UNLINK_NEXTSIZE", self.version) if fd_ns else None,  # NULL: not checked
                         (("fd_nextsize ", fd_ns), ("bk_nextsize ", bk_ns)))

    def tcache_entries(self, chains: Sequence[BinChain]) -> None:
        """tcache_entry.key: the owning tcache (2.29-2.33) or the process's tcache_key (2.34+),
        read at its symbol or found in the C library's data (Heap.tcache_key)."""
        L = self.layout
        if not L.features.tcache_key or not chains:
            return
        H, S = L.header_size, self.S
        keys: Dict[int, int] = {}
        for chain in chains:
            for chunk in chain.chunks:
                if self.in_heaps(chunk, self.regions):
                    try:
                        keys[chunk] = self.reader.word(chunk + H + S)
                    except MemoryReadError:
                        pass
        key = self.heap.tcache_key(sorted(set(keys.values())))
        if key is None:
            return  # no entry carries a key glibc's data holds: nothing to compare with
        for chunk, value in keys.items():
            if value != key.value:
                self.add(chunk, f"tcache: chunk {chunk:#x} has key {value:#x}, not the tcache key {key.value:#x} "
                                f"({key.how}): overwritten after free (glibc's double-free check no longer "
                                "sees it)")

    @staticmethod
    def listed_in(addresses: List[int], sizes: List[int], last: Optional[Tuple[int, int]], listed: Sequence[int],
                  cursor: int, inside: Dict[int, Tuple[int, int]]) -> int:
        """The listed chunks (sorted) from `cursor` up to the batch's last chunk: each one the walk
        did not find lies inside the walked chunk before it (`last` before the batch's first),
        recorded in `inside`.  Returns the new cursor."""
        end = bisect_right(listed, addresses[-1], cursor)
        k = 0
        for chunk in listed[cursor:end]:
            if chunk < addresses[0]:
                if last is not None:
                    inside[chunk] = last
                continue
            k = bisect_right(addresses, chunk, k) - 1
            if addresses[k] != chunk:
                inside[chunk] = addresses[k], sizes[k]
        return end

    def listed_at_end(self, region: HeapRegion, last: Tuple[int, int], listed: Sequence[int], cursor: int,
                      inside: Dict[int, Tuple[int, int]]) -> None:
        """The listed chunks past a region's last walked chunk, up to where it ends."""
        top = self.arena.state.top
        end = last[0] + (last[1] & ~SIZE_BITS)
        if region.first_chunk <= top < region.end and last[0] != top:
            end = last[0]  # the walk broke on the last chunk's size: its extent means nothing
        for chunk in listed[cursor:bisect_left(listed, end, cursor)]:
            inside[chunk] = last

    def listed_but_not_walked(self, chains: Sequence[BinChain], inside: Dict[int, Tuple[int, int]]) -> None:
        """A chunk a bin lists inside the stretch the walk covered must be one the walk found;
        otherwise it lies inside another chunk (that one's size is wrong, or the bin holds a
        forged chunk).  The walk found where each such chunk lies (`inside`)."""
        if not inside:
            return
        for chain in chains:
            for chunk in chain.chunks:
                if chunk in inside:
                    address, sizef = inside[chunk]
                    self.add(address, f"chunk {address:#x} (size {sizef & ~SIZE_BITS:#x}) contains {chunk:#x}, which "
                                      f"{label(chain)} lists: its size was overwritten (overlapping chunks), or the "
                                      "list holds a forged chunk")

    def in_two_bins(self, chains: Sequence[BinChain], listed: Sequence[int]) -> None:
        """`listed`: every chain's chunks, sorted; a chunk in it twice is in two bins (a chain
        holds each chunk once: its walk cuts a loop)."""
        twice = set(compress(listed, map(eq, listed, islice(listed, 1, None))))  # at C speed: mostly none
        if not twice:
            return
        first: Dict[int, BinChain] = {}
        for chain in chains:
            for chunk in chain.chunks:
                if chunk not in twice:
                    continue
                other = first.setdefault(chunk, chain)
                if other is not chain:
                    self.add(chunk, f"chunk {chunk:#x} is in two bins, {label(other)} and {label(chain)} "
                                    "(freed twice?)")

    def top_in_a_bin(self, chains: Sequence[BinChain]) -> None:
        """The commands show top as top (glibc's own view); a bin listing it is damage."""
        top = self.arena.state.top
        for chain in chains:
            if top in chain.chunks:
                self.add(top, f"the top chunk {top:#x} is listed by {label(chain)} (freed after it merged "
                              "into top, or a forged link)")


def holds(ordered: Sequence[int], value: int) -> bool:
    """Whether the sorted `ordered` holds `value`."""
    i = bisect_left(ordered, value)
    return i < len(ordered) and ordered[i] == value


def check_arena(heap: Heap, arena: Arena) -> Report:
    """Every problem of one arena (and, in the selected thread's arena, its tcache), and whether
    a thread stopped inside the allocator may be changing it."""
    report = Checker(heap, arena).run()
    report.in_progress = heap.mid_update.mark(arena.address)
    return report
