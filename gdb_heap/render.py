"""Text (optionally coloured) and JSON views of the model's data.

Pure functions from model data to strings; the commands decide where the strings go.  Large
outputs (one line per chunk) are produced as iterators of lines so they can be streamed.
"""

from __future__ import annotations

import json
import re
import struct
import string
import sys
from bisect import bisect_left, bisect_right
from itertools import repeat
from operator import add, and_, itemgetter, sub
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from . import in_progress
from .check import Report
from .heap import MmappedView, ThreadInfo, Top, Where
from .in_progress import MidUpdate
from .views import ArenaBins, ChunkView, Link, Neighbour, Overview, TopView
from .layouts import GlibcLayout
from .mmapped import chunk_bytes as mapped_bytes
from .model import (BIN_KINDS, IS_MMAPPED, NON_MAIN_ARENA, PREV_INUSE, SIZE_BITS, Arena, BinChain, Chunk,
                    HeapRegion, Problem, bin_label, state_text)
from .places import Item, Place, Region
from .paths import FakeChunk, FreeResult, MallocResult, Outcome
from .style import Style

_PRINTABLE = bytes(c if chr(c) in string.printable and c >= 0x20 and c < 0x7f else ord(".") for c in range(256))


def addr(n: int) -> str:
    """An address as every command writes it: 0x55555555a2c0, no zero padding, so an address
    copied from one output is found in another."""
    return f"{n:#x}"


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def flags_text(size_field: int) -> str:
    return "".join(c if size_field & bit else "." for c, bit in (("P", PREV_INUSE), ("M", IS_MMAPPED),
                                                               ("N", NON_MAIN_ARENA)))




def word_text(value: int, size_sz: int) -> str:
    """A word as gdb's x/gx (x/wx on 32-bit) shows it: 0x and every hex digit."""
    return f"{value:#0{2 + 2 * size_sz}x}"


def ascii_text(data: bytes) -> str:
    """The bytes as ASCII, dots for the unprintable."""
    return data.translate(_PRINTABLE).decode("ascii")


def words_of(data: bytes, size_sz: int, order: str = "little") -> List[int]:
    """The whole words in `data`, in the target's byte order."""
    return [int.from_bytes(data[i:i + size_sz], order)  # type: ignore[arg-type]
            for i in range(0, len(data) - size_sz + 1, size_sz)]


# Two words, as `heap chunks` shows each chunk's (a million lines): one unpack for both.
_TWO_WORDS = {(order, size): struct.Struct(("<" if order == "little" else ">") + ("2Q" if size == 8 else "2I"))
              for order in ("little", "big") for size in (4, 8)}


def preview(data: bytes, size_sz: int = 8, order: str = "little", room: Optional[int] = None) -> str:
    """The first user words as x/2gx shows them, then the bytes as ASCII; within `room`
    columns, fewer words (then the ASCII alone) rather than a wrapped line."""
    if len(data) == 2 * size_sz:  # the usual two words: all of them and all the ASCII, if that fits
        spec = "#018x" if size_sz == 8 else "#010x"
        w0, w1 = _TWO_WORDS[order, size_sz].unpack(data)
        text = f"{w0:{spec}} {w1:{spec}} {data.translate(_PRINTABLE).decode('ascii')}"
        if room is None or len(text) <= room:
            return text
    words = [word_text(w, size_sz) for w in words_of(data, size_sz, order)]
    chars = ascii_text(data)
    per = len(chars) // max(1, len(words)) if words else 0
    for n in range(len(words), 0, -1):
        for text in (" ".join(words[:n] + [chars[:n * per]]), " ".join(words[:n])):
            if room is None or len(text) <= room:
                return text
    return chars[:room] if room is not None else chars


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def visible_len(text: str) -> int:
    return len(ANSI.sub("", text)) if "\x1b" in text else len(text)


def fit(line: str, width: Optional[int]) -> List[str]:
    """A line within `width` columns (None: unlimited): wrapped at blanks, each continuation
    indented 4 past the line's own indent; a word longer than the room stays whole."""
    if width is None or visible_len(line) <= width:
        return [line]
    body = line.lstrip(" ")
    lead = line[:len(line) - len(body)]
    indent = lead + "    "
    out: List[str] = []
    current = lead
    for word in body.split(" "):
        if current.strip() and visible_len(f"{current} {word}") > width:
            out.append(current)
            current = indent + word
        else:
            current = f"{current} {word}" if current.strip() else current + word
    out.append(current)
    return out


def fit_all(lines: Iterable[str], width: Optional[int]) -> Iterator[str]:
    for line in lines:
        yield from fit(line, width)


# -- JSON ------------------------------------------------------------------------------------

Namer = Callable[[int], str]  # a pointer -> what it points at ("" when nothing known)


def _j(value: object) -> str:
    return json.dumps(value)


CHUNK_KEYS = ("address", "size", "prev_inuse", "is_mmapped", "non_main_arena", "state", "bin", "bin_index",
              "user_address", "usable_size")


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


# A chunk object as a format string (fast for a million chunks): its flag bits as the three
# keys' text, its state (state, bin, bin_index) as theirs; test_render checks it against
# chunk_doc, key by key.
_FLAG_KEYS = ['"prev_inuse": %s, "is_mmapped": %s, "non_main_arena": %s' % tuple(
    "true" if bits & bit else "false" for bit in (PREV_INUSE, IS_MMAPPED, NON_MAIN_ARENA)) for bits in range(8)]
