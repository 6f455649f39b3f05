"""``embed_queries`` / ``aembed_queries``: many queries in one request, each row what
``embed_query`` gives (query task / prefix / prompt), over loopback HTTP and MockTransport."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import orjson
import pytest
from _emb_helpers import FAST, HF_KEY, KEY

from tidb_jina import InvalidInputError, InvalidRequestError, RateLimitError
from tidb_jina.embeddings import (
    QWEN3_QUERY_TASK,
    HuggingFaceClient,
    JinaClient,
    aembed_queries,
    embed_queries,
)
from tidb_jina.testing import FakeEmbeddingServer, LexicalEmbedder, lexical_embedding

QUERIES = ["what is tidb", "basil recipes", "kyoto in autumn", "vector search", "sql joins"]
E5 = "intfloat/multilingual-e5-large"
QWEN = "Qwen/Qwen3-Embedding-0.6B"


def jina(server: FakeEmbeddingServer, **kwargs) -> JinaClient:
    return JinaClient(api_key=KEY, base_url=server.url, **FAST, **kwargs)


def hf_router(server: FakeEmbeddingServer, model: str, **kwargs) -> HuggingFaceClient:
    return HuggingFaceClient(model=model, api_key=HF_KEY, router_url=server.url, **FAST, **kwargs)


def queries_twice(client, call) -> np.ndarray:
    """``embed_queries`` (or its async twin), checked against ``embed_query`` per query."""
    many = call(client, "embed_queries", QUERIES)
    assert many.dtype == np.float32 and many.shape == (len(QUERIES), client.dimension)
    for row, query in zip(many, QUERIES, strict=True):
        np.testing.assert_array_equal(row, call(client, "embed_query", query))
    return many


@pytest.mark.parametrize(
    ("model", "task"),
    [
        ("jina-embeddings-v3", "retrieval.query"),
        ("jina-embeddings-v4", "retrieval.query"),
        ("jina-embeddings-v5-text-small", "retrieval.query"),
        ("jina-embeddings-v2-base-code", None),
    ],
)
def test_jina_one_request_with_the_query_task(server, call, model, task):
    client = jina(server, model=model)
    queries_twice(client, call)
    batched, *singles = server.api_requests()
    assert len(singles) == len(QUERIES)  # one request for all, then one per embed_query
    assert batched.body["input"] == QUERIES
    assert batched.body.get("task") == task
    # Every field but the input is what embed_query sends.
    for single in singles:
        assert {k: v for k, v in single.body.items() if k != "input"} == {
            k: v for k, v in batched.body.items() if k != "input"
        }


def test_jina_explicit_query_task_and_dimensions(server, call):
    client = jina(server, query_task="text-matching", dimensions=128)
    assert call(client, "embed_queries", QUERIES[:2]).shape == (2, 128)
    (request,) = server.api_requests()
    assert request.body["task"] == "text-matching" and request.body["dimensions"] == 128


def test_jina_late_chunking_never_applies_to_queries(server, call):
    client = jina(server, late_chunking=True)
    call(client, "embed_queries", QUERIES)
    (request,) = server.api_requests()
    assert "late_chunking" not in request.body and request.body["task"] == "retrieval.query"


def test_batches_follow_the_client_limits(server, call):
    client = jina(server, max_batch_size=2)
    vectors = call(client, "embed_queries", QUERIES)
    # Batches run concurrently, so the log's order is the order they finished in.
    assert sorted(QUERIES.index(r.body["input"][0]) for r in server.api_requests()) == [0, 2, 4]
    assert sorted([r.body["input"] for r in server.api_requests()]) == sorted(
        [
            QUERIES[0:2],
            QUERIES[2:4],
            QUERIES[4:5],
        ]
    )
    np.testing.assert_allclose(vectors, lexical_embedding(QUERIES, 1024), atol=1e-6)


def test_task_decides_the_vector_over_mock_transport(mode):
    """A server whose vectors depend on the task: the batch gets the query side."""
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        bodies.append(body)
        sign = 1.0 if body["task"] == "retrieval.query" else -1.0
        data = [
            {"index": i, "embedding": [sign * 0.6, 0.8 * (i + 1) / len(body["input"])]}
            for i in range(len(body["input"]))
        ]
        return httpx.Response(200, json={"data": data})

    client = JinaClient(
        model="jina-embeddings-v3",
        api_key=KEY,
        dimensions=2,
        transport=httpx.MockTransport(handler),
        **FAST,
    )
    if mode == "sync":
        many = client.embed_queries(["a", "b", "c"])
        docs = client.embed_documents(["a", "b", "c"])
    else:

        async def both() -> tuple[np.ndarray, np.ndarray]:
            return await client.aembed_queries(["a", "b", "c"]), await client.aembed_documents(
                ["a", "b", "c"]
            )

        many, docs = asyncio.run(both())
    assert len(bodies) == 2 and bodies[0]["input"] == ["a", "b", "c"]
    assert (many[:, 0] > 0).all() and (docs[:, 0] < 0).all()


def test_hf_router_e5_prefix_on_every_query(call):
    with FakeEmbeddingServer(api_key=HF_KEY) as server:
        client = hf_router(server, E5)
        many = queries_twice(client, call)
        batched = server.api_requests()[0]
        assert batched.body["inputs"] == [f"query: {q}" for q in QUERIES]
        np.testing.assert_allclose(
            many, lexical_embedding([f"query: {q}" for q in QUERIES], 1024), atol=1e-6
        )
        assert len(server.api_requests()) == 1 + len(QUERIES)


def test_hf_router_qwen3_instruction(call):
    with FakeEmbeddingServer(api_key=HF_KEY) as server:
        call(hf_router(server, QWEN), "embed_queries", QUERIES[:2])
        (request,) = server.api_requests()
        assert request.body["inputs"] == [
            f"Instruct: {QWEN3_QUERY_TASK}\nQuery:{q}" for q in QUERIES[:2]
        ]


def test_tei_prompt_name_and_server_batch_cap(call):
    with FakeEmbeddingServer(tei_prompts={"query"}, tei_max_client_batch_size=2) as server:
        client = HuggingFaceClient(base_url=server.url, query_prompt_name="query", **FAST)
        queries_twice(client, call)
        embeds = server.api_requests("/embed")
        batched = embeds[: len(embeds) - len(QUERIES)]
        assert sorted(len(r.body["inputs"]) for r in batched) == [1, 2, 2]  # TEI cap: 2
        assert all(r.body["prompt_name"] == "query" for r in embeds)


def test_bad_queries_are_refused_before_any_request(server, call):
    client = jina(server)
    with pytest.raises(InvalidInputError, match=r"texts\[1\] is empty or whitespace only"):
        call(client, "embed_queries", ["fine", "  "])
    with pytest.raises(InvalidInputError, match=r"texts\[0\] is None"):
        call(client, "embed_queries", [None])
    with pytest.raises(InvalidInputError, match="not a single string; wrap it in a list"):
        call(client, "embed_queries", "one query")
    assert server.api_requests() == []
    empty = call(client, "embed_queries", [])
    assert empty.shape == (0, 1024) and empty.dtype == np.float32
    assert server.api_requests() == []


def test_retries_and_errors_are_the_usual_ones(server, call):
    server.inject(503)
    assert call(jina(server), "embed_queries", QUERIES).shape == (len(QUERIES), 1024)
    assert [r.status for r in server.api_requests()] == [503, 200]
    server.reset()
    server.inject(429, 429)
    with pytest.raises(RateLimitError, match="gave up after 2 attempts"):
        call(jina(server, max_retries=1), "embed_queries", QUERIES)
    assert [r.status for r in server.api_requests()] == [429, 429]


def test_lexical_embedder_embed_queries(call):
    embedder = LexicalEmbedder(dimension=32)
    many = call(embedder, "embed_queries", QUERIES)
    for row, query in zip(many, QUERIES, strict=True):
        np.testing.assert_array_equal(row, embedder.embed_query(query))
    with pytest.raises(InvalidInputError, match="empty"):
        call(embedder, "embed_queries", ["x", ""])


# ---- tidb_jina.embeddings.embed_queries(provider, texts): any provider --------------------


class PlainProvider:
    """The four protocol methods only (no embed_queries): asked query by query."""

    model = "plain"
    dimension = 3

    def __init__(self) -> None:
        self.queries: list[str] = []

    def embed_documents(self, texts):
        raise AssertionError("queries are not documents")

    def embed_query(self, text: str) -> list[float]:
        self.queries.append(text)
        return [float(len(text)), 1.0, 0.0]

    async def aembed_documents(self, texts):
        raise AssertionError("queries are not documents")

    async def aembed_query(self, text: str) -> list[float]:
        return self.embed_query(text)


class PrefixOnlyQuery(JinaClient):
    """Overrides embed_query alone: the inherited embed_queries would skip the prefix."""

    def embed_query(self, text: str) -> np.ndarray:
        return super().embed_query(f"about {text}")

    async def aembed_query(self, text: str) -> np.ndarray:
        return await super().aembed_query(f"about {text}")


class PrefixBoth(PrefixOnlyQuery):
    def embed_queries(self, texts) -> np.ndarray:
        return super().embed_queries([f"about {t}" for t in texts])

    async def aembed_queries(self, texts) -> np.ndarray:
        return await super().aembed_queries([f"about {t}" for t in texts])


def _function(mode: str, provider, texts):
    if mode == "sync":
        return embed_queries(provider, texts)
    return asyncio.run(aembed_queries(provider, texts))


def test_function_uses_the_client_batch_method(server, mode):
    client = jina(server)
    vectors = _function(mode, client, QUERIES)
    (request,) = server.api_requests()
    assert request.body["input"] == QUERIES and request.body["task"] == "retrieval.query"
    np.testing.assert_array_equal(vectors, client.embed_queries(QUERIES))


@pytest.mark.parametrize(("cls", "requests"), [(PrefixOnlyQuery, 5), (PrefixBoth, 1)])
def test_function_honours_an_overridden_embed_query(server, mode, cls, requests):
    client = cls(api_key=KEY, base_url=server.url, **FAST)
    vectors = _function(mode, client, QUERIES)
    inputs = [r.body["input"] for r in server.api_requests()]
    assert len(inputs) == requests
    assert sorted(t for batch in inputs for t in batch) == sorted(f"about {q}" for q in QUERIES)
    np.testing.assert_allclose(
        vectors, lexical_embedding([f"about {q}" for q in QUERIES], 1024), atol=1e-6
    )


def test_function_falls_back_to_embed_query(mode):
    provider = PlainProvider()
    vectors = _function(mode, provider, ["a", "bbb"])
    assert vectors.dtype == np.float32 and vectors.tolist() == [[1, 1, 0], [3, 1, 0]]
    assert provider.queries == ["a", "bbb"]
    assert _function(mode, provider, []).shape == (0, 3)
    with pytest.raises(InvalidInputError, match=r"texts\[1\] is empty"):
        _function(mode, provider, ["fine", " "])
    assert provider.queries == ["a", "bbb"]  # refused before any call


def test_function_with_langchain_embeddings(mode):
    """A LangChain ``Embeddings`` has ``embed_query`` and no ``dimension``: per query, and
    an empty list is an empty matrix, not an AttributeError."""
    from langchain_core.embeddings import DeterministicFakeEmbedding

    lc = DeterministicFakeEmbedding(size=8)
    vectors = _function(mode, lc, ["a", "b"])
    assert vectors.dtype == np.float32 and vectors.shape == (2, 8)
    np.testing.assert_array_equal(vectors[1], np.asarray(lc.embed_query("b"), np.float32))
    assert _function(mode, lc, []).shape == (0, 0)


def test_function_honours_embed_query_patched_on_the_instance(server, mode):
    client = jina(server)
    plain_query = client.embed_query
    client.embed_query = lambda text: plain_query(f"about {text}")  # type: ignore[method-assign]
    plain_async = client.aembed_query

    async def patched(text: str) -> np.ndarray:
        return await plain_async(f"about {text}")

    client.aembed_query = patched  # type: ignore[method-assign]
    vectors = _function(mode, client, QUERIES[:2])
    assert sorted(r.body["input"][0] for r in server.api_requests()) == sorted(
        f"about {q}" for q in QUERIES[:2]
    )
    np.testing.assert_allclose(
        vectors, lexical_embedding([f"about {q}" for q in QUERIES[:2]], 1024), atol=1e-6
    )


class ShoutingLexical(LexicalEmbedder):
    """Overrides the sync ``embed_query`` only; ``aembed_query`` calls it."""

    def embed_query(self, text: str) -> np.ndarray:
        return super().embed_query(text.upper() + " shout")


def test_lexical_subclass_async_queries_follow_embed_query(mode):
    embedder = ShoutingLexical(dimension=32)
    many = _function(mode, embedder, QUERIES)
    direct = asyncio.run(embedder.aembed_queries(QUERIES))
    for row, other, query in zip(many, direct, QUERIES, strict=True):
        want = embedder.embed_query(query)
        np.testing.assert_array_equal(row, want)
        np.testing.assert_array_equal(other, asyncio.run(embedder.aembed_query(query)))


@pytest.mark.parametrize("method", ["embed_queries", "embed_documents"])
def test_lone_surrogate_is_refused_before_any_request(server, call, method):
    """Not the JSON encoder's bare TypeError, and no batch sent (or billed) before it."""
    client = jina(server, max_batch_size=1)
    texts = ["fine", "caf\u00e9", "bad \ud800 text"]
    with pytest.raises(InvalidInputError, match=r"texts\[2\] is not valid Unicode.*surrogate"):
        call(client, method, texts)
    with pytest.raises(InvalidInputError, match=r"text\[0\] is not valid Unicode"):
        call(client, "embed_query", "\udfff")
    assert server.api_requests() == []


