"""TiDB round trips: statements and bytes sent for add_texts and one filtered search.

Both stores run on the TiDB code path (``mysql+pymysql``) against a recording stub
(``tidb_jina.testing.MySQLRecorder``: real PyMySQL connections that escape and rewrite
``executemany`` as they would on the wire, but never open a socket). Counted per phase: COM_QUERY
statements (including COMMIT / ROLLBACK), pings (SQLAlchemy ``pool_pre_ping``) and the
bytes of the statements.

Ours: langchain-tidb-jina's ``TiDBVectorStore`` (the core ``VectorTable`` if the adapter
is unavailable). Baseline: langchain-community's ``TiDBVectorStore`` (over tidb-vector's
``TiDBVectorClient``). Same ``n`` documents with precomputed embeddings (a lookup
``Embeddings``, no network), metadata ``{"group": i % 10}``, then
``similarity_search(query, k=10, filter={"group": 3})``.

Goals: one statement per search; inserts in batches bounded by bytes; fewer statements
than the peer.

    python bench/tidb_round_trips.py [--n 10000] [--dim 768]
"""

from __future__ import annotations

import argparse
from typing import Any

from _common import Row, fmt_bytes, fmt_count, random_vectors, table, verdict
from langchain_core.embeddings import Embeddings
from pymysql.cursors import Cursor

from tidb_jina.testing import MySQLRecorder as Recorder

QUERY = "what does the bench measure?"
FILTER = {"group": 3}


class LookupEmbeddings(Embeddings):
    """Precomputed vectors by text: no network, same vectors for both stores."""

    def __init__(self, vectors: dict[str, list[float]], dim: int) -> None:
        self.vectors = vectors
        self.default = [1.0] + [0.0] * (dim - 1)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.vectors.get(t, self.default) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.vectors.get(text, self.default)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()
    texts = [f"document {i}: " + "tidb vector search benchmark text " * 5 for i in range(args.n)]
    vectors = random_vectors(args.n + 1, args.dim)
    lookup = dict(zip([*texts, QUERY], vectors.tolist(), strict=True))
    embeddings = LookupEmbeddings(lookup, args.dim)
    metadatas = [{"group": i % 10} for i in range(args.n)]

    ours_name, ours = _run(_ours_factory(args.dim), embeddings, texts, metadatas, args.dim)
    peer = _run(_peer_factory(args.dim), embeddings, texts, metadatas, args.dim)[1]
    _report(args, ours_name, ours, peer)


def _ours_factory(dim: int):
    try:
        from langchain_tidb_jina import TiDBVectorStore
    except ImportError:  # the adapter is optional here: fall back to the core table
        return "tidb-jina VectorTable", _CoreStore.factory(dim)

    def make(embeddings: Embeddings, recorder: Recorder) -> Any:
        return TiDBVectorStore(
            recorder.url,
            embeddings,
            table_name="bench_ours",
            vector_dimension=dim,
            engine_args=recorder.engine_args(),
        )

    return "langchain-tidb-jina TiDBVectorStore", make


def _peer_factory(dim: int):
    from langchain_community.vectorstores import TiDBVectorStore

    def make(embeddings: Embeddings, recorder: Recorder) -> Any:
        return TiDBVectorStore(
            connection_string=recorder.url,
            embedding_function=embeddings,
            table_name="bench_peer",
            distance_strategy="cosine",
            engine_args=recorder.engine_args(),
        )

    return "langchain-community TiDBVectorStore", make


class _CoreStore:
    """The core ``VectorTable`` behind the two calls measured here."""

    def __init__(self, table: Any, embeddings: Embeddings) -> None:
        self.table, self.embeddings = table, embeddings

    @classmethod
    def factory(cls, dim: int):
        from tidb_jina.store import VectorTable

        def make(embeddings: Embeddings, recorder: Recorder) -> _CoreStore:
            table = VectorTable(
                recorder.url,
                table_name="bench_ours",
                dimension=dim,
                engine_args=recorder.engine_args(),
            )
            return cls(table, embeddings)

        return make

    def add_texts(self, texts: list[str], metadatas: list[dict]) -> list[str]:
        vectors = self.embeddings.embed_documents(texts)
        return self.table.upsert(vectors, documents=texts, metadatas=metadatas)

    def similarity_search(self, query: str, k: int, filter: dict) -> list[Any]:
        return self.table.search(self.embeddings.embed_query(query), k=k, filter=filter)


