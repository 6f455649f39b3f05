"""Migrating from llama-index-vector-stores-tidbvector is an import change.

``test_peer_documentation_flow`` is the usage from that package's documentation (the
"TiDB Vector Store" notebook): constructor, StorageContext, from_documents, query engine,
metadata filter, delete by document id, drop. Only the import, the URL and the embedding
size differ (the notebook uses OpenAI's 1536 dimensions; we embed offline), and the
embed_model / llm are passed explicitly instead of through ``Settings``.

``test_table_created_by_the_peer_is_read`` creates the peer's exact schema (``id
VARCHAR(36)``, ``embedding VECTOR(d) COMMENT 'hnsw(distance=cosine)'``, ``document TEXT``,
``meta JSON``, timestamps), fills it the way the peer writes rows, and reads it with ours.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.schema import MetadataMode, NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters, VectorStoreQuery
from llama_index.core.vector_stores.utils import node_to_metadata_dict

import llama_index_tidb_jina
from llama_index_tidb_jina import ProviderEmbedding, TiDBVectorStore
from tidb_jina import InvalidInputError
from tidb_jina.testing import lexical_embedding

DIM = 64


def _paul_graham_documents() -> list[Document]:
    texts = [
        "What I worked on: before college I wrote short stories and programmed an IBM 1401.",
        "In college I studied philosophy, then switched to AI, and later painted in Florence.",
        "Viaweb was an online store builder; Yahoo bought it in 1998.",
    ]
    return [Document(text=t) for t in texts]


def test_peer_documentation_flow(
    make_store: Callable[..., TiDBVectorStore],
    embed_model: ProviderEmbedding,
    store_url: str,
    table_name: str,
) -> None:
    tidb_connection_url = store_url
    # --- from the notebook, unchanged but for vector_dimension ---
    documents = _paul_graham_documents()
    for document in documents:
        document.metadata = {"book": "paul_graham"}
    tidbvec = make_store(  # TiDBVectorStore(...), made by the fixture so it is dropped
        connection_string=tidb_connection_url,
        table_name=table_name,
        distance_strategy="cosine",
        vector_dimension=DIM,
        drop_existing_table=False,
    )
    storage_context = StorageContext.from_defaults(vector_store=tidbvec)
    index = VectorStoreIndex.from_documents(
        documents, storage_context=storage_context, show_progress=False, embed_model=embed_model
    )
    query_engine = index.as_query_engine(llm=MockLLM())
    response = query_engine.query("What did the author do in college?")
    assert response.source_nodes[0].node.ref_doc_id == documents[1].doc_id

    query_engine = index.as_query_engine(
        filters=MetadataFilters(
            filters=[MetadataFilter(key="book", value="paul_graham", operator="!=")]
        ),
        similarity_top_k=2,
        llm=MockLLM(),
    )
    response = query_engine.query("What did the author learn?")
    assert response.source_nodes == []

    tidbvec.delete(documents[0].doc_id)
    retriever = index.as_retriever(similarity_top_k=3)
    hits = retriever.retrieve("What did the author do before college?")
    assert documents[0].doc_id not in {h.node.ref_doc_id for h in hits} and len(hits) == 2
    tidbvec.drop_vectorstore()
    assert not tidbvec.client.exists()


_PEER_DDL = """
CREATE TABLE {name} (
    id VARCHAR(36) PRIMARY KEY,
    embedding VECTOR({dim}) NOT NULL {comment},
    document TEXT,
    meta JSON,
    create_time DATETIME DEFAULT CURRENT_TIMESTAMP,
    update_time DATETIME DEFAULT CURRENT_TIMESTAMP {on_update}
)
"""


def _create_peer_table(store: TiDBVectorStore, dim: int) -> None:
    tidb = store.client.is_tidb
    ddl = _PEER_DDL.format(
        name=store.table_name,  # a fixture-made identifier, not user input
        dim=dim,
        comment="COMMENT 'hnsw(distance=cosine)'" if tidb else "",
        on_update="ON UPDATE CURRENT_TIMESTAMP" if tidb else "",
    )
    with store.client.engine.begin() as conn:
        conn.execute(sa.text(ddl))


def _peer_node(node_id: str, text: str, doc: str, **metadata: object) -> TextNode:
    node = TextNode(id_=node_id, text=text, metadata=metadata)
    node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc)
    node.embedding = lexical_embedding([text], 8)[0].tolist()
    return node


def test_table_created_by_the_peer_is_read(make_store: Callable[..., TiDBVectorStore]) -> None:
    store = make_store()
    _create_peer_table(store, 8)
    nodes = [
        _peer_node("0b8d8b0e-6a43-4e0b-9d43-2d7e3b3a7a10", "tidb vector search", "d1", k=1),
        _peer_node("7c2f4f5e-1f7e-4a38-8d6a-0c7d6f0b9e21", "pasta recipe", "d2", k=2),
    ]
    # What the peer writes: node id, text, node_to_metadata_dict(node, remove_text=True).
    store.client.upsert(
        [n.embedding for n in nodes],
        ids=[n.node_id for n in nodes],
        documents=[n.get_content(metadata_mode=MetadataMode.NONE) for n in nodes],
        metadatas=[node_to_metadata_dict(n, remove_text=True) for n in nodes],
    )
    # The peer's legacy rows carry plain metadata; they come back as TextNodes.
    store.client.upsert(
        [lexical_embedding(["legacy row"], 8)[0]],
        ids=["legacy-1"],
        documents=["legacy row"],
        metadatas=[{"source": "old"}],
    )

    ours = make_store()
    assert ours.client.dimension == 8
    got = ours.get_nodes([nodes[0].node_id])[0]
    assert got.model_dump(exclude={"embedding"}) == nodes[0].model_dump(exclude={"embedding"})
    query = VectorStoreQuery(query_embedding=nodes[1].embedding, similarity_top_k=1)
    assert ours.query(query).ids == [nodes[1].node_id]
    legacy = ours.get_nodes(["legacy-1"])[0]
    assert legacy.get_content() == "legacy row" and legacy.metadata == {"source": "old"}

    ours.delete("d1")
    assert ours.client.count() == 2
    ours.add([_peer_node("short-id", "new node", "d3")])
    long_id = _peer_node("n" * 40, "too long for VARCHAR(36)", "d3")
    with pytest.raises(InvalidInputError, match="at most 36"):
        ours.add([long_id])


def test_public_namespace_is_sorted_and_complete() -> None:
    exported = llama_index_tidb_jina.__all__
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    for name in exported:
        assert getattr(llama_index_tidb_jina, name) is not None
