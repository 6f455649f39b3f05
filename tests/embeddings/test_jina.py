"""JinaClient against the fake server: payloads per model family, tasks, dimensions, decoding."""

from __future__ import annotations

import numpy as np
import pytest
from _emb_helpers import FAST, KEY

from tidb_jina import ConfigurationError, InputTooLongError, ModelNotFoundError
from tidb_jina.embeddings import JINA_MODELS, EmbeddingProvider, JinaClient, jina_model_info
from tidb_jina.testing import FakeEmbeddingServer, lexical_embedding


def make(server: FakeEmbeddingServer, **kwargs) -> JinaClient:
    return JinaClient(api_key=KEY, base_url=server.url, **FAST, **kwargs)


@pytest.mark.parametrize("model", sorted(JINA_MODELS))
def test_every_known_model_sends_only_accepted_fields(server, call, model):
    """The fake rejects (422) any field the model's schema lacks, like the real API."""
    client = make(server, model=model)
    docs = call(client, "embed_documents", ["red apples", "green pears"])
    query = call(client, "embed_query", "apples")
    info = JINA_MODELS[model]
    assert docs.shape == (2, info.dimension)
    assert query.shape == (info.dimension,)
    assert docs.dtype == np.float32 and query.dtype == np.float32
    assert client.dimension == info.dimension
    doc_body, query_body = (r.body for r in server.api_requests())
    assert ("normalized" in doc_body) == info.accepts_normalized
    assert "dimensions" not in doc_body and "late_chunking" not in doc_body
    assert doc_body.get("task") == info.passage_task
    assert query_body.get("task") == info.query_task
    assert doc_body["truncate"] is True and doc_body["embedding_type"] == "float"
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "model", ["jina-embeddings-v3", "jina-embeddings-v4", "jina-embeddings-v5-text-small"]
)
def test_task_split_documents_passage_queries_query(server, call, model):
    client = make(server, model=model)
    call(client, "embed_documents", ["a document"])
    call(client, "embed_query", "a question")
    tasks = [r.body["task"] for r in server.api_requests()]
    assert tasks == ["retrieval.passage", "retrieval.query"]


def test_explicit_tasks_override_the_split(server, call):
    client = make(server, task="text-matching")
    call(client, "embed_documents", ["x y"])
    call(client, "embed_query", "x")
    assert [r.body["task"] for r in server.api_requests()] == ["text-matching"] * 2
    server.reset()
    client = make(server, query_task="classification", passage_task="separation")
    call(client, "embed_documents", ["x y"])
    call(client, "embed_query", "x")
    assert [r.body["task"] for r in server.api_requests()] == ["separation", "classification"]


def test_clip_v2_sends_task_for_queries_only(server):
    client = make(server, model="jina-clip-v2")
    client.embed_documents(["a photo of a cat"])
    client.embed_query("cat")
    doc, query = server.api_requests()
    assert "task" not in doc.body and query.body["task"] == "retrieval.query"


def test_code_models_use_nl2code_tasks(server):
    client = make(server, model="jina-code-embeddings-0.5b")
    client.embed_documents(["def f(): pass"])
    client.embed_query("a function")
    doc, query = server.api_requests()
    assert (doc.body["task"], query.body["task"]) == ("nl2code.passage", "nl2code.query")


def test_dimensions_sent_and_known_before_any_call(server, call):
    client = make(server, model="jina-embeddings-v4", dimensions=128)
    assert client.dimension == 128
    vectors = call(client, "embed_documents", ["alpha beta"])
    assert vectors.shape == (1, 128)
    assert server.api_requests()[0].body["dimensions"] == 128


@pytest.mark.parametrize(
    ("model", "kwargs", "needle"),
    [
        ("jina-embeddings-v3", {"dimensions": 2048}, "between 1 and 1024"),
        ("jina-embeddings-v4", {"dimensions": 0}, "between 1 and 2048"),
        ("jina-embeddings-v2-base-en", {"dimensions": 256}, "does not accept dimensions"),
        ("jina-embeddings-v5-text-small", {"late_chunking": True}, "late_chunking"),
        ("jina-embeddings-v2-base-en", {"task": "retrieval.query"}, "does not accept a task"),
        ("jina-embeddings-v3", {"task": "code.query"}, "retrieval.query"),
        ("jina-embeddings-v3", {"embedding_type": "binary"}, "float"),
    ],
)
def test_invalid_options_fail_in_the_constructor_without_io(model, kwargs, needle):
    with pytest.raises(ConfigurationError, match=needle):
        JinaClient(model=model, api_key=KEY, base_url="http://127.0.0.1:9", **kwargs)


