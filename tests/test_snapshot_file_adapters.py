"""The snapshot file through both front-ends: the LangChain store (``vector_table=``, or
its own ``snapshot_file=``) and the LlamaIndex store (``snapshot_file=``)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("langchain_core")

from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_tidb_jina import TiDBVectorStore
from tidb_jina import ConfigurationError
from tidb_jina.store import VectorTable

TEXTS = ["alpha centauri", "beta decay", "gamma rays", "delta wing"]


def test_langchain_store_maps_the_file_on_reopen(tmp_path):
    url = f"sqlite:///{tmp_path / 'lc.db'}"
    embedding = DeterministicFakeEmbedding(size=16)
    table = VectorTable(url, table_name="lc", snapshot_file=True, dimension=16)
    store = TiDBVectorStore(vector_table=table, embedding=embedding)
    store.add_texts(TEXTS, ids=["a", "b", "c", "d"])
    before = [d.page_content for d in store.similarity_search("gamma rays", k=2)]
    table._backend.cache.file.wait()
    table.close()
    again = VectorTable(url, table_name="lc", snapshot_file=True)
    reopened = TiDBVectorStore(vector_table=again, embedding=embedding)
    assert [d.page_content for d in reopened.similarity_search("gamma rays", k=2)] == before
    assert before[0] == "gamma rays"
    assert again._backend.cache.file.used
    again.close()


def test_langchain_store_takes_snapshot_file_itself(tmp_path):
    url = f"sqlite:///{tmp_path / 'lc.db'}"
    embedding = DeterministicFakeEmbedding(size=16)
    store = TiDBVectorStore.from_texts(
        TEXTS, embedding, ids=["a", "b", "c", "d"], connection_string=url, snapshot_file=True
    )
    before = [d.id for d in store.similarity_search("beta decay", k=2)]
    store.vector_table._backend.cache.file.wait()
    store.vector_table.close()
    assert (tmp_path / f"lc.db.{store.vector_table.table_name}.vectors").exists()
    again = TiDBVectorStore(url, embedding=embedding, snapshot_file=True)
    assert [d.id for d in again.similarity_search("beta decay", k=2)] == before
    assert before[0] == "b"
    assert again.vector_table._backend.cache.file.used
    again.vector_table.close()


def test_langchain_store_refuses_snapshot_file_beside_vector_table(tmp_path):
    table = VectorTable(f"sqlite:///{tmp_path / 'lc.db'}", table_name="lc", dimension=16)
    with pytest.raises(ConfigurationError, match=r"VectorTable\(\.\.\.\) instead"):
        TiDBVectorStore(
            vector_table=table, embedding=DeterministicFakeEmbedding(size=16), snapshot_file=True
        )
    table.close()


def test_langchain_store_refuses_snapshot_file_in_memory():
    with pytest.raises(ConfigurationError, match="snapshot_file"):
        TiDBVectorStore(
            "sqlite://", embedding=DeterministicFakeEmbedding(size=16), snapshot_file=True
        )


def test_llama_index_store_maps_the_file_on_reopen(tmp_path):
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import VectorStoreQuery

    from llama_index_tidb_jina import TiDBVectorStore as LlamaStore

    url = f"sqlite:///{tmp_path / 'li.db'}"
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((40, 16)).astype(np.float32)
    nodes = [
        TextNode(id_=f"n{i}", text=f"text {i}", embedding=v.tolist()) for i, v in enumerate(vectors)
    ]
    store = LlamaStore(url, table_name="li", snapshot_file=True)
    store.add(nodes)
    query = VectorStoreQuery(query_embedding=vectors[7].tolist(), similarity_top_k=3)
    before = store.query(query).ids
    store.client._backend.cache.file.wait()
    store.close()
    assert (tmp_path / "li.db.li.vectors").exists()
    again = LlamaStore(url, table_name="li", snapshot_file=True)
    assert again.query(query).ids == before
    assert before is not None and before[0] == "n7"
    assert again.client._backend.cache.file.used
    again.close()


def test_llama_index_store_refuses_snapshot_file_in_memory():
    pytest.importorskip("llama_index.core")
    from llama_index_tidb_jina import TiDBVectorStore as LlamaStore

    with pytest.raises(ConfigurationError, match="snapshot_file"):
        LlamaStore("sqlite://", table_name="li", snapshot_file=True)
