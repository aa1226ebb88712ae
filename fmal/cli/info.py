"""fmal info"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmal import api
from fmal.cli import command


@command("info")
def info_cmd(
    pool: str = typer.Option(..., "--pool", "-p", help="Pool name (or folder)."),
    index_dir: Optional[Path] = typer.Option(None, "--index-dir", help="Where pools live (default: ./indexes)."),
) -> None:
    """Show what a pool is made of: model, rows, storage, and the FAISS index chosen (factory,
    parameters, measured recall@10, why)."""
    res = api.info(pool, index_dir=index_dir)
    m = res.manifest
    ix = m.get("index") if isinstance(m.get("index"), dict) else {}
    model = m.get("model") if isinstance(m.get("model"), dict) else {}
    inp = m.get("input") if isinstance(m.get("input"), dict) else {}
    typer.echo(f"pool {res.path}")
    typer.echo(f"  rows: {_num(m.get('n_rows'))} ({_num(m.get('n_unique_texts'))} distinct texts), dim {_get(m, 'dim')}, "
               f"stored as {_get(m, 'dtype')}")
    fp = model.get("fingerprint")
    typer.echo(f"  model: {_get(model, 'name')} ({str(fp)[:19] if fp else UNKNOWN}), backend {_get(model, 'backend')}")
    if model.get("onnx_fused") is False:
        typer.echo("    the ONNX export runs unfused (slower): onnxruntime's optimizer could not fuse this model")
    typer.echo(f"  input: {_get(inp, 'path')} ({_get(inp, 'format')}, text column {_get(inp, 'text_col')})")
    params = ", ".join(f"{k}={v}" for k, v in (ix.get("search_params") or {}).items()) or "none"
    typer.echo(f"  index: {_get(ix, 'factory')} ({_get(ix, 'type')}, {_get(ix, 'metric')}), search params: {params}, "
               f"recall@10: {_get(ix, 'recall_at_10')}")
    if ix.get("reason"):
        budget = f"{ix['max_memory'] / 2**30:.1f} GiB" if isinstance(ix.get("max_memory"), (int, float)) else UNKNOWN
        per = f"~{ix['bytes_per_vector']:.0f} B/vector" if isinstance(ix.get("bytes_per_vector"), (int, float)) else f"{UNKNOWN} B/vector"
        typer.echo(f"    why: {ix['reason']} (budget {budget}, {per})")
    for w in ix.get("warnings") or []:
        typer.echo(f"    warning: {w}")
    for name, size in res.file_bytes.items():
        typer.echo(f"  {name}: {size / 2**20:,.1f} MiB")


#: what ``fmal info`` prints for a field the manifest does not record (an older fmal wrote it, or it
#: was edited): never a default that could be mistaken for a measurement
UNKNOWN = "unknown"


def _get(d: dict, key: str) -> object:
    v = d.get(key)
    return UNKNOWN if v is None else (repr(v) if key == "text_col" else v)


def _num(v: object) -> str:
    return f"{v:,}" if isinstance(v, int) else UNKNOWN
