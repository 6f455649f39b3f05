"""``TiDBVectorStore.query_many``: many ``VectorStoreQuery`` objects, shared searches.

LlamaIndex has no batch query API (``BaseRetriever`` and ``VectorIndexRetriever`` retrieve
one query at a time, ``VectorStore`` has ``query`` / ``aquery`` only), so this is for the
caller's own code. Default-mode queries that carry an embedding and ask for the same
``similarity_top_k``, filters, ``doc_ids`` and ``node_ids`` share one
``VectorTable.search_many`` (one read and one matrix product on the embedded engine, one
statement per query on TiDB); every other query runs as ``query`` runs it. Each answer is
``query``'s for that query.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryResult

__all__ = ["Plan", "arun_plan", "plan_queries", "run_plan"]

# One shared search: the positions of its queries, their vectors, and the common options.
Group = tuple[list[int], list[Any], dict[str, Any]]


class Plan:
    """Which queries run alone (positions) and which share a ``search_many`` (groups)."""

    def __init__(self, alone: list[int], groups: list[Group]) -> None:
        self.alone = alone
        self.groups = groups


def plan_queries(
    store: Any, queries: Sequence[VectorStoreQuery], kwargs: Mapping[str, Any]
) -> Plan:
    alone: list[int] = []
    groups: dict[str, Group] = {}
    for i, query in enumerate(queries):
        if store._needs_table_vector(query):
            alone.append(i)
            continue
        method, args = store._search_call(query, kwargs)
        if method != "search":
            alone.append(i)
            continue
        vector = args.pop("vector")
        key = repr(sorted(args.items()))  # same k, filter and ids: one shared search
        positions, vectors, _ = groups.setdefault(key, ([], [], args))
        positions.append(i)
        vectors.append(vector)
    return Plan(alone, list(groups.values()))


def run_plan(
    plan: Plan,
    count: int,
    one: Callable[[int], VectorStoreQueryResult],
    many: Callable[[list[Any], dict[str, Any]], list[VectorStoreQueryResult]],
) -> list[VectorStoreQueryResult]:
    results: list[VectorStoreQueryResult | None] = [None] * count
    for i in plan.alone:
        results[i] = one(i)
    for positions, vectors, args in plan.groups:
        for i, result in zip(positions, many(vectors, args), strict=True):
            results[i] = result
    return [r for r in results if r is not None]


async def arun_plan(
    plan: Plan,
    count: int,
    one: Callable[[int], Awaitable[VectorStoreQueryResult]],
    many: Callable[[list[Any], dict[str, Any]], Awaitable[list[VectorStoreQueryResult]]],
) -> list[VectorStoreQueryResult]:
    results: list[VectorStoreQueryResult | None] = [None] * count
    for i in plan.alone:
        results[i] = await one(i)
    for positions, vectors, args in plan.groups:
        for i, result in zip(positions, await many(vectors, args), strict=True):
            results[i] = result
    return [r for r in results if r is not None]
