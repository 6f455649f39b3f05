"""Quickstart: store documents with their vectors, then search them.

Runs on the embedded engine (a local SQLite file, no server needed) unless
``TIDB_DATABASE_URL`` is set, in which case the same code runs on TiDB.

Env vars read: ``TIDB_DATABASE_URL`` (optional), ``QUICKSTART_DB`` (optional path of
the embedded database file; default: a temporary file).

The vectors here are hand-made 4-d "topic" vectors (tidb, jina, cooking, travel) so the
demo needs no API key; later versions embed the texts with Jina AI or Hugging Face.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tidb_jina.store import VectorTable

DOCS = [
    (
        "tidb-1",
        "TiDB is a distributed SQL database compatible with MySQL.",
        [0.9, 0.1, 0.0, 0.0],
        {"topic": "database", "year": 2024},
    ),
    (
        "tidb-2",
        "TiDB stores vectors in a VECTOR(D) column and searches them.",
        [0.8, 0.3, 0.0, 0.1],
        {"topic": "database", "year": 2025},
    ),
    (
        "jina-1",
        "Jina AI embeddings turn text into vectors for retrieval.",
        [0.3, 0.9, 0.0, 0.0],
        {"topic": "ai", "year": 2025},
    ),
    (
        "cook-1",
        "Slow-cooked ragu needs three hours on a low flame.",
        [0.0, 0.0, 1.0, 0.1],
        {"topic": "food", "year": 2023},
    ),
    (
        "trip-1",
        "Kyoto in autumn: temples, maple leaves and quiet trains.",
        [0.0, 0.1, 0.1, 0.9],
        {"topic": "travel", "year": 2024},
    ),
]


def main() -> None:
    url = os.environ.get("TIDB_DATABASE_URL")
    if not url:
        path = os.environ.get("QUICKSTART_DB") or str(Path(tempfile.mkdtemp()) / "quickstart.db")
        url = f"sqlite:///{path}"
    table = VectorTable(url, table_name="quickstart_docs", drop_existing=True)
    print(f"Using {table!r}")

    ids, texts, vectors, metadatas = zip(*DOCS, strict=True)
    table.upsert(vectors, ids=ids, documents=texts, metadatas=metadatas)
    print(f"Stored {table.count()} documents with {table.dimension}-d vectors\n")

    query = [0.85, 0.2, 0.0, 0.05]  # "a question about TiDB"
    print("Nearest to a TiDB question:")
    for hit in table.search(query, k=3):
        print(f"  {hit.score:.3f}  {hit.id:7s} {hit.document}")

    print("\nSame question, only documents from 2025 onwards:")
    for hit in table.search(query, k=3, filter={"year": {"$gte": 2025}}):
        print(f"  {hit.score:.3f}  {hit.id:7s} {hit.document}")

    print("\nDiverse results (maximal marginal relevance):")
    for hit in table.max_marginal_relevance_search(query, k=3, fetch_k=5, lambda_mult=0.3):
        print(f"  {hit.score:.3f}  {hit.id:7s} {hit.document}")

    deleted = table.delete(filter={"topic": "food"})
    print(f"\nDeleted {deleted} food document(s); {table.count()} left.")
    table.drop()


if __name__ == "__main__":
    main()
