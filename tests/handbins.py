"""Bin numbers and chunk sizes written out by hand from glibc's malloc/malloc.c, so that tests
never ask gdb_heap.layouts for an expected value.

For glibc 2.26 and later, where MALLOC_ALIGNMENT is 16 on x86-64 (SIZE_SZ 8) and on i386
(SIZE_SZ 4).  The macros, as glibc 2.36 writes them (unchanged through 2.44):
  MINSIZE             = (offsetof(struct malloc_chunk, fd_nextsize) + 15) & ~15: 0x20 / 0x10
  request2size(req)   = max(MINSIZE, (req + SIZE_SZ + 15) & ~15)
  SMALLBIN_CORRECTION = MALLOC_ALIGNMENT > 2 * SIZE_SZ: 0 / 1
  MIN_LARGE_SIZE      = (64 - SMALLBIN_CORRECTION) * 16: 0x400 / 0x3f0
  smallbin_index(sz)  = (sz >> 4) + SMALLBIN_CORRECTION
  fastbin_index(sz)   = (sz >> (SIZE_SZ == 8 ? 4 : 3)) - 2
  csize2tidx(x)       = (x - MINSIZE + 15) / 16 (2.42: (x - MINSIZE) / 16, the same for chunk sizes)
  large_csize2tidx(nb) = 64 + clz32(MAX_TCACHE_SMALL_SIZE) - clz32(nb) (2.42+), with
                        MAX_TCACHE_SMALL_SIZE = tidx2csize(63) = 63 * 16 + MINSIZE: 0x410 / 0x400
                        (2.42.0 had tidx2usize(63), fixed by ad4caba414 on release/2.42 and master)
  largebin_index_64(sz) (x86-64) and largebin_index_32_big(sz) (i386, MALLOC_ALIGNMENT 16):
      (sz >> 6) <= 48 ? 48 + (sz >> 6)       [_32_big: (sz >> 6) <= 45 ? 49 + (sz >> 6)]
    : (sz >> 9) <= 20 ? 91 + (sz >> 9)
    : (sz >> 12) <= 10 ? 110 + (sz >> 12)
    : (sz >> 15) <= 4 ? 119 + (sz >> 15)
    : (sz >> 18) <= 2 ? 124 + (sz >> 18)
    : 126
The large bins below are those conditions worked through by hand: where each bin starts.
"""

from bisect import bisect_right
from typing import Dict, List, Tuple

MALLOC_ALIGNMENT = 16
MINSIZE = {8: 0x20, 4: 0x10}
MIN_LARGE_SIZE = {8: 0x400, 4: 0x3F0}
SMALLBIN_CORRECTION = {8: 0, 4: 1}
# fastbin_index's shift: SIZE_SZ == 8 ? 4 : 3.
FAST_SHIFT = {8: 4, 4: 3}

# (first bin, its smallest chunk size, step between bins, last bin of the run).
LARGE_RUNS: Dict[int, List[Tuple[int, int, int, int]]] = {
    8: [
        (64, 0x400, 0x40, 96),  # 48 + (sz >> 6): 0x400 .. 0xc3f
        (97, 0xC40, 0, 97),  # sz >> 6 = 49 > 48, sz >> 9 = 6: 0xc40 .. 0xdff
        (98, 0xE00, 0x200, 111),  # 91 + (sz >> 9) up to sz >> 9 = 20: .. 0x29ff
        (112, 0x2A00, 0, 112),  # sz >> 9 = 21 > 20, sz >> 12 = 2: 0x2a00 .. 0x2fff
        (113, 0x3000, 0x1000, 120),  # 110 + (sz >> 12) up to 10; 0xb000 .. 0xffff: 119 + 1 = 120 too
        (121, 0x10000, 0x8000, 123),  # 119 + (sz >> 15) up to 4: .. 0x27fff
        (124, 0x28000, 0, 124),  # sz >> 15 = 5 > 4, sz >> 18 = 0: 0x28000 .. 0x3ffff
        (125, 0x40000, 0, 125),  # sz >> 18 = 1
        (126, 0x80000, 0, 126),  # sz >> 18 = 2, and everything larger
    ],
    4: [
        (64, 0x3F0, 0, 64),  # 49 + (0x3f0 >> 6 = 15): only 0x3f0
        (65, 0x400, 0x40, 94),  # 49 + (sz >> 6) up to 45: .. 0xb7f
        # bin 95 holds nothing: 0xb80 >> 6 = 46 > 45 and 0xb80 >> 9 = 5 gives 96
        (96, 0xB80, 0, 96),  # 91 + 5: 0xb80 .. 0xbff
        (97, 0xC00, 0, 97),  # 91 + 6: 0xc00 .. 0xdff
        (98, 0xE00, 0x200, 111),
        (112, 0x2A00, 0, 112),
        (113, 0x3000, 0x1000, 120),
        (121, 0x10000, 0x8000, 123),
        (124, 0x28000, 0, 124),
        (125, 0x40000, 0, 125),
        (126, 0x80000, 0, 126),
    ],
}

