"""Multi-label active learning vs random on trec6_multilabel: the README's "Multi-label" table.

    python benchmarks/simulate_multilabel.py [--seeds 5] [--strategies ...]

The data set is derived from the shipped trec6 (benchmarks/_multilabel_data.py: question type plus
``has_number`` and ``long`` read off the text; 1-3 classes a row), written to
runs/bench/data/trec6_multilabel.csv, then simulated as a user would:

    fmal simulate runs/bench/data/trec6_multilabel.csv --multi-label --label-col label --test-col split \\
        --strategy random,typiclust+mean-margin,typiclust+max-entropy,auto --seeds 5 --initial 20 --step 20 \\
        --max 200 --pool trec6_multilabel --index-dir runs/bench/pools --output runs/bench/simulate/trec6_multilabel

Scores on the held-out rows: micro-F1 (the simulation's headline, which fmal's report shows as its
"accuracy"), macro-F1 over the 8 classes and subset accuracy (the whole set right). Every
AL-vs-random difference is paired by seed (same seed, same test rows) with a 95% t-interval over
seeds. Writes benchmarks/results/simulate_multilabel.json.
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

import _multilabel_data  # noqa: E402
import _results  # noqa: E402

STRATEGIES = "random,typiclust+mean-margin,typiclust+max-entropy,auto"
OUT = Path("runs") / "bench" / "simulate" / _multilabel_data.NAME


def _ci(values: list[float], scale: float = 1.0) -> dict[str, float]:
    from fmal.simulate import mean_ci

    m, lo, hi = mean_ci([scale * v for v in values])
    return {"mean": round(m, 3), "lo": round(lo, 3), "hi": round(hi, 3)}


def summarise(sim: dict, curves: "object") -> dict:
    """Per strategy: AULC of micro-F1 and macro-F1 (points), each paired against random, and the
    three scores at the last budget (mean and interval over seeds)."""
    import numpy as np

    base = next(s for s in sim["strategies"] if s["name"] == sim["baseline"])
    last = max(sim["budgets"])
    out = {}
    for s in sim["strategies"]:
        micro, macro = s["aulc_accuracy"]["per_seed"], s["aulc_macro_f1"]["per_seed"]
        at = curves[(curves["strategy"] == s["name"]) & (curves["n_labels"] == last)].sort_values("seed")
        at_base = curves[(curves["strategy"] == base["name"]) & (curves["n_labels"] == last)].sort_values("seed")
        row = {
            "aulc_micro_f1": _ci(micro), "aulc_macro_f1": _ci(macro),
            "at_max": {m: _ci(at[c].tolist(), 100) for m, c in
                       (("micro_f1", "accuracy"), ("macro_f1", "macro_f1"), ("subset_accuracy", "subset_accuracy"))},
            "verdict": (s.get("vs_baseline") or {}).get("verdict"),
        }
        if s["name"] != base["name"]:
            row["vs_random"] = {
                "aulc_micro_f1": _ci([a - b for a, b in zip(micro, base["aulc_accuracy"]["per_seed"])]),
                "aulc_macro_f1": _ci([a - b for a, b in zip(macro, base["aulc_macro_f1"]["per_seed"])]),
                "at_max_micro_f1": _ci((np.asarray(at["accuracy"]) - np.asarray(at_base["accuracy"])).tolist(), 100),
            }
        out[s["name"]] = row
    info = sim["info"]
    return {
        "dataset": _multilabel_data.NAME, "classes": sim["classes"], "budgets": sim["budgets"], "seeds": len(sim["seeds"]),
        "n_train": info["n_train"], "n_test": info["n_test"], "class_counts_train": info["class_counts_train"],
        "mean_classes_per_row_train": info["mean_classes_per_row_train"],
        "full_data": {"micro_f1": sim["full_data"]["accuracy"], "macro_f1": sim["full_data"]["macro_f1"],
                      "subset_accuracy": info["full_data_subset_accuracy"]},
        "verdict": sim["verdict"], "max_budget": last, "backend": info.get("backend"),
        "seconds_simulation": info.get("seconds_simulation"), "strategies": out,
    }


def main(argv: list[str] | None = None) -> Path:
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--strategies", default=STRATEGIES)
    ap.add_argument("--initial", type=int, default=20)
    ap.add_argument("--step", type=int, default=20)
    ap.add_argument("--max", type=int, default=200, dest="max_labels")
    a = ap.parse_args(argv)
    os.chdir(_results.REPO)  # paths relative to the repo: results name them the same on any clone
    csv = _multilabel_data.dataset_csv()
    cmd = ["fmal", "simulate", str(csv), "--multi-label", "--label-col", "label", "--test-col", "split", "--strategy",
           a.strategies, "--seeds", str(a.seeds), "--initial", str(a.initial), "--step", str(a.step), "--max",
           str(a.max_labels), "--pool", _multilabel_data.NAME, "--index-dir", str(_results.pools_dir()), "--output", str(OUT)]
    print(" ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fmal", *cmd[1:]], check=True, env={**os.environ, "PYTHONPATH": str(_results.REPO)})
    wall = time.perf_counter() - t0
    sim = json.loads((OUT / "simulation.json").read_text(encoding="utf-8"))
    curves = pd.read_csv(OUT / "curves.csv")
    prov = _results.provenance(sim["info"].get("backend"))
    prov["command"] = "python benchmarks/simulate_multilabel.py" + (f" {' '.join(argv)}" if argv else "")
    return _results.write("simulate_multilabel", summarise(sim, curves), seconds=wall, provenance_=prov,
                          settings={"dataset": _multilabel_data.NAME, "strategies": a.strategies.split(","), "seeds": a.seeds,
                                    "initial": a.initial, "step": a.step, "max": a.max_labels, "fmal_command": " ".join(cmd)})


if __name__ == "__main__":
    main(sys.argv[1:])
