"""What a word of memory means when read as a pointer: a chunk, an arena's field or bin
header, a symbol, a mapping.

gdb-free: the symbol lookup comes in as a callable (the gdb side asks `info symbol`), the
mappings as a list, so tests name pointers over synthetic memory.  One Namer serves one
command: chunk starts are collected once per arena, symbols looked up once per address.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import model
from .layouts import NBINS, NSMALLBINS
from .heap import Heap
from .mappings import Mapping
from .render import addr
from .model import Arena, BinChain, Problem, bin_label, state_text

SymbolLookup = Callable[[int], Optional[str]]  # address -> "main_arena+96" / "__free_hook", or None


def bin_of_index(index: int) -> str:
    """bin_at(m, i)'s label: bin 1 is the unsorted bin, 2..63 small, 64..126 large."""
    if index == 1:
        return bin_label("unsorted", 1)
    return bin_label("small" if index < NSMALLBINS else "large", index)


def arena_offset(arena: Arena, off: int) -> str:
    """An address in an arena as gdb names one in main_arena: <main_arena+96>."""
    return f"<main_arena+{off}>" if arena.main else f"<arena {addr(arena.address)}+{off}>"


@dataclass(frozen=True)
class Meaning:
    """What a pointer points at.  kind: chunk, arena, symbol, mapping."""

    kind: str
    text: str  # "chunk 0x55555556b3e0+0x10 (free tcache[0])", "<main_arena+96> unsorted bin"
    chunk: Optional[int] = None  # the chunk holding it (kind chunk)
    offset: int = 0  # from that chunk's start


class Namer:
    """Names pointers for one command."""

    def __init__(self, heap: Heap, symbol: Optional[SymbolLookup] = None,
                 mappings: Sequence[Mapping] = ()) -> None:
        self.heap = heap
        self.symbol = symbol
        self.mappings = sorted(mappings, key=lambda m: m.start)
        self._starts: Dict[int, List[int]] = {}  # arena -> its chunk starts, sorted
        self._symbols: Dict[int, Optional[str]] = {}

    def chunk_starts(self, arena: Arena) -> List[int]:
        starts = self._starts.get(arena.address)
        if starts is None:
            scratch: List[Problem] = []
            starts = sorted(a for batch, _ in self.heap.chunk_batches(arena, scratch) for a in batch)
            self._starts[arena.address] = starts
        return starts

    def chunk_of(self, value: int) -> Optional[Tuple[Arena, int]]:
        """The arena and the chunk (a real chunk start of a walk) holding `value`."""
        if not self.heap.initialised:
            return None
        H = self.heap.layout.header_size
        for arena in self.heap.arenas:
            if not any(r.start <= value < r.end + H for r in arena.heaps):
                continue
            starts = self.chunk_starts(arena)
            i = bisect.bisect_right(starts, value) - 1
            if i >= 0:
                return arena, starts[i]
        return None

    def arena_field(self, value: int) -> Optional[str]:
        """`<main_arena+96> unsorted bin`, `<main_arena+88> top`: from the layout's offsets."""
        if not self.heap.initialised:
            return None
        layout = self.heap.layout
        S = layout.size_sz
        for arena in self.heap.arenas:
            off = value - arena.address
            if not 0 <= off < layout.malloc_state.size:
                continue
            base = arena_offset(arena, off)
            bins = layout.malloc_state.offset("bins")
            index, rest = divmod(off - bins + 4 * S, 2 * S)  # bin_at(i) = &bins[2(i-1)] - 2*SIZE_SZ
            if rest == 0 and 1 <= index < NBINS:
                return f"{base} {bin_of_index(index)} (bin_at({index}))"
            for name, (start, size, count) in layout.malloc_state.fields.items():
                if start <= off < start + size * count:
                    element = f"[{(off - start) // size}]" if count > 1 else ""
                    inner = (off - start) % size
                    return f"{base} {name}{element}" + (f"+{inner}" if inner else "")
            return base
        return None

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
        return arena_offset(arena, where - arena.address)

    def symbol_of(self, value: int) -> Optional[str]:
        if self.symbol is None:
            return None
        if value not in self._symbols:
            self._symbols[value] = self.symbol(value)
        name = self._symbols[value]
        return f"<{name}>" if name else None

    def mapping_of(self, value: int) -> Optional[str]:
        i = bisect.bisect_right([m.start for m in self.mappings], value) - 1
        if i < 0 or value >= self.mappings[i].end:
            return None
        path = self.mappings[i].path
        return f"in {os.path.basename(path) if path and not path.startswith('[') else path or 'an anonymous mapping'}"

    def meaning(self, value: int) -> Optional[Meaning]:
        """What `value` points at, or None (not a pointer we can name: null, small, wild)."""
        if value < 0x1000:
            return None
        found = self.chunk_of(value)
        if found is not None:
            arena, chunk = found
            state, kind, index = model.classify(chunk, arena.state.top, self.heap.free_index(arena))
            off = value - chunk
            at = f"chunk {addr(chunk)}" + (f"+{off:#x}" if off else "")
            return Meaning("chunk", f"{at} ({state_text(state, kind, index)})", chunk, off)
        field = self.arena_field(value)
        if field is not None:
            return Meaning("arena", field)
        symbol = self.symbol_of(value)
        if symbol is not None:
            return Meaning("symbol", symbol)
        mapping = self.mapping_of(value)
        if mapping is not None:
            return Meaning("mapping", mapping)
        return None

    def name(self, value: int) -> str:
        """The meaning's text, "" when there is none."""
        m = self.meaning(value)
        return m.text if m is not None else ""
