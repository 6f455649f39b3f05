"""A write's last check, inside its own transaction: the table is still the one its rows
were checked against (the embedded engine).

The facade checks the vectors against the table's shape as last read, and reads the
shape again when SQLite's schema cookie moved since. Between that check and the write
transaction another process may drop the table and create it again with another
dimension: the rows of the old size went into the new table, and every later search of
it failed ("holds vectors whose length is not ..."). A write transaction (``BEGIN
IMMEDIATE``) holds SQLite's write lock, so no schema changes while it runs: the cookie
read inside it is the one the rows land under. When it is the cookie the shape was read
under, nothing more is read (one PRAGMA per batch); otherwise the table's shape is read
again in the transaction, and the batch goes on only if the table is still there with
the rows' dimension (another table created, an index added: it goes on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import sqlalchemy as sa

from tidb_jina._errors import DimensionMismatchError, SchemaError
from tidb_jina.store._schema import read_shape

if TYPE_CHECKING:
    from tidb_jina.store._embedded import VectorCache


def same_table(cache: VectorCache, table: sa.Table) -> Callable[[sa.Connection], None]:
    """A check to run first in each write transaction of rows for ``table``."""
    name = table.name
    dimension = getattr(table.c.embedding.type, "dimension", None)

    def check(conn: sa.Connection) -> None:
        seen = cache.schema_seen
        if seen is None:  # no shape read by this table yet (or dropped by it)
            return
        if int(conn.exec_driver_sql("PRAGMA schema_version").scalar_one()) == seen:
            return
        shape = read_shape(conn, name)
        if shape is None:
            raise SchemaError(
                f"table {name!r} was dropped by another connection while this write was "
                "prepared; this batch was not written: run the write again (it makes the "
                "table again)"
            )
        if dimension is not None and shape.dimension not in (None, dimension):
            raise DimensionMismatchError(
                f"table {name!r} was made again by another connection with "
                f"VECTOR({shape.dimension}) while this write of {dimension}-dimension "
                "vectors was prepared; this batch was not written: use a model with "
                f"{shape.dimension} dimensions, or another table_name"
            )

    return check
