"""Auto-embedding: a table that embeds its own documents and queries.

``VectorTable(url, auto_embedding="jina_ai/jina-embeddings-v3")`` takes text in and out:
``add_texts`` stores documents, ``search_text`` searches by a question, and nobody calls an
embedding API by hand.

- On TiDB Cloud Starter (``TIDB_DATABASE_URL`` pointing at ``*.tidbcloud.com`` Starter) the
  database embeds: the ``embedding`` column is ``GENERATED ALWAYS AS (EMBED_TEXT(...))`` and
  searches use ``VEC_EMBED_COSINE_DISTANCE``. The Jina key (``JINA_API_KEY``) is stored once
  in TiDB's ``TIDB_EXP_EMBED_JINA_AI_API_KEY``, unless the cluster already has one.
- Anywhere else (embedded engine, self-managed TiDB) the same table embeds on the client
  with the core ``JinaClient``: with ``JINA_API_KEY`` / ``JINAAI_API_KEY`` the real API, and
  offline a ``FakeEmbeddingServer`` started in-process stands in for api.jina.ai.

The first line says which of the three runs. Then it prints the ``EMBED_TEXT`` column TiDB
Cloud would use, the stored count and the search results.

Env vars read: ``TIDB_DATABASE_URL``, ``JINA_API_KEY`` / ``JINAAI_API_KEY``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from _common import JINA_KEY_ENV, database, first_env, load_corpus, shorten, split_record
from sqlalchemy.dialects import mysql

from tidb_jina import AutoEmbedding, JinaClient, VectorTable
from tidb_jina.embeddings import EmbeddingProvider
from tidb_jina.testing import FakeEmbeddingServer

MODEL = "jina_ai/jina-embeddings-v3"
QUESTION = "Where can I see temples and maple leaves?"
OFFLINE_KEY = "offline-demo-key"


@contextmanager
def table_for(url: str) -> Iterator[VectorTable]:
    """The auto-embedding table, and a first line saying who embeds."""
    name = "auto_embedding_docs"
    probe = VectorTable(url, table_name=name)
    if probe.is_tidb_starter:
        print(f"Auto-embedding: TiDB Cloud Starter embeds in the database ({MODEL}, EMBED_TEXT).")
        yield VectorTable(url, table_name=name, drop_existing=True, auto_embedding=MODEL)
        return
    where = "the embedded engine" if url.startswith("sqlite") else "self-managed TiDB"
    if first_env(JINA_KEY_ENV):
        print(f"Auto-embedding: {where}; the client embeds with the Jina API ({MODEL}).")
        yield VectorTable(url, table_name=name, drop_existing=True, auto_embedding=MODEL)
        return
    with FakeEmbeddingServer(api_key=OFFLINE_KEY) as server:
        print(
            f"Auto-embedding: offline, {where}; FakeEmbeddingServer at {server.url} stands in "
            f"for the Jina API ({MODEL}). Set JINA_API_KEY for real embeddings, and "
            "TIDB_DATABASE_URL to a TiDB Cloud Starter cluster for in-database EMBED_TEXT."
        )
        client: EmbeddingProvider = JinaClient(api_key=OFFLINE_KEY, base_url=server.url)
        yield VectorTable(
            url, table_name=name, drop_existing=True, auto_embedding=MODEL, embedder=client
        )


def main() -> None:
    with database(filename="auto_embedding.db") as url, table_for(url) as table:
        auto = AutoEmbedding(MODEL)
        print(
            f"TiDB Cloud column: embedding VECTOR({auto.resolved_dimension()}) GENERATED ALWAYS AS"
        )
        print(f"  ({auto.generated_sql(mysql.dialect())}) STORED")
        records = [split_record(r) for r in load_corpus()]
        table.add_texts(
            [text for _, text, _ in records],
            ids=[key for key, _, _ in records],
            metadatas=[meta for _, _, meta in records],
        )
        print(f"Stored {table.count()} documents as text; the table made the vectors.")
        print(f'\nsearch_text("{QUESTION}"):')
        for hit in table.search_text(QUESTION, k=3):
            print(f"  {hit.score:.3f}  {hit.id:18s} {shorten(hit.document or '', 55)}")
        print('\nsearch_text("TiDB vector index", filter={"year": 2025}):')
        for hit in table.search_text("TiDB vector index", k=2, filter={"year": 2025}):
            print(f"  {hit.score:.3f}  {hit.id:18s} {shorten(hit.document or '', 55)}")
        table.drop()
        table.engine.dispose()


if __name__ == "__main__":
    main()
