"""Issue 13.3: the TLS policy on a real handshake, for PyMySQL (sync) and aiomysql (async).

A MySQL-protocol server on 127.0.0.1 (``MySQLWireServer``) performs the SSL-request
upgrade with certificates from a test CA (``trustme``). No DNS and no system files: TiDB
Cloud host names resolve to 127.0.0.1 through a patched ``socket.getaddrinfo``, and "the
system CA store" is the test CA through ``SSL_CERT_FILE`` (OpenSSL's own override).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trustme

from tidb_jina import DatabaseError
from tidb_jina.store import VectorTable, _tls
from tidb_jina.store._engine import connect, connect_async
from tidb_jina.testing._wire_server import MySQLWireServer

CLOUD_HOST = "gateway01.us-east-1.prod.aws.tidbcloud.com"
USER = "prefix123.root"
PASSWORD = "wire-Secret-pw"
DRIVERS = ["pymysql", "aiomysql"]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def unknown_ca_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("other") / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


def server_context(ca: trustme.CA, *hosts: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*hosts).configure_cert(context)
    return context


@pytest.fixture(scope="module")
def good_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A certificate for 127.0.0.1 (IP SAN) and the TiDB Cloud gateway name."""
    return server_context(ca, "127.0.0.1", CLOUD_HOST)


@pytest.fixture(autouse=True)
def cloud_resolves_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and _tls.is_tidb_cloud_host(host):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setattr(_tls, "_WARNED", set())


@pytest.fixture
def system_store_is(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def use(path: str) -> None:
        monkeypatch.setenv("SSL_CERT_FILE", path)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)

    yield use