def _run(named_factory, embeddings, texts, metadatas, dim) -> tuple[str, dict[str, Any]]:
    """Round trips per phase for one store: construct, add_texts, search (k rows / none)."""
    name, factory = named_factory
    recorder = Recorder(keep_text=False)  # counts and sizes only: inserts are large
    phases: dict[str, Any] = {}
    store = factory(embeddings, recorder)
    phases["construct"] = _snapshot(recorder)
    store.add_texts(texts, metadatas=metadatas)
    phases["add_texts"] = _snapshot(recorder)
    found = store.similarity_search(QUERY, k=10, filter=FILTER)
    assert len(found) == 10, f"{name}: the stub answers 10 rows, got {len(found)}"
    phases["search"] = _snapshot(recorder)
    recorder.search_hits = 0  # the filter leaves fewer than k rows
    store.similarity_search(QUERY, k=10, filter=FILTER)
    phases["search_sparse"] = _snapshot(recorder)
    return name, phases


def _snapshot(recorder: Recorder) -> dict[str, Any]:
    """The phase's counts, then a fresh count for the next phase."""
    counts = {
        "sql": len(recorder.sql()),
        "txn": recorder.count("COMMIT", "ROLLBACK", "BEGIN"),
        "pings": recorder.count("PING"),
        "round_trips": recorder.count(),
        "inserts": recorder.count("INSERT"),
        "selects": recorder.count("SELECT"),
        "bytes": recorder.bytes(),
        "largest_insert": recorder.largest("INSERT"),
        "kinds": dict(recorder.kinds()),
    }
    recorder.reset()
    return counts


def _sum(phases: dict[str, Any], key: str, *names: str) -> int:
    return sum(phases[name][key] for name in names)


def _report(args, ours_name: str, ours: dict[str, Any], peer: dict[str, Any]) -> None:
    print(f"## TiDB round trips, {args.n:,} documents x {args.dim}-d, on a recording stub\n")
    print(f"ours: {ours_name}; baseline (peer): langchain-community TiDBVectorStore\n")
    add = ("construct", "add_texts")  # ours creates the table on first write, the peer at once

    def row(label: str, phases: tuple[str, ...], key: str, goal="-", limit=None) -> Row:
        mine, theirs = _sum(ours, key, *phases), _sum(peer, key, *phases)
        return Row(label, mine, "langchain-community", theirs, goal, limit)

    counts = [
        row("construct + add_texts: SQL statements", add, "sql", "fewer", 0.999),
        row("construct + add_texts: COMMIT / ROLLBACK", add, "txn"),
        row("construct + add_texts: pings (pool_pre_ping)", add, "pings"),
        row("construct + add_texts: round trips, all", add, "round_trips"),
        row("add_texts: INSERT statements", ("add_texts",), "inserts"),
        row("filtered search: SQL statements", ("search",), "sql", "1"),
        row("filtered search: round trips, all", ("search",), "round_trips"),
    ]
    print(table(counts, fmt_count))
    print()
    sizes = [
        row("construct + add_texts: bytes sent", add, "bytes"),
        row("largest INSERT statement", ("add_texts",), "largest_insert"),
    ]
    print(table(sizes, fmt_bytes))
    _goals(ours, peer)


def _goals(ours: dict[str, Any], peer: dict[str, Any]) -> None:
    print("\nstatements by kind, per phase:")
    for who, phases in (("ours", ours), ("peer", peer)):
        for phase, counts in phases.items():
            print(f"- {who} {phase}: {counts['kinds']}")
    search, sparse = ours["search"], ours["search_sparse"]
    print(
        f"\n- one statement per search: {verdict(search['sql'] == 1)} "
        f"({search['sql']} when the post-filtered candidates fill k; {sparse['sql']} when "
        "they do not and the exact pre-filter query runs)"
    )
    add = ours["add_texts"]
    print(
        f"- inserts in batches bounded by bytes: {add['inserts']} INSERTs of at most "
        f"{fmt_bytes(add['largest_insert'])} (PyMySQL's max_stmt_length is "
        f"{fmt_bytes(Cursor.max_stmt_length)})"
    )
    mine = _sum(ours, "sql", "construct", "add_texts", "search")
    theirs = _sum(peer, "sql", "construct", "add_texts", "search")
    print(
        f"- fewer SQL statements than the peer (construct + add_texts + search): "
        f"{verdict(mine < theirs)} ({mine} vs {theirs})"
    )


if __name__ == "__main__":
    main()
