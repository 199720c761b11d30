"""gdb_heap.elf against binutils' readelf on a real program, and on ELF headers packed here by
hand from the ELF specification (32 and 64 bits, either byte order)."""

import os
import re
import shutil
import struct
import subprocess
import sys
from typing import Dict

import pytest

from gdb_heap.elf import (PF_R, PF_W, PT_INTERP, PT_LOAD, ProgramHeader, function_symbols, has_interpreter,
                          program_headers)

TYPES = {"LOAD": 1, "DYNAMIC": 2, "INTERP": 3, "NOTE": 4, "PHDR": 6, "TLS": 7, "GNU_EH_FRAME": 0x6474E550,
         "GNU_STACK": 0x6474E551, "GNU_RELRO": 0x6474E552, "GNU_PROPERTY": 0x6474E553}


def readelf(path):
    out = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True, check=True).stdout
    rows = []
    for m in re.finditer(r"^\s+([A-Z_]+)\s+0x[0-9a-f]+ (0x[0-9a-f]+) 0x[0-9a-f]+ (0x[0-9a-f]+) (0x[0-9a-f]+) "
                         r"([RWE ]{3}) ", out, re.M):
        name, vaddr, filesz, memsz, flg = m.groups()
        if name in TYPES:
            flags = (4 if "R" in flg else 0) | (2 if "W" in flg else 0) | (1 if "E" in flg else 0)
            rows.append(ProgramHeader(TYPES[name], flags, int(vaddr, 16), int(filesz, 16), int(memsz, 16)))
    return rows


@pytest.mark.skipif(shutil.which("readelf") is None, reason="readelf (binutils) is missing")
def test_a_real_program_as_readelf_reads_it():
    path = sys.executable  # a dynamically linked program on any Linux the suite runs on
    with open(path, "rb") as f:
        data = f.read(1 << 16)
    got = program_headers(data)
    want = readelf(path)
    assert want and [h for h in got if h.type in TYPES.values()] == want
    assert has_interpreter(data)


def elf(bits, order, headers, phentsize=None, phnum=None, phoff=None):
    """An ELF header and its program headers, packed by hand (System V gABI field order)."""
    e = "<" if order == "little" else ">"
    is64 = bits == 64
    phentsize = phentsize if phentsize is not None else (56 if is64 else 32)
    phoff = phoff if phoff is not None else (64 if is64 else 52)
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1 if order == "little" else 2, 1]) + bytes(9)
    if is64:
        head = ident + struct.pack(e + "HHIQQQIHHHHHH", 4, 62, 1, 0, phoff, 0, 0, 64, phentsize,
                                   len(headers) if phnum is None else phnum, 64, 0, 0)
    else:
        head = ident + struct.pack(e + "HHIIIIIHHHHHH", 4, 3, 1, 0, phoff, 0, 0, 52, phentsize,
                                   len(headers) if phnum is None else phnum, 40, 0, 0)
    body = head + bytes(phoff - len(head))
    for t, flags, vaddr, filesz, memsz in headers:
        if is64:  # p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
            entry = struct.pack(e + "IIQQQQQQ", t, flags, 0, vaddr, vaddr, filesz, memsz, 0x1000)
        else:  # p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags, p_align
            entry = struct.pack(e + "IIIIIIII", t, 0, vaddr, vaddr, filesz, memsz, flags, 0x1000)
        body += entry + bytes(max(0, phentsize - len(entry)))
    return body


CORE = [(PT_LOAD, PF_R | PF_W, 0x555555559000, 0x21000, 0x21000), (PT_LOAD, PF_R, 0x7FFF0000, 0, 0x2000),
        (4, PF_R, 0, 0x400, 0)]
CORE32 = [(PT_LOAD, PF_R | PF_W, 0x56559000, 0x21000, 0x21000), (PT_LOAD, PF_R, 0x7FFF0000, 0, 0x2000)]


@pytest.mark.parametrize("bits", [64, 32])
@pytest.mark.parametrize("order", ["little", "big"])
def test_headers_packed_by_hand(bits, order):
    headers = CORE32 if bits == 32 else CORE
    assert program_headers(elf(bits, order, headers)) == [ProgramHeader(*h) for h in headers]
    assert not has_interpreter(elf(bits, order, headers))
    assert has_interpreter(elf(bits, order, headers + [(PT_INTERP, PF_R, 0x318, 0x1C, 0x1C)]))


def test_larger_entries_and_a_later_table():
    data = elf(64, "little", CORE, phentsize=64, phoff=0x100)
    assert program_headers(data) == [ProgramHeader(*h) for h in CORE]


def test_headers_cut_by_the_end_of_the_data():
    data = elf(64, "little", CORE)
    assert program_headers(data[:64 + 56 * 2]) == [ProgramHeader(*h) for h in CORE[:2]]
    assert program_headers(data[:64 + 56 * 2 - 1]) == [ProgramHeader(*CORE[0])]
    assert program_headers(data[:0x3F]) == []  # the ELF header itself is cut


def test_not_elf():
    good = elf(64, "little", CORE)
    assert program_headers(b"") == []
    assert program_headers(b"\x7fELG" + good[4:]) == []
    assert program_headers(good[:4] + b"\x03" + good[5:]) == []  # EI_CLASS neither 32 nor 64
    assert program_headers(good[:5] + b"\x00" + good[6:]) == []  # EI_DATA neither order
    assert program_headers(elf(64, "little", CORE, phentsize=55)) == []  # an entry cannot fit
    assert program_headers(elf(32, "little", CORE32, phentsize=31)) == []
    assert program_headers(elf(32, "little", CORE32, phentsize=32)) != []
    assert program_headers(elf(64, "little", CORE, phnum=0)) == []


