"""``fmal seed`` end to end on the tiny pool: the default strategy, the coverage report it prints,
``--delta`` and its validation, and ``--labels`` extending a labeled set."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

import fmal
from fmal.api import DEFAULT_SEED_STRATEGY
from fmal.cli import app


def _run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_default_is_auto_and_prints_the_coverage_report(tiny_pool) -> None:
    index_dir, name, _ = tiny_pool
    assert DEFAULT_SEED_STRATEGY == "auto"
    res = _run("seed", "--pool", name, "--index-dir", index_dir, "--budget", 8)
    assert res.exit_code == 0, res.output
    assert "8 rows picked by auto" in res.output
    for line in ("pool within delta:", "clusters represented:", "largest uncovered cluster:", "coverage delta:"):
        assert line in res.output


def test_probcover_with_delta(tiny_pool, tmp_path: Path) -> None:
    index_dir, name, _ = tiny_pool
    out = tmp_path / "picks.csv"
    res = _run("seed", "--pool", name, "--index-dir", index_dir, "--budget", 6, "--strategy", "probcover",
               "--delta", 0.5, "--output", out)
    assert res.exit_code == 0, res.output
    assert "delta rule: given" in res.output and "coverage delta: 0.500" in res.output
    assert len(pd.read_csv(out)) == 6


def test_bad_delta_is_one_line_error(tiny_pool) -> None:
    index_dir, name, _ = tiny_pool
    for bad in ("0", "2.5", "-1"):
        res = _run("seed", "--pool", name, "--index-dir", index_dir, "--budget", 6, "--strategy", "probcover", "--delta", bad)
        assert res.exit_code == 2 and "error: --delta must satisfy 0 < delta <= 2" in res.output, res.output


def test_labels_extend_the_labeled_set(tiny_pool, tmp_path: Path) -> None:
    index_dir, name, _ = tiny_pool
    pool = fmal.open_pool(name, index_dir)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"id": pool.ids[:5], "label": ["a", "b", "a", "b", "a"]}).to_csv(labels, index=False)
    sel = fmal.seed(name, 10, "kcenter", index_dir=index_dir, labels=labels)
    assert not set(sel.ids) & set(pool.ids[:5]) and len(set(sel.ids)) == 10
    assert sel.info["clusters_represented"].endswith("of 15")  # one cluster per chosen or labeled row
