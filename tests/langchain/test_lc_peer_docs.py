"""langchain-community's documented TiDBVectorStore / JinaEmbeddings usage, imports changed.

The snippets below follow the TiDB Cloud "Integrate Vector Search with LangChain" guide and
LangChain's Jina embeddings page line by line; only the ``from ... import`` lines differ.
The connection string points at the embedded engine and ``JINA_API_BASE_URL`` at the
loopback fake server, so they run offline.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.documents import Document
from numpy import dot
from numpy.linalg import norm

from langchain_tidb_jina import JinaEmbeddings, TiDBVectorStore
from tidb_jina.testing import FakeEmbeddingServer

QUERY = "What did the president say about Ketanji Brown Jackson"


@pytest.fixture
def docs_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """The documented key "jina_*" is what the fake server accepts; yields the DB URL."""
    with FakeEmbeddingServer(api_key="jina_*") as server:
        monkeypatch.setenv("JINA_API_BASE_URL", server.url)
        yield f"sqlite:///{tmp_path / 'tidb.db'}"


def test_jina_embeddings_page_runs_unchanged(docs_env: str) -> None:
    text_embeddings = JinaEmbeddings(jina_api_key="jina_*", model_name="jina-embeddings-v2-base-en")
    text = "This is a test document."
    query_result = text_embeddings.embed_query(text)
    doc_result = text_embeddings.embed_documents([text])
    similarity = dot(query_result, doc_result[0]) / (norm(query_result) * norm(doc_result[0]))
    assert len(query_result) == 768
    assert similarity == pytest.approx(1.0)


def test_tidb_vector_guide_runs_unchanged(docs_env: str) -> None:
    tidb_connection_string = docs_env
    docs = [
        Document(page_content="Judge Ketanji Brown Jackson: the president nominated her"),
        Document(page_content="The president said we will secure the border"),
        Document(page_content="Four big things we can do together: beat the opioid epidemic"),
    ]
    embeddings = JinaEmbeddings(jina_api_key="jina_*", model_name="jina-embeddings-v2-base-en")

    vector_store = TiDBVectorStore.from_documents(
        documents=docs,
        embedding=embeddings,
        table_name="embedded_documents",
        connection_string=tidb_connection_string,
        distance_strategy="cosine",  # default, another option is "l2"
    )

    query = QUERY
    docs_with_score = vector_store.similarity_search_with_score(query, k=3)
    for doc, score in docs_with_score:
        print("-" * 80)
        print("Score: ", score)
        print(doc.page_content)
        print("-" * 80)
    assert docs_with_score[0][0].page_content == docs[0].page_content
    assert [s for _, s in docs_with_score] == sorted(s for _, s in docs_with_score)  # distances

    docs_with_relevance_score = vector_store.similarity_search_with_relevance_scores(query, k=2)
    for doc, score in docs_with_relevance_score:
        print("-" * 80)
        print("Score: ", score)
        print(doc.page_content)
        print("-" * 80)
    assert docs_with_relevance_score[0][1] == pytest.approx(1 - docs_with_score[0][1])

    retriever = vector_store.as_retriever(
        search_type="similarity_score_threshold",
        search_kwargs={"k": 3, "score_threshold": 0.5},
    )
    docs_retrieved = retriever.invoke(query)
    for doc in docs_retrieved:
        print("-" * 80)
        print(doc.page_content)
        print("-" * 80)
    assert [d.page_content for d in docs_retrieved] == [docs[0].page_content]

    vector_store.drop_vectorstore()

    ids = vector_store.add_texts(
        texts=[
            "TiDB Vector offers advanced, high-speed vector processing capabilities, enhancing "
            "AI workflows with efficient data handling and analytics support.",
            "TiDB Vector, starting as low as $10 per month for basic usage",
        ],
        metadatas=[
            {"title": "TiDB Vector functionality"},
            {"title": "TiDB Vector Pricing"},
        ],
    )
    assert len(ids) == 2

    docs_with_score = vector_store.similarity_search_with_score(
        "Introduction to TiDB Vector", filter={"title": "TiDB Vector functionality"}, k=4
    )
    assert [d.metadata for d, _ in docs_with_score] == [{"title": "TiDB Vector functionality"}]

    reopened = TiDBVectorStore.from_existing_vector_table(
        embedding=embeddings,
        connection_string=tidb_connection_string,
        table_name="embedded_documents",
        distance_strategy="cosine",
    )
    assert len(reopened.similarity_search("TiDB Vector", k=4)) == 2
    same = TiDBVectorStore(
        connection_string=tidb_connection_string,
        embedding_function=embeddings,
        table_name="embedded_documents",
        distance_strategy="cosine",
        engine_args={"pool_pre_ping": True},
        drop_existing_table=False,
    )
    assert len(same.get_by_ids(ids)) == 2
    vector_store.drop_vectorstore()


@pytest.mark.parametrize(
    "flt",
    [
        {"page": 12},
        {"page": {"$eq": 12}},
        {"page": {"$in": [11, 12, 13]}},
        {"page": {"$nin": [1, 13]}},
        {"page": {"$gt": 11}},
        {"$or": [{"page": 11}, {"page": 12}]},
    ],
)
def test_documented_filters_match(docs_env: str, flt: dict) -> None:
    embeddings = JinaEmbeddings(jina_api_key="jina_*", model_name="jina-embeddings-v2-base-en")
    store = TiDBVectorStore.from_texts(
        ["Siddhartha page twelve", "Demian page one"],
        embeddings,
        metadatas=[{"page": 12, "book_title": "Siddhartha"}, {"page": 1, "book_title": "Demian"}],
        connection_string=docs_env,
    )
    assert store.table_name == "langchain_vector"  # langchain-community's default
    hits = store.similarity_search("Siddhartha", k=4, filter=flt)
    assert [d.metadata["book_title"] for d in hits] == ["Siddhartha"]
