"""Label efficiency of the query strategies, and of the default loop against random, with intervals.

For each dataset, strategy and seed: ``--n-seed`` labels picked by the strategy's seed strategy,
then rounds of ``--step`` picks up to ``--max-labels``; at each step a LinearProbe is fitted on the
labels so far and its accuracy measured on the fixed held-out ``test`` rows (never shown to a
strategy). The pool is the ``train`` rows; their gold label is the annotator.

A strategy is ``SEED[:key=value,...]+QUERY[:key=value,...]`` (``auto+auto``: the default loop;
``previous``: the default loop before issue 20 (``ALIASES``); ``auto+adaptive``: the same with the
adaptive random share of fmal.query.adaptive), ``random`` (random seed and random rounds), or a
query strategy alone (after a random seed, as in the first version of this benchmark). Reported per
dataset: AULC (mean accuracy over the steps, points), paired per-seed differences against
``random`` and against ``--reference`` (default ``previous``) with 95% t-intervals over seeds,
labels needed to reach random's mean accuracy at ``--max-labels``, and each strategy's random
share per step (raw curves, ``--json``: also the online active-vs-random estimate per step).

Datasets: the shipped ``trec6``, ``sms_spam``, ``rotten_tomatoes``, and pools derived from them
where the label is not the embedding's main axis (built from the cached embeddings, no new texts):

- ``rt_sentiment``: rotten_tomatoes without the ``plot`` rows: fresh vs rotten critic quotes, a
  sentiment label over clusters that are movie topics.
- ``trec6_coin``: trec6's texts with a label that cuts across every cluster at random: a fair coin
  per row (seed 0), independent of the text, so every k-means cluster is about half A and nothing
  can beat random (sanity case). (A first version balanced each cluster exactly; that makes train
  and test labels of a cluster anti-correlated, so fitting the noise lost: not a fair null.)
- ``trec6_orth``: trec6's texts labeled by the sign (at the median) of the projection on a random
  direction (seed 0) orthogonal to the top 10 principal components: a linear label that the probe
  can learn but that the clusters do not follow.

    python benchmarks/query_quality.py --jobs 2 --seeds 20      # the README's table
    python benchmarks/query_quality.py --strategies random margin badge auto --seeds 5 --name query_quality_all
    python benchmarks/query_quality.py --tune                    # pick constants on train rows only
    python benchmarks/query_quality.py --tune --reuse-cache --first-seed 100 --seeds 20 --datasets trec6 \
        --strategies random auto+auto auto:rule=strata+auto auto+auto:then=margin   # tuning seeds, not 0-19

``--tune`` never looks at test rows: it splits each dataset's train rows 70/30 (seeded) into a
pool and a validation set, so constants can be chosen without the reported test rows.

Pure functions only (LinearProbe + SEED_STRATEGIES + QUERY_STRATEGIES over the embeddings), no
CLI. The first step (``prepare``) embeds each shipped dataset with ``fmal embed`` (default backend)
into ``--index-dir`` (default runs/bench/pools) unless a finished pool is already there, and writes
embeddings + labels as .npz in ``--cache`` (default runs/bench/cache), which the workers read.
Writes benchmarks/results/query_quality.json (``--name``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _results  # noqa: E402,I001  (puts the repo on sys.path)

import numpy as np
import pandas as pd

SHIPPED = ("trec6", "sms_spam", "rotten_tomatoes")
DERIVED = {"rt_sentiment": "rotten_tomatoes", "trec6_coin": "trec6", "trec6_orth": "trec6"}
DATASETS = (*SHIPPED, *DERIVED)
DEFAULT = "auto+auto"  # fmal seed auto, then fmal query auto: the default loop
#: short names for specs: ``previous`` is the default loop before issue 20 (no agreement gate on the
#: typical phase, a fixed 10% random share: the evidence gate can never fire at z 1000)
ALIASES = {"previous": "auto+auto:agreement_threshold=-1,evidence_z=1000,then=badge"}
#: the default before its uncertainty phase became dropquery (after issue 20's first changes)
BADGE = "auto+auto:then=badge"
REFERENCE = "previous"  # issue 20: no loss against the previous default where uncertainty pays
DEFAULT_STRATEGIES = ("random", REFERENCE, "auto+adaptive", BADGE, DEFAULT)
#: the goals of issue 20, in AULC points
GOAL_WORST = -0.3
GOAL_MEAN = 2.5


def prepare(name: str, data_dir: Path | None, index_dir: Path, cache: Path, reuse: bool = False) -> Path:
    """Embed ``name`` (unless its pool is up to date) and write X, labels and split as .npz; a
    derived dataset is built from its source's .npz (module docstring). ``reuse``: an existing
    .npz is used as it is (no embedding check), for repeated tuning runs."""
    out = cache / f"{name}.npz"
    if reuse and out.exists():
        return out
    if name in DERIVED:
        src = np.load(prepare(DERIVED[name], data_dir, index_dir, cache))
        X, y, split = derive(name, src["X"], src["y"], src["split"])
        np.savez(out, X=X, y=y, split=split)
        return out
    from fmal import api
    from fmal.pool import open_pool

    csv = data_dir / f"{name}.csv" if data_dir else _results.dataset_csv(name)
    api.embed(csv, name, index_dir=index_dir)  # "nothing to do" when the pool is built from this file
    p = open_pool(name, index_dir)
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    rows = p.rows_of(df["id"].tolist(), source=name)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(out, X=np.asarray(p.embeddings[rows], dtype=np.float32), y=df["label"].to_numpy(dtype=str),
             split=df["split"].to_numpy(dtype=str))
    return out


def derive(name: str, X: np.ndarray, y: np.ndarray, split: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The derived pools (module docstring); every random choice is seeded (0)."""
    rng = np.random.default_rng(0)
    if name == "rt_sentiment":
        keep = np.isin(y, ["fresh", "rotten"])
        return X[keep], y[keep], split[keep]
    if name == "trec6_coin":
        return X, np.where(rng.random(X.shape[0]) < 0.5, "A", "B").astype(str), split
    if name == "trec6_orth":
        Xc = X - X.mean(axis=0)
        top = np.linalg.svd(Xc, full_matrices=False)[2][:10]
        w = rng.standard_normal(X.shape[1])
        w -= top.T @ (top @ w)
        proj = Xc @ w
        return X, np.where(proj > np.median(proj), "pos", "neg").astype(str), split
    raise SystemExit(f"unknown derived dataset {name!r}; known: {', '.join(DERIVED)}")


