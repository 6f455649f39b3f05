"""Issue 9.5: API keys and database passwords never leak.

Not in ``repr``/``str``, not in log records at any level (ours, httpx's, SQLAlchemy's), not
in the message or the formatted traceback (with its chained causes) of our errors, not in
LlamaIndex ``to_dict()``/``to_json()`` nor LangChain serialization. Servers that echo the
Authorization header back in an error body are simulated, since some gateways do that.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import pickle
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from _rel_helpers import DB_PASSWORD, FAST, KEY, ingest, jina_client, texts_for

from tidb_jina import (
    AuthenticationError,
    ConfigurationError,
    DatabaseError,
    EmbeddingError,
    ProviderUnavailableError,
    TiDBJinaError,
)
from tidb_jina.embeddings import HuggingFaceClient, JinaClient
from tidb_jina.store import VectorTable
from tidb_jina.testing import FakeEmbeddingServer, MySQLRecorder

HF_KEY = "hf_reliability_token_0123456789SECRET"
SECRETS = (KEY, HF_KEY, DB_PASSWORD)
UNREACHABLE_DB = f"mysql+pymysql://app_user:{DB_PASSWORD}@127.0.0.1:9/appdb"


def assert_clean(text: str, where: str = "") -> None:
    for secret in SECRETS:
        assert secret not in text, f"secret leaked in {where}: {text[:300]}"


def full_traceback(exc: BaseException) -> str:
    """What a user sees when the error goes uncaught: message, frames, chained causes."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def assert_error_clean(exc: BaseException) -> None:
    assert_clean(str(exc), "str(error)")
    assert_clean(repr(exc), "repr(error)")
    assert_clean(repr(exc.args), "error.args")
    assert_clean(full_traceback(exc), "traceback")


@pytest.fixture
def all_logs() -> Iterator[list[logging.LogRecord]]:
    """Every log record of every logger, at every level (DEBUG and up)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in ("tidb_jina", "httpx", "httpcore", "sqlalchemy", "sqlalchemy.engine"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for name in ("tidb_jina", "httpx", "httpcore", "sqlalchemy", "sqlalchemy.engine"):
            logging.getLogger(name).setLevel(logging.NOTSET)


def assert_logs_clean(records: list[logging.LogRecord]) -> None:
    assert records, "nothing was logged: the capture is not working"
    for record in records:
        text = record.getMessage() + repr(record.args) + repr(record.__dict__)
        assert_clean(text, f"log record {record.name}")


def echo_transport(status: int) -> httpx.MockTransport:
    """A server that echoes the Authorization header back in its error body."""

    def handler(request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        return httpx.Response(
            status,
            json={"detail": f"rejected header {auth!r}", "code": "ECHO", "error": auth},
            headers={"X-Echo": auth},
        )

    return httpx.MockTransport(handler)


def leaky_network() -> httpx.MockTransport:
    """A network stack whose error message carries the request's headers."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"connect failed; headers were {dict(request.headers)}")

    return httpx.MockTransport(handler)


# --- provider clients --------------------------------------------------------------------

CLIENTS: list[Callable[..., Any]] = [
    lambda **kw: JinaClient(api_key=KEY, base_url="http://jina.test", **FAST, **kw),
    lambda **kw: HuggingFaceClient(
        model="BAAI/bge-m3", api_key=HF_KEY, router_url="http://hf.test", **FAST, **kw
    ),
    lambda **kw: HuggingFaceClient(api_key=HF_KEY, base_url="http://tei.test", **FAST, **kw),
]
CLIENT_IDS = ["jina", "hf-router", "tei"]


@pytest.mark.parametrize("make", CLIENTS, ids=CLIENT_IDS)
def test_client_repr_str_to_dict_copy_and_pickle_hide_the_key(make):
    client = make()
    for text in (repr(client), str(client), f"{client!r:>10}", repr(vars(client))):
        assert_clean(text, "client text")
    if hasattr(client, "to_dict"):
        assert_clean(repr(client.to_dict()), "to_dict")
    assert_clean(repr(vars(copy.copy(client))), "copy")
    with pytest.raises(TypeError) as info:
        pickle.dumps(client)
    assert_error_clean(info.value)


