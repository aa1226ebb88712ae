"""Rounds: what was picked, by which strategy, with which parameters, and what it measured.

A round is stored as one ``rounds`` row (number, kind, strategy, params key, time, output, the
per-pick column names, ``info`` and every other parameter as JSON in ``record``) and one ``picks``
row per picked id in order (its text and per-pick values). :class:`Round` is that record in memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmal._lazy import lazy_module
from fmal.session.db import ROUNDS, dumps

pd = lazy_module("pandas")

#: the keys of :meth:`Round.to_json` held in their own fields; every other key is in ``extra``
_FIELDS = ("round", "created", "kind", "strategy", "key", "ids", "columns", "output", "info", "texts")


def params_key(params: dict[str, Any]) -> str:
    """A short stable hash of a round's parameters, to recognise a rerun of the same round."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Round:
    """One round of a pool's session.

    ``ids`` are the picks in order, ``texts`` their texts (None where not known: a migrated round),
    ``columns`` the per-pick values (name -> one value per pick), ``info`` what the round measured
    (probe C, class counts, the stopping signal, ...). ``extra`` holds every other parameter the
    round was recorded with (budget, random_state, n_labeled, params, candidates, and whatever a
    later fmal adds): stored as JSON, read back as it was written.

    For code written against the dict records of older fmal versions a Round also reads as a
    read-only mapping (``rec["round"]``, ``rec.get("budget")``, ``rec.items()``) with the keys
    of :meth:`to_json`; fmal itself reads the attributes.
    """

    round: int
    kind: str
    strategy: str
    ids: list[str]
    created: str | None = None
    key: str | None = None
    columns: dict[str, list[Any]] = field(default_factory=dict)
    output: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    texts: list[str | None] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_picks(self) -> int:
        return len(self.ids)

    @property
    def n_labeled(self) -> int:
        """How many labels the pool held when the round was made (0 when not recorded)."""
        return int(self.extra.get("n_labeled", 0))

    @property
    def stop_kappa(self) -> float | None:
        """The stopping signal's kappa against the previous query round's probe (None: not measured)."""
        return self.info.get("stop_kappa")

    @property
    def stop_advice(self) -> str | None:
        """The stopping recommendation of a query round (None: seed rounds, older pools)."""
        return self.info.get("stop_advice")

    def pick_texts(self) -> list[str | None]:
        """The texts stored with the picks, one per pick (None where not known)."""
        return list(self.texts) if self.texts else [None] * len(self.ids)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Round:
        """A round from its JSON object (the keys of :meth:`to_json`; unknown keys go to ``extra``)."""
        ids = [str(i) for i in data["ids"]]
        return cls(round=int(data["round"]), kind=str(data["kind"]), strategy=str(data["strategy"]), ids=ids,
                   created=data.get("created"), key=data.get("key"), columns=dict(data.get("columns") or {}),
                   output=data.get("output"), info=dict(data.get("info") or {}), texts=list(data.get("texts") or []),
                   extra={k: v for k, v in data.items() if k not in _FIELDS})

    def to_json(self) -> dict[str, Any]:
        """The round as one JSON object: its fields, with ``extra``'s keys at the top level
        (the shape of ``session.json`` rounds and of the dict records of older fmal versions)."""
        return {"round": self.round, "created": self.created, "kind": self.kind, "strategy": self.strategy,
                "key": self.key, **self.extra, "ids": self.ids, "columns": self.columns, "output": self.output,
                "info": self.info, "texts": self.pick_texts()}

    def with_(self, **changes: Any) -> Round:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    # read-only mapping view (see the class docstring)
    def __getitem__(self, name: str) -> Any:
        if name in _FIELDS:
            return self.pick_texts() if name == "texts" else getattr(self, name)
        return self.extra[name]

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def __contains__(self, name: object) -> bool:
        return name in _FIELDS or name in self.extra

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_json())

    def keys(self) -> list[str]:
        return list(self.to_json())

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(self.to_json().items())


def view_path(pool_dir: Path, number: int, kind: str, strategy: str) -> Path:
    """The pool-owned CSV view of a round's picks: ``rounds/round-NNN-KIND-STRATEGY.csv``."""
    return pool_dir / ROUNDS / f"round-{number:03d}-{kind}-{strategy}.csv"


def read_rounds(conn: sqlite3.Connection) -> list[Round]:
    """Every round in the database, in order, with its picks."""
    picks: dict[int, list[tuple[str, str | None, str]]] = {}
    for rnd, rid, text, vals in conn.execute("SELECT round, id, text, vals FROM picks ORDER BY round, pos"):
        picks.setdefault(rnd, []).append((rid, text, vals))
    out = []
    for rnd, kind, strategy, key, created, output, record, info, columns in conn.execute(
        "SELECT round, kind, strategy, key, created, output, record, info, columns FROM rounds ORDER BY round"
    ):
        names = json.loads(columns)
        rows = picks.get(rnd, [])
        values = [json.loads(v) for _, _, v in rows]
        out.append(Round(round=rnd, kind=kind, strategy=strategy, ids=[r for r, _, _ in rows], created=created, key=key,
                         columns={c: [v[j] for v in values] for j, c in enumerate(names)}, output=output,
                         info=json.loads(info), texts=[t for _, t, _ in rows], extra=json.loads(record)))
    return out


def insert_round(conn: sqlite3.Connection, rec: Round, view_key: str) -> None:
    """Store a round and its picks, and record its view ``view_key`` as a file the pool owns."""
    names = list(rec.columns)
    conn.execute(
        "INSERT INTO rounds(round, kind, strategy, key, created, output, record, info, columns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (rec.round, str(rec.kind), str(rec.strategy), rec.key, str(rec.created),
         None if rec.output is None else str(rec.output), dumps(rec.extra), dumps(rec.info or {}), dumps(names)),
    )
    texts = rec.pick_texts()
    conn.executemany(
        "INSERT INTO picks(round, pos, id, text, vals) VALUES (?, ?, ?, ?, ?)",
        [(rec.round, pos, rid, texts[pos], dumps([rec.columns[c][pos] for c in names])) for pos, rid in enumerate(rec.ids)],
    )
    conn.execute("INSERT OR REPLACE INTO files(path, round, kind, owned, state) VALUES (?, ?, 'picks', 1, 'live')",
                 (view_key, rec.round))


def delete_round(conn: sqlite3.Connection, number: int) -> None:
    """Forget a round: its picks, and its files (the pool's own are marked for deletion after the commit)."""
    conn.execute("DELETE FROM picks WHERE round = ?", (number,))
    conn.execute("DELETE FROM rounds WHERE round = ?", (number,))
    conn.execute("UPDATE files SET state = 'deleting' WHERE round = ? AND owned = 1", (number,))
    conn.execute("DELETE FROM files WHERE round = ? AND owned = 0", (number,))


def round_frame(rec: Round, texts: list[str | None] | None = None) -> pd.DataFrame:
    """A round's picks table: id, text, its per-pick columns in order, round."""
    if texts is None:
        texts = rec.pick_texts()
    return pd.DataFrame({"id": rec.ids, "text": ["" if t is None else t for t in texts], **rec.columns, "round": rec.round})
