"""A simulation's files: simulation.json (every number), simulation.md, curves.csv (per seed) and
learning_curves.png, written atomically."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fmal import _plots
from fmal._atomic import atomic_path, write_json, write_text
from fmal.io import write_table
from fmal.simulate.results import SimulationResult

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
FILES = {"json": "simulation.json", "markdown": "simulation.md", "png": "learning_curves.png", "curves": "curves.csv"}


def plot_curves(result: SimulationResult, path: PathLike, *, title: str | None = None) -> Path:
    """PNG of the accuracy and macro-F1 learning curves, mean and 95% band per strategy (Agg backend)."""
    plt = _plots.pyplot()
    frame = result.to_frame()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=90)
    for ax, metric, full, label in ((axes[0], "accuracy", result.full_accuracy, "accuracy"),
                                    (axes[1], "macro_f1", result.full_macro_f1, "macro-F1")):
        for i, spec in enumerate(result.strategies):
            f = frame[frame["strategy"] == spec.name]
            style = {"color": "0.35", "linestyle": "--"} if spec.name == result.baseline else {"color": f"C{i}"}
            ax.plot(f["n_labels"], 100 * f[metric], marker="o", markersize=3, label=spec.name, **style)
            if f[f"{metric}_lo"].notna().any():
                ax.fill_between(f["n_labels"], 100 * f[f"{metric}_lo"], 100 * f[f"{metric}_hi"], alpha=0.18,
                                color=style["color"])
        ax.axhline(100 * full, color="k", linewidth=0.8, linestyle=":", label="all train labels")
        ax.set_xlabel("labels")
        ax.set_ylabel(f"test {label} (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title or f"{Path(str(result.info.get('data', 'simulation'))).stem}: mean and 95% interval over "
                 f"{len(result.seeds)} seeds", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_outputs(result: SimulationResult, out: PathLike) -> dict[str, Path]:
    """Write simulation.json (every number), simulation.md, curves.csv (per seed) and
    learning_curves.png into ``out``; returns (and stores in ``result.files``) the paths written.
    Without matplotlib the PNG is left out, with a warning saying what to install."""
    out = Path(out)
    files = {k: out / v for k, v in FILES.items()}
    write_json(files["json"], result.to_dict())
    write_text(files["markdown"], result.to_markdown())
    write_table(result.curves, files["curves"])
    if _plots.available():
        plot_curves(result, files["png"])
    else:
        log.warning("%s not written: %s", files.pop("png"), _plots.MISSING)
    result.files = files
    return files
