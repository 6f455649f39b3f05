"""The sub-commands. Each takes the parsed arguments and returns the exit status."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tidb_jina._cli import CLIError, _settings, _sources
from tidb_jina._cli._progress import Progress
from tidb_jina.store import SearchResult, VectorTable, validate_filter

SEARCH_MODES = ("vector", "fulltext", "hybrid")
SNIPPET_CHARS = 240


def open_table(
    args: argparse.Namespace, *, embedder: Any = None, must_exist: bool = False
) -> VectorTable:
    """The table the flags name; with ``must_exist``, a clear error when it is absent."""
    url = _settings.database_url(args.database_url)
    name = _settings.table_name(args.table)
    missing_file = _settings.missing_database_file(url)
    if must_exist and missing_file:
        raise CLIError(
            f"database file {missing_file} does not exist; run `tidb-jina ingest PATHS` "
            "first or pass --database-url"
        )
    table = VectorTable(url, table_name=name, embedder=embedder)
    if must_exist and not table.exists():
        raise CLIError(
            f"table {name!r} does not exist in {describe(table)}; run "
            "`tidb-jina ingest PATHS` first or pass --table"
        )
    return table


def describe(table: VectorTable) -> str:
    """The database, without its password."""
    return table.database


# --- ingest ------------------------------------------------------------------------------


@dataclass
class IngestStats:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    stale_deleted: int = 0


def ingest(args: argparse.Namespace) -> int:
    """Chunk, embed and upsert files; rows already stored unchanged are skipped."""
    _sources.check_chunking(args.chunk_size, args.chunk_overlap)
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")
    files = _sources.find_files(args.paths)
    if not files:
        raise CLIError("no .txt, .md, .rst or .jsonl files found under the given paths")
    sources = [_sources.load(f, args.chunk_size, args.chunk_overlap) for f in files]
    chunks = [c for s in sources for c in s.chunks]
    table = open_table(args, embedder=_settings.embedder(args.provider, args.model))
    progress = Progress(len(chunks), enabled=not args.no_progress)
    stats = IngestStats()
    try:
        for batch in _batches(chunks, args.batch_size):
            _ingest_batch(table, batch, stats)
            progress.advance(len(batch))
    finally:  # end the bar's line, also when a batch fails (the error goes below it)
        progress.close()
    stats.stale_deleted = _delete_stale(table, sources)
    print(
        f"Ingested {len(files)} file(s), {len(chunks)} chunks into table "
        f"{table.table_name!r} ({describe(table)}): {stats.new} new, {stats.updated} "
        f"updated, {stats.unchanged} unchanged (skipped), {stats.stale_deleted} stale "
        f"removed; {table.count()} rows in the table."
    )
    return 0


def _batches(chunks: Sequence[_sources.Chunk], size: int) -> Iterator[Sequence[_sources.Chunk]]:
    for start in range(0, len(chunks), size):
        yield chunks[start : start + size]


def _ingest_batch(table: VectorTable, batch: Sequence[_sources.Chunk], stats: IngestStats) -> None:
    """Embed and upsert the chunks of ``batch`` that are not stored as they are."""
    stored = {r.id: (r.document, r.metadata) for r in table.get([c.id for c in batch])}
    todo = [c for c in batch if stored.get(c.id) != (c.text, c.metadata)]
    stats.unchanged += len(batch) - len(todo)
    stats.updated += sum(1 for c in todo if c.id in stored)
    stats.new += sum(1 for c in todo if c.id not in stored)
    if todo:
        table.add_texts(
            [c.text for c in todo], ids=[c.id for c in todo], metadatas=[c.metadata for c in todo]
        )


def _delete_stale(table: VectorTable, sources: list[_sources.Source]) -> int:
    """Remove chunks of files that became shorter since they were last ingested.

    A file's chunks are numbered 0..n-1, so it has stale rows exactly when the row of
    chunk n exists: one primary-key lookup for all files finds them, and only those
    files pay for a delete by metadata filter.
    """
    first_stale = {_sources.chunk_id(s.name, len(s.chunks)): s for s in sources if s.chunked_file}
    deleted = 0
    for record in table.get(list(first_stale)):
        source = first_stale[record.id]
        deleted += table.delete(
            filter={"source": source.name, "chunk": {"$gte": len(source.chunks)}}
        )
    return deleted


# --- search ------------------------------------------------------------------------------


def parse_filter(text: str | None) -> dict[str, Any] | None:
    """``--filter`` as a dict (a JSON object), or None."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CLIError(
            f"--filter is not valid JSON ({exc.msg} at character {exc.pos}); "
            'example: --filter \'{"topic": "database", "year": {"$gte": 2024}}\''
        ) from None
    if not isinstance(value, dict):
        raise CLIError('--filter must be a JSON object, e.g. \'{"topic": "database"}\'')
    validate_filter(value)  # an unknown operator fails here, before anything is embedded
    return value


