"""fmal status"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmal.cli import POOL_HELP, _print, command


@command("status")
def status_cmd(
    pool: str = typer.Option(..., "--pool", "-p", help=POOL_HELP),
    index_dir: Optional[Path] = typer.Option(None, "--index-dir", help="Where pools live (default: ./indexes)."),
) -> None:
    """Show a pool: rows, model, index, labels, and the history of rounds."""
    from fmal import store
    from fmal.describe import last_advice, round_rows
    from fmal.session import Session

    p = store.open_pool(pool, index_dir)  # manifest and file headers: no ids, texts or pandas
    s = Session(p.path)
    m = p.manifest
    typer.echo(f"pool {p.path}: {m['n_rows']:,} rows, dim {m['dim']}, model {m['model']['name']}")
    typer.echo(f"  index: {m['index']['type']} ({m['index']['metric']}), {m['index']['ntotal']:,} vectors")
    typer.echo(f"  labels: {len(s.labels):,}")
    if rows := round_rows(s.rounds):
        _print.table(rows, list(rows[0]), limit=1000)
        if advice := last_advice(s.rounds):
            typer.echo(f"last query round: {advice}")
    else:
        typer.echo("  no rounds yet: fmal seed --pool ... --budget N")
