"""The pool's declared label set (``classes=``): parse it, store it, warn about labels outside it."""

from __future__ import annotations

import logging
import os

from fmal.exceptions import InvalidInputError
from fmal.pool import open_pool
from fmal.session import Session

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def parse_classes(classes: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    """``--classes A,B,C`` (or a list) as a list of names; None when not given."""
    if classes is None:
        return None
    names = [c.strip() for c in classes.split(",")] if isinstance(classes, str) else [str(c).strip() for c in classes]
    if not names or any(not n for n in names):
        raise InvalidInputError(f"classes {classes!r}: give class names separated by commas, e.g. POS,NEG,NEUTRAL",
                                param="classes")
    return names


def _declare(session: Session, classes: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Store ``classes`` as the pool's label set when given; warn about stored labels outside it."""
    names = parse_classes(classes)
    if names is not None:
        outside = session.set_classes(names)
        if outside:
            log.warning("%s: stored label(s) outside the declared classes: %s (kept; relabel them or add the class)",
                        session.dir, ", ".join(map(repr, outside)))
    return session.classes


def declare_classes(pool: str | PathLike, classes: str | list[str], *, index_dir: PathLike | None = None) -> tuple[list[str], list[str]]:
    """Declare a pool's label set, stored in its labels.db; every export lists it.

    Stored labels outside the new set are kept, and returned.

    Parameters
    ----------
    pool : str or path
        The pool: a name (a folder under ``index_dir``) or a folder path with a '/'.
    classes : str or list of str
        The class names, "A,B,C" or a list, each once.
    index_dir : path, optional
        Where named pools live (default ``./indexes``).

    Returns
    -------
    tuple of (list of str, list of str)
        The pool's classes, and the stored labels outside them.

    Raises
    ------
    InvalidInputError
        An empty or repeated class name.
    PoolNotFoundError
        No pool at ``pool``.
    """
    p = open_pool(pool, index_dir)
    session = Session(p.path)
    names = parse_classes(classes) or []
    outside = session.set_classes(names)
    return session.classes, outside
