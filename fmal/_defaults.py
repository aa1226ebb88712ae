"""Defaults that the command line shows in ``--help``, in a module that imports nothing, so that
building the help does not import what defines them (fmal.api imports pandas, fmal.probe
scikit-learn). fmal.api and fmal.probe import them from here."""

DEFAULT_SEED_STRATEGY = "auto"
DEFAULT_QUERY_STRATEGY = "auto"  # measured: benchmarks/query_quality.py (adaptive: no better on the evaluation pools, slower)
#: C used when there are too few labels per class to cross-validate. On L2-normalised sentence
#: embeddings the default C=1 underfits badly with tens of labels (trec6, 80 labels: 0.51 vs 0.585
#: accuracy at C=10).
DEFAULT_C = 10.0
