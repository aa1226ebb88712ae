"""What a person made in a pool folder (labels, rounds) and how ``fmal embed --overwrite`` keeps it.

Everything is read through :class:`fmal.session.Session` (``labels.db``, or an unmigrated pool's
``labels.csv`` + ``session.json``). Nothing here deletes a person's work: ``--drop-labels`` moves
it into ``backup-<UTC time>/`` inside the pool folder, and dropping the labels of ids that left
the input first copies the database there.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import sqlite3
from pathlib import Path

from fmal.exceptions import CorruptPoolError, PoolExistsError
from fmal.session.core import Session
from fmal.session.db import DB, LABELS, MIGRATED, ROUNDS, SESSION

# everything the session owns: kept by --overwrite --keep-labels, moved to a backup otherwise
SESSION_OWNED = (DB, f"{DB}-wal", f"{DB}-shm", SESSION, LABELS, SESSION + MIGRATED, LABELS + MIGRATED, ROUNDS, "probes")


def has_human_work(path: Path) -> int:
    """How many labels and rounds a person made in the pool folder ``path`` (0: none). A store that
    exists but cannot be read counts as 1: it may hold labels, so it is never treated as empty."""
    try:
        s = Session(path)
    except CorruptPoolError:
        return 1
    return len(s.labels) + len(s.rounds)


def labeled_ids(path: Path) -> set[str]:
    """Every id that holds a label in the pool folder ``path``."""
    return set(Session(path).labels)


def refuse_overwrite(path: Path, labels: str | None) -> None:
    """``--overwrite`` on a pool with labels needs ``labels`` ("keep" or "drop") to say what to do."""
    if labels is None and (n := has_human_work(path)):
        raise PoolExistsError(
            f"{path}: the pool holds {n} label(s) and round(s) and --overwrite would discard them; pass --keep-labels "
            "(keep those whose id is still in the new input) or --drop-labels (move them to a backup in the pool folder)"
        )


def backup_dir(path: Path) -> Path:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out, i = path / f"backup-{stamp}", 1
    while out.exists():
        out, i = path / f"backup-{stamp}-{i}", i + 1
    return out


def move_to_backup(path: Path) -> Path | None:
    """Move every session-owned file of ``path`` into a fresh backup folder (renames: nothing is
    copied or deleted); return it, None when there was nothing to move. Called under the pool lock."""
    present = [path / n for n in SESSION_OWNED if (path / n).exists()]
    if not present:
        return None
    out = backup_dir(path)
    out.mkdir()
    for p in present:
        os.replace(p, out / p.name)
    return out


def drop_vanished(path: Path, vanished: set[str]) -> Path:
    """Copy the session into a backup folder (the database through SQLite's backup API, so the
    copy is consistent), then remove the labels and picks of ``vanished`` ids in one transaction;
    return the backup."""
    out = backup_dir(path)
    out.mkdir()
    if (path / DB).exists():
        src, dst = sqlite3.connect(path / DB), sqlite3.connect(out / DB)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
    for name in (SESSION, LABELS):
        if (path / name).exists():
            shutil.copy2(path / name, out / name)
    Session(path).drop_ids(vanished)
    return out
