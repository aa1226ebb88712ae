"""Regenerate the README's numbers: run the benchmarks, write benchmarks/results/*.json, re-render
the README's tables from them.

    python benchmarks/run_all.py --quick   # make bench: the quick subset
    python benchmarks/run_all.py           # make bench-full: every results file the README uses

Each step is a command a reader can also run alone (printed). Pools are embedded once into
runs/bench/pools/ and reused by every step and by later runs, so a second run skips the embedding.
The wall time of each step and of the whole run is written to benchmarks/results/run_all_quick.json
or run_all_full.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _results  # noqa: E402

PY = "python"
PROBCOVER = ["benchmarks/seed_quality.py", "--strategies", "random", "probcover", "--peers", "skactiveml.ProbCover",
             "--name", "seed_quality_probcover"]
QUICK = [
    ["benchmarks/simulate_datasets.py", "--datasets", "trec6", "sms_spam"],
    PROBCOVER,
    ["benchmarks/embed_backends.py", "--sizes", "2000"],
]
FULL = [
    ["benchmarks/simulate_datasets.py"],
    PROBCOVER,
    ["benchmarks/embed_accuracy.py"],
    ["benchmarks/embed_backends.py", "--sizes", "2000", "20000"],
    ["benchmarks/seed_two_level.py"],
    ["benchmarks/scale.py", "--sizes", "100000", "--kinds", "auto"],
    ["benchmarks/embed_throughput.py", "--processes", "--n", "6000", "--repeats", "2"],
    ["benchmarks/ingest.py"],  # 1M x 384: ~5 min, ~3.5 GiB
    ["benchmarks/query_quality.py", "--seeds", "20", "--jobs", "2"],  # ~6 min on 2 quiet cores: not in QUICK
    ["benchmarks/simulate_multilabel.py"],
    ["benchmarks/audit_precision.py"],
    ["benchmarks/sync_loop.py"],  # a real Label Studio (the tests' venv: installed on first use)
    ["benchmarks/interactive.py", "--sizes", "100000", "--reps", "2", "--peer-timeout", "120"],
    ["benchmarks/interactive.py", "--sizes", "1000000", "--no-peers", "--steps", "index", "seed", "query",
     "--name", "interactive-1m"],  # ~1.5 GiB pool written under runs/bench
]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the quick subset (make bench)")
    ap.add_argument("--dry-run", action="store_true", help="print the steps only")
    a = ap.parse_args(argv)
    os.chdir(_results.REPO)
    steps = QUICK if a.quick else FULL
    env = {**os.environ, "PYTHONPATH": str(_results.REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cached = (_results.WORK / "pools").is_dir() and any((_results.WORK / "pools").iterdir())
    t0 = time.perf_counter()
    done = []
    for step in steps:
        print(f"\n$ {PY} {' '.join(step)}", flush=True)
        if a.dry_run:
            continue
        t = time.perf_counter()
        subprocess.run([sys.executable, *step], check=True, env=env)
        done.append({"command": f"{PY} {' '.join(step)}", "seconds": round(time.perf_counter() - t, 1)})
    if a.dry_run:
        return
    mode = "quick" if a.quick else "full"
    _results.write(f"run_all_{mode}", {"steps": done, "make": "make bench" if a.quick else "make bench-full"},
                   seconds=time.perf_counter() - t0, settings={"mode": mode, "pools_cached": cached})
    subprocess.run([sys.executable, "benchmarks/render_readme.py"], check=True, env=env)
    print(f"\n{mode}: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
