"""The labeling session of a pool: everything a person made, in one SQLite database per pool.

    indexes/NAME/labels.db        the single source of truth (WAL, synchronous=FULL)
        meta       schema_version, generation (bumped by every write), views_generation, migration
        classes    the pool's declared label set, in order (schema 2)
        labels     the current label of each labeled id (and the answer it came from)
        answers    every answer ever given: id, value, source, annotator, time, the round it
                   answered, and what it did (added / replaced / kept / unchanged / migrated / vote:
                   one of several answers to the same task that went into a consensus)
        relabels   each replaced label: old, new, source, time
        rounds     number, kind, strategy, params key, parameters and info (JSON), output, the
                   per-pick column names in order
        picks      each round's picked ids in order, their text and per-pick values
        files      the files the pool wrote (round CSVs, probes) and the user's own copies
                   (``owned`` = 0: never deleted), with their round
        sync_tasks, sync_annotations   what ``fmal sync`` pushed to an annotation tool (task ids)
                   and pulled from it (annotation ids and their update time), per target (schema 2)
    indexes/NAME/labels.csv       view: id,label, rewritten from the database after each commit
    indexes/NAME/rounds/*.csv     view: each round's picks, likewise

A command that writes does it in one transaction (:meth:`Session.transaction`) under the pool's
write lock (:mod:`fmal._lock`): it reads the state after taking the lock, computes, writes and
commits, then re-renders the views. A crash before the commit leaves the old state, after it the
new one; a view left stale or missing is rendered again by the next writer (or ``fmal export``).

A label is never dropped: a later, different answer for an id replaces it and the old answer is
kept in ``relabels`` (and ``answers``). Ids picked in a round and not yet labeled are "queued",
and query rounds do not pick them again.

Pools made by older fmal versions keep ``session.json`` and ``labels.csv`` (id,label,source):
readers read those files as they are; the first write migrates them into the database in one
transaction, then renames them ``*.migrated`` (a backup). Once the database exists the legacy
files are ignored.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import hashlib
import io
import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmal._atomic import write_bytes
from fmal._faults import crash_point
from fmal._lock import pool_lock
from fmal._validation import check_id, check_label
from fmal.exceptions import CorruptPoolError, InvalidInputError, LabelsError
from fmal._lazy import lazy_module

pd = lazy_module("pandas")  # imported on first use: fmal status and info read no table (0.3 s)

log = logging.getLogger(__name__)

DB = "labels.db"
SESSION = "session.json"  # legacy: migrated on the first write
LABELS = "labels.csv"  # a view (legacy pools: the labels themselves, until migrated)
ROUNDS = "rounds"
MIGRATED = ".migrated"
SCHEMA_VERSION = 2
ON_CONFLICT = ("keep", "replace", "error")
OUTCOMES = ("added", "replaced", "kept", "unchanged", "migrated", "vote")
#: round keys stored in their own columns or tables; every other key goes to ``rounds.record``
_ROUND_FIELDS = ("round", "created", "kind", "strategy", "key", "ids", "columns", "output", "info", "texts")

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


def params_key(params: dict[str, Any]) -> str:
    """A short stable hash of a round's parameters, to recognise a rerun of the same round."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class LabelConflict:
    """An id whose stored label differs from the incoming one, and what the policy did with it."""

    id: str
    stored: str
    incoming: str
    resolution: str  # "kept" | "replaced"


@dataclass(frozen=True)
class LabelMerge:
    added: int
    changed: int
    unchanged: int
    kept: int = 0
    conflicts: tuple[LabelConflict, ...] = ()


def has_history(pool_dir: str | os.PathLike[str]) -> bool:
    """True when the pool folder holds labels or rounds (database or legacy files): what a
    rebuild must not drop silently."""
    d = Path(pool_dir)
    conn = _open_existing(d)
    if conn is not None:
        with contextlib.closing(conn):
            return bool(conn.execute("SELECT EXISTS(SELECT 1 FROM labels) OR EXISTS(SELECT 1 FROM rounds)").fetchone()[0])
    return (d / SESSION).exists() or (d / LABELS).exists()


