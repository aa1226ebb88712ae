"""fmal query"""

from __future__ import annotations

from pathlib import Path

import typer

from fmal._defaults import DEFAULT_QUERY_STRATEGY
from fmal.cli import POOL_HELP, _print, command, strategies_help
from fmal.exceptions import InvalidInputError


def _strategies_help() -> str:
    from fmal.query import QUERY_STRATEGIES

    return strategies_help(QUERY_STRATEGIES)


@command("query", lazy_help={"strategy": _strategies_help}, json_result="the Selection: round, kind, strategy, reused, output, n_picks, ids, picks (every column: id, text, strategy, score, predicted_label, predicted_proba, round), info (probe C, CV accuracy, class counts, and for adaptive: mix, the one-line reason, and adaptive, its numbers: random_share, p_active, agreement, delta, ...) and stop (the stopping signal: advice, agreement, kappa, compared_with_round); with --undo the UndoResult: round, kind, strategy, n_picks, removed_files")
def query_cmd(
    pool: str = typer.Option(..., "--pool", "-p", help=POOL_HELP),
    labels: Path | None = typer.Option(None, "--labels", "-l", help="id,label file (.csv, .jsonl, ...); merged into the pool's labels. Rows with an empty label are skipped."),
    budget: int | None = typer.Option(None, "--budget", "-b", help="How many rows to pick (required unless --undo)."),
    strategy: str = typer.Option(DEFAULT_QUERY_STRATEGY, "--strategy", "-s", help="Strategy (see fmal query --help)."),
    candidates: str = typer.Option("all", "--candidates", help="Rows to score: 'all', or 'knn:K' = the K nearest neighbours of each labeled row (fast on big pools)."),
    class_weight: str | None = typer.Option(None, "--class-weight", help="'balanced' to reweight classes by inverse frequency in the probe."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Where to write the picks (.csv or .jsonl; default: the pool's rounds/ folder)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (ties, random strategy, probe)."),
    allow_requeue: bool = typer.Option(False, "--allow-requeue", help="Allow picking rows queued in earlier rounds and not labeled yet."),
    undo: bool = typer.Option(False, "--undo", help="Undo the last round instead (its picks are no longer queued; labels are kept)."),
    multi_label: bool = typer.Option(False, "--multi-label", help="Make the pool multi-label (recorded; several classes per row: 'a|b' in CSV, a list in JSONL and the tools' exports)."),
    index_dir: Path | None = typer.Option(None, "--index-dir", help="Where pools live (default: ./indexes)."),
) -> None:
    """Fit a linear probe on the labels so far and pick the rows it is least sure about.

    Each pick comes with the probe's suggested label and its probability, so annotators can start
    from a suggestion. Labeled rows are never picked again. Each round prints how much the probe
    changed since the previous round (the stopping signal) and a recommendation.
    """
    from fmal import api

    if undo:
        u = api.undo(pool, index_dir=index_dir)
        typer.echo(f"undid round {u.round} ({u.kind}, {u.strategy}, {u.n_picks} picks); removed {len(u.removed_files)} file(s)")
        return u
    if budget is None:
        raise InvalidInputError("--budget is required (a positive integer) unless --undo is given")
    sel = api.query(pool, labels, budget, strategy, index_dir=index_dir, output=output, random_state=seed,
                    allow_requeue=allow_requeue, candidates=candidates, class_weight=class_weight,
                    multi_label=multi_label)
    again = " (same as the last round: reused)" if sel.reused else ""
    typer.echo(f"round {sel.round}: {len(sel.picks)} rows picked by {strategy}{again}")
    _print.table(sel.picks, ["id", "score", "predicted_label", "predicted_proba", "text"])
    info = dict(sel.info)
    advice = info.pop("stop_advice", None)
    mix = info.pop("mix", None)  # auto, adaptive: the batch's random share and why (every number: --json, info.adaptive)
    info.pop("adaptive", None)
    _print.info(info)
    if mix:
        typer.echo(f"mix: {mix}")
    if "stop_kappa" in info:
        typer.echo(f"stopping signal: the probe agrees with round {info['stop_compared_with_round']}'s on "
                   f"{info['stop_agreement']:.1%} of a fixed sample (kappa {info['stop_kappa']:.3f})")
    if advice:
        typer.echo(f"recommendation: {advice}")
    typer.echo(f"wrote {sel.output}")
    return sel
