"""Text and JSON of `heap snapshots` and `heap diff` (gdb-free, like render.py)."""

from __future__ import annotations

from typing import Any, Dict, Iterator, Sequence

from .model import state_text
from .render import CHUNK_KEYS, chunk_fields, flags_text, human
from .snapshot import ArenaDiff, MmappedDiff, Row, Snapshot, size_of
from .style import Style


def snapshots_lines(snaps: Sequence[Snapshot], style: Style) -> Iterator[str]:
    if not snaps:
        yield "no snapshots: take one with heap snapshot [NAME]"
        return
    yield style("heading", f"{'name':<12} {'when':<24} {'arenas':>6} {'chunks':>10} {'record (bytes)':>15}")
    for s in snaps:
        yield f"{s.name:<12} {s.when:<24} {len(s.arenas):>6} {s.chunk_count:>10} {s.nbytes:>15}"


def snapshots_doc(snaps: Sequence[Snapshot]) -> Dict[str, Any]:
    return {"snapshots": [{"name": s.name, "when": s.when, "arenas": len(s.arenas), "chunks": s.chunk_count,
                           "bytes": s.nbytes} for s in snaps]}


def chunk_obj(row: Row, size_sz: int) -> Dict[str, object]:
    """A chunk object of `heap chunks --json`."""
    return dict(zip(CHUNK_KEYS, chunk_fields(*row, size_sz)))


def diff_doc(d: ArenaDiff, frm: str, to: str, size_sz: int) -> Dict[str, Any]:
    b, a = d.before, d.after
    return {"from": frm, "to": to, "arena": d.address,
            "appeared": [chunk_obj(r, size_sz) for r in d.appeared],
            "disappeared": [chunk_obj(r, size_sz) for r in d.disappeared],
            "changed": [{"address": old[0], "before": chunk_obj(old, size_sz), "after": chunk_obj(new, size_sz)}
                        for old, new in d.changed],
            "top": {"before": None if b is None else b.top, "after": None if a is None else a.top,
                    "size_before": None if b is None else b.top_size, "size_after": None if a is None else a.top_size},
            "system_mem": {"before": None if b is None else b.system_mem,
                           "after": None if a is None else a.system_mem}}


def _chunk_text(row: Row) -> str:
    return f"{row[0]:#x}  size {size_of(row[1]):#x}  {flags_text(row[1])}  {state_text(*row[2:])}"


def _signed(n: int) -> str:
    return f"+{n:#x}" if n >= 0 else f"-{-n:#x}"


def _change_text(old: Row, new: Row) -> str:
    parts = []
    if size_of(old[1]) != size_of(new[1]):
        parts.append(f"size {size_of(old[1]):#x} -> {size_of(new[1]):#x}")
    if flags_text(old[1]) != flags_text(new[1]):
        parts.append(f"flags {flags_text(old[1])} -> {flags_text(new[1])}")
    if old[2:] != new[2:]:
        parts.append(f"{state_text(*old[2:])} -> {state_text(*new[2:])}")
    return f"{old[0]:#x}  " + "; ".join(parts)


def diff_lines(d: ArenaDiff, frm: str, to: str, style: Style) -> Iterator[str]:
    b, a = d.before, d.after
    main = any(r.main for r in (a, b) if r is not None)
    title = f"{'main arena' if main else 'arena'} {d.address:#x}"
    if b is None:
        title += f": appeared after {frm}"
    elif a is None:
        title += f": gone in {to}"
    yield style("heading", f"{frm} -> {to}, {title}")
    if d.empty:
        yield "  no change"
        return
    for row in d.appeared:
        yield f"  appeared     {_chunk_text(row)}"
    for row in d.disappeared:
        yield f"  disappeared  {_chunk_text(row)}"
    for old, new in d.changed:
        yield f"  changed      {_change_text(old, new)}"
    if a is not None and b is not None:
        yield f"  top          {_top_text(b.top, b.top_size, a.top, a.top_size)}"
        if a.system_mem == b.system_mem:
            yield f"  system mem   {a.system_mem:#x} ({human(a.system_mem)}), unchanged"
        else:
            yield (f"  system mem   {b.system_mem:#x} -> {a.system_mem:#x} ({_signed(a.system_mem - b.system_mem)}, "
                   f"{human(b.system_mem)} -> {human(a.system_mem)})")
    bins = d.bins()
    if bins:
        yield "  bins         " + ", ".join(
            f"{label} " + " ".join(x for x in (f"+{g}" if g else "", f"-{lo}" if lo else "") if x)
            for label, (g, lo) in bins.items())


def _top_text(before: int, size_before: int, after: int, size_after: int) -> str:
    if (before, size_before) == (after, size_after):
        return f"{after:#x}, size {size_after:#x}, unchanged"
    if not size_before:  # the heap was not initialised: no top chunk yet
        return f"none -> {after:#x} (top appeared), size {size_after:#x}"
    moved = "not moved" if before == after else f"moved {_signed(after - before)}"
    return (f"{before:#x} -> {after:#x} ({moved}), size {size_before:#x} -> {size_after:#x} "
            f"({_signed(size_after - size_before)})")


def mmapped_lines(d: MmappedDiff) -> Iterator[str]:
    for address, sizef in d.appeared:
        yield f"mmapped chunk appeared  {address:#x}  size {size_of(sizef):#x} ({human(size_of(sizef))})"
    for address, sizef in d.disappeared:
        yield f"mmapped chunk went      {address:#x}  size {size_of(sizef):#x} ({human(size_of(sizef))})"


def no_snapshot_line() -> str:
    return "no snapshot yet: nothing to compare (the heap now against itself); take one with heap snapshot"
