"""LlamaIndex integration for tidb-jina: TiDB vector store, Jina / Hugging Face embeddings.

Adapters only: they translate LlamaIndex objects into calls of the ``tidb_jina`` core
(``VectorTable``, ``JinaClient``, ``HuggingFaceClient``) and back.
"""

from llama_index_tidb_jina._embeddings import (
    HuggingFaceInferenceAPIEmbedding,
    JinaEmbedding,
    ProviderEmbedding,
)
from llama_index_tidb_jina._filters import SUPPORTED_OPERATORS, to_core_filter
from llama_index_tidb_jina._rerank import JinaRerank
from llama_index_tidb_jina._vector_store import DEFAULT_VECTOR_TABLE_NAME, TiDBVectorStore

__all__ = [
    "DEFAULT_VECTOR_TABLE_NAME",
    "SUPPORTED_OPERATORS",
    "HuggingFaceInferenceAPIEmbedding",
    "JinaEmbedding",
    "JinaRerank",
    "ProviderEmbedding",
    "TiDBVectorStore",
    "to_core_filter",
]
