"""One writer per pool: an OS file lock on ``indexes/NAME/.lock`` held for the whole
read-compute-write of every command that writes the pool (embed, seed, query, import-labels, undo).

A second writer waits its turn (up to ``FMAL_LOCK_TIMEOUT`` seconds, default 600, saying so on
stderr once), then fails with :class:`~fmal.exceptions.PoolBusyError`. The OS releases the lock
when its process dies, so a killed command never leaves a pool locked. The lock is re-entrant
within a process (a command that writes through several layers takes it once).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from fmal.exceptions import InvalidInputError, PoolBusyError

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
ENV_TIMEOUT = "FMAL_LOCK_TIMEOUT"
DEFAULT_TIMEOUT = 600.0

_held: dict[Path, tuple[FileLock, int]] = {}
_guard = threading.RLock()


def lock_timeout() -> float:
    """Seconds a writer waits for the pool lock: ``FMAL_LOCK_TIMEOUT`` or 600."""
    raw = os.environ.get(ENV_TIMEOUT)
    if raw is None or raw.strip() == "":
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise InvalidInputError(f"{ENV_TIMEOUT}={raw!r}: use a number of seconds >= 0")
    return value


@contextlib.contextmanager
def pool_lock(pool_dir: str | os.PathLike[str], *, timeout: float | None = None, what: str = "writing") -> Iterator[None]:
    """Hold the write lock of the pool folder ``pool_dir`` (created if missing) for the block.

    ``timeout``: seconds to wait (None: :func:`lock_timeout`; 0: fail at once). While waiting a
    warning says who waits for what; past the timeout, PoolBusyError.
    """
    path = Path(pool_dir).resolve()
    with _guard:
        if path in _held:  # re-entrant in this process
            lock, n = _held[path]
            _held[path] = (lock, n + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            _release(path)
        return
    path.mkdir(parents=True, exist_ok=True)
    wait = lock_timeout() if timeout is None else timeout
    lock = FileLock(str(path / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if wait <= 0:
            raise PoolBusyError(f"{path}: another fmal process is writing this pool; wait for it to finish or use another --pool") from None
        log.warning("%s: another fmal command is writing this pool; waiting up to %.0f s for it (%s)", path, wait, what)
        t0 = time.monotonic()
        try:
            lock.acquire(timeout=wait, poll_interval=0.05)
        except Timeout:
            raise PoolBusyError(
                f"{path}: another fmal process kept this pool busy for {time.monotonic() - t0:.0f} s; "
                f"try again when it is done, or raise {ENV_TIMEOUT}"
            ) from None
    with _guard:
        _held[path] = (lock, 1)
    try:
        yield
    finally:
        _release(path)


def _release(path: Path) -> None:
    with _guard:
        lock, n = _held[path]
        if n > 1:
            _held[path] = (lock, n - 1)
            return
        del _held[path]
    lock.release()


def holds_lock(pool_dir: str | os.PathLike[str]) -> bool:
    """True when this process holds the write lock of ``pool_dir``."""
    with _guard:
        return Path(pool_dir).resolve() in _held
