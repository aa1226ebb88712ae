"""The public surface: ``fmal.__all__`` is sorted, and every name in it resolves."""

import fmal


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 ("isort-style") order: CONSTANTS, then Classes, then everything else."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_and_resolves():
    assert fmal.__all__ == sorted(fmal.__all__, key=_isort_key)
    assert len(set(fmal.__all__)) == len(fmal.__all__)
    for name in fmal.__all__:
        assert getattr(fmal, name, None) is not None, name


def test_the_cli_operations_are_public():
    for name in ("embed", "seed", "query", "status", "open_pool", "FmalError", "LinearProbe", "__version__"):
        assert name in fmal.__all__
    assert issubclass(fmal.PoolExhaustedError, fmal.InvalidInputError)
    assert issubclass(fmal.LabelsError, fmal.InvalidInputError)
    assert all(issubclass(e, fmal.FmalError) for e in (fmal.PoolNotFoundError, fmal.CorruptPoolError, fmal.ModelMismatchError))
