"""A reader that closes fmal's stdout early (``fmal query ... | head -1``) ends the command quietly:
no "error:" line, no traceback, exit 0 or 141 (128 + SIGPIPE), and the round it picked is recorded
once. Real processes and real pipes: CliRunner has no file descriptors to break."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _fmal(*args: object) -> list[str]:
    return [sys.executable, "-m", "fmal", *map(str, args)]


def _into_head(*args: object) -> tuple[int, str, str]:
    """``fmal ARGS | head -1``: fmal's exit code and stderr, and what head printed."""
    fmal = subprocess.Popen(_fmal(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    head = subprocess.Popen(["head", "-1"], stdin=fmal.stdout, stdout=subprocess.PIPE)
    fmal.stdout.close()  # head holds the only read end: when it exits, fmal's next write breaks the pipe
    shown = head.communicate(timeout=300)[0].decode()
    err = fmal.stderr.read().decode()
    return fmal.wait(timeout=300), err, shown


def _into_closed_pipe(*args: object) -> tuple[int, str]:
    """fmal writing into a pipe whose reader is already gone: its first line breaks the pipe."""
    r, w = os.pipe()
    os.close(r)
    try:
        done = subprocess.run(_fmal(*args), stdout=w, stderr=subprocess.PIPE, env=ENV, timeout=300)
    finally:
        os.close(w)
    return done.returncode, done.stderr.decode()


def _quiet(code: int, err: str) -> None:
    assert code in (0, 141), err
    assert "error" not in err.lower() and "Traceback" not in err and "Exception ignored" not in err, err


def _rounds(cli, common: list) -> list[int]:
    res = cli("status", *common, "--json")
    assert res.exit_code == 0, res.output
    return [r["round"] for r in json.loads(res.stdout)["result"]["rounds"]]


def test_query_and_status_into_head_are_quiet_and_record_once(cli, tiny_pool, tmp_path):
    index_dir, name, src = tiny_pool
    common = ["--pool", name, "--index-dir", index_dir]
    seed = cli("seed", *common, "--budget", 12, "--json")
    assert seed.exit_code == 0, seed.output
    ids = json.loads(seed.stdout)["result"]["ids"]
    gold = pd.read_csv(src, dtype=str).set_index("id")["label"]
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"id": ids, "label": [gold[i] for i in ids]}).to_csv(labels, index=False)

    code, err = _into_closed_pipe("query", *common, "--labels", labels, "--budget", 10)
    assert code == 141, err  # the very first line broke the pipe
    _quiet(code, err)
    assert _rounds(cli, common) == [1, 2]  # recorded before printing, once

    code, err, shown = _into_head("query", *common, "--labels", labels, "--budget", 10, "--seed", 1)
    _quiet(code, err)
    assert shown.startswith("round 3:") and shown.count("\n") == 1
    assert _rounds(cli, common) == [1, 2, 3]

    code, err = _into_closed_pipe("status", *common)
    assert code == 141, err
    _quiet(code, err)
    code, err, shown = _into_head("status", *common)
    _quiet(code, err)
    assert shown.startswith("pool ") and shown.count("\n") == 1
