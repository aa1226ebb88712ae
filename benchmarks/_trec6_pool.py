"""The trec6 pool the sync and audit benchmarks share: the train rows of the shipped trec6 data
(benchmarks/data/trec6.csv.gz) embedded once with the default model into runs/bench/indexes/trec6
(reused on later runs)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import _results


def trec6_pool() -> tuple[Path, str, dict[str, str]]:
    """(index_dir, pool name, gold labels of the pool's ids)."""
    import fmal

    df = pd.read_csv(_results.dataset_csv("trec6"), dtype=str)
    train = df[df["split"] == "train"][["id", "text", "label"]].reset_index(drop=True)
    _results.WORK.mkdir(parents=True, exist_ok=True)
    src = _results.WORK / "trec6-train.csv"
    if not src.exists():
        train.to_csv(src, index=False)
    index_dir = _results.WORK / "indexes"
    fmal.embed(src, "trec6", index_dir=index_dir)
    return index_dir, "trec6", dict(zip(train["id"], train["label"]))