_CHUNK_FORMAT = '{"address": %d, "size": %d, %s, %s, "user_address": %d, "usable_size": %d}'
_STATE_KEYS: Dict[Tuple[str, Optional[str], Optional[int]], str] = {}


def _state_keys(state: str, kind: Optional[str], index: Optional[int]) -> str:
    keys = _STATE_KEYS.get((state, kind, index))
    if keys is None:
        keys = _STATE_KEYS[state, kind, index] = '"state": "%s", "bin": %s, "bin_index": %s' % (
            state, "null" if kind is None else '"%s"' % kind, "null" if index is None else index)
    return keys


def chunk_json(address: int, size_field: int, state: str, kind: Optional[str], index: Optional[int],
               size_sz: int) -> str:
    """One chunk object of the contract, formatted directly (fast for a million chunks)."""
    a, size, _, _, _, state, kind, index, user, usable = chunk_fields(address, size_field, state, kind, index,
                                                                      size_sz)
    return _CHUNK_FORMAT % (a, size, _FLAG_KEYS[size_field & 7], _state_keys(state, kind, index), user, usable)


class _JsonParts(Dict[Tuple[int, Tuple[str, Optional[str], Optional[int]]], str]):
    """(size field, state) -> a chunk object's text from "size" to "bin_index", and size field ->
    its "usable_size" and closing brace: a heap has a few hundred sizes, so a million chunk
    objects are made of looked-up parts (C speed), not of ten fields each."""

    def __init__(self, size_sz: int) -> None:
        super().__init__()
        self.size_sz = size_sz
        self.tails: Dict[int, str] = {}
        self.in_use = _InUseParts(self)

    def __missing__(self, key: Tuple[int, Tuple[str, Optional[str], Optional[int]]]) -> str:
        sizef, state = key
        a, size, _, _, _, _, _, _, _, usable = chunk_fields(0, sizef, *state, self.size_sz)
        self.tails[sizef] = '"usable_size": %d}' % usable
        part = self[key] = '"size": %d, %s, %s' % (size, _FLAG_KEYS[sizef & 7], _state_keys(*state))
        return part


class _InUseParts(Dict[int, str]):
    """size field -> _JsonParts' part for an in-use chunk (most chunks: keyed by an int alone)."""

    def __init__(self, parts: _JsonParts) -> None:
        super().__init__()
        self.parts = parts

    def __missing__(self, sizef: int) -> str:
        part = self[sizef] = self.parts[sizef, _IN_USE]
        return part


_JSON_PARTS: Dict[int, _JsonParts] = {}


def chunks_json_batch(addresses: List[int], sizes: List[int],
                      special: Dict[int, Tuple[str, Optional[str], Optional[int]]], size_sz: int) -> List[str]:
    """chunk_json of each chunk of a walk batch; `special` gives the states of those not in use
    (by position).  At C speed when no size field in the batch has IS_MMAPPED (a heap chunk
    never has) and every size leaves usable bytes."""
    csizes = list(map(and_, sizes, repeat(~SIZE_BITS)))
    if not csizes or any(map(and_, sizes, repeat(IS_MMAPPED))) or min(csizes) < size_sz:
        return [chunk_json(a, f, *special.get(i, _IN_USE), size_sz)
                for i, (a, f) in enumerate(zip(addresses, sizes))]
    parts = _JSON_PARTS.get(size_sz)
    if parts is None or len(parts) > 4096:  # a damaged heap may hold any sizes: memory stays bounded
        parts = _JSON_PARTS[size_sz] = _JsonParts(size_sz)
    middles = list(map(parts.in_use.__getitem__, sizes))  # makes each size's tail too
    for i, state in special.items():
        middles[i] = parts[sizes[i], state]
    return list(map(_CHUNK_PARTS.__mod__, zip(addresses, middles, map(add, addresses, repeat(2 * size_sz)),
                                               map(parts.tails.__getitem__, sizes))))


_CHUNK_PARTS = '{"address": %d, %s, "user_address": %d, %s'


def chunk_view_doc(view: ChunkView, name: Optional[Namer] = None,
                   order: str = "little") -> Dict[str, object]:
    """`heap chunk --json`: the chunk object plus how the address was understood, its arena,
    the request range; an mmapped chunk adds its mapping; an address inside the chunk adds
    "inside": {"address", "offset", "user_offset"}; then every field the text shows: prev_size,
    the links (fd..bk_nextsize as glibc follows them; fd_stored: the fd word as stored, which
    differs from fd where safe-linking mangles it, in a fast bin;
    tcache_next stored and revealed, tcache_key), what each link points at, the first user
    words and the neighbours."""
    name = name or _unnamed
    c, where = view.chunk, view.where
    doc = chunk_doc(c)
    doc.update(understood_as="user_pointer" if where.user_offset >= 0 else "chunk",
               arena=where.arena.address if where.arena else None,
               requests=list(view.requests) if view.requests else [0, 0])
    if view.mapping is not None:
        doc.update(prev_size=c.prev_size, mapping_start=view.mapping[0], mapping_end=view.mapping[1])
    if where.how == "inside":
        doc["inside"] = {"address": where.address, "offset": where.offset, "user_offset": where.user_offset}
    links = {link.name: link for link in view.links}
    tcache = c.bin == "tcache"
    nxt = links.get("next") if tcache else None
    fd = None if tcache else links.get("fd")
    doc.update(prev_size=c.prev_size,
               fd=fd.value if fd else None, fd_stored=fd.stored if fd else None,
               **{k: links[k].value if k in links else None for k in ("bk", "fd_nextsize", "bk_nextsize")},
               tcache_next={"stored": nxt.stored, "revealed": nxt.value} if nxt else None,
               tcache_key=links["key"].stored if "key" in links else None,
               pointers={link.name: name(link.value) or None for link in view.links},
               first_words=words_of(view.data, c.size_sz, order),
               prev_chunk=neighbour_doc(view.prev), next_chunk=neighbour_doc(view.next))
    loc = where.location
    doc.update(reached_by_walk=where.reached, notes=list(where.notes),
               problems=[problem_json(p) for p in where.problems],
               location=None if loc is None else {"mapping": loc.mapping, "start": loc.start, "end": loc.end,
                                                  "symbol": loc.symbol})
    return doc


