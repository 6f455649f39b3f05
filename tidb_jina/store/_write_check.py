"""A write's last check, inside its own transaction: the table is still the one its rows
were checked against (the embedded engine).

The facade checks the vectors against the table's shape as last read, and reads the
shape again when SQLite's schema cookie moved since. Between that check and the write
transaction another process may drop the table and create it again with another
dimension: the rows of the old size went into the new table, and every later search of
it failed ("holds vectors whose length is not ..."). A write transaction (``BEGIN
IMMEDIATE``) holds SQLite's write lock, so no schema changes while it runs: the table's
embedding column read inside it is the one the rows land in, and the batch goes on only
if the table is still there with the rows' dimension (another table created, an index
added: it goes on).

The column is read in every batch's transaction (one ``pragma_table_xinfo`` row, about
20 us), never skipped on an unchanged schema cookie: the cookie this process saw last
is no proof, since another thread of this process may have read the new table's schema
(and its cookie) between this write's check and its transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from tidb_jina._errors import DimensionMismatchError, SchemaError
from tidb_jina.store._schema import _VECTOR_TYPE

_EMBEDDING_TYPE = "SELECT type FROM pragma_table_xinfo(?) WHERE lower(name) = 'embedding'"


def same_table(table: sa.Table, rows: Sequence[tuple[Any, ...]]) -> Callable[[sa.Connection], None]:
    """A check to run first in each write transaction of ``rows`` (``(id, embedding,
    ...)``, every embedding of one size: checked by the facade) for ``table``.

    The dimension is the rows' own (their BLOBs' size), never ``table``'s: a table object
    handed over by another thread of this process that created the table meanwhile
    (``TableBase._create`` returns it as it is) has that thread's dimension, and
    4-dimension rows went into its 8-dimension table."""
    name = table.name
    dimension = len(rows[0][1]) // 4 if rows else None

    def check(conn: sa.Connection) -> None:
        row = conn.exec_driver_sql(_EMBEDDING_TYPE, (name,)).first()
        if row is None:
            raise SchemaError(
                f"table {name!r} was dropped by another connection while this write was "
                "prepared; this batch was not written (batches before it were): run the "
                "write again (it makes the table again)"
            )
        match = _VECTOR_TYPE.match(str(row[0]))
        if match is None:
            raise SchemaError(
                f"table {name!r} was made again by another connection as a table that is "
                f"not a vector table (embedding {row[0]!r}); this batch was not written: "
                "choose another table_name, or drop that table"
            )
        found = int(match.group(1)) if match.group(1) else None
        if dimension is not None and found not in (None, dimension):
            raise DimensionMismatchError(
                f"table {name!r} was made (again) with VECTOR({found}) by another "
                f"connection or thread while this write of {dimension}-dimension vectors "
                "was prepared; this batch was not written: use a model with "
                f"{found} dimensions, or another table_name"
            )

    return check
