"""``doctor()``: check a database connection, a table and the API keys, and say what to fix.

Every check runs even if an earlier one fails (where it can), and none raises: the
report lists each result with a fix. Nothing secret is printed: URLs lose their password
and keys are never echoed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from tidb_jina._errors import TiDBJinaError

OK, WARN, FAIL = "ok", "warn", "fail"
_MARK = {OK: "[ok]  ", WARN: "[warn]", FAIL: "[FAIL]"}


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "warn" or "fail"
    detail: str
    fix: str = ""


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return all(c.status != FAIL for c in self.checks)

    def add(self, name: str, status: str, detail: str, fix: str = "") -> None:
        self.checks.append(Check(name, status, detail, fix))

    def __str__(self) -> str:
        lines = []
        for c in self.checks:
            lines.append(f"{_MARK[c.status]} {c.name}: {c.detail}")
            if c.fix and c.status != OK:
                lines.append(f"       fix: {c.fix}")
        return "\n".join(lines)


def doctor(
    connection: str | sa.Engine | None = None,
    *,
    table_name: str | None = None,
    check_keys: bool = True,
    jina_api_key: str | None = None,
    hf_token: str | None = None,
) -> DoctorReport:
    """Run every check and return the report (``print(report)`` shows the fixes).

    It never raises: an error no check expected becomes a failed check of its own, and
    no result contains the database password, however the URL gave it.
    """
    report = DoctorReport()
    engine = _guard(report, "connection", lambda: _check_connection(report, connection))
    if engine is not None:
        _guard(report, "vector functions", lambda: _check_vectors(report, engine))
        if engine.dialect.name == "mysql":
            _guard(report, "TiFlash", lambda: _check_tiflash(report, engine))
        if table_name:
            _guard(report, f"table {table_name}", lambda: _check_table(report, engine, table_name))
    if check_keys:
        _guard(report, "API keys", lambda: _check_keys(report, jina_api_key, hf_token))
    return _scrubbed(report, connection)


def _guard(report: DoctorReport, name: str, check: Callable[[], Any]) -> Any:
    """Run one check; an exception it did not expect becomes a failed check."""
    try:
        return check()
    except Exception as exc:  # doctor() promises never to raise
        report.add(
            name,
            FAIL,
            f"unexpected {exc.__class__.__name__}: {exc}",
            "check the connection URL's options and the files it names; if they are "
            "right, this is a bug in tidb-jina: please report it with this line",
        )
        return None


def _scrubbed(report: DoctorReport, connection: Any) -> DoctorReport:
    from tidb_jina._redact import connection_secrets, redact

    secrets = connection_secrets(connection or os.environ.get("TIDB_DATABASE_URL"))
    if not secrets:
        return report
    clean = DoctorReport()
    for c in report.checks:
        clean.add(c.name, c.status, redact(c.detail, secrets), redact(c.fix, secrets))
    return clean


def _check_connection(report: DoctorReport, connection: Any) -> sa.Engine | None:
    from tidb_jina.store._engine import connect, describe

    try:
        engine = connect(connection)
        with engine.connect() as conn:
            if engine.dialect.name == "mysql":
                version = conn.exec_driver_sql("SELECT VERSION()").scalar_one()
            else:
                version = "SQLite " + conn.exec_driver_sql("SELECT sqlite_version()").scalar_one()
    except TiDBJinaError as exc:
        given = connection is not None or os.environ.get("TIDB_DATABASE_URL")
        fix = "correct the connection URL as the message says" if given else ""
        report.add("connection", FAIL, str(exc), fix or "pass a URL or set TIDB_DATABASE_URL")
        return None
    except sa.exc.SQLAlchemyError as exc:
        report.add(
            "connection",
            FAIL,
            f"cannot connect: {getattr(exc, 'orig', exc)}",
            _connection_fix(connection),
        )
        return None
    report.add("connection", OK, f"{describe(engine)}, server {version}")
    if engine.dialect.name == "mysql" and "tidb" not in str(version).lower():
        report.add(
            "server",
            FAIL,
            f"{version} is not TiDB",
            "vector search needs TiDB v8.4+ or TiDB Cloud; MySQL has no VECTOR type",
        )
    return engine


def _check_vectors(report: DoctorReport, engine: sa.Engine) -> None:
    def probe() -> str:
        with engine.connect() as conn:
            dims = conn.exec_driver_sql("SELECT VEC_DIMS('[1,2,3]')").scalar_one()
        return f"VEC_DIMS works ({dims})"

    _run(
        report,
        "vector functions",
        probe,
        "TiDB v8.4.0+ (v8.5 recommended) or TiDB Cloud Starter is needed for VECTOR",
    )


def _check_tiflash(report: DoctorReport, engine: sa.Engine) -> None:
    try:
        with engine.connect() as conn:
            count = conn.exec_driver_sql(
                "SELECT COUNT(*) FROM INFORMATION_SCHEMA.CLUSTER_INFO WHERE TYPE = 'tiflash'"
            ).scalar_one()
    except sa.exc.SQLAlchemyError:
        report.add(
            "TiFlash",
            WARN,
            "cannot read CLUSTER_INFO (normal on TiDB Cloud, which provides TiFlash)",
        )
        return
    if count:
        report.add("TiFlash", OK, f"{count} TiFlash node(s): vector indexes can be built")
    else:
        report.add(
            "TiFlash",
            WARN,
            "no TiFlash node: searches are exact full scans (correct, slower)",
            "add a TiFlash node (tiup cluster scale-out) for HNSW vector indexes",
        )


def _check_table(report: DoctorReport, engine: sa.Engine, table_name: str) -> None:
    from tidb_jina.store import VectorTable

    try:
        table = VectorTable(engine, table_name=table_name)
        if not table.exists():
            report.add(f"table {table_name}", WARN, "does not exist yet", "add documents first")
            return
        status = table.index_status()
        detail = f"VECTOR({table.dimension}), {table.count()} rows, search: {status.kind}"
        detail += f"; {_recorded(table)}"
        if status.kind == "hnsw":
            detail += f" ({status.rows_indexed} indexed, {status.rows_pending} pending)"
        level = (
            WARN
            if status.error or (engine.dialect.name == "mysql" and status.kind != "hnsw")
            else OK
        )
        report.add(
            f"table {table_name}",
            level,
            detail + (f"; index error: {status.error}" if status.error else ""),
            status.note or "call VectorTable.create_vector_index()",
        )
    except TiDBJinaError as exc:
        report.add(f"table {table_name}", FAIL, str(exc))


def _connection_fix(connection: Any) -> str:
    """Advice for the engine the connection names (a file path, or a TiDB server)."""
    from tidb_jina.store._urls import embedded_url

    try:
        text = str(embedded_url(connection or os.environ.get("TIDB_DATABASE_URL", "")))
    except TiDBJinaError:
        text = ""
    if text.startswith("sqlite"):
        return (
            "the embedded engine could not open its file: check that the folder exists "
            "and is writable, and that the file is an SQLite database"
        )
    return (
        "check host, port (TiDB: 4000), user, password and that TLS is allowed; "
        "TiDB Cloud users are '<prefix>.root'"
    )


def _recorded(table: Any) -> str:
    """The model and metric the table records (tables remember what filled them)."""
    recorded = table.recorded
    if recorded is None or recorded.origin == "peer":
        return f"metric {table.metric.value}, embedding model not recorded"
    return f"filled by {recorded.describe()}"


def _check_keys(report: DoctorReport, jina_api_key: str | None, hf_token: str | None) -> None:
    from tidb_jina.embeddings import HuggingFaceClient, JinaClient

    jina = jina_api_key or os.environ.get("JINA_API_KEY") or os.environ.get("JINAAI_API_KEY")
    hf = hf_token or os.environ.get("HF_TOKEN") or os.environ.get("HUGGINGFACEHUB_API_TOKEN")
    if not jina and not hf:
        report.add(
            "API keys",
            WARN,
            "no JINA_API_KEY / HF_TOKEN set",
            "get a Jina key at jina.ai (free tier) or a Hugging Face token with the "
            "'Inference Providers' permission",
        )
    if jina:
        _run(
            report,
            "Jina AI key",
            # Only an explicit key is passed: one from the environment is left to the
            # client's rule (sent to the provider's own hosts only).
            lambda: _probe(JinaClient(api_key=jina_api_key, max_retries=1)),
            "check JINA_API_KEY (65 characters, starts with jina_) and your balance",
        )
    if hf:
        _run(
            report,
            "Hugging Face token",
            lambda: _probe(
                HuggingFaceClient(
                    model="sentence-transformers/all-MiniLM-L6-v2",
                    api_key=hf_token,
                    max_retries=1,
                )
            ),
            "check HF_TOKEN has the 'Inference Providers' permission and credits left",
        )


def _probe(client: Any) -> str:
    with client:
        vector = client.embed_query("tidb-jina doctor")
    return f"embeds with {client.model} ({vector.shape[0]} dimensions)"


def _run(report: DoctorReport, name: str, probe: Callable[[], str], fix: str) -> None:
    try:
        report.add(name, OK, probe())
    except (TiDBJinaError, sa.exc.SQLAlchemyError) as exc:
        report.add(name, FAIL, str(getattr(exc, "orig", exc)), fix)
