"""gdb_heap.memory's Reader on an image whose every word holds its own address (so any word read
can be checked by hand), across block and page edges, with the cache full, big-endian."""

import pytest

from gdb_heap import memory
from gdb_heap.errors import MemoryReadError
from gdb_heap.memory import BLOCK, PAGE, ImageMemory, Reader

BASE = 0x7F0000000000  # 3 blocks of words holding their own address
LONE = 0x7F0000100000 + 3 * PAGE  # one readable page inside an otherwise unreadable block


def selfish(start: int, length: int, word: int = 8, order: str = "little") -> bytes:
    return b"".join((a & ((1 << 8 * word) - 1)).to_bytes(word, order)  # type: ignore[arg-type]
                    for a in range(start, start + length, word))


def image(word: int = 8, order: str = "little") -> ImageMemory:
    base = BASE if word == 8 else 0x70000000
    lone = LONE if word == 8 else 0x70100000 + 3 * PAGE
    return ImageMemory({base: selfish(base, 3 * BLOCK, word, order), lone: selfish(lone, PAGE, word, order)},
                       lacks=[(0x7F0000200000, 0x7F0000201000)])


def test_words_anywhere_in_the_blocks():
    r = Reader(image(), 8)
    for a in (BASE, BASE + 8, BASE + BLOCK - 8, BASE + BLOCK, BASE + 3 * BLOCK - 8):
        assert r.word(a) == a
    assert r.words(BASE + BLOCK - 16, 4) == (BASE + BLOCK - 16, BASE + BLOCK - 8, BASE + BLOCK, BASE + BLOCK + 8)
    assert r.words(BASE, 9) == tuple(BASE + 8 * i for i in range(9))
    assert r.read(BASE + BLOCK - 4, 8) == selfish(BASE + BLOCK - 8, 16)[4:12]
    assert r.read(BASE, 0) == b"" and r.read(BASE, -1) == b""


def test_unaligned_word_and_recent_run():
    r = Reader(image(), 8)
    r.word(BASE)
    raw = selfish(BASE, 16)
    assert r.word(BASE + 4) == int.from_bytes(raw[4:12], "little")
    start, data = r.span(BASE + 0x100, 0x20)
    off = BASE + 0x100 - start
    assert off >= 0 and int.from_bytes(bytes(data[off:off + 8]), "little") == BASE + 0x100


def test_unreadable_and_lone_page():
    r = Reader(image(), 8)
    with pytest.raises(MemoryReadError):
        r.word(BASE + 3 * BLOCK)
    with pytest.raises(MemoryReadError):
        r.word(BASE - 8)
    with pytest.raises(MemoryReadError):
        r.read(BASE + 3 * BLOCK - 4, 8)  # runs off the end
    assert r.word(LONE) == LONE and r.word(LONE + PAGE - 8) == LONE + PAGE - 8
    with pytest.raises(MemoryReadError):
        r.word(LONE - 8)
    with pytest.raises(MemoryReadError):
        r.word(LONE + PAGE)
    assert r.readable(LONE) and not r.readable(LONE + PAGE) and r.readable(BASE)
    with pytest.raises(MemoryReadError):
        r.read(-8, 8)
    with pytest.raises(MemoryReadError):
        r.read((1 << 64) - 4, 8)
    assert r.missing(0x7F0000200000) and not r.missing(0x7F0000201000) and not r.missing(BASE)


def test_span_block_words_and_array():
    r = Reader(image(), 8)
    start, data = r.span(BASE + BLOCK + 0x40, 0x10)
    assert start <= BASE + BLOCK + 0x40 and start + len(data) >= BASE + BLOCK + 0x50
    off = BASE + BLOCK + 0x40 - start
    assert int.from_bytes(bytes(data[off:off + 8]), "little") == BASE + BLOCK + 0x40
    start, words = r.block_words(BASE + BLOCK + 0x48)
    assert start == BASE + BLOCK and words[9] == BASE + BLOCK + 0x48 and len(words) == BLOCK // 8
    start, words = r.block_words(LONE + 0x10)
    assert start == LONE and words[2] == LONE + 0x10 and len(words) == PAGE // 8
    assert r.array(BASE + 8, 4, 2) == ((BASE + 8) & 0xFFFF, ((BASE + 8) >> 16) & 0xFFFF, (BASE + 8) >> 32 & 0xFFFF, 0)
    assert r.array(BASE, 2, 4) == (BASE & 0xFFFFFFFF, BASE >> 32)
    assert r.array(BASE, 3, 1) == (BASE & 0xFF, (BASE >> 8) & 0xFF, (BASE >> 16) & 0xFF)


def test_i386_and_big_endian():
    r = Reader(image(4), 4)
    assert r.word(0x70000004) == 0x70000004 and r.words(0x70000000 + BLOCK - 4, 2) == (0x70010000 - 4, 0x70010000)
    with pytest.raises(MemoryReadError):
        r.read(0xFFFFFFFE, 4)  # past a 32-bit address space
    big = Reader(image(8, "big"), 8, little_endian=False)
    assert big.word(BASE + 8) == BASE + 8 and big.array(BASE, 2, 4) == (BASE >> 32, BASE & 0xFFFFFFFF)
    start, words = big.block_words(BASE)
    assert start == BASE


def test_full_cache_reads_exactly_what_is_asked(monkeypatch):
    monkeypatch.setattr(memory, "CACHE_BLOCKS", 1)
    img = image()
    r = Reader(img, 8)
    assert r.word(BASE) == BASE  # fills the cache's one block
    reads = img.reads
    assert r.word(BASE + 2 * BLOCK + 8) == BASE + 2 * BLOCK + 8  # not cached: one read of one word
    assert img.reads == reads + 1
    assert r.words(BASE + BLOCK, 3) == (BASE + BLOCK, BASE + BLOCK + 8, BASE + BLOCK + 16)
    start, data = r.span(BASE + 2 * BLOCK, 16)
    assert start == BASE + 2 * BLOCK and len(data) == 16
    start, words = r.block_words(BASE + 2 * BLOCK + 8)
    assert start == BASE + 2 * BLOCK and words[1] == BASE + 2 * BLOCK + 8
    start, words = r.block_words(LONE + 8)  # its block is unreadable: its page
    assert start == LONE and words[1] == LONE + 8
    r.clear()
    assert r.word(BASE + BLOCK) == BASE + BLOCK


def test_the_cache_holds_64_mib():
    assert Reader(image(), 8).cache_blocks == 1024  # 64 KiB blocks
