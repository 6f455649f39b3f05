"""JinaRerank as a document compressor, and an LCEL RAG chain over TiDBVectorStore."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from _lc_helpers import API_KEY
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompt_values import PromptValue
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from langchain_tidb_jina import JinaEmbeddings, JinaRerank, TiDBVectorStore
from tidb_jina import InvalidInputError
from tidb_jina.testing import FakeEmbeddingServer

DOCS = [
    Document(id="tidb", page_content="TiDB stores vectors and SQL rows together"),
    Document(id="pesto", page_content="pesto is made with basil", metadata={"lang": "it"}),
    Document(id="hnsw", page_content="TiDB builds an HNSW index for vectors"),
]


@pytest.fixture
def reranker(fake_server: FakeEmbeddingServer) -> JinaRerank:
    return JinaRerank(jina_api_key=API_KEY, base_url=fake_server.url, top_n=2)


def test_rerank_orders_keeps_ids_and_adds_scores(
    reranker: JinaRerank, fake_server: FakeEmbeddingServer
) -> None:
    fake_server.reset()
    ranked = reranker.compress_documents(DOCS, "basil pesto")
    assert ranked[0].id == "pesto"
    assert len(ranked) == 2
    assert ranked[0].metadata["lang"] == "it"
    scores = [d.metadata["relevance_score"] for d in ranked]
    assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    [request] = fake_server.api_requests("/v1/rerank")
    assert request.body["model"] == "jina-reranker-v2-base-multilingual"
    assert request.body["top_n"] == 2
    assert DOCS[1].metadata == {"lang": "it"}  # inputs are not mutated


async def test_rerank_async_and_edge_cases(reranker: JinaRerank) -> None:
    ranked = await reranker.acompress_documents(DOCS, "HNSW index")
    assert ranked[0].id == "hnsw"
    assert await reranker.acompress_documents([], "anything") == []
    assert reranker.compress_documents([], "anything") == []
    everything = reranker.model_copy(update={"top_n": None})
    assert len(everything.compress_documents(DOCS, "TiDB")) == 3
    with pytest.raises(InvalidInputError):
        reranker.compress_documents([Document(page_content=" ")], "TiDB")


def test_rerank_key_is_secret(fake_server: FakeEmbeddingServer) -> None:
    reranker = JinaRerank(api_key="jina_hidden_key", base_url=fake_server.url)
    assert "jina_hidden_key" not in repr(reranker)


def _format(docs: list[Document]) -> str:
    return "\n".join(d.page_content for d in docs)


async def test_lcel_rag_chain_gets_the_right_context(
    make_store: Callable[..., TiDBVectorStore], jina: JinaEmbeddings, reranker: JinaRerank
) -> None:
    store = make_store(jina)
    store.add_documents(DOCS)
    retriever = store.as_retriever(search_kwargs={"k": 2})
    prompts: list[str] = []

    def capture(prompt: PromptValue) -> PromptValue:
        prompts.append(prompt.to_string())
        return prompt

    prompt = ChatPromptTemplate.from_template("Context:\n{context}\n\nQuestion: {question}")
    chain = (
        {"context": retriever | _format, "question": RunnablePassthrough()}
        | prompt
        | RunnableLambda(capture)
        | FakeListChatModel(responses=["Basil."])
        | StrOutputParser()
    )
    assert chain.invoke("what is pesto made with? basil") == "Basil."
    assert "pesto is made with basil" in prompts[0]
    assert await chain.ainvoke("does TiDB store vectors") == "Basil."
    assert "TiDB stores vectors" in prompts[1] and "pesto" not in prompts[1]

    reranked = retriever | RunnableLambda(
        lambda docs: reranker.compress_documents(docs, "HNSW index")
    )
    assert reranked.invoke("TiDB vectors")[0].id == "hnsw"
