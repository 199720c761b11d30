"""The commands about chunks: heap chunks (every chunk of an arena), heap chunk ADDR (one)."""

from __future__ import annotations

from typing import List, Optional, Sequence

from .. import render, views
from ..args import Args, parse_count
from ..errors import HeapError, MemoryReadError
from ..heap import Heap
from ..model import Arena, Problem, summarise
from .base import HeapCommand, Out, arenas_for, evaluate_address, implements, one_or_all, open_heap, style


@implements("heap chunks")
class HeapChunks(HeapCommand):
    """One line per chunk: its address (the chunk header, what glibc calls mchunkptr), its size,
the flag bits of the size field (P = PREV_INUSE, M = IS_MMAPPED, N = NON_MAIN_ARENA; a dot
when clear), its state and a preview of the first user bytes in hex and ASCII.
The state is "in use", "top", or "free BIN[INDEX]" naming the bin that holds the chunk,
however deep in its list.  Chunks in tcache and fastbins are free for the program although
glibc keeps the next chunk's PREV_INUSE set: this command decides "free" by bin membership.
The top chunk is "top" even if a bin lists it (heap check reports that).

  --limit N      stop after N chunks (and say so)
  --summary      a table of counts and bytes by state, bin and size instead of one line each
  --json         one JSON document: {"glibc", "arena", "chunks": [...], "problems": [...]}
  --arena ADDR   the arena at ADDR (default: the selected thread's arena, else main_arena)
  --all-arenas   every arena in turn"""

    def run(self, args: Args, out: Out) -> None:
        self.no_extra(args)
        limit = parse_count(self.name, args.values["--limit"]) if "--limit" in args.values else None
        heap = open_heap(args)
        arenas = arenas_for(heap, args)
        if args.flag("--summary"):
            self._summary(heap, arenas, args, limit, out)
        elif args.flag("--json"):
            self._json(heap, arenas, args, limit, out)
        else:
            self._text(heap, arenas, args, limit, out)

    @staticmethod
    def _summary(heap: Heap, arenas: Sequence[Arena], args: Args, limit: Optional[int], out: Out) -> None:
        st = style()
        docs = []
        for arena in arenas:
            problems: List[Problem] = []
            rows = summarise(heap.chunk_batches(arena, problems), arena.state.top, heap.free_index(arena), limit)
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
    def _text(heap: Heap, arenas: Sequence[Arena], args: Args, limit: Optional[int], out: Out) -> None:
        st = style()
        S = heap.layout.size_sz
        reader = heap.reader

        def read_preview(address: int) -> bytes:
            try:
                return reader.read(address + 2 * S, render.PREVIEW_BYTES)
            except MemoryReadError:
                return b""

        notes = render.tcache_notes(views.tcache_structs(heap))
        for arena in arenas:
            if args.flag("--all-arenas"):
                out.line(render.arena_heading(arena, st))
            if not arena.heaps:
                out.line("no chunks: the heap is not initialised yet (the program has not called malloc "
                         "in this arena)")
                continue
            rows = views.ChunkRows(heap, arena, limit)
            out.lines(render.chunk_lines(rows, read_preview, st, notes))
            if rows.stopped:
                out.line(f"stopped after {limit} chunks (--limit {limit})")
            out.lines(render.problem_lines(rows.problems, st))

    @staticmethod
    def _json(heap: Heap, arenas: Sequence[Arena], args: Args, limit: Optional[int], out: Out) -> None:
        S = heap.layout.size_sz
        many = args.flag("--all-arenas")
        if many:
            out.write('{"arenas": [')
        for i, arena in enumerate(arenas):
            rows = views.ChunkRows(heap, arena, limit)
            if i:
                out.write(", ")
            for piece in render.chunks_json(heap.anchors.glibc, arena.address,
                                            (render.chunk_json(*row, S) for row in rows), rows.problems,
                                            heap.mid_update):
                out.write(piece)
        out.line("]}" if many else "")


@implements("heap chunk")
class HeapChunk(HeapCommand):
    """ADDR is a gdb expression: the chunk's address, the pointer malloc returned, or any address
inside a chunk (the output says which it understood, and how far into the chunk an inner
address is).  Shows the header fields (prev_size, size and its flag bits), the state and the
bin holding the chunk if it is free, its links, its usable size, its neighbours, and which
malloc(n) requests produce a chunk of this size: that answers "malloc(10) gives me how many
bytes?".  Mmapped chunks are found too, an address inside one included.
A header the heap walk does not reach (inside a chunk whose damaged size broke the walk, or
outside every heap: a fake chunk a bin lists) is shown as memory holds it, at the address
(or one header before it, a user pointer), with why no walk reached it, its problems and,
outside the heaps, the mapping and symbol where it lives.

  --json   one JSON object: a chunk as in "heap chunks --json" plus "understood_as",
           "arena" and "requests": [LOW, HIGH]; for an address inside the chunk,
           "inside": {"address", "offset", "user_offset"}; "reached_by_walk", "notes",
           "problems" and "location": {"mapping", "start", "end", "symbol"} | null"""

    def run(self, args: Args, out: Out) -> None:
        if not args.rest:
            raise HeapError("give a chunk address or a pointer malloc returned, e.g. heap chunk p")
        address = evaluate_address(" ".join(args.rest))
        heap = open_heap(args)
        view = views.chunk_view(heap, address)
        if args.flag("--json"):
            out.json(render.chunk_view_doc(view))
            return
        out.lines(render.chunk_detail_lines(view, heap.layout, style()))
