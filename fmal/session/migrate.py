"""Pools of older fmal versions: ``session.json`` (rounds, relabels) and ``labels.csv``
(id,label[,source]) read strictly as they are, and copied into labels.db by the first write.

The copy runs inside the first write's transaction; the legacy files are renamed ``*.migrated``
(a backup) only after the commit, and ``meta.migration = 'pending-rename'`` lets the next writer
finish renames a crash interrupted. Once the database exists the legacy files are ignored.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmal._faults import crash_point
from fmal._lazy import lazy_module
from fmal.exceptions import CorruptPoolError
from fmal.session.db import LABELS, MIGRATED, SESSION, fsync_dir, meta, now, set_meta
from fmal.session.labels import Label
from fmal.session.rounds import Round, insert_round, view_path
from fmal.session.views import file_key

pd = lazy_module("pandas")


@dataclass
class LegacyState:
    """What an unmigrated pool folder holds, checked."""

    rounds: list[Round] = field(default_factory=list)
    relabels: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, Label] = field(default_factory=dict)


def read_legacy(pool_dir: Path) -> LegacyState:
    """Read an unmigrated pool's session.json and labels.csv, checked, without writing."""
    rounds, relabels = _read_session(pool_dir / SESSION)
    return LegacyState(rounds, relabels, _read_labels(pool_dir / LABELS))


def migrate(conn: sqlite3.Connection, pool_dir: Path, legacy: LegacyState) -> tuple[int, int, int]:
    """Copy the legacy state into the open transaction; returns the labels, relabels and rounds copied."""
    stamp = now()
    for rid, lab in legacy.labels.items():
        seq = conn.execute("INSERT INTO answers(id, value, source, time, outcome) VALUES (?, ?, ?, ?, 'migrated')",
                           (rid, lab.label, lab.source or LABELS, stamp)).lastrowid
        conn.execute("INSERT INTO labels(id, label, source, answer) VALUES (?, ?, ?, ?)", (rid, lab.label, lab.source or LABELS, seq))
    for r in legacy.relabels:
        conn.execute("INSERT INTO relabels(id, old, new, source, time) VALUES (?, ?, ?, ?, ?)",
                     (r["id"], r["old"], r["new"], r.get("source", ""), r.get("time", stamp)))
    texts = _pool_texts(pool_dir, {i for r in legacy.rounds for i in r.ids})
    for old in legacy.rounds:
        rec = old.with_(created=old.created or stamp, texts=[texts.get(i) for i in old.ids])
        view = view_path(pool_dir, rec.round, rec.kind, rec.strategy)
        insert_round(conn, rec, file_key(pool_dir, view))
        if rec.output:
            key = file_key(pool_dir, Path(rec.output))
            if not os.path.isabs(key) and key != file_key(pool_dir, view):
                conn.execute("INSERT OR REPLACE INTO files VALUES (?, ?, 'picks', 1, 'live')", (key, rec.round))
            elif os.path.isabs(key):
                conn.execute("INSERT OR REPLACE INTO files VALUES (?, ?, 'output', 0, 'live')", (key, rec.round))
        probe = pool_dir / "probes" / f"round-{rec.round:03d}.json"
        if probe.exists():
            conn.execute("INSERT OR REPLACE INTO files VALUES (?, ?, 'probe', 1, 'live')", (f"probes/{probe.name}", rec.round))
    conn.execute("INSERT INTO meta VALUES ('migration', 'pending-rename')")
    return len(legacy.labels), len(legacy.relabels), len(legacy.rounds)


def finish_migration(conn: sqlite3.Connection, pool_dir: Path) -> bool:
    """Rename the legacy files once their content is committed (idempotent: a crash between the
    commit and the renames is finished by the next writer). True when it finished one (the views
    are then stale: ``views_generation`` is reset)."""
    if meta(conn, "migration", "") != "pending-rename":
        return False
    for name in (LABELS, SESSION):
        src, dst = pool_dir / name, pool_dir / (name + MIGRATED)
        if src.exists() and not dst.exists():
            os.replace(src, dst)
            crash_point("migrate.renamed")
    fsync_dir(pool_dir)
    set_meta(conn, "migration", "done")
    set_meta(conn, "views_generation", "-1")
    return True


