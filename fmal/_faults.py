"""Fault injection for the crash and concurrency tests. ``crash_point("name")`` marks a place
between two writes; unset, it costs two dictionary lookups.

    FMAL_CRASH_AT=session.before-commit      die (SIGKILL: no cleanup, as kill -9 or a power cut)
                                             the first time that point is reached
    FMAL_CRASH_AT=atomic.before-rename:2     die the second time
    FMAL_PAUSE_AT=session.locked:1.5         sleep 1.5 s there (widens a race window in tests;
                                             several: a:0.5,b:0.5)
"""

from __future__ import annotations

import os
import signal
import time

ENV = "FMAL_CRASH_AT"
ENV_PAUSE = "FMAL_PAUSE_AT"
_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Die here, at once, if ``FMAL_CRASH_AT`` names this point (and its count is reached); sleep
    if ``FMAL_PAUSE_AT`` names it."""
    spec = os.environ.get(ENV)
    if spec:
        point, _, count = spec.partition(":")
        if point == name:
            _hits[name] = _hits.get(name, 0) + 1
            if _hits[name] >= (int(count) if count.isdigit() else 1):
                os.kill(os.getpid(), signal.SIGKILL)
    pause = os.environ.get(ENV_PAUSE)
    if pause:
        for item in pause.split(","):
            point, _, seconds = item.partition(":")
            if point == name:
                time.sleep(float(seconds or 1))
