"""Text (optionally coloured) and JSON views of the model's data.

Pure functions from model data to strings; the commands decide where the strings go.  Large
outputs (one line per chunk) are produced as iterators of lines so they can be streamed.
"""

from __future__ import annotations

import json
import string
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from .check import Report
from .heap import MmappedView, ThreadInfo, Top, Where
from .views import ArenaBins, ChunkView, Overview, TopView
from .layouts import GlibcLayout
from .mmapped import chunk_bytes as mapped_bytes
from .model import (BIN_KINDS, IS_MMAPPED, NON_MAIN_ARENA, PREV_INUSE, SIZE_BITS, Arena, BinChain, Chunk,
                    HeapRegion, Problem, bin_label)
from .paths import FakeChunk, FreeResult, MallocResult, Outcome
from .style import Style

PREVIEW_BYTES = 16
_PRINTABLE = bytes(c if chr(c) in string.printable and c >= 0x20 and c < 0x7f else ord(".") for c in range(256))


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def flags_text(size_field: int) -> str:
    return "".join(c if size_field & bit else "." for c, bit in (("P", PREV_INUSE), ("M", IS_MMAPPED),
                                                               ("N", NON_MAIN_ARENA)))


def state_text(state: str, kind: Optional[str], index: Optional[int]) -> str:
    if state == "free" and kind is not None and index is not None:
        return f"free {bin_label(kind, index)}"
    return "in use" if state == "in_use" else state


def preview(data: bytes) -> str:
    """Hex in words of 8 bytes, then the bytes as ASCII (dots for the unprintable)."""
    return f"{data.hex(' ', 8):<33} {data.translate(_PRINTABLE).decode('ascii')}"


# -- JSON ------------------------------------------------------------------------------------

def _j(value: object) -> str:
    return json.dumps(value)


CHUNK_KEYS = ("address", "size", "prev_inuse", "is_mmapped", "non_main_arena", "state", "bin", "bin_index",
              "user_address", "usable_size")
# The same object as a format string (fast for a million chunks); test_render checks it
# against chunk_doc, key by key.
_CHUNK_FORMAT = ('{"address": %d, "size": %d, "prev_inuse": %s, "is_mmapped": %s, "non_main_arena": %s, '
                 '"state": "%s", "bin": %s, "bin_index": %s, "user_address": %d, "usable_size": %d}')


def chunk_fields(address: int, size_field: int, state: str, kind: Optional[str], index: Optional[int],
                 size_sz: int) -> Tuple[int, int, bool, bool, bool, str, Optional[str], Optional[int], int, int]:
    """The values of a chunk object of the contract, in CHUNK_KEYS' order."""
    size = size_field & ~SIZE_BITS
    mmapped = bool(size_field & IS_MMAPPED)
    usable = max(0, size - (2 if mmapped else 1) * size_sz)
    return (address, size, bool(size_field & PREV_INUSE), mmapped, bool(size_field & NON_MAIN_ARENA), state,
            kind, index, address + 2 * size_sz, usable)


def chunk_doc(c: Chunk) -> Dict[str, object]:
    return dict(zip(CHUNK_KEYS, chunk_fields(c.address, c.size_field, c.state, c.bin, c.bin_index, c.size_sz)))


def chunk_json(address: int, size_field: int, state: str, kind: Optional[str], index: Optional[int],
               size_sz: int) -> str:
    """One chunk object of the contract, formatted directly (fast for a million chunks)."""
    a, size, p, m, n, state, kind, index, user, usable = chunk_fields(address, size_field, state, kind, index,
                                                                      size_sz)
    return _CHUNK_FORMAT % (a, size, "true" if p else "false", "true" if m else "false", "true" if n else "false",
                            state, "null" if kind is None else '"%s"' % kind, "null" if index is None else index,
                            user, usable)


