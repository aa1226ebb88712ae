"""fmal embed"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmal.cli import POOL_HELP, command


def _backend_help() -> str:
    from fmal.encoders import BACKENDS, DEFAULT_BACKEND

    return (f"Encoder runtime: {', '.join(BACKENDS)} (default {DEFAULT_BACKEND}, or the existing pool's). ONNX exports "
            "are made once and cached in $FMAL_CACHE (~/.cache/fmal).")


@command("embed", lazy_help={"backend": _backend_help}, json_result="the EmbedResult: pool_path, n_rows, n_unique, n_embedded, n_chunks_reused, skipped, seconds, model, dim, backend, precision, engine, repaired, labels_kept, labels_dropped, backup (and source, n_appended, n_skipped for --embeddings / --append; bad_images for images skipped)")
def embed_cmd(
    input: Optional[Path] = typer.Argument(None, help="Texts to embed: .csv, .tsv, .jsonl, .json (an array of objects), .parquet, or .txt (one text a line), a folder of such shards (read in name order), or a Hugging Face datasets folder (save_to_disk). Images: a folder of .jpg/.png/.webp (recursive; id = relative path) or a table with --image-col, and a CLIP --model. With --embeddings: the file of ids (and texts) of the vectors, like --ids."),
    pool: str = typer.Option(..., "--pool", "-p", help=POOL_HELP),
    text_col: str = typer.Option("text", "--text-col", help="Column holding the texts."),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="Column holding unique ids (default: 'id' if present, else stable ids made from the text)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="sentence-transformers model: a local folder or a hub name (default: the bundled all-MiniLM-L6-v2)."),
    index_dir: Optional[Path] = typer.Option(None, "--index-dir", help="Where pools live (default: ./indexes)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Texts per forward pass."),
    chunk_size: int = typer.Option(2048, "--chunk-size", help="Distinct texts per saved chunk: an interrupted run loses at most one chunk."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Rebuild the pool from this input even if it exists. On a pool with labels, say what to do with them: --keep-labels or --drop-labels."),
    repair: bool = typer.Option(False, "--repair", help="Check every file of the existing pool (checksums included) and rebuild the missing or damaged ones from this input; labels and rounds are kept."),
    keep_labels: bool = typer.Option(False, "--keep-labels", help="With --overwrite: keep labels, answers and rounds (refused if a labeled id is not in the new input, unless --drop-labels too: those move to a backup)."),
    drop_labels: bool = typer.Option(False, "--drop-labels", help="With --overwrite: move labels, rounds and probes to backup-<time>/ in the pool folder (never deleted)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Let the model run code from its folder (off by default)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Encoder runtime (see --help)."),
    index: str = typer.Option("auto", "--index", help="FAISS index: auto (exact Flat while the pool is small and fits --max-index-memory, then IVF-Flat, then IVF with 8-bit scalar codes, then IVF-PQ), flat, hnsw, ivfflat, ivfsq or ivfpq. The choice, its parameters and its measured recall@10 go into the manifest."),
    engine: str = typer.Option("local", "--engine", help="Where to embed: local (this process) or ray (a Ray Data pipeline: workers read the input shards and a pool of encoder actors embeds them; resumes per shard; needs the ray extra). Same pool either way."),
    ray_address: Optional[str] = typer.Option(None, "--address", help="With --engine ray: the cluster to join (e.g. auto, ray://head:10001); default: a local Ray with this machine's cores."),
    workers: Optional[int] = typer.Option(None, "--workers", help="With --engine ray: number of encoder actors (default: from one up to one per CPU, as work queues)."),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", help="With --engine ray: GPUs each encoder actor requests from Ray (1, or 0.5 to share a GPU); 0: CPU actors. Untested on GPU hardware."),
    max_index_memory: str = typer.Option("4G", "--max-index-memory", help="Memory budget of the index for --index auto, e.g. 512M, 4G."),
    precision: Optional[str] = typer.Option(None, "--precision", help="Stored embedding dtype: float32 or float16 (half the disk; default float32, or the existing pool's)."),
    max_seq_length: Optional[int] = typer.Option(None, "--max-seq-length", help="Truncate texts to this many tokens (default: the model's own limit)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for the encoder (default: the cores available to this process)."),
    device: str = typer.Option("auto", "--device", help="Where the encoder runs: auto (a CUDA GPU when torch sees one and, for the ONNX backends, onnxruntime-gpu is installed; else the CPU), cpu, cuda or cuda:N. torch runs in fp16 on a GPU. Recorded in the manifest."),
    embeddings: Optional[Path] = typer.Option(None, "--embeddings", help="Use vectors made elsewhere instead of embedding texts: an .npy file (rows x dims, float16/32/64; read in blocks, never whole), a Parquet or Arrow file with a column of float lists (--embedding-col), or a folder of such shards. The pool records model 'external'; seed, query, audit, report and export work on it."),
    ids: Optional[Path] = typer.Option(None, "--ids", help="With --embeddings: a file with one id per vector, in order (.csv/.tsv/.jsonl/.parquet: the --id-col column, default 'id', and --text-col for display texts if present; .txt: one id a line). Default: an 'id' column of the --embeddings table, else row numbers."),
    embedding_col: Optional[str] = typer.Option(None, "--embedding-col", help="With --embeddings on a Parquet/Arrow file: the column of vectors (default 'embedding', or its only list column)."),
    normalize: bool = typer.Option(True, "--normalize/--no-normalize", help="With --embeddings: L2-normalise the vectors (default; rows already of unit length are stored as given)."),
    image_col: Optional[str] = typer.Option(None, "--image-col", help="Images: the column of INPUT (a table) holding image paths, relative to the table's folder; --model must be a CLIP model (a folder of images needs no option)."),
    bad_images: str = typer.Option("stop", "--bad-images", help="Images: what an empty, unreadable, truncated or non-image file does: stop (default: the error names it) or skip (left out of the pool and listed)."),
    append: bool = typer.Option(False, "--append", help="Add the rows of INPUT (or --embeddings) that the pool does not have yet: rows whose id (or, with ids made from texts, whose text) is in the pool are skipped, only new texts are embedded, the index is extended (an IVF index keeps its trained quantiser) and recall re-measured; labels, rounds and probes are kept. Resumable."),
) -> None:
    """Embed texts into a pool: L2-normalised embeddings, ids, texts and a FAISS index.

    Identical texts are embedded once. Work is saved chunk by chunk (shard by shard with --engine
    ray): rerun the same command after an interruption to resume; rerunning a finished embed checks
    the pool's files and does nothing, or says what is damaged: add --repair to rebuild it, keeping labels.

    --embeddings FILE builds the pool from vectors made elsewhere (no encoder); --append adds the
    rows a finished pool lacks, keeping its labels and rounds.
    """
    from tqdm.auto import tqdm

    from fmal import api

    bar: dict[str, tqdm] = {}

    def on_start(n: int | None) -> None:
        bar["b"] = tqdm(total=n, unit="rows", desc=f"embedding {pool}", dynamic_ncols=True)

    def on_progress(done: int) -> None:
        bar["b"].update(done - bar["b"].n)

    try:
        res = api.embed(
            input, pool, index_dir=index_dir, text_col=text_col, id_col=id_col, model=model,
            batch_size=batch_size, chunk_size=chunk_size, overwrite=overwrite, repair=repair,
            keep_labels=keep_labels, drop_labels=drop_labels,
            trust_remote_code=trust_remote_code, backend=backend, precision=precision,
            index=index, max_index_memory=max_index_memory, engine=engine, ray_address=ray_address, workers=workers, gpus_per_worker=gpus_per_worker,
            max_seq_length=max_seq_length, threads=threads, device=device, on_start=on_start, on_progress=on_progress,
            embeddings=embeddings, ids=ids, embedding_col=embedding_col, normalize=normalize, append=append,
            image_col=image_col, bad_images=bad_images,
        )
    finally:
        if "b" in bar:
            bar["b"].close()
    for line in res.bad_images:  # images: files left out by --bad-images skip
        typer.echo(f"skipped image {line}", err=True)
    if append:
        typer.echo(f"pool {res.pool_path}: {res.n_appended:,} rows appended ({res.n_embedded:,} embedded now, "
                   f"{res.n_skipped:,} already in the pool), {res.n_rows:,} rows in all; labels and rounds kept; {res.seconds:.1f} s")
        return res
    if res.skipped:
        checked = "checked with checksums, nothing to repair" if repair else "nothing to do"
        typer.echo(f"pool {res.pool_path} is already built from this input and model ({res.backend}, "
                   f"{res.precision}): {checked}")
        return res
    if res.repaired:
        typer.echo(f"pool {res.pool_path} repaired: rebuilt {', '.join(res.repaired)} "
                   f"({res.n_embedded:,} texts embedded now); labels and rounds kept")
        return res
    if res.source is not None:
        typer.echo(f"pool {res.pool_path}: {res.n_rows:,} rows of dim {res.dim} from {res.source} (model external, "
                   f"{res.precision}), {res.seconds:.1f} s")
        return res
    unit = "shard" if res.engine == "ray" else "chunk"
    resumed = f", {res.n_chunks_reused} {unit}(s) reused from an interrupted run" if res.n_chunks_reused else ""
    if res.engine == "ray":
        typer.echo(f"read by Ray: {res.n_shards:,} shard(s) of {res.n_rows:,} rows")
    kind = "texts" if res.max_seq_length is not None else "images"  # an image encoder has no max_seq_length
    typer.echo(
        f"pool {res.pool_path}: {res.n_rows:,} rows ({res.n_unique:,} distinct {kind}, {res.n_embedded:,} embedded now{resumed}), "
        f"dim {res.dim}, model {res.model}, {res.seconds:.1f} s"
    )
    if keep_labels:
        dropped = f"; {res.labels_dropped:,} whose id is not in the new input moved to {res.backup}" if res.labels_dropped else ""
        typer.echo(f"labels and rounds kept: {res.labels_kept:,} labeled id(s){dropped}")
    elif res.backup is not None:
        typer.echo(f"the previous labels, rounds and probes were moved to {res.backup}")
    rate = res.n_embedded / res.seconds if res.seconds > 0 else 0.0
    seq = f", max_seq_length {res.max_seq_length} tokens" if res.max_seq_length is not None else ""  # images: none
    typer.echo(
        f"encoder: backend {res.backend}, {res.threads} thread(s){seq}, "
        f"stored as {res.precision}, {rate:,.0f} {kind}/s overall"
    )
    return res
