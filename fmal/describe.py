"""``fmal status`` and ``fmal info`` without fmal.api: what they print comes from the manifest,
the files' headers and the labels store (SQLite), so they import neither pandas nor pyarrow nor
anything that selects or encodes (``tests/test_startup.py`` checks). ``fmal.api.status`` and
``fmal.api.info`` are these, with the rounds as a DataFrame for the API."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmal.pool import Manifest, open_pool, pool_path, read_manifest
from fmal.pool import check as pool_check
from fmal.session import backup as human_work

if TYPE_CHECKING:
    import pandas as pd

    from fmal.session import Round

PathLike = str | os.PathLike[str]


def round_rows(rounds: list[Round]) -> list[dict[str, Any]]:
    """One row per round for the status table: picks, labels then, labels per class, probe C,
    cross-validated accuracy and the stopping kappa against the previous round."""
    rows = []
    for r in rounds:
        info = r.info
        counts = info.get("class_counts") or {}
        rows.append({"round": r.round, "kind": r.kind, "strategy": r.strategy, "picks": r.n_picks,
                     "labels_then": r.extra.get("n_labeled", 0),
                     "per_class": " ".join(f"{k}:{v}" for k, v in counts.items()) or "-",
                     "probe_C": info.get("probe_C", float("nan")),
                     "cv_acc": float("nan") if info.get("probe_cv_accuracy") is None else info["probe_cv_accuracy"],
                     "kappa_prev": float("nan") if r.stop_kappa is None else r.stop_kappa,
                     "mix": _mix(r.info), "created": r.created})
    return rows


def _mix(info: dict[str, Any]) -> str:
    """An adaptive round's random share and the confidence that active picks pay; "-" otherwise."""
    a = info.get("adaptive") or {}
    if "random_share" not in a:
        return "-"
    return f"{a['random_share']:.0%} random (P(active) {a.get('p_active', float('nan')):.2f})"


def last_advice(rounds: list[Round]) -> str | None:
    """The last query round's stopping recommendation (None before any)."""
    return next((r.stop_advice for r in reversed(rounds) if r.kind == "query" and r.info), None)


@dataclass(frozen=True)
class StatusRows:
    """``fmal status``'s result without pandas: fmal.api.PoolStatus field for field, the rounds as
    :func:`round_rows` (so ``fmal status --json`` prints the same document)."""

    path: Path
    manifest: Manifest
    n_labels: int
    rounds: list[dict[str, Any]]
    advice: str | None = None
    task: str = "single-label"  # or multi-label (fmal.multilabel)


def status_rows(pool: str | PathLike, *, index_dir: PathLike | None = None) -> StatusRows:
    """A pool's manifest, label count and rounds: the manifest, the files' headers and the labels store."""
    from fmal.session import Session

    p = open_pool(pool, index_dir)  # no ids, texts or embeddings read
    s = Session(p.path)
    return StatusRows(p.path, p.manifest, len(s.labels), round_rows(s.rounds), last_advice(s.rounds), s.task)


@dataclass(frozen=True)
class PoolInfo:
    """What a pool is: its manifest, the size of each of its files on disk, what is wrong with
    them (empty when nothing) and how many labels and rounds it holds."""

    path: Path
    manifest: Manifest
    file_bytes: dict[str, int]
    problems: tuple[str, ...] = ()
    repair_hint: str = ""
    human_work: int = 0

    def to_frame(self) -> pd.DataFrame:
        """One row per file of the pool folder: name, bytes."""
        import pandas as pd

        return pd.DataFrame({"file": list(self.file_bytes), "bytes": list(self.file_bytes.values())})


def info(pool: str | PathLike, *, index_dir: PathLike | None = None) -> PoolInfo:
    """Show what a pool is made of: model, rows, storage, the FAISS index chosen (factory,
    parameters, measured recall@10, why), and whether its files are sound.

    A damaged pool is described, not refused: files missing, unreadable, of the wrong size or
    shape are listed in ``problems`` with the command that repairs them (checksums are for
    ``embed(..., repair=True)``). Reads no ids, texts or embeddings.

    Parameters
    ----------
    pool : str or path
        The pool: a name (a folder under ``index_dir``) or a folder path with a '/'.
    index_dir : path, optional
        Where named pools live (default ``./indexes``).

    Returns
    -------
    PoolInfo
        The pool's path and manifest, the size of each of its files, its problems (empty when
        none) with the repair hint, and how many labels and rounds it holds.

    Raises
    ------
    PoolNotFoundError
        No pool at ``pool``.
    CorruptPoolError
        The manifest cannot be read.
    """
    path = pool_path(pool, index_dir)
    m = read_manifest(path)
    if m is None:
        open_pool(pool, index_dir)  # the usual "no pool there" error
    problems = tuple(map(str, pool_check.check_pool(path, m, checksums=False)))
    sizes = {f.name: f.stat().st_size for f in sorted(path.iterdir()) if f.is_file()}
    return PoolInfo(path, m, sizes, problems, pool_check.repair_hint(path, m) if problems else "",
                    human_work.has_human_work(path))
