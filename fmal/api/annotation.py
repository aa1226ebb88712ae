"""The annotation loop: ``export`` a round for a tool, ``import_labels`` its answers, ``audit`` the
labels (:mod:`fmal.export`, :mod:`fmal.audit`)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from fmal import frames, images, multilabel
from fmal._validation import check_seed
from fmal.api.labelset import _declare
from fmal.api.results import AuditResult, ExportResult, ImportResult
from fmal.api.rounds import PROBES, _frame_of_round
from fmal.audit import DEFAULT_FOLDS, audit_info, audit_labels
from fmal.exceptions import InvalidInputError, LabelsError
from fmal.export import FORMATS, Answer
from fmal.export.base import Answers
from fmal.pool import Pool, open_pool
from fmal.session import Session

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def _check_output(fmt_name: str, output: PathLike | None, default: Path) -> Path:
    fmt = FORMATS.get(fmt_name)
    out = Path(output) if output is not None else default.with_suffix(fmt.suffixes[0])
    if out.suffix.lower() not in fmt.suffixes:
        raise InvalidInputError(f"output {out}: a {fmt.name} file must end in {' or '.join(fmt.suffixes)}", param="output")
    return out


def _classes(session: Session, *extra: Any) -> list[str]:
    """The pool's declared classes (in their order) and any class seen outside them; with none
    declared, every class seen so far: stored labels, suggested labels and the last probe's classes."""
    seen = set(session.labels.values())
    for values in extra:
        seen |= {str(v) for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))}
    probes = sorted((session.dir / PROBES).glob("round-*.json")) if (session.dir / PROBES).is_dir() else []
    if probes:
        try:
            seen |= {str(c) for c in json.loads(probes[-1].read_text(encoding="utf-8")).get("classes", [])}
        except (OSError, ValueError, AttributeError):
            pass  # an unreadable probe adds nothing: the labels still list the classes
    if session.task == multilabel.MULTI:  # multi-label hook: the classes named in the answers, not the answers
        seen = set(multilabel.classes_of(seen))
    declared = list(session.classes)
    return declared + sorted(seen - set(declared))


def export(
    pool: str | PathLike,
    round: int | None = None,
    format: str = "csv",
    *,
    index_dir: PathLike | None = None,
    output: PathLike | None = None,
    classes: str | list[str] | None = None,
    with_vectors: bool = False,
    image_root: PathLike | None = None,
    image_url_prefix: str | None = None,
) -> ExportResult:
    """Write a round's picks as an annotation tool's import file.

    Every task lists every class (Prodigy ``options``; the Label Studio config and Argilla
    question from :func:`fmal.export.labelstudio.label_config` / the Argilla settings): the pool's
    declared classes, else every class seen so far, with a warning when there are none (a seed
    round before any ``classes``). Query rounds carry the probe's suggested label and
    probability, written as the tool's pre-annotation (Label Studio predictions, Prodigy
    preselected option and score, Argilla suggestions, ``predicted_label``/``predicted_proba``
    columns in CSV/JSONL). An image pool's tasks show the image
    (:func:`fmal.images.image_sources`). Read the answers back with :func:`import_labels`.

    Parameters
    ----------
    pool : str or path
        The pool: a name (a folder under ``index_dir``) or a folder path with a '/'.
    round : int, optional
        The round to export (default: the last).
    format : str
        A name in ``fmal.export.FORMATS``: csv, jsonl, label-studio, prodigy, argilla.
    index_dir : path, optional
        Where named pools live (default ``./indexes``).
    output : path, optional
        The file to write, with the format's extension (default: the pool's
        ``exports/round-NNN-FORMAT.EXT``).
    classes : str or list of str, optional
        Declare the pool's label set ("A,B,C" or a list; stored in labels.db, once is enough).
    with_vectors : bool
        Argilla: each record carries the pool's embedding of its text (vector ``embedding``).
    image_root : path, optional
        Image pools: the folder the tool reads the images from (default: the folder they were
        embedded from); tasks carry ``image_root`` / relative path.
    image_url_prefix : str, optional
        Image pools: tasks carry this prefix + the URL-quoted relative path.

    Returns
    -------
    ExportResult
        The round, format and file written, the number of tasks and of suggestions, the classes
        listed (and whether declared), and the warning given, if any.

    Raises
    ------
    InvalidInputError
        An unknown format or round, no round yet, an ``output`` name without the format's
        extension, bad ``classes``, or an option the format or pool has no use for
        (``with_vectors``, ``image_root``, ``image_url_prefix``).
    PoolNotFoundError
        No pool at ``pool``.
    """
    fmt = FORMATS.get(format)
    if with_vectors and fmt.name != "argilla":
        raise InvalidInputError(f"with_vectors adds the embeddings to Argilla records; {fmt.name} has no place for them",
                                param="with_vectors")
    p = open_pool(pool, index_dir)
    session = Session(p.path)
    if session.refresh_views():  # a writer killed after its commit left a view stale
        session = Session(p.path)
    if classes is not None:
        _declare(session, classes)
    if not session.rounds:
        raise InvalidInputError(f"pool {p.name!r} has no rounds yet; pick rows first with fmal seed --pool {p.name} --budget N")
    numbers = [r.round for r in session.rounds]
    if round is None:
        round = numbers[-1]
    rec = next((r for r in session.rounds if r.round == round), None)
    if rec is None:
        raise InvalidInputError(f"round must be one of the pool's rounds ({', '.join(map(str, numbers))}), got {round}", param="round")
    frame = _frame_of_round(p, rec)
    images.with_image_sources(frame, p.manifest, p.name, image_root=image_root, url_prefix=image_url_prefix)
    if session.task == multilabel.MULTI:  # multi-label hook: the formats write multiple-choice questions
        frame.attrs["multi_label"] = True
    if with_vectors:
        frame.attrs["vectors"] = np.asarray(p.embeddings[p.rows_of(rec.ids, source="session")], dtype=np.float32)
    out = _check_output(fmt.name, output, p.path / "exports" / f"round-{round:03d}-{fmt.name}")
    names = _classes(session, frame.get("predicted_label", []))
    warning = None
    if not names and fmt.name != "csv" and fmt.name != "jsonl":
        warning = (f"pool {p.name!r} has no classes yet: the {fmt.name} tasks offer no choice; declare them with "
                   f"fmal export --pool {p.name} --format {fmt.name} --classes A,B,C")
        log.warning("%s", warning)
    fmt.write(frame, out, names)
    n_sugg = int(frame["predicted_label"].notna().sum()) if "predicted_label" in frame else 0
    return ExportResult(round, fmt.name, out, len(frame), n_sugg, names, bool(session.classes), warning)


