"""A LlamaIndex query engine on TiDB.

Loads the bundled corpus as LlamaIndex ``Document``s into a ``VectorStoreIndex`` backed by
``llama_index_tidb_jina.TiDBVectorStore``, then asks a question through
``index.as_query_engine``. The LLM is LlamaIndex's ``MockLLM``, which answers with the
prompt it was given, so you see exactly the context the engine retrieved; pass any real
LLM (``llm=OpenAI(...)``) instead. It also runs a filtered query (``MetadataFilters``).
It prints the sources with their scores and the response.

Env vars read: ``JINA_API_KEY`` / ``JINAAI_API_KEY`` (Jina embeddings) or ``HF_TOKEN``
(Hugging Face); without either, the offline ``LexicalEmbedder`` (first line says so).
``TIDB_DATABASE_URL``: TiDB instead of the embedded engine.
"""

from __future__ import annotations

from typing import Any

from _common import (
    choose_embedder,
    database,
    describe_database,
    llama_embed_model,
    load_corpus,
    shorten,
    split_record,
)
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.vector_stores import MetadataFilter, MetadataFilters

from llama_index_tidb_jina import TiDBVectorStore

QUESTION = "What does a TiDB vector index need?"


def build_index(url: str, embed_model: Any) -> VectorStoreIndex:
    """A fresh TiDB-backed index of the bundled corpus (one node per record)."""
    documents = []
    for record in load_corpus():
        doc_id, text, metadata = split_record(record)
        documents.append(Document(text=text, id_=doc_id, metadata=metadata))
    store = TiDBVectorStore(
        connection_string=url, table_name="llamaindex_docs", drop_existing_table=True
    )
    return VectorStoreIndex.from_documents(
        documents,
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=embed_model,
    )


def show_sources(response: Any) -> None:
    """Print each source node's score, record id and text."""
    for node in response.source_nodes:
        print(f"  {node.score:.3f}  {node.node.ref_doc_id:18s} {shorten(node.get_content(), 60)}")


def main() -> None:
    choice = choose_embedder()
    print(choice.note)
    with database(filename="llamaindex.db") as url:
        print(describe_database(url))
        embed_model = llama_embed_model(choice)
        index = build_index(url, embed_model)
        engine = index.as_query_engine(llm=MockLLM(), embed_model=embed_model, similarity_top_k=2)
        response = engine.query(QUESTION)
        print(f"\nQuestion: {QUESTION}\nSources:")
        show_sources(response)
        print("Response (MockLLM echoes the prompt it received):")
        print("\n".join(f"  {line}".rstrip() for line in str(response).strip().splitlines()))

        travel = MetadataFilters(filters=[MetadataFilter(key="topic", value="travel")])
        filtered = index.as_query_engine(
            llm=MockLLM(), embed_model=embed_model, similarity_top_k=2, filters=travel
        ).query("Where can I see temples?")
        print('\nFiltered query (topic = "travel"): Where can I see temples?')
        show_sources(filtered)
        index.vector_store.clear()


if __name__ == "__main__":
    main()
