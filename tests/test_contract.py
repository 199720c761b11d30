"""Every command's JSON against docs/commands.md: the shapes are read from the file itself (its
json blocks and inline shapes, and its table of extensions), so a key renamed or dropped in the
code, or in the file, fails here."""

import json
import os
import re
from typing import Dict, List, Set, Tuple

import pytest

from tests.gdbrun import CONFIG, ROOT, gdb_batch, json_doc, sample

CONTRACT_FILE = os.path.join(ROOT, "docs", "commands.md")
ONE_ARENA = ("heap chunks --json", "heap bins --json", "heap top --json", "heap check --json",
             "heap chunks --summary --json")


# -- reading the shapes out of the markdown ------------------------------------------------------

def shape_paths(text: str) -> Tuple[Set[str], Dict[str, str]]:
    """The key paths of a shape such as `{"a": N, "b": [{"c": "..." | null}], "d": <as in X>}`:
    {"a", "b", "b[].c", "d"}, and the references ({"d": "as in X"}), which are not JSON."""
    paths: Set[str] = set()
    refs: Dict[str, str] = {}
    pos = 0

    def skip() -> None:
        nonlocal pos
        while pos < len(text) and text[pos] in " \n\t":
            pos += 1

    def value(prefix: str) -> None:
        nonlocal pos
        skip()
        if text[pos] == "{":
            obj(prefix + ".")
        elif text[pos] == "[":
            pos += 1
            while True:
                skip()
                if text[pos] == "]":
                    pos += 1
                    return
                value(prefix + "[]")
                skip()
                if text[pos] == ",":
                    pos += 1
        elif text[pos] == "<":
            end = text.index(">", pos)
            refs[prefix] = text[pos + 1:end]
            pos = end + 1
        else:  # a scalar: N, "...", true, null, alternatives with |; up to , } or ]
            while pos < len(text) and text[pos] not in ",}]":
                if text[pos] == '"':
                    pos = text.index('"', pos + 1)
                pos += 1

    def obj(prefix: str) -> None:
        nonlocal pos
        assert text[pos] == "{"
        pos += 1
        while True:
            skip()
            if text[pos] == "}":
                pos += 1
                return
            m = re.compile(r'"(\w+)"\s*:').match(text, pos)
            assert m, f"not a key at {text[pos:pos + 40]!r} in {text!r}"
            key = prefix + m.group(1)
            paths.add(key.lstrip("."))
            pos = m.end()
            value(key.lstrip("."))
            skip()
            if text[pos] == ",":
                pos += 1

    obj("")
    return paths, refs


def contract() -> Tuple[Dict[str, Set[str]], Dict[str, Set[str]]]:
    """(shapes, extensions): key paths per command, as docs/commands.md writes them."""
    with open(CONTRACT_FILE) as f:
        md = f.read()
    shapes_text = md[md.index("## JSON shapes"):md.index("### Rules shared")]
    shapes: Dict[str, Set[str]] = {}
    refs: Dict[str, Dict[str, str]] = {}
    # `heap chunks --json` then a ```json block; `heap top --json`: `{...}` inline (may span lines).
    for m in re.finditer(r"^`(heap[^`]*--json)`(?::\s*`(\{.*?\})`|\n```json\n(.*?)```)", shapes_text, re.M | re.S):
        shapes[m.group(1)], refs[m.group(1)] = shape_paths(m.group(2) or m.group(3))
    # Every list's problems: the shape the chunks section gives them.
    problems_bullet = re.search(r"`problems` lists .*? as `(\{.*?\})`", shapes_text, re.S)
    assert problems_bullet, "docs/commands.md: the chunks section no longer gives the shape of a problem"
    problem, _ = shape_paths(problems_bullet.group(1))
    for paths in shapes.values():
        if "problems" in paths and not any(p.startswith("problems[].") for p in paths):
            paths |= {f"problems[].{p}" for p in problem}
    # heap --json holds heap arenas' arenas.
    for name, r in refs.items():
        for at, what in r.items():
            assert "heap arenas" in what, f"{name}: unknown reference <{what}>"
            shapes[name] |= {p for p in shapes["heap arenas --json"] if p.startswith(at + ".")}
    # heap chunk ADDR --json: a chunk object of heap chunks, plus the keys the prose names.
    chunk_prose = re.search(r"`heap chunk ADDR --json`: (.*?)\n\n", shapes_text, re.S)
    assert chunk_prose, "docs/commands.md: no paragraph on heap chunk ADDR --json"
    prose = chunk_prose.group(1)
    shapes["heap chunk ADDR --json"] = {p[len("chunks[]."):] for p in shapes["heap chunks --json"]
                                        if p.startswith("chunks[].")} | set(re.findall(r'`"(\w+)":', prose))
    table = md[md.index("### Keys beyond the shapes"):md.index("## Errors")]
    extensions: Dict[str, Set[str]] = {}
    for row in re.finditer(r"^\| (`heap.*?) \| `([\w\[\].]+)` \|", table, re.M):
        for name in re.findall(r"`([^`]+)`", row.group(1)):
            extensions.setdefault(name, set()).add(row.group(2))
    for name in ("heap --json",):  # holds heap arenas' arenas
        extensions[name] = extensions.get(name, set()) | extensions.get("heap arenas --json", set())
    return shapes, extensions


