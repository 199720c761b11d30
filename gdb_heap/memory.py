"""The memory interface the heap model reads through, and a block cache over it.

A `Memory` is anything with `read(address, length) -> bytes-like` that raises
`MemoryReadError` for unreadable memory: gdb's inferior (see gdbmemory.py), a core file, or a
synthetic image in tests (`ImageMemory`).  `Reader` adds word access and caches whole blocks,
so walking a list or a heap costs one underlying read per block, not one per field.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
from typing import Dict, Iterable, List, Literal, Optional, Protocol, Sequence, Tuple, Union

from .errors import MemoryReadError

Bytes = Union[bytes, bytearray, memoryview]


class Memory(Protocol):
    def read(self, address: int, length: int) -> Bytes:
        """Exactly `length` bytes at `address`, or raise MemoryReadError."""
        ...

    def missing(self, address: int) -> bool:
        """The process had memory at `address` that this image lacks (a core file's mapping
        saved without its bytes): unreadable here, yet not a wild address."""
        ...


class ImageMemory:
    """Memory made of a few (address, bytes) regions: for tests and raw dumps."""

    def __init__(self, regions: Optional[Dict[int, Bytes]] = None, lacks: Sequence[Tuple[int, int]] = ()) -> None:
        self.regions: List[Tuple[int, Bytes]] = sorted((regions or {}).items())
        self.lacks = list(lacks)  # [start, end) ranges the image lacks (see Memory.missing)
        self.reads = 0

    def add(self, address: int, data: Bytes) -> None:
        self.regions.append((address, data))
        self.regions.sort(key=lambda r: r[0])

    def read(self, address: int, length: int) -> Bytes:
        self.reads += 1
        if length < 0 or address < 0:
            raise MemoryReadError(address, length)
        for start, data in self.regions:
            if start <= address and address + length <= start + len(data):
                return data[address - start:address - start + length]
        raise MemoryReadError(address, length)

    def missing(self, address: int) -> bool:
        return any(start <= address < end for start, end in self.lacks)



class FileMemory:
    """A live process's memory through a file of its own (/proc/PID/mem, opened by the tracer):
    what a forked helper reads, never touching gdb (helper.py)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, address: int, length: int) -> Bytes:
        try:
            data = os.pread(self.fd, length, address)
        except (OSError, OverflowError, ValueError):  # unmapped; an offset past 2**63
            raise MemoryReadError(address, length) from None
        if len(data) != length:  # runs into unmapped memory
            raise MemoryReadError(address, length)
        return data

    def missing(self, address: int) -> bool:
        return False  # a live process: what is not readable is not there


BLOCK_BITS = 16
BLOCK = 1 << BLOCK_BITS  # bytes per cached block
PAGE = 1 << 12
# At most this many blocks are cached: 64 MiB, so gdb stays near 170 MiB on any heap
# (bench/bench.py measures it).  The bins are followed in runs read outside the cache (links.py)
# and a walk reads each block once, so the cache serves small reads near each other and the
# walks of a small heap again; once it is full, blocks it lacks are read for the one asking
# and not kept.
CACHE_BLOCKS = 1024
# A walk given again (Reader.walk_again) is read this much at a time: gdb's best rate.
AGAIN = 4 << 20


class Slab:
    """Room for cached blocks, taken from anonymous mappings that the kernel fills in one go
    (MAP_POPULATE): keeping gdb's own read buffers instead faults every page in one by one,
    measured twice as slow on a 320 MiB cache.  Mappings double from 1 MiB up to 16 MiB, so
    a small heap costs little."""

    FIRST, LARGEST = 1 << 20, 16 << 20

    def __init__(self) -> None:
        self._segments: List[mmap.mmap] = []
        self._size = self._used = 0

    def store(self, data: Bytes) -> memoryview:
        if self._used + len(data) > self._size:
            self._size = min(self.LARGEST, max(self.FIRST, 2 * self._size, len(data)))
            flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
            self._segments.append(mmap.mmap(-1, self._size, flags=flags))
            self._used = 0
        start = self._used
        view = memoryview(self._segments[-1])[start:start + len(data)]
        view[:] = memoryview(data).cast("B")  # gdb's buffers need not be unsigned bytes
        self._used += len(data)
        return view


