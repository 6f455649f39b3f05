"""``add_texts(..., batch_size=n)``: LangChain's batch size, with an exact partial state.

LangChain's indexing API (``langchain_core.indexing.index`` / ``aindex``) and other
callers pass ``batch_size`` to ``add_documents``. Here it bounds the rows of each write:
the texts go to the core in groups of at most ``batch_size``, in input order, each one
embedding call and one core write (one transaction when the group fits the table's
``batch_rows`` / ``batch_bytes``).

What a failure leaves:

* A bad row anywhere (text, id, metadata) writes nothing: every row of every group is
  checked first, and missing ids are generated then, so the ids returned are the ones
  written.
* A failure while embedding or writing group ``k`` (a provider or database error) leaves
  groups ``1 .. k-1`` written and committed, whole, and nothing of groups ``k+1 ..``; group
  ``k`` itself is not written (when it spans several core transactions, its leading whole
  transactions may be). The error keeps its type; a note on it says exactly which rows
  were written. Rows are upserted by id, so calling again with the same ids completes the
  set without duplicates, which is what ``index()`` does on its next run.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from tidb_jina import InvalidInputError
from tidb_jina.embeddings import validate_texts
from tidb_jina.store import VectorTable

__all__ = ["Batch", "aadd_in_batches", "add_in_batches", "pop_batch_size", "split_rows"]


class Batch(NamedTuple):
    texts: list[str]
    ids: list[str]
    metadatas: list[Any] | None


def pop_batch_size(kwargs: dict[str, Any]) -> int | None:
    """Take ``batch_size`` out of ``kwargs`` (None: one write plan, the core's own)."""
    size = kwargs.pop("batch_size", None)
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {size!r}")
    return int(size)  # a NumPy integer too


def split_rows(
    table: VectorTable,
    texts: Iterable[str],
    metadatas: Sequence[Mapping[str, Any] | None] | None,
    ids: Sequence[str | None] | None,
    size: int,
) -> list[Batch]:
    """The rows in groups of at most ``size``, every row checked first (no I/O).

    Call it after the table's shape is loaded (``exists()``): its id length bounds the ids.
    The check is the core's own (``VectorTable._prepare``, which does no I/O), so the
    rules cannot drift from what the core's ``add_texts`` enforces.
    """
    text_list = validate_texts(texts)
    metas = None if metadatas is None else list(metadatas)
    id_list, _, _ = table._prepare(len(text_list), ids, text_list, metas)
    return [
        Batch(
            text_list[start : start + size],
            id_list[start : start + size],
            None if metas is None else metas[start : start + size],
        )
        for start in range(0, len(text_list), size)
    ]


def add_in_batches(
    table: VectorTable,
    texts: Iterable[str],
    metadatas: Sequence[Mapping[str, Any] | None] | None,
    ids: Sequence[str | None] | None,
    size: int,
    embed_for: Callable[[Any], Callable[[list[str]], Any] | None],
) -> list[str]:
    """Write the rows group by group (see the module docstring for a failure's state)."""
    table.exists()  # the shape bounds the ids checked before any write
    batches = split_rows(table, texts, metadatas, ids, size)
    written: list[str] = []
    for done, b in enumerate(batches):
        try:
            embed = embed_for(b.metadatas)  # the group's own metadata (late chunking keys)
            written += table.add_texts(b.texts, ids=b.ids, metadatas=b.metadatas, embed=embed)
        except Exception as exc:
            _note_partial(exc, table, batches, done, size)
            raise
    return written


async def aadd_in_batches(
    table: VectorTable,
    texts: Iterable[str],
    metadatas: Sequence[Mapping[str, Any] | None] | None,
    ids: Sequence[str | None] | None,
    size: int,
    embed_for: Callable[[Any], Callable[[list[str]], Awaitable[Any]] | None],
) -> list[str]:
    """Async :func:`add_in_batches`: the same groups, the same state after a failure."""
    await table.aio.exists()
    batches = split_rows(table, texts, metadatas, ids, size)
    written: list[str] = []
    for done, b in enumerate(batches):
        try:
            written += await table.aio.add_texts(
                b.texts, ids=b.ids, metadatas=b.metadatas, embed=embed_for(b.metadatas)
            )
        except Exception as exc:
            _note_partial(exc, table, batches, done, size)
            raise
    return written


def _note_partial(
    exc: Exception, table: VectorTable, batches: list[Batch], done: int, size: int
) -> None:
    """Say on ``exc`` exactly what the call wrote before group ``done + 1`` failed."""
    total = sum(len(b.ids) for b in batches)
    rows = sum(len(b.ids) for b in batches[:done])
    failed = batches[done].ids
    where = f"batch {done + 1} of {len(batches)} (rows {rows + 1}-{rows + len(failed)})"
    if rows:
        first, last = batches[0].ids[0], batches[done - 1].ids[-1]
        groups = "batch 1 was" if done == 1 else f"batches 1-{done} were"
        span = f"{rows} of {total} rows, ids {first!r} to {last!r}"
        state = f"{groups} written and committed ({span})"
    else:
        state = "nothing was written before it"
    if len(failed) > table.batch_rows:
        where += f" (more than batch_rows={table.batch_rows}: its leading whole "
        where += "transactions may be written)"
    _add_note(
        exc,
        f"batch_size={size}: {where} failed; {state}; later batches were not "
        "written. Call again with the same ids to write the rest: rows are upserted by id, "
        "so nothing is duplicated.",
    )


def _add_note(exc: Exception, note: str) -> None:
    """PEP 678's ``add_note`` (Python 3.11+); on 3.10 the same ``__notes__`` list."""
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:
        setattr(exc, "__notes__", [*getattr(exc, "__notes__", []), note])  # noqa: B010
