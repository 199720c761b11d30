"""glibc malloc's structures and constants, per glibc version and word size, as data.

Each struct is a list of (field, C type, element count) exactly as declared in that
version's malloc/malloc.c (or arena.c); offsets follow from C's layout rules, so a new glibc
is a new row in FEATURES, not new branches elsewhere.  Sources: glibc git, tags
glibc-2.26..glibc-2.42 and master (see ../shared/reference/glibc-internals.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import repeat
from operator import rshift, xor
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

Version = Tuple[int, int]

# C scalar types: name -> (size, alignment) for a given SIZE_SZ (the word size).
def _ctype(name: str, word: int) -> Tuple[int, int]:
    sizes = {"char": 1, "uint8": 1, "uint16": 2, "int": 4, "uint": 4, "size_t": word, "ptr": word}
    return sizes[name], sizes[name]


@dataclass(frozen=True)
class StructLayout:
    """Offsets of one C struct: field -> (offset, element size, element count)."""

    name: str
    size: int
    fields: Dict[str, Tuple[int, int, int]]

    def offset(self, name: str) -> int:
        return self.fields[name][0]

    def has(self, name: str) -> bool:
        return name in self.fields

    def field_at(self, offset: int) -> Optional[Tuple[str, int, int]]:
        """The field holding byte `offset` of the struct: (name, element index or -1 for a
        scalar, offset into that element); None for padding or outside the struct."""
        for name, (start, size, count) in self.fields.items():
            if start <= offset < start + size * count:
                index, inner = divmod(offset - start, size)
                return name, (index if count > 1 else -1), inner
        return None


FieldSpec = Tuple[str, str, int]


def compute_struct(name: str, spec: Sequence[FieldSpec], word: int) -> StructLayout:
    """Lay out a struct the way the C compiler does on x86-64 / i386 (natural alignment)."""
    offset, max_align = 0, 1
    fields: Dict[str, Tuple[int, int, int]] = {}
    for fname, ctype, count in spec:
        size, align = _ctype(ctype, word)
        offset = (offset + align - 1) // align * align
        fields[fname] = (offset, size, count)
        offset += size * count
        max_align = max(max_align, align)
    total = (offset + max_align - 1) // max_align * max_align
    return StructLayout(name, total, fields)


@dataclass(frozen=True)
class Features:
    """What a glibc version's malloc has: one row of the version table."""

    have_fastchunks: bool = False  # malloc_state.have_fastchunks (2.27+)
    fastbins: bool = True  # fastbinsY and friends (removed in 2.43)
    tcache: bool = False  # 2.26+
    tcache_counts_type: str = "char"  # counts[] element: char (<2.30), uint16 (2.30+)
    tcache_free_slots: bool = False  # 2.42+: num_slots[] = remaining capacity, not a count
    tcache_small_bins: int = 64  # TCACHE_MAX_BINS before 2.42, TCACHE_SMALL_BINS after
    tcache_large_bins: int = 0  # 2.42+: 12 large tcache bins
    tcache_key: bool = False  # tcache_entry.key (2.29+)
    # tcache_entry.key holds tcache_key, a random word from getrandom (2.34+), instead of the
    # owning tcache_perthread_struct's address (2.29-2.33).
    tcache_key_random: bool = False
    # When a thread's tcache_perthread_struct is allocated (tcache_init): "first call" = on the
    # thread's first malloc/calloc/realloc/memalign/free, before that call's own chunk (2.26-2.41);
    # "first small malloc" = on the first request below mp_.tcache_max_bytes (2.42); "first free"
    # = on the first free or small-bin stash (2.43+).
    tcache_init: str = "first call"
    tcache_fill: int = 7  # default mp_.tcache_count (16 from 2.43)
    safe_linking: bool = False  # PROTECT_PTR on tcache next and fastbin fd (2.32+)
    mp_thp: bool = False  # malloc_par.thp_pagesize/hp_pagesize/hp_flags (2.35+)
    mp_thp_mode: bool = False  # malloc_par.thp_mode (2.43)
    heap_info_pagesize: bool = False  # heap_info.pagesize (2.35+)
    global_max_fast_type: str = "size_t"  # uint8 from 2.37
    mmap_chunk_v2: bool = False  # 2.43: mmapped chunk size excludes a trailing header
    tcache_unsorted_limit: bool = True  # malloc_par.tcache_unsorted_limit (removed in 2.44)
    malloc_hooks: bool = True  # malloc and free call __malloc_hook / __free_hook when set (until 2.33)


