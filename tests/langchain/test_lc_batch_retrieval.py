"""``retriever.batch`` / ``abatch``: one embedding call and one ``search_many``, answers and
callbacks as ``invoke`` per query, on every engine (fake Jina server over loopback)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document

from langchain_tidb_jina import JinaEmbeddings, TiDBVectorStore
from tidb_jina import InvalidFilterError, InvalidInputError
from tidb_jina.testing import FakeEmbeddingServer

MakeStore = Callable[..., TiDBVectorStore]

WORDS = ["tidb", "vector", "sql", "basil", "recipe", "tomato", "genoa", "rows", "index", "cloud"]
TEXTS = [
    f"{WORDS[i % 10]} {WORDS[(i * 3) % 10]} {WORDS[(i * 7 + 1) % 10]} doc{i}" for i in range(60)
]
METAS: list[dict[str, Any]] = [{"g": i % 3, "year": 2020 + i % 6} for i in range(60)]
QUERIES = ["tidb vector rows", "basil recipe", "sql index cloud", "genoa tomato", "vector"]
CASES: list[dict[str, Any]] = [
    {},
    {"k": 7},
    {"k": 5, "filter": {"g": 1}},
    {"k": 10, "filter": {"$or": [{"year": {"$gte": 2024}}, {"g": 0}]}},
]


@pytest.fixture
def store(make_store: MakeStore, jina: JinaEmbeddings) -> TiDBVectorStore:
    store = make_store(jina)
    store.add_texts(TEXTS, METAS, ids=[f"d{i}" for i in range(60)])
    return store


class Recorder(BaseCallbackHandler):
    """Retriever events as ``(event, query or ids)`` keyed by run id."""

    def __init__(self) -> None:
        self.starts: dict[UUID, str] = {}
        self.ends: dict[UUID, list[str | None]] = {}
        self.errors: dict[UUID, str] = {}

    def on_retriever_start(self, serialized: Any, query: str, *, run_id: UUID, **kw: Any) -> None:
        self.starts[run_id] = query

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kw: Any) -> None:
        self.ends[run_id] = [d.id for d in documents]

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kw: Any) -> None:
        self.errors[run_id] = type(error).__name__

    def by_query(self) -> dict[str, list[str | None]]:
        return {self.starts[run]: ids for run, ids in self.ends.items()}


def _docs(answers: list[list[Document]]) -> list[list[tuple[Any, ...]]]:
    return [[(d.id, d.page_content, d.metadata) for d in docs] for docs in answers]


@pytest.mark.parametrize("search_kwargs", CASES)
async def test_batch_equals_invoke_per_query(
    store: TiDBVectorStore, search_kwargs: dict[str, Any], fake_server: FakeEmbeddingServer
) -> None:
    retriever = store.as_retriever(search_kwargs=search_kwargs)
    want = [retriever.invoke(q) for q in QUERIES]
    assert all(want)  # the queries find something, so equality means something
    before = len(fake_server.api_requests())
    got = retriever.batch(QUERIES)
    assert len(fake_server.api_requests()) == before + 1  # one embedding call for all
    assert _docs(got) == _docs(want)
    assert _docs(await retriever.abatch(QUERIES)) == _docs(want)
    assert len(fake_server.api_requests()) == before + 2


def test_batched_request_embeds_queries_as_queries(
    store: TiDBVectorStore, fake_server: FakeEmbeddingServer
) -> None:
    retriever = store.as_retriever()
    retriever.invoke(QUERIES[0])
    single = fake_server.api_requests()[-1].body
    retriever.batch(QUERIES[:3])
    batched = fake_server.api_requests()[-1].body
    assert batched["input"] == QUERIES[:3]
    assert {k: v for k, v in batched.items() if k != "input"} == {
        k: v for k, v in single.items() if k != "input"
    }


async def test_callbacks_fire_per_query_as_invoke(store: TiDBVectorStore) -> None:
    retriever = store.as_retriever(search_kwargs={"k": 3, "filter": {"g": 2}})
    per_query, batched, abatched = Recorder(), Recorder(), Recorder()
    for q in QUERIES:
        retriever.invoke(q, {"callbacks": [per_query]})
    retriever.batch(QUERIES, {"callbacks": [batched]})
    await retriever.abatch(QUERIES, {"callbacks": [abatched]})
    assert len(per_query.starts) == len(QUERIES)
    assert batched.by_query() == per_query.by_query() == abatched.by_query()
    assert not batched.errors and not abatched.errors
    # One config per input: each query's run goes to its own handlers.
    handlers = [Recorder() for _ in QUERIES]
    retriever.batch(
        QUERIES, [{"callbacks": [h], "run_name": f"r{i}"} for i, h in enumerate(handlers)]
    )
    for q, h in zip(QUERIES, handlers, strict=True):
        assert list(h.starts.values()) == [q]
        assert h.by_query() == {q: per_query.by_query()[q]}


async def test_search_error_reaches_every_run(store: TiDBVectorStore) -> None:
    retriever = store.as_retriever(search_kwargs={"filter": {"g": {"$regex": "x"}}})
    recorder = Recorder()
    with pytest.raises(InvalidFilterError, match=r"\$regex"):
        retriever.batch(QUERIES, {"callbacks": [recorder]})
    assert sorted(recorder.errors.values()) == ["InvalidFilterError"] * len(QUERIES)
    assert not recorder.ends
    answers = await retriever.abatch(QUERIES, return_exceptions=True)
    assert [type(a) for a in answers] == [InvalidFilterError] * len(QUERIES)


def test_bad_query_gets_the_invoke_error(store: TiDBVectorStore) -> None:
    retriever = store.as_retriever()
    with pytest.raises(InvalidInputError, match="empty"):
        retriever.invoke("  ")
    with pytest.raises(InvalidInputError, match="empty"):
        retriever.batch(["tidb", "  "])
    answers = retriever.batch(["tidb", "  "], return_exceptions=True)
    assert isinstance(answers[1], InvalidInputError)
    assert [d.id for d in answers[0]] == [d.id for d in retriever.invoke("tidb")]


@pytest.mark.parametrize(
    ("search_type", "search_kwargs"),
    [
        ("mmr", {"k": 3, "fetch_k": 10}),
        ("similarity_score_threshold", {"k": 5, "score_threshold": 0.2}),
        ("similarity", {"k": 3, "prefilter": True}),
    ],
)
async def test_other_search_types_answer_as_invoke(
    store: TiDBVectorStore, search_type: str, search_kwargs: dict[str, Any]
) -> None:
    retriever = store.as_retriever(search_type=search_type, search_kwargs=search_kwargs)
    want = [retriever.invoke(q) for q in QUERIES]
    assert _docs(retriever.batch(QUERIES)) == _docs(want)
    assert _docs(await retriever.abatch(QUERIES)) == _docs(want)


class PrefixedEmbeddings(JinaEmbeddings):
    """A subclass overriding the query method: called like any LangChain Embeddings."""

    def embed_query(self, text: str) -> list[float]:
        return super().embed_query(f"about {text}")

    async def aembed_query(self, text: str) -> list[float]:
        return await super().aembed_query(f"about {text}")


async def test_other_embeddings_use_their_own_query_method(
    make_store: MakeStore, fake_server: FakeEmbeddingServer
) -> None:
    embedding = PrefixedEmbeddings(api_key="jina_test_key_0123456789", base_url=fake_server.url)
    store = make_store(embedding)
    store.add_texts(TEXTS, METAS)
    retriever = store.as_retriever(search_kwargs={"k": 6})
    want = [retriever.invoke(q) for q in QUERIES]
    before = len(fake_server.api_requests())
    assert _docs(retriever.batch(QUERIES)) == _docs(want)
    assert _docs(await retriever.abatch(QUERIES)) == _docs(want)
    inputs = [r.body["input"] for r in fake_server.api_requests()[before:]]
    assert inputs == [[f"about {q}"] for q in QUERIES] * 2
    await embedding.aclose()


def test_cosine_relevance_never_exceeds_one_from_float_rounding() -> None:
    from langchain_tidb_jina._relevance import relevance_fn
    from tidb_jina.store import DistanceMetric

    fn = relevance_fn(DistanceMetric.COSINE)
    assert fn(-1.2e-7) == 1.0
    assert fn(0.25) == 0.75 and fn(1.5) == -0.5  # langchain-core's 1 - d elsewhere
