"""The whole fmal loop from Python, with a simulated annotator answering from gold labels.

    python examples/quickstart.py [DATA.csv] [--model FOLDER] [--index-dir DIR] [--rounds N]

Embeds the ``train`` rows of DATA (default: the bundled demo data), seeds 12 rows with TypiClust,
then runs query rounds of 12 with margin sampling, and after each round reports the accuracy of a
linear probe on the held-out ``test`` rows, next to a probe trained on as many random rows.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import fmal

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", default=str(HERE / "data" / "trec6_demo.csv"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--index-dir", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=12)
    args = ap.parse_args(argv)

    work = Path(args.index_dir or tempfile.mkdtemp(prefix="fmal-quickstart-"))
    df = pd.read_csv(args.data, dtype=str)
    train, test = df[df["split"] == "train"], df[df["split"] == "test"]
    train[["id", "text"]].to_csv(work / "pool.csv", index=False)
    test[["id", "text"]].to_csv(work / "test.csv", index=False)
    gold = dict(zip(train["id"], train["label"]))

    fmal.embed(work / "pool.csv", "quickstart", index_dir=work, model=args.model)
    fmal.embed(work / "test.csv", "quickstart-test", index_dir=work, model=args.model)
    pool = fmal.open_pool("quickstart", work)
    test_pool = fmal.open_pool("quickstart-test", work)
    y_test = test.set_index("id").loc[test_pool.ids, "label"].to_numpy()

    def accuracy(ids: list[str]) -> float:
        rows = pool.rows_of(ids)
        y = np.asarray([gold[i] for i in ids])
        if len(set(y)) < 2:
            return float("nan")
        probe = fmal.LinearProbe().fit(np.asarray(pool.embeddings[rows]), y)
        return float((probe.predict(np.asarray(test_pool.embeddings)) == y_test).mean())

    sel = fmal.seed("quickstart", args.budget, "typiclust", index_dir=work)
    labeled: list[str] = []
    results = {}
    for r in range(args.rounds + 1):
        labeled += sel.ids
        labels_file = work / f"labels-{r}.csv"
        pd.DataFrame({"id": labeled, "label": [gold[i] for i in labeled]}).to_csv(labels_file, index=False)
        rng = np.random.default_rng(r)
        random_ids = list(rng.choice(pool.ids, size=len(labeled), replace=False))
        acc, acc_random = accuracy(labeled), accuracy(random_ids)
        results[f"labels={len(labeled)}"] = acc
        print(f"{len(labeled):4d} labels: probe accuracy {acc:.3f} (random picks: {acc_random:.3f})")
        if r < args.rounds:
            sel = fmal.query("quickstart", labels_file, args.budget, "margin", index_dir=work)
    return results


if __name__ == "__main__":
    main()
