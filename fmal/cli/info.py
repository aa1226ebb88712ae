"""fmal info"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmal.cli import command


@command("info")
def info_cmd(
    pool: str = typer.Option(..., "--pool", "-p", help="Pool name (or folder)."),
    index_dir: Optional[Path] = typer.Option(None, "--index-dir", help="Where pools live (default: ./indexes)."),
) -> None:
    """Show what a pool is made of: model, rows, storage, and the FAISS index chosen (factory,
    parameters, measured recall@10, why)."""
    from fmal import api

    res = api.info(pool, index_dir=index_dir)
    m, ix = res.manifest, res.manifest["index"]
    model = m["model"]
    typer.echo(f"pool {res.path}")
    typer.echo(f"  rows: {m['n_rows']:,} ({m['n_unique_texts']:,} distinct texts), dim {m['dim']}, stored as {m.get('dtype', 'float32')}")
    typer.echo(f"  model: {model['name']} ({str(model.get('fingerprint'))[:19]}), backend {model.get('backend', 'torch')}")
    typer.echo(f"  input: {m['input']['path']} ({m['input']['format']}, text column {m['input']['text_col']!r})")
    params = ", ".join(f"{k}={v}" for k, v in (ix.get("search_params") or {}).items()) or "none"
    typer.echo(f"  index: {ix.get('factory')} ({ix.get('type')}, {ix.get('metric')}), search params: {params}, "
               f"recall@10: {ix.get('recall_at_10', 1.0)}")
    if ix.get("reason"):
        typer.echo(f"    why: {ix['reason']} (budget {ix.get('max_memory', 0) / 2**30:.1f} GiB, "
                   f"~{ix.get('bytes_per_vector', 0):.0f} B/vector)")
    for name, size in res.file_bytes.items():
        typer.echo(f"  {name}: {size / 2**20:,.1f} MiB")
