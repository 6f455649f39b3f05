"""End to end: VectorStoreIndex + query engine + retriever + agent tool + reranker."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.core.tools import QueryEngineTool
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from llama_index_tidb_jina import JinaRerank, ProviderEmbedding, TiDBVectorStore
from tidb_jina.testing import FakeEmbeddingServer

KEY = "jina_llama_rerank_key_0123456789"

DOCUMENTS = [
    Document(
        text="TiDB is a distributed SQL database that stores vectors next to rows.",
        doc_id="doc-tidb",
        metadata={"topic": "database", "year": 2024},
    ),
    Document(
        text="Jina embeddings turn sentences into vectors for semantic search.",
        doc_id="doc-jina",
        metadata={"topic": "embeddings", "year": 2025},
    ),
    Document(
        text="A tomato pasta recipe: boil the pasta, simmer the tomato sauce.",
        doc_id="doc-pasta",
        metadata={"topic": "cooking", "year": 2023},
    ),
]


@pytest.fixture
def index(
    make_store: Callable[..., TiDBVectorStore], embed_model: ProviderEmbedding
) -> VectorStoreIndex:
    storage_context = StorageContext.from_defaults(vector_store=make_store())
    return VectorStoreIndex.from_documents(
        DOCUMENTS, storage_context=storage_context, embed_model=embed_model
    )


@pytest.fixture
def server() -> Iterator[FakeEmbeddingServer]:
    with FakeEmbeddingServer(api_key=KEY) as fake:
        yield fake


def test_query_engine_and_retriever(index: VectorStoreIndex) -> None:
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=1)
    response = engine.query("which database stores vectors?")
    assert [n.node.ref_doc_id for n in response.source_nodes] == ["doc-tidb"]
    assert response.response  # MockLLM echoes the prompt
    retriever = index.as_retriever(similarity_top_k=2)
    hits = retriever.retrieve("tomato pasta recipe")
    assert hits[0].node.ref_doc_id == "doc-pasta"
    assert 0.0 <= hits[1].score < hits[0].score <= 1.0


async def test_async_query_engine_and_retriever(index: VectorStoreIndex) -> None:
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=1, use_async=True)
    response = await engine.aquery("jina embeddings for semantic search")
    assert response.source_nodes[0].node.ref_doc_id == "doc-jina"
    hits = await index.as_retriever(similarity_top_k=3).aretrieve("pasta")
    assert hits[0].node.ref_doc_id == "doc-pasta"


def test_retriever_filters_and_doc_ids(index: VectorStoreIndex) -> None:
    recent = MetadataFilters(
        filters=[MetadataFilter(key="year", value=2024, operator=FilterOperator.GTE)]
    )
    hits = index.as_retriever(similarity_top_k=3, filters=recent).retrieve("pasta vectors")
    assert sorted(h.node.ref_doc_id for h in hits) == ["doc-jina", "doc-tidb"]
    hits = index.as_retriever(similarity_top_k=3, doc_ids=["doc-pasta"]).retrieve("database")
    assert [h.node.ref_doc_id for h in hits] == ["doc-pasta"]


def test_mmr_retriever(index: VectorStoreIndex) -> None:
    retriever = index.as_retriever(
        similarity_top_k=2, vector_store_query_mode="mmr", vector_store_kwargs={"mmr_prefetch_k": 3}
    )
    hits = retriever.retrieve("vectors")
    assert len(hits) == 2


def test_insert_and_delete_ref_doc(index: VectorStoreIndex) -> None:
    index.insert(Document(text="TiDB Cloud Starter is serverless.", doc_id="doc-cloud"))
    hits = index.as_retriever(similarity_top_k=1).retrieve("tidb cloud starter serverless")
    assert hits[0].node.ref_doc_id == "doc-cloud"
    index.delete_ref_doc("doc-cloud")
    hits = index.as_retriever(similarity_top_k=4).retrieve("tidb cloud starter serverless")
    assert "doc-cloud" not in {h.node.ref_doc_id for h in hits}


async def test_async_insert_and_delete_ref_doc(index: VectorStoreIndex) -> None:
    await index.ainsert(Document(text="TiDB Cloud Starter is serverless.", doc_id="doc-cloud"))
    hits = await index.as_retriever(similarity_top_k=1).aretrieve("tidb cloud starter")
    assert hits[0].node.ref_doc_id == "doc-cloud"
    await index.adelete_ref_doc("doc-cloud")
    hits = await index.as_retriever(similarity_top_k=4).aretrieve("tidb cloud starter")
    assert "doc-cloud" not in {h.node.ref_doc_id for h in hits}


async def test_query_engine_tool_for_agents(index: VectorStoreIndex) -> None:
    tool = QueryEngineTool.from_defaults(
        query_engine=index.as_query_engine(llm=MockLLM(), similarity_top_k=1),
        name="tidb_docs",
        description="Answers questions about TiDB, Jina and cooking notes.",
    )
    assert tool.metadata.name == "tidb_docs"
    output = tool.call("which database stores vectors?")
    assert output.raw_output.source_nodes[0].node.ref_doc_id == "doc-tidb"
    output = await tool.acall(input="tomato pasta")
    assert output.raw_output.source_nodes[0].node.ref_doc_id == "doc-pasta"


async def test_jina_rerank_postprocessor(server: FakeEmbeddingServer) -> None:
    rerank = JinaRerank(top_n=2, api_key=KEY, base_url=server.url)
    nodes = [
        NodeWithScore(node=TextNode(id_=f"n{i}", text=text), score=0.1)
        for i, text in enumerate(["pasta sauce", "tidb stores vectors", "tidb database sql"])
    ]
    ranked = rerank.postprocess_nodes(nodes, query_str="tidb vectors")
    assert [n.node.node_id for n in ranked] == ["n1", "n2"]
    assert ranked[0].score > ranked[1].score
    ranked = await rerank.apostprocess_nodes(nodes, query_str="pasta")
    assert ranked[0].node.node_id == "n0"
    assert rerank.postprocess_nodes([], query_str="x") == []
    for text in (str(rerank.to_dict()), rerank.to_json(), repr(rerank)):
        assert KEY not in text
    body = server.api_requests("/v1/rerank")[0].body
    assert body["top_n"] == 2 and body["model"] == rerank.model


def test_rerank_in_a_query_engine(index: VectorStoreIndex, server: FakeEmbeddingServer) -> None:
    rerank = JinaRerank(top_n=1, api_key=KEY, base_url=server.url)
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=3, node_postprocessors=[rerank])
    response = engine.query("tomato pasta")
    assert [n.node.ref_doc_id for n in response.source_nodes] == ["doc-pasta"]
