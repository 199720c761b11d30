"""Pretty-printers for glibc's malloc structs, where libc's debug info describes them:
struct malloc_chunk (the size's flag bits named), struct malloc_state (only the bins that hold
chunks), tcache_perthread_struct (only the bins that hold chunks), tcache_entry (next revealed
from safe-linking), heap_info and struct malloc_par.

Registered the gdb.printing way under the name "gdb_heap": `info pretty-printer` lists it,
`disable pretty-printer global gdb_heap` turns it off, and `print/r` shows a struct raw.
They only read the value gdb already holds (plus the glibc version, for safe-linking).
"""

from __future__ import annotations

from typing import Any, Iterator, List, Optional, Tuple, Union, cast

import gdb  # type: ignore[import-not-found,unused-ignore]
import gdb.printing  # type: ignore[import-not-found,unused-ignore]

from .layouts import NBINS, features_for
from .locate import libc_version

NAME = "gdb_heap"
FLAG_NAMES = ((0x1, "PREV_INUSE"), (0x2, "IS_MMAPPED"), (0x4, "NON_MAIN_ARENA"))
ARENA_FLAGS = ((0x2, "NONCONTIGUOUS_BIT"), (0x4, "ARENA_CORRUPTION_BIT"))
Child = Tuple[str, Union[gdb.Value, str]]


def size_text(size_field: int) -> str:
    """0x291 -> "0x291 (0x290 | PREV_INUSE)": the size, then each flag bit set, by name."""
    names = [name for bit, name in FLAG_NAMES if size_field & bit]
    return f"{size_field:#x} ({' | '.join([hex(size_field & ~0x7)] + names)})"


def flags_text(flags: int) -> str:
    names = [name for bit, name in ARENA_FLAGS if flags & bit]
    return f"{flags:#x}" + (f" ({' | '.join(names)})" if names else "")


def _int(value: gdb.Value) -> int:
    return int(value.cast(gdb.lookup_type("unsigned long"))) if value.type.code == gdb.TYPE_CODE_PTR else int(value)


def _offset(value: gdb.Value, name: str) -> int:
    return (value.type.strip_typedefs()[name].bitpos or 0) // 8


def _fields(value: gdb.Value) -> List[str]:
    return [f.name for f in value.type.strip_typedefs().fields() if f.name]


def safe_linking() -> Optional[bool]:
    """Whether this glibc safe-links its lists (2.32+); None when its version cannot be read."""
    try:
        libc = gdb.solib_name(int(gdb.parse_and_eval("(unsigned long)&main_arena")))
    except gdb.error:
        return None
    version = libc_version(libc)
    return features_for(version).safe_linking if version else None


class Printer:
    def __init__(self, value: gdb.Value) -> None:
        self.value = value

    def to_string(self) -> Optional[str]:
        return None

    def children(self) -> Iterator[Child]:
        for name in _fields(self.value):
            yield name, self.value[name]


class ChunkPrinter(Printer):
    """struct malloc_chunk: mchunk_size with its flags decoded; fd/bk as gdb names them."""

    def children(self) -> Iterator[Child]:
        for name in _fields(self.value):
            if name == "mchunk_size":
                yield name, size_text(_int(self.value[name]))
            else:
                yield name, self.value[name]


class StatePrinter(Printer):
    """struct malloc_state: flags by name; of fastbinsY and bins, only the non-empty ones."""

    def children(self) -> Iterator[Child]:
        v = self.value
        address = _int(v.address) if v.address is not None else None
        bins = v["bins"]
        S = bins[0].type.sizeof
        bins_start = address + _offset(v, "bins") if address is not None else None
        for name in _fields(v):
            if name == "flags":
                yield name, flags_text(int(v[name]))
            elif name == "fastbinsY":
                lo, hi = v[name].type.strip_typedefs().range()
                for i in range(lo, hi + 1):
                    if _int(v[name][i]):
                        yield f"fastbinsY[{i}]", v[name][i]
            elif name == "bins":
                for i in range(1, NBINS - 1):  # bin_at(m, i): fd at bins[2(i-1)], bk after it
                    fd, bk = v["bins"][2 * (i - 1)], v["bins"][2 * (i - 1) + 1]
                    header = bins_start + 2 * (i - 1) * S - 2 * S if bins_start is not None else None
                    if _int(fd) not in (0, header):
                        yield f"bins[{i}].fd", fd
                        yield f"bins[{i}].bk", bk
            else:
                yield name, v[name]


class TcachePrinter(Printer):
    """tcache_perthread_struct: counts (num_slots from 2.42) and entries of the bins in use."""

    def children(self) -> Iterator[Child]:
        v = self.value
        names = _fields(v)
        counts = next(n for n in names if n in ("counts", "num_slots"))
        lo, hi = v["entries"].type.strip_typedefs().range()
        for i in range(lo, hi + 1):
            if _int(v["entries"][i]) or (counts == "counts" and int(v[counts][i])):
                yield f"{counts}[{i}]", v[counts][i]
                yield f"entries[{i}]", v["entries"][i]
        for name in names:
            if name not in (counts, "entries"):
                yield name, v[name]


class EntryPrinter(Printer):
    """tcache_entry: next as glibc reads it (REVEAL_PTR from 2.32), then the stored word."""

    def children(self) -> Iterator[Child]:
        v = self.value
        stored = _int(v["next"])
        linked = safe_linking()
        if linked and v.address is not None:
            field = _int(v.address) + _offset(v, "next")
            revealed = (field >> 12) ^ stored if stored else 0
            yield "next", gdb.Value(revealed).cast(v["next"].type)
            yield "next (stored)", f"{stored:#x}"
        else:
            yield "next", v["next"]
            if linked is None:
                yield "next (note)", "the glibc version is unknown: shown as stored"
        for name in _fields(v):
            if name != "next":
                yield name, v[name]


class HeapInfoPrinter(Printer):
    def to_string(self) -> Optional[str]:
        return f"heap of arena {_int(self.value['ar_ptr']):#x}, {int(self.value['size']):#x} bytes in use"


class ParPrinter(Printer):
    def to_string(self) -> Optional[str]:
        v = self.value
        return (f"{int(v['n_mmaps'])} mmapped chunks ({int(v['mmapped_mem']):#x} bytes), mmap_threshold "
                f"{int(v['mmap_threshold']):#x}, sbrk_base {_int(v['sbrk_base']):#x}")


def build() -> gdb.printing.RegexpCollectionPrettyPrinter:
    pp = gdb.printing.RegexpCollectionPrettyPrinter(NAME)
    # The regexps match the struct's tag (what gdb.printing looks up for a typedef too).
    for name, regexp, cls in (("malloc_chunk", "^malloc_chunk$", ChunkPrinter),
                              ("malloc_state", "^malloc_state$", StatePrinter),
                              ("tcache_perthread_struct", "^tcache_perthread_struct$", TcachePrinter),
                              ("tcache_entry", "^tcache_entry$", EntryPrinter),
                              ("heap_info", "^_heap_info$", HeapInfoPrinter),
                              ("malloc_par", "^malloc_par$", ParPrinter)):
        pp.add_printer(name, regexp, cast(Any, cls))  # a class is the factory gdb.printing calls
    return pp


def register() -> None:
    gdb.printing.register_pretty_printer(None, build(), replace=True)
