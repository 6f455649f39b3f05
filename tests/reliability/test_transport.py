"""Issues 9.6 and 13: one TLS policy for PyMySQL and aiomysql, for every URL form.

TiDB Cloud hosts (public, private-link, trailing dot, any case) and URLs that ask for TLS
get required, verified TLS with host-name checking; turning a check off takes an explicit
opt-out and logs a warning; every ``ssl*`` option is consumed (no driver sees one) and an
unknown one is a ConfigurationError.

No server is needed here: the driver's ``connect()`` is replaced by a recorder that
captures the keyword arguments SQLAlchemy would pass (PyMySQL for sync, aiomysql for
async). ``tests/test_tls_handshake.py`` runs the same policy on a real TLS handshake.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import pytest
import sqlalchemy as sa
from _rel_helpers import DB_PASSWORD

from tidb_jina import ConfigurationError
from tidb_jina.store import VectorTable, _tls, connect
from tidb_jina.store._engine import connect_async
from tidb_jina.store._tidb import is_starter_host

CLOUD_HOSTS = [
    "gateway01.us-west-2.prod.aws.tidbcloud.com",
    "gateway01.eu-central-1.prod.aws.tidbcloud.com",
    "tidb.abc123.clusters.tidb-cloud.tidbcloud.com",
    "GATEWAY01.AP-NORTHEAST-1.PROD.AWS.TIDBCLOUD.COM",
    "gateway01-privatelink.us-east-1.prod.aws.tidbcloud.com",
    "gateway01.us-east-1.prod.aws.tidbcloud.com.",
]
NOT_CLOUD_HOSTS = ["127.0.0.1", "tidb.internal", "eviltidbcloud.com", "tidbcloud.com.evil.example"]


def url_for(host: str, query: str = "") -> str:
    return f"mysql+pymysql://user.root:{DB_PASSWORD}@{host}:4000/test{query}"


class _Stop(Exception):
    pass


@pytest.fixture(autouse=True)
def warnings_anew(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each opt-out warns once per process; each test starts with none said yet."""
    monkeypatch.setattr(_tls, "_WARNED", set())


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
    # A PyMySQL ssl dict goes through the policy (tests/reliability/test_driver_args.py).
    ca = {"ca": "/etc/ssl/certs/ca-certificates.crt"}
    engine = connect(url_for(CLOUD_HOSTS[0]), engine_args={"connect_args": {"ssl": ca}})
    assert_verified(connect_kwargs(engine)["ssl"])
    # aiomysql gets the same context, and the check that refuses a server without TLS.
    kwargs = async_connect_kwargs(url_for("127.0.0.1"), engine_args={"connect_args": {"ssl": mine}})
    assert kwargs["ssl"] is mine
    assert kwargs["async_creator_fn"] is _tls.connect_requiring_tls


def test_tls_both_in_the_url_and_in_connect_args_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="configured twice"):
        connect(
            url_for(CLOUD_HOSTS[0], "?ssl_verify_cert=true"),
            engine_args={"connect_args": {"ssl": ssl.create_default_context()}},
        )


# --- every URL form, sync and async (issue 13, Build item 2) -----------------------------

SYSTEM_CA_PATHS = {
    "macos": "/etc/ssl/cert.pem",
    "debian": "/etc/ssl/certs/ca-certificates.crt",
    "rhel": "/etc/pki/tls/certs/ca-bundle.crt",
}
CONSOLE = "?ssl_ca={ca}&ssl_verify_cert=true&ssl_verify_identity=true"
VERIFIED_FORMS = {
    "no-parameters": "",
    "console-macos": CONSOLE.format(ca=SYSTEM_CA_PATHS["macos"]),
    "console-debian": CONSOLE.format(ca=SYSTEM_CA_PATHS["debian"]),
    "console-rhel": CONSOLE.format(ca=SYSTEM_CA_PATHS["rhel"]),
    "ssl_verify_cert": "?ssl_verify_cert=true",
    "ssl_verify_identity": "?ssl_verify_identity=true",
    "ssl_check_hostname": "?ssl_check_hostname=true",
    "ssl_ca-alone": "?ssl_ca={own_ca}",
    "ssl_mode=VERIFY_IDENTITY": "?ssl_mode=VERIFY_IDENTITY",
    "ssl_mode=required": "?ssl_mode=required",
}
HOST_FORMS = {
    "public": CLOUD_HOSTS[0],
    "private-link": "gateway01-privatelink.us-east-1.prod.aws.tidbcloud.com",
    "trailing-dot": CLOUD_HOSTS[0] + ".",
    "upper-case": CLOUD_HOSTS[0].upper(),
}


