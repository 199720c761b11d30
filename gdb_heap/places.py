"""What any address is, as malloc sees the process: `heap where` and `heap layout`.

gdb-free: built on a Heap, the layouts' struct offsets (a field's name is a function of the
layout and the address) and what the gdb side hands in: a symbol lookup, and each thread's
stack pointer and thread pointer (in Heap.threads).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .errors import HeapError
from .heap import Heap, ThreadInfo, Where
from .layouts import GlibcLayout, StructLayout, bin_kind
from .mappings import Mapping, containing
from .model import Arena, HeapRegion, bin_label
from .symbols import SymbolLookup

PLACE_KEYS = ("address", "kind", "chunk", "offset", "arena", "thread", "field", "symbol", "mapping")


@dataclass
class Place:
    """One answer of `heap where`: the keys of its JSON document, and what the text adds."""

    address: int
    # chunk, mmapped, arena, malloc_par, heap_info, heap_reserve, heap, tcache, stack, symbol,
    # mapping, nothing
    kind: str
    chunk: Optional[int] = None
    offset: Optional[int] = None  # from the start of what `kind` names (chunk, struct, $sp, symbol, mapping)
    arena: Optional[int] = None
    thread: Optional[int] = None  # gdb's thread number
    field: Optional[str] = None  # "bins[4]", "entries[3]", "mprotect_size"
    inner: int = 0  # the byte of that field (or element)
    symbol: Optional[str] = None  # "main_arena+64"
    mapping: Optional[str] = None  # its name in `info proc mappings` ("" for anonymous memory)
    meaning: str = ""  # what the field is for: "small[3]'s header: its fd"
    expression: str = ""  # the field as a gdb expression: "main_arena.bins[4]"
    where: Optional[Where] = None  # kind chunk or mmapped: the chunk and its state
    owner: Optional[ThreadInfo] = None  # kind stack or tcache: the thread
    span: Optional[Mapping] = None  # the mapping holding the address

    def doc(self) -> dict:  # type: ignore[type-arg]
        return {k: getattr(self, k) for k in PLACE_KEYS}


def field_name(struct: StructLayout, offset: int) -> Optional[Tuple[str, str, int]]:
    """(field as written in C, its bare name, offset into it) at `offset` of the struct."""
    found = struct.field_at(offset)
    if found is None:
        return None
    name, index, inner = found
    return (f"{name}[{index}]" if index >= 0 else name), name, inner


def bin_of_word(i: int) -> Tuple[str, int]:
    """malloc_state.bins[i]: bin_at(m, b) is &bins[(b - 1) * 2] less offsetof(fd), so word i
    is the fd (even) or bk (odd) of bin i // 2 + 1."""
    b = i // 2 + 1
    return bin_kind(b), b


ARENA_FIELDS = {
    "mutex": "the arena's lock", "flags": "NONCONTIGUOUS_BIT, ARENA_CORRUPTION_BIT",
    "have_fastchunks": "set when a fastbin may hold a chunk", "top": "the top chunk",
    "last_remainder": "the remainder of the last split of a small request",
    "next": "the next arena of the ring", "next_free": "the next arena of the free list",
    "attached_threads": "how many threads use this arena", "system_mem": "bytes got from the system",
    "max_system_mem": "the most system_mem ever was"}


def arena_meaning(layout: GlibcLayout, name: str, index: int) -> str:
    if name == "fastbinsY":
        return f"the head of {bin_label('fast', index)}"
    if name == "bins":
        kind, b = bin_of_word(index)
        return f"{bin_label(kind, b)}'s header: its {'fd (first chunk)' if index % 2 == 0 else 'bk (last chunk)'}"
    if name == "binmap":
        return f"the bitmap of bins {32 * index}..{32 * index + 31}"
    return ARENA_FIELDS.get(name, "")


def tcache_meaning(layout: GlibcLayout, name: str, index: int) -> str:
    label = bin_label("tcache", index)
    if name == "entries":
        return f"the head of {label}"
    return f"{label}'s free slots" if name == "num_slots" else f"the count of {label}"


def _in_struct(struct: StructLayout, start: int, address: int) -> Optional[Tuple[str, str, int]]:
    if not start <= address < start + struct.size:
        return None
    return field_name(struct, address - start) or ("(padding)", "", 0)


def _malloc_state_place(heap: Heap, address: int) -> Optional[Place]:
    layout = heap.layout
    for arena in heap.arenas:
        found = _in_struct(layout.malloc_state, arena.address, address)
        if found is not None:
            text, name, inner = found
            index = int(text[text.index("[") + 1:-1]) if "[" in text else -1
            struct = "main_arena." if arena.main else f"((struct malloc_state *) {arena.address:#x})->"
            return Place(address, "arena", offset=address - arena.address, arena=arena.address, field=text,
                         inner=inner, meaning=arena_meaning(layout, name, index), expression=struct + text)
    found = _in_struct(layout.malloc_par, heap.anchors.mp, address)
    if found is not None:
        return Place(address, "malloc_par", offset=address - heap.anchors.mp, field=found[0], inner=found[2],
                     expression=f"mp_.{found[0]}")
    return None


