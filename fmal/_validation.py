"""Input checks shared by the API and the strategies; each raises InvalidInputError with a message
that names the parameter, the rule and the value received."""

from __future__ import annotations

import numbers
import re

import numpy as np

from fmal.exceptions import InvalidInputError, PoolExhaustedError

_POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_budget(budget: object, available: int, *, what: str = "unlabeled rows") -> int:
    """Return ``budget`` as an int in [1, available] or raise a clear error."""
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
        raise InvalidInputError(f"budget must be a positive integer, got {budget!r}")
    budget = int(budget)
    if budget < 1:
        raise InvalidInputError(f"budget must be a positive integer, got {budget}")
    if budget > available:
        raise PoolExhaustedError(
            f"budget must be no larger than the {available:,} {what} left, got {budget:,}; "
            "lower --budget"
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
