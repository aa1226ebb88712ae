"""Simulated annotator: fill the picks file of a round with the gold labels of a labeled dataset.

    python examples/answer_from_gold.py PICKS.csv GOLD.csv LABELS_OUT.csv

In real use people label the picks (in a spreadsheet or an annotation tool); here the demo data's
own ``label`` column answers, so the loop can run unattended.
"""

import sys

import pandas as pd

picks, gold, out = sys.argv[1:4]
gold_labels = pd.read_csv(gold, dtype=str).set_index("id")["label"]
frame = pd.read_csv(picks, dtype=str)[["id"]]
frame["label"] = frame["id"].map(gold_labels)
frame.to_csv(out, index=False)
print(f"answered {len(frame)} picks from {gold} -> {out}")
