"""Property tests: every importer and every reader of a file a user can edit either reads it
correctly or raises one of fmal's errors with a one-line message, never another exception.

Fed with random JSON values, valid records of each tool with a field replaced by a random value
(wrong types in the right places) or deleted, truncated files, random bytes, deeply nested JSON,
and, for the pool's own files, mutated manifests and probe files. Derandomized (the same examples
on every run) and capped, so the whole file runs in well under a minute.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import clustered, vector_pool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fmal import api
from fmal.pool import open_pool, pool_path
from fmal.pool.files import MANIFEST
from fmal._validation import MAX_LABEL_CHARS
from fmal.cli import app
from fmal.exceptions import CorruptPoolError, FmalError
from fmal.export import FORMATS, Answers
from fmal.io import load_texts, read_labels
from fmal.probe import LinearProbe

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

KEYS = ["id", "label", "text", "fmal_id", "data", "annotations", "result", "value", "choices", "type", "from_name",
        "was_cancelled", "answer", "accept", "options", "meta", "responses", "status", "user_id", "values", "metadata",
        "annotation", "label.responses", "label.responses.users", "label.responses.status", "external_id"]
WORDS = ["choices", "label", "accept", "reject", "ignore", "submitted", "draft", "discarded", "Validated", "HUM", "r1",
         "", " ", "<b>x</b>", "A" * (MAX_LABEL_CHARS + 1)]
scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=20) | st.sampled_from(WORDS))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)

# one valid record of every layout each importer reads (what the tools write)
LS_FULL = {"id": 1, "data": {"text": "t", "fmal_id": "r1"}, "annotations": [
    {"id": 7, "was_cancelled": False, "result": [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["HUM"]}}]}]}
LS_MIN = {"id": 1, "text": "t", "fmal_id": "r1", "label": "HUM"}
PRODIGY = {"text": "t", "fmal_id": "r1", "meta": {"fmal_id": "r1", "score": 0.5}, "options": [{"id": "HUM", "text": "HUM"}],
           "accept": ["HUM"], "answer": "accept", "_input_hash": 1, "_task_hash": 2}
PRODIGY_BINARY = {"text": "t", "label": "HUM", "meta": {"fmal_id": "r1"}, "answer": "accept"}
ARGILLA_2 = {"id": "r1", "fields": {"text": "t"}, "metadata": {"fmal_id": "r1"}, "suggestions": {},
             "responses": {"label": [{"value": "HUM", "user_id": "u1", "status": "submitted"}]}}
ARGILLA_FLAT = {"id": "r1", "text": "t", "label.responses": ["HUM"], "label.responses.users": ["u1"],
                "label.responses.status": ["submitted"]}
ARGILLA_1 = {"id": "r1", "text": "t", "annotation": "HUM", "status": "Validated"}
ARGILLA_FEEDBACK = {"id": "r1", "responses": [{"values": {"label": {"value": "HUM"}}, "status": "submitted", "user_id": "u1"}]}
TABLE = {"id": "r1", "text": "t", "label": "HUM"}

TEMPLATES: dict[str, list[dict[str, Any]]] = {
    "label-studio": [LS_FULL, LS_MIN],
    "prodigy": [PRODIGY, PRODIGY_BINARY],
    "argilla": [ARGILLA_2, ARGILLA_FLAT, ARGILLA_1, ARGILLA_FEEDBACK],
    "jsonl": [TABLE],
    "csv": [TABLE],
}
SUFFIX = {"label-studio": ".json", "prodigy": ".jsonl", "argilla": ".json", "jsonl": ".jsonl", "csv": ".csv"}


def _slots(obj: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) of a JSON value: the places a mutation can hit."""
    if isinstance(obj, dict):
        for k in list(obj):
            yield obj, k
            yield from _slots(obj[k])
    elif isinstance(obj, list):
        for i in range(len(obj)):
            yield obj, i
            yield from _slots(obj[i])