def neighbour_doc(n: Optional[Neighbour]) -> Optional[Dict[str, object]]:
    return None if n is None else {"address": n.address, "size": n.size, "state": n.state, "bin": n.bin,
                                   "bin_index": n.bin_index}


def problem_json(p: Problem, with_abort: bool = False, name: Optional[Namer] = None) -> Dict[str, object]:
    doc: Dict[str, object] = {"address": p.address, "message": problem_message(p, name)}
    if with_abort:
        doc["glibc_abort"] = p.glibc_abort
        doc["other_paths"] = [{"path": path, "glibc_abort": text} for path, text in p.other_paths]
    return doc


def in_progress_json(mid: Optional[MidUpdate]) -> List[Dict[str, object]]:
    """The "in_progress" key: every thread inside the allocator, every arena whose mutex is held."""
    return [in_progress.doc(c) for c in mid.calls] if mid is not None else []


def chunks_json(glibc: Optional[str], arena: int, rows: Iterator[str], problems: List[Problem],
                mid: Optional[MidUpdate] = None, separated: bool = False) -> Iterator[str]:
    """The `heap chunks --json` document in pieces; `problems` is complete once rows are used up.
    Each row is one or more chunk objects, comma-separated; `separated`: rows are pieces of
    that list that bring their separators (the first one's, ", ", is dropped)."""
    yield '{"glibc": %s, "arena": %d, "chunks": [' % (_j(glibc), arena)
    first = True
    for row in rows:
        if first:
            yield row[2:] if separated else row
        else:
            yield row if separated else ", " + row
        first = False
    yield '], "problems": %s, "in_progress": %s}' % (_j([problem_json(p) for p in problems]),
                                                     _j(in_progress_json(mid)))


def bins_doc(arena: int, chains: Sequence[BinChain], problems: Sequence[Problem],
             thread: Optional[ThreadInfo] = None) -> Dict[str, Any]:
    """`thread`: whose tcache the tcache bins are (its number and LWP are added to them)."""
    owner = thread_doc(thread) if thread is not None else {}
    return {"arena": arena,
            "bins": [dict({"kind": c.kind, "index": c.index, "size": c.size, "count": c.count, "chunks": c.chunks},
                          **(owner if c.kind == "tcache" else {}))
                     for c in chains],
            "problems": [problem_json(p) for p in problems]}


def bins_view_doc(view: ArenaBins, mid: Optional[MidUpdate] = None) -> Dict[str, Any]:
    """One arena's `heap bins --json` document; every thread's tcache bins (--all-threads)
    come first, each naming its thread."""
    doc = bins_doc(view.arena.address, view.chains, view.problems, view.owner)
    if view.threads:
        doc["bins"] = [b for tc in view.threads for b in bins_doc(0, tc.chains, [], tc.thread)["bins"]] + doc["bins"]
        doc["problems"] = [problem_json(p) for tc in view.threads for p in tc.problems] + doc["problems"]
    doc["in_progress"] = in_progress_json(mid)
    return doc


def overview_doc(glibc: Optional[str], located_by: str, arenas: Sequence[Tuple[Arena, Sequence[ThreadInfo]]],
                 ov: Overview, mid: Optional[MidUpdate] = None) -> Dict[str, object]:
    return {"glibc": glibc, "located_by": located_by, "arenas": [arena_doc(a, t) for a, t in arenas],
            "counts": ov.counts, "in_progress": in_progress_json(mid)}


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

ADDR_WIDTH = 14  # 0x7fffffffffff: the widest x86-64 user-space address


def chunk_columns(size_sz: int) -> Tuple[int, str]:
    """`heap chunks`' address column width and heading (addresses unpadded, as everywhere;
    the column fits a user-space address)."""
    aw = 14 if size_sz == 8 else 10
    return aw, f"{'chunk':<{aw}} {'user':<{aw}} {'size':>7} flg {'state':<15} data"


def chunk_lines(rows: Iterable[Tuple[int, int, str, Optional[str], Optional[int]]],
                read_preview: Callable[[int], bytes], style: Style,
                notes: Optional[Dict[int, str]] = None, size_sz: int = 8, order: str = "little",
                width: Optional[int] = None,
                links: Optional[Callable[[int, Optional[str], bytes], str]] = None) -> Iterator[str]:
    """One line per chunk: chunk, user pointer (what malloc returned), size, flags, state and
    the first user words (x/2gx's view) with their ASCII, as many as fit `width`; `notes`
    names known chunks (address -> text shown for its data); `links` names a free chunk's
    links from those words (chunk, bin, data), shown after them when they fit."""
    lister = ChunkLister(style, notes, size_sz, order, width, links)
    yield lister.heading
    for row in rows:
        yield lister.line(*row, read_preview)


