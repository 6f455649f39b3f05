"""The engine interface under ``VectorTable``: what TiDB and the embedded engine each do.

``VectorTable`` (``_table.py``) is a facade: it validates input, parses a filter once,
keeps the table's lifecycle and calls a :class:`Backend`. Everything that differs
between the engines lives behind this Protocol, one implementation each:

* ``_backend_tidb.TiDBBackend``: the vector and full-text index DDL, the upsert
  statement with vector text, pre/post-filter search statements, ``FTS_MATCH_WORD``,
  auto-embedding on the server (``EMBED_TEXT`` and the provider key).
* ``_backend_embedded.EmbeddedBackend``: float32 BLOBs, the in-memory vector snapshot
  and NumPy search (``_embedded``), FTS5 full-text search (``_fulltext``).

A new engine is one more module implementing :class:`Backend`, chosen in
:func:`tidb_jina.store._table_base.backend_for`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
import sqlalchemy as sa

from tidb_jina._errors import DimensionMismatchError, InvalidInputError
from tidb_jina.store._filter_tree import Filter
from tidb_jina.store._metrics import DistanceMetric
from tidb_jina.store._results import SearchResult
from tidb_jina.store._schema import TableShape

if TYPE_CHECKING:
    from tidb_jina.store._auto import AutoEmbedding
    from tidb_jina.store._db import Database
    from tidb_jina.store._tidb import IndexStatus


@dataclass(frozen=True)
class TableSettings:
    """What a backend needs to know about the table it serves (fixed at construction)."""

    table_name: str
    metric: DistanceMetric
    indexed_key: str | None = None
    vector_index: bool = True
    search_cache: bool = True
    auto_embedding: AutoEmbedding | None = None
    snapshot_file: Any = False  # embedded files: True, or a directory (``_snapshot_file``)


class TableView(NamedTuple):
    """The table object and the shape it was built from, read and replaced together:
    ``TableState.view`` is one attribute, so a reader never pairs one state's table
    with another's shape (a drop or re-creation by another thread in between)."""

    table: sa.Table | None
    shape: TableShape | None

    def check_dimension(self, table_name: str, dimension: int) -> None:
        """Raise unless vectors of ``dimension`` fit this table (or it has none yet)."""
        table_dim = self.shape.dimension if self.shape else None
        if table_dim is not None and table_dim != dimension:
            raise DimensionMismatchError(
                f"table {table_name!r} has VECTOR({table_dim}) but the vectors have "
                f"{dimension} dimensions; use a model with {table_dim} dimensions (e.g. "
                f"dimensions={table_dim} for Jina v3+) or a new table_name"
            )


NO_TABLE = TableView(None, None)


@dataclass
class TableState:
    """What is known about the table; shared by a VectorTable and its async view."""

    drop_pending: bool = False
    loaded: bool = False
    view: TableView = NO_TABLE  # replaced whole (``TableBase._adopt``, ``reset``)
    index_note: str | None = None  # why a TiDB table has no vector index, told once
    fulltext_ready: bool = False
    key_sent: bool = False  # auto-embedding provider key stored on the server
    recorded: Any = None  # the table's _table_meta.TableMeta (None: nothing recorded)
    metric: DistanceMetric | None = None  # the table's metric, when the caller gave none
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def table(self) -> sa.Table | None:
        return self.view.table

    @property
    def shape(self) -> TableShape | None:
        return self.view.shape

    def reset(self) -> None:
        self.drop_pending, self.loaded, self.view = False, False, NO_TABLE
        self.fulltext_ready = False
        self.recorded, self.metric = None, None


@dataclass(frozen=True)
class SearchOptions:
    """The options every vector search takes (``search``, ``search_text``, their twins).

    Built by :meth:`of`, which checks them; ``filter`` is already parsed (once per call).
    """

    k: int = 4
    filter: Filter | None = None
    ids: list[str] | None = None  # restricts the search to these rows; [] finds nothing
    max_distance: float | None = None
    include_embeddings: bool = False
    prefilter: bool | None = None  # TiDB: None = post-filter, then exact if short
    num_candidates: int | None = None

    @classmethod
    def of(
        cls,
        *,
        k: int,
        filter: Filter | None,
        ids: list[str] | None,
        max_distance: float | None,
        include_embeddings: bool,
        prefilter: bool | None,
        num_candidates: int | None,
    ) -> SearchOptions:
        if max_distance is not None:
            if isinstance(max_distance, bool) or not isinstance(
                max_distance, (int, float, np.floating, np.integer)
            ):
                raise InvalidInputError(
                    f"max_distance must be a number, got {type(max_distance).__name__}"
                )
            max_distance = float(max_distance)
            if not math.isfinite(max_distance):
                raise InvalidInputError(
                    f"max_distance must be a finite number, got {max_distance!r}; pass "
                    "None for no threshold"
                )
        return cls(
            k=positive(k, "k"),
            filter=filter,
            ids=ids,
            max_distance=max_distance,
            include_embeddings=bool(include_embeddings),
            prefilter=prefilter,
            num_candidates=None
            if num_candidates is None
            else positive(num_candidates, "num_candidates"),
        )