def all_arenas(paths: Set[str]) -> Set[str]:
    return {"arenas", "arenas[]"} | {f"arenas[].{p}" for p in paths}


# -- the documents the commands print ------------------------------------------------------------

def paths_of(doc, prefix="") -> Set[str]:
    """Key paths of a document ("chunks[].address"), and "X[]" for every list X that has an element."""
    out: Set[str] = set()
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.add(prefix + k)
            out |= paths_of(v, prefix + k + ".")
    elif isinstance(doc, list) and doc:
        out.add(prefix[:-1] + "[]")
        for e in doc:
            out |= paths_of(e, prefix[:-1] + "[].")
    return out


SESSIONS: List[Tuple[str, List[str], List[str]]] = [
    # (sample, its arguments, commands: each is run as is; "heap chunk" ones after `up` into main)
    ("all_bins", [], ["heap --json", "heap chunks --json", "heap bins --json", "heap top --json", "heap arenas --json",
                      "heap check --json", "heap mmapped --json", "heap chunks --summary --json",
                      "heap chunks --json --all-arenas", "heap bins --json --all-arenas",
                      "heap top --json --all-arenas", "heap check --json --all-arenas"]),
    ("threads", [], ["heap --json", "heap arenas --json", "heap bins --json --all-threads"]),
    ("mmapped", [], ["heap mmapped --json", "heap chunk small --json", "heap chunk a --json"]),
    ("corrupt", ["overflow"], ["heap chunks --json", "heap check --json"]),
]


def command_name(command: str) -> str:
    if command.startswith("heap chunk ") and not command.startswith("heap chunks"):
        return "heap chunk ADDR --json"
    words = [w for w in command.split() if w not in ("--all-arenas", "--all-threads")]
    return " ".join(w for w in words if w != "--json") + " --json"


@pytest.fixture(scope="module")
def printed() -> List[Tuple[str, str, Dict[str, object]]]:
    out = []
    for name, args, commands in SESSIONS:
        script = ["break checkpoint", "run " + " ".join(args) + " > /dev/null", "up"]
        for c in commands:
            script += [f"echo @@ {c}\\n", c]
        g = gdb_batch(script, sample(name))
        current = None
        for line in g.stdout.splitlines():
            if line.startswith("@@ "):
                current = line[3:]
            elif line.startswith("{") and current:
                out.append((name, current, json.loads(line)))
                current = None
        ran = {c for n, c, _ in out if n == name}
        assert ran == set(commands), f"{name}: no JSON from {set(commands) - ran}:\n{g.stderr[-2000:]}"
    return out


def test_the_file_has_every_shape():
    shapes, extensions = contract()
    assert set(shapes) >= {"heap chunks --json", "heap bins --json", "heap top --json", "heap arenas --json",
                           "heap check --json", "heap mmapped --json", "heap --json", "heap chunk ADDR --json",
                           "heap chunks --summary --json"}
    assert {"address", "size", "state", "bin", "usable_size", "understood_as", "requests"} <= \
        shapes["heap chunk ADDR --json"]
    assert "arenas[].heaps[].start" in shapes["heap --json"]  # <as in heap arenas>, grafted
    assert "problems[].message" in shapes["heap bins --json"]
    assert "arenas[].threads[].lwp" in extensions["heap --json"]


def test_every_document_keeps_the_contract(printed):
    shapes, extensions = contract()
    seen: Dict[str, Set[str]] = {}
    for sample_name, command, doc in printed:
        name = command_name(command)
        allowed = shapes[name] | extensions.get(name, set())
        if "--all-arenas" in command:
            assert name in ONE_ARENA, command
            allowed = all_arenas(allowed)
        got = paths_of(doc)
        unknown = {p for p in got if not p.endswith("[]") and p not in allowed}
        assert not unknown, f"{sample_name}: {command}: keys not in docs/commands.md: {sorted(unknown)}"
        seen.setdefault(name, set()).update(got if "--all-arenas" not in command else
                                            {p[len("arenas[]."):] for p in got if p.startswith("arenas[].")})
    for name, paths in seen.items():
        for p in shapes[name]:
            # A key inside a list is promised only where the list had an element.
            lists = [p[:i + 2] for i in range(len(p)) if p.startswith("[]", i)]
            if all(lst in paths for lst in lists):
                assert p in paths, f"{name}: the contract's key {p} is missing from every document"


def test_max_system_mem_is_glibcs_field():
    """The extension key's value is main_arena.max_system_mem as gdb reads it from libc's debug info."""
    if not CONFIG.symbols or CONFIG.static:
        pytest.skip("gdb reads main_arena only from libc's debug info")
    g = gdb_batch(["break checkpoint", "run > /dev/null", "echo @@ truth\\n", "output main_arena.max_system_mem",
                   "echo \\n", "heap arenas --json"], sample("all_bins"))
    truth = re.search(r"^@@ truth\n(\d+)$", g.stdout, re.M)
    assert truth, g.stdout[-2000:]
    doc = json_doc(g.stdout[truth.end():])
    assert doc["arenas"][0]["max_system_mem"] == int(truth.group(1)) > 0
