"""Hybrid search on TiDB: vector search and BM25 full-text search, fused.

Stores the bundled corpus in a core ``VectorTable`` (with an embedder), then runs one query
three ways and prints each ranking: vector only (``search_text``), full-text only
(``full_text_search``, TiDB's ``FTS_MATCH_WORD`` semantics: words OR-ed, BM25), and hybrid
(``hybrid_search``) with reciprocal rank fusion and with weighted fusion (``alpha``). Then
the same hybrid query from LlamaIndex (``VectorStoreQueryMode.HYBRID``).

Full-text search runs on the embedded engine (FTS5) and on TiDB Cloud Starter; on
self-managed TiDB the full-text parts are skipped with a note.

Env vars read: ``JINA_API_KEY`` / ``JINAAI_API_KEY`` (Jina embeddings) or ``HF_TOKEN``
(Hugging Face); without either, the offline ``LexicalEmbedder`` (first line says so).
``TIDB_DATABASE_URL``: TiDB instead of the embedded engine.
"""

from __future__ import annotations

from _common import (
    choose_embedder,
    core_provider,
    database,
    describe_database,
    load_corpus,
    shorten,
    split_record,
)

from tidb_jina import SearchResult, UnsupportedFeatureError, VectorTable

QUERY = "BM25 full-text search with reciprocal rank fusion"


def show(title: str, hits: list[SearchResult]) -> None:
    """One ranking: fused/vector score, raw BM25 when the words matched, id, text."""
    print(f"\n{title}")
    for hit in hits:
        bm25 = f"bm25={hit.text_score:5.2f}" if hit.text_score is not None else " " * 10
        print(f"  {hit.score:.3f} {bm25}  {hit.id:18s} {shorten(hit.document or '', 55)}")


def llamaindex_hybrid(table: VectorTable, query_vector: list[float]) -> None:
    """The same query through LlamaIndex's HYBRID mode (alpha=0.5: weighted fusion)."""
    from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

    from llama_index_tidb_jina import TiDBVectorStore

    store = TiDBVectorStore(connection_string=table.engine, table_name=table.table_name)
    result = store.query(
        VectorStoreQuery(
            query_embedding=query_vector,
            query_str=QUERY,
            similarity_top_k=3,
            mode=VectorStoreQueryMode.HYBRID,
            alpha=0.5,
        )
    )
    print("\nLlamaIndex VectorStoreQueryMode.HYBRID (alpha=0.5):")
    for node, score in zip(result.nodes or [], result.similarities or [], strict=True):
        print(f"  {score:.3f}  {node.node_id:18s} {shorten(node.get_content(), 55)}")


def main() -> None:
    choice = choose_embedder()
    print(choice.note)
    with database(filename="hybrid.db") as url:
        print(describe_database(url))
        table = VectorTable(
            url, table_name="hybrid_docs", drop_existing=True, embedder=core_provider(choice)
        )
        ids, texts, metadatas = zip(*(split_record(r) for r in load_corpus()), strict=True)
        table.add_texts(list(texts), ids=list(ids), metadatas=list(metadatas))
        print(f'Query: "{QUERY}"')
        vector = table.text_embedder().embed_query(QUERY)
        show("Vector search only:", table.search(vector, k=3))
        try:
            if table.is_tidb_starter:
                table.create_full_text_index()
            show("Full-text search only (BM25):", table.full_text_search(QUERY, k=3))
            show("Hybrid, reciprocal rank fusion:", table.hybrid_search(vector, QUERY, k=3))
            show(
                "Hybrid, weighted (alpha=0.7 vector, 0.3 BM25):",
                table.hybrid_search(vector, QUERY, k=3, fusion="weighted", alpha=0.7),
            )
            llamaindex_hybrid(table, vector.tolist())
        except UnsupportedFeatureError as exc:
            print(f"\nFull-text and hybrid search skipped: {exc}")
        table.drop()
        table.engine.dispose()


if __name__ == "__main__":
    main()