class Reader:
    """Word-level, cached access to a Memory for one word size and byte order."""

    def __init__(self, memory: Memory, size_sz: int, little_endian: bool = True, cache: bool = True) -> None:
        """cache=False: every read goes to the memory (a running process, read between its steps)."""
        self.memory = memory
        self.cache = cache
        self.size_sz = size_sz
        self.order: Literal["little", "big"] = "little" if little_endian else "big"
        self._wfmt = ("<" if little_endian else ">") + ("Q" if size_sz == 8 else "I")
        # block (or page) base -> its bytes, kept in the slab; None: unreadable
        self._blocks: Dict[int, Optional[Bytes]] = {}
        self._pages: Dict[int, Optional[Bytes]] = {}  # pages of blocks that are readable in part
        # The cached blocks as words (block base >> BLOCK_BITS -> its words), for the bin walks to
        # index straight into; only when the target's byte order is this machine's.
        self._word_blocks: Dict[int, memoryview] = {}
        self._transient: List[int] = []  # word_blocks of the last run load_run read (dropped at the next)
        self._floor = -1  # the lowest block load_run found readable, for runs above it (-1: none)
        self._native = (sys.byteorder == "little") == little_endian
        self._structs: Dict[int, struct.Struct] = {}
        self._words_of = [self._struct(n) for n in range(8)]  # struct for n words, prebuilt: hot path
        # The run of memory last used, cached or not: lists and walks mostly stay near it.
        self._recent_start, self._recent_len = 0, 0
        self._recent_data: Bytes = b""
        # The heap walk's last two blocks (block_words), kept apart from the run last used: the
        # commands read each walked chunk's first words (previews, links) while other reads come
        # between, and a walk may give its chunks a block behind (Heap.region_chunk_batches).
        self._walk_start, self._walk_len = 0, 0
        self._walk_data: Bytes = b""
        self._before_start, self._before_len = 0, 0
        self._before_data: Bytes = b""
        self._slab = Slab()
        self.cache_blocks = CACHE_BLOCKS  # how many blocks (and, apart, pages) the cache keeps
        # Whether block_words keeps the blocks it reads (while the cache has room): not for a
        # walk whose consumer reads nothing of its chunks again (Heap.walk_ahead).
        self.walk_fills_cache = True

    # -- raw access ------------------------------------------------------------------------
    def _load(self, base: int, length: int, into: Dict[int, Optional[Bytes]]) -> Optional[Bytes]:
        try:
            data: Optional[Bytes] = self.memory.read(base, length)
        except MemoryReadError:
            data = None
        if len(into) < self.cache_blocks:
            into[base] = data = self._slab.store(data) if data is not None else None
            if data is not None and into is self._blocks and self._native:
                self._word_blocks[base >> BLOCK_BITS] = memoryview(data).cast("B").cast(
                    "Q" if self.size_sz == 8 else "I")
        return data

    def _cached(self, address: int) -> Optional[Tuple[int, Bytes]]:
        """(start, data) of the cached run holding `address`, loading it while the cache has
        room; None when the cache is full and lacks it.  Raises MemoryReadError when the
        page holding `address` is unreadable."""
        if not self.cache:
            return None
        for size, cache in ((BLOCK, self._blocks), (PAGE, self._pages)):  # a block, else its page
            base = address & ~(size - 1)
            if base in cache:
                data = cache[base]
            elif len(cache) < self.cache_blocks:
                data = self._load(base, size, cache)
            else:
                return None
            if data is not None:
                return base, data
        raise MemoryReadError(address, 1)

    def unpacker(self, count: int) -> struct.Struct:
        """The struct that unpacks `count` words (for walkers that unpack from span())."""
        return self._words_of[count] if count < 8 else self._struct(count)

    def _struct(self, count: int) -> struct.Struct:
        unpacker = self._structs.get(count)
        if unpacker is None:
            unpacker = self._structs[count] = struct.Struct(self._wfmt[0] + self._wfmt[1] * count)
        return unpacker

    def _remember(self, start: int, data: Bytes) -> None:
        self._recent_start, self._recent_data, self._recent_len = start, data, len(data)

    def clear(self) -> None:
        """Forget every byte read (the memory changed): the cache and the runs kept beside it."""
        self._recent_start, self._recent_len, self._recent_data = 0, 0, b""
        self._blocks.clear()
        self._word_blocks.clear()
        self._transient = []
        self._floor = -1
        self._pages.clear()
        self._walk_start, self._walk_len, self._walk_data = 0, 0, b""
        self._before_start, self._before_len, self._before_data = 0, 0, b""

    def read(self, address: int, length: int) -> bytes:
        """`length` bytes at `address` (raises MemoryReadError)."""
        if length <= 0:
            return b""
        if address < 0 or address + length > 1 << (8 * self.size_sz):
            raise MemoryReadError(address, length)
        off = address - self._recent_start
        if 0 <= off and off + length <= self._recent_len:
            return bytes(self._recent_data[off:off + length])
        off = address - self._walk_start
        if 0 <= off and off + length <= self._walk_len:
            return bytes(self._walk_data[off:off + length])
        off = address - self._before_start
        if 0 <= off and off + length <= self._before_len:
            return bytes(self._before_data[off:off + length])
        hit = self._cached(address)
        if hit is not None:
            start, data = hit
            off = address - start
            if off + length <= len(data):
                return bytes(data[off:off + length])
        return bytes(self.memory.read(address, length))

    def word(self, address: int) -> int:
        return self.words(address, 1)[0]

    def words_at(self, addresses: Iterable[int]) -> List[Optional[int]]:
        """The word at each address (None where unreadable): straight out of the walk's last two
        blocks for those in them (a batch's chunks, as the walk gives it: no unpack each), else
        read as word() reads it."""
        S = self.size_sz
        views = [(start, length, memoryview(data)[:length - length % S].cast("B").cast("Q" if S == 8 else "I"))
                 for start, length, data in ((self._walk_start, self._walk_len, self._walk_data),
                                             (self._before_start, self._before_len, self._before_data))
                 if self._native and length >= S]
        out: List[Optional[int]] = []
        add = out.append
        for address in addresses:
            for start, length, view in views:
                off = address - start
                if 0 <= off and off + S <= length and not off % S:
                    add(view[off // S])
                    break
            else:
                try:
                    add(self.word(address))
                except MemoryReadError:
                    add(None)
        return out

    def words(self, address: int, count: int) -> Tuple[int, ...]:
        unpacker = self._words_of[count] if count < 8 else self._struct(count)
        off = address - self._recent_start
        if 0 <= off and off + unpacker.size <= self._recent_len:
            return unpacker.unpack_from(self._recent_data, off)
        # The heap walk's last two blocks: a command looks at the chunks of the batch before the
        # one the walk is reading (Heap.region_chunk_batches gives them a batch behind).
        off = address - self._before_start
        if 0 <= off and off + unpacker.size <= self._before_len:
            return unpacker.unpack_from(self._before_data, off)
        off = address - self._walk_start
        if 0 <= off and off + unpacker.size <= self._walk_len:
            return unpacker.unpack_from(self._walk_data, off)
        try:
            hit = self._cached(address)
        except MemoryReadError:
            raise MemoryReadError(address, unpacker.size) from None
        if hit is None and address >= 0:
            # Past the cache's room: read just these words.  (Reading the page around them
            # was measured slower: lists jump between pages more often than not.)
            return unpacker.unpack(self.memory.read(address, unpacker.size))
        if hit is not None:
            start, data = hit
            self._remember(start, data)
            off = address - start
            if off + unpacker.size <= len(data):  # the usual case: inside one block
                return unpacker.unpack_from(data, off)
        return unpacker.unpack(self.read(address, unpacker.size))

    def span(self, address: int, length: int) -> Tuple[int, Bytes]:
        """(start, data): a run of memory holding [address, address + length), so a walker
        can unpack straight from it for as long as it stays inside (raises MemoryReadError)."""
        off = address - self._recent_start
        if 0 <= off and off + length <= self._recent_len:
            return self._recent_start, self._recent_data
        hit = self._cached(address) if address >= 0 else None
        if hit is not None and address - hit[0] + length <= len(hit[1]):
            self._remember(*hit)
            return hit
        return address, self.memory.read(address, length)  # past the cache's room: just these

    def exact_span(self, address: int, length: int) -> Tuple[int, Bytes]:
        """span() that loads no block into the cache: what it holds, else just these bytes (a
        list in random order is visited once: a block read for one link is a waste)."""
        off = address - self._recent_start
        if 0 <= off and off + length <= self._recent_len:
            return self._recent_start, self._recent_data
        base = address & ~(BLOCK - 1)
        data = self._blocks.get(base)
        if data is not None and address - base + length <= len(data):
            return base, data
        return address, self.memory.read(address, length)

    def array(self, address: int, count: int, elem_size: int) -> Tuple[int, ...]:
        code = {1: "B", 2: "H", 4: "I", 8: "Q"}[elem_size]
        return struct.unpack(self._wfmt[0] + code * count, self.read(address, count * elem_size))

    def missing(self, address: int) -> bool:
        """See Memory.missing."""
        return self.memory.missing(address)

    def readable(self, address: int) -> bool:
        try:
            self.read(address, 1)
            return True
        except MemoryReadError:
            return False

    def word_blocks(self) -> Dict[int, memoryview]:
        """The cached blocks as arrays of words, by block number (address >> BLOCK_BITS): a live
        view (blocks are added as they are loaded), for walkers that look a word up with one
        dict lookup and an index instead of a call per read.  Empty when the cache is off or
        the target's byte order is not this machine's."""
        return self._word_blocks if self.cache else {}

    def runs_possible(self) -> bool:
        """Whether load_run can serve word_blocks() (a cached reader of this machine's byte order)."""
        return self.cache and self._native

    def load_run(self, address: int, blocks: int) -> int:
        """Reads up to `blocks` blocks in one read, the one holding `address` and those below it
        down to the first word_blocks() has, into word_blocks() until the next load_run (not into
        the cache: a run is read once, and keeping runs would make gdb's memory grow with the
        heap; measured no slower).  For following bins, whose lists mostly run down through the
        heap (each free goes on its list's head): one read then serves many links.  Returns how
        many blocks it read; 0 when it cannot help (the cache is off, the byte order is not this
        machine's, or that run is not readable in one read): read the link alone then."""
        if not self.runs_possible():
            return 0
        last = address >> BLOCK_BITS
        lowest = last - blocks + 1
        if self._floor <= last:  # a run read before found unreadable memory below here
            lowest = max(lowest, self._floor)
        first = last
        while first > lowest and first - 1 not in self._word_blocks:
            first -= 1
        while True:  # a run that reaches below its mapping (the heap's start) is cut in half
            try:
                data = memoryview(self.memory.read(first << BLOCK_BITS, (last - first + 1) << BLOCK_BITS)).cast("B")
                break
            except MemoryReadError:
                if first == last:
                    return 0
                first = last - (last - first) // 2
                self._floor = first
        word_blocks = self._word_blocks
        for number in self._transient:
            word_blocks.pop(number, None)
        self._transient = []
        code = "Q" if self.size_sz == 8 else "I"
        for k, number in enumerate(range(first, last + 1)):
            if number not in word_blocks:
                word_blocks[number] = data[k << BLOCK_BITS:(k + 1) << BLOCK_BITS].cast(code)  # type: ignore[call-overload]
                self._transient.append(number)
        return last - first + 1

    def walk_again(self, address: int) -> None:
        """A walk given again after it went ahead (Heap.walk_ahead), whose consumer reads each
        batch's chunks as the walk reads them: the run from the block holding `address` (the
        batch's first size field) becomes the walk's window, as block_words made each block,
        but AGAIN bytes in one read (halved where the heap ends sooner)."""
        base = address & ~(BLOCK - 1)
        if not self.cache or 0 <= base - self._walk_start <= self._walk_len - BLOCK:
            return  # the window holds it already
        size = AGAIN
        while True:
            try:
                data = self.memory.read(base, size)
                break
            except MemoryReadError:
                if size <= BLOCK:
                    return  # the consumer's own reads say what is unreadable
                size //= 2
        self._before_start, self._before_data, self._before_len = self._walk_start, self._walk_data, self._walk_len
        self._walk_start, self._walk_data, self._walk_len = base, data, len(data)

    def block_words(self, address: int) -> Tuple[int, memoryview]:
        """A run of memory holding `address` as an array of words: (its start, words).

        For the heap walk: it indexes words straight out of the block, no unpack per chunk.
        Past the cache's room the block is read for this walk alone.
        """
        hit = self._cached(address) if self.walk_fills_cache else None
        if hit is None:
            base = address & ~(BLOCK - 1)
            try:
                hit = base, self.memory.read(base, BLOCK)
            except MemoryReadError:
                page = address & ~(PAGE - 1)
                hit = page, self.memory.read(page, PAGE)
        start, data = hit
        if self.cache:  # an uncached reader keeps nothing: it reads between the program's steps
            self._remember(start, data)
            if start != self._walk_start:
                self._before_start, self._before_data, self._before_len = \
                    self._walk_start, self._walk_data, self._walk_len
                self._walk_start, self._walk_data, self._walk_len = start, data, len(data)
        view = data if isinstance(data, memoryview) else memoryview(data)
        usable = len(view) - len(view) % self.size_sz
        return start, view[:usable].cast("B").cast("Q" if self.size_sz == 8 else "I")
