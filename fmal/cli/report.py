"""fmal report"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmal.cli import POOL_HELP, _print, command


@command("report", json_result="the BiasReport: balance (per class: labeled, labeled_share, predicted, predicted_share, ratio, warning), clusters (unlabeled, largest first), rounds, warnings, n_pool, n_labeled, n_clusters, n_outside_rounds, markdown, paths")
def report_cmd(
    pool: str = typer.Option(..., "--pool", "-p", help=POOL_HELP),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Markdown file (default: the pool's reports/report.md); the PNG goes beside it."),
    clusters: int = typer.Option(20, "--clusters", help="k-means clusters to look for unlabeled regions."),
    rare_ratio: float = typer.Option(0.5, "--rare-ratio", help="Warn where a class's labeled share is below this times its predicted share."),
    seed: int = typer.Option(0, "--seed", help="Random seed (probe, k-means)."),
    index_dir: Optional[Path] = typer.Option(None, "--index-dir", help="Where pools live (default: ./indexes)."),
) -> None:
    """Report what was labeled against what the pool holds: class balance vs the probe's
    predictions, clusters with no label, and the balance round by round (markdown + PNG)."""
    from fmal import api

    rep = api.report(pool, index_dir=index_dir, output=output, n_clusters=clusters, rare_ratio=rare_ratio, random_state=seed)
    typer.echo(f"{rep.n_labeled:,} of {rep.n_pool:,} rows labeled")
    _print.table(rep.balance, list(rep.balance.columns), limit=1000)
    typer.echo(f"{len(rep.clusters)} of {rep.n_clusters} clusters hold no label")
    for w in rep.warnings:
        typer.echo(f"WARNING: {w}", err=True)
    typer.echo("wrote " + " and ".join(str(p) for p in rep.paths.values()))
    return rep