def test_base64_is_decoded_as_little_endian_float32(server, call):
    texts = ["one fish", "two fish", "red fish blue fish"]
    as_float = call(make(server), "embed_documents", texts)
    as_b64 = call(make(server, embedding_type="base64"), "embed_documents", texts)
    assert server.api_requests()[-1].body["embedding_type"] == "base64"
    np.testing.assert_array_equal(as_float, as_b64)
    np.testing.assert_allclose(as_b64, lexical_embedding(texts, 1024), atol=1e-6)


def test_v4_is_normalized_client_side_because_it_has_no_normalized_field(server):
    vectors = make(server, model="jina-embeddings-v4").embed_documents(["a b c", "d"])
    assert "normalized" not in server.api_requests()[0].body
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_normalized_false_is_sent_explicitly(server):
    vectors = make(server, normalized=False).embed_documents(["a b c"])
    assert server.api_requests()[0].body["normalized"] is False
    assert np.linalg.norm(vectors[0]) == pytest.approx(3.0, rel=1e-5)


def test_late_chunking_sends_one_documents_chunks_in_one_request(server, call):
    client = make(server, late_chunking=True, max_batch_size=2)
    chunks = [f"chunk {i} of the report" for i in range(5)]
    vectors = call(client, "embed_documents", chunks)
    assert vectors.shape == (5, 1024)
    (request,) = server.api_requests()
    assert request.body["late_chunking"] is True and len(request.body["input"]) == 5
    call(client, "embed_query", "report")
    assert "late_chunking" not in server.api_requests()[-1].body


def test_embed_chunked_documents_one_request_per_document(server, call):
    client = make(server, late_chunking=True)
    docs = [["a1 x", "a2 x"], ["b1 y"], ["c1 z", "c2 z", "c3 z"]]
    result = call(client, "embed_chunked_documents", docs)
    assert [m.shape for m in result] == [(2, 1024), (1, 1024), (3, 1024)]
    sent = sorted(len(r.body["input"]) for r in server.api_requests())
    assert sent == [1, 2, 3]
    with pytest.raises(ConfigurationError, match="late_chunking=True"):
        make(server).embed_chunked_documents(docs)


def test_unknown_model_learns_dimension_from_first_response(call):
    with FakeEmbeddingServer(api_key=KEY, extra_models={"acme-embed-7": 48}) as server:
        client = make(server, model="acme-embed-7")
        assert client.dimension is None
        vectors = call(client, "embed_documents", ["hello"])
        assert vectors.shape == (1, 48) and client.dimension == 48
        body = server.api_requests()[0].body
        assert set(body) == {"model", "input", "embedding_type", "truncate"}
        assert call(client, "embed_documents", []).shape == (0, 48)


def test_unknown_name_of_a_known_family_follows_that_family():
    info = jina_model_info("jina-embeddings-v3-preview")
    assert info.family == "v3" and info.dimension is None and info.max_dimensions == 1024


def test_unknown_model_is_model_not_found(server, call):
    client = make(server, model="jina-embeddings-v99")
    with pytest.raises(ModelNotFoundError, match="JINA_MODELS"):
        call(client, "embed_documents", ["x"])
    assert len(server.api_requests()) == 1


def test_empty_list_makes_no_request(server, call):
    assert call(make(server), "embed_documents", []).shape == (0, 1024)
    assert server.requests == []


def test_generator_input_is_embedded(server):
    vectors = make(server).embed_documents(f"text {i}" for i in range(3))
    assert vectors.shape == (3, 1024)


def test_client_is_an_embedding_provider():
    assert isinstance(JinaClient(api_key=KEY), EmbeddingProvider)


def test_lexical_vectors_rank_by_shared_words(server, call):
    client = make(server)
    docs = ["tidb is a distributed sql database", "cats sleep all day", "jina makes embeddings"]
    doc_vecs = call(client, "embed_documents", docs)
    query = call(client, "embed_query", "which sql database is distributed")
    assert int(np.argmax(doc_vecs @ query)) == 0


def test_too_long_input_without_truncation_is_input_too_long(call):
    with FakeEmbeddingServer(api_key=KEY, max_input_tokens=3) as server:
        long_text = "one two three four five"
        with pytest.raises(InputTooLongError, match="truncate=True"):
            call(make(server, truncate=False), "embed_documents", [long_text])
        assert call(make(server), "embed_documents", [long_text]).shape == (1, 1024)
        assert [r.status for r in server.api_requests()] == [400, 200]
