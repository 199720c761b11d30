"""Snapshots of the heap and the difference between two: what `heap snapshot` keeps and what
`heap diff` shows.

gdb-free.  A snapshot copies no memory: per arena it keeps three compact arrays side by side,
one entry per chunk in address order (the raw size fields, 4 bytes each where they fit; a state
code, a byte; the bin index, a byte where it fits), and no chunk addresses: each chunk lies at
its predecessor's end but where the record notes a gap (between a thread arena's heaps), and
every 256th chunk's address is kept so that any one is a few sums away.  About 6 bytes a
chunk, never a Python object per chunk.  The diff is a merge of two such records that skips
equal runs at C speed (slice comparisons, galloping), so two snapshots of a million-chunk heap
that differ in a few chunks compare in a few milliseconds.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass, field
from itertools import repeat
from operator import and_
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from .errors import MemoryReadError
from .heap import Heap
from .free_index import FreeIndex
from .model import BIN_KINDS, SIZE_BITS, Batch, Problem, bin_label, chunksize, compact, heap_initialised

# State codes: 0 in use, 1 top, then one per bin kind (2 tcache .. 6 large).
STATES: Tuple[Tuple[str, Optional[str]], ...] = (("in_use", None), ("top", None)) + tuple(
    ("free", kind) for kind in BIN_KINDS)
CODE = {kind: i for i, (_, kind) in enumerate(STATES) if kind is not None}
IN_USE, TOP = 0, 1
MAX_INDEX = 0xFFFE  # a bin index past it (never glibc's) is recorded as it
GALLOP = 1 << 12  # the longest run of chunks compared at once
STRIDE = 256  # every STRIDE-th chunk's address is kept: any other is at most STRIDE sizes on

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
    sizes: array[int] = field(default_factory=lambda: array("I"))  # raw size fields (flags in); "Q" once one needs it
    codes: bytearray = field(default_factory=bytearray)  # STATES index
    indexes: array[int] = field(default_factory=lambda: array("B"))  # bin index + 1, 0 for none; "H" once one needs it
    marks: array[int] = field(default_factory=lambda: array("Q"))  # the address of every STRIDE-th chunk
    # the chunks not at their predecessor's end (the first among them)
    gaps: array[int] = field(default_factory=lambda: array("Q"))
    gap_addresses: array[int] = field(default_factory=lambda: array("Q"))  # their addresses
    end: int = 0  # the last chunk's end: where a chunk that follows it would be

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def nbytes(self) -> int:
        return sum(a.itemsize * len(a) for a in (self.sizes, self.indexes, self.marks, self.gaps, self.gap_addresses)) \
            + len(self.codes)

    def add(self, addresses: Sequence[int], sizes: Sequence[int], codes: Optional[bytearray] = None,
            listed: Sequence[int] = (), indexes: Sequence[int] = ()) -> None:
        """A walk batch (model.Batch: each chunk at its predecessor's end), in address order past
        the chunks recorded; `codes` its chunks' states (default: all in use), `indexes` the bin
        indexes of the chunks at positions `listed` in it."""
        if not addresses:
            return
        at = len(self)
        if at == 0 or addresses[0] != self.end:
            self.gaps.append(at)
            self.gap_addresses.append(addresses[0])
        self.marks.extend(addresses[k] for k in range(-at % STRIDE, len(addresses), STRIDE))
        self.end = addresses[-1] + (sizes[-1] & ~SIZE_BITS)
        packed = compact(sizes)
        if packed.typecode != self.sizes.typecode and self.sizes.typecode == "I":
            self.sizes = array("Q", self.sizes)
        self.sizes.extend(packed if packed.typecode == self.sizes.typecode else array("Q", packed))
        self.codes += codes if codes is not None else bytes(len(addresses))
        column = array(self.indexes.typecode, bytes(len(addresses) * self.indexes.itemsize))
        for k, index in zip(listed, indexes):
            index = min(index, MAX_INDEX) + 1
            if index > 0xFF and column.typecode == "B":
                self.indexes, column = array("H", self.indexes), array("H", column)
            column[k] = index
        self.indexes.extend(column)

    def chunk_address(self, i: int) -> int:
        """Chunk i's address: from the mark or gap before it, its predecessors' sizes on."""
        g = bisect_right(self.gaps, i) - 1
        m = i // STRIDE
        start, at = (self.gaps[g], self.gap_addresses[g]) if self.gaps[g] > m * STRIDE else (m * STRIDE, self.marks[m])
        passed: int = sum(map(and_, self.sizes[start:i], repeat(~SIZE_BITS)))
        return at + passed

    def following(self, i: int, address: int) -> int:
        """The address of chunk i + 1, chunk i being at `address`."""
        g = bisect_left(self.gaps, i + 1)
        if g < len(self.gaps) and self.gaps[g] == i + 1:
            return self.gap_addresses[g]
        return address + (self.sizes[i] & ~SIZE_BITS)

    def run(self, i: int) -> int:
        """How many chunks from chunk i lie each at its predecessor's end (the next gap's distance)."""
        g = bisect_right(self.gaps, i)
        return (self.gaps[g] if g < len(self.gaps) else len(self)) - i

    def row(self, i: int, address: int) -> Row:
        state, kind = STATES[self.codes[i]]
        index = self.indexes[i]
        return address, self.sizes[i], state, kind, index - 1 if index else None

    def rows(self, i: int = 0) -> Iterator[Row]:
        """Every chunk's row from chunk i on."""
        address = self.chunk_address(i) if i < len(self) else 0
        for k in range(i, len(self)):
            yield self.row(k, address)
            address = self.following(k, address)

    def addresses(self) -> List[int]:
        return [row[0] for row in self.rows()]


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
    code_of = {place: CODE[place[0]] for place in set(free.values()) if place[0] in CODE}
    for addresses, sizes in batches:
        codes = bytearray(len(addresses))
        listed: List[int] = []
        indexes: List[int] = []
        for i, place in zip(*free.held_in(addresses)):
            code = code_of.get(place)
            if code is not None and addresses[i] != top:
                codes[i] = code
                listed.append(i)
                indexes.append(place[1])
        if addresses and addresses[0] <= top <= addresses[-1]:
            i = bisect_left(addresses, top)
            if addresses[i] == top:
                codes[i] = TOP
        rec.add(addresses, sizes, codes, listed, indexes)
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
        # the bins followed by a helper as gdb walks; only its free index comes back, not the bins
        free, walk, _ = heap.walk_index_split(arena, problems, bins=False)
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
    """Whether the k chunks from a[i] and b[j] are the same, chunks i and j being at one address
    and no gap in either run (C-speed slice comparisons)."""
    return (a.sizes[i:i + k] == b.sizes[j:j + k] and a.codes[i:i + k] == b.codes[j:j + k]
            and a.indexes[i:i + k] == b.indexes[j:j + k])


