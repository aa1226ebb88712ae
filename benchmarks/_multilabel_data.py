"""The multi-label evaluation set, derived from the shipped trec6 (no new data file).

Each trec6 question keeps its question type (ABBR, DESC, ENTY, HUM, LOC, NUM) as one class and
gets up to two more, read off the text by fixed rules:

* ``has_number``: the question contains a digit (a year, a count, a date: "... in 1969 ?");
* ``long``: the question has ``LONG_WORDS`` words or more (whitespace tokens, the final "?" counted).

So every row names one to three classes; the two derived classes are independent of the question
type by construction, and both are visible in the text, so an embedding can learn them (how well
is what the benchmark measures). The ``split`` column (a fixed stratified 70/30 split of trec6) is
kept, so the test rows are the same as in the single-label trec6 results.
"""

from __future__ import annotations

import re

import pandas as pd

#: a "long" question: this many whitespace tokens or more (about the top quarter of trec6)
LONG_WORDS = 13
NAME = "trec6_multilabel"


def derive(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (id, text, label, split) with ``label`` replaced by the canonical multi-label answer."""
    def answer(text: str, qtype: str) -> str:
        classes = {qtype}
        if re.search(r"\d", text):
            classes.add("has_number")
        if len(text.split()) >= LONG_WORDS:
            classes.add("long")
        return "|".join(sorted(classes))

    out = frame.copy()
    out["label"] = [answer(t, q) for t, q in zip(out["text"].astype(str), out["label"].astype(str))]
    return out


def dataset_csv() -> "object":
    """``runs/bench/data/trec6_multilabel.csv``, derived from ``benchmarks/data/trec6.csv.gz`` (rewritten each call:
    it is small and the rules above define it)."""
    import _results

    src = _results.dataset_csv("trec6")
    dst = src.with_name(f"{NAME}.csv")
    derive(pd.read_csv(src, dtype=str, keep_default_na=False)).to_csv(dst, index=False)
    return dst