class ChunkLister:
    """`heap chunks`' lines (see chunk_lines), set up once per listing: everything but the
    numbers is looked up, not formatted, per chunk (a million lines), and the in-use chunks
    of a walk batch (most lines) are formatted together, at C speed."""

    def __init__(self, style: Style, notes: Optional[Dict[int, str]] = None, size_sz: int = 8,
                 order: str = "little", width: Optional[int] = None,
                 links: Optional[Callable[[int, Optional[str], bytes], str]] = None,
                 preview_bytes: int = 0,
                 links_many: Optional[Callable[[List[Tuple[int, Optional[str], bytes]]], List[str]]] = None) -> None:
        self.style, self.notes, self.S, self.order, self.links = style, notes or {}, size_sz, order, links
        # `links` of many chunks at once (a batch's free chunks), as a list
        self.links_many = links_many or (None if links is None else (lambda chunks: [links(*c) for c in chunks]))
        self.aw, heading = chunk_columns(size_sz)
        self.heading = style("heading", heading)
        self.room = None if width is None else max(0, width - len(heading) + len("data"))
        self.a0, self.a1 = style.codes("address")
        self.s0, self.s1 = style.codes("size")
        self.d0, self.d1 = style.codes("dim")
        self.flags = [flags_text(bits) for bits in range(8)]
        self.labels: Dict[Tuple[str, Optional[str], Optional[int]], str] = {}
        # The in-use line of preview_bytes whole words, as much of the preview as preview()
        # shows within the room: one %-format; None when the batch path cannot give that line.
        k = preview_bytes // size_sz
        self.k = k
        # Whether a free chunk's links can ever fit beside its preview (the shortest, "fd 0x1",
        # is 6 columns; line() shows them with at least a word before): else none are named.
        self.links_fit = self.room is None or self.room - 2 - 6 >= 2 + 2 * size_sz
        self.batch_format: Optional[str] = None
        self.shown = (0, 0)  # the words and ASCII characters of each preview the format shows
        self._formats: Dict[Tuple[int, int, bool, bool], str] = {}
        self._shown_in: Dict[int, Tuple[int, int]] = {}  # preview_shown within each room asked for
        if k and preview_bytes == k * size_sz and order == sys.byteorder:
            self.shown = preview_shown(k, size_sz, self.room)
            if any(self.shown):  # else line() shows no data: nothing for a format to give
                self.batch_format = self.shape_format(*self.shown, False)
        self.in_use = self.label("in_use", None, None)
        self.in_use_flags = [f"{self.flags[bits]} {self.in_use}" for bits in range(8)]  # by size & 7
        # the ASCII of previews in a row, apart: each one's first shown[1] characters
        P, m = max(1, k * size_sz), self.shown[1]
        self.pieces = re.compile(".{%d}" % P if m >= P else "(.{%d}).{%d}" % (m, P - m), re.S)

    def shape_format(self, words: int, chars: int, named: bool, padded: bool = True) -> str:
        """The %-format of a line (chunk, user pointer, size, flags and label as one string,
        preview) showing `words` preview words, then `chars` characters of their ASCII, then
        (`named`) a free chunk's links; `padded` False: for addresses as wide as their column
        (most batches: one field less work each)."""
        key = (words, chars, named, padded)
        if key not in self._formats:
            data = " ".join([f"%#0{2 + 2 * self.S}x"] * words + ["%s"] * (chars > 0)) + ("  %s" if named else "")
            a = f"%-#{self.aw}x" if padded else "%#x"
            self._formats[key] = f"{self.a0}{a}{self.a1} {a} {self.s0}%#7x{self.s1} %s {self.d0}{data}{self.d1}"
        return self._formats[key]

    def label(self, state: str, kind: Optional[str], index: Optional[int]) -> str:
        label = self.labels.get((state, kind, index))
        if label is None:
            label = self.labels[state, kind, index] = self.style(state, f"{state_text(state, kind, index):<15}")
        return label

    def line(self, address: int, size_field: int, state: str, kind: Optional[str], index: Optional[int],
             read_preview: Callable[[int], bytes], raw: Optional[bytes] = None, named: Optional[str] = None) -> str:
        """One chunk's line; `raw` is its first user bytes, else read_preview(address) gives them;
        `named`: a free chunk's links as `links` names them, when the caller has them already."""
        head = (f"{self.a0}{address:<#{self.aw}x}{self.a1} {address + 2 * self.S:<#{self.aw}x} "
                f"{self.s0}{size_field & ~SIZE_BITS:>#7x}{self.s1} {self.flags[size_field & 7]} "
                f"{self.label(state, kind, index)}")
        room = self.room
        if state == "top":
            return head.rstrip()
        if address in self.notes:
            note = self.notes[address]
            return f"{head} {note if room is None or len(note) <= room else note[:max(0, room - 3)] + '...'}"
        if raw is None:
            raw = read_preview(address)
        if named is None:
            named = self.links(address, kind, raw) if self.links is not None and state == "free" and self.links_fit \
                else ""
        rest = None if room is None else room - 2 - len(named)
        if named and (rest is None or rest >= 2 + 2 * self.S):  # a word and its name before the ASCII
            data = f"{preview(raw, self.S, self.order, rest)}  {named}"
        else:
            data = preview(raw, self.S, self.order, room)
        return f"{head} {self.d0}{data}{self.d1}" if data else head.rstrip()

    def batch(self, addresses: List[int], sizes: List[int],
              special: Dict[int, Tuple[str, Optional[str], Optional[int]]],
              data: bytes, read_preview: Callable[[int], bytes]) -> List[str]:
        """The lines of one walk batch (addresses ascending): `special` gives the states of its
        chunks not in use (by position); `data` is memory from the first chunk's user pointer on
        (their previews, as far as it goes), read_preview(address) the preview of a chunk past it.
        Top, the notes' chunks and, within a width, free chunks (their links may shorten the
        preview) take line()."""
        n = len(addresses)
        fmt = self.batch_format
        k, S = self.k, self.S
        P = k * S
        # the chunks whose whole preview is in `data`
        fast = bisect_right(addresses, addresses[0] + len(data) - P) if fmt is not None and n and data else 0
        lines: List[str] = []
        if fast and fmt is not None:
            first = addresses[0]
            addrs, sfs = addresses[:fast], sizes[:fast]
            offsets = list(map(sub, addrs, repeat(first)))
            # Each chunk's preview bytes, gathered: their words in a row, their ASCII in a row.
            got = itemgetter(*map(slice, offsets, map(add, offsets, repeat(P))))(data)
            raws: Sequence[bytes] = got if fast > 1 else (got,)
            gathered = b"".join(raws)
            words = memoryview(gathered).cast("Q" if S == 8 else "I")
            columns: List[Iterable[object]] = [words[j::k] for j in range(self.shown[0])]  # each chunk's j-th word
            texts: List[str] = []
            if self.shown[1]:
                texts = self.pieces.findall(gathered.translate(_PRINTABLE).decode("ascii"))
                columns.append(texts)
            # no address of the batch narrower than its column (they ascend): no padding to do
            padded = len(hex(first)) < self.aw
            heads = list(map(self.in_use_flags.__getitem__, map(and_, sfs, repeat(7))))  # flags and label
            slow = [i for i in map(bisect_left, repeat(addrs), self.notes) if i < fast and addrs[i] in self.notes]
            free: List[int] = []  # free chunks with the in-use format, their links after the ASCII (no width)
            fitted: List[int] = []  # free chunks whose links may fit within the width: a format by shape
            known = self.labels.get
            for i, state in special.items():
                if i >= fast:
                    continue
                if state[0] != "free":  # top
                    slow.append(i)
                    continue
                heads[i] = f"{self.flags[sfs[i] & 7]} {known(state) or self.label(*state)}"
                if self.room is None:
                    free.append(i)
                elif self.links_fit and addrs[i] not in self.notes:  # a note's chunk: in slow already
                    fitted.append(i)
            # The free chunks' links, named together.
            names: Dict[int, str] = {}
            if self.links_many is not None and self.links_fit and (free or fitted):
                named = free + fitted
                names = dict(zip(named, self.links_many([(addrs[i], special[i][1], raws[i]) for i in named])))
            for i in free:
                if names.get(i):
                    texts[i] += "  " + names[i]
            fmt = self.shape_format(*self.shown, False, padded)
            lines = list(map(fmt.__mod__, zip(addrs, map(add, addrs, repeat(2 * S)),
                                              map(and_, sfs, repeat(~SIZE_BITS)), heads, *columns)))
            if fitted:
                self._fitted(lines, fitted, names, addrs, sfs, heads, words, gathered, self.room or 0, padded)
            for i in slow:
                lines[i] = self.line(addresses[i], sizes[i], *special.get(i, _IN_USE), read_preview, raws[i],
                                     names.get(i))
        for i in range(fast, n):
            lines.append(self.line(addresses[i], sizes[i], *special.get(i, _IN_USE), read_preview))
        return lines

    def _fitted(self, lines: List[str], fitted: List[int], names: Dict[int, str], addrs: List[int], sfs: List[int],
                heads: List[str], words: Sequence[int], gathered: bytes, room: int, padded: bool) -> None:
        """The lines of a batch's free chunks within a width, as line() gives them: a chunk's
        links after as much of its preview as fits beside them, where they fit (else its line
        in the in-use format, with its label, is line()'s already).  Chunk i's k words are
        words[i * k:(i + 1) * k], its bytes gathered[i * P:(i + 1) * P]."""
        k, S = self.k, self.S
        P, wide = k * S, 2 + 2 * S

        def span(shown: Tuple[int, int]) -> int:  # the preview's length: its words, then its ASCII
            return shown[0] * (wide + 1) - 1 + (shown[1] + 1 if shown[1] else 0)

        n, m = self.shown
        whole, d1 = span(self.shown), self.d1
        chars = ""  # the previews' ASCII in a row, made when a line shows some
        for i in fitted:
            text = names.get(i, "")
            rest = room - 2 - len(text)
            if not text or rest < 2 + 2 * S:  # line() wants a word and its name before the ASCII
                continue
            shown = self._shown_in.get(rest) or self._shown_in.setdefault(rest, preview_shown(k, S, rest))
            if shown[0] == n and shown[1] <= m or not shown[1] and shown[0] <= n:
                # what it shows begins the in-use line's preview: cut that line there
                line = lines[i]
                lines[i] = f"{line[:len(line) - len(d1) - whole + span(shown)]}  {text}{d1}"
                continue
            if shown[1] and not chars:
                chars = gathered.translate(_PRINTABLE).decode("ascii")
            sf, ascii = sfs[i], ((chars[i * P:i * P + shown[1]],) if shown[1] else ())
            head = (addrs[i], addrs[i] + 2 * S, sf & ~SIZE_BITS, heads[i])
            lines[i] = self.shape_format(*shown, True, padded) % (head + tuple(words[i * k:i * k + shown[0]]) + ascii
                                                                   + (text,))


