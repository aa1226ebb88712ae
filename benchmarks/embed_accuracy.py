"""The accuracy cost of an encoder backend as users run it: pool against pool.

    python benchmarks/embed_accuracy.py [--datasets trec6 sms_spam rotten_tomatoes] [--backends onnx onnx-int8]

For each shipped dataset (benchmarks/data/), pools are built by ``fmal embed`` in its normal
chunks (2,048 distinct texts), once with each ``--backends`` runtime and once with ``--backend
torch`` (sentence-transformers fp32, the reference), in two layouts (``--layouts``):

- ``splits``: the ``train`` rows and the ``test`` rows each written to a CSV and embedded into a
  pool of their own (a user's pool, and a labeled test set embedded later);
- ``file``: the whole file in one pool, as ``fmal simulate`` builds it.

An int8 vector depends slightly on its batch-mates, so this, not one encode call over a sample, is
the cost a user pays.

Per dataset and backend: the mean and minimum cosine of each text's vector to its torch vector
(train and test rows), and the test accuracy of a probe trained on all train rows: fmal's own
``LinearProbe`` (C chosen by cross-validation, as ``fmal query`` does), ``LinearProbe(C=10)`` (the
fixed C of ``fmal simulate``, whose full-data line it is) and a scikit-learn
``LogisticRegression(C=10, max_iter=3000)``. The bar a default backend must meet: mean cosine >= 0.99 and the
LinearProbe within 0.5 points of the torch pool's. Writes ``benchmarks/results/embed_accuracy.json``.
Pools are kept in ``runs/bench/pools/`` and reused by later runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import _results  # noqa: E402

REFERENCE = "torch"
BAR_COSINE, BAR_POINTS = 0.99, 0.5


def pool_name(ds: str, layout: str, split: str, backend: str) -> str:
    # never simulate_datasets.py's pool NAME: it keeps the backend it was first built with
    return f"{ds}-{backend}" if layout == "file" else f"{ds}-{split}-{backend}"


def split_csvs(name: str) -> dict[str, Path]:
    """``runs/bench/data/NAME-train.csv`` and ``-test.csv`` (id, text, label)."""
    src = _results.dataset_csv(name)
    df = pd.read_csv(src, dtype=str, keep_default_na=False)
    out = {}
    for split in ("train", "test"):
        p = src.with_name(f"{name}-{split}.csv")
        part = df[df["split"] == split][["id", "text", "label"]]
        if not p.is_file() or not pd.read_csv(p, dtype=str, keep_default_na=False).equals(part.reset_index(drop=True)):
            part.to_csv(p, index=False)
        out[split] = p
    return out


def embedded(csv: Path, pool: str, backend: str, split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, labels) of ``csv``'s rows (those of ``split`` when given), in file order, from its
    pool (built if missing)."""
    import fmal

    from fmal.exceptions import PoolBusyError

    for wait in range(180):  # another benchmark (simulate_datasets.py) may be building the same pool
        try:
            res = fmal.embed(csv, pool, index_dir=_results.pools_dir(), backend=backend)
            break
        except PoolBusyError:
            if wait == 0:
                print(f"  {pool} is being built by another process: waiting", file=sys.stderr, flush=True)
            time.sleep(10)
    else:
        raise SystemExit(f"{pool}: still being built by another process after 30 min")
    if res.n_embedded:
        print(f"  embedded {res.n_embedded:,} texts into {pool} ({backend}) in {res.seconds:.0f} s", file=sys.stderr, flush=True)
    p = fmal.open_pool(res.pool_path)
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    if split is not None:
        df = df[df["split"] == split]
    X = np.asarray(p.embeddings[p.rows_of(df["id"].tolist(), source=str(csv))], dtype=np.float32)
    return X, df["label"].to_numpy()


