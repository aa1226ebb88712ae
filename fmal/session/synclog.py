"""What ``fmal sync`` exchanged with an annotation tool, per target (schema 2): the task id each
pushed fmal id got, and the annotations already pulled with their update time. A rerun pushes
no task twice and imports no annotation twice."""

from __future__ import annotations

import sqlite3

from fmal.session.db import table_exists


def read_tasks(conn: sqlite3.Connection, target: str) -> dict[str, str]:
    """{fmal id: the tool's task id} (empty before schema 2)."""
    if not table_exists(conn, "sync_tasks"):
        return {}
    return dict(conn.execute("SELECT id, task FROM sync_tasks WHERE target = ?", (target,)).fetchall())


def read_annotations(conn: sqlite3.Connection, target: str) -> dict[str, str]:
    """{annotation id: its update time} (empty before schema 2)."""
    if not table_exists(conn, "sync_tasks"):
        return {}
    return dict(conn.execute("SELECT annotation, updated FROM sync_annotations WHERE target = ?", (target,)).fetchall())


def write_tasks(conn: sqlite3.Connection, target: str, tasks: dict[str, str], round_no: int | None) -> None:
    conn.executemany("INSERT OR REPLACE INTO sync_tasks(target, id, task, round) VALUES (?, ?, ?, ?)",
                     [(target, rid, str(t), round_no) for rid, t in tasks.items()])


def write_annotations(conn: sqlite3.Connection, target: str, seen: list[tuple[str, str, str | None]]) -> None:
    conn.executemany("INSERT OR REPLACE INTO sync_annotations(target, annotation, updated, task) VALUES (?, ?, ?, ?)",
                     [(target, str(a), str(u), None if t is None else str(t)) for a, u, t in seen])
