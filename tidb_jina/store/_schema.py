"""The vector table's schema, and reading an existing table's shape.

The columns match the tables langchain-community's and llama-index's TiDBVectorStore
create (``id, embedding, document, meta, create_time, update_time``), so their users
switch without re-ingesting. New tables widen ``id`` to VARCHAR(512) (LlamaIndex node ids
and file-derived ids outgrow 36 characters) and ``document`` to MEDIUMTEXT on TiDB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from tidb_jina._errors import InvalidIdentifierError, SchemaError
from tidb_jina.store._types import VECTOR, MetadataJSON

ID_LENGTH = 512
INDEXED_VALUE_LENGTH = 512
MAX_IDENTIFIER_LENGTH = 64  # TiDB / MySQL identifier limit
REQUIRED_COLUMNS = ("id", "embedding", "document", "meta")

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VECTOR_TYPE = re.compile(r"^\s*vector\s*(?:\(\s*(\d+)\s*\))?", re.IGNORECASE)
_CHAR_LENGTH = re.compile(r"char\s*\(\s*(\d+)\s*\)", re.IGNORECASE)


def check_table_name(name: str) -> str:
    """Allow ASCII letters, digits and underscores (not first-digit), at most 64 chars."""
    if not isinstance(name, str) or not _TABLE_NAME.fullmatch(name):
        raise InvalidIdentifierError(
            f"table name {name!r} is not allowed: use ASCII letters, digits and underscores, "
            "starting with a letter or underscore (e.g. 'docs_v2')"
        )
    if len(name) > MAX_IDENTIFIER_LENGTH:
        raise InvalidIdentifierError(
            f"table name {name!r} is {len(name)} characters; TiDB allows at most "
            f"{MAX_IDENTIFIER_LENGTH}"
        )
    return name


@dataclass(frozen=True)
class TableShape:
    """What an existing table looks like."""

    dimension: int | None  # None for a bare VECTOR column (any dimension)
    id_length: int | None  # None when unbounded (TEXT ids)
    columns: frozenset[str]

    @property
    def has_update_time(self) -> bool:
        return "update_time" in self.columns


def build_table(
    name: str,
    dimension: int | None,
    dialect_name: str,
    *,
    id_length: int | None = ID_LENGTH,
    generated: str | None = None,
    indexed_key: str | None = None,
    comment: str | None = None,
) -> sa.Table:
    """The SQLAlchemy ``Table`` for a vector table on the given engine.

    ``generated``: the SQL expression of a server-side generated (auto-embedding)
    ``embedding`` column, TiDB only. ``indexed_key``: a metadata key whose value gets a
    generated, indexed column ``meta_<key>`` (e.g. LlamaIndex's ``ref_doc_id``).
    ``comment``: the table comment (TiDB; what filled the table, see ``_table_meta``).
    """
    tidb = dialect_name == "mysql"
    id_type = sa.String(id_length) if id_length else sa.Text()
    document_type = mysql.MEDIUMTEXT() if tidb else sa.Text()
    on_update = " ON UPDATE CURRENT_TIMESTAMP" if tidb else ""
    extra: list[sa.schema.SchemaItem] = []
    if indexed_key is not None:
        extra = _indexed_key_items(name, indexed_key, tidb)
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", id_type, primary_key=True),
        sa.Column(
            "embedding",
            VECTOR(dimension),
            *([sa.Computed(sa.text(generated), persisted=True)] if generated else []),
            nullable=generated is not None,
        ),
        sa.Column("document", document_type),
        sa.Column("meta", MetadataJSON()),
        sa.Column("create_time", sa.DateTime, server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.Column(
            "update_time", sa.DateTime, server_default=sa.text("CURRENT_TIMESTAMP" + on_update)
        ),
        *extra,
        comment=comment,
    )


def indexed_key_column(key: str) -> str:
    return f"meta_{key}"


def check_indexed_key(key: str) -> str:
    if not isinstance(key, str) or not _TABLE_NAME.fullmatch(key) or len(key) > 48:
        raise InvalidIdentifierError(
            f"indexed metadata key {key!r} must be ASCII letters, digits and underscores "
            "(at most 48), e.g. 'ref_doc_id'"
        )
    return key


def _indexed_key_items(table: str, key: str, tidb: bool) -> list[sa.schema.SchemaItem]:
    """A virtual generated column with the key's unquoted value, and an index on it."""
    check_indexed_key(key)
    path = f"'$.{key}'"  # validated identifier characters only: safe in DDL
    expression = (
        f"JSON_UNQUOTE(JSON_EXTRACT(meta, {path}))" if tidb else f"json_extract(meta, {path})"
    )
    column = sa.Column(
        indexed_key_column(key),
        sa.String(INDEXED_VALUE_LENGTH),
        sa.Computed(sa.text(expression), persisted=False),
    )
    return [column, sa.Index(f"ix_{table}_{key}"[:64], column)]


def read_shape(conn: sa.Connection, name: str) -> TableShape | None:
    """Inspect table ``name``; None when it does not exist. Raises if it is not ours."""
    if conn.dialect.name == "mysql":
        rows = conn.execute(
            sa.text(
                "SELECT COLUMN_NAME, COLUMN_TYPE FROM INFORMATION_SCHEMA.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :name"
            ),
            {"name": name},
        ).all()
    else:
        rows = conn.execute(
            sa.text("SELECT name, type FROM pragma_table_xinfo(:name)"), {"name": name}
        ).all()
    if not rows:
        return None
    types = {str(col).lower(): str(typ) for col, typ in rows}
    missing = [c for c in REQUIRED_COLUMNS if c not in types]
    if missing:
        raise SchemaError(
            f"table {name!r} exists but is not a vector table (missing columns "
            f"{', '.join(missing)}); choose another table_name or drop it"
        )
    match = _VECTOR_TYPE.match(types["embedding"])
    if match is None:
        raise SchemaError(
            f"table {name!r} has embedding column of type {types['embedding']!r}, not VECTOR; "
            "choose another table_name"
        )
    dimension = int(match.group(1)) if match.group(1) else None
    id_match = _CHAR_LENGTH.search(types["id"])
    return TableShape(
        dimension=dimension,
        id_length=int(id_match.group(1)) if id_match else None,
        columns=frozenset(types),
    )
