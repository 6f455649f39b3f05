"""MetadataFilters through the store agree with llama-index-core's reference filter.

Each case runs ``build_metadata_filter_fn`` (the reference) over the nodes' metadata and
``TiDBVectorStore.get_nodes(filters=...)`` / ``query(filters=...)`` over the same nodes
stored in the table, and compares the matching node ids. Nested groups, which the
reference refuses, are compared with the reference applied group by group. The deliberate
differences (all on ill-typed data) are pinned in ``test_deliberate_differences``.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)
from llama_index.core.vector_stores.utils import build_metadata_filter_fn

from llama_index_tidb_jina import SUPPORTED_OPERATORS, TiDBVectorStore, to_core_filter
from llama_index_tidb_jina._filters import and_filters
from tidb_jina import InvalidFilterError
from tidb_jina.store._filter_tree import And, Filter, Not, Or, Pred, parse_filter

RECORDS: dict[str, dict[str, Any]] = {
    "r1": {"lang": "en", "year": 2020, "score": 0.9, "tags": ["a", "b"], "title": "A Guide"},
    "r2": {"lang": "de", "year": 2021, "score": 0.5, "tags": ["b"], "title": "guidebook"},
    "r3": {"lang": "fr", "year": 2022, "score": 0.1, "tags": [], "title": "100% pure_fun"},
    "r4": {"lang": None, "year": 2019, "tags": ["c", "a"], "title": "Notes"},
    "r5": {"year": 2024, "score": 0.5, "title": ""},
    "r6": {"lang": "en", "score": 1.0, "tags": ["a", "b", "c"], "title": "GUIDE to x"},
    "r7": {"title": "misc"},
    "r8": {"lang": "", "year": 2021, "tags": ["d"], "title": "back\\slash"},
}

F = MetadataFilter
Op = FilterOperator
LEAVES = [
    F(key="lang", value="en", operator=Op.EQ),
    F(key="year", value=2021, operator=Op.EQ),
    F(key="score", value=0.5, operator=Op.EQ),
    F(key="lang", value="en", operator=Op.NE),
    F(key="year", value=2021, operator=Op.NE),
    F(key="year", value=2021, operator=Op.GT),
    F(key="year", value=2021, operator=Op.GTE),
    F(key="score", value=0.5, operator=Op.LT),
    F(key="score", value=0.5, operator=Op.LTE),
    F(key="lang", value="e", operator=Op.GT),
    F(key="lang", value=["en", "fr"], operator=Op.IN),
    F(key="year", value=[2020, 2022], operator=Op.IN),
    F(key="lang", value=["en", "fr"], operator=Op.NIN),
    F(key="year", value=[2019], operator=Op.NIN),
    F(key="tags", value=["a", "d"], operator=Op.ANY),
    F(key="tags", value=["a", "b"], operator=Op.ALL),
    F(key="tags", value="c", operator=Op.CONTAINS),
    F(key="title", value="Guide", operator=Op.TEXT_MATCH),
    F(key="title", value="guide", operator=Op.TEXT_MATCH_INSENSITIVE),
    F(key="title", value="0% pure_", operator=Op.TEXT_MATCH),
    F(key="title", value="\\", operator=Op.TEXT_MATCH),
    F(key="tags", value=None, operator=Op.IS_EMPTY),
    F(key="lang", value=None, operator=Op.IS_EMPTY),
    F(key="title", value=None, operator=Op.IS_EMPTY),
]


def _cases() -> list[MetadataFilters]:
    cases = [MetadataFilters(filters=[leaf]) for leaf in LEAVES]
    for a, b in itertools.combinations(LEAVES[::4], 2):
        for condition in FilterCondition:
            cases.append(MetadataFilters(filters=[a, b], condition=condition))
    cases.append(MetadataFilters(filters=LEAVES[:3], condition=FilterCondition.NOT))
    return cases


CASES = _cases()
NESTED = [
    MetadataFilters(
        filters=[MetadataFilters(filters=LEAVES[:2], condition=FilterCondition.OR), LEAVES[6]]
    ),
    MetadataFilters(
        filters=[
            MetadataFilters(filters=[LEAVES[14], LEAVES[21]], condition=FilterCondition.OR),
            MetadataFilters(filters=[LEAVES[3]], condition=FilterCondition.NOT),
        ],
        condition=FilterCondition.OR,
    ),
    MetadataFilters(
        filters=[
            MetadataFilters(
                filters=[LEAVES[10], MetadataFilters(filters=[LEAVES[17], LEAVES[18]])],
                condition=FilterCondition.AND,
            )
        ],
        condition=FilterCondition.NOT,
    ),
]


def _nodes() -> list[TextNode]:
    return [
        TextNode(id_=node_id, text=f"text {node_id}", metadata=meta, embedding=[1.0, 0.5, 0.25])
        for node_id, meta in RECORDS.items()
    ]


@pytest.fixture
def filled(store: TiDBVectorStore) -> TiDBVectorStore:
    store.add(_nodes())
    return store


def reference_ids(filters: MetadataFilters) -> set[str]:
    """llama-index-core's answer; nested groups evaluated group by group."""
    return {node_id for node_id in RECORDS if _reference(filters, RECORDS[node_id])}


