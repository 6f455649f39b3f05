"""Embedding throughput against the fake Jina server (100 ms per request, 5 concurrent).

Embeds ``n`` texts (default 10,000) as documents with ``jina-embeddings-v3`` against
``FakeEmbeddingServer(latency_s=0.1, max_concurrency=5)``, which answers 429
``RATE_CONCURRENCY_LIMIT_EXCEEDED`` beyond 5 requests in flight, like Jina's free tier.
Every contestant's output is checked: one vector per text, in order, equal to the
server's vector for that text; failed (an exception) and missing/wrong embeddings are
counted.

Ours: ``JinaClient.embed_documents`` (sync) and ``aembed_documents`` (async), defaults
(128 texts per request, 5 concurrent, retries). Baselines, pointed at the same server:
langchain-community's ``JinaEmbeddings`` (its module-level ``JINA_API_URL`` is
monkeypatched: it has no base-URL setting) and llama-index's ``JinaEmbedding`` (its
``_api.api_url`` is set after construction: the constructor does not forward a base URL),
sync and async (default ``num_workers``, and ``num_workers=5`` to respect the limit).

The bench server accepts llama-index's ``encoding_type`` field as an alias of
``embedding_type`` (the fake server rejects unknown fields), so that peer is measured on
throughput rather than on that field.

Goal: at least 5x the best peer's throughput, zero failed or missing embeddings.

    python bench/embedding_throughput.py [--n 10000] [--latency 0.1] [--no-slow-peers]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import Row, table, verdict

from tidb_jina.embeddings import JinaClient, jina_model_info
from tidb_jina.testing import FakeEmbeddingServer, lexical_embedding

MODEL = "jina-embeddings-v3"
API_KEY = "jina_test"


class BenchServer(FakeEmbeddingServer):
    """The fake Jina server, also accepting ``encoding_type`` (llama-index's field name)."""

    def start(self) -> BenchServer:
        super().start()
        # A peer that gives up mid-request leaves broken pipes: not worth a traceback.
        self._httpd.handle_error = lambda request, client_address: None  # type: ignore[union-attr]
        return self

    def _jina_embeddings(self, body: Any) -> dict[str, Any]:
        if isinstance(body, dict) and "encoding_type" in body:
            body = dict(body)
            body.setdefault("embedding_type", body.pop("encoding_type"))
        return super()._jina_embeddings(body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--no-slow-peers", action="store_true", help="skip llama-index sync")
    args = parser.parse_args()
    words = ["tidb", "vector", "search", "jina", "embedding", "bench", "index", "query"]
    texts = [f"text {i} " + " ".join(words[(i + j) % 8] for j in range(12)) for i in range(args.n)]
    expected = lexical_embedding(texts, jina_model_info(args.model).dimension)
    with BenchServer(api_key=API_KEY, latency_s=args.latency, max_concurrency=5) as server:
        results = [
            _measure(name, fn, texts, expected, server)
            for name, fn in _contestants(server.url, args.model, args.no_slow_peers)
        ]
    _report(args, results)


def _contestants(
    url: str, model: str, skip_slow: bool
) -> list[tuple[str, Callable[[list[str]], Any]]]:
    ours = JinaClient(model=model, api_key=API_KEY, base_url=url)
    entries: list[tuple[str, Callable[[list[str]], Any]]] = [
        ("ours, sync", ours.embed_documents),
        ("ours, async", lambda t: asyncio.run(ours.aembed_documents(t))),
        ("langchain-community JinaEmbeddings", _langchain(url, model)),
        ("llama-index JinaEmbedding, async, num_workers=5", _llama(url, model, True, 5)),
        ("llama-index JinaEmbedding, async", _llama(url, model, async_=True)),
    ]
    if not skip_slow:
        entries.append(("llama-index JinaEmbedding, sync", _llama(url, model, async_=False)))
    return entries


def _langchain(url: str, model: str) -> Callable[[list[str]], Any]:
    from langchain_community.embeddings import JinaEmbeddings
    from langchain_community.embeddings import jina as lc_jina

    lc_jina.JINA_API_URL = f"{url}/v1/embeddings"  # no base-URL setting: patch the module
    return JinaEmbeddings(jina_api_key=API_KEY, model_name=model).embed_documents


def _llama(
    url: str, model: str, async_: bool, workers: int | None = None
) -> Callable[[list[str]], Any]:
    from llama_index.embeddings.jinaai import JinaEmbedding

    embedder = JinaEmbedding(model=model, api_key=API_KEY, num_workers=workers)
    embedder._api.api_url = f"{url}/v1/embeddings"  # the constructor keeps the default URL
    if async_:
        return lambda t: asyncio.run(embedder.aget_text_embedding_batch(t))
    return embedder.get_text_embedding_batch


def _measure(name, fn, texts, expected, server) -> dict[str, Any]:
    _drain(server)
    server.reset()
    start = time.perf_counter()
    try:
        out, error = fn(texts), None
    except Exception as exc:  # a peer that errors is reported as such
        out, error = None, f"{type(exc).__name__}: {str(exc)[:120]}"
    seconds = time.perf_counter() - start
    good = _correct(out, expected)
    statuses = [r.status for r in server.api_requests("/v1/embeddings")]
    return {
        "name": name,
        "seconds": seconds,
        "error": error,
        "good": good,
        "missing": len(texts) - good,
        "requests": len(statuses),
        "rejected": sum(1 for s in statuses if s != 200),
    }


def _drain(server: FakeEmbeddingServer, timeout: float = 30.0) -> None:
    """Wait until requests left by an aborted contestant are answered (else they count
    against the next contestant's concurrency)."""
    deadline = time.monotonic() + timeout
    time.sleep(server.latency_s)
    while server._in_flight and time.monotonic() < deadline:  # the fake server's own count
        time.sleep(0.05)


def _correct(out: Any, expected: np.ndarray) -> int:
    """How many rows are present, in order and equal to the server's vector."""
    if out is None:
        return 0
    rows = list(out)[: len(expected)]
    good = 0
    for row, want in zip(rows, expected, strict=False):
        got = np.asarray(row, dtype=np.float32)
        good += int(got.shape == want.shape and np.allclose(got, want, atol=1e-6))
    return good


def _report(args, results: list[dict[str, Any]]) -> None:
    print(
        f"## Embedding throughput, {args.n:,} texts, {args.model}, fake Jina server "
        f"({args.latency * 1e3:.0f} ms per request, 5 concurrent, 429 beyond)\n"
    )
    print("| contestant | time | texts/s | requests | 429 / errors answered | failed or missing |")
    print("|---|---|---|---|---|---|")
    for r in results:
        rate = "-" if r["error"] else f"{args.n / r['seconds']:,.0f}"
        missing = f"{r['missing']:,}" + (f" (error: {r['error']})" if r["error"] else "")
        print(
            f"| {r['name']} | {r['seconds']:.2f} s | {rate} | {r['requests']:,} "
            f"| {r['rejected']:,} | {missing} |"
        )
    ours = [r for r in results if r["name"].startswith("ours")]
    peers = [r for r in results if not r["name"].startswith("ours") and not r["missing"]]
    if peers:
        best = min(peers, key=lambda r: r["seconds"])
        rows = [
            Row(f"{r['name']}: time", r["seconds"], best["name"], best["seconds"], "5x faster", 0.2)
            for r in ours
        ]
        print()
        print(table(rows))
    else:
        print("\nno peer completed without failures: there is no baseline throughput")
    clean = all(r["missing"] == 0 for r in ours)
    print(f"\n- zero failed or missing embeddings (ours): {verdict(clean)}")


if __name__ == "__main__":
    main()
