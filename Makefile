# make demo: set up .venv and run embed -> seed -> query on the bundled demo data with the bundled model
# make test: set up .venv and run the test suite (it includes the check that the README's tables match benchmarks/results/)
# make bench: the quick subset of the benchmarks: writes benchmarks/results/*.json and re-renders the README's tables
# make bench-full: every benchmark the README's numbers come from (same outputs)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fmal-installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test bench bench-full clean

setup: $(STAMP)

# torch first, pinned to the CPU wheel on this machine's disk: a bare "torch" would pull a multi-GB CUDA build
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,sim,ray]'
	touch $(STAMP)

demo: setup
	bash examples/demo.sh

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/run_all.py --quick

bench-full: setup
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) indexes/demo runs
