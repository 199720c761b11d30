"""gdb as a memory.Memory: the selected inferior's memory, read in bulk."""

from __future__ import annotations

import os
from bisect import bisect_right
from typing import Optional, Sequence, Tuple

import gdb  # type: ignore[import-not-found,unused-ignore]

from .errors import MemoryReadError
from .memory import Bytes


class GdbMemory:
    """`holes`: [start, end) ranges a core file has no bytes for, which gdb would read as
    zeros; reading them is an error here, so the model says the memory is missing."""

    def __init__(self, holes: Sequence[Tuple[int, int]] = ()) -> None:
        self.inferior = gdb.selected_inferior()
        self.reads = 0
        self.holes = sorted(holes)
        self._starts = [h[0] for h in self.holes]

    def _in_hole(self, address: int, length: int) -> bool:
        i = bisect_right(self._starts, address + length - 1) - 1
        return i >= 0 and self.holes[i][1] > address  # the last hole starting before the end overlaps?

    def missing(self, address: int) -> bool:
        return self._in_hole(address, 1)

    def read(self, address: int, length: int) -> Bytes:
        self.reads += 1
        if self._in_hole(address, length):
            raise MemoryReadError(address, length)
        try:
            return self.inferior.read_memory(address, length)
        except (gdb.MemoryError, gdb.error) as e:
            if str(e) == "Quit":  # Ctrl-C during the read: the user's stop, not unreadable memory
                raise KeyboardInterrupt from None
            raise MemoryReadError(address, length) from None
        except (OverflowError, ValueError):
            raise MemoryReadError(address, length) from None


def process_memory_file(probe: int) -> Optional[int]:
    """The selected inferior's /proc/PID/mem, open for reading (the caller closes it), when gdb
    debugs a live process natively on this machine (not a core file, not a remote target: a
    pid there is not this machine's) and the file reads at `probe` what gdb reads; else None."""
    inferior = gdb.selected_inferior()
    connection = getattr(inferior, "connection", None)  # gdb 12+; older: no helper
    if getattr(connection, "type", None) != "native" or not inferior.pid:
        return None
    try:
        fd = os.open(f"/proc/{inferior.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if os.pread(fd, 64, probe) == bytes(inferior.read_memory(probe, 64)):
            return fd
    except (OSError, OverflowError, ValueError, gdb.error, gdb.MemoryError):
        pass
    os.close(fd)
    return None
