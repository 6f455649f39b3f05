"""A LlamaIndex agent tool backed by TiDB: ``QueryEngineTool`` over a TiDB index.

Builds a ``VectorStoreIndex`` on ``llama_index_tidb_jina.TiDBVectorStore`` and wraps its
query engine in a ``QueryEngineTool``, the object you hand to a LlamaIndex agent
(``FunctionAgent(tools=[tool], llm=...)`` or ``ReActAgent``). To stay offline the query
engine's LLM is ``MockLLM`` (it answers with the prompt it received, which shows the
retrieved context), and the tool is called directly, the way an agent calls it. It prints
the tool's name and the OpenAI-style schema an agent's LLM sees, then the call and its
output.

Env vars read: ``JINA_API_KEY`` / ``JINAAI_API_KEY`` (Jina embeddings) or ``HF_TOKEN``
(Hugging Face); without either, the offline ``LexicalEmbedder`` (first line says so).
``TIDB_DATABASE_URL``: TiDB instead of the embedded engine.
"""

from __future__ import annotations

import json

from _common import (
    choose_embedder,
    database,
    describe_database,
    llama_embed_model,
    load_corpus,
    split_record,
)
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.tools import QueryEngineTool

from llama_index_tidb_jina import TiDBVectorStore

QUESTION = "Does TiDB vector search work without TiFlash?"


def main() -> None:
    choice = choose_embedder()
    print(choice.note)
    with database(filename="llamaindex_agent.db") as url:
        print(describe_database(url))
        embed_model = llama_embed_model(choice)
        documents = [
            Document(text=text, id_=doc_id, metadata=metadata)
            for doc_id, text, metadata in map(split_record, load_corpus())
        ]
        store = TiDBVectorStore(
            connection_string=url, table_name="llamaindex_agent_docs", drop_existing_table=True
        )
        index = VectorStoreIndex.from_documents(
            documents,
            storage_context=StorageContext.from_defaults(vector_store=store),
            embed_model=embed_model,
        )
        tool = QueryEngineTool.from_defaults(
            index.as_query_engine(llm=MockLLM(), embed_model=embed_model, similarity_top_k=2),
            name="tidb_knowledge_base",
            description="Answers questions about TiDB, vector search, embeddings and RAG "
            "from the team's knowledge base.",
        )
        print(f"Tool: {tool.metadata.name}")
        print("Schema the LLM sees:", json.dumps(tool.metadata.to_openai_tool()["function"]))
        print(f"\nAgent calls: {tool.metadata.name}(input={QUESTION!r})")
        output = tool.call(input=QUESTION)
        print("Tool output (MockLLM echoes its prompt, i.e. the retrieved context):")
        for line in output.content.strip().splitlines():
            print(f"  | {line}".rstrip())
        print(
            "Sources:", ", ".join(n.node.ref_doc_id or "?" for n in output.raw_output.source_nodes)
        )
        store.clear()


if __name__ == "__main__":
    main()
