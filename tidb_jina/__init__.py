"""tidb-jina: TiDB vector search with Jina AI and Hugging Face embeddings.

The shared core. It imports neither LangChain nor LlamaIndex; the adapters in
``langchain_tidb_jina`` and ``llama_index_tidb_jina`` translate to it.
"""

from tidb_jina._doctor import DoctorReport, doctor
from tidb_jina._errors import (
    AuthenticationError,
    ConfigurationError,
    DatabaseError,
    DimensionMismatchError,
    EmbeddingError,
    InputTooLongError,
    InsufficientBalanceError,
    InvalidFilterError,
    InvalidIdentifierError,
    InvalidInputError,
    InvalidRequestError,
    InvalidVectorError,
    MissingAPIKeyError,
    ModelNotFoundError,
    PermissionDeniedError,
    ProviderUnavailableError,
    RateLimitError,
    RecordTooLargeError,
    ResponseFormatError,
    SchemaError,
    TiDBJinaError,
    UnsupportedFeatureError,
)
from tidb_jina.embeddings import (
    BatchLimits,
    EmbeddingProvider,
    HuggingFaceClient,
    JinaClient,
    RerankResult,
    RetryPolicy,
    Timeouts,
)
from tidb_jina.store import (
    AutoEmbedding,
    DistanceMetric,
    Record,
    SearchResult,
    VectorTable,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "AuthenticationError",
    "AutoEmbedding",
    "BatchLimits",
    "ConfigurationError",
    "DatabaseError",
    "DimensionMismatchError",
    "DistanceMetric",
    "DoctorReport",
    "EmbeddingError",
    "EmbeddingProvider",
    "HuggingFaceClient",
    "InputTooLongError",
    "InsufficientBalanceError",
    "InvalidFilterError",
    "InvalidIdentifierError",
    "InvalidInputError",
    "InvalidRequestError",
    "InvalidVectorError",
    "JinaClient",
    "MissingAPIKeyError",
    "ModelNotFoundError",
    "PermissionDeniedError",
    "ProviderUnavailableError",
    "RateLimitError",
    "Record",
    "RecordTooLargeError",
    "RerankResult",
    "ResponseFormatError",
    "RetryPolicy",
    "SchemaError",
    "SearchResult",
    "TiDBJinaError",
    "Timeouts",
    "UnsupportedFeatureError",
    "VectorTable",
    "__version__",
    "doctor",
]
