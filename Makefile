# make demo: set up .venv and run embed -> seed -> query on the bundled demo data with the bundled model
# make test: set up .venv and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fmal-installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test bench clean

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
	$(BIN)/python benchmarks/embed_throughput.py

clean:
	rm -rf $(VENV) indexes/demo runs