@pytest.mark.parametrize("status", [401, 403, 422, 500])
@pytest.mark.parametrize("make", CLIENTS, ids=CLIENT_IDS)
def test_errors_from_a_server_echoing_the_key_do_not_carry_it(make, status, all_logs):
    client = make(transport=echo_transport(status), max_retries=1)
    with pytest.raises(EmbeddingError) as info:
        client.embed_documents(["hello"])
    assert info.value.status_code == status
    assert "**********" in str(info.value)  # the echoed key was scrubbed, not dropped
    assert_error_clean(info.value)
    assert_logs_clean(all_logs)


@pytest.mark.parametrize("make", CLIENTS, ids=CLIENT_IDS)
def test_async_errors_from_a_server_echoing_the_key_do_not_carry_it(make, all_logs):
    client = make(transport=echo_transport(401))

    async def go() -> None:
        try:
            await client.aembed_documents(["hello"])
        finally:
            await client.aclose()

    with pytest.raises(AuthenticationError) as info:
        asyncio.run(go())
    assert_error_clean(info.value)
    assert_logs_clean(all_logs)


@pytest.mark.parametrize("make", CLIENTS, ids=CLIENT_IDS)
def test_transport_error_messages_are_scrubbed(make):
    client = make(transport=leaky_network(), max_retries=1)
    with pytest.raises(ProviderUnavailableError) as info:
        client.embed_documents(["hello"])
    assert_clean(str(info.value), "message")
    assert "**********" in str(info.value)


def test_transport_error_tracebacks_are_scrubbed():
    client = CLIENTS[0](transport=leaky_network(), max_retries=0)
    with pytest.raises(ProviderUnavailableError) as info:
        client.embed_documents(["hello"])
    assert_clean(full_traceback(info.value), "traceback")


def test_a_faulty_ingest_logs_nothing_secret_at_debug_level(make_table, all_logs):
    table = make_table()
    with FakeEmbeddingServer(api_key=KEY, faults=[429, 503, "drop", 500]) as server:
        client = jina_client(server.url, max_batch_size=8)
        ingest(client, table, texts_for(40), [f"i{i}" for i in range(40)], batch_size=16)
        bad = jina_client(server.url, api_key=KEY + "-wrong")
        with pytest.raises(AuthenticationError) as info:
            bad.embed_documents(["x"])
        assert_error_clean(info.value)
    assert table.count() == 40
    assert any(r.name == "tidb_jina.embeddings" for r in all_logs)  # the retries were logged
    assert_logs_clean(all_logs)


# --- database passwords ------------------------------------------------------------------


def test_vector_table_repr_and_engine_url_hide_the_password():
    table = VectorTable(UNREACHABLE_DB, table_name="docs")
    for text in (repr(table), str(table), repr(table.engine), str(table.engine.url)):
        assert_clean(text, "table text")
    assert "app_user" in repr(table) or "127.0.0.1" in repr(table)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_database_errors_and_logs_hide_the_password(mode, all_logs):
    table = VectorTable(UNREACHABLE_DB, table_name="docs")
    with pytest.raises(DatabaseError) as info:
        if mode == "sync":
            table.count()
        else:
            asyncio.run(table.aio.count())
    assert "127.0.0.1" in str(info.value)  # still says where it failed
    assert_error_clean(info.value)
    assert_logs_clean(all_logs)
    table.engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        f"mysql+pymysql://u:{DB_PASSWORD}@host:port/db",
        f"postgresql://u:{DB_PASSWORD}@host/db",
    ],
    ids=["port-word", "other-dialect"],
)
def test_malformed_urls_give_a_configuration_error_without_the_password(url):
    try:
        VectorTable(url, table_name="docs")
    except ConfigurationError as exc:
        assert_error_clean(exc)
    else:
        pytest.fail("a malformed URL was accepted")