def preview_shown(k: int, size_sz: int, room: Optional[int]) -> Tuple[int, int]:
    """How many of k whole words preview() shows within `room`, and how many characters of
    their ASCII (k words of k * size_sz bytes: every word text is 2 + 2 * size_sz wide)."""
    wide = 2 + 2 * size_sz
    for n in range(k, 0, -1):
        if room is None or n * wide + (n - 1) + 1 + n * size_sz <= room:
            return n, n * size_sz
        if n * wide + (n - 1) <= room:
            return n, 0
    return 0, min(room or 0, k * size_sz)


_IN_USE: Tuple[str, Optional[str], Optional[int]] = ("in_use", None, None)


def problem_message(p: Problem, name: Optional[Namer] = None) -> str:
    """The message with each link it shows named after it: "links to 0x7fffffffe0a0 (thread
    1's stack ($sp+0x20)), outside any heap"."""
    text = p.message
    if name is None:
        return text
    for before, value in p.pointers:
        meaning = name(value)
        found = re.search(re.escape(f"{before}{value:#x}") + "(?![0-9a-f])", text)
        if meaning and found:
            text = f"{text[:found.end()]} ({meaning}){text[found.end():]}"
    return text


def problem_lines(problems: Sequence[Problem], style: Style,
                  name: Optional[Namer] = None) -> Iterator[str]:
    for p in problems:
        abort = f' (glibc would abort: "{p.glibc_abort}")' if p.glibc_abort else ""
        abort += "".join(f' ({path}: "{text}")' for path, text in p.other_paths)
        yield style("problem", f"problem at {p.address:#x}: {problem_message(p, name)}{abort}")


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
               sizes: Callable[[int], Optional[int]], tcache: Optional[int], owner: str = "",
               head: Optional[Callable[[BinChain], str]] = None, width: Optional[int] = None,
               limit: Optional[int] = None, name: Optional[Namer] = None) -> Iterator[str]:
    """The bins' chains, as many chunks a line as fit `width`; `owner` names the thread whose
    tcache this is (--all-threads); `head` says where a bin's head pointer is; `limit`: the
    chunks shown of each chain (then "... N more"; None: all); `name` names the links the
    problems show."""
    titles = {"tcache": "tcache" + (f" of {owner}" if owner else "") +
              (f" (tcache_perthread_struct at {tcache:#x})" if tcache else ""),
              "fast": "fastbins", "unsorted": "unsorted bin", "small": "small bins", "large": "large bins"}
    current = None
    a0, a1 = style.codes("address")
    for c in chains:
        if c.kind != current:
            current = c.kind
            yield from fit(style("heading", titles[c.kind]), width)
        size = f"size {c.size:#x}" if c.kind in ("tcache", "fast", "small") else f"sizes >= {c.size:#x}"
        if c.kind == "tcache" and c.index >= 64:
            size = f"sizes >= {c.size:#x}"
        title = style('name', bin_label(c.kind, c.index))
        where = f"  head {head(c)}" if head is not None else ""
        yield from fit(f"  {title}  {style('size', size)}  {c.count} chunk{'s' * (c.count != 1)}{where}", width)
        chunks = c.chunks if limit is None else c.chunks[:limit]
        mixed = c.kind in ("unsorted", "large")  # these bins mix sizes: each chunk's is shown
        known = (c.sizes[:len(chunks)] if len(c.sizes) == len(c.chunks) else [sizes(ch) for ch in chunks]) \
            if mixed else []
        if mixed and not a0 and None not in known:  # one format a chunk (a bin may hold a million: C speed)
            plain = texts = list(map("{:#x} ({:#x})".format, chunks, known))
        else:
            addresses = list(map(hex, chunks))
            after = [f" ({_hex_or_unknown(sz)})" for sz in known] if mixed else [""] * len(chunks)
            plain = list(map(str.__add__, addresses, after)) if mixed else addresses
            texts = [f"{a0}{a}{a1}{b}" for a, b in zip(addresses, after)] if a0 else plain
        if len(chunks) < len(c.chunks):
            rest = f"... {len(c.chunks) - len(chunks)} more"
            texts.append(rest)
            if plain is not texts:
                plain.append(rest)
        if width is None:  # one line: joined once (adding to a string a 100000 times is quadratic)
            if texts:
                yield "    -> " + " -> ".join(texts)
            continue
        shown = list(zip(texts, map(len, plain)))
        parts, used = ["    ->"], 6
        for i, (text, n) in enumerate(shown):
            more = 3 if i + 1 < len(shown) else 0  # " ->" after it
            # on this line it costs the " ->" before it, itself and the " ->" after it
            if used > 7 and used + 3 + 1 + n + more > width:
                parts.append(" ->")
                yield "".join(parts)
                parts, used = ["      "], 6
            elif used > 7:
                parts.append(" ->")
                used += 3
            parts.append(" " + text)
            used += 1 + n
        if shown:
            yield "".join(parts)
    if not chains:
        yield "no chunks in these bins"
    yield from fit_all(problem_lines(problems, style, name), width)


