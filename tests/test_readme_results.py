"""The README's result tables are rendered from benchmarks/results/*.json (benchmarks/render_readme.py):
a table edited by hand, or a results file regenerated without re-rendering, fails here. Parses
files only (no benchmark runs)."""

from __future__ import annotations

import importlib.util
import json
import re

from conftest import REPO

EXPECTED_BLOCKS = {"simulate_sms_spam", "simulate_rotten_tomatoes", "simulate_trec6", "seed_quality_probcover",
                   "embed_accuracy", "simulate_multilabel", "query_quality"}


def _renderer():
    spec = importlib.util.spec_from_file_location("render_readme", REPO / "benchmarks" / "render_readme.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_tables_match_their_results_files():
    mod = _renderer()
    text = (REPO / "README.md").read_text(encoding="utf-8")
    names = mod.blocks(text)
    assert EXPECTED_BLOCKS <= set(names), f"README lost result blocks: {EXPECTED_BLOCKS - set(names)}"
    _, changed = mod.render(text)
    assert changed == [], f"README blocks differ from benchmarks/results/ (run python benchmarks/render_readme.py): {changed}"


def test_results_files_say_how_they_were_made_and_hold_no_machine_paths():
    files = sorted((REPO / "benchmarks" / "results").glob("*.json"))
    assert files
    for f in files:
        d = json.loads(f.read_text(encoding="utf-8"))
        for key in ("fmal_version", "git_commit", "backend", "model_fingerprint", "machine", "date", "command", "numbers"):
            assert key in d, (f.name, key)
        assert d["machine"]["cores"] >= 1 and d["machine"]["fp32_peak_gflops"] > 0
        raw = f.read_text(encoding="utf-8")
        assert not re.search(r"(^|[\s\"=])/(tmp|home|work|root|Users)/", raw), f"{f.name} holds an absolute path"
    for f in sorted((REPO / "examples" / "simulate_results").glob("*/simulation.json")):
        info = json.loads(f.read_text(encoding="utf-8"))["info"]
        assert info.get("backend") and not info["data"].startswith("/") and not info["pool"].startswith("/"), f