def chunk_view_doc(view: ChunkView) -> Dict[str, object]:
    """`heap chunk --json`: the chunk object plus how the address was understood, its arena,
    the request range; an mmapped chunk adds its mapping; an address inside the chunk adds
    "inside": {"address", "offset", "user_offset"}."""
    c, where = view.chunk, view.where
    doc = chunk_doc(c)
    doc.update(understood_as="user_pointer" if where.user_offset >= 0 else "chunk",
               arena=where.arena.address if where.arena else None,
               requests=list(view.requests) if view.requests else [0, 0])
    if view.mapping is not None:
        doc.update(prev_size=c.prev_size, mapping_start=view.mapping[0], mapping_end=view.mapping[1])
    if where.how == "inside":
        doc["inside"] = {"address": where.address, "offset": where.offset, "user_offset": where.user_offset}
    return doc


def problem_json(p: Problem, with_abort: bool = False) -> Dict[str, object]:
    doc: Dict[str, object] = {"address": p.address, "message": p.message}
    if with_abort:
        doc["glibc_abort"] = p.glibc_abort
    return doc


def chunks_json(glibc: Optional[str], arena: int, rows: Iterator[str], problems: List[Problem]) -> Iterator[str]:
    """The `heap chunks --json` document in pieces; `problems` is complete once rows are used up."""
    yield '{"glibc": %s, "arena": %d, "chunks": [' % (_j(glibc), arena)
    first = True
    for row in rows:
        yield row if first else ", " + row
        first = False
    yield '], "problems": %s}' % _j([problem_json(p) for p in problems])


def bins_doc(arena: int, chains: Sequence[BinChain], problems: Sequence[Problem],
             thread: Optional[ThreadInfo] = None) -> Dict[str, Any]:
    """`thread`: whose tcache the tcache bins are (its number and LWP are added to them)."""
    owner = thread_doc(thread) if thread is not None else {}
    return {"arena": arena,
            "bins": [dict({"kind": c.kind, "index": c.index, "size": c.size, "count": c.count, "chunks": c.chunks},
                          **(owner if c.kind == "tcache" else {}))
                     for c in chains],
            "problems": [problem_json(p) for p in problems]}


def bins_view_doc(view: ArenaBins) -> Dict[str, Any]:
    """One arena's `heap bins --json` document; every thread's tcache bins (--all-threads)
    come first, each naming its thread."""
    doc = bins_doc(view.arena.address, view.chains, view.problems, view.owner)
    if view.threads:
        doc["bins"] = [b for tc in view.threads for b in bins_doc(0, tc.chains, [], tc.thread)["bins"]] + doc["bins"]
        doc["problems"] = [problem_json(p) for tc in view.threads for p in tc.problems] + doc["problems"]
    return doc


def overview_doc(glibc: Optional[str], located_by: str, arenas: Sequence[Tuple[Arena, Sequence[ThreadInfo]]],
                 ov: Overview) -> Dict[str, object]:
    return {"glibc": glibc, "located_by": located_by, "arenas": [arena_doc(a, t) for a, t in arenas],
            "counts": ov.counts}


def top_doc(top: Top) -> Dict[str, object]:
    return {"arena": top.arena, "address": top.address, "size": top.size, "end": top.end}


def heap_doc(h: HeapRegion) -> Dict[str, object]:
    """A heap region; a thread arena's heap adds its heap_info's fields, a main-arena region
    that sysmalloc left behind where its glibc fencepost is."""
    doc: Dict[str, object] = {"start": h.start, "end": h.end}
    if h.heap_info is not None:
        doc.update(heap_info=h.heap_info, size=h.info_size, mprotect_size=h.mprotect_size)
    if h.fencepost is not None:
        doc.update(fencepost=h.fencepost)
    return doc


def thread_doc(t: ThreadInfo) -> Dict[str, object]:
    return {"thread": t.num, "lwp": t.lwp}


def arena_doc(arena: Arena, threads: Optional[Sequence[ThreadInfo]] = None) -> Dict[str, object]:
    """An arena; `threads`: the threads attached to it, when they were looked up."""
    s = arena.state
    doc = {"address": arena.address, "main": arena.main, "top": s.top, "system_mem": s.system_mem,
           "next": s.next, "max_system_mem": s.max_system_mem, "attached_threads": s.attached_threads,
           "flags": s.flags, "heaps": [heap_doc(h) for h in arena.heaps]}
    if threads is not None:
        doc["threads"] = [thread_doc(t) for t in threads]
    return doc