@st.composite
def mutated(draw: st.DrawFn, templates: list[dict[str, Any]]) -> list[Any]:
    """One to three records of the layouts, with one or two fields replaced by a random JSON value or deleted."""
    records: list[Any] = [copy.deepcopy(draw(st.sampled_from(templates))) for _ in range(draw(st.integers(1, 3)))]
    for _ in range(draw(st.integers(1, 2))):
        slots = [(c, k) for c, k in _slots(records) if c is not records]  # whole records: test_importer_random_json
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        if isinstance(container, dict) and draw(st.booleans()):
            del container[key]
        else:
            container[key] = draw(json_values)
    return records


def _write_records(path: Path, records: list[Any], layout: str) -> None:
    if path.suffix == ".csv":
        rows = [r if isinstance(r, dict) else {"value": r} for r in records]
        pd.DataFrame.from_records(rows).to_csv(path, index=False)
    elif layout == "array":
        path.write_text(json.dumps(records), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _one_line(fn: Callable[[], Any]) -> Any:
    """``fn()``; an FmalError is fine when its message is one short line (returns None). Any other
    exception fails the test."""
    try:
        return fn()
    except FmalError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg and "Traceback" not in msg, msg
        assert len(msg) < 2000, msg[:300]
        return None


def _check_answers(got: Answers | None) -> None:
    if got is None:
        return
    for a in got.answers:
        assert isinstance(a.id, str) and a.id.strip() == a.id and a.id
        assert isinstance(a.label, str) and a.label.strip() == a.label and 0 < len(a.label) <= MAX_LABEL_CHARS
    for where, why in got.skipped:
        assert isinstance(where, str) and isinstance(why, str) and len(why) < 500


def _read(fmt: str, path: Path) -> None:
    _check_answers(_one_line(lambda: FORMATS.get(fmt).read(path)))
    if fmt in ("csv", "jsonl"):  # the same files as --labels of seed and query
        got = _one_line(lambda: read_labels(path))
        assert got is None or all(isinstance(k, str) and isinstance(v, str) and len(v) <= MAX_LABEL_CHARS for k, v in got.items())


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="fmal-hostile-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


FORMAT_NAMES = ["csv", "jsonl", "label-studio", "prodigy", "argilla"]


def test_every_format_is_covered():
    assert sorted(FORMATS.names()) == sorted(FORMAT_NAMES)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@settings(SETTINGS, max_examples=100)
@given(data=st.data())
def test_importer_mutated_records(workdir: Path, fmt: str, data: st.DataObject) -> None:
    records = data.draw(mutated(TEMPLATES[fmt]))
    path = workdir / f"mutated-{fmt}{SUFFIX[fmt]}"
    _write_records(path, records, data.draw(st.sampled_from(["array", "lines"])))
    _read(fmt, path)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@settings(SETTINGS, max_examples=40)
@given(value=json_values, layout=st.sampled_from(["array", "lines", "whole"]))
def test_importer_random_json(workdir: Path, fmt: str, value: Any, layout: str) -> None:
    path = workdir / f"random-{fmt}{SUFFIX[fmt]}"
    if layout == "whole" or not isinstance(value, list):
        path.write_text(json.dumps(value), encoding="utf-8")
    else:
        _write_records(path, value, layout)
    _read(fmt, path)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@settings(SETTINGS, max_examples=30)
@given(data=st.data())
def test_importer_truncated_bytes_and_nesting(workdir: Path, fmt: str, data: st.DataObject) -> None:
    path = workdir / f"broken-{fmt}{SUFFIX[fmt]}"
    kind = data.draw(st.sampled_from(["truncated", "bytes", "nested", "text"]))
    if kind == "truncated":
        _write_records(path, [copy.deepcopy(t) for t in TEMPLATES[fmt]] * 2, data.draw(st.sampled_from(["array", "lines"])))
        raw = path.read_bytes()
        path.write_bytes(raw[: data.draw(st.integers(0, len(raw)))])
    elif kind == "bytes":
        path.write_bytes(data.draw(st.binary(max_size=300)))
    elif kind == "nested":
        depth = data.draw(st.sampled_from([50, 900, 1200, 100_000]))
        opener, closer = data.draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('{"data":', "}")]))
        inner = opener * depth + "1" + closer * depth
        path.write_text(data.draw(st.sampled_from([inner, f"[{inner}]", json.dumps(TABLE)[:-1] + f', "label": {inner}}}'])))
    else:
        path.write_text(data.draw(st.text(max_size=300)), encoding="utf-8")
    _read(fmt, path)


