"""fmal info"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmal.cli import POOL_HELP, _json, command


@command("info", json_result="the PoolInfo: path, manifest (model, input, index with recall_at_10, file_checks, additions), file_bytes, problems, repair_hint, human_work")
def info_cmd(
    pool: str = typer.Option(..., "--pool", "-p", help=POOL_HELP),
    index_dir: Optional[Path] = typer.Option(None, "--index-dir", help="Where pools live (default: ./indexes)."),
) -> None:
    """Show what a pool is made of: model, rows, storage, and the FAISS index chosen (factory,
    parameters, measured recall@10, why), and whether its files are sound: a missing, unreadable,
    cut or mismatched file is reported with the command that repairs it (exit code 1)."""
    from fmal.describe import info  # not fmal.api: fmal info imports no pandas

    res = info(pool, index_dir=index_dir)
    m, ix = res.manifest, res.manifest["index"]
    model = m["model"]
    typer.echo(f"pool {res.path}")
    typer.echo(f"  rows: {m['n_rows']:,} ({m['n_unique_texts']:,} distinct texts), dim {m['dim']}, stored as {m.get('dtype', 'float32')}")
    typer.echo(f"  model: {model['name']} ({str(model.get('fingerprint'))[:19]}), backend {model.get('backend', 'torch')}")
    typer.echo(f"  input: {m['input']['path']} ({m['input']['format']}, text column {m['input'].get('text_col')!r})")
    params = ", ".join(f"{k}={v}" for k, v in (ix.get("search_params") or {}).items()) or "none"
    typer.echo(f"  index: {ix.get('factory')} ({ix.get('type')}, {ix.get('metric')}), search params: {params}, "
               f"recall@10: {ix.get('recall_at_10', 1.0)}")
    if ix.get("reason"):
        typer.echo(f"    why: {ix['reason']} (budget {ix.get('max_memory', 0) / 2**30:.1f} GiB, "
                   f"~{ix.get('bytes_per_vector', 0):.0f} B/vector)")
    for name, size in res.file_bytes.items():
        typer.echo(f"  {name}: {size / 2**20:,.1f} MiB")
    if res.human_work:
        typer.echo(f"  labels and rounds: {res.human_work:,}")
    if res.problems:
        for p in res.problems:
            typer.echo(f"  DAMAGED {p}")
        typer.echo(f"  {res.repair_hint}")
        raise _json.ResultExit(res, 1)
    return res