def mmapped_doc(view: MmappedView) -> Dict[str, object]:
    return {"chunks": [{"address": c.address, "size": c.size_field & ~SIZE_BITS, "user_address": c.user_address,
                        "mapping_start": c.mapping_start, "mapping_end": c.mapping_end, "prev_size": c.prev_size}
                       for c in view.chunks],
            "glibc_count": view.glibc_count, "glibc_bytes": view.glibc_bytes,
            "unreadable": [{"start": m.start, "end": m.end} for m in view.unreadable],
            "page_scan": None if view.page_scan is None else {
                "scanned": view.page_scan.scanned, "found": view.page_scan.found,
                "complete": view.page_scan.complete}}


def summary_doc(arena: int, rows: Dict[Tuple[str, Optional[str], int], int]) -> Dict[str, object]:
    return {"arena": arena, "summary": [
        {"state": state, "bin": kind, "size": size, "count": count, "bytes": size * count}
        for (state, kind, size), count in summary_order(rows)]}


def summary_order(rows: Dict[Tuple[str, Optional[str], int], int]) -> List[Tuple[Tuple[str, Optional[str], int], int]]:
    rank = {"in_use": 0, "free": 1, "top": 2}
    kinds = {None: -1, "tcache": 0, "fast": 1, "unsorted": 2, "small": 3, "large": 4}
    return sorted(rows.items(), key=lambda kv: (rank[kv[0][0]], kinds[kv[0][1]], kv[0][2]))


# -- text ------------------------------------------------------------------------------------

CHUNK_HEADER = f"{'chunk':<18} {'size':>9}  {'flags'}  {'state':<18} user data"


def chunk_lines(rows: Iterable[Tuple[int, int, str, Optional[str], Optional[int]]],
                read_preview: Callable[[int], bytes], style: Style,
                notes: Optional[Dict[int, str]] = None) -> Iterator[str]:
    """One line per chunk; `notes` names known chunks (address -> text shown for its data)."""
    notes = notes or {}
    yield style("heading", CHUNK_HEADER)
    # Everything but the numbers is looked up, not formatted, per chunk: a million lines.
    a0, a1 = style.codes("address")
    s0, s1 = style.codes("size")
    d0, d1 = style.codes("dim")
    flags = [flags_text(bits) for bits in range(8)]
    labels: Dict[Tuple[str, Optional[str], Optional[int]], str] = {}
    for address, size_field, state, kind, index in rows:
        label = labels.get((state, kind, index))
        if label is None:
            label = labels[state, kind, index] = style(state, f"{state_text(state, kind, index):<18}")
        head = f"{a0}{address:#018x}{a1} {s0}{size_field & ~SIZE_BITS:#9x}{s1}  {flags[size_field & 7]}    {label}"
        if state == "top":
            yield head.rstrip()
        elif address in notes:
            yield f"{head} {notes[address]}"
        else:
            yield f"{head} {d0}{preview(read_preview(address))}{d1}"


def problem_lines(problems: Sequence[Problem], style: Style) -> Iterator[str]:
    for p in problems:
        abort = f' (glibc would abort: "{p.glibc_abort}")' if p.glibc_abort else ""
        yield style("problem", f"problem at {p.address:#x}: {p.message}{abort}")


def summary_lines(rows: Dict[Tuple[str, Optional[str], int], int], style: Style) -> Iterator[str]:
    yield style("heading", f"{'state':<10} {'bin':<9} {'size':>10} {'count':>10} {'bytes':>14}")
    total_n = total_b = 0
    for (state, kind, size), count in summary_order(rows):
        label = "free" if state == "free" else state_text(state, None, None)
        yield (f"{style(state, f'{label:<10}')} "
               f"{kind or '-':<9} {style('size', f'{size:#10x}')} {count:>10} {size * count:>14}")
        total_n += count
        total_b += size * count
    yield style("heading", f"{'total':<10} {'':<9} {'':>10} {total_n:>10} {total_b:>14}")


