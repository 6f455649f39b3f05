"""What filled a vector table: its embedding model, dimension and metric, kept in the table.

A table records, when we create it, a small JSON object::

    {"tidb_jina": 1, "model": "jina-embeddings-v3", "dimension": 1024,
     "metric": "cosine", "server_model": null}

* TiDB: as the table's ``COMMENT`` (``CREATE TABLE ... COMMENT='{...}'``), so
  ``SHOW CREATE TABLE``, ``mysqldump`` and ``CREATE TABLE ... LIKE`` carry it. TiDB and
  MySQL allow 2048 characters in a table comment; a long model id is cut to
  :data:`MAX_MODEL_CHARS`.
* Embedded engine: one row per table in ``_tidb_jina_meta`` in the same database file,
  so a copy of the file carries it.

Tables made by langchain-community's or llama-index's TiDB stores (through tidb-vector)
record only their metric, as the embedding column's comment ``hnsw(distance=l2)``; with no
comment they search by cosine. :func:`read` turns both into a :class:`TableMeta`; a table
of ours made before this existed has none (``read`` returns None) and opens as before.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from tidb_jina.store._metrics import DistanceMetric

META_TABLE = "_tidb_jina_meta"
FORMAT_VERSION = 1
MAX_MODEL_CHARS = 400
# "hnsw(distance=l2)"; tidb-vector given its own enum on Python 3.11+ writes the member's
# name instead: "hnsw(distance=DistanceStrategy.EUCLIDEAN)".
_PEER_DISTANCE = re.compile(r"distance\s*=\s*['\"]?(?:\w+\.)?(\w+)", re.IGNORECASE)
_MODEL_ATTRIBUTES = ("model", "model_name", "model_id")


@dataclass(frozen=True)
class TableMeta:
    """What a table says about the vectors in it (any field may be unknown: None).

    ``origin`` is ``"tidb-jina"`` (recorded by us) or ``"peer"`` (read from a
    tidb-vector ``hnsw(distance=...)`` column comment: only the metric is known).
    """

    model: str | None = None
    dimension: int | None = None
    metric: DistanceMetric | None = None
    server_model: str | None = None
    origin: str = "tidb-jina"

    def to_json(self) -> str:
        return json.dumps(
            {
                "tidb_jina": FORMAT_VERSION,
                "model": self.model,
                "dimension": self.dimension,
                "metric": None if self.metric is None else self.metric.value,
                "server_model": self.server_model,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str | None) -> TableMeta | None:
        """Our JSON, or None when ``text`` is not it (an unrelated comment)."""
        if not text or not text.lstrip().startswith("{"):
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if not isinstance(value, dict) or "tidb_jina" not in value:
            return None
        metric = value.get("metric")
        dimension = value.get("dimension")
        return cls(
            model=_text(value.get("model")),
            dimension=dimension if isinstance(dimension, int) else None,
            metric=_metric(metric),
            server_model=_text(value.get("server_model")),
        )

    def describe(self) -> str:
        """``jina-embeddings-v3, 1024 dimensions, cosine`` (unknown parts left out)."""
        parts = [self.model or "an unrecorded model"]
        if self.dimension:
            parts.append(f"{self.dimension} dimensions")
        if self.metric is not None:
            parts.append(self.metric.value)
        if self.server_model:
            parts.append(f"embedded by TiDB with {self.server_model}")
        return ", ".join(parts)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _metric(value: Any) -> DistanceMetric | None:
    if not isinstance(value, str):
        return None
    try:
        return DistanceMetric.parse(value)
    except Exception:  # an unknown name in someone's comment: treat as unrecorded
        return None


def peer_metric(column_comment: str | None) -> DistanceMetric | None:
    """The metric of tidb-vector's ``hnsw(distance=l2)`` column comment (None if absent)."""
    match = _PEER_DISTANCE.search(column_comment or "")
    return _metric(match.group(1)) if match else None


