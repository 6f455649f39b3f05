"""LangChain integration for tidb-jina (TiDB vector store, Jina / Hugging Face embeddings).

Adapters only: every class here translates LangChain objects to the ``tidb_jina`` core.
"""

from langchain_tidb_jina._embeddings import (
    HuggingFaceEndpointEmbeddings,
    JinaEmbeddings,
    ProviderEmbeddings,
)
from langchain_tidb_jina._rerank import JinaRerank
from langchain_tidb_jina._sql_client import TiDBVectorClient
from langchain_tidb_jina._translator import TiDBTranslator
from langchain_tidb_jina._vectorstores import TiDBVectorStore, TiDBVectorStoreRetriever

__all__ = [
    "HuggingFaceEndpointEmbeddings",
    "JinaEmbeddings",
    "JinaRerank",
    "ProviderEmbeddings",
    "TiDBTranslator",
    "TiDBVectorClient",
    "TiDBVectorStore",
    "TiDBVectorStoreRetriever",
]
