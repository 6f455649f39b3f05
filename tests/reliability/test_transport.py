"""Issue 9.6: TiDB Cloud hosts get verified TLS by default; turning verification off takes
an explicit ``verify_tls=False`` and logs a warning.

No server is needed: the driver's ``connect()`` is replaced by a recorder that captures the
keyword arguments SQLAlchemy would pass (PyMySQL for sync, aiomysql for async).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import pytest
import sqlalchemy as sa
from _rel_helpers import DB_PASSWORD

from tidb_jina.store import VectorTable, connect
from tidb_jina.store._engine import connect_async

CLOUD_HOSTS = [
    "gateway01.us-west-2.prod.aws.tidbcloud.com",
    "gateway01.eu-central-1.prod.aws.tidbcloud.com",
    "tidb.abc123.clusters.tidb-cloud.tidbcloud.com",
    "GATEWAY01.AP-NORTHEAST-1.PROD.AWS.TIDBCLOUD.COM",
]
NOT_CLOUD_HOSTS = ["127.0.0.1", "tidb.internal", "eviltidbcloud.com", "tidbcloud.com.evil.example"]


def url_for(host: str, query: str = "") -> str:
    return f"mysql+pymysql://user.root:{DB_PASSWORD}@{host}:4000/test{query}"


class _Stop(Exception):
    pass


def connect_kwargs(engine: sa.Engine) -> dict[str, Any]:
    """The keyword arguments the engine passes to the driver's connect()."""
    captured: dict[str, Any] = {}
    dbapi = engine.dialect.loaded_dbapi

    def recorder(*args: Any, **kwargs: Any) -> Any:
        captured.update(kwargs)
        raise _Stop

    original = dbapi.connect
    dbapi.connect = recorder
    try:
        with pytest.raises(Exception) as info:
            engine.connect()
        assert isinstance(info.value, _Stop) or isinstance(getattr(info.value, "orig", None), _Stop)
    finally:
        dbapi.connect = original
    return captured


def async_connect_kwargs(url: str, **options: Any) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        engine = connect_async(url, **options)
        captured: dict[str, Any] = {}
        dbapi = engine.sync_engine.dialect.loaded_dbapi

        def recorder(*args: Any, **kwargs: Any) -> Any:
            captured.update(kwargs)
            raise _Stop

        original = dbapi.connect
        dbapi.connect = recorder
        try:
            with pytest.raises(Exception):  # noqa: B017 (the recorder's stop, maybe wrapped)
                async with engine.connect():
                    pass
        finally:
            dbapi.connect = original
            await engine.dispose()
        return captured

    return asyncio.run(go())


def assert_verified(context: Any) -> None:
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("host", CLOUD_HOSTS)
def test_tidb_cloud_hosts_get_verified_tls_by_default(host):
    table = VectorTable(url_for(host), table_name="docs")
    assert_verified(connect_kwargs(table.engine)["ssl"])
    assert_verified(connect_kwargs(connect(url_for(host).replace("+pymysql", "")))["ssl"])


@pytest.mark.parametrize("host", CLOUD_HOSTS[:1])
def test_tidb_cloud_hosts_get_verified_tls_on_the_async_driver_too(host):
    assert_verified(async_connect_kwargs(url_for(host))["ssl"])


@pytest.mark.parametrize("host", NOT_CLOUD_HOSTS)
def test_other_hosts_are_left_to_the_user(host):
    assert "ssl" not in connect_kwargs(connect(url_for(host)))


def test_tls_the_user_configured_is_respected():
    mine = ssl.create_default_context()
    mine.load_default_certs()
    engine = connect(url_for(CLOUD_HOSTS[0]), engine_args={"connect_args": {"ssl": mine}})
    assert connect_kwargs(engine)["ssl"] is mine
    ca = {"ca": "/etc/ssl/certs/ca-certificates.crt"}
    engine = connect(url_for(CLOUD_HOSTS[0]), engine_args={"connect_args": {"ssl": ca}})
    assert connect_kwargs(engine)["ssl"] == ca
    in_url = connect(url_for(CLOUD_HOSTS[0], "?ssl_ca=/etc/ssl/certs/ca-certificates.crt"))
    kwargs = connect_kwargs(in_url)
    assert kwargs["ssl"] == {"ca": "/etc/ssl/certs/ca-certificates.crt"}


@pytest.mark.parametrize("mode", ["sync", "async", "table"])
def test_turning_verification_off_takes_an_explicit_flag_and_logs_a_warning(mode, caplog):
    caplog.set_level(logging.WARNING, logger="tidb_jina")
    host = CLOUD_HOSTS[0]
    if mode == "sync":
        kwargs = connect_kwargs(connect(url_for(host), verify_tls=False))
    elif mode == "async":
        kwargs = async_connect_kwargs(url_for(host), verify_tls=False)
    else:
        kwargs = connect_kwargs(VectorTable(url_for(host), table_name="d", verify_tls=False).engine)
    context = kwargs["ssl"]
    assert isinstance(context, ssl.SSLContext)  # still encrypted
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and "verif" in warnings[0].getMessage().lower()
    assert host in warnings[0].getMessage()
    assert DB_PASSWORD not in caplog.text


def test_verification_stays_on_without_the_flag_and_nothing_is_logged(caplog):
    caplog.set_level(logging.DEBUG, logger="tidb_jina")
    assert_verified(connect_kwargs(connect(url_for(CLOUD_HOSTS[0]), verify_tls=True))["ssl"])
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_verification_turned_off_in_the_url_is_warned_about(caplog):
    caplog.set_level(logging.WARNING, logger="tidb_jina")
    connect(url_for(CLOUD_HOSTS[0], "?ssl_verify_cert=false&ssl_check_hostname=false"))
    assert [r for r in caplog.records if r.levelno == logging.WARNING]
