"""The coverage report: a large pool in RAM is judged on a sample, close to the full pass."""

from __future__ import annotations

from conftest import clustered

from fmal.seed import diagnostics
from fmal.seed.coverage import kcenter_seed


def test_a_pool_over_report_sample_rows_is_judged_on_a_sample(monkeypatch):
    X, _ = clustered(n=6000, d=16, k=30, spread=0.3, seed=1)
    picks = kcenter_seed(X, 20).indices
    full = diagnostics.diagnose(X, picks, sample=False)
    monkeypatch.setattr(diagnostics, "REPORT_SAMPLE", 3000)
    est = diagnostics.diagnose(X, picks)
    assert "coverage_sample" not in full and "3,000 random rows of 6,000" in est["coverage_sample"]
    for key in ("pool_within_delta", "pool_in_uncovered_clusters"):
        assert abs(est[key] - full[key]) < 0.05, key
    assert abs(est["median_distance_to_chosen"] - full["median_distance_to_chosen"]) < 0.05
    assert est["max_distance_to_chosen"] <= full["max_distance_to_chosen"] + 1e-6
    # the chosen rows' clusters are known exactly: as many represented as on the full pass
    assert est["clusters_represented"].split(" of ")[0] == full["clusters_represented"].split(" of ")[0]
    assert est == diagnostics.diagnose(X, picks)  # seeded: the same report twice
