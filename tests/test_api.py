"""The Python API end to end on the tiny model: embed (with an interruption), seed, query, status,
and the session rules (no re-picks, reruns reuse, blank labels skipped, labels never lost)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

import fmal
from fmal import encoders as fmal_encoders
from fmal.session import Session

POOL_FILES = ("embeddings.npy", "rows.parquet", "index.faiss", "manifest.json")


class _InterruptAfter:
    """Wraps a real encoder; raises KeyboardInterrupt (Ctrl-C) when asked for chunk ``n + 1``."""

    def __init__(self, inner, n: int) -> None:
        self.inner, self.n, self.calls = inner, n, 0

    def __getattr__(self, name):  # name, fingerprint, dim, backend, ...: the real encoder's
        return getattr(self.inner, name)

    def encode(self, texts, **kw):
        if self.calls == self.n:
            raise KeyboardInterrupt
        self.calls += 1
        return self.inner.encode(texts, **kw)

    def encode_chunks(self, chunks, **kw):  # chunk by chunk through encode: the interruption lands between chunks
        for texts in chunks:
            yield self.encode(texts, **kw)


def test_embed_interrupted_then_resumed_is_byte_identical(tmp_path, tiny_model_dir, demo_csv, monkeypatch):
    src = tmp_path / "in.csv"
    pd.read_csv(demo_csv, dtype=str).head(40).to_csv(src, index=False)
    ref = fmal.embed(src, "ref", index_dir=tmp_path, model=tiny_model_dir, chunk_size=8)
    assert (ref.n_rows, ref.n_embedded, ref.n_chunks_reused, ref.skipped) == (40, 40, 0, False)

    real_load = fmal_encoders.load_encoder
    monkeypatch.setattr(fmal_encoders, "load_encoder", lambda *a, **k: _InterruptAfter(real_load(*a, **k), 2))
    with pytest.raises(KeyboardInterrupt):
        fmal.embed(src, "p", index_dir=tmp_path, model=tiny_model_dir, chunk_size=8)
    assert sorted(f.name for f in (tmp_path / "p" / ".partial").glob("chunk-*.npy")) == ["chunk-000000.npy", "chunk-000001.npy"]
    monkeypatch.setattr(fmal_encoders, "load_encoder", real_load)

    res = fmal.embed(src, "p", index_dir=tmp_path, model=tiny_model_dir, chunk_size=8)
    assert (res.n_chunks_reused, res.n_embedded, res.skipped) == (2, 24, False)
    for f in POOL_FILES:
        assert (tmp_path / "p" / f).read_bytes() == (tmp_path / "ref" / f).read_bytes(), f
    assert sorted(f.name for f in (tmp_path / "p").iterdir() if f.name != ".lock") == sorted(POOL_FILES)  # .lock: the write lock

    again = fmal.embed(src, "p", index_dir=tmp_path, model=tiny_model_dir, chunk_size=8)
    assert again.skipped and again.n_embedded == 0


@pytest.mark.parametrize("strategy", ["random", "kmeans", "typiclust", "kcenter"])
def test_seed_same_seed_same_selection(tiny_pool, tmp_path, strategy):
    index_dir, name, _ = tiny_pool
    shutil.copytree(index_dir / name, index_dir / "copy")
    a = fmal.seed(name, 10, strategy, index_dir=index_dir, random_state=7, output=tmp_path / "a.csv")
    b = fmal.seed("copy", 10, strategy, index_dir=index_dir, random_state=7, output=tmp_path / "b.csv")
    assert a.ids == b.ids and len(set(a.ids)) == 10 and not a.reused and not b.reused
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert list(a.picks.columns[:5]) == ["id", "text", "strategy", "score", "cluster"]
    if strategy in ("kmeans", "typiclust"):
        assert a.picks["cluster"].nunique() == 10 and np.isfinite(a.picks["score"]).all()


def test_another_seed_gives_another_random_selection(tiny_pool):
    index_dir, name, _ = tiny_pool
    a = fmal.seed(name, 10, "random", index_dir=index_dir, random_state=1)
    b = fmal.seed(name, 10, "random", index_dir=index_dir, random_state=2)
    assert a.ids != b.ids and b.round == 2


def test_rerunning_the_last_round_reuses_it(tiny_pool, tmp_path):
    index_dir, name, _ = tiny_pool
    first = fmal.seed(name, 6, "kmeans", index_dir=index_dir)
    assert first.output.parent.name == "rounds" and first.output.exists()  # default output: the pool's rounds/
    again = fmal.seed(name, 6, "kmeans", index_dir=index_dir, output=tmp_path / "again.jsonl")
    assert again.reused and again.round == first.round == 1 and again.ids == first.ids
    assert [json.loads(x)["id"] for x in (tmp_path / "again.jsonl").read_text().splitlines()] == first.ids
    other = fmal.seed(name, 7, "kmeans", index_dir=index_dir)
    assert not other.reused and other.round == 2
    st = fmal.status(name, index_dir=index_dir)
    assert st.rounds["round"].tolist() == [1, 2] and st.manifest.n_rows == 200


def _label(src, ids, path, blank=()):
    gold = pd.read_csv(src, dtype=str).set_index("id")["label"]
    frame = pd.DataFrame({"id": ids, "label": [("" if i in blank else gold[i]) for i in ids]})
    frame.to_csv(path, index=False)
    return path


def test_query_never_repicks_labeled_or_queued_ids(tiny_pool, tmp_path):
    index_dir, name, src = tiny_pool
    seed = fmal.seed(name, 12, "typiclust", index_dir=index_dir)
    blank = set(seed.ids[:2])
    labels = _label(src, seed.ids, tmp_path / "l1.csv", blank=blank)
    q1 = fmal.query(name, labels, 15, "margin", index_dir=index_dir)
    assert not set(q1.ids) & set(seed.ids)  # labeled, or queued and not yet labeled (the blanks)
    q2 = fmal.query(name, labels, 15, "entropy", index_dir=index_dir)
    assert not set(q2.ids) & (set(seed.ids) | set(q1.ids))
    q3 = fmal.query(name, labels, 30, "least-confidence", index_dir=index_dir, allow_requeue=True)
    assert not set(q3.ids) & (set(seed.ids) - blank)  # labeled rows: never
    assert set(q3.ids) & (set(q1.ids) | set(q2.ids) | blank)  # queued rows: allowed again
    assert [r["kind"] for r in Session(index_dir / name).rounds] == ["seed", "query", "query", "query"]
    for q in (q1, q2, q3):
        assert q.picks["predicted_proba"].between(0, 1).all()
        assert set(q.picks["predicted_label"]) <= set(pd.read_csv(labels, dtype=str)["label"].dropna())


def test_query_rerun_reuses_and_same_seed_same_batch(tiny_pool, tmp_path):
    index_dir, name, src = tiny_pool
    ids = pd.read_csv(src, dtype=str)["id"].tolist()
    labels = _label(src, ids[:30], tmp_path / "l.csv")
    shutil.copytree(index_dir / name, index_dir / "copy")
    a = fmal.query(name, labels, 8, "random", index_dir=index_dir, random_state=5)
    b = fmal.query("copy", labels, 8, "random", index_dir=index_dir, random_state=5)
    assert a.ids == b.ids
    again = fmal.query(name, labels, 8, "random", index_dir=index_dir, random_state=5)
    assert again.reused and again.ids == a.ids and again.round == 1


def test_labels_are_never_lost(tiny_pool, tmp_path):
    index_dir, name, src = tiny_pool
    ids = pd.read_csv(src, dtype=str)["id"].tolist()
    first = _label(src, ids[:20], tmp_path / "first.csv")
    fmal.query(name, first, 5, "margin", index_dir=index_dir)
    # a later file names other rows, changes one label and leaves one blank
    later = pd.read_csv(_label(src, ids[15:30], tmp_path / "later.csv"), dtype=str, keep_default_na=False)
    old = later.loc[0, "label"]
    later.loc[0, "label"] = "CHANGED"
    later.loc[1, "label"] = ""
    later.to_csv(tmp_path / "later.csv", index=False)
    sel = fmal.query(name, tmp_path / "later.csv", 5, "margin", index_dir=index_dir)
    assert sel.info["labels_changed"] == 1 and sel.info["labels_added"] == 10
    stored = pd.read_csv(index_dir / name / "labels.csv", dtype=str, keep_default_na=False)
    got = dict(zip(stored["id"], stored["label"]))
    assert set(got) == set(ids[:30])  # the first file's rows are all still there
    gold = pd.read_csv(src, dtype=str).set_index("id")["label"]
    assert got[ids[15]] == "CHANGED" and got[ids[16]] == gold[ids[16]]  # a blank answer does not erase a label
    relabels = Session(index_dir / name).relabels
    assert [(r["id"], r["old"], r["new"]) for r in relabels] == [(ids[15], old, "CHANGED")]
    assert fmal.status(name, index_dir=index_dir).n_labels == 30


def test_seed_with_labels_extends_the_labeled_set(tiny_pool, tmp_path):
    index_dir, name, src = tiny_pool
    ids = pd.read_csv(src, dtype=str)["id"].tolist()
    labels = _label(src, ids[:50], tmp_path / "l.csv")
    sel = fmal.seed(name, 10, "kcenter", index_dir=index_dir, labels=labels)
    assert not set(sel.ids) & set(ids[:50])
    with pytest.raises(fmal.PoolExhaustedError, match="no larger than the 150"):
        fmal.seed(name, 151, "random", index_dir=index_dir, labels=labels)


def test_api_errors_are_fmal_errors(tiny_pool, tmp_path):
    index_dir, name, _ = tiny_pool
    with pytest.raises(fmal.PoolNotFoundError):
        fmal.seed("missing", 3, index_dir=index_dir)
    with pytest.raises(fmal.InvalidInputError, match="unknown seed strategy"):
        fmal.seed(name, 3, "nope", index_dir=index_dir)
    with pytest.raises(fmal.InvalidInputError, match="budget must be a positive integer, got 2.5"):
        fmal.seed(name, 2.5, index_dir=index_dir)
    with pytest.raises(fmal.LabelsError, match="no labeled rows yet; pass labels "):
        fmal.query(name, None, 3, index_dir=index_dir)
    with pytest.raises(fmal.InvalidInputError, match="batch_size must be > 0"):
        fmal.embed(tmp_path / "x.csv", "p", index_dir=index_dir, batch_size=0)


def test_seed_never_repicks_labels_stored_in_the_pool(tiny_pool, tmp_path):
    index_dir, name, src = tiny_pool
    ids = pd.read_csv(src, dtype=str)["id"].tolist()
    fmal.query(name, _label(src, ids[:60], tmp_path / "l.csv"), 5, "margin", index_dir=index_dir)  # stores 60 labels
    sel = fmal.seed(name, 100, "random", index_dir=index_dir)  # no --labels: the stored ones still count
    assert not set(sel.ids) & set(ids[:60])
    with pytest.raises(fmal.PoolExhaustedError, match="no larger than the 140"):
        fmal.seed(name, 141, "random", index_dir=index_dir)
