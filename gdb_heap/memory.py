"""The memory interface the heap model reads through, and a block cache over it.

A `Memory` is anything with `read(address, length) -> bytes-like` that raises
`MemoryReadError` for unreadable memory: gdb's inferior (see gdbmemory.py), a core file, or a
synthetic image in tests (`ImageMemory`).  `Reader` adds word access and caches whole blocks,
so walking a list or a heap costs one underlying read per block, not one per field.
"""

from __future__ import annotations

import struct
from typing import Dict, List, Literal, Optional, Protocol, Tuple, Union

from .errors import MemoryReadError

Bytes = Union[bytes, bytearray, memoryview]


class Memory(Protocol):
    def read(self, address: int, length: int) -> Bytes:
        """Exactly `length` bytes at `address`, or raise MemoryReadError."""
        ...


class ImageMemory:
    """Memory made of a few (address, bytes) regions: for tests and raw dumps."""

    def __init__(self, regions: Optional[Dict[int, Bytes]] = None) -> None:
        self.regions: List[Tuple[int, Bytes]] = sorted((regions or {}).items())
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


BLOCK = 1 << 16  # bytes per cached block
PAGE = 1 << 12
CACHE_LIMIT = 512 << 20  # drop the cache past this many bytes (a command on a huge heap)


class Reader:
    """Word-level, cached access to a Memory for one word size and byte order."""

    def __init__(self, memory: Memory, size_sz: int, little_endian: bool = True) -> None:
        self.memory = memory
        self.size_sz = size_sz
        self.order: Literal["little", "big"] = "little" if little_endian else "big"
        self._wfmt = ("<" if little_endian else ">") + ("Q" if size_sz == 8 else "I")
        self._word = struct.Struct(self._wfmt)
        self._blocks: Dict[int, Optional[bytes]] = {}  # block base -> data, None if unreadable
        self._pages: Dict[int, Optional[bytes]] = {}  # page base -> data, for partial blocks
        self._cached = 0

    # -- raw access ------------------------------------------------------------------------
    def _block(self, address: int) -> Tuple[int, bytes]:
        """The cached run of memory holding `address`: (its start, its bytes)."""
        base = address & ~(BLOCK - 1)
        data = self._blocks.get(base, b"")
        if data == b"":
            data = self._fill(base, BLOCK, self._blocks)
        if data is not None:
            return base, data
        page = address & ~(PAGE - 1)
        pdata = self._pages.get(page, b"")
        if pdata == b"":
            pdata = self._fill(page, PAGE, self._pages)
        if pdata is None:
            raise MemoryReadError(address, 1)
        return page, pdata

    def _fill(self, base: int, length: int, into: Dict[int, Optional[bytes]]) -> Optional[bytes]:
        if self._cached > CACHE_LIMIT:
            self.clear()
        try:
            data: Optional[bytes] = bytes(self.memory.read(base, length))
            self._cached += length
        except MemoryReadError:
            data = None
        into[base] = data
        return data

    def clear(self) -> None:
        self._blocks.clear()
        self._pages.clear()
        self._cached = 0

    def read(self, address: int, length: int) -> bytes:
        """`length` bytes at `address`, from the cache (raises MemoryReadError)."""
        if length <= 0:
            return b""
        if address < 0 or address + length > 1 << (8 * self.size_sz):
            raise MemoryReadError(address, length)
        start, data = self._block(address)
        off = address - start
        if off + length <= len(data):
            return data[off:off + length]
        parts = [data[off:]]
        got = len(data) - off
        while got < length:
            start, data = self._block(address + got)
            take = data[:length - got]
            parts.append(take)
            got += len(take)
        return b"".join(parts)

    def word(self, address: int) -> int:
        if address & (self.size_sz - 1) == 0:
            try:
                start, data = self._block(address)
            except MemoryReadError:
                raise MemoryReadError(address, self.size_sz) from None
            return int(self._word.unpack_from(data, address - start)[0])
        return int.from_bytes(self.read(address, self.size_sz), self.order)

    def words(self, address: int, count: int) -> Tuple[int, ...]:
        fmt = self._wfmt[0] + self._wfmt[1] * count
        return struct.unpack(fmt, self.read(address, count * self.size_sz))

    def array(self, address: int, count: int, elem_size: int) -> Tuple[int, ...]:
        code = {1: "B", 2: "H", 4: "I", 8: "Q"}[elem_size]
        return struct.unpack(self._wfmt[0] + code * count, self.read(address, count * elem_size))

    def readable(self, address: int) -> bool:
        try:
            self._block(address)
            return True
        except MemoryReadError:
            return False

    def block_words(self, address: int) -> Tuple[int, memoryview]:
        """The cached block holding `address` as an array of words: (its start, words).

        For the heap walk: it indexes words straight out of the block, no unpack per chunk.
        """
        start, data = self._block(address)
        usable = len(data) - len(data) % self.size_sz
        return start, memoryview(data)[:usable].cast("Q" if self.size_sz == 8 else "I")
