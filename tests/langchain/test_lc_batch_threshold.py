"""``similarity_score_threshold`` retrievers batched through one ``search_many``: each
answer, warning, log line, callback run and error equals ``invoke``'s, for every metric,
sync and async, on every engine (fake Jina server over loopback)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import numpy as np
import pytest
from _lc_helpers import API_KEY, DIMENSION
from langchain_core.documents import Document
from langchain_core.vectorstores import VectorStoreRetriever
from test_lc_batch_retrieval import METAS, QUERIES, TEXTS, Recorder

from langchain_tidb_jina import (
    JinaEmbeddings,
    ProviderEmbeddings,
    TiDBVectorStore,
    TiDBVectorStoreRetriever,
)
from tidb_jina import InputTooLongError
from tidb_jina.embeddings import JinaClient
from tidb_jina.testing import FakeEmbeddingServer, LexicalEmbedder

MakeStore = Callable[..., TiDBVectorStore]

METRICS = ["cosine", "l2", "inner_product", "l1"]
# The last query shares no word with any document: everything is cut, LangChain logs it.
THRESHOLD_QUERIES = [*QUERIES, "zebra quantum"]
CASES: list[dict[str, Any]] = [{}, {"k": 7}, {"k": 6, "filter": {"g": 1}}]


def _docs(answers: list[Any]) -> list[Any]:
    """Answers as comparable values (an exception as its type and message)."""
    return [
        (type(a).__name__, str(a))
        if isinstance(a, Exception)
        else [(d.id, d.page_content, d.metadata) for d in a]
        for a in answers
    ]


def _threshold(store: TiDBVectorStore, search_kwargs: dict[str, Any]) -> float:
    """The median relevance of every query's hits: some are kept, some are cut."""
    scores = [
        score
        for q in THRESHOLD_QUERIES
        for _, score in store.similarity_search_with_relevance_scores(q, **search_kwargs)
    ]
    return float(np.median(scores))


