"""Shared fixtures: one behaviour suite over every engine.

``store_url`` yields a database URL per engine: the embedded engine in memory and in a
file always, and TiDB when ``TIDB_DATABASE_URL`` is set and answers a real probe
(skipped cleanly otherwise). ``table_name`` is unique per test; ``make_table`` builds
``VectorTable`` objects on it and drops the table in the finalizer, never in the test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from tidb_jina.store import VectorTable, connect

TIDB_URL = os.environ.get("TIDB_DATABASE_URL", "")


def _tidb_reachable() -> str | None:
    """None if TiDB answers a vector query, else why not (the skip reason)."""
    if not TIDB_URL:
        return "TIDB_DATABASE_URL is not set"
    from tidb_jina.store import connect

    try:
        engine = connect(TIDB_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT VEC_DIMS('[1,2]')")).scalar_one()
        engine.dispose()
    except Exception as exc:  # the probe decides the skip; report why
        return f"TiDB at TIDB_DATABASE_URL is not usable: {exc.__class__.__name__}"
    return None


_TIDB_SKIP: str | bool | None = False


def _tidb_skip() -> str | None:
    global _TIDB_SKIP
    if _TIDB_SKIP is False:
        _TIDB_SKIP = _tidb_reachable()
    return _TIDB_SKIP  # type: ignore[return-value]


ENGINES = [
    pytest.param("memory", id="embedded-memory"),
    pytest.param("file", id="embedded-file"),
    pytest.param("tidb", id="tidb", marks=pytest.mark.tidb),
]


@pytest.fixture(params=ENGINES)
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    kind = request.param
    if kind == "memory":
        return "sqlite://"
    if kind == "file":
        return f"sqlite:///{tmp_path / 'store.db'}"
    reason = _tidb_skip()
    if reason:
        pytest.skip(reason)
    return TIDB_URL


@pytest.fixture
def table_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_table(store_url: str, table_name: str) -> Iterator[Callable[..., VectorTable]]:
    """Build VectorTables on one engine and one unique table; drop it afterwards."""
    created: list[VectorTable] = []
    engines: dict[str, sa.Engine] = {}

    def factory(**kwargs: Any) -> VectorTable:
        kwargs.setdefault("table_name", table_name)
        if store_url == "sqlite://":
            # every VectorTable of one test must see the same in-memory database
            engines.setdefault("memory", connect(store_url))
            table = VectorTable(engines["memory"], **kwargs)
        else:
            table = VectorTable(store_url, **kwargs)
        created.append(table)
        return table

    yield factory
    for table in created:
        table.drop()
        if table.engine is not engines.get("memory"):
            table.engine.dispose()