def test_nul_and_non_ascii_queries_equal_embed_query(server, call):
    """NUL is valid JSON text (``\\u0000``): sent as is, each row equal to ``embed_query``."""
    client = jina(server)
    texts = ["a\x00b", "caf\u00e9 \U0001f600", "\u4e2d\u6587 query"]
    many = call(client, "embed_queries", texts)
    (batched, *_) = server.api_requests()
    assert batched.body["input"] == texts
    for row, text in zip(many, texts, strict=True):
        np.testing.assert_array_equal(row, call(client, "embed_query", text))


def test_ten_thousand_queries_respect_the_provider_cap(server, call):
    """v4 takes at most 512 inputs per request (the fake server answers 400 beyond it): a
    10,000-query list with a larger max_batch_size is still split, rows in order."""
    client = jina(server, model="jina-embeddings-v4", max_batch_size=5000)
    texts = [f"query number {i}" for i in range(10_000)]
    vectors = call(client, "embed_queries", texts)
    sizes = [len(r.body["input"]) for r in server.api_requests()]
    assert sum(sizes) == 10_000 and max(sizes) == 512 and len(sizes) == 20
    assert all(
        r.status == 200 and r.body["task"] == "retrieval.query" for r in server.api_requests()
    )
    np.testing.assert_allclose(vectors, lexical_embedding(texts, 2048), atol=1e-6)


