"""registry.py: one declaration per command, and everything that lists commands takes it from there."""

import pathlib
import re

from gdb_heap import registry

COMMANDS_DIR = pathlib.Path(__file__).resolve().parent.parent / "gdb_heap" / "commands"


def test_every_entry_has_exactly_one_class():
    source = "".join(p.read_text() for p in COMMANDS_DIR.glob("*.py"))
    implemented = re.findall(r'^@implements\("([^"]+)"\)', source, re.M)
    assert sorted(implemented) == sorted(c.name for c in registry.COMMANDS)


def test_usage_names_every_option_and_only_those():
    for c in registry.COMMANDS:
        assert c.usage.startswith(c.name + " ") or c.usage == c.name, c.name
        named = set(re.findall(r"--[a-z-]+", c.usage))
        assert named == set(c.all_flags) | set(c.all_valued), c.name


def test_options_of_a_command_with_arenas():
    chunks = registry.spec("heap chunks")
    assert chunks.all_flags == ("--json", "--summary", "--all-arenas")
    assert chunks.all_valued == ("--limit", "--arena")
    assert registry.spec("heap mmapped").all_flags == ("--json",) and registry.spec("heap mmapped").all_valued == ()


def test_undefined_command_lists_every_subcommand():
    message = registry.undefined_command("frobnicate")
    assert message == ("undefined heap command 'frobnicate'; the commands are chunks, chunk, bins, top, arenas, "
                       "check, mmapped, snapshot, snapshots, diff (see help heap)")


def test_help_text():
    text = registry.help_text("heap", "Subcommands:\n{subcommands}\n")
    lines = text.splitlines()
    assert lines[0] == registry.PREFIX.summary and lines[2] == "Usage: heap [--json]"
    assert "  heap mmapped    List the mmapped chunks: large blocks that are a mapping of their own." in lines


def test_invocations():
    top = registry.spec("heap top")
    assert top.invocations() == ["heap top", "heap top --json", "heap top --all-arenas", "heap top --all-arenas --json"]
    chunk = registry.spec("heap chunk")
    assert chunk.invocations() == []  # it needs an address
    assert chunk.invocations("p")[:2] == ["heap chunk p", "heap chunk p --json"]
    every = registry.every_invocation("p")
    assert len(every) == len(set(every))
    assert {"heap mmapped", "heap mmapped --json", "heap check --all-arenas --json"} <= set(every)
    json_only = registry.every_invocation(json_only=True)
    assert all(i.endswith("--json") for i in json_only) and "heap mmapped --json" in json_only
    assert not any(i.startswith("heap chunk ") for i in json_only)
