"""Issue 17.8: the e5-instruct family's query instruction, and one table of conventions.

``HF_MODELS`` / ``hf_model_info`` is the only source of prefixes: every model in it sends
exactly its table entry's prefixes, on the wire, through the core client and both adapters.
"""

from __future__ import annotations

from typing import Any

import pytest

from tidb_jina.embeddings import (
    HF_MODELS,
    RETRIEVAL_QUERY_TASK,
    HuggingFaceClient,
    e5_instruct_query_prefix,
    hf_model_info,
)
from tidb_jina.testing import FakeEmbeddingServer

E5_INSTRUCT = "intfloat/multilingual-e5-large-instruct"


@pytest.fixture
def router() -> Any:
    with FakeEmbeddingServer() as server:
        yield server


def _inputs(server: FakeEmbeddingServer) -> list[list[str]]:
    return [r.body["inputs"] for r in server.api_requests()]


def test_e5_instruct_queries_get_the_instruction_and_documents_nothing(
    router: FakeEmbeddingServer, call: Any
) -> None:
    client = HuggingFaceClient(model=E5_INSTRUCT, router_url=router.url, api_key="hf_x")
    call(client, "embed_query", "how do vector indexes work")
    call(client, "embed_documents", ["TiDB builds HNSW indexes"])
    query, docs = _inputs(router)
    assert query == [f"Instruct: {RETRIEVAL_QUERY_TASK}\nQuery: how do vector indexes work"]
    assert docs == ["TiDB builds HNSW indexes"]
    assert hf_model_info(E5_INSTRUCT).convention == "e5-instruct"


def test_unlisted_e5_instruct_models_follow_the_family() -> None:
    info = hf_model_info("intfloat/e5-mistral-7b-instruct")
    assert info.query_prefix == e5_instruct_query_prefix() and info.passage_prefix == ""
    plain = hf_model_info("intfloat/e5-base-v2")
    assert (plain.query_prefix, plain.passage_prefix) == ("query: ", "passage: ")
    assert e5_instruct_query_prefix("Find code") == "Instruct: Find code\nQuery: "


@pytest.mark.parametrize("model", sorted(HF_MODELS))
def test_every_table_entry_is_what_goes_on_the_wire(
    router: FakeEmbeddingServer, model: str
) -> None:
    from langchain_tidb_jina import HuggingFaceEndpointEmbeddings
    from llama_index_tidb_jina import HuggingFaceInferenceAPIEmbedding

    info = HF_MODELS[model]
    assert info.convention in {"none", "e5", "e5-instruct", "qwen3"}
    assert bool(info.query_prefix or info.passage_prefix) is (info.convention != "none")
    core = HuggingFaceClient(model=model, router_url=router.url, api_key="hf_x")
    lc = HuggingFaceEndpointEmbeddings(
        model=model, base_url=router.router_url(model), api_key="hf_x"
    )
    li = HuggingFaceInferenceAPIEmbedding(model, token="hf_x", router_url=router.url)
    core.embed_query("q")
    core.embed_documents(["d"])
    lc.embed_query("q")
    lc.embed_documents(["d"])
    li.get_query_embedding("q")
    li.get_text_embedding("d")
    expected = [[info.query_prefix + "q"], [info.passage_prefix + "d"]] * 3
    assert _inputs(router) == expected
