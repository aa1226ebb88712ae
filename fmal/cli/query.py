"""fmal query"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmal import api
from fmal.cli import _print, command
from fmal.query import QUERY_STRATEGIES


@command("query")
def query_cmd(
    pool: str = typer.Option(..., "--pool", "-p", help="Pool name (or folder)."),
    labels: Optional[Path] = typer.Option(None, "--labels", "-l", help="id,label file (.csv, .jsonl, ...); merged into the pool's labels. Rows with an empty label are skipped."),
    budget: int = typer.Option(..., "--budget", "-b", help="How many rows to pick."),
    strategy: str = typer.Option(api.DEFAULT_QUERY_STRATEGY, "--strategy", "-s", help=f"Strategy: one of {', '.join(QUERY_STRATEGIES)}."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write the picks (.csv or .jsonl; default: the pool's rounds/ folder)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (ties, random strategy, probe)."),
    allow_requeue: bool = typer.Option(False, "--allow-requeue", help="Allow picking rows queued in earlier rounds and not labeled yet."),
    index_dir: Optional[Path] = typer.Option(None, "--index-dir", help="Where pools live (default: ./indexes)."),
) -> None:
    """Fit a linear probe on the labels so far and pick the rows it is least sure about.

    Each pick comes with the probe's suggested label and its probability, so annotators can start
    from a suggestion. Labeled rows are never picked again.
    """
    sel = api.query(pool, labels, budget, strategy, index_dir=index_dir, output=output, random_state=seed,
                    allow_requeue=allow_requeue)
    again = " (same as the last round: reused)" if sel.reused else ""
    typer.echo(f"round {sel.round}: {len(sel.picks)} rows picked by {strategy}{again}")
    _print.table(sel.picks, ["id", "score", "predicted_label", "predicted_proba", "text"])
    _print.info(sel.info)
    typer.echo(f"wrote {sel.output}")
