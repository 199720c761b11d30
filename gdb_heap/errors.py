"""The model's own error types: everything it raises is a HeapError."""

from __future__ import annotations


class HeapError(Exception):
    """A clean, user-facing failure: the message is 'what is wrong; what to do'."""


class MemoryReadError(HeapError):
    """Memory at an address could not be read."""

    def __init__(self, address: int, length: int) -> None:
        super().__init__(f"cannot read {length} bytes at {address:#x}; the address is not mapped "
                         "(or not in the core file)")
        self.address = address
        self.length = length
