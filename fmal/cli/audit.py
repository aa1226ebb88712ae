"""fmal audit"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmal.cli import POOL_HELP, _print, command, format_names


@command("audit", lazy_help={"format": lambda: f"Format of --output: one of {format_names()} (default: from the extension)."}, json_result="the AuditResult: audit {table: every audited label ranked (rank, id, given_label, predicted_label, predicted_proba, label_quality, is_issue), n_folds, C, classes, excluded}, output, format, info")
def audit_cmd(
    pool: str = typer.Option(..., "--pool", "-p", help=POOL_HELP),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the flagged labels for re-review to this file."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Format of --output (see --help)."),
    include_all: bool = typer.Option(False, "--all", help="Write every audited label, ranked, not only the flagged ones."),
    folds: int = typer.Option(5, "--folds", help="Cross-validation folds (fewer when a class has fewer labels)."),
    show: int = typer.Option(20, "--show", min=0, help="How many ranked rows to print."),
    seed: int = typer.Option(0, "--seed", help="Random seed (folds, probe)."),
    index_dir: Optional[Path] = typer.Option(None, "--index-dir", help="Where pools live (default: ./indexes)."),
) -> None:
    """Find labels that look wrong: cross-validated probe probabilities + cleanlab.

    Prints the flagged labels, most suspicious first, with the suggested label; --output writes them
    in any export format for re-review (then fmal import-labels ... --on-conflict replace).
    """
    from fmal import api

    res = api.audit(pool, index_dir=index_dir, output=output, format=format, include_all=include_all,
                    n_folds=folds, random_state=seed)
    issues = res.audit.issues
    if res.audit.caution:
        typer.echo(f"caution: {res.audit.caution}", err=True)
        typer.echo(f"{len(issues)} label(s) to re-check among {len(res.audit.table)} audited (not reliable at this size)")
    else:
        typer.echo(f"{len(issues)} likely wrong label(s) among {len(res.audit.table)} audited")
    if len(issues):
        _print.table(issues, ["rank", "id", "given_label", "predicted_label", "predicted_proba", "label_quality"], limit=show)
    _print.info(res.info)
    if res.output:
        typer.echo(f"wrote {res.output} ({res.format})")
    return res