# ----------------------------------------------------------------------------- a pool's input


@settings(SETTINGS, max_examples=50)
@given(records=mutated([{"id": "r1", "text": "How far is it?"}, {"text": "What is it?"}]),
       suffix=st.sampled_from([".jsonl", ".csv"]))
def test_pool_input_texts_and_ids(workdir: Path, records: list[Any], suffix: str) -> None:
    path = workdir / f"input{suffix}"
    _write_records(path, records, "lines")
    table = _one_line(lambda: load_texts(path))
    if table is not None:
        assert all(isinstance(t, str) and t.strip() for t in table.texts)
        assert all(isinstance(i, str) and i for i in table.ids) and len(set(table.ids)) == len(table.ids)


column_values = st.one_of(
    st.lists(st.text(max_size=10), min_size=1, max_size=4),
    st.lists(st.binary(max_size=10), min_size=1, max_size=4),
    st.lists(st.integers(-5, 5), min_size=1, max_size=4),
    st.lists(st.floats(allow_nan=True), min_size=1, max_size=4),
    st.lists(st.lists(st.integers(0, 3), max_size=3), min_size=1, max_size=4),
    st.lists(st.none() | st.text(max_size=5), min_size=1, max_size=4),
)


@settings(SETTINGS, max_examples=40)
@given(texts=column_values, ids=st.none() | column_values)
def test_pool_input_parquet_types(workdir: Path, texts: list[Any], ids: list[Any] | None) -> None:
    cols: dict[str, Any] = {"text": texts}
    if ids is not None:
        cols["id"] = (ids * len(texts))[: len(texts)]
    path = workdir / "input.parquet"
    pd.DataFrame(cols).to_parquet(path)
    table = _one_line(lambda: load_texts(path))
    if table is not None:
        assert all(isinstance(t, str) and t.strip() for t in table.texts)
        assert all(isinstance(i, str) and i for i in table.ids)


# ----------------------------------------------------------------------------- the pool's own files


@pytest.fixture(scope="module")
def pool_dir(workdir: Path) -> Path:
    X, _ = clustered(n=40, d=8, k=4, seed=3)
    return vector_pool(workdir / "indexes", "p", X)


def _use_pool(path: Path) -> None:
    """What the commands read from a pool, through the API and the CLI (info, status)."""
    p = open_pool(path)
    _ = p.index, p.embeddings, p.texts
    api.info(path)
    for cmd in ("info", "status"):
        r = CliRunner().invoke(app, [cmd, "--pool", str(path)])
        assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
        assert r.exit_code in (0, 2) and "Traceback" not in r.output
        if r.exit_code:
            assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@settings(SETTINGS, max_examples=50)
@given(data=st.data())
def test_manifest_mutations(pool_dir: Path, data: st.DataObject) -> None:
    f = pool_dir / MANIFEST
    good = f.read_text(encoding="utf-8")
    kind = data.draw(st.sampled_from(["mutate", "mutate", "mutate", "truncate", "bytes"]))
    try:
        if kind == "mutate":
            records = data.draw(mutated([json.loads(good)]))
            f.write_text(json.dumps(records[0]), encoding="utf-8")
        elif kind == "truncate":
            f.write_text(good[: data.draw(st.integers(0, len(good) - 1))], encoding="utf-8")
        else:
            f.write_bytes(data.draw(st.binary(max_size=200)))
        _one_line(lambda: _use_pool(pool_dir))
    finally:
        f.write_text(good, encoding="utf-8")


@pytest.mark.parametrize("params", [{"nprobe": "x"}, {"nprobe": -1}, {"efSearch": 1.5}, {"nprobe": 8}, [], "x", {"bogus": 3}])
def test_manifest_bad_search_params_is_corrupt_pool(pool_dir: Path, params: Any) -> None:
    f = pool_dir / MANIFEST
    good = f.read_text(encoding="utf-8")
    m = json.loads(good)
    m["index"]["search_params"] = params
    f.write_text(json.dumps(m), encoding="utf-8")
    try:
        with pytest.raises(CorruptPoolError, match="search_params"):
            open_pool(pool_dir).index
    finally:
        f.write_text(good, encoding="utf-8")


