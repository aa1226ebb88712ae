"""Name -> implementation maps, so the CLI can list and look up strategies by name, and callers can
run one with exactly the keywords it declares.

Each registered function's signature is read once, at registration: its keyword-only parameters
are what it accepts. :meth:`Registry.call` passes on only those of the framework's *context*
keywords (the pool's index, the labeled rows, the seed: supplied for every strategy, used by some)
that a strategy declares, and checks the *user's* keywords strictly, so a misspelt parameter
(``k_neigbors``) is an error that lists the accepted ones instead of a silent default.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from fmal.exceptions import InvalidInputError

T = TypeVar("T")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(`])")


def summary(obj: object) -> str:
    """First sentence of ``obj``'s docstring (its numpydoc summary paragraph, joined onto one line,
    cut at a sentence end only, never mid-sentence)."""
    doc = inspect.getdoc(obj) or ""
    para = " ".join(doc.split("\n\n", 1)[0].split()).replace("``", "")
    return _SENTENCE_END.split(para, 1)[0]


class Registry(Generic[T]):
    """A small ordered name -> object map with a clear error for unknown names and keywords.

    ``context``: keyword names the framework supplies to every object it runs (a strategy declares
    those it uses); they are not listed among a strategy's parameters."""

    def __init__(self, kind: str, *, context: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.context = tuple(context)
        self._items: dict[str, T] = {}
        self._keywords: dict[str, tuple[str, ...] | None] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name`` (its signature read once)."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            self._keywords[name] = _keywords(obj)
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise InvalidInputError(
                f"unknown {self.kind} {name!r}: must be one of [{', '.join(self._items)}]"
            ) from None

    def keywords(self, name: str) -> tuple[str, ...] | None:
        """Every keyword ``name`` accepts (context ones included); None when it takes any (``**kwargs``)."""
        self.get(name)
        return self._keywords[name]

    def params(self, name: str) -> tuple[str, ...]:
        """The user parameters of ``name``: its keyword-only parameters that are not context keywords."""
        return tuple(k for k in self.keywords(name) or () if k not in self.context)

    def check(self, name: str, params: Mapping[str, Any]) -> None:
        """Raise InvalidInputError naming the first keyword of ``params`` that ``name`` does not
        accept, and listing those it does."""
        accepted = self.keywords(name)
        if accepted is None:
            return
        for key in params:
            if key not in accepted or key in self.context:
                own = self.params(name)
                listing = ", ".join(own) if own else "none"
                raise InvalidInputError(f"{self.kind} {name!r} has no parameter {key!r}; its parameters: {listing}",
                                        param=key)

    def call(self, name: str, *args: Any, **keywords: Any) -> Any:
        """Run ``name`` with ``args`` and ``keywords``: context keywords (the framework's, supplied
        for every strategy) are passed on only when ``name`` declares them; the others are the
        user's and are checked with :meth:`check`."""
        obj = self.get(name)
        accepted = self._keywords[name]
        params = {k: v for k, v in keywords.items() if k not in self.context}
        self.check(name, params)
        ctx = {k: v for k, v in keywords.items() if k in self.context and (accepted is None or k in accepted)}
        return obj(*args, **ctx, **params)  # type: ignore[operator]

    def summaries(self) -> dict[str, str]:
        """Name -> first sentence of its docstring (what ``--help`` lists)."""
        return {name: summary(obj) for name, obj in self._items.items()}

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)


def _keywords(obj: object) -> tuple[str, ...] | None:
    """The keyword-only parameters of ``obj`` (strategies take their data positionally, their
    options by keyword only); None when it takes ``**kwargs`` or its signature cannot be read."""
    if not callable(obj):
        return None
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return tuple(n for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY)
