"""Label efficiency of the cold-start strategies: accuracy on the held-out ``test`` rows of a linear
probe (fmal.LinearProbe) trained on each strategy's picks from the ``train`` rows, against random
picks and against the peer implementation of the same strategy (scikit-activeml TypiClust,
ProbCover, CoreSet; small-text greedy_coreset), on the shared labeled datasets.

The datasets ship in benchmarks/data/. Pools are embedded with the bundled model and fmal's
default backend (fmal embed) into ``runs/bench/pools/`` (an existing pool built from the same file
is reused). Mean and spread (standard deviation) over seeds. Writes
``benchmarks/results/NAME.json`` (``--name``, default ``seed_quality``).

    python benchmarks/seed_quality.py                                  # 3 datasets, 10..160, 5 seeds
    python benchmarks/seed_quality.py --datasets trec6 --budgets 10 40 --seeds 2 --no-peers
    python benchmarks/seed_quality.py --strategies random probcover --peers skactiveml.ProbCover \
        --name seed_quality_probcover                                  # the README's ProbCover table
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import _results  # noqa: E402  (also puts the repo on sys.path)
import fmal  # noqa: E402
from fmal.exceptions import LabelsError  # noqa: E402
from fmal.seed import SEED_STRATEGIES  # noqa: E402

DATASETS = _results.DATASETS
BUDGETS = (10, 20, 40, 80, 160)
STRATEGIES = ("random", "auto", "typiclust", "kmeans", "kcenter", "probcover")
#: peer -> the fmal strategy it implements
PEERS = {
    "skactiveml.TypiClust": "typiclust",
    "skactiveml.ProbCover": "probcover",
    "skactiveml.CoreSet": "kcenter",
    "small_text.greedy_coreset": "kcenter",
}
#: peers whose picks for a budget are the first picks of a larger budget (greedy, same seed):
#: run once at the largest budget and cut
PREFIX_PEERS = {"skactiveml.ProbCover", "skactiveml.CoreSet", "small_text.greedy_coreset"}


def load_dataset(name: str, index_dir: Path | None = None, data_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_test, y_test) from the pool of the dataset (built if missing): the
    shipped one, or ``data_dir/name.csv``."""
    os.chdir(_results.REPO)
    index_dir = index_dir or _results.pools_dir()
    csv = data_dir / f"{name}.csv" if data_dir else _results.dataset_csv(name)
    if not (index_dir / name / "manifest.json").exists():
        print(f"embedding {csv} into {index_dir / name} (once)", file=sys.stderr, flush=True)
        fmal.embed(csv, name, index_dir=index_dir)
    pool = fmal.open_pool(name, index_dir)
    df = pd.read_csv(csv, dtype={"id": str, "label": str, "split": str}, keep_default_na=False)
    rows = pool.rows_of(df["id"].tolist(), source=str(csv))
    X = np.asarray(pool.embeddings[rows], dtype=np.float32)
    tr = (df["split"] == "train").to_numpy()
    y = df["label"].to_numpy()
    return X[tr], y[tr], X[~tr], y[~tr]


