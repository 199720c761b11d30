"""A main arena that is not contiguous (c_samples/noncontig.c): the break blocked by a mapping
(sysmalloc falls back to mmap) or moved by the program itself (a foreign sbrk).  Truth: the
pointers the sample prints, its mallinfo2() snapshot, its sbrk(0) before and after each foreign
sbrk, gdb's reading of main_arena's bins through glibc's debug info, and glibc's fencepost
layout from malloc.c's sysmalloc (two chunks of CHUNK_HDR_SZ, 2 * SIZE_SZ, at the old top's end)."""

import pytest

from tests.gdbrun import doc, facts, no_traceback, probe, sample

COMMANDS = ["heap arenas --json", "heap chunks --json", "heap bins --json", "heap check --json", "heap check",
            "heap top --json", "heap", "heap arenas"]
MALLOC_ALIGNMENT = 16


@pytest.fixture(scope="module", params=["mmap", "sbrk"])
def stage(request):
    result = probe(sample("noncontig"), COMMANDS, [request.param], chunk_for_pointers=True)
    assert "probe_error" not in result, result.get("probe_error")
    (record,) = result["stages"]
    return request.param, record


def main_arena(record):
    (arena,) = [a for a in doc(record, "heap arenas --json")["arenas"] if a["main"]]
    return arena


def test_regions_start_where_sysmalloc_carried_on(stage):
    mode, record = stage
    S = record["truth"]["S"]
    heaps = main_arena(record)["heaps"]
    assert heaps[0]["start"] == record["truth"]["sbrk_base"]
    assert len(heaps) >= 2
    ends = sorted(h["end"] for h in heaps)
    starts = sorted(h["start"] for h in heaps)
    assert all(e <= s for s, e in zip(starts[1:], ends)), "regions overlap"
    # Every region but the newest (top's) ends in glibc's fencepost: two chunks of 2 * SIZE_SZ.
    fenced = [h for h in heaps if h.get("fencepost") is not None]
    assert len(fenced) == len(heaps) - 1
    assert [h for h in heaps if h.get("fencepost") is None][0]["end"] == doc(record, "heap top --json")["end"]
    for h in fenced:
        assert h["end"] - h["fencepost"] in (4 * S, 4 * S + 8)  # i386: the old top kept 8 bytes more
    if mode == "sbrk":
        # Each foreign sbrk moved the break from glibc's heap end: the next region starts at the
        # first chunk at or after the new break whose user pointer is aligned.
        befores = [int(f[1], 16) for f in facts(record, "sbrk") if f[0] == "before_foreign"]
        afters = [int(f[1], 16) for f in facts(record, "sbrk") if f[0] == "after_foreign"]
        firsts = []
        for after in afters:
            c = after
            while (c + 2 * S) % MALLOC_ALIGNMENT:
                c += S
            firsts.append(c)
        assert sorted(h["start"] for h in heaps[1:]) == firsts
        assert sorted(h["end"] for h in fenced) == befores
        gaps = sum(h["start"] - b for h, b in zip(sorted(heaps[1:], key=lambda h: h["start"]), befores))
    else:
        gaps = 0
    arena_bytes = int(facts(record, "mallinfo2")[0][0])
    assert arena_bytes == main_arena(record)["system_mem"] == record["truth"]["system_mem"]
    # glibc counts every region and, while contiguous, the foreign bytes between them.
    assert sum(h["end"] - h["start"] for h in heaps) + gaps == arena_bytes


