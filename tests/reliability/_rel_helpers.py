"""Shared pieces of the reliability suite (a unique module name: tests/ has no packages).

``ingest`` / ``aingest`` are the "add documents" pipeline the adapters run: embed one batch
of texts with a core client, upsert that batch, move on. A failure stops the pipeline with
the batches before it committed, exactly as LangChain's ``add_texts`` and LlamaIndex's
``add`` behave on top of the core.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from tidb_jina.embeddings import JinaClient
from tidb_jina.store import VectorTable
from tidb_jina.testing import lexical_embedding

KEY = "jina_reliability_key_0123456789abcdefSECRET"
DB_PASSWORD = "db-pa55-w0rd-SECRET"
FAST = {"backoff_base": 0.001, "backoff_max": 0.005}
DIM = 64
MODEL = "jina-embeddings-v3"
FAULT_DOCS = int(os.environ.get("TIDB_JINA_FAULT_DOCS", "600"))


def texts_for(n: int, start: int = 0) -> list[str]:
    """Distinct, word-rich texts: their lexical vectors tell them apart."""
    return [f"document {i} about topic{i % 37} and word{i % 101} tail{i}" for i in range(start, n)]


def ids_for(n: int, start: int = 0) -> list[str]:
    return [f"doc-{i:06d}" for i in range(start, n)]


def metas_for(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"i": i, "group": f"g{i % 7}"} for i in range(start, n)]


def expected_vectors(texts: Sequence[str], dim: int = DIM) -> np.ndarray:
    """What the fake server answers for ``texts`` (Jina v3 with ``dimensions=dim``)."""
    return lexical_embedding(list(texts), dim)


def jina_client(url: str, **kwargs: Any) -> JinaClient:
    options: dict[str, Any] = {
        "api_key": KEY,
        "base_url": url,
        "model": MODEL,
        "dimensions": DIM,
        **FAST,
    }
    options.update(kwargs)
    return JinaClient(**options)


def ingest(
    client: Any,
    table: VectorTable,
    texts: Sequence[str],
    ids: Sequence[str],
    metadatas: Sequence[dict[str, Any]] | None = None,
    *,
    batch_size: int = 64,
    after_batch: Callable[[int], None] | None = None,
) -> int:
    """Embed and upsert batch by batch; returns how many batches were committed."""
    committed = 0
    for start in range(0, len(texts), batch_size):
        end = start + batch_size
        vectors = client.embed_documents(list(texts[start:end]))
        table.upsert(
            vectors,
            ids=list(ids[start:end]),
            documents=list(texts[start:end]),
            metadatas=None if metadatas is None else list(metadatas[start:end]),
        )
        committed += 1
        if after_batch is not None:
            after_batch(committed)
    return committed


async def aingest(
    client: Any,
    table: VectorTable,
    texts: Sequence[str],
    ids: Sequence[str],
    metadatas: Sequence[dict[str, Any]] | None = None,
    *,
    batch_size: int = 64,
    after_batch: Callable[[int], None] | None = None,
) -> int:
    """The async twin of :func:`ingest` (``aembed_documents`` + ``table.aio.upsert``)."""
    committed = 0
    for start in range(0, len(texts), batch_size):
        end = start + batch_size
        vectors = await client.aembed_documents(list(texts[start:end]))
        await table.aio.upsert(
            vectors,
            ids=list(ids[start:end]),
            documents=list(texts[start:end]),
            metadatas=None if metadatas is None else list(metadatas[start:end]),
        )
        committed += 1
        if after_batch is not None:
            after_batch(committed)
    return committed


def assert_stored_exactly(
    table: VectorTable,
    texts: Sequence[str],
    ids: Sequence[str],
    metadatas: Sequence[dict[str, Any]] | None = None,
) -> None:
    """The table holds exactly these rows, once each, with the right vector and fields."""
    assert table.count() == len(ids)
    records = table.get(include_embeddings=True)
    assert [r.id for r in records] == sorted(ids)  # get() orders by id; no extra, none missing
    by_id = {r.id: r for r in records}
    expected = expected_vectors(texts)
    for i, rid in enumerate(ids):
        record = by_id[rid]
        assert record.document == texts[i]
        if metadatas is not None:
            assert record.metadata == metadatas[i]
        np.testing.assert_allclose(record.embedding, expected[i], rtol=0, atol=1e-6)


def table_snapshot(table: VectorTable) -> list[tuple[Any, ...]]:
    """Every stored row, exactly (raw columns), for "the table is unchanged" checks."""
    if not table.exists():
        return []
    t = table.table
    assert t is not None
    with table.engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.c.id, t.c.embedding, t.c.document, t.c.meta).order_by(t.c.id)
        ).all()
    return [(r[0], np.asarray(r[1]).tobytes(), r[2], r[3]) for r in rows]


def sqlite_tables(table: VectorTable) -> list[str]:
    with table.engine.connect() as conn:
        return sorted(
            conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'").scalars()
        )
