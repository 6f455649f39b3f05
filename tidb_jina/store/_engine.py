"""Engines: TiDB over ``mysql+pymysql`` and the embedded SQLite engine.

``connect()`` turns what the user gave (a URL, an existing ``Engine``, or nothing and
``TIDB_DATABASE_URL`` in the environment) into an engine set up for this package. It does
no I/O: SQLAlchemy connects on first use.

TiDB: a plain ``mysql://`` URL gets the PyMySQL driver; connections are recycled after
300 s and pinged before use (TiDB Cloud closes idle connections), ``utf8mb4`` is the
charset, and TLS follows one policy for both drivers (``_tls``): TiDB Cloud hosts, and
URLs that ask for it, get required, verified TLS with host-name checking.

Embedded: file databases use WAL and a busy timeout; every transaction starts with an
explicit ``BEGIN`` (``BEGIN IMMEDIATE`` for writes, so two writers queue on the busy
timeout instead of failing on a lock upgrade). ``sqlite://`` (in memory) lives in one
connection shared by all threads, so it is used under a lock.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from tidb_jina._errors import ConfigurationError
from tidb_jina._redact import remember_secrets
from tidb_jina.store import _sqlite
from tidb_jina.store._driver_args import check_driver_args, fold_tls_args, guard_user_engine
from tidb_jina.store._memdb import private_memdb
from tidb_jina.store._tls import (
    connect_requiring_tls,
    normalize_host,
    tls_policy,
    url_mentions_tls,
)
from tidb_jina.store._urls import embedded_url

logger = logging.getLogger("tidb_jina")

ENV_DATABASE_URL = "TIDB_DATABASE_URL"
POOL_RECYCLE_S = 300
MAX_STATEMENT_BYTES = 16 * 1024 * 1024
WRITE_OPTION = "tidb_jina_write"

_MEMORY_LOCKS: weakref.WeakKeyDictionary[sa.Engine, threading.RLock] = weakref.WeakKeyDictionary()
_NO_URL_HELP = (
    "no database given: pass connection='mysql+pymysql://USER:PASSWORD@HOST:4000/DB' for "
    "TiDB, or 'sqlite:///vectors.db' for the embedded engine, or set the "
    f"{ENV_DATABASE_URL} environment variable"
)


def connect(
    connection: str | URL | sa.Engine | None = None,
    *,
    engine_args: Mapping[str, Any] | None = None,
    verify_tls: bool = True,
) -> sa.Engine:
    """Return an engine for ``connection`` (URL or Engine) or ``$TIDB_DATABASE_URL``.

    TLS: see :mod:`tidb_jina.store._tls` (required and verified for TiDB Cloud hosts and
    whenever the URL asks). ``verify_tls=False`` turns off certificate verification (still
    encrypted); it logs a warning, since it lets a man in the middle read everything.
    """
    if isinstance(connection, AsyncEngine) or (
        isinstance(connection, sa.Engine) and connection.dialect.is_async
    ):
        raise ConfigurationError(
            "an async Engine cannot serve the table's sync calls: pass the connection URL "
            "instead (the table makes its own async engine for .aio, under the same TLS "
            "policy), or a sync Engine (mysql+pymysql://...)"
        )
    if isinstance(connection, sa.Engine):
        if engine_args:
            raise ConfigurationError(
                "engine_args cannot be applied to an existing Engine; pass a URL instead, "
                "or create the Engine with those arguments yourself"
            )
        check_dialect(connection.dialect.name)
        _check_host(connection.url)  # an Engine built from a password with a raw "@"
        if connection.dialect.name == "sqlite":
            _instrument_sqlite(connection, file_backed=_sqlite_file_backed(connection.url))
        else:
            guard_user_engine(connection)  # TiDB Cloud: never a clear-text fallback
        return connection
    if connection is None or (isinstance(connection, str) and not connection.strip()):
        connection = os.environ.get(ENV_DATABASE_URL) or None
        if connection is None:
            raise ConfigurationError(_NO_URL_HELP)
    url = parse_url(embedded_url(connection))  # a bare "kb.db" is the embedded engine
    backend = url.get_backend_name()
    check_dialect(backend)
    if backend == "mysql":
        return _tidb_engine(url, dict(engine_args or {}), verify_tls=verify_tls)
    return _sqlite_engine(url, dict(engine_args or {}))


def connect_async(
    connection: str | URL,
    *,
    engine_args: Mapping[str, Any] | None = None,
    verify_tls: bool = True,
) -> AsyncEngine:
    """The async twin of :func:`connect` for a URL: aiomysql for TiDB, aiosqlite embedded."""
    url = parse_url(connection)
    args = dict(engine_args or {})
    if url.get_backend_name() == "mysql":
        url = url.set(drivername=mysql_driver(url, "mysql+aiomysql"))
        url, args = _tidb_settings(url, args, verify_tls)
        with _bad_option_values():
            engine = create_async_engine(url, **args)
        remember_secrets(engine.sync_engine, args)
        return engine
    file_backed = _sqlite_file_backed(url)
    if not file_backed:
        raise ConfigurationError("an in-memory database cannot be shared with an async engine")
    connect_args = dict(args.pop("connect_args", {}) or {})
    connect_args.setdefault("check_same_thread", False)
    engine = create_async_engine(
        url.set(drivername="sqlite+aiosqlite"), connect_args=connect_args, **args
    )
    _instrument_sqlite(engine.sync_engine, file_backed=True)
    return engine


def async_source(
    connection: str | URL | sa.Engine | None,
    engine_args: Mapping[str, Any] | None,
    verify_tls: bool = True,
) -> tuple[URL, dict[str, Any], bool] | None:
    """What an async twin needs to reach the same database natively, or None if it can't."""
    if isinstance(connection, sa.Engine):
        return None
    url = parse_url(embedded_url(connection or os.environ.get(ENV_DATABASE_URL, "")))
    if url.get_backend_name() == "sqlite" and not _sqlite_file_backed(url):
        return None
    return url, dict(engine_args or {}), verify_tls