class Observed:
    """What a call returned, warned and logged through langchain-core."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def _logs(self) -> list[str]:
        return [r.getMessage() for r in self.caplog.records if r.name.startswith("langchain")]

    def run(self, fn: Callable[[], Any]) -> tuple[Any, list[str], list[str]]:
        self.caplog.clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = fn()
        return result, _ours(caught), self._logs()

    async def arun(self, fn: Callable[[], Awaitable[Any]]) -> tuple[Any, list[str], list[str]]:
        self.caplog.clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = await fn()
        return result, _ours(caught), self._logs()


def _ours(caught: list[warnings.WarningMessage]) -> list[str]:
    """The warnings langchain-core raised: catching is process-wide, and a resource an
    earlier test left to the garbage collector may warn inside the window (its
    ``ResourceWarning`` then carries the file of whatever frame ran the collection,
    possibly langchain-core's own)."""
    return [
        str(w.message)
        for w in caught
        if "langchain" in w.filename and not issubclass(w.category, ResourceWarning)
    ]


@pytest.mark.parametrize("search_kwargs", CASES)
@pytest.mark.parametrize("metric", METRICS)
async def test_threshold_batch_equals_invoke(
    make_store: MakeStore,
    jina: JinaEmbeddings,
    fake_server: FakeEmbeddingServer,
    caplog: pytest.LogCaptureFixture,
    metric: str,
    search_kwargs: dict[str, Any],
) -> None:
    caplog.set_level(logging.WARNING)
    store = make_store(jina, distance_strategy=metric)
    store.add_texts(TEXTS, METAS, ids=[f"d{i}" for i in range(len(TEXTS))])
    options = {**search_kwargs, "score_threshold": _threshold(store, search_kwargs)}
    retriever = store.as_retriever(search_type="similarity_score_threshold", search_kwargs=options)
    seen = Observed(caplog)
    qs = THRESHOLD_QUERIES

    want = seen.run(lambda: [retriever.invoke(q) for q in qs])
    k = search_kwargs.get("k", 4)
    sizes = [len(docs) for docs in want[0]]
    # The threshold cuts somewhere, keeps something, and empties the unrelated query.
    assert any(0 < n < k for n in sizes) or (max(sizes) == k and min(sizes[:-1]) < k)
    assert max(sizes) > 0 and sizes[-1] == 0
    assert any("No relevant docs" in line for line in want[2])

    before = len(fake_server.api_requests())
    got = seen.run(lambda: retriever.batch(qs))
    assert len(fake_server.api_requests()) == before + 1  # one embedding call for all
    assert _docs(got[0]) == _docs(want[0])
    assert got[1:] == want[1:]  # the same warnings and log lines

    awant = await seen.arun(lambda: _ainvoke_all(retriever, qs))
    agot = await seen.arun(lambda: retriever.abatch(qs))
    assert _docs(awant[0]) == _docs(want[0])
    assert _docs(agot[0]) == _docs(awant[0]) and agot[1:] == awant[1:]
    assert len(fake_server.api_requests()) == before + 2 + len(qs)


async def _ainvoke_all(retriever: VectorStoreRetriever, qs: list[str]) -> list[list[Document]]:
    return [await retriever.ainvoke(q) for q in qs]


class Scaled(LexicalEmbedder):
    """Lexical vectors times 3: L2 relevance (``1 - d / sqrt(2)``) goes below 0 for every
    hit but a query's own text, and langchain-core warns about it."""

    calls: ClassVar[dict[str, int]] = {}

    def embed_documents(self, texts: Any) -> np.ndarray:
        return super().embed_documents(texts) * 3

    def embed_query(self, text: str) -> np.ndarray:
        self.calls["embed_query"] = self.calls.get("embed_query", 0) + 1
        return super().embed_query(text)

    def embed_queries(self, texts: Any) -> np.ndarray:
        self.calls["embed_queries"] = self.calls.get("embed_queries", 0) + 1
        return super().embed_queries(texts)


def _outcome(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as error:
        return error


async def _aoutcome(fn: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await fn()
    except Exception as error:
        return error


def _by_query(recorder: Recorder) -> dict[str, Any]:
    ends: dict[str, Any] = recorder.by_query()
    errors = {recorder.starts[run]: error for run, error in recorder.errors.items()}
    return {**ends, **errors}


@pytest.fixture
def scaled_retriever(make_store: MakeStore) -> VectorStoreRetriever:
    store = make_store(ProviderEmbeddings(provider=Scaled(dimension=64)), distance_strategy="l2")
    store.add_texts(TEXTS, METAS, ids=[f"d{i}" for i in range(len(TEXTS))])
    return store.as_retriever(
        search_type="similarity_score_threshold", search_kwargs={"k": 1, "score_threshold": 0.5}
    )


# Two documents' own texts (relevance 1, no warning) among queries that warn.
MIXED = [QUERIES[0], TEXTS[3], QUERIES[1], TEXTS[10], QUERIES[2]]


async def test_warning_as_error_fails_only_that_query(
    scaled_retriever: VectorStoreRetriever,
) -> None:
    retriever = scaled_retriever
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        per_query, batched, abatched = Recorder(), Recorder(), Recorder()
        want = [
            _outcome(lambda q=q: retriever.invoke(q, {"callbacks": [per_query]})) for q in MIXED
        ]
        kinds = [type(a).__name__ for a in want]
        assert kinds == ["UserWarning", "list", "UserWarning", "list", "UserWarning"]
        assert [d.id for d in want[1]] == ["d3"] and "between 0 and 1" in str(want[0])
        # LangChain's own per-query batch agrees with the invoke loop.
        own = VectorStoreRetriever.batch(retriever, MIXED, return_exceptions=True)
        assert _docs(own) == _docs(want)

        Scaled.calls.clear()
        got = retriever.batch(MIXED, {"callbacks": [batched]}, return_exceptions=True)
        assert _docs(got) == _docs(want)
        assert Scaled.calls == {"embed_queries": 1}  # the batched path, not a fallback
        agot = await retriever.abatch(MIXED, {"callbacks": [abatched]}, return_exceptions=True)
        assert _docs(agot) == _docs(want)
        assert _by_query(batched) == _by_query(per_query) == _by_query(abatched)
        assert sorted(set(per_query.errors.values())) == ["UserWarning"]

        # Without return_exceptions: the first error in input order, as Runnable.batch.
        with pytest.raises(UserWarning) as raised:
            retriever.batch(MIXED)
        assert str(raised.value) == str(want[0])
        with pytest.raises(UserWarning) as araised:
            await retriever.abatch(MIXED[1:])
        assert str(araised.value) == str(want[2])
        # All warning-free queries: answers as invoke, no error.
        fine = [TEXTS[3], TEXTS[10]]
        assert _docs(retriever.batch(fine)) == _docs(want[1::2])
        assert _docs(await retriever.abatch(fine)) == _docs(want[1::2])


async def test_ainvoke_errors_match_abatch(scaled_retriever: VectorStoreRetriever) -> None:
    retriever = scaled_retriever
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        want = [await _aoutcome(lambda q=q: retriever.ainvoke(q)) for q in MIXED]
        assert _docs(await retriever.abatch(MIXED, return_exceptions=True)) == _docs(want)


class CountingStore(TiDBVectorStore):
    """Overrides the threshold search: batch must run it per query, as invoke does."""

    calls = 0

    def similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        CountingStore.calls += 1
        return super().similarity_search_with_relevance_scores(query, k, **kwargs)


def test_overridden_store_method_keeps_per_query_batch(
    make_store: MakeStore, jina: JinaEmbeddings
) -> None:
    base = make_store(jina)
    base.add_texts(TEXTS, METAS)
    store = CountingStore(vector_table=base.vector_table, embedding=jina)
    retriever = store.as_retriever(
        search_type="similarity_score_threshold", search_kwargs={"score_threshold": 0.1}
    )
    want = [retriever.invoke(q) for q in QUERIES]
    CountingStore.calls = 0
    assert _docs(retriever.batch(QUERIES)) == _docs(want)
    assert CountingStore.calls == len(QUERIES)


class PrefixedClient(JinaClient):
    """Overrides ``embed_query`` only: its inherited ``embed_queries`` would skip the prefix,
    so the batch must embed query by query."""

    def embed_query(self, text: str) -> np.ndarray:
        return super().embed_query(f"about {text}")

    async def aembed_query(self, text: str) -> np.ndarray:
        return await super().aembed_query(f"about {text}")


class PrefixedBothClient(PrefixedClient):
    def embed_queries(self, texts: Any) -> np.ndarray:
        return super().embed_queries([f"about {t}" for t in texts])

    async def aembed_queries(self, texts: Any) -> np.ndarray:
        return await super().aembed_queries([f"about {t}" for t in texts])


@pytest.mark.parametrize(("cls", "requests"), [(PrefixedClient, 5), (PrefixedBothClient, 1)])
async def test_provider_subclass_query_method_is_honoured(
    make_store: MakeStore, fake_server: FakeEmbeddingServer, cls: type, requests: int
) -> None:
    client = cls(api_key="jina_test_key_0123456789", base_url=fake_server.url, dimensions=64)
    store = make_store(ProviderEmbeddings(provider=client))
    store.add_texts(TEXTS, METAS)
    retriever = store.as_retriever(search_kwargs={"k": 6})
    want = [retriever.invoke(q) for q in QUERIES]
    before = len(fake_server.api_requests())
    assert _docs(retriever.batch(QUERIES)) == _docs(want)
    assert _docs(await retriever.abatch(QUERIES)) == _docs(want)
    inputs = [r.body["input"] for r in fake_server.api_requests()[before:]]
    assert len(inputs) == 2 * requests
    assert sorted(text for batch in inputs for text in batch) == sorted(
        [f"about {q}" for q in QUERIES] * 2
    )
    await client.aclose()


class TaggingRetriever(TiDBVectorStoreRetriever):
    """Overrides ``invoke`` / ``ainvoke`` (post-processing): ``Runnable.batch`` calls them per
    query, so the batched path must step aside and let them run."""

    def invoke(self, input: str, config: Any = None, **kwargs: Any) -> list[Document]:
        return [_tagged(d) for d in super().invoke(input, config, **kwargs)]

    async def ainvoke(self, input: str, config: Any = None, **kwargs: Any) -> list[Document]:
        return [_tagged(d) for d in await super().ainvoke(input, config, **kwargs)]


def _tagged(doc: Document) -> Document:
    return Document(id=doc.id, page_content=doc.page_content, metadata={**doc.metadata, "t": 1})


@pytest.mark.parametrize("search_type", ["similarity", "similarity_score_threshold"])
async def test_overridden_invoke_runs_for_every_query(
    make_store: MakeStore, jina: JinaEmbeddings, search_type: str
) -> None:
    store = make_store(jina)
    store.add_texts(TEXTS, METAS, ids=[f"d{i}" for i in range(len(TEXTS))])
    options: dict[str, Any] = {"k": 3}
    if search_type == "similarity_score_threshold":
        options["score_threshold"] = 0.0
    retriever = TaggingRetriever(vectorstore=store, search_type=search_type, search_kwargs=options)
    want = [retriever.invoke(q) for q in QUERIES]
    assert all(docs and all(d.metadata["t"] == 1 for d in docs) for docs in want)
    assert _docs(retriever.batch(QUERIES)) == _docs(want)
    assert _docs(await retriever.abatch(QUERIES)) == _docs(want)


@pytest.mark.parametrize("search_type", ["similarity", "similarity_score_threshold"])
async def test_one_too_long_query_fails_only_its_own_run(
    make_store: MakeStore, fake_server: FakeEmbeddingServer, search_type: str
) -> None:
    """With ``truncate=False`` the provider refuses the batch for one over-long query;
    ``invoke`` would fail that query alone, so the batch answers query by query."""
    embeddings = JinaEmbeddings(
        api_key=API_KEY, base_url=fake_server.url, dimensions=DIMENSION, truncate=False
    )
    store = make_store(embeddings)
    store.add_texts(TEXTS, METAS, ids=[f"d{i}" for i in range(len(TEXTS))])
    options: dict[str, Any] = {"k": 3}
    if search_type == "similarity_score_threshold":
        options["score_threshold"] = 0.0
    retriever = store.as_retriever(search_type=search_type, search_kwargs=options)
    qs = [QUERIES[0], "tidb " * 9000, QUERIES[1]]
    per_query, batched, abatched = Recorder(), Recorder(), Recorder()
    want = [_outcome(lambda q=q: retriever.invoke(q, {"callbacks": [per_query]})) for q in qs]
    assert [type(a).__name__ for a in want] == ["list", "InputTooLongError", "list"]
    assert want[0] and want[2]
    got = retriever.batch(qs, {"callbacks": [batched]}, return_exceptions=True)
    agot = await retriever.abatch(qs, {"callbacks": [abatched]}, return_exceptions=True)
    assert _docs(got) == _docs(want) == _docs(agot)
    assert _by_query(batched) == _by_query(per_query) == _by_query(abatched)
    with pytest.raises(InputTooLongError):
        retriever.batch(qs)
    await embeddings.aclose()


async def test_a_query_with_a_lone_surrogate_fails_alone(
    make_store: MakeStore, jina: JinaEmbeddings
) -> None:
    store = make_store(jina)
    store.add_texts(TEXTS, METAS, ids=[f"d{i}" for i in range(len(TEXTS))])
    retriever = store.as_retriever(search_kwargs={"k": 3})
    qs = [QUERIES[0], "bad \ud800 query", QUERIES[1]]
    want = [_outcome(lambda q=q: retriever.invoke(q)) for q in qs]
    assert [type(a).__name__ for a in want] == ["list", "InvalidInputError", "list"]
    assert _docs(retriever.batch(qs, return_exceptions=True)) == _docs(want)
    assert _docs(await retriever.abatch(qs, return_exceptions=True)) == _docs(want)
