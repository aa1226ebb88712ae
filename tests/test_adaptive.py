"""``adaptive``: the batch's random share follows the evidence (synthetic pools with a known answer)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import clustered

from fmal.exceptions import InvalidInputError
from fmal.probe import LinearProbe
from fmal.query import QUERY_STRATEGIES, QueryContext
from fmal.query.adaptive import ACTIVE, OTHER, RANDOM, SEED, active_vs_random, decide, neighbour_agreement, origins_of


def _ctx(X, y, labeled, origin, seed=0):
    probe = LinearProbe(C=10.0, random_state=0).fit(X[labeled], y[labeled])
    cand = np.setdiff1d(np.arange(len(X)), labeled)
    return QueryContext(X=X, candidates=cand, proba=probe.predict_proba(X[cand]), classes=probe.classes_,
                        labeled=labeled, probe=probe, random_state=seed, labels=y[labeled], origin=origin)


def _pool(follow: bool, n: int = 80):
    """Six tight clusters; labels are the cluster (``follow``) or a coin that cuts across them.
    ``n`` labeled rows: 3/8 seed picks, 5/16 random picks, 5/16 active picks (all drawn at random)."""
    X, k = clustered(n=900, d=16, k=6, spread=0.05, seed=1)
    coin = np.random.default_rng(2).integers(0, 2, size=k.size)
    y = np.asarray([f"c{v}" for v in (k if follow else coin)])
    rng = np.random.default_rng(3)
    labeled = np.sort(rng.choice(len(X), size=n, replace=False))
    n_seed, n_rnd = 3 * n // 8, 5 * n // 16
    origin = np.asarray([SEED] * n_seed + [RANDOM] * n_rnd + [ACTIVE] * (n - n_seed - n_rnd))[rng.permutation(n)]
    return X, y, labeled, origin


def test_shifts_toward_random_when_labels_cut_across_clusters_and_toward_active_when_they_follow():
    """Cold start (no online comparison yet: too few random picks): the neighbour agreement decides."""
    across = decide(_ctx(*_pool(follow=False, n=160)), 20, min_random=100)
    follow = decide(_ctx(*_pool(follow=True, n=160)), 20, min_random=100)
    assert across.delta is None and abs(across.agreement) < 0.1 and across.p_active < 0.3 and across.random_share > 0.6
    assert follow.agreement > 0.8 and follow.p_active > 0.97 and follow.random_share == pytest.approx(0.1)
    assert across.phase == "uncertain" and decide(_ctx(*_pool(follow=True, n=20)), 20).phase == "typical"


def test_online_comparison_pulls_toward_random_when_active_picks_are_biased():
    """Labels follow the clusters, but the active picks all sit in one cluster: per label they are
    worth less than random picks, and the mix moves toward random."""
    X, y, labeled, origin = _pool(follow=True, n=160)
    origin = np.where(origin == SEED, RANDOM, origin)  # no seed labels that would teach every class to both probes
    fair = decide(_ctx(X, y, labeled, origin), 20)
    one = np.setdiff1d(np.nonzero(y == y[0])[0], labeled[origin != ACTIVE])[: int((origin == ACTIVE).sum())]
    biased = np.sort(np.concatenate([labeled[origin != ACTIVE], one]))
    o = np.where(np.isin(biased, one), ACTIVE, np.asarray([dict(zip(labeled, origin)).get(r, ACTIVE) for r in biased]))
    worse = decide(_ctx(X, y, biased, o), 20)
    assert worse.delta < -2 * worse.delta_se and abs(fair.delta) <= 2 * fair.delta_se
    # both z-scores are clipped at 3: a perfect agreement holds the share near 0.3 however bad the picks
    assert worse.p_active < fair.p_active - 0.25 and worse.random_share > fair.random_share + 0.15


def test_active_vs_random_sees_biased_active_picks():
    """Active picks from one cluster only teach one class: random picks are worth more per label."""
    X, k = clustered(n=900, d=16, k=4, spread=0.1, seed=4)
    y = np.asarray([f"c{v}" for v in k])
    rng = np.random.default_rng(5)
    rnd = rng.choice(np.nonzero(k >= 0)[0], size=40, replace=False)
    act = rng.choice(np.setdiff1d(np.nonzero(k == 0)[0], rnd), size=40, replace=False)
    rows = np.concatenate([rnd, act])
    origin = np.asarray([RANDOM] * 40 + [ACTIVE] * 40)
    delta, se = active_vs_random(X[rows], y[rows], origin)
    assert delta < -2 * se < 0


def test_active_vs_random_compares_as_many_labels_on_each_side():
    """Fewer active picks than random ones, all drawn the same way: a fair comparison finds no
    difference (an unmatched one credited random with its extra labels)."""
    X, k = clustered(n=3000, d=16, k=8, spread=0.6, seed=6)
    y = np.asarray([f"c{v}" for v in k])
    rows = np.random.default_rng(7).choice(len(X), size=220, replace=False)
    origin = np.asarray([RANDOM] * 200 + [ACTIVE] * 20)
    delta, se = active_vs_random(X[rows], y[rows], origin)
    assert abs(delta) <= 2 * se


def test_auto_evidence_keeps_the_active_picks_among_many_imported_labels(monkeypatch):
    """Thousands of imported labels: the capped comparison still reads every active pick."""
    from fmal.query import auto

    X, k = clustered(n=3000, d=16, k=6, spread=0.3, seed=8)
    y = np.asarray([f"c{v}" for v in k])
    labeled = np.arange(2400)
    origin = np.asarray([OTHER] * 2000 + [RANDOM] * 200 + [ACTIVE] * 200)
    seen = {}
    real = auto.active_vs_random

    def spy(Xs, ys, o, *a, **kw):
        seen.update(zip(*np.unique(o, return_counts=True)))
        return real(Xs, ys, o, *a, **kw)

    monkeypatch.setattr(auto, "active_vs_random", spy)
    auto._evidence(_ctx(X, y, labeled, origin), origin, 8)
    assert seen[ACTIVE] == 200 and seen[RANDOM] == 200 and sum(seen.values()) <= auto.MAX_EVIDENCE_ROWS


def test_agreement_is_none_without_evidence_and_high_for_clusters():
    X, k = clustered(n=200, d=8, k=3, spread=0.05)
    assert neighbour_agreement(X[:3], np.array(["a", "b", "a"])) is None
    assert neighbour_agreement(X[:30], np.full(30, "a")) is None
    kappa, se = neighbour_agreement(X[:60], k[:60])
    assert kappa > 0.9 and 0 < se < 0.3


@pytest.mark.parametrize("follow", [True, False])
def test_picks_are_distinct_unlabeled_marked_and_deterministic(follow):
    X, y, labeled, origin = _pool(follow)
    fn = QUERY_STRATEGIES.get("adaptive")
    a, b = fn(_ctx(X, y, labeled, origin, seed=7), 20), fn(_ctx(X, y, labeled, origin, seed=7), 20)
    assert np.array_equal(a.indices, b.indices) and a.info == b.info
    assert a.indices.size == 20 == np.unique(a.indices).size and not np.isin(a.indices, labeled).any()
    assert int(a.is_random.sum()) == a.info["random_picks"] == a.info["adaptive"]["n_random"]
    assert np.isnan(a.scores[a.is_random]).all() and a.info["mix"].startswith(f"{a.info['adaptive']['random_share']:.0%} random")
    c = fn(_ctx(X, y, labeled, origin, seed=8), 20)
    assert c.info["adaptive"] == a.info["adaptive"]  # the decision depends on the labels, not the round's seed


def test_without_history_every_label_counts_as_unbiased():
    X, y, labeled, _ = _pool(follow=True)
    ctx = _ctx(X, y, labeled, None)
    d = decide(ctx, 20)
    assert d.delta is None and d.n_agreement == labeled.size and d.random_share < 0.2


def test_bad_parameters_are_one_line_errors():
    X, y, labeled, origin = _pool(follow=True)
    fn = QUERY_STRATEGIES.get("adaptive")
    with pytest.raises(InvalidInputError, match="min_share"):
        fn(_ctx(X, y, labeled, origin), 5, min_share=0.9, max_share=0.5)
    with pytest.raises(InvalidInputError, match="then"):
        fn(_ctx(X, y, labeled, origin), 5, then="auto")


def test_origins_from_round_records():
    from fmal.session import Round

    rounds = [Round(round=1, kind="seed", strategy="auto", ids=["a", "b"]),
              Round(round=2, kind="query", strategy="adaptive", ids=["c", "d", "e"], columns={"random_pick": [False, True, False]}),
              Round(round=3, kind="query", strategy="margin", ids=["f"], columns={"score": [0.1]})]
    got = origins_of(["a", "c", "d", "f", "z"], rounds)
    assert got.tolist() == [SEED, ACTIVE, RANDOM, ACTIVE, OTHER]


def test_cli_query_prints_the_mix_json_carries_it_and_status_shows_it(tmp_path, cli):
    """``--strategy adaptive`` records its random picks; the next round reads them."""
    import json

    import pandas as pd
    from conftest import vector_pool

    X, k = clustered(n=300, d=16, k=3, spread=0.3, seed=0)
    d = tmp_path / "indexes"
    vector_pool(d, "vp", X)
    gold = {f"r{i}": f"c{v}" for i, v in enumerate(k)}
    f = tmp_path / "l.csv"
    pd.DataFrame({"id": list(gold)[:30], "label": list(gold.values())[:30]}).to_csv(f, index=False)
    r = cli("query", "--pool", "vp", "--labels", f, "--budget", 10, "--index-dir", d, "--strategy", "adaptive")
    assert r.exit_code == 0, r.output
    assert "picked by adaptive" in r.stdout and "mix: " in r.stdout and "% random (" in r.stdout
    assert "P(active pays)" in r.stdout and "neighbour agreement kappa" in r.stdout
    picks = pd.read_csv(next((d / "vp" / "rounds").glob("round-001*")), dtype={"id": str})
    assert picks["random_pick"].dtype == bool
    labeled = pd.concat([pd.read_csv(f, dtype=str), pd.DataFrame({"id": picks["id"], "label": picks["id"].map(gold)})])
    labeled.to_csv(f, index=False)
    r = cli("query", "--pool", "vp", "--labels", f, "--budget", 10, "--index-dir", d, "--strategy", "adaptive", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)["result"]
    a = doc["info"]["adaptive"]
    assert doc["strategy"] == "adaptive" and doc["info"]["mix"].startswith(f"{a['random_share']:.0%} random")
    assert a["n_random_labeled"] == int(picks["random_pick"].sum()) and 0 <= a["p_active"] <= 1
    r = cli("status", "--pool", "vp", "--index-dir", d)
    assert r.exit_code == 0 and "mix" in r.stdout and "P(active)" in r.stdout


def test_simulate_reports_the_random_share_per_step():
    from fmal.simulate import simulate_embeddings

    X, k = clustered(n=400, d=16, k=4, spread=0.3, seed=0)
    y = np.asarray([f"c{v}" for v in k])
    res = simulate_embeddings(X[:300], y[:300], X[300:], y[300:], strategies="auto+adaptive", seeds=2, initial=10,
                              step=10, max_labels=40)
    d = res.to_dict()
    ad = next(s for s in d["strategies"] if s["name"] == "auto+adaptive")
    shares = [c["random_share_per_seed"] for c in ad["curve"]]
    assert all(0.1 <= v <= 0.8 for step in shares[:-1] for v in step) and shares[-1] == [None, None]
    rnd = next(s for s in d["strategies"] if s["name"] == "random")
    assert rnd["curve"][0]["random_share_per_seed"] == [1.0, 1.0]


# ----------------------------------------------------------------------------- the default ``auto``'s evidence gate


def _biased(X, y, labeled, origin):
    """The same labels, but the active picks all from the first row's class (worth less per label)."""
    origin = np.where(origin == SEED, RANDOM, origin)
    one = np.setdiff1d(np.nonzero(y == y[0])[0], labeled[origin != ACTIVE])[: int((origin == ACTIVE).sum())]
    rows = np.sort(np.concatenate([labeled[origin != ACTIVE], one]))
    o = np.where(np.isin(rows, one), ACTIVE, np.asarray([dict(zip(labeled, origin)).get(r, ACTIVE) for r in rows]))
    return X, y, rows, o


