"""`heap check`: an arena's integrity, checked the way glibc's own checks do, and a few more.

gdb-free, over the model: the problems the walks already collect (sizes that break the heap
walk, bin chains that loop, unaligned or unreadable links, bk pointers that do not point back,
tcache counts) plus the checks that need the walk and the bins side by side: the next chunk's
PREV_INUSE and prev_size against the bins, chunks listed in a bin that the walk does not find,
links leaving every heap, a chunk in two bins, the large bins' nextsize ring, tcache sizes and
keys, and top.  Each Problem names the chunk whose header or links are damaged and, where glibc
has one, the message glibc prints when it trips over that damage (malloc.c's malloc_printerr).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set, Tuple

from .errors import MemoryReadError
from .heap import Heap
from .layouts import GlibcLayout, Version
from .model import (NONCONTIGUOUS_BIT, PREV_INUSE, SIZE_BITS, Arena, BinChain, HeapRegion, Problem, bin_at,
                    heap_initialised, walk_region_batches)

# Every abort message a problem may carry, with the first glibc release whose malloc.c prints
# it (checked against glibc's git tags 2.26 .. 2.42).  On an older glibc the problem has none.
ABORT_SINCE: Dict[str, Version] = {
    "corrupted size vs. prev_size": (2, 26),
    "corrupted double-linked list (not small)": (2, 26),
    "double free or corruption (!prev)": (2, 26),
    "double free or corruption (out)": (2, 26),
    "free(): invalid size": (2, 26),
    "malloc(): memory corruption (fast)": (2, 26),
    "malloc(): smallbin double linked list corrupted": (2, 26),
    "malloc(): corrupted unsorted chunks": (2, 26),
    "malloc_consolidate(): invalid chunk size": (2, 27),
    "malloc(): corrupted top size": (2, 29),
    "malloc(): invalid next->prev_inuse (unsorted)": (2, 29),
    "malloc(): mismatching next->prev_size (unsorted)": (2, 29),
    "malloc(): unsorted double linked list corrupted": (2, 29),
    "malloc(): largebin double linked list corrupted (bk)": (2, 30),
    "malloc(): unaligned tcache chunk detected": (2, 32),
    "malloc(): unaligned fastbin chunk detected": (2, 32),
}

# unlink_chunk's chunksize(p) != prev_size(next_chunk(p)), or its unsorted-bin twin.
PREV_SIZE_ABORTS = {"unsorted": "malloc(): mismatching next->prev_size (unsorted)",
                    "small": "corrupted size vs. prev_size", "large": "corrupted size vs. prev_size"}
# What malloc says when it takes the last chunk (bin->bk) of a bin whose bk chain is broken.
LAST_ABORTS = {"unsorted": "malloc(): unsorted double linked list corrupted",
               "small": "malloc(): smallbin double linked list corrupted", "large": None}
INVALID_SIZE_ABORT = "free(): invalid size"
NEXTSIZE_ABORT = "corrupted double-linked list (not small)"
REGULAR = ("unsorted", "small", "large")


@dataclass
class Report:
    """One arena's check: its problems, and how much was looked at."""

    arena: Arena
    problems: List[Problem]
    chunks: int  # chunks walked
    listed: int  # chunks found in bins (tcache included)


def glibc_abort(layout: GlibcLayout, text: Optional[str]) -> Optional[str]:
    """`text` if this glibc prints it, else None."""
    if text is None or layout.version < ABORT_SINCE.get(text, (0, 0)):
        return None
    return text


def label(chain: BinChain) -> str:
    if chain.kind == "fast":
        return f"fastbin[{chain.index}]"
    return f"tcache[{chain.index}]" if chain.kind == "tcache" else f"{chain.kind} bin {chain.index}"


