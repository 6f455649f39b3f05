"""Fixtures of the reliability suite: a clean environment and per-test embedded stores."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tidb_jina.store import VectorTable


@pytest.fixture(autouse=True)
def _clean_env(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests never see real keys, endpoints (the root ``clean_env``) or databases."""
    monkeypatch.delenv("TIDB_DATABASE_URL", raising=False)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "reliability.db"


@pytest.fixture
def db_url(db_path: Path) -> str:
    return f"sqlite:///{db_path}"


@pytest.fixture
def make_table(db_url: str) -> Iterator[Callable[..., VectorTable]]:
    """VectorTables on one file database (a unique table per test); engines disposed after."""
    created: list[VectorTable] = []
    name = f"t_{uuid.uuid4().hex[:10]}"

    def factory(**kwargs: Any) -> VectorTable:
        kwargs.setdefault("table_name", name)
        table = VectorTable(kwargs.pop("url", db_url), **kwargs)
        created.append(table)
        return table

    yield factory
    for table in created:
        table.engine.dispose()
