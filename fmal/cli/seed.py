"""fmal seed"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmal._defaults import DEFAULT_SEED_STRATEGY
from fmal.cli import POOL_HELP, _print, command, strategies_help


def _strategies_help() -> str:
    from fmal.seed import SEED_STRATEGIES

    return strategies_help(SEED_STRATEGIES)


@command("seed", lazy_help={"strategy": _strategies_help}, json_result="the Selection: round, kind, strategy, reused, output, n_picks, ids, picks (one object per pick with every column: id, text, strategy, score, cluster, round), info (coverage, delta, ...)")
def seed_cmd(
    pool: str = typer.Option(..., "--pool", "-p", help=POOL_HELP),
    budget: int = typer.Option(..., "--budget", "-b", help="How many rows to pick."),
    strategy: str = typer.Option(DEFAULT_SEED_STRATEGY, "--strategy", "-s", help="Strategy (see fmal seed --help)."),
    labels: Optional[Path] = typer.Option(None, "--labels", "-l", help="id,label file of rows already labeled: picks extend that set."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write the picks (.csv or .jsonl; default: the pool's rounds/ folder)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same inputs and seed give the same picks."),
    delta: Optional[float] = typer.Option(
        None, "--delta", help="Ball radius (Euclidean distance between unit vectors, 0 < delta <= 2) for probcover "
        "and the coverage report; default: ProbCover's purity rule, raised for the budget."),
    n_classes: Optional[int] = typer.Option(
        None, "--n-classes", help="probcover: how many k-means pseudo-classes the purity rule for delta uses "
        "(an integer >= 2; default 10; about the number of label classes you expect). Ignored with --delta."),
    exact: bool = typer.Option(
        False, "--exact", help="On a pool over the RAM cap (FMAL_MAX_RAM), cluster and judge every row by streaming "
        "the embeddings, instead of the two-level clustering over the index's IVF lists and a sampled coverage "
        "report (slower: several passes over the pool on disk)."),
    classes: Optional[str] = typer.Option(None, "--classes", help="The label set, comma-separated (e.g. POS,NEG,NEUTRAL): stored with the pool, listed by every export."),
    multi_label: bool = typer.Option(False, "--multi-label", help="Make the pool multi-label (recorded; several classes per row: 'a|b' in CSV, a list in JSONL and the tools' exports)."),
    index_dir: Optional[Path] = typer.Option(None, "--index-dir", help="Where pools live (default: ./indexes)."),
) -> None:
    """Pick a diverse, typical cold-start set to label first: no labels needed."""
    from fmal import api
    from fmal.seed.geometry import check_delta, check_n_classes

    params: dict[str, object] = {} if delta is None else {"delta": check_delta(delta)}
    if n_classes is not None:
        params["n_classes"] = check_n_classes(n_classes)
    if exact:
        params["exact"] = True
    sel = api.seed(pool, budget, strategy, index_dir=index_dir, labels=labels, output=output, random_state=seed, classes=classes,
                   multi_label=multi_label, **params)
    again = " (same as the last round: reused)" if sel.reused else ""
    typer.echo(f"round {sel.round}: {len(sel.picks)} rows picked by {strategy}{again}")
    _print.table(sel.picks, ["id", "score", "cluster", "text"])
    _print.info(sel.info)
    typer.echo(f"wrote {sel.output}")
    typer.echo("next: label these rows (add a 'label' column), then: "
               f"fmal query --pool {pool} --labels {sel.output} --budget {budget}")
    return sel
