"""Interactive speed, end to end, side by side in one run: what an annotator waits for.

On a synthetic clustered pool (384-d unit vectors, 1,000 gold clusters; no encoder), each step runs
as its own process, as a user runs it, timed wall and CPU (user + sys of that process):
  - ``fmal --help``, ``fmal --version``, ``fmal status``, ``fmal info``, against ``python -c "import
    typer"`` (the floor any Typer CLI pays);
  - index ``auto`` built (train + add + recall check) and saved;
  - ``fmal seed`` with every strategy (budget 100, no labels), against scikit-activeml's TypiClust
    and CoreSet and small-text's greedy_coreset on the same matrix (each a script that loads the
    matrix and picks: start-up included, like fmal's CLI);
  - ``fmal query`` (200 labels, budget 100, strategy auto) with ``--candidates all`` and ``knn:K``;
  - the same round as ``fmal sync`` runs it: ``fmal.query`` in a process that has already run one
    round (imports done, as in the sync loop's second and later rounds; the pool's state is reset
    between the timed calls, so each is a full round: labels merged, probe fitted, picks written).
Each step's *share of its compute bound* is the seconds its main products would take at the fp32
matrix-multiply peak measured in the same run (all cores), over its wall seconds: 100% would be
pure arithmetic at peak with no start-up, I/O or bookkeeping. The FLOPs counted are listed with
each step (``gflop``); start-up steps have no FLOPs and are compared with the Typer floor instead.

    python benchmarks/interactive.py                        # 100k rows
    python benchmarks/interactive.py --sizes 100000 1000000 --reps 2
    python benchmarks/interactive.py --no-peers --steps seed query
    python benchmarks/interactive.py --baseline /tmp/fmal-before   # also time that source tree's fmal

``--baseline DIR`` (a source tree of fmal, e.g. ``git archive`` of an earlier commit) runs each seed
and query step again with that tree's code right after this one's (rows named ``baseline: ...``,
with ``vs_baseline``: this code's speed-up), so before and after share one run on a busy machine.

The results go to benchmarks/results/interactive.json (with fmal version, git commit, cores, load,
date and the exact command). The machine is shared: compare ratios within a run, not seconds
across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import _results  # noqa: E402

PY = sys.executable
DIM = 384
SEED_STRATEGIES = ("auto", "typiclust", "kmeans", "kcenter", "probcover", "random")
PEERS = ("skactiveml.TypiClust", "skactiveml.CoreSet", "small_text.greedy_coreset")
#: peer -> the fmal strategy it implements (for the speed-up column)
PEER_OF = {"skactiveml.TypiClust": "typiclust", "skactiveml.CoreSet": "kcenter", "small_text.greedy_coreset": "kcenter"}

BUILD = """
import json, sys, time
from pathlib import Path
from fmal import index as fi
from fmal._atomic import write_json
from fmal.pool import open_embeddings
from fmal.pool.files import EMBEDDINGS
path = sys.argv[1]
m = json.load(open(f"{path}/manifest.json"))
X = open_embeddings(Path(path) / EMBEDDINGS, m["n_rows"], m["dim"], m["dtype"])
timings = {}
index, info = fi.build(X, "auto", timings=timings)
fi.save_index(index, f"{path}/index.faiss")
m["index"] = info
write_json(f"{path}/manifest.json", m)
print("RESULT " + json.dumps({**info, "timings": timings}))
"""

WARM = """
import json, sys, time
from pathlib import Path
pool, labels, budget, cand, out = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
sys.path.insert(0, sys.argv[6])
from interactive import reset  # the benchmark's own: one list of what a cold start removes
import fmal

times = []
for i in range(4):  # the first call pays the imports, like the sync loop's first round: not counted
    reset(pool)
    t0 = time.perf_counter()
    fmal.query(str(pool), labels, budget, candidates=cand, output=out)
    times.append(time.perf_counter() - t0)
reset(pool)
print("RESULT " + json.dumps({"first": round(times[0], 3), "rounds": [round(t, 3) for t in times[1:]]}))
"""

PEER = """
import sys, time, warnings
import numpy as np
name, path, budget = sys.argv[1], sys.argv[2], int(sys.argv[3])
X = np.load(path)
n = X.shape[0]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    if name == "small_text.greedy_coreset":
        from small_text.query_strategies.coresets import greedy_coreset
        first = int(np.argmax(X @ X.mean(axis=0)))  # one labeled row to start from, as fmal's kcenter
        picks = greedy_coreset(X, np.arange(n), np.asarray([first]), budget - 1, distance_metric="euclidean", normalized=True)
    else:
        import skactiveml.pool as skp
        picks = getattr(skp, name.split(".")[1])(random_state=0).query(X, np.full(n, np.nan), batch_size=budget)