def parse_strategy(spec: str) -> tuple[str, str, dict[str, float | str], dict[str, float | str]]:
    """``[seed[:key=value,...]+]query[:key=value,...]`` -> (seed strategy, query strategy, query
    params, seed params); numbers become floats. ``random`` is random+random; a query name alone
    starts from a random seed."""
    seed_part, _, query_part = ALIASES.get(spec, spec).rpartition("+")
    seed, _, seed_rest = (seed_part or "random").partition(":")
    query, _, rest = query_part.partition(":")

    def value(v: str) -> float | str:
        try:
            return float(v)
        except ValueError:
            return v

    def params(text: str) -> dict[str, float | str]:
        return {k: value(v) for k, v in (kv.split("=") for kv in text.split(",") if kv)}

    return seed, query, params(rest), params(seed_rest)


def split_rows(split: np.ndarray, tune: bool) -> tuple[np.ndarray, np.ndarray]:
    """(pool rows, evaluation rows): train/test, or with ``tune`` train rows split 70/30 (seed 0)."""
    train = np.nonzero(split == "train")[0]
    if not tune:
        return train, np.nonzero(split == "test")[0]
    perm = np.random.default_rng(0).permutation(train)
    cut = int(0.7 * train.size)
    return np.sort(perm[:cut]), np.sort(perm[cut:])


