"""What gdb's `info symbol` says of an address, parsed once for every command.

gdb-free: the gdb side (locate.symbol_at) runs the command and hands the text here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

# "main_arena + 96 in section .data of /lib/x86_64-linux-gnu/libc.so.6", "fake in section .bss"
_INFO_SYMBOL = re.compile(r"^(\S+)(?: \+ (\d+))? in section ")


@dataclass(frozen=True)
class Symbol:
    """The symbol at or before an address and the offset from it."""

    name: str
    offset: int
    text: str  # gdb's first line, "fake in section .bss" (library objects add "of PATH")

    def __str__(self) -> str:
        return f"{self.name}+{self.offset}" if self.offset else self.name


SymbolLookup = Callable[[int], Optional[Symbol]]


def parse(text: str) -> Optional[Symbol]:
    """`info symbol`'s answer; None for "No symbol matches ..." or anything else."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    m = _INFO_SYMBOL.match(line)
    return Symbol(m.group(1), int(m.group(2) or 0), line) if m else None


def no_symbol(address: int) -> Optional[Symbol]:
    return None
