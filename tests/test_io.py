"""fmal.io: every input format, column choice, stable ids, validation messages, labels files and
atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fmal.exceptions import InvalidInputError, LabelsError
from fmal.io import generate_ids, load_texts, read_labels, read_table, write_table

ROWS = [("a1", "How do I bake bread?"), ("a2", "NA"), ("a3", "Texte accentué, with a comma"), ("a4", "123")]


def _write(path: Path, fmt: str, rows=ROWS, id_col="id", text_col="text") -> Path:
    frame = pd.DataFrame({id_col: [r[0] for r in rows], text_col: [r[1] for r in rows]})
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in frame.to_dict("records")), encoding="utf-8")
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_every_table_format_reads_the_same_rows(tmp_path, fmt):
    t = load_texts(_write(tmp_path / f"in.{fmt}", fmt))
    assert t.format == fmt
    assert t.ids == [r[0] for r in ROWS]
    assert t.texts == [r[1] for r in ROWS]  # 'NA' and '123' stay texts: no NaN or number guessing
    assert t.id_col == "id" and t.text_col == "text"
    assert t.fingerprint.startswith("sha256:")


def test_plain_text_is_one_text_a_line_with_generated_ids(tmp_path):
    p = tmp_path / "in.txt"
    p.write_text("\ufeffHow do I bake bread?\nNA\nHow do I bake bread?\n", encoding="utf-8")  # BOM is dropped
    t = load_texts(p)
    assert t.texts == ["How do I bake bread?", "NA", "How do I bake bread?"]
    assert t.id_col is None
    assert t.ids[2] == t.ids[0] + "-2"  # a repeated text gets a suffixed id
    assert len(set(t.ids)) == 3


def test_text_col_and_id_col_choose_columns(tmp_path):
    p = _write(tmp_path / "in.csv", "csv", id_col="uid", text_col="body")
    t = load_texts(p, text_col="body", id_col="uid")
    assert t.ids == [r[0] for r in ROWS] and t.texts == [r[1] for r in ROWS]
    assert (t.text_col, t.id_col) == ("body", "uid")


def test_generated_ids_are_stable_under_reordering_and_appending(tmp_path):
    texts = ["alpha", "beta", "gamma", "beta"]
    a = dict(zip(generate_ids(texts)[:3], texts[:3]))
    shuffled = ["gamma", "alpha", "beta", "delta"]
    b = dict(zip(generate_ids(shuffled), shuffled))
    assert all(b[i] == t for i, t in a.items())
    # through a file with no id column
    p1, p2 = tmp_path / "a.csv", tmp_path / "b.csv"
    pd.DataFrame({"text": ["x one", "y two", "z three"]}).to_csv(p1, index=False)
    pd.DataFrame({"text": ["z three", "x one", "y two"]}).to_csv(p2, index=False)
    t1, t2 = load_texts(p1), load_texts(p2)
    assert t1.id_col is None
    assert dict(zip(t1.ids, t1.texts)) == dict(zip(t2.ids, t2.texts))


def test_numeric_ids_become_strings(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_text('{"id": 7, "text": "a"}\n\n{"id": 8, "text": "b"}\n')  # blank lines are skipped
    assert load_texts(p).ids == ["7", "8"]


@pytest.mark.parametrize(
    "name, content, needles",
    [
        ("nope.csv", None, ["nope.csv", "file not found"]),
        ("in.xlsx", b"x", ["in.xlsx", "'.xlsx'", ".csv"]),
        ("in.csv", b"id,text\n1,caf\xe9\n", ["in.csv", "line 2", "0xe9", "UTF-8"]),
        ("in.txt", b"ok\nw\xffrld\n", ["in.txt", "line 2", "0xff"]),
        ("in.csv", b"id,text\n1,a\n2,\n", ["in.csv", "row 2", "'text'", "empty"]),
        ("in.csv", b"id,text\n1,a\n2,   \n", ["row 2", "empty"]),
        ("in.jsonl", b'{"id":"1","text":"a"}\n{"id":"2","text":NaN}\n', ["in.jsonl", "row 2", "'text'"]),
        ("in.jsonl", b'{"id":"1","text":"a"}\n{"id":"2","text":null}\n', ["row 2"]),
        ("in.jsonl", b'{"id":"1","text":"a"}\n{"id":"2"}\n', ["row 2"]),
        ("in.jsonl", b'{"id":"1","text":"a"}\n{"id":\n', ["in.jsonl", "line 2", "not valid JSON"]),
        ("in.jsonl", b'["a"]\n', ["line 1", "JSON object"]),
        ("in.csv", b"id,text\n1,a\n2,b\n1,c\n", ["in.csv", "rows 1 and 3", "duplicate id '1'"]),
        ("in.csv", b"id,text\n1,a\n,b\n", ["row 2", "empty id"]),
        ("in.csv", b"id,text\n", ["in.csv", "no rows"]),
        ("in.csv", b"", ["no rows"]),
        ("in.txt", b"a\n\nb\n", ["in.txt", "row 2"]),
        ("in.parquet", b"not parquet", ["in.parquet", "Parquet"]),
    ],
)
def test_bad_inputs_name_file_row_and_rule(tmp_path, name, content, needles):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(InvalidInputError) as exc:
        load_texts(p)
    msg = str(exc.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_nan_and_null_in_parquet_are_missing_texts(tmp_path):
    p = tmp_path / "in.parquet"
    pd.DataFrame({"id": ["1", "2", "3"], "text": ["a", None, float("nan")]}).to_parquet(p)
    with pytest.raises(InvalidInputError, match="row 2: empty or missing text"):
        load_texts(p)


def test_unknown_columns_list_the_columns_and_the_option(tmp_path):
    p = _write(tmp_path / "in.csv", "csv")
    with pytest.raises(InvalidInputError, match=r"no column 'body' \(columns: id, text\); pass --text-col"):
        load_texts(p, text_col="body")
    with pytest.raises(InvalidInputError, match=r"no column 'uid' .*pass --id-col"):
        load_texts(p, id_col="uid")


def test_folder_is_not_a_file(tmp_path):
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(InvalidInputError, match="is a folder"):
        read_table(tmp_path / "d.csv")


# ----------------------------------------------------------------------------- labels


def test_read_labels_skips_blank_labels_and_strips(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("id,label,text\n a1 , HUM ,x\na2,,y\na3,   ,z\na1,HUM,x\n")
    assert read_labels(p) == {"a1": "HUM"}


def test_read_labels_jsonl_and_errors(tmp_path):
    p = tmp_path / "labels.jsonl"
    p.write_text('{"id": "a1", "label": "x"}\n{"id": "a2", "label": null}\n')
    assert read_labels(p) == {"a1": "x"}
    two = tmp_path / "two.csv"
    two.write_text("id,label\na1,x\na1,y\n")
    with pytest.raises(LabelsError, match=r"rows 1 and 2: id 'a1' has two labels"):
        read_labels(two)
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("id,answer\na1,x\n")
    with pytest.raises(LabelsError, match=r"no column 'label' \(columns: id, answer\)"):
        read_labels(nocol)
    noid = tmp_path / "noid.csv"
    noid.write_text("id,label\n,x\n")
    with pytest.raises(LabelsError, match="row 1: empty id"):
        read_labels(noid)
    with pytest.raises(LabelsError, match="file not found"):
        read_labels(tmp_path / "missing.csv")


# ----------------------------------------------------------------------------- writing


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_write_table_round_trips(tmp_path, ext):
    frame = pd.DataFrame({"id": ["a", "b"], "text": ["x, \"quoted\"", "ünï"], "score": [0.5, float("nan")]})
    out = write_table(frame, tmp_path / "sub" / f"picks{ext}")
    back, _, _ = read_table(out)
    assert back["id"].tolist() == ["a", "b"] and back["text"].tolist() == frame["text"].tolist()
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left behind


def test_write_table_is_atomic(tmp_path):
    out = tmp_path / "picks.jsonl"
    out.write_text("old\n")
    bad = pd.DataFrame({"id": ["a"], "obj": [object()]})  # not JSON-serialisable: fails mid-write
    with pytest.raises(TypeError):
        write_table(bad, out)
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["picks.jsonl"]
    with pytest.raises(InvalidInputError, match="extension '.xlsx'"):
        write_table(bad, tmp_path / "picks.xlsx")
    assert not (tmp_path / "picks.xlsx").exists()


def test_labels_from_spreadsheets_and_tools(tmp_path):
    excel = tmp_path / "excel.csv"
    excel.write_bytes("\ufeffid,label\r\n007,spam\r\n008,ham\r\n".encode("utf-8"))  # BOM and CRLF, as Excel saves
    assert read_labels(excel) == {"007": "spam", "008": "ham"}
    numeric = tmp_path / "numeric.jsonl"
    numeric.write_text('{"id": 7, "label": 0}\n{"id": 8, "label": 1}\n')
    assert read_labels(numeric) == {"7": "0", "8": "1"}


def test_a_folder_of_shards_is_read_in_name_order(tmp_path):
    from fmal.io import load_texts

    d = tmp_path / "shards"
    d.mkdir()
    (d / "part-000.csv").write_text("id,text\na,first\nb,second\n", encoding="utf-8")
    pd.DataFrame({"id": ["c"], "text": ["third"]}).to_parquet(d / "part-001.parquet", index=False)
    (d / "part-002.jsonl").write_text('{"id": "d", "text": "fourth"}\n', encoding="utf-8")
    (d / ".hidden.csv").write_text("id,text\nz,ignored\n", encoding="utf-8")
    (d / "README.md").write_text("not a shard", encoding="utf-8")
    t = load_texts(d)
    assert t.ids == ["a", "b", "c", "d"] and t.texts == ["first", "second", "third", "fourth"]
    assert t.format == "folder of 3 csv/jsonl/parquet files" and t.fingerprint.startswith("sha256:")
    (d / "part-002.jsonl").write_text('{"id": "d", "text": "changed"}\n', encoding="utf-8")
    assert load_texts(d).fingerprint != t.fingerprint


def test_shard_errors_name_the_shard_and_row(tmp_path):
    from fmal.io import load_texts

    d = tmp_path / "shards"
    d.mkdir()
    with pytest.raises(InvalidInputError, match="folder holds no"):
        load_texts(d)
    (d / "a.csv").write_text("id,text\nx,one\ny,two\n", encoding="utf-8")
    (d / "b.csv").write_text("id,text\nz,three\nx,four\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"a\.csv: row 1 and .*b\.csv: row 2: duplicate id 'x'"):
        load_texts(d)
    (d / "b.csv").write_text("text\nthree\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"b\.csv: no id column unlike a\.csv"):
        load_texts(d)
    (d / "b.csv").write_text("id,text\nz,\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"b\.csv: row 1: empty or missing text"):
        load_texts(d)


def test_list_shards_fingerprints_an_input_as_load_texts_does_without_parsing_it(tmp_path):
    from fmal.io import list_shards, load_texts, read_shard

    d = tmp_path / "shards"
    d.mkdir()
    (d / "part-000.csv").write_text("id,text\na,first\nb,second\n", encoding="utf-8")
    pd.DataFrame({"id": ["c"], "text": ["third"]}).to_parquet(d / "part-001.parquet", index=False)
    notes = tmp_path / "notes.txt"
    notes.write_text("one\ntwo\n", encoding="utf-8")
    for src, kw in ((d, {}), (d / "part-000.csv", {"id_col": "id"}), (notes, {"text_col": "body"})):
        t, s = load_texts(src, **kw), list_shards(src, **kw)
        assert (s.fingerprint, s.format, s.text_col) == (t.fingerprint, t.format, t.text_col)
    assert list_shards(d).id_col is None and [f.name for f in list_shards(d).files] == ["part-000.csv", "part-001.parquet"]
    (d / "part-002.csv").write_text("id,text\nz,\n", encoding="utf-8")  # not parsed: listed all the same
    assert len(list_shards(d).files) == 3
    with pytest.raises(InvalidInputError, match=r"part-002\.csv: row 1: empty or missing text"):
        read_shard(d / "part-002.csv")
    with pytest.raises(InvalidInputError, match="file not found"):
        list_shards(tmp_path / "missing.csv")
