"""Pool row lookups: the Arrow path for a few ids (Pool._found, ids_of, texts_of) gives what the full
id map gives, unknown ids included (the query path uses it to avoid reading every id into Python)."""

from __future__ import annotations

import numpy as np
import pytest

from fmal.exceptions import LabelsError
from fmal.pool import open_pool


def test_few_ids_are_found_by_arrow_as_by_the_full_map(tiny_pool):
    index_dir, name, _ = tiny_pool
    fast, full = open_pool(name, index_dir), open_pool(name, index_dir)
    full._row_map()  # built: every lookup of ``full`` goes through the map
    rows = np.asarray([150, 3, 77, 3])
    want = [str(x) for x in full.ids[rows]]
    assert fast._found(want) is not None and "ids" not in fast.__dict__  # the Arrow path, no id read into Python
    np.testing.assert_array_equal(fast.rows_of(want), full.rows_of(want))
    np.testing.assert_array_equal(fast.rows_of(want), rows)
    assert fast.in_pool([want[0], "no-such-id", want[1]]) == full.in_pool([want[0], "no-such-id", want[1]]) == want[:2]
    assert fast.ids_of(rows).tolist() == full.ids[rows].tolist() and fast.ids_of(rows).dtype == object
    assert fast.texts_of(rows).tolist() == full.texts[rows].tolist()
    with pytest.raises(LabelsError, match="1 id\\(s\\) are not in pool") as fast_err:
        fast.rows_of([want[0], "no-such-id"])
    with pytest.raises(LabelsError) as full_err:
        full.rows_of([want[0], "no-such-id"])
    assert str(fast_err.value) == str(full_err.value)
    assert fast.rows_of([]).shape == (0,)


def test_many_ids_use_the_full_map(tiny_pool):
    index_dir, name, _ = tiny_pool
    p = open_pool(name, index_dir)
    want = [str(x) for x in p.ids[:50]]  # a quarter of the pool: one map is cheaper than a pass per lookup
    assert p._found(want) is None
    np.testing.assert_array_equal(p.rows_of(want), np.arange(50))
