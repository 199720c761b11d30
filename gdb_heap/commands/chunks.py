"""The commands about chunks: heap chunks (every chunk of an arena), heap chunk ADDR (one),
heap map (chunks laid out in memory)."""

from __future__ import annotations

import functools
from typing import List, Optional, Sequence

from .. import render, render_map, views
from ..args import Args, parse_count
from ..errors import HeapError, MemoryReadError
from ..heap import Heap
from ..memory import Reader
from ..model import BIN_KINDS, Arena, Problem, summarise
from .base import (HeapCommand, Out, arenas_for, evaluate_address, implements, namer, one_or_all, open_heap, style,
                   width)
from .settings import setting

STATES = ("in_use", "free", "top")
DUMP_DEFAULT = 0x400  # bytes `heap chunk --dump` shows without N
DUMP_MAX = 1 << 20


def chunk_filter(command: str, args: Args) -> views.ChunkFilter:
    """--state, --bin, --min-size, --max-size, --from, --to."""
    state, kind = args.value("--state"), args.value("--bin")
    if state is not None and state not in STATES:
        raise HeapError(f"--state wants one of {', '.join(STATES)}, not {state!r}")
    if kind is not None and kind not in BIN_KINDS:
        raise HeapError(f"--bin wants a bin kind ({', '.join(BIN_KINDS)}), not {kind!r}")
    sizes = [parse_count(command, args.values[o], o, "a size in bytes") if o in args.values else None
             for o in ("--min-size", "--max-size")]
    bounds = [evaluate_address(args.values[o]) if o in args.values else None for o in ("--from", "--to")]
    return views.ChunkFilter(state, kind, sizes[0], sizes[1], bounds[0], bounds[1])


