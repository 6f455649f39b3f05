"""A LangChain agent retrieval tool backed by TiDB.

Wraps the store's retriever with ``create_retriever_tool`` (langchain_core.tools) so an
agent's LLM can decide to search the knowledge base. To stay offline, the "LLM" is
``GenericFakeChatModel`` scripted to do what a tool-calling model does: first ask for the
tool with a query, then answer from the tool's result. The loop below is the one any agent
runs (``langchain.agents.create_agent`` or LangGraph's prebuilt agent do the same with a
real model). It prints the tool's name and JSON schema (what the LLM sees), the tool call,
the tool output and the final answer.

Env vars read: ``JINA_API_KEY`` / ``JINAAI_API_KEY`` (Jina embeddings) or ``HF_TOKEN``
(Hugging Face); without either, the offline ``LexicalEmbedder`` (first line says so).
``TIDB_DATABASE_URL``: TiDB instead of the embedded engine.
"""

from __future__ import annotations

import json
from typing import Any

from _common import (
    choose_embedder,
    database,
    describe_database,
    langchain_embeddings,
    load_corpus,
    split_record,
)
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

from langchain_tidb_jina import TiDBVectorStore

try:
    from langchain_core.tools import create_retriever_tool
except ImportError:  # older langchain-core
    from langchain_core.tools.retriever import create_retriever_tool

QUESTION = "Does TiDB vector search work without TiFlash?"
TOOL_QUERY = "TiDB vector index TiFlash"


def scripted_model(tool_name: str) -> GenericFakeChatModel:
    """A fake tool-calling chat model: one tool call, then a final answer."""
    call = {"name": tool_name, "args": {"query": TOOL_QUERY}, "id": "call_1"}
    return GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(content="", tool_calls=[call]),
                AIMessage(
                    content="Yes. Without TiFlash there is no HNSW index, but TiDB vector "
                    "search still works as an exact scan. (scripted answer)"
                ),
            ]
        )
    )


def run_agent(model: Any, tool: Any, question: str) -> str:
    """The agent loop: call the model, run the tools it asks for, repeat until it answers."""
    messages: list[BaseMessage] = [HumanMessage(question)]
    while True:
        reply = model.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            return str(reply.content)
        for call in reply.tool_calls:
            print(f"Tool call: {call['name']}({json.dumps(call['args'])})")
            result = tool.invoke({**call, "type": "tool_call"})  # a ToolMessage
            print("Tool output:")
            for line in str(result.content).splitlines():
                print(f"  | {line}".rstrip())
            messages.append(result)


def main() -> None:
    choice = choose_embedder()
    print(choice.note)
    with database(filename="langchain_agent.db") as url:
        print(describe_database(url))
        ids, texts, metadatas = zip(*(split_record(r) for r in load_corpus()), strict=True)
        store = TiDBVectorStore.from_texts(
            list(texts),
            langchain_embeddings(choice),
            list(metadatas),
            ids=list(ids),
            connection_string=url,
            table_name="langchain_agent_docs",
            drop_existing_table=True,
        )
        tool = create_retriever_tool(
            store.as_retriever(search_kwargs={"k": 2}),
            "search_tidb_knowledge_base",
            "Searches the TiDB / Jina AI knowledge base. Use it for questions about TiDB, "
            "vector search, embeddings or RAG.",
        )
        print(f"Tool: {tool.name}")
        print("Schema the LLM sees:", json.dumps(convert_to_openai_tool(tool)["function"]))
        print(f"\nQuestion: {QUESTION}")
        answer = run_agent(scripted_model(tool.name), tool, QUESTION)
        print(f"Final answer: {answer}")
        store.drop_vectorstore()


if __name__ == "__main__":
    main()
