"""The examples run: quickstart.py's main() and the commands of demo.sh, on the tiny model (the real
model is exercised in test_encoders.py)."""

from __future__ import annotations

import importlib.util
import math
import shlex
import subprocess
import sys

import pandas as pd
from conftest import REPO

EXAMPLES = REPO / "examples"


def test_quickstart_runs_the_loop(tmp_path, tiny_model_dir, capsys):
    spec = importlib.util.spec_from_file_location("fmal_quickstart", EXAMPLES / "quickstart.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    results = mod.main(["--model", str(tiny_model_dir), "--index-dir", str(tmp_path), "--rounds", "2", "--budget", "10"])
    assert list(results) == ["labels=10", "labels=20", "labels=30"]
    # every round has two or more classes (a NaN would mean the probe could not be fitted) and a real accuracy
    assert all(not math.isnan(v) and 0.0 <= v <= 1.0 for v in results.values()), results
    out = capsys.readouterr().out
    assert "30 labels: probe accuracy" in out
    assert (tmp_path / "quickstart" / "manifest.json").exists() and (tmp_path / "quickstart-test" / "manifest.json").exists()


def _demo_commands() -> tuple[dict[str, str], list[list[str]]]:
    """Variables and commands of demo.sh, in order."""
    env: dict[str, str] = {}
    cmds = []
    for line in (EXAMPLES / "demo.sh").read_text().splitlines():
        line = line.strip()
        if "=" in line.split(" ")[0] and not line.startswith(("export", "#")):
            k, v = line.split("=", 1)
            env[k] = v
        elif line.startswith(("$FMAL", "$PY")):
            words = shlex.split(line)
            cmds.append([w.replace("$OUT", env["OUT"]).replace("$DATA", env["DATA"]) for w in words])
    return env, cmds


def test_demo_sh_commands_work(cli, tmp_path, tiny_model_dir, monkeypatch):
    env, cmds = _demo_commands()
    steps = [c[1] if c[0] == "$FMAL" else "answer" for c in cmds]
    assert [s for s in steps if s in ("embed", "seed", "answer", "query")] == ["embed", "seed", "answer", "query"]
    monkeypatch.chdir(tmp_path)  # demo.sh runs from the repo root; here relative paths land in tmp_path
    (tmp_path / "examples").symlink_to(EXAMPLES)
    (tmp_path / env["OUT"]).mkdir(parents=True)
    for cmd in cmds:
        if cmd[0] == "$PY":
            subprocess.run([sys.executable, *cmd[1:]], check=True, capture_output=True)
            continue
        extra = ["--index-dir", tmp_path / "indexes"] + (["--model", tiny_model_dir] if cmd[1] == "embed" else [])
        res = cli(*cmd[1:], *extra)
        assert res.exit_code == 0, (cmd, res.output)
    out = tmp_path / env["OUT"]
    seed, labels, round2 = (pd.read_csv(out / f, dtype=str) for f in ("seed.csv", "labels.csv", "round2.csv"))
    assert len(seed) == len(round2) == 12 and labels["label"].notna().all()
    assert not set(round2["id"]) & set(seed["id"])
    status = cli("status", "--pool", "demo", "--index-dir", tmp_path / "indexes")
    assert "typiclust" in status.stdout and "margin" in status.stdout  # the session's rounds
