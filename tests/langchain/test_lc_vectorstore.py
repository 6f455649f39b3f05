"""TiDBVectorStore behaviour beyond the standard suite, on every engine.

Embeddings are JinaEmbeddings served by the loopback fake server (lexical vectors: texts
sharing words are near each other), so rankings can be asserted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from langchain_tidb_jina import JinaEmbeddings, ProviderEmbeddings, TiDBVectorStore
from tidb_jina import (
    ConfigurationError,
    DimensionMismatchError,
    InvalidFilterError,
    InvalidInputError,
    SchemaError,
)
from tidb_jina.store import _vector
from tidb_jina.testing import FakeEmbeddingServer, LexicalEmbedder

MakeStore = Callable[..., TiDBVectorStore]

TEXTS = [
    "TiDB is a distributed SQL database",
    "TiDB stores vectors next to SQL rows",
    "a recipe for ragu with tomato and basil",
    "basil pesto recipe from Genoa",
]
METAS: list[dict[str, Any]] = [
    {"topic": "db", "year": 2023, "tags": ["sql", "tidb"]},
    {"topic": "db", "year": 2025, "tags": ["vector", "tidb"]},
    {"topic": "food", "year": 2024, "lang": "it"},
    {"topic": "food", "year": 2025},
]
IDS = ["db1", "db2", "food1", "food2"]


@pytest.fixture
def store(make_store: MakeStore, jina: JinaEmbeddings) -> TiDBVectorStore:
    store = make_store(jina)
    store.add_texts(TEXTS, METAS, ids=IDS)
    return store


def _ids(docs: list[Document]) -> list[str | None]:
    return [d.id for d in docs]


# --- writes ------------------------------------------------------------------------------


def test_search_returns_documents_with_id_text_and_metadata(store: TiDBVectorStore) -> None:
    [doc] = store.similarity_search("distributed SQL database", k=1)
    assert doc == Document(id="db1", page_content=TEXTS[0], metadata=METAS[0])


def test_generator_of_texts_is_added(make_store: MakeStore, jina: JinaEmbeddings) -> None:
    store = make_store(jina)
    ids = store.add_texts(text for text in TEXTS)
    assert len(ids) == 4
    assert {d.page_content for d in store.get_by_ids(ids)} == set(TEXTS)


def test_document_id_is_honoured_and_existing_ids_upserted(store: TiDBVectorStore) -> None:
    store.add_documents([Document(id="db1", page_content="TiDB 8.5 release notes")])
    [doc] = store.get_by_ids(["db1"])
    assert doc.page_content == "TiDB 8.5 release notes"
    assert doc.metadata == {}
    assert store.vector_table.count() == 4


def test_missing_ids_are_generated(make_store: MakeStore, jina: JinaEmbeddings) -> None:
    store = make_store(jina)
    ids = store.add_documents([Document(id="mine", page_content="a"), Document(page_content="b")])
    assert ids[0] == "mine"
    assert ids[1] and ids[1] != "mine"
    assert sorted(_ids(store.get_by_ids(ids))) == sorted(ids)  # type: ignore[type-var]


def test_delete_without_arguments_never_wipes(store: TiDBVectorStore) -> None:
    with pytest.raises(InvalidInputError, match="clear"):
        store.delete()
    assert store.vector_table.count() == 4


def test_delete_by_filter_and_ids(store: TiDBVectorStore) -> None:
    assert store.delete(filter={"topic": "food"}) is True
    assert sorted(_ids(store.get_by_ids(IDS))) == ["db1", "db2"]  # type: ignore[type-var]
    store.delete(["db1", "never-there"])
    assert _ids(store.get_by_ids(IDS)) == ["db2"]
    assert store.clear() == 1


# --- filters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"topic": "food"}, {"food1", "food2"}),
        ({"year": {"$gte": 2025}}, {"db2", "food2"}),
        ({"year": {"$in": [2023, 2024]}}, {"db1", "food1"}),
        ({"lang": {"$ne": "it"}}, {"db1", "db2", "food2"}),  # $ne matches a missing key
        ({"$or": [{"year": 2023}, {"lang": "it"}]}, {"db1", "food1"}),
        ({"tags": {"$contains": "vector"}}, {"db2"}),
        ({"topic": "db", "year": {"$lt": 2025}}, {"db1"}),
        ({"lang": {"$exists": False}}, {"db1", "db2", "food2"}),
    ],
)
def test_filters_use_the_core_language(
    store: TiDBVectorStore, flt: dict[str, Any], expected: set[str]
) -> None:
    assert set(_ids(store.similarity_search("TiDB recipe", k=10, filter=flt))) == expected


def test_unknown_filter_operator_is_an_error(store: TiDBVectorStore) -> None:
    with pytest.raises(InvalidFilterError, match=r"\$regex"):
        store.similarity_search("TiDB", filter={"topic": {"$regex": "f.*"}})


# --- scores ------------------------------------------------------------------------------


# LangChain's own conventions (langchain-core's VectorStore._*_relevance_score_fn, as
# PGVector and Chroma use them); L1 has none, so it keeps the core's score.
LANGCHAIN_RELEVANCE = {
    "cosine": lambda d: 1.0 - d,
    "l2": lambda d: 1.0 - d / math.sqrt(2),
    "euclidean": lambda d: 1.0 - d / math.sqrt(2),
    # langchain-core's own where the dot product is >= 0; see the opposed-vector test below
    "inner_product": lambda d: -d if d <= 0 else 0.0,
    "l1": lambda d: 1.0 / (1.0 + d),
}


@pytest.mark.parametrize("strategy", ["cosine", "l2", "euclidean", "inner_product", "l1"])
def test_relevance_scores_follow_langchain_conventions(
    make_store: MakeStore, jina: JinaEmbeddings, strategy: str
) -> None:
    store = make_store(jina, distance_strategy=strategy)
    store.add_texts(TEXTS, METAS, ids=IDS)
    query = "basil recipe"
    core = store.vector_table.search(jina.embed_query(query), k=4)
    with_relevance = store.similarity_search_with_relevance_scores(query, k=4)
    with_distance = store.similarity_search_with_score(query, k=4)
    expected = LANGCHAIN_RELEVANCE[strategy]
    assert [d.id for d, _ in with_relevance] == [h.id for h in core]
    assert [s for _, s in with_relevance] == pytest.approx([expected(h.distance) for h in core])
    assert [(d.id, s) for d, s in with_distance] == [(h.id, h.distance) for h in core]
    assert {d.id for d, _ in with_relevance[:2]} == {"food1", "food2"}
    # the core's own score is unchanged (and is what hybrid / full-text report)
    assert all(0.0 <= h.score <= 1.0 for h in core)


@pytest.mark.parametrize("strategy", ["l2", "inner_product"])
async def test_retriever_score_threshold_uses_the_langchain_scores(
    make_store: MakeStore, jina: JinaEmbeddings, strategy: str
) -> None:
    """A threshold tuned on PGVector / Chroma keeps the same hits here (not the core's
    ``1 / (1 + d)`` for L2, which would keep more)."""
    store = make_store(jina, distance_strategy=strategy)
    store.add_texts(TEXTS, METAS, ids=IDS)
    query = "TiDB stores SQL rows"
    distances = {h.id: h.distance for h in store.vector_table.search(jina.embed_query(query))}
    threshold = 0.4
    expected = {i for i, d in distances.items() if LANGCHAIN_RELEVANCE[strategy](d) >= threshold}
    core_would_keep = {i for i, d in distances.items() if 1 / (1 + d) >= threshold}
    retriever = store.as_retriever(
        search_type="similarity_score_threshold",
        search_kwargs={"k": 4, "score_threshold": threshold},
    )
    assert {d.id for d in retriever.invoke(query)} == expected
    assert {d.id for d in await retriever.ainvoke(query)} == expected
    assert expected and expected != set(IDS)
    if strategy == "l2":
        assert core_would_keep != expected


class _FixedVectors(Embeddings):
    """Unit vectors chosen by hand: the query is (1, 0), a text's dot product with it is
    the number in its name."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        dot = 1.0 if text == "query" else float(text.split()[-1])
        return [dot, math.sqrt(1.0 - dot * dot)]


