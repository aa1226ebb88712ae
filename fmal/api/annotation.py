"""The annotation loop: ``export`` a round for a tool, ``import_labels`` its answers, ``audit`` the
labels (:mod:`fmal.export`, :mod:`fmal.audit`)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from fmal import frames, images
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
        raise InvalidInputError(f"--output {out}: a {fmt.name} file must end in {' or '.join(fmt.suffixes)}")
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
    """Write the picks of round ``round`` (default: the last) for an annotation tool.

    Every task lists every class (Prodigy ``options``; the Label Studio config and Argilla
    question from :func:`fmal.export.labelstudio.label_config` / the Argilla settings): the pool's
    declared classes (``classes`` declares them, stored in labels.db), else every class seen so
    far, with a warning when there are none (a seed round before ``--classes``).
    Query rounds carry the probe's suggested label and probability, written as the tool's
    pre-annotation (Label Studio predictions, Prodigy preselected option and score, Argilla
    suggestions, ``predicted_label``/``predicted_proba`` columns in CSV/JSONL). ``with_vectors``:
    Argilla records carry the pool's embedding of each text (vector ``embedding``).
    Default output: the pool's ``exports/round-NNN-FORMAT.EXT``.

    An image pool's tasks show the image (:func:`fmal.images.image_sources`): its file path under
    the pool's image folder, or under ``image_root``, or ``image_url_prefix`` + its relative path.
    """
    fmt = FORMATS.get(format)
    if with_vectors and fmt.name != "argilla":
        raise InvalidInputError(f"--with-vectors adds the embeddings to Argilla records; {fmt.name} has no place for them")
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
        raise InvalidInputError(f"--round must be one of the pool's rounds ({', '.join(map(str, numbers))}), got {round}")
    frame = _frame_of_round(p, rec)
    # --- images (fmal.images): where the tool loads each pick's image from
    if (root := images.pool_image_root(p.manifest)) is not None:
        frame["image"] = images.image_sources(frame["text"].astype(str).tolist(), root, image_root=image_root,
                                              url_prefix=image_url_prefix)
        frame.attrs["modality"] = "image"
    elif image_root is not None or image_url_prefix is not None:
        raise InvalidInputError(f"--image-root and --image-url-prefix say where an image pool's images are; pool {p.name!r} holds texts")
    # ---
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
        hint = f"it looks like a {other} export: pass --format {other} (or leave --format out)"
    elif any("not annotated" in w or "no response" in w or "no label yet" in w or "no answer" in w for _, w in got.skipped):
        hint = "annotate some tasks, export again and import that file"
    else:
        hint = "check that the file is the tool's export of tasks fmal wrote, and --format"
    return LabelsError(f"{path}: {got.n_records} record(s) read as {fmt}, none holds a usable answer ({why or 'no answer field'}); {hint}")


def import_labels(
    file: PathLike | frames.LabelsLike,
    pool: str | PathLike,
    format: str | None = None,
    *,
    on_conflict: str = "error",
    index_dir: PathLike | None = None,
    control: str | None = None,
    classes: str | list[str] | None = None,
) -> ImportResult:
    """Read an annotation tool's export and merge its answers into the pool's labels.

    ``format`` None: read from the content (:func:`fmal.export.detect.detect`). A file whose
    records hold no usable answer (the wrong format, nothing annotated) is a LabelsError saying
    why. Answers for ids not in the pool are reported, not imported; labels outside the pool's
    declared classes (``classes`` declares them) are imported and reported. A file that answers
    an id twice differently, or answers a labeled id differently from the stored label, is a
    conflict: ``on_conflict`` = ``error`` (default: nothing is written), ``keep`` (the stored /
    first answer wins), ``replace`` (the file's / last answer wins; the old label is kept in the
    pool's labels.db: ``relabels`` and ``answers``), ``majority`` (most annotators' label; a tie
    imports nothing for that id) or ``crowdlab`` (cleanlab's CROWDLAB consensus, with each
    annotator's estimated quality); a consensus replaces a differing stored label. Every answer of
    an id answered several times is kept in ``answers`` (outcome ``vote``, with its annotator).
    ``control``: the Label Studio choices control to read (default ``label``, else the only one).
    Importing the same file again changes no label. The file is read before the pool's write lock
    is taken; the merge is one transaction.
    ``file`` may also be the answers themselves (a DataFrame with id and label columns, a dict, a
    Series, (id, label) pairs: :mod:`fmal.frames`; ``format`` and ``control`` are then not used).
    """
    from fmal.export import consensus
    from fmal.export import labelstudio as ls_format
    from fmal.export.detect import detect

    if on_conflict not in consensus.POLICIES:
        raise InvalidInputError(f"--on-conflict must be one of {', '.join(consensus.POLICIES)}, got {on_conflict!r}")
    p = open_pool(pool, index_dir)
    session = Session(p.path)
    if frames.is_path(file):
        path = Path(file)
        detected = format is None
        fmt = FORMATS.get(detect(path) if format is None else format)
        if control is not None and fmt.name != "label-studio":
            raise InvalidInputError(f"--control names a Label Studio control; the file is read as {fmt.name}")
        got = ls_format.read(path, control) if fmt.name == "label-studio" else fmt.read(path)
        if got.n_records and not got.answers:
            raise _no_usable_answer(path, fmt.name, got, detected)
    else:  # the answers themselves: an id,label table in memory
        path, detected = Path(frames.describe(file, "file")), False
        fmt = FORMATS.get("csv")
        got = Answers([Answer(i, lab, f"row {r}") for r, i, lab in frames.label_answers(file, "file")], [], len(file))
    in_pool = set(p.in_pool([a.id for a in got.answers]))
    unknown = tuple(a for a in got.answers if a.id not in in_pool)
    if got.answers and len(unknown) == len(got.answers):
        shown = ", ".join(repr(a.id) for a in unknown[:5])
        raise LabelsError(f"{path}: none of the {len(unknown)} answered ids are in pool {p.name!r} ({shown}); check the file belongs to this pool")
    if classes is not None:
        _declare(session, classes)
    source = f"{fmt.name}:{path.name}" if frames.is_path(file) else str(path)
    res = _resolve_answers(p, session, [a for a in got.answers if a.id in in_pool], on_conflict, str(path))
    merge = session.add_labels(res.labels, source=source, on_conflict=consensus.merge_policy(on_conflict),
                               annotators=res.annotators, votes=res.votes)
    declared = set(session.classes)
    outside = tuple(sorted({lab for lab in res.labels.values() if declared and lab not in declared}))
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
    """Cross-validated probe probabilities on every labeled row, then cleanlab's label-issue
    detection: the likely wrong labels, most suspicious first, each with a suggested label.

    With ``output``, the flagged rows (all audited rows with ``include_all``) are written for
    re-review in ``format`` (default: from the extension, .csv -> csv, .jsonl -> jsonl), with the
    suggestion as pre-annotation and the given label as ``given_label``.
    """
    random_state = check_seed(random_state)
    p = open_pool(pool, index_dir)
    session = Session(p.path)
    ids, rows, y = _stored_labels(p, session)
    res = audit_labels(np.asarray(p.embeddings[rows]), ids, y, n_folds=n_folds, random_state=random_state)
    out = None
    if output is not None:
        if format is None:
            format = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl"}.get(Path(output).suffix.lower())
            if format is None:
                raise InvalidInputError(f"--output {output}: pass --format ({', '.join(FORMATS.names())}) for this extension")
        out = _check_output(format, output, Path(output))
        table = res.table if include_all else res.issues
        frame = table.assign(text=p.texts[p.rows_of(table["id"].tolist(), source="labels")], audit_rank=table["rank"])
        frame = frame[["id", "text", "predicted_label", "predicted_proba", "given_label", "label_quality", "audit_rank"]]
        FORMATS.get(format).write(frame, out, _classes(session))
    return AuditResult(res, out, format if out else None, audit_info(res))
