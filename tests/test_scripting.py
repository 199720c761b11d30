"""gdb_heap in scripts: the settings (set heap / show heap), --output FILE on every --json
command, and the Python API (gdb_heap.api).  Each is judged from outside the code it tests:
gdb's own list of the show heap subcommands, the JSON document the command prints to
gdb's output, what x/gx reads, and counts written here by hand."""

import json
import os
import re
import tempfile
from typing import Dict, List

from gdb_heap import registry
from tests.gdbrun import ANSI, gdb_batch, host_only, json_doc, no_traceback, sample, tool_text

pytestmark = host_only("settings, --output and the Python API")

POINTER = "mi_file"  # a pointer all_bins.c got from malloc (fopencookie's FILE), a global of the program
MARK = "@@@ "


def at_checkpoint(commands: List[str], program: str = "all_bins") -> List[str]:
    """What each command printed at the sample's checkpoint, in order (errors go to stderr: see
    errors())."""
    argv = ["break checkpoint", "run > /dev/null"]
    for i, c in enumerate(commands):
        argv += [f"echo {MARK}{i}\\n", c]
    r = gdb_batch(argv, sample(program))
    no_traceback(r.stdout + r.stderr)
    return split(r.stdout)[-len(commands):] if commands else []


def split(text: str) -> List[str]:
    """The text after each MARK line, up to the next."""
    out: List[str] = []
    for line in text.splitlines(keepends=True):
        if line.startswith(MARK):
            out.append("")
        elif out:
            out[-1] += line
    return out


def heap_errors(text: str) -> List[str]:
    """The tool's error lines in gdb's stderr (not gdb's own warnings, which vary by release)."""
    return [line for line in text.splitlines() if line.startswith("heap: ")]


def errors(commands: List[str], program: str = "all_bins") -> List[str]:
    r = gdb_batch(["break checkpoint", "run > /dev/null"] + commands, sample(program))
    no_traceback(r.stdout + r.stderr)
    return heap_errors(r.stderr)


def chain_lines(text: str) -> Dict[str, str]:
    """heap bins' text: each bin's label and the line of its chain."""
    lines = text.splitlines()
    return {m.group(1): lines[i + 1] for i, m in ((i, re.match(r"^  (\S+)  ", line)) for i, line in enumerate(lines))
            if m and i + 1 < len(lines) and lines[i + 1].startswith("    ->")}


# -- settings ------------------------------------------------------------------------------------

def test_show_heap_lists_every_setting_with_its_help():
    r = gdb_batch([f"echo {MARK}\\n", "help show heap", f"echo {MARK}\\n", "show heap"])
    helped, shown_text = split(r.stdout)
    listed = re.findall(r"^show heap (\S+) -- ", helped, re.M)  # gdb's own list of the settings
    assert set(listed) >= {"preview-bytes", "chain-limit", "chunks-limit", "map-count", "trace-ring",
                           "main-arena", "mp"}
    lines = shown_text.splitlines()
    heads = [i for i, line in enumerate(lines) if re.match(r"^heap \S+:  ", line)]
    assert sorted(lines[i].split(":")[0][len("heap "):] for i in heads) == sorted(listed)
    for i in heads:  # each followed by its help, indented
        assert lines[i + 1].startswith("    ") and len(lines[i + 1].strip()) > 20, lines[i:i + 2]
    assert "heap chain-limit:  Chunks heap bins shows of each bin chain is unlimited." in lines
    assert "heap map-count:  Chunks heap map shows is 10." in lines
    assert "heap main-arena:  main_arena: found automatically" in lines


def test_set_then_show():
    out = at_checkpoint(["set heap chain-limit 3", "show heap chain-limit", "set heap chain-limit unlimited",
                         "show heap chain-limit", "set heap preview-bytes 8", "show heap preview-bytes",
                         "set heap chunks-limit 0", "show heap chunks-limit"])
    assert out[0] == out[2] == out[4] == out[6] == ""  # gdb's way: setting a number says nothing
    assert out[1].strip() == "Chunks heap bins shows of each bin chain is 3."
    assert out[3].strip() == "Chunks heap bins shows of each bin chain is unlimited."
    assert out[5].strip() == "Bytes of user data each heap chunks line previews is 8."
    assert out[7].strip() == "Chunks heap chunks lists before it stops is unlimited."