@pytest.fixture(scope="module")
def own_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CA file that exists (a copy of what the system store would load is not needed:
    any PEM bundle works), standing in for a path the user gives."""
    import trustme

    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


def kwargs_for(mode: str, url: str, **options: Any) -> dict[str, Any]:
    if mode == "sync":
        return connect_kwargs(connect(url, **options))
    return async_connect_kwargs(url, **options)


def assert_only_known_driver_arguments(kwargs: dict[str, Any]) -> None:
    leftover = [k for k in kwargs if k.startswith("ssl") and k not in ("ssl", "ssl_disabled")]
    assert not leftover, f"ssl options reached the driver: {leftover}"


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("form", list(VERIFIED_FORMS))
@pytest.mark.parametrize("host", list(HOST_FORMS.values()), ids=list(HOST_FORMS))
def test_every_url_form_gives_verified_tls_with_host_name_checking(mode, form, host, own_ca):
    query = VERIFIED_FORMS[form].format(own_ca=own_ca)
    kwargs = kwargs_for(mode, url_for(host, query))
    assert_verified(kwargs["ssl"])
    assert_only_known_driver_arguments(kwargs)
    if mode == "async":  # aiomysql gets the check that refuses a server without TLS
        assert kwargs["async_creator_fn"] is _tls.connect_requiring_tls
    if "ssl_ca" in query and own_ca in query:
        assert len(kwargs["ssl"].get_ca_certs()) == 1  # that CA, not the system store


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("form", [f for f in VERIFIED_FORMS if f != "no-parameters"])
def test_a_self_managed_host_that_asks_for_tls_gets_it_verified(mode, form, own_ca):
    query = VERIFIED_FORMS[form].format(own_ca=own_ca)
    kwargs = kwargs_for(mode, url_for("127.0.0.1", query))
    assert_verified(kwargs["ssl"])
    assert_only_known_driver_arguments(kwargs)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_self_managed_host_without_options_is_left_to_the_driver(mode, caplog):
    caplog.set_level(logging.DEBUG, logger="tidb_jina")
    kwargs = kwargs_for(mode, "mysql+pymysql://root@127.0.0.1:4000/test")
    assert "ssl" not in kwargs and "ssl_disabled" not in kwargs
    assert not caplog.records


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_console_url_reaches_the_async_driver_without_unknown_arguments(mode):
    """The issue: aiomysql failed with TypeError on ssl_verify_cert."""
    console = CONSOLE.format(ca=SYSTEM_CA_PATHS["debian"])
    table_url = url_for(CLOUD_HOSTS[0], console)
    kwargs = kwargs_for(mode, table_url)
    assert set(kwargs) >= {"ssl", "host", "user", "password"}
    assert_only_known_driver_arguments(kwargs)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    "query, options, risk",
    [
        ("", {"verify_tls": False}, "verification is OFF"),
        ("?ssl_verify_cert=false", {}, "verification is OFF"),
        ("?ssl_verify_identity=false", {}, "host-name checking is OFF"),
        ("?ssl_check_hostname=false", {}, "host-name checking is OFF"),
        ("?ssl_mode=VERIFY_CA", {}, "host-name checking is OFF"),
    ],
)
def test_each_opt_out_is_honoured_and_warned_once(mode, query, options, risk, caplog):
    caplog.set_level(logging.WARNING, logger="tidb_jina")
    host = CLOUD_HOSTS[0]
    context = kwargs_for(mode, url_for(host, query), **options)["ssl"]
    assert isinstance(context, ssl.SSLContext)  # still encrypted, and still required
    assert not context.check_hostname
    if "verification" in risk:
        assert context.verify_mode == ssl.CERT_NONE
    else:
        assert context.verify_mode == ssl.CERT_REQUIRED
    kwargs_for(mode, url_for(host, query), **options)  # a second engine: no second warning
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and risk in warned[0] and host in warned[0]
    assert DB_PASSWORD not in caplog.text


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("query", ["?ssl_disabled=true", "?ssl_mode=DISABLED"])
def test_disabling_tls_is_honoured_and_warned(mode, query, caplog):
    caplog.set_level(logging.WARNING, logger="tidb_jina")
    kwargs = kwargs_for(mode, url_for(CLOUD_HOSTS[0], query))
    assert "ssl" not in kwargs
    if mode == "sync":
        assert kwargs["ssl_disabled"] is True  # PyMySQL would otherwise try TLS by itself
    assert_only_known_driver_arguments(kwargs)
    assert "clear text" in caplog.text and "TiDB Cloud refuses" in caplog.text


@pytest.mark.parametrize(
    "query, message",
    [
        ("?ssl_verify=true", "unknown TLS option 'ssl_verify'"),
        ("?sslmode=require", "unknown TLS option 'sslmode'"),
        ("?ssl_verify_cert=maybe", "not a boolean"),
        ("?ssl_mode=PREFERRED", "falls back to plain text"),
        ("?ssl_mode=bogus", "is not one of"),
        ("?ssl_disabled=true&ssl_ca=/x.pem", "both disables TLS"),
        ("?ssl_verify_cert=false&ssl_verify_identity=true", "cannot be checked"),
        ("?ssl_verify_identity=true&ssl_check_hostname=false", "both asks for and turns off"),
        ("?ssl_ca=/nowhere/ca.pem", "no such file"),
        ("?ssl_key=/nowhere/key.pem", "ssl_key needs ssl_cert"),
        ("?ssl_capath=/nowhere", "is not a directory"),
        ("?ssl_verify_cert=true&ssl_verify_cert=false", "more than once"),
    ],
)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_bad_tls_options_are_a_clear_configuration_error(mode, query, message):
    with pytest.raises(ConfigurationError, match=message) as info:
        if mode == "sync":
            connect(url_for("127.0.0.1", query))
        else:
            connect_async(url_for("127.0.0.1", query))
    assert DB_PASSWORD not in str(info.value)


def test_a_missing_ca_file_names_the_system_bundle_of_each_os():
    with pytest.raises(ConfigurationError) as info:
        connect(url_for(CLOUD_HOSTS[0], "?ssl_ca=/opt/mine/ca.pem"))
    for path in SYSTEM_CA_PATHS.values():
        assert path in str(info.value)


def test_a_file_that_is_not_a_ca_bundle_is_a_configuration_error(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="PEM file"):
        connect(url_for(CLOUD_HOSTS[0], f"?ssl_ca={bad}"))


def test_the_policy_function_takes_an_injected_cloud_decision():
    from sqlalchemy.engine import make_url

    url = make_url(url_for("10.0.0.7", "?charset=utf8mb4"))
    stripped, policy = _tls.tls_policy(url, cloud=lambda host: host == "10.0.0.7")
    assert policy.required and policy.verified and policy.checks_host_name
    assert policy.reason == "TiDB Cloud host"
    assert stripped.query == {"charset": "utf8mb4"}
    _, self_managed = _tls.tls_policy(url)
    assert not self_managed.required and self_managed.context is None


@pytest.mark.parametrize(
    "host, starter",
    [
        ("gateway01.us-east-1.prod.aws.tidbcloud.com", True),
        ("gateway01-privatelink.us-east-1.prod.aws.tidbcloud.com", True),
        ("gateway01.us-east-1.prod.aws.tidbcloud.com.", True),
        ("GATEWAY01.EU-CENTRAL-1.PROD.AWS.TIDBCLOUD.COM", True),
        ("tidb.abc123.clusters.tidb-cloud.tidbcloud.com", False),
        ("gateway01.us-east-1.prod.aws.tidbcloud.com.evil.example", False),
        ("127.0.0.1", False),
    ],
)
def test_starter_hosts_are_recognised_in_every_form(host, starter):
    assert is_starter_host(host) is starter
    assert _tls.is_tidb_cloud_host(host) is (starter or host.startswith("tidb.abc"))


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