def test_auto_turns_to_random_only_on_strong_evidence_and_says_why():
    """``auto`` keeps its 10% random share while the random picks cannot tell active from random
    picks, and turns to ``max_share`` when active picks clearly lose; ``info`` says which and why."""
    fn = QUERY_STRATEGIES.get("auto")
    fair = fn(_ctx(*_pool(follow=True, n=160)), 20)
    worse = fn(_ctx(*_biased(*_pool(follow=True, n=160))), 20)
    few = fn(_ctx(*_pool(follow=True, n=16)), 20)  # 5 random picks: below min_random
    assert fair.info["adaptive"]["random_share"] == pytest.approx(0.1) and fair.info["random_picks"] == 2
    assert "no evidence that active picks lose" in fair.info["mix"] and fair.info["adaptive"]["delta_se"] > 0
    a = worse.info["adaptive"]
    assert a["delta"] < -2 * a["delta_se"] and a["random_share"] == pytest.approx(0.5) and a["p_active"] < 0.05
    assert int(worse.is_random.sum()) == 10 and np.isnan(worse.scores[worse.is_random]).all()
    assert worse.info["mix"].startswith("50% random (10 picks), rest dropquery; active vs random -")
    assert few.info["adaptive"]["delta"] is None and "needs 8" in few.info["mix"] and few.info["adaptive"]["p_active"] == 0.5
    X, y, labeled, origin = _biased(*_pool(follow=True, n=160))
    never = fn(_ctx(X, y, labeled, origin), 20, evidence_z=100.0)  # the gate can be shut
    assert never.info["adaptive"]["random_share"] == pytest.approx(0.1)
    again = fn(_ctx(X, y, labeled, origin, seed=9), 20)
    assert again.info["adaptive"] == worse.info["adaptive"]  # the decision depends on the labels, not the round's seed


