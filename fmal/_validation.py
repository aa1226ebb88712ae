"""Input checks shared by the API and the strategies; each raises InvalidInputError with a message
that names the parameter, the rule and the value received."""

from __future__ import annotations

import numbers
import re

import numpy as np

from fmal.exceptions import InvalidInputError, LabelsError, PoolExhaustedError

_POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_budget(budget: object, available: int, *, what: str = "unlabeled rows") -> int:
    """Return ``budget`` as an int in [1, available] or raise a clear error."""
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
        raise InvalidInputError(f"budget must be a positive integer, got {budget!r}", param="budget")
    budget = int(budget)
    if budget < 1:
        raise InvalidInputError(f"budget must be a positive integer, got {budget}", param="budget")
    if budget > available:
        raise PoolExhaustedError(
            f"budget must be no larger than the {available:,} {what} left, got {budget:,}; "
            "lower budget", param="budget"
        )
    return budget


def check_pool_name(name: str) -> str:
    """Pool names become folder names: letters, digits, '.', '_', '-' only."""
    if not isinstance(name, str) or not _POOL_NAME.match(name) or name in {".", ".."}:
        raise InvalidInputError(
            f"pool name must be 1-128 letters, digits, '.', '_' or '-' (starting with a letter or "
            f"digit), got {name!r}"
        )
    return name


