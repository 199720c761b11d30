"""The walk past damage in a real process (c_samples/corrupt.c), and `heap chunk` on headers no
walk reaches: swallowed chunks, fake chunks in .bss and on the stack that a tcache bin lists.

The truth is the sample's printed pointers ("@ ptr NAME 0xADDR REQUEST"), the addresses of its
damaged and fake chunks, and sizes by hand: every pointer here is malloc(3 * SIZE_SZ), a
MINSIZE chunk (4 * SIZE_SZ); the guards are malloc(40), 0x30 chunks on x86-64 and i386;
BAD_SIZE is 8 | PREV_INUSE.
"""

from typing import Dict

from tests.gdbrun import CONFIG, doc, facts, no_traceback, probe, sample


def pointers(rec) -> Dict[str, int]:
    return {f[0]: int(f[1], 16) for f in facts(rec, "ptr")}


def addresses(rec) -> Dict[str, int]:
    return {f[0]: int(f[1], 16) for f in facts(rec, "addr")}


def stage(name: str, commands=()):
    record = probe(sample("corrupt"), ["heap chunks --json", "heap check --json", "heap --json", *commands],
                   [name, "2>", "/dev/null"], chunk_for_pointers=True, truth=False)
    no_traceback(record["gdb_stderr"])
    assert len(record["stages"]) == 1
    return record["stages"][0]


def test_overflow_far_walk_resumes_and_every_pointer_has_a_chunk():
    rec = stage("overflow_far")
    S = int(facts(rec, "size_t")[0][0])
    H, minsize = 2 * S, 4 * S
    ptr = pointers(rec)
    chunks = {c["address"]: c for c in doc(rec, "heap chunks --json")["chunks"]}
    e, f = ptr["e"] - H, ptr["f"] - H
    # After the damage, as laid out: e (freed: tcache[0]), its guard (0x30), f (size 8).
    assert (chunks[e]["size"], chunks[e]["state"], chunks[e]["bin"]) == (minsize, "free", "tcache")
    assert (chunks[e + minsize]["size"], chunks[e + minsize]["state"]) == (0x30, "in_use")
    assert chunks[f]["size"] == 8
    assert addresses(rec)["damaged"] == f
    # c and d lie inside b's bogus size: not walked.
    assert ptr["c"] - H not in chunks and ptr["d"] - H not in chunks
    problems = doc(rec, "heap check --json")["problems"]
    b = ptr["b"] - H
    assert any(p["address"] == b and f"resumes at {e:#x}" in p["message"] for p in problems)
    assert any(p["address"] == f and "invalid size 0x8" in p["message"] for p in problems)
    # The overview counts the resumed chunks: e in the tcache.
    assert doc(rec, "heap --json")["counts"]["tcache"] == 1
    for name, p in ptr.items():
        one = doc(rec, f"heap chunk {p:#x} --json")
        assert one["address"] == p - H and one["understood_as"] == "user_pointer", name
        assert one["reached_by_walk"] == (name not in ("c", "d")), name
        if name in ("c", "d", "e"):
            assert one["size"] == minsize, name
        if name in ("c", "d"):
            assert f"inside chunk {b:#x}" in one["notes"][0]


def test_overflow_swallowed_pointer():
    rec = stage("overflow")
    S = int(facts(rec, "size_t")[0][0])
    ptr = pointers(rec)
    c = doc(rec, f"heap chunk {ptr['c']:#x} --json")
    assert (c["address"], c["size"], c["reached_by_walk"]) == (ptr["c"] - 2 * S, 4 * S, False)
    chunks = doc(rec, "heap chunks --json")["chunks"]
    assert chunks[-1]["state"] == "top"  # the walk resumed at top past the overflowed b


def test_fake_chunks_outside_the_heap_are_shown_where_they_live():
    # The fake chunk's user pointer is 16 bytes into the array `fake`: its header starts
    # 16 - 2 * SIZE_SZ bytes in (i386: 8, so gdb names it "fake + 8").
    lead = 8 if CONFIG.arch == "i386" else 0
    at = f"heap chunk (char *) &fake + {lead}"
    rec = stage("uaf_tcache", [at + " --json", at])
    fake = addresses(rec)["fake"]
    one = doc(rec, at + " --json")
    assert (one["address"], one["state"], one["bin"], one["reached_by_walk"]) == (fake, "free", "tcache", False)
    named = f"fake + {lead} in section .bss" if lead else "fake in section .bss"
    assert one["location"]["symbol"].startswith(named)
    assert one["problems"] and "outside every heap" in one["problems"][0]["message"]
    text = rec["commands"][at]["out"]
    assert "outside every heap" in text and named in text

    at = f"heap chunk (char *) &stack_fake + {lead}"  # placed like `fake`
    rec = stage("uaf_tcache_stack", ["up", at + " --json", at])
    stack = addresses(rec)["stackfake"]
    one = doc(rec, at + " --json")
    assert (one["address"], one["state"], one["bin"], one["arena"]) == (stack, "free", "tcache", None)
    assert one["location"]["mapping"] == "[stack]"
    assert "the stack" in rec["commands"][at]["out"]
