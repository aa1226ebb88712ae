"""``fmal sync label-studio`` against a real Label Studio server: the multi-round loop.

The server is the one of tests/test_labelstudio.py (``label-studio`` in its own venv, served on
127.0.0.1, marker ``labelstudio``). Annotations are made through the server's API by two
annotators (the second a user created through ``/api/users``), with a skipped task, a cancelled
annotation, a disagreement, a tie and an annotation changed after it was pulled.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from _clip import build_tiny_clip, write_digit_pngs
from conftest import clustered, vector_pool
from test_labelstudio import TOKEN, _ensure_template, _ensure_venv, _Server, private_tmp  # noqa: F401  (fixture)

from fmal import api
from fmal.exceptions import ServiceError
from fmal.export.labelstudio import choice_result
from fmal.session import Session
from fmal.sync import labelstudio as ls

pytestmark = pytest.mark.labelstudio

CLASSES = ["question", "answer", "chatter"]


def _tasks(server: _Server, pid: int) -> list[dict]:
    got = server.call("GET", f"/api/tasks?project={pid}&page_size=1000&fields=all")
    return got["tasks"] if isinstance(got, dict) else got


def _annotate(server: _Server, task: dict, label: str | None, user: int | None = None, cancelled: bool = False) -> dict:
    body: dict = {"result": [] if label is None else [choice_result(label)], "lead_time": 1.0}
    if user is not None:
        body["completed_by"] = user
    if cancelled:
        body["was_cancelled"] = True
    return server.call("POST", f"/api/tasks/{task['id']}/annotations/", body)


def _image_pool_round_trip(server: _Server, tmp: Path) -> None:
    """An image pool (tiny random CLIP, digit PNGs): the project shows ``$image``, each task loads
    the image from the prefix given, and the answers come back as the pool's labels."""
    folder, index_dir = tmp / "imgs", tmp / "image-indexes"
    gold = write_digit_pngs(folder, per_class=2)
    api.embed(folder, "digits", index_dir=index_dir, model=build_tiny_clip(tmp / "clip"), batch_size=8)
    api.seed("digits", 6, "kmeans", index_dir=index_dir, classes=[str(d) for d in range(10)])
    prefix = "/data/local-files/?d=imgs/"
    r1 = ls.sync("digits", server.url, index_dir=index_dir, token=TOKEN, image_url_prefix=prefix)
    assert r1.pushed == 6
    proj = server.call("GET", f"/api/projects/{r1.project}")
    assert '<Image name="image" value="$image"/>' in proj["label_config"]
    assert [c.to_name for c in ls.parse_config(proj["label_config"], "image")] == ["image"]
    assert ls.parse_config(proj["label_config"]) == []  # no control on a text object
    tasks = _tasks(server, r1.project)
    assert sorted(t["data"]["image"] for t in tasks) == sorted(prefix + t["data"]["fmal_id"] for t in tasks)
    for t in tasks[:4]:
        _annotate(server, t, gold[t["data"]["fmal_id"]])
    r2 = ls.sync("digits", server.url, r1.project, index_dir=index_dir, token=TOKEN, image_url_prefix=prefix)
    assert r2.added == 4 and r2.pushed == 0
    assert Session(index_dir / "digits").labels == {t["data"]["fmal_id"]: gold[t["data"]["fmal_id"]] for t in tasks[:4]}


