"""LangChain ``retriever.batch(queries)`` against one ``invoke`` per query.

``TiDBVectorStoreRetriever.batch`` / ``abatch`` (search type ``similarity``) embed all
queries together and run one ``VectorTable.search_many`` (one read and one matrix product
on the embedded engine). Baselines, same run, same retriever and queries: a loop of
``invoke`` (``ainvoke``), and LangChain's own ``Runnable.batch`` (``invoke`` per query on
a thread pool), which is what ``batch`` did before. The provider is instant (rows of a
precomputed float32 matrix, ``embed_queries`` for many), so only the search and the
adapter show. Every contestant must return the same documents.

A second retriever, ``search_type="similarity_score_threshold"`` with the same ``k`` and a
``score_threshold`` near the median relevance of the hits (some are cut, every query keeps
its best), is
measured the same way (``Runnable.batch`` is what its ``batch`` did before): its
``batch`` / ``abatch`` also run one ``search_many`` and then langchain-core's own
per-query cut.

Goal: batch at most 0.5x the invoke loop (embedded in memory), both search types.

    python bench/langchain_batch_search.py [--n 20000] [--dim 384] [--queries 64] [--k 10]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

import numpy as np
from _common import Row, paired_per_call, random_vectors, table
from langchain_core.vectorstores import VectorStoreRetriever

from langchain_tidb_jina import ProviderEmbeddings, TiDBVectorStore
from tidb_jina.store import VectorTable


class InstantProvider:
    """Documents are rows of ``vectors``; query ``"q<i>"`` is row ``i`` of ``queries``."""

    model = "instant"

    def __init__(self, vectors: np.ndarray, queries: np.ndarray) -> None:
        self._vectors = vectors
        self._queries = queries

    @property
    def dimension(self) -> int:
        return int(self._vectors.shape[1])

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._vectors[: len(texts)]

    def embed_query(self, text: str) -> np.ndarray:
        return self._queries[int(text[1:])]

    async def aembed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> np.ndarray:
        return self.embed_query(text)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._queries[[int(t[1:]) for t in texts]]

    async def aembed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_queries(texts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    vectors = random_vectors(args.n, args.dim)
    queries = [f"q{i}" for i in range(args.queries)]
    provider = InstantProvider(vectors, random_vectors(args.queries, args.dim, seed=1))
    t = VectorTable("sqlite://", table_name="bench")
    store = TiDBVectorStore(vector_table=t, embedding=ProviderEmbeddings(provider=provider))
    texts = [f"document {i}" for i in range(args.n)]
    store.add_texts(
        texts, [{"group": i % 10} for i in range(args.n)], ids=[str(i) for i in range(args.n)]
    )
    retriever = store.as_retriever(search_kwargs={"k": args.k})
    scores = [
        [score for _, score in store.similarity_search_with_relevance_scores(q, k=args.k)]
        for q in queries
    ]
    # About half the hits cut, but every query keeps its best (no "no relevant docs" log).
    cutoff = min(float(np.median(scores)), min(max(row) for row in scores))
    threshold = store.as_retriever(
        search_type="similarity_score_threshold",
        search_kwargs={"k": args.k, "score_threshold": cutoff},
    )

    def ids(answers: list[list]) -> list[list[str | None]]:
        return [[d.id for d in docs] for docs in answers]

    contestants = {
        "batch": lambda qs: retriever.batch(qs),
        "invoke loop": lambda qs: [retriever.invoke(q) for q in qs],
        "Runnable.batch": lambda qs: VectorStoreRetriever.batch(retriever, qs),
        "abatch": lambda qs: asyncio.run(retriever.abatch(qs)),
        "ainvoke loop": lambda qs: asyncio.run(_ainvoke_loop(retriever, qs)),
    }
    thresholded = {
        "threshold batch": lambda qs: threshold.batch(qs),
        "threshold invoke loop": lambda qs: [threshold.invoke(q) for q in qs],
        "threshold Runnable.batch": lambda qs: VectorStoreRetriever.batch(threshold, qs),
        "threshold abatch": lambda qs: asyncio.run(threshold.abatch(qs)),
        "threshold ainvoke loop": lambda qs: asyncio.run(_ainvoke_loop(threshold, qs)),
    }
    want = ids(contestants["invoke loop"](queries))
    for name, fn in contestants.items():
        assert ids(fn(queries)) == want, f"{name} answers differently"
    cut = ids(thresholded["threshold invoke loop"](queries))
    assert sum(map(len, cut)) < sum(map(len, want)), "the threshold cuts nothing"
    print(f"threshold {cutoff:.3f} keeps {sum(map(len, cut))} of {sum(map(len, want))} hits\n")
    for name, fn in thresholded.items():
        assert ids(fn(queries)) == cut, f"{name} answers differently"
    contestants |= thresholded
    names = list(contestants)
    seconds = dict(
        zip(
            names,
            paired_per_call([contestants[n] for n in names], [queries], args.repeat),
            strict=True,
        )
    )
    print(
        f"## LangChain retriever batch, {args.queries} queries, top-{args.k}, "
        f"{args.n:,} x {args.dim} float32, embedded in memory (median of {args.repeat})\n"
    )
    print(
        table(
            [
                Row(
                    "batch", seconds["batch"], "invoke loop", seconds["invoke loop"], "<= 0.5x", 0.5
                ),
                Row("batch", seconds["batch"], "Runnable.batch", seconds["Runnable.batch"], "-"),
                Row(
                    "abatch",
                    seconds["abatch"],
                    "ainvoke loop",
                    seconds["ainvoke loop"],
                    "<= 0.5x",
                    0.5,
                ),
                Row(
                    "threshold batch",
                    seconds["threshold batch"],
                    "threshold invoke loop",
                    seconds["threshold invoke loop"],
                    "<= 0.5x",
                    0.5,
                ),
                Row(
                    "threshold batch",
                    seconds["threshold batch"],
                    "threshold Runnable.batch",
                    seconds["threshold Runnable.batch"],
                    "-",
                ),
                Row(
                    "threshold abatch",
                    seconds["threshold abatch"],
                    "threshold ainvoke loop",
                    seconds["threshold ainvoke loop"],
                    "<= 0.5x",
                    0.5,
                ),
            ]
        )
    )
    store.close()


async def _ainvoke_loop(retriever: VectorStoreRetriever, queries: list[str]) -> list:
    return [await retriever.ainvoke(q) for q in queries]


if __name__ == "__main__":
    main()