def bins_view_lines(view: ArenaBins, style: Style, sizes: Callable[[int], Optional[int]],
                    head: Optional[Callable[[BinChain], str]] = None, width: Optional[int] = None,
                    limit: Optional[int] = None, name: Optional[Namer] = None) -> Iterator[str]:
    if view.threads is not None:
        for tc in view.threads:
            where = f", arena {tc.thread.arena:#x}" if tc.thread.arena else ""
            yield from bins_lines(tc.chains, tc.problems, style, sizes, tc.address, thread_text(tc.thread) + where,
                                  None, width, limit, name)
        if not view.threads:
            yield "no thread has a tcache with chunks"
        if not view.chains and not view.problems:
            return
    owner = thread_text(view.owner) if view.owner and view.tcache else ""
    yield from bins_lines(view.chains, view.problems, style, sizes, view.tcache, owner, head, width, limit, name)


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


def _unnamed(value: int) -> str:
    return ""


def link_text(link: Link, name: Namer) -> str:
    """A list pointer: the stored word and, safe-linked, the pointer glibc reveals; then
    what it points at."""
    value = f"{link.stored:#x}"
    if link.revealed is not None:
        value = f"{link.stored:#x} stored, {link.revealed:#x} revealed"
    meaning = name(link.value) or ("end of list" if link.value == 0 and link.name != "key" else "")
    if link.name == "key" and not meaning:
        meaning = "tcache_key: marks the chunk as in a tcache"
    return f"{value}: {meaning}" if meaning else value


