"""doctor(): every check reported with a fix, nothing secret printed, never raises."""

from __future__ import annotations

import pytest

from tidb_jina import doctor
from tidb_jina.store import VectorTable
from tidb_jina.testing import FakeEmbeddingServer


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch):
    for name in ("JINA_API_KEY", "JINAAI_API_KEY", "HF_TOKEN", "HUGGINGFACEHUB_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_embedded_engine_and_table(tmp_path):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    VectorTable(url, table_name="docs").upsert([[1.0, 0.0]], ids=["a"])
    report = doctor(url, table_name="docs", check_keys=False)
    assert report.ok, str(report)
    names = [c.name for c in report.checks]
    assert names == ["connection", "vector functions", "table docs"]
    assert "VECTOR(2), 1 rows, search: exact" in str(report)
    missing = doctor(url, table_name="nope", check_keys=False)
    assert missing.ok and "does not exist yet" in str(missing)


def test_unreachable_tidb_fails_with_a_fix_and_no_password():
    report = doctor("mysql+pymysql://root:Sup3rS3cret@127.0.0.1:1/test", check_keys=False)
    assert not report.ok
    text = str(report)
    assert "[FAIL] connection" in text and "fix:" in text
    assert "Sup3rS3cret" not in text


def test_no_url_at_all(monkeypatch):
    monkeypatch.delenv("TIDB_DATABASE_URL", raising=False)
    report = doctor(check_keys=False)
    assert not report.ok and "TIDB_DATABASE_URL" in str(report)


def test_keys_are_checked_against_the_provider(monkeypatch):
    with FakeEmbeddingServer(api_key="jina_good") as server:
        monkeypatch.setenv("JINA_API_BASE_URL", server.url)
        good = doctor("sqlite://", jina_api_key="jina_good")
        bad = doctor("sqlite://", jina_api_key="jina_wrong_key_123")
    assert good.ok and "[ok]   Jina AI key: embeds with jina-embeddings-v3" in str(good)
    assert not bad.ok and "[FAIL] Jina AI key" in str(bad) and "fix:" in str(bad)
    assert "jina_wrong_key_123" not in str(bad)
    none = doctor("sqlite://")
    assert none.ok and "[warn] API keys" in str(none)
