"""Small printing helpers shared by the commands."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    import pandas as pd


def short(text: str, width: int = 70) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def table(frame: pd.DataFrame, columns: list[str], limit: int = 10) -> None:
    """Print the first ``limit`` rows of ``frame`` as an aligned text table."""
    rows = [[fmt(r[c]) if c != "text" else short(r[c]) for c in columns] for _, r in frame.head(limit).iterrows()]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)))
    if len(frame) > limit:
        typer.echo(f"... and {len(frame) - limit} more")


def info(d: dict[str, Any]) -> None:
    for k, v in d.items():
        typer.echo(f"  {k.replace('_', ' ')}: {fmt(v)}")
