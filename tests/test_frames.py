"""DataFrames in and out: the API takes the data itself wherever it takes a file, and every result
has .to_frame()."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import fmal
from fmal import frames
from fmal.exceptions import InvalidInputError, LabelsError


def test_texts_table_kinds_agree():
    by_list = frames.texts_table(["a b", "c d", "a b"])
    assert by_list.texts == ["a b", "c d", "a b"] and by_list.ids[2].endswith("-2")  # ids made from texts
    assert frames.texts_table(np.array(["a b", "c d", "a b"])).ids == by_list.ids
    assert frames.texts_table(pd.Series(["a b", "c d", "a b"])).fingerprint == by_list.fingerprint
    by_dict = frames.texts_table({"x": "a b", "y": "c d"})
    assert by_dict.ids == ["x", "y"] and by_dict.id_col == "id"
    df = pd.DataFrame({"doc": ["1", "2"], "body": ["a b", "c d"]})
    t = frames.texts_table(df, text_col="body", id_col="doc")
    assert t.ids == ["1", "2"] and t.texts == ["a b", "c d"]
    assert frames.texts_table(pd.DataFrame({"text": ["q"]}, index=pd.Index(["i1"], name="id"))).ids == ["i1"]


@pytest.mark.parametrize("value, needle", [
    (42, "input: expected a file or folder path, a DataFrame"),
    (["ok", 3], "input: item 2 is a int, not a text"),
    (np.zeros((2, 2)), "must be 1-D"),
    (pd.DataFrame({"body": ["x"]}), "no column 'text'"),
    (pd.DataFrame({"text": ["x", " "]}), "row 2: empty or missing text"),
    (pd.DataFrame({"id": ["a", "a"], "text": ["x", "y"]}), "duplicate id 'a'"),
])
def test_texts_table_errors_are_one_line(value, needle):
    with pytest.raises(InvalidInputError, match=None) as exc:
        frames.texts_table(value)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_labels_mapping_kinds_agree():
    want = {"a": "x", "b": "y"}
    assert frames.labels_mapping(want) == want
    assert frames.labels_mapping(pd.DataFrame({"id": ["a", "b", "c"], "label": ["x", "y", ""]})) == want  # blank skipped
    assert frames.labels_mapping(pd.Series(["x", "y"], index=["a", "b"])) == want
    assert frames.labels_mapping([("a", "x"), ("b", "y")]) == want
    assert frames.labels_mapping(np.array([["a", "x"], ["b", "y"]])) == want
    with pytest.raises(LabelsError, match=r"labels: expected a file path, a DataFrame with id and label columns.*got int"):
        frames.labels_mapping(3)
    with pytest.raises(LabelsError, match=r"labels \(DataFrame\): rows 1 and 2: id 'a' has two labels"):
        frames.labels_mapping(pd.DataFrame({"id": ["a", "a"], "label": ["x", "y"]}))
    with pytest.raises(LabelsError, match=r"no column 'label'"):
        frames.labels_mapping(pd.DataFrame({"id": ["a"]}))


def test_api_takes_dataframes_everywhere(tmp_path, tiny_model_dir, small_csv):
    ix = tmp_path / "ix"
    df = pd.read_csv(small_csv, dtype=str)
    emb = fmal.embed(df, "frame", index_dir=ix, model=tiny_model_dir)
    assert emb.n_rows == 200 and emb.to_frame().loc[0, "n_rows"] == 200
    again = fmal.embed(df.copy(), "frame", index_dir=ix, model=tiny_model_dir)
    assert again.skipped  # the same content is the same input
    from_file = fmal.embed(small_csv, "file", index_dir=ix, model=tiny_model_dir)
    a = fmal.open_pool("frame", ix)
    b = fmal.open_pool(from_file.pool_path)
    assert a.ids.tolist() == b.ids.tolist() and np.array_equal(np.asarray(a.embeddings), np.asarray(b.embeddings))

    gold = df.set_index("id")["label"]
    sel = fmal.seed("frame", 10, index_dir=ix)
    assert sel.to_frame()["id"].tolist() == sel.ids
    labeled = pd.DataFrame({"id": sel.ids, "label": gold[sel.ids].tolist()})
    q = fmal.query("frame", labeled, budget=5, index_dir=ix)  # a DataFrame, where a bare TypeError was
    assert len(q.to_frame()) == 5 and q.info["labels_in_file"] == 10
    q2 = fmal.query("frame", dict(zip(q.ids, gold[q.ids])), budget=5, index_dir=ix)
    assert q2.info["labels_added"] == 5
    with pytest.raises(LabelsError, match=r"labels: expected a file path, .*got int"):
        fmal.query("frame", 5, budget=5, index_dir=ix)

    imp = fmal.import_labels(pd.Series(gold[q2.ids].tolist() + ["z"], index=q2.ids + ["nope"]), "frame", index_dir=ix)
    assert imp.added == 5 and [u.id for u in imp.unknown] == ["nope"]
    assert imp.to_frame()[["kind", "id"]].values.tolist() == [["unknown", "nope"]]
    st = fmal.status("frame", index_dir=ix)
    assert st.n_labels == 20 and len(st.to_frame()) == 3
    assert len(fmal.audit("frame", index_dir=ix).to_frame()) == 20
    assert set(fmal.report("frame", index_dir=ix, n_clusters=4).to_frame()["class"]) >= set(gold[sel.ids])
    assert "embeddings.npy" in fmal.api.info("frame", index_dir=ix).to_frame()["file"].tolist()
    assert fmal.export("frame", index_dir=ix).to_frame().loc[0, "n_tasks"] == 5


def test_simulate_takes_a_dataframe(tmp_path, tiny_model_dir, small_csv):
    df = pd.read_csv(small_csv, dtype=str)
    res = fmal.simulate(df, test_col="split", strategies="random", seeds=1, initial=10, step=10, max_labels=20,
                        index_dir=tmp_path / "ix", model=tiny_model_dir)
    assert res.info["data"] == "data (DataFrame)" and res.info["pool"].split("/")[-1].startswith("data-")
    assert len(res.to_frame()) == 2
