"""The TiDB + Jina AI tutorial, written with tidb-jina.

PingCAP's tutorial "Integrate TiDB Vector Search with Jina AI Embeddings API"
(docs.pingcap.com, vector-search-integrate-with-jinaai-embedding) embeds two texts with
jina-embeddings-v2-base-en, stores them in a ``VECTOR`` column and prints every document's
cosine distance to "What is TiDB?", then the most relevant one. This script prints the same
three sections in the same format, with ``VectorTable`` and ``JinaClient`` doing the SQL
and the HTTP.

Env vars read:

- ``JINAAI_API_KEY`` (the tutorial's name) or ``JINA_API_KEY``: the Jina key; without
  one, the offline ``LexicalEmbedder`` stands in and the first line says so;
- ``TIDB_DATABASE_URL``: the TiDB to use (the tutorial's ``TIDB_DATABASE_URL``); default:
  the embedded engine in a temporary file.
"""

from __future__ import annotations

from _common import JINA_KEY_ENV, database, first_env

from tidb_jina import JinaClient, SearchResult, VectorTable
from tidb_jina.embeddings import EmbeddingProvider
from tidb_jina.testing import LexicalEmbedder

MODEL = "jina-embeddings-v2-base-en"  # the tutorial's model (768 dimensions)
TEXTS = [
    "Jina AI offers best-in-class embeddings, reranker and prompt optimizer, "
    "enabling advanced multimodal AI.",
    "TiDB is an open-source MySQL-compatible database that supports Hybrid "
    "Transactional and Analytical Processing (HTAP) workloads.",
]
QUERY = "What is TiDB?"


def embedder() -> EmbeddingProvider:
    """The tutorial's Jina model when a key is set, else the offline stand-in."""
    key = first_env(JINA_KEY_ENV)
    if key:
        print(f"Embeddings: Jina AI {MODEL}.")
        return JinaClient(model=MODEL, api_key=key)
    print(
        "Embeddings: offline LexicalEmbedder (no JINAAI_API_KEY / JINA_API_KEY set; get a "
        "free key at https://jina.ai for real embeddings)."
    )
    return LexicalEmbedder()


def print_hit(hit: SearchResult) -> None:
    """The tutorial's two lines per document."""
    print(f"  - distance: {hit.distance}\n    content: {hit.document}")


def main() -> None:
    provider = embedder()
    with database(filename="jina_tidb_demo.db") as url:
        table = VectorTable(
            url, table_name="jina_ai_tidb_demo", drop_existing=True, embedder=provider
        )
        table.add_texts(TEXTS, ids=["1", "2"])
        hits = table.search_text(QUERY, k=len(TEXTS))

        print("- List all documents and their distances to the query:")
        for hit in sorted(hits, key=lambda h: int(h.id)):  # stored order, as the tutorial
            print_hit(hit)
        print("- The most relevant document and its distance to the query:")
        print_hit(hits[0])
        table.drop()
        table.engine.dispose()


if __name__ == "__main__":
    main()