def check_dialect(name: str) -> None:
    if name not in ("mysql", "sqlite"):
        raise ConfigurationError(
            f"unsupported database {name!r}: use a TiDB URL 'mysql+pymysql://...' or the "
            "embedded engine 'sqlite:///path.db'"
        )


def parse_url(connection: str | URL) -> URL:
    """Parse a connection URL; every problem is a ConfigurationError without the password.

    A password given as ``?password=`` (or ``?passwd=``) moves into the URL's password,
    so SQLAlchemy masks it everywhere the URL is shown.
    """
    try:
        url = make_url(connection)
        url.port  # noqa: B018  (a non-numeric port raises ValueError here)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot parse the connection URL ({exc.__class__.__name__}); expected "
            "'mysql+pymysql://USER:PASSWORD@HOST:4000/DB' or 'sqlite:///path.db'. If the "
            "password contains @ : / ? or #, percent-encode it (urllib.parse.quote_plus)"
        ) from None
    _check_host(url)
    given = [k for k in ("password", "passwd") if k in url.query]
    if given:
        if url.password is not None or len(given) > 1:
            raise ConfigurationError(
                "the connection URL gives the password twice (before the '@' and as "
                "?password=); keep one"
            )
        value = url.query[given[0]]
        if not isinstance(value, str):
            raise ConfigurationError("?password= is given more than once in the connection URL")
        url = url.difference_update_query(given).set(password=value)
    return url


def mysql_driver(url: URL, wanted: str) -> str:
    """``wanted`` (PyMySQL for sync, aiomysql for async) for a TiDB URL that names either
    driver or none; another driver would escape the TLS policy: a ConfigurationError."""
    if url.drivername not in ("mysql", "mysql+pymysql", "mysql+aiomysql"):
        raise ConfigurationError(
            f"the connection URL names the driver {url.drivername!r}; tidb-jina reaches "
            "TiDB through PyMySQL (sync) and aiomysql (async) so that one TLS policy "
            "covers both: write mysql+pymysql://USER:PASSWORD@HOST:4000/DB"
        )
    return wanted


