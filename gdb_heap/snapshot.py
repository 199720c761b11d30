"""Snapshots of the heap and the difference between two: what `heap snapshot` keeps and what
`heap diff` shows.

gdb-free.  A snapshot copies no memory: per arena it keeps four compact arrays side by side,
one entry per chunk in address order (array('Q') of chunk addresses, array('Q') of raw size
fields, array('B') of state codes, array('H') of bin indexes): 19 bytes a chunk, never a
Python object per chunk.  The diff is a merge of two such sorted address arrays that skips
equal runs at C speed (slice comparisons, galloping), so two snapshots of a million-chunk heap
that differ in a few chunks compare in a few milliseconds.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .errors import MemoryReadError
from .heap import Heap
from .free_index import FreeIndex
from .model import BIN_KINDS, SIZE_BITS, Batch, Problem, bin_label, chunksize, heap_initialised

# State codes: 0 in use, 1 top, then one per bin kind (2 tcache .. 6 large).
STATES: Tuple[Tuple[str, Optional[str]], ...] = (("in_use", None), ("top", None)) + tuple(
    ("free", kind) for kind in BIN_KINDS)
CODE = {kind: i for i, (_, kind) in enumerate(STATES) if kind is not None}
IN_USE, TOP = 0, 1
NO_INDEX = 0xFFFF  # bin index of a chunk no bin holds
GALLOP = 1 << 12  # the longest run of chunks compared at once

# One chunk as `heap chunks` shows it: address, size field, state, bin, bin index.
Row = Tuple[int, int, str, Optional[str], Optional[int]]


@dataclass
class ArenaRecord:
    """One arena as it was: its top, its system memory and every chunk of its heaps."""

    address: int
    main: bool
    top: int
    top_size: int
    system_mem: int
    addresses: array[int] = field(default_factory=lambda: array("Q"))
    sizes: array[int] = field(default_factory=lambda: array("Q"))  # raw size fields (flags in)
    codes: array[int] = field(default_factory=lambda: array("B"))  # STATES index
    indexes: array[int] = field(default_factory=lambda: array("H"))  # bin index, NO_INDEX if none

    def __len__(self) -> int:
        return len(self.addresses)

    @property
    def nbytes(self) -> int:
        return sum(a.itemsize * len(a) for a in (self.addresses, self.sizes, self.codes, self.indexes))

    def row(self, i: int) -> Row:
        state, kind = STATES[self.codes[i]]
        index = self.indexes[i]
        return self.addresses[i], self.sizes[i], state, kind, None if index == NO_INDEX else index


@dataclass
class Snapshot:
    name: str
    when: str  # "stop N" (gdb's stops since gdb_heap loaded) and the time of day
    size_sz: int
    arenas: List[ArenaRecord]  # in the order of glibc's arena ring, main_arena first
    selected: int = 0  # the selected thread's arena when it was taken (heap diff's default)
    mmapped_addresses: array[int] = field(default_factory=lambda: array("Q"))
    mmapped_sizes: array[int] = field(default_factory=lambda: array("Q"))

    @property
    def chunk_count(self) -> int:
        return sum(len(a) for a in self.arenas) + len(self.mmapped_addresses)

    @property
    def nbytes(self) -> int:
        """The size of the record's arrays: what a snapshot costs, whatever the heap's size."""
        return sum(a.nbytes for a in self.arenas) + 16 * len(self.mmapped_addresses)

    def arena(self, address: int) -> Optional[ArenaRecord]:
        return next((a for a in self.arenas if a.address == address), None)


def record_arena(address: int, main: bool, top: int, top_size: int, system_mem: int,
                 batches: Iterable[Batch], free: FreeIndex) -> ArenaRecord:
    """An arena's record from its walk's batches and the chunks its bins (and every thread's
    tcache) hold; top is "top" even when a bin lists it (as model.classify says).  Each batch's
    free chunks are found in it (FreeIndex.held_in), not in the whole record: a binary search
    of ten million addresses per free chunk cost a second at 10^7 chunks."""
    rec = ArenaRecord(address, main, top, top_size, system_mem)
    code_of = {place: (CODE[place[0]], min(place[1], NO_INDEX - 1)) for place in set(free.values())
               if place[0] in CODE}
    for addresses, sizes in batches:
        rec.addresses.extend(addresses)
        rec.sizes.extend(sizes)
        codes, indexes = bytearray(len(addresses)), array("H", [NO_INDEX]) * len(addresses)
        at, places = free.held_in(addresses)
        for i, place in zip(at, places):
            got = code_of.get(place)
            if got is not None:
                codes[i], indexes[i] = got
        rec.codes.frombytes(codes)
        rec.indexes.extend(indexes)
    i = bisect_left(rec.addresses, top)
    if i < len(rec.addresses) and rec.addresses[i] == top:
        rec.codes[i], rec.indexes[i] = TOP, NO_INDEX
    return rec


def take(heap: Heap, name: str, when: str) -> Snapshot:
    """The heap as it is: every arena's chunks classified as `heap chunks` does, and the
    mmapped chunks `heap mmapped` finds."""
    snap = Snapshot(name, when, heap.layout.size_sz, [], heap.selected_arena().address)
    for arena in heap.arenas:
        state = arena.state
        if not heap_initialised(heap.layout, state):
            # top is glibc's initial_top (or 0): not a chunk, so no size
            snap.arenas.append(ArenaRecord(arena.address, arena.main, state.top, 0, state.system_mem))
            continue
        try:
            top_size = chunksize(heap.reader, state.top)
        except MemoryReadError:
            top_size = 0  # a damaged top pointer: heap check names it
        problems: List[Problem] = []
        free, walk = heap.walk_and_index(arena, problems)  # the bins followed by a helper as gdb walks
        snap.arenas.append(record_arena(arena.address, arena.main, state.top, top_size, state.system_mem, walk, free))
    for chunk in heap.mmapped().chunks:
        snap.mmapped_addresses.append(chunk.address)
        snap.mmapped_sizes.append(chunk.size_field)
    return snap


# -- the diff ----------------------------------------------------------------------------------

@dataclass
class ArenaDiff:
    """One arena's change from `before` to `after` (None: the arena is not in that record)."""

    address: int
    before: Optional[ArenaRecord]
    after: Optional[ArenaRecord]
    appeared: List[Row] = field(default_factory=list)
    disappeared: List[Row] = field(default_factory=list)
    changed: List[Tuple[Row, Row]] = field(default_factory=list)  # same address, other size/flags/state/bin

    @property
    def empty(self) -> bool:
        return not (self.appeared or self.disappeared or self.changed) and self.before is not None \
            and self.after is not None and (self.before.top, self.before.top_size, self.before.system_mem) == \
            (self.after.top, self.after.top_size, self.after.system_mem)

    def bins(self) -> Dict[str, Tuple[int, int]]:
        """Bin label -> (chunks it gained, chunks it lost), for the bins whose content changed."""
        gained: Counter[str] = Counter()
        lost: Counter[str] = Counter()
        for row in self.disappeared:
            lost.update(_label(row))
        for row in self.appeared:
            gained.update(_label(row))
        for old, new in self.changed:
            a, b = _label(old), _label(new)
            if a != b:
                lost.update(a)
                gained.update(b)
        return {k: (gained[k], lost[k]) for k in sorted(set(gained) | set(lost), key=_bin_order)}


