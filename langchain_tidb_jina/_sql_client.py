"""``vector_store.tidb_vector_client``: langchain-community's raw-SQL door, kept open.

langchain-community's TiDB guide joins vector hits with other tables through
``vector_store.tidb_vector_client.execute(sql, params)`` (tidb-vector's
``TiDBVectorClient.execute``). :class:`TiDBVectorClient` keeps that call and its result
shape, ``{"success": bool, "result": rows | rowcount, "error": str | None}``, so the guide
runs with only the import changed. Anything else is the core ``VectorTable``'s (every
other attribute is forwarded to it).

Values travel as bound parameters only (``:name`` in the SQL, the value in ``params``);
a list or tuple value expands into ``IN (...)`` on every engine. On the embedded engine
the statement runs on the same SQLite database, where the ``VEC_*`` functions are
registered, and ``JSON_UNQUOTE`` is added so TiDB's JSON idiom reads the same.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from tidb_jina import InvalidInputError
from tidb_jina.store import VectorTable

# Internal core API, on purpose: raw SQL must take the same per-engine lock (the shared
# in-memory SQLite connection) and the same write marker (BEGIN IMMEDIATE on SQLite) as the
# table's own writes. A public ``VectorTable`` connection method would mean editing
# ``_table_base.py``; until one exists, these two names are the contract (tested by
# tests/langchain/test_lc_sql_client.py on every engine).
from tidb_jina.store._engine import WRITE_OPTION, engine_lock

__all__ = ["TiDBVectorClient"]

logger = logging.getLogger(__name__)


class TiDBVectorClient:
    """The table client with tidb-vector's ``execute(sql, params)``."""

    def __init__(self, table: VectorTable) -> None:
        self._table = table

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_table":  # copy / pickle probes, half-built
            raise AttributeError(name)
        return getattr(self._table, name)

    def __repr__(self) -> str:
        return f"TiDBVectorClient({self._table!r})"

    @property
    def vector_table(self) -> VectorTable:
        return self._table

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run one statement in its own transaction, committed when it succeeds.

        Returns ``{"success": True, "result": rows, "error": None}`` for a statement that
        returns rows (a list of row tuples), ``"result": rowcount`` otherwise (0 for
        DDL), and ``{"success": False, "result": None, "error": message}`` when the
        database refuses the statement (tidb-vector's contract: SQL errors are returned,
        not raised). A call that cannot be a statement (no SQL text, params not a dict)
        raises ``InvalidInputError``.
        """
        statement, bound = _statement(sql, params)
        engine = self._table.engine
        try:
            with engine_lock(engine), engine.connect() as conn:
                conn.execution_options(**{WRITE_OPTION: True})  # SQLite: BEGIN IMMEDIATE
                if engine.dialect.name == "sqlite":
                    _add_sqlite_functions(conn)
                with conn.begin():
                    return _run(conn, statement, bound)
        except sa.exc.SQLAlchemyError as exc:
            message = str(getattr(exc, "orig", None) or exc)
            logger.error("SQL execution error: %s", message)
            return {"success": False, "result": None, "error": message}


def _run(conn: sa.Connection, statement: sa.TextClause, bound: dict[str, Any]) -> dict[str, Any]:
    result = conn.execute(statement, bound)
    if result.returns_rows:
        return {"success": True, "result": result.fetchall(), "error": None}
    return {"success": True, "result": max(result.rowcount, 0), "error": None}


def _statement(sql: Any, params: Any) -> tuple[sa.TextClause, dict[str, Any]]:
    if not isinstance(sql, str) or not sql.strip():
        raise InvalidInputError(
            "execute() takes a non-empty SQL text first (got "
            + type(sql).__name__
            + "); values go separately in params: execute(sql, {'code': 'JFK'}) with "
            "':code' in the SQL"
        )
    if params is not None and not isinstance(params, Mapping):
        raise InvalidInputError(
            f"execute() params must be a dict of named parameters, got "
            f"{type(params).__name__}; write ':name' in the SQL and pass {{'name': value}}"
        )
    bound = dict(params or {})
    statement = sa.text(sql)
    names = set(statement.compile().params)
    lists = [k for k, v in bound.items() if isinstance(v, (list, tuple)) and k in names]
    if lists:  # "IN :codes" with a tuple: one placeholder per element on every driver
        statement = statement.bindparams(*(sa.bindparam(key, expanding=True) for key in lists))
    return statement, bound


def _json_unquote(value: Any) -> Any:
    """MySQL's JSON_UNQUOTE for SQLite, whose json_extract already unquotes strings."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _add_sqlite_functions(conn: sa.Connection) -> None:
    raw = conn.connection.dbapi_connection
    if isinstance(raw, sqlite3.Connection):
        raw.create_function("JSON_UNQUOTE", 1, _json_unquote, deterministic=True)
