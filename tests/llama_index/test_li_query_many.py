"""``TiDBVectorStore.query_many`` / ``aquery_many``: each answer is ``query``'s, and the
default-mode queries with the same options share one ``search_many`` (every engine)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryResult,
)

from llama_index_tidb_jina import TiDBVectorStore
from tidb_jina import InvalidFilterError
from tidb_jina.testing import lexical_embedding

DIM = 64
WORDS = ["tidb", "vector", "sql", "basil", "recipe", "tomato", "genoa", "rows", "index", "cloud"]


def _text(i: int) -> str:
    return f"{WORDS[i % 10]} {WORDS[(i * 3) % 10]} {WORDS[(i * 7 + 1) % 10]} doc{i}"


def _node(i: int) -> TextNode:
    node = TextNode(id_=f"n{i}", text=_text(i), metadata={"g": i % 3})
    node.embedding = lexical_embedding([node.text], DIM)[0].tolist()
    node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=f"d{i % 4}")
    return node


def _query(text: str, k: int = 4, **fields: Any) -> VectorStoreQuery:
    vector = lexical_embedding([text], DIM)[0].tolist()
    return VectorStoreQuery(query_embedding=vector, similarity_top_k=k, **fields)


G1 = MetadataFilters(filters=[MetadataFilter(key="g", value=1)])
QUERIES = [
    _query("tidb vector rows"),
    _query("basil recipe", k=6),
    _query("sql index cloud"),
    _query("genoa tomato", filters=G1),
    _query("vector", filters=G1),
    _query("tidb sql", doc_ids=["d1", "d2"]),
    _query("tidb sql", node_ids=["n1", "n2", "n5", "n9"]),
    _query("recipe genoa", mode="mmr", mmr_threshold=0.3),
    VectorStoreQuery(query_str="basil tomato", mode="text_search", sparse_top_k=3),
    _query("cloud rows", k=6),
]


@pytest.fixture
def filled(make_store: Callable[..., TiDBVectorStore]) -> TiDBVectorStore:
    store = make_store()
    store.add([_node(i) for i in range(40)])
    return store


class SearchManyCalls:
    """Counts ``search_many`` calls on one table (the real method still runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, store: TiDBVectorStore) -> None:
        self.sync: list[int] = []
        self.aio: list[int] = []
        table = store.client
        real, areal = table.search_many, table.aio.search_many

        def counted(vectors: Any, **options: Any) -> Any:
            self.sync.append(len(vectors))
            return real(vectors, **options)

        async def acounted(vectors: Any, **options: Any) -> Any:
            self.aio.append(len(vectors))
            return await areal(vectors, **options)

        monkeypatch.setattr(table, "search_many", counted)
        monkeypatch.setattr(table.aio, "search_many", acounted)


def _same(got: list[VectorStoreQueryResult], want: list[VectorStoreQueryResult]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.ids == w.ids
        assert [n.get_content() for n in g.nodes or []] == [n.get_content() for n in w.nodes or []]
        if w.similarities is None:
            assert g.similarities is None
        else:
            assert g.similarities == pytest.approx(w.similarities, abs=1e-5)


async def test_query_many_answers_as_query(
    filled: TiDBVectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    want = [filled.query(q) for q in QUERIES]
    assert all(w.ids for w in want)  # every query finds something
    calls = SearchManyCalls(monkeypatch, filled)
    _same(filled.query_many(QUERIES), want)
    # Shared searches: k=4 unfiltered (2), k=6 (2), the filter (2), doc_ids (1), node_ids (1).
    assert sorted(calls.sync) == [1, 1, 2, 2, 2]
    _same(await filled.aquery_many(QUERIES), want)
    assert sorted(calls.aio) == [1, 1, 2, 2, 2]


async def test_empty_and_bad_queries(filled: TiDBVectorStore) -> None:
    assert filled.query_many([]) == []
    assert await filled.aquery_many([]) == []
    bad = MetadataFilters(filters=[MetadataFilter(key="g", value=1, operator=FilterOperator.IN)])
    with pytest.raises(InvalidFilterError):
        filled.query(_query("tidb", filters=bad))
    with pytest.raises(InvalidFilterError):
        filled.query_many([_query("tidb"), _query("tidb", filters=bad)])
