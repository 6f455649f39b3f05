"""TiDB-only DDL and catalogue reads: the HNSW vector index, TiFlash, full-text indexes.

Statement forms follow reference/protocols.md section 3.4 and 3.7 (and pytidb, which
runs them in production):

* self-managed TiDB: ``ALTER TABLE t SET TIFLASH REPLICA 1``, then
  ``CREATE VECTOR INDEX IF NOT EXISTS i ON t ((VEC_COSINE_DISTANCE(embedding))) USING HNSW``
  (self-managed 8.5 rejects ``ADD_COLUMNAR_REPLICA_ON_DEMAND``);
* TiDB Cloud Starter: the same index statement with ``ADD_COLUMNAR_REPLICA_ON_DEMAND``,
  which creates the replica it needs;
* full-text (Starter only): ``CREATE FULLTEXT INDEX IF NOT EXISTS i ON t (document) WITH
  PARSER MULTILINGUAL ADD_COLUMNAR_REPLICA_ON_DEMAND``; a table with one cannot be dropped
  until the index is dropped.

Identifiers are validated (ASCII letters, digits, underscores) and quoted by the dialect,
and always when TiDB's grammar reserves them (:mod:`._tidb_names`); no value is ever
formatted into these statements.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

from tidb_jina.store import _tidb_names
from tidb_jina.store._metrics import DistanceMetric

FULLTEXT_PARSERS = ("MULTILINGUAL", "STANDARD")

# TiDB Cloud Starter (serverless) gateway hosts, as pytidb recognises them, plus their
# private-link endpoints (gateway01-privatelink.<region>...).
_STARTER_HOST = re.compile(
    r"(^|\.)gateway\d{2}(-privatelink)?\.(.+)\.(prod|dev|staging)\.(shared\.)?"
    r"(aws|alicloud)\.tidbcloud\.com$",
    re.IGNORECASE,
)
# Error texts differ across versions ("vector index" vs "columnar index"): match loosely.
_NO_TIFLASH = re.compile(r"tiflash|columnar replica|replica is nil|store count is 0", re.IGNORECASE)


def is_starter_host(host: str | None) -> bool:
    """A Starter gateway, public or private-link, any case, with or without a trailing dot."""
    return bool(host) and bool(_STARTER_HOST.search((host or "").rstrip(".")))


def is_missing_tiflash(error: BaseException) -> bool:
    return bool(_NO_TIFLASH.search(str(getattr(error, "orig", error))))


def vector_index_name(table_name: str) -> str:
    return f"vidx_{table_name}"[:64]


def fulltext_index_name(table_name: str) -> str:
    return f"ftidx_{table_name}"[:64]


def _quote(dialect: sa.Dialect, name: str) -> str:
    return _tidb_names.quote(dialect, name)  # TiDB reserves words MySQL does not


def vector_index_ddl(
    dialect: sa.Dialect, table_name: str, metric: DistanceMetric, *, starter: bool
) -> list[str]:
    """Statements that give ``table_name`` an HNSW index for ``metric``, in order."""
    table = _quote(dialect, table_name)
    index = _quote(dialect, vector_index_name(table_name))
    create = (
        f"CREATE VECTOR INDEX IF NOT EXISTS {index} ON {table} "
        f"(({metric.sql_function}(embedding))) USING HNSW"
    )
    if starter:
        return [create + " ADD_COLUMNAR_REPLICA_ON_DEMAND"]
    return [f"ALTER TABLE {table} SET TIFLASH REPLICA 1", create]


def fulltext_index_ddl(dialect: sa.Dialect, table_name: str, parser: str = "MULTILINGUAL") -> str:
    parser = parser.upper()
    if parser not in FULLTEXT_PARSERS:
        raise ValueError(f"parser must be one of {FULLTEXT_PARSERS}, got {parser!r}")
    table = _quote(dialect, table_name)
    index = _quote(dialect, fulltext_index_name(table_name))
    return (
        f"CREATE FULLTEXT INDEX IF NOT EXISTS {index} ON {table} (document) "
        f"WITH PARSER {parser} ADD_COLUMNAR_REPLICA_ON_DEMAND"
    )


class FullTextIndexClause(sa.schema.Constraint):
    """``FULLTEXT INDEX <name> (document) WITH PARSER <parser>`` inside ``CREATE TABLE``.

    Created with the table in one statement, a full-text index that the server cannot
    build fails the ``CREATE TABLE`` itself: no table is left without its index (the
    form is the docs' own, ``CREATE TABLE t (..., FULLTEXT INDEX (title) WITH PARSER
    MULTILINGUAL)``; reference 3.7).
    """

    __visit_name__ = "tidb_fulltext_index"

    def __init__(self, table_name: str, parser: str = "MULTILINGUAL") -> None:
        super().__init__(name=fulltext_index_name(table_name))
        self.parser = _check_parser(parser)


@compiles(FullTextIndexClause, "mysql")
def _compile_fulltext_clause(clause: FullTextIndexClause, compiler: object, **kw: object) -> str:
    name = _tidb_names.quote(compiler.dialect, str(clause.name))  # type: ignore[attr-defined]
    return f"FULLTEXT INDEX {name} (document) WITH PARSER {clause.parser}"


# Warnings TiDB leaves on a CREATE TABLE. 1214 (ER_TABLE_CANT_HANDLE_FT): a build without
# full-text search skips an inline FULLTEXT INDEX and creates the table anyway
# (pkg/ddl buildTableInfo: "AppendWarning(ErrTableCantHandleFt); continue"). 1050: IF NOT
# EXISTS found the table already there.
WARN_FULLTEXT_SKIPPED = 1214
WARN_TABLE_EXISTS = 1050


def has_fulltext_clause(table: sa.Table) -> bool:
    """True when ``table``'s CREATE TABLE carries the inline full-text index."""
    return any(isinstance(c, FullTextIndexClause) for c in table.constraints)


