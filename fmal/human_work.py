"""What a person made in a pool folder (labels, rounds) and how ``fmal embed --overwrite`` keeps it.

Read without depending on the session store's internals: ``labels.db`` (SQLite, opened read-only,
``SELECT ... FROM labels``), or the older ``labels.csv`` + ``session.json``. Nothing here deletes
a person's work: ``--drop-labels`` moves it into ``backup-<UTC time>/`` inside the pool folder.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import sqlite3
from pathlib import Path

from fmal._atomic import write_bytes, write_json
from fmal.exceptions import PoolExistsError

LABELS_DB = "labels.db"
SESSION = "session.json"
LABELS_CSV = "labels.csv"
# everything the session owns: kept by --overwrite --keep-labels, moved to a backup otherwise
SESSION_OWNED = (LABELS_DB, f"{LABELS_DB}-wal", f"{LABELS_DB}-shm", SESSION, LABELS_CSV, "rounds", "probes")


def _db_ids(db: Path) -> list[str] | None:
    """Labeled ids in ``labels.db``: [] when it has no labels table, None when it cannot be read."""
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        return [str(r[0]) for r in con.execute("SELECT id FROM labels")]
    except sqlite3.OperationalError as e:
        return [] if "no such table" in str(e) else None
    except sqlite3.Error:
        return None
    finally:
        con.close()


def _csv_ids(f: Path) -> list[str] | None:
    try:
        with open(f, newline="", encoding="utf-8") as fh:
            return [row.get("id") or "" for row in csv.DictReader(fh)]
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def _session_rounds(f: Path) -> list[dict] | None:
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    rounds = data.get("rounds") if isinstance(data, dict) else None
    return [r for r in rounds if isinstance(r, dict)] if isinstance(rounds, list) else []


def has_human_work(path: Path) -> int:
    """How many labels and rounds a person made in the pool folder ``path`` (0: none). A store that
    exists but cannot be read counts as 1: it may hold labels, so it is never treated as empty."""
    count = 0
    if (db := path / LABELS_DB).exists():
        ids = _db_ids(db)
        count += 1 if ids is None else len(ids)
    if (f := path / LABELS_CSV).exists():
        ids = _csv_ids(f)
        count += 1 if ids is None else len(ids)
    if (f := path / SESSION).exists():
        rounds = _session_rounds(f)
        count += 1 if rounds is None else len(rounds)
    return count


def labeled_ids(path: Path) -> set[str]:
    """Every id that holds a label in the pool folder ``path`` (labels.db and labels.csv)."""
    out: set[str] = set()
    if (db := path / LABELS_DB).exists():
        out.update(_db_ids(db) or [])
    if (f := path / LABELS_CSV).exists():
        out.update(_csv_ids(f) or [])
    return out


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
    copied or deleted); return it, None when there was nothing to move."""
    present = [path / n for n in SESSION_OWNED if (path / n).exists()]
    if not present:
        return None
    out = backup_dir(path)
    out.mkdir()
    for p in present:
        os.replace(p, out / p.name)
    return out


def drop_vanished(path: Path, vanished: set[str]) -> Path:
    """Remove the labels and picks of ``vanished`` ids from labels.csv and session.json, after
    copying both into a backup folder; return the backup. (``labels.db`` is the store's to edit.)"""
    if (path / LABELS_DB).exists():
        raise PoolExistsError(
            f"{path / LABELS_DB}: dropping the labels of {len(vanished)} id(s) missing from the new input is not "
            "supported for this store yet; fix the input, or pass --drop-labels without --keep-labels to move all labels to a backup"
        )
    out = backup_dir(path)
    out.mkdir()
    for name in (LABELS_CSV, SESSION):
        if (path / name).exists():
            write_bytes(out / name, (path / name).read_bytes())
    if (f := path / LABELS_CSV).exists():
        with open(f, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields, rows = reader.fieldnames or ["id", "label"], [r for r in reader if r.get("id") not in vanished]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        write_bytes(f, buf.getvalue().encode("utf-8"))
    if (f := path / SESSION).exists():
        data = json.loads(f.read_text(encoding="utf-8"))
        for r in data.get("rounds", []):
            keep = [i for i, x in enumerate(r.get("ids", [])) if x not in vanished]
            r["columns"] = {k: [v[i] for i in keep] for k, v in r.get("columns", {}).items()}
            r["ids"] = [r["ids"][i] for i in keep]
        data["relabels"] = [x for x in data.get("relabels", []) if x.get("id") not in vanished]
        write_json(f, data)
    return out