def _reference(filters: MetadataFilters, metadata: dict[str, Any]) -> bool:
    if not any(isinstance(f, MetadataFilters) for f in filters.filters):
        return build_metadata_filter_fn(lambda _: metadata, filters)("x")
    matches = [
        _reference(f, metadata)
        if isinstance(f, MetadataFilters)
        else _reference(MetadataFilters(filters=[f]), metadata)
        for f in filters.filters
    ]
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.AND:
        return all(matches)
    if condition == FilterCondition.OR:
        return any(matches)
    return not any(matches)


def test_every_operator_is_covered_and_supported() -> None:
    assert {leaf.operator for leaf in LEAVES} == set(FilterOperator)
    assert set(SUPPORTED_OPERATORS) == set(FilterOperator)


@pytest.mark.parametrize("filters", CASES, ids=[repr(to_core_filter(c))[:80] for c in CASES])
def test_get_nodes_matches_reference(filled: TiDBVectorStore, filters: MetadataFilters) -> None:
    got = {n.node_id for n in filled.get_nodes(filters=filters)}
    assert got == reference_ids(filters)


@pytest.mark.parametrize("filters", NESTED, ids=[f"nested{i}" for i in range(len(NESTED))])
async def test_nested_filters_match_reference_per_group(
    filled: TiDBVectorStore, filters: MetadataFilters
) -> None:
    expected = reference_ids(filters)
    assert {n.node_id for n in filled.get_nodes(filters=filters)} == expected
    query = VectorStoreQuery(query_embedding=[1.0, 0.5, 0.25], similarity_top_k=8, filters=filters)
    assert set((await filled.aquery(query)).ids) == expected
    with pytest.raises(ValueError, match="Nested"):
        build_metadata_filter_fn(lambda _: {}, filters)("x")


@pytest.mark.parametrize(
    ("metadata", "leaf", "ours", "llama"),
    [
        # booleans are not numbers here; Python says True == 1
        ({"x": True}, F(key="x", value=1, operator=Op.EQ), False, True),
        # CONTAINS / ANY are array operators here; Python's `in` also tests substrings
        ({"x": "abc"}, F(key="x", value="b", operator=Op.CONTAINS), False, True),
        ({"x": "abc"}, F(key="x", value=["b"], operator=Op.ANY), False, True),
        # EQ None: "missing or null" here; the reference never matches a missing key
        ({}, F(key="x", value=None, operator=Op.EQ), True, False),
        # NE None: "present and not null" here; the reference matches everything
        ({}, F(key="x", value=None, operator=Op.NE), False, True),
    ],
)
def test_deliberate_differences(
    store: TiDBVectorStore, metadata: dict[str, Any], leaf: MetadataFilter, ours: bool, llama: bool
) -> None:
    filters = MetadataFilters(filters=[leaf])
    assert build_metadata_filter_fn(lambda _: metadata, filters)("x") is llama
    store.add([TextNode(id_="x", text="t", metadata=metadata, embedding=[1.0, 0.0])])
    assert bool(store.get_nodes(filters=filters)) is ours


def test_mixed_types_do_not_match_where_the_reference_raises(store: TiDBVectorStore) -> None:
    store.add([TextNode(id_="x", text="t", metadata={"n": "10"}, embedding=[1.0, 0.0])])
    filters = MetadataFilters(filters=[F(key="n", value=5, operator=Op.GT)])
    with pytest.raises(TypeError):
        build_metadata_filter_fn(lambda _: {"n": "10"}, filters)("x")
    assert store.get_nodes(filters=filters) == []


