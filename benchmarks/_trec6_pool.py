"""The trec6 pool the sync and audit benchmarks share: the train rows of trec6.csv embedded once
with the bundled all-MiniLM-L6-v2 into runs/bench/indexes/trec6 (reused on later runs)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
#: trec6.csv: $FMAL_TREC6, else shared/data/trec6.csv in or beside the checkout
DATA = Path(os.environ.get("FMAL_TREC6") or next(
    (p for p in (REPO / "shared" / "data" / "trec6.csv", REPO.parent / "shared" / "data" / "trec6.csv") if p.exists()),
    REPO / "shared" / "data" / "trec6.csv"))
WORK = REPO / "runs" / "bench"


def trec6_pool() -> tuple[Path, str, dict[str, str]]:
    """(index_dir, pool name, gold labels of the pool's ids)."""
    import fmal

    df = pd.read_csv(DATA, dtype=str)
    train = df[df["split"] == "train"][["id", "text", "label"]].reset_index(drop=True)
    WORK.mkdir(parents=True, exist_ok=True)
    src = WORK / "trec6-train.csv"
    if not src.exists():
        train.to_csv(src, index=False)
    index_dir = WORK / "indexes"
    fmal.embed(src, "trec6", index_dir=index_dir)
    return index_dir, "trec6", dict(zip(train["id"], train["label"]))
