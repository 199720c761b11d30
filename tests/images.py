"""Small memory images for the model's exact tests, written word by word (little-endian):
tests lay out chunks and structs themselves from malloc.c's rules, nothing here knows glibc."""

from __future__ import annotations

import struct
from typing import Dict

from gdb_heap.memory import ImageMemory, Reader


class FlatImage:
    """`size` bytes at `base`, and nothing else readable: for reads that end exactly there."""

    def __init__(self, base: int, size: int, word: int = 8) -> None:
        self.base = base
        self.buf = bytearray(size)
        self.word = word

    def put(self, address: int, *words: int) -> None:
        for k, w in enumerate(words):
            struct.pack_into("<Q" if self.word == 8 else "<I", self.buf, address - self.base + self.word * k, w)

    def reader(self, cache: bool = True) -> Reader:
        """cache=False: every read goes to the memory, as for a running process.  The cache keeps
        whole 64 KiB blocks (the bin walks' fast path) only where the image holds one."""
        return Reader(ImageMemory({self.base: bytes(self.buf)}), self.word, cache=cache)


class PageImage:
    """Pages wherever something is put (zeros elsewhere on them); adjacent pages read as one."""

    def __init__(self, word: int = 8) -> None:
        self.pages: Dict[int, bytearray] = {}
        self.word = word

    def touch(self, start: int, end: int) -> None:
        for page in range(start & ~0xFFF, end, 0x1000):
            self.pages.setdefault(page, bytearray(0x1000))

    def put(self, address: int, value: int, size: int = 8) -> None:
        self.touch(address, address + size)
        for k, byte in enumerate(value.to_bytes(size, "little")):
            page = (address + k) & ~0xFFF
            self.pages[page][address + k - page] = byte

    def reader(self) -> Reader:
        runs: Dict[int, bytearray] = {}
        for page in sorted(self.pages):
            last = max(runs, default=None)
            if last is not None and last + len(runs[last]) == page:
                runs[last] += self.pages[page]
            else:
                runs[page] = bytearray(self.pages[page])
        return Reader(ImageMemory({a: bytes(b) for a, b in runs.items()}), self.word)