async def test_inner_product_threshold_never_keeps_an_opposed_document(
    make_store: MakeStore,
) -> None:
    """langchain-core's inner-product function gives dot product -0.3 the relevance 0.7,
    above dot product 0.5: a threshold of 0.6 would keep the opposed document only. Here
    a negative dot product scores 0, and the scores agree with the core's order."""
    store = make_store(_FixedVectors(), distance_strategy="inner_product")
    store.add_texts(["match 0.5", "weak 0.2", "opposed -0.3"], ids=["match", "weak", "opp"])
    scored = store.similarity_search_with_relevance_scores("query", k=3)
    assert [(d.id, round(s, 6)) for d, s in scored] == [
        ("match", 0.5),
        ("weak", 0.2),
        ("opp", 0.0),
    ]
    (opposed,) = store.vector_table.search(store.embeddings.embed_query("query"), k=3)[2:]
    assert TiDBVectorStore._max_inner_product_relevance_score_fn(opposed.distance) > 0.6
    for threshold, kept in [(0.4, ["match"]), (0.6, []), (0.1, ["match", "weak"])]:
        retriever = store.as_retriever(
            search_type="similarity_score_threshold",
            search_kwargs={"k": 3, "score_threshold": threshold},
        )
        assert [d.id for d in retriever.invoke("query")] == kept
        assert [d.id for d in await retriever.ainvoke("query")] == kept