def struct_place(heap: Heap, address: int) -> Optional[Place]:
    """A field of malloc's own state outside the chunks: an arena, mp_, a thread heap's heap_info."""
    return _malloc_state_place(heap, address) or _heap_info_place(heap, address)


def thread_arena_heaps(heap: Heap) -> List[Tuple[Arena, HeapRegion]]:
    return [(a, r) for a in heap.arenas for r in a.heaps if r.heap_info is not None]


def _heap_info_place(heap: Heap, address: int) -> Optional[Place]:
    for arena, region in thread_arena_heaps(heap):
        info = region.heap_info
        assert info is not None
        found = _in_struct(heap.layout.heap_info, info, address)
        if found is not None:
            return Place(address, "heap_info", offset=address - info, arena=arena.address, field=found[0],
                         inner=found[2],
                         meaning=f"of a heap of arena {arena.address:#x}",
                         expression=f"((heap_info *) {info:#x})->{found[0]}")
    return None


def _reserve_place(heap: Heap, address: int) -> Optional[Place]:
    """Past a thread heap's chunks: made writable but unused (below mprotect_size), or only
    reserved (PROT_NONE, up to HEAP_MAX_SIZE from the heap_info)."""
    for arena, region in thread_arena_heaps(heap):
        info = region.heap_info
        assert info is not None
        if region.end <= address < info + heap.layout.heap_max_size:
            writable = address < info + region.mprotect_size
            meaning = ("made writable (below mprotect_size), not yet part of the heap" if writable else
                       "reserved for the heap to grow into (HEAP_MAX_SIZE), not writable yet")
            return Place(address, "heap_reserve", offset=address - info, arena=arena.address, meaning=meaning)
    return None


def _region_place(heap: Heap, address: int) -> Optional[Place]:
    """In an arena's heap region where no chunk walk reached: glibc's fencepost at the end of
    a region left behind, or past where the walk broke on a damaged size."""
    for arena in heap.arenas:
        for r in arena.heaps:
            if r.start <= address < r.end + heap.layout.header_size:
                fence = r.fencepost is not None and r.fencepost <= address < r.fencepost + 3 * heap.layout.header_size
                meaning = ("glibc's fencepost, the two chunks ending a region malloc left behind" if fence else
                           "no chunk walk reaches it: damaged before it (see heap check)")
                return Place(address, "heap", offset=address - r.start, arena=arena.address, meaning=meaning)
    return None


def tcache_structs(heap: Heap) -> List[Tuple[Optional[ThreadInfo], int]]:
    """Every thread's tcache_perthread_struct (the selected thread's as the anchors have it)."""
    out: List[Tuple[Optional[ThreadInfo], int]] = []
    for t in heap.threads:
        address = heap.anchors.tcache if t.selected else t.tcache
        if address:
            out.append((t, address))
    if not heap.threads and heap.anchors.tcache:
        out.append((None, heap.anchors.tcache))
    return out


def _tcache_place(heap: Heap, address: int) -> Optional[Place]:
    layout = heap.layout
    if not layout.features.tcache:
        return None
    for t, tcache in tcache_structs(heap):
        found = _in_struct(layout.tcache_perthread, tcache, address)
        if found is not None:
            text, name, inner = found
            index = int(text[text.index("[") + 1:-1]) if "[" in text else -1
            return Place(address, "tcache", chunk=tcache - layout.header_size, offset=address - tcache,
                         thread=t.num if t else None, field=text, inner=inner,
                         meaning=tcache_meaning(layout, name, index), owner=t,
                         expression=f"((tcache_perthread_struct *) {tcache:#x})->{text}")
    return None


def _chunk_place(heap: Heap, address: int) -> Optional[Place]:
    try:
        w = heap.where(address)
    except HeapError:
        return None
    return Place(address, "mmapped" if w.state == "mmapped" else "chunk", chunk=w.chunk, offset=w.offset,
                 arena=w.arena.address if w.arena else None, where=w)


PAGE = 4096


def stack_place(heap: Heap, address: int, span: Optional[Mapping]) -> Optional[Place]:
    """The thread whose stack holds `address`: the one whose $sp is in the same mapping.  The
    kernel merges neighbouring thread stacks into one mapping; then each stack's allocation ends
    at the page after its thread pointer (glibc puts struct pthread at the top), so the owner
    is the thread with the lowest such end above the address."""
    if span is None:
        return None
    owners = [t for t in heap.threads if t.sp is not None and span.start <= t.sp < span.end]

    def top(t: ThreadInfo) -> int:
        x = t.tp if t.tp is not None and span.start <= t.tp < span.end else t.sp
        return ((x or 0) | (PAGE - 1)) + 1

    if len(owners) > 1:
        above = [t for t in owners if address < top(t)]
        owners = [min(above, key=top)] if above else []
    if not owners:
        return None
    t = owners[0]
    return Place(address, "stack", offset=address - (t.sp or 0), thread=t.num, owner=t)