def _pool_texts(pool_dir: Path, ids: set[str]) -> dict[str, str]:
    """The pool's texts of ``ids`` (empty when the pool has no rows file yet)."""
    if not ids:
        return {}
    try:
        rows = pd.read_parquet(pool_dir / "rows.parquet", columns=["id", "text"])
    except Exception:  # no pool rows (yet): texts are filled from the pool when a round is shown
        return {}
    return {i: t for i, t in zip(rows["id"].astype(str), rows["text"]) if i in ids}


def _error(f: Path, what: str) -> CorruptPoolError:
    return CorruptPoolError(f"{f}: {what}; restore it from a backup, or move it aside to start the pool's history over")


def _read_session(f: Path) -> tuple[list[Round], list[dict[str, Any]]]:
    """session.json of an older fmal, checked: rounds with ids, relabels with id/old/new."""
    if not f.exists():
        return [], []
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        raise CorruptPoolError(f"{f}: not valid JSON; restore it from a backup or delete it to start over") from None
    if not isinstance(data, dict):
        raise _error(f, f"a JSON {type(data).__name__}, expected an object with 'rounds' and 'relabels'")
    rounds, relabels = data.get("rounds", []), data.get("relabels", [])
    if not isinstance(rounds, list) or not isinstance(relabels, list):
        raise _error(f, "'rounds' and 'relabels' must be lists")
    out = []
    for n, r in enumerate(rounds, 1):
        where = f"round {n}"
        if not isinstance(r, dict):
            raise _error(f, f"{where} is not an object")
        ids = r.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in ids):
            raise _error(f, f"{where} has no list of ids")
        if not isinstance(r.get("round", n), int) or not isinstance(r.get("kind", ""), str) or not isinstance(r.get("strategy", ""), str):
            raise _error(f, f"{where}: 'round' must be a number, 'kind' and 'strategy' text")
        cols = r.get("columns", {}) or {}
        if not isinstance(cols, dict) or not all(isinstance(v, list) and len(v) == len(ids) for v in cols.values()):
            raise _error(f, f"{where}: 'columns' must map names to one value per id")
        if not isinstance(r.get("info", {}) or {}, dict):
            raise _error(f, f"{where}: 'info' must be an object")
        out.append(Round.from_json({**r, "round": int(r.get("round", n)), "kind": r.get("kind", "seed"),
                                    "strategy": r.get("strategy", "unknown"), "ids": [str(i) for i in ids], "columns": cols,
                                    "info": r.get("info") or {}}))
    numbers = [r.round for r in out]
    if numbers != sorted(set(numbers)):
        raise _error(f, "round numbers are repeated or out of order")
    rel = []
    for n, r in enumerate(relabels, 1):
        if not isinstance(r, dict) or not all(isinstance(r.get(k), str) for k in ("id", "old", "new")):
            raise _error(f, f"relabel {n} needs text 'id', 'old' and 'new'")
        rel.append({"id": r["id"], "old": r["old"], "new": r["new"], "source": str(r.get("source", "")),
                    "time": str(r.get("time", ""))})
    return out, rel


def _read_labels(f: Path) -> dict[str, Label]:
    """labels.csv of an older fmal (id,label[,source]), read strictly: a row cut short, another
    column set or a repeated id is an error, never a silent loss."""
    if not f.exists():
        return {}
    try:
        raw = f.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        raise CorruptPoolError(f"{f}: unreadable; restore it from a backup") from None
    if raw and not raw.endswith("\n"):
        raise _error(f, "the last row is cut short (no line end): the file was not written whole")
    try:
        rows = list(csv.reader(io.StringIO(raw, newline="")))
    except csv.Error as exc:
        raise _error(f, f"not valid CSV ({exc})") from None
    if not rows:
        return {}
    header = rows[0]
    if header[:2] != ["id", "label"] or not set(header) <= {"id", "label", "source"} or len(set(header)) != len(header):
        raise _error(f, f"columns {header}, expected id,label (and optionally source)")
    out: dict[str, Label] = {}
    for n, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise _error(f, f"line {n} has {len(row)} field(s), expected {len(header)}")
        rec = dict(zip(header, row))
        if rec["id"] in out:
            raise _error(f, f"line {n}: id {rec['id']!r} appears twice")
        if rec["label"] == "":
            continue
        out[rec["id"]] = Label(rec["id"], rec["label"], rec.get("source", ""))
    return out
