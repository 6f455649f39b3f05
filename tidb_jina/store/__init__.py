"""Vector table core: the VECTOR type, schema, metadata filters, CRUD and search."""

from tidb_jina.store._auto import AutoEmbedding
from tidb_jina.store._engine import ENV_DATABASE_URL, connect
from tidb_jina.store._filter_tree import OPERATORS as FILTER_OPERATORS
from tidb_jina.store._filter_tree import Filter, escape_like, parse_filter, validate_filter
from tidb_jina.store._metrics import DistanceMetric
from tidb_jina.store._results import Record, SearchResult
from tidb_jina.store._table import DEFAULT_TABLE_NAME, AsyncVectorTable, VectorTable
from tidb_jina.store._types import VECTOR

__all__ = [
    "DEFAULT_TABLE_NAME",
    "ENV_DATABASE_URL",
    "FILTER_OPERATORS",
    "VECTOR",
    "AsyncVectorTable",
    "AutoEmbedding",
    "DistanceMetric",
    "Filter",
    "Record",
    "SearchResult",
    "VectorTable",
    "connect",
    "escape_like",
    "parse_filter",
    "validate_filter",
]
