"""Contract suite of ``TiDBVectorStore``: every method, sync and async, on every engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from llama_index.core.schema import (
    BaseNode,
    NodeRelationship,
    RelatedNodeInfo,
    TextNode,
)
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from llama_index_tidb_jina import TiDBVectorStore
from tidb_jina import InvalidFilterError, InvalidInputError, TiDBJinaError, UnsupportedFeatureError
from tidb_jina.store import _vector
from tidb_jina.store._crud import where_clause
from tidb_jina.store._filter_tree import parse_filter
from tidb_jina.testing import lexical_embedding

DIM = 256


def _node(node_id: str, text: str, doc: str | None = None, **metadata: Any) -> TextNode:
    node = TextNode(id_=node_id, text=text, metadata=metadata)
    node.embedding = lexical_embedding([text], DIM)[0].tolist()
    if doc is not None:
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc)
    return node


NODES = [
    _node("n1", "tidb stores vectors", "d1", lang="en", year=2024, tags=["db", "ai"]),
    _node("n2", "tidb speaks mysql", "d1", lang="en", year=2025, tags=["db"]),
    _node("n3", "pasta recipe with tomato", "d2", lang="it", year=2023, tags=[]),
    _node("n4", "vectors for pasta lovers", "d3", lang="it", year=2025),
]


def _query(text: str, k: int = 4, **fields: Any) -> VectorStoreQuery:
    vector = lexical_embedding([text], DIM)[0].tolist()
    return VectorStoreQuery(query_embedding=vector, similarity_top_k=k, **fields)


def _dump(node: BaseNode) -> dict[str, Any]:
    return node.model_dump(exclude={"embedding"})


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> str:
    return request.param


async def call(store: TiDBVectorStore, api: str, name: str, *args: Any, **kwargs: Any) -> Any:
    """Run a store method or its async twin (``add`` -> ``async_add``, others ``a<name>``)."""
    if api == "sync":
        return getattr(store, name)(*args, **kwargs)
    twin = "async_add" if name == "add" else f"a{name}"
    return await getattr(store, twin)(*args, **kwargs)


@pytest.fixture
async def filled(store: TiDBVectorStore, api: str) -> TiDBVectorStore:
    assert await call(store, api, "add", NODES) == ["n1", "n2", "n3", "n4"]
    return store


# --- writes and reads --------------------------------------------------------------------


async def test_nodes_round_trip_exactly(filled: TiDBVectorStore, api: str) -> None:
    got = await call(filled, api, "get_nodes", ["n3", "n1", "missing"])
    assert [n.node_id for n in got] == ["n3", "n1"]
    assert _dump(got[0]) == _dump(NODES[2])
    assert _dump(got[1]) == _dump(NODES[0])
    assert got[1].ref_doc_id == "d1"
    assert got[1].relationships == NODES[0].relationships


async def test_add_upserts_by_node_id(filled: TiDBVectorStore, api: str) -> None:
    changed = _node("n1", "tidb stores vectors and more", "d9", lang="de")
    await call(filled, api, "add", [changed])
    assert filled.client.count() == 4
    (got,) = await call(filled, api, "get_nodes", ["n1"])
    assert got.get_content() == "tidb stores vectors and more"
    assert got.metadata == {"lang": "de"} and got.ref_doc_id == "d9"


async def test_add_nothing_and_missing_embedding(store: TiDBVectorStore, api: str) -> None:
    assert await call(store, api, "add", []) == []
    with pytest.raises(InvalidInputError, match="has no embedding"):
        await call(store, api, "add", [TextNode(id_="x", text="no vector")])


async def test_node_vectors_are_converted_once_by_the_core(
    store: TiDBVectorStore, api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The nodes' lists go to the core as they are: one conversion there, with its checks."""
    seen: list[Any] = []
    real = _vector.as_matrix

    def spy(vectors: Any, *args: Any) -> Any:
        matrix = real(vectors, *args)
        seen.append(matrix)
        return matrix

    monkeypatch.setattr(_vector, "as_matrix", spy)
    await call(store, api, "add", NODES)
    (matrix,) = seen
    assert isinstance(matrix, np.ndarray) and matrix.dtype == np.float32
    assert matrix.shape == (len(NODES), DIM)
    assert matrix[2].tolist() == pytest.approx(NODES[2].embedding)