def run(driver: str, url: str, **options: Any) -> str:
    """Connect with ``driver`` and run one statement; returns the server version."""
    if driver == "pymysql":
        engine = connect(url, **options)
        try:
            with engine.connect() as conn:
                return str(conn.exec_driver_sql("SELECT VERSION()").scalar_one())
        finally:
            engine.dispose()

    async def go() -> str:
        engine = connect_async(url, **options)
        try:
            async with engine.connect() as conn:
                return str((await conn.exec_driver_sql("SELECT VERSION()")).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(go())


async def aio_count(table: VectorTable) -> int:
    try:
        return await table.aio.count()
    finally:
        await table.aio.dispose()  # in this event loop, before it closes


def url(server: MySQLWireServer, host: str = "127.0.0.1", query: str = "") -> str:
    return server.url(user=USER, password=PASSWORD, host=host, query=query)


def assert_secure_session(server: MySQLWireServer) -> None:
    assert server.sessions, "the client never connected"
    assert all(s.tls for s in server.sessions), server.sessions
    assert server.users and set(server.users) == {USER}
    assert USER.encode() not in server.plaintext  # the user name went only inside TLS


def assert_refused_before_user_name(server: MySQLWireServer) -> None:
    assert server.sessions, "the client never connected"
    assert server.users == [], f"the server received a user name: {server.sessions}"
    assert USER.encode() not in server.plaintext
    assert b"prefix123" not in server.plaintext


# --- the right CA and host name connect --------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_right_ca_and_host_connect_on_an_ip_certificate(driver, good_tls, ca_file):
    with MySQLWireServer(tls=good_tls) as server:
        assert run(driver, url(server, query=f"?ssl_ca={ca_file}")) == "8.0.11-TiDB-v8.5.0"
    assert_secure_session(server)


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_console_url_connects_to_a_cloud_host(driver, good_tls, ca_file):
    query = f"?ssl_ca={ca_file}&ssl_verify_cert=true&ssl_verify_identity=true"
    with MySQLWireServer(tls=good_tls) as server:
        run(driver, url(server, CLOUD_HOST, query))
    assert_secure_session(server)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("host", [CLOUD_HOST, CLOUD_HOST + ".", CLOUD_HOST.upper()])
def test_a_cloud_host_without_options_verifies_against_the_system_store(
    driver, host, good_tls, ca_file, system_store_is
):
    system_store_is(ca_file)
    with MySQLWireServer(tls=good_tls) as server:
        run(driver, url(server, host))
    assert_secure_session(server)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_vector_table_counts_over_verified_tls(driver, good_tls, ca_file):
    with MySQLWireServer(tls=good_tls) as server:
        table = VectorTable(url(server, query=f"?ssl_ca={ca_file}"), table_name="docs")
        try:
            count = table.count() if driver == "pymysql" else asyncio.run(aio_count(table))
        finally:
            table.close()
    assert count == 0
    assert_secure_session(server)


# --- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_an_unknown_ca_is_refused(driver, good_tls, unknown_ca_file):
    with MySQLWireServer(tls=good_tls) as server, pytest.raises(sa.exc.OperationalError) as info:
        run(driver, url(server, query=f"?ssl_ca={unknown_ca_file}"))
    assert "CERTIFICATE_VERIFY_FAILED" in _chain(info.value)
    assert "unable to get local issuer" in _chain(info.value)
    assert_refused_before_user_name(server)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_cloud_host_refuses_a_certificate_the_system_store_does_not_trust(
    driver, good_tls, unknown_ca_file, system_store_is
):
    system_store_is(unknown_ca_file)
    with MySQLWireServer(tls=good_tls) as server, pytest.raises(sa.exc.OperationalError) as info:
        run(driver, url(server, CLOUD_HOST))
    assert "CERTIFICATE_VERIFY_FAILED" in _chain(info.value)
    assert_refused_before_user_name(server)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("host", ["127.0.0.1", CLOUD_HOST])
def test_a_certificate_for_another_host_is_refused(driver, host, ca, ca_file):
    wrong = server_context(ca, "wrong.example")
    with MySQLWireServer(tls=wrong) as server, pytest.raises(sa.exc.OperationalError) as info:
        run(driver, url(server, host, f"?ssl_ca={ca_file}"))
    assert "CERTIFICATE_VERIFY_FAILED" in _chain(info.value)
    assert "mismatch" in _chain(info.value)
    assert_refused_before_user_name(server)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    "host, query",
    [
        (CLOUD_HOST, ""),
        (CLOUD_HOST, "?ssl_verify_cert=true"),
        ("127.0.0.1", "?ssl_verify_identity=true"),
        ("127.0.0.1", "?ssl_mode=REQUIRED"),
    ],
    ids=["cloud", "cloud-verify-cert", "ip-verify-identity", "ip-ssl-mode-required"],
)
def test_a_server_that_does_not_offer_tls_never_receives_the_user_name(
    driver, host, query, good_tls, ca_file, system_store_is
):
    system_store_is(ca_file)
    # The server could do TLS, but its greeting clears the bit (a man in the middle).
    with MySQLWireServer(tls=good_tls, offer_tls=False) as server:
        with pytest.raises(sa.exc.OperationalError) as info:
            run(driver, url(server, host, query))
        assert "SSL is required" in str(info.value)
    assert_refused_before_user_name(server)
    assert server.sessions[0].outcome == "closed before auth"


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_refusal_is_a_clear_database_error_on_a_table(driver, good_tls):
    with MySQLWireServer(tls=good_tls, offer_tls=False) as server:
        table = VectorTable(url(server, CLOUD_HOST), table_name="docs")
        with pytest.raises(DatabaseError) as info:
            table.count() if driver == "pymysql" else asyncio.run(aio_count(table))
        table.close()
    assert "SSL is required" in str(info.value)
    assert "did not offer TLS, so the user name and password were not sent" in str(info.value)
    assert PASSWORD not in str(info.value)
    assert_refused_before_user_name(server)