def diff_arena(address: int, before: Optional[ArenaRecord], after: Optional[ArenaRecord]) -> ArenaDiff:
    """The chunks that appeared, disappeared or changed, by one merge over the two records in
    address order.  The top chunk is in none of the lists (the record's top says where it
    moved): a chunk malloc cut from top appears, a chunk free merged into top disappears.
    Equal runs (from one address, no gap in either) are skipped a slice at a time, the slice
    doubling while the records agree (up to GALLOP chunks) and halving down to one chunk where
    they differ; x and y, the addresses of chunks i and j, are followed one chunk at a time and
    found again (ArenaRecord.chunk_address) after a run."""
    out = ArenaDiff(address, before, after)
    a = before if before is not None else ArenaRecord(address, False, 0, 0, 0)
    b = after if after is not None else ArenaRecord(address, False, 0, 0, 0)
    na, nb = len(a), len(b)
    asz, bsz, ac, bc, ax, bx = a.sizes, b.sizes, a.codes, b.codes, a.indexes, b.indexes
    i = j = 0
    x = a.chunk_address(0) if na else 0
    y = b.chunk_address(0) if nb else 0
    k = 1
    moved = False  # whether a run moved i and j past x and y
    while i < na and j < nb:
        if k > 1:  # a run: chunks i and j at one address; compared a slice at a time
            n = min(k, na - i, nb - j, a.run(i), b.run(j))
            if _same(a, i, b, j, n):
                i, j, moved = i + n, j + n, True
                k = min(2 * k, GALLOP) if n == k else 1  # a gap or an end: chunk by chunk again
            else:
                k //= 2
            if k == 1 and moved and i < na and j < nb:
                x, y, moved = a.chunk_address(i), b.chunk_address(j), False
            continue
        if x < y:  # one chunk: compared field by field
            out.disappeared += _not_top(a, i, x)
            x, i = a.following(i, x), i + 1
        elif y < x:
            out.appeared += _not_top(b, j, y)
            y, j = b.following(j, y), j + 1
        else:
            same = asz[i] == bsz[j] and ac[i] == bc[j] and ax[i] == bx[j]
            if not same:
                if ac[i] == TOP or bc[j] == TOP:  # top is none of the lists: "top" says where it went
                    out.disappeared += _not_top(a, i, x)
                    out.appeared += _not_top(b, j, y)
                else:
                    out.changed.append((a.row(i, x), b.row(j, y)))
            x, y = a.following(i, x), b.following(j, y)
            i, j = i + 1, j + 1
            k = 2 if same and x == y else 1  # the same chunk: perhaps the start of a run
    out.disappeared += [row for row in a.rows(i) if row[2] != "top"]
    out.appeared += [row for row in b.rows(j) if row[2] != "top"]
    return out


def _not_top(rec: ArenaRecord, i: int, address: int) -> List[Row]:
    return [] if rec.codes[i] == TOP else [rec.row(i, address)]


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
