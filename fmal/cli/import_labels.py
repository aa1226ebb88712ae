"""fmal import-labels"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer

from fmal import api
from fmal.cli import command
from fmal.export import FORMATS


@command("import-labels", json_result="the ImportResult: path, format, on_conflict, n_records, n_answers, added, changed, unchanged, kept, conflicts [{id, stored, incoming, resolution}], disagreements [{id, answers, chosen}], unknown [{id, label, where}], skipped [[where, why]]")
def import_labels_cmd(
    file: Path = typer.Argument(..., help="The tool's export (Label Studio JSON, Prodigy db-out JSONL, Argilla records, CSV, JSONL)."),
    pool: str = typer.Option(..., "--pool", "-p", help="Pool name (or folder)."),
    format: str = typer.Option("csv", "--format", "-f", help=f"Format: one of {', '.join(FORMATS.names())}."),
    on_conflict: str = typer.Option("error", "--on-conflict", help="An id already labeled differently, or answered differently twice in the file: error (write nothing), keep (stored / first answer) or replace (the file's / last answer; the old one is kept in the pool's labels.db)."),
    index_dir: Optional[Path] = typer.Option(None, "--index-dir", help="Where pools live (default: ./indexes)."),
    verbose_list: int = typer.Option(10, "--show", help="How many conflicts, unknown ids and skipped records to list."),
) -> None:
    """Merge the answers of an annotation tool's export into the pool's labels.

    Nothing stored is lost, unknown ids are reported (not imported), and importing the same file
    again changes no label.
    """
    r = api.import_labels(file, pool, format, on_conflict=on_conflict, index_dir=index_dir)
    typer.echo(f"{r.path}: {r.n_records} records, {r.n_answers} answers ({r.format})")
    typer.echo(f"  labels added: {r.added}, changed: {r.changed}, unchanged: {r.unchanged}, kept (conflict, --on-conflict keep): {r.kept}")
    for c in r.conflicts[:verbose_list]:
        typer.echo(f"  conflict {c.id!r}: stored {c.stored!r}, file {c.incoming!r} -> {c.resolution}")
    for d in r.disagreements[:verbose_list]:
        answers = ", ".join(f"{a.label!r} ({a.where})" for a in d.answers)
        typer.echo(f"  file disagrees on {d.id!r}: {answers} -> {d.chosen!r}")
    if r.unknown:
        typer.echo(f"  {len(r.unknown)} answer(s) for ids not in the pool (not imported):", err=True)
        for a in r.unknown[:verbose_list]:
            typer.echo(f"    {a.id!r} ({a.where})", err=True)
    if r.skipped:
        why = Counter(w for _, w in r.skipped)
        typer.echo(f"  {len(r.skipped)} skipped: " + "; ".join(f"{n} x {w}" for w, n in why.most_common()))
    return r
