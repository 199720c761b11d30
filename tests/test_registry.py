"""registry.py: one declaration per command, and everything that lists commands takes it from there."""

import ast
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
        assert ("[--json]" in c.usage) == c.json, c.name  # where full_usage adds --output FILE
        named = set(re.findall(r"--[a-z-]+", c.full_usage))
        assert named == set(c.all_flags) | set(c.all_valued) | set(c.counted), c.name


def test_options_of_a_command_with_arenas():
    chunks = registry.spec("heap chunks")
    assert chunks.all_flags == ("--json", "--summary", "--all-arenas")
    assert chunks.all_valued == ("--limit", "--state", "--bin", "--min-size", "--max-size", "--from", "--to",
                                 "--arena", "--output")
    assert registry.spec("heap mmapped").all_flags == ("--json",)
    assert registry.spec("heap mmapped").all_valued == ("--output",)
    assert registry.spec("heap map").all_valued == ("--count", "--arena")  # no --json, no --output


def test_undefined_command_lists_every_subcommand():
    message = registry.undefined_command("frobnicate")
    assert message == ("undefined heap command 'frobnicate'; the commands are chunks, chunk, bins, top, arenas, "
                       "check, mmapped, map, where, layout, trace, snapshot, snapshots, diff, try-free, "
                       "try-malloc, fake-chunks (see help heap)")
    assert registry.undefined_command("x", "gheap").startswith("undefined gheap command 'x';")


def test_help_text():
    text = registry.help_text("heap", "Subcommands:\n{subcommands}\n")
    lines = text.splitlines()
    assert lines[0] == registry.PREFIX.summary and lines[2] == "Usage: heap [--json [--output FILE]]"
    width = len("heap fake-chunks")  # the longest name sets the column
    assert f"  {'heap mmapped':<{width}}  List the mmapped chunks: blocks mapped on their own." in lines


def test_help_fits_80_columns():
    """Every line of every command's help (the registry's summary and usage, then the class's
    docstring), and `help heap`'s list, within 80 columns: gdb splits longer ones mid-word."""
    helps = {}
    for path in COMMANDS_DIR.glob("*.py"):  # the modules import gdb: read their classes' docstrings
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                names = [d.args[0].value for d in node.decorator_list if isinstance(d, ast.Call) and d.args
                         and isinstance(d.args[0], ast.Constant)]
                text = registry.help_text(str(names[0]), ast.get_docstring(node, clean=False) or "") if names else \
                    ast.get_docstring(node, clean=False) or ""
                helps[names[0] if names else node.name] = text
    assert set(registry.BY_NAME) <= set(helps)
    for name, text in helps.items():
        for line in text.splitlines():
            assert len(line) <= 80, (name, line)


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


def test_help_under_the_second_prefix():
    text = registry.help_text("heap chunks", "body", "gheap")
    assert text.splitlines()[2] == "Usage: gheap chunks [--state in_use|free|top] [--bin KIND] [--min-size N]"
    listing = registry.help_text("heap", "{subcommands}", "gheap")
    assert "  gheap mmapped      List the mmapped chunks: blocks mapped on their own." in listing
    assert registry.spec("heap chunks").named("gheap") == "gheap chunks" and registry.PREFIX.named("gheap") == "gheap"


def complete(name, text, word=None):
    """As gdb calls complete(): `word` is the last word from its last '-' or blank on."""
    if word is None:
        word = re.split(r"[\s-]", text)[-1]
    return registry.completion(registry.spec(name), text, word)


def test_completion_offers_each_option_once():
    chunks = "heap chunks"
    # gdb's word stops at '-': for "--li" it replaces "li", so "mit" completes it
    assert complete(chunks, "--li") == ["limit"]
    filters = ["--state", "--bin", "--min-size", "--max-size", "--from", "--to"]
    assert complete(chunks, "") == ["--json", "--summary", "--all-arenas", "--limit"] + filters + ["--arena",
                                                                                                 "--output"]
    assert complete(chunks, "--json ") == ["--summary", "--all-arenas", "--limit"] + filters + ["--arena", "--output"]
    assert complete(chunks, "--json --all-arenas ") == ["--summary", "--limit"] + filters + ["--output"]
    assert complete(chunks, "--arena=x --summary ") == ["--json", "--limit"] + filters + ["--output"]
    assert complete("heap bins", "small ") == ["--json", "--all-threads", "--all-arenas", "--arena", "--output",
                                               "tcache", "fast", "unsorted", "large"]


def test_completion_after_an_option_with_a_value():
    assert complete("heap chunks", "--limit ") == []  # a number: nothing, never an option
    assert complete("heap chunks", "--limit 1") == []
    assert complete("heap chunks", "--arena ") == registry.EXPRESSION
    assert complete("heap chunks", "--arena main_ar") == registry.EXPRESSION
    assert complete("heap chunks", "--limit=") == []


def test_an_address_completes_as_an_expression():
    assert complete("heap chunk", "") == registry.EXPRESSION
    assert complete("heap chunk", "--json ") == registry.EXPRESSION
    assert complete("heap chunk", "p --") == ["json", "output", "dump"]  # gdb replaces what follows the last "-"
    assert complete("heap chunk", "p --json --") == ["output", "dump"]
    assert complete("heap top", "--json --output ") == registry.FILENAME  # a file name, never an option
    assert complete("heap where", "main_ar") == registry.EXPRESSION