print("PICKS", len(np.unique(picks)))
"""


def run_child(cmd: list[str], timeout: float, repo: Path = REPO) -> dict:
    """Run ``cmd`` in a fresh process with the fmal of ``repo``: wall seconds, CPU seconds (user +
    sys), peak RSS (GiB), stdout."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=repo,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(repo)})
    buf: list[str] = []
    reader = threading.Thread(target=lambda: buf.append(proc.stdout.read() if proc.stdout else ""), daemon=True)
    reader.start()  # a full pipe would block the child
    deadline = t0 + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            return {"error": f"timeout after {timeout:.0f} s"}
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    reader.join()
    out = buf[0] if buf else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        return {"error": f"exit {code}: {out.strip().splitlines()[-1][:200] if out.strip() else ''}"}
    return {"seconds": round(wall, 3), "cpu_seconds": round(ru.ru_utime + ru.ru_stime, 3), "peak_rss_gib": round(ru.ru_maxrss / 2**20, 2),
            "stdout": out}


def best(cmd: list[str], reps: int, timeout: float, before=None, repo: Path = REPO) -> dict:
    """Fastest of ``reps`` runs (``before()`` resets state before each)."""
    runs = []
    for _ in range(reps):
        if before:
            before()
        runs.append(run_child(cmd, timeout, repo))
        if "error" in runs[-1]:
            return runs[-1]
    out = min(runs, key=lambda r: r["seconds"])
    out["all_seconds"] = [r["seconds"] for r in runs]
    return out


def fp32_peak(seconds: float = 2.0) -> float:
    """GFLOP/s of a 4096 x 384 x 4096 float32 product on all cores (best over ``seconds``)."""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4096, 384)).astype(np.float32)
    B = rng.normal(size=(384, 4096)).astype(np.float32)
    best_s, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        A @ B
        best_s = min(best_s, time.perf_counter() - t0)
    return 2 * 4096 * 384 * 4096 / best_s / 1e9


#: rows the coverage report judges a larger pool on (fmal.seed.diagnostics.REPORT_SAMPLE)
REPORT_SAMPLE = 25_000


def seed_gflop(strategy: str, n: int, budget: int, d: int = DIM, report_rows: int | None = None) -> float:
    """The main products of ``fmal seed`` (strategy + coverage report), in GFLOP. ``report_rows``:
    the rows the report's pass covers (default min(n, REPORT_SAMPLE); n for code before the sample)."""
    k = budget
    r = min(n, REPORT_SAMPLE) if report_rows is None else report_rows
    kmeans = 2 * min(n, 64 * k) * k * d * 20 + 2 * k * (2 + int(np.log(k))) * 4096 * d  # training + k-means++ seeding
    assign = 2 * n * k * d
    report_delta = 2 * 1000 * 10_000 * d  # purity of the report's delta (1,000 queries x 10,000 rows)
    report_pass = 2 * r * k * d  # distance of every judged row to the chosen rows
    typical = 2 * k * 500**2 * d
    m = min(n, 10_000)
    f = {
        "kmeans": kmeans + assign + report_delta + report_pass,  # the strategy's clusters: the report assigns no row
        "typiclust": kmeans + assign + typical + report_delta + report_pass,
        "auto": kmeans + assign + typical / 2 + report_delta + report_pass,
        # the mean, the first center, then lazy refreshes (~1,000 rows a pick), then the report's own k-means
        "kcenter": 2 * 2 * n * d + 2 * k * 1024 * k * d / 2 + kmeans + 2 * r * 2 * k * d + report_delta,
        # ball graph (half of m x m), purity 5,000 x m, tiling 1,000 x m, then the report's own k-means
        "probcover": m * m * d + 2 * 5000 * m * d + 2 * 1000 * m * d + kmeans + 2 * r * 2 * k * d,
        "random": kmeans + 2 * r * 2 * k * d + report_delta,
    }[strategy]
    return f / 1e9


def query_gflop(candidates: str, n: int, n_labels: int, budget: int, classes: int = 10, d: int = DIM) -> float:
    """The main products of ``fmal query`` (probe scoring, BADGE over its shortlist, k-NN search)."""
    shortlist = min(n, 50 * budget)
    badge = 2 * budget * shortlist * (d + classes)
    if candidates == "all":
        return (2 * n * d * classes + badge) / 1e9
    k = int(candidates.split(":")[1])
    search = 2 * n_labels * n * d if n <= 200_000 else 2 * n_labels * (8 / 1024) * n * d  # flat: every row; IVF: nprobe 8 of 1,024 lists
    return (search + 2 * min(n, n_labels * k) * d * classes + badge) / 1e9


