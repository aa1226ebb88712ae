"""The public API functions' docstrings: numpydoc (Parameters, Returns, Raises) documenting every
parameter of the signature and nothing else, the exceptions they name being fmal's; and
``help(fmal.seed)`` opens with the same sentence as ``fmal seed --help``."""

from __future__ import annotations

import inspect
import re

import pytest

import fmal
import fmal.exceptions
from fmal import api

#: API function -> the command whose help opens with the same summary (None: no command of its own)
FUNCTIONS = {
    "embed": "embed", "seed": "seed", "query": "query", "undo": None, "status": "status", "info": "info",
    "export": "export", "import_labels": "import-labels", "audit": "audit", "report": "report",
    "declare_classes": None,
}


def _sections(doc: str) -> dict[str, str]:
    """numpydoc sections of ``doc``: title -> body (``summary``: what precedes the first)."""
    lines = inspect.cleandoc(doc).splitlines()
    out: dict[str, list[str]] = {}
    cur = "summary"
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and lines[i + 1].strip() and set(lines[i + 1].strip()) == {"-"}:
            cur = line.strip()
            out[cur] = []
        elif not (line.strip() and set(line.strip()) == {"-"}):
            out.setdefault(cur, []).append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def _first_paragraph(doc: str) -> str:
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def _documented(params_section: str) -> set[str]:
    """Names in a Parameters section: unindented ``name : type`` lines (``a, b : str`` documents two)."""
    names: set[str] = set()
    for line in params_section.splitlines():
        if line and not line.startswith(" "):
            names |= {n.strip() for n in line.split(" : ")[0].split(",")}
    return names


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_numpydoc_documents_every_parameter(name):
    fn = getattr(api, name)
    sec = _sections(fn.__doc__ or "")
    assert {"Parameters", "Returns", "Raises"} <= set(sec), (name, sorted(sec))
    params = {("**" if p.kind is p.VAR_KEYWORD else "") + p.name for p in inspect.signature(fn).parameters.values()}
    assert _documented(sec["Parameters"]) == params, name
    raised = {line.strip() for line in sec["Raises"].splitlines() if line and not line.startswith(" ")}
    assert raised and all(isinstance(getattr(fmal.exceptions, e, None), type) for e in raised), (name, raised)
    returned = sec["Returns"].strip().splitlines()[0]
    ann = inspect.signature(fn).return_annotation
    assert re.sub(r"\W", "", returned.split(" of ")[0]) in re.sub(r"\W", "", str(ann)), (name, returned, ann)


@pytest.mark.parametrize("name", [n for n, c in FUNCTIONS.items() if c])
def test_help_and_the_command_open_alike(name):
    """``help(fmal.X)`` and ``fmal X --help`` begin with the same paragraph."""
    import typer.main

    from fmal.cli import app

    command = typer.main.get_command(app).commands[FUNCTIONS[name]]
    assert _first_paragraph(getattr(api, name).__doc__) == _first_paragraph(command.help), name


def test_the_top_level_names_are_the_api_functions():
    for name in ("embed", "seed", "query", "status", "export", "import_labels", "audit", "report"):
        assert getattr(fmal, name) is getattr(api, name)
