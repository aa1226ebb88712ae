"""fmal info prints what the manifest records, and "unknown" for what it does not: never a default
that reads as a measurement (recall@10 1.0, backend torch)."""

from __future__ import annotations

import json


def test_info_prints_the_recorded_fields(cli, tiny_pool):
    index_dir, name, _ = tiny_pool
    res = cli("info", "--pool", name, "--index-dir", index_dir)
    assert res.exit_code == 0, res.output
    m = json.loads((index_dir / name / "manifest.json").read_text())
    assert f"backend {m['model']['backend']}" in res.stdout
    assert f"recall@10: {m['index']['recall_at_10']}" in res.stdout and "unknown" not in res.stdout


def test_info_prints_unknown_for_missing_fields(cli, tiny_pool):
    index_dir, name, _ = tiny_pool
    path = index_dir / name / "manifest.json"
    m = json.loads(path.read_text())
    for key in ("recall_at_10", "max_memory", "bytes_per_vector", "metric"):
        m["index"].pop(key, None)
    m["model"].pop("backend")
    m.pop("dtype")
    path.write_text(json.dumps(m))
    res = cli("info", "--pool", name, "--index-dir", index_dir)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "recall@10: unknown" in out and "recall@10: 1.0" not in out
    assert "backend unknown" in out and "backend torch" not in out
    assert "stored as unknown" in out and "budget unknown" in out


def test_info_prints_index_warnings(cli, tiny_pool):
    index_dir, name, _ = tiny_pool
    path = index_dir / name / "manifest.json"
    m = json.loads(path.read_text())
    m["index"]["warnings"] = ["index IVF4,Flat: recall@10 0.800 at the largest setting tried (nprobe=4) is under the 0.95 target"]
    path.write_text(json.dumps(m))
    res = cli("info", "--pool", name, "--index-dir", index_dir)
    assert res.exit_code == 0, res.output
    assert "warning: index IVF4,Flat: recall@10 0.800" in res.stdout
