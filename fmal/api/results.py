"""What the operations return: one dataclass per operation, each with ``to_frame()`` (and the
fields ``fmal ... --json`` prints, :mod:`fmal.cli._json`). Plain data: this module imports no
operation, so a stage that finishes an operation's work (:mod:`fmal.append`) can build its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmal._lazy import lazy_module

if TYPE_CHECKING:  # annotations only: importing the results loads no table or format code
    from fmal.audit import LabelAudit
    from fmal.export import Answer, Disagreement
    from fmal.pool import Manifest
    from fmal.session import LabelConflict

pd = lazy_module("pandas")  # a result's table is built when asked for (pandas: 0.3 s)
frames = lazy_module("fmal.frames")


@dataclass(frozen=True)
class EmbedResult:
    """What ``embed`` did: where the pool is, how many rows, and how much work was (re)done."""

    pool_path: Path
    n_rows: int
    n_unique: int
    n_embedded: int
    n_chunks_reused: int
    skipped: bool
    seconds: float
    model: str
    dim: int
    backend: str = "torch"
    precision: str = "float32"
    max_seq_length: int | None = None
    threads: int | None = None
    engine: str = "local"
    n_shards: int = 0  # input files read by the Ray engine's workers (0: read here, by the local engine)
    repaired: tuple[str, ...] = ()  # --repair: the derived files rebuilt (empty: the pool was sound)
    labels_kept: int = 0  # --overwrite --keep-labels: labeled ids still in the new input
    labels_dropped: int = 0  # --overwrite --keep-labels --drop-labels: labeled ids gone from it (backed up)
    backup: Path | None = None  # where --overwrite put the session's files it did not keep
    source: str | None = None  # --embeddings: where the vectors came from (model "external")
    n_appended: int = 0  # --append: rows added to the pool
    n_skipped: int = 0  # --append: input rows already in the pool (same id, or same text with generated ids)
    bad_images: tuple[str, ...] = ()  # image input, bad_images="skip": "path: why" of each image left out

    def to_frame(self) -> pd.DataFrame:
        """One row: this result's fields."""
        return frames.one_row(self)


@dataclass
class Selection:
    """One round of picks: the rows to send to annotators, and why they were chosen."""

    round: int
    kind: str
    strategy: str
    picks: pd.DataFrame
    output: Path
    reused: bool
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return self.picks["id"].tolist()

    @property
    def stop(self) -> dict[str, Any]:
        """The stopping signal of a query round (advice, agreement, kappa, compared_with_round); {} for seeds."""
        return {k[len("stop_"):]: v for k, v in self.info.items() if k.startswith("stop_")}

    def to_frame(self) -> pd.DataFrame:
        """The picks, one row each, with every column (a copy)."""
        return self.picks.copy()

    def to_dict(self) -> dict[str, Any]:
        """The round as plain values (``fmal seed/query --json``): its fields, the picks, ``stop``."""
        return {"round": self.round, "kind": self.kind, "strategy": self.strategy, "reused": self.reused,
                "output": str(self.output), "n_picks": len(self.picks), "ids": self.ids, "picks": self.picks,
                "info": self.info, "stop": self.stop or None}


@dataclass(frozen=True)
class UndoResult:
    """The round that was removed from the session, and the files removed with it."""

    round: int
    kind: str
    strategy: str
    n_picks: int
    removed_files: list[Path]

    def to_frame(self) -> pd.DataFrame:
        """One row: this result's fields."""
        return frames.one_row(self)


@dataclass(frozen=True)
class PoolStatus:
    """A pool's manifest, label count and round history."""

    path: Path
    manifest: Manifest
    n_labels: int
    rounds: pd.DataFrame
    advice: str | None = None  # the last query round's stopping recommendation
    task: str = "single-label"  # or multi-label (fmal.multilabel)

    def to_frame(self) -> pd.DataFrame:
        """The rounds, one row each (a copy)."""
        return self.rounds.copy()


@dataclass(frozen=True)
class ExportResult:
    """What ``export`` wrote: a round's picks as one annotation tool's import file."""

    round: int
    format: str
    output: Path
    n_tasks: int
    n_suggestions: int
    classes: list[str]
    declared: bool = False  # the classes are the pool's declared label set
    warning: str | None = None  # e.g. a seed round exported with no classes known

    def to_frame(self) -> pd.DataFrame:
        """One row: this result's fields."""
        return frames.one_row(self)


@dataclass(frozen=True)
class ImportResult:
    """What ``import_labels`` found in a file and did to the pool's labels."""

    path: Path
    format: str
    on_conflict: str
    n_records: int
    n_answers: int
    added: int
    changed: int
    unchanged: int
    kept: int
    conflicts: tuple[LabelConflict, ...]  # stored label vs the file's, and what the policy did
    disagreements: tuple[Disagreement, ...]  # ids the file itself answers differently
    unknown: tuple[Answer, ...]  # answers for ids not in the pool (not imported)
    skipped: tuple[tuple[str, str], ...]  # (where, why) records with no usable answer
    outside: tuple[str, ...] = ()  # imported labels outside the pool's declared classes
    ties: tuple[Disagreement, ...] = ()  # --on-conflict majority: ids with tied answers (not imported)
    annotator_quality: dict[str, float] = field(default_factory=dict)  # crowdlab: annotator -> estimated quality
    annotator_answers: dict[str, int] = field(default_factory=dict)  # annotator -> answers in the file
    detected: bool = False  # the format was read from the content (no --format)

    def to_frame(self) -> pd.DataFrame:
        """One row per answer that was not simply added: conflicts, disagreements in the file,
        unknown ids and skipped records (columns kind, id, stored, incoming, resolution, where, why)."""
        rows = [{"kind": "conflict", "id": c.id, "stored": c.stored, "incoming": c.incoming, "resolution": c.resolution}
                for c in self.conflicts]
        rows += [{"kind": "disagreement", "id": d.id, "incoming": ", ".join(a.label for a in d.answers), "resolution": d.chosen}
                 for d in self.disagreements]
        rows += [{"kind": "unknown", "id": a.id, "incoming": a.label, "where": a.where} for a in self.unknown]
        rows += [{"kind": "skipped", "where": w, "why": why} for w, why in self.skipped]
        return pd.DataFrame(rows, columns=["kind", "id", "stored", "incoming", "resolution", "where", "why"])


@dataclass
class AuditResult:
    """The labels most likely wrong, ranked, with the suggested label (``audit.table``)."""

    audit: LabelAudit
    output: Path | None
    format: str | None
    info: dict[str, Any]

    def to_frame(self) -> pd.DataFrame:
        """Every audited label, most suspicious first (a copy of ``audit.table``)."""
        return self.audit.table.copy()