def _hex_or_unknown(value: Optional[int]) -> str:
    return "?" if value is None else f"{value:#x}"


def bins_lines(chains: Sequence[BinChain], problems: Sequence[Problem], style: Style,
               sizes: Callable[[int], Optional[int]], tcache: Optional[int], owner: str = "") -> Iterator[str]:
    """The bins' chains; `owner` names the thread whose tcache this is (--all-threads)."""
    titles = {"tcache": "tcache" + (f" of {owner}" if owner else "") +
              (f" (tcache_perthread_struct at {tcache:#x})" if tcache else ""),
              "fast": "fastbins", "unsorted": "unsorted bin", "small": "small bins", "large": "large bins"}
    current = None
    for c in chains:
        if c.kind != current:
            current = c.kind
            yield style("heading", titles[c.kind])
        size = f"size {c.size:#x}" if c.kind in ("tcache", "fast", "small") else f"sizes >= {c.size:#x}"
        if c.kind == "tcache" and c.index >= 64:
            size = f"sizes >= {c.size:#x}"
        name = style('name', bin_label(c.kind, c.index))
        yield f"  {name}  {style('size', size)}  {c.count} chunk{'s' * (c.count != 1)}"
        a0, a1 = style.codes("address")
        if c.kind in ("unsorted", "large"):  # these bins mix sizes: show each chunk's
            known = c.sizes if len(c.sizes) == len(c.chunks) else [sizes(ch) for ch in c.chunks]
            shown = [f"{a0}{ch:#x}{a1} ({_hex_or_unknown(sz)})" for ch, sz in zip(c.chunks, known)]
        else:
            shown = [f"{a0}{ch:#x}{a1}" for ch in c.chunks]
        for i in range(0, len(shown), 4):
            arrow = "-> " if i == 0 else "   "
            yield "    " + arrow + " -> ".join(shown[i:i + 4]) + (" ->" if i + 4 < len(shown) else "")
    if not chains:
        yield "no chunks in these bins"
    yield from problem_lines(problems, style)


def bins_view_lines(view: ArenaBins, style: Style, sizes: Callable[[int], Optional[int]]) -> Iterator[str]:
    if view.threads is not None:
        for tc in view.threads:
            where = f", arena {tc.thread.arena:#x}" if tc.thread.arena else ""
            yield from bins_lines(tc.chains, tc.problems, style, sizes, tc.address, thread_text(tc.thread) + where)
        if not view.threads:
            yield "no thread has a tcache with chunks"
        if not view.chains and not view.problems:
            return
    owner = thread_text(view.owner) if view.owner and view.tcache else ""
    yield from bins_lines(view.chains, view.problems, style, sizes, view.tcache, owner)


def arena_heading(arena: Arena, style: Style) -> str:
    """The title of one arena's part when a command shows every arena."""
    return style("heading", f"{'main arena' if arena.main else 'arena'} {arena.address:#x}")


def overview_lines(glibc: Optional[str], located_by: str, main_arena: int, mp: int, notes: Sequence[str],
                   arenas: Sequence[Tuple[Arena, Sequence[ThreadInfo]]], ov: Overview,
                   style: Style) -> Iterator[str]:
    """`heap`'s text; `arenas` empty: the heap is not initialised yet."""
    yield (f"glibc {glibc or 'version unknown'}, allocator state found by {located_by} "
           f"(main_arena {main_arena:#x}, mp_ {mp:#x})")
    for note in notes:
        yield f"  {note}"
    if not arenas:
        yield ("the heap is not initialised yet: the program has not called malloc (no heap, no "
               "chunks); continue past its first malloc")
        return
    for arena, threads in arenas:
        yield from arena_lines(arena, style, threads)
    counts = ov.counts
    yield (f"chunks: {counts['in_use']} in use; free: " + ", ".join(f"{counts[k]} {k}" for k in BIN_KINDS) +
           " (plus one top chunk per arena)")
    yield from problem_lines(ov.problems, style)