def search(args: argparse.Namespace) -> int:
    """Search the table by meaning, by words, or both; print text or JSON."""
    flt = parse_filter(args.filter)
    if args.k < 1:
        raise CLIError(f"-k must be at least 1, got {args.k}")
    table = open_table(args, must_exist=True)
    if args.mode == "fulltext":
        hits = table.full_text_search(args.query, k=args.k, filter=flt)
    else:
        table.embedder = _settings.embedder(args.provider, args.model)
        if args.mode == "vector":
            hits = table.search_text(args.query, k=args.k, filter=flt)
        else:
            vector = table.embedder.embed_query(args.query)
            hits = table.hybrid_search(vector, args.query, k=args.k, filter=flt)
    if args.json:
        print(json.dumps([hit_json(h) for h in hits], indent=2, ensure_ascii=False))
    else:
        print_hits(hits)
    return 0


def hit_json(hit: SearchResult) -> dict[str, Any]:
    """One hit as a JSON object (a NaN distance, as full-text hits have, becomes null)."""
    distance = None if math.isnan(hit.distance) else hit.distance
    return {
        "id": hit.id,
        "score": hit.score,
        "distance": distance,
        "text_score": hit.text_score,
        "document": hit.document,
        "metadata": hit.metadata,
    }


def print_hits(hits: list[SearchResult]) -> None:
    """Numbered hits: score, where the text came from, and a snippet."""
    if not hits:
        print("No results.")
        return
    for rank, hit in enumerate(hits, 1):
        print(f"{rank}. score {hit.score:.3f}  {_origin(hit)}  id {hit.id}")
        text = " ".join((hit.document or "").split())
        if len(text) > SNIPPET_CHARS:
            text = text[: SNIPPET_CHARS - 3] + "..."
        print(f"   {text}")


def _origin(hit: SearchResult) -> str:
    meta = hit.metadata
    where = str(meta.get("source", "?"))
    if "chunk" in meta:
        return f"{where} (chunk {meta['chunk']})"
    if "line" in meta:
        return f"{where}:{meta['line']}"
    return where


# --- info, doctor, drop -------------------------------------------------------------------


def info(args: argparse.Namespace) -> int:
    """Table, rows, dimension, metric and the state of the vector index."""
    table = open_table(args, must_exist=True)
    status = table.index_status()
    details = {
        "database": describe(table),
        "table": table.table_name,
        "rows": table.count(),
        "dimension": table.dimension,
        "metric": table.metric.value,
        "index": status.kind,
        "index_ready": status.ready,
        "rows_indexed": status.rows_indexed,
        "rows_pending": status.rows_pending,
        "index_error": status.error,
        "note": status.note,
    }
    if args.json:
        print(json.dumps(details, indent=2))
        return 0
    index = status.kind
    if status.kind == "hnsw":
        state = "ready" if status.ready else "building"
        index += f" ({state}: {status.rows_indexed} rows indexed, {status.rows_pending} pending)"
    if status.error:
        index += f"; error: {status.error}"
    if status.note:
        index += f" - {status.note}"
    for key, value in (
        ("database", details["database"]),
        ("table", table.table_name),
        ("rows", details["rows"]),
        ("dimension", details["dimension"]),
        ("metric", details["metric"]),
        ("index", index),
    ):
        print(f"{key + ':':11s}{value}")
    return 0


def doctor(args: argparse.Namespace) -> int:
    """Run ``tidb_jina.doctor`` and print its report; exit 1 if a check failed."""
    from tidb_jina import doctor as run_doctor

    url = _settings.database_url(args.database_url)
    report = run_doctor(url, table_name=_settings.table_name(args.table))
    print(report)
    print("All checks passed." if report.ok else "Some checks failed: see the fixes above.")
    return 0 if report.ok else 1


def drop(args: argparse.Namespace) -> int:
    """Drop the table; refuses without ``--yes``."""
    table = open_table(args, must_exist=True)
    rows = table.count()
    if not args.yes:
        raise CLIError(
            f"drop deletes table {table.table_name!r} and its {rows} rows from "
            f"{describe(table)}; re-run with --yes to confirm"
        )
    table.drop()
    print(f"Dropped table {table.table_name!r} ({rows} rows) from {describe(table)}.")
    return 0
