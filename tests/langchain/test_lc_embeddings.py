"""JinaEmbeddings / HuggingFaceEndpointEmbeddings: translation to the core clients."""

from __future__ import annotations

import pytest
from _lc_helpers import API_KEY, E5
from langchain_core.load import dumpd, dumps

import langchain_tidb_jina
from langchain_tidb_jina import HuggingFaceEndpointEmbeddings, JinaEmbeddings
from tidb_jina import AuthenticationError, ConfigurationError, InvalidInputError
from tidb_jina.testing import FakeEmbeddingServer


def test_exported_members_are_pinned() -> None:
    assert langchain_tidb_jina.__all__ == sorted(langchain_tidb_jina.__all__)
    assert langchain_tidb_jina.__all__ == [
        "HuggingFaceEndpointEmbeddings",
        "JinaEmbeddings",
        "JinaRerank",
        "ProviderEmbeddings",
        "TiDBTranslator",
        "TiDBVectorClient",
        "TiDBVectorStore",
        "TiDBVectorStoreRetriever",
    ]


async def test_jina_documents_use_passage_task_and_queries_query_task(
    fake_server: FakeEmbeddingServer,
) -> None:
    emb = JinaEmbeddings(api_key=API_KEY, base_url=fake_server.url, dimensions=32)
    fake_server.reset()
    emb.embed_documents(["TiDB stores vectors"])
    emb.embed_query("what stores vectors?")
    await emb.aembed_documents(["TiDB stores vectors"])
    await emb.aembed_query("what stores vectors?")
    bodies = [r.body for r in fake_server.api_requests("/v1/embeddings")]
    assert [b["task"] for b in bodies] == ["retrieval.passage", "retrieval.query"] * 2
    assert all(b["dimensions"] == 32 and b["model"] == "jina-embeddings-v3" for b in bodies)


def test_jina_options_reach_the_request(fake_server: FakeEmbeddingServer) -> None:
    batched = JinaEmbeddings(
        api_key=API_KEY, base_url=fake_server.url, task="text-matching", batch_size=2
    )
    late = JinaEmbeddings(api_key=API_KEY, base_url=fake_server.url, late_chunking=True)
    fake_server.reset()
    vectors = batched.embed_documents(["a b", "c d", "e f"])
    late.embed_chunked_documents([["chunk one", "chunk two"]])  # one document's chunks
    bodies = [r.body for r in fake_server.api_requests("/v1/embeddings")]
    assert len(vectors) == 3 and all(isinstance(x, float) for x in vectors[0])
    assert sorted((len(b["input"]), b["task"]) for b in bodies[:2]) == [
        (1, "text-matching"),
        (2, "text-matching"),
    ]
    assert bodies[2]["late_chunking"] is True


def test_community_arguments_are_aliases() -> None:
    emb = JinaEmbeddings(jina_api_key="jina_alias", model_name="jina-embeddings-v2-base-en")
    assert emb.model == "jina-embeddings-v2-base-en"
    assert emb.api_key is not None and emb.api_key.get_secret_value() == "jina_alias"
    assert emb.dimension == 768  # known model: no probe call
    hf = HuggingFaceEndpointEmbeddings(repo_id=E5, huggingfacehub_api_token="hf_alias")
    assert hf.model == E5 and hf.dimension == 1024
    assert hf.api_key is not None and hf.api_key.get_secret_value() == "hf_alias"


def test_keys_come_from_either_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JINAAI_API_KEY", "jina_tutorial_key")
    assert JinaEmbeddings().api_key.get_secret_value() == "jina_tutorial_key"  # type: ignore[union-attr]
    monkeypatch.setenv("HUGGINGFACEHUB_API_TOKEN", "hf_old_name")
    hf = HuggingFaceEndpointEmbeddings(model=E5)
    assert hf.api_key.get_secret_value() == "hf_old_name"  # type: ignore[union-attr]


def test_keys_never_leak_into_repr_or_serialization() -> None:
    secret = "jina_very_secret_value"
    for obj in (
        JinaEmbeddings(api_key=secret),
        HuggingFaceEndpointEmbeddings(model=E5, api_key=secret),
    ):
        for text in (repr(obj), str(obj), dumps(obj), str(dumpd(obj)), repr(obj.client)):
            assert secret not in text


def test_hf_router_uses_model_prompts(fake_server: FakeEmbeddingServer) -> None:
    hf = HuggingFaceEndpointEmbeddings(
        model=E5, api_key=API_KEY, base_url=fake_server.router_url(E5)
    )
    fake_server.reset()
    hf.embed_documents(["TiDB"])
    hf.embed_query("TiDB?")
    inputs = [r.body["inputs"] for r in fake_server.api_requests()]
    assert inputs == [["passage: TiDB"], ["query: TiDB?"]]


async def test_hf_accepts_a_tei_url_as_model(fake_server: FakeEmbeddingServer) -> None:
    hf = HuggingFaceEndpointEmbeddings(model=fake_server.url, api_key=API_KEY)
    assert hf.client.mode == "tei"
    fake_server.reset()
    assert len(await hf.aembed_query("TiDB")) == len(hf.embed_documents(["TiDB"])[0])
    assert {r.path for r in fake_server.api_requests()} == {"/embed"}


def test_core_errors_reach_the_caller_unwrapped(fake_server: FakeEmbeddingServer) -> None:
    with pytest.raises(ConfigurationError, match="dimensions"):
        JinaEmbeddings(model="jina-embeddings-v2-base-en", dimensions=64)
    with pytest.raises(ConfigurationError, match="model is required"):
        HuggingFaceEndpointEmbeddings()
    emb = JinaEmbeddings(api_key="wrong", base_url=fake_server.url)
    with pytest.raises(AuthenticationError):
        emb.embed_query("TiDB")
    with pytest.raises(InvalidInputError, match="empty"):
        JinaEmbeddings(api_key=API_KEY, base_url=fake_server.url).embed_documents(["ok", " "])


def test_unknown_arguments_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="did you mean dimensions instead of dimension"):
        JinaEmbeddings(dimension=64)  # the field is ``dimensions``


async def test_provider_embeddings_wrap_any_core_provider() -> None:
    from langchain_tidb_jina import ProviderEmbeddings
    from tidb_jina.testing import LexicalEmbedder, lexical_embedding

    emb = ProviderEmbeddings(provider=LexicalEmbedder(dimension=16))
    assert emb.dimension == 16
    assert emb.embed_documents(["a b"]) == lexical_embedding(["a b"], 16).tolist()
    assert emb.embed_query("a b") == (await emb.aembed_query("a b"))
    assert len(await emb.aembed_documents(["x", "y"])) == 2
    emb.close()
    await emb.aclose()
