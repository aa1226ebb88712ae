"""matplotlib, an optional dependency (the ``plots`` extra): only the PNGs of ``fmal simulate`` and
``fmal report`` need it, so without it those commands write everything else and say what to install."""

from __future__ import annotations

import importlib.util
from typing import Any

from fmal.exceptions import InvalidInputError

MISSING = "PNG plots need matplotlib: pip install 'fmal[plots]'"


def available() -> bool:
    """Whether matplotlib can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        return False


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (files only, no display)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InvalidInputError(MISSING) from None
    return plt
