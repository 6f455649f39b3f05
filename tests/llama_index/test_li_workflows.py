"""LlamaIndex workflows on the store: auto-retrieval, ingestion pipelines, the async path.

* ``VectorIndexAutoRetriever``: an LLM writes a ``VectorStoreQuerySpec`` (query, metadata
  filters, top_k) from a question; here a fake LLM answers with that JSON, using several
  filter operators, and only matching nodes may come back. The retriever falls back to
  *no* filter when it cannot parse the answer, so each test asserts the filter was
  applied (the unfiltered result differs).
* ``IngestionPipeline`` with a docstore and ``DocstoreStrategy.UPSERTS`` (and
  ``UPSERTS_AND_DELETE``): a re-run skips unchanged documents, a changed document's old
  nodes are replaced, a removed one is deleted.
* ``async_add`` / ``aquery`` / ``adelete`` and the async twins of the workflows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.base.llms.types import (
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
from llama_index.core.llms import CustomLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.retrievers import VectorIndexAutoRetriever
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    MetadataInfo,
    VectorStoreInfo,
    VectorStoreQuery,
)

from llama_index_tidb_jina import ProviderEmbedding, TiDBVectorStore
from tidb_jina import InvalidInputError

DIM = 64  # the conftest's embed_model

MakeStore = Callable[..., TiDBVectorStore]

BOOKS: list[tuple[str, dict[str, Any]]] = [
    (
        "Dune: a desert planet, spice, and a messiah",
        {
            "genre": "science fiction",
            "year": 1965,
            "rating": 9.1,
            "tags": ["desert", "politics"],
            "author": "Frank Herbert",
        },
    ),
    (
        "Neuromancer: a hacker in cyberspace",
        {
            "genre": "science fiction",
            "year": 1984,
            "rating": 8.4,
            "tags": ["hackers", "ai"],
            "author": "William Gibson",
        },
    ),
    (
        "The Left Hand of Darkness: a planet without fixed sex",
        {
            "genre": "science fiction",
            "year": 1969,
            "rating": 8.8,
            "tags": ["politics", "winter"],
            "author": "Ursula K. Le Guin",
        },
    ),
    (
        "Gone Girl: a marriage, a disappearance",
        {
            "genre": "thriller",
            "year": 2012,
            "rating": 7.9,
            "tags": ["marriage"],
            "author": "Gillian Flynn",
        },
    ),
    (
        "The Hobbit: a burglar, a dragon and a planet of elves",
        {
            "genre": "fantasy",
            "year": 1937,
            "rating": 9.0,
            "tags": ["dragons"],
            "author": "J. R. R. Tolkien",
        },
    ),
    (
        "Project Hail Mary: a teacher saves the planet",
        {"genre": "science fiction", "year": 2021, "tags": ["space", "ai"], "author": "Andy Weir"},
    ),
]

INFO = VectorStoreInfo(
    content_info="Short summaries of books",
    metadata_info=[
        MetadataInfo(name="genre", type="str", description="The book's genre"),
        MetadataInfo(name="year", type="int", description="Year of publication"),
        MetadataInfo(name="rating", type="float", description="Rating out of 10"),
        MetadataInfo(name="tags", type="list[str]", description="Plot keywords"),
        MetadataInfo(name="author", type="str", description="The author"),
    ],
)


class SpecLLM(CustomLLM):
    """Answers every prompt with the next prepared text (a VectorStoreQuerySpec in JSON)."""

    answers: list[str]

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="spec-llm")

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        assert "Short summaries of books" in prompt  # the store's info reached the LLM
        return CompletionResponse(text=self.answers.pop(0))

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        yield self.complete(prompt, formatted, **kwargs)


def _spec(query: str, filters: Sequence[dict[str, Any]], top_k: int | None = None) -> str:
    body = {"query": query, "filters": list(filters), "top_k": top_k}
    return f"```json\n{json.dumps(body)}\n```"


@pytest.fixture
def index(make_store: MakeStore, embed_model: ProviderEmbedding) -> VectorStoreIndex:
    nodes = [
        TextNode(text=text, metadata=meta, id_=f"b{i}") for i, (text, meta) in enumerate(BOOKS)
    ]
    storage = StorageContext.from_defaults(vector_store=make_store())
    return VectorStoreIndex(nodes, storage_context=storage, embed_model=embed_model)


def _auto(index: VectorStoreIndex, answers: list[str], **kw: Any) -> VectorIndexAutoRetriever:
    return VectorIndexAutoRetriever(
        index, vector_store_info=INFO, llm=SpecLLM(answers=answers), similarity_top_k=10, **kw
    )


def _books(predicate: Callable[[dict[str, Any]], bool]) -> set[str]:
    return {f"b{i}" for i, (_, meta) in enumerate(BOOKS) if predicate(meta)}


# --- VectorIndexAutoRetriever ----------------------------------------------------------------


def test_auto_retriever_applies_the_generated_filters(index: VectorStoreIndex) -> None:
    filters = [
        {"key": "genre", "value": "science fiction", "operator": "=="},
        {"key": "year", "value": 1960, "operator": ">="},
        {"key": "tags", "value": "politics", "operator": "contains"},
        {"key": "author", "value": ["Andy Weir"], "operator": "nin"},
    ]
    retriever = _auto(index, [_spec("a planet", filters)])
    got = {n.node.node_id for n in retriever.retrieve("political sci-fi since 1960, not Weir")}
    expected = _books(
        lambda m: (
            m["genre"] == "science fiction"
            and m["year"] >= 1960
            and "politics" in m["tags"]
            and m["author"] != "Andy Weir"
        )
    )
    assert got == expected == {"b0", "b2"}
    unfiltered = {n.node.node_id for n in index.as_retriever(similarity_top_k=10).retrieve("x")}
    assert unfiltered == {f"b{i}" for i in range(len(BOOKS))}


def test_auto_retriever_more_operators_and_top_k(index: VectorStoreIndex) -> None:
    filters = [
        {"key": "rating", "value": 8.5, "operator": ">"},
        {"key": "genre", "value": ["science fiction", "fantasy"], "operator": "in"},
        {"key": "year", "value": 2000, "operator": "<"},
        {"key": "tags", "value": ["dragons", "winter", "desert"], "operator": "any"},
        {"key": "author", "value": "Tolkien", "operator": "!="},
    ]
    retriever = _auto(index, [_spec("a planet", filters, top_k=2)], max_top_k=5)
    hits = retriever.retrieve("great older sci-fi or fantasy")
    allowed = _books(
        lambda m: (
            m.get("rating", 0) > 8.5
            and m["genre"] in ("science fiction", "fantasy")
            and m["year"] < 2000
            and bool({"dragons", "winter", "desert"} & set(m["tags"]))
        )
    )
    assert allowed == {"b0", "b2", "b4"}
    assert len(hits) == 2 and {h.node.node_id for h in hits} <= allowed
    assert all(h.node.metadata["rating"] > 8.5 for h in hits)


def test_auto_retriever_text_match_and_empty_query(index: VectorStoreIndex) -> None:
    filters = [{"key": "author", "value": "Le Guin", "operator": "text_match"}]
    answer = _spec("", filters)
    with pytest.raises(InvalidInputError, match="default_empty_query_vector"):
        _auto(index, [answer], empty_query_top_k=10).retrieve("books by Le Guin")
    retriever = _auto(index, [answer], empty_query_top_k=10, default_empty_query_vector=[0.0] * DIM)
    assert [h.node.node_id for h in retriever.retrieve("books by Le Guin")] == ["b2"]


async def test_auto_retriever_async(index: VectorStoreIndex) -> None:
    filters = [
        {"key": "tags", "value": "ai", "operator": "contains"},
        {"key": "rating", "value": 8.0, "operator": ">="},
    ]
    retriever = _auto(index, [_spec("hackers", filters)])
    hits = await retriever.aretrieve("AI books rated 8 or more")
    # b5 has no rating: a range never matches a missing key
    assert (
        {h.node.node_id for h in hits}
        == _books(lambda m: "ai" in m["tags"] and m.get("rating", 0) >= 8.0)
        == {"b1"}
    )


def test_auto_retriever_extra_filters_restrict_every_generated_spec(
    index: VectorStoreIndex,
) -> None:
    """A fixed restriction (``extra_filters``) is ANDed with what the LLM writes, and
    applies alone when it writes no filter: the LLM cannot widen past it."""
    restriction = MetadataFilters(filters=[MetadataFilter(key="genre", value="fantasy")])
    wide = [
        {"key": "genre", "value": "science fiction", "operator": "=="},
        {"key": "year", "value": 0, "operator": ">"},
    ]
    answers = [_spec("books", wide), _spec("books", [])]
    retriever = _auto(index, answers, extra_filters=restriction)
    fantasy = _books(lambda m: m["genre"] == "fantasy")
    assert fantasy and fantasy != _books(lambda m: True)
    assert {h.node.node_id for h in retriever.retrieve("sci-fi")} == set()  # sci-fi AND fantasy
    assert {h.node.node_id for h in retriever.retrieve("anything")} == fantasy


# --- IngestionPipeline with a docstore ---------------------------------------------------------


def _pipeline(
    store: TiDBVectorStore,
    embed_model: ProviderEmbedding,
    docstore: SimpleDocumentStore,
    strategy: DocstoreStrategy,
) -> IngestionPipeline:
    return IngestionPipeline(
        transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=0), embed_model],
        vector_store=store,
        docstore=docstore,
        docstore_strategy=strategy,
    )


SOURCE = {
    "tidb": "TiDB is a distributed SQL database. It stores vectors next to rows.",
    "jina": "Jina embeddings turn sentences into vectors for semantic search.",
    "pasta": "Boil the pasta. Simmer the tomato sauce with basil.",
}


def _documents(texts: dict[str, str]) -> list[Document]:
    return [Document(text=t, id_=k, metadata={"source": k}) for k, t in texts.items()]


def _stored(store: TiDBVectorStore) -> dict[str, str]:
    """ref_doc_id -> the stored text of its nodes (joined)."""
    by_doc: dict[str, list[str]] = {}
    for node in store.get_nodes():
        by_doc.setdefault(node.ref_doc_id or "", []).append(node.get_content())
    return {k: " ".join(sorted(v)) for k, v in by_doc.items()}


def test_ingestion_pipeline_upserts(make_store: MakeStore, embed_model: ProviderEmbedding) -> None:
    store = make_store()
    docstore = SimpleDocumentStore()
    pipeline = _pipeline(store, embed_model, docstore, DocstoreStrategy.UPSERTS)

    first = pipeline.run(documents=_documents(SOURCE))
    assert {n.ref_doc_id for n in first} == set(SOURCE)
    assert set(_stored(store)) == set(SOURCE)
    count = store.client.count()

    again = pipeline.run(documents=_documents(SOURCE))
    assert again == []  # unchanged: nothing embedded, nothing written
    assert store.client.count() == count

    changed = {**SOURCE, "pasta": "Risotto needs arborio rice and patience."}
    third = pipeline.run(documents=_documents(changed))
    assert {n.ref_doc_id for n in third} == {"pasta"}
    stored = _stored(store)
    assert "Risotto" in stored["pasta"] and "tomato" not in stored["pasta"]
    assert store.client.count() == count  # replaced, not added next to the old nodes
    index = VectorStoreIndex.from_vector_store(store, embed_model=embed_model)
    top = index.as_retriever(similarity_top_k=1).retrieve("arborio rice risotto")
    assert top[0].node.ref_doc_id == "pasta" and "Risotto" in top[0].node.get_content()

    # UPSERTS keeps documents missing from a run; UPSERTS_AND_DELETE removes them.
    pipeline.run(documents=_documents({"tidb": SOURCE["tidb"]}))
    assert set(_stored(store)) == set(SOURCE)
    deleting = _pipeline(store, embed_model, docstore, DocstoreStrategy.UPSERTS_AND_DELETE)
    deleting.run(documents=_documents({"tidb": SOURCE["tidb"], "jina": SOURCE["jina"]}))
    assert set(_stored(store)) == {"tidb", "jina"}


async def test_ingestion_pipeline_upserts_async(
    make_store: MakeStore, embed_model: ProviderEmbedding
) -> None:
    store = make_store()
    pipeline = _pipeline(store, embed_model, SimpleDocumentStore(), DocstoreStrategy.UPSERTS)
    assert len(await pipeline.arun(documents=_documents(SOURCE))) >= 3
    assert await pipeline.arun(documents=_documents(SOURCE)) == []
    changed = {**SOURCE, "jina": "Rerankers reorder the hits of a first search."}
    assert {n.ref_doc_id for n in await pipeline.arun(documents=_documents(changed))} == {"jina"}
    nodes = await store.aget_nodes(filters=_source_is("jina"))
    assert [n.get_content() for n in nodes] == [changed["jina"]]


def _source_is(name: str) -> MetadataFilters:
    return MetadataFilters(filters=[MetadataFilter(key="source", value=name)])


# --- the async path: async_add / aquery / adelete ---------------------------------------------


async def test_async_add_query_delete(
    make_store: MakeStore, embed_model: ProviderEmbedding
) -> None:
    store = make_store()
    nodes = [
        TextNode(
            text=text,
            id_=f"{name}-0",
            metadata={"source": name},
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=name)},
            embedding=await embed_model.aget_text_embedding(text),
        )
        for name, text in SOURCE.items()
    ]
    assert await store.async_add(nodes) == [n.node_id for n in nodes]

    query = VectorStoreQuery(
        query_embedding=await embed_model.aget_query_embedding("vectors in a SQL database"),
        similarity_top_k=3,
        filters=MetadataFilters(
            filters=[MetadataFilter(key="source", value="pasta", operator=FilterOperator.NE)]
        ),
    )
    result = await store.aquery(query)
    assert result.ids is not None and result.ids[0] == "tidb-0"
    assert set(result.ids) == {"tidb-0", "jina-0"}

    await store.adelete("tidb")
    after = await store.aquery(query)
    assert after.ids == ["jina-0"]
    assert [n.node_id for n in await store.aget_nodes()] and "tidb-0" not in {
        n.node_id for n in await store.aget_nodes()
    }


def test_an_all_zero_query_vector_returns_the_filtered_rows_unranked(
    index: VectorStoreIndex,
) -> None:
    """The empty-question convention: zeros have no cosine distance, so the filter decides."""
    store = index.vector_store
    filters = MetadataFilters(filters=[MetadataFilter(key="year", value=2000, operator="<")])
    query = VectorStoreQuery(query_embedding=[0.0] * DIM, similarity_top_k=10, filters=filters)
    result = store.query(query)
    assert result.similarities is None
    assert set(result.ids or []) == _books(lambda m: m["year"] < 2000) != set()
    # A vector with one non-zero component is a real question: ranked by similarity.
    ranked = store.query(
        VectorStoreQuery(query_embedding=[1.0] + [0.0] * (DIM - 1), similarity_top_k=2)
    )
    assert ranked.similarities is not None and len(ranked.similarities) == 2
