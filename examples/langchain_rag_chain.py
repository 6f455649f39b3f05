"""An LCEL RAG chain on TiDB: retriever | prompt | chat model | parser.

Builds a ``langchain_tidb_jina.TiDBVectorStore`` from the bundled corpus, turns it into a
retriever and runs the usual LangChain Expression Language chain. The chat model is
``FakeListChatModel`` from langchain_core (a canned answer), so the example needs no LLM
key; swap in any real chat model (``ChatOpenAI(...)``, ...) and the chain stays the same.
It prints the question, the retrieved sources, the prompt the model received, and the
answer.

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
    langchain_embeddings,
    load_corpus,
    shorten,
    split_record,
)
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough

from langchain_tidb_jina import TiDBVectorStore

QUESTION = "What does a TiDB vector index need?"
PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "Answer only from this context; say 'I don't know' otherwise.\n\n{context}"),
        ("human", "{question}"),
    ]
)
FAKE_ANSWER = (
    "A TiDB vector index is an HNSW index and needs a TiFlash replica; without TiFlash "
    "the search still works as an exact scan. (canned answer from FakeListChatModel)"
)


def format_docs(docs: list[Document]) -> str:
    """The retrieved documents as numbered context lines."""
    return "\n".join(f"[{i}] {doc.page_content}" for i, doc in enumerate(docs, 1))


def build_store(url: str, embeddings: Any) -> TiDBVectorStore:
    """A fresh store holding the bundled corpus."""
    ids, texts, metadatas = zip(*(split_record(r) for r in load_corpus()), strict=True)
    return TiDBVectorStore.from_texts(
        list(texts),
        embeddings,
        list(metadatas),
        ids=list(ids),
        connection_string=url,
        table_name="langchain_rag_docs",
        drop_existing_table=True,
    )


def show_prompt(prompt_value: Any) -> Any:
    """Print what the chat model receives, and pass it on unchanged."""
    print("Prompt sent to the model:")
    for message in prompt_value.to_messages():
        for line in message.content.splitlines():
            print(f"  {message.type:>6}| {line}".rstrip())
    return prompt_value


def main() -> None:
    choice = choose_embedder()
    print(choice.note)
    with database(filename="langchain_rag.db") as url:
        print(describe_database(url))
        store = build_store(url, langchain_embeddings(choice))
        retriever = store.as_retriever(search_kwargs={"k": 2})
        llm = FakeListChatModel(responses=[FAKE_ANSWER])
        chain = RunnableParallel(docs=retriever, question=RunnablePassthrough()).assign(
            answer=RunnablePassthrough.assign(context=lambda x: format_docs(x["docs"]))
            | PROMPT
            | RunnableLambda(show_prompt)
            | llm
            | StrOutputParser()
        )
        result = chain.invoke(QUESTION)
        print(f"\nQuestion: {QUESTION}")
        print("Sources:")
        for doc in result["docs"]:
            print(f"  - {doc.id}: {shorten(doc.page_content, 70)}")
        print(f"Answer: {result['answer']}")
        store.drop_vectorstore()


if __name__ == "__main__":
    main()
