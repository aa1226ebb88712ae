"""fmal sync label-studio"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import typer

from fmal.cli import _Commands, app, guarded

sync_app = typer.Typer(cls=_Commands, help="Run the annotation loop against a live annotation tool.", no_args_is_help=True,
                       rich_markup_mode=None)
app.add_typer(sync_app, name="sync")


@sync_app.command("label-studio")
@guarded
def label_studio_cmd(
    pool: str = typer.Option(..., "--pool", "-p", help="Pool name (or folder)."),
    url: str = typer.Option(..., "--url", help="The Label Studio server, e.g. http://localhost:8080."),
    project: Optional[int] = typer.Option(None, "--project", help="Project id (default: the project titled 'fmal: POOL', created if missing)."),
    classes: Optional[str] = typer.Option(None, "--classes", help="The label set, comma-separated (stored with the pool; default: the pool's, else the project's config)."),
    control: Optional[str] = typer.Option(None, "--control", help="The choices control to sync (default: 'label', else the only one)."),
    on_conflict: str = typer.Option("majority", "--on-conflict", help="Several answers to a task, or an answer that differs from the stored label: majority (default; a tie waits for another answer), crowdlab, replace, keep or error."),
    every: Optional[int] = typer.Option(None, "--every", help="Run the next query round (and push it) once this many new labels came in since the last round."),
    budget: Optional[int] = typer.Option(None, "--budget", "-b", help="Picks of each new round (default: as many as the last round)."),
    strategy: str = typer.Option("auto", "--strategy", "-s", help="Query strategy of the new rounds."),
    watch: bool = typer.Option(False, "--watch", help="Keep syncing (one line per event) until interrupted."),
    interval: float = typer.Option(10.0, "--interval", help="--watch: seconds between passes."),
    image_url_prefix: Optional[str] = typer.Option(None, "--image-url-prefix", help="Image pools (required): tasks carry this prefix + the URL-quoted relative path, e.g. /data/local-files/?d=photos/ (Label Studio serving local files: LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true, d= relative to LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT) or http://host:8000/."),
    index_dir: Optional[Path] = typer.Option(None, "--index-dir", help="Where pools live (default: ./indexes)."),
    json_output: bool = typer.Option(False, "--json", help="Print each pass as one JSON document on stdout (one line per pass with --watch): {format, format_version, fmal_version, command, ok, exit_code, result, warnings}; result holds the SyncResult: project, target, events, pulled, added, changed, conflicts, pushed, n_tasks, rounds_run, seconds. The text goes to stderr."),
) -> None:
    """Push the current round's picks to Label Studio as tasks (with the probe's suggestion as a
    prediction), pull every new annotation into the pool's labels, and run the next round when
    --every N labels came in. The token comes from $LABEL_STUDIO_API_KEY (or $FMAL_LS_TOKEN).
    Rerunning never duplicates a task or a label; a killed run resumes where it stopped.
    """
    from fmal.cli import _json
    from fmal.sync import labelstudio as ls

    kwargs = dict(index_dir=index_dir, classes=classes, control=control, on_conflict=on_conflict, every=every,
                  budget=budget, strategy=strategy, image_url_prefix=image_url_prefix)
    with _json.json_mode() if json_output else contextlib.nullcontext((None, [])) as (stdout, warns):

        def emit(res: ls.SyncResult) -> None:
            if stdout is not None:  # --json: the pass as one line on the real stdout
                stdout.write(_json.dumps(_json.document("sync label-studio", res, warns)) + "\n")
                stdout.flush()
                warns.clear()

        if watch:
            ls.token_from_env()  # a missing token fails at once, not on every pass
            typer.echo(f"watching {url} every {interval:g} s (Ctrl-C to stop)")
            ls.watch(pool, url, project, interval=interval, on_event=typer.echo, on_pass=emit, **kwargs)
            return
        res = ls.sync(pool, url, project, **kwargs)
        for e in res.events:
            typer.echo(e)
        typer.echo(ls.describe(res))
        emit(res)
