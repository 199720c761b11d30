"""Following bins' lists through memory: every list at once, a run of memory at a time.

A heap of ten million chunks has millions of free ones.  Read one link at a time, each costs
a read of gdb's (about 3 us: the kernel's walk of another process's pages); read in runs of
blocks, one read serves every link that falls in it.  Free chunks go on their list's head, so
a program that frees in address order leaves lists that run down through the heap: every list
of every kind is followed together (`follow`), each as far as the blocks at hand take it, then
the run below the highest link still wanted is read, and so on down: a heap like that is read
about once, in a few thousand reads.  A run that serves few links makes the next one smaller,
down to one link's read, so lists in random order (a large bin, sorted by size) cost what they
did link by link.  Runs are kept only until the next one: gdb's memory does not grow with the
heap.

These functions only follow and record (each chunk, its size, a doubly linked chunk's bk) and
say why a list stopped; model.py judges what they recorded.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from heapq import heappop, heappush
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from .errors import MemoryReadError
from .memory import BLOCK, BLOCK_BITS, Reader

SIZE_BITS = 0x7
# A run is at most this many blocks (4 MiB: gdb reads that at near its best rate) and grows
# while each of its blocks served at least WORTH_A_BLOCK links (a block read costs about six
# link reads).
MOST_BLOCKS = 64
WORTH_A_BLOCK = 8
# A scattered list read link by link is given to runs again after this many links in a row
# each within a block of the one before.
NEAR_LINKS = 8

# Why a list stopped before its end (Trail.stop).
UNALIGNED, LOOP, BOUND, UNREADABLE = "unaligned", "loop", "bound", "unreadable"


@dataclass
class Trail:
    """One list being followed: `at` is the next node to visit.  A singly linked list's nodes
    are user pointers (the link's own address), a doubly linked list's are chunks; `end` is
    the value that ends the list (0, or the bin's header); `skew` turns a singly linked
    list's revealed link into the next node (a tcache link is a user pointer, a fastbin fd a
    chunk)."""

    at: int
    end: int
    bound: int
    skew: int = 0
    # Compact arrays, not lists: ten million chunks put millions in the bins.
    chunks: array[int] = field(default_factory=lambda: array("Q"))
    sizes: array[int] = field(default_factory=lambda: array("Q"))
    bks: array[int] = field(default_factory=lambda: array("Q"))  # doubly linked lists: each chunk's bk
    # follow_doubly(wide=True), for large bins: each chunk's fd_nextsize and bk_nextsize
    nextsizes: array[int] = field(default_factory=lambda: array("Q"))  # fd_nextsize, bk_nextsize, ...
    stop: Optional[str] = None  # why it stopped before `end` (UNALIGNED, LOOP, BOUND, UNREADABLE)
    # Loops are found as Brent finds them, with no set of the nodes met: `tortoise` is the node
    # met at the last power of two, `power` the next one (met again: a loop).
    tortoise: int = -1
    power: int = 1
    kind: Optional[Kind] = field(default=None, repr=False)  # set by follow()
    # A run served it one link (its next lay elsewhere): a list in no address order, read
    # link by link, not worth a run of its own (follow).
    scattered: bool = False
    # One size group of a large bin (size_groups): it runs down the heap with the other lists
    # however far apart its links lie, so it is never judged scattered.
    steady: bool = False

    def limit(self) -> int:
        """How many chunks the hot loop may reach before it must stop and look (bound, power)."""
        return min(self.bound, self.power)


class _Runs:
    """How big the next run read is: doubled while runs pay, halved while they do not; at one
    block that does not pay, single links are read for a while before a run is tried again."""

    def __init__(self) -> None:
        self.blocks = 16
        self.singles = 0  # links still to read one at a time

    def judge(self, read: int, served: int) -> None:
        if served >= WORTH_A_BLOCK * read:
            self.blocks = min(MOST_BLOCKS, 2 * self.blocks)
        elif self.blocks > 1:
            self.blocks //= 2
        elif served < WORTH_A_BLOCK:
            self.singles = 64


def _read_node(reader: Reader, first: int, width: int, need: int) -> Tuple[int, ...]:
    """A node's `width` words at `first`, or its first `need` when the others are not readable."""
    try:
        start, data = reader.exact_span(first, width * reader.size_sz)
        return reader.unpacker(width).unpack_from(data, first - start)
    except MemoryReadError:
        if need == width:
            raise
    start, data = reader.exact_span(first, need * reader.size_sz)
    return reader.unpacker(need).unpack_from(data, first - start)


@dataclass
class Kind:
    """How to follow one kind of list: `advance` runs a list on as far as the blocks at hand
    take it, `take` takes its next node from that node's `width` words (or the first `need` of
    them, when the rest are not readable), which start `lead` bytes from the node; `why` says
    why a list cannot take a node (None: it can)."""

    advance: Callable[[Trail], None]
    take: Callable[[Trail, Tuple[int, ...]], None]
    why: Callable[[Trail, int], Optional[str]]
    lead: int
    width: int
    need: int


def follow(reader: Reader, groups: Sequence[Tuple[Kind, Sequence[Trail]]]) -> None:
    """Follows every group's trails together, so lists of all kinds share each run read.

    A trail that the blocks at hand cannot take further waits on the block its next words
    lie in; each run is read below the highest block waited on, and only the trails waiting
    on the blocks it brought are run on (a hundred lists, ten thousand runs: no pass over
    every list per run)."""
    S = reader.size_sz
    blocks = reader.word_blocks()
    runs = _Runs()
    if not reader.runs_possible():
        runs.singles = -1  # never: each list link by link to its end
    served = read = 0
    waiting: Dict[int, List[Trail]] = {}  # block number -> the trails whose next words start there
    highest: List[int] = []  # the blocks waited on, negated (a heap; blocks no longer waited on stay)
    run: List[Trail] = []
    for kind, trails in groups:
        for trail in trails:
            trail.kind = kind
            run.append(trail)
    after_run = False  # whether `run` holds the trails waiting on a run just read
    while True:
        for trail in run:
            if trail.stop is not None or trail.at == trail.end:
                continue
            kind = trail.kind  # type: ignore[assignment]
            before = len(trail.chunks)
            kind.advance(trail)
            served += len(trail.chunks) - before
            if after_run and not trail.steady:
                trail.scattered = len(trail.chunks) - before <= 1
            if trail.at == trail.end:
                continue
            trail.stop = kind.why(trail, trail.at)
            if trail.stop is None:
                number = (trail.at + kind.lead) >> BLOCK_BITS
                if number in waiting:
                    waiting[number].append(trail)
                else:
                    waiting[number] = [trail]
                    heappush(highest, -number)
        while highest and -highest[0] not in waiting:
            heappop(highest)
        if not highest:
            return
        # The highest words wanted: a run below them serves lists running down.
        number = -highest[0]
        trail = waiting[number][-1]
        kind = trail.kind  # type: ignore[assignment]
        first = trail.at + kind.lead
        whole = (first & (BLOCK - 1)) + kind.width * S <= BLOCK
        if not runs.singles and not trail.scattered and whole and number not in blocks:
            if read:
                runs.judge(read, served)
            read, served = reader.load_run(first, runs.blocks), 0
            if read:
                run = [t for k in range(number - read + 1, number + 1) for t in waiting.pop(k, ())]
                after_run = True
                continue
        # Link by link: runs do not pay, the list is scattered, its words straddle two blocks
        # or lie in one the hot loop cannot index (a misaligned chunk), or its run is not
        # readable in one read.
        waiting[number].pop()
        if not waiting[number]:
            del waiting[number]
        _singles(reader, trail, runs, blocks)
        run, after_run = [trail], False  # single reads bring no block: no other list can go on


def _singles(reader: Reader, trail: Trail, runs: _Runs, blocks: Dict[int, memoryview]) -> None:
    """Reads a trail's links one at a time: while runs.singles lasts, or for a scattered list
    until its links come close together (NEAR_LINKS in a row within a block of the one before:
    then a run pays again)."""
    kind: Kind = trail.kind  # type: ignore[assignment]
    near = 0
    while True:
        if runs.singles > 0:
            runs.singles -= 1
        before = trail.at + kind.lead
        try:
            words = _read_node(reader, before, kind.width, kind.need)
        except MemoryReadError:
            trail.stop = UNREADABLE
            return
        kind.take(trail, words)
        if trail.at == trail.end:
            return
        trail.stop = kind.why(trail, trail.at)
        if trail.stop or ((trail.at + kind.lead) >> BLOCK_BITS) in blocks:
            return
        if trail.scattered:
            near = near + 1 if abs(trail.at + kind.lead - before) < BLOCK else 0
            if near < NEAR_LINKS:
                continue
            trail.scattered = False
        if not runs.singles:
            return


def _first_repeat(nodes: List[int]) -> Optional[int]:
    """The position of the first node met before in `nodes` (None: each is met once)."""
    if len(set(nodes)) == len(nodes):  # C speed: the usual answer
        return None
    met: Set[int] = set()
    for k, node in enumerate(nodes):
        if node in met:
            return k
        met.add(node)
    return None  # pragma: no cover (the set above says otherwise)


def _cut_loop(trail: Trail, skew: int, loop_before_bound: bool) -> None:
    """A trail stopped by Brent's tortoise or by its bound: cut it where its first node met
    before comes, as a walk that keeps every node in a set would (glibc's lists are cut
    there), and say LOOP; a bound met before any repeat stays BOUND.  `skew` turns a chunk
    into its node; `loop_before_bound`: the loop is looked for before the bound at each step."""
    nodes = [c + skew for c in trail.chunks] + [trail.at]
    k = _first_repeat(nodes)
    if k is None or (not loop_before_bound and k >= trail.bound):
        return
    trail.at = nodes[k]
    del trail.chunks[k:], trail.sizes[k:], trail.bks[k:], trail.nextsizes[2 * k:]
    trail.stop = LOOP


def follow_singly(reader: Reader, trails: List[Trail], header: int, amask: int, safe_linking: bool) -> None:
    """follow() of tcache or fast bin lists alone (see singly)."""
    follow(reader, [(singly(reader, header, amask, safe_linking), trails)])


def singly(reader: Reader, header: int, amask: int, safe_linking: bool) -> Kind:
    """Following tcache or fast bin lists (`header`: CHUNK_HDR_SZ, user pointer to chunk): each
    node's size field and link are the two words ending at the node; a link is safe-linked
    (PROTECT_PTR, from 2.32) with its own address.  Stops a list at an unaligned node, a node
    met before, its bound, or unreadable memory."""
    S = reader.size_sz
    shift, offset, last = (3 if S == 8 else 2), BLOCK - 1, BLOCK // S - 1
    blocks = reader.word_blocks()
    notbits = ~SIZE_BITS
    reveal = 12 if safe_linking else 64  # (pos >> 64) ^ ptr is ptr: one expression for both

    def advance(trail: Trail) -> None:
        chunks, sizes, skew = trail.chunks, trail.sizes, trail.skew
        mem = trail.at
        while True:
            n, limit, tortoise = len(chunks), trail.limit(), trail.tortoise
            while mem:  # the hot loop: a link whose two words lie in a block at hand
                w = mem - S
                words = blocks.get(w >> BLOCK_BITS)
                at = (w & offset) >> shift
                if words is None or at >= last or mem & amask or mem == tortoise or n >= limit:
                    break
                chunks.append(mem - header)
                sizes.append(words[at] & notbits)
                n += 1
                link = (mem >> reveal) ^ words[at + 1]  # REVEAL_PTR, inlined: hot
                mem = link + skew if link else 0
            if not (mem and n == trail.power < trail.bound):
                break
            trail.tortoise, trail.power = chunks[-1] + header, 2 * trail.power
        trail.at = mem

    def take(trail: Trail, words: Tuple[int, ...]) -> None:
        mem = trail.at
        trail.chunks.append(mem - header)
        trail.sizes.append(words[0] & notbits)
        link = (mem >> reveal) ^ words[1]
        trail.at = link + trail.skew if link else 0
        if len(trail.chunks) == trail.power:
            trail.tortoise, trail.power = mem, 2 * trail.power

    def why(trail: Trail, mem: int) -> Optional[str]:
        if mem & amask:
            return UNALIGNED
        if mem == trail.tortoise or len(trail.chunks) >= trail.bound:
            trail.stop = BOUND
            _cut_loop(trail, header, True)
            return trail.stop
        return None

    return Kind(advance, take, why, -S, 2, 2)


def follow_doubly(reader: Reader, trails: List[Trail], wide: bool = False) -> None:
    """follow() of bins' lists alone (see doubly)."""
    follow(reader, [(doubly(reader, wide), trails)])


def doubly(reader: Reader, wide: bool = False) -> Kind:
    """Following bins 1..126 by fd (each trail's `end` is its bin's header), recording each
    chunk's size and bk: the three words after the chunk's prev_size, and with `wide` (large
    bins) the two after them too, fd_nextsize and bk_nextsize.  Stops a list at its bound, a
    chunk met before, or unreadable memory."""
    S = reader.size_sz
    width = 5 if wide else 3
    shift, offset, last, wmask = (3 if S == 8 else 2), BLOCK - 1, BLOCK // S - width + 1, S - 1
    blocks = reader.word_blocks()
    notbits = ~SIZE_BITS

    def advance(trail: Trail) -> None:
        chunks, sizes, bks, nextsizes, header = trail.chunks, trail.sizes, trail.bks, trail.nextsizes, trail.end
        p = trail.at
        while True:
            n, limit, tortoise = len(chunks), trail.limit(), trail.tortoise
            while p != header:  # the hot loop: a chunk whose words lie in a block at hand
                w = p + S
                words = blocks.get(w >> BLOCK_BITS)
                at = (w & offset) >> shift
                if words is None or at >= last or p & wmask or p == tortoise or n >= limit:
                    break
                chunks.append(p)
                sizes.append(words[at] & notbits)
                bks.append(words[at + 2])
                if wide:
                    nextsizes.append(words[at + 3])
                    nextsizes.append(words[at + 4])
                n += 1
                p = words[at + 1]
            if not (p != header and n == trail.power < trail.bound):
                break
            trail.tortoise, trail.power = chunks[-1], 2 * trail.power
        trail.at = p

    def take(trail: Trail, words: Tuple[int, ...]) -> None:
        p = trail.at
        trail.chunks.append(p)
        trail.sizes.append(words[0] & notbits)
        trail.bks.append(words[2])
        trail.nextsizes.extend(words[3:])
        trail.at = words[1]
        if len(trail.chunks) == trail.power:
            trail.tortoise, trail.power = p, 2 * trail.power

    def why(trail: Trail, p: int) -> Optional[str]:
        if p == trail.tortoise or len(trail.chunks) >= trail.bound:
            trail.stop = BOUND
            _cut_loop(trail, 0, False)
            return trail.stop
        return None

    return Kind(advance, take, why, S, width, 3)


# The most size groups size_groups splits one large bin into (the skip list's length), and
# how many groups of one chunk each it reads before it gives up: a bin of all different sizes
# has nothing to split, and read as one list it may run down the heap in runs.
MOST_GROUPS = 1 << 16
LONE_HEADS = 64


def size_groups(reader: Reader, wide: Kind, trail: Trail, most: int = MOST_GROUPS) -> Optional[List[Trail]]:
    """A large bin's list as one trail per size group, for follow() to run with the others.

    A large bin is sorted by size, so its list runs down the heap once per size (chunks of one
    size go in as they were freed) and jumps back up between sizes: as one trail, each jump
    leaves it behind the other lists and it is read link by link (a read each, about 3 us).
    Each group's first chunk lies on the bin's skip list (fd_nextsize, a ring); read here, it
    starts that group's trail at the group's second chunk, which ends where the next group's
    first chunk comes, so every group runs down with the lists of the other bins in the same
    runs.  `wide`: doubly(reader, wide=True).  None (follow the bin as one trail) when the
    skip list is not a whole ring of readable, aligned chunks within `most`, or its first
    LONE_HEADS groups each hold one chunk (fd is fd_nextsize)."""
    S = reader.size_sz
    first = trail.at
    heads: List[Tuple[int, Tuple[int, ...]]] = []
    met: Set[int] = set()
    p = first
    while True:
        if p in met or p == trail.end or p & (S - 1) or len(heads) >= min(most, trail.bound):
            return None
        try:
            words = _read_node(reader, p + S, 5, 5)  # size, fd, bk, fd_nextsize, bk_nextsize
        except MemoryReadError:
            return None
        met.add(p)
        heads.append((p, words))
        if len(heads) == LONE_HEADS and all(w[1] == w[3] for _, w in heads):
            return None
        p = words[3]
        if p == first:
            break
    groups = []
    for k, (head, words) in enumerate(heads):
        group = Trail(head, heads[k + 1][0] if k + 1 < len(heads) else trail.end, trail.bound, steady=True)
        wide.take(group, words)  # the head read above: the group goes on from its fd
        groups.append(group)
    return groups


def join_groups(trail: Trail, groups: Sequence[Trail]) -> bool:
    """Gives `trail` (not followed) its size groups' chunks one after the other, when that is
    what following it alone gives: each group ended at the next one's first chunk, so the
    bin's list followed by fd is their chunks in turn and ends at its header (with no chunk
    twice: a list that comes back to a chunk never ends), and there are no more than its
    bound.  False otherwise (damage): follow the trail itself."""
    if any(g.at != g.end for g in groups):
        return False
    chunks = array("Q")
    for g in groups:
        chunks.extend(g.chunks)
    if len(chunks) > trail.bound:
        return False
    trail.chunks = chunks
    for g in groups:
        trail.sizes.extend(g.sizes)
        trail.bks.extend(g.bks)
        trail.nextsizes.extend(g.nextsizes)
    trail.at = trail.end
    return True
