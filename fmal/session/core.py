"""The :class:`Session` of a pool folder: its state as read, and writes as one transaction each."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fmal._faults import crash_point
from fmal._lazy import lazy_module
from fmal._lock import pool_lock
from fmal.exceptions import InvalidInputError
from fmal.session import labels as _labels, migrate, rounds as _rounds, synclog, views
from fmal.session.db import (DB, LABELS, MIGRATED, SESSION, check_schema, connect, create_schema, drop_db, meta, now,
                             open_existing, set_meta, table_exists, upgrade)
from fmal.session.labels import Label, LabelMerge
from fmal.session.rounds import Round

pd = lazy_module("pandas")  # imported on first use: fmal status and info read no table (0.3 s)

log = logging.getLogger("fmal.session")  # the package's name: what users filter on (migration warnings)


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
        conn = open_existing(self.dir)
        if conn is None:
            self._load_legacy()
        else:
            with contextlib.closing(conn):
                self._load(conn)

    # ------------------------------------------------------------------ reading

    @property
    def labels(self) -> dict[str, str]:
        """{id: label} of every labeled id, in the order the ids were first labeled."""
        return {i: lab.label for i, lab in self._labels.items()}

    def label_records(self) -> list[Label]:
        """The stored labels with their source and answer, in the order of :attr:`labels`."""
        return list(self._labels.values())

    def queued(self) -> set[str]:
        """Ids picked in some round and not labeled yet."""
        return {i for r in self.rounds for i in r.ids if i not in self._labels}

    @property
    def next_round(self) -> int:
        """The number the next round will get."""
        return (self.rounds[-1].round if self.rounds else 0) + 1

    def last_round_like(self, key: str) -> Round | None:
        """The most recent round, if it was run with the same parameters (a rerun)."""
        if self.rounds and self.rounds[-1].key == key:
            return self.rounds[-1]
        return None

    def round_view(self, rec: Round) -> Path:
        """The pool-owned CSV view of a round's picks."""
        return _rounds.view_path(self.dir, rec.round, rec.kind, rec.strategy)

    def answers(self) -> pd.DataFrame:
        """Every answer ever given (empty for a pool not migrated yet)."""
        conn = open_existing(self.dir)
        if conn is None:
            return _labels.answers_frame(None)
        with contextlib.closing(conn):
            return _labels.answers_frame(conn)

    def sync_tasks(self, target: str) -> dict[str, str]:
        """{fmal id: the tool's task id} of the tasks pushed to ``target`` (empty before schema 2)."""
        return self._read(lambda c: synclog.read_tasks(c, target), {})

    def sync_annotations(self, target: str) -> dict[str, str]:
        """{annotation id: its update time} of the annotations already pulled from ``target``."""
        return self._read(lambda c: synclog.read_annotations(c, target), {})

    def _read(self, fn: Any, empty: Any) -> Any:
        """``fn(conn)`` on the open transaction, else on a connection of its own (``empty``: no database)."""
        if self._conn is not None:
            return fn(self._conn)
        conn = open_existing(self.dir)
        if conn is None:
            return empty
        with contextlib.closing(conn):
            return fn(conn)

    def _load(self, conn: sqlite3.Connection) -> None:
        check_schema(conn, self.dir / DB)
        self._labels: dict[str, Label] = _labels.read_labels(conn)
        self.relabels: list[dict[str, Any]] = _labels.read_relabels(conn)
        self.rounds: list[Round] = _rounds.read_rounds(conn)
        self.generation = int(meta(conn, "generation", "0"))
        self.views_generation = int(meta(conn, "views_generation", "-1"))
        self.classes: list[str] = _labels.read_classes(conn)
        self.task: str = meta(conn, "task", "single-label")  # multi-label pools: fmal.multilabel

    def _load_legacy(self) -> migrate.LegacyState:
        """Read an unmigrated pool's session.json and labels.csv, checked, without writing."""
        state = migrate.read_legacy(self.dir)
        self.rounds, self.relabels, self._labels = state.rounds, state.relabels, state.labels
        self.classes = []
        self.task = "single-label"
        self.generation = 0
        self.views_generation = 0
        return state

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
                counts = None
                if fresh:
                    create_schema(conn)
                    if legacy is not None:
                        counts = migrate.migrate(conn, self.dir, legacy)
                elif upgrade(conn):
                    log.info("%s: upgraded %s to schema 2 (label set, sync bookkeeping)", self.dir, DB)
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
                        drop_db(self.dir)
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

    def _open_for_write(self) -> tuple[sqlite3.Connection, bool, migrate.LegacyState | None]:
        """Under the lock: open the database (``fresh``: none yet, or one a killed first write left
        empty; ``legacy``: old files to migrate, read and checked first), and clean what a killed
        writer left: temp files, legacy files not yet renamed, stale views, pending deletions."""
        views.clean_stale_tmp(self.dir)
        db = self.dir / DB
        conn = None
        legacy = None
        try:
            if db.exists():
                conn = connect(db)
                fresh = not table_exists(conn, "meta")
            else:
                fresh = True
            if fresh and ((self.dir / SESSION).exists() or (self.dir / LABELS).exists()):
                legacy = self._load_legacy()  # validates before anything is created
            if conn is None:
                conn = connect(db)
            if not fresh:
                check_schema(conn, db)
                self._finish_migration(conn)
                self._load(conn)
                if self.views_generation != self.generation or views.views_missing(self.dir, conn, bool(self._labels)):
                    self._render_all(conn)
                views.finish_deletions(self.dir, conn)
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        return conn, fresh, legacy

    def _finish_migration(self, conn: sqlite3.Connection) -> None:
        if migrate.finish_migration(conn, self.dir):
            self.views_generation = -1

    def _render_all(self, conn: sqlite3.Connection) -> None:
        views.render_labels(self.dir, self._labels)
        for rec in self.rounds:
            views.render_round(self.dir, conn, rec)
        self._set_views_generation(conn)

    def _after_commit(self, conn: sqlite3.Connection) -> None:
        if self._labels_changed:
            views.render_labels(self.dir, self._labels)
        for rec in self.rounds:
            if rec.round in self._rendered:
                views.render_round(self.dir, conn, rec)
        self.removed_files = views.finish_deletions(self.dir, conn)
        self._set_views_generation(conn)

    def _set_views_generation(self, conn: sqlite3.Connection) -> None:
        set_meta(conn, "views_generation", str(self.generation))
        self.views_generation = self.generation

    @contextlib.contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """The open transaction's connection (one is opened for ``what`` when none is)."""
        with self.transaction(what):
            assert self._conn is not None
            yield self._conn

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
        _labels.check_policy(on_conflict)
        new = _labels.checked_labels(new, source)
        with self._write("import labels") as conn:
            last_round = {i: r.round for r in self.rounds for i in r.ids}
            merge = _labels.merge(conn, self._labels, self.relabels, last_round, new, source, on_conflict,
                                  annotators or {}, list(votes or ()), now())
            if merge.added or merge.changed:
                self._labels_changed = True
            crash_point("labels.merged")
        return merge

    def set_classes(self, classes: list[str]) -> list[str]:
        """Declare the pool's label set (in this order), replacing any declared before. Returns the
        stored labels outside it, sorted (reported by the caller; no label is changed)."""
        names = _labels.checked_classes(classes)
        with self._write("declare classes") as conn:
            if self.task == "multi-label":  # multi-label hook: "|" separates the classes of an answer
                from fmal.multilabel import check_class_names

                check_class_names(names)
            if names != self.classes:
                _labels.write_classes(conn, names)
                self.classes = names
        multi = self.task == "multi-label"
        stored = {c for lab in self._labels.values() for c in (lab.label.split("|") if multi else [lab.label])}
        return sorted(stored - set(names))

    # -- multi-label hook (fmal.multilabel): the task type is one row of meta, the schema is unchanged
    def set_task(self, task: str) -> None:
        """Record the pool's task type (``single-label`` / ``multi-label``); a switch that would
        reinterpret a stored label is refused (:func:`fmal.multilabel.can_switch`)."""
        from fmal.multilabel import can_switch, check_task

        task = check_task(task)
        with self._write("set task") as conn:
            if task != self.task:
                can_switch(self.labels, task)
                set_meta(conn, "task", task)
                self.task = task

    def record_sync_tasks(self, target: str, tasks: dict[str, str], round_no: int | None) -> None:
        """Remember that ids were pushed to ``target`` as these task ids (a rerun pushes them not again)."""
        with self._write("record pushed tasks") as conn:
            synclog.write_tasks(conn, target, tasks, round_no)

    def record_sync_annotations(self, target: str, seen: list[tuple[str, str, str | None]]) -> None:
        """Remember pulled annotations (id, update time, task) of ``target``: call it in the
        transaction that imports their answers, so an answer is recorded once and never lost."""
        with self._write("record pulled annotations") as conn:
            synclog.write_annotations(conn, target, seen)

    def add_round(self, record: dict[str, Any]) -> Round:
        """Record a round: ``kind``, ``strategy``, ``key``, ``ids`` in pick order, optional
        ``texts``, ``columns`` (name -> one value per pick, in order), ``output``, ``info``, and any
        other parameters (kept in :attr:`Round.extra`). Returns the round as :attr:`rounds` holds it."""
        with self._write("record a round") as conn:
            ids = [str(i) for i in record["ids"]]
            columns = dict(record.get("columns") or {})
            for c, v in columns.items():
                if len(v) != len(ids):
                    raise InvalidInputError(f"round column {c!r} has {len(v)} values for {len(ids)} picks")
            texts = list(record.get("texts") or [None] * len(ids))
            rec = Round.from_json({"round": self.next_round, "created": now(), "info": {}, "output": None, **record,
                                   "ids": ids, "columns": columns, "texts": texts})
            _rounds.insert_round(conn, rec, views.file_key(self.dir, self.round_view(rec)))
            self.rounds.append(rec)
            self._rendered.add(rec.round)
            crash_point("round.inserted")
        return rec

    def record_file(self, path: str | os.PathLike[str], round_no: int | None, kind: str, *, owned: bool) -> None:
        """Record a file written for a round: ``owned`` files (inside the pool folder) are the
        pool's to delete on undo; a user's own files are recorded and never deleted."""
        with self._write("record a file") as conn:
            key = views.file_key(self.dir, Path(path))
            conn.execute("INSERT OR REPLACE INTO files(path, round, kind, owned, state) VALUES (?, ?, ?, ?, 'live')",
                         (key, round_no, kind, int(owned and not os.path.isabs(key))))

    def undo_last_round(self) -> Round | None:
        """Remove the last round (picks no longer queued); its files owned by the pool are deleted
        after the commit (:attr:`removed_files`). Labels are kept."""
        with self._write("undo") as conn:
            if not self.rounds:
                return None
            rec = self.rounds.pop()
            _rounds.delete_round(conn, rec.round)
            crash_point("undo.before-commit")
        return rec

    def drop_ids(self, ids: set[str]) -> int:
        """Remove the labels and round picks of ``ids``, rows that left the pool (``fmal embed
        --overwrite --keep-labels --drop-labels``, after a backup of the database). Their answers
        and relabels stay in the history. Returns how many labels were removed."""
        with self._write("drop labels of rows that left the pool") as conn:
            n = _labels.drop(conn, self._labels, ids)
            self._labels_changed = bool(n)
            self._rendered.update(r.round for r in self.rounds)
            crash_point("drop.before-commit")
        return n

    def rerender_round(self, round_no: int) -> None:
        """Rewrite a round's view after this transaction commits (a rerun that reuses it)."""
        self._rendered.add(round_no)

    def refresh_views(self) -> bool:
        """Rewrite the views if a crashed writer left them stale or missing (no-op for a pool
        without a database, or with views up to date). Returns True when it wrote."""
        conn = open_existing(self.dir)
        if conn is None:
            return False
        with contextlib.closing(conn):
            self._load(conn)
            if self.views_generation == self.generation and not views.views_missing(self.dir, conn, bool(self._labels)):
                return False
        with pool_lock(self.dir, what="refresh views"):
            self._open_for_write()[0].close()  # renders whatever is stale under the lock
        return True

