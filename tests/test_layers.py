"""The package's shape: no import circle among fmal's modules, the layers import downward only
(cli -> api -> the stages), and no module grows past a size a reader can hold.

The import graph is read from the source with ``ast`` (nothing is imported): every ``import`` and
``from ... import`` of a fmal module, at module level and inside functions alike (a function-level
import is still a dependency; it only moves its cost). Imports under ``if TYPE_CHECKING:`` are left
out: they never run. ``from fmal.x import y`` is an edge to ``fmal.x.y`` when that is a module,
else to ``fmal.x``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "fmal"

#: the layers above the API: they may import it (and anything below)
TOP = ("fmal.cli", "fmal.__main__",
       # simulate embeds its data set with fmal.api.embed (fmal.simulate.data): like the CLI, a
       # client of the API, so it sits above it; the API never imports simulate
       "fmal.simulate",
       # sync runs the annotation loop against a Label Studio server: it calls api.query and the
       # api's helpers for rounds and labels, a client of the API like the CLI
       "fmal.sync")

#: the stages: they must not import fmal.api or fmal.cli
STAGES = ("fmal.seed", "fmal.query", "fmal.probe", "fmal.index", "fmal.encoders", "fmal.export", "fmal.session",
          "fmal.pool", "fmal.io", "fmal.registry")

#: (importer, imported): the only imports from below the API into it, each with its reason
UPWARD_ALLOWED = {
    # fmal.append is the ``append=True`` job of embed: it finishes the embed and returns embed's
    # result. fmal.api.results holds only the result dataclasses and imports no api module, so
    # this edge closes no circle.
    ("fmal.append", "fmal.api.results"): "append returns embed's EmbedResult",
}

MAX_LINES = 450
#: modules allowed past MAX_LINES: one topic each, which splitting would scatter
BIG_ALLOWED = {
    "fmal.external": "embeddings made outside fmal: read .npy/Parquet/Arrow sources, check, build the pool; one job",
    "fmal.io": "the readers of every input format (csv, tsv, jsonl, parquet, txt, folders of shards); one job",
    "fmal._onnx": "the ONNX backends: export, fuse, quantise, cache and run one graph; one job (could split by "
                  "step, as sentence-transformers' backend/ does)",
    "fmal.sync.labelstudio": "the Label Studio sync loop: push tasks, pull answers, query again; one job",
}


#: (importer, imported): imports inside a function that close an import circle, on purpose. Each
#: runs only when called, after both modules are loaded, so the circle never bites at import time;
#: the test checks that each is still function-level and still closes a circle.
DEFERRED = {
    # reading a folder checks whether it is a Hugging Face datasets folder; external (vectors made
    # elsewhere) reads its tables with io's readers
    ("fmal.io", "fmal.external"): "io reads a datasets folder with external.hf_dataset_files",
    # the repair hint names the bundled model; encoders -> images -> io -> ... -> pool.check
    ("fmal.pool.check", "fmal.encoders"): "pool.check's repair hint names encoders.DEFAULT_MODEL",
    # a strategy's select() ends with the coverage diagnostics, which use the strategies' modules
    ("fmal.seed.base", "fmal.seed.diagnostics"): "SeedStrategy.select runs seed.diagnostics.diagnose",
    # the one-vs-rest probe imports scikit-learn: loaded only for a multi-label pool
    ("fmal.multilabel", "fmal.probe_multilabel"): "multilabel.probe_class loads MultiLabelProbe when needed",
}


def _closes_a_circle(graph: dict[str, dict[str, bool]], m: str, d: str) -> bool:
    """Whether ``d`` reaches ``m`` (so ``m -> d`` is part of a circle)."""
    seen, todo = set(), [d]
    while todo:
        v = todo.pop()
        if v == m:
            return True
        if v in seen:
            continue
        seen.add(v)
        todo.extend(w for w in graph.get(v, {}) if not w.startswith(v + "."))
    return False


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement, at any depth, with whether it runs when the module is imported (not
    inside a function); those under ``if TYPE_CHECKING:`` are left out."""
    stack: list[tuple[ast.AST, bool]] = [(tree, True)]
    while stack:
        node, top = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, top
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend((c, top) for c in node.orelse)
            continue
        inner = top and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        stack.extend((c, inner) for c in ast.iter_child_nodes(node))


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The fmal module an imported dotted name lives in (a module, or the nearest enclosing one)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, dict[str, bool]]:
    """module -> {imported fmal module: True when imported at module level, False when only inside functions}."""
    modules = _modules()
    graph: dict[str, dict[str, bool]] = {m: {} for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, top in _import_nodes(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from .x import y
                    anchor = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                if t == "fmal" or t.startswith("fmal."):
                    dep = _resolve(t, modules)
                    if dep is not None and dep != mod:
                        graph[mod][dep] = graph[mod].get(dep, False) or top
    return graph


def _in(mod: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(mod == p or mod.startswith(p + ".") for p in prefixes)


def _cycles(graph: dict[str, dict[str, bool]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), after dropping the edges
    from a package's ``__init__`` to its own submodules (a package that registers its parts) and
    the deferred imports (``DEFERRED``)."""
    edges = {m: {d for d in deps if not d.startswith(m + ".") and (m, d) not in DEFERRED} for m, deps in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_imports_at_every_depth():
    g = import_graph()
    assert "fmal.api" in g and "fmal.cli" in g
    assert g["fmal.cli.seed"]["fmal.api"] is False  # a function-level import (from fmal import api)
    assert g["fmal.simulate.data"]["fmal.api"] is True  # a module-level one
    assert "fmal.api" not in g["fmal"]  # under if TYPE_CHECKING: never runs


def test_no_import_circle():
    assert _cycles(import_graph()) == []


def test_deferred_imports_are_deferred():
    """A circle is broken only by an import inside a function (it runs after both modules are
    loaded); a module-level one would fail at import. Each entry is still needed."""
    g = import_graph()
    for (m, d), why in DEFERRED.items():
        assert d in g.get(m, {}), f"{m} -> {d} ({why}) is no longer imported: drop it from DEFERRED"
        assert g[m][d] is False, f"{m} -> {d} must be imported inside a function ({why})"
        assert _closes_a_circle(g, m, d), f"{m} -> {d} closes no circle: drop it"


def test_the_api_does_not_import_the_cli():
    g = import_graph()
    bad = sorted((m, d) for m, deps in g.items() if _in(m, "fmal.api") for d in deps if _in(d, ("fmal.cli", "fmal.sync", "fmal.simulate")))
    assert bad == []


def test_stages_import_neither_the_api_nor_the_cli():
    g = import_graph()
    bad = sorted((m, d) for m, deps in g.items() if _in(m, STAGES) for d in deps if _in(d, ("fmal.api", "fmal.cli", *TOP)))
    assert bad == []


def test_only_the_top_layers_import_upward():
    """Beyond the named stages: no module outside the top layers and the API imports the API or
    the CLI, except the allowed edges (each with its reason)."""
    g = import_graph()
    below = [m for m in g if not _in(m, (*TOP, "fmal.api")) and m != "fmal"]
    bad = sorted((m, d) for m in below for d in g[m]
                 if _in(d, ("fmal.api", "fmal.cli", *TOP)) and (m, d) not in UPWARD_ALLOWED)
    assert bad == []
    for (m, d), why in UPWARD_ALLOWED.items():  # an allowance that is no longer used goes
        assert d in g.get(m, ()), f"{m} -> {d} is allowed ({why}) but no longer imported: drop the entry"


def test_no_module_is_too_long():
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in _modules().items()}
    too_long = {m: n for m, n in sizes.items() if n > MAX_LINES and m not in BIG_ALLOWED}
    assert too_long == {}, f"split by job, or add to BIG_ALLOWED with the reason: {too_long}"
    stale = {m for m in BIG_ALLOWED if sizes.get(m, 0) <= MAX_LINES}
    assert stale == set(), f"no longer long (or gone): drop from BIG_ALLOWED: {stale}"
