"""Labels and answers: the current label of each id, every answer ever given, each replaced label.

A label is never dropped by a merge: a later, different answer for an id replaces it and the old
one is kept in ``relabels`` (and ``answers``). Every answer is recorded with what it did
(:data:`OUTCOMES`), so merging the same labels twice changes no label and loses nothing.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from fmal._lazy import lazy_module
from fmal._validation import check_id, check_label
from fmal.exceptions import InvalidInputError, LabelsError
from fmal.session.db import table_exists

pd = lazy_module("pandas")

ON_CONFLICT = ("keep", "replace", "error")
OUTCOMES = ("added", "replaced", "kept", "unchanged", "migrated", "vote")
ANSWER_COLUMNS = ("seq", "id", "value", "source", "annotator", "time", "round", "outcome")


@dataclass(frozen=True)
class Label:
    """The current label of one id: its class, where it came from, and the answer that set it
    (``answer``: its ``answers.seq``; None for a pool not migrated yet)."""

    id: str
    label: str
    source: str
    answer: int | None = None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Label:
        """From a ``labels`` row (id, label, source, answer)."""
        rid, lab, src, seq = row
        return cls(rid, lab, src, seq)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "source": self.source, "answer": self.answer}


@dataclass(frozen=True)
class LabelConflict:
    """An id whose stored label differs from the incoming one, and what the policy did with it."""

    id: str
    stored: str
    incoming: str
    resolution: str  # "kept" | "replaced"


@dataclass(frozen=True)
class LabelMerge:
    """What a merge did: labels added, changed (old kept in relabels), unchanged, kept (the stored
    label stayed under ``on_conflict="keep"``), and each conflict."""

    added: int
    changed: int
    unchanged: int
    kept: int = 0
    conflicts: tuple[LabelConflict, ...] = ()


def checked_labels(new: dict[str, str], source: str) -> dict[str, str]:
    """The labels as the store keeps them: non-blank string ids and labels of at most
    MAX_LABEL_CHARS characters (what every file reader already enforces; this guards the API)."""
    out = {}
    for rid, lab in new.items():
        i, v = check_id(rid, source), check_label(lab, source, f"label of {str(rid)[:80]!r}")
        if i is None or v is None:
            raise LabelsError(f"{source}: id {str(rid)[:80]!r} has a blank id or label; give each id one class name")
        out[i] = v
    return out


def check_policy(on_conflict: str) -> None:
    if on_conflict not in ON_CONFLICT:
        raise InvalidInputError(f"on_conflict must be one of {', '.join(ON_CONFLICT)}, got {on_conflict!r}")


def read_labels(conn: sqlite3.Connection) -> dict[str, Label]:
    """{id: Label}, in the order the ids were first labeled."""
    return {row[0]: Label.from_row(row) for row in conn.execute("SELECT id, label, source, answer FROM labels ORDER BY rowid")}


def read_relabels(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Each replaced label, in order: id, old, new, source, time."""
    return [{"id": i, "old": o, "new": n, "source": s, "time": t}
            for i, o, n, s, t in conn.execute("SELECT id, old, new, source, time FROM relabels ORDER BY seq")]


def read_classes(conn: sqlite3.Connection) -> list[str]:
    """The declared label set, in order (empty before schema 2)."""
    return [n for (n,) in conn.execute("SELECT name FROM classes ORDER BY pos")] if table_exists(conn, "classes") else []


def write_classes(conn: sqlite3.Connection, names: list[str]) -> None:
    conn.execute("DELETE FROM classes")
    conn.executemany("INSERT INTO classes(pos, name) VALUES (?, ?)", list(enumerate(names)))


def checked_classes(classes: list[str]) -> list[str]:
    """Class names stripped; none blank, none twice."""
    names = [str(c).strip() for c in classes]
    if not names or any(not n for n in names):
        raise InvalidInputError("--classes needs class names separated by commas, e.g. --classes POS,NEG,NEUTRAL")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InvalidInputError(f"--classes names {', '.join(map(repr, dup))} twice; give each class once")
    return names