def test_chunks_are_the_printed_pointers(stage):
    _, record = stage
    S = record["truth"]["S"]
    chunks = doc(record, "heap chunks --json")["chunks"]
    assert doc(record, "heap chunks --json")["problems"] == []
    heaps = main_arena(record)["heaps"]
    for c in chunks:  # every chunk in one region, before its fencepost
        (h,) = [h for h in heaps if h["start"] <= c["address"] < h["end"]]
        assert c["address"] + c["size"] <= h.get("fencepost", h["end"])
    freed = {f[0] for f in facts(record, "free")}
    ptrs = {f[0]: int(f[1], 16) for f in facts(record, "ptr")}
    by_user = {c["user_address"]: c for c in chunks}
    for name, p in ptrs.items():
        assert p in by_user, f"{name} {p:#x} is not a chunk"
        # A freed chunk next to top merged into it (free's consolidation).
        assert by_user[p]["state"] in (("free", "top") if name in freed else ("in_use",)), name
    # Besides the sample's: before p, the tcache struct, the malloc_info stream and (static
    # programs) what startup allocated: each chunk gdb's own walk from sbrk_base finds before p;
    # and what was left of each old top, which sysmalloc freed right before its fencepost.
    others = [c for c in chunks if c["user_address"] not in ptrs.values() and c["state"] != "top"]
    fenceposts = {h.get("fencepost") for h in heaps}
    before_p = [c for c in others if c["address"] < ptrs["p"]]
    assert [c["address"] for c in before_p] == [a for a, _ in record["truth"]["chunks"] if a < ptrs["p"] - 2 * S]
    assert all(c["state"] == "in_use" for c in before_p)
    for c in others:
        if c not in before_p:
            assert c["state"] == "free" and c["address"] + c["size"] in fenceposts, c
    # Chunks per region: the sample's pointers that lie in it.
    for h in heaps:
        inside = sorted(c["user_address"] for c in chunks if h["start"] <= c["address"] < h["end"]
                        and c["user_address"] in ptrs.values())
        assert inside == sorted(p for p in ptrs.values() if h["start"] <= p - 2 * S < h["end"])


def test_bytes_equal_mallinfo2(stage):
    _, record = stage
    arena_bytes, ordblks, uordblks, fordblks = (int(x) for x in facts(record, "mallinfo2")[0])
    chunks = doc(record, "heap chunks --json")["chunks"]
    top = [c for c in chunks if c["state"] == "top"]
    binned = [c for c in chunks if c["state"] == "free" and c["bin"] != "tcache"]
    # mallinfo counts top and the binned chunks as free; tcache chunks as in use.
    assert fordblks == sum(c["size"] for c in binned + top)
    assert ordblks == 1 + len([c for c in binned if c["bin"] != "fast"])
    in_use = sum(c["size"] for c in chunks if c["state"] == "in_use" or c["bin"] == "tcache")
    heaps = main_arena(record)["heaps"]
    # The rest of what glibc counts in use: each fencepost pair (and i386's 8 bytes after it),
    # the bytes before each region's first chunk (alignment), and the foreign sbrk's bytes
    # between regions (while contiguous: glibc adds brk - old_end to system_mem).
    fences = sum(h["end"] - h["fencepost"] for h in heaps if h.get("fencepost") is not None)
    leads = sum(min(c["address"] for c in chunks if h["start"] <= c["address"] < h["end"]) - h["start"]
                for h in heaps)
    befores = [int(f[1], 16) for f in facts(record, "sbrk") if f[0] == "before_foreign"]
    gaps = sum(h["start"] - b for h, b in zip(sorted(heaps[1:], key=lambda h: h["start"]), befores))
    assert uordblks == in_use + fences + leads + gaps
    assert arena_bytes == uordblks + fordblks


def test_bins_equal_debug_info(stage):
    _, record = stage
    bins = doc(record, "heap bins --json")["bins"]
    mine = {str(b["index"]): b["chunks"] for b in bins if b["kind"] in ("unsorted", "small", "large")}
    assert mine == record["truth"]["bins"]
    assert doc(record, "heap top --json")["address"] == record["truth"]["top"]


def test_check_finds_no_problem(stage):
    _, record = stage
    assert doc(record, "heap check --json")["problems"] == []
    r = record["commands"]["heap check"]
    assert r["ok"] and "no problems found" in r["out"], r["out"]
    for c in ("heap", "heap arenas"):
        assert record["commands"][c]["ok"], record["commands"][c]["out"]
        no_traceback(record["commands"][c]["out"])
        assert "GiB" not in record["commands"][c]["out"]
    assert "fencepost" in record["commands"]["heap arenas"]["out"]


def test_heap_chunk_on_every_pointer(stage):
    _, record = stage
    S = record["truth"]["S"]
    for _, p, _ in facts(record, "ptr"):
        got = doc(record, f"heap chunk {p} --json")
        assert (got["address"], got["understood_as"]) == (int(p, 16) - 2 * S, "user_pointer")
        assert got["arena"] == record["truth"]["main_arena"]