async def test_bad_node_vectors_get_the_cores_message(store: TiDBVectorStore, api: str) -> None:
    ragged = [TextNode(id_="a", text="a", embedding=[0.1, 0.2]), TextNode(id_="b", text="b")]
    ragged[1].embedding = [0.3]
    with pytest.raises(InvalidInputError, match="different lengths"):
        await call(store, api, "add", ragged)
    huge = [TextNode(id_="h", text="h", embedding=[1e39] + [0.0] * (DIM - 1))]
    with pytest.raises(InvalidInputError, match="outside the float32 range"):
        await call(store, api, "add", huge)
    assert await call(store, api, "get_nodes") == []


async def test_get_nodes_by_filter_and_all(filled: TiDBVectorStore, api: str) -> None:
    italian = MetadataFilters(filters=[MetadataFilter(key="lang", value="it")])
    got = await call(filled, api, "get_nodes", None, italian)
    assert sorted(n.node_id for n in got) == ["n3", "n4"]
    got = await call(filled, api, "get_nodes", ["n1", "n3"], italian)
    assert [n.node_id for n in got] == ["n3"]
    every = await call(filled, api, "get_nodes")
    assert [n.node_id for n in every] == ["n1", "n2", "n3", "n4"]


async def test_delete_by_ref_doc_id(filled: TiDBVectorStore, api: str) -> None:
    await call(filled, api, "delete", "d1")
    remaining = await call(filled, api, "get_nodes")
    assert [n.node_id for n in remaining] == ["n3", "n4"]
    await call(filled, api, "delete", "no-such-doc")
    assert filled.client.count() == 2


async def test_delete_nodes(filled: TiDBVectorStore, api: str) -> None:
    await call(filled, api, "delete_nodes", ["n1", "missing"])
    assert filled.client.count() == 3
    recent = MetadataFilters(
        filters=[MetadataFilter(key="year", value=2025, operator=FilterOperator.GTE)]
    )
    await call(filled, api, "delete_nodes", ["n3", "n4"], recent)
    assert sorted(n.node_id for n in await call(filled, api, "get_nodes")) == ["n2", "n3"]
    await call(filled, api, "delete_nodes", None, recent)
    assert [n.node_id for n in await call(filled, api, "get_nodes")] == ["n3"]


async def test_delete_nodes_without_selection_deletes_nothing(
    filled: TiDBVectorStore, api: str
) -> None:
    await call(filled, api, "delete_nodes")
    await call(filled, api, "delete_nodes", None, MetadataFilters(filters=[]))
    assert filled.client.count() == 4


async def test_clear(filled: TiDBVectorStore, api: str) -> None:
    await call(filled, api, "clear")
    assert await call(filled, api, "get_nodes") == []
    await call(filled, api, "add", NODES[:1])
    assert filled.client.count() == 1


# --- query -------------------------------------------------------------------------------


async def test_query_default(filled: TiDBVectorStore, api: str) -> None:
    result = await call(filled, api, "query", _query("tidb stores", k=2))
    assert result.ids == ["n1", "n2"]
    assert [n.node_id for n in result.nodes] == result.ids
    assert 0.0 < result.similarities[1] < result.similarities[0] < 1.0
    assert _dump(result.nodes[0]) == _dump(NODES[0])


async def test_query_similarities_are_core_scores(filled: TiDBVectorStore, api: str) -> None:
    query = _query("pasta vectors")
    result = await call(filled, api, "query", query)
    hits = filled.client.search(query.query_embedding, k=4)
    assert result.similarities == pytest.approx([h.score for h in hits])


async def test_query_filters(filled: TiDBVectorStore, api: str) -> None:
    filters = MetadataFilters(
        filters=[
            MetadataFilter(key="lang", value="it"),
            MetadataFilters(
                filters=[
                    MetadataFilter(key="year", value=2023, operator=FilterOperator.LTE),
                    MetadataFilter(key="tags", value=None, operator=FilterOperator.IS_EMPTY),
                ],
                condition=FilterCondition.AND,
            ),
        ],
        condition=FilterCondition.AND,
    )
    result = await call(filled, api, "query", _query("pasta", filters=filters))
    assert result.ids == ["n3"]
    not_en = MetadataFilters(
        filters=[MetadataFilter(key="lang", value="en")], condition=FilterCondition.NOT
    )
    result = await call(filled, api, "query", _query("tidb", filters=not_en))
    assert sorted(result.ids) == ["n3", "n4"]