@dataclass(frozen=True)
class Query:
    """What a search compares rows with: a vector, or text the server embeds."""

    vector: np.ndarray | None = None
    text: str | None = None  # only when the TiDB server embeds (auto-embedding)


class Backend(Protocol):
    """One engine's side of a vector table. Methods take the SQLAlchemy ``Table``."""

    db: Database
    settings: TableSettings
    state: TableState
    default_batch_rows: int
    default_batch_bytes: int
    text_batch_rows: int  # rows per statement when the server embeds each row
    delete_batch_rows: int | None  # rows per delete transaction (None: one transaction)

    def bind(self, db: Database) -> Backend:
        """This backend on another connection source (the async view's engine)."""
        ...

    @property
    def server_embeds(self) -> bool:
        """True when the database itself embeds texts (TiDB Cloud auto-embedding)."""
        ...

    @property
    def full_text_error(self) -> str | None:
        """Why full-text search cannot run here, or None when it can."""
        ...

    def generated_sql(self) -> str | None:
        """The SQL of a server-generated ``embedding`` column, or None."""
        ...

    def after_create(self, table: sa.Table) -> None:
        """Engine-specific steps after CREATE TABLE (the TiDB vector index)."""
        ...

    def check_created(self, conn: sa.Connection, table: sa.Table) -> None:
        """Right after CREATE TABLE, on its connection: refuse what the server skipped."""
        ...

    def drop_extras(self, conn: sa.Connection) -> None:
        """Drop what must go before the table itself (full-text indexes)."""
        ...

    def encode_vectors(self, matrix: np.ndarray) -> list[Any]:
        """The vectors as this engine stores them (TiDB vector text, float32 BLOBs)."""
        ...

    def upsert(self, table: sa.Table, rows: list[tuple[Any, ...]], batches: list[slice]) -> None:
        """Write encoded ``(id, embedding, document, meta)`` rows, a transaction a batch."""
        ...

    def insert_texts(
        self, table: sa.Table, rows: list[tuple[Any, ...]], batches: list[slice]
    ) -> None:
        """Write ``(id, document, meta)`` rows whose vectors the server computes."""
        ...

    def delete(
        self, table: sa.Table, ids: list[str] | None, where: sa.ColumnElement[bool] | None
    ) -> int:
        """Delete rows by ids (each ANDed with ``where``) or by ``where``; the count."""
        ...

    def clear(self, table: sa.Table) -> int:
        """Delete every row (the table stays); the count."""
        ...

    def search(self, table: sa.Table, query: Query, options: SearchOptions) -> list[SearchResult]:
        """The ``options.k`` nearest rows, nearest first."""
        ...

    def search_many(
        self, table: sa.Table, queries: np.ndarray, options: SearchOptions
    ) -> list[list[SearchResult]]:
        """:meth:`search` for each row of ``queries`` (checked float32), same options."""
        ...

    def full_text_rows(
        self, table: sa.Table, text: str, k: int, where: sa.ColumnElement[bool] | None
    ) -> list[Any]:
        """Rows ``(id, document, meta, text_score)`` matching ``text``, best first."""
        ...

    def create_full_text_index(self, parser: str) -> None: ...

    def create_vector_index(self, table: sa.Table | None) -> None:
        """Index the table for its metric (TiDB HNSW); ``table`` is None while missing."""
        ...

    def index_status(self) -> IndexStatus: ...

    def note_schema(self, conn: sa.Connection) -> None:
        """Remember the database's schema state before the table's shape is read."""
        ...

    def schema_changed(self) -> bool:
        """True when a table was dropped or created since :meth:`note_schema` (by anyone):
        the facade then reads the table's shape again."""
        ...

    def search_unchecked(
        self, table: sa.Table, vector: np.ndarray, options: SearchOptions
    ) -> list[SearchResult] | None:
        """:meth:`search` before the facade's schema check, when the answer itself can
        prove the schema unchanged (the embedded engine's snapshot, ``_fresh``); None:
        check the schema, then :meth:`search`."""
        ...

    def close(self) -> None:
        """Release what the backend holds (caches, watcher connections)."""
        ...


def positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
