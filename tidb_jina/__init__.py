"""tidb-jina: TiDB vector search with Jina AI and Hugging Face embeddings.

The shared core. It imports neither LangChain nor LlamaIndex; the adapters in
``langchain_tidb_jina`` and ``llama_index_tidb_jina`` translate to it.
"""

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

__version__ = "0.1.0.dev0"

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "DatabaseError",
    "DimensionMismatchError",
    "EmbeddingError",
    "InputTooLongError",
    "InsufficientBalanceError",
    "InvalidFilterError",
    "InvalidIdentifierError",
    "InvalidInputError",
    "InvalidRequestError",
    "InvalidVectorError",
    "MissingAPIKeyError",
    "ModelNotFoundError",
    "PermissionDeniedError",
    "ProviderUnavailableError",
    "RateLimitError",
    "RecordTooLargeError",
    "ResponseFormatError",
    "SchemaError",
    "TiDBJinaError",
    "UnsupportedFeatureError",
    "__version__",
]
