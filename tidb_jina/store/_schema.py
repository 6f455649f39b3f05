"""The vector table's schema, and reading an existing table's shape.

The columns match the tables langchain-community's and llama-index's TiDBVectorStore
create (``id, embedding, document, meta, create_time, update_time``), so their users
switch without re-ingesting. New tables widen ``id`` to VARCHAR(512) (LlamaIndex node ids
and file-derived ids outgrow 36 characters) and ``document`` to MEDIUMTEXT on TiDB.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from tidb_jina._errors import InvalidIdentifierError, InvalidInputError, SchemaError
from tidb_jina.store._tidb import FullTextIndexClause
from tidb_jina.store._tidb_names import table_identifier
from tidb_jina.store._types import VECTOR, MetadataJSON

ID_LENGTH = 512
# TiDB's NO PAD binary collation for utf8mb4 (pkg/util/collate: derivedBinCollator, since
# v7.4): 'a' and 'a ' are different ids, as on the embedded engine. utf8mb4_bin, TiDB's
# default, is PAD SPACE and would make them one row.
ID_COLLATION = "utf8mb4_0900_bin"
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
    id_collation: str | None = None  # TiDB: the id column's collation

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
    full_text: bool = False,
    id_collation: str | None = ID_COLLATION,
    comment: str | None = None,
) -> sa.Table:
    """The SQLAlchemy ``Table`` for a vector table on the given engine.

    ``generated``: the SQL expression of a server-side generated (auto-embedding)
    ``embedding`` column, TiDB only. ``indexed_key``: a metadata key whose value gets a
    generated, indexed column ``meta_<key>`` (e.g. LlamaIndex's ``ref_doc_id``).
    ``full_text``: TiDB only, the full-text index inside ``CREATE TABLE``.
    ``id_collation``: TiDB only, the ``id`` column's collation (a new table's is the NO
    PAD ``utf8mb4_0900_bin``; an existing table's is read and kept).
    ``comment``: the table comment (TiDB; what filled the table, see ``_table_meta``).
    """
    tidb = dialect_name == "mysql"
    if tidb and id_length and id_collation:
        id_type: sa.types.TypeEngine[str] = mysql.VARCHAR(
            id_length, charset="utf8mb4", collation=id_collation
        )
    else:
        id_type = sa.String(id_length) if id_length else sa.Text()
    document_type = mysql.MEDIUMTEXT() if tidb else sa.Text()
    on_update = " ON UPDATE CURRENT_TIMESTAMP" if tidb else ""
    extra: list[sa.schema.SchemaItem] = []
    if indexed_key is not None:
        extra = _indexed_key_items(name, indexed_key, tidb)
    if tidb and full_text:
        extra.append(FullTextIndexClause(name))
    return sa.Table(
        table_identifier(name),  # quoted when TiDB's grammar reserves it
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
        info={ID_PADS_SPACES: tidb and pads_spaces(id_collation)},
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
                "SELECT COLUMN_NAME, COLUMN_TYPE, COLLATION_NAME FROM INFORMATION_SCHEMA.COLUMNS "
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
    types = {str(row[0]).lower(): str(row[1]) for row in rows}
    collations = {str(row[0]).lower(): row[2] for row in rows if len(row) > 2}
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
        id_collation=collations.get("id"),
    )


# --- ids and collations ------------------------------------------------------------------

ID_PADS_SPACES = "tidb_jina_id_pads_spaces"  # Table.info key: True on PAD SPACE id columns
# TiDB's NO PAD collations (pkg/util/collate IsPadSpaceCollation); every other is PAD SPACE.
NO_PAD_COLLATIONS = frozenset({"binary", "utf8mb4_0900_bin", "utf8mb4_0900_ai_ci"})


def pads_spaces(collation: str | None) -> bool:
    """True when TiDB compares ``collation`` ignoring trailing spaces ('a' = 'a ')."""
    return collation is not None and collation.lower() not in NO_PAD_COLLATIONS


def check_ids(table: sa.Table | None, ids: Iterable[str]) -> None:
    """Refuse ids ending in a space on a table whose ``id`` collation pads spaces.

    There TiDB stores ``'a '`` as the row ``'a'`` and ``delete(['a '])`` deletes ``'a'``;
    the embedded engine and new TiDB tables (``utf8mb4_0900_bin``) keep them apart. So ids
    mean the same row everywhere, or are refused here before any statement is sent.
    """
    if table is None or not table.info.get(ID_PADS_SPACES):
        return
    for value in ids:
        if isinstance(value, str) and value.endswith(" "):
            raise InvalidInputError(
                f"id {value[:40]!r} ends in a space, but table {table.name!r} compares ids "
                "with a PAD SPACE collation (TiDB's utf8mb4_bin: 'a' and 'a ' are the same "
                "row). Strip the trailing spaces, or use a new table (new tables use "
                f"{ID_COLLATION}, which keeps them apart)"
            )
