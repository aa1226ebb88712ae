"""What a user needs to trust a cold-start selection, for any strategy: how much of the pool lies
within delta of a chosen row, how many k-means clusters hold one, and the largest that holds none.

Cheap by construction: one streamed pass of the pool against the chosen rows, one k-means (or the
strategy's own: the clustering strategies hand theirs over), one ProbCover delta on a sample. When
the report needs its own k-means, it is trained on a sample and its assignment shares that one
pass (one product with chosen rows and centroids together). The delta's purity is measured on
REPORT_PURITY_QUERIES rows of the 10,000-row sample rather than ProbCover's 5,000 (a fifth of the
products; the reference rows, hence the scale of delta, are the same).
A pool read block by block (over the RAM cap) is judged on a random sample of COVERAGE_SAMPLE rows
instead of a full pass, and one in RAM (or memory-mapped) of more than REPORT_SAMPLE rows on a
sample of that many: the report says so. At 100k rows the full pass had cost as much CPU as the
k-center selection it reported on (0.22 s against 0.25 s); fractions from 25,000 rows are within
~0.3% (one standard error), and the report's own k-means clusters are trained on a sample anyway.

Most of the report does not depend on the picks: the delta, the report's own k-means (trained
with the same call, hence the same clusters, as the clustering strategies') and the judged sample
(:func:`report_basis`). :func:`fmal.seed.base.select` computes that part on two threads while the
strategy runs (the delta's products on one, the serial FAISS training on the other), and
:func:`diagnose` then only measures the picks against it: the same report, seeded alike, as when
:func:`diagnose` computes everything itself. Left sequential for a pool read in blocks, where what
the threads hold at once would add up against the RAM cap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fmal._matrix import in_blocks, take
from fmal._validation import check_indices
from fmal.seed.clustering import PoolClusters, assign_bias, pool_kmeans
from fmal.seed.coverage import probcover_delta
from fmal.seed.geometry import check_delta, dist_of_sim, nearest_rows, nearest_sim

#: rows a pool read block by block is judged on (distance fractions and medians: sampling error ~0.1%)
COVERAGE_SAMPLE = 200_000
_GATHER = 65536  # sampled rows gathered at a time
#: rows a pool in RAM (or memory-mapped) is judged on when it has more (``sample=False``: every row)
REPORT_SAMPLE = 25_000
#: rows whose purity sets the report's delta (ProbCover itself: 5,000)
REPORT_PURITY_QUERIES = 1000


@dataclass
class ReportBasis:
    """What the coverage report needs that does not depend on the picks: the ball radius, the
    report's own k-means (when the strategy hands over no clusters) and the rows it judges.

    :func:`report_basis` computes it; :func:`fmal.seed.base.select` does so on two more threads
    while the strategy runs (the k-means training is one serial FAISS call), and ``diagnose``
    when it is not given one. ``k``: the clusters it was made for (one per chosen row)."""

    k: int
    delta: float | None
    delta_rule: str | None
    clusters: PoolClusters | None
    rows: np.ndarray | None
    judged: list[np.ndarray] | None = field(default=None, repr=False)

    def joined(self, other: ReportBasis) -> ReportBasis:
        """This basis with what it lacks taken from ``other`` (made for the same ``k``)."""
        return ReportBasis(self.k, self.delta if self.delta is not None else other.delta,
                           self.delta_rule if self.delta is not None else other.delta_rule,
                           self.clusters if self.clusters is not None else other.clusters,
                           self.rows if self.rows is not None else other.rows,
                           self.judged if self.judged is not None else other.judged)


def report_basis(
    X: np.ndarray,
    k: int,
    *,
    delta: bool = True,
    clusters: bool = True,
    random_state: int = 0,
    index: Any = None,
    sample: bool = True,
    gather: bool = True,
) -> ReportBasis:
    """The pick-independent part of :func:`diagnose` for ``k`` chosen rows: ProbCover's automatic
    delta (``delta``), the report's own k-means into ``k`` clusters (``clusters``) and, on a pool
    judged on a sample, the sampled rows (gathered when ``gather``). Seeded by ``random_state`` alone,
    so it is the same whichever thread computes it and whenever; parts made apart are
    :meth:`ReportBasis.joined`."""
    n = X.shape[0]
    d_value = d_rule = None
    if delta:
        d = probcover_delta(X, random_state=random_state, purity_queries=REPORT_PURITY_QUERIES)
        d_value, d_rule = d["delta"], "auto (" + d["delta_rule"] + ")"
    blocked = in_blocks(X)
    size = COVERAGE_SAMPLE if blocked else REPORT_SAMPLE
    sampled = sample and n > size
    pc = None
    if clusters:  # unless over the RAM cap, assigned in the pass over the judged rows
        pc = pool_kmeans(X, min(k, n), index=index, random_state=random_state, assign=sampled and blocked)
    rows = gathered = None
    if sampled:
        rows = np.sort(np.random.default_rng(random_state).choice(n, size=size, replace=False))
    if sampled and gather:
        gathered = [np.asarray(take(X, rows[s : s + _GATHER]), dtype=np.float32) for s in range(0, rows.size, _GATHER)]
    return ReportBasis(int(k), d_value, d_rule, pc, rows, gathered)


def diagnose(
    X: np.ndarray,
    picks: np.ndarray,
    labeled: np.ndarray | None = None,
    *,
    delta: float | None = None,
    assign: np.ndarray | None = None,
    random_state: int = 0,
    index: Any = None,
    sample: bool = True,
    basis: ReportBasis | None = None,
) -> dict[str, Any]:
    """Coverage report of ``picks`` (with ``labeled`` rows counted as chosen).

    ``delta``: ball radius (Euclidean, unit vectors); default ProbCover's automatic delta.
    ``assign``: a k-means clustering of the pool to judge by; default k-means with one cluster per
    chosen row, so a perfect spread represents every cluster (two-level over ``index``'s IVF lists
    for a pool read block by block, see fmal.seed.clustering.pool_kmeans). ``sample``: judge a
    pool read block by block on COVERAGE_SAMPLE random rows, and one in RAM on REPORT_SAMPLE, rather
    than a full pass (distances; and cluster sizes when the clusters are the report's own).
    ``basis``: :func:`report_basis` computed already (with the same ``random_state``, ``index``
    and ``sample``); what it lacks, or holds for another number of chosen rows, is computed here.
    """
    n = X.shape[0]
    labeled = check_indices(labeled, n)
    chosen = np.union1d(np.asarray(picks, dtype=np.int64), labeled)
    sampled = sample and n > (COVERAGE_SAMPLE if in_blocks(X) else REPORT_SAMPLE)
    fits = basis is not None and basis.k == chosen.size
    need_delta = delta is None and not (fits and basis.delta is not None)
    need_clusters = assign is None and not (fits and basis.clusters is not None)
    need_rows = sampled and not (fits and basis.rows is not None)
    if not fits or need_delta or need_clusters or need_rows:  # rows gathered a chunk at a time below
        more = report_basis(X, chosen.size, delta=need_delta, clusters=need_clusters, gather=False,
                            random_state=random_state, index=index, sample=sample)
        basis = basis.joined(more) if fits else more
    out: dict[str, Any] = {}
    if delta is None:
        delta = basis.delta
        out["coverage_delta_rule"] = basis.delta_rule
    delta = check_delta(delta)
    C = np.asarray(X[chosen])
    rows = basis.rows
    if assign is None:
        pc = basis.clusters
        assign = pc.assign
    groups = [(C, None)] if assign is not None else [(C, None), (pc.centroids, assign_bias(pc.centroids))]
    assign_chosen = None
    if sampled:
        size = rows.size
        chunks = basis.judged or (np.asarray(take(X, rows[s : s + _GATHER]), dtype=np.float32) for s in range(0, size, _GATHER))
        parts = [nearest_rows(xb, groups) for xb in chunks]
        sim = np.concatenate([p[0][0] for p in parts])
        if assign is None:  # cluster sizes from the sample; the chosen rows' own clusters exactly
            assign = np.concatenate([p[1][1] for p in parts])
            assign_chosen = nearest_rows(C, groups[1:])[0][1]
        out["coverage_sample"] = (f"distances{'' if assign_chosen is None else ' and cluster sizes'} estimated on "
                                  f"{size:,} random rows of {n:,}")
    elif assign is None:
        (sim, _), (_, assign) = nearest_rows(X, groups)
    else:
        sim, _ = nearest_sim(X, C)
    dist = dist_of_sim(sim)
    out["coverage_delta"] = round(float(delta), 4)
    out["pool_within_delta"] = round(float((dist <= delta + 1e-6).mean()), 4)
    out["median_distance_to_chosen"] = round(float(np.median(dist)), 4)
    out["max_distance_to_chosen"] = round(float(dist.max()), 4)
    if assign_chosen is None:
        k = int(assign.max()) + 1
        sizes = np.bincount(assign, minlength=k).astype(np.float64)
        assign_chosen = assign[chosen]
    else:  # the sample's clusters, scaled to the pool; a cluster holding a chosen row is never empty
        k = pc.centroids.shape[0]
        sizes = np.bincount(assign, minlength=k) * (n / size)
        sizes[assign_chosen] = np.maximum(sizes[assign_chosen], 1.0)
    hit = np.zeros(k, dtype=bool)
    hit[assign_chosen] = True
    nonempty = sizes > 0
    uncovered = nonempty & ~hit
    out["clusters_represented"] = f"{int((hit & nonempty).sum())} of {int(nonempty.sum())}"
    out["largest_uncovered_cluster"] = int(round(sizes[uncovered].max())) if uncovered.any() else 0
    out["pool_in_uncovered_clusters"] = round(float(sizes[uncovered].sum() / n), 4)
    return out
