"""fmal audit: labels flipped on purpose must come out on top."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import clustered, vector_pool
from typer.testing import CliRunner

from fmal import api
from fmal.audit import audit_labels
from fmal.cli import app
from fmal.exceptions import LabelsError
from fmal.session import Session

CLASSES = np.array(["a", "b", "c", "d"])
N_LABELED, N_FLIPPED = 160, 16


@pytest.fixture
def flipped(tmp_path: Path):
    """A pool of 4 overlapping-ish clusters; 160 labeled rows of which 16 have a wrong label."""
    X, y = clustered(n=400, d=16, k=4, spread=0.25, seed=3)
    index_dir = tmp_path / "indexes"
    vector_pool(index_dir, "p", X)
    rng = np.random.default_rng(0)
    rows = rng.choice(400, size=N_LABELED, replace=False)
    labels = CLASSES[y[rows]].copy()
    flip = rng.choice(N_LABELED, size=N_FLIPPED, replace=False)
    labels[flip] = CLASSES[(y[rows[flip]] + rng.integers(1, 4, size=N_FLIPPED)) % 4]
    ids = [f"r{i}" for i in rows]
    Session(index_dir / "p").add_labels(dict(zip(ids, labels.tolist())), source="test")
    truth = {f"r{i}": str(CLASSES[y[i]]) for i in rows}
    return index_dir, {ids[j] for j in flip}, truth


def test_flipped_labels_rank_high(flipped):
    index_dir, flips, truth = flipped
    res = api.audit("p", index_dir=index_dir)
    t = res.audit.table
    assert len(t) == N_LABELED and t["rank"].tolist() == list(range(1, N_LABELED + 1))
    top = set(t["id"].head(N_FLIPPED))
    issues = set(res.audit.issues["id"])
    recall_top = len(top & flips) / N_FLIPPED
    recall_issues = len(issues & flips) / N_FLIPPED
    precision_issues = len(issues & flips) / max(1, len(issues))
    print(f"audit: recall@{N_FLIPPED} {recall_top:.2f}, flagged {len(issues)}, recall {recall_issues:.2f}, precision {precision_issues:.2f}")
    assert recall_top >= 0.8 and recall_issues >= 0.8 and precision_issues >= 0.6
    # the suggested label of a flagged flipped row is its true label
    sugg = res.audit.issues.set_index("id")["predicted_label"]
    hits = [sugg[i] == truth[i] for i in issues & flips]
    assert np.mean(hits) >= 0.9
    # ranked by label quality (the out-of-fold probability of the given label), lowest first
    assert t["label_quality"].is_monotonic_increasing


def test_audit_is_deterministic_and_seeded(flipped):
    index_dir, *_ = flipped
    a = api.audit("p", index_dir=index_dir, random_state=1).audit.table
    b = api.audit("p", index_dir=index_dir, random_state=1).audit.table
    pd.testing.assert_frame_equal(a, b)


def test_audit_output_for_re_review_in_every_format(flipped, tmp_path):
    index_dir, flips, truth = flipped
    res = api.audit("p", index_dir=index_dir, output=tmp_path / "review.csv")
    frame = pd.read_csv(res.output, dtype=str, keep_default_na=False)
    assert res.format == "csv" and len(frame) == len(res.audit.issues)
    assert list(frame.columns[:3]) == ["id", "text", "label"] and (frame["label"] == "").all()
    assert {"given_label", "predicted_label", "predicted_proba", "label_quality", "audit_rank"} <= set(frame.columns)
    ls = api.audit("p", index_dir=index_dir, output=tmp_path / "review.json", format="label-studio")
    tasks = json.loads(ls.output.read_text())
    assert len(tasks) == len(res.audit.issues)
    first = res.audit.issues.iloc[0]
    assert tasks[0]["data"]["fmal_id"] == first["id"] and tasks[0]["data"]["given_label"] == first["given_label"]
    assert tasks[0]["predictions"][0]["result"][0]["value"]["choices"] == [first["predicted_label"]]
    for fmt, name in (("prodigy", "r.jsonl"), ("argilla", "r.json")):
        assert api.audit("p", index_dir=index_dir, output=tmp_path / name, format=fmt).output.exists()
    # re-review: the reviewer accepts the suggestions; importing with replace fixes the labels
    frame["label"] = [truth[i] for i in frame["id"]]
    frame.to_csv(res.output, index=False)
    r = api.import_labels(res.output, "p", "csv", on_conflict="replace", index_dir=index_dir)
    assert r.changed == len(set(frame["id"]) & flips)
    every = api.audit("p", index_dir=index_dir, include_all=True, output=tmp_path / "all.csv")
    assert len(pd.read_csv(every.output)) == N_LABELED


def test_audit_leaves_out_single_label_classes_and_needs_two():
    X, y = clustered(n=40, d=8, k=2, seed=0)
    labels = np.where(y == 0, "a", "b").astype(object)
    labels[0] = "lonely"
    res = audit_labels(X, [f"r{i}" for i in range(40)], labels.tolist())
    assert res.excluded == {"lonely": 1} and len(res.table) == 39
    with pytest.raises(LabelsError, match=r"an audit needs two classes with at least 2 labels each"):
        audit_labels(X[:3], ["a", "b", "c"], ["x", "x", "y"])


def test_cli_audit(flipped, tmp_path):
    index_dir, *_ = flipped
    res = CliRunner().invoke(app, ["audit", "--pool", "p", "--index-dir", str(index_dir), "-o", str(tmp_path / "a.jsonl")])
    assert res.exit_code == 0, res.output
    assert "likely wrong label(s) among 160 audited" in res.output and "given_label" in res.output
