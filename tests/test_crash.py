"""Crash at any point, keep everything: real ``python -m fmal`` processes are killed (SIGKILL, via
``FMAL_CRASH_AT``) at every point between two writes of seed, query, import-labels --on-conflict
replace, undo and the migration of a legacy pool, and at random moments. After each kill the pool
holds the old state or the new one, whole (labels, relabels, answers, rounds), the next command
works, and it leaves the views right and no temporary file behind.

The killed processes run up front, 2 at a time (a module fixture), each a real process of its own
forked from one that imported fmal once (``_forkrun.py``: a command then costs its work, not
Python's start-up); each test then checks one kill point. The random-moment test starts plain
``python -m fmal`` processes."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import clustered, vector_pool
from fmal import api
from fmal.session import DB, Session

N = 150
KILLED = -9

# scenario -> (the command after "fmal", its kill points); {pool} {dir} {work} are filled in per case
SCENARIOS: dict[str, tuple[list[str], list[str]]] = {
    "seed": (["seed", "--budget", "5", "--strategy", "random", "--seed", "3", "--output", "{work}/mine.csv"],
             ["session.locked", "seed.computed", "round.inserted", "atomic.before-rename:1", "output.written",
              "session.before-commit", "session.after-commit", "atomic.before-rename:2", "view.round"]),
    "query": (["query", "--labels", "{shared}/more.csv", "--budget", "5", "--strategy", "margin"],
              ["session.locked", "labels.merged", "atomic.before-rename:1", "query.probe-written", "query.computed",
               "round.inserted", "session.before-commit", "session.after-commit", "atomic.before-rename:2", "view.labels",
               "view.round"]),
    "import-replace": (["import-labels", "{shared}/fix.csv", "--on-conflict", "replace"],
                       ["session.locked", "labels.merged", "session.before-commit", "session.after-commit",
                        "atomic.before-rename:1", "view.labels"]),
    "undo": (["query", "--undo"],
             ["session.locked", "undo.before-commit", "session.before-commit", "session.after-commit", "undo.file-deleted"]),
    "migrate-import": (["import-labels", "{shared}/fix.csv", "--on-conflict", "replace"],
                       ["session.locked", "labels.merged", "session.before-commit", "session.after-commit",
                        "migrate.renamed:1", "migrate.renamed:2", "atomic.before-rename:1", "view.labels"]),
    "first-seed": (["seed", "--budget", "4", "--strategy", "kmeans"],
                   ["session.locked", "round.inserted", "session.before-commit", "session.after-commit", "atomic.before-rename:1"]),
}
CASES = [(s, p) for s, (_, points) in SCENARIOS.items() for p in points]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMAL_CRASH") and not k.startswith("FMAL_PAUSE")}
    return {**env, **extra}


def _cli_args(scenario: str, base: Path, shared: Path) -> list[str]:
    cmd, _ = SCENARIOS[scenario]
    filled = [a.format(work=base / "work", shared=shared) for a in cmd]
    return [*filled, "--pool", "p", "--index-dir", str(base / "indexes")]


def _args(scenario: str, base: Path, shared: Path) -> list[str]:
    return [sys.executable, "-m", "fmal", *_cli_args(scenario, base, shared)]


Job = tuple[list[str], dict[str, str]]  # CLI arguments after "fmal", extra environment


def run_many(jobs: list[Job], workdir: Path, parallel: int = 2) -> list[subprocess.CompletedProcess]:
    """Run fmal commands as forked processes, ``parallel`` at a time; their results."""
    return _forkrun(jobs, workdir, parallel)


def run_groups(groups: list[list[Job]], workdir: Path) -> list[list[subprocess.CompletedProcess]]:
    """Run groups of fmal commands: a group's commands all at once, group after group."""
    return _forkrun(groups, workdir, 0)


