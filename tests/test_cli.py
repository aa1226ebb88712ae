"""The CLI through Typer's CliRunner: every bad input gives one 'error:' line, a non-zero
exit and no half-written file; every input format; seed/query outputs; and a real SIGKILL of
``python -m fmal embed`` that resumes byte-identical."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fmal.session import Session

POOL_FILES = ("embeddings.npy", "rows.parquet", "index.faiss", "manifest.json")


def _no_temp_files(root: Path) -> None:
    stray = [p for p in root.rglob(".*.tmp")]
    assert not stray, stray


# ----------------------------------------------------------------------------- embed: bad input

BAD_EMBED_INPUTS = {
    # name: (file name, bytes or None for a missing file, extra args, words the error must contain)
    "missing file": ("nope.csv", None, [], ["nope.csv", "file not found"]),
    "unknown text column": ("in.csv", b"id,text\n1,a\n", ["--text-col", "body"], ["in.csv", "'body'", "--text-col"]),
    "unknown id column": ("in.csv", b"id,text\n1,a\n", ["--id-col", "uid"], ["in.csv", "'uid'", "--id-col"]),
    "empty text": ("in.csv", b"id,text\n1,a\n2,\n", [], ["in.csv", "row 2", "'text'"]),
    "NaN text": ("in.jsonl", b'{"id":"1","text":"a"}\n{"id":"2","text":NaN}\n', [], ["in.jsonl", "row 2"]),
    "duplicate ids": ("in.csv", b"id,text\n1,a\n2,b\n2,c\n", [], ["in.csv", "rows 2 and 3", "duplicate id '2'"]),
    "non-UTF-8": ("in.csv", b"id,text\n1,ok\n2,caf\xe9\n", [], ["in.csv", "line 3", "UTF-8"]),
    "unknown extension": ("in.xlsx", b"x", [], ["in.xlsx", ".csv"]),
    "no rows": ("in.csv", b"id,text\n", [], ["in.csv", "no rows"]),
    "bad pool name": ("in.csv", b"id,text\n1,a\n", ["--pool", "a b"], ["pool name", "'a b'"]),
    "missing model folder": ("in.csv", b"id,text\n1,a\n", ["--model", "./no-such-model"], ["--model", "not found"]),
    "chunk size 0": ("in.csv", b"id,text\n1,a\n", ["--chunk-size", "0"], ["chunk_size", "got 0"]),
}


BAD_SHARD_FOLDERS = {
    # name: ({shard file: bytes}, words the error must contain)
    "no shards": ({"notes.md": b"x"}, ["shards", "folder holds no"]),
    "duplicate id across shards": ({"a.csv": b"id,text\n1,a\n", "b.csv": b"id,text\n1,b\n"},
                                   ["a.csv", "b.csv: row 1", "duplicate id '1'"]),
    "ids in one shard only": ({"a.csv": b"id,text\n1,a\n", "b.csv": b"text\nb\n"}, ["b.csv", "no id column", "a.csv"]),
}


@pytest.mark.parametrize("case", list(BAD_SHARD_FOLDERS))
def test_embed_bad_folder_of_shards_is_one_line_error(cli, cli_error, tmp_path, tiny_model_dir, case):
    files, needles = BAD_SHARD_FOLDERS[case]
    d = tmp_path / "shards"
    d.mkdir()
    for name, content in files.items():
        (d / name).write_bytes(content)
    cli_error(cli("embed", d, "--pool", "p", "--index-dir", tmp_path / "idx", "--model", tiny_model_dir), *needles)
    assert not (tmp_path / "idx" / "p" / "manifest.json").exists()
    _no_temp_files(tmp_path)


@pytest.mark.parametrize("case", list(BAD_EMBED_INPUTS))
def test_embed_bad_input_is_one_line_error(cli, cli_error, tmp_path, tiny_model_dir, case):
    name, content, extra, needles = BAD_EMBED_INPUTS[case]
    f = tmp_path / name
    if content is not None:
        f.write_bytes(content)
    opts = {"--pool": "p", "--index-dir": tmp_path / "idx", "--model": tiny_model_dir, **dict(zip(extra[::2], extra[1::2]))}
    cli_error(cli("embed", f, *[x for kv in opts.items() for x in kv]), *needles)
    assert not (tmp_path / "idx" / "p" / "manifest.json").exists()
    _no_temp_files(tmp_path)


def test_embed_into_a_pool_built_with_another_model(cli, cli_error, tiny_pool, tiny_model_dir, tmp_path):
    index_dir, name, src = tiny_pool
    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["fmal_test_variant"] = 1  # another config: another fingerprint, another model
    (other / "config.json").write_text(json.dumps(cfg))
    before = {f: (index_dir / name / f).read_bytes() for f in POOL_FILES}
    line = cli_error(cli("embed", src, "--pool", name, "--index-dir", index_dir, "--model", other),
                     str(index_dir / name), "built with model", str(tiny_model_dir), "--overwrite")
    assert "other-model" in line
    assert before == {f: (index_dir / name / f).read_bytes() for f in POOL_FILES}
    # the same model: nothing to do
    res = cli("embed", src, "--pool", name, "--index-dir", index_dir, "--model", tiny_model_dir)
    assert res.exit_code == 0 and "nothing to do" in res.stdout


def test_embed_other_input_into_existing_pool(cli, cli_error, tiny_pool, tiny_model_dir, tmp_path):
    index_dir, name, _ = tiny_pool
    f = tmp_path / "other.csv"
    f.write_text("id,text\n1,another text\n")
    cli_error(cli("embed", f, "--pool", name, "--index-dir", index_dir, "--model", tiny_model_dir),
              "built from other input", "--overwrite")


# ----------------------------------------------------------------------------- seed / query: bad input


def _labels(src: Path, out: Path, n: int, start: int = 0) -> Path:
    df = pd.read_csv(src, dtype=str).iloc[start : start + n]
    df[["id", "label"]].to_csv(out, index=False)
    return out


def _corrupt(pool: Path, what: str) -> None:
    if what == "manifest-json":
        (pool / "manifest.json").write_text("{oops")
    elif what == "index-truncated":
        b = (pool / "index.faiss").read_bytes()
        (pool / "index.faiss").write_bytes(b[: len(b) // 3])
    elif what == "index-missing":
        (pool / "index.faiss").unlink()
    elif what == "embeddings-shape":
        np.save(pool / "embeddings.npy", np.zeros((7, 32), np.float32))
    elif what == "embeddings-missing":
        (pool / "embeddings.npy").unlink()
    elif what == "rows-missing":
        (pool / "rows.parquet").unlink()
    elif what == "session-json":
        (pool / "session.json").write_text("[")


CORRUPT = {
    "manifest-json": "manifest.json",
    "index-truncated": "index.faiss",
    "index-missing": "index.faiss",
    "embeddings-shape": "embeddings.npy",
    "embeddings-missing": "embeddings.npy",
    "rows-missing": "rows.parquet",
    "session-json": "session.json",
}


# a query scores every candidate with the probe and does not load the FAISS index (unless asked for
# k-NN candidates), so a damaged index is reported by the commands that use it
_CORRUPT_CASES = [(c, w) for c in ("seed", "query") for w in CORRUPT if not (c == "query" and w.startswith("index"))]


@pytest.mark.parametrize("command, what", _CORRUPT_CASES)
def test_corrupt_pool_is_one_line_error(cli, cli_error, tiny_pool, tmp_path, command, what):
    index_dir, name, src = tiny_pool
    _corrupt(index_dir / name, what)
    out = tmp_path / "picks.csv"
    args = ["--pool", name, "--index-dir", index_dir, "--budget", 5, "--output", out, "--strategy",
            "kmeans" if command == "seed" else "margin"]
    if command == "query":
        args += ["--labels", _labels(src, tmp_path / "labels.csv", 20)]
    cli_error(cli(command, *args), CORRUPT[what])
    assert not out.exists()
    _no_temp_files(tmp_path)


def _pool_state(pool: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in pool.iterdir() if p.is_file()}


def test_seed_and_query_bad_input(cli, cli_error, tiny_pool, tmp_path):
    index_dir, name, src = tiny_pool
    out = tmp_path / "picks.csv"
    P = ["--pool", name, "--index-dir", index_dir, "--output", out]
    pool = index_dir / name
    state = _pool_state(pool)
    cli_error(cli("seed", *P, "--budget", 0), "budget", "got 0")
    cli_error(cli("seed", *P, "--budget", -2), "budget", "got -2")
    cli_error(cli("seed", *P, "--budget", 201), "budget", "200", "got 201", "--budget")
    cli_error(cli("seed", *P, "--budget", 5, "--strategy", "magic"), "unknown seed strategy 'magic'", "typiclust")
    for command in (["seed", "--budget", 5], ["query", "--budget", 5], ["status"]):
        cli_error(cli(*command, "--pool", "nope", "--index-dir", index_dir), "nope", "no pool there", "fmal embed")
    cli_error(cli("seed", *P[:4], "--budget", 5, "--output", tmp_path / "picks.xlsx"), "picks.xlsx", ".csv")
    unknown = tmp_path / "unknown.csv"
    unknown.write_text(f"id,label\n{pd.read_csv(src, dtype=str)['id'][0]},HUM\nno-such-id,LOC\n")
    cli_error(cli("seed", *P, "--budget", 5, "--labels", unknown), "unknown.csv", "'no-such-id'", "not in pool")
    cli_error(cli("query", *P, "--budget", 5, "--labels", unknown), "unknown.csv", "'no-such-id'")
    cli_error(cli("query", *P, "--budget", 5, "--labels", tmp_path / "missing.csv"), "missing.csv", "not found")
    cli_error(cli("query", *P, "--budget", 5), "no labeled rows yet", "pass --labels (id,label")
    one = tmp_path / "one.csv"
    pd.DataFrame({"id": pd.read_csv(src, dtype=str)["id"][:4], "label": "HUM"}).to_csv(one, index=False)
    cli_error(cli("query", *P, "--budget", 5, "--labels", one), "single class", "'HUM'")
    labels = _labels(src, tmp_path / "labels.csv", 20)
    cli_error(cli("query", *P, "--budget", 5, "--labels", labels, "--strategy", "magic"), "unknown query strategy 'magic'")
    cli_error(cli("query", *P, "--budget", 0, "--labels", labels), "budget", "got 0")
    cli_error(cli("query", *P, "--budget", 181, "--labels", labels), "budget", "180", "got 181")
    nonutf = tmp_path / "nonutf.csv"
    nonutf.write_bytes(b"id,label\nx,caf\xe9\n")
    cli_error(cli("query", *P, "--budget", 5, "--labels", nonutf), "nonutf.csv", "line 2", "UTF-8")
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("id,answer\nx,1\n")
    cli_error(cli("query", *P, "--budget", 5, "--labels", nocol), "nocol.csv", "'label'")
    assert not out.exists()
    _no_temp_files(tmp_path)
    # a failed command leaves the pool as it was: no round, no label merged from its labels file
    assert _pool_state(pool) == state


# ----------------------------------------------------------------------------- formats


def _write_all_formats(tmp_path: Path, df: pd.DataFrame) -> dict[str, Path]:
    files = {"csv": tmp_path / "in.csv", "tsv": tmp_path / "in.tsv", "jsonl": tmp_path / "in.jsonl",
             "parquet": tmp_path / "in.parquet", "txt": tmp_path / "in.txt"}
    df.to_csv(files["csv"], index=False)
    df.to_csv(files["tsv"], index=False, sep="\t")
    df.to_json(files["jsonl"], orient="records", lines=True, force_ascii=False)
    df.to_parquet(files["parquet"], index=False)
    files["txt"].write_text("\n".join(df["body"]) + "\n", encoding="utf-8")
    return files


def test_every_format_through_the_cli(cli, tmp_path, tiny_model_dir, demo_csv):
    import fmal

    demo = pd.read_csv(demo_csv, dtype=str).head(12)
    df = pd.DataFrame({"uid": demo["id"], "body": demo["text"]})
    df.loc[5, "body"] = df.loc[2, "body"]  # a repeated text
    files = _write_all_formats(tmp_path, df)
    idx = tmp_path / "idx"
    vectors = {}
    for fmt, f in files.items():
        args = ["embed", f, "--pool", fmt, "--index-dir", idx, "--model", tiny_model_dir]
        if fmt != "txt":
            args += ["--text-col", "body", "--id-col", "uid"]
        res = cli(*args)
        assert res.exit_code == 0, res.output
        assert "12 rows (11 distinct texts, 11 embedded now)" in res.stdout
        assert "rows/s" in res.stderr  # the progress bar
        pool = fmal.open_pool(fmt, idx)
        assert pool.texts.tolist() == df["body"].tolist()
        if fmt != "txt":
            assert pool.ids.tolist() == df["uid"].tolist()
        vectors[fmt] = np.asarray(pool.embeddings)
        np.testing.assert_array_equal(vectors[fmt][5], vectors[fmt][2])
    for fmt in files:
        np.testing.assert_array_equal(vectors[fmt], vectors["csv"])
    # the plain-text pool got generated ids, the same after reordering the lines
    shuffled = tmp_path / "shuffled.txt"
    shuffled.write_text("\n".join(df["body"].iloc[::-1]) + "\n", encoding="utf-8")
    assert cli("embed", shuffled, "--pool", "txt2", "--index-dir", idx, "--model", tiny_model_dir).exit_code == 0
    a, b = fmal.open_pool("txt", idx), fmal.open_pool("txt2", idx)
    assert sorted(zip(a.ids, a.texts)) == sorted(zip(b.ids, b.texts))
    assert sorted(a.ids.tolist()) == sorted(b.ids.tolist())


# ----------------------------------------------------------------------------- seed and query outputs


def test_seed_then_query_outputs(cli, tiny_pool, tmp_path):
    index_dir, name, src = tiny_pool
    P = ["--pool", name, "--index-dir", index_dir]
    seed_out = tmp_path / "seed.csv"
    res = cli("seed", *P, "--budget", 8, "--strategy", "typiclust", "--seed", 3, "--output", seed_out)
    assert res.exit_code == 0, res.output
    assert "round 1: 8 rows picked by typiclust" in res.stdout and f"wrote {seed_out}" in res.stdout
    picks = pd.read_csv(seed_out, dtype=str)
    assert list(picks.columns[:5]) == ["id", "text", "strategy", "score", "cluster"]
    assert len(picks) == 8 and picks["id"].is_unique and set(picks["strategy"]) == {"typiclust"}
    # rerunning the last round reuses it
    again = tmp_path / "again.jsonl"
    res = cli("seed", *P, "--budget", 8, "--strategy", "typiclust", "--seed", 3, "--output", again)
    assert res.exit_code == 0 and "reused" in res.stdout
    rows = [json.loads(line) for line in again.read_text().splitlines()]
    assert [r["id"] for r in rows] == picks["id"].tolist()
    # annotate: gold labels, one row left blank
    gold = pd.read_csv(src, dtype=str).set_index("id")["label"]
    picks["label"] = picks["id"].map(gold)
    picks.loc[0, "label"] = ""
    picks.to_csv(tmp_path / "labeled.csv", index=False)
    q_out = tmp_path / "q.jsonl"
    res = cli("query", *P, "--labels", tmp_path / "labeled.csv", "--budget", 6, "--strategy", "entropy", "--output", q_out)
    assert res.exit_code == 0, res.output
    assert "round 2: 6 rows picked by entropy" in res.stdout
    q = pd.read_json(q_out, lines=True, dtype={"id": str, "predicted_label": str})
    assert {"id", "text", "score", "predicted_label", "predicted_proba"} <= set(q.columns)
    assert q["id"].is_unique and not set(q["id"]) & set(picks["id"])  # the blank one is still queued
    assert set(q["predicted_label"]) <= set(gold.loc[picks["id"][1:]])
    assert q["predicted_proba"].between(0, 1).all()
    assert (np.diff(q["score"].to_numpy()) <= 1e-12).all()  # most uncertain first
    res = cli("query", *P, "--labels", tmp_path / "labeled.csv", "--budget", 6, "--strategy", "entropy", "--output", q_out)
    assert res.exit_code == 0 and "round 2: 6 rows picked by entropy (same as the last round: reused)" in res.stdout
    res = cli("query", *P, "--budget", 6, "--strategy", "entropy", "--allow-requeue", "--output", tmp_path / "rq.csv")
    assert res.exit_code == 0 and "round 3" in res.stdout  # the stored labels are enough: no --labels needed
    requeued = pd.read_csv(tmp_path / "rq.csv", dtype=str)
    assert not set(requeued["id"]) & set(picks["id"][1:])  # labeled rows: never, even with --allow-requeue
    res = cli("status", *P)
    assert res.exit_code == 0 and "labels: 7" in res.stdout and "typiclust" in res.stdout and "entropy" in res.stdout


def test_cli_help_lists_strategies(cli):
    from fmal.query import QUERY_STRATEGIES
    from fmal.seed import SEED_STRATEGIES

    res = cli("seed", "--help")
    assert res.exit_code == 0 and "typiclust" in res.stdout and "kmeans" in res.stdout
    for command, registry in (("seed", SEED_STRATEGIES), ("query", QUERY_STRATEGIES)):
        out = "".join(cli(command, "--help").stdout.split())  # no whitespace: help wraps at hyphens too
        for name, first_sentence in registry.summaries().items():  # whole first sentences of the docstrings
            assert "".join(f"{name}: {first_sentence}".split()) in out, (command, name)
    res = cli("--version")
    assert res.exit_code == 0 and res.stdout.startswith("fmal ")


# ----------------------------------------------------------------------------- kill and resume, for real


def _copy_pool_files(path: Path) -> dict[str, bytes]:
    return {f: (path / f).read_bytes() for f in POOL_FILES}


def test_sigkilled_embed_resumes_byte_identical(cli, tmp_path, tiny_model_dir, demo_csv):
    src = tmp_path / "pool.csv"
    pd.read_csv(demo_csv, dtype=str).head(500).to_csv(src, index=False)  # 63 chunks: time to kill it midway
    idx = tmp_path / "idx"
    args = ["embed", src, "--pool", "p", "--index-dir", idx, "--model", tiny_model_dir, "--chunk-size", 8, "--batch-size", 8]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "fmal", *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = idx / "p" / ".partial" / "chunk-000000.npy"
    try:
        while not first.exists() and proc.poll() is None:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "embed ended before it could be killed"
    assert not (idx / "p" / "manifest.json").exists()
    res = cli(*args)
    assert res.exit_code == 0, res.output
    assert "chunk(s) reused from an interrupted run" in res.stdout
    ref = cli("embed", src, "--pool", "ref", "--index-dir", idx, "--model", tiny_model_dir, "--chunk-size", 8, "--batch-size", 8)
    assert ref.exit_code == 0 and "reused" not in ref.stdout
    assert _copy_pool_files(idx / "p") == _copy_pool_files(idx / "ref")
    assert not (idx / "p" / ".partial").exists()
    _no_temp_files(idx)
    res = cli(*args)
    assert res.exit_code == 0 and "nothing to do" in res.stdout


def test_unwritable_output_is_one_line_error(cli, cli_error, tiny_pool, tmp_path):
    index_dir, name, _ = tiny_pool
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cli_error(cli("seed", "--pool", name, "--index-dir", index_dir, "--budget", 3, "--output", blocker / "picks.csv"),
              str(blocker), "check the path")
    assert Session(index_dir / name).rounds == []  # the copy failed before the commit: no round recorded


@pytest.mark.parametrize("args, needle", [
    (["seed", "--pool", "p", "--budget", "abc"], "'--budget'"),
    (["seed", "--budget", "3"], "Missing option '--pool'"),
    (["seed", "--pool", "p", "--budgte", "3"], "--budgte"),
    (["sed"], "No such command 'sed'"),
])
def test_usage_errors_are_one_line(cli, cli_error, args, needle):
    line = cli_error(cli(*args), needle, "--help")
    assert line.startswith("error: ") and "Usage:" not in line


def test_embed_errors_show_every_flag_they_name(cli, cli_error, tmp_path):
    """A library error naming several parameters (``param=("repair", "overwrite")``) shows each as
    its option on the command line; the API's message keeps the parameter names."""
    import fmal

    src = tmp_path / "t.csv"
    src.write_text("id,text\na,one\nb,two\n")
    P = ("--pool", "p", "--index-dir", tmp_path / "ix")
    cli_error(cli("embed", src, *P, "--repair", "--overwrite"),
              "error: --repair keeps the pool and rebuilds its damaged files, --overwrite rebuilds it all: pass one")
    cli_error(cli("embed", src, *P, "--keep-labels"),
              "error: --keep-labels and --drop-labels say what --overwrite does with the labels: pass --overwrite too")
    with pytest.raises(fmal.InvalidInputError, match="^keep_labels and drop_labels say what overwrite does") as err:
        fmal.embed(src, "p", index_dir=tmp_path / "ix", keep_labels=True)
    assert err.value.param == ("keep_labels", "drop_labels", "overwrite")