def tcache_notes(structs: Dict[int, Optional[ThreadInfo]]) -> Dict[int, str]:
    """What `heap chunks` shows for the chunks holding a tcache_perthread_struct."""
    return {chunk: f"tcache_perthread_struct of {thread_text(t)}" if t is not None else
            "tcache_perthread_struct (the selected thread's tcache)" for chunk, t in structs.items()}


def thread_text(t: ThreadInfo) -> str:
    return f"thread {t.num} (LWP {t.lwp})"


def arena_lines(arena: Arena, style: Style, threads: Optional[Sequence[ThreadInfo]] = None) -> Iterator[str]:
    s = arena.state
    kind = "main arena" if arena.main else "arena"
    yield (f"{style('heading', kind)} {style('address', f'{arena.address:#x}')}: top "
           f"{style('address', f'{s.top:#x}')}, system memory {s.system_mem:#x} ({human(s.system_mem)}), "
           f"next {s.next:#x}")
    if threads is not None:
        yield "  threads: " + (", ".join(thread_text(t) + " *" * t.selected for t in threads) or
                               "none attached now") + f" (glibc counts {s.attached_threads} attached)"
    for h in arena.heaps:
        span = f"{style('address', f'{h.start:#x}')}-{style('address', f'{h.end:#x}')}"
        line = f"  heap {span} ({human(h.end - h.start)})"
        if h.heap_info is not None:
            line += (f": heap_info at {h.heap_info:#x}, size {h.info_size:#x}, mprotect_size "
                     f"{h.mprotect_size:#x}")
        elif h.fencepost is not None:
            line += f": ends with glibc's fencepost at {h.fencepost:#x} (the heap went on elsewhere)"
        yield line
    if not arena.heaps:
        yield "  no heap yet (the arena has not allocated anything)"
    yield from problem_lines(arena.problems, style)


def top_view_lines(view: TopView, arena: Arena, style: Style) -> Iterator[str]:
    yield from top_lines(view.top, arena, style)
    yield from problem_lines(view.problems, style)


def top_lines(top: Top, arena: Arena, style: Style) -> Iterator[str]:
    yield (f"top chunk {style('address', f'{top.address:#x}')} of {'main arena' if arena.main else 'arena'} "
           f"{arena.address:#x}")
    yield f"  size {style('size', f'{top.size:#x}')} ({human(top.size)}), ends at {top.end:#x}"
    if top.region:
        r = top.region
        where = "at the end of its heap" if top.end == r.end else f"{r.end - top.end:#x} bytes before its heap's end"
        if top.end > r.end:
            where = f"{top.end - r.end:#x} bytes past its heap's end"
        yield (f"  heap {r.start:#x}-{r.end:#x}: top starts at +{top.address - r.start:#x} and ends {where}")
        yield (f"  the next malloc that does not fit in a bin is cut from top; when top is too small "
               f"the heap grows ({'sbrk' if arena.main else 'heap_info / mprotect'})")


def understood_text(where: Where) -> str:
    """How `heap chunk` understood the address it was given."""
    if where.how == "chunk":
        return "a chunk address"
    if where.how == "user_pointer":
        return "the user pointer malloc returned"
    return (f"an address inside the chunk: {where.offset:#x} bytes into it, "
            f"{where.user_offset:+#x} from its user pointer {where.user_address:#x}")