async def test_query_doc_ids_and_node_ids(filled: TiDBVectorStore, api: str) -> None:
    result = await call(filled, api, "query", _query("tidb vectors", doc_ids=["d2", "d3"]))
    assert sorted(result.ids) == ["n3", "n4"]
    result = await call(filled, api, "query", _query("tidb vectors", node_ids=["n2", "n3"]))
    assert result.ids == ["n2", "n3"]
    result = await call(
        filled, api, "query", _query("tidb vectors", node_ids=["n1", "n3"], doc_ids=["d1"])
    )
    assert result.ids == ["n1"]
    # LlamaIndex convention (VectorStoreIndex.as_retriever passes node_ids=[]): empty
    # lists do not restrict
    result = await call(filled, api, "query", _query("tidb vectors", node_ids=[], doc_ids=[]))
    assert len(result.ids) == 4


async def test_query_mmr(filled: TiDBVectorStore, api: str) -> None:
    duplicate = _node("n1b", "tidb stores vectors", "d1", lang="en")
    await call(filled, api, "add", [duplicate])
    plain = await call(filled, api, "query", _query("tidb stores vectors", k=2))
    assert sorted(plain.ids) == ["n1", "n1b"]
    mmr = _query("tidb stores vectors", k=2, mode=VectorStoreQueryMode.MMR, mmr_threshold=0.3)
    result = await call(filled, api, "query", mmr)
    assert len(result.ids) == 2 and len({"n1", "n1b"} & set(result.ids)) == 1
    assert all(0.0 <= s <= 1.0 for s in result.similarities)
    relevance_only = _query("tidb stores vectors", k=2, mode="mmr", mmr_threshold=1.0)
    result = await call(filled, api, "query", relevance_only, mmr_prefetch_k=5)
    assert sorted(result.ids) == ["n1", "n1b"]


def _skip_without_full_text(store: TiDBVectorStore) -> None:
    table = store.client
    if table.is_tidb and not table.is_tidb_starter:
        pytest.skip("full-text search needs TiDB Cloud Starter or the embedded engine")


async def test_query_text_search(filled: TiDBVectorStore, api: str) -> None:
    _skip_without_full_text(filled)
    query = VectorStoreQuery(
        query_str="Pasta?", mode=VectorStoreQueryMode.TEXT_SEARCH, similarity_top_k=4
    )
    result = await call(filled, api, "query", query)
    assert sorted(result.ids) == ["n3", "n4"]
    assert max(result.similarities) == 1.0
    assert all(node.get_content() for node in result.nodes)
    only = VectorStoreQuery(query_str="pasta", mode="text_search", sparse_top_k=1, node_ids=["n4"])
    assert (await call(filled, api, "query", only)).ids == ["n4"]
    filtered = VectorStoreQuery(
        query_str="tidb",
        mode="text_search",
        similarity_top_k=4,
        filters=MetadataFilters(filters=[MetadataFilter(key="year", value=2025)]),
    )
    assert (await call(filled, api, "query", filtered)).ids == ["n2"]
    with pytest.raises(InvalidInputError, match="query_str"):
        await call(filled, api, "query", VectorStoreQuery(mode="text_search"))


async def test_query_hybrid_honours_alpha(filled: TiDBVectorStore, api: str) -> None:
    _skip_without_full_text(filled)
    vector_side = _query("tidb stores vectors", k=2, mode="hybrid", query_str="pasta", alpha=1.0)
    text_side = _query("tidb stores vectors", k=2, mode="hybrid", query_str="pasta", alpha=0.0)
    by_vector = await call(filled, api, "query", vector_side)
    by_text = await call(filled, api, "query", text_side)
    plain = await call(filled, api, "query", _query("tidb stores vectors", k=2))
    assert by_vector.ids == plain.ids
    assert set(by_text.ids) == {"n3", "n4"}
    rrf = await call(filled, api, "query", _query("pasta", k=3, mode="hybrid", query_str="pasta"))
    assert set(rrf.ids[:2]) == {"n3", "n4"} and all(0 <= s <= 1 for s in rrf.similarities)


