#!/usr/bin/env bash
# The whole loop on the bundled demo data (1,000 TREC questions) with the bundled model:
# embed -> seed (cold start, no labels) -> simulated annotator -> query (probe + uncertainty).
set -euo pipefail
cd "$(dirname "$0")/.."
FMAL=.venv/bin/fmal
PY=.venv/bin/python
DATA=examples/data/trec6_demo.csv
OUT=runs/demo
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1

echo "== 1. embed the pool (bundled all-MiniLM-L6-v2; a rerun is a no-op)"
$FMAL embed "$DATA" --pool demo

echo; echo "== 2. cold start: 12 diverse, typical questions to label first (TypiClust)"
$FMAL seed --pool demo --budget 12 --strategy typiclust --output "$OUT/seed.csv"

echo; echo "== 3. an annotator labels them (simulated from the demo data's gold labels)"
$PY examples/answer_from_gold.py "$OUT/seed.csv" "$DATA" "$OUT/labels.csv"

echo; echo "== 4. next batch: the 12 questions a linear probe is least sure about (margin)"
$FMAL query --pool demo --labels "$OUT/labels.csv" --budget 12 --strategy margin --output "$OUT/round2.csv"

echo; echo "== 5. the session so far"
$FMAL status --pool demo
echo; echo "demo done: picks in $OUT/, pool in indexes/demo/"