@pytest.mark.parametrize("driver", DRIVERS)
def test_an_untrusted_certificate_is_a_database_error_that_says_what_to_do(
    driver, good_tls, unknown_ca_file
):
    with MySQLWireServer(tls=good_tls) as server:
        table = VectorTable(url(server, query=f"?ssl_ca={unknown_ca_file}"), table_name="d")
        with pytest.raises(DatabaseError) as info:
            table.count() if driver == "pymysql" else asyncio.run(aio_count(table))
        table.close()
    message = str(info.value)
    assert "CERTIFICATE_VERIFY_FAILED" in message  # aiomysql's cause is kept too
    assert "?ssl_ca=" in message and "certificate was refused" in message
    assert PASSWORD not in message
    assert_refused_before_user_name(server)


# --- opt-outs and self-managed hosts -----------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    "query, options",
    [("", {"verify_tls": False}), ("?ssl_verify_cert=false", {})],
    ids=["verify_tls=False", "ssl_verify_cert=false"],
)
def test_turning_verification_off_still_encrypts_and_warns(
    driver, query, options, good_tls, unknown_ca_file, system_store_is, caplog
):
    system_store_is(unknown_ca_file)  # nothing would verify
    caplog.set_level(logging.WARNING, logger="tidb_jina")
    with MySQLWireServer(tls=good_tls) as server:
        run(driver, url(server, CLOUD_HOST, query), **options)
    assert_secure_session(server)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "verification is OFF" in warned[0]
    assert "man in the middle" in warned[0] and PASSWORD not in caplog.text


@pytest.mark.parametrize("driver", DRIVERS)
def test_turning_the_host_name_check_off_accepts_another_hosts_certificate(
    driver, ca, ca_file, caplog
):
    caplog.set_level(logging.WARNING, logger="tidb_jina")
    wrong = server_context(ca, "wrong.example")
    with MySQLWireServer(tls=wrong) as server:
        run(driver, url(server, query=f"?ssl_ca={ca_file}&ssl_verify_identity=false"))
    assert_secure_session(server)
    assert "host-name checking is OFF" in caplog.text


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("query", ["?ssl_disabled=true", "?ssl_mode=DISABLED"])
def test_disabling_tls_sends_plain_text_and_warns(driver, query, good_tls, caplog):
    caplog.set_level(logging.WARNING, logger="tidb_jina")
    with MySQLWireServer(tls=good_tls) as server:
        run(driver, url(server, query=query))
    assert not server.sessions[0].tls and server.users == [USER]
    assert "TLS is DISABLED" in caplog.text


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_self_managed_host_without_options_connects_in_plain_text(driver, caplog):
    caplog.set_level(logging.WARNING, logger="tidb_jina")
    with MySQLWireServer() as server:  # no TLS at all, as a default self-managed TiDB
        run(driver, url(server))
    assert server.users == [USER]
    assert not caplog.records


