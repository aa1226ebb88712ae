"""Small printing helpers shared by the commands."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import typer

from fmal._validation import show

if TYPE_CHECKING:
    import pandas as pd


def short(text: str, width: int = 70) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


#: widest cell printed in a table (a label or id from an old pool may be huge)
CELL_WIDTH = 120


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.3f}"
    text = str(v)
    return text if len(text) <= CELL_WIDTH and "\n" not in text else short(text, CELL_WIDTH)


def table(frame: pd.DataFrame | list[dict[str, Any]], columns: list[str], limit: int = 10) -> None:
    """Print the first ``limit`` rows of ``frame`` (a DataFrame or a list of dicts) as an aligned text table."""
    records = frame[:limit] if isinstance(frame, list) else [r for _, r in frame.head(limit).iterrows()]
    rows = [[fmt(r[c]) if c != "text" else short(r[c]) for c in columns] for r in records]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)))
    if len(frame) > limit:
        typer.echo(f"... and {len(frame) - limit} more")


def q(value: Any) -> str:
    """A label or id quoted for a message line, cut when long."""
    return show(value)


def info(d: dict[str, Any]) -> None:
    for k, v in d.items():
        typer.echo(f"  {k.replace('_', ' ')}: {fmt(v)}")
