"""A labeled file -> a test split -> the pool's embeddings -> :func:`~fmal.simulate.loop.simulate_embeddings`.

The texts are embedded by the same stage as ``fmal embed`` (:func:`fmal.api.embed`), into a pool that
is reused while its input and model are unchanged.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmal import frames
from fmal.pool import open_pool
from fmal._defaults import DEFAULT_C
from fmal._validation import check_label, check_seed
from fmal.api import embed
from fmal.exceptions import InvalidInputError, LabelsError
from fmal.multilabel import SEP, canonical
from fmal.simulate.loop import simulate_embeddings
from fmal.simulate.multilabel import DEFAULT_STRATEGIES as ML_DEFAULT_STRATEGIES
from fmal.simulate.outputs import write_outputs
from fmal.simulate.results import SimulationResult
from fmal.simulate.spec import DEFAULT_STRATEGIES
from fmal.simulate.stats import DEFAULT_REACH

PathLike = str | os.PathLike[str]

def default_pool_name(data: PathLike) -> str:
    """A pool name from a file name: its stem, with characters pool names forbid replaced by "-"."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(data).stem).strip("-._") or "pool"
    return name[:128]


def _split(
    frame: pd.DataFrame, labels: np.ndarray, path: Path, test_col: str | None, test_value: str,
    test_size: float | None, random_state: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Boolean mask of test rows (among labeled rows) and a description of the split."""
    if test_col is not None and test_size is not None:
        raise InvalidInputError("give either --test-col or --test-size, not both")
    if test_col is not None:
        if test_col not in frame.columns:
            cols = ", ".join(map(str, frame.columns))
            raise InvalidInputError(f"{path}: no column {test_col!r} (columns: {cols}); pass --test-col")
        vals = frame[test_col].astype(str).str.strip().str.lower().to_numpy()
        is_test = vals == test_value.strip().lower()
        if not is_test.any() or is_test.all():
            seen = ", ".join(sorted(set(vals))[:10])
            raise InvalidInputError(
                f"{path}: column {test_col!r} must mark some rows, not all, as {test_value!r} (values: {seen}); "
                "pass --test-value or use --test-size"
            )
        return is_test, {"test_col": test_col, "test_value": test_value}
    size = 0.3 if test_size is None else test_size
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not 0 < size < 1:
        raise InvalidInputError(f"test_size must be a share between 0 and 1 (e.g. 0.3), got {size!r}")
    from sklearn.model_selection import train_test_split

    idx = np.arange(labels.size)
    _, counts = np.unique(labels, return_counts=True)
    stratify = labels if counts.min() >= 2 else None
    try:
        _, test_idx = train_test_split(idx, test_size=size, stratify=stratify, random_state=random_state)
    except ValueError as exc:
        raise InvalidInputError(f"test_size {size}: cannot split {labels.size} rows ({exc}); change --test-size") from None
    is_test = np.zeros(labels.size, dtype=bool)
    is_test[test_idx] = True
    return is_test, {"test_size": size, "stratified": stratify is not None, "split_seed": random_state}


def simulate(
    data: Any,
    *,
    label_col: str = "label",
    text_col: str = "text",
    id_col: str | None = None,
    test_col: str | None = None,
    test_value: str = "test",
    test_size: float | None = None,
    strategies: str | Sequence[str] = DEFAULT_STRATEGIES,
    seeds: int = 5,
    initial: int = 20,
    step: int = 20,
    max_labels: int = 200,
    pool: str | None = None,
    index_dir: PathLike | None = None,
    model: PathLike | None = None,
    output: PathLike | None = None,
    probe_c: float | str = DEFAULT_C,
    reach: Sequence[float] = DEFAULT_REACH,
    random_state: int = 0,
    on_embed_start: Callable[[int], None] | None = None,
    on_embed_progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    out: PathLike | None = None,
    multi_label: bool = False,
) -> SimulationResult:
    """Does active learning beat random on ``data`` (any file ``fmal embed`` reads, with gold labels)?

    Embeds ``data`` once into a pool (reused when it exists: ``pool`` defaults to the file's stem),
    holds out test rows (``test_col`` rows equal to ``test_value``, else a stratified ``test_size``
    split, 0.3 by default), then runs :func:`simulate_embeddings`. Rows with an empty label are left
    out. With ``output`` (a folder), writes the JSON, markdown, curves CSV and PNG there
    (``result.files``); ``out`` is its old name, deprecated. ``multi_label``: the label column holds
    several classes per row (``a|b``, or a JSON list in JSONL), scored by micro-F1 (the curves'
    accuracy), macro-F1 and subset accuracy; the default strategies are then the multi-label ones.
    """
    if out is not None:
        if output is not None:
            raise InvalidInputError("give output only (out is its old name)")
        warnings.warn("simulate(out=...) is deprecated; use output=...", DeprecationWarning, stacklevel=2)
        output = out
    random_state = check_seed(random_state)
    source = data  # a path, or the data itself (a DataFrame, a dict {id: text}, ...: fmal.frames)
    table = frames.texts_table(source, "data", text_col=text_col, id_col=id_col)
    data = table.path if frames.is_path(source) else Path(frames.describe(source, "data"))
    frame = table.frame
    if label_col not in frame.columns:
        cols = ", ".join(map(str, frame.columns))
        raise InvalidInputError(f"{data}: no column {label_col!r} (columns: {cols}); pass --label-col")
    raw = [canonical(v, f"{data}: row {i}", label_col) if multi_label else check_label(v, f"{data}: row {i}", label_col)
           for i, v in enumerate(frame[label_col].tolist(), start=1)]
    if not multi_label and any(v is not None and SEP in v for v in raw):  # multi-label hook: never mixed by accident
        row = next(i for i, v in enumerate(raw, start=1) if v is not None and SEP in v)
        raise LabelsError(f"{data}: row {row}: {label_col!r} is {raw[row - 1]!r}, several classes joined by {SEP!r}; "
                          "pass --multi-label to simulate a multi-label task")
    names = [n.strip() for n in (strategies.split(",") if isinstance(strategies, str) else strategies)]
    if multi_label and names == list(DEFAULT_STRATEGIES):  # the single-label default reads a softmax
        strategies = ML_DEFAULT_STRATEGIES
    has_label = np.asarray([v is not None for v in raw], dtype=bool)
    if not has_label.any():
        raise LabelsError(f"{data}: column {label_col!r} is empty in every row; simulate needs gold labels")
    labels_all = np.asarray([v if v is not None else "" for v in raw], dtype=object)
    present = np.unique(labels_all[has_label].astype(str))
    if present.size < 2:
        raise LabelsError(f"{data}: column {label_col!r} has a single class ({str(present[0])!r}); "
                          "simulate needs two or more classes: check --label-col")
    if test_col is not None:
        is_test_all, split_info = _split(frame, labels_all, data, test_col, test_value, test_size, random_state)
    else:  # a stratified split of the labeled rows only
        lab_idx = np.nonzero(has_label)[0]
        mask, split_info = _split(frame.iloc[lab_idx], labels_all[lab_idx].astype(str), data, None, test_value,
                                  test_size, random_state)
        is_test_all = np.zeros(len(frame), dtype=bool)
        is_test_all[lab_idx[mask]] = True

    pool_name = pool or (default_pool_name(data) if frames.is_path(source) else f"data-{table.fingerprint.split(':')[-1][:12]}")
    emb = embed(source, pool_name, index_dir=index_dir, text_col=text_col, id_col=id_col, model=model,
                on_start=on_embed_start, on_progress=on_embed_progress)
    p = open_pool(emb.pool_path)
    rows = p.rows_of(table.ids, source=str(data))
    train = np.nonzero(has_label & ~is_test_all)[0]
    test = np.nonzero(has_label & is_test_all)[0]
    Xall = p.embeddings
    X = np.asarray(Xall[rows[train]], dtype=np.float32)
    X_test = np.asarray(Xall[rows[test]], dtype=np.float32)
    model_info = p.manifest.model
    info = {"data": str(data), "pool": str(p.path), "model": model_info.name,
            "backend": model_info.backend, "model_fingerprint": model_info.fingerprint,
            "label_col": label_col, "split": split_info, "n_rows": len(frame),
            "n_unlabeled_left_out": int((~has_label).sum()), "embedded_now": int(emb.n_embedded),
            "seconds_embed": round(emb.seconds, 3)}
    result = simulate_embeddings(
        X, labels_all[train].astype(str), X_test, labels_all[test].astype(str), strategies=strategies, seeds=seeds,
        initial=initial, step=step, max_labels=max_labels, probe_c=probe_c, reach=reach, random_state=random_state,
        on_start=on_start, on_progress=on_progress, info=info, multi_label=multi_label,
    )
    if output is not None:
        write_outputs(result, output)
    return result
