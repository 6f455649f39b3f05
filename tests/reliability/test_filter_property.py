"""Issue 14 (property): no filter ever matches more than it should, on any path.

Random metadata x random filters, on both embedded engines (in-memory and a file),
checked against the pure-Python reference evaluator (``tests/_filter_reference.py``):

* every path that selects rows: ``get``, ``count``, ``search`` on the NumPy snapshot
  and in SQL (a second table object with ``search_cache=False``), the LangChain store's
  ``similarity_search_by_vector`` and ``delete(filter=)``, the core ``delete``;
* LlamaIndex ``MetadataFilters`` (every operator, AND / OR / NOT, nested and *empty*
  groups) through ``query``, ``get_nodes`` and ``delete_nodes``, against an independent
  reference of LlamaIndex's group logic;
* metadata holding ``""``, ``"[]"``, ``[]``, ``{}``, nested objects, unicode, ``1`` vs
  ``1.0`` vs ``true``, missing keys, odd keys (``*``, quotes, dots), the indexed key
  ``ref_doc_id``; and NUL, which must be refused at write time with the table unchanged
  (a NUL in a filter value is refused too);
* filters with empty groups, ``$in`` / ``$nin`` / ``$or`` lists of thousands of values
  (10,000 in some), and every operator.

The bounded tests run in CI; the ``slow`` ones run many more examples.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from langchain_core.embeddings import DeterministicFakeEmbedding
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)

from langchain_tidb_jina import TiDBVectorStore as LCStore
from llama_index_tidb_jina import TiDBVectorStore as LIStore
from llama_index_tidb_jina._filters import to_core_filter
from tests._filter_reference import li_matches, matches
from tidb_jina import InvalidFilterError, InvalidInputError
from tidb_jina.store import VectorTable, connect
from tidb_jina.store._filter_sql import MEMBERSHIP_MIN
from tidb_jina.store._filter_tree import parse_filter

DIM = 3
KEYS = ["a", "b", "ref_doc_id", 'q"k', "d.o.t", "ü", "*", "n"]
CHARS = st.sampled_from([*"aA%_'\"\\ é", "\x00"])
strings = st.one_of(
    st.text(CHARS, max_size=3),
    st.sampled_from(["", "[]", "1", "true", "acme", "acme\x00evil", "ключ", "a "]),
)
clean_strings = strings.filter(lambda s: "\x00" not in s)
numbers = st.one_of(st.integers(-3, 3), st.sampled_from([1.0, 0.5, -1.5, 2.0, 2**53 + 1]))
# Values that look alike across JSON types; drawn often on both sides, so a path that
# compares across types (true == 1, "1" == 1, [1] == 1) fails within the CI budget.
CONFUSABLE: list[Any] = [
    1,
    1.0,
    True,
    "1",
    0,
    -0.0,
    False,
    "",
    "0",
    "true",
    None,
    "null",
    "[]",
    2**53,
    2**53 + 1,
    float(2**53),
    2**63 - 1,
]
confusable = st.sampled_from(CONFUSABLE)
scalars = st.one_of(confusable, strings, numbers, st.booleans(), st.none())
values = st.recursive(
    st.one_of(confusable, scalars, st.sampled_from([[1], [True], ["1"], [], {"a": 1}])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["x", "y"]), inner, max_size=2),
    ),
    max_leaves=4,
)
metadata = st.fixed_dictionaries(
    {},
    optional={
        **{key: values for key in KEYS if key != "ref_doc_id"},
        "ref_doc_id": st.one_of(strings, numbers, st.none()),  # indexed: scalars only
    },
)

# Big lists: thousands of values that never match, plus the generated ones.
PAD = [f"pad{i}" for i in range(5_000)] + list(range(10**6, 10**6 + 5_000))


def _padded(vs: list[Any], size: int) -> list[Any]:
    return vs + PAD[:size] if size else vs


pad_size = st.sampled_from([0, 0, 0, 0, 20, 20, 3_000, 10_000])
comparable = st.one_of(strings, numbers)
field_ops = st.one_of(
    st.builds(lambda v: {"$eq": v}, scalars),
    st.builds(lambda v: {"$ne": v}, scalars),
    st.builds(lambda op, v: {op: v}, st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), comparable),
    st.builds(lambda vs, n: {"$in": _padded(vs, n)}, st.lists(scalars, max_size=4), pad_size),
    st.builds(lambda vs, n: {"$nin": _padded(vs, n)}, st.lists(scalars, max_size=4), pad_size),
    st.builds(lambda b: {"$exists": b}, st.booleans()),
    st.builds(lambda b: {"$empty": b}, st.booleans()),
    st.builds(lambda p: {"$like": p}, strings),
    st.builds(lambda p: {"$ilike": p}, strings),
    st.builds(lambda v: {"$contains": v}, st.one_of(strings, numbers, st.booleans())),
    st.builds(lambda vs, n: {"$any": _padded(vs, n)}, st.lists(comparable, max_size=3), pad_size),
    st.builds(lambda vs: {"$all": vs}, st.lists(comparable, max_size=3)),
    st.builds(lambda lo, hi: {"$between": [lo, hi]}, numbers, numbers),
)
field_value = st.one_of(scalars, field_ops, st.builds(lambda o: {"$not": o}, field_ops))
leaf = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), field_value, min_size=1, max_size=2),
    # an $or of equalities on one key (a LlamaIndex/LangChain allow-list)
    st.builds(
        lambda key, vs, n: {"$or": [{key: v} for v in _padded(vs, min(n, 1_000))]},
        st.sampled_from(KEYS),
        st.lists(scalars, max_size=4),
        pad_size,
    ),
    st.just({}),
)
filters = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda fs: {"$and": fs}, st.lists(inner, max_size=3)),  # [] included
        st.builds(lambda fs: {"$or": fs}, st.lists(inner, max_size=3)),
        st.builds(lambda fs: {"$nor": fs}, st.lists(inner, max_size=3)),
        st.builds(lambda f: {"$not": f}, inner),
    ),
    max_leaves=6,
)


# --- the stores, one set per engine (hypothesis runs many examples on each) -----------

_STORES: dict[str, tuple[VectorTable, VectorTable, LCStore, LIStore]] = {}


def _stores(engine: str) -> tuple[VectorTable, VectorTable, LCStore, LIStore]:
    if engine not in _STORES:
        if engine == "memory":
            url: Any = connect("sqlite://")
        else:
            url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'prop.db'}"
        li = LIStore(url, table_name="prop", vector_dimension=DIM)
        table = li.client  # the core table, with the LlamaIndex indexed key ref_doc_id
        sql_search = VectorTable(table.engine, table_name="prop", search_cache=False)
        lc = LCStore(embedding=DeterministicFakeEmbedding(size=DIM), vector_table=table)
        _STORES[engine] = (table, sql_search, lc, li)
    return _STORES[engine]


def _write(table: VectorTable, metas: list[dict[str, Any]]) -> tuple[list[str], list[dict]]:
    """Write the rows; rows with NUL in metadata must be refused, table unchanged."""
    table.clear()
    ids = [f"r{i}" for i in range(len(metas))]
    vectors = np.random.default_rng(len(metas)).normal(size=(len(metas), DIM)) + 3
    if any(_has_nul(m) for m in metas):
        with pytest.raises(InvalidInputError, match="NUL"):
            table.upsert(vectors, ids=ids, metadatas=metas)
        assert table.count() == 0  # nothing from any batch
        keep = [i for i, m in enumerate(metas) if not _has_nul(m)]
        ids, metas, vectors = [ids[i] for i in keep], [metas[i] for i in keep], vectors[keep]
    if ids:
        table.upsert(vectors, ids=ids, metadatas=metas)
    return ids, metas


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _want(flt: Any, ids: list[str], metas: list[dict[str, Any]]) -> list[str]:
    return sorted(i for i, m in zip(ids, metas, strict=True) if matches(flt, m))


def check_core(engine: str, metas: list[dict[str, Any]], flts: list[dict[str, Any]]) -> None:
    table, sql_search, lc, _ = _stores(engine)
    ids, metas = _write(table, metas)
    q = [1.0, 1.0, 1.0]
    k = max(len(ids), 1)
    checked = []
    for flt in flts:
        try:
            parse_filter(flt)
        except InvalidFilterError as exc:
            if _has_nul(flt):  # refused on every path, whatever else it holds
                assert "NUL" in str(exc) or "invalid filter" in str(exc)
                with pytest.raises(InvalidFilterError):
                    table.count(flt)
            continue
        want = _want(flt, ids, metas)
        assert sorted(r.id for r in table.get(filter=flt)) == want, flt
        assert table.count(flt) == len(want), flt
        assert sorted(h.id for h in table.search(q, k=k, filter=flt)) == want, flt
        assert sorted(h.id for h in sql_search.search(q, k=k, filter=flt)) == want, flt
        docs = lc.similarity_search_by_vector(q, k=k, filter=flt)
        assert sorted(d.id for d in docs) == want, flt  # type: ignore[type-var]
        checked.append(flt)
    if not checked:
        assume(False)  # every filter was invalid: nothing to compare
    # delete removes exactly the matching rows, nothing else; a filter that sets no
    # condition ({"$and": []}, {"$nin": []}) is refused, never "delete everything".
    for n, flt in enumerate(checked[:2]):
        before = {r.id for r in table.get()}
        want_deleted = set(_want(flt, ids, metas)) & before
        delete = table.delete if n == 0 else lc.delete
        if parse_filter(flt) is None:
            with pytest.raises(InvalidInputError, match="ids or a filter"):
                delete(filter=flt)
            want_deleted = set()
        else:
            delete(filter=flt)
        assert {r.id for r in table.get()} == before - want_deleted, flt


# --- LlamaIndex MetadataFilters ---------------------------------------------------------

li_strings = clean_strings
li_numbers = st.one_of(st.integers(-3, 3), st.sampled_from([1.0, 0.5, -1.5]))
li_scalar = st.one_of(li_strings, li_numbers)


def _li_leaf(key: str, op: FilterOperator, value: Any) -> MetadataFilter:
    return MetadataFilter(key=key, operator=op, value=value)


li_leaf = st.one_of(
    st.builds(
        _li_leaf,
        st.sampled_from(KEYS),
        st.sampled_from(
            [FilterOperator.EQ, FilterOperator.NE, FilterOperator.GT, FilterOperator.LTE]
        ),
        li_scalar,
    ),
    st.builds(
        lambda key, op, vs, n: _li_leaf(key, op, vs + [f"pad{i}" for i in range(n)]),
        st.sampled_from(KEYS),
        st.sampled_from([FilterOperator.IN, FilterOperator.NIN, FilterOperator.ANY]),
        st.lists(li_strings, max_size=3),
        st.sampled_from([0, 50, 10_000]),
    ),
    st.builds(
        _li_leaf,
        st.sampled_from(KEYS),
        st.sampled_from([FilterOperator.IN, FilterOperator.ALL]),
        st.lists(st.integers(-3, 3), max_size=3),
    ),
    st.builds(
        _li_leaf,
        st.sampled_from(KEYS),
        st.sampled_from(
            [
                FilterOperator.CONTAINS,
                FilterOperator.TEXT_MATCH,
                FilterOperator.TEXT_MATCH_INSENSITIVE,
            ]
        ),
        li_strings,
    ),
    st.builds(lambda key: _li_leaf(key, FilterOperator.IS_EMPTY, None), st.sampled_from(KEYS)),
)
conditions = st.sampled_from([FilterCondition.AND, FilterCondition.OR, FilterCondition.NOT])
li_filters = st.recursive(
    st.builds(
        lambda fs, c: MetadataFilters(filters=fs, condition=c),
        st.lists(li_leaf, max_size=2),
        conditions,
    ),
    lambda inner: st.builds(
        lambda fs, c: MetadataFilters(filters=fs, condition=c),
        st.lists(st.one_of(li_leaf, inner), max_size=3),  # [] included: empty groups
        conditions,
    ),
    max_leaves=5,
)


def check_llama(engine: str, metas: list[dict[str, Any]], flts: list[MetadataFilters]) -> None:
    table, _, _, li = _stores(engine)
    ids, metas = _write(table, metas)
    k = max(len(ids), 1)
    for flt in flts:
        want = sorted(i for i, m in zip(ids, metas, strict=True) if li_matches(flt, m))
        got = li.query(
            VectorStoreQuery(query_embedding=[1.0, 1.0, 1.0], similarity_top_k=k, filters=flt)
        )
        assert sorted(got.ids or []) == want, flt
        assert sorted(n.node_id for n in li.get_nodes(filters=flt)) == want, flt
    flt = flts[0]
    want = {i for i, m in zip(ids, metas, strict=True) if li_matches(flt, m)}
    if to_core_filter(flt) is None:
        want = set()  # no condition: delete_nodes deletes nothing rather than everything
    li.delete_nodes(filters=flt)
    assert {r.id for r in table.get()} == set(ids) - want, flt


ENGINES = ["memory", "file"]
_FEW = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
_MANY = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
core_args = (st.lists(metadata, min_size=1, max_size=8), st.lists(filters, min_size=1, max_size=4))
llama_args = (
    st.lists(metadata, min_size=1, max_size=8),
    st.lists(li_filters, min_size=1, max_size=3),
)


@pytest.mark.parametrize("engine", ENGINES)
@_FEW
@given(*core_args)
def test_filters_agree_with_the_reference_on_every_path(engine, metas, flts):
    check_core(engine, metas, flts)


@pytest.mark.parametrize("engine", ENGINES)
@_FEW
@given(*llama_args)
def test_llama_index_filters_agree_with_the_reference(engine, metas, flts):
    check_llama(engine, metas, flts)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
@_MANY
@given(*core_args)
def test_filters_agree_with_the_reference_on_every_path_many(engine, metas, flts):
    check_core(engine, metas, flts)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
@_MANY
@given(*llama_args)
def test_llama_index_filters_agree_with_the_reference_many(engine, metas, flts):
    check_llama(engine, metas, flts)


def test_an_empty_llama_index_allow_list_deletes_nothing():
    """The issue's case: an empty OR group nested in a filter selected and deleted all."""
    table, _, _, li = _stores("memory")
    _write(table, [{"tenant": "acme"}, {"tenant": "evil"}, {}])
    allow_list = MetadataFilters(filters=[], condition=FilterCondition.OR)
    flt = MetadataFilters(filters=[allow_list])
    got = li.query(
        VectorStoreQuery(query_embedding=[1.0, 1.0, 1.0], similarity_top_k=5, filters=flt)
    )
    assert got.ids == [] and li.get_nodes(filters=flt) == []
    li.delete_nodes(filters=flt)
    assert table.count() == 3