@pytest.mark.parametrize("mode", ["svm", "sparse", "bm25"])
async def test_unsupported_modes_raise(filled: TiDBVectorStore, api: str, mode: Any) -> None:
    query = _query("tidb", mode=mode, query_str="tidb", alpha=0.5)
    with pytest.raises(UnsupportedFeatureError, match="default"):
        await call(filled, api, "query", query)


async def test_query_needs_an_embedding(filled: TiDBVectorStore, api: str) -> None:
    with pytest.raises(InvalidInputError, match="query_embedding"):
        await call(filled, api, "query", VectorStoreQuery(query_str="tidb"))


async def test_unknown_filter_operator_raises(filled: TiDBVectorStore, api: str) -> None:
    bad = MetadataFilters(filters=[MetadataFilter(key="lang", value="en")])
    bad.filters[0].operator = "regex"  # type: ignore[assignment,union-attr]
    with pytest.raises(InvalidFilterError, match="unknown filter operator"):
        await call(filled, api, "query", _query("tidb", filters=bad))


async def test_query_empty_store(store: TiDBVectorStore, api: str) -> None:
    result = await call(store, api, "query", _query("tidb"))
    assert result.ids == [] and result.nodes == [] and result.similarities == []


# --- construction, serialization, compatibility ----------------------------------------


def test_constructor_does_no_io_and_hides_the_password() -> None:
    store = TiDBVectorStore(
        connection_string="mysql+pymysql://root:s3cret-pw@tidb.invalid:4000/test",
        table_name="paul_graham_test",
        distance_strategy="cosine",
        vector_dimension=1536,
        drop_existing_table=False,
    )
    for text in (str(store.to_dict()), store.to_json(), repr(store), str(store)):
        assert "s3cret-pw" not in text
    assert store.to_dict()["database_url"].startswith("mysql+pymysql://root:***@tidb.invalid")
    assert store.stores_text is True and store.class_name() == "TiDBVectorStore"


def test_peer_constructor_arguments(tmp_path: Any) -> None:
    store = TiDBVectorStore(
        f"sqlite:///{tmp_path / 'x.db'}",
        "peer_args",
        "l2",
        3,
        engine_args={"echo": False},
        drop_existing_table=True,
    )
    assert store.client.metric.value == "l2" and store.vector_dimension == 3
    with pytest.raises(TiDBJinaError):
        TiDBVectorStore("sqlite://", distance_strategy="hamming")


def test_l2_similarities_stay_in_unit_interval(make_store: Callable[..., Any]) -> None:
    store = make_store(distance_strategy="l2")
    store.add(NODES)
    result = store.query(_query("pasta"))
    assert all(0.0 < s <= 1.0 for s in result.similarities)
    assert result.similarities == sorted(result.similarities, reverse=True)


def test_delete_by_ref_doc_id_uses_an_index(make_store: Callable[..., Any]) -> None:
    store = make_store()
    store.add(NODES)
    table = store.client
    assert "meta_ref_doc_id" in table.table.c
    if not table.is_tidb:
        where = where_clause(
            table.table, parse_filter({"ref_doc_id": "d1"}), "sqlite", "ref_doc_id"
        )
        sql = str(
            sa.delete(table.table)
            .where(where)
            .compile(table.engine, compile_kwargs={"literal_binds": True})
        )
        with table.engine.connect() as conn:
            plan = " ".join(str(r) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
        assert "USING INDEX" in plan, plan
    store.delete("d1")
    assert sorted(n.node_id for n in store.get_nodes()) == ["n3", "n4"]


async def test_close_and_aclose_release_connections(tmp_path: Any) -> None:
    store = TiDBVectorStore(f"sqlite:///{tmp_path / 'c.db'}", table_name="c")
    await store.async_add(NODES)
    await store.aclose()
    store.close()
    assert len(store.get_nodes()) == 4, "usable again after close"
    store.close()
