"""The labeling session of a pool: everything a person made, in one SQLite database per pool.

    indexes/NAME/labels.db        the single source of truth (WAL, synchronous=FULL)
        meta       schema_version, generation (bumped by every write), views_generation, migration
        classes    the pool's declared label set, in order (schema 2)
        labels     the current label of each labeled id (and the answer it came from)
        answers    every answer ever given: id, value, source, annotator, time, the round it
                   answered, and what it did (added / replaced / kept / unchanged / migrated / vote:
                   one of several answers to the same task that went into a consensus)
        relabels   each replaced label: old, new, source, time
        rounds     number, kind, strategy, params key, parameters and info (JSON), output, the
                   per-pick column names in order
        picks      each round's picked ids in order, their text and per-pick values
        files      the files the pool wrote (round CSVs, probes) and the user's own copies
                   (``owned`` = 0: never deleted), with their round
        sync_tasks, sync_annotations   what ``fmal sync`` pushed to an annotation tool (task ids)
                   and pulled from it (annotation ids and their update time), per target (schema 2)
    indexes/NAME/labels.csv       view: id,label, rewritten from the database after each commit
    indexes/NAME/rounds/*.csv     view: each round's picks, likewise

A command that writes does it in one transaction (:meth:`Session.transaction`) under the pool's
write lock (:mod:`fmal._lock`): it reads the state after taking the lock, computes, writes and
commits, then re-renders the views. A crash before the commit leaves the old state, after it the
new one; a view left stale or missing is rendered again by the next writer (or ``fmal export``).

A label is never dropped: a later, different answer for an id replaces it and the old answer is
kept in ``relabels`` (and ``answers``). Ids picked in a round and not yet labeled are "queued",
and query rounds do not pick them again.

Pools made by older fmal versions keep ``session.json`` and ``labels.csv`` (id,label,source):
readers read those files as they are; the first write migrates them into the database in one
transaction, then renames them ``*.migrated`` (a backup). Once the database exists the legacy
files are ignored.

The package, by job:

    db.py        labels.db itself: file names, schema and upgrade, connections, meta
    core.py      Session: the state as read, the transaction, the write methods
    labels.py    Label records; merging answers, relabels, classes, dropping ids
    rounds.py    Round records; storing, reading and removing rounds and their picks
    synclog.py   what fmal sync pushed and pulled, per target
    views.py     labels.csv and rounds/*.csv rendered from the database; undo's deletions
    migrate.py   session.json + labels.csv of older fmal versions, read and migrated
    backup.py    what ``fmal embed --overwrite`` keeps of a person's work, and its backups
"""

from __future__ import annotations

from fmal.session.core import Session
from fmal.session.db import DB, LABELS, MIGRATED, ROUNDS, SCHEMA_VERSION, SESSION, has_history
from fmal.session.labels import ON_CONFLICT, OUTCOMES, Label, LabelConflict, LabelMerge
from fmal.session.rounds import Round, params_key, round_frame

__all__ = ["DB", "LABELS", "MIGRATED", "ON_CONFLICT", "OUTCOMES", "ROUNDS", "SCHEMA_VERSION", "SESSION", "Label",
           "LabelConflict", "LabelMerge", "Round", "Session", "has_history", "params_key", "round_frame"]