def run_one(task: tuple) -> dict:
    """One learning curve: (cache file, strategy spec, seed, n_seed, step, max_labels, probe C, tune)."""
    import faiss

    from fmal.probe import LinearProbe
    from fmal.query import QUERY_STRATEGIES, QueryContext
    from fmal.query.adaptive import ACTIVE, RANDOM, SEED
    from fmal.seed import SEED_STRATEGIES

    faiss.omp_set_num_threads(1)
    path, spec, seed, n_seed, step, max_labels, probe_c, tune = task
    d = np.load(path)
    tr, te = split_rows(d["split"], tune)
    X, y = np.ascontiguousarray(d["X"][tr]), d["y"][tr]
    Xt, yt = d["X"][te], d["y"][te]
    index = faiss.IndexFlatIP(X.shape[1])
    index.add(X)
    seed_name, query_name, params, seed_params = parse_strategy(spec)
    QUERY_STRATEGIES.check(query_name, params)  # a misspelt parameter fails before any work
    labeled = np.sort(SEED_STRATEGIES.call(seed_name, X, n_seed, index=index, labeled=None, random_state=seed,
                                           **seed_params).indices)
    origin = np.full(X.shape[0], SEED, dtype=object)
    acc, share, evidence, seconds = [], [], [], 0.0
    while True:
        one_class = np.unique(y[labeled]).size < 2
        probe = None if one_class else LinearProbe(C=probe_c, random_state=seed).fit(X[labeled], y[labeled])
        acc.append(float(np.mean(yt == y[labeled][0])) if probe is None else float(np.mean(probe.predict(Xt) == yt)))
        if labeled.size >= max_labels:
            break
        cand = np.setdiff1d(np.arange(X.shape[0]), labeled)
        t0 = time.perf_counter()
        rs = seed * 7919 + labeled.size
        if probe is None:  # one class so far: random picks
            picks, is_random = np.random.default_rng(rs).choice(cand, size=step, replace=False), np.ones(step, bool)
        else:
            ctx = QueryContext(X=X, candidates=cand, proba=probe.predict_proba(X[cand]), classes=probe.classes_,
                               labeled=labeled, index=index, probe=probe, random_state=rs, labels=y[labeled],
                               origin=origin[labeled].astype(str))
            res = QUERY_STRATEGIES.call(query_name, ctx, step, **params)
            picks = res.indices
            is_random = np.zeros(step, bool) if res.is_random is None else np.asarray(res.is_random, bool)
            numbers = res.info.get("adaptive") or {}
            evidence.append([numbers.get("delta"), numbers.get("delta_se")])
        seconds += time.perf_counter() - t0
        assert np.unique(picks).size == step and not np.isin(picks, labeled).any(), spec
        origin[picks] = np.where(is_random, RANDOM, ACTIVE)
        share.append(float(is_random.mean()))
        labeled = np.sort(np.concatenate([labeled, picks]))
    return {"dataset": Path(path).stem, "strategy": spec, "seed": seed, "acc": acc, "random_share": share,
            "evidence": evidence, "query_s": seconds}


def aulc(acc: list[float]) -> float:
    """Normalised area under the learning curve (trapezoid over equally spaced steps), 0-1."""
    a = np.asarray(acc)
    return float(np.trapezoid(a) / (a.size - 1)) if a.size > 1 else float(a[0])