def _forkrun(jobs: list, workdir: Path, parallel: int) -> list:
    workdir.mkdir(parents=True, exist_ok=True)
    count = iter(range(10**6))

    def job(j: Job) -> dict[str, Any]:
        n = next(count)
        return {"argv": j[0], "env": j[1], "stdout": str(workdir / f"{n}.out"), "stderr": str(workdir / f"{n}.err")}

    spec = [[job(j) for j in g] for g in jobs] if parallel == 0 else [job(j) for j in jobs]
    (workdir / "jobs.json").write_text(json.dumps(spec))
    res = subprocess.run([sys.executable, str(Path(__file__).with_name("_forkrun.py")), str(workdir / "jobs.json"), str(parallel)],
                         env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    codes = json.loads(res.stdout.strip().splitlines()[-1])

    def done(j: dict[str, Any], c: int) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(j["argv"], c, Path(j["stdout"]).read_text(), Path(j["stderr"]).read_text())

    if parallel == 0:
        return [[done(j, c) for j, c in zip(g, cs)] for g, cs in zip(spec, codes)]
    return [done(j, c) for j, c in zip(spec, codes)]


def state(d: Path) -> dict[str, Any]:
    """What a person made, comparable across copies of a pool (no times, no absolute paths)."""
    s = Session(d)
    rounds = [(r["round"], r["kind"], r["strategy"], r["key"], r["ids"], json.dumps(r["columns"], sort_keys=True, default=str),
               json.dumps({k: v for k, v in r["info"].items() if not k.endswith("_file")}, sort_keys=True, default=str))
              for r in s.rounds]
    answers = [(a.id, a.value, a.source, None if pd.isna(a.round) else int(a.round), a.outcome) for a in s.answers().itertuples()]
    return {"labels": s.labels, "relabels": [(r["id"], r["old"], r["new"], r["source"]) for r in s.relabels],
            "rounds": rounds, "answers": answers}


def _core(st: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in st.items() if k != "answers"}


def check_consistent(d: Path) -> None:
    """The views agree with the database and no temporary file is left (after a writer ran)."""
    s = Session(d)
    if s.labels:
        view = pd.read_csv(d / "labels.csv", dtype=str, keep_default_na=False)
        assert dict(zip(view["id"], view["label"])) == s.labels
    for r in s.rounds:
        assert pd.read_csv(s.round_view(r), dtype=str)["id"].tolist() == r["ids"]
    leftovers = [f for folder in (d, d / "rounds", d / "probes") if folder.is_dir() for f in folder.glob(".*.tmp")]
    assert leftovers == []
    assert not (d / "session.json").exists() or not (d / DB).exists() or (d / "session.json.migrated").exists()


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Pools as each scenario starts from, and the shared input files."""
    root = tmp_path_factory.mktemp("crash")
    shared = root / "shared"
    shared.mkdir()
    X, y = clustered(n=N, d=16, k=3, seed=2)
    gold = {f"r{i}": "abc"[c] for i, c in enumerate(y)}
    fresh = root / "fresh"
    vector_pool(fresh / "indexes", "p", X)
    (fresh / "work").mkdir()
    base = root / "base"  # a seed round of 10, labeled
    shutil.copytree(fresh, base)
    sel = api.seed("p", 10, "kmeans", index_dir=base / "indexes")
    first = shared / "first.csv"
    pd.DataFrame({"id": sel.ids, "label": [gold[i] for i in sel.ids]}).to_csv(first, index=False)
    api.import_labels(first, "p", index_dir=base / "indexes")
    others = [f"r{i}" for i in range(N) if f"r{i}" not in set(sel.ids)]
    # more.csv: 6 new labels and one changed; fix.csv: 3 changed, 3 new
    more = {**{i: gold[i] for i in others[:6]}, sel.ids[0]: "c" if gold[sel.ids[0]] != "c" else "a"}
    pd.DataFrame({"id": list(more), "label": list(more.values())}).to_csv(shared / "more.csv", index=False)
    fix = {**{i: ("b" if gold[i] != "b" else "a") for i in sel.ids[1:4]}, **{i: gold[i] for i in others[10:13]}}
    pd.DataFrame({"id": list(fix), "label": list(fix.values())}).to_csv(shared / "fix.csv", index=False)
    legacy = root / "legacy"  # base, as an older fmal stored it: session.json + labels.csv, no database
    shutil.copytree(base, legacy)
    d = legacy / "indexes" / "p"
    s = Session(d)
    rounds = [{k: v for k, v in r.items() if k != "texts"} for r in s.rounds]
    (d / "session.json").write_text(json.dumps({"rounds": rounds, "relabels": s.relabels}, default=str))
    lab = pd.DataFrame({"id": list(s.labels), "label": list(s.labels.values()), "source": "first.csv"})
    for f in d.glob("labels.*"):
        f.unlink()
    lab.to_csv(d / "labels.csv", index=False)
    return {"seed": base, "query": base, "import-replace": base, "undo": base, "migrate-import": legacy,
            "first-seed": fresh, "shared": shared, "root": root}


@pytest.fixture(scope="module")
def references(templates) -> dict[str, tuple[dict, dict]]:
    """(old state, new state) of each scenario: the command run to the end in a subprocess."""
    bases, olds = {}, {}
    for scenario in SCENARIOS:
        bases[scenario] = templates["root"] / f"ref-{scenario}"
        shutil.copytree(templates[scenario], bases[scenario])
        olds[scenario] = state(bases[scenario] / "indexes" / "p")
    results = run_many([(_cli_args(s, bases[s], templates["shared"]), {}) for s in SCENARIOS], templates["root"] / "ref-runs")
    out = {}
    for scenario, res in zip(SCENARIOS, results):
        assert res.returncode == 0, res.stderr
        out[scenario] = (olds[scenario], state(bases[scenario] / "indexes" / "p"))
        assert out[scenario][0] != out[scenario][1], scenario
    return out


@pytest.fixture(scope="module")
def killed(templates) -> dict[tuple[str, str], tuple[Path, subprocess.CompletedProcess]]:
    """Every (scenario, point): a fresh copy of the scenario's pool, and the command killed there."""
    jobs = {}
    for n, (scenario, point) in enumerate(CASES):
        base = templates["root"] / f"case-{n:02d}"
        shutil.copytree(templates[scenario], base)
        jobs[(scenario, point)] = base

    results = run_many([(_cli_args(s, jobs[(s, p)], templates["shared"]), {"FMAL_CRASH_AT": p}) for s, p in jobs],
                       templates["root"] / "kill-runs")
    return {k: (jobs[k], r) for k, r in zip(jobs, results)}


def _next_command(scenario: str, base: Path, shared: Path) -> None:
    """The command a user runs next: the same one again (seed, query, import: idempotent), or,
    after an undo, an import of one more label (a write that must work)."""
    idx = base / "indexes"
    if scenario in ("seed", "first-seed"):
        budget, strategy = (5, "random") if scenario == "seed" else (4, "kmeans")
        kw = {"output": base / "work" / "mine.csv", "random_state": 3} if scenario == "seed" else {}
        api.seed("p", budget, strategy, index_dir=idx, **kw)
    elif scenario == "query":
        api.query("p", shared / "more.csv", 5, "margin", index_dir=idx)
    elif scenario in ("import-replace", "migrate-import"):
        api.import_labels(shared / "fix.csv", "p", on_conflict="replace", index_dir=idx)
    else:
        api.status("p", index_dir=idx)
        extra = base / "work" / "extra.csv"
        pd.DataFrame({"id": ["r149"], "label": ["a"]}).to_csv(extra, index=False)
        api.import_labels(extra, "p", index_dir=idx, on_conflict="keep")


@pytest.mark.parametrize("scenario, point", CASES, ids=[f"{s}@{p}" for s, p in CASES])
def test_killed_at_every_write_keeps_the_old_or_the_new_state(killed, references, templates, scenario, point):
    base, res = killed[(scenario, point)]
    assert res.returncode == KILLED, f"the point {point} was never reached (exit {res.returncode}): {res.stderr[-500:]}"
    d = base / "indexes" / "p"
    old, new = references[scenario]
    got = state(d)
    assert got in (old, new), f"{scenario}@{point}: neither the old nor the new state"
    _next_command(scenario, base, templates["shared"])
    check_consistent(d)
    after = state(d)
    if scenario == "undo":
        assert after["rounds"] == got["rounds"] and after["labels"] == {**got["labels"], "r149": "a"}
    else:
        assert _core(after) == _core(new)  # the rerun finishes the work, or finds it done
        assert after["answers"][: len(got["answers"])] == got["answers"]  # no answer lost


def test_killed_at_random_moments(templates, references):
    """A query killed at a random moment (4 times): old or new state, and the rerun works. Pauses
    before and after the commit widen the part of the run that writes, so kills land there too."""
    old, new = references["query"]
    rng = random.Random(13)
    ref = templates["root"] / "timing"
    shutil.copytree(templates["query"], ref)
    t0 = time.monotonic()
    slow = _env(FMAL_PAUSE_AT="query.probe-written:0.4,session.before-commit:0.4,session.after-commit:0.4,view.labels:0.4")
    subprocess.run(_args("query", ref, templates["shared"]), env=slow, capture_output=True, timeout=300, check=True)
    took = time.monotonic() - t0
    outcomes = []
    for trial in range(4):
        base = templates["root"] / f"random-{trial}"
        shutil.copytree(templates["query"], base)
        proc = subprocess.Popen(_args("query", base, templates["shared"]), env=slow, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=took - rng.uniform(0.0, 2.5))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        d = base / "indexes" / "p"
        got = state(d)
        assert got in (old, new)
        outcomes.append("new" if got == new else "old")
        _next_command("query", base, templates["shared"])
        check_consistent(d)
        assert _core(state(d)) == _core(new)
    print("random kills ended in:", outcomes)