class Session:
    """Rounds and labels of one pool folder.

    ``Session(dir)`` reads the state as it is now (database, else legacy files, else empty) and
    writes nothing. Writes happen in :meth:`transaction`; a write method called outside one runs
    in a transaction of its own.
    """

    def __init__(self, pool_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(pool_dir)
        self._conn: sqlite3.Connection | None = None  # set while a transaction is open
        self.removed_files: list[Path] = []  # files the last transaction deleted (undo)
        self._rendered: set[int] = set()
        self._labels_changed = False
        conn = _open_existing(self.dir)
        if conn is None:
            self._load_legacy()
        else:
            with contextlib.closing(conn):
                self._load(conn)

    # ------------------------------------------------------------------ reading

    @property
    def labels(self) -> dict[str, str]:
        return {i: lab for i, (lab, _) in self._labels.items()}

    def queued(self) -> set[str]:
        """Ids picked in some round and not labeled yet."""
        return {i for r in self.rounds for i in r["ids"] if i not in self._labels}

    @property
    def next_round(self) -> int:
        """The number the next round will get."""
        return (self.rounds[-1]["round"] if self.rounds else 0) + 1

    def last_round_like(self, key: str) -> dict[str, Any] | None:
        """The most recent round, if it was run with the same parameters (a rerun)."""
        if self.rounds and self.rounds[-1].get("key") == key:
            return self.rounds[-1]
        return None

    def answers(self) -> pd.DataFrame:
        """Every answer ever given (empty for a pool not migrated yet)."""
        cols = ["seq", "id", "value", "source", "annotator", "time", "round", "outcome"]
        conn = _open_existing(self.dir)
        if conn is None:
            return pd.DataFrame(columns=cols)
        with contextlib.closing(conn):
            return pd.DataFrame(conn.execute(f"SELECT {', '.join(cols)} FROM answers ORDER BY seq").fetchall(), columns=cols)

    def round_texts(self, rec: dict[str, Any]) -> list[str | None]:
        """The texts stored with a round's picks (None where not known: a migrated round)."""
        return list(rec.get("texts") or [None] * len(rec["ids"]))

    def _load(self, conn: sqlite3.Connection) -> None:
        _check_schema(conn, self.dir / DB)
        self._labels = {i: (lab, src) for i, lab, src in conn.execute("SELECT id, label, source FROM labels ORDER BY rowid")}
        self.relabels: list[dict[str, Any]] = [
            {"id": i, "old": o, "new": n, "source": s, "time": t}
            for i, o, n, s, t in conn.execute("SELECT id, old, new, source, time FROM relabels ORDER BY seq")
        ]
        picks: dict[int, list[tuple[str, str | None, str]]] = {}
        for rnd, rid, text, vals in conn.execute("SELECT round, id, text, vals FROM picks ORDER BY round, pos"):
            picks.setdefault(rnd, []).append((rid, text, vals))
        self.rounds: list[dict[str, Any]] = []
        for rnd, kind, strategy, key, created, output, record, info, columns in conn.execute(
            "SELECT round, kind, strategy, key, created, output, record, info, columns FROM rounds ORDER BY round"
        ):
            names = json.loads(columns)
            rows = picks.get(rnd, [])
            values = [json.loads(v) for _, _, v in rows]
            rec = {"round": rnd, "created": created, "kind": kind, "strategy": strategy, "key": key, **json.loads(record),
                   "ids": [r for r, _, _ in rows], "columns": {c: [v[j] for v in values] for j, c in enumerate(names)},
                   "output": output, "info": json.loads(info), "texts": [t for _, t, _ in rows]}
            self.rounds.append(rec)
        self.generation = int(_meta(conn, "generation", "0"))
        self.views_generation = int(_meta(conn, "views_generation", "-1"))
        self.classes: list[str] = ([n for (n,) in conn.execute("SELECT name FROM classes ORDER BY pos")]
                                   if _table_exists(conn, "classes") else [])
        self.task: str = _meta(conn, "task", "single-label")  # multi-label pools: fmal.multilabel

    def _load_legacy(self) -> None:
        """Read an unmigrated pool's session.json and labels.csv, checked, without writing."""
        data = _read_legacy_session(self.dir / SESSION)
        self.rounds = data["rounds"]
        self.relabels = data["relabels"]
        self._labels = _read_legacy_labels(self.dir / LABELS)
        self.classes = []
        self.task = "single-label"
        self.generation = 0
        self.views_generation = 0

    # ------------------------------------------------------------------ the transaction

    @contextlib.contextmanager
    def transaction(self, what: str = "writing") -> Iterator[Session]:
        """Take the pool's write lock, reload the state, and run the block as one transaction.

        On success the transaction commits, then the views are rewritten and files queued for
        deletion (undo) are deleted; on any exception nothing is written (a database this
        transaction created is removed again). The first write of a pool creates the database and
        migrates its legacy files in the same transaction. Nested calls join the open transaction.
        """
        if self._conn is not None:
            yield self
            return
        with pool_lock(self.dir, what=what):
            conn, fresh, legacy = self._open_for_write()
            try:
                crash_point("session.locked")
                conn.execute("BEGIN IMMEDIATE")
                counts = self._create(conn, legacy) if fresh else None
                if not fresh:
                    self._upgrade(conn)
                self._load(conn)
                self._conn = conn
                self._rendered = set()
                self._labels_changed = False
                try:
                    yield self
                    crash_point("session.before-commit")
                    conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
                    conn.execute("COMMIT")
                except BaseException:
                    self._conn = None
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    if fresh:
                        conn.close()
                        self._drop_db()
                        self._load_legacy()
                    else:
                        self._load(conn)
                    raise
                self._conn = None
                if counts is not None:
                    log.warning("%s: migrated %d label(s), %d relabel(s) and %d round(s) from session.json and labels.csv "
                                "into %s (the old files are kept as *%s)", self.dir, *counts, DB, MIGRATED)
                crash_point("session.after-commit")
                self._finish_migration(conn)
                self._load(conn)
                if fresh:
                    self._render_all(conn)
                self._after_commit(conn)
            finally:
                self._conn = None
                conn.close()

    def _open_for_write(self) -> tuple[sqlite3.Connection, bool, bool]:
        """Under the lock: open the database (``fresh``: none yet, or one a killed first write left
        empty; ``legacy``: old files to migrate, read and checked first), and clean what a killed
        writer left: temp files, legacy files not yet renamed, stale views, pending deletions."""
        self._clean_stale_tmp()
        db = self.dir / DB
        conn = None
        try:
            if db.exists():
                conn = _connect(db)
                fresh = not _table_exists(conn, "meta")
            else:
                fresh = True
            legacy = fresh and ((self.dir / SESSION).exists() or (self.dir / LABELS).exists())
            if legacy:
                self._load_legacy()  # validates before anything is created
            if conn is None:
                conn = _connect(db)
            if not fresh:
                _check_schema(conn, db)
                self._finish_migration(conn)
                self._load(conn)
                if self.views_generation != self.generation or self._views_missing(conn):
                    self._render_all(conn)
                self._finish_deletions(conn)
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        return conn, fresh, legacy

    def _create(self, conn: sqlite3.Connection, legacy: bool) -> tuple[int, int, int] | None:
        """Create the schema (and migrate the legacy files) inside the open transaction."""
        for stmt in _SCHEMA.strip().split(";"):
            if stmt.strip():
                conn.execute(stmt)
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [("schema_version", str(SCHEMA_VERSION)),
                                                            ("generation", "0"), ("views_generation", "-1")])
        return self._migrate(conn) if legacy else None

    def _upgrade(self, conn: sqlite3.Connection) -> None:
        """Bring an older database to this schema inside the open transaction (schema 1: no label
        set, no sync bookkeeping, answers without votes). Readers read older schemas as they are."""
        if int(_meta(conn, "schema_version", str(SCHEMA_VERSION))) < 2:
            for stmt in _UPGRADE_2.strip().split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            log.info("%s: upgraded %s to schema 2 (label set, sync bookkeeping)", self.dir, DB)

    def _drop_db(self) -> None:
        """Remove a database the failed first write created (the pool stays as it was)."""
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / (DB + suffix)).unlink()

    def _after_commit(self, conn: sqlite3.Connection) -> None:
        if self._labels_changed:
            self._render_labels()
        for rec in self.rounds:
            if rec["round"] in self._rendered:
                self._render_round(conn, rec)
        self.removed_files = self._finish_deletions(conn)
        self._set_views_generation(conn)

    def _set_views_generation(self, conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'views_generation'", (str(self.generation),))
        self.views_generation = self.generation

    # ------------------------------------------------------------------ writing

    def add_labels(
        self,
        new: dict[str, str],
        source: str,
        *,
        on_conflict: str = "replace",
        annotators: dict[str, str] | None = None,
        votes: list[tuple[str, str, str | None]] | None = None,
    ) -> LabelMerge:
        """Merge ``new`` into the stored labels without losing any answer.

        An id stored with another label is a conflict, resolved by ``on_conflict``: ``replace``
        (the new answer wins, the old one is kept in ``relabels``), ``keep`` (the stored answer
        stays) or ``error`` (LabelsError naming the conflicts; nothing is written). Every answer
        is recorded in ``answers`` with what it did; merging the same labels twice changes no label.
        ``votes`` (id, value, annotator): the single answers of tasks answered several times, whose
        consensus is in ``new``; each is recorded in ``answers`` as a ``vote``, so none is lost.
        """
        if on_conflict not in ON_CONFLICT:
            raise InvalidInputError(f"on_conflict must be one of {', '.join(ON_CONFLICT)}, got {on_conflict!r}")
        new = _checked_labels(new, source)
        with self.transaction("import labels"):
            assert self._conn is not None
            stored = self._labels
            clashes = [(rid, stored[rid][0], lab) for rid, lab in new.items() if rid in stored and stored[rid][0] != lab]
            if clashes and on_conflict == "error":
                shown = "; ".join(f"{rid!r}: stored {old!r}, new {lab!r}" for rid, old, lab in clashes[:5])
                raise LabelsError(
                    f"{source}: {len(clashes)} id(s) already have another label ({shown}"
                    f"{'; ...' if len(clashes) > 5 else ''}); pass --on-conflict keep or --on-conflict replace"
                )
            last_round = {i: r["round"] for r in self.rounds for i in r["ids"]}
            annotators = annotators or {}
            added = changed = kept = 0
            conflicts: list[LabelConflict] = []
            now = _now()
            cur = self._conn
            cur.executemany(
                "INSERT INTO answers(id, value, source, annotator, time, round, outcome) VALUES (?, ?, ?, ?, ?, ?, 'vote')",
                [(rid, val, source, who, now, last_round.get(rid)) for rid, val, who in votes or ()],
            )
            for rid, lab in new.items():
                old = stored.get(rid)
                outcome = "added" if old is None else "unchanged" if old[0] == lab else "kept" if on_conflict == "keep" else "replaced"
                seq = cur.execute(
                    "INSERT INTO answers(id, value, source, annotator, time, round, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (rid, lab, source, annotators.get(rid), now, last_round.get(rid), outcome),
                ).lastrowid
                if outcome == "added":
                    added += 1
                    cur.execute("INSERT INTO labels(id, label, source, answer) VALUES (?, ?, ?, ?)", (rid, lab, source, seq))
                elif outcome == "replaced":
                    assert old is not None
                    changed += 1
                    conflicts.append(LabelConflict(rid, old[0], lab, "replaced"))
                    cur.execute("INSERT INTO relabels(id, old, new, source, time, answer) VALUES (?, ?, ?, ?, ?, ?)",
                                (rid, old[0], lab, source, now, seq))
                    cur.execute("UPDATE labels SET label = ?, source = ?, answer = ? WHERE id = ?", (lab, source, seq, rid))
                    self.relabels.append({"id": rid, "old": old[0], "new": lab, "source": source, "time": now})
                elif outcome == "kept":
                    assert old is not None
                    kept += 1
                    conflicts.append(LabelConflict(rid, old[0], lab, "kept"))
                    continue
                else:
                    continue
                stored[rid] = (lab, source)
            if added or changed:
                self._labels_changed = True
            crash_point("labels.merged")
        return LabelMerge(added, changed, len(new) - added - changed - kept, kept, tuple(conflicts))

    def set_classes(self, classes: list[str]) -> list[str]:
        """Declare the pool's label set (in this order), replacing any declared before. Returns the
        stored labels outside it, sorted (reported by the caller; no label is changed)."""
        names = [str(c).strip() for c in classes]
        if not names or any(not n for n in names):
            raise InvalidInputError("--classes needs class names separated by commas, e.g. --classes POS,NEG,NEUTRAL")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InvalidInputError(f"--classes names {', '.join(map(repr, dup))} twice; give each class once")
        with self.transaction("declare classes"):
            assert self._conn is not None
            if self.task == "multi-label":  # multi-label hook: "|" separates the classes of an answer
                from fmal.multilabel import check_class_names

                check_class_names(names)
            if names != self.classes:
                self._conn.execute("DELETE FROM classes")
                self._conn.executemany("INSERT INTO classes(pos, name) VALUES (?, ?)", list(enumerate(names)))
                self.classes = names
        stored = {c for lab, _ in self._labels.values() for c in (lab.split("|") if self.task == "multi-label" else [lab])}
        return sorted(stored - set(names))

    # -- multi-label hook (fmal.multilabel): the task type is one row of meta, the schema is unchanged
    def set_task(self, task: str) -> None:
        """Record the pool's task type (``single-label`` / ``multi-label``); a switch that would
        reinterpret a stored label is refused (:func:`fmal.multilabel.can_switch`)."""
        from fmal.multilabel import can_switch, check_task

        task = check_task(task)
        with self.transaction("set task"):
            assert self._conn is not None
            if task != self.task:
                can_switch(self.labels, task)
                self._conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('task', ?)", (task,))
                self.task = task

    def sync_tasks(self, target: str) -> dict[str, str]:
        """{fmal id: the tool's task id} of the tasks pushed to ``target`` (empty before schema 2)."""
        return dict(self._sync_rows("SELECT id, task FROM sync_tasks WHERE target = ?", target))

    def sync_annotations(self, target: str) -> dict[str, str]:
        """{annotation id: its update time} of the annotations already pulled from ``target``."""
        return dict(self._sync_rows("SELECT annotation, updated FROM sync_annotations WHERE target = ?", target))

    def _sync_rows(self, sql: str, target: str) -> list[tuple[str, str]]:
        conn = self._conn or _open_existing(self.dir)
        if conn is None:
            return []
        try:
            if not _table_exists(conn, "sync_tasks"):
                return []
            return conn.execute(sql, (target,)).fetchall()
        finally:
            if conn is not self._conn:
                conn.close()

    def record_sync_tasks(self, target: str, tasks: dict[str, str], round_no: int | None) -> None:
        """Remember that ids were pushed to ``target`` as these task ids (a rerun pushes them not again)."""
        with self.transaction("record pushed tasks"):
            assert self._conn is not None
            self._conn.executemany("INSERT OR REPLACE INTO sync_tasks(target, id, task, round) VALUES (?, ?, ?, ?)",
                                   [(target, rid, str(t), round_no) for rid, t in tasks.items()])

    def record_sync_annotations(self, target: str, seen: list[tuple[str, str, str | None]]) -> None:
        """Remember pulled annotations (id, update time, task) of ``target``: call it in the
        transaction that imports their answers, so an answer is recorded once and never lost."""
        with self.transaction("record pulled annotations"):
            assert self._conn is not None
            self._conn.executemany(
                "INSERT OR REPLACE INTO sync_annotations(target, annotation, updated, task) VALUES (?, ?, ?, ?)",
                [(target, str(a), str(u), None if t is None else str(t)) for a, u, t in seen])

    def add_round(self, record: dict[str, Any]) -> dict[str, Any]:
        """Record a round: ``ids`` in pick order, optional ``texts``, ``columns`` (name -> one
        value per pick, in order), ``output``, ``info``, and any other parameters. Returns the
        round as :attr:`rounds` holds it."""
        with self.transaction("record a round"):
            assert self._conn is not None
            ids = [str(i) for i in record["ids"]]
            columns = dict(record.get("columns") or {})
            texts = list(record.get("texts") or [None] * len(ids))
            for c, v in columns.items():
                if len(v) != len(ids):
                    raise InvalidInputError(f"round column {c!r} has {len(v)} values for {len(ids)} picks")
            rnd = self.next_round
            rec = {"round": rnd, "created": _now(), **record, "ids": ids, "columns": columns, "texts": texts}
            rec.setdefault("info", {})
            rec.setdefault("output", None)
            self._insert_round(self._conn, rec)
            self.rounds.append(rec)
            self._rendered.add(rnd)
            crash_point("round.inserted")
        return rec

    def record_file(self, path: str | os.PathLike[str], round_no: int | None, kind: str, *, owned: bool) -> None:
        """Record a file written for a round: ``owned`` files (inside the pool folder) are the
        pool's to delete on undo; a user's own files are recorded and never deleted."""
        with self.transaction("record a file"):
            assert self._conn is not None
            key = self._file_key(Path(path), owned)
            if key is None:
                return
            self._conn.execute("INSERT OR REPLACE INTO files(path, round, kind, owned, state) VALUES (?, ?, ?, ?, 'live')",
                               (key, round_no, kind, int(owned and not os.path.isabs(key))))

    def undo_last_round(self) -> dict[str, Any] | None:
        """Remove the last round (picks no longer queued); its files owned by the pool are deleted
        after the commit (:attr:`removed_files`). Labels are kept."""
        with self.transaction("undo"):
            assert self._conn is not None
            if not self.rounds:
                return None
            rec = self.rounds.pop()
            rnd = rec["round"]
            c = self._conn
            c.execute("DELETE FROM picks WHERE round = ?", (rnd,))
            c.execute("DELETE FROM rounds WHERE round = ?", (rnd,))
            c.execute("UPDATE files SET state = 'deleting' WHERE round = ? AND owned = 1", (rnd,))
            c.execute("DELETE FROM files WHERE round = ? AND owned = 0", (rnd,))
            crash_point("undo.before-commit")
        return rec

    def drop_ids(self, ids: set[str]) -> int:
        """Remove the labels and round picks of ``ids``, rows that left the pool (``fmal embed
        --overwrite --keep-labels --drop-labels``, after a backup of the database). Their answers
        and relabels stay in the history. Returns how many labels were removed."""
        with self.transaction("drop labels of rows that left the pool"):
            assert self._conn is not None
            c = self._conn
            gone = [i for i in ids if i in self._labels]
            c.executemany("DELETE FROM labels WHERE id = ?", [(i,) for i in gone])
            c.executemany("DELETE FROM picks WHERE id = ?", [(i,) for i in ids])
            for i in gone:
                del self._labels[i]
            self._labels_changed = bool(gone)
            self._rendered.update(r["round"] for r in self.rounds)
            crash_point("drop.before-commit")
        return len(gone)

    def rerender_round(self, round_no: int) -> None:
        """Rewrite a round's view after this transaction commits (a rerun that reuses it)."""
        self._rendered.add(round_no)

    def refresh_views(self) -> bool:
        """Rewrite the views if a crashed writer left them stale or missing (no-op for a pool
        without a database, or with views up to date). Returns True when it wrote."""
        conn = _open_existing(self.dir)
        if conn is None:
            return False
        with contextlib.closing(conn):
            self._load(conn)
            if self.views_generation == self.generation and not self._views_missing(conn):
                return False
        with pool_lock(self.dir, what="refresh views"):
            self._open_for_write()[0].close()  # renders whatever is stale under the lock
        return True

    # ------------------------------------------------------------------ internals

    def round_view(self, rec: dict[str, Any]) -> Path:
        """The pool-owned CSV view of a round's picks."""
        return self.dir / ROUNDS / f"round-{rec['round']:03d}-{rec['kind']}-{rec['strategy']}.csv"

    def _file_key(self, path: Path, owned: bool) -> str | None:
        """How ``files`` names a path: relative to the pool folder when inside it, else absolute."""
        full = (Path.cwd() / path).resolve()
        base = self.dir.resolve()
        if full == base or base not in full.parents:
            return str(full)
        return full.relative_to(base).as_posix()

    def _insert_round(self, conn: sqlite3.Connection, rec: dict[str, Any]) -> None:
        names = list(rec["columns"])
        record = {k: v for k, v in rec.items() if k not in _ROUND_FIELDS}
        conn.execute(
            "INSERT INTO rounds(round, kind, strategy, key, created, output, record, info, columns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rec["round"], str(rec["kind"]), str(rec["strategy"]), rec.get("key"), str(rec["created"]),
             None if rec.get("output") is None else str(rec["output"]), _dumps(record), _dumps(rec.get("info") or {}), _dumps(names)),
        )
        texts = rec.get("texts") or [None] * len(rec["ids"])
        conn.executemany(
            "INSERT INTO picks(round, pos, id, text, vals) VALUES (?, ?, ?, ?, ?)",
            [(rec["round"], pos, rid, texts[pos], _dumps([rec["columns"][c][pos] for c in names]))
             for pos, rid in enumerate(rec["ids"])],
        )
        view = self._file_key(self.round_view(rec), True)
        conn.execute("INSERT OR REPLACE INTO files(path, round, kind, owned, state) VALUES (?, ?, 'picks', 1, 'live')",
                     (view, rec["round"]))

    def _migrate(self, conn: sqlite3.Connection) -> tuple[int, int, int]:
        """Copy the legacy state (already read and checked) into the open transaction."""
        now = _now()
        for rid, (lab, src) in self._labels.items():
            seq = conn.execute("INSERT INTO answers(id, value, source, time, outcome) VALUES (?, ?, ?, ?, 'migrated')",
                               (rid, lab, src or LABELS, now)).lastrowid
            conn.execute("INSERT INTO labels(id, label, source, answer) VALUES (?, ?, ?, ?)", (rid, lab, src or LABELS, seq))
        for r in self.relabels:
            conn.execute("INSERT INTO relabels(id, old, new, source, time) VALUES (?, ?, ?, ?, ?)",
                         (r["id"], r["old"], r["new"], r.get("source", ""), r.get("time", now)))
        texts = self._legacy_texts()
        for rec in self.rounds:
            rec.setdefault("created", now)
            rec["texts"] = [texts.get(i) for i in rec["ids"]]
            self._insert_round(conn, rec)
            out = rec.get("output")
            if out:
                key = self._file_key(Path(out), True)
                if key is not None and not os.path.isabs(key) and key != self._file_key(self.round_view(rec), True):
                    conn.execute("INSERT OR REPLACE INTO files VALUES (?, ?, 'picks', 1, 'live')", (key, rec["round"]))
                elif key is not None and os.path.isabs(key):
                    conn.execute("INSERT OR REPLACE INTO files VALUES (?, ?, 'output', 0, 'live')", (key, rec["round"]))
            probe = self.dir / "probes" / f"round-{rec['round']:03d}.json"
            if probe.exists():
                conn.execute("INSERT OR REPLACE INTO files VALUES (?, ?, 'probe', 1, 'live')",
                             (f"probes/{probe.name}", rec["round"]))
        conn.execute("INSERT INTO meta VALUES ('migration', 'pending-rename')")
        return len(self._labels), len(self.relabels), len(self.rounds)

    def _legacy_texts(self) -> dict[str, str]:
        ids = {i for r in self.rounds for i in r["ids"]}
        if not ids:
            return {}
        try:
            rows = pd.read_parquet(self.dir / "rows.parquet", columns=["id", "text"])
        except Exception:  # no pool rows (yet): texts are filled from the pool when a round is shown
            return {}
        return {i: t for i, t in zip(rows["id"].astype(str), rows["text"]) if i in ids}

    def _finish_migration(self, conn: sqlite3.Connection) -> None:
        """Rename the legacy files once their content is committed (idempotent: a crash between
        the commit and the renames is finished by the next writer)."""
        if _meta(conn, "migration", "") != "pending-rename":
            return
        for name in (LABELS, SESSION):
            src, dst = self.dir / name, self.dir / (name + MIGRATED)
            if src.exists() and not dst.exists():
                os.replace(src, dst)
                crash_point("migrate.renamed")
        _fsync_dir(self.dir)
        conn.execute("UPDATE meta SET value = 'done' WHERE key = 'migration'")
        conn.execute("UPDATE meta SET value = '-1' WHERE key = 'views_generation'")
        self.views_generation = -1

    def _views_missing(self, conn: sqlite3.Connection) -> bool:
        if self._labels and not (self.dir / LABELS).exists():
            return True
        return any(not (self.dir / p).exists()
                   for (p,) in conn.execute("SELECT path FROM files WHERE owned = 1 AND kind = 'picks' AND state = 'live'"))

    def _render_all(self, conn: sqlite3.Connection) -> None:
        self._render_labels()
        for rec in self.rounds:
            self._render_round(conn, rec)
        self._set_views_generation(conn)

    def _render_labels(self) -> None:
        if not self._labels and not (self.dir / LABELS).exists():
            return
        frame = pd.DataFrame({"id": list(self._labels), "label": [v[0] for v in self._labels.values()]}, dtype=object)
        write_bytes(self.dir / LABELS, frame.to_csv(index=False).encode("utf-8"))
        crash_point("view.labels")

    def _render_round(self, conn: sqlite3.Connection, rec: dict[str, Any]) -> None:
        """Write the round's pool-owned picks CSV(s) from the database, unless one already lists
        the round's ids in order (a picks file a person is filling in is left alone)."""
        data = None
        for (p,) in conn.execute("SELECT path FROM files WHERE round = ? AND owned = 1 AND kind = 'picks' AND state = 'live'",
                                 (rec["round"],)).fetchall():
            target = _inside(self.dir, p)
            if target is None or _lists_ids(target, rec["ids"]):
                continue
            if data is None:
                data = round_frame(rec).to_csv(index=False).encode("utf-8")
            write_bytes(target, data)
            crash_point("view.round")

    def _finish_deletions(self, conn: sqlite3.Connection) -> list[Path]:
        """Delete the files an undo queued (owned by the pool and inside its folder), then forget them."""
        removed = []
        for (p,) in conn.execute("SELECT path FROM files WHERE state = 'deleting'").fetchall():
            target = _inside(self.dir, p)
            if target is not None and target.is_file():
                target.unlink()
                removed.append(target)
                crash_point("undo.file-deleted")
            conn.execute("DELETE FROM files WHERE path = ?", (p,))
        return removed

    def _clean_stale_tmp(self) -> None:
        """Remove the temporary files (``.NAME.*.tmp``) a killed writer left in the folders the
        session writes. Only called under the write lock, so no live writer owns them."""
        for folder in (self.dir, self.dir / ROUNDS, self.dir / "probes"):
            if folder.is_dir():
                for f in folder.glob(".*.tmp"):
                    with contextlib.suppress(OSError):
                        f.unlink()


