# gdb_heap: `make demo` builds the samples and shows the heap commands on one of them;
# `make test` sets up .venv (test tools only), then lint, type checks and the whole suite.

CC      ?= gcc
CFLAGS  := -g -O0 -Wall -Wextra
PYTHON  ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
SAMPLES := $(patsubst c_samples/%.c,build/%,$(wildcard c_samples/*.c))
GDB     := gdb -q -nx -batch -ex 'set pagination off' -ex 'set debuginfod enabled off'

.PHONY: all samples demo test test-gdb lint fuzz mutate mutate-score bench bench-big bench-floors bench-trace bench-snapshot readme \
        walkthrough check-tools clean matrix matrix-readme install-gdbinit uninstall-gdbinit

all: samples

samples: $(SAMPLES)

build/%: c_samples/%.c c_samples/sample.h
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ $< -pthread

check-tools:
	@command -v gdb >/dev/null || { echo "make: gdb is missing; install it (Debian: apt install gdb)"; exit 1; }
	@command -v $(CC) >/dev/null || { echo "make: $(CC) is missing; install it (Debian: apt install gcc)"; exit 1; }
	@$(GDB) -ex 'python import gdb_heap' -ex 'quit' >/dev/null 2>&1 || true

# The main job: the learner's view of every bin at once (c_samples/all_bins.c at its checkpoint).
DEMO_NOISE := -e '^Breakpoint 1' -e '^\[Thread debugging' -e '^Using host libthread_db' -e '^[0-9][0-9]*[[:space:]]'
demo: check-tools samples
	@$(GDB) -ex 'source gdb_heap/init.py' -ex 'break checkpoint' -ex 'run > build/all_bins.out' \
	  -ex 'echo \n(gdb) heap\n' -ex 'heap' \
	  -ex 'echo \n(gdb) heap chunks\n' -ex 'heap chunks' \
	  -ex 'echo \n(gdb) heap bins\n' -ex 'heap bins' \
	  -ex 'echo \n(gdb) heap top\n' -ex 'heap top' \
	  build/all_bins 2>&1 | grep -v $(DEMO_NOISE)

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/vermin --no-tips -q -t=3.9- --eval-annotations --violations gdb_heap

test: check-tools samples lint
	$(VPY) -m pytest -q

# The suite again under other releases' gdb (tools/gdb-versions.sh unpacks each, with its own
# Python, into .cache/gdb, without root): trixie's is gdb 16.3 with Python 3.13, bullseye's gdb 10.1
# with Python 3.9.
GDB_SUITES ?= trixie bullseye
test-gdb: check-tools samples $(VENV)/.installed
	@GDB_SUITES='$(GDB_SUITES)' bash tools/gdb-versions.sh .cache/gdb > build/gdb-versions.txt || exit 1; \
	while read -r suite version bin; do \
	  echo "== the suite under $$suite's gdb $$version"; \
	  PATH="$$bin:$$PATH" $(VPY) -m pytest -q || exit 1; \
	done < build/gdb-versions.txt

# The long fuzz run of the model on corrupted synthetic heaps (make test runs a short one).
fuzz: $(VENV)/.installed
	GDB_HEAP_FUZZ_EXAMPLES=10000 $(VPY) -m pytest -q tests/test_fuzz.py

# Mutation testing (mutmut, configured in pyproject.toml's [tool.mutmut]): small deliberate bugs in
# the gdb-free modules, each run against the fast tests (no gdb); a mutant the tests do not notice
# survives.  Not part of `make test`: a whole run takes well over half an hour on 2 shared cores.
# MODULES='check render' runs only those modules (gdb_heap/NAME.py) again, keeping the other modules'
# results of earlier runs (the tests' coverage is measured anew); MUTATE_JOBS how many run at once;
# the score per module: `make mutate-score` (SURVIVORS=1 lists them; .venv-mut/bin/mutmut show NAME).
MUT_VENV    := .venv-mut
MUTATE_JOBS ?= 2
$(MUT_VENV)/.installed: requirements-dev.txt requirements-mutate.txt
	$(PYTHON) -m venv $(MUT_VENV)
	$(MUT_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt -r requirements-mutate.txt
	@touch $@

mutate: $(MUT_VENV)/.installed
	mkdir -p build
	$(if $(MODULES),rm -f mutants/mutmut-stats.json,rm -rf mutants)
	GDB_HEAP_FUZZ_EXAMPLES=20 $(MUT_VENV)/bin/mutmut run --max-children $(MUTATE_JOBS) \
	  $(foreach m,$(MODULES),'gdb_heap.$(m).*') > build/mutate.log 2>&1 || { tail -c 3000 build/mutate.log; exit 1; }
	$(PYTHON) tools/mutation_score.py $(if $(SURVIVORS),--survivors)

mutate-score:
	$(PYTHON) tools/mutation_score.py $(if $(SURVIVORS),--survivors)

# The glibc matrix (tools/matrix.py): Debian's glibcs 2.31..newest, amd64 and i386, fetched
# into .cache/glibc; the samples built per version (dynamic and static); the live tests per
# config (version x arch x symbols or not x dynamic or static); results in build/matrix/results.json.
# MATRIX_CONFIGS='2.31*/dynamic/*' picks configs; MATRIX_JOBS how many run at once.
MATRIX_JOBS ?= 2
matrix: check-tools $(VENV)/.installed
	$(PYTHON) tools/matrix.py fetch
	$(PYTHON) tools/matrix.py build
	$(VPY) tools/matrix.py run -j $(MATRIX_JOBS) $(foreach c,$(MATRIX_CONFIGS),'$(c)'); rc=$$?; $(PYTHON) tools/matrix_table.py; exit $$rc

# The README's matrix table from the last `make matrix`.
matrix-readme:
	$(PYTHON) tools/matrix_table.py --readme

bench: samples
	$(PYTHON) bench/bench.py --readme
	$(PYTHON) bench/trace_rate.py --readme
	$(PYTHON) bench/snapshot_bench.py --readme

# 10^7 chunks: a heap of about 4 GB, built in minutes; three runs of each command.
bench-big: samples
	$(PYTHON) bench/bench.py --readme --repeat=3 10000000
	$(PYTHON) bench/snapshot_bench.py --readme --repeat=3 10000000

# What no implementation in gdb's Python can skip, per command, beside the targets (bench/floors.py).
bench-floors: samples
	$(PYTHON) bench/floors.py --readme --repeat=3 1000000 10000000

# The traced call rate of heap trace alone (bench/trace_rate.py).
bench-trace: samples
	$(PYTHON) bench/trace_rate.py --readme

# heap snapshot and heap diff beside heap chunks --summary (bench/snapshot_bench.py).
bench-snapshot: samples
	$(PYTHON) bench/snapshot_bench.py --readme

readme: samples
	$(PYTHON) tools/readme_examples.py

# The learner's walk-through, docs/walkthrough.md, regenerated from real gdb sessions on the
# samples (tests/test_walkthrough.py fails when the committed text is stale).
walkthrough: samples
	$(PYTHON) tools/readme_examples.py docs/walkthrough.md

# Every gdb session of the user sources this checkout's gdb_heap/init.py (idempotent), or no more.
install-gdbinit:
	$(PYTHON) -m gdb_heap.install

uninstall-gdbinit:
	$(PYTHON) -m gdb_heap.install --remove

clean:
	rm -rf build mutants
