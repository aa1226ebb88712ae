"""How far to trust ``fmal audit`` at a given number of labels: trec6 (MiniLM embeddings), n random
labels of the train rows with 10% of them flipped to another class at random, audited; precision
(flagged rows that were flipped), recall (flipped rows flagged), and what the audit said about its
own reliability. 5 seeds per size. Writes benchmarks/results/audit_precision.json (the README's
table is rendered from it).

    python benchmarks/audit_precision.py [--sizes 50,100,200,400] [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import _results
from _trec6_pool import trec6_pool


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="50,100,200,400")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--flip", type=float, default=0.10)
    args = ap.parse_args()
    t_start = time.perf_counter()
    from fmal.audit import audit_labels
    from fmal.pool import open_pool

    index_dir, name, gold = trec6_pool()
    pool = open_pool(name, index_dir)
    ids = np.asarray(pool.ids)
    classes = sorted(set(gold.values()))
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            pick = rng.choice(len(ids), n, replace=False)
            y = np.asarray([gold[i] for i in ids[pick]], dtype=object)
            flipped = rng.choice(n, int(round(args.flip * n)), replace=False)
            for k in flipped:
                y[k] = rng.choice([c for c in classes if c != y[k]])
            t0 = time.perf_counter()
            res = audit_labels(np.asarray(pool.embeddings[pick]), ids[pick].tolist(), y.astype(str).tolist(), random_state=seed)
            secs = time.perf_counter() - t0
            flagged = set(res.issues["id"])
            truth = set(ids[pick][flipped])
            tp = len(flagged & truth)
            rows.append({"labels": n, "seed": seed, "flipped": len(truth), "flagged": len(flagged), "true_flags": tp,
                         "precision": tp / len(flagged) if flagged else None, "recall": tp / len(truth) if truth else None,
                         "reliable": res.reliable, "probe_agreement": res.agreement, "caution": res.caution, "smallest_class": min(res.class_counts.values()),
                         "seconds": round(secs, 2)})
            print(rows[-1], flush=True)
    table = []
    for n in sorted({r["labels"] for r in rows}):
        rs = [r for r in rows if r["labels"] == n]
        fl = sum(r["flagged"] for r in rs)
        tp = sum(r["true_flags"] for r in rs)
        table.append({"labels": n, "runs": len(rs), "flagged_per_run": round(fl / len(rs), 1),
                      "flipped_per_run": round(sum(r["flipped"] for r in rs) / len(rs), 1),
                      "precision": round(tp / fl, 3) if fl else None,
                      "recall": round(tp / sum(r["flipped"] for r in rs), 3),
                      "probe_agreement": round(sum(r["probe_agreement"] for r in rs) / len(rs), 3),
                      "said_unreliable": sum(not r["reliable"] for r in rs)})
    print(json.dumps(table, indent=2))
    _results.write("audit_precision", {"summary": table, "runs": rows}, seconds=time.perf_counter() - t_start,
                   settings={"dataset": "trec6 train rows", "sizes": args.sizes, "seeds": args.seeds, "flip": args.flip})

if __name__ == "__main__":
    main()