class Checker:
    """The checks of one arena; `run` returns its Report."""

    def __init__(self, heap: Heap, arena: Arena) -> None:
        self.heap, self.arena = heap, arena
        self.layout, self.reader = heap.layout, heap.reader
        self.S = self.layout.size_sz
        self.problems: List[Problem] = []
        self.regions: List[HeapRegion] = [r for a in heap.arenas for r in a.heaps]

    def add(self, address: int, message: str, abort: Optional[str] = None) -> None:
        self.problems.append(Problem(address, message, abort))

    def in_heaps(self, chunk: int, regions: Sequence[HeapRegion]) -> bool:
        return any(r.first_chunk <= chunk < r.end for r in regions)

    def run(self) -> Report:
        arena = self.arena
        self.problems += arena.problems
        chains, bin_problems = self.heap.bins(arena)
        self.problems += bin_problems
        walked = self.walk()
        regular = {c: (chain.kind, chain.index) for chain in chains if chain.kind in REGULAR for c in chain.chunks}
        fast = {c for chain in chains if chain.kind == "fast" for c in chain.chunks}
        for p in self.problems:  # a fastbin chunk's bad size trips malloc_consolidate before free
            if p.address in fast and p.glibc_abort == INVALID_SIZE_ABORT:
                p.glibc_abort = "malloc_consolidate(): invalid chunk size"
        self.neighbours(walked, regular, fast)
        self.top()
        for chain in chains:
            self.chain_links(chain)
            if chain.kind == "large" and not chain.problems:
                self.nextsize_ring(chain)
            if chain.kind in REGULAR and not chain.problems:
                self.last_link(chain)
        self.tcache_entries([c for c in chains if c.kind == "tcache"])
        self.listed_but_not_walked(chains, walked)
        self.in_two_bins(chains)
        listed = sum(len(c.chunks) for c in chains)
        return Report(arena, self.finish(), sum(len(a) for a, _ in walked), listed)

    def finish(self) -> List[Problem]:
        """Each problem once, by address, with the abort this glibc would print."""
        seen = set()
        out = []
        for p in self.problems:
            if (p.address, p.message) in seen:
                continue
            seen.add((p.address, p.message))
            out.append(Problem(p.address, p.message, glibc_abort(self.layout, p.glibc_abort)))
        out.sort(key=lambda p: p.address)
        return out

    # -- the chunk walk --------------------------------------------------------------------
    def walk(self) -> List[Tuple[List[int], List[int]]]:
        """Per heap region: (addresses, size fields) of the chunks walked, in address order."""
        out = []
        for region in self.arena.heaps:
            addresses: List[int] = []
            sizes: List[int] = []
            for a, s in walk_region_batches(self.reader, self.layout, region, self.arena.state.top, self.problems):
                addresses += a
                sizes += s
            out.append((addresses, sizes))
        return out

    def neighbours(self, walked: List[Tuple[List[int], List[int]]], regular: Dict[int, Tuple[str, int]],
                   fast: Set[int]) -> None:
        """PREV_INUSE and prev_size of each chunk against the chunk before it: clear exactly
        after a chunk in a regular bin, whose size the prev_size footer repeats."""
        for addresses, sizes in walked:
            prev: Optional[int] = None
            for address, sizef in zip(addresses, sizes):
                where = regular.get(prev) if prev is not None else None
                if sizef & PREV_INUSE:
                    if where is not None and prev is not None:
                        self.add(prev, f"chunk {prev:#x} is in the {where[0]} bin {where[1]} but the next chunk "
                                       f"{address:#x} has PREV_INUSE set: the walk sees it in use",
                                 "malloc(): invalid next->prev_inuse (unsorted)" if where[0] == "unsorted" else None)
                elif prev is None:
                    self.add(address, f"chunk {address:#x} is the first of its heap but has PREV_INUSE clear")
                elif where is None:
                    state = "in a fastbin" if prev in fast else "in use"
                    self.add(address, f"chunk {address:#x} has PREV_INUSE clear, but the chunk before it, "
                                      f"{prev:#x}, is {state} (not in a regular bin)",
                             "double free or corruption (!prev)")
                else:
                    try:
                        prev_size = self.reader.word(address)
                    except MemoryReadError:
                        continue
                    psize = address - prev
                    if prev_size != psize:
                        self.add(prev, f"chunk {prev:#x} in the {where[0]} bin {where[1]} has size {psize:#x} "
                                       f"but the next chunk's prev_size is {prev_size:#x}",
                                 PREV_SIZE_ABORTS[where[0]])
                prev = address

    def top(self) -> None:
        state = self.arena.state
        top = state.top
        if not heap_initialised(self.layout, state):
            return  # no heap yet: nothing to check
        region = next((r for r in self.arena.heaps if r.first_chunk <= top < r.end), None)
        if region is None:
            self.add(top, f"top {top:#x} is outside the arena's heaps")
            return
        try:
            size = self.reader.word(top + self.S) & ~SIZE_BITS
        except MemoryReadError:
            self.add(top, f"the top chunk at {top:#x} is not readable")
            return
        end = self.heap_end(region)
        if size > state.system_mem:
            self.add(top, f"top chunk {top:#x} has size {size:#x}, more than the arena's system_mem "
                          f"{state.system_mem:#x} (house of force?)", "malloc(): corrupted top size")
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
        for chunk in chain.chunks:
            if not self.in_heaps(chunk, regions):
                whose = "any heap" if chain.kind == "tcache" else "the arena's heaps"
                self.add(member, f"{label(chain)}: {member:#x} links to {chunk:#x}, outside {whose} "
                                 "(a forged or overwritten link)")
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
                             f"{chain.chunks[-1]:#x}", LAST_ABORTS[chain.kind])

    def nextsize_ring(self, chain: BinChain) -> None:
        """A large bin is sorted by decreasing size; the first chunk of each size is on the
        fd_nextsize/bk_nextsize ring, the others have fd_nextsize NULL."""
        chunks, sizes = chain.chunks, chain.sizes
        firsts = [c for i, c in enumerate(chunks) if i == 0 or sizes[i] != sizes[i - 1]]
        ring = {c: (firsts[(i + 1) % len(firsts)], firsts[i - 1]) for i, c in enumerate(firsts)}
        for i, chunk in enumerate(chunks):
            if i and sizes[i] > sizes[i - 1]:
                self.add(chunk, f"{label(chain)}: chunk {chunk:#x} of size {sizes[i]:#x} follows a smaller one "
                                f"({sizes[i - 1]:#x}); large bins are sorted by decreasing size")
            try:
                fd_ns, bk_ns = self.reader.words(chunk + 4 * self.S, 2)
            except MemoryReadError:
                continue
            want = ring.get(chunk)
            if want is None and fd_ns:
                self.add(chunk, f"{label(chain)}: chunk {chunk:#x} is not the first of its size, yet its "
                                f"fd_nextsize is {fd_ns:#x} (should be NULL)", NEXTSIZE_ABORT)
            elif want is not None and (fd_ns, bk_ns) != want:
                self.add(chunk, f"{label(chain)}: chunk {chunk:#x} has fd_nextsize {fd_ns:#x} and bk_nextsize "
                                f"{bk_ns:#x}, expected {want[0]:#x} and {want[1]:#x}", NEXTSIZE_ABORT)

    def tcache_entries(self, chains: Sequence[BinChain]) -> None:
        """tcache_entry.key: the owning tcache (2.29-2.33) or the process's tcache_key (2.34+).
        The key is random from 2.34: the value most entries share stands for it."""
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
        if L.version < (2, 34):
            expected = self.heap.tcache
        else:
            common = Counter(keys.values()).most_common(2)
            if not common or common[0][1] < 2 or len(common) > 1 and common[1][1] == common[0][1]:
                return
            expected = common[0][0]
        for chunk, key in keys.items():
            if key != expected:
                self.add(chunk, f"tcache: chunk {chunk:#x} has key {key:#x}, not the tcache key {expected:#x}: "
                                "overwritten after free (glibc's double-free check no longer sees it)")

    def listed_but_not_walked(self, chains: Sequence[BinChain], walked: List[Tuple[List[int], List[int]]]) -> None:
        """A chunk a bin lists inside the stretch the walk covered must be one the walk found;
        otherwise it lies inside another chunk (that one's size is wrong, or the bin holds a
        forged chunk)."""
        top = self.arena.state.top
        spans = []
        for (addresses, sizes), region in zip(walked, self.arena.heaps):
            if not addresses:
                continue
            end = addresses[-1] + (sizes[-1] & ~SIZE_BITS)
            if region.first_chunk <= top < region.end and addresses[-1] != top:
                end = addresses[-1]  # the walk broke on the last chunk's size: its extent means nothing
            spans.append((addresses[0], end, addresses, sizes))
        for chain in chains:
            for chunk in chain.chunks:
                for lo, hi, addresses, sizes in spans:
                    if not lo <= chunk < hi:
                        continue
                    k = bisect_right(addresses, chunk) - 1
                    if addresses[k] != chunk:
                        self.add(addresses[k], f"chunk {addresses[k]:#x} (size {sizes[k] & ~SIZE_BITS:#x}) contains "
                                               f"{chunk:#x}, which {label(chain)} lists: its size was overwritten "
                                               "(overlapping chunks), or the list holds a forged chunk")
                    break

    def in_two_bins(self, chains: Sequence[BinChain]) -> None:
        first: Dict[int, BinChain] = {}
        for chain in chains:
            for chunk in chain.chunks:
                other = first.setdefault(chunk, chain)
                if other is not chain:
                    self.add(chunk, f"chunk {chunk:#x} is in two bins, {label(other)} and {label(chain)} "
                                    "(freed twice?)")


def check_arena(heap: Heap, arena: Arena) -> Report:
    """Every problem of one arena (and, in the selected thread's arena, its tcache)."""
    return Checker(heap, arena).run()