def test_sync_multi_round_loop(private_tmp: Path, cli, monkeypatch) -> None:  # noqa: F811
    tmp = private_tmp
    X, y = clustered(n=150, d=16, k=3, seed=5)
    index_dir = tmp / "indexes"
    vector_pool(index_dir, "loop", X)
    gold = {f"r{i}": CLASSES[c] for i, c in enumerate(y)}
    other = {c: CLASSES[(k + 1) % 3] for k, c in enumerate(CLASSES)}
    api.seed("loop", 12, "kmeans", index_dir=index_dir, classes=CLASSES)

    exe = _ensure_venv()
    shutil.copytree(_ensure_template(exe, tmp), tmp / "ls-data")
    server = _Server(exe, tmp / "ls-data", tmp / "ls.log")
    times: dict[str, float] = {}

    def run(name: str, **kw) -> ls.SyncResult:
        t0 = time.perf_counter()
        res = ls.sync("loop", server.url, kw.pop("project", None), index_dir=index_dir, token=TOKEN, **kw)
        times[name] = time.perf_counter() - t0
        print(name, "|", " / ".join(res.events), "|", ls.describe(res))
        return res

    try:
        server.wait_ready(600)
        second = server.call("POST", "/api/users", {"email": "second@example.com", "username": "second", "password": "second-pw-123"})["id"]

        # pass 1: project created with the pool's classes, the seed round pushed (no predictions yet)
        r1 = run("push seed", every=8, budget=10)
        pid = r1.project
        assert r1.pushed == 12 and r1.pulled == 0 and r1.n_tasks == 12
        proj = server.call("GET", f"/api/projects/{pid}")
        assert [c.choices for c in ls.parse_config(proj["label_config"])] == [tuple(CLASSES)]
        assert not any(t["total_predictions"] for t in _tasks(server, pid))
        again = run("rerun, nothing new", project=pid, every=8, budget=10)
        assert (again.pushed, again.pulled, again.n_tasks) == (0, 0, 12)
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)  # the CLI, --json: one document on stdout
        out = cli("sync", "label-studio", "--pool", "loop", "--url", server.url, "--project", pid, "--index-dir", index_dir, "--json")
        assert out.exit_code == 0, out.output
        doc = json.loads(out.stdout)
        assert doc["command"] == "sync label-studio" and doc["ok"] and out.stdout.count("\n") == 1
        assert (doc["result"]["project"], doc["result"]["pushed"], doc["result"]["n_tasks"]) == (pid, 0, 12)
        assert "project" in out.stderr  # the text goes to stderr

        # annotate the seed round: two annotators on tasks 0-2, one skipped, one cancelled, one left
        tasks = sorted(_tasks(server, pid), key=lambda t: t["id"])
        ids = [t["data"]["fmal_id"] for t in tasks]
        for t, rid in zip(tasks[:9], ids[:9]):
            _annotate(server, t, gold[rid])
        _annotate(server, tasks[0], gold[ids[0]], second)  # agrees
        _annotate(server, tasks[1], other[gold[ids[1]]], second)  # disagrees: 1-1, a tie
        _annotate(server, tasks[9], None, cancelled=True)  # skipped
        _annotate(server, tasks[10], gold[ids[10]], second, cancelled=True)  # cancelled annotation
        r2 = run("pull seed, run round 2, push", project=pid, every=8, budget=10)
        assert r2.pulled == 13 and r2.cancelled == 2
        assert r2.added == 8 and r2.ties == [ids[1]]  # 9 tasks answered, the tie waits for a third answer
        labels = Session(index_dir / "loop").labels
        assert {i: labels[i] for i in ids[:9] if i != ids[1]} == {i: gold[i] for i in ids[:9] if i != ids[1]}
        assert ids[1] not in labels and ids[9] not in labels and ids[10] not in labels
        assert r2.rounds_run == [2] and r2.pushed == 10 and r2.n_tasks == 22
        new = [t for t in _tasks(server, pid) if t["data"]["fmal_id"] not in ids]
        assert len(new) == 10 and all(t["total_predictions"] == 1 for t in new)
        pred = server.call("GET", f"/api/predictions/?task={new[0]['id']}")
        pred = pred[0] if isinstance(pred, list) else pred["results"][0]
        assert pred["model_version"] == "fmal-probe" and 0 < pred["score"] <= 1
        rerun = run("rerun after round 2", project=pid, every=8, budget=10)
        assert (rerun.pushed, rerun.pulled, rerun.added, rerun.n_tasks, rerun.rounds_run) == (0, 0, 0, 22, [])

        # round 2 answered; a third answer breaks the tie; an earlier answer changed in the tool
        for t in new[:8]:
            _annotate(server, t, gold[t["data"]["fmal_id"]])
        third = server.call("POST", "/api/users", {"email": "third@example.com", "username": "third", "password": "third-pw-123"})["id"]
        _annotate(server, tasks[1], gold[ids[1]], third)
        first_ann = server.call("GET", f"/api/tasks/{tasks[2]['id']}/annotations/")[0]
        server.call("PATCH", f"/api/annotations/{first_ann['id']}/", {"result": [choice_result(other[gold[ids[2]]])]})
        r3 = run("pull round 2, run round 3, push", project=pid, every=8, budget=10)
        assert r3.pulled == 10 and r3.added == 9 and r3.changed == 1  # 8 new + the broken tie; the changed answer
        assert [(c.id, c.resolution) for c in r3.conflicts] == [(ids[2], "replaced")]
        assert r3.rounds_run == [3] and r3.n_tasks == 32

        # the pool: rounds recorded, every answer kept with its annotator, no task twice
        s = Session(index_dir / "loop")
        assert [r["kind"] for r in s.rounds] == ["seed", "query", "query"]
        assert len(s.labels) == 8 + 9
        ans = s.answers()
        assert {"fmal@example.com", "second@example.com", "third@example.com"} <= set(ans["annotator"].dropna())
        assert (ans["outcome"] == "vote").sum() == 5  # tasks 0 and 1 (two, then a third answer)
        fmal_ids = [t["data"]["fmal_id"] for t in _tasks(server, pid)]
        assert len(fmal_ids) == len(set(fmal_ids)) == 32
        assert len(s.sync_tasks(ls.target_of(server.url, pid))) == 32

        _image_pool_round_trip(server, tmp)

        with pytest.raises(ServiceError, match="refused the token"):
            ls.sync("loop", server.url, pid, index_dir=index_dir, token="not-a-token")
        with pytest.raises(ServiceError, match="no project 999"):
            ls.sync("loop", server.url, 999, index_dir=index_dir, token=TOKEN)
    except BaseException:
        print(server.tail())
        raise
    finally:
        server.stop()
    with pytest.raises(ServiceError, match="cannot reach Label Studio"):
        ls.sync("loop", server.url, pid, index_dir=index_dir, token=TOKEN)
    print("seconds per pass:", {k: round(v, 2) for k, v in times.items()})
    assert np.isfinite(list(times.values())).all()
