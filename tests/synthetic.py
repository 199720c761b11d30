"""Synthetic memory images of a glibc heap, laid out by hand from glibc's rules.

Nothing here calls the model's walkers: struct offsets come from gdb_heap.layouts (checked
separately against the published numbers in test_layouts.py), bin numbers and sizes from the
hand-written tables of tests/handbins.py, and everything else follows malloc.c: chunk headers
with PREV_INUSE set the way _int_free/_int_malloc leave them, bin headers at bin_at(i), tcache
entries holding user pointers, safe-linking (PROTECT_PTR) on tcache next and fastbin fd from
2.32, large bins sorted by decreasing size with nextsize links.

The builder keeps its own record of what it put where (`Synthetic.chunks`, `Synthetic.chains`)
so tests compare the model's answers against that record.

Usage:
    b = HeapBuilder((2, 36), 8)
    a = b.chunk(0x20)                 # in use
    t = b.chunk(0x30, "tcache")       # free in tcache
    u = b.chunk(0x500, "unsorted")
    s = b.build()
    heap = s.heap()
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

from gdb_heap.heap import Anchors, Heap
from gdb_heap.layouts import GlibcLayout, Version, layout_for
from gdb_heap.mappings import Mapping
from gdb_heap.memory import ImageMemory, Reader
from tests import handbins as hb

PREV_INUSE = 0x1
KINDS = ("tcache", "fast", "unsorted", "small", "large")
PAGE = 0x1000
TCACHE_KEY = 0x5A5A1234C3C3F00D  # a stand-in for 2.34+'s random tcache_key
TCACHE_KEY_OFFSET = 0x2C00  # where the image's libc keeps it (past main_arena and mp_)


@dataclass
class ExpectedChunk:
    address: int
    size: int  # chunksize, flags stripped
    size_field: int
    state: str  # in_use, free, top
    bin: Optional[str] = None
    index: Optional[int] = None


@dataclass
class ExpectedChain:
    kind: str
    index: int
    size: int  # exact size (tcache/fast/small) or the bin's smallest size (unsorted/large)
    count: int
    chunks: List[int]


@dataclass
class Synthetic:
    """A built image and the builder's record of it."""

    memory: ImageMemory
    anchors: Anchors
    layout: GlibcLayout
    arena: int
    mp: int
    sbrk_base: int
    first_chunk: int
    top: int
    top_size: int
    heap_end: int
    tcache: Optional[int]  # the tcache_perthread_struct (a user pointer)
    chunks: List[ExpectedChunk]
    chains: List[ExpectedChain]
    heap_bytes: bytearray
    libc_base: int
    libc_bytes: bytearray
    regions: List[Tuple[int, int]] = field(default_factory=list)  # (start, end)

    @property
    def S(self) -> int:
        return self.layout.size_sz

    def reader(self) -> Reader:
        return Reader(self.memory, self.layout.size_sz)

    def heap(self) -> Heap:
        return Heap(self.reader(), self.layout, self.anchors)

    def chain(self, kind: str, index: int) -> ExpectedChain:
        for c in self.chains:
            if (c.kind, c.index) == (kind, index):
                return c
        raise KeyError((kind, index))

    def chunk(self, address: int) -> ExpectedChunk:
        for c in self.chunks:
            if c.address == address:
                return c
        raise KeyError(address)

    def free_chunks(self, kind: Optional[str] = None) -> List[ExpectedChunk]:
        return [c for c in self.chunks if c.state == "free" and (kind is None or c.bin == kind)]

    # -- corrupting the image (before a Reader is made: Readers cache) ------------------------
    def _buffer(self, address: int, length: int) -> Tuple[bytearray, int]:
        if self.sbrk_base <= address and address + length <= self.heap_end:
            return self.heap_bytes, address - self.sbrk_base
        if self.libc_base <= address and address + length <= self.libc_base + len(self.libc_bytes):
            return self.libc_bytes, address - self.libc_base
        raise ValueError(f"{address:#x} is not in the image")

    def poke(self, address: int, value: int, size: Optional[int] = None) -> None:
        size = size or self.S
        buf, off = self._buffer(address, size)
        buf[off:off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    def peek(self, address: int, size: Optional[int] = None) -> int:
        size = size or self.S
        buf, off = self._buffer(address, size)
        return int.from_bytes(buf[off:off + size], "little")

    def poke_bytes(self, address: int, data: bytes) -> None:
        buf, off = self._buffer(address, len(data))
        buf[off:off + len(data)] = data


def default_bases(word: int) -> Tuple[int, int]:
    """(sbrk_base, libc data base) like a PIE process: 64 KiB aligned heap, libc high up."""
    if word == 8:
        return 0x555555560000, 0x7FFFF7E10000
    return 0x56560000, 0xF7F90000


class HeapBuilder:
    """Lays out a main-arena heap chunk by chunk, then builds the image.

    `chunk(size, kind)` appends a chunk of exactly `size` bytes (a chunk size, not a request);
    kind None means in use.  Free chunks are freed in the order of `chunk` calls unless
    `free_order` is given to `build`: tcache, fast, unsorted and small lists insert at the
    head (the last freed chunk is first in list order), large bins keep decreasing size and put
    a chunk of an already present size second (as _int_malloc does).
    """

    def __init__(self, version: Version = (2, 36), word: int = 8, *, tcache: bool = True,
                 tcache_count: Optional[int] = None, sbrk_base: Optional[int] = None,
                 libc_base: Optional[int] = None) -> None:
        self.layout = layout_for(version, word)
        self.version = version
        self.S = word
        base_heap, base_libc = default_bases(word)
        self.sbrk_base = sbrk_base if sbrk_base is not None else base_heap
        self.libc_base = libc_base if libc_base is not None else base_libc
        self.arena = self.libc_base + 0xC80  # like &main_arena inside libc's .data
        self.mp = self.libc_base + 0x2000 + 0x280
        L = self.layout
        A, H = L.malloc_alignment, L.header_size
        first = self.sbrk_base
        while (first + H) % A:
            first += self.S
        self.first_chunk = first
        self.pos = first
        # [address, size, kind]
        self.plan: List[Tuple[int, int, Optional[str]]] = []
        self.has_tcache = tcache and L.features.tcache
        self.tcache_count = tcache_count if tcache_count is not None else L.features.tcache_fill
        self.tcache_chunk: Optional[int] = None
        if self.has_tcache:
            self.tcache_chunk = self.chunk(hb.tcache_struct_chunk(version, word))
        self.max_fast = 0x80 if word == 8 else 0x40  # global_max_fast's default

    # -- laying out ---------------------------------------------------------------------------
    def chunk(self, size: int, kind: Optional[str] = None) -> int:
        L, S = self.layout, self.S
        if size < hb.MINSIZE[S] or size % hb.MALLOC_ALIGNMENT:
            raise ValueError(f"bad chunk size {size:#x}")
        if kind is not None and kind not in KINDS:
            raise ValueError(kind)
        if kind == "tcache" and (not self.has_tcache or hb.tcache_index(size, S) >= 64):
            raise ValueError(f"size {size:#x} does not go to tcache")
        if kind == "fast" and (not L.features.fastbins or size > self.max_fast):
            raise ValueError(f"size {size:#x} does not go to a fastbin")
        if kind == "small" and not hb.in_smallbin_range(size, S):
            raise ValueError(f"size {size:#x} is not a small bin size")
        if kind == "large" and hb.in_smallbin_range(size, S):
            raise ValueError(f"size {size:#x} is not a large bin size")
        if kind in ("unsorted", "small", "large") and self.plan and self.plan[-1][2] in ("unsorted", "small", "large"):
            raise ValueError("two adjacent chunks in regular bins would have been consolidated")
        address = self.pos
        self.plan.append((address, size, kind))
        self.pos += size
        return address

    def kind_of(self, address: int) -> Optional[str]:
        for a, _, k in self.plan:
            if a == address:
                return k
        raise KeyError(address)

    # -- building ------------------------------------------------------------------------------
    def build(self, *, top_size_min: Optional[int] = None, free_order: Optional[Sequence[int]] = None,
              extra_pages: int = 0) -> Synthetic:
        L, S = self.layout, self.S
        H = L.header_size
        if self.plan and self.plan[-1][2] in ("unsorted", "small", "large"):
            raise ValueError("a chunk in a regular bin next to top would have been merged into top")
        top = self.pos
        min_top = top_size_min if top_size_min is not None else L.minsize
        heap_end = (top + min_top + PAGE - 1) // PAGE * PAGE + extra_pages * PAGE
        system_mem = heap_end - self.sbrk_base
        top_size = heap_end - top  # on i386 this is 8 mod 16, as glibc's sysmalloc leaves it
        heap = bytearray(system_mem)
        libc = bytearray(0x3000)

        def put(address: int, value: int, size: int = S) -> None:
            if self.sbrk_base <= address < heap_end:
                buf, off = heap, address - self.sbrk_base
            else:
                buf, off = libc, address - self.libc_base
                assert 0 <= off and off + size <= len(libc), hex(address)
            buf[off:off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

        def protect(field_address: int, target: int) -> int:
            """PROTECT_PTR: what glibc stores in a tcache next / fastbin fd word."""
            if not L.features.safe_linking:
                return target
            return (field_address >> 12) ^ target

        # Fill user data with a recognisable pattern (the in-use data a program leaves).
        for address, size, _ in self.plan:
            start = address - self.sbrk_base + 2 * S
            heap[start:address - self.sbrk_base + size] = b"A" * (size - 2 * S)

        # Chunk headers: PREV_INUSE is clear only after a chunk in a regular bin, whose size
        # is then repeated as the next chunk's prev_size (set_foot).
        regular = ("unsorted", "small", "large")
        prev_kind: Optional[str] = "in_use"
        records: List[ExpectedChunk] = []
        for address, size, kind in self.plan:
            pflag = 0 if prev_kind in regular else PREV_INUSE
            put(address + S, size | pflag)
            if pflag == 0:
                put(address, self._size_of_prev(address))
            records.append(ExpectedChunk(address, size, size | pflag, "in_use" if kind is None else "free", kind))
            prev_kind = kind
        put(top + S, top_size | PREV_INUSE)
        if prev_kind in regular:  # cannot happen (checked above), kept for clarity
            put(top, self._size_of_prev(top))

        order = list(free_order) if free_order is not None else [a for a, _, k in self.plan if k]
        sizes = {a: s for a, s, _ in self.plan}
        kinds = {a: k for a, _, k in self.plan}  # kind_of's answers, for heaps of many chunks
        chains: Dict[Tuple[str, int], List[int]] = {}
        for address in order:
            kind = kinds[address]
            assert kind is not None, f"{address:#x} is not free"
            size = sizes[address]
            if kind == "tcache":
                index = hb.tcache_index(size, S)
            elif kind == "fast":
                index = hb.fastbin_index(size, S)
            elif kind == "unsorted":
                index = 1
            else:
                index = hb.bin_index(size, S)
            members = chains.setdefault((kind, index), [])
            if kind == "large":
                pos = 0
                while pos < len(members) and sizes[members[pos]] > size:
                    pos += 1
                if pos < len(members) and sizes[members[pos]] == size:
                    pos += 1  # "always insert in the second position"
                members.insert(pos, address)
            else:
                members.insert(0, address)
        index_of = {a: index for (_kind, index), members in chains.items() for a in members}
        for rec in records:
            if rec.state == "free" and rec.address in index_of:
                rec.index = index_of[rec.address]

        # tcache_perthread_struct
        tcache: Optional[int] = None
        if self.has_tcache and self.tcache_chunk is not None:
            tcache = self.tcache_chunk + H
            t = L.tcache_perthread
            c_off, c_size, nbins = t.fields[L.counts_field]
            e_off = t.offset("entries")
            for i in range(nbins):
                members = chains.get(("tcache", i), [])
                if len(members) > self.tcache_count:
                    raise ValueError(f"tcache bin {i} holds at most {self.tcache_count}")
                value = (self.tcache_count - len(members)) if L.features.tcache_free_slots else len(members)
                put(tcache + c_off + i * c_size, value, c_size)
                put(tcache + e_off + i * S, members[0] + H if members else 0)
                for n, chunk in enumerate(members):
                    mem = chunk + H
                    nxt = members[n + 1] + H if n + 1 < len(members) else 0
                    put(mem, protect(mem, nxt))
                    if L.features.tcache_key:
                        key = tcache if L.version < (2, 34) else TCACHE_KEY
                        put(mem + S, key)

        # malloc_state
        ms = L.malloc_state

        def bin_at(i: int) -> int:
            return self.arena + ms.offset("bins") + (i - 1) * 2 * S - 2 * S

        fast_any = False
        if L.features.fastbins:
            for i in range(L.nfastbins):
                members = chains.get(("fast", i), [])
                put(self.arena + ms.offset("fastbinsY") + i * S, members[0] if members else 0)
                for n, chunk in enumerate(members):
                    nxt = members[n + 1] if n + 1 < len(members) else 0
                    put(chunk + 2 * S, protect(chunk + 2 * S, nxt))
                fast_any = fast_any or bool(members)
        binmap = [0] * 4
        for i in range(1, 128):
            kind = "unsorted" if i == 1 else "small" if i < 64 else "large"
            members = chains.get((kind, i), [])
            header = bin_at(i)
            fd_slot = self.arena + ms.offset("bins") + 2 * (i - 1) * S
            put(fd_slot, members[0] if members else header)
            put(fd_slot + S, members[-1] if members else header)
            if members and i > 1:
                binmap[i >> 5] |= 1 << (i & 31)
            for n, chunk in enumerate(members):
                fd = members[n + 1] if n + 1 < len(members) else header
                bk = members[n - 1] if n > 0 else header
                put(chunk + 2 * S, fd)
                put(chunk + 3 * S, bk)
            if kind == "large" and members:
                # fd_nextsize/bk_nextsize: a ring over the first chunk of each size.
                firsts = [c for n, c in enumerate(members) if n == 0 or sizes[members[n - 1]] != sizes[c]]
                for n, chunk in enumerate(firsts):
                    put(chunk + 4 * S, firsts[(n + 1) % len(firsts)])
                    put(chunk + 5 * S, firsts[n - 1])
                for chunk in members:
                    if chunk not in firsts:
                        put(chunk + 4 * S, 0)
                        put(chunk + 5 * S, 0)
            elif kind == "unsorted":
                # _int_free clears a large chunk's nextsize links when it goes to the unsorted bin
                for chunk in members:
                    if not hb.in_smallbin_range(sizes[chunk], S):
                        put(chunk + 4 * S, 0)
                        put(chunk + 5 * S, 0)
        put(self.arena + ms.offset("mutex"), 0, 4)
        flags = 0
        if not L.features.have_fastchunks and L.features.fastbins and not fast_any:
            flags |= 0x1  # FASTCHUNKS_BIT (<= 2.26): set when there are NO fast chunks
        put(self.arena + ms.offset("flags"), flags, 4)
        if ms.has("have_fastchunks"):
            put(self.arena + ms.offset("have_fastchunks"), int(fast_any), 4)
        put(self.arena + ms.offset("top"), top)
        put(self.arena + ms.offset("last_remainder"), 0)
        for n, word in enumerate(binmap):
            put(self.arena + ms.offset("binmap") + 4 * n, word, 4)
        put(self.arena + ms.offset("next"), self.arena)
        put(self.arena + ms.offset("next_free"), 0)
        put(self.arena + ms.offset("attached_threads"), 1)
        put(self.arena + ms.offset("system_mem"), system_mem)
        put(self.arena + ms.offset("max_system_mem"), system_mem)

        # malloc_par
        mp = L.malloc_par
        for name, value in (("trim_threshold", 128 * 1024), ("top_pad", 128 * 1024),
                            ("mmap_threshold", 128 * 1024), ("arena_test", 8 if S == 8 else 2),
                            ("arena_max", 0), ("n_mmaps", 0), ("n_mmaps_max", 65536),
                            ("max_n_mmaps", 0), ("no_dyn_threshold", 0), ("mmapped_mem", 0),
                            ("max_mmapped_mem", 0), ("sbrk_base", self.sbrk_base),
                            ("tcache_bins", 64), ("tcache_max_bytes", 1032 if S == 8 else 1020),
                            ("tcache_count", self.tcache_count), ("tcache_unsorted_limit", 0)):
            if mp.has(name):
                off, size, _ = mp.fields[name]
                put(self.mp + off, value, size)

        # The record, in the contract's order.
        records.append(ExpectedChunk(top, top_size, top_size | PREV_INUSE, "top"))
        expected_chains: List[ExpectedChain] = []
        for kind in KINDS:
            for (k, index) in sorted(key for key in chains if key[0] == kind):
                members = chains[(k, index)]
                if not members:
                    continue
                if kind == "tcache":
                    size = hb.tcache_size(index, S)
                elif kind == "fast":
                    size = hb.fastbin_size(index, S)
                elif kind == "small":
                    size = hb.smallbin_size(index, S)
                elif kind == "unsorted":
                    size = hb.MINSIZE[S]
                else:
                    size = hb.large_bin_starts(S)[index]
                expected_chains.append(ExpectedChain(kind, index, size, len(members), list(members)))

        glibc = f"{self.version[0]}.{self.version[1]}"
        key_at = None
        if L.features.tcache_key_random:  # glibc's static tcache_key, in libc's .bss
            key_at = self.libc_base + TCACHE_KEY_OFFSET
            put(key_at, TCACHE_KEY)
        anchors = Anchors(main_arena=self.arena, mp=self.mp, glibc=glibc, located_by="synthetic",
                          tcache=tcache, thread_arena=self.arena, tcache_key=key_at,
                          libc_data=[(self.libc_base, self.libc_base + len(libc))])
        memory = ImageMemory({self.sbrk_base: heap, self.libc_base: libc})
        return Synthetic(memory=memory, anchors=anchors, layout=L, arena=self.arena, mp=self.mp,
                         sbrk_base=self.sbrk_base, first_chunk=self.first_chunk, top=top,
                         top_size=top_size, heap_end=heap_end, tcache=tcache, chunks=records,
                         chains=expected_chains, heap_bytes=heap, libc_base=self.libc_base,
                         libc_bytes=libc,
                         regions=[(self.sbrk_base, heap_end), (self.libc_base, self.libc_base + len(libc))])

    def _size_of_prev(self, address: int) -> int:
        for a, s, _ in self.plan:
            if a + s == address:
                return s
        raise KeyError(address)


# -- convenient ready-made heaps --------------------------------------------------------------

def every_bin_heap(version: Version = (2, 36), word: int = 8) -> Tuple[HeapBuilder, Synthetic]:
    """One heap with chunks in use and in every kind of bin, several per chain."""
    b = HeapBuilder(version, word)
    L = b.layout
    A = L.malloc_alignment
    m = L.minsize
    b.chunk(m)  # in use
    for _ in range(3):
        b.chunk(m + A, "tcache")
        b.chunk(m)
    b.chunk(m + 3 * A, "tcache")
    b.chunk(m)
    if L.features.fastbins:
        for _ in range(3):
            b.chunk(m + (A if word == 8 else 2 * A), "fast")
            b.chunk(m)
        b.chunk(m, "fast")
        b.chunk(m)
    for _ in range(2):
        b.chunk(0x500 if word == 8 else 0x400, "unsorted")
        b.chunk(m)
    b.chunk(0x90, "unsorted")
    b.chunk(m)
    for _ in range(3):
        b.chunk(0x100, "small")
        b.chunk(m)
    b.chunk(0x200, "small")
    b.chunk(m)
    for size in (0x420, 0x440, 0x430, 0x440, 0x420, 0x430):
        b.chunk(size, "large")
        b.chunk(m)
    b.chunk(0x1000, "large")
    b.chunk(0x100)
    return b, b.build(top_size_min=0x1000)


def uninitialised_image(version: Version = (2, 36), word: int = 8) -> Synthetic:
    """main_arena and mp_ as they are before the first malloc (2.42+: after ptmalloc_init):
    every bin header points at itself, top = initial_top = bin_at(1), mp_.sbrk_base = 0."""
    L = layout_for(version, word)
    _, libc_base = default_bases(word)
    libc = bytearray(0x3000)
    arena = libc_base + 0xC80
    mp = libc_base + 0x2000 + 0x280
    ms = L.malloc_state

    def put(address: int, value: int, size: int = word) -> None:
        off = address - libc_base
        libc[off:off + size] = value.to_bytes(size, "little")

    header1 = arena + ms.offset("bins") - 2 * word
    for i in range(1, 128):
        header = arena + ms.offset("bins") + (i - 1) * 2 * word - 2 * word
        put(arena + ms.offset("bins") + 2 * (i - 1) * word, header)
        put(arena + ms.offset("bins") + (2 * (i - 1) + 1) * word, header)
    put(arena + ms.offset("top"), header1)
    put(arena + ms.offset("next"), arena)
    put(arena + ms.offset("attached_threads"), 1)
    if L.malloc_par.has("tcache_count"):
        put(mp + L.malloc_par.offset("tcache_count"), L.features.tcache_fill)
    anchors = Anchors(main_arena=arena, mp=mp, glibc=f"{version[0]}.{version[1]}", located_by="synthetic",
                      tcache=None, thread_arena=arena)
    return Synthetic(memory=ImageMemory({libc_base: libc}), anchors=anchors, layout=L, arena=arena, mp=mp,
                     sbrk_base=0, first_chunk=0, top=header1, top_size=0, heap_end=0, tcache=None, chunks=[],
                     chains=[], heap_bytes=bytearray(), libc_base=libc_base, libc_bytes=libc,
                     regions=[(libc_base, libc_base + len(libc))])


def many_chunks_heap(n: int, version: Version = (2, 36), word: int = 8) -> Synthetic:
    """A heap of `n` chunks (plus the tcache struct and top): every 5th free in a bin."""
    b = HeapBuilder(version, word)
    L = b.layout
    m = L.minsize
    big = 0x100
    for i in range(n):
        if i % 10 == 3:
            b.chunk(big, "small")
        elif i % 10 == 7 and i < 7 * 10:
            b.chunk(m + L.malloc_alignment, "tcache")
        else:
            b.chunk(m)
    return b.build()


def noncontiguous(s: Synthetic, mapped_at: int, length: int = 0x2000, first_size: int = 0x100) -> Synthetic:
    """`s` as sysmalloc leaves it after falling back to mmap (malloc.c, glibc 2.36): the old top
    shrunk by two CHUNK_HDR_SZ, rounded down to MALLOC_ALIGNMENT, then two fencepost chunks of
    CHUNK_HDR_SZ | PREV_INUSE; a new region at `mapped_at` holding one in-use chunk of
    `first_size` and the new top; NONCONTIGUOUS_BIT set and system_mem grown by `length`.
    The old top is left in use (glibc frees it into a bin; that is beside the point here).
    Returns the new image; `s.chunks` ends with the old top, the new chunk and the new top."""
    L, S = s.layout, s.S
    H = 2 * S  # CHUNK_HDR_SZ
    old_size = (s.top_size - 2 * H) & ~(L.malloc_alignment - 1)
    s.poke(s.top + S, old_size | 1)
    fencepost = s.top + old_size
    s.poke(fencepost + S, H | 1)
    s.poke(fencepost + H + S, H | 1)
    region = bytearray(length)
    first = mapped_at
    while (first + H) % L.malloc_alignment:
        first += S
    new_top = first + first_size
    region[first - mapped_at + S:first - mapped_at + 2 * S] = (first_size | 1).to_bytes(S, "little")
    top_size = mapped_at + length - new_top
    region[new_top - mapped_at + S:new_top - mapped_at + 2 * S] = (top_size | 1).to_bytes(S, "little")
    s.memory.add(mapped_at, region)
    off = L.malloc_state.offset
    s.poke(s.arena + off("top"), new_top)
    s.poke(s.arena + off("flags"), s.peek(s.arena + off("flags"), 4) | 2, 4)
    s.poke(s.arena + off("system_mem"), s.peek(s.arena + off("system_mem")) + length)
    heap_map = Mapping(s.sbrk_base, s.heap_end, "[heap]")
    new_map = Mapping(mapped_at, mapped_at + length)
    anchors = replace(s.anchors, mappings=lambda: ([heap_map, new_map], "synthetic"))
    chunks = [c for c in s.chunks if c.state != "top"]
    chunks += [ExpectedChunk(s.top, old_size, old_size | 1, "in_use"),
               ExpectedChunk(first, first_size, first_size | 1, "in_use"),
               ExpectedChunk(new_top, top_size, top_size | 1, "top")]
    return replace(s, anchors=anchors, top=new_top, top_size=top_size, chunks=chunks,
                   regions=s.regions + [(mapped_at, mapped_at + length)])
