"""Quickstart: ingest the bundled corpus, search it four ways, and build a RAG prompt.

What it shows, with the core ``tidb_jina.store.VectorTable`` and an embedder:

1. ingest ``examples/data/corpus.jsonl`` (text + metadata) with ``add_texts``;
2. plain semantic search, a metadata-filtered search, a diverse (MMR) search and a hybrid
   (vector + BM25 full-text) search;
3. retrieval for RAG: the context for a question and the prompt an LLM would receive.

Env vars read (all optional; the example never fails for lack of them):

- ``JINA_API_KEY`` / ``JINAAI_API_KEY``: embed with Jina AI jina-embeddings-v3;
- ``HF_TOKEN``: embed with Hugging Face multilingual-e5-large (when no Jina key);
  with neither, the offline ``LexicalEmbedder`` is used and the first line says so;
- ``TIDB_DATABASE_URL``: run on TiDB instead of the embedded engine;
- ``QUICKSTART_DB``: path of the embedded database file (default: a temporary file).
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

from tidb_jina import SearchResult, TiDBJinaError, VectorTable

TABLE = "quickstart_docs"
QUESTION = "How does TiDB search embeddings in SQL?"
PROMPT = """You are a helpful assistant. Answer the question using only the context.
If the context does not contain the answer, say you do not know.

Context:
{context}

Question: {question}
Answer:"""


def show(title: str, hits: list[SearchResult]) -> None:
    """Print a titled block of hits: score, id, text."""
    print(f"\n{title}")
    for hit in hits:
        print(f"  {hit.score:.3f}  {hit.id:20s} {shorten(hit.document or '', 70)}")


def ingest(table: VectorTable) -> None:
    """Embed and store every record of the bundled corpus."""
    ids, texts, metadatas = zip(*(split_record(r) for r in load_corpus()), strict=True)
    table.add_texts(list(texts), ids=list(ids), metadatas=list(metadatas))
    print(f"Stored {table.count()} documents from examples/data/corpus.jsonl ", end="")
    print(f"({table.dimension}-d vectors, table {TABLE})")


def searches(table: VectorTable, query_vector: object) -> None:
    """Plain, filtered, MMR and hybrid search for the same question."""
    print(f'\nQuestion: "{QUESTION}"')
    show("1. Semantic search (k=3):", table.search(query_vector, k=3))
    show(
        '2. Filtered search, topic = "database" and year >= 2025:',
        table.search(query_vector, k=3, filter={"topic": "database", "year": {"$gte": 2025}}),
    )
    show(
        "3. Diverse results (maximal marginal relevance):",
        table.max_marginal_relevance_search(query_vector, k=3, fetch_k=8, lambda_mult=0.3),
    )
    try:
        hits = table.hybrid_search(query_vector, QUESTION, k=3)
    except TiDBJinaError as exc:  # full-text search needs TiDB Cloud Starter on TiDB
        print(f"\n4. Hybrid search skipped: {exc}")
    else:
        show("4. Hybrid search (vector + BM25, reciprocal rank fusion):", hits)


def rag_prompt(table: VectorTable) -> None:
    """Retrieve context for a question and print the prompt an LLM would get."""
    question = "What does a TiDB vector index need?"
    hits = table.search_text(question, k=2)
    context = "\n".join(f"[{i}] {hit.document}" for i, hit in enumerate(hits, 1))
    print("\n5. RAG: the prompt that would go to an LLM (sources: ", end="")
    print(", ".join(hit.id for hit in hits) + ")")
    print("-" * 72)
    print(PROMPT.format(context=context, question=question))
    print("-" * 72)


def main() -> None:
    choice = choose_embedder()
    print(choice.note)
    with database("QUICKSTART_DB", "quickstart.db") as url:
        print(describe_database(url))
        table = VectorTable(
            url, table_name=TABLE, drop_existing=True, embedder=core_provider(choice)
        )
        ingest(table)
        if table.is_tidb_starter:  # hybrid search on TiDB needs the full-text index
            table.create_full_text_index()
        searches(table, table.text_embedder().embed_query(QUESTION))
        rag_prompt(table)
        table.engine.dispose()


if __name__ == "__main__":
    main()
