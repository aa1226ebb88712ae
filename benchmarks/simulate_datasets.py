"""``fmal simulate`` on the shipped labeled datasets, with today's defaults: the README's "Does active
learning beat random on my data?" tables.

    python benchmarks/simulate_datasets.py [--datasets trec6 sms_spam rotten_tomatoes] [--seeds 5]

For each dataset (benchmarks/data/, unpacked into runs/bench/data/) it runs, as a user would:

    fmal simulate runs/bench/data/NAME.csv --label-col label --test-col split \\
        --strategy random,typiclust+margin,random+margin,auto --seeds 5 --initial 20 --step 20 --max 200 \\
        --pool NAME --index-dir runs/bench/pools --output examples/simulate_results/NAME

The pool is embedded with fmal's default backend (once; reused while its input and model are
unchanged). Writes examples/simulate_results/NAME/ (simulation.json, .md, curves.csv, the plot) and
benchmarks/results/simulate_NAME.json (the numbers the README's table and sentences are rendered
from, with the command, commit, backend and machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _results  # noqa: E402

STRATEGIES = "random,typiclust+margin,random+margin,auto"
OUT = Path("examples") / "simulate_results"


def _ci(d: dict) -> dict:
    return {k: d[k] for k in ("mean", "lo", "hi") if k in d}


def summarise(sim: dict) -> dict:
    """The numbers of ``simulation.json`` the README uses."""
    strategies = {}
    for s in sim["strategies"]:
        vs = s.get("vs_baseline") or {}
        strategies[s["name"]] = {
            "aulc_accuracy": _ci(s["aulc_accuracy"]),
            "aulc_macro_f1": round(s["aulc_macro_f1"]["mean"], 3),
            "vs_random": _ci(vs["aulc_diff_points"]) if vs else None,
            "vs_random_per_step": [{"n_labels": p["n_labels"], **_ci(p)} for p in vs.get("accuracy_diff_points_per_step", [])],
            "accuracy_per_step": [{"n_labels": c["n_labels"], **_ci(c["accuracy"])} for c in s["curve"]],
            "labels_to_90": s["labels_to_reach"]["90%"]["median"],
            "labels_to_95": s["labels_to_reach"]["95%"]["median"],
        }
    info = sim["info"]
    return {
        "full_data": sim["full_data"], "verdict": sim["verdict"], "budgets": sim["budgets"], "seeds": len(sim["seeds"]),
        "n_train": info["n_train"], "n_test": info["n_test"], "class_counts_train": info["class_counts_train"],
        "backend": info.get("backend"), "seconds_simulation": info.get("seconds_simulation"),
        "max_budget": max(sim["budgets"]), "strategies": strategies,
    }


def run_one(name: str, seeds: int, strategies: str, initial: int, step: int, max_labels: int) -> Path:
    os.chdir(_results.REPO)  # every path below is relative to the repo: results name them the same on any clone
    csv = _results.dataset_csv(name)
    out = OUT / name
    cmd = ["fmal", "simulate", str(csv), "--label-col", "label", "--test-col", "split", "--strategy", strategies,
           "--seeds", str(seeds), "--initial", str(initial), "--step", str(step), "--max", str(max_labels),
           "--pool", name, "--index-dir", str(_results.pools_dir()), "--output", str(out)]
    print(" ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fmal", *cmd[1:]], check=True, env={**os.environ, "PYTHONPATH": str(_results.REPO)})
    wall = time.perf_counter() - t0
    sim = json.loads((out / "simulation.json").read_text(encoding="utf-8"))
    prov = _results.provenance(sim["info"].get("backend"))
    prov["command"] = " ".join(cmd)
    return _results.write(f"simulate_{name}", summarise(sim), seconds=wall, provenance_=prov,
                          settings={"dataset": name, "strategies": strategies.split(","), "seeds": seeds, "initial": initial,
                                    "step": step, "max": max_labels, "output": str(out)})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=list(_results.DATASETS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--strategies", default=STRATEGIES)
    ap.add_argument("--initial", type=int, default=20)
    ap.add_argument("--step", type=int, default=20)
    ap.add_argument("--max", type=int, default=200, dest="max_labels")
    a = ap.parse_args(argv)
    for name in a.datasets:
        run_one(name, a.seeds, a.strategies, a.initial, a.step, a.max_labels)


if __name__ == "__main__":
    main()