def test_a_bad_port_is_a_configuration_error():
    with pytest.raises(ConfigurationError):
        VectorTable(f"mysql+pymysql://u:{DB_PASSWORD}@host:port/db", table_name="docs")


# --- framework adapters ------------------------------------------------------------------


def _import(module: str) -> Any:
    try:
        return __import__(module, fromlist=["*"])
    except ImportError as exc:  # being written in parallel: skip with the reason
        pytest.skip(f"{module} is not importable yet: {exc}")


def test_langchain_embeddings_hide_the_key_in_repr_dump_and_serialization():
    lc = _import("langchain_tidb_jina")
    from langchain_core.load import dumpd, dumps

    for emb in (
        lc.JinaEmbeddings(api_key=KEY, base_url="http://jina.test"),
        lc.JinaEmbeddings(jina_api_key=KEY, base_url="http://jina.test"),
        lc.HuggingFaceEndpointEmbeddings(model="BAAI/bge-m3", api_key=HF_KEY),
    ):
        for text in (
            repr(emb),
            str(emb),
            repr(emb.model_dump()),
            emb.model_dump_json(),
            dumps(emb),
            repr(dumpd(emb)),
            repr(emb.client),
        ):
            assert_clean(text, "langchain embeddings")


def test_langchain_vector_store_hides_the_password(make_table):
    lc = _import("langchain_tidb_jina")
    from langchain_core.load import dumps

    from tidb_jina.testing import LexicalEmbedder

    class Lexical(lc.JinaEmbeddings):  # any Embeddings works; this one has a key to hide
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return LexicalEmbedder(dimension=8).embed_documents(texts).tolist()

    emb = Lexical(api_key=KEY, base_url="http://jina.test")
    store = lc.TiDBVectorStore(UNREACHABLE_DB, emb, table_name="docs", vector_dimension=8)
    for text in (repr(store), str(store), dumps(store), repr(store.vector_table)):
        assert_clean(text, "langchain store")
    with pytest.raises(TiDBJinaError) as info:
        store.add_texts(["hello"])
    assert_error_clean(info.value)


def test_llama_index_embeddings_hide_the_key_in_to_dict_and_to_json():
    li = _import("llama_index_tidb_jina")
    for emb in (
        li.JinaEmbedding(api_key=KEY, base_url="http://jina.test"),
        li.HuggingFaceInferenceAPIEmbedding("BAAI/bge-m3", token=HF_KEY),
        li.HuggingFaceInferenceAPIEmbedding(api_key=HF_KEY, base_url="http://tei.test"),
    ):
        for text in (
            repr(emb),
            str(emb),
            repr(emb.to_dict()),
            emb.to_json(),
            repr(emb.model_dump()),
            emb.model_dump_json(),
        ):
            assert_clean(text, "llama-index embeddings")


def test_llama_index_vector_store_hides_the_password():
    li = _import("llama_index_tidb_jina")
    store = li.TiDBVectorStore(UNREACHABLE_DB, table_name="docs", vector_dimension=8)
    for text in (repr(store), str(store), repr(store.to_dict()), store.to_json()):
        assert_clean(text, "llama-index store")
    assert "app_user" in store.to_json()  # the URL is there, masked


# --- TiDB auto-embedding -----------------------------------------------------------------

STARTER_URL = (
    f"mysql+pymysql://u.root:{DB_PASSWORD}@gateway01.us-east-1.prod.aws.tidbcloud.com:4000/db"
)


def _auto_table(recorder: MySQLRecorder) -> VectorTable:
    from tidb_jina.store import AutoEmbedding

    auto = AutoEmbedding("jina_ai/jina-embeddings-v3", api_key=KEY)
    return VectorTable(
        STARTER_URL,
        table_name="docs",
        auto_embedding=auto,
        engine_args=recorder.engine_args(),
    )