@pytest.fixture(scope="module")
def probe_doc() -> dict[str, Any]:
    X, y = clustered(n=60, d=8, k=3, seed=2)
    return LinearProbe(C=10.0).fit(X, y.astype(str)).to_dict()


@settings(SETTINGS, max_examples=60)
@given(data=st.data())
def test_probe_file_mutations(workdir: Path, probe_doc: dict[str, Any], data: st.DataObject) -> None:
    f = workdir / "round-001.json"
    kind = data.draw(st.sampled_from(["mutate", "mutate", "mutate", "truncate", "bytes"]))
    text = json.dumps(probe_doc)
    if kind == "mutate":
        f.write_text(json.dumps(data.draw(mutated([probe_doc]))[0]), encoding="utf-8")
    elif kind == "truncate":
        f.write_text(text[: data.draw(st.integers(0, len(text) - 1))], encoding="utf-8")
    else:
        f.write_bytes(data.draw(st.binary(max_size=200)))
    try:
        probe = LinearProbe.load(f, n_features=8)
    except CorruptPoolError as exc:
        assert "\n" not in str(exc) and str(f) in str(exc)
        return
    proba = probe.predict_proba(np.eye(8, dtype=np.float32))  # a probe that loads can be used
    assert proba.shape == (8, len(probe.classes_)) and np.isfinite(proba).all()


# ----------------------------------------------------------------------------- the CLI, end to end


def _worst_files(d: Path, rid: str) -> dict[str, tuple[str, str]]:
    """name -> (file, --format) of the worst import files of issue 13."""
    def put(name: str, text: str) -> str:
        (d / name).write_text(text, encoding="utf-8")
        return str(d / name)

    nested = "[" * 100_000 + "]" * 100_000
    return {
        "nested-json": (put("nested.json", nested), "label-studio"),
        "nested-jsonl": (put("nested.jsonl", '{"a":' * 100_000 + "1" + "}" * 100_000 + "\n"), "jsonl"),
        "ls-data-string": (put("ls.json", json.dumps([{"data": "x", "annotations": []}])), "label-studio"),
        "ls-value-list": (put("ls2.json", json.dumps([{"data": {"fmal_id": rid}, "annotations": [
            {"result": [{"type": "choices", "from_name": "label", "value": ["A"]}]}]}])), "label-studio"),
        "argilla-response-int": (put("ar.json", json.dumps([{"id": rid, "responses": {"label": 5}}])), "argilla"),
        "argilla-value-dict": (put("ar2.json", json.dumps([{"id": rid, "responses": {"label": [{"value": {"dict": 1}}]}}])), "argilla"),
        "prodigy-accept-dict": (put("pr.jsonl", json.dumps({"fmal_id": rid, "answer": "accept", "accept": {"id": "HUM"}}) + "\n"), "prodigy"),
        "label-5M": (put("big.csv", f"id,label\n{rid},{'A' * 5_000_000}\n"), "csv"),
        "binary": (str(_binary(d / "bin.jsonl")), "jsonl"),
    }


def _binary(f: Path) -> Path:
    f.write_bytes(bytes(range(256)))
    return f


WORST_IMPORTS = ["nested-json", "nested-jsonl", "ls-data-string", "ls-value-list", "argilla-response-int",
                 "argilla-value-dict", "prodigy-accept-dict", "label-5M", "binary"]


@pytest.mark.parametrize("case", WORST_IMPORTS)
def test_cli_worst_imports_are_one_line(cli, cli_error, tiny_pool, tmp_path, case):
    index_dir, name, _ = tiny_pool
    rid = str(open_pool(name, index_dir).ids[0])
    file, fmt = _worst_files(tmp_path, rid)[case]
    r = cli("import-labels", file, "--pool", name, "--index-dir", index_dir, "--format", fmt)
    assert r.exit_code == 2
    line = cli_error(r)
    assert len(line) < 400 and Path(file).name in line
    assert not (index_dir / name / "labels.csv").exists()  # nothing imported


