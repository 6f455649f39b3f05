"""What a table holds, by source file: the counts behind ``sources``, ``--prune``, ``delete``."""

from __future__ import annotations

import sqlalchemy as sa

from tidb_jina.store import VectorTable

NO_SOURCE = "(no source)"


def source_counts(table: VectorTable) -> dict[str, int]:
    """Rows per ``source`` metadata value, by name (rows without one: ``NO_SOURCE``)."""
    t = table.table
    if t is None:
        return {}
    # JSON_EXTRACT (+ JSON_UNQUOTE on TiDB), rendered for the table's dialect.
    source = sa.type_coerce(t.c.meta, sa.JSON)["source"].as_string()
    stmt = sa.select(source, sa.func.count()).group_by(source)
    with table.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    counts: dict[str, int] = {}
    for name, count in rows:
        key = NO_SOURCE if name is None else str(name)
        counts[key] = counts.get(key, 0) + int(count)
    return dict(sorted(counts.items()))


def source_ids(table: VectorTable, name: str) -> set[str]:
    """The ids of the rows whose ``source`` metadata is ``name``."""
    t = table.table
    if t is None:
        return set()
    source = sa.type_coerce(t.c.meta, sa.JSON)["source"].as_string()
    with table.engine.connect() as conn:
        return set(conn.execute(sa.select(t.c.id).where(source == name)).scalars())


def under_roots(name: str, roots: list[str]) -> bool:
    """True when source ``name`` lies in one of the ingest roots (``"notes/"``)."""
    return any(name.startswith(root) for root in roots)
