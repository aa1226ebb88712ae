"""Every error fmal raises on purpose.

    FmalError
    ├── InvalidInputError      a file, column, row or parameter the user gave is wrong
    │   └── LabelsError        a labels file is wrong (unknown ids, one class, ...)
    ├── PoolError
    │   ├── PoolNotFoundError  no pool folder / manifest where one was expected
    │   ├── CorruptPoolError   a pool's files are missing, unreadable or inconsistent
    │   ├── PoolExistsError    a pool with that name was built from other input
    │   ├── ModelMismatchError a pool was built with another model than the one asked for
    │   └── PoolBusyError      another process is building the pool right now
    ├── ModelLoadError         an encoder could not be loaded
    ├── ServiceError           an annotation tool's server is down, refuses the token or answers an error
    └── PoolExhaustedError     a budget asks for more rows than are left

The CLI turns any FmalError into one line on stderr and a non-zero exit code; messages
therefore name the file, row, column or parameter, the rule, and what to do.
"""

from __future__ import annotations


class FmalError(Exception):
    """Base class of every error fmal raises on purpose."""

    exit_code: int = 2

    def __init__(self, *args: object, param: str | tuple[str, ...] | None = None) -> None:
        super().__init__(*args)
        #: the API parameter(s) the message names (``budget``; ``("repair", "overwrite")``), for
        #: the CLI to show as its flags
        self.param = param


class InvalidInputError(FmalError, ValueError):
    """A file, column, row or parameter given by the user is wrong."""


class LabelsError(InvalidInputError):
    """A labels file is wrong: unknown ids, a single class, unreadable rows."""


class PoolError(FmalError):
    """Something is wrong with a pool folder."""


class PoolNotFoundError(PoolError, FileNotFoundError):
    """No pool where one was expected."""


class CorruptPoolError(PoolError):
    """A pool's files are missing, unreadable or disagree with its manifest."""


class PoolExistsError(PoolError):
    """A pool of that name already exists and was built from other input."""


class ModelMismatchError(PoolError):
    """A pool was built with another model than the one asked for."""


class PoolBusyError(PoolError):
    """Another process holds the pool's build lock."""


class ModelLoadError(FmalError):
    """An encoder could not be loaded."""


class ServiceError(FmalError):
    """An annotation tool's server cannot be reached, refuses the token, or answers an error."""


class PoolExhaustedError(InvalidInputError):
    """A budget asks for more rows than are left to select."""
