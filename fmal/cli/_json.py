"""``--json``: every command's result as one JSON document on stdout.

The document (schema ``fmal-cli``, version 1)::

    {"format": "fmal-cli", "format_version": 1, "fmal_version": "...", "command": "seed",
     "ok": true, "exit_code": 0, "result": {...}, "warnings": ["..."]}

``result`` is the API's result dataclass (``fmal.api``), field for field: DataFrames become lists of
row objects with every column (picks, rounds, audit tables, class balance), numpy values plain
numbers, NaN and infinity ``null``, paths strings; a result with ``to_dict()`` (a Selection: its
fields plus ``n_picks``, ``ids`` and the stopping signal ``stop``; a simulation: its report) gives
that instead. ``warnings`` holds what fmal logged as a warning while the command ran. Everything a
person reads (tables, progress bars, log lines) goes to stderr; on an error stdout stays empty and
stderr holds the usual one ``error:`` line (exit code 2).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import math
import sys
import warnings as _warnings
from collections.abc import Iterator
from pathlib import PurePath
from typing import Any, TextIO

SCHEMA = "fmal-cli"
SCHEMA_VERSION = 1

#: one line for each command's --help
HELP = ("Print one JSON document on stdout instead of the text output (which goes to stderr): "
        "{{format, format_version, fmal_version, command, ok, exit_code, result, warnings}}; result holds {what}.")


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values: dataclasses (or their ``to_dict()``) as objects, DataFrames as
    lists of row objects, numpy values as numbers, NaN/inf as None, paths and times as strings."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    import numpy as np
    import pandas as pd

    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, pd.DataFrame):
        cols = [str(c) for c in obj.columns]
        return [dict(zip(cols, (to_jsonable(v) for v in row))) for row in obj.itertuples(index=False, name=None)]
    if isinstance(obj, pd.Series):
        return [to_jsonable(v) for v in obj.tolist()]
    if obj is pd.NaT or obj is pd.NA:
        return None
    if isinstance(obj, (PurePath,)):
        return str(obj)
    if isinstance(obj, (_dt.datetime, _dt.date, pd.Timestamp)):
        return obj.isoformat()
    if hasattr(obj, "to_dict") and not isinstance(obj, type) and callable(obj.to_dict) and not isinstance(obj, dict):
        return to_jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj) if not f.name.startswith("_")}
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):
        return to_jsonable(obj._asdict())
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [to_jsonable(v) for v in items]
    return str(obj)


def document(command: str, result: Any, warnings: list[str], exit_code: int = 0) -> dict[str, Any]:
    """The JSON document of one command run."""
    from fmal._version import __version__

    return {"format": SCHEMA, "format_version": SCHEMA_VERSION, "fmal_version": __version__, "command": command,
            "ok": exit_code == 0, "exit_code": exit_code, "result": to_jsonable(result), "warnings": list(warnings)}


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, allow_nan=False)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def json_mode() -> Iterator[tuple[TextIO, list[str]]]:
    """Send what the command prints to stderr and collect fmal's warnings (logged, or Python
    warnings: also shown on stderr); yields (the real stdout, the warnings list)."""
    real = sys.stdout
    handler = _Collect()
    logger = logging.getLogger("fmal")
    logger.addHandler(handler)
    collected: list[str] = []
    try:
        with _warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(sys.stderr):
            _warnings.simplefilter("default")
            try:
                yield real, collected
            finally:
                for w in caught:
                    msg = f"{w.category.__name__}: {w.message}"
                    sys.stderr.write(f"warning: {msg}\n")
                    collected.append(msg)
    finally:
        logger.removeHandler(handler)
        collected[:0] = handler.messages


class ResultExit(Exception):
    """A command that has a result but exits non-zero (``fmal info`` on a damaged pool): the
    result is printed (as JSON with --json), then the process exits with ``code``."""

    def __init__(self, result: Any, code: int) -> None:
        super().__init__(code)
        self.result = result
        self.code = code
