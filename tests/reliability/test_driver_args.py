"""Issue 13 review: what reaches the MySQL drivers is checked when the engine is built.

* An unknown URL option (``?foo=1``) or ``connect_args`` key is a ConfigurationError from
  ``VectorTable(...)`` / ``connect_async(...)``, before any I/O, never a raw TypeError
  from the first query.
* TLS settings in ``engine_args['connect_args']`` (``ssl_ca=...``, ``ssl_disabled=True``,
  a PyMySQL ``ssl`` dict) go through the same policy as the URL's, for both drivers.

The driver's ``connect()`` is replaced by a recorder (``connect_kwargs`` below), so no
server is needed; ``tests/test_tls_handshake.py`` runs the same cases on a real handshake.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Any

import pytest
from _rel_helpers import DB_PASSWORD
from test_transport import (
    CLOUD_HOSTS,
    assert_verified,
    async_connect_kwargs,
    connect_kwargs,
    url_for,
)

from tidb_jina import ConfigurationError
from tidb_jina.store import VectorTable, _tls, connect
from tidb_jina.store._engine import connect_async

CLOUD = CLOUD_HOSTS[0]


@pytest.fixture(autouse=True)
def warnings_anew(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_tls, "_WARNED", set())


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach a server fails the test: errors must come before I/O."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def kwargs_for(mode: str, url: str, **options: Any) -> dict[str, Any]:
    if mode == "sync":
        return connect_kwargs(connect(url, **options))
    return async_connect_kwargs(url, **options)


# --- unknown options -------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", CLOUD])
def test_an_unknown_url_option_fails_when_the_table_is_created(host, no_network):
    with pytest.raises(ConfigurationError) as info:
        VectorTable(url_for(host, "?foo=1"), table_name="docs")
    message = str(info.value)
    assert "'foo'" in message and "connection URL" in message and "remove it" in message
    assert "charset" in message and "connect_timeout" in message  # what is accepted
    assert DB_PASSWORD not in message


def test_an_unknown_url_option_fails_on_the_async_driver_too(no_network):
    with pytest.raises(ConfigurationError, match="aiomysql does not accept the option 'foo'"):
        connect_async(url_for("127.0.0.1", "?foo=1"))


def test_an_unknown_connect_args_key_fails_when_the_table_is_created(no_network):
    with pytest.raises(ConfigurationError, match=r"'fooo'.*connect_args"):
        VectorTable(
            url_for("127.0.0.1"),
            table_name="docs",
            engine_args={"connect_args": {"fooo": 1}},
        )


def test_a_sync_only_option_says_so_on_the_async_side(no_network):
    table = VectorTable(url_for("127.0.0.1", "?read_timeout=5"), table_name="docs")
    assert connect_kwargs(table.engine)["read_timeout"] == 5  # PyMySQL takes it

    async def aio_count() -> int:
        return await table.aio.count()

    with pytest.raises(ConfigurationError) as info:
        asyncio.run(aio_count())
    assert "'read_timeout'" in str(info.value) and "only PyMySQL" in str(info.value)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("query", ["?charset=utf8mb4&connect_timeout=5", "?autocommit=true"])
def test_options_the_driver_accepts_still_reach_it(mode, query):
    kwargs = kwargs_for(mode, url_for("127.0.0.1", query))
    assert kwargs["charset"] == "utf8mb4"


# --- TLS in connect_args: the same policy ----------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    "connect_args",
    [
        {"ssl_ca": "/etc/ssl/cert.pem"},  # PyMySQL alone would drop the host-name check
        {"ssl_verify_cert": True},
        {"ssl_ca": "/etc/ssl/cert.pem", "ssl_verify_cert": True, "ssl_verify_identity": True},
        {"ssl": {}},  # PyMySQL alone: TLS only if the server offers it
        {"ssl": {"ca": "/etc/ssl/cert.pem"}},
        {"ssl": {"verify_mode": ssl.CERT_REQUIRED}},
    ],
    ids=["ssl_ca", "ssl_verify_cert", "tidb-docs", "ssl-empty-dict", "ssl-dict-ca", "dict-mode"],
)
@pytest.mark.parametrize("host", ["127.0.0.1", CLOUD])
def test_tls_in_connect_args_gets_required_verified_tls(mode, connect_args, host):
    kwargs = kwargs_for(mode, url_for(host), engine_args={"connect_args": connect_args})
    assert_verified(kwargs["ssl"])
    assert not [k for k in kwargs if k.startswith("ssl_")], kwargs
    if mode == "async":
        assert kwargs["async_creator_fn"] is _tls.connect_requiring_tls


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_disabling_tls_in_connect_args_is_the_warned_opt_out(mode, caplog):
    caplog.set_level(logging.WARNING, logger="tidb_jina")
    args = {"connect_args": {"ssl_disabled": True}}
    kwargs = kwargs_for(mode, url_for(CLOUD), engine_args=args)
    assert "ssl" not in kwargs
    assert "TLS is DISABLED" in caplog.text


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_unverified_tls_in_connect_args_is_the_warned_opt_out(mode, caplog):
    caplog.set_level(logging.WARNING, logger="tidb_jina")
    args = {"connect_args": {"ssl": {"verify_mode": "none"}}}
    context = kwargs_for(mode, url_for(CLOUD), engine_args=args)["ssl"]
    assert context.verify_mode == ssl.CERT_NONE
    assert "verification is OFF" in caplog.text


@pytest.mark.parametrize(
    "connect_args, message",
    [
        ({"ssl_cipher": "AES"}, "unknown TLS option 'ssl_cipher'"),
        ({"ssl": {"cipher": "AES"}}, "has the key 'cipher'"),
        ({"ssl": True}, "is a bool; give an ssl.SSLContext"),
        ({"ssl": {"ca": "/etc/ssl/cert.pem"}, "ssl_ca": "/x.pem"}, "given twice"),
        ({"ssl": ssl.create_default_context(), "ssl_verify_cert": True}, "configured twice"),
        ({"ssl_verify_cert": "maybe"}, "not a boolean"),
        ({"ssl_ca": 7}, "is a int"),
    ],
    ids=[
        "unknown-key",
        "unknown-dict-key",
        "ssl-true",
        "dict-and-key",
        "context-and-key",
        "not-boolean",
        "not-text",
    ],
)
def test_bad_tls_in_connect_args_is_a_configuration_error(connect_args, message, no_network):
    with pytest.raises(ConfigurationError, match=message):
        connect(url_for(CLOUD), engine_args={"connect_args": connect_args})


def test_tls_both_in_the_url_and_as_connect_args_keys_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="configured twice"):
        connect(
            url_for(CLOUD, "?ssl_verify_cert=true"),
            engine_args={"connect_args": {"ssl_ca": "/etc/ssl/cert.pem"}},
        )


# --- an Engine the caller built ----------------------------------------------------------


def test_an_engine_for_tidb_cloud_without_tls_settings_gets_verified_required_tls():
    import sqlalchemy as sa

    engine = connect(sa.create_engine(url_for(CLOUD)))
    assert_verified(connect_kwargs(engine)["ssl"])
    assert connect(engine) is engine  # a second table on the same Engine: the same Engine
    assert_verified(connect_kwargs(engine)["ssl"])


def test_an_engine_for_a_self_managed_host_is_left_alone():
    import sqlalchemy as sa

    assert "ssl" not in connect_kwargs(connect(sa.create_engine(url_for("127.0.0.1"))))


def test_an_engine_whose_url_sets_tls_options_is_warned_about(caplog):
    import sqlalchemy as sa

    caplog.set_level(logging.WARNING, logger="tidb_jina")
    engine = sa.create_engine(url_for(CLOUD, "?ssl_verify_cert=true"))
    connect(engine)
    assert "applies by its own rules" in caplog.text and "pass the URL itself" in caplog.text
    assert DB_PASSWORD not in caplog.text


# --- the driver named in the URL ---------------------------------------------------------


@pytest.mark.parametrize(
    "scheme", ["mysql+mysqldb", "mysql+mysqlconnector", "mysql+asyncmy", "mysql+cymysql"]
)
def test_another_mysql_driver_is_a_configuration_error_not_a_module_error(scheme, no_network):
    """A driver other than PyMySQL/aiomysql would get the policy's arguments in a form it
    does not read (or be missing: a raw ModuleNotFoundError)."""
    target = url_for(CLOUD).replace("mysql+pymysql", scheme)
    for make in (lambda: VectorTable(target, table_name="docs"), lambda: connect_async(target)):
        with pytest.raises(ConfigurationError, match=r"mysql\+pymysql://") as info:
            make()
        assert scheme in str(info.value) and DB_PASSWORD not in str(info.value)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_aiomysql_url_serves_sync_code_through_pymysql(mode):
    """``mysql+aiomysql://`` given to a table: sync calls use PyMySQL (they failed with
    MissingGreenlet), async calls aiomysql; both under the TLS policy."""
    target = url_for(CLOUD).replace("mysql+pymysql", "mysql+aiomysql")
    if mode == "sync":
        engine = VectorTable(target, table_name="docs").engine
        assert engine.dialect.driver == "pymysql"
        assert_verified(connect_kwargs(engine)["ssl"])
    else:
        assert_verified(async_connect_kwargs(target)["ssl"])


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_option_value_the_driver_cannot_use_is_a_configuration_error(mode, no_network):
    target = url_for("127.0.0.1", "?connect_timeout=soon")
    with pytest.raises(ConfigurationError, match="connect_timeout= takes whole seconds") as info:
        VectorTable(target, table_name="docs") if mode == "sync" else connect_async(target)
    assert "'soon'" in str(info.value) and DB_PASSWORD not in str(info.value)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_engine_argument_sqlalchemy_rejects_is_a_configuration_error(mode, no_network):
    target, args = url_for("127.0.0.1"), {"no_such_engine_arg": 1}
    with pytest.raises(ConfigurationError, match=r"engine_args.*no_such_engine_arg"):
        if mode == "sync":
            VectorTable(target, table_name="docs", engine_args=args)
        else:
            connect_async(target, engine_args=args)


def test_an_async_engine_is_a_configuration_error_that_says_to_pass_the_url(no_network):
    """It was "cannot parse the connection URL" (an AsyncEngine) or MissingGreenlet on the
    first call (its sync_engine)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url_for(CLOUD).replace("pymysql", "aiomysql"))
    for given in (engine, engine.sync_engine):
        with pytest.raises(ConfigurationError, match="pass the connection URL") as info:
            VectorTable(given, table_name="docs")
        assert DB_PASSWORD not in str(info.value)
