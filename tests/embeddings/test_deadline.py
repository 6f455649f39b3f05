"""Issue 17.9: one deadline for a whole HTTP call (connect + send + read), sync and async.

httpx's timeouts are per socket operation: a server that sends one byte every 0.1 s never
trips a 1 s read timeout. These tests run such a server on loopback (a raw socket, so it
can trickle the status line, the headers or the body) and check that a call with
``timeout=1`` ends within about a second, with a message that says what happened.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from _emb_helpers import KEY

from tidb_jina import ProviderUnavailableError
from tidb_jina.embeddings import HuggingFaceClient, JinaClient, Timeouts

BODY = b'{"data": [{"index": 0, "embedding": [0.1, 0.2, 0.3]}]}'


class TrickleServer:
    """Answers every request by sending one byte every ``gap`` seconds, for ``part``:
    ``"status"`` (from the first byte), ``"body"`` (after prompt headers) or nothing."""

    def __init__(self, part: str, gap: float = 0.1, total: float = 12.0) -> None:
        self.part, self.gap, self.total = part, gap, total
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.stop = threading.Event()
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(BODY)}\r\n"
                head += "Content-Type: application/json\r\n\r\n"
                slow = (head.encode() + BODY) if self.part == "status" else BODY
                if self.part == "body":
                    conn.sendall(head.encode())
                started = time.monotonic()
                for byte in slow:
                    if self.stop.is_set() or time.monotonic() - started > self.total:
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(self.gap)
            except OSError:
                return

    def __enter__(self) -> TrickleServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.sock.close()


@pytest.fixture(params=["status", "body"])
def trickle(request: pytest.FixtureRequest) -> Iterator[TrickleServer]:
    with TrickleServer(request.param) as server:
        yield server


def _timed(fn: object, mode: str) -> tuple[float, BaseException]:
    started = time.monotonic()
    with pytest.raises(ProviderUnavailableError) as info:
        if mode == "sync":
            fn()  # type: ignore[operator]
        else:
            asyncio.run(fn())  # type: ignore[operator]
    return time.monotonic() - started, info.value


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_trickling_server_cannot_stretch_a_one_second_call(
    trickle: TrickleServer, mode: str
) -> None:
    client = JinaClient(api_key=KEY, base_url=trickle.url, timeout=1.0, max_retries=0)
    assert client.timeouts.deadline == 1.0
    method = client.embed_documents if mode == "sync" else client.aembed_documents
    elapsed, error = _timed(lambda: method(["hello"]), mode)
    # The answer would take len(BODY) * 0.1 s = 5.6 s or more; per-read timeouts never fire.
    assert elapsed < 2.0, f"a 1 s call lasted {elapsed:.1f} s"
    assert "timed out" in str(error) and "1 s deadline" in str(error)
    assert trickle.connections == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("variable", "url"),
    [("HTTP_PROXY", "http://jina-gateway.test"), ("HTTPS_PROXY", "https://api.jina.ai")],
)
def test_a_proxy_from_the_environment_is_used_and_cannot_stretch_a_call(
    mode: str, variable: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proxies from the environment are used (sync and async alike), and the transports
    httpx builds for them keep the whole-call deadline."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    with TrickleServer("status") as proxy:
        monkeypatch.setenv(variable, proxy.url)
        client = JinaClient(api_key=KEY, base_url=url, timeout=1.0, max_retries=0)
        method = client.embed_documents if mode == "sync" else client.aembed_documents
        elapsed, error = _timed(lambda: method(["hello"]), mode)
        assert proxy.connections == 1  # the request went through the proxy
    assert elapsed < 2.0, f"a 1 s call lasted {elapsed:.1f} s"
    assert "1 s deadline" in str(error)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_each_retry_gets_its_own_deadline_and_the_total_is_bounded(mode: str) -> None:
    with TrickleServer("body") as server:
        client = HuggingFaceClient(
            base_url=server.url,
            timeout=Timeouts(read=30.0, total=0.5),
            max_retries=1,
            backoff_base=0.01,
            backoff_max=0.01,
        )
        client.server_info = {}  # skip /info: this test is about /embed
        method = client.embed_documents if mode == "sync" else client.aembed_documents
        elapsed, error = _timed(lambda: method(["hello"]), mode)
    assert 0.9 < elapsed < 2.0
    assert server.connections == 2
    assert "gave up after 2 attempts" in str(error)


def test_a_call_that_answers_in_time_is_unaffected() -> None:
    with TrickleServer("body", gap=0.001) as server:
        client = JinaClient(
            model="custom-model", api_key=KEY, base_url=server.url, timeout=5.0, max_retries=0
        )
        vectors = client.embed_documents(["hello"])
        assert vectors.shape == (1, 3)

        async def go() -> tuple[int, int]:
            return (await client.aembed_documents(["hello"])).shape

        assert asyncio.run(go()) == (1, 3)


def test_an_injected_client_gets_phase_timeouts_capped_at_the_deadline() -> None:
    seen: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, content=BODY)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = JinaClient(
        model="custom-model",
        api_key=KEY,
        http_client=http,
        timeout=Timeouts(read=300.0, pool=None, total=2.0),
    )
    client.embed_documents(["hello"])
    assert seen == [{"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}]


def test_deadline_defaults_to_the_longest_phase() -> None:
    assert Timeouts().deadline == 60.0
    assert Timeouts(read=120.0).deadline == 120.0
    assert Timeouts(read=None).deadline is None
    assert Timeouts(read=None, total=9.0).deadline == 9.0
    assert Timeouts.of(3).deadline == 3.0
