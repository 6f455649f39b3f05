"""The exception tree of tidb-jina.

Catch ``TiDBJinaError`` to handle anything this package raises on purpose::

    TiDBJinaError
    ├── ConfigurationError          missing connection string / key, bad option
    │   └── MissingAPIKeyError      no key given and none in the environment
    ├── InvalidInputError (ValueError)
    │   ├── InvalidVectorError      NaN/Inf, not numeric, out of float32 range
    │   ├── DimensionMismatchError  vector length differs from the table's VECTOR(D)
    │   ├── InvalidFilterError      unknown operator or malformed metadata filter
    │   ├── InvalidIdentifierError  unsafe table name or metadata key
    │   └── RecordTooLargeError     one row above TiDB's entry size limit
    ├── SchemaError                 existing table does not fit what was asked
    ├── DatabaseError               the database refused or could not be reached
    │   └── UnsupportedFeatureError the server lacks a feature (e.g. full-text search)
    └── EmbeddingError              an embedding / rerank provider failed
        ├── AuthenticationError     401: bad or missing API key
        ├── InsufficientBalanceError 402, or 403 with an insufficient-balance code
        ├── PermissionDeniedError   403 for any other reason
        ├── ModelNotFoundError      unknown model / model not served (400, 404, 410)
        ├── InvalidRequestError     422 or other 4xx: the request does not fit the model
        │   └── InputTooLongError   an input exceeds the model's token limit
        ├── RateLimitError          429 still returned after every retry
        ├── ProviderUnavailableError 5xx, timeouts, dropped connections after retries
        └── ResponseFormatError     the provider answered with an unexpected shape

Errors from foreign libraries (SQLAlchemy, httpx) are translated where they enter
and chained with ``raise ... from exc``. Messages say what went wrong and how to fix it,
and never contain API keys or database passwords.
"""

from __future__ import annotations

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
]


class TiDBJinaError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(TiDBJinaError):
    """The package was set up in a way that cannot work (missing URL, bad option)."""


class MissingAPIKeyError(ConfigurationError):
    """No API key was passed and none was found in the environment."""


class InvalidInputError(TiDBJinaError, ValueError):
    """A value passed by the caller is invalid. Nothing was written."""


class InvalidVectorError(InvalidInputError):
    """A vector holds NaN/Inf, non-numbers, or values outside the float32 range."""


class DimensionMismatchError(InvalidInputError):
    """A vector's length differs from the dimension of the table or model."""


class InvalidFilterError(InvalidInputError):
    """A metadata filter uses an unknown operator or is malformed."""


class InvalidIdentifierError(InvalidInputError):
    """A table name or metadata key cannot be used safely."""


class RecordTooLargeError(InvalidInputError):
    """One record is larger than the database accepts for a single row."""


class SchemaError(TiDBJinaError):
    """An existing table does not have the shape this package needs."""


class DatabaseError(TiDBJinaError):
    """The database refused a statement or could not be reached."""


class UnsupportedFeatureError(DatabaseError):
    """The connected server does not support a feature that was asked for."""


class EmbeddingError(TiDBJinaError):
    """An embedding or rerank provider failed.

    ``status_code`` is the HTTP status when there was one, ``code`` the provider's
    machine-readable error code when it sent one.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code


class AuthenticationError(EmbeddingError):
    """The provider rejected the API key (HTTP 401)."""


class InsufficientBalanceError(EmbeddingError):
    """The account is out of credits (HTTP 402, or 403 AUTHZ_INSUFFICIENT_BALANCE)."""


class PermissionDeniedError(EmbeddingError):
    """The key is valid but not allowed to do this (HTTP 403)."""


class ModelNotFoundError(EmbeddingError):
    """The model is unknown to the provider or not served there."""


class InvalidRequestError(EmbeddingError):
    """The provider rejected the request as invalid for this model (HTTP 422 / 4xx)."""


class InputTooLongError(InvalidRequestError):
    """An input is longer than the model accepts and truncation is off."""


class RateLimitError(EmbeddingError):
    """The provider kept answering 429 after every retry."""


class ProviderUnavailableError(EmbeddingError):
    """The provider kept failing (5xx, timeout, dropped connection) after every retry."""


class ResponseFormatError(EmbeddingError):
    """The provider's answer did not have the documented shape."""