def describe(heap: Heap, address: int, symbol: Optional[SymbolLookup] = None) -> Place:
    """What `address` is, the most precise answer first: a field of malloc's own structures
    (an arena, mp_, a heap_info, a thread's tcache), a chunk, the unused end of a thread heap,
    a thread's stack, a global, a mapping, or nothing."""
    maps, _ = heap.anchors.mappings()
    span = containing(maps, address)
    place = (_malloc_state_place(heap, address) or _heap_info_place(heap, address) or
             _tcache_place(heap, address) or _chunk_place(heap, address) or _reserve_place(heap, address) or
             _region_place(heap, address) or stack_place(heap, address, span))
    sym = (symbol or heap.anchors.symbol)(address)
    if place is None:
        if sym is not None:
            place = Place(address, "symbol", offset=sym.offset)
        elif span is not None:
            place = Place(address, "mapping", offset=address - span.start)
        else:
            place = Place(address, "nothing")
    if sym is not None:
        place.symbol = str(sym)
    if span is not None:
        place.mapping, place.span = span.path, span
    return place


# -- heap layout -------------------------------------------------------------------------------

@dataclass
class Item:
    """One thing malloc or a thread has in the address space: [start, end) and what it is."""

    start: int
    end: int  # start for a point (a pointer into a mapping: $sp, the thread pointer)
    what: str


@dataclass
class Region:
    """One mapping of the process and the malloc-related things inside it."""

    mapping: Mapping
    name: str  # the file's base name, the kernel's [heap]/[stack], or "" (anonymous)
    items: List[Item]


def _arena_text(arena: Arena) -> str:
    return "main arena" if arena.main else f"arena {arena.address:#x}"


def _threads_of(heap: Heap, arena: Arena) -> str:
    nums = [str(t.num) for t in heap.arena_threads(arena)]
    if len(nums) > 3:
        return f", {len(nums)} threads"
    return f", thread{'s' * (len(nums) > 1)} {', '.join(nums)}" if nums else ""


def layout_items(heap: Heap) -> List[Item]:
    """malloc's objects and the threads' stacks and TLS, in address order."""
    items: List[Item] = []
    L = heap.layout
    for arena in heap.arenas:
        name = _arena_text(arena)
        items.append(Item(arena.address, arena.address + L.malloc_state.size,
                          f"{'main_arena' if arena.main else 'malloc_state'} ({name}{_threads_of(heap, arena)})"))
        for n, r in enumerate(arena.heaps, 1):
            if r.heap_info is None:
                number = f" (region {n})" if len(arena.heaps) > 1 else ""
                items.append(Item(r.start, r.end, f"{name}'s heap{number}"))
                continue
            items.append(Item(r.heap_info, r.heap_info + r.info_size, f"heap of {name}: in use (size)"))
            if r.mprotect_size > r.info_size:
                items.append(Item(r.heap_info + r.info_size, r.heap_info + r.mprotect_size,
                                  "  writable, unused (mprotect_size)"))
            items.append(Item(r.heap_info + r.mprotect_size, r.heap_info + L.heap_max_size,
                              "  reserved, not writable (HEAP_MAX_SIZE)"))
        if arena.heaps:
            items.append(Item(arena.state.top, arena.state.top, f"top chunk ({name})"))
    items.append(Item(heap.anchors.mp, heap.anchors.mp + L.malloc_par.size, "mp_ (malloc's parameters)"))
    for c in heap.mmapped().chunks:
        items.append(Item(c.address, c.address + (c.size_field & ~7), "mmapped chunk"))
    for t, tcache in tcache_structs(heap):
        owner = f"thread {t.num}'s" if t else "the selected thread's"
        items.append(Item(tcache, tcache, f"{owner} tcache"))
    for t in heap.threads:
        if t.sp is not None:
            items.append(Item(t.sp, t.sp, f"thread {t.num}'s stack pointer (LWP {t.lwp})"))
        if t.tp is not None:
            items.append(Item(t.tp, t.tp, f"thread {t.num}'s thread pointer (TLS below it)"))
    return sorted(items, key=lambda i: (i.start, -i.end))


def layout_regions(heap: Heap) -> Tuple[List[Region], List[Item]]:
    """Every mapping with the items starting in it; the items no mapping holds."""
    maps, _ = heap.anchors.mappings()
    regions = [Region(m, os.path.basename(m.path) if not m.path.startswith("[") else m.path, [])
               for m in maps]
    loose: List[Item] = []
    for item in layout_items(heap):
        r = next((r for r in regions if r.mapping.start <= item.start < r.mapping.end), None)
        (r.items if r is not None else loose).append(item)
    return regions, loose