def _chain(exc: BaseException) -> str:
    """The text of an error and of everything it wraps (aiomysql chains the SSL error,
    PyMySQL quotes it in its message)."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        parts.append(f"{seen!r} {seen}")
        seen = seen.__cause__ or getattr(seen, "orig", None)
    return " ".join(parts)


def test_the_ca_fixture_is_a_real_pem(ca_file):
    assert Path(ca_file).read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_the_readme_tidb_cloud_snippet_runs_sync_and_async_over_verified_tls(
    good_tls, ca_file, capsys
):
    """The README's console URL, with a password, against the loopback server: the sync
    and the async half both run, every session encrypted and verified."""
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### TiDB Cloud: the console's URL, sync and async", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL).group(1)
    with MySQLWireServer(tls=good_tls) as server:
        code = (
            snippet.replace("<prefix>.root:<password>", f"{USER}:{PASSWORD}")
            .replace(":4000", f":{server.port}")
            .replace("/etc/ssl/cert.pem", ca_file)
        )
        assert code != snippet
        exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "doc-0" in printed  # both searches answered (the stub's made-up rows)
    assert len(server.sessions) >= 2 and {s.outcome for s in server.sessions} == {"authenticated"}
    assert_secure_session(server)
    inserts = server.recorder.sql("INSERT")
    assert len(inserts) == 2 and "'b'" in inserts[1]  # the async upsert went over the wire


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_client_certificate_in_the_url_is_presented(driver, ca, ca_file, tmp_path):
    """``ssl_cert`` / ``ssl_key``: a server that demands a client certificate accepts ours
    and refuses a client without one."""
    demanding = server_context(ca, "127.0.0.1")
    demanding.verify_mode = ssl.CERT_REQUIRED
    demanding.load_verify_locations(cafile=ca_file)
    client = ca.issue_cert("wire-client")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    with MySQLWireServer(tls=demanding) as server:
        run(driver, url(server, query=f"?ssl_ca={ca_file}&ssl_cert={cert}&ssl_key={key}"))
        with pytest.raises(sa.exc.OperationalError):
            run(driver, url(server, query=f"?ssl_ca={ca_file}"))
    assert server.sessions[0].tls and server.sessions[0].user == USER
    assert server.sessions[1].user is None and "tls failed" in server.sessions[1].outcome


# --- review of issue 13: broken upgrades, reconnections, TLS in connect_args -------------


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("broken", ["close", "plaintext"])
@pytest.mark.parametrize("host", ["127.0.0.1", CLOUD_HOST])
def test_a_server_that_advertises_tls_then_fails_the_upgrade_gets_no_user_name(
    driver, broken, host, good_tls, ca_file, system_store_is
):
    """The greeting offers TLS, the SSL request is answered by a hang-up or by clear
    text: the client fails, and never falls back to sending its credentials in clear."""
    system_store_is(ca_file)
    query = "" if host == CLOUD_HOST else f"?ssl_ca={ca_file}"
    server = MySQLWireServer(tls=good_tls, break_upgrade=broken)
    with server, pytest.raises(sa.exc.OperationalError):
        run(driver, url(server, host, query))
    assert_refused_before_user_name(server)
    assert all(not s.tls for s in server.sessions)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_reconnection_goes_through_the_tls_policy_too(driver, good_tls, ca_file):
    """First connection over verified TLS; the server then hangs up and stops offering
    TLS (a man in the middle on the second connection). The pool's pre-ping notices the
    dead connection and reconnects: that connection is refused before the user name."""
    with MySQLWireServer(tls=good_tls) as server:
        target = url(server, CLOUD_HOST, f"?ssl_ca={ca_file}")
        if driver == "pymysql":
            engine = connect(target)
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT VERSION()")
            server.drop_connections()
            server.offer_tls = False
            with pytest.raises(sa.exc.OperationalError) as info, engine.connect() as conn:
                conn.exec_driver_sql("SELECT VERSION()")
            engine.dispose()
        else:

            async def go() -> None:
                engine = connect_async(target)
                try:
                    async with engine.connect() as conn:
                        await conn.exec_driver_sql("SELECT VERSION()")
                    server.drop_connections()
                    server.offer_tls = False
                    async with engine.connect() as conn:
                        await conn.exec_driver_sql("SELECT VERSION()")
                finally:
                    await engine.dispose()

            with pytest.raises(sa.exc.OperationalError) as info:
                asyncio.run(go())
    assert "SSL is required" in str(info.value)
    assert len(server.sessions) == 2, server.sessions
    assert server.sessions[0].tls and server.sessions[0].user == USER
    assert server.sessions[1].user is None and not server.sessions[1].tls
    assert USER.encode() not in server.plaintext


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    "connect_args",
    [{"ssl_ca": "{ca}"}, {"ssl": {"ca": "{ca}"}}],
    ids=["ssl_ca-key", "ssl-dict"],
)
def test_tls_in_connect_args_checks_the_host_name(driver, connect_args, ca, ca_file):
    """PyMySQL alone turns host-name checking off for ``connect_args={'ssl_ca': ...}``:
    here a certificate the CA signed for another host is refused on both drivers."""
    given = {
        k: ({"ca": ca_file} if isinstance(v, dict) else ca_file) for k, v in connect_args.items()
    }
    wrong = server_context(ca, "wrong.example")
    with MySQLWireServer(tls=wrong) as server, pytest.raises(sa.exc.OperationalError) as info:
        run(driver, url(server, CLOUD_HOST), engine_args={"connect_args": given})
    assert "CERTIFICATE_VERIFY_FAILED" in _chain(info.value)
    assert_refused_before_user_name(server)


@pytest.mark.parametrize("driver", DRIVERS)
def test_an_empty_ssl_dict_in_connect_args_requires_tls(driver, good_tls, ca_file, system_store_is):
    """``connect_args={'ssl': {}}`` means "TLS if offered" to PyMySQL and nothing at all
    to aiomysql; through the policy it is required, so a stripped greeting is refused."""
    system_store_is(ca_file)
    server = MySQLWireServer(tls=good_tls, offer_tls=False)
    with server, pytest.raises(sa.exc.OperationalError, match="SSL is required"):
        run(driver, url(server, CLOUD_HOST), engine_args={"connect_args": {"ssl": {}}})
    assert_refused_before_user_name(server)


@pytest.mark.parametrize("offer_tls", [True, False], ids=["tls-offered", "tls-stripped"])
def test_an_engine_the_user_built_for_tidb_cloud_never_falls_back_to_clear_text(
    offer_tls, good_tls, ca_file, system_store_is
):
    """PyMySQL's default is "TLS if the server offers it": an Engine built without TLS
    settings would send the user name in clear to a man in the middle that strips the
    bit. Given to a VectorTable, it gets the policy's required, verified TLS."""
    system_store_is(ca_file)
    with MySQLWireServer(tls=good_tls, offer_tls=offer_tls) as server:
        engine = sa.create_engine(url(server, CLOUD_HOST))
        table = VectorTable(engine, table_name="docs")
        try:
            if offer_tls:
                assert table.count() == 0
            else:
                with pytest.raises(DatabaseError, match="SSL is required"):
                    table.count()
        finally:
            engine.dispose()
    if offer_tls:
        assert_secure_session(server)
    else:
        assert_refused_before_user_name(server)


