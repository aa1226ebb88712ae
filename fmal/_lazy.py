"""Deferred imports of heavy libraries, so that ``fmal --help`` and ``fmal status`` start at once.

``faiss = lazy_module("faiss")`` binds a stand-in that imports faiss on the first attribute it is
asked for (``faiss.IndexFlatIP``), then behaves as the module. Until then faiss is not in
``sys.modules``. Measured on the 2-core machine (``python -X importtime``): faiss 0.16 s,
scikit-learn (with scipy) 0.9 s, pandas 0.3 s, against typer 0.04 s and numpy 0.07 s; before the
stand-ins ``fmal --help`` took 2.1-2.4 s, most of it importing what it never used.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class _LazyModule(types.ModuleType):
    """A module whose body is imported on first attribute access (then copied in, so later
    lookups are plain attribute reads)."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__") and attr not in ("__version__", "__file__"):
            raise AttributeError(attr)  # introspection probes (__wrapped__, __path__, ...) must not import
        mod = importlib.import_module(self.__name__)
        self.__dict__.update(mod.__dict__)
        return getattr(mod, attr)


def lazy_module(name: str) -> Any:
    """A stand-in for ``import name`` that imports ``name`` when first used."""
    return _LazyModule(name)
