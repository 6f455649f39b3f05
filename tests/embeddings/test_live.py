"""Live tests against the real Jina and Hugging Face APIs (marker ``network``).

They run only when ``JINA_API_KEY`` (or ``JINAAI_API_KEY``) / ``HF_TOKEN`` (or
``HUGGINGFACEHUB_API_TOKEN``) are set, and are skipped otherwise. Each call is tiny.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from tidb_jina.embeddings import HuggingFaceClient, JinaClient

pytestmark = pytest.mark.network

HAS_JINA = bool(os.environ.get("JINA_API_KEY") or os.environ.get("JINAAI_API_KEY"))
HAS_HF = bool(os.environ.get("HF_TOKEN") or os.environ.get("HUGGINGFACEHUB_API_TOKEN"))
needs_jina = pytest.mark.skipif(not HAS_JINA, reason="JINA_API_KEY is not set")
needs_hf = pytest.mark.skipif(not HAS_HF, reason="HF_TOKEN is not set")

DOCS = ["TiDB is a distributed SQL database.", "Cats sleep most of the day."]


@needs_jina
@pytest.mark.parametrize(
    ("model", "dimensions"),
    [("jina-embeddings-v3", 64), ("jina-embeddings-v4", 128), ("jina-embeddings-v2-base-en", None)],
)
def test_jina_embeddings_live(model, dimensions):
    with JinaClient(model=model, dimensions=dimensions) as client:
        docs = client.embed_documents(DOCS)
        query = client.embed_query("Which database is distributed?")
    assert docs.shape == (2, client.dimension) and query.shape == (client.dimension,)
    assert int(np.argmax(docs @ query)) == 0


@needs_jina
async def test_jina_async_and_base64_live():
    async with JinaClient(dimensions=32, embedding_type="base64") as client:
        docs = await client.aembed_documents(DOCS)
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, rtol=1e-3)


@needs_jina
def test_jina_rerank_live():
    with JinaClient() as client:
        results = client.rerank("distributed database", DOCS, top_n=1)
    assert [r.index for r in results] == [0]


@needs_hf
@pytest.mark.parametrize(
    "model", ["intfloat/multilingual-e5-large", "sentence-transformers/all-MiniLM-L6-v2"]
)
def test_hf_router_live(model):
    with HuggingFaceClient(model=model) as client:
        docs = client.embed_documents(DOCS)
        query = client.embed_query("Which database is distributed?")
    assert docs.shape == (2, client.dimension)
    assert int(np.argmax(docs @ query)) == 0
