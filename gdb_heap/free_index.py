"""Which bin holds each free chunk: chunk address -> (bin kind, bin index).

A big heap has millions of free chunks; as a dict they cost about 100 bytes each in gdb (a
hash slot, an entry, an int object), so the index is two compact arrays sorted by address
(10 bytes a chunk) and a lookup is a binary search.  Code that classifies a walk's chunks one
by one asks `around(first, last)` for a plain dict of the free chunks inside one batch.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from itertools import compress, islice, repeat
from operator import and_, eq, lshift, or_, rshift
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

Place = Tuple[str, int]  # (bin kind, bin index)

_GROUP_BITS = 16  # the most bits a group's number may take (where: an array of 16-bit numbers)


class FreeIndex:
    """chunk address -> (bin kind, index), read-only once built (see `build`)."""

    __slots__ = ("addresses", "_where", "_places")

    def __init__(self) -> None:
        self.addresses = array("Q")  # sorted, no repeats
        self._where = array("H")  # each address's place, as an index into _places
        self._places: List[Place] = []

    @classmethod
    def build(cls, groups: Iterable[Tuple[Place, Sequence[int]]]) -> FreeIndex:
        """The index of (place, chunks) groups; a chunk in several groups (damage: a chunk in
        two bins) keeps the first group's place."""
        index = cls()
        groups = list(groups)
        if len(groups) > 1 << _GROUP_BITS:
            raise ValueError("too many bins for one index")
        # address and group in one int, so that one sort at C speed orders both; as few bits
        # for the group as its number needs (a user-space address and up to 8192 groups fit
        # in 60 bits: two digits of a Python int, a quicker sort than three)
        bits = max(1, (len(groups) - 1).bit_length())
        packed: List[int] = []
        for n, (place, chunks) in enumerate(groups):
            index._places.append(place)
            packed.extend(map(or_, map(lshift, chunks, repeat(bits)), repeat(n)))
        packed.sort()
        addresses = array("Q", map(rshift, packed, repeat(bits)))
        where = array("H", map(and_, packed, repeat((1 << bits) - 1)))
        del packed
        if any(map(eq, addresses, islice(addresses, 1, None))):  # keep the first of each repeat
            keep = [i for i in range(len(addresses)) if not i or addresses[i] != addresses[i - 1]]
            addresses = array("Q", map(addresses.__getitem__, keep))
            where = array("H", map(where.__getitem__, keep))
        index.addresses, index._where = addresses, where
        return index

    @classmethod
    def of(cls, places: Dict[int, Place]) -> FreeIndex:
        """The index of a plain {chunk: place} dict."""
        return cls.build(((place, [chunk]) for chunk, place in places.items()))

    def __len__(self) -> int:
        return len(self.addresses)

    def __iter__(self) -> Iterator[int]:
        return iter(self.addresses)

    def _find(self, address: int) -> int:
        i = bisect_left(self.addresses, address)
        return i if i < len(self.addresses) and self.addresses[i] == address else -1

    def __contains__(self, address: object) -> bool:
        a = self.addresses  # inlined _find: link naming asks this of every link
        try:
            i = bisect_left(a, address)  # type: ignore[call-overload]
        except TypeError:  # not an int
            return False
        return i < len(a) and bool(a[i] == address)

    def __getitem__(self, address: int) -> Place:
        i = self._find(address)
        if i < 0:
            raise KeyError(address)
        return self._places[self._where[i]]

    def get(self, address: int, default: Optional[Place] = None) -> Optional[Place]:
        a = self.addresses
        i = bisect_left(a, address)
        return self._places[self._where[i]] if i < len(a) and a[i] == address else default

    def items(self) -> Iterator[Tuple[int, Place]]:
        return zip(self.addresses, map(self._places.__getitem__, self._where))

    def values(self) -> Iterator[Place]:
        return map(self._places.__getitem__, self._where)

    def around(self, first: int, last: int) -> Dict[int, Place]:
        """The free chunks from `first` to `last` (both included) as a dict: for classifying
        a walk's batch one chunk at a time at dict speed."""
        lo, hi = bisect_left(self.addresses, first), bisect_right(self.addresses, last)
        return dict(zip(self.addresses[lo:hi], map(self._places.__getitem__, self._where[lo:hi])))

    def held_in(self, addresses: List[int]) -> Tuple[Iterable[int], Iterable[Place]]:
        """The positions in a walk batch (addresses ascending) of the chunks the index holds,
        and their places, at C speed: a binary search in the batch for each free chunk of its
        range, not a look-up of each of its chunks."""
        if not addresses:
            return (), ()
        lo, hi = bisect_left(self.addresses, addresses[0]), bisect_right(self.addresses, addresses[-1])
        if lo == hi:
            return (), ()
        free = self.addresses[lo:hi]
        at = list(map(bisect_left, repeat(addresses), free))  # each below addresses[-1]: in range
        places = map(self._places.__getitem__, self._where[lo:hi])
        found = list(map(eq, map(addresses.__getitem__, at), free))
        if all(found):  # the usual answer: every free chunk of the range starts a walked chunk
            return at, places
        # a bin lists an address inside a chunk (damage): not one of the batch's chunks
        return list(compress(at, found)), compress(places, found)

    def walked(self, addresses: List[int], sizes: List[int]) -> Iterator[Tuple[Place, int]]:
        """(place, size field) of each chunk of a walk batch (addresses ascending, each chunk's
        size field beside it) that the index holds."""
        at, places = self.held_in(addresses)
        return zip(places, map(sizes.__getitem__, at))

    def nbytes(self) -> int:
        return len(self.addresses) * (self.addresses.itemsize + self._where.itemsize)
