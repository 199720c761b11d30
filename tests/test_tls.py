"""The heuristics that find threads and their malloc TLS variables without libc's symbols, on
memory laid out here by hand (x86-64, TLS variant II: the static TLS blocks sit just below the
thread pointer, which points at the TCB: tcbhead_t {tcb, dtv, self}, tcb == self == tp)."""

from gdb_heap import heuristics
from gdb_heap.layouts import layout_for
from gdb_heap.mappings import Mapping
from gdb_heap.memory import ImageMemory, Reader

R = 0x7FFFF7D80000  # a thread's stack mapping, its TCB near the top
TP = R + 0x7000
TID = 4242
ARENA = 0x7FFFF0000030
HEAP = 0x555555560000  # a heap whose first chunk is a tcache_perthread_struct (0x290 bytes)
TCACHE = HEAP + 0x10
L = layout_for((2, 36), 8)


def image() -> Reader:
    stack = bytearray(0x8000)

    def put(address: int, value: int, size: int = 8) -> None:
        stack[address - R:address - R + size] = value.to_bytes(size, "little")

    put(TP, TP)
    put(TP + 8, 0x5555555592A0)  # dtv: some 8-aligned pointer
    put(TP + 16, TP)
    put(TP + 0x2D0, TID, 4)  # struct pthread's tid
    put(TP - 0x48, ARENA)  # thread_arena, in the static TLS block just below
    put(TP - 0x40, TCACHE)  # tcache, its neighbour
    put(TP - 0x3000, ARENA)  # an older copy further down (the stack): not the nearest
    heap = bytearray(0x1000)
    heap[8:16] = (0x290 | 1).to_bytes(8, "little")
    heap[0x290 + 8:0x290 + 16] = (0x20 | 1).to_bytes(8, "little")
    return Reader(ImageMemory({R: bytes(stack), HEAP: bytes(heap)}), 8)


def test_thread_pointer_by_tid():
    r = image()
    assert heuristics.thread_pointers(r, [(R, R + 0x8000)], [TID]) == {TID: [TP]}
    assert heuristics.thread_pointers(r, [(R, R + 0x8000), (R + 0x7000, R + 0x8000)], [TID]) == {TID: [TP]}
    assert heuristics.thread_pointers(r, [(R, R + 0x8000)], [TID + 1]) == {}


def test_tid_near_the_end_of_readable_memory():
    """A TCB in the last bytes of its mapping: the words up to the mapping's end still count."""
    r = image()
    assert TID in heuristics._tids_near(r, TP)
    stack = bytearray(0x1000)
    tcb = 0x7FFFF7E00000 - 0x200
    stack[0xE00:0xE08] = tcb.to_bytes(8, "little")
    stack[0xE08:0xE10] = (0x1000).to_bytes(8, "little")
    stack[0xE10:0xE18] = tcb.to_bytes(8, "little")
    stack[0xF00:0xF04] = TID.to_bytes(4, "little")
    r2 = Reader(ImageMemory({0x7FFFF7DFF000: bytes(stack)}), 8)
    assert heuristics.thread_pointers(r2, [(0x7FFFF7DFF000, 0x7FFFF7E00000)], [TID]) == {TID: [tcb]}


def test_thread_arena_is_the_nearest_tls_word():
    r = image()
    assert heuristics.tls_arena(r, TP, R, [ARENA]) == (ARENA, TP - 0x48)
    assert heuristics.tls_arena(r, TP, TP - 0x40, [ARENA]) == (None, None)  # not above `low`
    assert heuristics.tls_arena(r, TP, R, [0x7FFFE8000030]) == (None, None)
    base, words = heuristics.tls_slots(r, TP, R)
    assert base == R  # 64 KiB below TP is below the mapping: `low` bounds it
    assert words[-(0x48 // 8)] == ARENA


def test_tcache_next_to_thread_arena():
    r = image()
    assert heuristics.tls_tcache(r, L, TP - 0x48, [(HEAP, HEAP + 0x1000)]) == TCACHE
    assert heuristics.tls_tcache(r, L, TP - 0x48, [(HEAP + 0x1000, HEAP + 0x2000)]) is None  # in no heap


def test_pristine_mp_found_by_its_defaults():
    mp = L.malloc_par
    data = bytearray(0x1000)  # a page: the reader reads whole pages
    base = 0x7FFFF7E12000
    at = 0x100

    def put(name: str, value: int) -> None:
        off, size, _ = mp.fields[name]
        data[at + off:at + off + size] = value.to_bytes(size, "little")

    for name in ("trim_threshold", "top_pad", "mmap_threshold"):
        put(name, 128 * 1024)
    put("n_mmaps_max", 65536)
    r = Reader(ImageMemory({base: bytes(data)}), 8)
    assert heuristics.pristine_mp_candidates(r, L, [(base, base + 0x1000)]) == [base + at]
    put("sbrk_base", 0x555555560000)  # after the first malloc: not pristine
    r = Reader(ImageMemory({base: bytes(data)}), 8)
    assert heuristics.pristine_mp_candidates(r, L, [(base, base + 0x1000)]) == []


def test_banner_version_from_libc_rodata():
    banner = b"GNU C Library (Debian GLIBC 2.36-9) stable release version 2.36.\n"
    rodata = (b"\x00" * 100 + banner).ljust(0x1000, b"\x00")
    r = Reader(ImageMemory({0x7FFFF7F00000: rodata}), 8)
    maps = [Mapping(0x7FFFF7F00000, 0x7FFFF7F00000 + len(rodata), "/lib/libc.so.6", writable=False)]
    assert heuristics.banner_version(r, maps, "/lib/libc.so.6") == (2, 36)
    assert heuristics.banner_version(r, maps, "/lib/other.so") is None
    writable = [Mapping(0x7FFFF7F00000, 0x7FFFF7F00000 + len(rodata), "/lib/libc.so.6", writable=True)]
    assert heuristics.banner_version(r, writable, "/lib/libc.so.6") is None