# The version table: each row applies from its version on, until a later row overrides.
FEATURES: List[Tuple[Version, Dict[str, object]]] = [
    ((2, 26), dict(tcache=True)),
    ((2, 27), dict(have_fastchunks=True)),
    ((2, 29), dict(tcache_key=True)),
    ((2, 30), dict(tcache_counts_type="uint16")),
    ((2, 32), dict(safe_linking=True)),
    ((2, 34), dict(tcache_key_random=True, malloc_hooks=False)),
    ((2, 35), dict(mp_thp=True, heap_info_pagesize=True)),
    ((2, 37), dict(global_max_fast_type="uint8")),
    ((2, 42), dict(tcache_free_slots=True, tcache_large_bins=12, tcache_init="first small malloc")),
    ((2, 43), dict(fastbins=False, have_fastchunks=False, tcache_fill=16, mp_thp_mode=True,
                   mmap_chunk_v2=True, tcache_init="first free")),
    ((2, 44), dict(tcache_unsorted_limit=False)),
]

OLDEST_SUPPORTED: Version = (2, 26)
NEWEST_KNOWN: Version = FEATURES[-1][0]


def features_for(version: Version) -> Features:
    feats = Features()
    for since, changes in FEATURES:
        if version >= since:
            feats = replace(feats, **changes)  # type: ignore[arg-type]
    return feats


NBINS = 128
NSMALLBINS = 64
BINMAPSIZE = 4


def bin_kind(b: int) -> str:
    """bin_at(m, b)'s kind: bin 1 is the unsorted bin, 2..63 small, 64..126 large."""
    return "unsorted" if b == 1 else "small" if b < NSMALLBINS else "large"


def _malloc_state_spec(f: Features, nfastbins: int) -> List[FieldSpec]:
    spec: List[FieldSpec] = [("mutex", "int", 1), ("flags", "int", 1)]
    if f.have_fastchunks:
        spec.append(("have_fastchunks", "int", 1))
    if f.fastbins:
        spec.append(("fastbinsY", "ptr", nfastbins))
    spec += [("top", "ptr", 1), ("last_remainder", "ptr", 1), ("bins", "ptr", NBINS * 2 - 2),
             ("binmap", "uint", BINMAPSIZE), ("next", "ptr", 1), ("next_free", "ptr", 1),
             ("attached_threads", "size_t", 1), ("system_mem", "size_t", 1),
             ("max_system_mem", "size_t", 1)]
    return spec


def _malloc_par_spec(f: Features) -> List[FieldSpec]:
    spec: List[FieldSpec] = [("trim_threshold", "size_t", 1), ("top_pad", "size_t", 1),
                             ("mmap_threshold", "size_t", 1), ("arena_test", "size_t", 1),
                             ("arena_max", "size_t", 1)]
    if f.mp_thp_mode:
        spec.append(("thp_mode", "int", 1))
    if f.mp_thp:
        spec += [("thp_pagesize", "size_t", 1), ("hp_pagesize", "size_t", 1), ("hp_flags", "int", 1)]
    spec += [("n_mmaps", "int", 1), ("n_mmaps_max", "int", 1), ("max_n_mmaps", "int", 1),
             ("no_dyn_threshold", "int", 1), ("mmapped_mem", "size_t", 1),
             ("max_mmapped_mem", "size_t", 1), ("sbrk_base", "ptr", 1)]
    if f.tcache:
        # 2.42 renamed tcache_bins to tcache_small_bins (it counts the small bins only).
        spec += [("tcache_small_bins" if f.tcache_large_bins else "tcache_bins", "size_t", 1),
                 ("tcache_max_bytes", "size_t", 1),
                 ("tcache_count", "size_t", 1)]
        if f.tcache_unsorted_limit:
            spec.append(("tcache_unsorted_limit", "size_t", 1))
    return spec