def chunk_detail_lines(view: ChunkView, layout: GlibcLayout, style: Style) -> Iterator[str]:
    c, where, arena = view.chunk, view.where, view.where.arena
    S = layout.size_sz
    yield (f"{style('heading', 'chunk')} {style('address', f'{c.address:#x}')}  ({where.address:#x} understood as "
           f"{understood_text(where)})")
    if arena is not None:
        yield f"  arena         {arena.address:#x} ({'main' if arena.main else 'thread'} arena)"
    elif c.is_mmapped:
        yield "  arena         none: an mmapped chunk, a mapping of its own that no arena or bin holds"
    prev_size = c.prev_size
    if prev_size is not None:
        meaning = ("the size of the free chunk before it" if not c.prev_inuse else
                   "not in use (the previous chunk is in use; these bytes end its data)")
        if c.is_mmapped and arena is None:
            meaning = "the alignment slack before the chunk in its mapping"
        yield f"  prev_size     {prev_size:#x}: {meaning}"
    flag_names = [n for n, bit in (("PREV_INUSE", PREV_INUSE), ("IS_MMAPPED", IS_MMAPPED),
                                   ("NON_MAIN_ARENA", NON_MAIN_ARENA)) if c.size_field & bit]
    yield (f"  size          {style('size', f'{c.size:#x}')} ({c.size} bytes; field {c.size_field:#x} = "
           f"{c.size:#x} | {' | '.join(flag_names) or '0'})")
    yield f"  state         {style('free' if c.state == 'free' else c.state, state_text(c.state, c.bin, c.bin_index))}"
    if c.state == "free" and c.bin in ("tcache", "fast"):
        yield "                (glibc still counts it as in use: the next chunk keeps PREV_INUSE set)"
    yield f"  user data     {c.user_address:#x}, {c.usable_size} usable bytes"
    if c.state == "top":
        yield "                (the top chunk: new chunks are cut from its start; no malloc returned it)"
    elif view.requests and not c.is_mmapped:
        yield (f"  requests      malloc({view.requests[0]}) to malloc({view.requests[1]}) give a chunk of this size "
               f"(request + {S} rounded up to {layout.malloc_alignment}, at least {layout.minsize})")
    elif view.mapping is not None and c.prev_size is not None:
        start, end = view.mapping
        low, high = layout.mmapped_requests_for(c.size)
        yield (f"  mapping       {start:#x}-{end:#x} ({human(end - start)}), its own mmap: glibc munmaps it "
               f"on free (IS_MMAPPED); usable = size - {2 * S}")
        if not c.prev_size:  # memalign's slack breaks the arithmetic
            yield (f"  requests      malloc({low}) to malloc({high}) give a mapping of this size when malloc "
                   f"serves them by mmap (request2size + {S}, page-rounded)")
    for name, value in view.links:
        yield f"  {name:<13} {style('address', f'{value:#x}')}"
    if where.prev is not None:
        yield f"  previous      {where.prev:#x}"
    if view.next is not None:
        n = view.next
        yield f"  next          {n.address:#x} (size {n.size:#x}, {state_text(n.state, n.bin, n.bin_index)})"


def check_doc(report: Report) -> Dict[str, object]:
    return {"arena": report.arena.address, "problems": [problem_json(p, True) for p in report.problems]}


def check_lines(report: Report, style: Style) -> Iterator[str]:
    arena = report.arena
    n = len(report.problems)
    what = f"{n} problem{'s' * (n != 1)}" if n else "no problems found"
    if not arena.heaps and not n:
        what = "no heap yet (the arena has not allocated anything): nothing to check"
    yield (f"{style('heading', 'main arena' if arena.main else 'arena')} {style('address', f'{arena.address:#x}')}: "
           f"{what} ({report.chunks} chunks walked, {report.listed} chunks in bins checked)")
    yield from problem_lines(report.problems, style)


def mmapped_lines(view: MmappedView, style: Style) -> Iterator[str]:
    yield style("heading", f"{'chunk':<18} {'size':>10}  {'user data':<18} {'mapping':<33} slack")
    a0, a1 = style.codes("address")
    for c in view.chunks:
        yield (f"{a0}{c.address:#018x}{a1} {style('size', f'{c.size_field & ~SIZE_BITS:#10x}')}  "
               f"{c.user_address:#018x} {c.mapping_start:#x}-{c.mapping_end:#x} {c.prev_size:#x}")
    found = mapped_bytes(view.chunks)  # what mp_.mmapped_mem counts: whole mappings, slack included
    yield (f"{len(view.chunks)} mmapped chunk{'s' * (len(view.chunks) != 1)} found ({human(found)} mapped) in "
           f"anonymous mappings ({view.source}); glibc counts {view.glibc_count} "
           f"(mp_.n_mmaps), {human(view.glibc_bytes)} (mp_.mmapped_mem)")
    pages = view.page_scan
    if pages is not None:
        yield (f"{pages.found} of them found at page starts inside merged anonymous mappings "
               f"({human(pages.scanned)} read: the mappings did not start with a chunk)")
    if len(view.chunks) != view.glibc_count or mapped_bytes(view.chunks) != view.glibc_bytes:
        where = "" if pages is None else (
            f" after reading every page start of the anonymous mappings ({human(pages.scanned)})" if pages.complete
            else f"; the page scan stopped after reading {human(pages.scanned)} (its limit), so some may be unread")
        yield style("problem", f"the scan found {len(view.chunks)} ({human(found)} mapped) "
                               f"but glibc counts {view.glibc_count} ({human(view.glibc_bytes)}){where}: "
                               "damaged headers, or a chunk glibc is mapping or unmapping right now")
    for m in view.unreadable:
        yield style("problem", f"mapping {m.start:#x}-{m.end:#x} is not readable (not in the core file?); "
                               "its chunks are not shown")


