#!/usr/bin/env bash
# Reproduce the README's "Does active learning beat random on my data?" results: the three shared
# labeled datasets, 4 strategies x 5 seeds x 10 steps (20, 40, ..., 200 labels), test = the file's
# fixed `split` column. Pools are embedded once (bundled all-MiniLM-L6-v2) and reused afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data}
INDEX_DIR=${INDEX_DIR:-/tmp/fmal-shared}
STRATEGIES=${STRATEGIES:-random,typiclust+margin,random+margin,auto}
export HF_HUB_OFFLINE=1
for d in trec6 sms_spam rotten_tomatoes; do
  /usr/bin/time -f "$d: %e s wall, %U s user" .venv/bin/fmal simulate "$DATA/$d.csv" --label-col label \
    --test-col split --strategies "$STRATEGIES" --seeds 5 --initial 20 --step 20 --max 200 \
    --pool "$d" --index-dir "$INDEX_DIR" --out "examples/simulate_results/$d"
done
