"""The `heap` gdb commands: parse arguments, ask the model, hand the data to a renderer."""

from __future__ import annotations

import json
from collections import Counter
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import gdb  # type: ignore[import-not-found,unused-ignore]

from . import render
from .args import Args, parse, parse_count
from .check import Checker, check_arena
from .errors import HeapError, MemoryReadError
from .gdbmemory import GdbMemory
from .heap import Anchors, Heap
from .locate import locate, process_mappings, require_process, threads_info, warn_once, word_size
from .memory import Reader
from .mmapped import mmapped_span
from .model import BIN_KINDS, SIZE_BITS, Arena, Chunk, Problem, chunk_at, classify, summarise
from .style import Style
from .terminal import colour_wanted

WRITE_BATCH = 1 << 20  # characters per gdb.write call when streaming


# -- plumbing ----------------------------------------------------------------------------------

class Out:
    """Buffered gdb.write: few calls for a million lines."""

    def __init__(self) -> None:
        self.parts: List[str] = []
        self.size = 0

    def write(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        if self.size >= WRITE_BATCH:
            self.flush()

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

    def lines(self, lines: Iterable[str]) -> None:
        parts = self.parts
        for text in lines:
            parts.append(text)
            parts.append("\n")
            if len(parts) >= 16384:
                self.flush()
                parts = self.parts

    def flush(self) -> None:
        if self.parts:
            gdb.write("".join(self.parts))
            self.parts, self.size = [], 0


def open_heap(args: Args) -> Heap:
    require_process()
    maps, source = process_mappings()
    holes = [(m.missing_from, m.end) for m in maps if m.missing_from is not None]
    reader = Reader(GdbMemory(holes), word_size())
    found = locate(reader, maps)
    state, tls = found.state, found.tls
    glibc = f"{state.version[0]}.{state.version[1]}" if state.version else None
    anchors = Anchors(state.main_arena, state.mp, glibc, state.located_by, tls.tcache or None,
                      tls.arena or None, state.notes + [tcache_note(tls.tcache_how)],
                      lambda: threads_info(found.context), lambda: (maps, source))
    if not args.flag("--json"):  # a JSON document is all --json prints (notes: heap's overview)
        for note in state.notes:
            warn_once(note)
    return Heap(reader, state.layout, anchors)


def tcache_note(how: str) -> str:
    return f"tcache {how}" if how.startswith("not found") else f"tcache found by {how}"


def style() -> Style:
    return Style(colour_wanted())


def evaluate_address(expression: str) -> int:
    try:
        value = gdb.parse_and_eval(expression)
        if value.type.strip_typedefs().code in (gdb.TYPE_CODE_ARRAY, gdb.TYPE_CODE_FUNC, gdb.TYPE_CODE_STRUCT) \
                and value.address:  # an object names its address (main_arena, a struct)
            value = value.address
        return int(value.cast(gdb.lookup_type("unsigned long"))) & ((1 << (8 * word_size())) - 1)
    except (gdb.error, RuntimeError) as e:
        raise HeapError(f"cannot evaluate {expression!r} ({e}); give an address or a gdb expression") from None


def arenas_for(heap: Heap, args: Args) -> List[Arena]:
    if args.flag("--all-arenas"):
        return heap.arenas
    arena = args.value("--arena")
    return [heap.arena(evaluate_address(arena) if arena is not None else None)]


def print_json(out: Out, doc: object) -> None:
    out.line(json.dumps(doc))


class HeapCommandBase(gdb.Command):
    """Shared by every heap command: error handling, completion, no repetition on Enter."""

    name = "heap"
    flags: Sequence[str] = ("--json",)
    valued: Sequence[str] = ()
    words: Sequence[str] = ()  # positional words to complete (bin kinds)

    def __init__(self, prefix: bool = False) -> None:
        # No completer class: gdb then asks our complete() method.
        super().__init__(self.name, gdb.COMMAND_DATA, prefix=prefix)

    def invoke(self, argument: str, from_tty: bool) -> None:
        self.dont_repeat()
        out = Out()
        try:
            self.run(parse(self.name, argument, self.flags, self.valued), out)
            out.flush()
        except gdb.GdbError:
            raise
        except HeapError as e:
            out.flush()
            raise gdb.GdbError(f"heap: {e}") from None
        except KeyboardInterrupt:
            raise gdb.GdbError("heap: interrupted") from None
        except gdb.MemoryError as e:
            raise gdb.GdbError(f"heap: cannot read memory ({e}); the process or core lacks that region") from None
        except Exception as e:  # never a traceback in front of the user
            raise gdb.GdbError(f"heap: internal error ({type(e).__name__}: {e}); please report it with "
                               f"the command you ran") from None

    def complete(self, text: str, word: Optional[str]) -> List[str]:
        return complete_from(list(self.flags) + list(self.valued) + list(self.words), text, word)

    def run(self, args: Args, out: Out) -> None:
        raise NotImplementedError

    def no_extra(self, args: Args) -> None:
        if args.rest:
            raise HeapError(f"unexpected argument {args.rest[0]!r}; see help {self.name}")


def complete_from(candidates: Sequence[str], text: str, word: Optional[str]) -> List[str]:
    """Candidates extending the last word typed.  gdb's `word` stops at '-', so the match is
    made on the whole last word and only the part gdb will replace is returned."""
    last = "" if not text or text.endswith(" ") else text.split()[-1]
    cut = len(last) - len(word or "")
    return [c[cut:] for c in candidates if c.startswith(last)]


# -- heap --------------------------------------------------------------------------------------

class HeapOverview(HeapCommandBase):
    """Show glibc malloc's heap: version, arenas, top chunks, heap regions and chunk counts.

Usage: heap [--json]

Prints the glibc version found, how the allocator's state was located (debug symbols or a
named heuristic), every arena with its top chunk and system memory, each heap region, and
how many chunks are in use or sit in each kind of bin (tcache, fast, unsorted, small, large).

Subcommands: heap chunks, heap chunk ADDR, heap bins [KIND...], heap top, heap arenas,
heap check, heap mmapped.
Type "help heap SUBCOMMAND" for each.  Every command takes --json for one JSON document
(the shapes are in the command contract: docs/commands.md in gdb_heap's source)."""

    name = "heap"
    flags = ("--json",)

    def __init__(self) -> None:
        super().__init__(prefix=True)

    def complete(self, text: str, word: Optional[str]) -> List[str]:
        # gdb completes the subcommands itself; the prefix adds its own options.
        return complete_from(list(self.flags), text, word)

    def run(self, args: Args, out: Out) -> None:
        if args.rest:
            raise HeapError(f"undefined heap command {args.rest[0]!r}; the commands are chunks, chunk, "
                            "bins, top, arenas, check (see help heap)")
        heap = open_heap(args)
        counts: Counter[str] = Counter({k: 0 for k in ("in_use",) + BIN_KINDS})
        problems: List[Problem] = []
        for arena in heap.arenas:
            rows = summarise(heap.chunk_batches(arena, problems), arena.state.top, heap.free_index(arena))
            for (state, kind, _), n in rows.items():
                if state != "top":
                    counts[kind or "in_use"] += n
            # The chains free_index walked (cached) cut where damaged: say so here too.
            problems += heap.bins(arena, tuple(k for k in BIN_KINDS if k != "tcache"))[1]
            if arena is heap.selected_arena():
                problems += heap.bins(arena, ("tcache",))[1]
        a = heap.anchors
        if args.flag("--json"):
            print_json(out, {"glibc": a.glibc, "located_by": a.located_by,
                             "arenas": [render.arena_doc(x, heap.arena_threads(x)) for x in heap.arenas],
                             "counts": dict(counts)})
            return
        st = style()
        out.line(f"glibc {a.glibc or 'version unknown'}, allocator state found by {a.located_by} "
                 f"(main_arena {a.main_arena:#x}, mp_ {a.mp:#x})")
        for note in a.notes:
            out.line(f"  {note}")
        if not heap.initialised:
            out.line("the heap is not initialised yet: the program has not called malloc (no heap, no "
                     "chunks); continue past its first malloc")
            return
        for arena in heap.arenas:
            out.lines(render.arena_lines(arena, st, heap.arena_threads(arena)))
        out.line(f"chunks: {counts['in_use']} in use; free: " +
                 ", ".join(f"{counts[k]} {k}" for k in BIN_KINDS) + " (plus one top chunk per arena)")
        out.lines(render.problem_lines(problems, st))


# -- heap chunks ---------------------------------------------------------------------------------

class HeapChunks(HeapCommandBase):
    """List every chunk of an arena's heap(s) in address order.

Usage: heap chunks [--limit N] [--summary] [--json] [--arena ADDR | --all-arenas]

One line per chunk: its address (the chunk header, what glibc calls mchunkptr), its size,
the flag bits of the size field (P = PREV_INUSE, M = IS_MMAPPED, N = NON_MAIN_ARENA; a dot
when clear), its state and a preview of the first user bytes in hex and ASCII.
The state is "in use", "top", or "free BIN[INDEX]" naming the bin that holds the chunk,
however deep in its list.  Chunks in tcache and fastbins are free for the program although
glibc keeps the next chunk's PREV_INUSE set: this command decides "free" by bin membership.

  --limit N      stop after N chunks (and say so)
  --summary      a table of counts and bytes by state, bin and size instead of one line each
  --json         one JSON document: {"glibc", "arena", "chunks": [...], "problems": [...]}
  --arena ADDR   the arena at ADDR (default: the selected thread's arena, else main_arena)
  --all-arenas   every arena in turn"""

    name = "heap chunks"
    flags = ("--json", "--summary", "--all-arenas")
    valued = ("--limit", "--arena")

    def run(self, args: Args, out: Out) -> None:
        self.no_extra(args)
        limit = parse_count(self.name, args.values["--limit"]) if "--limit" in args.values else None
        heap = open_heap(args)
        arenas = arenas_for(heap, args)
        as_json = args.flag("--json")
        st = style()
        if args.flag("--summary"):
            docs = []
            for arena in arenas:
                problems: List[Problem] = []
                rows = summarise(heap.chunk_batches(arena, problems), arena.state.top, heap.free_index(arena), limit)
                if as_json:
                    docs.append(render.summary_doc(arena.address, rows))
                else:
                    self._arena_title(out, arena, args, st)
                    out.lines(render.summary_lines(rows, st))
                    out.lines(render.problem_lines(problems, st))
            if as_json:
                print_json(out, {"arenas": docs} if args.flag("--all-arenas") else docs[0])
            return
        if as_json:
            self._json(heap, arenas, args, limit, out)
            return
        S = heap.layout.size_sz
        reader = heap.reader

        def read_preview(address: int) -> bytes:
            try:
                return reader.read(address + 2 * S, render.PREVIEW_BYTES)
            except MemoryReadError:
                return b""

        for arena in arenas:
            self._arena_title(out, arena, args, st)
            if not arena.heaps:
                out.line("no chunks: the heap is not initialised yet (the program has not called malloc "
                         "in this arena)")
                continue
            problems = []
            chunk_rows = self._rows(heap, arena, problems, limit)
            notes = {t.tcache - 2 * S: f"tcache_perthread_struct of {render.thread_text(t)}"
                     for t in heap.threads if t.tcache and not t.selected}
            if heap.tcache:
                notes[heap.tcache - 2 * S] = "tcache_perthread_struct (the selected thread's tcache)"
            out.lines(render.chunk_lines(chunk_rows, read_preview, st, notes))
            if limit is not None and self._stopped:
                out.line(f"stopped after {limit} chunks (--limit {limit})")
            out.lines(render.problem_lines(problems, st))

    _stopped = False

    def _rows(self, heap: Heap, arena: Arena, problems: List[Problem],
              limit: Optional[int]) -> Iterator[Tuple[int, int, str, Optional[str], Optional[int]]]:
        """(address, size field, state, bin, index) for each chunk, up to `limit`."""
        self._stopped = False
        free = heap.free_index(arena)
        top = arena.state.top
        get = free.get
        n = 0
        for addresses, sizes in heap.chunk_batches(arena, problems):
            if limit is not None and n + len(addresses) > limit:
                addresses, sizes = addresses[:limit - n], sizes[:limit - n]
                self._stopped = True
            n += len(addresses)
            for address, sizef in zip(addresses, sizes):
                hit = get(address)
                if hit is not None:
                    yield address, sizef, "free", hit[0], hit[1]
                elif address == top:
                    yield address, sizef, "top", None, None
                else:
                    yield address, sizef, "in_use", None, None
            if self._stopped:
                return

    def _json(self, heap: Heap, arenas: Sequence[Arena], args: Args, limit: Optional[int], out: Out) -> None:
        S = heap.layout.size_sz
        many = args.flag("--all-arenas")
        if many:
            out.write('{"arenas": [')
        for i, arena in enumerate(arenas):
            problems: List[Problem] = []
            rows = (render.chunk_json(a, s, state, kind, index, S)
                    for a, s, state, kind, index in self._rows(heap, arena, problems, limit))
            if i:
                out.write(", ")
            for piece in render.chunks_json(heap.anchors.glibc, arena.address, rows, problems):
                out.write(piece)
        out.line("]}" if many else "")

    @staticmethod
    def _arena_title(out: Out, arena: Arena, args: Args, st: Style) -> None:
        if args.flag("--all-arenas"):
            out.line(st("heading", f"{'main arena' if arena.main else 'arena'} {arena.address:#x}"))


# -- heap chunk ----------------------------------------------------------------------------------

class HeapChunk(HeapCommandBase):
    """Show one chunk in detail.

Usage: heap chunk ADDR [--json]

ADDR is a gdb expression: the chunk's address or the pointer malloc returned (the output says
which it understood).  Shows the header fields (prev_size, size and its flag bits), the
state and the bin holding the chunk if it is free, its links, its usable size, its
neighbours, and which malloc(n) requests produce a chunk of this size: that answers
"malloc(10) gives me how many bytes?".

  --json   one JSON object: a chunk as in "heap chunks --json" plus "understood_as",
           "arena" and "requests": [LOW, HIGH]"""

    name = "heap chunk"
    flags = ("--json",)

    def run(self, args: Args, out: Out) -> None:
        if not args.rest:
            raise HeapError("give a chunk address or a pointer malloc returned, e.g. heap chunk p")
        address = evaluate_address(" ".join(args.rest))
        heap = open_heap(args)
        if not heap.initialised:
            raise HeapError("the heap is not initialised yet: the program has not called malloc; continue "
                            "past its first malloc")
        found = heap.find_chunk(address)
        chunk_addr, how, arena, prev_chunk = found.chunk, found.how, found.arena, found.prev
        layout = heap.layout
        if arena is not None:
            top, free = arena.state.top, heap.free_index(arena)
        else:
            top, free = -1, {}
        c = chunk_at(heap.reader, layout, chunk_addr, top, free)
        requests = layout.mmapped_requests_for(c.size) if c.is_mmapped else layout.requests_for(c.size)
        if args.flag("--json"):
            doc = json.loads(render.chunk_json(c.address, c.size_field, c.state, c.bin, c.bin_index,
                                               layout.size_sz))
            doc.update(understood_as=how, arena=arena.address if arena else None,
                       requests=list(requests) if requests else [0, 0])
            if c.is_mmapped and arena is None and c.prev_size is not None:
                start = c.address - c.prev_size
                doc.update(prev_size=c.prev_size, mapping_start=start,
                           mapping_end=start + mmapped_span(layout, c.prev_size, c.size))
            print_json(out, doc)
            return
        links = self._links(heap, c)
        next_info = None
        if arena is not None and c.state != "top":
            nxt = c.address + c.size
            try:
                nsize = heap.reader.word(nxt + layout.size_sz)
                state, kind, index = classify(nxt, top, free)
                next_info = (nxt, nsize & ~SIZE_BITS, render.state_text(state, kind, index))
            except MemoryReadError:
                pass
        out.lines(render.chunk_detail_lines(c, how, arena, layout, links, prev_chunk, next_info, style()))

    @staticmethod
    def _links(heap: Heap, c: Chunk) -> List[Tuple[str, int]]:
        """The list pointers a free chunk carries, decoded as glibc reads them."""
        S, H, layout, r = heap.layout.size_sz, heap.layout.header_size, heap.layout, heap.reader
        try:
            if c.bin == "tcache":
                nxt = layout.reveal_ptr(c.user_address, r.word(c.user_address))
                links = [("tcache next", nxt - H if nxt else 0)]
                if layout.features.tcache_key:
                    links.append(("tcache key", r.word(c.user_address + S)))
                return links
            if c.bin == "fast":
                return [("fd", layout.reveal_ptr(c.user_address, r.word(c.user_address)))]
            if c.bin in ("unsorted", "small", "large"):
                names = ["fd", "bk"] + (["fd_nextsize", "bk_nextsize"] if c.bin == "large" else [])
                return list(zip(names, r.words(c.address + 2 * S, len(names))))
        except MemoryReadError:
            pass
        return []


# -- heap bins -----------------------------------------------------------------------------------

class HeapBins(HeapCommandBase):
    """Show the arena's non-empty bins, each chain in list order.

Usage: heap bins [KIND...] [--json] [--arena ADDR | --all-arenas] [--all-threads]

KIND is any of tcache, fast, unsorted, small, large (default: all).  tcache is the selected
thread's (gdb's "thread N" selects another; --all-threads shows every thread's, each named by
its gdb thread number and LWP); its bins show the chunk size they hold and the count tcache
keeps, checked against the walked chain.  Fastbin and tcache links are decoded
from safe-linking (glibc 2.32+).  Unsorted and large bins show each chunk's size.  A chain
that loops, leaves mapped memory, or is longer than it can be is cut there and reported.

  --json         {"arena", "bins": [{"kind", "index", "size", "count", "chunks"}], "problems"}
                 (tcache bins add "thread" and "lwp": whose tcache it is)
  --arena ADDR   the arena at ADDR (default: the selected thread's arena, else main_arena)
  --all-arenas   every arena in turn
  --all-threads  every thread's tcache, in the document of the selected thread's arena"""

    name = "heap bins"
    flags = ("--json", "--all-arenas", "--all-threads")
    valued = ("--arena",)
    words = BIN_KINDS

    def run(self, args: Args, out: Out) -> None:
        for word in args.rest:
            if word not in BIN_KINDS:
                raise HeapError(f"unknown bin kind {word!r}; the kinds are {', '.join(BIN_KINDS)}")
        kinds = tuple(k for k in BIN_KINDS if k in args.rest) or BIN_KINDS
        heap = open_heap(args)
        arenas = arenas_for(heap, args)
        all_threads = args.flag("--all-threads") and "tcache" in kinds
        selected = heap.selected_arena()
        # Every thread's tcache goes where the selected thread's would (else the first arena).
        home = selected if selected in arenas else arenas[0]
        results = [(arena, heap.bins(arena, tuple(k for k in kinds if k != "tcache") if all_threads else kinds))
                   for arena in arenas]
        tcaches = heap.thread_tcaches() if all_threads else []
        me = next((t for t in heap.threads if t.selected), None) if "tcache" in kinds and not all_threads else None
        if args.flag("--json"):
            docs = []
            for arena, (chains, problems) in results:
                doc = render.bins_doc(arena.address, chains, problems)
                if arena is home and tcaches:
                    doc["bins"] = [b for tc in tcaches for b in render.bins_doc(0, tc.chains, [], tc.thread)["bins"]] \
                        + doc["bins"]
                    doc["problems"] = [render.problem_json(p) for tc in tcaches for p in tc.problems] + doc["problems"]
                elif me is not None:
                    doc = render.bins_doc(arena.address, chains, problems, me)
                docs.append(doc)
            print_json(out, {"arenas": docs} if args.flag("--all-arenas") else docs[0])
            return
        st = style()

        def size_of(chunk: int) -> Optional[int]:
            try:
                return heap.reader.word(chunk + heap.layout.size_sz) & ~SIZE_BITS
            except MemoryReadError:
                return None

        for arena, (chains, problems) in results:
            if args.flag("--all-arenas"):
                out.line(st("heading", f"{'main arena' if arena.main else 'arena'} {arena.address:#x}"))
            if arena is home and tcaches:
                for tc in tcaches:
                    where = f", arena {tc.thread.arena:#x}" if tc.thread.arena else ""
                    out.lines(render.bins_lines(tc.chains, tc.problems, st, size_of, tc.address,
                                                render.thread_text(tc.thread) + where))
                if all_threads and not tcaches:
                    out.line("no thread has a tcache with chunks")
                if not chains and not problems:
                    continue
            tcache = heap.tcache if arena is selected else None
            out.lines(render.bins_lines(chains, problems, st, size_of, tcache,
                                        render.thread_text(me) if me and tcache else ""))


# -- heap top ------------------------------------------------------------------------------------

class HeapTop(HeapCommandBase):
    """Show the top chunk: the free space at the end of the heap that malloc cuts new chunks from.

Usage: heap top [--json] [--arena ADDR | --all-arenas]

Shows its address, size and end, and where it sits in its heap region.  When top is too
small for a request, malloc grows the heap (brk for the main arena); when a free leaves top
larger than the trim threshold, free gives the memory back to the kernel.

  --json   {"arena", "address", "size", "end"}"""

    name = "heap top"
    flags = ("--json", "--all-arenas")
    valued = ("--arena",)

    def run(self, args: Args, out: Out) -> None:
        self.no_extra(args)
        heap = open_heap(args)
        arenas = arenas_for(heap, args)
        tops = [(arena, heap.top(arena)) for arena in arenas]
        if args.flag("--json"):
            docs = [render.top_doc(t) for _, t in tops]
            print_json(out, {"arenas": docs} if args.flag("--all-arenas") else docs[0])
            return
        st = style()
        for arena, t in tops:
            out.lines(render.top_lines(t, arena, st))
            top_check = Checker(heap, arena)
            top_check.top()  # a damaged top size is named here too, not only by heap check
            out.lines(render.problem_lines(top_check.finish(), st))


# -- heap arenas ---------------------------------------------------------------------------------

class HeapArenas(HeapCommandBase):
    """List every arena: address, main or not, top, system memory, heaps, threads.

Usage: heap arenas [--json]

The arenas are listed in the order of glibc's `next` ring, starting at main_arena.  A thread
arena's heaps are mmapped regions described by a heap_info at their start (its size in use
and mprotect_size, the part made read-write), oldest first.  The threads attached to an arena
are those whose thread_arena (a libc TLS variable) points at it; * marks the selected thread.

  --json   {"arenas": [{"address", "main", "top", "system_mem", "next", "heaps": [{"start", "end",
           "heap_info", "size", "mprotect_size"}], "threads": [{"thread", "lwp"}]}]}"""

    name = "heap arenas"
    flags = ("--json",)

    def run(self, args: Args, out: Out) -> None:
        self.no_extra(args)
        heap = open_heap(args)
        if args.flag("--json"):
            print_json(out, {"arenas": [render.arena_doc(a, heap.arena_threads(a)) for a in heap.arenas]})
            return
        st = style()
        for arena in heap.arenas:
            out.lines(render.arena_lines(arena, st, heap.arena_threads(arena)))


# -- heap mmapped --------------------------------------------------------------------------------

class HeapMmapped(HeapCommandBase):
    """List the mmapped chunks: large blocks that are a mapping of their own.

Usage: heap mmapped [--json]

malloc serves a request of at least mp_.mmap_threshold (128 KiB at first; freeing such a
chunk raises it) with a mapping of its own when top cannot: no arena or bin refers to it,
and free gives it back with munmap.  glibc only counts them (mp_.n_mmaps, mp_.mmapped_mem),
so this command looks for them: a chunk header that glibc would write (IS_MMAPPED, a whole
number of pages) at the start of every anonymous mapping (from `info proc mappings` for a
live process, from the core file's own segments for a core).  It prints glibc's count beside
what it found, so a chunk it missed (its mapping merged with a neighbour) shows as a mismatch.
Each chunk's prev_size is the slack between its mapping's start and the chunk (0 unless
memalign placed it).

  --json   {"chunks": [{"address", "size", "user_address", "mapping_start", "mapping_end",
           "prev_size"}], "glibc_count", "glibc_bytes", "unreadable": [{"start", "end"}]}"""

    name = "heap mmapped"
    flags = ("--json",)

    def run(self, args: Args, out: Out) -> None:
        self.no_extra(args)
        heap = open_heap(args)
        view = heap.mmapped()
        if args.flag("--json"):
            print_json(out, render.mmapped_doc(view))
            return
        out.lines(render.mmapped_lines(view, style()))


# -- settings ------------------------------------------------------------------------------------

class HeapSet(gdb.Command):
    """Settings of the heap commands.

set heap main-arena EXPR: where main_arena is, when the C library has no symbols and the
  heuristic finds none or several (empty: find it again).
set heap mp EXPR: the same for mp_."""

    def __init__(self) -> None:
        super().__init__("set heap", gdb.COMMAND_DATA, gdb.COMPLETE_NONE, True)


class HeapShow(gdb.Command):
    """Show the settings of the heap commands (see help set heap)."""

    def __init__(self) -> None:
        super().__init__("show heap", gdb.COMMAND_DATA, gdb.COMPLETE_NONE, True)


class AddressSetting(gdb.Parameter):
    """An address (any gdb expression) that overrides what the heap commands find themselves."""

    def __init__(self, name: str, what: str) -> None:
        self.set_doc = f"Set where {what} is (an address or expression; empty: find it automatically)."
        self.show_doc = f"Show where the heap commands take {what} to be."
        self.__doc__ = (f"Where {what} is, for the heap commands, when the C library has no symbols.\n"
                        f"Empty (the default): found from symbols or by the heuristic.")
        self.what = what
        super().__init__(f"heap {name}", gdb.COMMAND_DATA, gdb.PARAM_STRING)
        self.value = ""

    def get_set_string(self) -> str:
        return f"heap: {self.what} is {self.value}" if self.value else f"heap: {self.what} is found automatically"

    def get_show_string(self, svalue: str) -> str:
        return f"{self.what}: {svalue or 'found automatically'}"


# -- heap check ----------------------------------------------------------------------------------

class HeapCheck(HeapCommandBase):
    """Check the integrity of an arena's heap, the way glibc's own checks do.

Usage: heap check [--json] [--arena ADDR | --all-arenas]

Walks the chunks and every bin and lists each problem with the address of the chunk whose
header or links are damaged, what is wrong, and the message glibc would abort with when it
trips over it.  Checked: chunk sizes (alignment, MINSIZE, inside the heap), the next chunk's
PREV_INUSE and prev_size against the bins, top's size, each double-linked bin's fd/bk and
its header's bk, the large bins' fd_nextsize/bk_nextsize ring and size order, sizes against
their bin, fastbin and tcache chains (alignment, safe-linking, loops, links leaving every
heap, tcache counts and keys), chunks a bin lists that the heap walk does not find, and
chunks in two bins.  The selected thread's tcache is checked with its arena.

Without --json the command ends with an error when it finds a problem, so `gdb -batch`
exits non-zero (a CI job can gate on it).

  --json         {"arena", "problems": [{"address", "message", "glibc_abort"}]}; never an
                 error for problems found (with --all-arenas: {"arenas": [...]})
  --arena ADDR   the arena at ADDR (default: the selected thread's arena, else main_arena)
  --all-arenas   every arena in turn"""

    name = "heap check"
    flags = ("--json", "--all-arenas")
    valued = ("--arena",)

    def run(self, args: Args, out: Out) -> None:
        self.no_extra(args)
        heap = open_heap(args)
        reports = [check_arena(heap, arena) for arena in arenas_for(heap, args)]
        if args.flag("--json"):
            docs = [render.check_doc(r) for r in reports]
            print_json(out, {"arenas": docs} if args.flag("--all-arenas") else docs[0])
            return
        st = style()
        for report in reports:
            out.lines(render.check_lines(report, st))
        found = sum(len(r.problems) for r in reports)
        if found:
            out.flush()
            raise HeapError(f"{found} problem{'s' * (found != 1)} found in the heap; each is listed above "
                            "at the chunk it damages (heap chunk ADDR shows that chunk's header and links)")


def register() -> None:
    HeapSet()
    HeapShow()
    AddressSetting("main-arena", "main_arena")
    AddressSetting("mp", "mp_")
    HeapOverview()
    HeapChunks()
    HeapChunk()
    HeapBins()
    HeapTop()
    HeapArenas()
    HeapCheck()
    HeapMmapped()
