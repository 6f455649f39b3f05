"""SQLAlchemy column types: ``VECTOR(D)`` and the strict JSON metadata column.

``VECTOR(D)`` renders as ``VECTOR(D)`` in DDL on both engines (SQLite accepts any type
name, and keeping it lets an existing embedded table report its dimension). Values are
validated before anything is sent: NaN, infinities, non-numbers and wrong lengths raise
``InvalidVectorError`` / ``DimensionMismatchError``. TiDB receives JSON-array text of
float32 values; the embedded engine stores little-endian float32 BLOBs. Results come back
as float32 NumPy arrays.

Comparator methods mirror pgvector's::

    select(t.c.id).order_by(t.c.embedding.cosine_distance(query)).limit(10)
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, UserDefinedType

from tidb_jina._errors import InvalidInputError, SchemaError
from tidb_jina.store import _vector
from tidb_jina.store._metrics import DistanceMetric


class _VectorDDL(UserDefinedType):
    """Renders ``VECTOR(D)`` (or bare ``VECTOR``) in CREATE TABLE."""

    cache_ok = True

    def __init__(self, dimension: int | None) -> None:
        self.dimension = dimension

    def get_col_spec(self, **kw: Any) -> str:
        return "VECTOR" if self.dimension is None else f"VECTOR({self.dimension:d})"


class VECTOR(TypeDecorator):
    """A TiDB ``VECTOR(D)`` column (float32 BLOB on the embedded engine)."""

    impl = sa.LargeBinary
    cache_ok = True

    def __init__(self, dimension: int | None = None) -> None:
        super().__init__()
        self.dimension = None if dimension is None else _vector.check_dimension(dimension)

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        return dialect.type_descriptor(_VectorDDL(self.dimension))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        tidb = dialect.name == "mysql"
        vector = _vector.as_vector(value, self.dimension)
        return _vector.encode_text(vector) if tidb else _vector.encode_blob(vector)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, (bytes, memoryview)) and dialect.name != "mysql":
            return _vector.decode_blob(value)
        return _vector.decode_text(value)

    class comparator_factory(TypeDecorator.Comparator):  # SQLAlchemy names it so
        def _distance(self, metric: DistanceMetric, other: Any) -> sa.ColumnElement[float]:
            if not isinstance(other, sa.ColumnElement):
                other = sa.bindparam(None, other, type_=self.type)
            return getattr(sa.func, metric.sql_function)(self.expr, other, type_=sa.Float)

        def cosine_distance(self, other: Any) -> sa.ColumnElement[float]:
            return self._distance(DistanceMetric.COSINE, other)

        def l2_distance(self, other: Any) -> sa.ColumnElement[float]:
            return self._distance(DistanceMetric.L2, other)

        def negative_inner_product(self, other: Any) -> sa.ColumnElement[float]:
            return self._distance(DistanceMetric.INNER_PRODUCT, other)

        def l1_distance(self, other: Any) -> sa.ColumnElement[float]:
            return self._distance(DistanceMetric.L1, other)

        def distance(self, metric: DistanceMetric | str, other: Any) -> sa.ColumnElement[float]:
            return self._distance(DistanceMetric.parse(metric), other)


class MetadataJSON(TypeDecorator):
    """The ``meta JSON`` column, serialized strictly.

    SQLAlchemy's JSON type would write NaN as a bare ``NaN`` token (invalid JSON that
    TiDB rejects) and fail late on unserializable values; this one raises
    ``InvalidInputError`` before anything is sent and keeps Unicode unescaped.
    """

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        return dialect.type_descriptor(sa.JSON())

    def bind_processor(self, dialect: Dialect) -> Any:
        return self.process_bind_param_fn

    @staticmethod
    def process_bind_param_fn(value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        return dumps_metadata(value)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        return load_metadata


def load_metadata(value: Any, row_id: Any = None) -> Any:
    """The ``meta`` column's value as read (None, a driver's dict, or JSON text).

    orjson is the fast path. A few texts SQLite stores and reads as JSON (so filters
    match them) are refused by orjson: a number beyond float64 (``1e400``), an escaped
    lone surrogate (``"\\ud800"``), and on SQLite 3.42+ the JSON5 ``NaN`` / ``Infinity``.
    Another tool (the ``sqlite3`` module, a peer store) may have written them; those are
    read as Python's ``json`` reads them (``inf``, the surrogate), which is what
    ``json.loads``-based stores such as LangChain's give, except ``NaN``: None, as SQLite
    reads it (a NaN no filter engine compares alike). A text neither reads raises
    ``SchemaError`` naming the row (when known) and how to find and repair such rows."""
    if value is None or isinstance(value, dict):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return _load_metadata_slowly(value, row_id)


# JSON5's constants as SQLite 3.42+ reads them (NaN is null there, so filters treat it as
# missing); NaN as Python's json reads it would be a number no filter engine agrees on
_JSON5_CONSTANTS = {"NaN": None, "Infinity": math.inf, "-Infinity": -math.inf}


def _load_metadata_slowly(value: Any, row_id: Any) -> Any:
    if isinstance(value, (int, float)):  # JSON scalar text the column's affinity made a number
        return value
    try:
        return json.loads(value, parse_constant=_JSON5_CONSTANTS.__getitem__)
    except (TypeError, ValueError) as exc:
        text = value if isinstance(value, str) else repr(value)
        where = "a row" if row_id is None else f"the row with id {row_id!r}"
        raise SchemaError(
            f"{where} holds metadata that is not JSON ({exc}): {text[:60]!r}. Another "
            "tool wrote it; the condition json_valid(meta) = 0 finds such rows in "
            "SQLite: store a JSON object (or NULL) in their meta column"
        ) from exc


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)  # NumPy scalars: np.int64(3) -> 3
    if callable(item) and getattr(value, "shape", None) == ():
        return item()
    tolist = getattr(value, "tolist", None)  # NumPy arrays -> lists
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _check_nested_keys(value: Any, path: str = "metadata") -> None:
    """JSON objects have string keys; json.dumps would turn {1: 'x'} into {"1": "x"}."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(
                    f"{path} has the key {key!r} ({type(key).__name__}); JSON keys must be "
                    "strings: convert it with str() first"
                )
            _check_nested_keys(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_nested_keys(item, f"{path}[{i}]")


def dumps_metadata(value: Any) -> str:
    """Serialize one metadata dict to JSON text, or raise a clear ``InvalidInputError``.

    The standard library is used (not orjson) because orjson silently writes NaN as
    ``null``; here NaN and infinities are an error, like in TiDB's JSON type.
    """
    _check_nested_keys(value)
    try:
        return json.dumps(
            value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_json_default
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"metadata is not valid JSON ({exc}); use str, int, finite float, bool, None, "
            "lists and dicts with string keys"
        ) from exc