@contextmanager
def _bad_option_values() -> Iterator[None]:
    """SQLAlchemy checks ``engine_args`` and converts URL options (``connect_timeout=
    soon``) when it builds the engine: what it rejects is a ConfigurationError, not a raw
    ValueError / TypeError."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            "SQLAlchemy cannot use an option in the connection URL or in engine_args "
            f"({exc.__class__.__name__}: {exc}); correct or remove it (e.g. "
            "?connect_timeout= takes whole seconds)"
        ) from None


def _check_host(url: URL) -> None:
    if "@" in (url.host or ""):
        # SQLAlchemy split at the first "@": the rest of the password became the host,
        # which every message naming the host (and the driver's own errors) would show.
        raise ConfigurationError(
            "the connection URL has more than one '@': the password must not contain a raw "
            "'@'; percent-encode it (urllib.parse.quote_plus(password), '@' becomes '%40')"
        )


def safe_url(url: URL) -> str:
    """The URL as text with the password masked, however it was given."""
    masked = url.difference_update_query([k for k in ("password", "passwd") if k in url.query])
    if masked is not url:
        masked = masked.update_query_dict({"password": "***"})
    return masked.render_as_string(hide_password=True)


def _tidb_engine(url: URL, args: dict[str, Any], *, verify_tls: bool) -> sa.Engine:
    url = url.set(drivername=mysql_driver(url, "mysql+pymysql"))
    url, args = _tidb_settings(url, args, verify_tls)
    with _bad_option_values():
        engine = sa.create_engine(url, **args)
    remember_secrets(engine, args)
    event.listen(engine, "before_cursor_execute", _whole_batches)
    return engine


def _whole_batches(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    """Let PyMySQL send one upsert batch as one multi-row INSERT.

    PyMySQL cuts ``executemany`` INSERTs at 1,024,000 bytes; our batches are bounded by
    ``batch_bytes`` (4 MiB by default), far below TiDB's 64 MiB max_allowed_packet.
    """
    if executemany and hasattr(cursor, "max_stmt_length"):
        cursor.max_stmt_length = MAX_STATEMENT_BYTES


def _tidb_settings(
    url: URL, args: dict[str, Any], verify_tls: bool = True
) -> tuple[URL, dict[str, Any]]:
    """URL and engine arguments every TiDB engine gets (sync or async).

    TLS follows :func:`tidb_jina.store._tls.tls_policy`, the same for both drivers; an
    ``ssl.SSLContext`` the caller put in ``connect_args`` is used as given, while
    ``ssl_*`` keys and a PyMySQL ``ssl`` dict there join the URL's options
    (:mod:`tidb_jina.store._driver_args`).
    """
    driver = "aiomysql" if url.drivername.endswith("aiomysql") else "pymysql"
    if "charset" not in url.query:
        url = url.update_query_dict({"charset": "utf8mb4"})
    args.setdefault("pool_recycle", POOL_RECYCLE_S)
    args.setdefault("pool_pre_ping", True)
    connect_args = dict(args.pop("connect_args", {}) or {})
    url, connect_args = fold_tls_args(url, connect_args)  # ssl_* keys: the same policy
    if "ssl" in connect_args:
        if url_mentions_tls(url):
            raise ConfigurationError(
                "TLS is configured twice: in the URL (ssl_* options) and in "
                "engine_args['connect_args']['ssl']; keep one"
            )
        check_driver_args(url, connect_args, driver)
        if driver == "aiomysql":  # an SSLContext (fold_tls_args allows nothing else)
            connect_args.setdefault("async_creator_fn", connect_requiring_tls)
    else:
        url, policy = tls_policy(url, verify_tls)
        check_driver_args(url, connect_args, driver)  # ?foo=1: a clear error, before any I/O
        connect_args.update(policy.connect_args(driver))
        if policy.context is not None and url.host:
            # The name the certificate carries: "db.example." is "db.example" (OpenSSL's
            # host-name check does not strip the dot), for TiDB Cloud and any other host.
            url = url.set(host=normalize_host(url.host))
    if connect_args:
        args["connect_args"] = connect_args
    return url, args


def _sqlite_file_backed(url: URL) -> bool:
    database = url.database or ""
    return (
        database not in ("", ":memory:")
        and "mode=memory" not in database
        and (url.query.get("mode") != "memory")
        and not (
            sa.util.asbool(url.query.get("uri", False))  # else SQLAlchemy drops vfs=
            and private_memdb(database, url.query.get("vfs"))
        )
    )


def _sqlite_engine(url: URL, args: dict[str, Any]) -> sa.Engine:
    file_backed = _sqlite_file_backed(url)
    connect_args = dict(args.pop("connect_args", {}) or {})
    connect_args.setdefault("check_same_thread", False)
    if not file_backed:
        args.setdefault("poolclass", StaticPool)
    engine = sa.create_engine(url, connect_args=connect_args, **args)
    _instrument_sqlite(engine, file_backed=file_backed)
    return engine


def _instrument_sqlite(engine: sa.Engine, *, file_backed: bool) -> None:
    if getattr(engine, "_tidb_jina_instrumented", False):
        return

    def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if not record.info.get("tidb_jina"):
            _sqlite.configure_connection(dbapi_connection, file_backed=file_backed)
            # Take transaction control away from the sqlite3 module: we emit BEGIN.
            dbapi_connection.isolation_level = None
            record.info["tidb_jina"] = True

    def on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "begin", on_begin)
    if not file_backed:
        _MEMORY_LOCKS[engine] = threading.RLock()
    engine._tidb_jina_instrumented = True  # type: ignore[attr-defined]


def engine_lock(engine: sa.Engine) -> AbstractContextManager[Any]:
    """The lock that serializes use of a shared in-memory SQLite connection (else no-op)."""
    return _MEMORY_LOCKS.get(engine) or nullcontext()


def describe(engine: sa.Engine) -> str:
    """A password-free description of where the engine points, for messages."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return f"embedded database {url.database or ':memory:'}"
    return f"TiDB at {url.host}:{url.port or 4000}/{url.database or ''}"
