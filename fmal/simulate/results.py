"""What a simulation measured: :class:`SimulationResult` (curves, per-strategy summaries, verdict,
advice) and its JSON and markdown forms; :func:`summarise` turns the per-seed curves into them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmal.simulate.spec import StrategySpec
from fmal.simulate.stats import CONFIDENCE, aulc, labels_to_reach, mean_ci

@dataclass
class StrategySummary:
    """One strategy's headline numbers (accuracy in points, 0-100)."""

    strategy: str
    seed_strategy: str
    query_strategy: str
    aulc: float
    aulc_lo: float
    aulc_hi: float
    aulc_macro_f1: float
    diff_vs_baseline: float
    diff_lo: float
    diff_hi: float
    labels_to_reach: dict[str, int | None]
    verdict: str


@dataclass
class SimulationResult:
    """Everything a simulation measured.

    ``curves``: one row per (strategy, seed, n_labels) with accuracy and macro_f1 (0-1);
    ``summaries``: headline numbers per strategy; ``verdict``: one plain sentence;
    ``files``: where the outputs were written (empty until written).
    """

    strategies: list[StrategySpec]
    baseline: str
    seeds: list[int]
    budgets: list[int]
    classes: list[str]
    curves: pd.DataFrame
    full_accuracy: float
    full_macro_f1: float
    reach: tuple[float, ...]
    summaries: list[StrategySummary]
    verdict: str
    advice: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """Per strategy and number of labels: mean and 95% interval of accuracy and macro-F1 (0-1)."""
        rows = []
        for spec in self.strategies:
            c = self.curves[self.curves["strategy"] == spec.name]
            for b in self.budgets:
                at = c[c["n_labels"] == b]
                row: dict[str, Any] = {"strategy": spec.name, "n_labels": b}
                for metric in ("accuracy", "macro_f1"):
                    m, lo, hi = mean_ci(at[metric].to_numpy())
                    row.update({metric: m, f"{metric}_lo": lo, f"{metric}_hi": hi})
                row["n_seeds"] = len(at)
                rows.append(row)
        return pd.DataFrame(rows)

    def summary_frame(self) -> pd.DataFrame:
        """One row per strategy: AULC, difference to the baseline, labels to reach, verdict."""
        rows = []
        for s in self.summaries:
            row = {k: v for k, v in s.__dict__.items() if k != "labels_to_reach"}
            row.update({f"labels_to_{k}": v for k, v in s.labels_to_reach.items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """Every number, JSON-ready (NaN becomes null)."""
        per_step = self.to_frame()
        strategies = []
        for spec, summ in zip(self.strategies, self.summaries):
            c = self.curves[self.curves["strategy"] == spec.name]
            steps = []
            for b in self.budgets:
                at = c[c["n_labels"] == b].sort_values("seed")
                ps = per_step[(per_step["strategy"] == spec.name) & (per_step["n_labels"] == b)].iloc[0]
                steps.append({
                    "n_labels": b,
                    **{m: {"mean": ps[m], "lo": ps[f"{m}_lo"], "hi": ps[f"{m}_hi"], "per_seed": at[m].tolist()}
                       for m in ("accuracy", "macro_f1")},
                    "classes_seen_per_seed": at["classes_seen"].tolist(),
                    "random_share_per_seed": at["random_share"].tolist() if "random_share" in at else [],  # of the next batch
                })
            per_seed = self._per_seed_aulc(spec.name, "accuracy")
            base = self._per_seed_aulc(self.baseline, "accuracy")
            diff_steps = []
            for b in self.budgets:
                d = self._paired(spec.name, b)
                m, lo, hi = mean_ci(d)
                diff_steps.append({"n_labels": b, "mean": 100 * m, "lo": 100 * lo, "hi": 100 * hi})
            strategies.append({
                "name": spec.name, "seed_strategy": spec.seed_strategy, "query_strategy": spec.query_strategy,
                "curve": steps,
                "aulc_accuracy": {"mean": summ.aulc, "lo": summ.aulc_lo, "hi": summ.aulc_hi, "per_seed": per_seed},
                "aulc_macro_f1": {"mean": summ.aulc_macro_f1, "per_seed": self._per_seed_aulc(spec.name, "macro_f1")},
                "labels_to_reach": {
                    k: {"target_accuracy": self.full_accuracy * float(k.rstrip("%")) / 100, "median": v,
                        "per_seed": self._reach_per_seed(spec.name, float(k.rstrip("%")) / 100)}
                    for k, v in summ.labels_to_reach.items()
                },
                "vs_baseline": {
                    "baseline": self.baseline,
                    "aulc_diff_points": {"mean": summ.diff_vs_baseline, "lo": summ.diff_lo, "hi": summ.diff_hi,
                                         "per_seed": [a - b for a, b in zip(per_seed, base)]},
                    "accuracy_diff_points_per_step": diff_steps,
                    "verdict": summ.verdict,
                },
            })
        out = {
            "format": "fmal-simulation", "format_version": 1,
            "verdict": self.verdict,
            "advice": self.advice,
            "baseline": self.baseline,
            "seeds": self.seeds, "budgets": self.budgets, "classes": self.classes,
            "confidence": CONFIDENCE, "interval": "two-sided t-interval over seeds",
            "aulc_definition": "mean accuracy over the label range (trapezoids), in points (0-100)",
            "full_data": {"accuracy": self.full_accuracy, "macro_f1": self.full_macro_f1},
            "strategies": strategies,
            "info": self.info,
        }
        return _json_clean(out)

    def _per_seed_aulc(self, name: str, metric: str) -> list[float]:
        c = self.curves[self.curves["strategy"] == name]
        return [100 * aulc(g["n_labels"].tolist(), g[metric].tolist()) for _, g in c.sort_values("n_labels").groupby("seed")]

    def _reach_per_seed(self, name: str, share: float) -> list[int | None]:
        c = self.curves[self.curves["strategy"] == name]
        return [labels_to_reach(g["n_labels"].tolist(), g["accuracy"].tolist(), share * self.full_accuracy)
                for _, g in c.sort_values("n_labels").groupby("seed")]

    def _paired(self, name: str, n_labels: int) -> np.ndarray:
        c = self.curves[self.curves["n_labels"] == n_labels].set_index(["strategy", "seed"])["accuracy"]
        return np.asarray([c[(name, s)] - c[(self.baseline, s)] for s in self.seeds])

    def to_markdown(self) -> str:
        """A summary table, the per-step accuracy table and the verdict, as markdown."""
        n = len(self.seeds)
        reach_cols = [f"labels to {k} of full" for k in self._reach_keys()]
        lines = [
            f"**{self.verdict}**", "", self.advice, "",
            (f"Full-data accuracy (all {self.info.get('n_train', '?')} train labels): {100 * self.full_accuracy:.1f}%"
             f" (macro-F1 {100 * self.full_macro_f1:.1f}); test rows: {self.info.get('n_test', '?')};"
             f" {n} seed{'s' if n != 1 else ''}; intervals: 95% t-interval over seeds."), "",
            "| strategy | AULC accuracy | vs " + self.baseline + " (paired) | " + " | ".join(reach_cols) + " | verdict |",
            "|---|---|---|" + "---|" * len(reach_cols) + "---|",
        ]
        for s in self.summaries:
            diff = "-" if s.strategy == self.baseline else _pm(s.diff_vs_baseline, s.diff_lo, s.diff_hi, signed=True)
            reach = [str(v) if v is not None else f"> {self.budgets[-1]}" for v in s.labels_to_reach.values()]
            lines.append(f"| {s.strategy} | {_pm(s.aulc, s.aulc_lo, s.aulc_hi)} | {diff} | " + " | ".join(reach) + f" | {s.verdict} |")
        frame = self.to_frame()
        lines += ["", "Accuracy (%) by number of labels, mean +/- 95% half-interval:", "",
                  "| strategy | " + " | ".join(str(b) for b in self.budgets) + " |",
                  "|---|" + "---|" * len(self.budgets)]
        for spec in self.strategies:
            f = frame[frame["strategy"] == spec.name]
            cells = [_pm(100 * r.accuracy, 100 * r.accuracy_lo, 100 * r.accuracy_hi) for r in f.itertuples()]
            lines.append(f"| {spec.name} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def _reach_keys(self) -> list[str]:
        return [f"{round(100 * r)}%" for r in self.reach]


def _pm(m: float, lo: float, hi: float, *, signed: bool = False) -> str:
    if math.isnan(m):
        return "-"
    s = f"{m:+.1f}" if signed else f"{m:.1f}"
    return s if math.isnan(lo) else f"{s} +/- {(hi - lo) / 2:.1f}"


def _json_clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else round(obj, 6)
    return obj


def _verdict(name: str, diff: float, lo: float, hi: float, baseline: str) -> str:
    if math.isnan(lo):
        return f"{name} vs {baseline}: {diff:+.1f} points AULC (one seed: no interval; use more seeds)"
    half = (hi - lo) / 2
    if lo > 0:
        return f"{name} beats {baseline} by {diff:.1f} +/- {half:.1f} points AULC"
    if hi < 0:
        return f"{name} loses to {baseline} by {-diff:.1f} +/- {half:.1f} points AULC"
    return f"{name} is no better than {baseline} ({diff:+.1f} +/- {half:.1f} points AULC)"


def _advice(result: SimulationResult, winners: list[StrategySummary]) -> str:
    """What to do next, in a sentence or two."""
    if len(result.seeds) < 2:
        return "Rerun with --seeds 5 or more: one run cannot tell a strategy from luck."
    if winners:
        best = max(winners, key=lambda s: s.diff_vs_baseline)
        return (f"Use {best.strategy}: fmal seed --strategy {best.seed_strategy}, then fmal query --strategy "
                f"{best.query_strategy}. Keep a random sample aside to measure the probe's accuracy honestly.")
    last = result.to_frame().query("n_labels == @result.budgets[-1]")["accuracy"].max()
    gap = 100 * (result.full_accuracy - last)
    return (f"Label a random sample: it is as good here, and it gives an unbiased test set for free. "
            f"At {result.budgets[-1]} labels the best curve is {gap:.1f} points below the full-data accuracy"
            + (", so more labels still pay; " if gap > 2 else "; ")
            + "a stronger embedding model (--model) or a larger --max may change the answer: rerun this check then.")


def summarise(
    specs: list[StrategySpec], baseline: str, seeds: list[int], budgets: list[int], classes: list[str],
    curves: pd.DataFrame, full_accuracy: float, full_macro_f1: float, reach: Sequence[float],
) -> SimulationResult:
    """The result of per-seed ``curves``: AULC and paired difference to ``baseline`` per strategy,
    median labels to reach each share of the full-data accuracy, the verdict and the advice."""
    result = SimulationResult(specs, baseline, seeds, budgets, classes, curves, full_accuracy, full_macro_f1,
                              tuple(reach), [], "")
    summaries = []
    for spec in specs:
        per_seed = result._per_seed_aulc(spec.name, "accuracy")
        m, lo, hi = mean_ci(per_seed)
        f1m, _, _ = mean_ci(result._per_seed_aulc(spec.name, "macro_f1"))
        if spec.name == baseline:
            d, dlo, dhi, verdict = 0.0, math.nan, math.nan, "baseline"
        else:
            base = result._per_seed_aulc(baseline, "accuracy")
            d, dlo, dhi = mean_ci([a - b for a, b in zip(per_seed, base)])
            verdict = _verdict(spec.name, d, dlo, dhi, baseline)
        reach_med = {}
        for share in reach:
            per = result._reach_per_seed(spec.name, share)
            vals = np.asarray([math.inf if v is None else v for v in per], dtype=np.float64)
            med = float(np.median(vals))
            reach_med[f"{round(100 * share)}%"] = None if math.isinf(med) else round(med)
        summaries.append(StrategySummary(spec.name, spec.seed_strategy, spec.query_strategy, m, lo, hi, f1m, d, dlo,
                                         dhi, reach_med, verdict))
    result.summaries = summaries
    winners = [s for s in summaries if s.strategy != baseline and not math.isnan(s.diff_lo) and s.diff_lo > 0]
    if winners:
        best = max(winners, key=lambda s: s.diff_vs_baseline)
        result.verdict = best.verdict + (f" (best of {len(winners)} that beat {baseline})" if len(winners) > 1 else "")
    elif len(seeds) < 2:
        result.verdict = "one seed: no interval, so no verdict; rerun with --seeds 5 or more"
    else:
        result.verdict = f"no strategy beats {baseline} on this data"
    result.advice = _advice(result, winners)
    return result