def test_score_threshold_keeps_only_relevant(store: TiDBVectorStore) -> None:
    hits = store.similarity_search_with_relevance_scores(
        "TiDB stores vectors", k=4, score_threshold=0.5
    )
    assert [d.id for d, _ in hits] == ["db2"]


# --- MMR and retrievers ------------------------------------------------------------------


def test_mmr_prefers_diverse_documents(make_store: MakeStore, jina: JinaEmbeddings) -> None:
    store = make_store(jina)
    store.add_texts(
        ["TiDB vector search", "TiDB vector search", "TiDB vector search guide", "pesto"],
        ids=["a", "a-copy", "b", "c"],
    )
    similar = store.similarity_search("TiDB vector search", k=2)
    diverse = store.max_marginal_relevance_search(
        "TiDB vector search", k=2, fetch_k=4, lambda_mult=0.1
    )
    assert set(_ids(similar)) == {"a", "a-copy"}
    assert len({d.page_content for d in diverse}) == 2
    vector = store.embeddings.embed_query("TiDB vector search")
    assert (
        store.max_marginal_relevance_search_by_vector(vector, k=2, fetch_k=4, lambda_mult=0.1)
        == diverse
    )


def test_mmr_honours_filter(store: TiDBVectorStore) -> None:
    docs = store.max_marginal_relevance_search("TiDB", k=2, filter={"topic": "food"})
    assert set(_ids(docs)) == {"food1", "food2"}


@pytest.mark.parametrize(
    ("search_type", "search_kwargs", "expected"),
    [
        ("similarity", {"k": 1}, ["db2"]),
        ("similarity", {"k": 1, "filter": {"topic": "food"}}, ["food1"]),
        ("similarity_score_threshold", {"k": 4, "score_threshold": 0.5}, ["db2"]),
        ("mmr", {"k": 1, "fetch_k": 4}, ["db2"]),
    ],
)
async def test_retriever_search_types(
    store: TiDBVectorStore, search_type: str, search_kwargs: dict[str, Any], expected: list[str]
) -> None:
    retriever = store.as_retriever(search_type=search_type, search_kwargs=search_kwargs)
    query = "TiDB stores vectors"
    assert _ids(retriever.invoke(query)) == expected
    assert _ids(await retriever.ainvoke(query)) == expected


# --- async twins -------------------------------------------------------------------------


