"""Compile a parsed filter tree into a SQLAlchemy Core WHERE expression (TiDB, SQLite).

The language and the tree are documented in :mod:`tidb_jina.store._filter_tree`; this
module only turns a :class:`~tidb_jina.store._filter_tree.Filter` into SQL and never
parses.

Negations (``Not`` nodes: ``$ne``, ``$nin``, ``$not``, ``$nor``, ``$exists: false``,
``$empty: false``) are ``NOT COALESCE(expr, FALSE)``: a bare SQL ``NOT`` of a NULL
comparison is NULL, which would silently drop the records that lack the key.

Every value and every key/path is a bound parameter. The two engines address keys
differently:

* TiDB/MySQL: ``JSON_EXTRACT(meta, :path)`` with ``json_path(key)``, ``JSON_TYPE`` for the
  type guard, JSON-to-JSON comparison against ``CAST(:json AS JSON)`` (binary for strings,
  numeric across INTEGER/DOUBLE) and ``MEMBER OF`` for arrays.
* SQLite: a correlated ``json_each(meta)`` row selected by ``key = :key``. SQLite's JSON
  paths compare the raw, still-escaped key text, so ``$."q\\"x"`` or a key stored as
  ``\\u00fc`` cannot be addressed by path at all; ``json_each`` compares decoded keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from tidb_jina.store._filter_tree import (
    And,
    Filter,
    Node,
    Not,
    Pred,
    check_metadata_key,
    is_number,
)

__all__ = ["compile_filter", "json_path"]

_LIKE_ESCAPE = "\\"


def json_path(key: str) -> str:
    """The MySQL/TiDB JSON path ``$."<key>"`` addressing the literal top-level ``key``."""
    # A JSON string literal is exactly the quoted member syntax of MySQL paths: it
    # escapes '"', '\\' and control characters.
    return "$." + json.dumps(check_metadata_key(key), ensure_ascii=False)


# ------------------------------------------------------------------ SQL constructs


class _CastJSON(sa.sql.expression.ColumnElement[Any]):
    """``CAST(<bound JSON text> AS JSON)`` (SQLAlchemy skips CAST to JSON on MySQL)."""

    # The traversal list puts the parameter into the statement cache key; without it a
    # cached statement would be re-executed with the first call's value.
    _traverse_internals = [("param", InternalTraversal.dp_clauseelement)]  # noqa: RUF012
    inherit_cache = True

    def __init__(self, value: Any) -> None:
        self.param = sa.bindparam(None, json.dumps(value, ensure_ascii=False), sa.String)


@compiles(_CastJSON)
def _compile_cast_json(element: _CastJSON, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.param, **kw)} AS JSON)"


class _MemberOf(sa.sql.expression.ColumnElement[Any]):
    """MySQL/TiDB ``<json value> MEMBER OF (<json array>)``: exact element equality."""

    _traverse_internals = [  # noqa: RUF012 (SQLAlchemy's own declaration style)
        ("value", InternalTraversal.dp_clauseelement),
        ("array", InternalTraversal.dp_clauseelement),
    ]
    inherit_cache = True
    # NullType: a Boolean type would make SQLAlchemy append "= 1" inside AND / OR.
    type = sa.types.NullType()

    def __init__(self, value: sa.ColumnElement[Any], array: sa.ColumnElement[Any]) -> None:
        self.value = value
        self.array = array


@compiles(_MemberOf)
def _compile_member_of(element: _MemberOf, compiler: SQLCompiler, **kw: Any) -> str:
    value = compiler.process(element.value, **kw)
    return f"{value} MEMBER OF ({compiler.process(element.array, **kw)})"


def _const(name: str) -> sa.ColumnElement[Any]:
    # Fixed JSON type names and literals written by this module, never user input,
    # rendered inline so the SQL reads like the documentation.
    assert name.replace(" ", "").isalpha() or name in ("", "[]", "0"), name
    return sa.literal_column(name if name == "0" else f"'{name}'")


def _type_in(type_expr: sa.ColumnElement[Any], names: tuple[str, ...]) -> sa.ColumnElement[bool]:
    if len(names) == 1:
        return type_expr == _const(names[0])
    return type_expr.in_([_const(n) for n in names])


def _negate(expr: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    # NullType keeps SQLAlchemy from rewriting NOT <bool> into "= 0" / "= false".
    return sa.not_(sa.func.coalesce(expr, sa.false(), type_=sa.types.NullType()))


# ------------------------------------------------------------------ dialect backends


def _exists_in(source: sa.FromClause, condition: sa.ColumnElement[bool]) -> sa.Exists:
    return sa.exists().select_from(source).where(condition)


class _SQLiteField:
    """One key, read through a correlated ``json_each(meta)`` row (decoded key match)."""

    TYPES: ClassVar[dict[str, tuple[str, ...]]] = {
        "number": ("integer", "real"),
        "string": ("text",),
        "true": ("true",),
        "false": ("false",),
        "null": ("null",),
        "array": ("array",),
    }

    def __init__(self, meta: sa.ColumnElement[Any], key: str) -> None:
        self.meta = meta
        self.key = key

    def where(self, condition: Callable[[Any], sa.ColumnElement[bool]]) -> sa.ColumnElement[bool]:
        """EXISTS a ``json_each`` row for this key whose type/value satisfy ``condition``."""
        row = sa.func.json_each(self.meta).table_valued("key", "value", "type").alias("kv")
        key_matches = row.c.key == sa.bindparam(None, self.key)
        return _exists_in(row, sa.and_(key_matches, condition(row.c)))

    def is_type(self, row: Any, kind: str) -> sa.ColumnElement[bool]:
        return _type_in(row.type, self.TYPES[kind])

    def equals(self, row: Any, value: Any) -> sa.ColumnElement[bool]:
        if value is None:
            return self.is_type(row, "null")
        if isinstance(value, bool):
            return self.is_type(row, "true" if value else "false")
        kind = "number" if is_number(value) else "string"
        return sa.and_(self.is_type(row, kind), row.value == sa.bindparam(None, value))

    def pred(self, op: str, value: Any) -> sa.ColumnElement[bool]:
        if op == "eq" and value is None:
            # Missing or null: no row for the key with a non-null type.
            return ~self.where(lambda r: r.type != _const("null"))
        if op == "eq":
            return self.where(lambda r: self.equals(r, value))
        if op in _COMPARATORS:
            kind = "number" if is_number(value) else "string"
            compare = _COMPARATORS[op]
            return self.where(
                lambda r: sa.and_(
                    self.is_type(r, kind), compare(r.value, sa.bindparam(None, value))
                )
            )
        if op == "exists":
            return self.where(lambda r: sa.true())
        if op in ("like", "ilike"):
            return self.where(
                lambda r: sa.and_(self.is_type(r, "string"), _like(r.value, value, op))
            )
        if op == "empty":
            return ~self.where(lambda r: sa.not_(self.empty(r)))
        return self.where(lambda r: self.array_pred(r, op, value))

    def empty(self, row: Any) -> sa.ColumnElement[bool]:
        return sa.or_(
            self.is_type(row, "null"),
            sa.and_(self.is_type(row, "string"), row.value == _const("")),
            sa.and_(self.is_type(row, "array"), row.value == _const("[]")),
        )

    def array_pred(self, row: Any, op: str, values: tuple[Any, ...]) -> sa.ColumnElement[bool]:
        is_array = self.is_type(row, "array")
        if op == "all":
            return sa.and_(is_array, *(self.has_element(row, [v]) for v in values))
        return sa.and_(is_array, self.has_element(row, values)) if values else sa.false()

    def has_element(self, row: Any, values: Sequence[Any]) -> sa.ColumnElement[bool]:
        # CASE keeps json_each from parsing a non-array value (a plain string is not JSON).
        array = sa.case((self.is_type(row, "array"), row.value), else_=_const("[]"))
        element = sa.func.json_each(array).table_valued("value", "type").alias("el")
        return _exists_in(element, sa.or_(*(self.equals(element.c, v) for v in values)))


class _MySQLField:
    """One key, read with ``JSON_EXTRACT(meta, :path)`` (TiDB: only documented functions)."""

    TYPES: ClassVar[dict[str, tuple[str, ...]]] = {
        "number": ("INTEGER", "UNSIGNED INTEGER", "DOUBLE", "DECIMAL"),
        "string": ("STRING",),
        "boolean": ("BOOLEAN",),
        "null": ("NULL",),
        "array": ("ARRAY",),
    }

    def __init__(self, meta: sa.ColumnElement[Any], key: str) -> None:
        self.doc = sa.func.JSON_EXTRACT(meta, sa.bindparam(None, json_path(key), sa.String))
        self.type = sa.func.JSON_TYPE(self.doc)

    def is_type(self, kind: str) -> sa.ColumnElement[bool]:
        return _type_in(self.type, self.TYPES[kind])

    @staticmethod
    def kind(value: Any) -> str:
        if isinstance(value, bool):
            return "boolean"
        return "number" if is_number(value) else "string"

    def pred(self, op: str, value: Any) -> sa.ColumnElement[bool]:
        if op == "eq" and value is None:
            return sa.or_(self.type.is_(None), self.is_type("null"))
        if op == "eq" or op in _COMPARATORS:
            # JSON-to-JSON comparison: numeric across INTEGER/DOUBLE, binary for strings
            # (no PAD SPACE, unlike utf8mb4_bin on the unquoted text).
            compare = _COMPARATORS.get(op, _COMPARATORS["eq"])
            return sa.and_(self.is_type(self.kind(value)), compare(self.doc, _CastJSON(value)))
        if op == "exists":
            return self.type.is_not(None)
        if op in ("like", "ilike"):
            text = sa.collate(sa.func.JSON_UNQUOTE(self.doc), "utf8mb4_bin")
            return sa.and_(self.is_type("string"), _like(text, value, op))
        if op == "empty":
            return sa.or_(
                self.type.is_(None),
                self.is_type("null"),
                sa.and_(self.is_type("string"), self.doc == _CastJSON("")),
                sa.and_(self.is_type("array"), sa.func.JSON_LENGTH(self.doc) == _const("0")),
            )
        return self.array_pred(op, value)

    def array_pred(self, op: str, values: tuple[Any, ...]) -> sa.ColumnElement[bool]:
        members = [_MemberOf(_CastJSON(v), self.doc) for v in values]
        if op == "all":
            return sa.and_(self.is_type("array"), *members)
        return sa.and_(self.is_type("array"), sa.or_(*members)) if members else sa.false()


_COMPARATORS: dict[str, Callable[[Any, Any], sa.ColumnElement[bool]]] = {
    "eq": lambda a, b: a == b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def _like(text: sa.ColumnElement[Any], pattern: str, op: str) -> sa.ColumnElement[bool]:
    param = sa.bindparam(None, pattern, sa.String)
    if op == "ilike":
        # lower() on both sides, in SQL: the engine's own Unicode folding (SQLite's is
        # replaced by a Unicode-aware one in _sqlite.configure_connection).
        return sa.func.lower(text).like(sa.func.lower(param), escape=_LIKE_ESCAPE)
    return text.like(param, escape=_LIKE_ESCAPE)


_BACKENDS: dict[str, type[_SQLiteField] | type[_MySQLField]] = {
    "sqlite": _SQLiteField,
    "mysql": _MySQLField,
}


def _to_sql(
    node: Node,
    meta: sa.ColumnElement[Any],
    dialect_name: str,
    indexed: Mapping[str, sa.ColumnElement[Any]],
) -> sa.ColumnElement[bool]:
    if isinstance(node, Pred):
        expr = _BACKENDS[dialect_name](meta, node.key).pred(node.op, node.value)
        column = indexed.get(node.key)
        if column is not None and node.op == "eq" and isinstance(node.value, str):
            # Same rows (the JSON test implies it); lets the database use the index.
            return sa.and_(column == node.value, expr)
        return expr
    if isinstance(node, Not):
        return _negate(_to_sql(node.item, meta, dialect_name, indexed))
    children = [_to_sql(child, meta, dialect_name, indexed) for child in node.items]
    if isinstance(node, And):
        return sa.and_(*children) if children else sa.true()
    # An empty OR ($in: []) matches nothing, as in MongoDB.
    return sa.or_(*children) if children else sa.false()


def compile_filter(
    filter: Filter | None,
    meta: sa.ColumnElement[Any],
    dialect_name: str,
    indexed: Mapping[str, sa.ColumnElement[Any]] | None = None,
) -> sa.ColumnElement[bool] | None:
    """Compile the parsed ``filter`` into a WHERE expression over the JSON column ``meta``.

    ``filter`` comes from :func:`~tidb_jina.store._filter_tree.parse_filter` (None: no
    condition, returns None). ``dialect_name`` is ``"sqlite"`` or ``"mysql"`` (TiDB).
    ``indexed`` maps metadata keys to indexed columns holding their unquoted value:
    string equality on those keys (``$eq``, ``$in``) also tests the column, so the index
    is used.
    """
    if dialect_name not in _BACKENDS:
        raise ValueError(f"dialect_name must be 'sqlite' or 'mysql', got {dialect_name!r}")
    if filter is None:
        return None
    if not isinstance(filter, Filter):
        raise TypeError(
            f"compile_filter takes a parsed Filter (parse_filter(...)), got {type(filter).__name__}"
        )
    return _to_sql(filter.node, meta, dialect_name, indexed or {})