def check_embeddings(X: object) -> np.ndarray:
    """Return ``X`` as a 2-D, C-contiguous float32 array (a copy only when needed).

    float16 stores are accepted and converted, so every strategy sees float32.
    """
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise InvalidInputError(f"embeddings must be a 2-D array (rows x dim), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidInputError(f"embeddings must be non-empty, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InvalidInputError(f"embeddings must be floating point, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def check_indices(indices: object, n: int, *, name: str = "labeled") -> np.ndarray:
    """Return row indices as a sorted unique int64 array within [0, n)."""
    if indices is None:
        return np.zeros(0, dtype=np.int64)
    arr = np.unique(np.asarray(indices, dtype=np.int64).ravel())
    if arr.size and (arr[0] < 0 or arr[-1] >= n):
        raise InvalidInputError(f"{name} indices must lie in [0, {n}), got {arr[0]}..{arr[-1]}")
    return arr


def check_positive(value: object, name: str, *, integer: bool = False, allow_zero: bool = False) -> float:
    """Check a positive (or non-negative) number parameter."""
    ok_type = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, ok_type):
        kind = "integer" if integer else "number"
        raise InvalidInputError(f"{name} must be a positive {kind}, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or (not integer and not np.isfinite(value)):
        raise InvalidInputError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value  # type: ignore[return-value]


# ----------------------------------------------------------------------------- values read from files
# One check per kind of value (text, id, label, seed), shared by every reader and importer, so a
# number, object or list where a string belongs is the same one-line error everywhere.

#: longest label accepted: labels are class names, not texts
MAX_LABEL_CHARS = 1000
#: the seeds fmal accepts (numpy's and scikit-learn's range), the same for every command
SEED_MAX = 2**32 - 1


def show(value: object, width: int = 60) -> str:
    """A short, safe rendering of a value for a one-line message: scalars as repr (cut to
    ``width``), containers as their type and size (never repr'd: they may be huge or deeply nested)."""
    if isinstance(value, dict):
        return f"an object of {len(value)} key(s)"
    if isinstance(value, (list, tuple, np.ndarray)):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, (str, bytes, int, float, type(None))):
        text = repr(value)
        if len(text) > width:
            text = text[: width - 4] + "...'" if isinstance(value, (str, bytes)) else text[: width - 3] + "..."
        return text.replace("\n", "\\n")
    return f"a {type(value).__name__}"


def cut(text: str, width: int = 200) -> str:
    """``text`` on one line, cut to ``width`` characters (for messages quoting another library's error)."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "a list"
    if isinstance(value, numbers.Number):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def _what(value: object) -> str:
    """'a number (3.5)', 'an object', 'a list of 2 item(s)': the kind of a value, and the value
    itself when it is a scalar (cut)."""
    if isinstance(value, (dict, list, tuple, np.ndarray)):
        return show(value)
    return f"{_kind(value)} ({show(value)})"


def _blank(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and value != value:  # NaN: a missing value in pandas and JSON
        return True
    return isinstance(value, str) and not value.strip()


def _scalar(value: object) -> object:
    """numpy scalars as Python scalars (pandas hands them out for typed columns)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_text(value: object, where: str, field: str = "text") -> str | None:
    """A text read from a file: a string (bytes are decoded as UTF-8), None when blank. Anything
    else (a number, object, list, true/false) is an InvalidInputError naming ``where`` and ``field``."""
    value = _scalar(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInputError(
                f"{where}: {field!r} holds bytes that are not valid UTF-8 (byte 0x{value[exc.start]:02x} at {exc.start}); "
                "store texts as UTF-8 strings"
            ) from None
    if _blank(value):
        return None
    if not isinstance(value, str):
        raise InvalidInputError(
            f"{where}: {field!r} is {_what(value)}, not a string; texts must be strings: quote them"
        )
    return value


def _str_or_int(value: object, where: str, field: str, error: type[InvalidInputError], rule: str, gaps_hint: str) -> str | None:
    """A string (stripped) or an integer (its digits); None when blank; anything else is ``error``."""
    value = _scalar(value)
    if _blank(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        hint = f"; {gaps_hint}" if isinstance(value, float) else ""
        raise error(f"{where}: {field!r} is {_what(value)}; {rule}{hint}")
    return value.strip()


def check_id(value: object, where: str, field: str = "id", *, error: type[InvalidInputError] = InvalidInputError) -> str | None:
    """A row id read from a file: a string or an integer (written as its digits), stripped; None
    when blank. A fraction, object, list or true/false is ``error`` naming ``where`` and ``field``."""
    return _str_or_int(value, where, field, error, "ids must be strings or integers",
                       "an integer id column with gaps reads as fractions: fill the gaps or store ids as strings")


def check_label(value: object, where: str, field: str = "label", *, error: type[InvalidInputError] = LabelsError) -> str | None:
    """A label read from a file: a string (or an integer class, written as its digits) of at most
    MAX_LABEL_CHARS characters, stripped; None when blank. A fraction, object, list or true/false,
    or a longer string, is ``error`` naming ``where`` and ``field``."""
    value = _str_or_int(value, where, field, error, "a label must be a string (a class name)",
                        "an integer column with gaps reads as fractions: fill the gaps or store labels as strings")
    if value is not None and len(value) > MAX_LABEL_CHARS:
        raise error(
            f"{where}: {field!r} is {len(value):,} characters ({show(value)}); a label is a class name of at most "
            f"{MAX_LABEL_CHARS:,} characters: is the label column the right one?"
        )
    return value


#: the probes' accepted ``class_weight`` names (a dict of class -> weight is accepted too)
CLASS_WEIGHTS = (None, "balanced")


def check_class_weight(value: object) -> None:
    """A probe's ``class_weight``: None, "balanced" or a dict. Here, not in fmal.probe, so that a
    query refuses a bad one before importing scikit-learn (0.9 s)."""
    if not (value in CLASS_WEIGHTS or isinstance(value, dict)):
        raise InvalidInputError(f"class_weight must be None, 'balanced' or a dict, got {value!r}", param="class_weight")


def check_seed(value: object, name: str = "random_state") -> int:
    """A random seed: an integer in 0..2**32-1 (what numpy and scikit-learn accept), the same for
    every command and function."""
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= int(value) <= SEED_MAX:
        raise InvalidInputError(f"{name} (--seed) must be an integer from 0 to {SEED_MAX:,} (2**32-1), got {show(value)}")
    return int(value)
