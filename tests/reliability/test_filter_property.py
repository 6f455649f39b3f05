"""Issue 9.4 (property): random metadata x random filters on the embedded engine agree with
the pure-Python reference evaluator (``tests/_filter_reference.py``), for ``get``,
``count``, ``search`` and ``delete``.

Keys include quotes, dots, brackets and non-ASCII; string values include LIKE wildcards,
quotes and backslashes, so quoting and escaping are exercised along with the semantics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests._filter_reference import matches
from tidb_jina import InvalidFilterError
from tidb_jina.store import VectorTable, connect
from tidb_jina.store._filter_tree import validate_filter

KEYS = ["a", "b", "tag s", 'q"k', "d.o.t", "[0]", "ü"]
CHARS = st.sampled_from(list("aAbZ%_'\"\\ é"))

strings = st.text(CHARS, max_size=4)
numbers = st.one_of(st.integers(-5, 5), st.sampled_from([0.5, -1.5, 2.0, 1e-3]))
scalars = st.one_of(strings, numbers, st.booleans(), st.none())
values = st.one_of(scalars, st.lists(st.one_of(strings, numbers, st.booleans()), max_size=3))
metadata = st.dictionaries(st.sampled_from(KEYS), values, max_size=4)

comparable = st.one_of(strings, numbers)
field_ops = st.one_of(
    st.builds(lambda v: {"$eq": v}, scalars),
    st.builds(lambda v: {"$ne": v}, scalars),
    st.builds(lambda op, v: {op: v}, st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), comparable),
    st.builds(lambda vs: {"$in": vs}, st.lists(scalars, max_size=3)),
    st.builds(lambda vs: {"$nin": vs}, st.lists(scalars, max_size=3)),
    st.builds(lambda b: {"$exists": b}, st.booleans()),
    st.builds(lambda b: {"$empty": b}, st.booleans()),
    st.builds(lambda p: {"$like": p}, strings),
    st.builds(lambda p: {"$ilike": p}, strings),
    st.builds(lambda v: {"$contains": v}, st.one_of(strings, numbers, st.booleans())),
    st.builds(lambda vs: {"$any": vs}, st.lists(st.one_of(strings, numbers), max_size=3)),
    st.builds(lambda vs: {"$all": vs}, st.lists(st.one_of(strings, numbers), max_size=3)),
    st.builds(lambda lo, hi: {"$between": [lo, hi]}, numbers, numbers),
)
field_value = st.one_of(scalars, field_ops, st.builds(lambda o: {"$not": o}, field_ops))
leaf = st.dictionaries(st.sampled_from(KEYS), field_value, min_size=1, max_size=2)
filters = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda fs: {"$and": fs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda fs: {"$or": fs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda fs: {"$nor": fs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda f: {"$not": f}, inner),
    ),
    max_leaves=6,
)

_ENGINE = connect("sqlite://")
_TABLE = VectorTable(_ENGINE, table_name="prop", dimension=3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(metadata, min_size=1, max_size=10), st.lists(filters, min_size=1, max_size=4))
@pytest.mark.slow
def test_store_filters_agree_with_the_reference_evaluator(metas: list[dict[str, Any]], flts):
    _TABLE.clear()
    ids = [f"r{i}" for i in range(len(metas))]
    vectors = np.random.default_rng(len(metas)).normal(size=(len(metas), 3)) + 3
    _TABLE.upsert(vectors, ids=ids, metadatas=metas)
    for flt in flts:
        try:
            validate_filter(flt)
        except InvalidFilterError:
            assume(False)
        want = sorted(i for i, m in zip(ids, metas, strict=True) if matches(flt, m))
        assert sorted(r.id for r in _TABLE.get(filter=flt)) == want, flt
        assert _TABLE.count(flt) == len(want), flt
        hits = _TABLE.search([1.0, 1.0, 1.0], k=len(ids), filter=flt)
        assert sorted(h.id for h in hits) == want, flt
    # delete removes exactly the matching rows of the first filter, nothing else
    flt = flts[0]
    want = {i for i, m in zip(ids, metas, strict=True) if matches(flt, m)}
    assert _TABLE.delete(filter=flt) == len(want)
    assert {r.id for r in _TABLE.get()} == set(ids) - want