# The large tcache bins (2.42+): bin -> its smallest chunk size.  64 starts right after the
# last small tcache size (0x410 / 0x400); from 65 on, bin 64 + k starts at the next power of two.
LARGE_TCACHE_START = {
    8: {64: 0x420, 65: 0x800, 66: 0x1000, 67: 0x2000, 68: 0x4000, 69: 0x8000, 70: 0x10000,
        71: 0x20000, 72: 0x40000, 73: 0x80000, 74: 0x100000, 75: 0x200000},
    4: {64: 0x410, 65: 0x800, 66: 0x1000, 67: 0x2000, 68: 0x4000, 69: 0x8000, 70: 0x10000,
        71: 0x20000, 72: 0x40000, 73: 0x80000, 74: 0x100000, 75: 0x200000},
}

# request2size(sizeof(tcache_perthread_struct)): the tcache struct's own chunk.
#   2.26-2.29: char counts[64] + 64 pointers: 576 / 320 bytes
#   2.30-2.41: uint16_t counts[64] + 64 pointers: 640 / 384 bytes
#   2.42+: uint16_t num_slots[76] + 76 pointers: 760 / 456 bytes
TCACHE_STRUCT_CHUNK = [((2, 26), {8: 0x250, 4: 0x150}), ((2, 30), {8: 0x290, 4: 0x190}),
                       ((2, 42), {8: 0x300, 4: 0x1D0})]


def large_bin_starts(S: int) -> Dict[int, int]:
    """Large bin -> the smallest chunk size it holds (bin 95 is absent on i386)."""
    out = {}
    for first, size, step, last in LARGE_RUNS[S]:
        for i in range(first, last + 1):
            out[i] = size + (i - first) * step
    return out


def in_smallbin_range(size: int, S: int) -> bool:
    return size < MIN_LARGE_SIZE[S]


def smallbin_index(size: int, S: int) -> int:
    return size // 16 + SMALLBIN_CORRECTION[S]


def smallbin_size(index: int, S: int) -> int:
    return (index - SMALLBIN_CORRECTION[S]) * 16


_STARTS = {S: sorted(large_bin_starts(S).items(), key=lambda item: item[1]) for S in LARGE_RUNS}


def largebin_index(size: int, S: int) -> int:
    starts = _STARTS[S]
    return starts[bisect_right([start for _, start in starts], size) - 1][0]


def bin_index(size: int, S: int) -> int:
    """The small or large bin a free chunk of this size is sorted into."""
    return smallbin_index(size, S) if in_smallbin_range(size, S) else largebin_index(size, S)


def fastbin_index(size: int, S: int) -> int:
    return (size >> FAST_SHIFT[S]) - 2


def fastbin_size(index: int, S: int) -> int:
    return (index + 2) << FAST_SHIFT[S]


def tcache_index(size: int, S: int) -> int:
    small = (size - MINSIZE[S]) // 16
    if small < 64:
        return small
    return max(i for i, start in LARGE_TCACHE_START[S].items() if start <= size)


def tcache_size(index: int, S: int) -> int:
    """The chunk size of small tcache bin `index`, or the smallest of a large one."""
    return MINSIZE[S] + index * 16 if index < 64 else LARGE_TCACHE_START[S][index]


def tcache_struct_chunk(version: Tuple[int, int], S: int) -> int:
    return max((since, sizes) for since, sizes in TCACHE_STRUCT_CHUNK if since <= version)[1][S]
