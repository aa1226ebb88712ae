"""``--json`` on every command: one JSON document on stdout (parsed here), nothing else there,
the text output on stderr; errors keep stdout empty."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from fmal.cli._json import to_jsonable


def _doc(result, command: str) -> dict:
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # the whole of stdout is one document
    assert doc["format"] == "fmal-cli" and doc["format_version"] == 1 and doc["command"] == command
    assert doc["ok"] is True and doc["exit_code"] == 0 and isinstance(doc["warnings"], list)
    return doc["result"]


def test_to_jsonable_handles_numpy_pandas_paths_nan(tmp_path):
    frame = pd.DataFrame({"id": ["a", "b"], "score": [np.float32(0.5), np.nan], "n": np.array([1, 2], dtype=np.int64)})
    out = to_jsonable({"f": frame, "p": tmp_path, "x": np.float64("inf"), "a": np.arange(3), "s": {2, 1}, "t": (1, np.bool_(True))})
    assert out == {"f": [{"id": "a", "score": 0.5, "n": 1}, {"id": "b", "score": None, "n": 2}], "p": str(tmp_path),
                   "x": None, "a": [0, 1, 2], "s": [1, 2], "t": [1, True]}
    json.dumps(out, allow_nan=False)


def test_every_command_prints_one_json_document(cli, tiny_pool, tmp_path, tiny_model_dir):
    index_dir, name, src = tiny_pool
    common = ["--pool", name, "--index-dir", index_dir]

    emb = _doc(cli("embed", src, *common, "--model", tiny_model_dir, "--json"), "embed")
    assert emb["skipped"] is True and emb["n_rows"] == 200 and emb["pool_path"].endswith(name)

    res = cli("seed", *common, "--budget", 12, "--json")
    seed = _doc(res, "seed")
    assert "round 1" in res.stderr and "round 1" not in res.stdout  # the table went to stderr
    assert seed["n_picks"] == 12 and len(seed["picks"]) == 12  # every pick, not the first ten
    assert set(seed["picks"][0]) >= {"id", "text", "strategy", "score", "cluster", "round"}
    assert seed["ids"] == [p["id"] for p in seed["picks"]] and seed["stop"] is None

    gold = pd.read_csv(src, dtype=str).set_index("id")["label"]
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"id": seed["ids"], "label": [gold[i] for i in seed["ids"]]}).to_csv(labels, index=False)
    q = _doc(cli("query", *common, "--labels", labels, "--budget", 15, "--json"), "query")
    assert q["kind"] == "query" and len(q["picks"]) == 15
    assert {"predicted_label", "predicted_proba", "score"} <= set(q["picks"][0])
    assert q["stop"]["advice"] and q["info"]["n_labels"] == 12

    st = _doc(cli("status", *common, "--json"), "status")
    assert st["n_labels"] == 12 and [r["round"] for r in st["rounds"]] == [1, 2] and st["manifest"]["n_rows"] == 200

    info = _doc(cli("info", *common, "--json"), "info")
    assert info["problems"] == [] and info["manifest"]["index"]["type"] == "flat"

    ex = _doc(cli("export", *common, "--format", "label-studio", "--json"), "export")
    assert ex["round"] == 2 and ex["n_tasks"] == 15 and ex["output"].endswith(".json")

    more = tmp_path / "more.csv"
    pd.DataFrame({"id": q["ids"][:5] + ["nope"], "label": [gold[i] for i in q["ids"][:5]] + ["x"]}).to_csv(more, index=False)
    imp = _doc(cli("import-labels", more, *common, "--json"), "import-labels")
    assert imp["added"] == 5 and [u["id"] for u in imp["unknown"]] == ["nope"]

    au = _doc(cli("audit", *common, "--json"), "audit")
    assert len(au["audit"]["table"]) == 17 and {"rank", "id", "given_label", "is_issue"} <= set(au["audit"]["table"][0])

    rep = _doc(cli("report", *common, "--clusters", 5, "--json"), "report")
    assert rep["n_labeled"] == 17 and {r["class"] for r in rep["balance"]} >= set(gold[seed["ids"]])

    undo = _doc(cli("query", *common, "--undo", "--json"), "query")
    assert undo["round"] == 2 and undo["kind"] == "query"


def test_simulate_json(cli, tmp_path, tiny_model_dir, small_csv):
    res = cli("simulate", small_csv, "--test-col", "split", "--strategy", "random,typiclust+margin", "--seeds", 2,
              "--initial", 10, "--step", 10, "--max", 30, "--index-dir", tmp_path / "ix", "--model", tiny_model_dir,
              "--output", tmp_path / "sim", "--json")
    sim = _doc(res, "simulate")
    assert sim["format"] == "fmal-simulation" and sim["verdict"] and [s["name"] for s in sim["strategies"]]
    assert "verdict:" in res.stderr


def test_json_error_keeps_stdout_empty(cli, cli_error, tiny_pool):
    index_dir, name, _ = tiny_pool
    cli_error(cli("seed", "--pool", name, "--index-dir", index_dir, "--budget", 0, "--json"), "budget")


def test_json_on_a_damaged_pool_still_prints_the_result(cli, tiny_pool):
    index_dir, name, _ = tiny_pool
    (index_dir / name / "index.faiss").unlink()
    res = cli("info", "--pool", name, "--index-dir", index_dir, "--json")
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["ok"] is False and doc["exit_code"] == 1 and any("index.faiss" in p for p in doc["result"]["problems"])


@pytest.mark.parametrize("command", ["embed", "seed", "query", "simulate", "export", "import-labels", "audit", "report", "status", "info"])
def test_help_documents_json(cli, command):
    out = cli(command, "--help").stdout
    assert "--json" in out and "JSON document" in " ".join(out.split())


def test_nan_becomes_null():
    assert to_jsonable(float("nan")) is None and to_jsonable(np.float32("nan")) is None and not math.isnan(to_jsonable(1.5))
