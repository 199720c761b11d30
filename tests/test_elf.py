"""gdb_heap.elf against binutils' readelf on a real program, and on ELF headers packed here by
hand from the ELF specification (32 and 64 bits, either byte order)."""

import re
import shutil
import struct
import subprocess
import sys

import pytest

from gdb_heap.elf import PF_R, PF_W, PT_INTERP, PT_LOAD, ProgramHeader, has_interpreter, program_headers

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
