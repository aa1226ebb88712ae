"""fmal simulate"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, List, Optional

import typer

from fmal._defaults import DEFAULT_C
from fmal.cli import _print, command


def _renamed(new: Any, old: Any, new_name: str, old_name: str) -> Any:
    """The value of an option given under its new name, or under the old (hidden) one with a
    one-line deprecation note on stderr; both at once is a usage error."""
    if old is None:
        return new
    if new:
        raise typer.BadParameter(f"give {new_name} only ({old_name} is its old name)", param_hint=old_name)
    typer.echo(f"note: {old_name} is deprecated; use {new_name}", err=True)
    return old


def _probe_c(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise typer.BadParameter(f"must be a number or 'auto', got {value!r}") from None


@command("simulate", json_result="the simulation report (as simulation.json): verdict, advice, baseline, seeds, budgets, classes, full_data, strategies (curves with intervals, AULC, labels to reach, vs baseline), info")
def simulate_cmd(
    data: Path = typer.Argument(..., help="Labeled texts: any file fmal embed reads (.csv, .tsv, .jsonl, .parquet)."),
    label_col: str = typer.Option("label", "--label-col", help="Column with the gold labels (the simulated annotator's answers)."),
    test_col: Optional[str] = typer.Option(None, "--test-col", help="Column marking the held-out test rows (rows equal to --test-value)."),
    test_value: str = typer.Option("test", "--test-value", help="Value of --test-col that marks a test row."),
    test_size: Optional[float] = typer.Option(None, "--test-size", help="Share of rows held out by a stratified split (default 0.3 when no --test-col)."),
    strategy: Optional[List[str]] = typer.Option(None, "--strategy", "-s", metavar="<seed+query,...>", show_default="random,typiclust+margin", help="Strategies to compare: SEED+QUERY pairs (e.g. typiclust+margin) or names of both kinds (random, auto); repeat the option or give a comma list. random is always added as the baseline."),
    strategies_old: Optional[str] = typer.Option(None, "--strategies", hidden=True, help="Old name of --strategy."),
    seeds: int = typer.Option(5, "--seeds", help="Runs per strategy (seeds 0..N-1 after --seed): the intervals are over these."),
    initial: int = typer.Option(20, "--initial", help="Labels picked by the seed strategy before the first probe."),
    step: int = typer.Option(20, "--step", help="Labels added per query round."),
    max_labels: int = typer.Option(200, "--max", help="Labels at the last round."),
    pool: Optional[str] = typer.Option(None, "--pool", "-p", help="Pool to embed into or reuse (default: the file's name)."),
    index_dir: Optional[Path] = typer.Option(None, "--index-dir", help="Where pools live (default: ./indexes)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="sentence-transformers model folder or hub name (default: bundled all-MiniLM-L6-v2)."),
    text_col: str = typer.Option("text", "--text-col", help="Column holding the texts."),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="Column holding unique ids (default: 'id' if present)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder for simulation.json, simulation.md, curves.csv, learning_curves.png (default: simulations/POOL)."),
    out_old: Optional[Path] = typer.Option(None, "--out", hidden=True, help="Old name of --output."),
    probe_c: str = typer.Option(str(DEFAULT_C), "--probe-c", help="The probe's C: a number (fast) or 'auto' to cross-validate as fmal query does (slower)."),
    seed: int = typer.Option(0, "--seed", help="First random seed (also seeds the --test-size split)."),
    multi_label: bool = typer.Option(False, "--multi-label", help="The label column holds several classes per row ('a|b', or a JSON list): score by micro-F1 (shown as accuracy), macro-F1 and subset accuracy; default strategies random, typiclust+mean-margin, typiclust+max-entropy, auto."),
) -> None:
    """Does active learning beat random on my data? Replay fmal's seed -> probe -> query loop on
    labeled data and compare strategies with random: learning curves with 95% intervals, AULC,
    labels needed to reach 90%/95% of the full-data accuracy, and a plain verdict."""
    import pandas as pd
    from tqdm.auto import tqdm

    from fmal.simulate import DEFAULT_STRATEGIES, default_pool_name, simulate

    output = _renamed(output, out_old, "--output", "--out")
    strategies = _renamed(strategy, strategies_old, "--strategy", "--strategies")
    strategies = strategies or list(DEFAULT_STRATEGIES)
    if isinstance(strategies, list):  # --strategy a --strategy b,c
        strategies = ",".join(strategies)

    bars: dict[str, tqdm] = {}

    def on_embed_start(n: int) -> None:
        bars["embed"] = tqdm(total=n, unit="rows", desc="embedding", dynamic_ncols=True)

    def on_embed_progress(done: int) -> None:
        bars["embed"].update(done - bars["embed"].n)

    def on_start(n: int) -> None:
        if "embed" in bars:
            bars.pop("embed").close()
        bars["sim"] = tqdm(total=n, unit="round", desc="simulating (strategy, seed, step)", dynamic_ncols=True)

    def on_progress(done: int) -> None:
        bars["sim"].update(done - bars["sim"].n)

    pool_name = pool or default_pool_name(data)
    try:
        res = simulate(
            data, label_col=label_col, text_col=text_col, id_col=id_col, test_col=test_col, test_value=test_value,
            test_size=test_size, strategies=strategies, seeds=seeds, initial=initial, step=step, max_labels=max_labels,
            pool=pool_name, index_dir=index_dir, model=model, output=output or Path("simulations") / pool_name,
            probe_c=_probe_c(probe_c), random_state=seed, on_embed_start=on_embed_start,
            on_embed_progress=on_embed_progress, on_start=on_start, on_progress=on_progress, multi_label=multi_label,
        )
    finally:
        for b in bars.values():
            b.close()
    metric = res.info.get("accuracy_is", "accuracy")  # multi-label: micro-F1
    typer.echo(f"{res.info['n_train']:,} pool rows, {res.info['n_test']:,} test rows; full-data {metric} "
               f"{100 * res.full_accuracy:.1f}%; {res.info['seconds_simulation']:.1f} s")
    frame = res.summary_frame()
    frame["aulc"] = [f"{s.aulc:.1f}" for s in res.summaries]
    frame["vs_random"] = ["-" if s.strategy == res.baseline else f"{s.diff_vs_baseline:+.1f}" if math.isnan(s.diff_lo)
                          else f"{s.diff_vs_baseline:+.1f} [{s.diff_lo:+.1f}, {s.diff_hi:+.1f}]" for s in res.summaries]
    reach = [c for c in frame.columns if c.startswith("labels_to_")]
    for c in reach:
        frame[c] = [f"> {res.budgets[-1]}" if v is None or pd.isna(v) else str(int(v)) for v in frame[c]]
    _print.table(frame, ["strategy", "aulc", "vs_random", *reach], limit=50)
    typer.echo(f"aulc: mean test {metric} (%) over the label range; vs_random: paired difference, 95% interval; "
               "labels_to_X: median labels to reach X of the full-data accuracy")
    typer.echo(f"verdict: {res.verdict}")
    typer.echo(f"advice: {res.advice}")
    for kind, path in res.files.items():
        typer.echo(f"wrote {path}  ({kind})")
    return res