def _label(row: Row) -> List[str]:
    return [bin_label(row[3], row[4])] if row[3] is not None and row[4] is not None else []


def _bin_order(label: str) -> Tuple[int, int]:
    kind, _, index = label.partition("[")
    return BIN_KINDS.index(kind), int(index.rstrip("]") or 0)


def _same(a: ArenaRecord, i: int, b: ArenaRecord, j: int, k: int) -> bool:
    """Whether the k chunks from a[i] and b[j] are the same (C-speed slice comparisons)."""
    return (a.addresses[i:i + k] == b.addresses[j:j + k] and a.sizes[i:i + k] == b.sizes[j:j + k]
            and a.codes[i:i + k] == b.codes[j:j + k] and a.indexes[i:i + k] == b.indexes[j:j + k])


def diff_arena(address: int, before: Optional[ArenaRecord], after: Optional[ArenaRecord]) -> ArenaDiff:
    """The chunks that appeared, disappeared or changed, by one merge over the two sorted
    address arrays.  The top chunk is in none of the lists (the record's top says where it
    moved): a chunk malloc cut from top appears, a chunk free merged into top disappears.
    Equal runs are skipped a slice at a time, the slice doubling while the records agree (up
    to GALLOP chunks) and halving down to one chunk where they differ."""
    out = ArenaDiff(address, before, after)
    a = before if before is not None else ArenaRecord(address, False, 0, 0, 0)
    b = after if after is not None else ArenaRecord(address, False, 0, 0, 0)
    na, nb = len(a), len(b)
    aa, ba, asz, bsz, ac, bc, ax, bx = (a.addresses, b.addresses, a.sizes, b.sizes, a.codes, b.codes, a.indexes,
                                        b.indexes)
    i = j = 0
    k = 1
    while i < na and j < nb:
        if k > 1:  # a run: compared a slice at a time
            if i + k <= na and j + k <= nb and _same(a, i, b, j, k):
                i, j = i + k, j + k
                k = min(2 * k, GALLOP)
            else:
                k //= 2
            continue
        x, y = aa[i], ba[j]  # one chunk: compared field by field
        if x < y:
            out.disappeared += _not_top(a, i)
            i += 1
        elif y < x:
            out.appeared += _not_top(b, j)
            j += 1
        elif asz[i] == bsz[j] and ac[i] == bc[j] and ax[i] == bx[j]:
            i, j = i + 1, j + 1
            k = 2  # the same: perhaps the start of a run
        else:
            if ac[i] == TOP or bc[j] == TOP:  # top is none of the lists: "top" says where it went
                out.disappeared += _not_top(a, i)
                out.appeared += _not_top(b, j)
            else:
                out.changed.append((a.row(i), b.row(j)))
            i, j = i + 1, j + 1
    for x in range(i, na):
        out.disappeared += _not_top(a, x)
    for y in range(j, nb):
        out.appeared += _not_top(b, y)
    return out


