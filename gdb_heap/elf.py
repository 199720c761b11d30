"""Reading an ELF file's program headers (a core file's segments, a program's PT_INTERP).

gdb-free: the bytes of the file's start go in.
"""

from __future__ import annotations

import struct
from typing import Dict, Iterable, List, NamedTuple

PT_LOAD = 1
PT_INTERP = 3
PF_W = 2
PF_R = 4


class ProgramHeader(NamedTuple):
    type: int
    flags: int
    vaddr: int
    filesz: int
    memsz: int


def program_headers(data: bytes) -> List[ProgramHeader]:
    """The program headers of the ELF file `data` begins with (ELF32 or ELF64, either byte
    order); those past the end of `data`, and any of a file that is not ELF, are left out."""
    if data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        return []
    is64, order = data[4] == 2, "<" if data[5] == 1 else ">"
    try:
        phoff, phentsize, phnum = (struct.unpack_from(order + "Q", data, 0x20)[0], *struct.unpack_from(
            order + "HH", data, 0x36)) if is64 else (struct.unpack_from(order + "I", data, 0x1c)[0],
                                                     *struct.unpack_from(order + "HH", data, 0x2a))
    except struct.error:
        return []
    if phentsize < (56 if is64 else 32):  # too small for one entry: not a real ELF file
        return []
    out = []
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + phentsize > len(data):
            break
        if is64:
            p_type, p_flags, _, vaddr, _, filesz, memsz = struct.unpack_from(order + "IIQQQQQ", data, off)
        else:
            p_type, _, vaddr, _, filesz, memsz, p_flags = struct.unpack_from(order + "IIIIIII", data, off)
        out.append(ProgramHeader(p_type, p_flags, vaddr, filesz, memsz))
    return out


def has_interpreter(data: bytes) -> bool:
    """A dynamically linked program names its loader (PT_INTERP); a static one does not."""
    return any(h.type == PT_INTERP for h in program_headers(data))


SHT_SYMTAB = 2
SHT_DYNSYM = 11
STT_FUNC = 2


def function_symbols(data: bytes, names: Iterable[str]) -> Dict[str, int]:
    """The values of the named functions in the ELF file `data` (its .dynsym and .symtab:
    a stripped library keeps its exported functions in .dynsym), relative to its load base."""
    wanted = set(names)
    if data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        return {}
    is64, order = data[4] == 2, "<" if data[5] == 1 else ">"
    try:
        if is64:
            shoff = struct.unpack_from(order + "Q", data, 0x28)[0]
            shentsize, shnum = struct.unpack_from(order + "HH", data, 0x3a)
        else:
            shoff = struct.unpack_from(order + "I", data, 0x20)[0]
            shentsize, shnum = struct.unpack_from(order + "HH", data, 0x2e)
        sections = []
        for i in range(shnum):
            off = shoff + i * shentsize
            if is64:
                _, sh_type, _, _, sh_offset, sh_size, sh_link, _, _, sh_entsize = struct.unpack_from(
                    order + "IIQQQQIIQQ", data, off)
            else:
                _, sh_type, _, _, sh_offset, sh_size, sh_link, _, _, sh_entsize = struct.unpack_from(
                    order + "IIIIIIIIII", data, off)
            sections.append((sh_type, sh_offset, sh_size, sh_link, sh_entsize))
        found: Dict[str, int] = {}
        entry = struct.Struct(order + ("IBBHQQ" if is64 else "IIIBBH"))
        for sh_type, sh_offset, sh_size, sh_link, sh_entsize in sections:
            if sh_type not in (SHT_SYMTAB, SHT_DYNSYM) or sh_entsize < entry.size or sh_link >= len(sections):
                continue
            str_off, str_size = sections[sh_link][1], sections[sh_link][2]
            for k in range(sh_size // sh_entsize):
                fields = entry.unpack_from(data, sh_offset + k * sh_entsize)
                name_off, info, value = (fields[0], fields[1], fields[4]) if is64 else (fields[0], fields[3], fields[1])
                if info & 0xf != STT_FUNC or not value or name_off >= str_size:
                    continue
                start = str_off + name_off
                name = data[start:data.index(b"\0", start)].decode("ascii", "replace")
                if name in wanted:
                    found.setdefault(name, value)
        return found
    except (struct.error, ValueError):
        return {}
