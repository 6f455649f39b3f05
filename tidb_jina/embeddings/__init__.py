"""Embedding and rerank clients for Jina AI and Hugging Face (sync and async).

``JinaClient`` and ``HuggingFaceClient`` implement ``EmbeddingProvider``: they batch, run
batches concurrently (threads for sync, tasks for async), retry transient failures with
backoff, keep queries and documents apart (task / prompt per side), and map every provider
error to a ``tidb_jina.EmbeddingError`` subclass whose message says how to fix it.

Their options are three small config objects shared by both clients and every adapter:
``RetryPolicy`` (``retry=``), ``BatchLimits`` (``limits=``) and ``Timeouts`` (``timeout=``).

``embed_queries(provider, texts)`` / ``aembed_queries`` embed many queries with any
provider: its own ``embed_queries`` method (one request per batch) when it has a faithful
one, ``embed_query`` per text otherwise.
"""

from tidb_jina.embeddings._base import DEFAULT_TIMEOUT, RETRY_STATUSES
from tidb_jina.embeddings._config import (
    CLIENT_OPTIONS,
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_MAX,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
    BatchLimits,
    ClientOptions,
    RetryPolicy,
    TimeoutLike,
    Timeouts,
)
from tidb_jina.embeddings._huggingface import (
    DEFAULT_HF_BATCH_CHARS,
    DEFAULT_HF_BATCH_SIZE,
    DEFAULT_HF_CONCURRENCY,
    DEFAULT_HF_LIMITS,
    HF_ROUTER_URL,
    HuggingFaceClient,
)
from tidb_jina.embeddings._inputs import validate_texts
from tidb_jina.embeddings._jina import (
    DEFAULT_JINA_BATCH_CHARS,
    DEFAULT_JINA_BATCH_SIZE,
    DEFAULT_JINA_CONCURRENCY,
    DEFAULT_JINA_LIMITS,
    DEFAULT_JINA_MODEL,
    DEFAULT_JINA_RERANK_MODEL,
    JINA_BASE_URL,
    JinaClient,
)
from tidb_jina.embeddings._models import (
    HF_MODELS,
    JINA_MODELS,
    QWEN3_QUERY_TASK,
    RETRIEVAL_QUERY_TASK,
    HuggingFaceModelInfo,
    JinaModelInfo,
    e5_instruct_query_prefix,
    hf_model_info,
    jina_model_info,
    qwen3_query_prefix,
)
from tidb_jina.embeddings._queries import aembed_queries, embed_queries
from tidb_jina.embeddings._types import EmbeddingProvider, RerankResult

__all__ = [
    "CLIENT_OPTIONS",
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_HF_BATCH_CHARS",
    "DEFAULT_HF_BATCH_SIZE",
    "DEFAULT_HF_CONCURRENCY",
    "DEFAULT_HF_LIMITS",
    "DEFAULT_JINA_BATCH_CHARS",
    "DEFAULT_JINA_BATCH_SIZE",
    "DEFAULT_JINA_CONCURRENCY",
    "DEFAULT_JINA_LIMITS",
    "DEFAULT_JINA_MODEL",
    "DEFAULT_JINA_RERANK_MODEL",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MAX_RETRY_AFTER",
    "DEFAULT_TIMEOUT",
    "HF_MODELS",
    "HF_ROUTER_URL",
    "JINA_BASE_URL",
    "JINA_MODELS",
    "QWEN3_QUERY_TASK",
    "RETRIEVAL_QUERY_TASK",
    "RETRY_STATUSES",
    "BatchLimits",
    "ClientOptions",
    "EmbeddingProvider",
    "HuggingFaceClient",
    "HuggingFaceModelInfo",
    "JinaClient",
    "JinaModelInfo",
    "RerankResult",
    "RetryPolicy",
    "TimeoutLike",
    "Timeouts",
    "aembed_queries",
    "e5_instruct_query_prefix",
    "embed_queries",
    "hf_model_info",
    "jina_model_info",
    "qwen3_query_prefix",
    "validate_texts",
]
