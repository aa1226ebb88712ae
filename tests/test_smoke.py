"""The loop runs end to end on the tiny model through the Python API."""

import pandas as pd

import fmal


def test_embed_seed_query_loop(tiny_pool, tmp_path):
    index_dir, name, src = tiny_pool
    sel = fmal.seed(name, 10, "typiclust", index_dir=index_dir)
    assert len(sel.ids) == 10 and len(set(sel.ids)) == 10
    gold = pd.read_csv(src, dtype=str).set_index("id")["label"]
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"id": sel.ids, "label": gold.loc[sel.ids].to_numpy()}).to_csv(labels, index=False)
    q = fmal.query(name, labels, 10, "margin", index_dir=index_dir)
    assert not set(q.ids) & set(sel.ids)
    assert {"predicted_label", "predicted_proba", "score"} <= set(q.picks.columns)
