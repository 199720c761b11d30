"""gdb_heap.memory's Reader: exact values (unsigned words whatever the width), the runs it serves
without reading again (counted with ImageMemory.reads: bulk reads are the project's rule), and
an uncached or cleared reader never answering from bytes read before."""

import pytest

from gdb_heap import memory
from gdb_heap.errors import MemoryReadError
from gdb_heap.memory import BLOCK, PAGE, ImageMemory, Reader

BASE = 0x7F0000000000
LONE = 0x7F0000100000 + 3 * PAGE  # one readable page inside an otherwise unreadable block


def selfish(start: int, length: int) -> bytearray:
    """Words holding their own address."""
    return bytearray(b"".join(a.to_bytes(8, "little") for a in range(start, start + length, 8)))


def image() -> ImageMemory:
    return ImageMemory({BASE: selfish(BASE, 3 * BLOCK), LONE: selfish(LONE, PAGE)})


def test_unsigned_elements_of_every_width():
    ones = bytes([0xFF] * PAGE)
    r = Reader(ImageMemory({BASE: ones}), 8)
    assert r.array(BASE, 2, 1) == (0xFF, 0xFF)
    assert r.array(BASE, 2, 2) == (0xFFFF, 0xFFFF)
    assert r.array(BASE, 2, 4) == (0xFFFFFFFF, 0xFFFFFFFF)
    assert r.array(BASE, 2, 8) == (2**64 - 1, 2**64 - 1)
    _, words = r.block_words(BASE)
    assert words[0] == 2**64 - 1
    r4 = Reader(ImageMemory({0x70000000: ones}), 4)
    _, words4 = r4.block_words(0x70000000)
    assert words4[0] == 0xFFFFFFFF


def test_unpacker_for_any_count():
    r = Reader(image(), 8)
    assert r.unpacker(3).size == 24 and r.unpacker(7).size == 56
    assert r.unpacker(8).unpack(bytes(selfish(BASE, 64))) == tuple(range(BASE, BASE + 64, 8))
    assert r.unpacker(9).size == 72


@pytest.fixture
def full(monkeypatch):
    """A reader whose cache has no room: blocks are read for the one walk that asks."""
    monkeypatch.setattr(memory, "CACHE_BLOCKS", 0)
    img = image()
    return img, Reader(img, 8)


def test_block_words_past_the_cache_read_the_whole_block_or_page(full):
    img, r = full
    for address in (BASE + BLOCK + 3 * PAGE + 8, BASE + BLOCK + 3 * PAGE + 9, BASE + BLOCK + 0x48):
        start, words = r.block_words(address)
        assert start == BASE + BLOCK and len(words) == BLOCK // 8 and words[9] == BASE + BLOCK + 0x48, hex(address)
    start, words = r.block_words(LONE + 0x11)  # its block is unreadable: its page
    assert start == LONE and len(words) == PAGE // 8 and words[2] == LONE + 0x10


def test_the_block_a_walk_read_serves_the_next_reads(full):
    img, r = full
    r.block_words(BASE)
    reads = img.reads
    start, data = r.span(BASE, BLOCK)  # the whole block, from its first byte
    assert (start, len(data)) == (BASE, BLOCK)
    start, data = r.span(BASE + BLOCK - 16, 16)  # its last two words
    assert (start, len(data)) == (BASE, BLOCK)
    assert r.read(BASE + 8, 8) == (BASE + 8).to_bytes(8, "little")
    assert img.reads == reads
    # two blocks walked: both kept (a walk hands out its chunks a block behind)
    r.block_words(BASE + BLOCK)
    reads = img.reads
    assert r.read(BASE + 16, 8) == (BASE + 16).to_bytes(8, "little")
    assert r.read(BASE + BLOCK + 16, 8) == (BASE + BLOCK + 16).to_bytes(8, "little")
    assert img.reads == reads


def test_span_at_address_zero_is_cached_like_any_other():
    img = ImageMemory({0: bytes(PAGE)})
    r = Reader(img, 8)
    start, data = r.span(0, 16)
    assert (start, len(data)) == (0, PAGE)
    r.span(0x100, 16)
    assert img.reads == 2  # the block (unreadable), then the page


