"""Data as it is, into fmal: every API parameter that takes a file also takes the data itself,
converted here, in one place per kind.

* a **texts table** (``embed(input=...)``, ``simulate(data=...)``): a file or folder path, a
  DataFrame (``text_col``, ``id_col`` as for files), a list / tuple / 1-D array / Series of texts,
  or a dict {id: text};
* a **labels mapping** (``seed(labels=...)``, ``query(labels=...)``, ``import_labels(file=...)``):
  a file path, a DataFrame with ``id`` and ``label`` columns, a dict {id: label}, a Series (index:
  ids, values: labels), or (id, label) pairs (a list of pairs or an ``[n, 2]`` array).

Anything else is fmal's one-line InvalidInputError naming the parameter and what it accepts. The
rules are those of the file readers (:mod:`fmal.io`): blank texts and ids are errors, blank labels
are skipped, ids are unique, missing ids are made from the texts.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

from fmal.exceptions import InvalidInputError, LabelsError
from fmal.io import ShardJoiner, TextTable, _texts_and_ids, label_rows, labels_dict, load_texts

TextsLike = Union[str, "os.PathLike[str]", pd.DataFrame, pd.Series, list, tuple, np.ndarray, Mapping]
LabelsLike = Union[str, "os.PathLike[str]", pd.DataFrame, pd.Series, list, tuple, np.ndarray, Mapping]

TEXTS_ACCEPTS = "a file or folder path, a DataFrame, a list or array of texts, or a dict {id: text}"
LABELS_ACCEPTS = ("a file path, a DataFrame with id and label columns, a dict {id: label}, a Series (index: ids) "
                  "or (id, label) pairs")


def is_path(value: object) -> bool:
    return isinstance(value, (str, os.PathLike))


def describe(value: object, param: str) -> str:
    """How errors and records name ``value``: the path, or ``param (DataFrame)``."""
    return str(value) if is_path(value) else f"{param} ({type(value).__name__})"


def _kind_error(param: str, accepts: str, value: object, error: type[InvalidInputError] = InvalidInputError) -> InvalidInputError:
    return error(f"{param}: expected {accepts}; got {type(value).__name__}")


def _texts_frame(value: object, param: str, text_col: str) -> pd.DataFrame | None:
    """``value`` as a DataFrame with the texts in ``text_col`` (and ``id`` for a dict), or None."""
    if isinstance(value, pd.DataFrame):
        return value.reset_index() if value.index.name == "id" and "id" not in value.columns else value
    if isinstance(value, Mapping):
        return pd.DataFrame({"id": [str(k) for k in value.keys()], text_col: list(value.values())})
    if isinstance(value, pd.Series):
        return pd.DataFrame({text_col: value.tolist()})
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise InvalidInputError(f"{param}: an array of texts must be 1-D, got shape {value.shape}; pass a DataFrame for columns")
        return pd.DataFrame({text_col: value.tolist()})
    if isinstance(value, (list, tuple)):
        if any(not isinstance(v, str) for v in value):
            bad = next(i for i, v in enumerate(value) if not isinstance(v, str))
            raise InvalidInputError(f"{param}: item {bad + 1} is a {type(value[bad]).__name__}, not a text; pass a list of strings")
        return pd.DataFrame({text_col: list(value)})
    return None


def texts_table(value: Any, param: str = "input", *, text_col: str = "text", id_col: str | None = None) -> TextTable:
    """The validated texts (and ids) of ``value``: a path is read by :func:`fmal.io.load_texts`;
    in-memory data gets the same checks, and a fingerprint from its content (the same texts and
    ids give the same pool)."""
    if is_path(value):
        return load_texts(value, text_col=text_col, id_col=id_col)
    frame = _texts_frame(value, param, text_col)
    if frame is None:
        raise _kind_error(param, TEXTS_ACCEPTS, value)
    where = Path(describe(value, param))
    texts, ids, used = _texts_and_ids(where, frame, "dataframe", text_col, id_col)
    joiner = ShardJoiner([where])
    joiner.add(texts, ids, used)
    ids_out = joiner.ids()
    h = hashlib.sha256()
    h.update(f"{text_col}\0{used}\0".encode())
    for i, t in zip(ids_out if ids is not None else [""] * len(texts), texts):
        h.update(i.encode("utf-8", "surrogatepass") + b"\0" + t.encode("utf-8", "surrogatepass") + b"\0")
    return TextTable(where, type(value).__name__, ids_out, texts, text_col, used, "sha256:" + h.hexdigest(), frame)


def _labels_frame(value: object, param: str) -> pd.DataFrame | None:
    if isinstance(value, pd.DataFrame):
        return value.reset_index() if value.index.name == "id" and "id" not in value.columns else value
    if isinstance(value, Mapping):
        return pd.DataFrame({"id": list(value.keys()), "label": list(value.values())})
    if isinstance(value, pd.Series):
        return pd.DataFrame({"id": value.index.tolist(), "label": value.tolist()})
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = list(value)
        if any(not isinstance(p, (list, tuple, np.ndarray)) or len(p) != 2 for p in arr):
            raise LabelsError(f"{param}: a list or array of labels must hold (id, label) pairs; {LABELS_ACCEPTS} also work")
        return pd.DataFrame({"id": [p[0] for p in arr], "label": [p[1] for p in arr]})
    return None


def label_answers(value: Any, param: str = "labels") -> list[tuple[int, str, str]]:
    """(row from 1, id, label) of each labeled row of in-memory labels (blank labels skipped)."""
    frame = _labels_frame(value, param)
    if frame is None:
        raise _kind_error(param, LABELS_ACCEPTS, value, LabelsError)
    return label_rows(frame, describe(value, param))


def labels_mapping(value: Any, param: str = "labels") -> dict[str, str]:
    """{id: label} of ``value``: a path read by :func:`fmal.io.read_labels`, or in-memory labels
    (an id with two different labels is an error)."""
    from fmal.io import read_labels

    if is_path(value):
        return read_labels(value)
    return labels_dict(label_answers(value, param), describe(value, param))


def one_row(obj: Any) -> pd.DataFrame:
    """A result dataclass as a one-row DataFrame of its scalar fields (paths as strings)."""
    import dataclasses

    row = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, Path):
            v = str(v)
        if v is None or isinstance(v, (str, int, float, bool, np.generic)):
            row[f.name] = v
        elif isinstance(v, (tuple, list)) and all(isinstance(x, (str, int, float, Path)) for x in v):
            row[f.name] = ", ".join(map(str, v))
    return pd.DataFrame([row])
