"""fmal export"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmal.cli import POOL_HELP, command, format_names


@command("export", lazy_help={"format": lambda: f"Format: one of {format_names()}."}, json_result="the ExportResult: round, format, output, n_tasks, n_suggestions, classes")
def export_cmd(
    pool: str = typer.Option(..., "--pool", "-p", help=POOL_HELP),
    round: Optional[int] = typer.Option(None, "--round", "-r", help="Round number (default: the last round)."),
    format: str = typer.Option("csv", "--format", "-f", help="Format (see --help)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="File to write (default: the pool's exports/ folder)."),
    classes: Optional[str] = typer.Option(None, "--classes", help="The label set, comma-separated: stored with the pool (once is enough); every task lists every class."),
    with_vectors: bool = typer.Option(False, "--with-vectors", help="argilla: add each text's embedding to its record (vector field 'embedding')."),
    image_root: Optional[Path] = typer.Option(None, "--image-root", help="Image pools: the folder the tool reads the images from (default: the folder they were embedded from); tasks carry ROOT/relative path."),
    image_url_prefix: Optional[str] = typer.Option(None, "--image-url-prefix", help="Image pools: tasks carry this prefix + the URL-quoted relative path, e.g. http://host:8000/ or Label Studio's /data/local-files/?d=images/ (Prodigy needs a URL)."),
    index_dir: Optional[Path] = typer.Option(None, "--index-dir", help="Where pools live (default: ./indexes)."),
) -> None:
    """Write a round's picks as an annotation tool's import file.

    Query rounds carry the probe's suggested label and probability as a pre-annotation (Label Studio
    predictions, Prodigy preselected option, Argilla suggestion). Read the answers back with
    fmal import-labels.
    """
    from fmal import api

    res = api.export(pool, round, format, index_dir=index_dir, output=output, classes=classes, with_vectors=with_vectors,
                     image_root=image_root, image_url_prefix=image_url_prefix)
    typer.echo(f"round {res.round}: {res.n_tasks} tasks ({res.n_suggestions} with a suggested label) as {res.format}")
    if res.classes:
        typer.echo(f"  {'classes' if res.declared else 'classes so far (none declared: --classes A,B,C)'}: {', '.join(res.classes)}")
    if res.warning:
        typer.echo(f"warning: {res.warning}", err=True)
    typer.echo(f"wrote {res.output}")
    return res