def test_an_uncached_reader_sees_every_change():
    buf = bytearray(BLOCK)
    r = Reader(ImageMemory({BASE: buf}), 8, cache=False)
    for step in range(1, 4):
        r.block_words(BASE + 8 * step)
        r.block_words(BASE + BLOCK - 8)
        buf[0:8] = step.to_bytes(8, "little")
        assert r.word(BASE) == step and r.read(BASE, 1) == bytes([step])
        assert r.span(BASE, 8)[1][:1] == bytes([step])


def test_clear_forgets_every_byte_read():
    buf = bytearray(2 * BLOCK)
    r = Reader(ImageMemory({BASE: buf}), 8)
    r.block_words(BASE)
    r.block_words(BASE + BLOCK)
    assert r.word(BASE) == 0 and r.word(BASE + BLOCK) == 0
    buf[0:8] = (7).to_bytes(8, "little")
    buf[BLOCK:BLOCK + 8] = (9).to_bytes(8, "little")
    r.clear()
    assert r.words(BASE + BLOCK, 1) == (9,)  # the run read last first
    assert r.word(BASE) == 7 and r.read(BASE + BLOCK, 1) == b"\x09"
    assert r.span(BASE, 8)[1][:1] == b"\x07"
    with pytest.raises(MemoryReadError):
        r.read(0, 1)  # nothing kept at address 0 either


def test_overlapping_regions_the_lowest_start_first_then_the_first_added():
    img = ImageMemory({0x1000: b"\xAA" * 0x2000})
    img.add(0x1800, b"\x00" * 0x100)
    img.add(0x1000, b"\x11" * 0x10)
    assert img.read(0x1800, 4) == b"\xAA" * 4
    assert img.read(0x1000, 4) == b"\xAA" * 4
    low = ImageMemory({0x2000: b"\x00" * 0x10})
    low.add(0x1000, b"\xFF" * 0x2000)
    assert low.read(0x2000, 4) == b"\xFF" * 4


def test_order_and_unsigned_words():
    ones = bytes([0xFF] * PAGE)
    r = Reader(ImageMemory({BASE: ones}), 8)
    assert r.order == "little" and Reader(image(), 8, little_endian=False).order == "big"
    assert r.word(BASE) == 2**64 - 1 and r.words(BASE, 2) == (2**64 - 1, 2**64 - 1)
    assert Reader(ImageMemory({0x70000000: ones}), 4).word(0x70000000) == 0xFFFFFFFF


def test_word_blocks_are_the_cached_blocks_as_words():
    r = Reader(image(), 8)
    assert r.word_blocks() == {}
    r.word(BASE + BLOCK + 8)
    blocks = r.word_blocks()
    assert list(blocks) == [(BASE + BLOCK) >> 16] and blocks[(BASE + BLOCK) >> 16][1] == BASE + BLOCK + 8
    r.word(LONE)  # a page, not a block: not among them
    assert list(r.word_blocks()) == [(BASE + BLOCK) >> 16]
    ones = Reader(ImageMemory({BASE: bytes([0xFF] * BLOCK)}), 8)
    ones.word(BASE)
    assert ones.word_blocks()[BASE >> 16][0] == 2**64 - 1
    four = Reader(ImageMemory({0x70000000: bytes([0xFF] * BLOCK)}), 4)
    four.word(0x70000000)
    assert len(four.word_blocks()[0x7000]) == BLOCK // 4 and four.word_blocks()[0x7000][0] == 0xFFFFFFFF
    # only where the target's byte order is this machine's (x86), and never uncached
    big = Reader(image(), 8, little_endian=False)
    big.word(BASE)
    assert big.word_blocks() == {}
    uncached = Reader(image(), 8, cache=False)
    uncached.word(BASE)
    assert uncached.word_blocks() == {}