def test_hf_character_budget_counts_the_prefix(call):
    """max_batch_chars bounds the characters sent: Qwen3's query instruction counts."""
    budget = 400
    with FakeEmbeddingServer(api_key=HF_KEY) as server:
        client = hf_router(server, QWEN, max_batch_chars=budget)
        texts = [f"query {i:02d}" for i in range(12)]
        many = call(client, "embed_queries", texts)
        sent = [r.body["inputs"] for r in server.api_requests()]
        assert sorted(t for batch in sent for t in batch) == sorted(
            f"Instruct: {QWEN3_QUERY_TASK}\nQuery:{q}" for q in texts
        )
        assert len(sent) > 1 and all(sum(map(len, batch)) <= budget for batch in sent)
        np.testing.assert_array_equal(many[3], call(client, "embed_query", texts[3]))


@pytest.mark.parametrize("route", ["router", "tei"])
def test_hf_options_are_those_of_embed_query(call, route):
    """normalize / truncate / truncation_direction / prompt_name: the batch sends every
    field ``embed_query`` sends, and the same vectors (un-normalised ones included)."""
    options = {"normalize": False, "truncate": True, "truncation_direction": "left"}
    with FakeEmbeddingServer(api_key=HF_KEY, tei_prompts={"query"}) as server:
        if route == "router":
            client = hf_router(server, E5, **options)
        else:
            client = HuggingFaceClient(
                base_url=server.url, api_key=HF_KEY, query_prompt_name="query", **options, **FAST
            )
        queries_twice(client, call)
        path = "/embed" if route == "tei" else "/feature-extraction"
        batched, *singles = [r for r in server.api_requests() if r.path.endswith(path)]
        assert len(singles) == len(QUERIES)
        assert batched.body["normalize"] is False and batched.body["truncation_direction"] == "left"
        for single in singles:
            assert {k: v for k, v in single.body.items() if k != "inputs"} == {
                k: v for k, v in batched.body.items() if k != "inputs"
            }