def test_an_engine_with_its_own_tls_settings_is_used_as_given(ca, ca_file):
    """The caller's SSLContext wins (here: one that checks no host name)."""
    mine = ssl.create_default_context(cafile=ca_file)
    mine.check_hostname = False
    with MySQLWireServer(tls=server_context(ca, "wrong.example")) as server:
        engine = sa.create_engine(url(server, CLOUD_HOST), connect_args={"ssl": mine})
        table = VectorTable(engine, table_name="docs")
        try:
            assert table.count() == 0
        finally:
            engine.dispose()
    assert_secure_session(server)


# --- IP and IPv6 hosts, trailing dots ------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("cert_for, ok", [("::1", True), ("127.0.0.1", False)])
def test_an_ipv6_host_is_checked_against_the_certificates_ip_address(
    driver, cert_for, ok, ca, ca_file
):
    with MySQLWireServer(tls=server_context(ca, cert_for), bind="::1") as server:
        target = url(server, "[::1]", f"?ssl_ca={ca_file}")
        if ok:
            run(driver, target)
        else:
            with pytest.raises(sa.exc.OperationalError):
                run(driver, target)
    if ok:
        assert_secure_session(server)
    else:
        assert_refused_before_user_name(server)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_self_managed_host_with_a_trailing_dot_is_checked_without_it(
    driver, ca, ca_file, monkeypatch
):
    """``db.example.`` is the fully qualified ``db.example``: the certificate for
    ``db.example`` matches it, as it does for TiDB Cloud hosts."""
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host in ("db.example", "db.example.") else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with MySQLWireServer(tls=server_context(ca, "db.example")) as server:
        run(driver, url(server, "db.example.", f"?ssl_ca={ca_file}"))
    assert_secure_session(server)