def _check_parser(parser: str) -> str:
    parser = parser.upper()
    if parser not in FULLTEXT_PARSERS:
        raise ValueError(f"parser must be one of {FULLTEXT_PARSERS}, got {parser!r}")
    return parser


def drop_index_ddl(dialect: sa.Dialect, table_name: str, index_name: str) -> str:
    return f"ALTER TABLE {_quote(dialect, table_name)} DROP INDEX {_quote(dialect, index_name)}"


INDEX_STATUS_SQL = sa.text(
    "SELECT INDEX_NAME, INDEX_KIND, ROWS_STABLE_INDEXED, ROWS_STABLE_NOT_INDEXED, "
    "ROWS_DELTA_INDEXED, ROWS_DELTA_NOT_INDEXED, ERROR_MESSAGE "
    "FROM INFORMATION_SCHEMA.TIFLASH_INDEXES "
    "WHERE TIDB_DATABASE = DATABASE() AND TIDB_TABLE = :table"
)

# Indexes on ``document``: only a full-text index can be one (TEXT takes no B-tree index
# without a prefix length, and neither we nor the peers create one).
FULLTEXT_INDEXES_SQL = sa.text(
    "SELECT DISTINCT INDEX_NAME FROM INFORMATION_SCHEMA.STATISTICS "
    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table AND COLUMN_NAME = 'document'"
)

# pytidb's check (``Table.has_fts_index``): TiFlash's view of the full-text indexes.
FULLTEXT_TIFLASH_INDEXES_SQL = sa.text(
    "SELECT INDEX_NAME FROM INFORMATION_SCHEMA.TIFLASH_INDEXES "
    "WHERE TIDB_DATABASE = DATABASE() AND TIDB_TABLE = :table "
    "AND COLUMN_NAME = 'document' AND INDEX_KIND = 'FullText'"
)

TABLE_INDEXES_SQL = sa.text(
    "SELECT DISTINCT INDEX_NAME FROM INFORMATION_SCHEMA.STATISTICS "
    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table"
)


@dataclass(frozen=True)
class IndexStatus:
    """Where a table's vector search stands.

    ``kind`` is ``"hnsw"`` (TiDB vector index), ``"exact"`` (no index: every search scans,
    which is what the embedded engine always does) or ``"missing"`` (the table does not
    exist). ``rows_pending`` counts rows TiFlash has not indexed yet (they are still
    found, more slowly); ``ready`` is True when nothing is pending.
    """

    kind: str
    index_name: str | None = None
    rows_indexed: int = 0
    rows_pending: int = 0
    error: str | None = None
    note: str = ""

    @property
    def ready(self) -> bool:
        return self.kind != "missing" and self.rows_pending == 0 and not self.error


def index_status_from_rows(rows: list[sa.Row], index_name: str) -> IndexStatus:
    """Sum TiFlash's per-instance rows for our vector index into one status."""
    mine = [r for r in rows if index_name == r.INDEX_NAME]
    if not mine:
        return IndexStatus(
            kind="exact",
            note="no vector index reported by TiFlash: searches scan the whole table",
        )
    indexed = sum(int(r.ROWS_STABLE_INDEXED or 0) + int(r.ROWS_DELTA_INDEXED or 0) for r in mine)
    pending = sum(
        int(r.ROWS_STABLE_NOT_INDEXED or 0) + int(r.ROWS_DELTA_NOT_INDEXED or 0) for r in mine
    )
    errors = "; ".join(sorted({r.ERROR_MESSAGE for r in mine if r.ERROR_MESSAGE}))
    return IndexStatus(
        kind="hnsw",
        index_name=index_name,
        rows_indexed=indexed,
        rows_pending=pending,
        error=errors or None,
        note=""
        if not pending
        else "TiFlash is still building the index (ALTER TABLE ... COMPACT speeds it up)",
    )


def fulltext_search_statement(
    table: sa.Table, text: str, k: int, where: sa.ColumnElement[bool] | None
) -> sa.Select[tuple[str, str | None, object, float]]:
    """``FTS_MATCH_WORD`` in WHERE and in ORDER BY ... DESC LIMIT k (reference 3.7)."""
    # Untyped on purpose: a Boolean type would render "... = 1" on MySQL dialects, while
    # TiDB's full-text pushdown expects the bare match function in WHERE.
    matched = sa.func.FTS_MATCH_WORD(text, table.c.document)
    score = sa.func.FTS_MATCH_WORD(text, table.c.document, type_=sa.Float).label("text_score")
    stmt = sa.select(table.c.id, table.c.document, table.c.meta, score).where(matched)
    if where is not None:
        stmt = stmt.where(where)
    return stmt.order_by(sa.desc("text_score")).limit(k)
