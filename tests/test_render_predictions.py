"""render.py's text and JSON of heap try-free, try-malloc and fake-chunks, exact, on results
written by hand (paths.py's dataclasses; what the predictions themselves compute is
tests/test_paths.py's)."""

from __future__ import annotations

from gdb_heap import render
from gdb_heap.paths import FakeChunk, FreeResult, MallocResult
from gdb_heap.style import Style

PLAIN = Style(False)


def test_free_text_and_doc():
    r = FreeResult(steps=["a step", "another"], address=0x1010, chunk=0x1000, to="unsorted", bin_index=1,
                   merged_with=[0xFC0, 0x1100], top_after=0x2000, trimmed=0x1000)
    assert list(render.free_lines(r, PLAIN)) == [
        "  a step", "  another", "free(0x1010): chunk 0x1000 goes to unsorted, merged with 0xfc0, 0x1100",
        "top after: 0x2000; trimmed 0x1000 bytes"]
    plain = FreeResult(address=0x1010, chunk=0x1000, to="tcache[0]", top_after=0x2000)
    assert list(render.free_lines(plain, PLAIN)) == ["free(0x1010): chunk 0x1000 goes to tcache[0]",
                                                     "top after: 0x2000"]
    assert list(render.free_lines(FreeResult(address=0x1010, chunk=0x1000, to="fast[0]"), PLAIN)) == [
        "free(0x1010): chunk 0x1000 goes to fast[0]"]
    assert render.free_doc(r) == {
        "address": 0x1010, "chunk": 0x1000, "aborts": None, "failed_check": None, "to": "unsorted", "bin_index": 1,
        "merged_with": [0xFC0, 0x1100], "top_after": 0x2000, "trimmed": 0x1000, "crashes": None, "gave_up": False,
        "steps": ["a step", "another"]}


def test_endings():
    aborts = FreeResult(steps=["s"], aborts="free(): invalid pointer", failed_check="FREE_INVALID_POINTER",
                        address=0x1010, chunk=0x1000)
    assert list(render.free_lines(aborts, PLAIN)) == ["  s", "glibc aborts: free(): invalid pointer"]
    crashes = MallocResult(crashes="reads 0x10, not readable", request=0x18)
    assert list(render.malloc_lines(crashes, PLAIN)) == ["the process crashes: reads 0x10, not readable"]
    loops = MallocResult(gave_up=True, request=0x18)
    assert list(render.malloc_lines(loops, PLAIN)) == ["no answer: the path loops in damaged links"]
    coloured = list(render.free_lines(aborts, Style(True)))[-1]
    assert coloured != "glibc aborts: free(): invalid pointer" and "glibc aborts: free(): invalid pointer" in coloured


def test_malloc_text_and_doc():
    r = MallocResult(steps=["x"], side_effects=["fast[0] goes to tcache[0]"], request=0x18, chunk=0x1000,
                     user_address=0x1010, source="fast", bin_index=0, top_after=0x3000, call="calloc")
    assert list(render.malloc_lines(r, PLAIN)) == ["  x", "calloc(0x18) returns 0x1010 (chunk 0x1000) from fast[0]"]
    assert list(render.malloc_lines(MallocResult(request=0x18, chunk=0x1000, user_address=0x1010, source="top"),
                                     PLAIN)) == ["malloc(0x18) returns 0x1010 (chunk 0x1000) from top"]
    # a bin kind without an index is named alone
    assert list(render.malloc_lines(MallocResult(request=0x18, chunk=0x1000, user_address=0x1010, source="small"),
                                     PLAIN)) == ["malloc(0x18) returns 0x1010 (chunk 0x1000) from small"]
    assert list(render.malloc_lines(MallocResult(request=0x20000, source="mmap"), PLAIN)) == [
        "malloc(0x20000) returns a new mapping (mmap)"]
    assert list(render.malloc_lines(MallocResult(request=0x20000, call="realloc"), PLAIN)) == [
        "realloc(0x20000) returns NULL"]
    assert render.malloc_doc(r) == {
        "request": 0x18, "call": "calloc", "chunk": 0x1000, "user_address": 0x1010, "from": "fast", "bin_index": 0,
        "aborts": None, "failed_check": None, "crashes": None, "gave_up": False, "top_after": 0x3000,
        "side_effects": ["fast[0] goes to tcache[0]"], "steps": ["x"]}


def test_fake_chunks_text_and_doc():
    found = [FakeChunk(0x601FF0, 0x7F, 0x78, ["fast[5]"], 0x20), FakeChunk(0x602000, 0x31, 0x30,
                                                                          ["fast[1]", "tcache[1]"], 0x10)]
    assert list(render.fake_lines(0x602010, found, PLAIN)) == [
        "             chunk          size field  distance  fits",
        "          0x601ff0                0x7f      0x20  fast[5]",
        "          0x602000                0x31      0x10  fast[1], tcache[1]"]
    assert list(render.fake_lines(0x602010, [], PLAIN)) == [
        "no place before 0x602010 holds a size glibc's fast bin or tcache checks take"]
    assert render.fake_doc(0x602010, found[:1]) == {"target": 0x602010, "candidates": [
        {"chunk": 0x601FF0, "size_field": 0x7F, "size": 0x78, "fits": ["fast[5]"], "distance": 0x20}]}
