"""Beside GEF or pwndbg: another extension's `heap` (a stand-in prefix command) loaded before
or after gdb_heap; and completion as a user types it (`complete`, gdb's own command)."""

from __future__ import annotations

import os

from gdb_heap import registry
from tests.gdbrun import INIT, gdb_batch, host_only, json_doc, no_traceback, probe, sample, tool_text

pytestmark = host_only("gdb's command registration beside other extensions")

STANDIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standin_heap.py")
AT_CHECKPOINT = ["break checkpoint", "run > /dev/null"]
MESSAGE = "gdb_heap: `heap` is another extension's, left to it; ours are `gheap ...` (help gheap)"


def top_truth():
    """gdb's reading of main_arena.top at all_bins' first checkpoint, through glibc's debug info
    (a second session with the debug files where the tool's session has none: gdb turns ASLR
    off, so both see the same heap)."""
    return probe(sample("all_bins"), last_stage=1)["stages"][0]["truth"]["top"]


def test_theirs_first_is_left_alone_and_ours_are_gheap():
    g = gdb_batch(AT_CHECKPOINT + ["heap chunks", "gheap top --json"],
                  sample("all_bins"), pre=[f"source {STANDIN}"])
    no_traceback(g.stdout + g.stderr)
    out = tool_text(g.stdout)
    assert out.count(MESSAGE) == 1 and registry.taken_message("gheap") == MESSAGE
    assert "theirs: heap chunks" in out  # theirs still works
    assert json_doc(out)["address"] == top_truth()


def test_theirs_after_ours_leaves_gheap_working():
    g = gdb_batch(AT_CHECKPOINT + [f"source {STANDIN}", "heap bins", "gheap top --json", "gheap chunks --limit 1"],
                  sample("all_bins"))
    no_traceback(g.stdout + g.stderr)
    out = tool_text(g.stdout)
    assert "theirs: heap bins" in out and "gdb_heap:" not in out  # nobody had heap when we loaded
    assert json_doc(out)["address"] == top_truth()
    assert "stopped after 1 chunks (--limit 1)" in out


def test_alone_both_names_work_and_sourcing_again_is_quiet():
    g = gdb_batch(AT_CHECKPOINT + [f"source {INIT}", "heap top --json", "gheap top --json", "help gheap top"],
                  sample("all_bins"))
    no_traceback(g.stdout + g.stderr)
    out = tool_text(g.stdout)
    assert "gdb_heap:" not in out
    docs = [line for line in out.splitlines() if line.startswith("{")]
    assert len(docs) == 2 and docs[0] == docs[1]
    assert "Usage: gheap top [--json [--output FILE]] [--arena ADDR | --all-arenas]" in out


def test_completion_as_typed():
    g = gdb_batch(["complete heap chunk --json ", "complete heap chunk --js", "complete heap chunks --limit ",
                   "complete heap chunks --arena mi_f", "complete gheap chunks --all-arenas --",
                   "complete heap chunk mi_fi", "complete heap bins small "], sample("all_bins"))
    no_traceback(g.stdout + g.stderr)
    lines = tool_text(g.stdout).splitlines()
    assert "heap chunk --json --json" not in lines and "heap chunk --json" in lines  # --js: once
    assert not any(line.startswith("heap chunks --limit") for line in lines)  # a number: nothing offered
    assert "heap chunks --arena mi_file" in lines  # an expression, as print completes it
    # every option of heap chunks but --arena, which --all-arenas excludes (gdb sorts them)
    options = ["--bin", "--from", "--json", "--limit", "--max-size", "--min-size", "--output", "--state", "--summary",
               "--to"]
    assert [x for x in lines if x.startswith("gheap chunks --all-arenas")] == [
        f"gheap chunks --all-arenas {o}" for o in options]
    assert "heap chunk mi_file" in lines
    assert "heap bins small small" not in lines and "heap bins small tcache" in lines