def _no_usable_answer(path: Path, fmt: str, got: Any, detected: bool) -> LabelsError:
    """The one-line error for a file whose records hold no answer fmal can use."""
    from collections import Counter

    from fmal.export.detect import guess

    why = "; ".join(f"{n} x {w}" for w, n in Counter(w for _, w in got.skipped).most_common(3))
    other = None if detected else guess(path)
    if other is not None and other != fmt:
        hint = f"it looks like a {other} export: pass format {other} (or leave format out)"
    elif any("not annotated" in w or "no response" in w or "no label yet" in w or "no answer" in w for _, w in got.skipped):
        hint = "annotate some tasks, export again and import that file"
    else:
        hint = "check that the file is the tool's export of tasks fmal wrote, and format"
    return LabelsError(f"{path}: {got.n_records} record(s) read as {fmt}, none holds a usable answer ({why or 'no answer field'}); {hint}",
                       param="format")


def import_labels(
    file: PathLike | frames.LabelsLike,
    pool: str | PathLike,
    format: str | None = None,
    *,
    on_conflict: str = "error",
    index_dir: PathLike | None = None,
    control: str | None = None,
    classes: str | list[str] | None = None,
    multi_label: bool = False,
) -> ImportResult:
    """Merge the answers of an annotation tool's export into the pool's labels.

    Nothing stored is lost, answers for ids not in the pool are reported (not imported), and
    importing the same file again changes no label. Labels outside the pool's declared classes are
    imported and reported. A file that answers an id twice differently, or answers a labeled id
    differently from the stored label, is a conflict, settled by ``on_conflict``; every answer of
    an id answered several times is kept in labels.db's ``answers`` (outcome ``vote``, with its
    annotator), and a replaced label in ``relabels``. The file is read before the pool's write lock
    is taken; the merge is one transaction.

    Parameters
    ----------
    file : path, DataFrame, dict, Series or (id, label) pairs
        The tool's export (Label Studio JSON/JSON_MIN/CSV, Prodigy db-out JSONL, Argilla records,
        CSV, JSONL), or the answers themselves in memory (:mod:`fmal.frames`; ``format`` and
        ``control`` are then not used).
    pool : str or path
        The pool: a name (a folder under ``index_dir``) or a folder path with a '/'.
    format : str, optional
        A name in ``fmal.export.FORMATS``; None: read from the content
        (:func:`fmal.export.detect.detect`).
    on_conflict : {"error", "keep", "replace", "majority", "crowdlab"}
        ``error``: write nothing; ``keep``: the stored / first answer wins; ``replace``: the
        file's / last answer wins; ``majority``: most annotators' label (a tie imports nothing for
        that id); ``crowdlab``: cleanlab's CROWDLAB consensus, with each annotator's estimated
        quality. A consensus replaces a differing stored label.
    index_dir : path, optional
        Where named pools live (default ``./indexes``).
    control : str, optional
        label-studio: the choices control to read (default ``label``, else the only one).
    classes : str or list of str, optional
        Declare the pool's label set ("A,B,C" or a list); answers outside it are reported.
    multi_label : bool
        Make the pool multi-label (:mod:`fmal.multilabel`); a multi-label pool reads several
        chosen classes (a list, ``a|b``) as one answer.

    Returns
    -------
    ImportResult
        Records and answers read; labels added, changed, unchanged and kept; the conflicts,
        disagreements, unknown ids, skipped records, labels outside the classes, ties and
        annotator qualities.

    Raises
    ------
    InvalidInputError
        An unknown format or ``on_conflict``, ``control`` on a format that has none, bad
        ``classes``.
    LabelsError
        The file cannot be read, holds no usable answer (the message says why: the wrong format,
        nothing annotated), answers none of the pool's ids, or conflicts with the stored labels
        (or with itself) under ``on_conflict="error"``.
    PoolNotFoundError
        No pool at ``pool``.
    PoolBusyError
        Another process holds the pool's session lock.
    """
    from fmal.export import consensus
    from fmal.export import labelstudio as ls_format
    from fmal.export.detect import detect

    if on_conflict not in consensus.POLICIES:
        raise InvalidInputError(f"on_conflict must be one of {', '.join(consensus.POLICIES)}, got {on_conflict!r}", param="on_conflict")
    p = open_pool(pool, index_dir)
    session = Session(p.path)
    if frames.is_path(file):
        path = Path(file)
        detected = format is None
        fmt = FORMATS.get(detect(path) if format is None else format)
        if control is not None and fmt.name != "label-studio":
            raise InvalidInputError(f"control names a Label Studio control; the file is read as {fmt.name}", param="control")
        got = ls_format.read(path, control) if fmt.name == "label-studio" else fmt.read(path)
        got = multilabel.read_answers(got, session.task, multi_label, on_conflict, path, p.name)
        if got.n_records and not got.answers:
            raise multilabel.switch_hint(_no_usable_answer(path, fmt.name, got, detected), got, p.name)
    else:  # the answers themselves: an id,label table in memory
        path, detected = Path(frames.describe(file, "file")), False
        fmt = FORMATS.get("csv")
        got = Answers([Answer(i, lab, f"row {r}") for r, i, lab in frames.label_answers(file, "file")], [], len(file))
        got = multilabel.read_answers(got, session.task, multi_label, on_conflict, path, p.name)
    in_pool = set(p.in_pool([a.id for a in got.answers]))
    unknown = tuple(a for a in got.answers if a.id not in in_pool)
    if got.answers and len(unknown) == len(got.answers):
        shown = ", ".join(repr(a.id) for a in unknown[:5])
        raise LabelsError(f"{path}: none of the {len(unknown)} answered ids are in pool {p.name!r} ({shown}); check the file belongs to this pool")
    source = f"{fmt.name}:{path.name}" if frames.is_path(file) else str(path)
    with session.transaction("import labels"):  # the task type, classes and labels in one transaction
        if classes is not None:
            _declare(session, classes)
        multilabel.prepare(session, p.name, None, str(path), multi_label=multi_label)
        res = _resolve_answers(p, session, [a for a in got.answers if a.id in in_pool], on_conflict, str(path))
        res.labels = multilabel.prepare(session, p.name, res.labels, str(path)) or {}
        merge = session.add_labels(res.labels, source=source, on_conflict=consensus.merge_policy(on_conflict),
                                   annotators=res.annotators, votes=res.votes)
    declared = set(session.classes)
    named = (multilabel.classes_of(res.labels.values()) if session.task == multilabel.MULTI  # multi-label hook: per class
             else set(res.labels.values()))
    outside = tuple(sorted({lab for lab in named if declared and lab not in declared}))
    return ImportResult(path, fmt.name, on_conflict, got.n_records, len(got.answers), merge.added, merge.changed,
                        merge.unchanged, merge.kept, merge.conflicts, tuple(res.disagreements), unknown, tuple(got.skipped),
                        outside, tuple(res.ties), res.annotator_quality, res.annotator_answers, detected)