def _t_interval(d: np.ndarray) -> dict:
    """Mean and 95% two-sided t-interval of the mean of paired differences (points)."""
    from scipy import stats

    d = np.asarray(d, dtype=np.float64)
    if d.size < 2:
        return {"mean": round(float(d.mean()), 3) if d.size else None, "lo": None, "hi": None}
    half = float(stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
    return {"mean": round(float(d.mean()), 3), "lo": round(float(d.mean()) - half, 3), "hi": round(float(d.mean()) + half, 3)}


def summarise(results: list[dict], budgets: list[int], reference: str) -> dict:
    """Per dataset and strategy: AULC, paired differences vs random and vs ``reference``, labels to
    reach random's mean accuracy at the last step, random share per step; then the goals."""
    df = pd.DataFrame(results)
    df["aulc"] = df["acc"].map(aulc) * 100
    out: dict = {"datasets": {}}
    for ds, g in df.groupby("dataset", sort=False):
        per = g.set_index(["strategy", "seed"])
        rnd = per.loc["random"] if "random" in per.index.get_level_values(0) else None
        target = float(np.mean([a[-1] for a in rnd["acc"]])) if rnd is not None else None
        block = {"random_accuracy_at_max": None if target is None else round(100 * target, 2), "strategies": {}}
        for st, gs in g.groupby("strategy", sort=False):
            gs = gs.set_index("seed").sort_index()
            reach = [next((b for b, a in zip(budgets, acc) if a >= target - 1e-12), None) for acc in gs["acc"]] if target else []
            hit = [r for r in reach if r is not None]
            row = {"aulc": _t_interval(gs["aulc"].to_numpy()), "per_seed_aulc": [round(v, 3) for v in gs["aulc"]],
                   "accuracy_at_max": round(100 * float(np.mean([a[-1] for a in gs["acc"]])), 2),
                   "labels_to_random_at_max": {"median": float(np.median([r if r is not None else np.inf for r in reach]))
                                               if reach and len(hit) * 2 > len(reach) else None,
                                               "reached": f"{len(hit)}/{len(reach)}"},
                   "random_share_per_step": [round(float(v), 3) for v in np.mean(np.stack(gs["random_share"].to_list()), axis=0)],
                   "query_seconds_per_round": round(float(gs["query_s"].mean()) / max(1, len(budgets) - 1), 3)}
            for other in dict.fromkeys(("random", reference, BADGE)):
                if other != st and other in per.index.get_level_values(0):
                    o = per.loc[other]["aulc"]
                    common = gs.index.intersection(o.index)
                    row[f"vs_{other}"] = _t_interval((gs.loc[common, "aulc"] - o.loc[common]).to_numpy())
            block["strategies"][st] = row
        out["datasets"][ds] = block
    out["goals"] = goals(out["datasets"], reference)
    return out


def goals(datasets: dict, reference: str) -> dict:
    """Issue 20's goals for the default: worst AULC difference to random >= GOAL_WORST, mean >=
    GOAL_MEAN; where uncertainty pays (the reference beats random: interval above 0) no loss vs
    the reference beyond seed noise (its interval reaches 0)."""
    rows = {ds: b["strategies"].get(DEFAULT) for ds, b in datasets.items()}
    rows = {ds: r for ds, r in rows.items() if r and "vs_random" in r}
    if not rows:
        return {}
    diffs = {ds: r["vs_random"]["mean"] for ds, r in rows.items()}
    pays = [ds for ds, b in datasets.items() if (b["strategies"].get(reference, {}).get("vs_random") or {}).get("lo") is not None
            and b["strategies"][reference]["vs_random"]["lo"] > 0]
    lost = [ds for ds in pays if ds in rows and (rows[ds].get(f"vs_{reference}") or {}).get("hi") is not None
            and rows[ds][f"vs_{reference}"]["hi"] < 0]
    worst = min(diffs, key=diffs.get)
    return {"worst_vs_random": {"dataset": worst, "points": diffs[worst], "goal": GOAL_WORST, "met": diffs[worst] >= GOAL_WORST},
            "mean_vs_random": {"points": round(float(np.mean(list(diffs.values()))), 3), "goal": GOAL_MEAN,
                               "met": float(np.mean(list(diffs.values()))) >= GOAL_MEAN},
            "uncertainty_pays": {"datasets": pays, "lost_beyond_noise": lost, "met": not lost}}


def report(summary: dict, budgets: list[int]) -> str:
    """Markdown: per dataset and strategy AULC, paired differences, labels to reach random@max."""
    out = []
    for ds, b in summary["datasets"].items():
        out.append(f"\n### {ds} (random at {budgets[-1]} labels: {b['random_accuracy_at_max']}%)\n")
        out.append("| strategy | AULC | vs random | vs reference | acc@max | labels to random@max | random share per step |")
        out.append("|---|---|---|---|---|---|---|")
        for st, r in b["strategies"].items():
            ref = next((v for k, v in r.items() if k.startswith("vs_") and k != "vs_random"), None)
            out.append(f"| {st} | {_ci(r['aulc'], signed=False)} | {_ci(r.get('vs_random'))} | {_ci(ref)} | {r['accuracy_at_max']} | "
                       f"{r['labels_to_random_at_max']['median']} ({r['labels_to_random_at_max']['reached']}) | "
                       + " ".join(f"{v:.2f}" for v in r["random_share_per_step"]) + " |")
    out.append("\nGoals: " + json.dumps(summary.get("goals")))
    return "\n".join(out)


def _ci(c: dict | None, signed: bool = True) -> str:
    if not c:
        return "-"
    f = "+.2f" if signed else ".2f"
    return f"{c['mean']:{f}} [{c['lo']:{f}}, {c['hi']:{f}}]" if c.get("lo") is not None else f"{c['mean']:{f}}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument("--strategies", nargs="+", default=list(DEFAULT_STRATEGIES))
    ap.add_argument("--reference", default=REFERENCE, help="the strategy every other is also paired against")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--n-seed", type=int, default=20)
    ap.add_argument("--step", type=int, default=20)
    ap.add_argument("--max-labels", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--probe-c", default="10", help="the probe's C: a number (default 10, as fmal simulate) or 'auto'")
    ap.add_argument("--tune", action="store_true", help="evaluate on 30%% of the train rows, never on test rows")
    ap.add_argument("--data-dir", type=Path, default=None, help="read NAME.csv here instead of the shipped datasets")
    ap.add_argument("--index-dir", type=Path, default=None, help="where the pools are (default runs/bench/pools)")
    ap.add_argument("--cache", type=Path, default=None, help="default runs/bench/cache")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw curves here")
    ap.add_argument("--name", default="query_quality", help="results file: benchmarks/results/NAME.json")
    ap.add_argument("--prepare-only", action="store_true")
    ap.add_argument("--reuse-cache", action="store_true", help="use an existing .npz in --cache without checking its pool")
    a = ap.parse_args(argv)
    os.chdir(_results.REPO)
    a.index_dir = a.index_dir or _results.pools_dir()
    a.cache = a.cache or _results.WORK / "cache"
    files = [prepare(ds, a.data_dir, a.index_dir, a.cache, a.reuse_cache) for ds in a.datasets]
    if a.prepare_only:
        return
    probe_c = a.probe_c if a.probe_c == "auto" else float(a.probe_c)
    seeds = range(a.first_seed, a.first_seed + a.seeds)
    tasks = [(str(f), s, seed, a.n_seed, a.step, a.max_labels, probe_c, a.tune) for f in files for s in a.strategies for seed in seeds]
    t0 = time.perf_counter()
    if a.jobs > 1:
        with ProcessPoolExecutor(a.jobs) as ex:
            results = list(ex.map(run_one, tasks, chunksize=1))
    else:
        results = [run_one(t) for t in tasks]
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(results))
    budgets = list(range(a.n_seed, a.max_labels + 1, a.step))
    summary = summarise(results, budgets, a.reference)
    print(report(summary, budgets))
    print(f"\n{len(tasks)} curves in {time.perf_counter() - t0:.0f} s with {a.jobs} jobs")
    if a.tune:
        return  # tuning runs are not results
    _results.write(a.name, summary, seconds=time.perf_counter() - t0,
                   settings={"datasets": a.datasets, "strategies": a.strategies, "reference": a.reference,
                             "default": DEFAULT, "seeds": list(seeds), "n_seed": a.n_seed, "step": a.step,
                             "max_labels": a.max_labels, "probe_c": a.probe_c, "budgets": budgets,
                             "data": "shipped" if a.data_dir is None else _results.rel(a.data_dir)})


if __name__ == "__main__":
    main()