def answers_frame(conn: sqlite3.Connection | None) -> pd.DataFrame:
    """Every answer ever given, in order (an empty table without a database)."""
    cols = list(ANSWER_COLUMNS)
    if conn is None:
        return pd.DataFrame(columns=cols)
    return pd.DataFrame(conn.execute(f"SELECT {', '.join(cols)} FROM answers ORDER BY seq").fetchall(), columns=cols)


def merge(
    conn: sqlite3.Connection,
    stored: dict[str, Label],
    relabels: list[dict[str, Any]],
    last_round: dict[str, int],
    new: dict[str, str],
    source: str,
    on_conflict: str,
    annotators: dict[str, str],
    votes: list[tuple[str, str, str | None]],
    now: str,
) -> LabelMerge:
    """Merge checked labels ``new`` into the open transaction, updating ``stored`` and
    ``relabels`` in place (see :meth:`fmal.session.Session.add_labels`)."""
    clashes = [(rid, stored[rid].label, lab) for rid, lab in new.items() if rid in stored and stored[rid].label != lab]
    if clashes and on_conflict == "error":
        shown = "; ".join(f"{rid!r}: stored {old!r}, new {lab!r}" for rid, old, lab in clashes[:5])
        raise LabelsError(
            f"{source}: {len(clashes)} id(s) already have another label ({shown}"
            f"{'; ...' if len(clashes) > 5 else ''}); pass --on-conflict keep or --on-conflict replace"
        )
    added = changed = kept = 0
    conflicts: list[LabelConflict] = []
    conn.executemany(
        "INSERT INTO answers(id, value, source, annotator, time, round, outcome) VALUES (?, ?, ?, ?, ?, ?, 'vote')",
        [(rid, val, source, who, now, last_round.get(rid)) for rid, val, who in votes],
    )
    for rid, lab in new.items():
        old = stored.get(rid)
        outcome = "added" if old is None else "unchanged" if old.label == lab else "kept" if on_conflict == "keep" else "replaced"
        seq = conn.execute(
            "INSERT INTO answers(id, value, source, annotator, time, round, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rid, lab, source, annotators.get(rid), now, last_round.get(rid), outcome),
        ).lastrowid
        if outcome == "added":
            added += 1
            conn.execute("INSERT INTO labels(id, label, source, answer) VALUES (?, ?, ?, ?)", (rid, lab, source, seq))
        elif outcome == "replaced":
            assert old is not None
            changed += 1
            conflicts.append(LabelConflict(rid, old.label, lab, "replaced"))
            conn.execute("INSERT INTO relabels(id, old, new, source, time, answer) VALUES (?, ?, ?, ?, ?, ?)",
                         (rid, old.label, lab, source, now, seq))
            conn.execute("UPDATE labels SET label = ?, source = ?, answer = ? WHERE id = ?", (lab, source, seq, rid))
            relabels.append({"id": rid, "old": old.label, "new": lab, "source": source, "time": now})
        elif outcome == "kept":
            assert old is not None
            kept += 1
            conflicts.append(LabelConflict(rid, old.label, lab, "kept"))
            continue
        else:
            continue
        stored[rid] = Label(rid, lab, source, seq)
    return LabelMerge(added, changed, len(new) - added - changed - kept, kept, tuple(conflicts))


def drop(conn: sqlite3.Connection, stored: dict[str, Label], ids: set[str]) -> int:
    """Remove the labels and round picks of ``ids`` (their answers and relabels stay); updates
    ``stored`` in place and returns how many labels went."""
    gone = [i for i in ids if i in stored]
    conn.executemany("DELETE FROM labels WHERE id = ?", [(i,) for i in gone])
    conn.executemany("DELETE FROM picks WHERE id = ?", [(i,) for i in ids])
    for i in gone:
        del stored[i]
    return len(gone)