def test_a_fresh_reader_holds_nothing():
    r = Reader(ImageMemory({0: bytes(PAGE)}), 8)
    assert r.read(0, 4) == bytes(4)  # address 0 is an address like any other
    empty = Reader(ImageMemory({}), 8)
    with pytest.raises(MemoryReadError, match="cannot read 1 bytes at 0x0;"):
        empty.read(0, 1)
    with pytest.raises(MemoryReadError, match="cannot read 8 bytes at 0x0;"):
        empty.word(0)


def test_image_memory_edges():
    img = image()
    assert img.read(BASE, 0) == b""
    for address, length in ((BASE, -1), (-8, 8), (BASE + 3 * BLOCK - 4, 8)):
        with pytest.raises(MemoryReadError, match=f"cannot read {length} bytes at"):
            img.read(address, length)


def test_the_walks_blocks_and_the_last_run_serve_reads_to_their_edges(monkeypatch):
    """Cache room for one block: block 0 cached; blocks 1 and 2 read for a walk (kept as the
    walk's block and the one before it); then block 0 read again is the last run.  Reads at
    each run's first and last bytes come from what was read, not from the memory again."""
    monkeypatch.setattr(memory, "CACHE_BLOCKS", 1)
    img = image()
    r = Reader(img, 8)
    r.word(BASE)
    r.block_words(BASE + BLOCK)
    r.block_words(BASE + 2 * BLOCK)
    reads = img.reads
    assert r.words(BASE + 2 * BLOCK, 1) == (BASE + 2 * BLOCK,)  # the last run: block 2
    assert r.words(BASE + 3 * BLOCK - 8, 1) == (BASE + 3 * BLOCK - 8,)  # to its last word
    r.word(BASE + 8)  # block 0, cached: now the last run
    for address in (BASE + 2 * BLOCK, BASE + 3 * BLOCK - 8, BASE + BLOCK, BASE + 2 * BLOCK - 8, BASE,
                    BASE + BLOCK - 8):
        assert r.read(address, 8) == address.to_bytes(8, "little"), hex(address)
    assert img.reads == reads
    r.block_words(BASE + 2 * BLOCK)  # past the cache's room a walk reads its block again: once
    assert r.read(BASE + BLOCK - 8, 8) == (BASE + BLOCK - 8).to_bytes(8, "little")  # block 0 from the cache
    assert r.span(BASE + BLOCK - 16, 16)[0] == BASE  # its last two words: the cached block
    assert img.reads == reads + 1


def test_cached_reads_at_any_alignment_and_eight_words():
    img = image()
    r = Reader(img, 8)
    end = BASE + 3 * BLOCK
    assert r.read(end - 15, 8) == selfish(end - 16, 16)[1:9]  # an odd address in the last block
    assert r.words(BASE, 8) == tuple(range(BASE, BASE + 64, 8))
    reads = img.reads
    start, words = r.block_words(BASE + 8)  # block 0 is cached: no read for the walk
    assert start == BASE and words[1] == BASE + 8 and img.reads == reads


def test_errors_name_the_length_asked():
    r = Reader(image(), 8)
    with pytest.raises(MemoryReadError, match="cannot read 8 bytes at"):
        r.read(-8, 8)
    with pytest.raises(MemoryReadError, match="cannot read 8 bytes at"):
        r.span(-8, 8)
    r.word(BASE)
    r.clear()
    with pytest.raises(MemoryReadError, match="cannot read 1 bytes at 0x0;"):
        r.read(0, 1)


def test_words_of_the_two_blocks_a_walk_read_last_need_no_read(full):
    # heap check reads prev_size words of the batch before the one the walk is reading
    img, r = full
    r.block_words(BASE)
    r.block_words(BASE + BLOCK)
    r.span(BASE + 2 * BLOCK, 8)  # another read between (a bin's link): the run last used moves
    reads = img.reads
    assert r.words(BASE + 0x40, 2) == (BASE + 0x40, BASE + 0x48)
    assert r.words(BASE + BLOCK + 0x40, 1) == (BASE + BLOCK + 0x40,)
    assert img.reads == reads
    assert r.words(BASE + 2 * BLOCK + 0x40, 1) == (BASE + 2 * BLOCK + 0x40,)  # neither: read
    assert img.reads == reads + 1