def test_auto_without_history_keeps_its_share_and_checks_the_record():
    X, y, labeled, origin = _pool(follow=True)
    res = QUERY_STRATEGIES.get("auto")(_ctx(X, y, labeled, None), 20)
    assert res.info["adaptive"]["delta"] is None and res.info["adaptive"]["n_random_labeled"] == 0
    with pytest.raises(InvalidInputError, match="one entry per labeled row"):
        QUERY_STRATEGIES.get("auto")(_ctx(X, y, labeled, origin[:-1]), 20)


def test_auto_skips_the_typical_phase_when_neighbours_do_not_share_labels():
    """Labels that cut across the clusters (a coin per cluster member): typical picks of the
    clusters teach nothing, so ``auto`` goes to uncertainty at once and says why."""
    fn = QUERY_STRATEGIES.get("auto")
    across = fn(_ctx(*_pool(follow=False, n=16)), 20)
    follow = fn(_ctx(*_pool(follow=True, n=16)), 20)
    assert across.info["phase"] == "uncertain" and "typical phase skipped" in across.info["mix"]
    assert across.info["adaptive"]["agreement"] < 0.15
    assert follow.info["phase"] == "typical" and follow.info["adaptive"]["agreement"] > 0.5
    assert "typical picks in uncovered clusters" in follow.info["mix"]
    kept = fn(_ctx(*_pool(follow=False, n=16)), 20, agreement_threshold=-1.0)
    assert kept.info["phase"] == "typical" and kept.info["adaptive"]["agreement"] is None


def test_cli_default_query_prints_its_mix_and_status_shows_it(tmp_path, cli):
    """The default strategy (``auto``) says its mix: the share, the phase and the online estimate."""
    import pandas as pd
    from conftest import vector_pool

    X, k = clustered(n=300, d=16, k=3, spread=0.3, seed=0)
    d = tmp_path / "indexes"
    vector_pool(d, "vp", X)
    gold = {f"r{i}": f"c{v}" for i, v in enumerate(k)}
    f = tmp_path / "l.csv"
    pd.DataFrame({"id": list(gold)[:30], "label": list(gold.values())[:30]}).to_csv(f, index=False)
    r = cli("query", "--pool", "vp", "--labels", f, "--budget", 10, "--index-dir", d)
    assert r.exit_code == 0, r.output
    assert "picked by auto" in r.stdout and "mix: 10% random (1 picks), rest dropquery; active vs random:" in r.stdout
    r = cli("status", "--pool", "vp", "--index-dir", d)
    assert r.exit_code == 0 and "10% random (P(active) 0.50)" in r.stdout
