"""The sub-commands. Each takes the parsed arguments and returns the exit status."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from tidb_jina._cli import CLIError, _catalog, _settings
from tidb_jina._cli._ingest import ingest
from tidb_jina.store import SearchResult, VectorTable, validate_filter

__all__ = ["delete", "doctor", "drop", "info", "ingest", "search", "sources"]

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
            vector = table.query_vector(args.query)  # checks the model against the table
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
    recorded = table.recorded
    details = {
        "database": describe(table),
        "table": table.table_name,
        "rows": table.count(),
        "dimension": table.dimension,
        "metric": table.metric.value,
        "model": recorded.model if recorded else None,
        "server_model": recorded.server_model if recorded else None,
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
        ("model", _model_line(recorded)),
        ("index", index),
    ):
        print(f"{key + ':':11s}{value}")
    return 0


def _model_line(recorded: Any) -> str:
    if recorded is None:
        return "not recorded (a table made before tidb-jina recorded it, or by another tool)"
    if recorded.origin == "peer":
        return "not recorded (a langchain-community / llama-index table: metric from its comment)"
    model = recorded.model or "not recorded (vectors written by upsert() without embedding_model=)"
    if recorded.server_model:
        model += f" (TiDB embeds with {recorded.server_model})"
    return str(model)


# --- sources and delete -------------------------------------------------------------------


def sources(args: argparse.Namespace) -> int:
    """Rows per source file, as ingest stored them."""
    table = open_table(args, must_exist=True)
    counts = _catalog.source_counts(table)
    if args.json:
        print(json.dumps(counts, indent=2, ensure_ascii=False))
        return 0
    if not counts:
        print(f"Table {table.table_name!r} is empty.")
        return 0
    width = max(len(str(n)) for n in counts.values())
    for name, count in counts.items():
        print(f"{count:>{width}}  {name}")
    print(f"{sum(counts.values())} rows from {len(counts)} source(s) in {table.table_name!r}.")
    return 0


def delete(args: argparse.Namespace) -> int:
    """Delete the rows of one source, or the rows a filter matches, after confirmation."""
    if args.source is not None and args.filter is not None:
        raise CLIError("pass --source or --filter, not both (run delete once for each)")
    if (args.source is None) == (args.filter is None):
        raise CLIError(
            "pass --source NAME (as `tidb-jina sources` lists it) or --filter JSON, "
            'e.g. --filter \'{"topic": "old"}\''
        )
    table = open_table(args, must_exist=True)
    if args.source is not None:
        name = _source_name(table, args.source)
        what = f"source {name!r}"
        # `sources` lists rows without one (e.g. written by a framework) as NO_SOURCE
        no_source = {"$exists": False}
        flt: dict[str, Any] = {"source": no_source if name == _catalog.NO_SOURCE else name}
    else:
        flt = parse_filter(args.filter) or {}
        if not flt:
            raise CLIError(
                "--filter {} matches every row; `tidb-jina drop` removes the whole table, "
                'or narrow the filter, e.g. --filter \'{"topic": "old"}\''
            )
        what = f"filter {args.filter}"
    count = table.count(flt)
    if count == 0:
        print(f"No rows match {what} in {table.table_name!r}; nothing deleted.")
        return 0
    if not args.yes and not _confirm(
        f"Delete {count} row(s) matching {what} from {table.table_name!r}? [y/N] "
    ):
        raise CLIError(
            f"{count} row(s) match {what}; nothing deleted. Re-run with --yes to delete "
            "them without asking"
        )
    deleted = table.delete(filter=flt)
    print(f"Deleted {deleted} row(s) matching {what} from {table.table_name!r}.")
    return 0


def _source_name(table: VectorTable, given: str) -> str:
    """``given`` as stored; a path on disk is named as ingest names it (root/relative)."""
    from pathlib import Path

    from tidb_jina._cli._sources import root_name

    counts = _catalog.source_counts(table)
    if given in counts:
        return given
    path = Path(given)
    if path.is_file():
        candidate = root_name(path.resolve().parent, path)
        if candidate in counts:
            return candidate
    near = [n for n in counts if n.endswith("/" + given.lstrip("./")) or n.endswith(given)]
    hint = f"; did you mean {near[0]!r}?" if near else "; `tidb-jina sources` lists them"
    raise CLIError(f"no rows come from source {given!r} in {table.table_name!r}{hint}")


def _confirm(question: str) -> bool:
    """Ask on the terminal; without one (a script), the answer is no."""
    if not sys.stdin.isatty():
        return False
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        return False


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
