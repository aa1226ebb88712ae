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
    """Show what a pool is made of: model, rows, storage, the FAISS index chosen (factory,
    parameters, measured recall@10, why), and whether its files are sound.

    A missing, unreadable, cut or mismatched file is reported with the command that repairs it
    (exit code 1)."""
    from fmal.describe import info  # not fmal.api: fmal info imports no pandas

    res = info(pool, index_dir=index_dir)
    m = res.manifest
    ix, model, inp = m.index, m.model, m.input
    typer.echo(f"pool {res.path}")
    typer.echo(f"  rows: {_num(m.n_rows)} ({_num(m.n_unique_texts)} distinct texts), dim {_get(m.dim)}, "
               f"stored as {_get(m.dtype)}")
    fp = model.fingerprint
    typer.echo(f"  model: {_get(model.name)} ({str(fp)[:19] if fp else UNKNOWN}), backend {_get(model.backend)}")
    if model.onnx_fused is False:
        typer.echo("    the ONNX export runs unfused (slower): onnxruntime's optimizer could not fuse this model")
    typer.echo(f"  input: {_get(inp.path)} ({_get(inp.format)}, text column {_get(inp.text_col, quote=True)})")
    params = ", ".join(f"{k}={v}" for k, v in (ix.search_params or {}).items()) or "none"
    typer.echo(f"  index: {_get(ix.factory)} ({_get(ix.type)}, {_get(ix.metric)}), search params: {params}, "
               f"recall@10: {_get(ix.recall_at_10)}")
    if ix.reason:
        budget = f"{ix.max_memory / 2**30:.1f} GiB" if ix.max_memory is not None else UNKNOWN
        per = f"~{ix.bytes_per_vector:.0f} B/vector" if ix.bytes_per_vector is not None else f"{UNKNOWN} B/vector"
        typer.echo(f"    why: {ix.reason} (budget {budget}, {per})")
    for w in ix.warnings or []:
        typer.echo(f"    warning: {w}")
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


#: what ``fmal info`` prints for a field the manifest does not record (an older fmal wrote it, or it
#: was edited): never a default that could be mistaken for a measurement
UNKNOWN = "unknown"


def _get(v: object, quote: bool = False) -> object:
    return UNKNOWN if v is None else (repr(v) if quote else v)


def _num(v: object) -> str:
    return f"{v:,}" if isinstance(v, int) else UNKNOWN
