"""Fault injection for the crash tests: ``crash_point("name")`` kills this process (SIGKILL, no
cleanup, as a power cut or ``kill -9`` would) when the environment variable ``FMAL_CRASH_AT`` names
that point. Unset, it costs one dictionary lookup.

    FMAL_CRASH_AT=query.before-commit        die the first time that point is reached
    FMAL_CRASH_AT=view.round:2               die the second time
"""

from __future__ import annotations

import os
import signal

ENV = "FMAL_CRASH_AT"
_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Die here, at once, if ``FMAL_CRASH_AT`` names this point (and its count is reached)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= (int(count) if count.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)
