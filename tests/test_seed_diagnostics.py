"""The coverage report: a large pool in RAM is judged on a sample, close to the full pass."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import clustered

from fmal.seed import diagnostics, select
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


@pytest.mark.parametrize(("strategy", "params"), [("kcenter", {}), ("random", {}), ("typiclust", {}), ("probcover", {}),
                                                  ("auto", {"rule": "hedge"})])
def test_select_prepares_the_report_on_a_second_thread_with_the_same_result(strategy, params, monkeypatch):
    """select() computes the pick-independent part of the report (delta, its own k-means, the judged
    sample) while the strategy runs: the report is the one diagnose() makes alone, labeled rows or not."""
    X, _ = clustered(n=4000, d=16, k=30, spread=0.3, seed=2)
    monkeypatch.setattr(diagnostics, "REPORT_SAMPLE", 3000)  # judged on a sample, gathered ahead
    for labeled in (None, np.arange(0, 4000, 401)):
        res = select(strategy, X, 12, labeled=labeled, random_state=5, **params)
        alone = diagnostics.diagnose(X, res.indices, labeled, delta=res.delta, assign=res.assign, random_state=5)
        assert {k: res.info[k] for k in alone} == alone and "3,000 random rows" in alone["coverage_sample"]


def test_a_report_basis_for_another_number_of_chosen_rows_is_not_used():
    X, _ = clustered(n=3000, d=16, k=20, spread=0.3, seed=4)
    picks = kcenter_seed(X, 10).indices
    wrong = diagnostics.report_basis(X, 7, random_state=1)
    right = diagnostics.report_basis(X, 10, random_state=1)
    alone = diagnostics.diagnose(X, picks, random_state=1)
    assert diagnostics.diagnose(X, picks, random_state=1, basis=wrong) == alone
    assert diagnostics.diagnose(X, picks, random_state=1, basis=right) == alone
    partial = diagnostics.report_basis(X, 10, clusters=False, random_state=1)  # completed where it lacks
    assert diagnostics.diagnose(X, picks, random_state=1, basis=partial) == alone


@pytest.mark.parametrize("strategy", ["kcenter", "typiclust", "random"])
def test_the_report_basis_is_made_off_the_main_thread_and_not_again(strategy, monkeypatch):
    """The prepared parts are used: diagnose() computes nothing of the basis again on the main thread."""
    import threading

    X, _ = clustered(n=4000, d=16, k=30, spread=0.3, seed=2)
    monkeypatch.setattr(diagnostics, "REPORT_SAMPLE", 3000)
    calls: list[tuple[str, bool, bool]] = []
    orig = diagnostics.report_basis

    def spy(*a, **k):
        calls.append((threading.current_thread().name, k.get("delta", True), k.get("clusters", True)))
        return orig(*a, **k)

    monkeypatch.setattr(diagnostics, "report_basis", spy)
    select(strategy, X, 12, random_state=5)
    assert calls and all(name != threading.main_thread().name for name, _, _ in calls), calls
    assert sum(d for _, d, _ in calls) == 1 and sum(c for _, _, c in calls) == (strategy != "typiclust")


def test_select_refuses_a_bad_budget_or_labeled_before_the_report_threads_start(monkeypatch):
    """An error the caller can fix comes at once, not after the report's k-means (with k up to n)."""
    from fmal.exceptions import InvalidInputError, PoolExhaustedError

    started = []
    monkeypatch.setattr(diagnostics, "report_basis", lambda *a, **k: started.append(1))
    X = np.random.default_rng(0).normal(size=(500, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    with pytest.raises(PoolExhaustedError, match="budget must be no larger than the 495"):
        select("kcenter", X, 496, labeled=np.arange(5))
    with pytest.raises(InvalidInputError, match=r"labeled indices must lie in \[0, 500\)"):
        select("kcenter", X, 10, labeled=np.array([-1, 3]))
    assert not started, "the report's threads started before the arguments were checked"