def scores(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, yte: np.ndarray) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    import fmal

    probe = fmal.LinearProbe(random_state=0).fit(Xtr, ytr)
    probe10 = fmal.LinearProbe(C=10.0, random_state=0).fit(Xtr, ytr)
    lr = LogisticRegression(C=10.0, max_iter=3000).fit(Xtr, ytr)
    return {"linear_probe": float((probe.predict(Xte) == yte).mean()), "linear_probe_C": float(probe.C_),
            "linear_probe_c10": float((probe10.predict(Xte) == yte).mean()),
            "logreg_c10": float((lr.predict(Xte) == yte).mean())}


def measure(ds: str, layout: str, backends: list[str]) -> dict:
    if layout == "splits":
        csvs = split_csvs(ds)
        vecs = {b: {sp: embedded(csvs[sp], pool_name(ds, layout, sp, b), b) for sp in ("train", "test")}
                for b in [REFERENCE, *backends]}
    else:
        csv = _results.dataset_csv(ds)
        vecs = {b: {sp: embedded(csv, pool_name(ds, layout, sp, b), b, sp) for sp in ("train", "test")}
                for b in [REFERENCE, *backends]}
    ref = scores(*vecs[REFERENCE]["train"], *vecs[REFERENCE]["test"])
    rows = {REFERENCE: {**ref, "mean_cos": 1.0, "min_cos": 1.0}}
    for b in backends:
        cos = np.concatenate([(vecs[b][sp][0] * vecs[REFERENCE][sp][0]).sum(1) for sp in ("train", "test")])
        sc = scores(*vecs[b]["train"], *vecs[b]["test"])
        deltas = {f"delta_points_{k}": round(100 * (sc[k] - ref[k]), 3) for k in ("linear_probe", "linear_probe_c10", "logreg_c10")}
        rows[b] = {**sc, **deltas, "mean_cos": float(cos.mean()), "min_cos": float(cos.min()),
                   "meets_bar": bool(cos.mean() >= BAR_COSINE and abs(deltas["delta_points_linear_probe"]) <= BAR_POINTS + 1e-9)}
    n_test = int(len(vecs[REFERENCE]["test"][1]))
    for b, r in rows.items():
        extra = "" if b == REFERENCE else (
            f"  ({r['delta_points_linear_probe']:+.2f} / {r['delta_points_linear_probe_c10']:+.2f} / "
            f"{r['delta_points_logreg_c10']:+.2f} points; bar {'met' if r['meets_bar'] else 'MISSED'})")
        print(f"{ds:16s} {layout:6s} {b:10s} cos {r['mean_cos']:.4f} / {r['min_cos']:.4f}  LinearProbe {r['linear_probe']:.4f}"
              f"  LinearProbe(C=10) {r['linear_probe_c10']:.4f}  LogReg(C=10) {r['logreg_c10']:.4f}{extra}", flush=True)
    return {"n_train": int(len(vecs[REFERENCE]["train"][1])), "n_test": n_test,
            "one_test_row_points": round(100 / n_test, 3), "backends": rows}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=list(_results.DATASETS))
    ap.add_argument("--backends", nargs="+", default=["onnx", "onnx-int8"], help="compared with torch fp32")
    ap.add_argument("--layouts", nargs="+", default=["splits", "file"], choices=["splits", "file"])
    ap.add_argument("--name", default="embed_accuracy", help="results file name")
    a = ap.parse_args(argv)
    os.chdir(_results.REPO)
    t0 = time.perf_counter()
    out: dict[str, dict] = {}
    for ds in a.datasets:
        out[ds] = {layout: measure(ds, layout, a.backends) for layout in a.layouts}
    _results.write(a.name, out, backend=",".join(a.backends), seconds=time.perf_counter() - t0,
                   settings={"datasets": a.datasets, "backends": a.backends, "layouts": a.layouts, "reference": REFERENCE,
                             "chunk_size": 2048, "bar": {"mean_cos_min": BAR_COSINE, "linear_probe_points_max": BAR_POINTS}})


if __name__ == "__main__":
    main()