def _resolve_answers(p: Pool, session: Session, answers: list[Answer], policy: str, source: str) -> Any:
    """One label per id (:func:`fmal.export.consensus.resolve`), CROWDLAB with the pool's embeddings."""
    from fmal.export.consensus import resolve

    def embeddings_of(ids: list[str]) -> np.ndarray:
        return np.asarray(p.embeddings[p.rows_of(ids, source="labels")], dtype=np.float32)

    return resolve(answers, policy, source, embeddings_of=embeddings_of, stored=session.labels, classes=session.classes)


def _stored_labels(p: Pool, session: Session) -> tuple[list[str], np.ndarray, list[str]]:
    """The pool's labeled ids (sorted), their rows and labels; an error when there are none yet."""
    known = session.labels
    if not known:
        raise LabelsError(f"pool {p.name!r} has no labels yet; import some first with fmal import-labels FILE --pool {p.name}")
    ids = sorted(known)
    return ids, p.rows_of(ids, source="labels"), [known[i] for i in ids]


def audit(
    pool: str | PathLike,
    *,
    index_dir: PathLike | None = None,
    output: PathLike | None = None,
    format: str | None = None,
    include_all: bool = False,
    n_folds: int = DEFAULT_FOLDS,
    random_state: int = 0,
) -> AuditResult:
    """Find labels that look wrong: cross-validated probe probabilities + cleanlab.

    Every labeled row gets the probability of each class from a probe that did not see it
    (``n_folds``-fold cross-validation); cleanlab's label-issue detection ranks the labels most
    likely wrong, each with a suggested label. With ``output``, the flagged rows (every audited
    row with ``include_all``) are written for re-review, the suggestion as the pre-annotation and
    the given label as ``given_label``; import the reviewed file with
    ``import_labels(..., on_conflict="replace")``.

    Parameters
    ----------
    pool : str or path
        The pool: a name (a folder under ``index_dir``) or a folder path with a '/'.
    index_dir : path, optional
        Where named pools live (default ``./indexes``).
    output : path, optional
        Write the flagged labels for re-review to this file.
    format : str, optional
        The format of ``output`` (a name in ``fmal.export.FORMATS``); None: from its extension
        (.csv, .tsv: csv; .jsonl: jsonl).
    include_all : bool
        Write every audited label, ranked, not only the flagged ones.
    n_folds : int
        Cross-validation folds (fewer when a class has fewer labels).
    random_state : int
        Seed of the folds and the probe.

    Returns
    -------
    AuditResult
        ``audit.table``: every audited label ranked (rank, id, given_label, predicted_label,
        predicted_proba, label_quality, is_issue); ``output`` and ``format`` when written; ``info``.

    Raises
    ------
    LabelsError
        The pool has no labels yet, or fewer than two classes with at least 2 labels each.
    InvalidInputError
        An ``output`` extension with no ``format``, an unknown format, a bad seed.
    PoolNotFoundError
        No pool at ``pool``.
    """
    random_state = check_seed(random_state)
    p = open_pool(pool, index_dir)
    session = Session(p.path)
    ids, rows, y = _stored_labels(p, session)
    if session.task == multilabel.MULTI:  # multi-label hook: cleanlab's multi_label=True on one-vs-rest probabilities
        from fmal.audit_multilabel import audit_multilabel as audit_labels_of
    else:
        audit_labels_of = audit_labels
    res = audit_labels_of(np.asarray(p.embeddings[rows]), ids, y, n_folds=n_folds, random_state=random_state)
    out = None
    if output is not None:
        if format is None:
            format = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl"}.get(Path(output).suffix.lower())
            if format is None:
                raise InvalidInputError(f"output {output}: pass format ({', '.join(FORMATS.names())}) for this extension",
                                        param=("output", "format"))
        out = _check_output(format, output, Path(output))
        table = res.table if include_all else res.issues
        frame = table.assign(text=p.texts[p.rows_of(table["id"].tolist(), source="labels")], audit_rank=table["rank"])
        frame = frame[["id", "text", "predicted_label", "predicted_proba", "given_label", "label_quality", "audit_rank"]]
        if session.task == multilabel.MULTI:
            frame.attrs["multi_label"] = True
        FORMATS.get(format).write(frame, out, _classes(session))
    return AuditResult(res, out, format if out else None, audit_info(res))