def neighbour_text(n: Neighbour) -> str:
    return f"{addr(n.address)} (size {n.size:#x}, {state_text(n.state, n.bin, n.bin_index)})"


def chunk_detail_lines(view: ChunkView, layout: GlibcLayout, style: Style, name: Namer = _unnamed,
                       width: Optional[int] = None, order: str = "little") -> Iterator[str]:
    """`heap chunk`'s text, within `width`; `name` says what a pointer points at."""
    return fit_all(_chunk_detail(view, layout, style, name, order), width)


def _chunk_detail(view: ChunkView, layout: GlibcLayout, style: Style, name: Namer, order: str) -> Iterator[str]:
    c, where, arena = view.chunk, view.where, view.where.arena
    S = layout.size_sz
    yield (f"{style('heading', 'chunk')} {style('address', f'{c.address:#x}')}  ({where.address:#x} understood as "
           f"{understood_text(where)})")
    for note in where.notes:
        yield f"  {style('problem', 'note')}          {note}"
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
    if view.data and c.state != "top":
        yield f"  first words   {preview(view.data, S, order)}"
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
    for link in view.links:
        label = f"tcache {link.name}" if c.bin == "tcache" else link.name
        yield f"  {label:<13} {link_text(link, name)}"
    if view.prev is not None:
        yield f"  previous      {neighbour_text(view.prev)}"
    elif where.prev is not None:
        yield f"  previous      {where.prev:#x}"
    if view.next is not None:
        yield f"  next          {neighbour_text(view.next)}"
    yield from problem_lines(where.problems, style, name)


def dump_lines(chunk: Chunk, data: bytes, links: Sequence[Link], style: Style, order: str = "little",
               width: Optional[int] = None) -> Iterator[str]:
    """`heap chunk --dump`: the chunk's bytes from its header, two words a line (64-bit) as
    x/2gx shows them, with their ASCII and the header and link fields named."""
    S = chunk.size_sz
    per = 16 // S * S
    names = {0: "prev_size", S: "size"}
    for link in links:
        names[link.address - chunk.address] = link.name
    yield style("heading", f"chunk {addr(chunk.address)}, {len(data):#x} of its {chunk.size:#x} bytes")
    ow = len(f"+{max(0, len(data) - 1):#x}")
    for off in range(0, len(data), per):
        row = data[off:off + per]
        words = " ".join(word_text(w, S) for w in words_of(row, S, order))
        fields = " ".join(names[o] for o in range(off, off + per, S) if o in names)
        line = f"{'+' + hex(off):<{ow}} {words} {ascii_text(row)}" + (f"  {fields}" if fields else "")
        if width is not None and len(line) > width:  # the ASCII goes first, then the names
            line = f"{'+' + hex(off):<{ow}} {words}" + (f"  {fields}" if fields else "")
            line = line if len(line) <= width else f"{'+' + hex(off):<{ow}} {words}"
        yield line


def check_doc(report: Report, mid: Optional[MidUpdate] = None,
              name: Optional[Namer] = None) -> Dict[str, object]:
    """Each problem says whether it may be glibc's update in progress ("maybe_in_progress");
    `name` names the links a message shows."""
    marked = report.in_progress is not None
    return {"arena": report.arena.address,
            "problems": [dict(problem_json(p, True, name), maybe_in_progress=marked) for p in report.problems],
            "in_progress": in_progress_json(mid)}