@implements("heap chunks")
class HeapChunks(HeapCommand):
    """One line per chunk: its address (the chunk header, glibc's mchunkptr), the user
pointer (what malloc returned: chunk + 2 * SIZE_SZ), its size, the flag bits of
the size field (P = PREV_INUSE, M = IS_MMAPPED, N = NON_MAIN_ARENA; a dot when
clear), its state and its first user words as x/2gx shows them, with their ASCII
(as many as fit gdb's width).  The state is "in use", "top", or "free
BIN[INDEX]" naming the bin that holds the chunk, however deep in its list.
Chunks in tcache and fastbins are free for the program although glibc keeps the
next chunk's PREV_INUSE set: this command decides "free" by bin membership.  The
top chunk is "top" even if a bin lists it (heap check reports that).

  --state S      only chunks in that state: in_use, free or top
  --bin KIND     only free chunks in bins of that kind (tcache, fast, unsorted,
                 small, large)
  --min-size N   only chunks of at least N bytes (--max-size N: at most)
  --from ADDR    only chunks at or after ADDR (--to ADDR: before ADDR)
  --limit N      stop after N chunks (and say so); the listing's default is set
                 heap chunks-limit (unlimited), --json and --summary have none
  --summary      counts and bytes by state, bin and size instead of one line
                 each
  --json         one JSON document: {"glibc", "arena", "chunks": [...],
                 "problems"}
  --arena ADDR   the arena at ADDR (default: the selected thread's, else
                 main_arena)
  --all-arenas   every arena in turn
The filters apply to the text, the JSON and the summary alike."""

    def run(self, args: Args, out: Out) -> None:
        self.no_extra(args)
        limit = parse_count(self.name, args.values["--limit"]) if "--limit" in args.values else None
        if limit is None and not (args.flag("--summary") or args.flag("--json")):
            limit = setting("chunks-limit")  # a display setting: it never shortens a document
        only = chunk_filter(self.name, args)
        heap = open_heap(args)
        arenas = arenas_for(heap, args)
        if args.flag("--summary"):
            self._summary(heap, arenas, args, limit, only, out)
        elif args.flag("--json"):
            self._json(heap, arenas, args, limit, only, out)
        else:
            self._text(heap, arenas, args, limit, only, out)

    @staticmethod
    def _summary(heap: Heap, arenas: Sequence[Arena], args: Args, limit: Optional[int], only: views.ChunkFilter,
                 out: Out) -> None:
        st = style()
        docs = []
        for arena in arenas:
            problems: List[Problem] = []
            if only.active:
                chosen = views.ChunkRows(heap, arena, limit, only)
                rows = summarise(chosen.batches(), arena.state.top, heap.free_index(arena))
                problems = chosen.problems
            else:
                if limit is None:
                    rows = views.walk_summary(heap, arena, problems, bins=False)
                else:
                    rows = summarise(heap.chunk_batches(arena, problems), arena.state.top, heap.free_index(arena),
                                     limit)
            if args.flag("--json"):
                docs.append(render.summary_doc(arena.address, rows))
                continue
            if args.flag("--all-arenas"):
                out.line(render.arena_heading(arena, st))
            out.lines(render.summary_lines(rows, st))
            out.lines(render.problem_lines(problems, st))
        if args.flag("--json"):
            out.json(one_or_all(args, docs))

    @staticmethod
    def _text(heap: Heap, arenas: Sequence[Arena], args: Args, limit: Optional[int], only: views.ChunkFilter,
              out: Out) -> None:
        st = style()
        S = heap.layout.size_sz
        cols = width()
        preview = setting("preview-bytes") or 0
        notes = render.tcache_notes(views.tcache_structs(heap))
        names = namer(heap)
        links = functools.partial(names.free_links, order=heap.reader.order)
        lister = render.ChunkLister(st, notes, S, heap.reader.order, cols, links, preview,
                                    functools.partial(names.free_links_many, order=heap.reader.order))

        def lines(reader: Reader, batch: views.ClassifiedBatch) -> str:
            """A batch's lines, read through `reader` (gdb's, or a helper's own)."""
            addresses, sizes, special = batch

            def read_preview(address: int) -> bytes:
                try:
                    return reader.read(address + 2 * S, preview) if preview else b""
                except MemoryReadError:
                    return b""

            # The walk has just read this batch's block: its chunks' user words up to the
            # last one's header are in it (the last chunk's preview may run past it).
            try:
                data = reader.read(addresses[0] + 2 * S, addresses[-1] - addresses[0]) if preview else b""
            except MemoryReadError:
                data = b""
            return "\n".join(lister.batch(addresses, sizes, special, data, read_preview)) + "\n"

        for arena in arenas:
            if args.flag("--all-arenas"):
                out.line(render.arena_heading(arena, st))
            if not heap.has_heap(arena):
                out.lines(render.fit("no chunks: the heap is not initialised yet (the program has not called "
                                     "malloc in this arena)", cols))
                continue
            rows = views.ChunkRows(heap, arena, limit, only, reads=True)  # its index, once made, is the namer's too
            out.line(lister.heading)
            for piece in rows.made(lines):
                out.write(piece)
            if rows.stopped:
                given = f"--limit {limit}" if "--limit" in args.values else f"set heap chunks-limit {limit}"
                out.line(f"stopped after {limit} chunks ({given})")
            out.lines(render.fit_all(render.problem_lines(rows.problems, st, names.brief), cols))

    @staticmethod
    def _json(heap: Heap, arenas: Sequence[Arena], args: Args, limit: Optional[int], only: views.ChunkFilter,
              out: Out) -> None:
        S = heap.layout.size_sz
        many = args.flag("--all-arenas")

        def objects(_: Reader, batch: views.ClassifiedBatch) -> str:  # each batch led by its separator
            return ", " + ", ".join(render.chunks_json_batch(*batch, S))

        if many:
            out.write('{"arenas": [')
        for i, arena in enumerate(arenas):
            rows = views.ChunkRows(heap, arena, limit, only)
            if i:
                out.write(", ")
            for piece in render.chunks_json(heap.anchors.glibc, arena.address, rows.made(objects), rows.problems,
                                            heap.mid_update, separated=True):
                out.write(piece)
        out.line("]}" if many else "")