def test_a_llama_index_group_true_by_structure_deletes_nothing():
    """Review of issue 14: an empty NOT group (true for every row) inside an OR made the
    whole filter true for every row, and delete_nodes emptied the table."""
    table, _, _, li = _stores("memory")
    _write(table, [{"tenant": "acme"}, {"tenant": "evil"}, {}])
    leaf = MetadataFilter(key="tenant", operator=FilterOperator.EQ, value="acme")
    flt = MetadataFilters(
        filters=[MetadataFilters(filters=[], condition=FilterCondition.NOT), leaf],
        condition=FilterCondition.OR,
    )
    assert to_core_filter(flt) is None
    assert len(li.get_nodes(filters=flt)) == 3  # reads: no condition, every row
    li.delete_nodes(filters=flt)
    assert table.count() == 3
    li.delete_nodes(node_ids=["r1"], filters=flt)
    assert table.count() == 2


# One key, look-alike values on both sides: dense in collisions, so a path that compares
# across JSON types fails within the CI budget (the wide generator above finds such a
# bug only with the slow budget).
k_meta = st.one_of(
    st.just({}),
    st.builds(
        lambda v: {"k": v},
        st.one_of(confusable, st.sampled_from([[1], [True], ["1"], [1.0, "x"], [], {"a": 1}])),
    ),
)
_K_PAD = [f"pad{i}" for i in range(8)]
k_leaf = st.one_of(
    st.builds(lambda v: {"k": v}, confusable),
    st.builds(
        lambda op, vs, pad: {"k": {op: vs + (_K_PAD if pad else [])}},
        st.sampled_from(["$in", "$nin", "$any", "$all"]),
        st.lists(confusable, min_size=1, max_size=3),
        st.booleans(),  # from MEMBERSHIP_MIN values: the JSON-array path
    ),
    st.builds(lambda vs: {"$or": [{"k": v} for v in vs]}, st.lists(confusable, max_size=9)),
    st.builds(
        lambda op, v: {"k": {op: v}},
        st.sampled_from(["$ne", "$contains", "$gt", "$gte", "$lt", "$lte"]),
        confusable,
    ),
)
k_filters = st.recursive(
    k_leaf,
    lambda inner: st.one_of(
        st.builds(lambda f: {"$not": f}, inner),
        st.builds(lambda fs: {"$or": fs}, st.lists(inner, max_size=2)),
        st.builds(lambda fs: {"$and": fs}, st.lists(inner, max_size=2)),
    ),
    max_leaves=3,
)


