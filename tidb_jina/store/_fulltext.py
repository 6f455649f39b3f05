"""Full-text search on the embedded engine: an FTS5 index kept in sync with the table.

The index is an external-content FTS5 table over the ``document`` column (no second
copy of the text), maintained by three triggers (insert, delete, update of document),
so every write path, ours or plain SQL, keeps it exact. It is created on first use and
filled with FTS5's ``rebuild`` command.

Queries follow TiDB's ``FTS_MATCH_WORD`` semantics: the words of the query are
combined with OR and ranked by BM25 (higher is better); punctuation and FTS5 syntax in
the user's text are never interpreted (each word is a quoted string).
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

_WORD = re.compile(r"\w+", re.UNICODE)


def fts_name(table_name: str) -> str:
    return f"{table_name}__fts"


def match_expression(text: str) -> str | None:
    """FTS5 query for ``text``: its words, each quoted, OR-ed. None if it has no words."""
    words = dict.fromkeys(w.lower() for w in _WORD.findall(text))
    if not words:
        return None
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


def ddl(dialect: sa.Dialect, table_name: str) -> list[str]:
    """CREATE statements for the FTS5 table and its triggers (idempotent).

    DDL cannot bind identifiers; they are validated table names quoted by the dialect,
    and no value ever enters these strings (hence the S608 exemptions).
    """
    q = dialect.identifier_preparer.quote
    table, fts = q(table_name), q(fts_name(table_name))
    values = "(new.rowid, new.document)"
    insert = f"INSERT INTO {fts}(rowid, document) VALUES {values};"  # noqa: S608
    old = "('delete', old.rowid, old.document)"
    delete = f"INSERT INTO {fts}({fts}, rowid, document) VALUES {old};"  # noqa: S608
    return [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5(document, content={table}, "
        "content_rowid='rowid', tokenize='unicode61 remove_diacritics 2')",
        f"CREATE TRIGGER IF NOT EXISTS {q(table_name + '__fts_ai')} AFTER INSERT ON {table} "
        f"BEGIN {insert} END",
        f"CREATE TRIGGER IF NOT EXISTS {q(table_name + '__fts_ad')} AFTER DELETE ON {table} "
        f"BEGIN {delete} END",
        f"CREATE TRIGGER IF NOT EXISTS {q(table_name + '__fts_au')} AFTER UPDATE OF document "
        f"ON {table} BEGIN {delete} {insert} END",
        f"INSERT INTO {fts}({fts}) VALUES ('rebuild')",  # noqa: S608
    ]


def drop_ddl(dialect: sa.Dialect, table_name: str) -> str:
    return f"DROP TABLE IF EXISTS {dialect.identifier_preparer.quote(fts_name(table_name))}"


def exists_statement(table_name: str) -> sa.TextClause:
    return sa.text(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = :name"
    ).bindparams(name=fts_name(table_name))


def search_statement(
    dialect: sa.Dialect,
    table: sa.Table,
    match: str,
    k: int,
    where: sa.ColumnElement[bool] | None,
) -> sa.Select[tuple[str, str | None, object, float]]:
    """Rows matching ``match``, best BM25 first (SQLite's bm25() is negative: negate it)."""
    fts: sa.ColumnClause[Any] = sa.literal_column(
        dialect.identifier_preparer.quote(fts_name(table.name))
    )
    fts_table = sa.table(fts_name(table.name), sa.column("rowid"))
    text_score = (-sa.func.bm25(fts)).label("text_score")
    stmt = (
        sa.select(table.c.id, table.c.document, table.c.meta, text_score)
        .select_from(
            fts_table.join(table, fts_table.c.rowid == sa.literal_column(f"{table.name}.rowid"))
        )
        .where(fts.op("MATCH")(match))
    )
    if where is not None:
        stmt = stmt.where(where)
    return stmt.order_by(sa.desc("text_score")).limit(k)
