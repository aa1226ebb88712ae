"""The files rendered from labels.db, and the files it records: ``labels.csv`` (id,label) and each
round's ``rounds/round-NNN-KIND-STRATEGY.csv``, rewritten (atomically) after each commit; files
an undo queued for deletion; temporary files a killed writer left.

A view is never the truth: a stale or missing one is rendered again by the next writer
(``meta.views_generation`` lags ``meta.generation`` until the views of a commit are written).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from fmal._atomic import write_bytes
from fmal._faults import crash_point
from fmal._lazy import lazy_module
from fmal.session.db import LABELS, ROUNDS
from fmal.session.labels import Label
from fmal.session.rounds import Round, round_frame

pd = lazy_module("pandas")


def file_key(pool_dir: Path, path: Path) -> str:
    """How ``files`` names a path: relative to the pool folder when inside it, else absolute."""
    full = (Path.cwd() / path).resolve()
    base = pool_dir.resolve()
    if full == base or base not in full.parents:
        return str(full)
    return full.relative_to(base).as_posix()


def inside(base: Path, rel: str) -> Path | None:
    """``base / rel`` when it resolves inside ``base`` (never a path outside the pool)."""
    if os.path.isabs(rel):
        return None
    target = (base / rel).resolve()
    root = base.resolve()
    return target if root in target.parents else None


def render_labels(pool_dir: Path, labels: dict[str, Label]) -> None:
    """Write ``labels.csv`` (id,label) from the stored labels (not when there are none and never were)."""
    if not labels and not (pool_dir / LABELS).exists():
        return
    frame = pd.DataFrame({"id": list(labels), "label": [v.label for v in labels.values()]}, dtype=object)
    write_bytes(pool_dir / LABELS, frame.to_csv(index=False).encode("utf-8"))
    crash_point("view.labels")


def render_round(pool_dir: Path, conn: sqlite3.Connection, rec: Round) -> None:
    """Write the round's pool-owned picks CSV(s) from the database, unless one already lists
    the round's ids in order (a picks file a person is filling in is left alone)."""
    data = None
    for (p,) in conn.execute("SELECT path FROM files WHERE round = ? AND owned = 1 AND kind = 'picks' AND state = 'live'",
                             (rec.round,)).fetchall():
        target = inside(pool_dir, p)
        if target is None or _lists_ids(target, rec.ids):
            continue
        if data is None:
            data = round_frame(rec).to_csv(index=False).encode("utf-8")
        write_bytes(target, data)
        crash_point("view.round")


def views_missing(pool_dir: Path, conn: sqlite3.Connection, has_labels: bool) -> bool:
    """True when a view the database records (or labels.csv, when there are labels) is not on disk."""
    if has_labels and not (pool_dir / LABELS).exists():
        return True
    return any(not (pool_dir / p).exists()
               for (p,) in conn.execute("SELECT path FROM files WHERE owned = 1 AND kind = 'picks' AND state = 'live'"))


def finish_deletions(pool_dir: Path, conn: sqlite3.Connection) -> list[Path]:
    """Delete the files an undo queued (owned by the pool and inside its folder), then forget them."""
    removed = []
    for (p,) in conn.execute("SELECT path FROM files WHERE state = 'deleting'").fetchall():
        target = inside(pool_dir, p)
        if target is not None and target.is_file():
            target.unlink()
            removed.append(target)
            crash_point("undo.file-deleted")
        conn.execute("DELETE FROM files WHERE path = ?", (p,))
    return removed


def clean_stale_tmp(pool_dir: Path) -> None:
    """Remove the temporary files (``.NAME.*.tmp``) a killed writer left in the folders the
    session writes. Only called under the write lock, so no live writer owns them."""
    for folder in (pool_dir, pool_dir / ROUNDS, pool_dir / "probes"):
        if folder.is_dir():
            for f in folder.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    f.unlink()


def _lists_ids(path: Path, ids: list[str]) -> bool:
    """True when the CSV at ``path`` has an ``id`` column equal to ``ids``."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, usecols=["id"])["id"].tolist() == ids
    except Exception:  # missing, unreadable, no id column: render it again
        return False