def test_auto_embedding_provider_key_is_a_bound_parameter_and_never_shown(all_logs):
    """Over the wire stub: the key goes once, as a bound parameter, and nowhere else."""
    recorder = MySQLRecorder(starter=True)
    table = _auto_table(recorder)
    assert table.server_embeds
    table.add_texts(["TiDB is a database"], ids=["a"])
    table.search_text("what is TiDB?")  # once per table
    sent = [s for s in recorder.statements if "GLOBAL" in s.sql]
    assert len(sent) == 1
    assert sent[0].template == "SET @@GLOBAL.TIDB_EXP_EMBED_JINA_AI_API_KEY = %s"
    assert sent[0].params == (KEY,)
    ddl = " ".join(recorder.sql("CREATE"))
    assert "EMBED_TEXT('jina_ai/jina-embeddings-v3'" in ddl
    others = [s.sql for s in recorder.statements if "GLOBAL" not in s.sql]
    for text in (ddl, repr(table), repr(table.auto_embedding), *others):
        assert_clean(text, "auto-embedding")
    logging.getLogger("tidb_jina").debug("probe")  # the capture works even if nothing else logs
    assert_logs_clean(all_logs)
    table.close()


def test_a_failure_sending_the_provider_key_is_a_clear_database_error():
    recorder = MySQLRecorder(starter=True)
    recorder.fail(r"^SET @@GLOBAL", 1105, "variable is read only")
    table = _auto_table(recorder)
    with pytest.raises(DatabaseError) as info:
        table.add_texts(["TiDB is a database"], ids=["a"])
    assert_error_clean(info.value)
    assert "SET GLOBAL" in str(info.value)
    table.close()


# --- every way a password can be written (issue 13.4) ------------------------------------

_RAW_AT = f"Lead@{DB_PASSWORD}"  # an unencoded "@": SQLAlchemy would take the tail as host


def _password_url(form: str) -> str:
    from urllib.parse import quote_plus

    base = "127.0.0.1:9/appdb"
    return {
        "userinfo": f"mysql+pymysql://app_user:{DB_PASSWORD}@{base}",
        "query-password": f"mysql+pymysql://app_user@{base}?password={DB_PASSWORD}",
        "query-passwd": f"mysql+pymysql://app_user@{base}?charset=utf8mb4&passwd={DB_PASSWORD}",
        "encoded-specials": f"mysql+pymysql://app_user:{quote_plus(DB_PASSWORD + '@:/')}@{base}",
        "raw-colon-slash": f"mysql+pymysql://app_user:{DB_PASSWORD}:x/y@{base}",
        "raw-at": f"mysql+pymysql://app_user:{_RAW_AT}@{base}",
    }[form]


PASSWORD_FORMS = [
    "userinfo",
    "query-password",
    "query-passwd",
    "encoded-specials",
    "raw-colon-slash",
]


@pytest.mark.parametrize("form", PASSWORD_FORMS)
def test_every_password_form_is_masked_in_repr_and_the_engine_url(form):
    table = VectorTable(_password_url(form), table_name="docs")
    engine_url = table.engine.url
    for text in (repr(table), str(table), repr(table.engine), str(engine_url), repr(engine_url)):
        assert_clean(text, f"{form} table text")
    assert engine_url.password is not None and "password" not in engine_url.query
    table.engine.dispose()


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("form", PASSWORD_FORMS)
def test_every_password_form_is_masked_in_database_errors_and_logs(form, mode, all_logs):
    table = VectorTable(_password_url(form), table_name="docs")
    with pytest.raises(DatabaseError) as info:
        if mode == "sync":
            table.count()
        else:
            asyncio.run(table.aio.count())
    assert "127.0.0.1" in str(info.value)
    assert_error_clean(info.value)
    assert_logs_clean(all_logs)
    table.engine.dispose()