def reset(pool: Path) -> None:
    """A cold start: no labels, rounds or probes of an earlier step."""
    for name in ("session.json", "labels.csv", "labels.csv.migrated", "session.sqlite", "session.db", "labels.db", "labels.db-wal",
                 "labels.db-shm"):
        (pool / name).unlink(missing_ok=True)
    for name in ("rounds", "probes"):
        shutil.rmtree(pool / name, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--labels", type=int, default=200, help="labeled rows for the query rounds")
    ap.add_argument("--knn", type=int, default=50)
    ap.add_argument("--reps", type=int, default=1, help="runs per step; the fastest is kept")
    ap.add_argument("--steps", nargs="+", default=["startup", "index", "seed", "query"])
    ap.add_argument("--strategies", nargs="+", default=list(SEED_STRATEGIES))
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--peer-timeout", type=float, default=900)
    ap.add_argument("--workdir", type=Path, default=_results.WORK / "interactive")
    ap.add_argument("--name", default="interactive", help="results file: benchmarks/results/NAME.json")
    ap.add_argument("--baseline", type=Path, help="a source tree of fmal whose seed and query steps run after this one's")
    a = ap.parse_args(argv)
    load = [round(x, 2) for x in os.getloadavg()]
    peak = fp32_peak()
    print(f"fp32 peak (4096 x 384 x 4096 product, all cores): {peak:.0f} GFLOP/s; load {load}", flush=True)
    fmal = [PY, "-m", "fmal"]
    rows: list[dict] = []

    def vs_baseline(n: int, step: str, mine: dict, cmd: list[str], reps: int, timeout: float, before, gflop: float) -> None:
        """The same step with the ``--baseline`` tree's fmal; this code's speed-up goes into ``mine``."""
        if a.baseline is None:
            return
        base = record(n, f"baseline: {step}", best(cmd, reps, timeout, before, a.baseline.resolve()), gflop)
        if "seconds" in base and "seconds" in mine:
            mine["vs_baseline"] = round(base["seconds"] / mine["seconds"], 2)
            mine["vs_baseline_cpu"] = round(base["cpu_seconds"] / mine["cpu_seconds"], 2)
            print(f"      {mine['vs_baseline']}x the baseline's speed ({mine['vs_baseline_cpu']}x its CPU)", flush=True)

    def record(n: int, step: str, res: dict, gflop: float | None = None, **extra) -> dict:
        row = {"n": n, "step": step, **{k: v for k, v in res.items() if k != "stdout"}, **extra}
        if gflop is not None and "seconds" in res:
            row["gflop"] = round(gflop, 1)
            row["bound_share"] = round(gflop / peak / res["seconds"], 3)
        rows.append(row)
        shown = {k: row[k] for k in ("seconds", "cpu_seconds", "bound_share", "error") if k in row}
        print(f"  {n:>9,} {step:44s} {shown} {extra or ''}", flush=True)
        return row

    if "startup" in a.steps:
        floor = record(0, "python -c 'import typer' (floor)", best([PY, "-c", "import typer"], max(3, a.reps), 60))
        for args in (["--help"], ["--version"]):
            r = record(0, "fmal " + " ".join(args), best(fmal + args, max(3, a.reps), 60))
            r["vs_floor"] = round(r["seconds"] / floor["seconds"], 2)
    for n in a.sizes:
        pool = a.workdir / f"synthetic-{n}"
        if not (pool / "gold-clusters.npy").exists():
            t0 = time.perf_counter()
            r = run_child([PY, "-c", f"import sys; sys.path.insert(0, {str(HERE)!r}); from scale import write_pool; "
                                     f"from pathlib import Path; write_pool(Path({str(pool)!r}), {n})"], 3600)
            print(f"wrote {pool} in {time.perf_counter() - t0:.1f} s", flush=True)
        y = np.load(pool / "gold-clusters.npy", allow_pickle=False)
        P = ["--pool", str(pool)]
        if "index" in a.steps or not (pool / "index.faiss").exists():
            res = run_child([PY, "-c", BUILD, str(pool)], 3600)
            info = json.loads(res["stdout"].split("RESULT ", 1)[1]) if "stdout" in res else {}
            tm = info.get("timings") or {}
            gflop = sum((tm.get("gflop") or {}).values())
            record(n, f"index auto -> {info.get('factory')}", res, gflop if info.get("nlist") else None,
                   recall_at_10=info.get("recall_at_10"), search_params=info.get("search_params"),
                   step_seconds={k: round(v, 2) for k, v in (tm.get("seconds") or {}).items()},
                   step_gflop={k: round(v, 1) for k, v in (tm.get("gflop") or {}).items()})
        if "startup" in a.steps:
            for cmd in ("status", "info"):
                record(n, f"fmal {cmd}", best(fmal + [cmd, *P], max(3, a.reps), 120, lambda: reset(pool)))
        fmal_seed: dict[str, float] = {}
        if "seed" in a.steps:
            for s in a.strategies:
                cmd = fmal + ["seed", *P, "--budget", str(a.budget), "--strategy", s, "--output", str(a.workdir / "seed.csv")]
                r = record(n, f"fmal seed --strategy {s}", best(cmd, a.reps, 900, lambda: reset(pool)), seed_gflop(s, n, a.budget))
                if "seconds" in r:
                    fmal_seed[s] = r["seconds"]
                    picks = [int(line.split(",")[0][1:]) for line in (a.workdir / "seed.csv").read_text().splitlines()[1:] if line]
                    r["gold_clusters_hit"] = len({int(y[i]) for i in picks})
                vs_baseline(n, f"fmal seed --strategy {s}", r, cmd, a.reps, 900, lambda: reset(pool),
                            seed_gflop(s, n, a.budget, report_rows=n))  # the baseline judged every row
            if not a.no_peers:
                matrix = a.workdir / f"matrix-{n}.npy"
                if not matrix.exists():
                    np.save(matrix, np.load(pool / "embeddings.npy", mmap_mode="r"))
                for peer in PEERS:
                    r = record(n, f"peer {peer}", run_child([PY, "-c", PEER, peer, str(matrix), str(a.budget)], a.peer_timeout))
                    mine = fmal_seed.get(PEER_OF[peer])
                    if mine and "seconds" in r:
                        r["fmal_speedup"] = round(r["seconds"] / mine, 1)
                        print(f"      fmal seed --strategy {PEER_OF[peer]} is {r['fmal_speedup']}x faster", flush=True)
        if "query" in a.steps:
            rng = np.random.default_rng(1)
            lab_rows = np.sort(rng.choice(n, size=a.labels, replace=False))
            labels = a.workdir / f"labels-{n}.csv"
            labels.write_text("id,label\n" + "".join(f"s{i:09d},c{int(y[i]) % 10}\n" for i in lab_rows), encoding="utf-8")
            q, warm = {}, {}
            for cand in ("all", f"knn:{a.knn}"):
                cmd = fmal + ["query", *P, "--labels", str(labels), "--budget", str(a.budget), "--candidates", cand,
                              "--output", str(a.workdir / "query.csv")]
                gflop = query_gflop(cand, n, a.labels, a.budget)
                q[cand] = record(n, f"fmal query --candidates {cand}", best(cmd, a.reps, 900, lambda: reset(pool)), gflop)
                vs_baseline(n, f"fmal query --candidates {cand}", q[cand], cmd, a.reps, 900, lambda: reset(pool), gflop)
            for cand in ("all", f"knn:{a.knn}"):
                res = run_child([PY, "-c", WARM, str(pool), str(labels), str(a.budget), cand, str(a.workdir / "query.csv"), str(HERE)],
                                900)
                if "stdout" in res:
                    got = json.loads(res["stdout"].split("RESULT ", 1)[1])
                    res = {"seconds": min(got["rounds"]), "all_seconds": got["rounds"], "first_call_seconds": got["first"]}
                warm[cand] = record(n, f"fmal.query --candidates {cand}, a running process (fmal sync's rounds)", res,
                                    query_gflop(cand, n, a.labels, a.budget))
            if all("seconds" in r for r in warm.values()):
                warm[f"knn:{a.knn}"]["speed_vs_all"] = round(warm["all"]["seconds"] / warm[f"knn:{a.knn}"]["seconds"], 2)
            if all("seconds" in r for r in q.values()):
                ratio = q["all"]["seconds"] / q[f"knn:{a.knn}"]["seconds"]
                print(f"      knn:{a.knn} is {ratio:.2f}x the speed of all", flush=True)
                q[f"knn:{a.knn}"]["speed_vs_all"] = round(ratio, 2)
        reset(pool)
    prov = _results.provenance()  # synthetic vectors: no encoder runs here; backend and model are fmal's defaults
    prov["machine"].update(fp32_peak_gflops=round(peak, 1), load_average_at_start=load)  # this script's own peak
    settings = {"budget": a.budget, "labels": a.labels, "sizes": a.sizes}
    if a.baseline is not None:
        settings["baseline"] = _tree_commit(a.baseline)
    _results.write(a.name, {"rows": rows}, settings=settings, provenance_=prov)


def _tree_commit(tree: Path) -> str:
    """The commit a ``--baseline`` tree was made from: its git HEAD, or the id ``git archive`` wrote."""
    try:
        return subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        marker = tree / "BASELINE_COMMIT"
        return marker.read_text().strip() if marker.exists() else str(tree)


if __name__ == "__main__":
    main()
