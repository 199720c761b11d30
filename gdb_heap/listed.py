"""A summary's free chunks counted from the bins' own lists, the walk only vouching for them.

A summary wants the free chunks by (bin, size).  The bin walks read each listed chunk's size
already (BinChain.sizes), so those counts come at C speed, one Counter a bin, with no free index
(sorting millions of addresses with their bins) and no look-up of each walked chunk in one.
What the walk must still say is that every listed chunk is a chunk it meets: a bin may list an
address inside a chunk (damage), which the summary must not count.  So the listed addresses are
sorted (plain numbers: one sort at C speed), and each walk batch holding some of them checks
they are among its chunks (two small sets); the batches' shares of them must tile the whole list,
each listed chunk met once.  Anything else (a chunk listed twice, one the walk did not meet, a
walk that found damage or left the regions given) and the caller counts the exact way
(model.summarise over the free index), which gives the same rows where this one stands.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from typing import List, Optional, Sequence, Tuple

from .free_index import Place
from .model import SIZE_BITS, BinChain

Span = Tuple[int, int]  # a region's first chunk and end: where an arena's walk goes


@dataclass
class Listed:
    """The chunks the bins list inside an arena's regions: their addresses (sorted) and their
    counts by (place, size) (sizes without the flag bits, as the bin walks read them)."""

    addresses: array[int]
    pairs: Counter[Tuple[Place, int]]
    top: Optional[Tuple[Place, int]] = None  # the first place listing top (damage), with that size


def listed(chains: Sequence[BinChain], spans: Sequence[Span], top: int) -> Optional[Listed]:
    """The chains' chunks, those of tcache bins only where they lie inside the spans (a thread's
    tcache may hold another arena's chunks), counted; None when a chain's sizes were not read
    along with it."""
    pairs: Counter[Tuple[Place, int]] = Counter()
    parts: List[Sequence[int]] = []
    first: Optional[Tuple[Place, int]] = None
    for c in chains:
        chunks, sizes = c.chunks, c.sizes
        if len(sizes) != len(chunks):
            return None
        if not chunks:
            continue
        if c.kind == "tcache" and not any(a <= min(chunks) and max(chunks) < b for a, b in spans):
            inside = [k for k, p in enumerate(chunks) if any(a <= p < b for a, b in spans)]
            chunks, sizes = [chunks[k] for k in inside], [sizes[k] for k in inside]
        place = (c.kind, c.index)
        for size, n in Counter(sizes).items():
            pairs[place, size] += n
        if first is None and top in chunks:
            first = place, sizes[list(chunks).index(top)]
        parts.append(chunks)
    return Listed(array("Q", sorted(chain.from_iterable(parts))), pairs, first)


@dataclass
class Vouch:
    """The walk's word on a Listed's addresses, given each batch's addresses in turn (`batch`);
    `sound()` at the end."""

    addresses: array[int]
    spans: Sequence[Span]
    _shares: List[Tuple[int, int]] = field(default_factory=list)  # each batch's slice of addresses
    _bad: bool = False
    _next: int = 0  # where the next batch's share of addresses begins, if the walk goes on upwards

    def batch(self, first_chunk: int, end: int, addresses: List[int]) -> None:
        """One batch of the walk, of the region given by its first chunk and end."""
        if (first_chunk, end) not in self.spans:
            self._bad = True
        a, lo, n = self.addresses, self._next, len(self.addresses)
        if not ((lo == n or a[lo] >= addresses[0]) and (lo == 0 or a[lo - 1] < addresses[0])):
            lo = bisect_left(a, addresses[0])  # (the walk went on elsewhere: another region)
        hi = bisect_right(a, addresses[-1], lo, min(n, lo + len(addresses)))
        if lo < hi:  # (a batch holds as many listed chunks as it has chunks at most)
            # its listed chunks, less its chunks: none left, and none listed twice
            some = set(a[lo:hi])
            if len(some) != hi - lo:
                self._bad = True
            some.difference_update(addresses)
            if some:
                self._bad = True
            self._shares.append((lo, hi))
        self._next = hi

    def sound(self) -> bool:
        """Whether each listed address was one batch's chunk, and no other batch's."""
        at = 0
        for lo, hi in sorted(self._shares):
            if lo != at:
                return False
            at = hi
        return not self._bad and at == len(self.addresses)


def summary_rows(every: Counter[int], found: Listed,
                 top_sizef: Optional[int]) -> Counter[Tuple[str, Optional[str], int]]:
    """model.summary_rows's answer from the walk's size fields counted (`every`) and the listed
    chunks' counts, where Vouch found them sound."""
    sizes: Counter[int] = Counter()
    for sizef, n in every.items():
        sizes[sizef & ~SIZE_BITS] += n
    pairs = Counter(found.pairs)
    rows: Counter[Tuple[str, Optional[str], int]] = Counter()
    if top_sizef is not None:
        size = top_sizef & ~SIZE_BITS
        if found.top is not None:
            pairs[found.top] -= 1  # top stays top (as in classify), even where a bin lists it
        sizes[size] -= 1
        rows["top", None, size] += 1
    for (place, size), n in pairs.items():
        sizes[size] -= n
        if n:
            rows["free", place[0], size] += n
    for size, n in sizes.items():
        if n:
            rows["in_use", None, size] += n
    return rows