def _checked_labels(new: dict[str, str], source: str) -> dict[str, str]:
    """The labels as the store keeps them: non-blank string ids and labels of at most
    MAX_LABEL_CHARS characters (what every file reader already enforces; this guards the API)."""
    out = {}
    for rid, lab in new.items():
        i, v = check_id(rid, source), check_label(lab, source, f"label of {str(rid)[:80]!r}")
        if i is None or v is None:
            raise LabelsError(f"{source}: id {str(rid)[:80]!r} has a blank id or label; give each id one class name")
        out[i] = v
    return out


def round_frame(rec: dict[str, Any], texts: list[str | None] | None = None) -> pd.DataFrame:
    """A round's picks table: id, text, its per-pick columns in order, round."""
    if texts is None:
        texts = list(rec.get("texts") or [None] * len(rec["ids"]))
    return pd.DataFrame({"id": rec["ids"], "text": ["" if t is None else t for t in texts], **rec.get("columns", {}),
                         "round": rec["round"]})


# ---------------------------------------------------------------------- helpers


def _connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=60.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    except sqlite3.DatabaseError as exc:
        raise CorruptPoolError(f"{path}: not a readable fmal labels database ({exc}); restore it from a backup") from None
    return conn


def _open_existing(pool_dir: Path) -> sqlite3.Connection | None:
    """A connection to the pool's database, or None when there is none yet (no file, or the empty
    file of a first write still running or killed before its commit)."""
    db = pool_dir / DB
    if not db.exists():
        return None
    conn = _connect(db)
    try:
        if _table_exists(conn, "meta"):
            return conn
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise CorruptPoolError(f"{db}: not a readable fmal labels database ({exc}); restore it from a backup") from None
    conn.close()
    return None


