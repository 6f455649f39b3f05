"""LangChain integration for tidb-jina (TiDB vector store, Jina / Hugging Face embeddings).

Adapters only: every class here translates LangChain objects to the ``tidb_jina`` core.
"""

from langchain_tidb_jina._embeddings import (
    HuggingFaceEndpointEmbeddings,
    JinaEmbeddings,
    ProviderEmbeddings,
)
from langchain_tidb_jina._rerank import JinaRerank
from langchain_tidb_jina._vectorstores import TiDBVectorStore, TiDBVectorStoreRetriever

__all__ = [
    "HuggingFaceEndpointEmbeddings",
    "JinaEmbeddings",
    "JinaRerank",
    "ProviderEmbeddings",
    "TiDBVectorStore",
    "TiDBVectorStoreRetriever",
]
