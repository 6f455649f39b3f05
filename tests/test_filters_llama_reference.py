"""Every LlamaIndex FilterOperator is expressible in the filter language.

Maps ``MetadataFilters`` onto the core's filter tree the way the adapter does and checks the
SQLite result against llama-index-core's own reference (``build_metadata_filter_fn``) on
well-typed metadata (one type per key), where the two are meant to agree. The known
divergences on mixed-type data are listed in ``llama_index_tidb_jina._filters`` and in
``test_known_divergences_from_llama_reference`` below.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
import sqlalchemy as sa

from llama_index_tidb_jina import to_core_filter
from tidb_jina.store._filter_sql import compile_filter
from tidb_jina.store._filter_tree import Filter
from tidb_jina.store._sqlite import configure_connection

types = pytest.importorskip("llama_index.core.vector_stores.types")
utils = pytest.importorskip("llama_index.core.vector_stores.utils")

FilterOperator = types.FilterOperator
FilterCondition = types.FilterCondition
MetadataFilter = types.MetadataFilter
MetadataFilters = types.MetadataFilters

RECORDS: dict[int, dict[str, Any]] = {
    1: {"lang": "en", "year": 2020, "score": 0.9, "tags": ["a", "b"], "title": "A Guide"},
    2: {"lang": "de", "year": 2021, "score": 0.5, "tags": ["b"], "title": "guidebook"},
    3: {"lang": "fr", "year": 2022, "score": 0.1, "tags": [], "title": "100% pure_fun"},
    4: {"lang": None, "year": 2019, "tags": ["c", "a"], "title": "Notes"},
    5: {"year": 2024, "score": 0.5, "title": ""},
    6: {"lang": "en", "score": 1.0, "tags": ["a", "b", "c"], "title": "GUIDE to x"},
    7: {"title": "misc"},
    8: {"lang": "", "year": 2021, "tags": ["d"], "title": "back\\slash"},
}


def to_filter(filters: Any) -> Filter | None:
    """The LlamaIndex adapter's own translation (one translation, tested here too)."""
    return to_core_filter(filters)


LEAVES = [
    MetadataFilter(key="lang", value="en", operator=FilterOperator.EQ),
    MetadataFilter(key="year", value=2021, operator=FilterOperator.EQ),
    MetadataFilter(key="lang", value="en", operator=FilterOperator.NE),
    MetadataFilter(key="year", value=2021, operator=FilterOperator.NE),
    MetadataFilter(key="year", value=2021, operator=FilterOperator.GT),
    MetadataFilter(key="year", value=2021, operator=FilterOperator.GTE),
    MetadataFilter(key="score", value=0.5, operator=FilterOperator.LT),
    MetadataFilter(key="score", value=0.5, operator=FilterOperator.LTE),
    MetadataFilter(key="lang", value="e", operator=FilterOperator.GT),
    MetadataFilter(key="lang", value=["en", "fr"], operator=FilterOperator.IN),
    MetadataFilter(key="year", value=[2020, 2022], operator=FilterOperator.IN),
    MetadataFilter(key="lang", value=["en", "fr"], operator=FilterOperator.NIN),
    MetadataFilter(key="tags", value=["a", "d"], operator=FilterOperator.ANY),
    MetadataFilter(key="tags", value=["a", "b"], operator=FilterOperator.ALL),
    MetadataFilter(key="tags", value="c", operator=FilterOperator.CONTAINS),
    MetadataFilter(key="title", value="Guide", operator=FilterOperator.TEXT_MATCH),
    MetadataFilter(key="title", value="guide", operator=FilterOperator.TEXT_MATCH_INSENSITIVE),
    MetadataFilter(key="title", value="0% pure_", operator=FilterOperator.TEXT_MATCH),
    MetadataFilter(key="title", value="\\", operator=FilterOperator.TEXT_MATCH),
    MetadataFilter(key="tags", value=None, operator=FilterOperator.IS_EMPTY),
    MetadataFilter(key="lang", value=None, operator=FilterOperator.IS_EMPTY),
]


def _cases() -> list[Any]:
    cases = [MetadataFilters(filters=[leaf]) for leaf in LEAVES]
    for a, b in itertools.combinations(LEAVES[::3], 2):
        for condition in FilterCondition:
            cases.append(MetadataFilters(filters=[a, b], condition=condition))
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def db() -> Any:
    engine = sa.create_engine("sqlite://", poolclass=sa.StaticPool)
    sa.event.listen(
        engine, "connect", lambda conn, _: configure_connection(conn, file_backed=False)
    )
    table = sa.Table(
        "llama_cases",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("meta", sa.Text),
    )
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": i, "meta": json.dumps(m)} for i, m in RECORDS.items()])
    yield engine, table
    engine.dispose()


def _sql_ids(db: Any, filter: Filter | None) -> set[int]:
    engine, table = db
    where = compile_filter(filter, table.c.meta, "sqlite")
    query = sa.select(table.c.id)
    with engine.connect() as conn:
        return set(conn.execute(query if where is None else query.where(where)).scalars())


def _llama_ids(filters: Any) -> set[int]:
    fn = utils.build_metadata_filter_fn(lambda node_id: RECORDS[int(node_id)], filters)
    return {i for i in RECORDS if fn(str(i))}


def test_every_llama_operator_is_covered() -> None:
    assert {leaf.operator for leaf in LEAVES} == set(FilterOperator)


@pytest.mark.parametrize("filters", CASES, ids=[repr(to_filter(c))[:70] for c in CASES])
def test_same_result_as_llama_reference(db: Any, filters: Any) -> None:
    assert _sql_ids(db, to_filter(filters)) == _llama_ids(filters)


def test_nested_filters_work_where_the_llama_reference_refuses(db: Any) -> None:
    nested = MetadataFilters(
        filters=[
            MetadataFilters(filters=LEAVES[:2], condition=FilterCondition.OR),
            LEAVES[5],
        ]
    )
    assert _sql_ids(db, to_filter(nested)) == {2, 8}


@pytest.mark.parametrize(
    ("metadata", "filters", "ours", "llama"),
    [
        # bool is not a number here; Python says True == 1
        ({"x": True}, MetadataFilter(key="x", value=1, operator=FilterOperator.EQ), False, True),
        # CONTAINS is array membership here; Python's `in` also does substrings
        (
            {"x": "abc"},
            MetadataFilter(key="x", value="b", operator=FilterOperator.CONTAINS),
            False,
            True,
        ),
        # NE None: "present and not null" here; llama matches everything
        ({}, MetadataFilter(key="x", value=None, operator=FilterOperator.NE), False, True),
    ],
)
def test_known_divergences_from_llama_reference(
    db: Any, metadata: dict[str, Any], filters: Any, ours: bool, llama: bool
) -> None:
    engine, _ = db
    wrapped = MetadataFilters(filters=[filters])
    fn = utils.build_metadata_filter_fn(lambda _: metadata, wrapped)
    assert fn("x") is llama
    where = compile_filter(to_filter(wrapped), sa.literal(json.dumps(metadata)), "sqlite")
    with engine.connect() as conn:
        assert bool(conn.execute(sa.select(where)).scalar()) is ours