@implements("heap chunk")
class HeapChunk(HeapCommand):
    """ADDR is a gdb expression: the chunk's address, the pointer malloc returned, or
any address inside a chunk (the output says which it understood, and how far
into the chunk an inner address is).  Shows the header fields (prev_size, size
and its flag bits), the state and the bin holding the chunk if it is free, its
first user words (as x/2gx shows them), its links, its usable size, its
neighbours, and which malloc(n) requests produce a chunk of this size: that
answers "malloc(10) gives me how many bytes?".  Mmapped chunks are found too, an
address inside one included. Every link is shown as stored and named: a
safe-linked word (tcache next, fastbin fd, glibc 2.32+) as stored (the mangled
value) and as glibc reveals it ((address >> 12) ^ stored); each pointer says
what it points at: a chunk (chunk 0x...+0x10), a bin's head in its arena
(<main_arena+96> unsorted), a symbol, a mapping.
A header the heap walk does not reach (inside a chunk whose damaged size broke
the walk, or outside every heap: a fake chunk a bin lists) is shown as memory
holds it, at the address (or one header before it, a user pointer), with why no
walk reached it, its problems and, outside the heaps, the mapping and symbol
where it lives.

  --dump [N]  the chunk's bytes from its header, two words a line (x/2gx's view)
              with their ASCII and the header and link fields named: N bytes
              (default the chunk, at most 0x400)
  --json      one JSON object: a chunk as in "heap chunks --json" plus
              "understood_as", "arena" and "requests": [LOW, HIGH]; for an
              address inside the chunk, "inside": {"address", "offset",
              "user_offset"}; and "prev_size", "fd", "fd_stored", "bk",
              "fd_nextsize", "bk_nextsize" (null when not a link of its bin),
              "tcache_next": {"stored", "revealed"}, "tcache_key", "pointers"
              (each link's meaning), "first_words", "prev_chunk" and
              "next_chunk" ({"address", "size", "state", "bin", "bin_index"} or
              null); "reached_by_walk", "notes", "problems" and "location":
              {"mapping", "start", "end", "symbol"} | null"""

    def run(self, args: Args, out: Out) -> None:
        if not args.rest:
            raise HeapError("give a chunk address or a pointer malloc returned, e.g. heap chunk p")
        address = evaluate_address(" ".join(args.rest))
        heap = open_heap(args)
        view = views.chunk_view(heap, address)
        name = namer(heap).name
        order = heap.reader.order
        if args.flag("--json"):
            out.json(render.chunk_view_doc(view, name, order))
            return
        st, cols = style(), width()
        if args.flag("--dump"):
            c = view.chunk
            n = (parse_count(self.name, args.values["--dump"], "--dump", "a number of bytes")
                 if "--dump" in args.values else min(c.size or 2 * c.size_sz, DUMP_DEFAULT))
            n = min(n, DUMP_MAX)
            try:
                data = heap.reader.read(c.address, n)
            except MemoryReadError:
                raise HeapError(f"cannot read {n:#x} bytes at {c.address:#x}; give a smaller --dump N") from None
            out.lines(render.dump_lines(c, data, view.links, st, order, cols))
            return
        out.lines(render.chunk_detail_lines(view, heap.layout, st, name, cols, order))


@implements("heap map")
class HeapMap(HeapCommand):
    """The chunks as they lie in memory, from the chunk holding ADDR (default: the
arena's first chunk): each line is 16 bytes, two words on 64-bit as x/2gx shows
them, then their ASCII when gdb's width leaves room.  A marker column starts
each chunk with "+" and continues it with "|" (":" stands for the middle of a
long chunk, left out), so the boundaries read without colour too; in colour
(gdb's style enabled) chunks alternate between two colours, their header words
(prev_size, size) underlined, top in its own.  Notes give each chunk's size,
flags and state, and each free chunk's links with what they point at (a chunk, a
bin's head in the arena); a safe-linked word says what it reveals.

  --count N     chunks to show (default: set heap map-count, 10)
  --arena ADDR  the arena whose heap to show (default: the selected thread's)"""

    def run(self, args: Args, out: Out) -> None:
        count = (parse_count(self.name, args.values["--count"], "--count")
                 if "--count" in args.values else setting("map-count") or views.MAP_COUNT)
        count = min(count, views.MAP_MAX_COUNT)
        address = evaluate_address(" ".join(args.rest)) if args.rest else None
        heap = open_heap(args)
        arena = arenas_for(heap, args)[0] if args.value("--arena") is not None else None
        if arena is not None and address is not None and heap.where(address).arena is not arena:
            raise HeapError(f"{address:#x} is not in the heap of arena {arena.address:#x}; leave out --arena "
                            "or ADDR")
        view = views.map_view(heap, arena, address, count)
        cols = width()
        st = style()
        names = namer(heap)
        out.lines(render_map.map_lines(view, st, names.name, heap.layout.size_sz, heap.reader.order, cols))
        out.lines(render.fit_all(render.problem_lines(view.problems, st, names.brief), cols))

