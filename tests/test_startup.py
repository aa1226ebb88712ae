"""Start-up: ``import fmal``, ``import fmal.cli``, ``fmal --help``, ``--version``, ``status`` and
``info`` import none of the heavy libraries (status and info no pandas or pyarrow either) (each in a fresh interpreter, as a user runs them);
the names that ``--help`` shows without importing their source still match it."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

HEAVY = ("torch", "sklearn", "scipy", "faiss", "onnxruntime", "transformers", "sentence_transformers", "matplotlib", "cleanlab")
#: pandas (and pyarrow, which it imports) only where a command reads the pool: never for help or the version
TABULAR = ("pandas", "pyarrow")


def _imported_after(code: str, cwd=None) -> set[str]:
    """Top-level modules in sys.modules after running ``code`` in a fresh interpreter."""
    probe = code + "\nimport json, sys\nprint('MODULES ' + json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=cwd, timeout=120)
    line = next(x for x in out.stdout.splitlines() if x.startswith("MODULES "))
    return set(json.loads(line[len("MODULES "):]))


def _cli(*args: str) -> str:
    return ("import sys\nfrom fmal.cli import app\nsys.argv = ['fmal', " + ", ".join(repr(a) for a in args) + "]\n"
            "try:\n    app()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n")


def test_import_fmal_and_the_cli_is_light():
    for code in ("import fmal", "import fmal.cli", "import fmal; fmal.__version__; fmal.FmalError"):
        heavy = _imported_after(code) & set(HEAVY + TABULAR)
        assert not heavy, (code, heavy)


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("seed", "--help"), ("query", "--help")])
def test_help_and_version_import_nothing_heavy(args):
    assert not _imported_after(_cli(*args)) & set(HEAVY + TABULAR), args


def test_status_and_info_import_nothing_heavy(tiny_pool):
    index_dir, name, _ = tiny_pool
    for cmd in ("status", "info"):
        got = _imported_after(_cli(cmd, "--pool", name, "--index-dir", str(index_dir)))
        assert not got & set(HEAVY + TABULAR), (cmd, got & set(HEAVY + TABULAR))


def test_status_and_info_read_no_ids_and_print_the_same_as_the_api(tiny_pool, cli):
    """The light path (fmal.describe, the rows' shape from the manifest's record) says what the API says."""
    import pyarrow.parquet as pq

    from fmal import api
    from fmal.pool import check as pool_check
    from fmal.pool import open_pool

    index_dir, name, _ = tiny_pool
    p = open_pool(name, index_dir)
    assert "ids" not in p.__dict__ and len(p.ids) == p.n  # read on first use only
    meta = pq.read_metadata(p.path / "rows.parquet")
    since = (p.path / "manifest.json").stat().st_mtime_ns
    rec = p.manifest.file_checks["rows.parquet"]
    assert pool_check.rows_shape(p.path / "rows.parquet", rec, since) == (meta.num_rows, meta.num_columns)
    assert pool_check.rows_shape(p.path / "rows.parquet") == (meta.num_rows, meta.num_columns)  # no record: pyarrow
    st = api.status(name, index_dir=index_dir)
    out = cli("status", "--pool", name, "--index-dir", index_dir)
    assert out.exit_code == 0 and f"labels: {st.n_labels:,}" in out.stdout
    assert cli("info", "--pool", name, "--index-dir", index_dir).exit_code == 0
    assert api.info(name, index_dir=index_dir).problems == ()


def test_public_names_resolve_lazily():
    import fmal

    assert callable(fmal.seed) and callable(fmal.query) and callable(fmal.export)  # API functions, not the subpackages
    import fmal.seed.clustering  # noqa: F401  (binding the subpackage on its parent must not hide the function)

    assert callable(fmal.seed) and fmal.SEED_STRATEGIES is __import__("fmal.seed", fromlist=["x"]).SEED_STRATEGIES
    assert fmal.LinearProbe.__module__ == "fmal.probe"
    with pytest.raises(AttributeError):
        fmal.no_such_name  # noqa: B018


def test_help_defaults_match_their_sources():
    from fmal import _defaults, api, probe

    assert api.DEFAULT_SEED_STRATEGY == _defaults.DEFAULT_SEED_STRATEGY in api.SEED_STRATEGIES
    assert api.DEFAULT_QUERY_STRATEGY == _defaults.DEFAULT_QUERY_STRATEGY in api.QUERY_STRATEGIES
    assert probe.DEFAULT_C == _defaults.DEFAULT_C


def test_lazy_help_lists_what_the_registries_hold(cli):
    from fmal.encoders import BACKENDS
    from fmal.export import FORMATS
    from fmal.query import QUERY_STRATEGIES

    out = re.sub(r"(\w)- (\w)", r"\1-\2", " ".join(cli("query", "--help").stdout.split()))  # "mean- margin": wrapped at its hyphen
    assert all(s in out for s in QUERY_STRATEGIES)
    for cmd in ("export", "import-labels", "audit"):
        out = " ".join(cli(cmd, "--help").stdout.split())
        assert all(f in out for f in FORMATS.names()), cmd
    out = " ".join(cli("embed", "--help").stdout.split())
    assert all(b in out for b in BACKENDS)
