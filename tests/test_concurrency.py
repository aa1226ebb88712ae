"""Writers wait their turn: real fmal processes writing one pool at once never lose an update.

Each trial starts its commands together as separate processes (forked from one process that
imported fmal once, ``_forkrun.py``, so they reach the pool within milliseconds of each other),
with a pause held inside the lock (``FMAL_PAUSE_AT``) so that they do overlap; every trial runs on
a fresh copy of the pool, and each scenario is repeated TRIALS times. All trials run up front in
one module fixture; the tests check them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from conftest import clustered, vector_pool
from fmal import api
from fmal.session import Session
from test_crash import run_groups

N = 200
TRIALS = 3
PAUSE = {"FMAL_PAUSE_AT": "session.locked:0.3"}


def _file(path: Path, ids: list[str], gold: dict[str, str]) -> Path:
    pd.DataFrame({"id": ids, "label": [gold[i] for i in ids]}).to_csv(path, index=False)
    return path


def _cmd(idx: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    return [*args, "--pool", "p", "--index-dir", str(idx)], PAUSE


@pytest.fixture(scope="module")
def trials(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[Path, dict, list[subprocess.CompletedProcess]]]]:
    """scenario -> [(index dir, labels before, the processes' results)] for each trial. The pool
    has a labeled seed round of 12 (so query can fit a probe); ``gold`` answers the rest."""
    root = tmp_path_factory.mktemp("concurrency")
    X, y = clustered(n=N, d=16, k=3, seed=5)
    gold = {f"r{i}": "abc"[c] for i, c in enumerate(y)}
    vector_pool(root / "tpl" / "indexes", "p", X)
    sel = api.seed("p", 12, "kmeans", index_dir=root / "tpl" / "indexes")
    api.import_labels(_file(root / "first.csv", sel.ids, gold), "p", index_dir=root / "tpl" / "indexes")
    before = Session(root / "tpl" / "indexes" / "p").labels
    free = [i for i in gold if i not in before]

    plan: dict[str, list[tuple[Path, list]]] = {"imports": [], "queries": [], "same-query": [], "mixed": []}
    for t in range(TRIALS):
        for scenario in ("imports", "queries", "mixed"):
            shutil.copytree(root / "tpl", root / f"{scenario}-{t}")
            idx = root / f"{scenario}-{t}" / "indexes"
            if scenario == "imports":  # 4 disjoint files of 15
                jobs = [_cmd(idx, "import-labels", str(_file(root / f"imp-{t}-{k}.csv", free[k * 15:(k + 1) * 15], gold)))
                        for k in range(4)]
            elif scenario == "queries":  # different budgets: the same arguments twice are a rerun (below)
                jobs = [_cmd(idx, "query", "--budget", str(b), "--strategy", "margin") for b in (5, 6)]
            else:  # an import of 20 and a query bringing 10 labels of its own
                jobs = [_cmd(idx, "import-labels", str(_file(root / f"mix-{t}-imp.csv", free[:20], gold))),
                        _cmd(idx, "query", "--labels", str(_file(root / f"mix-{t}-lab.csv", free[20:30], gold)), "--budget", "5")]
            plan[scenario].append((idx, jobs))
    shutil.copytree(root / "tpl", root / "same")
    plan["same-query"].append((root / "same" / "indexes", [_cmd(root / "same" / "indexes", "query", "--budget", "5")] * 2))

    order = [(s, n) for s in plan for n in range(len(plan[s]))]
    results = run_groups([plan[s][n][1] for s, n in order], root / "runs")
    out: dict[str, list] = {s: [] for s in plan}
    for (s, n), res in zip(order, results):
        out[s].append((plan[s][n][0], {"before": before, "free": free, "gold": gold}, res))
    return out


def _ok(res: list[subprocess.CompletedProcess]) -> None:
    assert [r.returncode for r in res] == [0] * len(res), [r.stderr for r in res]


def test_parallel_imports_of_disjoint_files_end_with_the_union(trials):
    waits = 0
    for idx, ctx, res in trials["imports"]:
        _ok(res)
        assert all("labels added: 15," in r.stdout for r in res)
        s = Session(idx / "p")
        gold, free = ctx["gold"], ctx["free"]
        assert s.labels == {**ctx["before"], **{i: gold[i] for i in free[:60]}}  # the union: nothing lost
        assert len(s.answers()) == len(ctx["before"]) + 60
        view = pd.read_csv(idx / "p" / "labels.csv", dtype=str)
        assert dict(zip(view["id"], view["label"])) == s.labels
        waits += sum("waiting up to" in r.stderr for r in res)
    assert waits >= TRIALS  # they did run into each other and waited, said so on stderr


def test_parallel_queries_give_distinct_rounds_and_disjoint_picks(trials):
    for idx, _, res in trials["queries"]:
        _ok(res)
        s = Session(idx / "p")
        assert [r["round"] for r in s.rounds] == [1, 2, 3]
        q1, q2 = s.rounds[1], s.rounds[2]
        assert {len(q1["ids"]), len(q2["ids"])} == {5, 6} and not set(q1["ids"]) & set(q2["ids"])  # no row queued twice
        assert not (set(q1["ids"]) | set(q2["ids"])) & set(s.rounds[0]["ids"])
        said = sorted(line.split(":")[0] for r in res for line in r.stdout.splitlines() if line.startswith("round "))
        assert said == ["round 2", "round 3"]
        for r in s.rounds:
            assert pd.read_csv(s.round_view(r), dtype=str)["id"].tolist() == r["ids"]
    # the same query twice at once: one round; the second finds it and says it reused it
    (idx, _, res), = trials["same-query"]
    _ok(res)
    assert len(Session(idx / "p").rounds) == 2 and sum("reused" in r.stdout for r in res) == 1


def test_import_and_query_at_once_lose_nothing(trials):
    for idx, ctx, res in trials["mixed"]:
        _ok(res)
        s = Session(idx / "p")
        gold, free = ctx["gold"], ctx["free"]
        assert s.labels == {**ctx["before"], **{i: gold[i] for i in free[:30]}}
        assert len(s.rounds) == 2 and not set(s.rounds[1]["ids"]) & set(free[20:30])  # the query's own labels are not picked
