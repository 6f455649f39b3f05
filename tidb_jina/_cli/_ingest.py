"""``tidb-jina ingest``: files to chunks to rows, and the table kept in step with the files.

- Rows already stored unchanged are skipped; changed chunks are re-embedded; chunks past
  a file's new end are removed.
- ``--prune``: rows of files that are gone from an ingested folder are removed.
- A table filled by another embedding model is re-embedded (replaced) instead of mixed,
  when everything in it comes from this run's paths; otherwise the command says why not.
- A bad file or JSONL line is reported with its place and skipped; the rest is ingested
  and the exit status is 1 (``--strict``: stop at the first, before writing anything).
- ``--dry-run``: what would be added, changed and removed, and the embedding work.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tidb_jina._cli import CLIError, _catalog, _settings, _sources
from tidb_jina._cli._progress import Progress
from tidb_jina.store import VectorTable
from tidb_jina.store._table_meta import model_name, same_model


@dataclass
class IngestStats:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    stale_deleted: int = 0
    pruned_rows: int = 0
    pruned_files: int = 0
    embed_texts: int = 0
    embed_chars: int = 0
    embed_batches: int = 0


@dataclass(frozen=True)
class ModelChange:
    old: str
    new: str


def ingest(args: argparse.Namespace) -> int:
    """Chunk, embed and upsert files (see the module docstring)."""
    _sources.check_chunking(args.chunk_size, args.chunk_overlap)
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")
    found = _sources.find_files(args.paths, args.glob or ())
    _note_skipped(found.skipped)
    if not found.files and not (args.prune and found.roots):
        where = " matching --glob" if args.glob else ""
        raise CLIError(f"no .txt, .md, .rst or .jsonl files found under the given paths{where}")
    sources, problems = _load(found, args)
    chunks = [c for s in sources for c in s.chunks]
    embedder = _settings.embedder(args.provider, args.model)
    table = _open(args, embedder)
    change = _model_change(table, embedder, sources, found, args) if table else None
    if args.dry_run:
        return _dry_run(args, table, sources, chunks, found, change, problems)
    if change is not None and table is not None:
        print(
            f"tidb-jina: note: table {table.table_name!r} was embedded with {change.old}; "
            f"re-embedding everything with {change.new}",
            file=sys.stderr,
        )
        # The first batch is embedded before the drop: a bad key or an unreachable
        # provider fails here, with the table as it was.
        table.embedder = _Primed(embedder, [c.text for c in chunks[: args.batch_size]])
        table.drop()  # the same object records the new model on the first write
    if table is None:
        table = _open(args, embedder, create=True)
    assert table is not None
    stats = IngestStats()
    progress = Progress(len(chunks), enabled=not args.no_progress)
    try:
        for batch in _batches(chunks, args.batch_size):
            _ingest_batch(table, batch, stats, write=True)
            progress.advance(len(batch))
    finally:  # end the bar's line, also when a batch fails (the error goes below it)
        progress.close()
    stats.stale_deleted = _delete_stale(table, sources, write=True)
    if args.prune:
        stats.pruned_files, stats.pruned_rows = _prune(table, sources, found, args, write=True)
    files = sum(1 for s in sources if s.chunks)
    print(
        f"Ingested {files} file(s), {len(chunks)} chunks into table "
        f"{table.table_name!r} ({table.database}): {stats.new} new, {stats.updated} "
        f"updated, {stats.unchanged} unchanged (skipped), {stats.stale_deleted} stale "
        f"removed{_pruned(stats, args)}; {table.count()} rows in the table."
    )
    return _report(problems)


class _Primed:
    """``embedder`` with the vectors of its first texts made up front (then reused)."""

    def __init__(self, embedder: Any, texts: list[str]) -> None:
        self._embedder = embedder
        self._texts = texts
        self._vectors = embedder.embed_documents(texts) if texts else []

    @property
    def model(self) -> str | None:  # read by the table's model check and record
        return model_name(self._embedder)

    def embed_documents(self, texts: list[str]) -> Any:
        if self._texts and list(texts) == self._texts:
            self._texts = []  # once
            return self._vectors
        return self._embedder.embed_documents(texts)

    def embed_query(self, text: str) -> Any:
        return self._embedder.embed_query(text)


def _load(
    found: _sources.Found, args: argparse.Namespace
) -> tuple[list[_sources.Source], list[str]]:
    sources, problems = [], []
    for path, name in found.files.items():
        source = _sources.load(path, name, args.chunk_size, args.chunk_overlap)
        if source.problems and args.strict:
            raise CLIError(f"{source.problems[0]} (--strict stops at the first problem)")
        problems.extend(source.problems)
        sources.append(source)
    return sources, problems


def _note_skipped(skipped: Any) -> None:
    if skipped:
        kinds = ", ".join(f"{suffix} ({n})" for suffix, n in sorted(skipped.items()))
        print(
            f"tidb-jina: note: skipped {sum(skipped.values())} file(s) of other types: {kinds}",
            file=sys.stderr,
        )


def _report(problems: list[str]) -> int:
    """Each problem on stderr, then a one-line summary; exit status 1 if any."""
    if not problems:
        return 0
    for problem in problems:
        print(f"tidb-jina: skipped: {problem}", file=sys.stderr)
    print(
        f"tidb-jina: error: {len(problems)} problem(s) above were skipped and the rest "
        "ingested; fix them and run the same command again (--strict stops at the first)",
        file=sys.stderr,
    )
    return 1


def _open(args: argparse.Namespace, embedder: Any, *, create: bool = False) -> VectorTable | None:
    """The table, opened without the model check (ingest handles a model change itself);
    None for a dry run against a database file that does not exist yet."""
    url = _settings.database_url(args.database_url)
    if not create and _settings.missing_database_file(url):
        return None
    name = _settings.table_name(args.table)
    return VectorTable(url, table_name=name, embedder=embedder, check_metadata=False)


def _model_change(
    table: VectorTable,
    embedder: Any,
    sources: list[_sources.Source],
    found: _sources.Found,
    args: argparse.Namespace,
) -> ModelChange | None:
    """The model change when the table was embedded with another model (None if not)."""
    recorded = table.recorded
    new = model_name(embedder)
    if recorded is None or recorded.model is None or new is None:
        return None
    if same_model(recorded.model, new):  # e.g. jinaai/jina-embeddings-v3 and jina-embeddings-v3
        return None
    names = {s.name for s in sources}
    others = {
        name: n
        for name, n in _catalog.source_counts(table).items()
        if name not in names and not (args.prune and _catalog.under_roots(name, found.roots))
    }
    if others:
        example = ", ".join(list(others)[:3])
        raise CLIError(
            f"table {table.table_name!r} was embedded with {recorded.model}, and you now "
            f"embed with {new}: its vectors must all be re-embedded, but "
            f"{sum(others.values())} of its rows come from sources outside these paths "
            f"({example}). Ingest those paths too (add --prune to let go of files that "
            f"are gone), use --table NEW, or pass --model {recorded.model}"
        )
    return ModelChange(recorded.model, new)


def _batches(chunks: Sequence[_sources.Chunk], size: int) -> Iterator[Sequence[_sources.Chunk]]:
    for start in range(0, len(chunks), size):
        yield chunks[start : start + size]


def _ingest_batch(
    table: VectorTable | None, batch: Sequence[_sources.Chunk], stats: IngestStats, *, write: bool
) -> None:
    """Embed and upsert the chunks of ``batch`` that are not stored as they are."""
    found = table.get([c.id for c in batch]) if table is not None else []
    stored = {r.id: (r.document, r.metadata) for r in found}
    todo = [c for c in batch if stored.get(c.id) != (c.text, c.metadata)]
    stats.unchanged += len(batch) - len(todo)
    stats.updated += sum(1 for c in todo if c.id in stored)
    stats.new += sum(1 for c in todo if c.id not in stored)
    if not todo:
        return
    stats.embed_texts += len(todo)
    stats.embed_chars += sum(len(c.text) for c in todo)
    stats.embed_batches += 1
    if write and table is not None:
        table.add_texts(
            [c.text for c in todo], ids=[c.id for c in todo], metadatas=[c.metadata for c in todo]
        )


def _delete_stale(table: VectorTable | None, sources: list[_sources.Source], *, write: bool) -> int:
    """Remove (or count) chunks of files that became shorter since they were ingested.

    A file's chunks are numbered 0..n-1, so it has stale rows exactly when the row of
    chunk n exists: one primary-key lookup for all files finds them, and only those
    files pay for a delete by metadata filter.
    """
    if table is None:
        return 0
    first_stale = {_sources.chunk_id(s.name, len(s.chunks)): s for s in sources if s.chunked_file}
    removed = 0
    for record in table.get(list(first_stale)):
        source = first_stale[record.id]
        stale = {"source": source.name, "chunk": {"$gte": len(source.chunks)}}
        removed += table.delete(filter=stale) if write else table.count(stale)
    return removed + _delete_stale_records(table, sources, write=write)


def _delete_stale_records(
    table: VectorTable, sources: list[_sources.Source], *, write: bool
) -> int:
    """Remove (or count) rows of JSONL records no longer in their file (a line removed
    shifts the lines after it; a record's ``id`` changed). A file with a bad line keeps
    its rows: the bad line's old row cannot be told from a stale one."""
    removed = 0
    for source in sources:
        if source.chunked_file or source.problems:
            continue
        stale = _catalog.source_ids(table, source.name) - {c.id for c in source.chunks}
        if stale:
            removed += table.delete(list(stale)) if write else len(stale)
    return removed


def _prune(
    table: VectorTable | None,
    sources: list[_sources.Source],
    found: _sources.Found,
    args: argparse.Namespace,
    *,
    write: bool,
) -> tuple[int, int]:
    """Remove (or count) the rows of files gone from the ingested folders."""
    if table is None:
        return 0, 0
    names = {s.name for s in sources}
    gone = {
        name: n
        for name, n in _catalog.source_counts(table).items()
        if _catalog.under_roots(name, found.roots)
        and name not in names
        and _sources._selected(name, args.glob or ())
    }
    if gone:  # named, so a folder of the same name from elsewhere is noticed
        shown = ", ".join(list(gone)[:10]) + (
            f" and {len(gone) - 10} more" if len(gone) > 10 else ""
        )
        verb = "pruning" if write else "would prune"
        print(f"tidb-jina: note: {verb} the rows of files gone: {shown}", file=sys.stderr)
    if write:
        for name in gone:
            table.delete(filter={"source": name})
    return len(gone), sum(gone.values())


def _pruned(stats: IngestStats, args: argparse.Namespace) -> str:
    if not args.prune:
        return ""
    return f", {stats.pruned_rows} rows of {stats.pruned_files} deleted file(s) pruned"


def _dry_run(
    args: argparse.Namespace,
    table: VectorTable | None,
    sources: list[_sources.Source],
    chunks: list[_sources.Chunk],
    found: _sources.Found,
    change: ModelChange | None,
    problems: list[str],
) -> int:
    """Say what ingest would do; write nothing."""
    stats = IngestStats()
    current = None if change is not None else table  # a model change re-embeds everything
    for batch in _batches(chunks, args.batch_size):
        _ingest_batch(current, batch, stats, write=False)
    stats.stale_deleted = _delete_stale(current, sources, write=False)
    if args.prune:
        stats.pruned_files, stats.pruned_rows = _prune(table, sources, found, args, write=False)
    name = _settings.table_name(args.table)
    model = model_name(_settings.embedder(args.provider, args.model)) or "the provider's model"
    print(f"Dry run (nothing written) for table {name!r}:")
    if change is not None:
        print(f"  model changed from {change.old} to {change.new}: every chunk is re-embedded")
    print(
        f"  {sum(1 for s in sources if s.chunks)} file(s), {len(chunks)} chunks: "
        f"{stats.new} new, {stats.updated} changed, {stats.unchanged} unchanged"
    )
    print(f"  {stats.stale_deleted} stale chunk row(s) would be removed")
    if args.prune:
        print(
            f"  {stats.pruned_rows} row(s) of {stats.pruned_files} deleted file(s) would be pruned"
        )
    requests = math.ceil(stats.embed_texts / args.batch_size) if stats.embed_texts else 0
    print(
        f"  embedding: {stats.embed_texts} text(s), {stats.embed_chars} characters, in "
        f"{requests} batch(es) of at most {args.batch_size}, with {model}"
    )
    return _report(problems)
