"""What a word of memory means when read as a pointer: a chunk, a field of malloc's state
(an arena's bin header), a thread's stack, a symbol, a mapping.

gdb-free: the symbol lookup comes with the heap's anchors (the gdb side asks `info symbol`;
tests pass their own), the mappings as a list, so tests name pointers over synthetic memory.
The fields and stacks are places.py's (what `heap where` says of an address), named here
briefly.  One Namer serves one command: chunk starts are collected once per arena, symbols
looked up once per address.
"""

from __future__ import annotations

import bisect
import functools
import os
import struct
from itertools import chain, compress
from operator import itemgetter, not_
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set, Tuple

from . import model, places
from .free_index import FreeIndex
from .layouts import NBINS, bin_kind
from .heap import Heap
from .mappings import Mapping
from .render import addr
from .model import Arena, BinChain, Problem, bin_label, state_text
from .symbols import Symbol, SymbolLookup


def bin_of_index(index: int) -> str:
    """bin_at(m, i)'s label: "unsorted", "small[16]", "large[64]"."""
    return bin_label(bin_kind(index), index)


def arena_offset(arena: int, main: bool, off: int) -> str:
    """An address in an arena as gdb names one in main_arena: <main_arena+96>."""
    return f"<main_arena+{off}>" if main else f"<arena {addr(arena)}+{off}>"


@dataclass(frozen=True)
class Meaning:
    """What a pointer points at."""

    kind: str  # chunk, arena, stack, symbol, mapping
    text: str  # "chunk 0x55555556b3e0+0x10 (free tcache[0])", "<main_arena+96> unsorted bin"
    chunk: Optional[int] = None  # the chunk holding it (kind chunk)
    offset: int = 0  # from that chunk's start
    state: str = ""  # that chunk's state: "in use", "free tcache[0]", "top"


# A listing batch's free chunks' links are looked for in a set of the free chunks around the
# batch, this many on each side (a bin's links mostly lead to chunks freed shortly before,
# nearby; at 10^6 chunks of c_samples/many 4096 free chunks span about 6 MB); a binary search
# finds the farther ones.
NEAR_WINDOW = 4096
SINGLY = ("tcache", "fast")  # the bins whose chunks hold one link (next, fd), safe-linked from 2.32
DOUBLY = ("unsorted", "small", "large")  # fd and bk


@functools.cache
def _word_structs(order: str, size_sz: int) -> Tuple[struct.Struct, struct.Struct]:
    """Structs of one word and of two, in the target's byte order."""
    word = "Q" if size_sz == 8 else "I"
    prefix = "<" if order == "little" else ">"
    return struct.Struct(prefix + word), struct.Struct(prefix + 2 * word)


