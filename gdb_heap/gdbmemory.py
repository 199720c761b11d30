"""gdb as a memory.Memory: the selected inferior's memory, read in bulk."""

from __future__ import annotations

import gdb  # type: ignore[import-not-found,unused-ignore]

from .errors import MemoryReadError
from .memory import Bytes


class GdbMemory:
    def __init__(self) -> None:
        self.inferior = gdb.selected_inferior()
        self.reads = 0

    def read(self, address: int, length: int) -> Bytes:
        self.reads += 1
        try:
            return self.inferior.read_memory(address, length)
        except (gdb.MemoryError, gdb.error, OverflowError, ValueError):
            raise MemoryReadError(address, length) from None
