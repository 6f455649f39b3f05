"""Issue 13.5: ``doctor()`` never raises; every bad option or missing file is a failed
check that says how to fix it."""

from __future__ import annotations

from typing import Any

import pytest

from tidb_jina import doctor

HOST = "mysql+pymysql://u.root:pw-SECRET-1@127.0.0.1:9/db"


@pytest.mark.parametrize(
    "connection, says",
    [
        (HOST + "?ssl_ca=/nowhere/ca.pem", "no such file"),
        (HOST + "?ssl_bogus=1", "unknown TLS option"),
        (HOST + "?ssl_verify_cert=perhaps", "not a boolean"),
        (HOST + "?connect_timeout=soon", "SQLAlchemy cannot use an option"),
        (HOST + "?no_such_driver_option=1", "does not accept the option 'no_such_driver_option'"),
        ("mysql+pymysql://u.root:pw-SECRET-1@127.0.0.1:port/db", "cannot parse"),
        ("postgresql://u:pw-SECRET-1@127.0.0.1/db", "unsupported database"),
        ("mysql+pymysql://u.root:a@pw-SECRET-1@127.0.0.1:9/db", "percent-encode"),
        (12345, "connection"),
        ("sqlite:////nonexistent-dir/sub/x.db", "cannot connect"),
    ],
    ids=[
        "missing-ca",
        "unknown-ssl-option",
        "bad-boolean",
        "bad-timeout",
        "unknown-driver-option",
        "bad-port",
        "other-dialect",
        "raw-at",
        "not-a-url",
        "unreachable-sqlite-file",
    ],
)
def test_a_bad_connection_is_a_failed_check_not_an_exception(
    connection: Any, says: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("TIDB_DATABASE_URL", raising=False)
    report = doctor(connection, table_name="docs", check_keys=False)
    assert not report.ok
    failed = [c for c in report.checks if c.status == "fail"]
    assert failed and failed[0].name == "connection"
    assert says in failed[0].detail, failed[0].detail
    assert failed[0].fix, "a failed check must say how to fix it"
    assert "pw-SECRET-1" not in str(report)


def test_an_unexpected_error_in_a_later_check_is_reported_too(tmp_path, monkeypatch):
    from tidb_jina import _doctor

    def broken(*args: Any) -> None:
        raise RuntimeError("probe blew up")

    monkeypatch.setattr(_doctor, "_check_vectors", broken)
    report = doctor(f"sqlite:///{tmp_path / 'v.db'}", check_keys=False)
    by_name = {c.name: c for c in report.checks}
    assert by_name["connection"].status == "ok"
    assert by_name["vector functions"].status == "fail"
    assert "RuntimeError: probe blew up" in by_name["vector functions"].detail
    assert "report" in by_name["vector functions"].fix