def peer_picks(name: str, X: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """Row indices of ``X`` chosen by a peer implementation, with no labels."""
    n = X.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "small_text.greedy_coreset":
            from small_text.query_strategies.coresets import greedy_coreset

            # it needs one labeled row to start from: the row nearest the pool's mean, as fmal's kcenter
            first = int(np.argmax(X @ X.mean(axis=0)))
            rest = greedy_coreset(X, np.arange(n), np.asarray([first]), budget - 1, distance_metric="euclidean", normalized=True)
            return np.concatenate([[first], np.asarray(rest, dtype=np.int64)])
        import skactiveml.pool as skp

        cls = getattr(skp, name.split(".")[1])
        return np.asarray(cls(random_state=seed).query(X, np.full(n, np.nan), batch_size=budget))


def probe_accuracy(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, yte: np.ndarray, picks: np.ndarray, seed: int) -> float:
    """Test accuracy of a LinearProbe trained on ``picks`` (one class only: predict that class)."""
    y = ytr[picks]
    try:
        probe = fmal.LinearProbe(random_state=seed).fit(Xtr[picks], y)
    except LabelsError:
        return float((yte == y[0]).mean())
    return float((probe.predict(Xte) == yte).mean())


def parse_method(spec: str) -> tuple[str, dict]:
    """``name`` or ``name:key=value,key=value`` (values parsed as numbers when they are)."""
    name, _, rest = spec.partition(":")
    kw: dict = {}
    for part in filter(None, rest.split(",")):
        k, _, v = part.partition("=")
        try:
            kw[k] = int(v)
        except ValueError:
            try:
                kw[k] = float(v)
            except ValueError:
                kw[k] = v
    return name, kw


def run(datasets, budgets, seeds, strategies, peers, index_dir: Path | None = None, data_dir: Path | None = None) -> pd.DataFrame:
    """One row per (dataset, method, budget, seed) with the probe's test accuracy."""
    recs = []
    for ds in datasets:
        Xtr, ytr, Xte, yte = load_dataset(ds, index_dir, data_dir)
        print(f"{ds}: {len(ytr)} train / {len(yte)} test rows", file=sys.stderr, flush=True)
        for seed in range(seeds):
            for s in strategies:
                t0 = time.perf_counter()
                name, kw = parse_method(s)
                for b in budgets:
                    picks = SEED_STRATEGIES.call(name, Xtr, b, random_state=seed, **kw).indices
                    recs.append((ds, s, b, seed, probe_accuracy(Xtr, ytr, Xte, yte, picks, seed)))
                print(f"  seed {seed} {s}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
            for p in peers:
                t0 = time.perf_counter()
                full = peer_picks(p, Xtr, max(budgets), seed) if p in PREFIX_PEERS else None
                for b in budgets:
                    picks = full[:b] if full is not None else peer_picks(p, Xtr, b, seed)
                    recs.append((ds, p, b, seed, probe_accuracy(Xtr, ytr, Xte, yte, picks, seed)))
                print(f"  seed {seed} {p}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return pd.DataFrame(recs, columns=["dataset", "method", "budget", "seed", "accuracy"])


def markdown(df: pd.DataFrame) -> str:
    """Per dataset: mean +- std accuracy per method and budget; the difference to random below it,
    marked + / - when it exceeds the two methods' pooled standard error x 2."""
    out = []
    budgets = sorted(df["budget"].unique())
    for ds, d in df.groupby("dataset", sort=False):
        g = d.groupby(["method", "budget"])["accuracy"]
        mean, std, cnt = g.mean(), g.std(ddof=1).fillna(0.0), g.count()
        out.append(f"\n### {ds}: probe accuracy on test rows, mean ± std over {int(cnt.max())} seeds (Δ = vs random)\n")
        out.append("| method | " + " | ".join(str(b) for b in budgets) + " | mean Δ |")
        out.append("|---|" + "---:|" * (len(budgets) + 1))
        for m in d["method"].unique():
            cells, deltas = [], []
            for b in budgets:
                mu, sd = mean[(m, b)], std[(m, b)]
                cell = f"{mu:.3f} ± {sd:.3f}"
                if m != "random" and ("random", b) in mean:
                    dlt = mu - mean[("random", b)]
                    se = np.sqrt(sd**2 / cnt[(m, b)] + std[("random", b)] ** 2 / cnt[("random", b)])
                    mark = "+" if dlt > 2 * se else ("-" if dlt < -2 * se else "")
                    cell += f" ({dlt:+.3f}{mark})"
                    deltas.append(dlt)
                cells.append(cell)
            md = f"{np.mean(deltas):+.3f}" if deltas else ""
            out.append(f"| {m} | " + " | ".join(cells) + f" | {md} |")
    return "\n".join(out)


def summarise(df: pd.DataFrame) -> dict:
    """{dataset: {method: {budget: {mean, std, n, per_seed}}}} plus each dataset's majority-class
    share of the test rows (what a probe that predicts one class scores)."""
    out: dict = {}
    for (ds, m, b), g in df.groupby(["dataset", "method", "budget"], sort=False):
        acc = g.sort_values("seed")["accuracy"].to_numpy()
        out.setdefault(ds, {}).setdefault("methods", {}).setdefault(m, {})[str(int(b))] = {
            "mean": round(float(acc.mean()), 4), "std": round(float(acc.std(ddof=1)) if acc.size > 1 else 0.0, 4),
            "n": int(acc.size), "per_seed": [round(float(v), 4) for v in acc]}
    for ds in out:
        _, _, _, yte = load_dataset(ds)
        out[ds]["majority_share_test"] = round(float(pd.Series(yte).value_counts(normalize=True).iloc[0]), 4)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), help="names, or name:key=value,... for parameters")
    ap.add_argument("--peers", nargs="*", default=list(PEERS))
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--index-dir", type=Path, default=None, help="where the pools are (default runs/bench/pools; built if missing)")
    ap.add_argument("--data-dir", type=Path, default=None, help="read NAME.csv here instead of the shipped datasets")
    ap.add_argument("--output", type=Path, help="also write the markdown table here")
    ap.add_argument("--csv", type=Path, help="also write every run (one row per seed) here")
    ap.add_argument("--name", default="seed_quality", help="results file: benchmarks/results/NAME.json")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    peers = [] if a.no_peers else a.peers
    df = run(a.datasets, a.budgets, a.seeds, a.strategies, peers, a.index_dir, a.data_dir)
    table = markdown(df)
    print(table)
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    _results.write(a.name, summarise(df), seconds=time.perf_counter() - t0,
                   settings={"datasets": a.datasets, "budgets": a.budgets, "seeds": a.seeds, "strategies": a.strategies,
                             "peers": peers, "data": "shipped" if a.data_dir is None else _results.rel(a.data_dir)})
    if a.output:
        a.output.write_text(table + "\n", encoding="utf-8")
        print(f"wrote {a.output}")
    if a.csv:
        df.to_csv(a.csv, index=False)


if __name__ == "__main__":
    main()
