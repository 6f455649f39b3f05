"""The snapshot file through the LangChain store (``vector_table=``, its pass-through).

The LlamaIndex store builds its own ``VectorTable`` and has no pass-through for table
options, so it cannot use the file (left as it is; see the CHANGELOG)."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_core")

from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_tidb_jina import TiDBVectorStore
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