def model_name(embedder: Any) -> str | None:
    """The model id an embedder (or a bound ``embed_documents`` method) says it uses.

    Looks at ``model``, ``model_name`` and ``model_id`` (our clients, LangChain and
    LlamaIndex embeddings); None when there is no such string.
    """
    owner = getattr(embedder, "__self__", embedder)  # a bound method: its object
    for attribute in _MODEL_ATTRIBUTES:
        value = getattr(owner, attribute, None)
        if isinstance(value, str) and value.strip():
            return value.strip()[:MAX_MODEL_CHARS]
    return None


def same_model(recorded: str, model: str) -> bool:
    """Whether two model ids name the same model: the Hugging Face id and the Jina API
    name (``jinaai/jina-embeddings-v3`` and ``jina-embeddings-v3``) or a local copy's
    path end in the same name, compared without case."""
    return _model_key(recorded) == _model_key(model)


def _model_key(model: str) -> str:
    return model.strip().replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()


def table_comment(meta: TableMeta) -> str:
    """The TiDB table comment for ``meta`` (within TiDB's 2048-character limit)."""
    return meta.to_json()


# --- reading and writing ------------------------------------------------------------------

_TIDB_TABLE_COMMENT = sa.text(
    "SELECT TABLE_COMMENT FROM INFORMATION_SCHEMA.TABLES "
    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :name"
)
_TIDB_COLUMN_COMMENT = sa.text(
    "SELECT COLUMN_TYPE, COLUMN_COMMENT FROM INFORMATION_SCHEMA.COLUMNS "
    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :name AND COLUMN_NAME = 'embedding'"
)
_SQLITE_HAS_META = sa.text(
    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = :meta"
).bindparams(meta=META_TABLE)
_SQLITE_READ = sa.text(
    f"SELECT info FROM {META_TABLE} WHERE table_name = :name"  # noqa: S608 (a constant)
)
_SQLITE_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {META_TABLE} (table_name TEXT PRIMARY KEY, info TEXT NOT NULL)"
)
_SQLITE_WRITE = sa.text(
    f"INSERT OR REPLACE INTO {META_TABLE} (table_name, info) VALUES (:name, :info)"  # noqa: S608
)
_SQLITE_FORGET = sa.text(f"DELETE FROM {META_TABLE} WHERE table_name = :name")  # noqa: S608


def read(conn: sa.Connection, table_name: str) -> TableMeta | None:
    """What table ``table_name`` records about itself (None: nothing; an older table)."""
    if conn.dialect.name == "mysql":
        comment = conn.execute(_TIDB_TABLE_COMMENT, {"name": table_name}).scalar()
        ours = TableMeta.from_json(comment)
        if ours is not None:
            return ours
        row = conn.execute(_TIDB_COLUMN_COMMENT, {"name": table_name}).first()
        metric = peer_metric(row[1] if row is not None else None)
        return None if metric is None else TableMeta(metric=metric, origin="peer")
    if not conn.execute(_SQLITE_HAS_META).scalar():
        return None
    return TableMeta.from_json(conn.execute(_SQLITE_READ, {"name": table_name}).scalar())


def write(conn: sa.Connection, table_name: str, meta: TableMeta) -> None:
    """Record ``meta`` for a table about to be created in this write transaction
    (embedded engine; on TiDB the comment is part of ``CREATE TABLE``, see
    :func:`table_comment`). A stale record of a table dropped by plain SQL is replaced."""
    if conn.dialect.name == "mysql":
        return
    exists = sa.text("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = :name")
    if conn.execute(exists, {"name": table_name}).scalar():
        return  # someone created it first: its record (or its lack of one) stands
    conn.exec_driver_sql(_SQLITE_CREATE)
    conn.execute(_SQLITE_WRITE, {"name": table_name, "info": meta.to_json()})


def forget(conn: sa.Connection, table_name: str) -> None:
    """Remove the record of a dropped table (embedded engine; TiDB's goes with the table)."""
    if conn.dialect.name == "mysql" or not conn.execute(_SQLITE_HAS_META).scalar():
        return
    conn.execute(_SQLITE_FORGET, {"name": table_name})
