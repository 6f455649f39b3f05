"""Reranking: retrieve candidates by vector search, then let a Jina reranker reorder them.

Retrieves 6 candidates for a question from a core ``VectorTable``, then reranks them three
ways: with the core ``JinaClient.rerank``, with LangChain's ``JinaRerank`` document
compressor and with LlamaIndex's ``JinaRerank`` node postprocessor (all from this package).
It prints each ranking with the reranker's relevance scores.

With ``JINA_API_KEY`` / ``JINAAI_API_KEY`` set, the real Jina reranker
(jina-reranker-v2-base-multilingual) is called. Without a key, ``FakeEmbeddingServer`` is
started in-process on 127.0.0.1 and the clients are pointed at it (its scores are word
overlap); the output says which.

Env vars read: ``JINA_API_KEY`` / ``JINAAI_API_KEY``, ``HF_TOKEN`` (embeddings when there
is no Jina key), ``TIDB_DATABASE_URL`` (TiDB instead of the embedded engine).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from _common import (
    JINA_KEY_ENV,
    choose_embedder,
    core_provider,
    database,
    describe_database,
    first_env,
    load_corpus,
    shorten,
    split_record,
)
from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, TextNode

from tidb_jina import JinaClient, SearchResult, VectorTable
from tidb_jina.testing import FakeEmbeddingServer

QUESTION = "Which component reorders search results by relevance to the query?"
OFFLINE_KEY = "offline-demo-key"


@contextmanager
def reranker_endpoint() -> Iterator[tuple[str | None, str | None]]:
    """``(api_key, base_url)`` of the real Jina API, or of an in-process fake server."""
    key = first_env(JINA_KEY_ENV)
    if key:
        print("Reranker: Jina AI jina-reranker-v2-base-multilingual (JINA_API_KEY).")
        yield key, None
        return
    with FakeEmbeddingServer(api_key=OFFLINE_KEY) as server:
        print(
            f"Reranker: offline, FakeEmbeddingServer at {server.url} stands in for "
            "api.jina.ai (scores are word overlap); set JINA_API_KEY for the real reranker."
        )
        yield OFFLINE_KEY, server.url


def candidates(url: str) -> list[SearchResult]:
    """The 6 nearest records to the question, by vector search."""
    table = VectorTable(
        url, table_name="rerank_docs", drop_existing=True, embedder=core_provider(choose_embedder())
    )
    ids, texts, metadatas = zip(*(split_record(r) for r in load_corpus()), strict=True)
    table.add_texts(list(texts), ids=list(ids), metadatas=list(metadatas))
    hits = table.search_text(QUESTION, k=6)
    table.drop()
    table.engine.dispose()
    return hits


def rerank_three_ways(hits: list[SearchResult], api_key: str | None, base_url: str | None) -> None:
    """The same reranking through the core client, LangChain and LlamaIndex."""
    from langchain_tidb_jina import JinaRerank as LangChainJinaRerank
    from llama_index_tidb_jina import JinaRerank as LlamaIndexJinaRerank

    docs = [hit.document or "" for hit in hits]
    with JinaClient(api_key=api_key, base_url=base_url) as client:
        print("\nCore JinaClient.rerank (top 3):")
        for r in client.rerank(QUESTION, docs, top_n=3):
            print(f"  {r.score:.3f}  {hits[r.index].id:18s} {shorten(docs[r.index], 55)}")

    compressor = LangChainJinaRerank(top_n=3, api_key=api_key, base_url=base_url)
    lc_docs = [Document(page_content=d, id=h.id) for d, h in zip(docs, hits, strict=True)]
    print("\nLangChain JinaRerank.compress_documents (top 3):")
    for doc in compressor.compress_documents(lc_docs, QUESTION):
        score = doc.metadata["relevance_score"]
        print(f"  {score:.3f}  {doc.id:18s} {shorten(doc.page_content, 55)}")

    postprocessor = LlamaIndexJinaRerank(top_n=3, api_key=api_key, base_url=base_url)
    nodes = [
        NodeWithScore(node=TextNode(text=d, id_=h.id), score=h.score)
        for d, h in zip(docs, hits, strict=True)
    ]
    print("\nLlamaIndex JinaRerank.postprocess_nodes (top 3):")
    for node in postprocessor.postprocess_nodes(nodes, query_str=QUESTION):
        print(f"  {node.score:.3f}  {node.node.node_id:18s} {shorten(node.get_content(), 55)}")


def main() -> None:
    print(choose_embedder().note)
    with reranker_endpoint() as (api_key, base_url), database(filename="rerank.db") as url:
        print(describe_database(url))
        hits = candidates(url)
        print(f'\nQuestion: "{QUESTION}"\nVector search candidates (k=6):')
        for hit in hits:
            print(f"  {hit.score:.3f}  {hit.id:18s} {shorten(hit.document or '', 55)}")
        rerank_three_ways(hits, api_key, base_url)


if __name__ == "__main__":
    main()
