"""A damaged pool is reported and repaired without losing labels or rounds; --overwrite never
discards labels silently (--keep-labels / --drop-labels, a backup folder, never a deletion)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pytest

import fmal
from fmal.session import backup as human_work
from fmal.pool import check as pool_check
from fmal.pool import open_pool, read_manifest
from fmal.exceptions import CorruptPoolError
from fmal.session import Session

DERIVED = ("rows.parquet", "embeddings.npy", "index.faiss", "manifest.json")


def _human(pool: Path) -> dict[str, object]:
    """Everything the session owns: the store's content (labels, rounds with picks, relabels,
    answers: read through fmal.session, since a database's bytes may change without its content
    changing), the labels view, and the round views and probes byte for byte."""
    out: dict[str, object] = {}
    if (pool / "labels.db").exists():
        s = Session(pool)
        answers = s.answers().astype(object)
        out["labels.db"] = (s.labels, s.rounds, s.relabels, answers.where(answers.notna(), None).to_dict("records"))
    if (pool / "labels.csv").exists():
        out["labels.csv"] = (pool / "labels.csv").read_bytes()
    for sub in ("rounds", "probes"):
        for f in sorted((pool / sub).glob("*")) if (pool / sub).is_dir() else []:
            out[f"{sub}/{f.name}"] = f.read_bytes()
    return out


@pytest.fixture
def labeled(tiny_pool, tmp_path):
    """The tiny pool with a seed round, 20 labels and a query round (through the public API)."""
    index_dir, name, src = tiny_pool
    fmal.seed(name, 5, "kmeans", index_dir=index_dir)
    lab = tmp_path / "labels.csv"
    pd.read_csv(src, dtype=str).head(20)[["id", "label"]].to_csv(lab, index=False)
    fmal.query(name, lab, 5, "margin", index_dir=index_dir)
    pool = index_dir / name
    human = _human(pool)
    assert {"labels.csv", "labels.db"} <= set(human) and any(k.startswith("probes/") for k in human)
    assert human_work.has_human_work(pool) == 20 + 2
    return index_dir, name, src, pool, human


def _damage(pool: Path, what: str) -> str:
    """Damage one file; return the file named in the report."""
    if what == "index-deleted":
        (pool / "index.faiss").unlink()
        return "index.faiss"
    if what == "rows-deleted":
        (pool / "rows.parquet").unlink()
        return "rows.parquet"
    if what == "embeddings-truncated":
        b = (pool / "embeddings.npy").read_bytes()
        (pool / "embeddings.npy").write_bytes(b[: len(b) - 1000])
        return "embeddings.npy"
    if what == "manifest-dim":
        m = json.loads((pool / "manifest.json").read_text())
        m["dim"] = 64
        (pool / "manifest.json").write_text(json.dumps(m))
        return "embeddings.npy: shape (200, 32) float32, expected (200, 64)"
    if what == "index-ntotal":
        X = np.load(pool / "embeddings.npy")[:199]
        idx = faiss.IndexFlatIP(X.shape[1])
        idx.add(X)
        faiss.write_index(idx, str(pool / "index.faiss"))
        return "index.faiss: holds 199 vectors of dim 32, expected 200 of dim 32"
    raise AssertionError(what)


DAMAGES = ("index-deleted", "rows-deleted", "embeddings-truncated", "manifest-dim", "index-ntotal")


@pytest.mark.parametrize("what", DAMAGES)
def test_damage_is_reported_then_repaired_keeping_labels(cli, cli_error, labeled, tiny_model_dir, tmp_path, what):
    index_dir, name, src, pool, human = labeled
    before = {f: (pool / f).read_bytes() for f in DERIVED}
    needle = _damage(pool, what)
    embed = ["embed", src, "--pool", name, "--index-dir", index_dir, "--model", tiny_model_dir]

    # a plain rerun does not say "nothing to do": one line naming the damage and the repair
    line = cli_error(cli(*embed), str(pool), needle, "--repair", "labels and rounds are kept")
    assert f"fmal embed {read_manifest(pool).input.path if what != 'manifest-dim' else ''}" in line
    assert f" --pool {pool} --model {tiny_model_dir}" in line
    # seed / query / info say it too
    cli_error(cli("seed", "--pool", name, "--index-dir", index_dir, "--budget", 3), needle, "--repair")
    cli_error(cli("query", "--pool", name, "--index-dir", index_dir, "--budget", 3), needle, "--repair")
    info = cli("info", "--pool", name, "--index-dir", index_dir)
    assert info.exit_code == 1 and f"DAMAGED {needle}" in info.stdout and "--repair" in info.stdout, info.output

    res = cli(*embed, "--repair")
    assert res.exit_code == 0 and "repaired: rebuilt" in res.stdout and "labels and rounds kept" in res.stdout, res.output
    assert _human(pool) == human  # labels, rounds, picks and probes untouched
    if what == "manifest-dim":  # the files were sound: only the manifest is rewritten
        assert "rebuilt manifest.json" in res.stdout
    for f in ("rows.parquet", "embeddings.npy", "index.faiss"):  # rebuilt byte for byte as first built
        assert (pool / f).read_bytes() == before[f], f
    assert json.loads((pool / "manifest.json").read_text()) == json.loads(before["manifest.json"])

    assert cli(*embed).stdout.endswith("nothing to do\n")
    again = cli(*embed, "--repair")
    assert again.exit_code == 0 and "checked with checksums, nothing to repair" in again.stdout
    assert cli("info", "--pool", name, "--index-dir", index_dir).exit_code == 0
    sel = fmal.seed(name, 3, "kmeans", index_dir=index_dir, labels=None)
    nxt = fmal.query(name, None, 3, "margin", index_dir=index_dir)
    assert sel.round == 3 and nxt.round == 4


def test_bit_flip_is_found_by_checksum(cli, cli_error, labeled, tiny_model_dir):
    index_dir, name, src, pool, human = labeled
    embed = ["embed", src, "--pool", name, "--index-dir", index_dir, "--model", tiny_model_dir]
    f = pool / "embeddings.npy"
    good = f.read_bytes()
    bad = bytearray(good)
    bad[-7] ^= 0xFF  # same size, same shape: only the checksum can tell
    f.write_bytes(bytes(bad))
    cli_error(cli(*embed), "embeddings.npy: checksum differs", "--repair")  # newer than the manifest: hashed
    st = (pool / "manifest.json").stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns - 1))  # as old as the manifest: not hashed on a plain run
    assert "nothing to do" in cli(*embed).stdout
    res = cli(*embed, "--repair")  # --repair always hashes
    assert res.exit_code == 0 and "rebuilt embeddings.npy" in res.stdout, res.output
    assert f.read_bytes() == good and _human(pool) == human


def test_files_newer_than_the_manifest_are_hashed_once(cli, labeled, tiny_model_dir):
    index_dir, name, src, pool, _ = labeled
    embed = ["embed", src, "--pool", name, "--index-dir", index_dir, "--model", tiny_model_dir]
    for n in ("rows.parquet", "embeddings.npy", "index.faiss"):  # as after a copy without -p
        os.utime(pool / n, ns=(1, (pool / "manifest.json").stat().st_mtime_ns + 10**9))
    m = read_manifest(pool)
    assert pool_check.needs_checksum(pool, m)
    assert "nothing to do" in cli(*embed).stdout
    assert not pool_check.needs_checksum(pool, m)  # verified: the manifest's mtime moved, not its bytes


def test_old_manifest_without_checksums_is_checked_by_shape(cli, cli_error, labeled, tiny_model_dir, caplog):
    index_dir, name, src, pool, human = labeled
    m = json.loads((pool / "manifest.json").read_text())
    del m["file_checks"]
    (pool / "manifest.json").write_text(json.dumps(m))
    embed = ["embed", src, "--pool", name, "--index-dir", index_dir, "--model", tiny_model_dir]
    with caplog.at_level("WARNING"):
        res = cli(*embed)
    assert res.exit_code == 0 and "nothing to do" in res.stdout and res.stderr == "" and not caplog.records
    (pool / "index.faiss").unlink()
    cli_error(cli(*embed), "index.faiss: missing", "--repair")
    assert cli(*embed, "--repair").exit_code == 0
    assert read_manifest(pool).file_checks and _human(pool) == human  # recorded from now on


def test_unreadable_manifest_is_repaired_from_the_input(cli, cli_error, labeled, tiny_model_dir):
    index_dir, name, src, pool, human = labeled
    good = (pool / "manifest.json").read_bytes()
    (pool / "manifest.json").write_text("{oops")
    embed = ["embed", src, "--pool", name, "--index-dir", index_dir, "--model", tiny_model_dir]
    cli_error(cli(*embed), "manifest.json: not valid JSON", "--repair")
    res = cli(*embed, "--repair")
    assert res.exit_code == 0, res.output
    new, old = json.loads((pool / "manifest.json").read_text()), json.loads(good)
    assert new["input"].pop("path") == str(src)  # the input given now (the pool was built from a copy of it)
    old["input"].pop("path")
    assert new == old and _human(pool) == human


# ----------------------------------------------------------------------------- --overwrite and labels


def _other_input(src: Path, out: Path, *, drop_first: int = 0) -> Path:
    df = pd.read_csv(src, dtype=str)
    df.loc[len(df) - 1, "text"] = "a text that was edited since"
    df.iloc[drop_first:].to_csv(out, index=False)
    return out


def test_overwrite_refuses_on_a_pool_with_labels(cli, cli_error, labeled, tiny_model_dir, tmp_path):
    index_dir, name, src, pool, human = labeled
    other = _other_input(src, tmp_path / "other.csv")
    before = {f: (pool / f).read_bytes() for f in DERIVED}
    embed = ["embed", other, "--pool", name, "--index-dir", index_dir, "--model", tiny_model_dir]
    cli_error(cli(*embed, "--overwrite"), "22 label(s) and round(s)", "--keep-labels", "--drop-labels")
    cli_error(cli(*embed, "--keep-labels"), "--overwrite too")
    cli_error(cli(*embed, "--overwrite", "--repair"), "pass one")
    assert _human(pool) == human and before == {f: (pool / f).read_bytes() for f in DERIVED}


def test_overwrite_keep_labels(cli, labeled, tiny_model_dir, tmp_path):
    index_dir, name, src, pool, human = labeled
    (pool / "reports").mkdir()
    (pool / "reports" / "report.md").write_text("stale")
    other = _other_input(src, tmp_path / "other.csv")
    res = cli("embed", other, "--pool", name, "--index-dir", index_dir, "--model", tiny_model_dir, "--overwrite", "--keep-labels")
    assert res.exit_code == 0 and "labels and rounds kept: 20 labeled id(s)" in res.stdout, res.output
    assert _human(pool) == human and not (pool / "reports").exists()  # derived reports are stale: gone
    assert read_manifest(pool).input.path == str(other)
    nxt = fmal.query(name, None, 3, "margin", index_dir=index_dir)
    assert nxt.round == 3 and not set(nxt.ids) & set(pd.read_csv(pool / "labels.csv", dtype=str)["id"])


def test_overwrite_keep_labels_refuses_when_labeled_ids_vanish(cli, cli_error, labeled, tiny_model_dir, tmp_path):
    index_dir, name, src, pool, human = labeled
    other = _other_input(src, tmp_path / "other.csv", drop_first=3)  # 3 labeled ids gone
    embed = ["embed", other, "--pool", name, "--index-dir", index_dir, "--model", tiny_model_dir, "--overwrite", "--keep-labels"]
    cli_error(cli(*embed), "3 labeled id(s) are not in", "--drop-labels")
    assert _human(pool) == human and read_manifest(pool).input.path != str(other)

    res = cli(*embed, "--drop-labels")
    assert res.exit_code == 0 and "17 labeled id(s); 3 whose id is not in the new input moved to" in res.stdout, res.output
    (backup,) = pool.glob("backup-*")
    assert _human(backup)["labels.db"] == human["labels.db"]  # the database as it was, labels of the gone ids included
    gone = set(pd.read_csv(src, dtype=str)["id"][:3])
    kept = pd.read_csv(pool / "labels.csv", dtype=str)
    assert len(kept) == 17 and not gone & set(kept["id"])
    s = Session(pool)
    assert len(s.labels) == 17 and not gone & set(s.labels)
    assert len(s.rounds) == 2 and not any(gone & set(r["ids"]) for r in s.rounds)
    assert gone <= set(s.answers()["id"])  # their answers stay in the history
    assert fmal.query(name, None, 3, "margin", index_dir=index_dir).round == 3


def test_overwrite_drop_labels_moves_them_to_a_backup(cli, labeled, tiny_model_dir, tmp_path):
    index_dir, name, src, pool, human = labeled
    other = _other_input(src, tmp_path / "other.csv", drop_first=3)
    res = cli("embed", other, "--pool", name, "--index-dir", index_dir, "--model", tiny_model_dir, "--overwrite", "--drop-labels")
    assert res.exit_code == 0 and "moved to" in res.stdout, res.output
    (backup,) = pool.glob("backup-*")
    assert _human(backup) == human  # every label, round, pick and probe, byte for byte
    assert _human(pool) == {} and human_work.has_human_work(pool) == 0
    assert fmal.seed(name, 3, "kmeans", index_dir=index_dir).round == 1


def test_has_human_work_reads_a_labels_db(tmp_path):
    assert human_work.has_human_work(tmp_path) == 0
    db = tmp_path / "labels.db"
    sqlite3.connect(db).close()  # the empty file of a first write killed before its commit
    assert human_work.has_human_work(tmp_path) == 0
    db.unlink()
    Session(tmp_path).add_labels({"a": "x", "b": "y"}, source="test")
    assert human_work.has_human_work(tmp_path) == 2
    db.write_bytes(b"not a database at all" * 100)
    assert human_work.has_human_work(tmp_path) == 1  # unreadable: may hold labels, never counted as empty


def test_open_pool_error_is_one_line_with_repair(labeled):
    index_dir, name, src, pool, _ = labeled
    (pool / "index.faiss").unlink()
    with pytest.raises(CorruptPoolError) as exc:
        open_pool(name, index_dir)
    assert "\n" not in str(exc.value) and "index.faiss: missing" in str(exc.value) and "--repair" in str(exc.value)
