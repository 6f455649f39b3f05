"""Issue 9.1: faults during ingest lose nothing and store nothing twice.

The pipeline is the adapters' "add documents": embed a batch with the core Jina client over
real loopback HTTP, upsert it into a file-backed embedded table, repeat. The fake server
answers a seeded share of requests with 429 (with and without Retry-After), 500, 503, a
dropped connection, a partial answer or a delay past the client's timeout.

``TIDB_JINA_FAULT_DOCS`` sets the size of the default run (600); the ``slow`` variant adds
5,000 documents.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest
from _rel_helpers import (
    FAULT_DOCS,
    KEY,
    aingest,
    assert_stored_exactly,
    ids_for,
    ingest,
    jina_client,
    metas_for,
    texts_for,
)

from tidb_jina import (
    AuthenticationError,
    EmbeddingError,
    InsufficientBalanceError,
    PermissionDeniedError,
    ProviderUnavailableError,
)
from tidb_jina.testing import FakeEmbeddingServer

pytestmark = pytest.mark.slow  # fault-injected ingests over a loopback server
CLIENT_TIMEOUT_S = 0.25
TIMEOUT_FAULT = CLIENT_TIMEOUT_S * 2.5  # the server answers after the client gave up
FAULT_KINDS: list[Any] = [429, 429, 500, 503, "drop", "partial", TIMEOUT_FAULT]


def fault_schedule(n_requests: int, share: float, seed: int) -> list[Any]:
    """A fault (or ``0.0``: answer normally) for each of the next ``n_requests``."""
    rng = random.Random(seed)
    return [rng.choice(FAULT_KINDS) if rng.random() < share else 0.0 for _ in range(n_requests)]


def run_faulty_ingest(n_docs: int, mode: str, db_table: Any, seed: int = 9) -> FakeEmbeddingServer:
    texts, ids, metas = texts_for(n_docs), ids_for(n_docs), metas_for(n_docs)
    batch, per_request = 64, 16
    requests = -(-n_docs // per_request)
    with FakeEmbeddingServer(api_key=KEY) as server:
        # Three times the first attempts: enough faults for every retry wave.
        server.inject(*fault_schedule(3 * requests, share=0.25, seed=seed))
        client = jina_client(
            server.url,
            max_batch_size=per_request,
            max_concurrency=4,
            max_retries=12,  # 0.25 ** 13: a batch failing every attempt is out of reach
            timeout=CLIENT_TIMEOUT_S,
        )

        def toggle_retry_after(done: int) -> None:
            # Half of the 429/503 answers carry Retry-After, half do not.
            server.retry_after = "0.01" if done % 2 else None

        if mode == "sync":
            ingest(
                client,
                db_table,
                texts,
                ids,
                metas,
                batch_size=batch,
                after_batch=toggle_retry_after,
            )
        else:

            async def go() -> None:
                await aingest(
                    client,
                    db_table,
                    texts,
                    ids,
                    metas,
                    batch_size=batch,
                    after_batch=toggle_retry_after,
                )
                await client.aclose()
                await db_table.aio.dispose()

            asyncio.run(go())
        client.close()
        assert_stored_exactly(db_table, texts, ids, metas)
    return server


def assert_faults_were_served(server: FakeEmbeddingServer) -> None:
    statuses = Counter(r.status for r in server.api_requests())
    assert statuses[429] and statuses[500] and statuses[503], statuses
    assert statuses[0], "no connection was dropped"  # a dropped request never gets a status


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_faulty_ingest_stores_every_document_exactly_once(make_table, mode):
    server = run_faulty_ingest(FAULT_DOCS, mode, make_table(batch_rows=50))
    assert_faults_were_served(server)


@pytest.mark.slow
def test_faulty_ingest_of_5000_documents(make_table):
    server = run_faulty_ingest(5_000, "sync", make_table(batch_rows=50), seed=5000)
    assert_faults_were_served(server)


class _BalanceServer(FakeEmbeddingServer):
    """Answers an injected 403 the way Jina does when the account is out of tokens."""

    def _fault_reply(self, status: int) -> Any:
        reply = super()._fault_reply(status)
        if status == 403:
            reply.body = {
                "detail": "Insufficient balance: please top up",
                "code": "AUTHZ_INSUFFICIENT_BALANCE",
            }
        return reply


FATAL = [
    pytest.param(401, AuthenticationError, "API key was rejected", 1, id="401-key"),
    pytest.param(402, InsufficientBalanceError, "top up", 1, id="402-balance"),
    pytest.param(403, InsufficientBalanceError, "top up", 1, id="403-balance"),
    pytest.param(503, ProviderUnavailableError, "gave up after 3 attempts", 3, id="503-exhausted"),
]


@pytest.mark.parametrize(("status", "error", "message", "attempts"), FATAL)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_unrecoverable_error_stops_ingest_keeps_committed_batches_and_rerun_completes(
    make_table, status, error, message, attempts, mode
):
    n, batch, good_batches = 200, 20, 4
    texts, ids, metas = texts_for(n), ids_for(n), metas_for(n)
    table = make_table(batch_rows=7)  # a pipeline batch spans several table batches
    with _BalanceServer(api_key=KEY) as server:
        client = jina_client(server.url, max_batch_size=batch, max_concurrency=1, max_retries=2)
        server.inject(*([0.0] * good_batches), *([status] * attempts))
        run = ingest if mode == "sync" else (lambda *a, **k: asyncio.run(aingest(*a, **k)))
        with pytest.raises(error, match=message) as info:
            run(client, table, texts, ids, metas, batch_size=batch)
        assert isinstance(info.value, EmbeddingError) and info.value.status_code == status
        assert KEY not in str(info.value)
        # No retry of a fatal answer, and nothing after it was sent.
        assert [r.status for r in server.api_requests()] == [200] * good_batches + [
            status
        ] * attempts
        done = good_batches * batch
        assert_stored_exactly(table, texts[:done], ids[:done], metas[:done])

        # A re-run with the same ids completes the set; nothing is doubled.
        run(client, table, texts, ids, metas, batch_size=batch)
        assert_stored_exactly(table, texts, ids, metas)
        if mode == "async":
            asyncio.run(table.aio.dispose())
        client.close()


def test_permission_denied_403_is_not_mistaken_for_balance(make_table):
    table = make_table()
    with FakeEmbeddingServer(api_key=KEY, faults=[403]) as server:
        client = jina_client(server.url)
        with pytest.raises(PermissionDeniedError, match="permissions"):
            ingest(client, table, texts_for(10), ids_for(10))
        assert len(server.api_requests()) == 1
    assert table.count() == 0