def test_load_run_reads_the_blocks_below_an_address_in_one_read():
    img = image()
    r = Reader(img, 8)
    assert r.load_run(BASE + 2 * BLOCK + 0x18, 3) == 3
    assert img.reads == 1
    blocks = r.word_blocks()
    assert sorted(blocks) == [(BASE >> 16) + k for k in range(3)]
    assert blocks[(BASE >> 16) + 1][5] == BASE + BLOCK + 40
    # not kept in the cache: other reads read again, and the next run drops them
    assert r.words(BASE + 0x100, 1) == (BASE + 0x100,) and img.reads == 2
    assert r.load_run(LONE, 1) == 0  # a block not readable whole: no run, and nothing dropped
    assert sorted(r.word_blocks()) == [(BASE >> 16) + k for k in range(3)]


def test_load_run_stops_at_a_block_it_has_and_halves_a_run_reaching_unreadable_memory():
    img = image()
    r = Reader(img, 8)
    r.load_run(BASE, 1)
    assert r.load_run(BASE + 2 * BLOCK, 64) == 2  # down to the block it has
    img2 = image()
    r2 = Reader(img2, 8)
    # 64 blocks below BASE + 2 * BLOCK reach below the image: 64 fails, 32, 16, 8, 4 fail, 2 reads
    assert r2.load_run(BASE + BLOCK, 64) == 2
    assert img2.reads == 6
    # the next run above that floor starts no lower
    assert r2.load_run(BASE + 2 * BLOCK, 64) == 1 and img2.reads == 7


def test_load_run_keeps_blocks_until_the_next_run(full):
    img, r = full
    assert r.load_run(BASE + BLOCK, 2) == 2
    assert sorted(r.word_blocks()) == [BASE >> 16, (BASE >> 16) + 1]
    assert r.load_run(BASE + 2 * BLOCK, 1) == 1
    assert sorted(r.word_blocks()) == [(BASE >> 16) + 2]


def test_load_run_does_nothing_for_an_uncached_reader():
    img = image()
    r = Reader(img, 8, cache=False)
    assert r.load_run(BASE, 4) == 0 and img.reads == 0 and not r.runs_possible()


def test_exact_span_reads_just_the_bytes_and_loads_no_block():
    img = image()
    r = Reader(img, 8)
    start, data = r.exact_span(BASE + 0x28, 24)
    assert (start, bytes(data)) == (BASE + 0x28, bytes(selfish(BASE + 0x28, 24))) and img.reads == 1
    assert r.word_blocks() == {}  # nothing cached: span() would have loaded the block
    r.span(BASE + 0x40, 8)  # loads the block
    reads = img.reads
    start, data = r.exact_span(BASE + 0x1000, 16)  # served by the cached block
    assert start == BASE and img.reads == reads
    with pytest.raises(MemoryReadError):
        r.exact_span(BASE + 3 * BLOCK + 0x10, 8)


def test_words_at_from_the_walks_blocks_and_else_read():
    """words_at: the two blocks the walk read last answer without a read; any other address is
    read (one read each), a misaligned one as word() reads it, an unreadable one is None."""
    m = image()
    r = Reader(m, 8)
    r.block_words(BASE)
    r.block_words(BASE + BLOCK)  # the walk's last two blocks: the first two
    reads = m.reads
    inside = [BASE, BASE + 8, BASE + BLOCK - 8, BASE + BLOCK, BASE + 2 * BLOCK - 8]
    assert r.words_at(inside) == inside and m.reads == reads
    odd = BASE + 2 * BLOCK + 0x10
    assert r.words_at([BASE + 8, odd, BASE + 3, 0x1000]) == [BASE + 8, odd, r.word(BASE + 3), None]
    assert Reader(m, 8, False).words_at([BASE]) == [int.from_bytes(BASE.to_bytes(8, "little"), "big")]
