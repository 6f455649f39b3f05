"""Shared fixtures: one behaviour suite over every engine, and the TiDB path without one.

``store_url`` yields a database URL per engine: the embedded engine in memory and in a
file always, and TiDB when ``TIDB_DATABASE_URL`` is set and answers a real probe
(skipped cleanly otherwise). ``store_connection`` is what to hand a store for that
engine (one shared Engine for ``sqlite://``). ``table_name`` is unique per test;
``make_table`` builds ``VectorTable`` objects on it and drops the table in the finalizer,
never in the test. The adapter suites build their stores on the same two fixtures.

``stub`` / ``make_stub_table``: ``VectorTable`` on the TiDB code path over
``tidb_jina.testing.MySQLRecorder`` (every statement recorded, no server).

``clean_env``: no real key or endpoint from the environment; the unit-test directories
use it automatically (tests marked ``network`` opt out).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from tidb_jina.store import VectorTable, _filter_tree, connect
from tidb_jina.testing import MySQLRecorder

TIDB_URL = os.environ.get("TIDB_DATABASE_URL", "")
KEY_ENV = (
    "JINA_API_KEY",
    "JINAAI_API_KEY",
    "HF_TOKEN",
    "HUGGINGFACEHUB_API_TOKEN",
    "JINA_API_BASE_URL",
    "HF_INFERENCE_ENDPOINT",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Unit tests never see real keys or endpoints (tests marked ``network`` opt out)."""
    if request.node.get_closest_marker("network"):
        return
    for name in KEY_ENV:
        monkeypatch.delenv(name, raising=False)


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
def store_connection(store_url: str) -> Iterator[str | sa.Engine]:
    """``store_url``, except ``sqlite://``: one Engine shared by every store of the test
    (each new in-memory engine would be a new, empty database). Disposed afterwards."""
    if store_url != "sqlite://":
        yield store_url
        return
    engine = connect(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def make_table(
    store_connection: str | sa.Engine, table_name: str
) -> Iterator[Callable[..., VectorTable]]:
    """Build VectorTables on one engine and one unique table; drop it afterwards."""
    created: list[VectorTable] = []

    def factory(**kwargs: Any) -> VectorTable:
        kwargs.setdefault("table_name", table_name)
        table = VectorTable(store_connection, **kwargs)
        created.append(table)
        return table

    yield factory
    for table in created:
        table.drop()
        table.close()  # disposes the pool of a URL table, never a shared Engine


# --- the TiDB code path without a server ------------------------------------------------


@pytest.fixture
def stub() -> MySQLRecorder:
    """A recording stand-in for a self-managed TiDB (``tidb_jina.testing``)."""
    return MySQLRecorder()


@pytest.fixture
def make_stub_table(stub: MySQLRecorder) -> Iterator[Callable[..., VectorTable]]:
    """``make_stub_table([recorder], **kwargs)``: a ``VectorTable`` named ``docs`` on the
    TiDB code path whose connections talk to ``recorder`` (default: ``stub``)."""
    created: list[VectorTable] = []

    def factory(recorder: MySQLRecorder | None = None, **kwargs: Any) -> VectorTable:
        recorder = recorder or stub
        kwargs.setdefault("table_name", "docs")
        engine_args = {**kwargs.pop("engine_args", {}), **recorder.engine_args()}
        table = VectorTable(recorder.url, engine_args=engine_args, **kwargs)
        created.append(table)
        return table

    yield factory
    for table in created:
        table.close()


@pytest.fixture
def filter_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The location of every dict the parser reads (its recursive entry point, spied)."""
    seen: list[str] = []
    real = _filter_tree._parse_filter

    def spy(filter: Any, where: str) -> Any:
        seen.append(where)
        return real(filter, where)

    monkeypatch.setattr(_filter_tree, "_parse_filter", spy)
    return seen
