"""registry.py on specs made up in the test: the invocations each kind of command gets, help's
wrapping, and `help heap`'s list laid out in two columns."""

from gdb_heap import registry
from gdb_heap.registry import CommandSpec


def test_invocations_of_each_kind():
    plain = CommandSpec("heap x", "X.", "heap x", json=False, examples=("heap x a", "heap x {pointer} b"))
    assert plain.invocations() == ["heap x", "heap x a"]
    assert plain.invocations("p") == ["heap x", "heap x a", "heap x p b"]
    both = CommandSpec("heap y", "Y.", "heap y [--json]", arenas=True)
    assert both.invocations() == ["heap y", "heap y --json", "heap y --all-arenas", "heap y --all-arenas --json"]
    text_only = CommandSpec("heap z", "Z.", "heap z", json=False, arenas=True)
    assert text_only.invocations() == ["heap z", "heap z --all-arenas"]
    at = CommandSpec("heap w", "W.", "heap w ADDR [--json]", address=True, examples=("heap w {pointer} --dump",))
    assert at.invocations() == []
    assert at.invocations("$p") == ["heap w $p", "heap w $p --json", "heap w $p --dump"]
    assert registry.every_invocation(None, specs=(plain, at)) == ["heap x", "heap x a"]
    assert registry.every_invocation("q", json_only=True, specs=(plain, at, both)) == [
        "heap w q --json", "heap y --json", "heap y --all-arenas --json"]
    assert at.named("gheap") == "gheap w" and CommandSpec("heap", "H.", "heap").named("gheap") == "gheap"


def test_wrap_keeps_hyphenated_and_long_words_whole():
    words = "a-b " * 30  # 120 columns of words joined by hyphens: broken at blanks only
    text = registry.wrap(words.strip(), "    ", "> ")
    lines = text.split("\n")
    assert lines[0].startswith("> a-b") and all(line.startswith("    a-b") for line in lines[1:])
    assert all(len(line) <= 80 for line in lines) and len(lines[0]) > 76
    long = "x" * 100
    assert registry.wrap(f"short {long}") == f"short\n{long}"
    assert registry.wrap("one two") == "one two"


def test_subcommand_list_columns():
    text = registry.subcommand_list()
    names = [c.name for c in registry.SUBCOMMANDS]
    width = max(len(n) for n in names)
    lines = text.split("\n")
    starts = [line for line in lines if not line.startswith(" " * (width + 4))]
    assert [line[2:2 + width].rstrip() for line in starts] == names
    assert all(line.startswith("  heap ") and line[2 + width:4 + width] == "  " and line[4 + width] != " "
               for line in starts)
    assert all(len(line) <= 80 for line in lines)
    g = registry.subcommand_list("gheap").split("\n")
    assert [line.split()[0] for line in g if not line.startswith(" " * (width + 5))] == ["gheap"] * len(names)


def test_a_long_summary_goes_on_under_its_column(monkeypatch):
    monkeypatch.setattr(registry, "SUBCOMMANDS", (
        CommandSpec("heap ab", "word " * 20, "heap ab"), CommandSpec("heap abcd", "Short.", "heap abcd")))
    assert registry.subcommand_list().split("\n") == [
        "  heap ab    " + "word " * 12 + "word",  # 13 + 13 * 5 - 1 = 77 columns; a 14th word makes 82
        "             " + "word " * 6 + "word",
        "  heap abcd  Short."]
