"""Annotation-tool formats, in and out: one module per tool, registered by name.

    csv, jsonl      plain tables: fill in the ``label`` column
    label-studio    Label Studio tasks with ``predictions``; reads its JSON (and JSON_MIN) export
    prodigy         Prodigy choice tasks with ``accept`` preselected; reads ``db-out`` JSONL
    argilla         Argilla records with ``suggestions``; reads exported records (v2, and v1)
"""

from __future__ import annotations

from fmal.export.base import ID_KEY, LABEL_KEY, Answer, Answers, Format
from fmal.registry import Registry

FORMATS: Registry[Format] = Registry("format")


def register(fmt: Format) -> Format:
    """Add a format to :data:`FORMATS` under its name."""
    FORMATS.register(fmt.name)(fmt)
    return fmt


# registration order is the order the CLI lists them in
from fmal.export import table  # noqa: E402,F401,I001
from fmal.export import labelstudio  # noqa: E402,F401
from fmal.export import prodigy  # noqa: E402,F401
from fmal.export import argilla  # noqa: E402,F401
from fmal.export.merge import Disagreement, collapse  # noqa: E402

__all__ = ["FORMATS", "ID_KEY", "LABEL_KEY", "Answer", "Answers", "Disagreement", "Format", "collapse", "register"]
