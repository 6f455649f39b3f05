"""Reads and deletes that are the same SQL on every engine: count, get, delete, clear.

The filter arrives parsed (a :class:`~tidb_jina.store._filter_tree.Filter`) and is compiled
for the connection's dialect; an ``indexed_key`` column, when the table has one, serves
the filters on that key. Ids go in ``IN`` lists of at most ``IN_CHUNK`` values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from tidb_jina.store._db import Database
from tidb_jina.store._filter_sql import compile_filter
from tidb_jina.store._filter_tree import Filter
from tidb_jina.store._results import Record
from tidb_jina.store._rows import IN_CHUNK, chunks, record_from_row
from tidb_jina.store._schema import check_ids, indexed_key_column


def where_clause(
    table: sa.Table,
    filter: Filter | None,
    dialect: str,
    indexed_key: str | None = None,
    ids: Sequence[str] | None = None,
) -> sa.ColumnElement[bool] | None:
    """The filter (and id list) over ``table``, using the indexed key's column."""
    indexed = {}
    if indexed_key and indexed_key_column(indexed_key) in table.c:
        indexed[indexed_key] = table.c[indexed_key_column(indexed_key)]
    where = compile_filter(filter, table.c.meta, dialect, indexed)
    if ids is not None:
        check_ids(table, ids)  # a PAD SPACE id column would match 'a' for 'a '
        in_ids = table.c.id.in_(list(ids))
        where = in_ids if where is None else sa.and_(where, in_ids)
    return where


def count(db: Database, table: sa.Table, where: sa.ColumnElement[bool] | None) -> int:
    stmt = sa.select(sa.func.count()).select_from(table)
    if where is not None:
        stmt = stmt.where(where)
    with db.read() as conn:
        return int(conn.execute(stmt).scalar_one())


def get(
    db: Database,
    table: sa.Table,
    ids: list[str] | None,
    where: sa.ColumnElement[bool] | None,
    limit: int | None,
    include_embeddings: bool,
) -> list[Record]:
    """Rows by id (in the order given; missing ids are skipped) and/or filter."""
    columns = [table.c.id, table.c.document, table.c.meta]
    if include_embeddings:
        columns.append(table.c.embedding)
    base = sa.select(*columns)
    if where is not None:
        base = base.where(where)
    with db.read() as conn:
        if ids is None:
            stmt = base.order_by(table.c.id)
            if limit is not None:
                stmt = stmt.limit(limit)
            rows: list[Any] = list(conn.execute(stmt).all())
        else:
            found = {}
            check_ids(table, ids)
            for chunk in chunks(ids, IN_CHUNK):
                for row in conn.execute(base.where(table.c.id.in_(chunk))):
                    found[row[0]] = row
            rows = [found[i] for i in ids if i in found][:limit]
    return [record_from_row(row, include_embeddings) for row in rows]


def delete(
    db: Database,
    table: sa.Table,
    ids: list[str] | None,
    where: sa.ColumnElement[bool] | None,
    batch_rows: int | None = None,
) -> int:
    """Delete by ids (in chunks, each ANDed with ``where``) or by ``where`` alone.

    ``batch_rows=None``: one transaction. Otherwise (TiDB: its transaction size limit)
    at most ``batch_rows`` rows per transaction: id chunks, or for a filter the matching
    rows in primary-key order (:func:`delete_in_key_order`). Returns the rows deleted.
    """
    if ids is not None:
        check_ids(table, ids)
    if batch_rows is not None:
        if ids is None:
            return delete_in_key_order(db, table, where, batch_rows)
        deleted = 0
        for chunk in chunks(ids, min(batch_rows, IN_CHUNK)):
            with db.write() as conn:
                deleted += _delete_ids(conn, table, chunk, where)
        return deleted
    deleted = 0
    with db.write() as conn:
        if ids is None:
            assert where is not None  # the facade requires ids or a filter
            return int(conn.execute(sa.delete(table).where(where)).rowcount)
        for chunk in chunks(ids, IN_CHUNK):
            deleted += _delete_ids(conn, table, chunk, where)
    return deleted


def delete_statements(
    table: sa.Table, ids: list[str] | None, where: sa.ColumnElement[bool] | None
) -> list[sa.Delete]:
    """The statements :func:`delete` runs in one transaction (``batch_rows=None``)."""
    if ids is None:
        assert where is not None  # the facade requires ids or a filter
        return [sa.delete(table).where(where)]
    check_ids(table, ids)
    statements = []
    for chunk in chunks(ids, IN_CHUNK):
        stmt = sa.delete(table).where(table.c.id.in_(list(chunk)))
        statements.append(stmt if where is None else stmt.where(where))
    return statements


def clear(db: Database, table: sa.Table, batch_rows: int | None = None) -> int:
    """Delete every row: one statement, or ``batch_rows`` per transaction (TiDB)."""
    if batch_rows is not None:
        return delete_in_key_order(db, table, None, batch_rows)
    with db.write() as conn:
        return int(conn.execute(sa.delete(table)).rowcount)


def delete_in_key_order(
    db: Database, table: sa.Table, where: sa.ColumnElement[bool] | None, batch_rows: int
) -> int:
    """Delete the rows matching ``where`` (all: None), ``batch_rows`` per transaction.

    TiDB's docs ask for batched deletes above about ten thousand rows (the transaction
    size limit). Each transaction reads the next ``batch_rows`` matching ids after the
    last one handled (``SELECT id ... WHERE id > :last ... ORDER BY id LIMIT n``, a
    primary-key range: deleted rows are never scanned again, unlike a repeated
    ``DELETE ... LIMIT n``) and deletes those ids, with ``where`` checked again.
    The walk stops at the largest id present when it started, so it ends even while
    others keep inserting: rows written meanwhile may stay. Returns the rows deleted.
    """
    with db.read() as conn:
        top = conn.execute(sa.select(sa.func.max(table.c.id))).scalar()
    deleted, last = 0, None
    while top is not None:
        stmt = sa.select(table.c.id).where(table.c.id <= top)
        if last is not None:
            stmt = stmt.where(table.c.id > last)
        if where is not None:
            stmt = stmt.where(where)
        with db.write() as conn:
            batch = list(conn.execute(stmt.order_by(table.c.id).limit(batch_rows)).scalars())
            if batch:
                deleted += _delete_ids(conn, table, batch, where)
        if len(batch) < batch_rows:
            break
        last = batch[-1]
    return deleted


def _delete_ids(
    conn: sa.Connection,
    table: sa.Table,
    ids: Sequence[str],
    where: sa.ColumnElement[bool] | None,
) -> int:
    stmt = sa.delete(table).where(table.c.id.in_(list(ids)))
    if where is not None:
        stmt = stmt.where(where)
    return int(conn.execute(stmt).rowcount)
