"""fmal status"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmal.cli import POOL_HELP, _print, command


@command("status", json_result="the PoolStatus: path, manifest, n_labels, rounds (one object per round: round, kind, strategy, picks, labels_then, per_class, probe_C, cv_acc, kappa_prev, mix (adaptive rounds: the random share and P(active pays)), created), advice")
def status_cmd(
    pool: str = typer.Option(..., "--pool", "-p", help=POOL_HELP),
    index_dir: Optional[Path] = typer.Option(None, "--index-dir", help="Where pools live (default: ./indexes)."),
) -> None:
    """Show a pool: rows, model, index, labels, and the history of rounds."""
    from fmal.describe import status_rows  # not fmal.api: fmal status imports no pandas

    st = status_rows(pool, index_dir=index_dir)
    m = st.manifest
    typer.echo(f"pool {st.path}: {m.n_rows:,} rows, dim {m.dim}, model {m.model.name}")
    typer.echo(f"  index: {m.index.type} ({m.index.metric or 'unknown'}), {m.index.ntotal:,} vectors")
    typer.echo(f"  labels: {st.n_labels:,}" + (" (multi-label: several classes a row)" if st.task == "multi-label" else ""))
    if st.rounds:
        _print.table(st.rounds, list(st.rounds[0]), limit=1000)
        if st.advice:
            typer.echo(f"last query round: {st.advice}")
    else:
        typer.echo("  no rounds yet: fmal seed --pool ... --budget N")
    return st