def test_tei_batches_stay_under_the_payload_limit(call):
    """TEI refuses a body over 2 MB (413, enforced by the fake server). The default 100,000
    characters per request stay under it even for the costliest characters in JSON (a
    control character is 6 bytes escaped, an emoji 4 in UTF-8)."""
    chunk = "\x01\U0001f600 \u00e9" * 1250  # 5,000 characters, 13,750 bytes as JSON
    texts = [f"{i} {chunk}" for i in range(80)]
    with FakeEmbeddingServer(tei_max_client_batch_size=512) as server:
        client = HuggingFaceClient(base_url=server.url, **FAST)
        many = call(client, "embed_queries", texts)
        embeds = server.api_requests("/embed")
        assert len(embeds) >= 4 and all(r.status == 200 for r in embeds)
        assert sorted(len(r.body["inputs"]) for r in embeds)[-1] <= 20
        np.testing.assert_array_equal(many[7], call(client, "embed_query", texts[7]))


def test_fake_tei_answers_413_over_its_payload_limit(call):
    with FakeEmbeddingServer(tei_payload_limit=5_000) as server:
        client = HuggingFaceClient(base_url=server.url, **FAST)
        with pytest.raises(InvalidRequestError, match="too large; lower max_batch_chars"):
            call(client, "embed_queries", ["word " * 1200, "x"])
        assert [r.status for r in server.api_requests("/embed")] == [413]