@pytest.mark.parametrize("engine", ENGINES)
@_FEW
@given(st.lists(k_meta, min_size=3, max_size=12), st.lists(k_filters, min_size=1, max_size=4))
def test_look_alike_values_never_match_across_types(engine, metas, flts):
    check_core(engine, metas, flts)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
@_MANY
@given(st.lists(k_meta, min_size=3, max_size=12), st.lists(k_filters, min_size=1, max_size=4))
def test_look_alike_values_never_match_across_types_many(engine, metas, flts):
    check_core(engine, metas, flts)


def _confusion_filters() -> list[dict[str, Any]]:
    pad = [f"pad{i}" for i in range(MEMBERSHIP_MIN)]  # from MEMBERSHIP_MIN: one JSON array
    flts: list[dict[str, Any]] = []
    for c in CONFUSABLE:
        flts += [
            {"k": c},
            {"k": {"$ne": c}},
            {"k": {"$in": [c]}},
            {"k": {"$in": [c, *pad]}},
            {"k": {"$nin": [c, *pad]}},
            {"k": {"$in": [c, c, None]}},
            {"$or": [{"k": c}, *({"k": p} for p in pad)]},
        ]
        if c is not None:
            flts += [{"k": {"$contains": c}}, {"k": {"$any": [c, *pad]}}, {"k": {"$all": [c]}}]
        if isinstance(c, (int, float, str)) and not isinstance(c, bool):
            flts += [{"k": {op: c}} for op in ("$gt", "$gte", "$lt", "$lte")]
    return flts


@pytest.mark.parametrize("engine", ENGINES)
def test_type_confusion_matrix_on_every_path(engine):
    """Review of issue 14: every look-alike value against every other, on every path
    (small and JSON-array ``$in``, ``$or`` of equalities, array operators), exhaustively;
    the random tests above only sample this."""
    rows = [{"k": v} for v in CONFUSABLE]
    rows += [{"k": v} for v in ([1], [True], ["1"], [1.0, "x"], [], {"a": 1}, [[1]])]
    rows += [{}, {"other": 1}]
    check_core(engine, rows, _confusion_filters())