def _not_top(rec: ArenaRecord, i: int) -> List[Row]:
    return [] if rec.codes[i] == TOP else [rec.row(i)]


def diff(before: Snapshot, after: Snapshot, arenas: Optional[Sequence[int]] = None) -> List[ArenaDiff]:
    """The diff of each arena in `arenas` (default: every arena in either record, `after`'s
    order first, then the arenas that went)."""
    if arenas is None:
        seen = [a.address for a in after.arenas]
        arenas = seen + [a.address for a in before.arenas if a.address not in seen]
    return [diff_arena(x, before.arena(x), after.arena(x)) for x in arenas]


@dataclass
class MmappedDiff:
    appeared: List[Tuple[int, int]]  # (chunk address, size field)
    disappeared: List[Tuple[int, int]]


def diff_mmapped(before: Snapshot, after: Snapshot) -> MmappedDiff:
    old = dict(zip(before.mmapped_addresses, before.mmapped_sizes))
    new = dict(zip(after.mmapped_addresses, after.mmapped_sizes))
    return MmappedDiff(sorted((a, s) for a, s in new.items() if old.get(a) != s),
                       sorted((a, s) for a, s in old.items() if new.get(a) != s))


def size_of(size_field: int) -> int:
    return size_field & ~SIZE_BITS