@pytest.mark.parametrize("args, needle", [
    (["seed", "--budget", "5", "--seed", "-1"], "0 to 4,294,967,295"),
    (["seed", "--budget", "5", "--seed", "99999999999"], "0 to 4,294,967,295"),
    (["query", "--budget", "5", "--seed", "-1"], "0 to 4,294,967,295"),
    (["query", "--budget", "5", "--seed", str(2**32)], "0 to 4,294,967,295"),
    (["audit", "--seed", "-1"], "0 to 4,294,967,295"),
    (["report", "--seed", "-1"], "0 to 4,294,967,295"),
])
def test_cli_seed_range_is_the_same_everywhere(cli, cli_error, tiny_pool, args, needle):
    index_dir, name, _ = tiny_pool
    r = cli(*args, "--pool", name, "--index-dir", index_dir)
    assert r.exit_code == 2
    cli_error(r, needle)


def test_cli_untrainable_index_refused_before_embedding(cli, cli_error, tmp_path, small_csv):
    idx = tmp_path / "idx"
    r = cli("embed", small_csv, "--pool", "q", "--index-dir", idx, "--index", "ivfpq", "--model", tmp_path / "no-model")
    assert r.exit_code == 2
    cli_error(r, "--index ivfpq", "200 rows")  # refused before the model is even looked up
    assert not (idx / "q").exists()


def test_cli_pool_path_and_index_dir_are_exclusive(cli, cli_error, tiny_pool, tmp_path):
    index_dir, name, _ = tiny_pool
    r = cli("status", "--pool", f"../{name}", "--index-dir", index_dir)
    assert r.exit_code == 2
    cli_error(r, "--index-dir applies to pool names only")
    assert cli("status", "--pool", index_dir / name).exit_code == 0  # a path alone is that folder


def test_real_process_nested_json_exit_2(tiny_pool, tmp_path):
    """A real ``fmal`` process (its own stack and recursion limit): exit 2, one line, no traceback."""
    import os
    import subprocess
    import sys

    index_dir, name, _ = tiny_pool
    f = tmp_path / "deep.json"
    f.write_text("[" * 200_000 + "]" * 200_000)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-m", "fmal", "import-labels", str(f), "--pool", name, "--index-dir", str(index_dir),
                        "--format", "argilla"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0 and "nested too deeply" in r.stderr


# ----------------------------------------------------------------------------- the smaller items


def test_shared_validators():
    from fmal._validation import check_id, check_label, check_seed, check_text
    from fmal.exceptions import InvalidInputError, LabelsError

    assert check_text(b"caf\xc3\xa9", "f: row 1") == "café" and check_text("  ", "f: row 1") is None
    with pytest.raises(InvalidInputError, match=r"f: row 2: 'text' holds bytes that are not valid UTF-8"):
        check_text(b"\xff", "f: row 2")
    for bad in (3, 1.5, True, {"a": 1}, [1], np.array([1, 2])):
        with pytest.raises(InvalidInputError, match="f: row 3: 'text' is"):
            check_text(bad, "f: row 3")
    assert check_id(7, "f") == "7" and check_id(np.int64(7), "f") == "7" and check_id(" x ", "f") == "x"
    for bad in (1.0, True, {"a": 1}, ["x"]):
        with pytest.raises(InvalidInputError, match="ids must be strings or integers"):
            check_id(bad, "f")
    assert check_label(" HUM ", "f") == "HUM" and check_label(2, "f") == "2" and check_label(float("nan"), "f") is None
    with pytest.raises(LabelsError, match="1,001 characters"):
        check_label("A" * (MAX_LABEL_CHARS + 1), "f")
    assert check_label("A" * MAX_LABEL_CHARS, "f") == "A" * MAX_LABEL_CHARS
    for bad in (1.5, float("inf"), False, {"dict": 1}, ["A"]):
        with pytest.raises(LabelsError, match="a label must be a string"):
            check_label(bad, "f")
    assert check_seed(0) == 0 and check_seed(2**32 - 1) == 2**32 - 1 and check_seed(np.uint32(5)) == 5
    for bad in (-1, 2**32, 1.0, True, "3", None):
        with pytest.raises(InvalidInputError, match="0 to 4,294,967,295"):
            check_seed(bad)