async def test_async_twins(make_store: MakeStore, jina: JinaEmbeddings) -> None:
    store = make_store(jina)
    assert await store.aadd_texts(iter(TEXTS), METAS, ids=IDS) == IDS
    assert _ids(await store.aget_by_ids(["food2", "nope"])) == ["food2"]
    assert _ids(await store.asimilarity_search("basil pesto", k=1)) == ["food2"]
    pairs = await store.asimilarity_search_with_score("basil pesto", k=1)
    relevance = await store.asimilarity_search_with_relevance_scores("basil pesto", k=1)
    assert pairs[0][1] == pytest.approx(1.0 - relevance[0][1])  # cosine: distance vs score
    vector = await jina.aembed_query("basil pesto")
    assert _ids(await store.asimilarity_search_by_vector(vector, k=1)) == ["food2"]
    by_vector = await store.asimilarity_search_with_score_by_vector(vector, k=1)
    assert by_vector == pairs
    mmr = await store.amax_marginal_relevance_search("recipe", k=2, filter={"topic": "food"})
    assert set(_ids(mmr)) == {"food1", "food2"}
    await store.adelete(filter={"topic": "food"})
    assert _ids(await store.aget_by_ids(IDS)) == ["db1", "db2"]
    with pytest.raises(InvalidInputError):
        await store.adelete()
    assert await store.aclear() == 2


async def test_async_factories(store_kwargs: dict[str, Any], jina: JinaEmbeddings) -> None:
    docs = [
        Document(id=i, page_content=t, metadata=m)
        for i, t, m in zip(IDS, TEXTS, METAS, strict=True)
    ]
    created = await TiDBVectorStore.afrom_documents(docs, jina, **store_kwargs)
    assert _ids(await created.asimilarity_search("pesto", k=1)) == ["food2"]
    where = {k: v for k, v in store_kwargs.items() if k != "table_name"}
    opened = await TiDBVectorStore.afrom_existing_vector_table(
        jina, table_name=store_kwargs["table_name"], **where
    )
    assert len(await opened.aget_by_ids(IDS)) == 4


# --- factories and constructor -----------------------------------------------------------


def test_from_texts_from_documents_and_existing(
    store_kwargs: dict[str, Any], jina: JinaEmbeddings
) -> None:
    store = TiDBVectorStore.from_texts(TEXTS, jina, METAS, ids=IDS, **store_kwargs)
    docs = [Document(id="extra", page_content="TiDB Cloud Starter")]
    TiDBVectorStore.from_documents(docs, jina, **store_kwargs)
    where = {k: v for k, v in store_kwargs.items() if k != "table_name"}
    opened = TiDBVectorStore.from_existing_vector_table(
        jina, table_name=store_kwargs["table_name"], **where
    )
    assert opened.vector_table.count() == 5
    assert _ids(opened.similarity_search("TiDB Cloud Starter", k=1)) == ["extra"]
    assert store.table_name == opened.table_name


def test_from_existing_vector_table_requires_the_table(
    store_kwargs: dict[str, Any], jina: JinaEmbeddings
) -> None:
    where = {k: v for k, v in store_kwargs.items() if k != "table_name"}
    with pytest.raises(SchemaError, match="does not exist"):
        TiDBVectorStore.from_existing_vector_table(jina, table_name="never_created", **where)


def test_dimension_is_known_before_any_embedding_call(
    make_store: MakeStore, jina: JinaEmbeddings, fake_server: FakeEmbeddingServer
) -> None:
    before = len(fake_server.api_requests())
    store = make_store(jina)
    assert store.vector_table.dimension == 64
    store.vector_table.create()  # no probe call is needed to create the table
    assert len(fake_server.api_requests()) == before


def test_wrong_dimension_is_a_clear_error(
    make_store: MakeStore, jina: JinaEmbeddings, fake_server: FakeEmbeddingServer
) -> None:
    make_store(jina).add_texts(["TiDB"])
    wider = JinaEmbeddings(api_key=jina.api_key, base_url=fake_server.url, dimensions=32)
    with pytest.raises(DimensionMismatchError, match="VECTOR\\(64\\)"):
        make_store(wider).add_texts(["TiDB"])
    with pytest.raises(DimensionMismatchError, match="VECTOR\\(64\\)"):
        make_store(wider, vector_dimension=32).similarity_search("TiDB")


@pytest.mark.parametrize(
    "texts",
    [["ok", ""], ["   "], ["ok", None], "one string"],
    ids=["empty", "blank", "none", "str"],
)
def test_bad_texts_fail_before_any_embedding_call(
    make_store: MakeStore, jina: JinaEmbeddings, fake_server: FakeEmbeddingServer, texts: Any
) -> None:
    store = make_store(jina)
    before = len(fake_server.api_requests())
    with pytest.raises(InvalidInputError):
        store.add_texts(texts)
    assert len(fake_server.api_requests()) == before