class Namer:
    """Names pointers for one command."""

    def __init__(self, heap: Heap, symbol: Optional[SymbolLookup] = None,
                 mappings: Sequence[Mapping] = ()) -> None:
        self.heap = heap
        self.H = heap.layout.header_size
        self.S = heap.layout.size_sz
        self.symbol = symbol or heap.anchors.symbol
        self.mappings = sorted(mappings, key=lambda m: m.start)
        self._map_starts = [m.start for m in self.mappings]
        self._starts: Dict[int, List[int]] = {}  # arena -> its chunk starts, sorted
        self._symbols: Dict[int, Optional[Symbol]] = {}
        self._free: Dict[int, FreeIndex] = {}  # arena -> its free chunks (bins and tcaches)
        self._spans: Optional[List[Tuple[int, int, Arena]]] = None  # every heap region, its arena
        self._spans_final = False  # whether _spans are the regions a walk found (not heap_spans' one span)
        # The span of _spans that held the last free chunk named, overlapping no span before it:
        # (start, end, its arena's free chunks, its top, the _spans it is of, the main arena).  A
        # free chunk's links mostly point into the same heap: short() names them without a search.
        self._near: Optional[Tuple[int, int, FreeIndex, int, List[Tuple[int, int, Arena]], Arena]] = None
        # shorts()' window: (the free chunks' addresses, from, to, the set of those between)
        self._held: Optional[Tuple[Sequence[int], int, int, Set[int]]] = None
        # _free_starts' bounds of the near span's free chunks: (the _near they are of, lo, hi)
        self._bounds: Tuple[object, int, int] = (None, 0, 0)

    def chunk_starts(self, arena: Arena) -> List[int]:
        starts = self._starts.get(arena.address)
        if starts is None:
            scratch: List[Problem] = []
            starts = sorted(a for batch, _ in self.heap.chunk_batches(arena, scratch) for a in batch)
            self._starts[arena.address] = starts
        return starts

    def free_of(self, arena: Arena) -> FreeIndex:
        free = self._free.get(arena.address)
        if free is None:
            free = self._free[arena.address] = self.heap.free_index(arena)
        return free

    def arena_holding(self, value: int) -> Optional[Arena]:
        """The arena one of whose heaps holds `value` (its end's header included); None before
        the first malloc."""
        H = self.heap.layout.header_size
        if self._spans is None or not self._spans_final and self.heap.main_arena.loaded:
            self._spans_final = self.heap.main_arena.loaded
            # A main heap not walked yet is one span (model.heap_spans) until a walk finds its
            # regions: naming a link must not walk the heap a second time.
            sbrk_base = self.heap.mp.sbrk_base if self.heap.initialised else 0
            self._spans = ([(start, end + H, a) for a in self.heap.arenas
                            for start, end in model.heap_spans(self.heap.reader, a, sbrk_base)]
                           if self.heap.initialised else [])
        for start, end, arena in self._spans:
            if start <= value < end:
                return arena
        return None

    def chunk_of(self, value: int) -> Optional[Tuple[Arena, int]]:
        """The arena and the chunk (a real chunk start of a walk) holding `value`."""
        arena = self.arena_holding(value)
        if arena is not None:
            # A free chunk or its user pointer (a bin's link), or top: found without a walk.
            free = self._free.get(arena.address) or self.free_of(arena)
            if value in free or value == arena.state.top:
                self._remember_near(value, free, arena.state.top)
                return arena, value
            start = value - self.H
            if start in free or start == arena.state.top:
                return arena, start
            starts = self.chunk_starts(arena)
            if not self._spans_final and self.arena_holding(value) is not arena:
                return self.chunk_of(value)  # the walk found the main heap's regions: value is in none of them
            i = bisect.bisect_right(starts, value) - 1
            if i >= 0:
                return arena, starts[i]
        return None

    def _remember_near(self, value: int, free: FreeIndex, top: int) -> None:
        spans = self._spans or []
        for i, (start, end, _) in enumerate(spans):
            if start <= value < end:
                if all(e <= start or s >= end for s, e, _ in spans[:i]):
                    self._near = (start, end, free, top, spans, self.heap.main_arena)
                return

    def arena_field(self, value: int) -> Optional[str]:
        """`<main_arena+96> unsorted (bin_at(1))` (a bin's header, what its chunks' fd and bk
        point at), else the field `heap where` names: `<main_arena+24> fastbinsY[1]`, `<mp_+16>
        mmap_threshold`, a heap_info's field."""
        if not self.heap.initialised:
            return None
        layout = self.heap.layout
        S = layout.size_sz
        for arena in self.heap.arenas:
            off = value - arena.address
            # bin_at(i) = &bins[2(i-1)] - 2*SIZE_SZ: the top and last_remainder words for bin 1
            index, rest = divmod(off - layout.malloc_state.offset("bins") + 4 * S, 2 * S)
            if 0 <= off < layout.malloc_state.size and rest == 0 and 1 <= index < NBINS:
                return f"{arena_offset(arena.address, arena.main, off)} {bin_of_index(index)} (bin_at({index}))"
        place = places.struct_place(self.heap, value)
        if place is None:
            return None
        off = place.offset or 0
        base = (arena_offset(place.arena or 0, place.arena == self.heap.anchors.main_arena, off)
                if place.kind == "arena" else f"<mp_+{off}>" if place.kind == "malloc_par"
                else f"<heap_info {addr(value - off)}+{off}>")
        return f"{base} {place.field}" + (f"+{place.inner}" if place.inner else "")

    def bin_head(self, arena: Arena, chain: BinChain, tcache: Optional[int] = None) -> str:
        """Where a bin's head pointer is: `<main_arena+96>` (bin_at(1), the fake chunk whose
        fd and bk are the unsorted bin's), `<main_arena+16>` (fastbinsY[0]), a tcache's
        entries[i] (`tcache` is its tcache_perthread_struct)."""
        layout = self.heap.layout
        S = layout.size_sz
        if chain.kind == "tcache":
            return f"{addr(tcache + layout.tcache_perthread.offset('entries') + chain.index * S)}" if tcache else ""
        if chain.kind == "fast":
            where = arena.address + layout.malloc_state.offset("fastbinsY") + chain.index * S
        else:
            where = model.bin_at(layout, arena.address, chain.index)
        return arena_offset(arena.address, arena.main, where - arena.address)

    def symbol_of(self, value: int) -> Optional[str]:
        if value not in self._symbols:
            self._symbols[value] = self.symbol(value)
        found = self._symbols[value]
        return f"<{found}>" if found is not None else None

    def stack_of(self, value: int, span: Optional[Mapping]) -> Optional[str]:
        """`thread 2's stack ($sp+0x18)`: the thread whose stack holds it, as `heap where` says."""
        place = places.stack_place(self.heap, value, span)
        if place is None or place.owner is None:
            return None
        off = place.offset or 0
        return f"thread {place.owner.num}'s stack ($sp{'+' if off >= 0 else '-'}{abs(off):#x})"

    def span_of(self, value: int) -> Optional[Mapping]:
        i = bisect.bisect_right(self._map_starts, value) - 1
        return self.mappings[i] if i >= 0 and value < self.mappings[i].end else None

    def mapping_of(self, span: Optional[Mapping]) -> Optional[str]:
        if span is None:
            return None
        path = span.path
        return f"in {os.path.basename(path) if path and not path.startswith('[') else path or 'an anonymous mapping'}"

    def meaning(self, value: int) -> Optional[Meaning]:
        """What `value` points at, or None (not a pointer we can name: null, small, wild)."""
        if value < 0x1000:
            return None
        found = self.chunk_of(value)
        if found is not None:
            arena, chunk = found
            state, kind, index = model.classify(chunk, arena.state.top, self.free_of(arena))
            off = value - chunk
            at = f"chunk {addr(chunk)}" + (f"+{off:#x}" if off else "")
            return Meaning("chunk", f"{at} ({state_text(state, kind, index)})", chunk, off,
                           state_text(state, kind, index))
        field = self.arena_field(value)
        if field is not None:
            return Meaning("arena", field)
        span = self.span_of(value)
        stack = self.stack_of(value, span) if span is not None else None
        if stack is not None:
            return Meaning("stack", stack)
        symbol = self.symbol_of(value)
        if symbol is not None:
            return Meaning("symbol", symbol)
        mapping = self.mapping_of(span)
        if mapping is not None:
            return Meaning("mapping", mapping)
        return None

    def name(self, value: int) -> str:
        """The meaning's text, "" when there is none."""
        m = self.meaning(value)
        return m.text if m is not None else ""

    def brief(self, value: int) -> str:
        """The name beside an address already shown: a chunk's start as `chunk, free fast[0]`,
        not its address again; anything else as name() says."""
        m = self.meaning(value)
        if m is None:
            return ""
        return f"chunk, {m.state}" if m.kind == "chunk" and m.offset == 0 else m.text

    def short(self, value: int) -> str:
        """A pointer in one line of `heap chunks`: `chunk 0x...+0x10`, `<main_arena+96>`, a
        symbol, a stack, a mapping; NULL; else the bare address."""
        near = self._near
        # chunk_of's first answers, for a value in the span the last free chunk named was in
        # (while arena_holding would neither look the spans up again nor find an earlier one)
        if near is not None and near[0] <= value < near[1] and value >= 0x1000 and near[4] is self._spans \
                and (self._spans_final or not near[5].loaded):
            free, top = near[2], near[3]
            if value in free or value == top:
                return f"chunk {value:#x}"
            if value - self.H in free or value - self.H == top:
                return f"chunk {value - self.H:#x}+{self.H:#x}"
        found = self.chunk_of(value) if value >= 0x1000 else None
        if found is not None:  # most links of a free chunk: no state to look up
            chunk = found[1]
            return f"chunk {chunk:#x}" + (f"+{value - chunk:#x}" if value != chunk else "")
        m = self.meaning(value) if value else None
        if m is None:
            return "NULL" if value == 0 else addr(value)
        # the field's place alone: `<main_arena+96>`, `<arena 0x7ffff0000030+96>` (its name holds a blank)
        return m.text[:m.text.index(">") + 1] if m.kind == "arena" else m.text

    def shorts(self, values: Sequence[int], around: Optional[int] = None) -> List[str]:
        """short() of each value, in order.  The values short()'s first test names as a free
        chunk's start in the near span (most links of a listing) are found together at C speed,
        in a set of the NEAR_WINDOW free chunks each side of address `around` (near the chunks
        whose links these are), else by a binary search; short() names the others.  Those
        answers hold while the spans stay as they are: short() of a value may walk the heap and
        change them (and the first one sets the near span)."""
        if len(values) <= 2:  # one chunk's links: the set is not worth making
            return [self.short(v) for v in values]
        state = self._spans, self._spans_final, self.heap.main_arena.loaded, self._near is None
        out = list(map("chunk %#x".__mod__, values))
        for i in compress(range(len(values)), map(not_, self._free_starts(values, around))):
            out[i] = self.short(values[i])
            if (self._spans, self._spans_final, self.heap.main_arena.loaded, self._near is None) != state:
                return out[:i + 1] + self.shorts(values[i + 1:], around)
        return out

    def _free_starts(self, values: Sequence[int], around: Optional[int]) -> List[bool]:
        """For each value, whether short()'s first test names it as the start of a free chunk of
        the near span (top and the rest: False, left to short())."""
        near = self._near
        if near is None or near[4] is not self._spans or not (self._spans_final or not near[5].loaded):
            return [False] * len(values)
        a = near[2].addresses
        if self._bounds[0] is not near:  # the near span's free chunks: a[lo:hi]
            self._bounds = (near, bisect.bisect_left(a, max(near[0], 0x1000)), bisect.bisect_left(a, near[1]))
        _, lo, hi = self._bounds
        at = lo if around is None else bisect.bisect_left(a, around, lo, hi)
        hits = list(map(self._window(a, max(lo, at - NEAR_WINDOW), min(hi, at + NEAR_WINDOW)).__contains__, values))
        for i in compress(range(len(values)), map(not_, hits)):
            v = values[i]
            j = bisect.bisect_left(a, v, lo, hi)
            hits[i] = j < hi and a[j] == v
        return hits

    def _window(self, a: Sequence[int], lo: int, hi: int) -> Set[int]:
        """The set of a[lo:hi], slid from the last one asked for (a listing asks for windows
        that move up the heap): a batch adds and drops a few chunks, not the window's all."""
        held = self._held
        if held is None or held[0] is not a or not held[1] <= lo <= held[2] <= hi:
            self._held = (a, lo, hi, set(a[lo:hi]))
            return self._held[3]
        window = held[3]
        window.difference_update(a[held[1]:lo])
        window.update(a[held[2]:hi])
        self._held = (a, lo, hi, window)
        return window

    def free_links(self, chunk: int, kind: Optional[str], data: bytes, order: str = "little") -> str:
        """A free chunk's links from its first user words (`data`), named: `next chunk 0x...+0x10`
        (a safe-linked word revealed), `fd <main_arena+96> bk chunk 0x...`; "" for any other."""
        return self.free_links_many([(chunk, kind, data)], order)[0]

    def free_links_many(self, chunks: Sequence[Tuple[int, Optional[str], bytes]], order: str = "little") -> List[str]:
        """free_links of each (chunk, kind, data), their links read and named together (shorts)."""
        S, H = self.S, self.H
        one, two = _word_structs(order, S)
        singly = [(chunk + H, data) for chunk, kind, data in chunks if kind in SINGLY and len(data) >= S]
        stored = map(itemgetter(0), map(one.unpack_from, map(itemgetter(1), singly)))
        values = list(self.heap.layout.reveal_ptrs(map(itemgetter(0), singly), stored))
        values += chain.from_iterable(map(two.unpack_from, [data for _, kind, data in chunks
                                                            if kind in DOUBLY and len(data) >= 2 * S]))
        names = self.shorts(values, chunks[0][0] if chunks else None)
        singles, pairs = iter(names[:len(singly)]), iter(names[len(singly):])
        out: List[str] = []
        for _, kind, data in chunks:
            if kind in SINGLY and len(data) >= S:
                out.append(("next " if kind == "tcache" else "fd ") + next(singles))
            elif kind in DOUBLY and len(data) >= 2 * S:
                out.append(f"fd {next(pairs)} bk {next(pairs)}")
            else:
                out.append("")
        return out
