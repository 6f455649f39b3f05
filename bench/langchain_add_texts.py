"""LangChain ``add_texts`` with tidb-jina's own embeddings against doing the same by hand.

Measures the translation cost of ``langchain_tidb_jina.TiDBVectorStore.add_texts`` (and
``aadd_texts``) on the embedded in-memory engine, with an instant embedding provider (no
network: it returns slices of a precomputed float32 matrix), so only the store's own work
shows.

Baseline (same run, same provider, same rows, each run on a fresh in-memory database):
the provider's ``embed_documents`` (``aembed_documents``) then ``VectorTable.upsert``
(``table.aio.upsert``) with that matrix, ids, texts and metadata. Before the adapter
passed the matrix through, it turned it into Python float lists and back (3.8 s per
10,000 x 1024 vectors, against 0.61 s for the whole upsert).

Goal: within 1.2x of the baseline.

    python bench/langchain_add_texts.py [--n 10000] [--dim 1024] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from _common import Row, random_vectors, table, timed

from langchain_tidb_jina import ProviderEmbeddings, TiDBVectorStore
from tidb_jina.store import VectorTable


class InstantProvider:
    """An ``EmbeddingProvider`` answering at once: rows of a precomputed float32 matrix."""

    model = "instant"

    def __init__(self, vectors: np.ndarray) -> None:
        self._vectors = vectors

    @property
    def dimension(self) -> int:
        return int(self._vectors.shape[1])

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._vectors[: len(texts)]

    def embed_query(self, text: str) -> np.ndarray:
        return self._vectors[0]

    async def aembed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> np.ndarray:
        return self.embed_query(text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    provider = InstantProvider(random_vectors(args.n, args.dim))
    embeddings = ProviderEmbeddings(provider=provider)
    texts = [f"document number {i}" for i in range(args.n)]
    ids = [str(i) for i in range(args.n)]
    metas = [{"group": i % 10} for i in range(args.n)]

    def ours(t: VectorTable) -> object:
        store = TiDBVectorStore(vector_table=t, embedding=embeddings)
        return store.add_texts(texts, metas, ids=ids)

    def by_hand(t: VectorTable) -> object:
        return t.upsert(provider.embed_documents(texts), ids=ids, documents=texts, metadatas=metas)

    async def aours(t: VectorTable) -> object:
        store = TiDBVectorStore(vector_table=t, embedding=embeddings)
        return await store.aadd_texts(texts, metas, ids=ids)

    async def aby_hand(t: VectorTable) -> object:
        vectors = await provider.aembed_documents(texts)
        return await t.aio.upsert(vectors, ids=ids, documents=texts, metadatas=metas)

    contestants: dict[str, Callable[[VectorTable], Any]] = {
        "ours": ours,
        "by_hand": by_hand,
        # In memory, VectorTable.aio runs on a worker thread: no async pool to close.
        "aours": lambda t: asyncio.run(aours(t)),
        "aby_hand": lambda t: asyncio.run(aby_hand(t)),
    }
    for fn in contestants.values():  # warm-up: imports and first use, not timed
        warm_up = VectorTable("sqlite://", table_name="bench")
        fn(warm_up)
        warm_up.close()
    times: dict[str, list[float]] = {name: [] for name in contestants}
    order = list(contestants.items())
    for round_ in range(args.repeat):  # interleaved, so machine noise hits all of them alike
        # Alternate the order too: whoever runs first after an async round pays for it.
        for name, fn in order if round_ % 2 == 0 else order[::-1]:
            t = VectorTable("sqlite://", table_name="bench")
            gc.collect()  # start each contestant with the previous one's garbage gone
            times[name].append(timed(lambda fn=fn, t=t: fn(t)))
            assert t.count() == args.n
            t.close()

    median = {name: statistics.median(values) for name, values in times.items()}
    hand = "embed_documents + VectorTable.upsert"
    print(
        f"## LangChain add_texts, {args.n:,} x {args.dim} float32, instant provider, "
        f"embedded in memory (median of {args.repeat})\n"
    )
    print(
        table(
            [
                Row("add_texts", median["ours"], hand, median["by_hand"], "<= 1.2x", 1.2),
                Row(
                    "aadd_texts",
                    median["aours"],
                    "aembed_documents + aio.upsert",
                    median["aby_hand"],
                    "<= 1.2x",
                    1.2,
                ),
            ]
        )
    )


if __name__ == "__main__":
    main()