@pytest.mark.parametrize("form", PASSWORD_FORMS)
def test_every_password_form_is_masked_in_the_llama_index_store(form):
    li = _import("llama_index_tidb_jina")
    store = li.TiDBVectorStore(_password_url(form), table_name="docs", vector_dimension=8)
    for text in (repr(store), str(store), repr(store.to_dict()), store.to_json()):
        assert_clean(text, f"{form} llama-index store")
    assert "***" in store.to_json() and "app_user" in store.to_json()


@pytest.mark.parametrize("form", PASSWORD_FORMS)
def test_every_password_form_is_masked_in_the_langchain_store(form):
    lc = _import("langchain_tidb_jina")
    from langchain_core.load import dumps

    from tidb_jina.testing import LexicalEmbedder

    class Lexical(lc.JinaEmbeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return LexicalEmbedder(dimension=8).embed_documents(texts).tolist()

    emb = Lexical(api_key=KEY, base_url="http://jina.test")
    store = lc.TiDBVectorStore(_password_url(form), emb, table_name="docs", vector_dimension=8)
    for text in (repr(store), str(store), dumps(store), repr(store.vector_table)):
        assert_clean(text, f"{form} langchain store")
    with pytest.raises(TiDBJinaError) as info:
        store.add_texts(["hello"])
    assert_error_clean(info.value)


def test_a_password_with_a_raw_at_is_refused_without_its_tail():
    with pytest.raises(ConfigurationError, match="percent-encode") as info:
        VectorTable(_password_url("raw-at"), table_name="docs")
    assert_error_clean(info.value)
    assert "Lead" not in str(info.value)
    li = _import("llama_index_tidb_jina")
    with pytest.raises(ConfigurationError) as info:
        li.TiDBVectorStore(_password_url("raw-at"), table_name="docs", vector_dimension=8)
    assert_error_clean(info.value)


@pytest.mark.parametrize("form", [*PASSWORD_FORMS, "raw-at"])
def test_doctor_reports_never_show_the_password(form, monkeypatch):
    from tidb_jina import doctor

    monkeypatch.delenv("TIDB_DATABASE_URL", raising=False)
    report = doctor(_password_url(form), table_name="docs", check_keys=False)
    assert not report.ok
    assert_clean(str(report), f"{form} doctor")
    assert_clean(repr(report.checks), f"{form} doctor checks")


@pytest.mark.parametrize("form", [*PASSWORD_FORMS, "raw-at"])
@pytest.mark.parametrize("command", [["info"], ["doctor"], ["search", "hello"]])
def test_cli_output_never_shows_the_password(form, command, capsys, monkeypatch):
    from tidb_jina.cli import main

    monkeypatch.delenv("TIDB_DATABASE_URL", raising=False)
    code = main([command[0], "--database-url", _password_url(form), *command[1:]])
    out, err = capsys.readouterr()
    assert code != 0
    assert_clean(out + err, f"{form} cli {command[0]}")
    assert "Lead@" not in out + err


def test_the_redaction_helper_finds_every_piece_of_a_password():
    from tidb_jina._redact import connection_secrets, redact

    secrets = connection_secrets(_password_url("raw-at"))
    assert DB_PASSWORD in secrets and _RAW_AT in secrets
    text = f"host '{DB_PASSWORD}@127.0.0.1' and {_RAW_AT}"
    assert_clean(redact(text, secrets), "redacted text")
    assert connection_secrets("sqlite:///x.db") == []


# --- an Engine or a sqlalchemy URL the caller built (issue 13 review) --------------------


def test_an_engine_built_from_a_password_with_a_raw_at_is_refused_without_its_tail():
    """SQLAlchemy reads ``app_user:Lead@<pw>@host`` as host ``<pw>@host``: every message
    naming the host, and the driver's own "Can't connect to ... on '<pw>@host'", would
    carry the password's tail. A URL string was refused; an Engine is refused too."""
    import sqlalchemy as sa

    from tidb_jina import doctor

    engine = sa.create_engine(_password_url("raw-at"))
    with pytest.raises(ConfigurationError, match="percent-encode") as info:
        VectorTable(engine, table_name="docs")
    assert_error_clean(info.value)
    report = doctor(engine, table_name="docs", check_keys=False)
    assert not report.ok and "percent-encode" in str(report)
    assert_clean(str(report), "doctor on a raw-@ Engine")


@pytest.mark.parametrize("form", ["query-password", "userinfo"])
@pytest.mark.parametrize("kind", ["engine", "url-object"])
def test_an_engine_or_url_object_never_shows_the_password(form, kind, all_logs):
    import sqlalchemy as sa

    from tidb_jina import doctor

    url = sa.engine.make_url(_password_url(form))
    given: Any = sa.create_engine(url) if kind == "engine" else url
    table = VectorTable(given, table_name="docs")
    with pytest.raises(DatabaseError) as info:
        table.count()
    assert_error_clean(info.value)
    texts = [repr(table), str(table), table.database, str(doctor(given, check_keys=False))]
    li = _import("llama_index_tidb_jina")
    store = li.TiDBVectorStore(given, table_name="docs", vector_dimension=8)
    texts += [repr(store), store.to_json()]
    for text in texts:
        assert_clean(text, f"{kind} {form}")
    assert_logs_clean(all_logs)
    table.engine.dispose()


# --- a server that quotes the password back (issue 13 review) ----------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_server_error_quoting_the_password_is_scrubbed_everywhere(mode, all_logs, monkeypatch):
    """A proxy or server error that echoes the password (in a message about the login,
    say) reaches the user scrubbed: in the DatabaseError, its chain, the logs and the
    ``doctor()`` report. The two redaction layers (driver_message, doctor) are the only
    thing between such a server and the user, so this is their test."""
    from tidb_jina import doctor
    from tidb_jina.testing._wire_server import MySQLWireServer

    monkeypatch.delenv("TIDB_DATABASE_URL", raising=False)
    with MySQLWireServer() as server:
        server.recorder.fail(".", 1045, f"Access denied: password '{DB_PASSWORD}' expired")
        target = server.url(user="app_user", password=DB_PASSWORD)
        table = VectorTable(target, table_name="docs")
        with pytest.raises(DatabaseError) as info:
            table.count() if mode == "sync" else asyncio.run(_aio_count(table))
        report = doctor(target, table_name="docs", check_keys=False)
        table.close()
    assert "Access denied: password '***' expired" in str(info.value)
    assert_error_clean(info.value)
    assert not report.ok and "***" in str(report)
    assert_clean(str(report), "doctor")
    # SQLAlchemy's pool quotes the driver's raw message at DEBUG ("Error on connect()"),
    # which only its opt-in pool debugging shows; every other record is clean.
    assert all_logs, "nothing was logged: the capture is not working"
    pool_debug = [r for r in all_logs if r.name.startswith("sqlalchemy.pool") and r.levelno == 10]
    for record in all_logs:
        if record not in pool_debug:
            assert_clean(record.getMessage() + repr(record.__dict__), f"log {record.name}")


async def _aio_count(table: VectorTable) -> int:
    try:
        return await table.aio.count()
    finally:
        await table.aio.dispose()


def test_a_password_given_in_connect_args_is_scrubbed_too():
    """``engine_args={"connect_args": {"password": ...}}`` keeps the password out of the
    URL; a server quoting it back is scrubbed like one from the URL."""
    from tidb_jina.testing._wire_server import MySQLWireServer

    with MySQLWireServer() as server:
        server.recorder.fail(".", 1045, f"Access denied: password '{DB_PASSWORD}' expired")
        target = server.url(user="app_user", password="").replace("app_user:@", "app_user@")
        args = {"connect_args": {"password": DB_PASSWORD}}
        table = VectorTable(target, table_name="docs", engine_args=args)
        with pytest.raises(DatabaseError) as info:
            table.count()
        table.close()
    assert "password '***' expired" in str(info.value)
    assert_error_clean(info.value)