# -- predictions: heap try-free, try-malloc, fake-chunks ------------------------------------------

def free_doc(r: FreeResult) -> Dict[str, object]:
    return {"address": r.address, "chunk": r.chunk, "aborts": r.aborts, "failed_check": r.failed_check,
            "to": r.to, "bin_index": r.bin_index, "merged_with": r.merged_with, "top_after": r.top_after,
            "trimmed": r.trimmed, "crashes": r.crashes, "gave_up": r.gave_up, "steps": r.steps}


def malloc_doc(r: MallocResult) -> Dict[str, object]:
    return {"request": r.request, "call": r.call, "chunk": r.chunk, "user_address": r.user_address, "from": r.source,
            "bin_index": r.bin_index, "aborts": r.aborts, "failed_check": r.failed_check, "crashes": r.crashes,
            "gave_up": r.gave_up, "top_after": r.top_after, "side_effects": r.side_effects, "steps": r.steps}


def fake_doc(target: int, found: Sequence[FakeChunk]) -> Dict[str, object]:
    return {"target": target, "candidates": [{"chunk": f.chunk, "size_field": f.size_field, "size": f.size,
                                              "fits": f.fits, "distance": f.distance} for f in found]}


def _ending(r: Outcome) -> Optional[str]:
    if r.aborts:
        return f"glibc aborts: {r.aborts}"
    if r.crashes:
        return f"the process crashes: {r.crashes}"
    if r.gave_up:
        return "no answer: the path loops in damaged links"
    return None


def free_lines(r: FreeResult, style: Style) -> Iterator[str]:
    for s in r.steps:
        yield f"  {s}"
    end = _ending(r)
    if end:
        yield style("problem", end)
        return
    yield f"free({r.address:#x}): chunk {r.chunk:#x} goes to {r.to}" + (
        f", merged with {', '.join(f'{m:#x}' for m in r.merged_with)}" if r.merged_with else "")
    if r.top_after is not None:
        yield f"top after: {r.top_after:#x}" + (f"; trimmed {r.trimmed:#x} bytes" if r.trimmed else "")


def malloc_lines(r: MallocResult, style: Style) -> Iterator[str]:
    for s in r.steps:
        yield f"  {s}"
    end = _ending(r)
    if end:
        yield style("problem", end)
        return
    if r.chunk is None:
        yield f"{r.call}({r.request:#x}) returns " + ("a new mapping (mmap)" if r.source == "mmap" else "NULL")
        return
    where = bin_label(r.source, r.bin_index) if r.source in BIN_KINDS and r.bin_index is not None else r.source
    yield f"{r.call}({r.request:#x}) returns {r.user_address:#x} (chunk {r.chunk:#x}) from {where}"


def fake_lines(target: int, found: Sequence[FakeChunk], style: Style) -> Iterator[str]:
    if not found:
        yield f"no place before {target:#x} holds a size glibc's fast bin or tcache checks take"
        return
    yield f"{'chunk':>18}  {'size field':>18}  {'distance':>8}  fits"
    for f in found:
        yield f"{f.chunk:#18x}  {f.size_field:#18x}  {f.distance:#8x}  {', '.join(f.fits)}"