def test_translation_is_the_core_language() -> None:
    filters = MetadataFilters(
        filters=[
            F(key="title", value="50%_off", operator=Op.TEXT_MATCH),
            MetadataFilters(
                filters=[F(key="tags", value=None, operator=Op.IS_EMPTY)],
                condition=FilterCondition.NOT,
            ),
        ],
        condition=FilterCondition.OR,
    )
    expected = {
        "$or": [
            {"title": {"$like": "%50\\%\\_off%"}},
            {"$nor": [{"tags": {"$empty": True}}]},
        ]
    }
    assert to_core_filter(filters) == parse_filter(expected)
    assert to_core_filter(filters) == Filter(
        Or((Pred("title", "like", "%50\\%\\_off%"), Not(Or((Pred("tags", "empty", None),)))))
    )
    assert to_core_filter(None) is None
    assert to_core_filter(MetadataFilters(filters=[])) is None


@pytest.mark.parametrize(
    ("leaf", "message"),
    [
        (F(key="lang", value="en", operator=Op.IN), "list of values"),
        (F(key="lang", value=3, operator=Op.TEXT_MATCH), "string"),
    ],
)
def test_malformed_filters_raise(leaf: MetadataFilter, message: str) -> None:
    with pytest.raises(InvalidFilterError, match=message):
        to_core_filter(MetadataFilters(filters=[leaf]))


def test_unknown_operator_and_condition_raise() -> None:
    filters = MetadataFilters(filters=[F(key="lang", value="en")])
    filters.filters[0].operator = "regex"  # type: ignore[assignment,union-attr]
    with pytest.raises(InvalidFilterError, match="valid operators: EQ"):
        to_core_filter(filters)
    filters = MetadataFilters(filters=[F(key="lang", value="en")])
    filters.condition = "xor"  # type: ignore[assignment]
    with pytest.raises(InvalidFilterError, match="condition"):
        to_core_filter(filters)


def test_an_empty_nested_group_is_its_conditions_identity() -> None:
    # Issue 14: an empty OR group (an empty allow-list) matches nothing; it must never
    # become "every row". An empty AND adds no condition, an empty NOT excludes nothing.
    # Groups that can only be true set no condition (None, like {}): delete refuses them.
    for condition, key, want in [
        (FilterCondition.AND, "$and", None),
        (FilterCondition.OR, "$or", Filter(And((Or(()),)))),
        (FilterCondition.NOT, "$nor", None),
    ]:
        empty = MetadataFilters(filters=[], condition=condition)
        group = MetadataFilters(filters=[empty])
        assert to_core_filter(group) == want
        assert to_core_filter(group) == parse_filter({"$and": [{key: []}]})
    tenant = MetadataFilters(filters=[F(key="lang", value="en"), MetadataFilters(filters=[])])
    assert to_core_filter(tenant) == Filter(And((Pred("lang", "eq", "en"), And(()))))


def test_top_level_empty_filters_follow_the_same_identities() -> None:
    assert to_core_filter(MetadataFilters(filters=[])) is None  # llama-index-core's default
    nothing = to_core_filter(MetadataFilters(filters=[], condition=FilterCondition.OR))
    assert nothing == Filter(Or(()))


def test_groups_nested_too_deep_are_a_clear_error() -> None:
    group = MetadataFilters(filters=[F(key="a", value=1)])
    for _ in range(40):
        group = MetadataFilters(filters=[group])
    with pytest.raises(InvalidFilterError, match="nest more than 32"):
        to_core_filter(group)


def test_and_filters_combines_parsed_parts() -> None:
    lang = to_core_filter(MetadataFilters(filters=[F(key="lang", value="en")]))
    assert lang == Filter(And((Pred("lang", "eq", "en"),)))
    docs = {"ref_doc_id": {"$in": ["d1"]}}
    combined = and_filters(lang, None, {}, docs)
    assert combined == parse_filter({"$and": [{"$and": [{"lang": "en"}]}, docs]})
    assert and_filters(lang, None) is lang
    assert and_filters(None, {}) is None
    with pytest.raises(InvalidFilterError, match="unknown operator"):
        and_filters(lang, {"n": {"$regex": "x"}})


def test_a_query_filter_is_parsed_once(filter_parses: list[str]) -> None:
    seen = filter_parses
    nested = MetadataFilters(
        filters=[LEAVES[0], MetadataFilters(filters=LEAVES[1:3], condition=FilterCondition.OR)]
    )
    parsed = to_core_filter(nested)
    assert len(seen) == 3  # one per leaf: the groups are built as tree nodes
    assert and_filters(parsed) is parsed and parse_filter(parsed) is parsed
    assert len(seen) == 3