def test_a_value_out_of_bounds_is_refused_and_the_last_one_kept():
    r = gdb_batch(["set heap map-count 7", "set heap map-count 0", "show heap map-count", "set heap preview-bytes 300",
                   "set heap trace-ring 0", "set heap helper-min 2000000", "show heap nosuch"])
    no_traceback(r.stdout + r.stderr)
    assert heap_errors(r.stderr) == [
        "heap: set heap map-count wants 1 to 100000, not 0; see help set heap map-count",
        "heap: set heap preview-bytes wants 0 to 256, not 300; see help set heap preview-bytes",
        "heap: set heap trace-ring wants at least 1, not 0; see help set heap trace-ring",
        "heap: set heap helper-min wants 0 to 1048576, not 2000000; see help set heap helper-min",
        "heap: no setting 'nosuch'; the settings are preview-bytes, chain-limit, chunks-limit, map-count, "
        "helper-min, trace-ring, main-arena, mp (show heap lists them)"]
    assert "Chunks heap map shows is 7." in r.stdout


def test_chain_limit_cuts_the_text_not_the_document():
    out = at_checkpoint(["heap bins --json", "set heap chain-limit 2", "heap bins", "heap bins --json"])
    doc = json_doc(out[0])
    assert json_doc(out[3]) == doc  # the document keeps every chunk
    chains = chain_lines(out[2])
    assert sum(len(b["chunks"]) > 2 for b in doc["bins"]) >= 4  # all_bins.c fills bins with 7 chunks and more
    assert len(chains) == len(doc["bins"])
    for b in doc["bins"]:
        chain = chains["unsorted" if b["kind"] == "unsorted" else f"{b['kind']}[{b['index']}]"]
        shown = [int(a, 16) for a in re.findall(r"-> (0x[0-9a-f]+)", chain)]
        assert shown == b["chunks"][:2], (b, chain)
        more = len(b["chunks"]) - 2
        assert chain.endswith(f"-> ... {more} more") if more > 0 else "more" not in chain, (b, chain)


def test_chunks_limit_is_the_listing_default():
    out = at_checkpoint(["heap chunks --json", "set heap chunks-limit 3", "heap chunks", "heap chunks --limit 5",
                         "heap chunks --json", "heap chunks --summary --json", "set heap chunks-limit 0",
                         "heap chunks --summary --json"])
    every = json_doc(out[0])["chunks"]
    assert len(every) > 5

    def listed(text: str) -> List[int]:
        return [int(line.split()[0], 16) for line in text.splitlines() if re.match(r"^0x[0-9a-f]+ ", line)]
    assert listed(out[2]) == [c["address"] for c in every[:3]]
    assert out[2].rstrip().endswith("stopped after 3 chunks (set heap chunks-limit 3)")
    assert listed(out[3]) == [c["address"] for c in every[:5]]  # the option wins
    assert out[3].rstrip().endswith("stopped after 5 chunks (--limit 5)")
    assert json_doc(out[4])["chunks"] == every  # never a shortened document
    assert json_doc(out[5]) == json_doc(out[7])


def test_preview_bytes_is_what_x_reads():
    out = at_checkpoint([f"p/x (unsigned long) {POINTER}", f"x/2gx {POINTER}", "heap chunks",
                         "set heap preview-bytes 8", "heap chunks", "set heap preview-bytes 0", "heap chunks"])
    user = int(out[0].split("=")[1], 16)
    words = [int(w, 16) for w in out[1].split(":", 1)[1].split()]  # gdb's own reading of the two words

    def data(text: str) -> List[str]:
        line = next(x for x in text.splitlines() if re.match(rf"^0x[0-9a-f]+ +{user:#x} ", x))
        return line.split(" in use", 1)[1].split()
    assert [int(w, 16) for w in data(out[2])[:2]] == words and len(data(out[2])) == 3  # two words, their ASCII
    assert int(data(out[4])[0], 16) == words[0] and len(data(out[4])) == 2  # one word, its ASCII
    assert data(out[6]) == []


