"""The labeling session of a pool: every round of selection and every label, kept in the pool folder.

    session.json   {"rounds": [...], "relabels": [...]}   rewritten atomically after each change
    labels.csv     id,label,source                          every label fmal was given

A label is never dropped: a later, different answer for an id replaces it and the old answer is
kept in ``relabels``. Ids picked in a round and not yet labeled are "queued", and query rounds do
not pick them again.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fmal._atomic import write_json
from fmal.exceptions import CorruptPoolError, InvalidInputError, LabelsError
from fmal.io import write_table

SESSION = "session.json"
LABELS = "labels.csv"


def params_key(params: dict[str, Any]) -> str:
    """A short stable hash of a round's parameters, to recognise a rerun of the same round."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


ON_CONFLICT = ("keep", "replace", "error")


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


class Session:
    """Rounds and labels of one pool folder."""

    def __init__(self, pool_dir: Path) -> None:
        self.dir = Path(pool_dir)
        f = self.dir / SESSION
        try:
            data = json.loads(f.read_text(encoding="utf-8")) if f.exists() else {}
        except (OSError, ValueError):
            raise CorruptPoolError(f"{f}: not valid JSON; restore it from a backup or delete it to start over") from None
        self.rounds: list[dict[str, Any]] = list(data.get("rounds", []))
        self.relabels: list[dict[str, Any]] = list(data.get("relabels", []))
        self._labels = self._read_labels()
        self._labels_unsaved = False

    def _read_labels(self) -> pd.DataFrame:
        f = self.dir / LABELS
        if not f.exists():
            return pd.DataFrame({"id": [], "label": [], "source": []}, dtype=object)
        try:
            return pd.read_csv(f, dtype=str, na_filter=False)
        except Exception:
            raise CorruptPoolError(f"{f}: unreadable; restore it from a backup") from None

    @property
    def labels(self) -> dict[str, str]:
        return dict(zip(self._labels["id"], self._labels["label"]))

    def queued(self) -> set[str]:
        """Ids picked in some round and not labeled yet."""
        labeled = set(self._labels["id"])
        return {i for r in self.rounds for i in r["ids"] if i not in labeled}

    def add_labels(self, new: dict[str, str], source: str, *, on_conflict: str = "replace", write: bool = True) -> LabelMerge:
        """Merge ``new`` into the stored labels (and write them) without losing any answer.

        ``write=False`` merges in memory only: the next ``save`` or ``add_round`` writes them (a
        command that fails after reading its labels file leaves the pool as it was).

        An id stored with another label is a conflict, resolved by ``on_conflict``: ``replace``
        (the new answer wins, the old one is kept in ``relabels``), ``keep`` (the stored answer
        stays) or ``error`` (LabelsError naming the conflicts; nothing is written). Merging the
        same labels twice changes nothing.
        """
        if on_conflict not in ON_CONFLICT:
            raise InvalidInputError(f"on_conflict must be one of {', '.join(ON_CONFLICT)}, got {on_conflict!r}")
        stored = {i: (lab, src) for i, lab, src in zip(self._labels["id"], self._labels["label"], self._labels["source"])}
        clashes = [(rid, stored[rid][0], lab) for rid, lab in new.items() if rid in stored and stored[rid][0] != lab]
        if clashes and on_conflict == "error":
            shown = "; ".join(f"{rid!r}: stored {old!r}, new {lab!r}" for rid, old, lab in clashes[:5])
            raise LabelsError(
                f"{source}: {len(clashes)} id(s) already have another label ({shown}"
                f"{'; ...' if len(clashes) > 5 else ''}); pass --on-conflict keep or --on-conflict replace"
            )
        added = changed = kept = 0
        conflicts: list[LabelConflict] = []
        now = _now()
        for rid, lab in new.items():
            old = stored.get(rid)
            if old is None:
                added += 1
            elif old[0] != lab:
                if on_conflict == "keep":
                    kept += 1
                    conflicts.append(LabelConflict(rid, old[0], lab, "kept"))
                    continue
                changed += 1
                conflicts.append(LabelConflict(rid, old[0], lab, "replaced"))
                self.relabels.append({"id": rid, "old": old[0], "new": lab, "source": source, "time": now})
            else:
                continue
            stored[rid] = (lab, source)
        if added or changed:
            self._labels = pd.DataFrame(
                {"id": list(stored), "label": [v[0] for v in stored.values()], "source": [v[1] for v in stored.values()]}
            )
            self._labels_unsaved = True
            if write:
                self._save()
        return LabelMerge(added, changed, len(new) - added - changed - kept, kept, tuple(conflicts))

    def last_round_like(self, key: str) -> dict[str, Any] | None:
        """The most recent round, if it was run with the same parameters (a rerun)."""
        if self.rounds and self.rounds[-1].get("key") == key:
            return self.rounds[-1]
        return None

    def add_round(self, record: dict[str, Any]) -> dict[str, Any]:
        record = {"round": len(self.rounds) + 1, "created": _now(), **record}
        self.rounds.append(record)
        self._save()
        return record

    def undo_last_round(self) -> dict[str, Any] | None:
        if not self.rounds:
            return None
        r = self.rounds.pop()
        self._save()
        return r

    def save(self) -> None:
        """Write labels merged with ``write=False``, and the rounds."""
        self._save()

    def _save(self) -> None:
        if self._labels_unsaved:
            write_table(self._labels, self.dir / LABELS)
            self._labels_unsaved = False
        write_json(self.dir / SESSION, {"rounds": self.rounds, "relabels": self.relabels})


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
