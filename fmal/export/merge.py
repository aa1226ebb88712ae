"""From a file's answers to one label per id: disagreements inside the file, resolved by policy."""

from __future__ import annotations

from dataclasses import dataclass

from fmal.exceptions import InvalidInputError, LabelsError
from fmal.export.base import Answer
from fmal.session import ON_CONFLICT


@dataclass(frozen=True)
class Disagreement:
    """An id given different labels inside one file (several annotators, or a record twice)."""

    id: str
    answers: tuple[Answer, ...]
    chosen: str


def collapse(answers: list[Answer], on_conflict: str, source: str) -> tuple[dict[str, str], list[Disagreement]]:
    """One label per id. Where the file disagrees with itself, ``keep`` takes the first answer,
    ``replace`` the last, and ``error`` raises LabelsError naming the ids and answers."""
    if on_conflict not in ON_CONFLICT:
        raise InvalidInputError(f"on_conflict must be one of {', '.join(ON_CONFLICT)}, got {on_conflict!r}")
    by_id: dict[str, list[Answer]] = {}
    for a in answers:
        by_id.setdefault(a.id, []).append(a)
    out: dict[str, str] = {}
    dis: list[Disagreement] = []
    for rid, given in by_id.items():
        chosen = given[0].label if on_conflict == "keep" else given[-1].label
        if len({a.label for a in given}) > 1:
            dis.append(Disagreement(rid, tuple(given), chosen))
        out[rid] = chosen
    if dis and on_conflict == "error":
        shown = "; ".join(f"{d.id!r}: " + ", ".join(f"{a.label!r} ({a.where})" for a in d.answers) for d in dis[:3])
        raise LabelsError(
            f"{source}: {len(dis)} id(s) have different answers in the file ({shown}{'; ...' if len(dis) > 3 else ''}); "
            "pass --on-conflict keep (first answer) or --on-conflict replace (last answer)"
        )
    return out, dis