def test_map_count_is_the_default_count():
    out = at_checkpoint(["heap map --count 2", "set heap map-count 2", "heap map", "heap map --count 3"])
    starts = [[line.split()[1] for line in t.splitlines() if line.startswith("+ ")] for t in out]
    assert len(starts[0]) == 2 and starts[2] == starts[0]
    assert len(starts[3]) == 3 and starts[3][:2] == starts[0]  # --count wins


# -- --output FILE -------------------------------------------------------------------------------

def test_output_writes_exactly_the_document():
    commands = [i for i in registry.every_invocation(POINTER) if i.endswith(registry.JSON)]  # every --json one
    assert len(commands) > len([s for s in registry.COMMANDS if s.json])
    with tempfile.TemporaryDirectory(prefix="gdb_heap_output.") as tmp:
        files = [os.path.join(tmp, f"{i}.json") for i in range(len(commands))]
        out = at_checkpoint([x for c, f in zip(commands, files) for x in (c, f"{c} --output {f}")])
        for i, (c, f) in enumerate(zip(commands, files)):
            assert tool_text(out[2 * i + 1]) == "", c  # nothing on gdb's output
            with open(f) as written:
                text = written.read()
            assert text.endswith("}\n") and text.count("\n") == 1 and not ANSI.search(text), c
            assert json.loads(text) == json_doc(out[2 * i]), c


def test_output_errors():
    with tempfile.TemporaryDirectory(prefix="gdb_heap_output.") as tmp:
        missing = os.path.join(tmp, "no", "such", "report.json")
        failed = os.path.join(tmp, "failed.json")
        found = errors([f"heap top --json --output {tmp}", f"heap top --json --output {missing}",
                        f"heap top --output {failed}", f"heap chunk nosuch --json --output {failed}"])
        assert found == [
            f"heap: cannot write {tmp} (Is a directory); give a file in a directory you can write to",
            f"heap: cannot write {missing} (No such file or directory); give a file in a directory you can "
            "write to",
            "heap: --output FILE writes the JSON document: add --json (text goes to a file with gdb's "
            "`pipe heap top > FILE` or `set logging`)",
            "heap: cannot evaluate 'nosuch' (No symbol \"nosuch\" in current context.); give an address or a gdb "
            "expression"]
        assert os.listdir(tmp) == []  # a command that failed leaves no file


def test_output_completes_a_file_name():
    with tempfile.TemporaryDirectory(prefix="gdb_heap_output.") as tmp:
        open(os.path.join(tmp, "report.json"), "w").close()
        os.mkdir(os.path.join(tmp, "reports"))
        r = gdb_batch([f"complete heap check --json --output {tmp}/rep"])
        assert tool_text(r.stdout).splitlines() == [f"heap check --json --output {tmp}/report.json",
                                                    f"heap check --json --output {tmp}/reports/"]


def test_the_ci_recipe():
    """The README's batch recipe, as a CI job runs it: the report file, and gdb's exit status."""
    with tempfile.TemporaryDirectory(prefix="gdb_heap_ci.") as tmp:
        report = os.path.join(tmp, "report.json")
        ok = gdb_batch(["break checkpoint", "run top_size > /dev/null", f"heap check --json --output {report}"],
                       sample("corrupt"))
        assert ok.returncode == 0, ok.stderr  # --json never fails: the reader decides
        with open(report) as f:
            problems = json.load(f)["problems"]
        assert len(problems) == 1 and problems[0]["glibc_abort"] == "malloc(): corrupted top size"  # what corrupt.c did
        text = gdb_batch(["break checkpoint", "run top_size > /dev/null", "heap check"], sample("corrupt"))
        assert text.returncode == 1 and "heap: 1 problem found in the heap" in text.stderr


# -- the Python API ------------------------------------------------------------------------------

