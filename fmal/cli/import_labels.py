"""fmal import-labels"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer

from fmal.cli import POOL_HELP, command, format_names
from fmal.cli._print import q


@command("import-labels", lazy_help={"format": lambda: f"Format: one of {format_names()}."}, json_result="the ImportResult: path, format, on_conflict, n_records, n_answers, added, changed, unchanged, kept, conflicts [{id, stored, incoming, resolution}], disagreements [{id, answers, chosen}], unknown [{id, label, where}], skipped [[where, why]]")
def import_labels_cmd(
    file: Path = typer.Argument(..., help="The tool's export (Label Studio JSON/JSON_MIN/CSV, Prodigy db-out JSONL, Argilla records, CSV, JSONL)."),
    pool: str = typer.Option(..., "--pool", "-p", help=POOL_HELP),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Format (see --help; default: read from the content)."),
    on_conflict: str = typer.Option("error", "--on-conflict", help="An id already labeled differently, or answered differently in the file: error (write nothing), keep (stored / first answer), replace (the file's / last answer; the old one is kept in labels.db), majority (most annotators' label; a tie imports nothing for that id) or crowdlab (cleanlab CROWDLAB consensus, with each annotator's estimated quality)."),
    control: Optional[str] = typer.Option(None, "--control", help="label-studio: the name of the choices control to read (default: 'label', else the only one)."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Declare the pool's label set (comma-separated); answers outside it are reported."),
    multi_label: bool = typer.Option(False, "--multi-label", help="Make the pool multi-label (recorded; several classes per row: 'a|b' in CSV, a list in JSONL and the tools' exports)."),
    index_dir: Optional[Path] = typer.Option(None, "--index-dir", help="Where pools live (default: ./indexes)."),
    verbose_list: int = typer.Option(10, "--show", min=0, help="How many conflicts, unknown ids and skipped records to list."),
) -> None:
    """Merge the answers of an annotation tool's export into the pool's labels.

    Nothing stored is lost, unknown ids are reported (not imported), and importing the same file
    again changes no label. A file whose records hold no usable answer is an error that says why.
    """
    from fmal import api

    r = api.import_labels(file, pool, format, on_conflict=on_conflict, index_dir=index_dir, control=control, classes=classes,
                          multi_label=multi_label)
    typer.echo(f"{r.path}: {r.n_records} records, {r.n_answers} answers ({r.format}{', detected' if r.detected else ''})")
    typer.echo(f"  labels added: {r.added}, changed: {r.changed}, unchanged: {r.unchanged}, kept (conflict, --on-conflict keep): {r.kept}")
    for c in r.conflicts[:verbose_list]:
        typer.echo(f"  conflict {q(c.id)}: stored {q(c.stored)}, file {q(c.incoming)} -> {c.resolution}")
    for d in r.disagreements[:verbose_list]:
        answers = ", ".join(f"{q(a.label)} ({a.annotator or a.where})" for a in d.answers[:verbose_list])
        typer.echo(f"  file disagrees on {q(d.id)}: {answers} -> {q(d.chosen)}")
    for d in r.ties[:verbose_list]:
        answers = ", ".join(f"{q(a.label)} ({a.annotator or a.where})" for a in d.answers[:verbose_list])
        typer.echo(f"  tie on {q(d.id)}: {answers} -> not imported (add an answer, or --on-conflict keep/replace)")
    if r.annotator_quality:
        typer.echo("  annotator quality (CROWDLAB): " + ", ".join(
            f"{str(a)[:60]} {quality:.2f} ({r.annotator_answers.get(a, 0)} answers)" for a, quality in sorted(r.annotator_quality.items(), key=lambda kv: -kv[1])))
    if r.outside:
        typer.echo(f"  warning: label(s) outside the pool's classes: {', '.join(map(q, r.outside))} (imported; "
                   "fix them in the tool, or declare the class with --classes)", err=True)
    if r.unknown:
        typer.echo(f"  {len(r.unknown)} answer(s) for ids not in the pool (not imported):", err=True)
        for a in r.unknown[:verbose_list]:
            typer.echo(f"    {q(a.id)} ({a.where})", err=True)
    if r.skipped:
        why = Counter(w for _, w in r.skipped)
        typer.echo(f"  {len(r.skipped)} skipped: " + "; ".join(f"{n} x {w}" for w, n in why.most_common()))
    return r