async def test_mismatched_lengths_are_the_cores_errors_before_any_embedding_call(
    make_store: MakeStore, jina: JinaEmbeddings, fake_server: Any
) -> None:
    store = make_store(jina)
    before = len(fake_server.api_requests())
    with pytest.raises(InvalidInputError, match="metadatas"):
        store.add_texts(["a", "b"], [{}])
    with pytest.raises(InvalidInputError, match="ids"):
        store.add_texts(["a", "b"], ids=["x"])
    with pytest.raises(InvalidInputError, match="ids"):
        await store.aadd_texts(["a", "b"], ids=["x"])
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        store.add_texts(["a", "b"], [{}, {"bad": object()}])
    assert len(fake_server.api_requests()) == before, "nothing was embedded (nor paid for)"
    assert store.vector_table.count() == 0


class _ListEmbeddings(Embeddings):
    """A user's own ``Embeddings``: lists of floats, as LangChain defines them."""

    def __init__(self, jina: JinaEmbeddings) -> None:
        self.jina = jina

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.jina.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.jina.embed_query(text)


async def test_vectors_reach_the_core_as_one_float32_matrix(
    make_store: MakeStore, jina: JinaEmbeddings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ours: the client's float32 matrix as it is; a user's lists: to the core as they are,
    which converts them once (and checks them)."""
    seen: list[Any] = []
    for embedding in (jina, _ListEmbeddings(jina)):
        store = make_store(embedding)
        table = store.vector_table

        def spy(vectors: Any, *args: Any, real: Any = _vector.as_matrix) -> Any:
            seen.append(vectors)  # what the embedder handed the core
            return real(vectors, *args)

        with monkeypatch.context() as patch:
            patch.setattr(_vector, "as_matrix", spy)
            assert store.add_texts(TEXTS[:2], ids=IDS[:2]) == IDS[:2]
            assert await store.aadd_texts(TEXTS[2:], ids=IDS[2:]) == IDS[2:]
        assert _ids(store.similarity_search("basil pesto", k=1)) == ["food2"]
        table.clear()
    assert len(seen) == 4
    for vectors in seen[:2]:  # ours: no list in between
        assert isinstance(vectors, np.ndarray) and vectors.dtype == np.float32
    for vectors in seen[2:]:  # a user's: LangChain's lists, converted by the core alone
        assert isinstance(vectors, list) and isinstance(vectors[0][0], float)
    assert np.array_equal(seen[0], np.asarray(seen[2], dtype=np.float32))
    assert np.array_equal(seen[1], np.asarray(seen[3], dtype=np.float32))


def test_a_user_embeddings_bad_rows_get_the_cores_message(
    make_store: MakeStore, jina: JinaEmbeddings
) -> None:
    class Ragged(_ListEmbeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [[0.1, 0.2], [0.3]][: len(texts)]

    store = make_store(Ragged(jina), vector_dimension=2)
    with pytest.raises(DimensionMismatchError):
        store.add_texts(["a", "b"])

    class Strings(_ListEmbeddings):  # NumPy would quietly read "0.5" as 0.5
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [["0.5", "0.25"] for _ in texts]  # type: ignore[list-item]

    class Huge(_ListEmbeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [[1e39, 0.0] for _ in texts]

    class Nones(_ListEmbeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [[None, 0.0] for _ in texts]  # type: ignore[list-item]

    for bad, message in ((Strings, "not a number"), (Huge, "float32 range"), (Nones, "None")):
        store = make_store(bad(jina), vector_dimension=2)
        with pytest.raises(InvalidInputError, match=message):
            store.add_texts(["a"])
        assert store.vector_table.count() == 0


def test_a_subclass_overriding_our_embeddings_is_called(make_store: MakeStore) -> None:
    """Only our own methods take the float32 fast path; an override (a prefix, a cache)
    is called like any other Embeddings."""
    calls: list[Any] = []

    class Prefixed(ProviderEmbeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            calls.append(texts)
            return super().embed_documents(["passage: " + t for t in texts])

        def embed_query(self, text: str) -> list[float]:
            calls.append(text)
            return super().embed_query("query: " + text)

    store = make_store(Prefixed(provider=LexicalEmbedder(dimension=32)))
    store.add_texts(["alpha beta"], ids=["a"])
    assert store.similarity_search("alpha", k=1)[0].id == "a"
    assert calls == [["alpha beta"], "alpha"]


def test_empty_input_adds_nothing(make_store: MakeStore, jina: JinaEmbeddings) -> None:
    assert make_store(jina).add_texts([]) == []


def test_unknown_keyword_arguments_are_errors(store: TiDBVectorStore) -> None:
    with pytest.raises(InvalidInputError, match="where"):
        store.similarity_search("TiDB", where={"topic": "db"})
    with pytest.raises(InvalidInputError, match="delete_all"):
        store.delete(delete_all=True)


def test_constructor_errors(jina: JinaEmbeddings) -> None:
    with pytest.raises(InvalidInputError, match="unknown distance metric"):
        TiDBVectorStore("sqlite://", jina, distance_strategy="hamming")
    with pytest.raises(ConfigurationError, match="needs embeddings"):
        TiDBVectorStore("sqlite://")
    with pytest.raises(ConfigurationError, match="TIDB_DATABASE_URL"):
        TiDBVectorStore(embedding=jina)


def test_constructor_does_no_io_and_hides_the_password(jina: JinaEmbeddings) -> None:
    url = "mysql+pymysql://root:s3cret-pw@tidb.invalid:4000/test"
    store = TiDBVectorStore(url, jina, "docs", "l2")
    assert "s3cret-pw" not in repr(store)
    assert store.distance_strategy == "l2"
    assert store.tidb_vector_client.vector_table is store.vector_table
    assert store.tidb_vector_client.table_name == "docs"  # the table's API, forwarded


# --- full-text and hybrid ---------------------------------------------------------------


def _skip_without_full_text(store: TiDBVectorStore) -> None:
    table = store.vector_table
    if table.is_tidb and not table.is_tidb_starter:
        pytest.skip("full-text search needs TiDB Cloud Starter or the embedded engine")


async def test_full_text_and_hybrid_search(store: TiDBVectorStore) -> None:
    _skip_without_full_text(store)
    assert _ids(store.full_text_search("basil?", k=4)) in (["food1", "food2"], ["food2", "food1"])
    scored = store.full_text_search_with_score("pesto basil", k=2)
    assert scored[0][0].id == "food2" and scored[0][1] == 1.0
    assert _ids(store.full_text_search("basil", filter={"year": 2024})) == ["food1"]
    hybrid = store.hybrid_search_with_score("TiDB vectors", k=2)
    assert {d.id for d, _ in hybrid} == {"db1", "db2"}
    assert all(0.0 <= s <= 1.0 for _, s in hybrid)
    text_only = store.hybrid_search("basil", k=1, fusion="weighted", alpha=0.0)
    assert text_only[0].id in {"food1", "food2"}
    assert _ids(await store.afull_text_search("pesto")) == ["food2"]
    assert (await store.ahybrid_search("TiDB vectors", k=1))[0].id in {"db1", "db2"}


@pytest.mark.parametrize(
    ("search_type", "search_kwargs", "expected"),
    [
        ("full_text", {"k": 1}, ["food2"]),
        ("hybrid", {"k": 1, "filter": {"topic": "food"}}, ["food2"]),
    ],
)
async def test_retriever_hybrid_and_full_text(
    store: TiDBVectorStore, search_type: str, search_kwargs: dict[str, Any], expected: list[str]
) -> None:
    _skip_without_full_text(store)
    retriever = store.as_retriever(search_type=search_type, search_kwargs=search_kwargs)
    assert _ids(retriever.invoke("basil pesto")) == expected
    assert _ids(await retriever.ainvoke("basil pesto")) == expected
    with pytest.raises(ValueError, match="not allowed"):
        store.as_retriever(search_type="bm42")


def test_filter_strategy_passes_through(store: TiDBVectorStore) -> None:
    docs = store.similarity_search("TiDB", k=2, filter={"topic": "db"}, prefilter=True)
    assert {d.id for d in docs} == {"db1", "db2"}
    with pytest.raises(InvalidInputError):
        store.similarity_search("TiDB", k=2, not_an_option=1)