def check_lines(report: Report, style: Style, name: Optional[Namer] = None) -> Iterator[str]:
    arena = report.arena
    n = len(report.problems)
    what = f"{n} problem{'s' * (n != 1)}" if n else "no problems found"
    if not arena.heaps and not n:
        what = "no heap yet (the arena has not allocated anything): nothing to check"
    if n and report.in_progress:
        what += f", which may be glibc's update in progress ({report.in_progress}), not damage"
    yield (f"{style('heading', 'main arena' if arena.main else 'arena')} {style('address', f'{arena.address:#x}')}: "
           f"{what} ({report.chunks} chunks walked, {report.listed} chunks in bins checked)")
    marked = f" [may be glibc's update in progress: {report.in_progress}]" if report.in_progress else ""
    for line in problem_lines(report.problems, style, name):
        yield line + marked


def mmapped_lines(view: MmappedView, style: Style) -> Iterator[str]:
    yield style("heading", f"{'chunk':<{ADDR_WIDTH}} {'size':>10}  {'user data':<{ADDR_WIDTH}} {'mapping':<29} slack")
    a0, a1 = style.codes("address")
    for c in view.chunks:
        yield (f"{a0}{addr(c.address):<{ADDR_WIDTH}}{a1} {style('size', f'{c.size_field & ~SIZE_BITS:#10x}')}  "
               f"{addr(c.user_address):<{ADDR_WIDTH}} {addr(c.mapping_start)}-{addr(c.mapping_end)} {c.prev_size:#x}")
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


# -- heap where, heap layout -----------------------------------------------------------------

def _signed(n: int) -> str:
    return f"{n:+#x}"


def where_lines(place: Place, style: Style) -> Iterator[str]:
    """`heap where`: a headline saying what the address is, then the details, one a line."""
    a = style("address", addr(place.address))
    w = place.where
    if w is not None:
        st = "mmapped" if w.state == "mmapped" else state_text(w.state, w.bin, w.bin_index)
        what = {"chunk": "the chunk", "user_pointer": "the user pointer of chunk"}.get(w.how, "inside chunk")
        yield f"{a} is {what} {style('address', addr(w.chunk))} ({st})"
        yield (f"  offset    {_signed(w.offset)} from the chunk, {_signed(w.user_offset)} from the user pointer "
               f"{addr(w.user_address)}")
        yield f"  size      {w.size_field & ~SIZE_BITS:#x}"
        if w.arena is not None:
            yield f"  arena     {addr(w.arena.address)} ({'main' if w.arena.main else 'thread'} arena)"
    elif place.kind in ("arena", "tcache", "heap_info", "malloc_par"):
        yield f"{a} is {place.expression}"
        if place.kind == "tcache":
            t = place.owner
            whose = f"thread {t.num}'s (LWP {t.lwp})" if t else "the selected thread's"
            yield f"  tcache    {whose}, in chunk {addr(place.chunk or 0)}"
        if place.meaning:
            yield f"  meaning   {place.meaning}"
        yield f"  offset    {_signed(place.offset or 0)} from the start of the struct"
    elif place.kind == "heap_reserve":
        yield f"{a} is past the chunks of a heap of arena {addr(place.arena or 0)}"
        yield f"  meaning   {place.meaning}"
        yield f"  offset    {_signed(place.offset or 0)} from its heap_info"
    elif place.kind == "heap":
        yield f"{a} is in a heap of arena {addr(place.arena or 0)}, in no chunk"
        yield f"  meaning   {place.meaning}"
        yield f"  offset    {_signed(place.offset or 0)} from the heap's start"
    elif place.kind == "stack":
        t = place.owner
        yield f"{a} is in thread {place.thread}'s stack" + (f" (LWP {t.lwp})" if t else "")
        yield f"  offset    {_signed(place.offset or 0)} from its $sp"
    elif place.kind == "symbol":
        yield f"{a} is {place.symbol}"
    elif place.kind == "mapping":
        yield f"{a} is in a mapping, {place.offset or 0:#x} bytes from its start"
    else:
        yield f"{a} is in no mapping of the process: nothing is there"
    if place.symbol and place.kind != "symbol":
        yield f"  symbol    {place.symbol}"
    if place.span is not None:
        m = place.span
        yield f"  mapping   {addr(m.start)}-{addr(m.end)} {m.path or '(anonymous)'}"


def layout_lines(regions: Sequence[Region], loose: Sequence[Item], style: Style) -> Iterator[str]:
    """`heap layout`: each mapping (range, size, protection, name), malloc's things and the
    threads' stacks and TLS under the one they start in."""
    span = 2 * ADDR_WIDTH + 1

    def item(i: Item) -> str:
        if i.end == i.start:  # a point: $sp, a thread pointer, a top chunk
            return f"  {style('address', addr(i.start))} {i.what}"
        where = f"{addr(i.start)}-{addr(i.end)}"
        return f"  {style('address', where)}{' ' * (span - len(where))} {i.what}"

    for r in regions:
        m = r.mapping
        where = f"{addr(m.start)}-{addr(m.end)}"
        yield (f"{style('address', where)}{' ' * (span - len(where))} "
               f"{style('size', f'{human(m.end - m.start):>9}')} {style('dim', f'{m.perms:<4}')} "
               f"{style('heading', r.name)}").rstrip()
        for i in r.items:
            yield item(i)
    if loose:
        yield "in no mapping gdb lists:"
        for i in loose:
            yield item(i)


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
    if r.address == 0:
        yield "free(NULL) returns at once: nothing changes"
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
