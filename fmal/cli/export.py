"""fmal export"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmal import api
from fmal.cli import command
from fmal.export import FORMATS


@command("export", json_result="the ExportResult: round, format, output, n_tasks, n_suggestions, classes")
def export_cmd(
    pool: str = typer.Option(..., "--pool", "-p", help="Pool name (or folder)."),
    round: Optional[int] = typer.Option(None, "--round", "-r", help="Round number (default: the last round)."),
    format: str = typer.Option("csv", "--format", "-f", help=f"Format: one of {', '.join(FORMATS.names())}."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="File to write (default: the pool's exports/ folder)."),
    index_dir: Optional[Path] = typer.Option(None, "--index-dir", help="Where pools live (default: ./indexes)."),
) -> None:
    """Write a round's picks as an annotation tool's import file.

    Query rounds carry the probe's suggested label and probability as a pre-annotation (Label Studio
    predictions, Prodigy preselected option, Argilla suggestion). Read the answers back with
    fmal import-labels.
    """
    res = api.export(pool, round, format, index_dir=index_dir, output=output)
    typer.echo(f"round {res.round}: {res.n_tasks} tasks ({res.n_suggestions} with a suggested label) as {res.format}")
    if res.classes:
        typer.echo(f"  classes so far: {', '.join(res.classes)}")
    typer.echo(f"wrote {res.output}")
    return res