# -- function symbols ------------------------------------------------------------------------------

def readelf_functions(path, names):
    out = subprocess.run(["readelf", "-sW", "--dyn-syms", path], capture_output=True, text=True, check=True).stdout
    found: Dict[str, int] = {}
    for m in re.finditer(r"^\s*\d+: ([0-9a-f]+)\s+\d+ FUNC\s+\w+\s+\w+\s+\w+ ([^@\s]+)", out, re.M):
        if m.group(2) in names and int(m.group(1), 16):
            found.setdefault(m.group(2), int(m.group(1), 16))
    return found


@pytest.mark.skipif(shutil.which("readelf") is None, reason="readelf (binutils) is missing")
def test_function_symbols_of_a_real_library_as_readelf_reads_them():
    libc = next((p for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib/i386-linux-gnu/libc.so.6", "/lib64/libc.so.6")
                 if os.path.exists(p)), None)
    if libc is None:
        pytest.skip("no libc.so.6 where Debian keeps it")
    names = ["malloc", "free", "calloc", "realloc", "environ", "no_such_function"]
    with open(libc, "rb") as f:
        data = f.read()
    want = readelf_functions(libc, names)
    assert {"malloc", "free", "calloc", "realloc"} <= set(want) and "environ" not in want  # environ: an OBJECT
    assert function_symbols(data, names) == want


def symbol_elf(bits, order, symbols, table_type=2, entsize=None, link=1):
    """An ELF file with three sections, packed from the ELF specification: the null section, a
    string table, and a symbol table (SHT_SYMTAB 2 or SHT_DYNSYM 11) linked to it; `symbols` are
    (name, st_info, st_value)."""
    o = "<" if order == "little" else ">"
    strtab = b"\0" + b"".join(n.encode() + b"\0" for n, _, _ in symbols)
    offsets, pos = [], 1
    for n, _, _ in symbols:
        offsets.append(pos)
        pos += len(n) + 1
    if bits == 64:
        syms = b"".join(struct.pack(o + "IBBHQQ", off, info, 0, 1, value, 8)
                        for off, (_, info, value) in zip(offsets, symbols))
        size, shsize, shoff_at, sh_at = 0x40, 0x40, 0x28, 0x3A
    else:
        syms = b"".join(struct.pack(o + "IIIBBH", off, value, 8, info, 0, 1)
                        for off, (_, info, value) in zip(offsets, symbols))
        size, shsize, shoff_at, sh_at = 0x34, 0x28, 0x20, 0x2E
    entsize = entsize if entsize is not None else (24 if bits == 64 else 16)
    str_off = size
    sym_off = str_off + len(strtab)
    shoff = sym_off + len(syms)

    def section(sh_type, offset, length, sh_link, sh_entsize):
        if bits == 64:
            return struct.pack(o + "IIQQQQIIQQ", 0, sh_type, 0, 0, offset, length, sh_link, 0, 8, sh_entsize)
        return struct.pack(o + "IIIIIIIIII", 0, sh_type, 0, 0, offset, length, sh_link, 0, 4, sh_entsize)

    shdrs = section(0, 0, 0, 0, 0) + section(3, str_off, len(strtab), 0, 0) + \
        section(table_type, sym_off, len(syms), link, entsize)
    header = bytearray(size)
    header[:6] = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1 if order == "little" else 2])
    struct.pack_into(o + ("Q" if bits == 64 else "I"), header, shoff_at, shoff)
    struct.pack_into(o + "HH", header, sh_at, shsize, 3)
    return bytes(header) + strtab + syms + shdrs


FUNC, OBJECT = 0x12, 0x11  # st_info: STB_GLOBAL << 4 | STT_FUNC (2) or STT_OBJECT (1)


@pytest.mark.parametrize("bits", [64, 32])
@pytest.mark.parametrize("order", ["little", "big"])
@pytest.mark.parametrize("table", [2, 11])
def test_function_symbols_packed_by_hand(bits, order, table):
    data = symbol_elf(bits, order, [("malloc", FUNC, 0x1234), ("main_arena", OBJECT, 0x5000), ("free", FUNC, 0),
                                    ("free", FUNC, 0x2000), ("calloc", FUNC, 0x3000), ("calloc", FUNC, 0x4000),
                                    ("other", FUNC, 0x6000)], table_type=table)
    got = function_symbols(data, ["malloc", "main_arena", "free", "calloc", "absent"])
    # an OBJECT and an undefined (value 0) symbol are skipped; the first definition wins
    assert got == {"malloc": 0x1234, "free": 0x2000, "calloc": 0x3000}


@pytest.mark.parametrize("bits", [64, 32])
def test_function_symbols_refuses_bad_tables(bits):
    syms = [("malloc", FUNC, 0x1234)]
    assert function_symbols(symbol_elf(bits, "little", syms, table_type=3), ["malloc"]) == {}  # a STRTAB
    small = 23 if bits == 64 else 15
    assert function_symbols(symbol_elf(bits, "little", syms, entsize=small), ["malloc"]) == {}
    assert function_symbols(symbol_elf(bits, "little", syms, link=3), ["malloc"]) == {}  # no section 3
    good = symbol_elf(bits, "little", syms)
    assert function_symbols(good, ["malloc"]) == {"malloc": 0x1234}
    assert function_symbols(good[:-8], ["malloc"]) == {}  # the section headers cut
    assert function_symbols(b"\x7fELF\x03\x01" + good[6:], ["malloc"]) == {}  # no such class
    assert function_symbols(b"\x7fELF\x02\x03" + good[6:], ["malloc"]) == {}  # no such byte order
    assert function_symbols(b"\x7fELG" + good[4:], ["malloc"]) == {}
