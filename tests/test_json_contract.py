"""Every command's JSON keys, exactly, against the contract (/work/shared/design/commands.md,
"JSON shapes"): the key sets below are copied from it by hand.  Keys the tool adds beyond the
contract are allowed only when listed in EXTENSIONS; a renamed, lost or new key fails."""

from typing import Any, Dict, FrozenSet, Iterable

import pytest

from tests.gdbrun import CONFIG, doc, probe, sample

# The contract.
CHUNK = {"address", "size", "prev_inuse", "is_mmapped", "non_main_arena", "state", "bin", "bin_index",
         "user_address", "usable_size"}
CONTRACT: Dict[str, FrozenSet[str]] = {k: frozenset(v) for k, v in {
    "overview": {"glibc", "located_by", "arenas", "counts"},
    "counts": {"in_use", "tcache", "fast", "unsorted", "small", "large"},
    "arenas": {"arenas"},
    "arena": {"address", "main", "top", "system_mem", "next", "heaps"},
    "heap": {"start", "end"},
    "chunks": {"glibc", "arena", "chunks", "problems"},
    "chunk": CHUNK,
    "bins": {"arena", "bins", "problems"},
    "bin": {"kind", "index", "size", "count", "chunks"},
    "top": {"arena", "address", "size", "end"},
    "check": {"arena", "problems"},
    "check_problem": {"address", "message", "glibc_abort"},
    "mmapped": {"chunks", "glibc_count"},
    "mmapped_chunk": {"address", "size", "user_address", "mapping_start", "mapping_end"},
    "chunk_detail": CHUNK | {"understood_as", "arena", "requests"},
    "summary": {"arena", "summary"},
    "summary_row": {"state", "bin", "size", "count", "bytes"},
    "all_arenas": {"arenas"},
}.items()}

# Known extensions (the contract may only be extended): each one named here on purpose.
EXTENSIONS: Dict[str, FrozenSet[str]] = {k: frozenset(v) for k, v in {
    "arena": {"max_system_mem", "attached_threads", "flags", "threads"},
    "thread": {"thread", "lwp"},
    "bin": {"thread", "lwp"},  # tcache bins: whose tcache
    "mmapped": {"glibc_bytes", "unreadable"},
    "mmapped_chunk": {"prev_size"},  # the alignment slack before the chunk in its mapping
    "chunk_detail": {"prev_size", "mapping_start", "mapping_end"},  # an mmapped chunk's mapping
}.items()}


def keys(obj: Dict[str, Any], kind: str, required: Iterable[str] = ()) -> None:
    """obj's keys are the contract's for `kind`, plus only its known extensions; `required` of
    those extensions must be there."""
    got = set(obj)
    contract = CONTRACT.get(kind, frozenset())
    assert contract <= got, f"{kind}: missing {sorted(contract - got)}"
    extra = got - contract
    assert extra <= EXTENSIONS.get(kind, frozenset()), f"{kind}: keys beyond the contract {sorted(extra)}"
    assert set(required) <= got, f"{kind}: missing {sorted(set(required) - got)}"


def arena_keys(arena: Dict[str, Any]) -> None:
    keys(arena, "arena", required=EXTENSIONS["arena"] - {"threads"})  # threads: where they could be read
    for h in arena["heaps"]:
        keys(h, "heap")
    for t in arena.get("threads", []):
        keys(t, "thread", required=EXTENSIONS["thread"])


COMMANDS = ["heap --json", "heap arenas --json", "heap chunks --json", "heap bins --json", "heap top --json",
            "heap check --json", "heap chunks --summary --json", "heap mmapped --json",
            "heap chunks --all-arenas --json", "heap bins --all-arenas --json", "heap top --all-arenas --json",
            "heap check --all-arenas --json", "heap chunk slots[0].p --json", "output main_arena.max_system_mem"]


@pytest.fixture(scope="module")
def all_bins():
    return probe(sample("all_bins"), COMMANDS, truth=False, last_stage=1)["stages"][0]


def test_overview_and_arenas(all_bins):
    overview = doc(all_bins, "heap --json")
    keys(overview, "overview")
    keys(overview["counts"], "counts")
    arenas = doc(all_bins, "heap arenas --json")
    keys(arenas, "arenas")
    for a in overview["arenas"] + arenas["arenas"]:
        arena_keys(a)
    main = arenas["arenas"][0]
    truth = all_bins["commands"]["output main_arena.max_system_mem"]
    if truth["ok"]:  # gdb reads glibc's own field (libc's debug info): the extension's value
        assert main["max_system_mem"] == int(truth["out"])
    else:
        assert not CONFIG.symbols or CONFIG.static, truth["out"]


def test_chunks_bins_top_check_summary(all_bins):
    chunks = doc(all_bins, "heap chunks --json")
    keys(chunks, "chunks")
    for c in chunks["chunks"]:
        keys(c, "chunk")
    bins = doc(all_bins, "heap bins --json")
    keys(bins, "bins")
    for b in bins["bins"]:
        keys(b, "bin", required=EXTENSIONS["bin"] if b["kind"] == "tcache" else ())
        if b["kind"] != "tcache":
            assert set(b) == CONTRACT["bin"]
    keys(doc(all_bins, "heap top --json"), "top")
    keys(doc(all_bins, "heap check --json"), "check")
    summary = doc(all_bins, "heap chunks --summary --json")
    keys(summary, "summary")
    for row in summary["summary"]:
        keys(row, "summary_row")


def test_all_arenas_documents(all_bins):
    for command, kind in (("chunks", "chunks"), ("bins", "bins"), ("top", "top"), ("check", "check")):
        d = doc(all_bins, f"heap {command} --all-arenas --json")
        keys(d, "all_arenas")
        for one in d["arenas"]:
            keys(one, kind)


def test_heap_chunk_in_the_heap(all_bins):
    c = doc(all_bins, "heap chunk slots[0].p --json")
    assert set(c) == CONTRACT["chunk_detail"]


@pytest.fixture(scope="module")
def mmapped():
    return probe(sample("mmapped"), ["heap mmapped --json", "up", "heap chunk a --json"], truth=False,
                 last_stage=1)["stages"][0]


def test_mmapped_documents(mmapped):
    d = doc(mmapped, "heap mmapped --json")
    keys(d, "mmapped", required=EXTENSIONS["mmapped"])
    assert d["chunks"]
    for c in d["chunks"]:
        keys(c, "mmapped_chunk", required=EXTENSIONS["mmapped_chunk"])
    c = doc(mmapped, "heap chunk a --json")
    keys(c, "chunk_detail", required=EXTENSIONS["chunk_detail"])


@pytest.fixture(scope="module")
def corrupt():
    if CONFIG.static and CONFIG.arch == "i386":
        pytest.skip("one sample is enough for the key set")
    return probe(sample("corrupt"), ["heap check --json", "heap chunks --json", "heap bins --json"],
                 args=["overflow"], truth=False, last_stage=1)["stages"][0]


def test_problem_objects(corrupt):
    check = doc(corrupt, "heap check --json")
    assert check["problems"]
    for p in check["problems"]:
        keys(p, "check_problem")
