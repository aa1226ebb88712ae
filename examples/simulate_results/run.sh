#!/usr/bin/env bash
# Reproduce the README's "Does active learning beat random on my data?" tables: the three labeled
# datasets shipped in benchmarks/data/, 4 strategies x 5 seeds x 10 steps (20, 40, ..., 200 labels),
# test = the file's fixed `split` column, pools embedded once with fmal's default backend into
# runs/bench/pools/ (git-ignored) and reused. Writes examples/simulate_results/NAME/ and
# benchmarks/results/simulate_NAME.json; `python benchmarks/render_readme.py` re-renders the README.
# Arguments go to benchmarks/simulate_datasets.py (e.g. --datasets trec6 --seeds 3).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$SECONDS
"$PY" benchmarks/simulate_datasets.py "$@"
echo "simulate_datasets: $((SECONDS - start)) s wall"
