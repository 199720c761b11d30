"""The commands about change: heap snapshot (record the heap), heap snapshots (list the
records), heap diff (compare two, or one with now).

The records live in this gdb session, per inferior, tagged with the process they describe:
they are dropped when that process exits or a new run replaces it (and that is said).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import gdb  # type: ignore[import-not-found,unused-ignore]

from .. import render_snapshot as rs
from ..args import Args
from ..errors import HeapError
from ..snapshot import Snapshot, diff, diff_mmapped, take
from .base import HeapCommand, Out, evaluate_address, implements, one_or_all, open_heap, style

NOW = "now"


@dataclass
class Store:
    pid: int
    snaps: Dict[str, Snapshot] = field(default_factory=dict)  # in the order taken
    taken: int = 0  # snapshots taken so far: the next default name is taken + 1


_stores: Dict[int, Store] = {}
_stops = [0]  # gdb's stops since gdb_heap loaded: the "when" of a snapshot
_connected: List[bool] = []  # the events are connected (the package is imported once a session)


def _on_stop(event: object) -> None:
    _stops[0] += 1


def _on_exit(event: object) -> None:
    inferior = getattr(event, "inferior", None) or gdb.selected_inferior()
    store = _stores.pop(inferior.num, None)
    if store is not None and store.snaps:
        gdb.write(f"heap: {len(store.snaps)} snapshot(s) dropped ({', '.join(store.snaps)}): the process "
                  f"{store.pid} they describe has exited\n")


def connect_events() -> None:
    """Once per gdb session (init.py may be sourced again)."""
    if not _connected:
        gdb.events.stop.connect(_on_stop)
        gdb.events.exited.connect(_on_exit)
        _connected.append(True)


def store() -> Store:
    """The selected inferior's snapshots; those of an earlier process are dropped (saying so)."""
    inferior = gdb.selected_inferior()
    pid = inferior.pid
    s = _stores.get(inferior.num)
    if s is not None and s.pid != pid:
        if s.snaps:
            gdb.write(f"heap: {len(s.snaps)} snapshot(s) dropped ({', '.join(s.snaps)}): they describe process "
                      f"{s.pid}, not the one running now ({pid})\n")
        s = None
    if s is None:
        s = _stores[inferior.num] = Store(pid)
    return s


@implements("heap snapshot")
class HeapSnapshot(HeapCommand):
    """Keeps, for every arena, each chunk's address, size field, state
and bin, the arena's top and system memory, and the mmapped chunks: no
copy of the heap's memory (19 bytes a chunk).  NAME defaults to 1, 2, ...;
a name given again replaces that snapshot.  Snapshots belong to this gdb
session and to the running process: they are dropped, with a message,
when it exits or is run again.  Compare them with heap diff; list them
with heap snapshots."""

    def run(self, args: Args, out: Out) -> None:
        if len(args.rest) > 1:
            raise HeapError(f"unexpected argument {args.rest[1]!r}; give one NAME (see help {self.name})")
        s = store()
        name = args.rest[0] if args.rest else str(s.taken + 1)
        if name == NOW:
            raise HeapError("'now' names the heap as it is; give the snapshot another name")
        heap = open_heap(args)
        snap = take(heap, name, f"stop {_stops[0]}, {time.strftime('%H:%M:%S')}")
        s.snaps.pop(name, None)
        s.snaps[name] = snap
        s.taken += 1
        out.line(f"snapshot {name}: {len(snap.arenas)} arena(s), {snap.chunk_count} chunks, "
                 f"{snap.nbytes} bytes recorded")


@implements("heap snapshots")
class HeapSnapshots(HeapCommand):
    """One line per snapshot, oldest first: its name, when it was taken
(gdb's stop count since gdb_heap was loaded, and the time), its arenas,
its chunks (mmapped ones included) and the size of the record in bytes.

  --json   {"snapshots": [{"name", "when", "arenas", "chunks", "bytes"}]}"""

    def run(self, args: Args, out: Out) -> None:
        self.no_extra(args)
        open_heap(args)  # only for what every command says first: no process, an update in progress
        snaps = list(store().snaps.values())
        if args.flag("--json"):
            out.json(rs.snapshots_doc(snaps))
            return
        out.lines(rs.snapshots_lines(snaps, style()))


@implements("heap diff")
class HeapDiff(HeapCommand):
    """Compares snapshot A with snapshot B, or with the heap now when B is
left out (A defaults to the last snapshot).  Shows the chunks that
appeared, disappeared or changed (size, flags, state or bin) in address
order, how far top moved and how its size changed, the arena's system
memory, the bins that gained or lost chunks, arenas that appeared or went,
and (without --arena) the mmapped chunks that appeared or went.
Top is in none of the chunk lists: a chunk malloc cut from top appears, a
chunk free merged into top disappears.  A chunk freed into a bin changes
(in use -> free BIN); so does the chunk after one freed into a small,
large or unsorted bin: free clears its P (PREV_INUSE) flag.
With no snapshot yet there is nothing to compare: it says so, and --json
gives the heap now against itself (every list empty, from and to "now").

  --json         {"from", "to", "arena", "appeared": [chunk],
                 "disappeared": [chunk], "changed": [{"address",
                 "before": chunk, "after": chunk}], "top": {"before",
                 "after", "size_before", "size_after"}, "system_mem":
                 {"before", "after"}}; chunk as in heap chunks --json;
                 null where a side lacks the arena
  --arena ADDR   the arena at ADDR (default: the selected thread's
                 arena when B was taken)
  --all-arenas   every arena of either side: {"arenas": [...]}"""

    def run(self, args: Args, out: Out) -> None:
        if len(args.rest) > 2:
            raise HeapError(f"unexpected argument {args.rest[2]!r}; give at most two snapshot names "
                            f"(see help {self.name})")
        s = store()
        names = list(args.rest)
        if not names:
            names = [list(s.snaps)[-1] if s.snaps else NOW]
        if len(names) == 1:
            names.append(NOW)
        if names == [NOW, NOW] and not args.flag("--json"):
            open_heap(args)  # the usual errors (no process, no heap) first
            out.line(rs.no_snapshot_line())
            return
        for name in names:
            if name != NOW and name not in s.snaps:
                known = ", ".join(s.snaps) or "none yet"
                raise HeapError(f"no snapshot named {name!r} (snapshots: {known}); see heap snapshots")
        # The heap is read only to compare with now: two snapshots need nothing from the process.
        now = take(open_heap(args), NOW, NOW) if NOW in names else None
        before, after = (now if n == NOW else s.snaps[n] for n in names)
        assert before is not None and after is not None
        arenas: Optional[List[int]] = None
        if not args.flag("--all-arenas"):
            given = args.value("--arena")
            address = evaluate_address(given) if given is not None else after.selected
            if before.arena(address) is None and after.arena(address) is None:
                raise HeapError(f"no arena at {address:#x} in {names[0]} or {names[1]}; heap arenas lists them")
            arenas = [address]
        diffs = diff(before, after, arenas)
        S = after.size_sz
        if args.flag("--json"):
            out.json(one_or_all(args, [rs.diff_doc(d, names[0], names[1], S) for d in diffs]))
            return
        st = style()
        for d in diffs:
            out.lines(rs.diff_lines(d, names[0], names[1], st))
        if args.value("--arena") is None:
            out.lines(rs.mmapped_lines(diff_mmapped(before, after)))
