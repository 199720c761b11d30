"""Finding mmapped chunks: chunks that are a mapping of their own, held by no arena or bin.

gdb-free: a list of memory mappings goes in, the chunks whose headers check out come out.
glibc keeps no list of them (only the counters mp_.n_mmaps and mp_.mmapped_mem), so the
scan looks at the start of every anonymous mapping.  The kernel merges neighbouring
anonymous mappings with the same protection into one, so after a chunk that ends before its
mapping does, the scan tries the next header right after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from .elf import PF_R, PF_W, PT_LOAD, program_headers
from .errors import MemoryReadError
from .layouts import GlibcLayout
from .mappings import Mapping
from .memory import Reader
from .model import IS_MMAPPED, NON_MAIN_ARENA, SIZE_BITS

PAGE = 4096
MAX_CHUNKS_PER_MAPPING = 1 << 16  # bound on a chain of headers inside one mapping
MEMALIGN_SEARCH = 1 << 16  # how far into a chunk a memalign'd header is looked for


@dataclass
class MmappedChunk:
    address: int
    user_address: int
    prev_size: int  # the alignment slack between the mapping's start and the chunk
    size_field: int
    mapping_start: int  # where this chunk's own mmap starts (chunk - prev_size)
    mapping_end: int  # where it ends
    region_start: int  # the (possibly merged) mapping the chunk was found in
    region_end: int


def mmapped_span(layout: GlibcLayout, prev_size: int, size: int) -> int:
    """Bytes of the chunk's own mmap: prev_size + size, plus a trailing header from 2.43."""
    return prev_size + size + (layout.header_size if layout.features.mmap_chunk_v2 else 0)


def mmapped_header(layout: GlibcLayout, chunk: int, prev_size: int, size_field: int,
                   limit: Optional[int] = None) -> bool:
    """Would glibc have written this header for an mmapped chunk at `chunk`?  IS_MMAPPED set,
    NON_MAIN_ARENA clear, the user pointer aligned, the mapping (from chunk - prev_size) a whole
    number of pages starting on a page, and (given `limit`) ending by it."""
    size = size_field & ~SIZE_BITS
    if not size_field & IS_MMAPPED or size_field & NON_MAIN_ARENA or size < layout.minsize:
        return False
    if (chunk + layout.header_size) % layout.malloc_alignment or (chunk - prev_size) % PAGE:
        return False
    span = mmapped_span(layout, prev_size, size)
    if span % PAGE:
        return False
    return limit is None or chunk - prev_size + span <= limit


def scan_mapping(reader: Reader, layout: GlibcLayout, mapping: Mapping) -> List[MmappedChunk]:
    """The mmapped chunks laid end to end from the start of `mapping`."""
    found: List[MmappedChunk] = []
    pos = mapping.start
    while pos < mapping.end and len(found) < MAX_CHUNKS_PER_MAPPING:
        # sysmalloc moves the chunk up until its user pointer is aligned (i386: 8 bytes, its
        # prev_size then says 8); memalign moves it further (prev_size: its whole slack).
        lead = layout.first_chunk(pos) - pos
        try:
            prev_size = reader.word(pos + lead)
            if prev_size != lead:
                prev_size = reader.word(pos)
            # prev_size is the slack before the chunk: it stays inside the mapping
            size_field = reader.word(pos + prev_size + layout.size_sz) if prev_size < mapping.end - pos else 0
        except MemoryReadError:
            break
        chunk = pos + prev_size
        if not mmapped_header(layout, chunk, prev_size, size_field, mapping.end):
            break
        end = pos + mmapped_span(layout, prev_size, size_field & ~SIZE_BITS)
        if prev_size == lead:
            chunk, prev_size, size_field = _memaligned(reader, layout, chunk, prev_size, size_field)
        found.append(MmappedChunk(chunk, chunk + layout.header_size, prev_size, size_field, pos, end,
                                  mapping.start, mapping.end))
        pos = end
    return found


def _memaligned(reader: Reader, layout: GlibcLayout, chunk: int, lead: int,
                size_field: int) -> Tuple[int, int, int]:
    """memalign on an mmapped chunk moves the chunk up inside its mapping and leaves the old
    header where it was: the real one says prev_size = its offset, size = the rest.  Looked for
    in the first MEMALIGN_SEARCH bytes; (chunk, prev_size, size field) of the one to show."""
    S, size = layout.size_sz, size_field & ~SIZE_BITS
    length = min(size - layout.minsize, MEMALIGN_SEARCH)
    try:
        words = reader.unpacker(length // S).unpack(reader.read(chunk, length)) if length > 0 else ()
    except MemoryReadError:
        return chunk, lead, size_field
    step = layout.malloc_alignment // S
    for i in range(step, len(words) - 1, step):
        off = i * S
        if words[i] == lead + off and words[i + 1] == (size - off) | IS_MMAPPED:
            return chunk + off, lead + off, words[i + 1]
    return chunk, lead, size_field


def scan(reader: Reader, layout: GlibcLayout, mappings: Sequence[Mapping],
         skip: Sequence[Tuple[int, int]] = ()) -> Tuple[List[MmappedChunk], List[Mapping]]:
    """Mmapped chunks in the anonymous `mappings`, in address order, and the mappings that
    could not be read (a core file may lack them).  `skip`: [start, end) ranges known to be
    something else (arena heaps)."""
    chunks: List[MmappedChunk] = []
    unreadable: List[Mapping] = []
    for m in sorted(mappings, key=lambda m: m.start):
        if m.path or not m.readable or any(lo <= m.start < hi for lo, hi in skip):
            continue
        if not reader.readable(m.start):
            unreadable.append(m)
            continue
        chunks += scan_mapping(reader, layout, m)
    return chunks, unreadable


def core_segments(data: bytes) -> List[Mapping]:
    """The PT_LOAD segments of an ELF core file (`data` holds its header and program headers),
    as mappings: a core has one per mapping of the process."""
    # A mapping the core did not save (coredump_filter, gcore's choice) keeps its segment
    # with fewer bytes in the file than in memory; gdb reads the rest as zeros.
    return [Mapping(h.vaddr, h.vaddr + h.memsz, "", bool(h.flags & PF_R),
                    h.vaddr + h.filesz if h.filesz < h.memsz else None, bool(h.flags & PF_W))
            for h in program_headers(data) if h.type == PT_LOAD and h.memsz]


def mapping_of(mappings: Sequence[Mapping], address: int) -> Optional[Mapping]:
    return next((m for m in mappings if m.start <= address < m.end), None)