def _tcache_spec(f: Features) -> List[FieldSpec]:
    nbins = f.tcache_small_bins + f.tcache_large_bins
    counts = "num_slots" if f.tcache_free_slots else "counts"
    return [(counts, f.tcache_counts_type, nbins), ("entries", "ptr", nbins)]


def _heap_info_spec(f: Features) -> List[FieldSpec]:
    spec: List[FieldSpec] = [("ar_ptr", "ptr", 1), ("prev", "ptr", 1), ("size", "size_t", 1),
                             ("mprotect_size", "size_t", 1)]
    if f.heap_info_pagesize:
        spec.append(("pagesize", "size_t", 1))
    return spec


@dataclass(frozen=True)
class GlibcLayout:
    """Everything the model needs to know about one glibc build's malloc."""

    version: Version
    size_sz: int  # SIZE_SZ: 8 on x86-64, 4 on i386
    malloc_alignment: int  # MALLOC_ALIGNMENT: 16 on x86-64 and on i386 since 2.26
    features: Features
    nfastbins: int
    malloc_state: StructLayout
    malloc_par: StructLayout
    tcache_perthread: StructLayout
    heap_info: StructLayout
    # Where the offsets came from: "table" or "debug info" (see check_against).
    source: str = "table"
    notes: Tuple[str, ...] = field(default=())

    # -- constants of malloc.c --------------------------------------------------------------
    @property
    def minsize(self) -> int:
        """MINSIZE: the smallest chunk, offsetof(fd_nextsize) rounded up to the alignment."""
        mask = self.malloc_alignment - 1
        return (4 * self.size_sz + mask) & ~mask

    @property
    def header_size(self) -> int:
        """CHUNK_HDR_SZ: prev_size and size; a user pointer is chunk + this."""
        return 2 * self.size_sz

    @property
    def smallbin_correction(self) -> int:
        return 1 if self.malloc_alignment > 2 * self.size_sz else 0

    @property
    def min_large_size(self) -> int:
        return (NSMALLBINS - self.smallbin_correction) * self.malloc_alignment

    @property
    def tcache_bins(self) -> int:
        return self.features.tcache_small_bins + self.features.tcache_large_bins if self.features.tcache else 0

    @property
    def tcache_chunk_size(self) -> int:
        """The chunk size of a tcache_perthread_struct: request2size(sizeof the struct)."""
        return self.request2size(self.tcache_perthread.size)

    @property
    def tcache_heads_main_heap(self) -> bool:
        """The main thread's tcache struct is the main heap's first chunk: tcache_init runs on
        the thread's first malloc-family call, before that call's own chunk (2.26-2.41)."""
        return self.features.tcache and self.features.tcache_init == "first call"

    @property
    def tcache_often_heads_main_heap(self) -> bool:
        """The first chunk is likely the main thread's tcache struct: always up to 2.41, and in
        2.42 whenever the program's first request is tcache-sized (most programs); 2.43+
        allocates it on the first free, after other chunks."""
        return self.features.tcache and self.features.tcache_init != "first free"

    @property
    def tcache_key_is_struct(self) -> bool:
        """tcache_entry.key holds the owning tcache struct's address (2.29-2.33), not a random key."""
        return self.features.tcache_key and not self.features.tcache_key_random

    @property
    def heap_max_size(self) -> int:
        """HEAP_MAX_SIZE = 2 * DEFAULT_MMAP_THRESHOLD_MAX (4 * 1 MiB * sizeof(long) / 2)."""
        return 2 * (4 * 1024 * 1024 * self.size_sz if self.size_sz == 8 else 512 * 1024)

    @property
    def counts_field(self) -> str:
        return "num_slots" if self.features.tcache_free_slots else "counts"

    def first_chunk(self, start: int) -> int:
        """The first chunk at or after `start`: where its user pointer is MALLOC_ALIGNMENT-aligned."""
        first = (start + self.size_sz - 1) & ~(self.size_sz - 1)
        while (first + self.header_size) % self.malloc_alignment:  # at most A / SIZE_SZ steps
            first += self.size_sz
        return first

    # -- size arithmetic (malloc.c's macros) ------------------------------------------------
    def request2size(self, req: int) -> int:
        mask = self.malloc_alignment - 1
        if req + self.size_sz + mask < self.minsize:
            return self.minsize
        return (req + self.size_sz + mask) & ~mask

    def requests_for(self, size: int) -> Optional[Tuple[int, int]]:
        """The range of malloc(n) requests n whose chunk is exactly `size` (None if none)."""
        if size < self.minsize or size % self.malloc_alignment:
            return None
        high = size - self.size_sz
        low = 0 if size == self.minsize else size - self.malloc_alignment - self.size_sz + 1
        return (low, high)

    def mmapped_requests_for(self, size: int, pagesize: int = 4096) -> Tuple[int, int]:
        """The malloc(n) requests that sysmalloc_mmap serves with a mapping of this chunk
        size: it maps ALIGN_UP(request2size(n) + SIZE_SZ, pagesize) bytes (up to 2.42; + A - 1
        where MALLOC_ALIGNMENT is larger than the chunk header).
        request2size(n) is a multiple of MALLOC_ALIGNMENT, so the largest n is below the
        usable size when that is not one."""
        S, A = self.size_sz, self.malloc_alignment
        pad = S if A == 2 * S else A - 1  # sysmalloc's slack when MALLOC_ALIGNMENT > CHUNK_HDR_SZ (i386)
        high = (size - pad) // A * A - S
        low = max(0, (size - pagesize - pad) // A * A - S + 1)
        return (low, high)

    def in_smallbin_range(self, size: int) -> bool:
        return size < self.min_large_size

    def smallbin_index(self, size: int) -> int:
        shift = 4 if self.malloc_alignment == 16 else 3
        return (size >> shift) + self.smallbin_correction

    def largebin_index(self, size: int) -> int:
        if self.size_sz == 8:
            first = (48, 48)  # largebin_index_64
        elif self.malloc_alignment == 16:
            first = (45, 49)  # largebin_index_32_big
        else:
            first = (38, 56)  # largebin_index_32
        if (size >> 6) <= first[0]:
            return first[1] + (size >> 6)
        for shift, limit, base in ((9, 20, 91), (12, 10, 110), (15, 4, 119), (18, 2, 124)):
            if (size >> shift) <= limit:
                return base + (size >> shift)
        return 126

    def bin_index(self, size: int) -> int:
        """bin_index: the small or large bin a free chunk of this size belongs in."""
        return self.smallbin_index(size) if self.in_smallbin_range(size) else self.largebin_index(size)

    def bin_min_size(self, index: int) -> int:
        """The smallest chunk size regular bin `index` holds (1 = unsorted: MINSIZE)."""
        if index <= 1:
            return self.minsize
        if index < NSMALLBINS:
            return (index - self.smallbin_correction) * self.malloc_alignment
        lo, hi = self.min_large_size, 1 << (8 * self.size_sz)
        while lo < hi:  # largebin_index is non-decreasing in size: bisect
            mid = (lo + hi) // 2
            if self.largebin_index(mid) >= index:
                hi = mid
            else:
                lo = mid + 1
        return (lo + self.malloc_alignment - 1) // self.malloc_alignment * self.malloc_alignment

    def fastbin_index(self, size: int) -> int:
        """In glibc's unsigned int arithmetic: a size below 2 * MINSIZE wraps to a huge index,
        and the size is cut to 32 bits first (0x100000020 is fast bin 0's)."""
        return (((size & 0xFFFFFFFF) >> (4 if self.size_sz == 8 else 3)) - 2) & 0xFFFFFFFF

    def fastbin_size(self, index: int) -> int:
        return (index + 2) << (4 if self.size_sz == 8 else 3)

    @property
    def default_max_fast(self) -> int:
        """global_max_fast as malloc_init_state leaves it: set_max_fast (DEFAULT_MXFAST = 64 *
        SIZE_SZ / 4), rounded as a chunk size; 0 from 2.43 (no fast bins)."""
        if not self.features.fastbins:
            return 0
        return (64 * self.size_sz // 4 + self.size_sz) & ~(self.malloc_alignment - 1)

    def csize2tidx(self, size: int) -> int:
        """glibc's csize2tidx: the tcache bin of a chunk size, in the small bins' arithmetic."""
        return (size - self.minsize + self.malloc_alignment - 1) // self.malloc_alignment

    def tcache_index(self, size: int) -> int:
        """csize2tidx for small sizes; for 2.42's large tcache bins, by the highest set bit."""
        small = self.csize2tidx(size)
        if small < self.features.tcache_small_bins:
            return small
        top_small = self.tcache_bin_size(self.features.tcache_small_bins - 1)
        return self.features.tcache_small_bins + size.bit_length() - top_small.bit_length()

    def tcache_bin_size(self, index: int) -> int:
        """The chunk size of tcache bin `index` (the smallest size, for large tcache bins)."""
        if index < self.features.tcache_small_bins:
            return self.minsize + index * self.malloc_alignment
        top_small = self.tcache_bin_size(self.features.tcache_small_bins - 1)
        if index == self.features.tcache_small_bins:  # shares its highest bit with top_small
            return top_small + self.malloc_alignment
        return 1 << (top_small.bit_length() + index - self.features.tcache_small_bins - 1)

    def reveal_ptr(self, field_address: int, stored: int) -> int:
        """REVEAL_PTR: undo safe-linking on a tcache next / fastbin fd word."""
        if not self.features.safe_linking:
            return stored
        return (field_address >> 12) ^ stored

    def reveal_ptrs(self, field_addresses: Iterable[int], stored: Iterable[int]) -> Iterable[int]:
        """reveal_ptr of many words (each at its field address), at C speed."""
        if not self.features.safe_linking:
            return stored
        return map(xor, map(rshift, field_addresses, repeat(12)), stored)


def layout_for(version: Optional[Version], size_sz: int) -> GlibcLayout:
    """The table's layout for a glibc version (None: the newest known) and word size."""
    if version is None or version > NEWEST_KNOWN:
        version = version or NEWEST_KNOWN
    feats = features_for(version)
    # NFASTBINS = fastbin_index(request2size(MAX_FAST_SIZE)) + 1, MAX_FAST_SIZE = 80 * S / 4.
    alignment = 16 if (size_sz == 8 or version >= (2, 26)) else 2 * size_sz
    mask = alignment - 1
    max_fast = (80 * size_sz // 4 + size_sz + mask) & ~mask
    nfastbins = (max_fast >> (4 if size_sz == 8 else 3)) - 2 + 1 if feats.fastbins else 0
    return GlibcLayout(
        version=version,
        size_sz=size_sz,
        malloc_alignment=alignment,
        features=feats,
        nfastbins=nfastbins,
        malloc_state=compute_struct("malloc_state", _malloc_state_spec(feats, nfastbins), size_sz),
        malloc_par=compute_struct("malloc_par", _malloc_par_spec(feats), size_sz),
        tcache_perthread=compute_struct("tcache_perthread_struct", _tcache_spec(feats), size_sz),
        heap_info=_padded_heap_info(compute_struct("heap_info", _heap_info_spec(feats), size_sz),
                                    size_sz, alignment),
    )


def _padded_heap_info(raw: StructLayout, size_sz: int, alignment: int) -> StructLayout:
    """heap_info ends in pad[] so that sizeof(heap_info) + 2 * SIZE_SZ is MALLOC_ALIGNMENT-aligned."""
    size = raw.size
    while (size + 2 * size_sz) % alignment:
        size += size_sz
    return replace(raw, size=size)


def without_tcache(layout: GlibcLayout) -> GlibcLayout:
    """The same glibc's malloc built with USE_TCACHE=0, as libc_malloc_debug.so is (its own copy
    of malloc.c, used with MALLOC_CHECK_): no tcache, and malloc_par ends at sbrk_base."""
    feats = replace(layout.features, tcache=False)
    return replace(layout, features=feats,
                   malloc_par=compute_struct("malloc_par", _malloc_par_spec(feats), layout.size_sz))
