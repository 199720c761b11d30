"""The inferior's memory mappings, parsed from gdb's `info proc mappings` text.

gdb-free: locate.py passes the text in.  A live process gives permissions and anonymous
mappings; for a core file gdb 13 lists only the file-backed ones, without permissions, so
locate.py takes the core's own segments instead (mmapped.core_segments).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

_LINE = re.compile(r"^\s*(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+0x[0-9a-f]+\s+0x[0-9a-f]+\s*([r-][w-][x-][ps])?\s*(.*)$")
_LIBC = re.compile(r"^libc(\.so\.6|-\d+\.\d+\.so)$")


@dataclass
class Mapping:
    """One memory mapping: [start, end), and the file it maps ("" for anonymous memory)."""

    start: int
    end: int
    path: str = ""  # "[heap]", "[stack]": the kernel's names for anonymous memory it knows
    readable: bool = True  # its protection lets the process read it
    missing_from: Optional[int] = None  # in a core file: where the bytes the core holds end
    writable: Optional[bool] = None  # None where gdb does not say (core files' file mappings)
    perms: str = ""  # "r-xp" as gdb lists it, "" where it does not say

    @property
    def anonymous(self) -> bool:
        return not self.path or self.path.startswith("[")


def parse(text: str) -> List[Mapping]:
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            perms = m.group(3)
            out.append(Mapping(int(m.group(1), 16), int(m.group(2), 16), m.group(4).strip(),
                               readable=perms is None or perms.startswith("r"),
                               writable=None if perms is None else perms[1] == "w", perms=perms or ""))
    return out


def is_libc(path: str) -> bool:
    return bool(_LIBC.match(os.path.basename(path)))


def libc_path(maps: Sequence[Mapping]) -> Optional[str]:
    for m in maps:
        if m.path and is_libc(m.path):
            return m.path
    return None


def data_spans(maps: Sequence[Mapping], path: str) -> List[Tuple[int, int]]:
    """Where an object's static data can be: its writable mappings and the anonymous one just
    after them (.bss); every mapping of it when gdb gives no permissions (core files)."""
    spans: List[Tuple[int, int]] = []
    real = os.path.realpath(path)  # gdb may name /lib/..., the kernel /usr/lib/...
    for i, m in enumerate(maps):
        if m.writable is False or not m.path or os.path.realpath(m.path) != real:
            continue
        spans.append((m.start, m.end))
        after = maps[i + 1] if i + 1 < len(maps) else None
        # writable None: gdb gives no permissions (gdb 10's info proc mappings, cores): it may be
        if after is not None and after.start == m.end and after.path == "" and after.writable is not False:
            spans.append((after.start, after.end))
    return spans


def containing(maps: Sequence[Mapping], address: int) -> Optional[Mapping]:
    for m in maps:
        if m.start <= address < m.end:
            return m
    return None


def tcb_spans(maps: Sequence[Mapping], heaps: Sequence[Tuple[int, int]], edge: int) -> List[Tuple[int, int]]:
    """Where a thread's TCB can be (i386, where gdb shows no thread pointer): the top of each
    writable anonymous mapping (a thread's stack holds its TCB at its high end), the start of
    [heap] (a static program's main thread takes its TLS from sbrk) and ld.so's data (the main
    thread's, from ld.so's own allocator).  `edge` bytes at each end, arena heaps skipped."""
    spans = []
    for m in maps:
        if m.writable is False or any(s <= m.start < e for s, e in heaps):
            continue
        if m.anonymous or "ld-linux" in m.path or m.path.endswith("ld.so"):
            spans.append((max(m.start, m.end - edge), m.end))
            if m.end - m.start > edge:
                spans.append((m.start, m.start + edge))
    return spans
