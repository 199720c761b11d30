"""The mutation score of the last `make mutate`, per module and overall, from mutmut's own
records (mutants/gdb_heap/*.py.meta: each mutant's exit code of the fast tests).

    python3 tools/mutation_score.py              the table
    python3 tools/mutation_score.py --survivors  and the surviving mutants' names
    python3 tools/mutation_score.py --markdown   the table as the README's development section has it
    (`.venv-mut/bin/mutmut show NAME` prints one's diff)

Killed: the tests failed (or hung past mutmut's timeout) with the mutant in place.  Survived
includes "no tests": mutants in code no fast test runs.  Score = killed / (killed + survived)."""

import glob
import json
import os
import sys
from collections import Counter
from typing import Dict

KILLED = {1, 3, 36, 24, -24, 152, 255, 37}  # failed, pytest error, timeouts, caught by the type check
SURVIVED = {0}
NO_TESTS = {5, 33}


def load(root: str) -> Dict[str, Dict[str, int]]:
    out: Dict[str, Dict[str, int]] = {}
    for path in sorted(glob.glob(os.path.join(root, "mutants", "gdb_heap", "*.py.meta"))):
        with open(path) as f:
            codes = json.load(f)["exit_code_by_key"]
        module = os.path.basename(path)[:-len(".py.meta")]
        out[module] = codes
    return out


def main() -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    modules = load(root)
    if not modules:
        print("no mutation results: run `make mutate` first", file=sys.stderr)
        return 1
    total: Counter = Counter()
    markdown = "--markdown" in sys.argv[1:]
    if markdown:
        print("| module | mutants | killed | survived (no tests) | not run | score | complete |")
        print("|---|---|---|---|---|---|---|")
    else:
        print(f"{'module':<12} {'mutants':>7} {'killed':>7} {'survived':>8} {'no tests':>8} {'other':>5} {'score':>6}")
    survivors = []
    for module, codes in modules.items():
        c: Counter = Counter()
        for name, code in codes.items():
            kind = ("killed" if code in KILLED else "survived" if code in SURVIVED else
                    "no_tests" if code in NO_TESTS else "other")  # not checked, skipped, suspicious
            c[kind] += 1
            if kind in ("survived", "no_tests"):
                survivors.append(name)
        if not sum(c.values()):
            continue
        total.update(c)
        judged = c["killed"] + c["survived"] + c["no_tests"]
        score = f"{100 * c['killed'] / judged:.1f}%" if judged else "-"
        if markdown:
            print(f"| {module} | {sum(c.values()):,} | {c['killed']:,} | {c['survived'] + c['no_tests']:,} "
                  f"({c['no_tests']:,}) | {c['other']:,} | {score} | {'no' if c['other'] else 'yes'} |")
        else:
            print(f"{module:<12} {sum(c.values()):>7} {c['killed']:>7} {c['survived']:>8} {c['no_tests']:>8} "
                  f"{c['other']:>5} {score:>6}")
    judged = total["killed"] + total["survived"] + total["no_tests"]
    score = f"{100 * total['killed'] / max(1, judged):.1f}%"
    if markdown:
        print(f"| all | {sum(total.values()):,} | {total['killed']:,} | {total['survived'] + total['no_tests']:,} "
              f"({total['no_tests']:,}) | {total['other']:,} | {score} |  |")
    else:
        print(f"{'all':<12} {sum(total.values()):>7} {total['killed']:>7} {total['survived']:>8} "
              f"{total['no_tests']:>8} {total['other']:>5} {score}")
    if "--survivors" in sys.argv[1:]:
        print("\n".join(sorted(survivors)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