def test_prodigy_choice_answer_shapes(workdir: Path):
    """``accept`` lists option ids (strings or integers); option objects give their id."""
    f = workdir / "prodigy-shapes.jsonl"
    lines = [{"fmal_id": "r1", "answer": "accept", "accept": ["HUM"], "options": [{"id": "HUM", "text": "HUM"}]},
             {"fmal_id": "r2", "answer": "accept", "accept": [{"id": "LOC", "text": "LOC"}]},
             {"fmal_id": "r3", "answer": "accept", "accept": [3], "options": [{"id": 3, "text": "three"}]}]
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    got = FORMATS.get("prodigy").read(f)
    assert [(a.id, a.label) for a in got.answers] == [("r1", "HUM"), ("r2", "LOC"), ("r3", "3")]


def test_index_kind_checked_against_rows():
    from fmal import index as fmal_index
    from fmal.exceptions import InvalidInputError

    with pytest.raises(InvalidInputError, match="^index ivfpq: 200 rows are too few") as err:
        fmal_index.check_trainable(200, "ivfpq")  # the API's parameter; the CLI shows it as --index
    assert "--" not in str(err.value) and err.value.param == "index"
    fmal_index.check_trainable(256, "ivfpq")
    choice = fmal_index.choose_index(200, 384, "auto", 1)
    assert choice.kind == "flat" and "too small" in choice.note  # replaced, and said
    assert fmal_index.choose_index(200, 384, "auto").note == ""
    X, _ = clustered(n=100, d=8, k=4, seed=0)
    with pytest.raises(InvalidInputError, match="too few"):
        fmal_index.build(X, "ivfpq")  # the Ray engine learns the row count only here


def test_probe_wrong_shape_is_corrupt_pool_naming_the_file(workdir: Path, probe_doc: dict[str, Any]):
    f = workdir / "probe-shape.json"
    for change in ({"coef": [1.0, 2.0]}, {"coef": [[1.0] * 8] * 2}, {"intercept": [[0.0]]}, {"classes": ["a"]},
                   {"coef": [[1e300] * 8] * 3}):
        f.write_text(json.dumps({**probe_doc, **change}))
        with pytest.raises(CorruptPoolError, match=r"probe-shape.json: not a valid fmal probe \('"):
            LinearProbe.load(f, n_features=8)
    f.write_text(json.dumps(probe_doc))
    with pytest.raises(CorruptPoolError, match="for 8-dim embeddings, the pool's are 16-dim"):
        LinearProbe.load(f, n_features=16)


def test_pool_name_or_path():
    from fmal.exceptions import InvalidInputError

    assert pool_path("p", "idx") == Path("idx/p") and pool_path("../x") == Path("../x")
    with pytest.raises(InvalidInputError, match="--index-dir applies to pool names only"):
        pool_path("../x", "idx")
    with pytest.raises(InvalidInputError, match="pool name must be"):
        pool_path("..", "idx")


def test_report_escapes_html_and_dollars(workdir: Path):
    from fmal.report import BiasReport, class_balance, rounds_balance, write
    from fmal.session import Round

    labels = ["<script>alert(1)</script>", "a|b", "$\\frac$"] * 3
    balance, warns = class_balance(labels, np.array(labels * 2))
    clusters = pd.DataFrame([{"cluster": 0, "size": 5, "share_of_pool": 0.5, "top_predicted": "<b>x</b> (100%)",
                              "example": "<img src=x onerror=alert(1)>"}])
    rounds = rounds_balance([Round(1, "seed", "kmeans", ["r0", "r1"])],
                            {"r0": labels[0], "r1": labels[2]}, balance["class"].tolist())
    rep = BiasReport(balance, clusters, rounds, warns + ["class '<i>' is rare"], 18, 9, 2)
    paths = write(rep, workdir / "report.md", "<pool>")
    md = paths["markdown"].read_text()
    assert "<script>" not in md and "<img" not in md and "<b>" not in md and "<i>" not in md and "<pool>" not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md and "a\\|b" in md
    assert paths["png"].stat().st_size > 0  # '$\frac$' drawn as text, not parsed as math


def test_cli_cells_are_cut():
    from fmal.cli._print import CELL_WIDTH, fmt, q

    assert len(fmt("A" * 5_000_000)) <= CELL_WIDTH and len(q("A" * 5_000_000)) <= 80
