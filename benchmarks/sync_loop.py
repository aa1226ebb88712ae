"""Wall time of the annotation loop run by ``fmal sync label-studio`` against a real Label Studio
on this machine: trec6 train rows (MiniLM embeddings), 100-row rounds; each round's tasks are
annotated through the server's API with the gold label (a simulated annotator, timed apart), then
one sync pass pulls the answers, runs the next query round (``--every 100``) and pushes it.
Label Studio comes from the test's venv (tests/test_labelstudio.py). Writes
benchmarks/results/sync_loop.json (the README's table is rendered from it).

    python benchmarks/sync_loop.py [--rounds 4] [--budget 100]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import _results
from _trec6_pool import trec6_pool

sys.path.insert(0, str(_results.REPO / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--budget", type=int, default=100)
    args = ap.parse_args()
    t_start = time.perf_counter()
    import test_labelstudio as T

    from fmal import api
    from fmal.export.labelstudio import choice_result
    from fmal.sync import labelstudio as ls

    index_dir, name, gold = trec6_pool()
    classes = sorted(set(gold.values()))
    with tempfile.TemporaryDirectory(prefix="fmal-sync-bench-") as d:
        tmp = Path(d)
        shutil.copytree(index_dir / name, tmp / "indexes" / name)  # a fresh copy: no labels, no rounds
        for sub in ("labels.db", "labels.db-wal", "labels.db-shm", "labels.csv", "rounds", "probes", "exports"):
            p = tmp / "indexes" / name / sub
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        idx = tmp / "indexes"
        t0 = time.perf_counter()
        api.seed(name, args.budget, "auto", index_dir=idx, classes=classes)
        seed_s = time.perf_counter() - t0
        exe = T._ensure_venv()
        shutil.copytree(T._ensure_template(exe, tmp), tmp / "ls-data")
        server = T._Server(exe, tmp / "ls-data", tmp / "ls.log")
        rounds = []
        try:
            server.wait_ready(600)
            res = ls.sync(name, server.url, None, index_dir=idx, token=T.TOKEN, every=args.budget, budget=args.budget)
            pid = res.project
            rounds.append({"pass": 0, "what": "project + config + push seed round", "sync_seconds": round(res.seconds, 2),
                           "pushed": res.pushed})
            print(rounds[-1], flush=True)
            for r in range(1, args.rounds + 1):
                t = time.perf_counter()
                got = server.call("GET", f"/api/tasks?project={pid}&page_size=2000&fields=all")
                open_tasks = [x for x in (got["tasks"] if isinstance(got, dict) else got) if not x["total_annotations"]]
                for task in open_tasks:
                    server.call("POST", f"/api/tasks/{task['id']}/annotations/",
                                {"result": [choice_result(gold[task["data"]["fmal_id"]])], "lead_time": 1.0})
                annotate_s = time.perf_counter() - t
                res = ls.sync(name, server.url, pid, index_dir=idx, token=T.TOKEN, every=args.budget, budget=args.budget)
                rounds.append({"pass": r, "annotated": len(open_tasks), "annotate_api_seconds": round(annotate_s, 2),
                               "sync_seconds": round(res.seconds, 2), "pulled": res.pulled, "added": res.added,
                               "rounds_run": res.rounds_run, "pushed": res.pushed, "tasks_in_project": res.n_tasks,
                               "events": res.events})
                print({k: v for k, v in rounds[-1].items() if k != "events"}, flush=True)
        finally:
            server.stop()
    _results.write("sync_loop", {"pool_rows": len(gold), "seed_seconds": round(seed_s, 2), "passes": rounds},
                   seconds=time.perf_counter() - t_start,
                   settings={"dataset": "trec6 train rows", "budget": args.budget, "rounds": args.rounds,
                             "label_studio": f"{T.LABEL_STUDIO_VERSION} on 127.0.0.1 (the venv of tests/test_labelstudio.py)"})

if __name__ == "__main__":
    main()