def _lists_ids(path: Path, ids: list[str]) -> bool:
    """True when the CSV at ``path`` has an ``id`` column equal to ``ids``."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, usecols=["id"])["id"].tolist() == ids
    except Exception:  # missing, unreadable, no id column: render it again
        return False


def _table_exists(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    try:
        version = _meta(conn, "schema_version", None)
    except sqlite3.DatabaseError as exc:
        raise CorruptPoolError(f"{path}: not a readable fmal labels database ({exc}); restore it from a backup") from None
    if version is None:
        raise CorruptPoolError(f"{path}: not an fmal labels database (no schema_version); restore it from a backup")
    if int(version) > SCHEMA_VERSION:
        raise CorruptPoolError(f"{path}: written by a newer fmal (schema {version}, this one reads {SCHEMA_VERSION}); upgrade fmal")


def _meta(conn: sqlite3.Connection, key: str, default: str | None) -> Any:
    if not _table_exists(conn, "meta"):
        return default
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return default if row is None else row[0]


def _inside(base: Path, rel: str) -> Path | None:
    """``base / rel`` when it resolves inside ``base`` (never a path outside the pool)."""
    if os.path.isabs(rel):
        return None
    target = (base / rel).resolve()
    root = base.resolve()
    return target if root in target.parents else None


def _fsync_dir(d: Path) -> None:
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


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, default=_json_default)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# ---------------------------------------------------------------------- legacy files


def _legacy_error(f: Path, what: str) -> CorruptPoolError:
    return CorruptPoolError(f"{f}: {what}; restore it from a backup, or move it aside to start the pool's history over")


def _read_legacy_session(f: Path) -> dict[str, list[dict[str, Any]]]:
    """session.json of an older fmal, checked: rounds with ids, relabels with id/old/new."""
    if not f.exists():
        return {"rounds": [], "relabels": []}
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        raise CorruptPoolError(f"{f}: not valid JSON; restore it from a backup or delete it to start over") from None
    if not isinstance(data, dict):
        raise _legacy_error(f, f"a JSON {type(data).__name__}, expected an object with 'rounds' and 'relabels'")
    rounds, relabels = data.get("rounds", []), data.get("relabels", [])
    if not isinstance(rounds, list) or not isinstance(relabels, list):
        raise _legacy_error(f, "'rounds' and 'relabels' must be lists")
    out = []
    for n, r in enumerate(rounds, 1):
        where = f"round {n}"
        if not isinstance(r, dict):
            raise _legacy_error(f, f"{where} is not an object")
        ids = r.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in ids):
            raise _legacy_error(f, f"{where} has no list of ids")
        if not isinstance(r.get("round", n), int) or not isinstance(r.get("kind", ""), str) or not isinstance(r.get("strategy", ""), str):
            raise _legacy_error(f, f"{where}: 'round' must be a number, 'kind' and 'strategy' text")
        cols = r.get("columns", {}) or {}
        if not isinstance(cols, dict) or not all(isinstance(v, list) and len(v) == len(ids) for v in cols.values()):
            raise _legacy_error(f, f"{where}: 'columns' must map names to one value per id")
        if not isinstance(r.get("info", {}) or {}, dict):
            raise _legacy_error(f, f"{where}: 'info' must be an object")
        out.append({**r, "round": int(r.get("round", n)), "kind": r.get("kind", "seed"), "strategy": r.get("strategy", "unknown"),
                    "ids": [str(i) for i in ids], "columns": cols, "info": r.get("info") or {}})
    numbers = [r["round"] for r in out]
    if numbers != sorted(set(numbers)):
        raise _legacy_error(f, "round numbers are repeated or out of order")
    rel = []
    for n, r in enumerate(relabels, 1):
        if not isinstance(r, dict) or not all(isinstance(r.get(k), str) for k in ("id", "old", "new")):
            raise _legacy_error(f, f"relabel {n} needs text 'id', 'old' and 'new'")
        rel.append({"id": r["id"], "old": r["old"], "new": r["new"], "source": str(r.get("source", "")),
                    "time": str(r.get("time", ""))})
    return {"rounds": out, "relabels": rel}


def _read_legacy_labels(f: Path) -> dict[str, tuple[str, str]]:
    """labels.csv of an older fmal (id,label[,source]), read strictly: a row cut short, another
    column set or a repeated id is an error, never a silent loss."""
    if not f.exists():
        return {}
    try:
        raw = f.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        raise CorruptPoolError(f"{f}: unreadable; restore it from a backup") from None
    if raw and not raw.endswith("\n"):
        raise _legacy_error(f, "the last row is cut short (no line end): the file was not written whole")
    try:
        rows = list(csv.reader(io.StringIO(raw, newline="")))
    except csv.Error as exc:
        raise _legacy_error(f, f"not valid CSV ({exc})") from None
    if not rows:
        return {}
    header = rows[0]
    if header[:2] != ["id", "label"] or not set(header) <= {"id", "label", "source"} or len(set(header)) != len(header):
        raise _legacy_error(f, f"columns {header}, expected id,label (and optionally source)")
    out: dict[str, tuple[str, str]] = {}
    for n, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise _legacy_error(f, f"line {n} has {len(row)} field(s), expected {len(header)}")
        rec = dict(zip(header, row))
        if rec["id"] in out:
            raise _legacy_error(f, f"line {n}: id {rec['id']!r} appears twice")
        if rec["label"] == "":
            continue
        out[rec["id"]] = (rec["label"], rec.get("source", ""))
    return out
