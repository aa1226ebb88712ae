"""labels.db itself: file names, the schema and its upgrade, connections, the ``meta`` table.

Every connection runs in autocommit mode (``isolation_level=None``) with WAL and
``synchronous=FULL``: transactions are opened explicitly (``BEGIN IMMEDIATE``) by
:meth:`fmal.session.Session.transaction`, so a commit is durable once it returns.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from fmal.exceptions import CorruptPoolError

DB = "labels.db"
SESSION = "session.json"  # legacy: migrated on the first write
LABELS = "labels.csv"  # a view (legacy pools: the labels themselves, until migrated)
ROUNDS = "rounds"
MIGRATED = ".migrated"
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE answers(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, value TEXT NOT NULL, source TEXT NOT NULL,
    annotator TEXT, time TEXT NOT NULL, round INTEGER,
    outcome TEXT NOT NULL CHECK (outcome IN ('added', 'replaced', 'kept', 'unchanged', 'migrated', 'vote')));
CREATE INDEX answers_id ON answers(id);
CREATE TABLE classes(pos INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE sync_tasks(target TEXT NOT NULL, id TEXT NOT NULL, task TEXT NOT NULL, round INTEGER, PRIMARY KEY (target, id));
CREATE TABLE sync_annotations(
    target TEXT NOT NULL, annotation TEXT NOT NULL, updated TEXT NOT NULL, task TEXT, PRIMARY KEY (target, annotation));
CREATE TABLE labels(id TEXT PRIMARY KEY, label TEXT NOT NULL, source TEXT NOT NULL, answer INTEGER REFERENCES answers(seq));
CREATE TABLE relabels(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, old TEXT NOT NULL, new TEXT NOT NULL,
    source TEXT NOT NULL, time TEXT NOT NULL, answer INTEGER REFERENCES answers(seq));
CREATE TABLE rounds(
    round INTEGER PRIMARY KEY, kind TEXT NOT NULL, strategy TEXT NOT NULL, key TEXT, created TEXT NOT NULL,
    output TEXT, record TEXT NOT NULL, info TEXT NOT NULL, columns TEXT NOT NULL);
CREATE TABLE picks(
    round INTEGER NOT NULL REFERENCES rounds(round), pos INTEGER NOT NULL, id TEXT NOT NULL, text TEXT,
    vals TEXT NOT NULL, PRIMARY KEY (round, pos));
CREATE INDEX picks_id ON picks(id);
CREATE TABLE files(
    path TEXT PRIMARY KEY, round INTEGER, kind TEXT NOT NULL, owned INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'live' CHECK (state IN ('live', 'deleting')));
"""

#: schema 1 -> 2: the pool's label set, sync bookkeeping, and answers that may be votes of a consensus
#: (SQLite cannot change a CHECK: the answers table is copied into a new one, seq numbers kept)
_UPGRADE_2 = """
CREATE TABLE classes(pos INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE sync_tasks(target TEXT NOT NULL, id TEXT NOT NULL, task TEXT NOT NULL, round INTEGER, PRIMARY KEY (target, id));
CREATE TABLE sync_annotations(
    target TEXT NOT NULL, annotation TEXT NOT NULL, updated TEXT NOT NULL, task TEXT, PRIMARY KEY (target, annotation));
CREATE TABLE answers_v2(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, value TEXT NOT NULL, source TEXT NOT NULL,
    annotator TEXT, time TEXT NOT NULL, round INTEGER,
    outcome TEXT NOT NULL CHECK (outcome IN ('added', 'replaced', 'kept', 'unchanged', 'migrated', 'vote')));
INSERT INTO answers_v2(seq, id, value, source, annotator, time, round, outcome)
    SELECT seq, id, value, source, annotator, time, round, outcome FROM answers ORDER BY seq;
DROP TABLE answers;
ALTER TABLE answers_v2 RENAME TO answers;
CREATE INDEX answers_id ON answers(id);
UPDATE meta SET value = '2' WHERE key = 'schema_version'
"""


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated statements one by one (``executescript`` would commit the open transaction)."""
    for stmt in script.strip().split(";"):
        if stmt.strip():
            conn.execute(stmt)


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables of this schema inside the open transaction."""
    _run_script(conn, _SCHEMA)
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [("schema_version", str(SCHEMA_VERSION)),
                                                        ("generation", "0"), ("views_generation", "-1")])


def upgrade(conn: sqlite3.Connection) -> bool:
    """Bring an older database to this schema inside the open transaction (schema 1: no label set,
    no sync bookkeeping, answers without votes). True when it changed anything."""
    if int(meta(conn, "schema_version", str(SCHEMA_VERSION))) >= 2:
        return False
    _run_script(conn, _UPGRADE_2)
    return True


def connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=60.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    except sqlite3.DatabaseError as exc:
        raise CorruptPoolError(f"{path}: not a readable fmal labels database ({exc}); restore it from a backup") from None
    return conn


def open_existing(pool_dir: Path) -> sqlite3.Connection | None:
    """A connection to the pool's database, or None when there is none yet (no file, or the empty
    file of a first write still running or killed before its commit)."""
    db = pool_dir / DB
    if not db.exists():
        return None
    conn = connect(db)
    try:
        if table_exists(conn, "meta"):
            return conn
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise CorruptPoolError(f"{db}: not a readable fmal labels database ({exc}); restore it from a backup") from None
    conn.close()
    return None


def drop_db(pool_dir: Path) -> None:
    """Remove a database the failed first write created (the pool stays as it was)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            (pool_dir / (DB + suffix)).unlink()


def has_history(pool_dir: str | os.PathLike[str]) -> bool:
    """True when the pool folder holds labels or rounds (database or legacy files): what a
    rebuild must not drop silently."""
    d = Path(pool_dir)
    conn = open_existing(d)
    if conn is not None:
        with contextlib.closing(conn):
            return bool(conn.execute("SELECT EXISTS(SELECT 1 FROM labels) OR EXISTS(SELECT 1 FROM rounds)").fetchone()[0])
    return (d / SESSION).exists() or (d / LABELS).exists()


def table_exists(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def check_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a file that is no fmal labels database, or one written by a newer fmal."""
    try:
        version = meta(conn, "schema_version", None)
    except sqlite3.DatabaseError as exc:
        raise CorruptPoolError(f"{path}: not a readable fmal labels database ({exc}); restore it from a backup") from None
    if version is None:
        raise CorruptPoolError(f"{path}: not an fmal labels database (no schema_version); restore it from a backup")
    if int(version) > SCHEMA_VERSION:
        raise CorruptPoolError(f"{path}: written by a newer fmal (schema {version}, this one reads {SCHEMA_VERSION}); upgrade fmal")


def meta(conn: sqlite3.Connection, key: str, default: str | None) -> Any:
    if not table_exists(conn, "meta"):
        return default
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return default if row is None else row[0]


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    """Write one ``meta`` row, adding it when the key is new (``task`` appears on a pool's first switch)."""
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))


def fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _json_default(obj: object) -> object:
    if hasattr(obj, "item"):
        return obj.item()  # numpy scalars
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def dumps(obj: Any) -> str:
    """JSON as the database stores it: sorted keys, UTF-8 text, numpy values as plain ones."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, default=_json_default)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
