"""Pools that grow: ``fmal embed NEW --pool P --append`` adds the rows a finished pool lacks.

* **Which rows**: rows whose id is in the pool are skipped (with ids made from texts, rows whose
  text is in the pool); a given id already in the pool with another text is an error (appending
  never changes or removes a row: ``--overwrite --keep-labels`` rebuilds). Pool rows missing from
  the input stay.
* **Embedding**: only texts the pool does not hold are embedded (a new id with a known text
  reuses its vector), with the pool's own model, backend, batch and chunk size, in chunks saved to
  ``.partial`` like a build (resumable). When the pool's distinct-text count is a multiple of its
  chunk size the chunks line up with a build of the whole input at once, and the embeddings are
  byte-identical to it. A pool of embeddings made elsewhere grows with ``--embeddings`` (by id).
* **Files**: the new embeddings file (old rows copied block by block, then the new ones), rows
  and index (the old index read back and extended: an IVF index keeps its trained quantiser, a
  flat one just adds; recall@10 is measured again and nprobe / efSearch raised if needed) are
  staged in ``.partial/append/``, the new manifest in ``.partial/append-commit.json``; then the
  files are renamed into place and the manifest written last, with the addition recorded in its
  ``additions`` list and new ``file_checks``. A run killed before the commit file redoes the
  staging (embedded chunks are kept); after it, a rerun finishes the renames.
* ``labels.db`` (labels, answers, rounds, probes) is never opened.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from fmal import external
from fmal._atomic import write_json
from fmal._faults import crash_point
from fmal._matrix import BlockMatrix
from fmal.exceptions import CorruptPoolError, InvalidInputError, ModelMismatchError, PoolNotFoundError
from fmal.pool import check as pool_check
from fmal.pool import write as pool_write
from fmal.pool.build import _embed_chunks, _pool_lock
from fmal.pool.files import EMBEDDINGS, INDEX, PARTIAL, ROWS
from fmal.pool.manifest import BuildSettings, IndexRecord, Manifest, read_manifest
from fmal.pool.read import open_embeddings, read_rows

log = logging.getLogger(__name__)

STAGE = "append"
COMMIT = "append-commit.json"


def _finish_commit(path: Path) -> bool:
    """Complete an append killed after staging: rename the staged files, write the manifest."""
    partial = path / PARTIAL
    commit = partial / COMMIT
    if not commit.is_file():
        return False
    manifest = Manifest.from_json(json.loads(commit.read_text(encoding="utf-8")), commit)
    for name in (EMBEDDINGS, ROWS, INDEX):
        staged = partial / STAGE / name
        if staged.exists():
            os.replace(staged, path / name)
            crash_point("append.renamed")
    # file checks of the new files (the staged embeddings and index were hashed as they were written); drops .partial
    pool_write.write_manifest(path, manifest, manifest.file_records)
    log.info("%s: finished an interrupted append", path)
    return True


def append(
    input: Any,
    path: Path,
    t0: float,
    *,
    text_col: str = "text",
    id_col: str | None = None,
    embeddings: Any = None,
    ids: Any = None,
    texts: Any = None,
    embedding_col: str | None = None,
    normalize: bool = True,
    on_start: Any = None,
    on_progress: Any = None,
    model: Any = None,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    trust_remote_code: bool = False,
    backend: str | None = None,
    max_seq_length: int | None = None,
    threads: int | None = None,
    device: str | None = "auto",
) -> Any:
    """Add to the finished pool at ``path`` the rows of ``input`` (texts) or ``embeddings`` it lacks
    (``device``: where the encoder runs for new texts; the vectors do not depend on it beyond the
    runtime's own rounding)."""
    from fmal.api.results import EmbedResult

    path.mkdir(parents=True, exist_ok=True)
    with _pool_lock(path):
        finished = _finish_commit(path)
        m = read_manifest(path)
        if m is None:
            raise PoolNotFoundError(f"{path}: no pool to append to; build it first with fmal embed INPUT --pool {path.name}")
        if problems := pool_check.check_pool(path, m):
            raise CorruptPoolError(pool_check.describe(path, problems, m))
        is_ext = external.is_external(m)
        if is_ext and embeddings is None:
            raise ModelMismatchError(f"{path}: pool holds embeddings made outside fmal; fmal has no encoder for it: "
                                     "append vectors with --embeddings FILE --ids FILE --append")
        if not is_ext and embeddings is not None:
            raise ModelMismatchError(f"{path}: pool was embedded with model {m.model.name!r}; vectors made "
                                     "elsewhere would not share its space: append texts instead (INPUT --append)")
        old = read_rows(path, ["id", "text"])
        old_ids = old["id"].astype(str).tolist()
        old_texts = old["text"].astype(str).tolist()
        pos = {x: i for i, x in enumerate(old_ids)}
        dim, dtype = m.dim, m.precision
        if is_ext:
            plan = _plan_vectors(embeddings, ids, texts, id_col, text_col, embedding_col, pos, dim)
        else:
            plan = _plan_texts(input, text_col, id_col, m, old_ids, old_texts, pos)
        new_ids, new_texts, n_skipped, record = plan["ids"], plan["texts"], plan["skipped"], plan["record"]
        if not new_ids:
            return EmbedResult(path, len(old_ids), m.n_unique_texts, 0, 0, True, time.perf_counter() - t0,
                               m.model.name, dim, m.backend, dtype, source=record["path"],
                               n_skipped=n_skipped, repaired=("finished an interrupted append",) if finished else ())
        if on_start:
            on_start(len(new_ids))
        partial = path / PARTIAL
        stage = partial / STAGE
        n_embedded = reused = 0
        if is_ext:
            src = plan["source"]
            keep = plan["keep"]

            def new_blocks() -> Any:
                for start, b in src.raw_blocks():
                    sel = keep[start : start + len(b)]
                    if sel.any():
                        rows = start + np.nonzero(sel)[0]  # errors name the source row of each kept vector
                        yield external.check_block(b[sel], 0, lambda r, rows=rows: src.row_name(int(rows[r])), normalize=normalize)

            new_vectors = new_blocks()
        else:
            emb_new, n_embedded, reused = _embed_new(plan, m, path, old_texts, model=model, trust_remote_code=trust_remote_code,
                                                     backend=backend, max_seq_length=max_seq_length, threads=threads,
                                                     on_progress=on_progress, device=device)
            new_vectors = iter([emb_new])
        n_all = len(old_ids) + len(new_ids)
        stage.mkdir(parents=True, exist_ok=True)

        def all_blocks() -> Any:
            old_part = external._npy_part(path / EMBEDDINGS)
            yield from old_part.blocks(external.block_rows(dim))
            done = 0
            for b in new_vectors:
                done += len(b)
                if on_progress and is_ext:
                    on_progress(done)
                yield b

        known = {EMBEDDINGS: pool_write.write_embeddings_stream(stage, n_all, dim, dtype, all_blocks())}
        crash_point("append.embeddings-staged")
        pool_write.write_rows(stage, old_ids + new_ids, old_texts + new_texts)
        index, known[INDEX] = _extend_index(path, stage, m, len(old_ids), n_all)
        additions = [*(m.additions or []), {**record, "n_rows_before": len(old_ids), "n_rows_added": len(new_ids),
                                             "n_skipped": n_skipped, "n_embedded": n_embedded, "recall_at_10": index.recall_at_10}]
        manifest = dataclasses.replace(m, file_checks=known, n_rows=n_all, n_unique_texts=len(set(old_texts) | set(new_texts)),
                                       index=index, additions=additions)
        write_json(partial / COMMIT, manifest.to_json())
        crash_point("append.committed")
        _finish_commit(path)
        shutil.rmtree(partial, ignore_errors=True)
        return EmbedResult(path, n_all, manifest.n_unique_texts, n_embedded if not is_ext else len(new_ids), reused, False,
                           time.perf_counter() - t0, m.model.name, dim, m.backend, dtype,
                           source=record["path"], n_appended=len(new_ids), n_skipped=n_skipped)


def _plan_texts(input: Any, text_col: str, id_col: str | None, m: Manifest, old_ids: list[str],
                old_texts: list[str], pos: dict[str, int]) -> dict[str, Any]:
    """Which rows of a texts input are new, their ids, and the addition's record."""
    from fmal import frames
    from fmal.io import generate_ids

    if input is None:
        raise InvalidInputError("--append: give the texts to add (INPUT), or --embeddings for a pool of external vectors")
    table = frames.texts_table(input, "input", text_col=text_col, id_col=id_col)
    generated = bool(m.input.id_col is None if m.input.ids_generated is None else m.input.ids_generated)
    if generated and table.id_col is not None:
        raise InvalidInputError(f"{table.path}: has an id column {table.id_col!r} but the pool's ids were made from its texts; "
                                "drop the column (or --id-col) so new ids are made the same way")
    if not generated and table.id_col is None:
        raise InvalidInputError(f"{table.path}: no id column, but the pool has ids ({m.input.id_col!r}); "
                                "give the new rows ids in that column")
    known_texts = set(old_texts)
    keep: list[int] = []
    skipped = 0
    for j, (i, t) in enumerate(zip(table.ids, table.texts)):
        if generated:
            if t in known_texts:
                skipped += 1
                continue
        elif i in pos:
            if old_texts[pos[i]] != t:
                raise InvalidInputError(
                    f"{table.path}: row {j + 1}: id {i!r} is in the pool with another text; appending never changes a row "
                    "(rebuild with --overwrite --keep-labels to change texts)")
            skipped += 1
            continue
        keep.append(j)
    texts = [table.texts[j] for j in keep]
    ids = generate_ids(old_texts + texts)[len(old_texts):] if generated else [table.ids[j] for j in keep]
    record = {"path": str(table.path), "format": table.format, "fingerprint": table.fingerprint,
              "text_col": table.text_col, "id_col": table.id_col}
    return {"ids": ids, "texts": texts, "skipped": skipped, "record": record, "table": table}


def _plan_vectors(embeddings: Any, ids: Any, texts: Any, id_col: str | None, text_col: str, embedding_col: str | None,
                  pos: dict[str, int], dim: int) -> dict[str, Any]:
    src = external.open_source(embeddings, ids=ids, texts=texts, id_col=id_col, text_col=text_col, embedding_col=embedding_col)
    if src.ids_generated:
        raise InvalidInputError(f"{src.path}: appending vectors needs their ids (--ids FILE or an id column): "
                                "row numbers would collide with the pool's")
    if src.dim != dim:
        raise InvalidInputError(f"{src.path}: embeddings of dim {src.dim}, the pool's are {dim}; append vectors of the same model")
    keep = np.fromiter((i not in pos for i in src.ids), dtype=bool, count=src.n)
    ids = [i for i, k in zip(src.ids, keep) if k]
    texts_out = [t for t, k in zip(src.texts, keep) if k]
    record = {"path": str(src.path), "format": src.format, "fingerprint": src.fingerprint, "ids_source": src.ids_source}
    return {"ids": ids, "texts": texts_out, "skipped": int((~keep).sum()), "record": record, "source": src, "keep": keep}


def _embed_new(plan: dict[str, Any], m: Manifest, path: Path, old_texts: list[str], *, model: Any,
               trust_remote_code: bool, backend: str | None, max_seq_length: int | None, threads: int | None,
               on_progress: Any, device: str | None = "auto") -> tuple[np.ndarray, int, int]:
    """Vectors of the new rows: texts the pool holds reuse its vectors, the others are embedded
    with the pool's model in chunks saved to ``.partial`` (resumable)."""
    from fmal import encoders
    from fmal.io import TextTable

    mm = m.model
    backend = backend or m.backend
    if backend != m.backend:
        raise ModelMismatchError(f"{path}: pool was built with --backend {m.backend}, not {backend}; leave --backend out")
    encoder = encoders.load_encoder(model=None if model is None else str(model), trust_remote_code=trust_remote_code,
                                    backend=backend, max_seq_length=max_seq_length, threads=threads, device=device)
    if encoder.fingerprint != mm.fingerprint:
        raise ModelMismatchError(f"{path}: pool was built with model {mm.name!r}, not {encoder.name!r}; "
                                 f"append with --model {mm.name}")
    texts: list[str] = plan["texts"]
    first_row = {}
    for r, t in enumerate(old_texts):
        first_row.setdefault(t, r)
    fresh = [j for j, t in enumerate(texts) if t not in first_row]
    out = np.empty((len(texts), m.dim), dtype=np.float32)
    reuse = [j for j, t in enumerate(texts) if t in first_row]
    if reuse:
        X = open_embeddings(path / EMBEDDINGS, m.n_rows, m.dim, m.precision)
        out[reuse] = np.asarray(X[np.asarray([first_row[texts[j]] for j in reuse])], dtype=np.float32)
    n_embedded = reused = 0
    if fresh:
        sub_texts = [texts[j] for j in fresh]
        h = hashlib.sha256(("append\0" + str(m.input.fingerprint) + "\0" + str(m.n_rows)).encode())
        for t in sub_texts:
            h.update(t.encode("utf-8", "surrogatepass") + b"\0")
        sub = TextTable(Path(plan["record"]["path"]), "append", [str(k) for k in range(len(sub_texts))], sub_texts, "text", None,
                        "sha256:" + h.hexdigest(), None)  # type: ignore[arg-type]
        emb = m.embedding or {}
        settings = BuildSettings(batch_size=int(emb.get("batch_size") or 64), chunk_size=int(emb.get("chunk_size") or 2048))
        fill, _, n_embedded, reused = _embed_chunks(sub, encoder, path, settings, on_progress)
        Xf = np.empty((len(sub_texts), m.dim), dtype=np.float32)
        fill(Xf)
        out[fresh] = Xf
    return out, n_embedded, reused


def _extend_index(path: Path, stage: Path, m: Manifest, n_old: int, n_all: int) -> tuple[IndexRecord, dict[str, Any]]:
    """Read the pool's index, add the new rows (IVF: into the trained lists), re-measure recall,
    save it in ``stage``; return the manifest's new index record and the file's (size, sha256)."""
    import faiss

    from fmal import index as fmal_index

    info = m.index.to_json()
    try:
        idx = faiss.read_index(str(path / INDEX))
    except Exception:
        raise CorruptPoolError(f"{path / INDEX}: unreadable index; {pool_check.repair_hint(path, m)}") from None
    X = BlockMatrix(stage / EMBEDDINGS)  # read with pread: the pages read do not stay resident
    for _, block in X.iter_blocks(65536, start=n_old, stop=n_all):
        idx.add(block)
    if idx.ntotal != n_all:
        raise CorruptPoolError(f"{path / INDEX}: holds {idx.ntotal} vectors after the append, expected {n_all}")
    tuned = fmal_index.tune(idx, X, str(info.get("type", "flat")), int(info.get("nlist") or 0), factory=str(info.get("factory", "")))
    if warning := tuned.pop("recall_warning"):
        info["warnings"] = [*info.get("warnings", []), warning]
    info.update(tuned)
    info["ntotal"] = int(idx.ntotal)
    del X
    sha = fmal_index.save_index(idx, stage / INDEX)
    return IndexRecord.from_json(info), {"size": (stage / INDEX).stat().st_size, "sha256": sha}