API = (  # (the API call, the command whose --json it must equal)
    ("heap.overview()", "heap --json"),
    ("heap.arenas()", "heap arenas --json"),
    ("heap.chunks()", "heap chunks --json"),
    ("heap.chunks(state='free', limit=4)", "heap chunks --state free --limit 4 --json"),
    ("heap.chunks(summary=True, all_arenas=True)", "heap chunks --summary --all-arenas --json"),
    (f"heap.chunks(min_size=0x100, from_={POINTER!r}, to='(char *){POINTER} + 0x8000')",
     f"heap chunks --min-size 0x100 --from {POINTER} --to (char*){POINTER}+0x8000 --json"),
    (f"heap.chunk('(char *){POINTER} + 3')", f"heap chunk (char*){POINTER}+3 --json"),
    (f"heap.chunk(gdb.parse_and_eval({POINTER!r}))", f"heap chunk {POINTER} --json"),
    ("heap.bins()", "heap bins --json"),
    ("heap.bins('small', 'fast', all_threads=True)", "heap bins small fast --all-threads --json"),
    ("heap.top()", "heap top --json"),
    ("heap.top(all_arenas=True)", "heap top --all-arenas --json"),
    ("heap.check(all_arenas=True)", "heap check --all-arenas --json"),
    ("heap.check()", "heap check --json"),
    ("heap.mmapped()", "heap mmapped --json"),
    (f"heap.where(int(gdb.parse_and_eval({POINTER!r})))", f"heap where {POINTER} --json"),
    ("heap.trace(last=3)", "heap trace --last 3 --json"),
    ("heap.snapshots()", "heap snapshots --json"),  # the snapshot "s1" taken first (SNAPSHOT)
    ("heap.diff('s1')", "heap diff s1 --json"),
    (f"heap.try_free({POINTER!r})", f"heap try-free {POINTER} --json"),
    (f"heap.try_free(gdb.parse_and_eval({POINTER!r}), chunk=True)", f"heap try-free {POINTER} --chunk --json"),
    ("heap.try_malloc(24)", "heap try-malloc 24 --json"),
    ("heap.try_malloc('0x500', calloc=True)", "heap try-malloc 0x500 --calloc --json"),
    (f"heap.try_malloc(0x30, realloc={POINTER!r})", f"heap try-malloc 0x30 --realloc {POINTER} --json"),
    (f"heap.fake_chunks({POINTER!r}, window=0x40)", f"heap fake-chunks {POINTER} --window 0x40 --json"),
)
SNAPSHOT = "heap snapshot s1"


def test_api_returns_each_commands_document():
    calls = [f"python import json, gdb, gdb_heap.api as heap; print(json.dumps({call}))" for call, _ in API]
    out = at_checkpoint([SNAPSHOT] + [x for (_, command), call in zip(API, calls) for x in (command, call)])[1:]
    for i, (call, _) in enumerate(API):
        assert json_doc(out[2 * i + 1]) == json_doc(out[2 * i]), call
    functions = {call.split("(")[0].split(".")[1] for call, _ in API}
    # every --json command; a hyphenated word (try-free) is a Python name with an underscore (try_free)
    assert functions >= {s.word.replace("-", "_") or "overview" for s in registry.COMMANDS if s.json}


def test_api_errors_are_the_commands():
    with tempfile.TemporaryDirectory(prefix="gdb_heap_api.") as tmp:
        script = os.path.join(tmp, "script.py")
        with open(script, "w") as f:
            f.write("import gdb, gdb_heap.api as heap\n"
                    "for call in (lambda: heap.chunk('nosuch'), lambda: heap.bins('huge'),\n"
                    "             lambda: heap.top(arena=8, all_arenas=True)):\n"
                    "    try:\n"
                    "        call()\n"
                    "    except gdb.GdbError as e:\n"
                    "        print('caught', e)\n")
        out = at_checkpoint([f"source {script}"])[0]
    assert out.splitlines() == [
        "caught heap: cannot evaluate 'nosuch' (No symbol \"nosuch\" in current context.); give an address or a "
        "gdb expression",
        "caught heap: unknown bin kind 'huge'; the kinds are tcache, fast, unsorted, small, large",
        "caught heap: --arena and --all-arenas exclude each other; give one (see help heap top)"]


def test_api_before_loading():
    r = gdb_batch([], pre=["python import sys; sys.path.insert(0, '.')",
                           "python import gdb_heap.api as heap\ntry:\n  heap.top()\nexcept gdb.GdbError as e:\n"
                           "  print('caught', e)"])
    assert "caught heap: gdb_heap's commands are not loaded; source gdb_heap/init.py" in r.stdout, r.stdout + r.stderr
