"""Live: chunks of chosen sizes sorted by glibc into the small and large bins (c_samples/
large_bins.c), up to the last large bin.  Which bin holds each chunk comes from gdb's walk of
main_arena.bins through glibc's debug info; the bin it should be is tests/handbins.py's table,
worked out by hand from malloc.c's macros; `heap bins --json` must agree with both."""

import pytest

from tests import handbins as hb
from tests.gdbrun import doc, facts, probe, sample


@pytest.fixture(scope="module")
def sorted_bins():
    result = probe(sample("large_bins"), ["heap bins --json"])
    return next(r for r in result["stages"] if r["stage"] == 1)


def freed(record):
    """chunk address -> size, for every run the sample freed (`@ freechunk NAME 0xCHUNK 0xSIZE`)."""
    return {int(addr, 16): int(size, 16) for _, addr, size in facts(record, "freechunk")}


def test_glibc_sorts_each_chunk_into_the_hand_tables_bin(sorted_bins):
    t = sorted_bins["truth"]
    S = t["S"]
    where = {p: int(i) for i, chain in t["bins"].items() for p in chain}
    size_fields = dict((a, s) for a, s in t["chunks"])
    chunks = freed(sorted_bins)
    assert len(chunks) == 21
    for chunk, size in chunks.items():
        assert size_fields[chunk] & ~7 == size, hex(chunk)  # the run merged into one chunk
        assert where.get(chunk) == hb.bin_index(size, S), (hex(size), where.get(chunk))
    # Bins at the edges of every step of largebin_index, the last one included.
    reached = {where[c] for c in chunks}
    assert {97, 98, 111, 112, 113, 120, 121, 123, 124, 125, 126} <= reached
    assert {94, 96} <= reached if S == 8 else {65, 96} <= reached
    assert "1" not in t["bins"]  # the sorter emptied the unsorted bin


def test_heap_bins_matches_gdb_and_the_hand_table(sorted_bins):
    t = sorted_bins["truth"]
    S = t["S"]
    bins = doc(sorted_bins, "heap bins --json")
    assert bins["problems"] == []
    got = {b["index"]: b for b in bins["bins"] if b["kind"] in ("unsorted", "small", "large")}
    assert {i: b["chunks"] for i, b in got.items()} == {int(i): chain for i, chain in t["bins"].items()}
    starts = hb.large_bin_starts(S)
    for i, b in got.items():
        if i >= 64:
            assert (b["kind"], b["size"]) == ("large", starts[i])
        else:
            assert (b["kind"], b["size"]) == ("small", hb.smallbin_size(i, S))
        assert b["count"] == len(b["chunks"])
