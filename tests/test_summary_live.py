"""`heap chunks --summary` counts the free chunks from the bins' own lists where the walk vouches
for each of them (gdb_heap/listed.py), else the exact way: on live heaps, healthy and damaged,
the rows are those of the exact count over the free index (`--limit`, which always counts so),
and the bins' counts stand exactly where no bin lists a chunk the walk does not meet."""

import pytest

from tests.gdbrun import gdb_batch, host_glibc, json_doc, no_traceback, sample, version_tuple

FASTBINS = version_tuple(host_glibc()) < (2, 43)  # glibc 2.43 removed the fastbins
MARK = "@@summary@@"
# Counts the summaries that fell back to the exact count (views.walk_summary calls
# model.summarise only then; the --limit path imported its own name).
COUNT = """import gdb_heap.model as M
M.fell_back = 0
_summarise = M.summarise
def summarise(*a, **k):
    M.fell_back += 1
    return _summarise(*a, **k)
M.summarise = summarise
"""

# (sample, its arguments, whether the bins' counts can stand: None where either may happen)
CASES = [
    ("many", "20000", True),
    ("all_bins", "", True),
    ("arenas", "", True),
    # a tcache entry linked to a fake chunk in .bss: outside the arena, not counted either way
    ("corrupt", "uaf_tcache", True),
    # a chunk grown over a free tcache chunk: the bin lists a chunk the walk does not meet
    ("corrupt", "overlap", False),
    # a fast bin's fd linked to the fake chunk: the bin lists an address outside every heap
    ("corrupt", "uaf_fast", False),
    ("corrupt", "double_free", None),
]


@pytest.mark.parametrize("program, args, stands", CASES, ids=[f"{p} {a}".strip() for p, a, _ in CASES])
def test_the_summary_is_the_exact_count(program, args, stands):
    if "fast" in args and not FASTBINS:
        pytest.skip(f"glibc 2.43 removed fastbins (this is {host_glibc()})")
    # (the helper from 1 MiB on: the many sample's 20,000 chunks fill about 8 MiB)
    script = ["set pagination off", "set heap helper-min 1", "break checkpoint", f"run {args} > /dev/null",
              f"python exec({COUNT!r})"]
    for name, command in (("quick", "heap chunks --all-arenas --summary --json"),
                          ("exact", "heap chunks --all-arenas --summary --limit 1000000000 --json")):
        script += [f"echo {MARK}{name}\\n", command]
    script += [f"echo {MARK}fell back\\n", "python print(M.fell_back)"]
    r = gdb_batch(script, sample(program))
    no_traceback(r.stdout + r.stderr)
    out = {p.partition("\n")[0]: p.partition("\n")[2] for p in r.stdout.split(MARK)[1:]}
    quick, exact = json_doc(out["quick"]), json_doc(out["exact"])
    assert quick == exact
    free = sum(row["count"] for doc in quick["arenas"] for row in doc["summary"] if row["state"] == "free")
    assert free > 0 or stands is False  # (overlap: its one free chunk is swallowed)
    if stands is not None:
        assert (int(out["fell back"]) == 0) == stands, out["fell back"]
