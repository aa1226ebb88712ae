"""The bias report of a pool: what was labeled against what the pool holds.

* class balance: each class's share of the labeled set against its share of the probe's
  predictions over the whole pool, with a warning where a class is far rarer among the labels
  than predicted (``labeled_share < rare_ratio * predicted_share``): active learning tends to
  under-sample classes the probe is already sure about or has never seen;
* clusters without a label: k-means clusters of the pool embeddings that hold no labeled row;
* rounds: the labels of each round's picks, and the cumulative class shares after each round.

Written as a markdown summary and a PNG (matplotlib, Agg backend: the ``plots`` extra).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fmal import _plots
from fmal._atomic import atomic_path, write_text

if TYPE_CHECKING:
    from fmal.session import Round

DEFAULT_RARE_RATIO = 0.5
DEFAULT_CLUSTERS = 20

log = logging.getLogger(__name__)


@dataclass
class BiasReport:
    """Numbers of a report; ``markdown`` is its text."""

    balance: pd.DataFrame  # class, labeled, labeled_share, predicted, predicted_share, ratio, warning
    clusters: pd.DataFrame  # cluster, size, labeled, share_of_pool, top_predicted, example (unlabeled clusters, largest first)
    rounds: pd.DataFrame  # round, kind, strategy, picks, labeled, then one count column per class, then cum_share_<class>
    warnings: list[str]
    n_pool: int
    n_labeled: int
    n_clusters: int
    n_outside_rounds: int = 0  # labels of ids that no round picked (imported or given directly)
    markdown: str = ""
    paths: dict[str, Path] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """The class balance, one row per class (a copy)."""
        return self.balance.copy()


def class_balance(labels: list[str], predicted: np.ndarray, rare_ratio: float = DEFAULT_RARE_RATIO) -> tuple[pd.DataFrame, list[str]]:
    """Labeled vs predicted counts and shares per class, and a warning per under-labeled class."""
    classes = sorted(set(labels) | set(np.asarray(predicted, dtype=str).tolist()))
    lab = pd.Series(labels, dtype=object).value_counts().reindex(classes, fill_value=0)
    pred = pd.Series(np.asarray(predicted, dtype=str)).value_counts().reindex(classes, fill_value=0)
    frame = pd.DataFrame({"class": classes, "labeled": lab.to_numpy(), "predicted": pred.to_numpy()})
    frame["labeled_share"] = (frame["labeled"] / max(1, len(labels))).round(4)
    frame["predicted_share"] = (frame["predicted"] / max(1, len(predicted))).round(4)
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["ratio"] = np.where(frame["predicted_share"] > 0, frame["labeled_share"] / frame["predicted_share"], np.nan).round(3)
    frame["warning"] = (frame["predicted"] > 0) & (frame["labeled_share"] < rare_ratio * frame["predicted_share"])
    warns = [
        f"class {r['class']!r} is {r['labeled_share']:.1%} of the labels but {r['predicted_share']:.1%} of the pool's "
        f"predictions (x{r['ratio']:.2f}): label more of it (e.g. query rows predicted as {r['class']!r}) before trusting the probe on it"
        for _, r in frame[frame["warning"]].iterrows()
    ]
    cols = ["class", "labeled", "labeled_share", "predicted", "predicted_share", "ratio", "warning"]
    return frame[cols], warns


def unlabeled_clusters(assign: np.ndarray, sim: np.ndarray, labeled_rows: np.ndarray, predicted: np.ndarray,
                       texts: np.ndarray, k: int) -> pd.DataFrame:
    """Clusters that hold no labeled row, largest first, each with its most central text."""
    sizes = np.bincount(assign, minlength=k)
    n_lab = np.bincount(assign[labeled_rows], minlength=k) if labeled_rows.size else np.zeros(k, dtype=np.int64)
    out = []
    for c in np.argsort(-sizes, kind="stable"):
        if sizes[c] == 0 or n_lab[c] > 0:
            continue
        members = np.nonzero(assign == c)[0]
        top = pd.Series(np.asarray(predicted, dtype=str)[members]).value_counts()
        centre = members[int(np.argmax(sim[members]))]
        out.append({"cluster": int(c), "size": int(sizes[c]), "share_of_pool": round(sizes[c] / assign.size, 4),
                    "top_predicted": f"{top.index[0]} ({top.iloc[0] / members.size:.0%})", "example": str(texts[centre])})
    return pd.DataFrame(out, columns=["cluster", "size", "share_of_pool", "top_predicted", "example"])


def rounds_balance(rounds: list[Round], labels: dict[str, str], classes: list[str],
                   multi_label: bool = False) -> pd.DataFrame:
    """Per round: picks, how many are labeled, labels per class, and cumulative class shares
    (``multi_label``: an answer "a|b" counts once for each of its classes)."""
    rows = []
    cum = dict.fromkeys(classes, 0)
    for r in rounds:
        got = [labels[i] for i in r.ids if i in labels]
        named = [c for lab in got for c in lab.split("|")] if multi_label else got
        counts = {c: named.count(c) for c in classes}
        for c in classes:
            cum[c] += counts[c]
        total = sum(cum.values())
        rows.append({"round": r.round, "kind": r.kind, "strategy": r.strategy, "picks": r.n_picks,
                     "labeled": len(got), **counts,
                     **{f"cum_share_{c}": round(cum[c] / total, 4) if total else 0.0 for c in classes}})
    return pd.DataFrame(rows, columns=["round", "kind", "strategy", "picks", "labeled", *classes, *[f"cum_share_{c}" for c in classes]])


#: longest text of one markdown cell or line (a label from an old pool may be millions of characters)
MD_WIDTH = 300


def _md(text: Any) -> str:
    """Text (a label, a pool text) safe in markdown: cut to MD_WIDTH, HTML escaped, on one line, no table breaks."""
    text = str(text)
    text = text if len(text) <= MD_WIDTH else text[: MD_WIDTH - 1] + "…"
    return escape(text, quote=False).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _md_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(none)\n"
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "-" if np.isnan(v) else f"{v:.4g}"
        return _md(v)
    head = "| " + " | ".join(map(_md, frame.columns)) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return head + "".join("| " + " | ".join(cell(v) for v in row) + " |\n" for row in frame.itertuples(index=False))


def to_markdown(rep: BiasReport, pool_name: str, png_name: str | None) -> str:
    lines = [f"# fmal report: pool {_md(pool_name)}", "",
             f"{rep.n_labeled:,} of {rep.n_pool:,} rows labeled; {len(rep.rounds)} round(s).", ""]
    if rep.warnings:
        lines += ["## Warnings", ""] + [f"- WARNING: {_md(w)}" for w in rep.warnings] + [""]
    lines += ["## Class balance: labeled vs predicted over the pool", "",
              "The probe is fit on every label, then predicts every row of the pool.", "", _md_table(rep.balance)]
    uncovered = int(rep.clusters["size"].sum()) if len(rep.clusters) else 0
    lines += [f"## Clusters with no label ({len(rep.clusters)} of {rep.n_clusters}, {uncovered:,} rows)", "",
              _md_table(rep.clusters.assign(example=rep.clusters["example"].map(lambda t: t if len(t) <= 80 else t[:79] + "…")))]
    lines += ["## Class balance round by round", "", "Labels of each round's picks (as labeled now) and the cumulative class shares."
              + (f" {rep.n_outside_rounds:,} label(s) are of rows no round picked and are not counted here." if rep.n_outside_rounds else ""),
              "", _md_table(rep.rounds)]
    if png_name:
        lines += [f"![class balance]({png_name})", ""]
    return "\n".join(lines)


def _plain(label: Any) -> str:
    """A label as matplotlib draws it literally: '$' would start math text (and fail to parse),
    a leading '_' would hide it from the legend; long ones are cut."""
    text = str(label)
    text = text if len(text) <= 40 else text[:39] + "…"
    return ("\u200b" if text.startswith("_") else "") + text.replace("$", r"\$")


def plot(rep: BiasReport, path: Path) -> Path:
    """Two panels: labeled vs predicted share per class; cumulative labeled share by round."""
    plt = _plots.pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    b = rep.balance
    x = np.arange(len(b))
    ax1.bar(x - 0.2, b["labeled_share"], 0.4, label="labeled")
    ax1.bar(x + 0.2, b["predicted_share"], 0.4, label="predicted (pool)")
    for i in np.nonzero(b["warning"].to_numpy())[0]:
        ax1.annotate("!", (x[i], max(b["labeled_share"].iloc[i], b["predicted_share"].iloc[i])), ha="center", va="bottom", color="red", fontsize=14)
    ax1.set_xticks(x, [_plain(c) for c in b["class"]], rotation=45, ha="right")
    ax1.set_ylabel("share")
    ax1.set_title("Class share: labeled vs predicted over the pool")
    ax1.legend()
    r = rep.rounds
    if len(r):
        for c in b["class"]:
            col = f"cum_share_{c}"
            if col in r.columns:
                ax2.plot(r["round"], r[col], marker="o", label=_plain(c))
        ax2.set_xlabel("round")
        ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax2.set_ylabel("cumulative labeled share")
        ax2.legend(fontsize="small")
    else:
        ax2.text(0.5, 0.5, "no rounds yet", ha="center", va="center")
    ax2.set_title("Class balance round by round")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def write(rep: BiasReport, md_path: Path, pool_name: str) -> dict[str, Path]:
    """Write the PNG next to the markdown (same stem) and the markdown; return both paths.
    Without matplotlib (the ``plots`` extra) only the markdown, with a warning saying what to install."""
    png: Path | None = md_path.with_suffix(".png")
    if _plots.available():
        plot(rep, png)
    else:
        log.warning("%s not written: %s", png, _plots.MISSING)
        png = None
    rep.markdown = to_markdown(rep, pool_name, png.name if png else None)
    write_text(md_path, rep.markdown)
    rep.paths = {"markdown": md_path, **({"png": png} if png else {})}
    return rep.paths
