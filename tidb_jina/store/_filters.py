"""The one metadata filter language, compiled to SQLAlchemy Core for TiDB and SQLite.

A filter is a MongoDB-style dict. Top-level entries are ANDed; a top-level key is either a
logical operator or a metadata field name. Field names are *literal* top-level keys of the
``meta`` JSON object: ``"a.b"`` is the key ``a.b``, never a nested path.

Logical operators (top level, or inside one another)::

    $and / $or / $nor   non-empty list of filter dicts
    $not                one filter dict

A field's value is a scalar (``$eq``) or a dict of operators, ANDed together:

    ============  ====================================  ===========================
    operator      matches when the stored value ...     key missing
    ============  ====================================  ===========================
    $eq v         equals v, same type (None: is null)   no (``$eq None``: yes)
    $ne v         does not match ``$eq v``              yes (``$ne None``: no)
    $gt/$gte      is a number / string above v          no
    $lt/$lte      is a number / string below v          no
    $between      lo <= value <= hi (both same kind)    no
    $in [..]      matches ``$eq`` of any element        no (``[]`` matches nothing)
    $nin [..]     matches none of them                  yes (``[]`` matches all)
    $exists b     key present (JSON null counts) == b   b is False
    $like p       is a string matching LIKE p           no
    $ilike p      same, case-insensitive                no
    $contains v   is an array with an element == v      no
    $any [..]     is an array sharing >= 1 element      no (``[]`` matches nothing)
    $all [..]     is an array holding every element     no (``[]``: any array)
    $empty b      is missing, null, "" or [] (== b)     b is True
    $not {ops}    does not match the operator dict      yes
    ============  ====================================  ===========================

Types are kept apart: numbers (int/float, never bool) compare numerically (``1 == 1.0``),
strings compare binary (code point order, case-sensitive), booleans only equal booleans
(``True != 1``), and a value of another type never matches (``{"n": {"$gt": 5}}`` does not
match ``{"n": "10"}``). ``$like`` uses SQL LIKE (``%``, ``_``, escape ``\\``).

Negations (``$ne``, ``$nin``, ``$not``, ``$nor``, ``$exists: false``, ``$empty: false``)
are ``NOT COALESCE(expr, FALSE)``: a bare SQL ``NOT`` of a NULL comparison is NULL, which
would silently drop the records that lack the key.

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
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from tidb_jina._errors import InvalidFilterError, InvalidIdentifierError

__all__ = [
    "OPERATORS",
    "check_metadata_key",
    "compile_filter",
    "escape_like",
    "json_path",
    "validate_filter",
]

LOGICAL_OPERATORS: tuple[str, ...] = ("$and", "$nor", "$not", "$or")
FIELD_OPERATORS: tuple[str, ...] = (
    "$all",
    "$any",
    "$between",
    "$contains",
    "$empty",
    "$eq",
    "$exists",
    "$gt",
    "$gte",
    "$ilike",
    "$in",
    "$like",
    "$lt",
    "$lte",
    "$ne",
    "$nin",
    "$not",
)
OPERATORS: tuple[str, ...] = tuple(sorted(set(LOGICAL_OPERATORS) | set(FIELD_OPERATORS)))

# SQLite binds integers as signed 64-bit; larger ones would fail at execution time.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_LIKE_ESCAPE = "\\"
_SCALAR_TYPES = (str, int, float, bool, type(None))


# --------------------------------------------------------------------------- helpers


def check_metadata_key(key: Any) -> str:
    """Return ``key`` if it can be used as a metadata key, else raise InvalidIdentifierError.

    Any non-empty string without NUL characters is fine: keys are always bound or quoted.
    """
    if not isinstance(key, str):
        raise InvalidIdentifierError(
            f"metadata keys must be strings, got {type(key).__name__} {key!r}"
        )
    if not key:
        raise InvalidIdentifierError("metadata keys must not be empty strings")
    if "\x00" in key:
        raise InvalidIdentifierError(f"metadata key {key!r} contains a NUL character")
    if not _is_utf8(key):
        raise InvalidIdentifierError(
            f"metadata key {key!r} is not valid Unicode (it holds a lone surrogate)"
        )
    return key


def escape_like(text: str) -> str:
    """Escape ``\\``, ``%`` and ``_`` so ``text`` matches literally inside a LIKE pattern."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def json_path(key: str) -> str:
    """The MySQL/TiDB JSON path ``$."<key>"`` addressing the literal top-level ``key``."""
    # A JSON string literal is exactly the quoted member syntax of MySQL paths: it
    # escapes '"', '\\' and control characters.
    return "$." + json.dumps(check_metadata_key(key), ensure_ascii=False)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _valid_operators_hint() -> str:
    return "valid operators: " + ", ".join(OPERATORS)


def _fail(where: str, problem: str, *, hint: bool = False) -> InvalidFilterError:
    message = f"invalid filter at {where}: {problem}"
    if hint:
        message += f" ({_valid_operators_hint()})"
    return InvalidFilterError(message)


# ------------------------------------------------------------------- parsed filter tree


@dataclass(frozen=True)
class _And:
    items: tuple[_Node, ...]


@dataclass(frozen=True)
class _Or:
    items: tuple[_Node, ...]


@dataclass(frozen=True)
class _Not:
    item: _Node


@dataclass(frozen=True)
class _Pred:
    """A positive leaf: ``op`` is one of eq gt gte lt lte exists like ilike any all empty."""

    key: str
    op: str
    value: Any


_Node = _And | _Or | _Not | _Pred


def _parse_filter(filter: Any, where: str) -> _Node:
    if not isinstance(filter, Mapping):
        raise _fail(where, f"a filter must be a dict, got {type(filter).__name__} {filter!r}")
    items: list[_Node] = []
    for key, value in filter.items():
        if isinstance(key, str) and key.startswith("$"):
            items.append(_parse_logical(key, value, where))
        else:
            items.append(_parse_field(key, value, where))
    # {} nested inside $and/$or/$not matches everything, as in MongoDB.
    return items[0] if len(items) == 1 else _And(tuple(items))


def _parse_logical(op: str, value: Any, where: str) -> _Node:
    at = f"{where}.{op}" if where != "filter" else op
    if op == "$not":
        return _Not(_parse_filter(value, at))
    if op in ("$and", "$or", "$nor"):
        if not isinstance(value, Sequence) or isinstance(value, str) or not value:
            raise _fail(at, f"{op} takes a non-empty list of filter dicts, got {value!r}")
        children = tuple(_parse_filter(v, f"{at}[{i}]") for i, v in enumerate(value))
        if op == "$and":
            return _And(children)
        return _Or(children) if op == "$or" else _Not(_Or(children))
    if op in FIELD_OPERATORS:
        raise _fail(
            at,
            f"{op} compares a field, so it goes inside one: {{'<field>': {{{op!r}: ...}}}}; "
            "only $and, $or, $nor and $not may appear where field names do",
            hint=True,
        )
    # Never read an unknown $-key as a field name: a typo must not widen or empty results.
    raise _fail(
        at,
        f"unknown operator {op!r} (metadata fields whose names start with '$' cannot be "
        "filtered on)",
        hint=True,
    )


def _parse_field(key: Any, value: Any, where: str) -> _Node:
    try:
        key = check_metadata_key(key)
    except InvalidIdentifierError as exc:
        raise InvalidIdentifierError(f"invalid filter at {where}: {exc}") from None
    at = f"{where}[{key!r}]" if where != "filter" else repr(key)
    if isinstance(value, Mapping):
        return _parse_operators(key, value, at)
    if isinstance(value, (list, tuple, set, frozenset)):
        raise _fail(
            at,
            f"a list is not a value to compare with; use {{'$in': [...]}} to match any of "
            f"them or {{'$all': [...]}} / {{'$contains': v}} for array fields, got {value!r}",
        )
    return _Pred(key, "eq", _scalar(value, at))


def _parse_operators(key: str, ops: Mapping[Any, Any], at: str) -> _Node:
    if not ops:
        raise _fail(at, "empty operator dict; give at least one operator", hint=True)
    bad = [k for k in ops if not (isinstance(k, str) and k.startswith("$"))]
    if bad:
        raise _fail(
            at,
            f"{bad[0]!r} is not an operator; field names are literal top-level keys (a dot "
            "does not mean nesting) and nested objects cannot be matched, use an operator",
            hint=True,
        )
    items = tuple(_parse_operator(key, op, value, f"{at}.{op}") for op, value in ops.items())
    return items[0] if len(items) == 1 else _And(items)


def _parse_operator(key: str, op: str, value: Any, at: str) -> _Node:
    parser = _OPERATOR_PARSERS.get(op)
    if parser is None:
        if op in LOGICAL_OPERATORS:
            raise _fail(at, f"{op} combines whole filters; use it at the top level", hint=True)
        raise _fail(at, f"unknown operator {op!r}", hint=True)
    return parser(key, op, value, at)


# ------------------------------------------------------------------ value validation


def _scalar(value: Any, at: str) -> Any:
    if not isinstance(value, _SCALAR_TYPES):
        raise _fail(
            at,
            f"expected a str, int, float, bool or None, got {type(value).__name__} {value!r}",
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(at, f"{value!r} cannot be stored in JSON, so it can never match")
    if type(value) is int and not _INT_MIN <= value <= _INT_MAX:
        raise _fail(at, f"integer {value} is outside the signed 64-bit range")
    if isinstance(value, str) and not _is_utf8(value):
        raise _fail(at, f"{value!r} is not valid Unicode (it holds a lone surrogate)")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _orderable(value: Any, at: str) -> Any:
    value = _scalar(value, at)
    if not (_is_number(value) or isinstance(value, str)):
        raise _fail(at, f"range operators take a number or a string, got {value!r}")
    return value


def _scalar_list(value: Any, at: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise _fail(at, f"expected a list of scalars, got {type(value).__name__} {value!r}")
    return tuple(_scalar(v, f"{at}[{i}]") for i, v in enumerate(value))


def _flag(value: Any, at: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(at, f"expected true or false, got {value!r}")
    return value


def _pattern(value: Any, at: str) -> str:
    if not isinstance(value, str):
        raise _fail(at, f"a LIKE pattern must be a string, got {value!r}")
    value = _scalar(value, at)
    trailing = len(value) - len(value.rstrip(_LIKE_ESCAPE))
    if trailing % 2:
        raise _fail(
            at, f"pattern {value!r} ends with a lone escape '\\'; write '\\\\' for a backslash"
        )
    return value


# ----------------------------------------------------------------- operator parsers


def _parse_eq(key: str, op: str, value: Any, at: str) -> _Node:
    if isinstance(value, (list, tuple, dict)):
        raise _fail(
            at,
            f"{op} compares with one scalar; use $contains / $any / $all for array "
            f"membership or $in for a list of candidates, got {value!r}",
        )
    pred = _Pred(key, "eq", _scalar(value, at))
    return pred if op == "$eq" else _Not(pred)


def _parse_range(key: str, op: str, value: Any, at: str) -> _Node:
    return _Pred(key, op[1:], _orderable(value, at))


def _parse_between(key: str, op: str, value: Any, at: str) -> _Node:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _fail(at, f"$between takes [low, high], got {value!r}")
    low, high = (_orderable(v, f"{at}[{i}]") for i, v in enumerate(value))
    if _is_number(low) != _is_number(high):
        raise _fail(at, f"$between bounds must both be numbers or both strings: {value!r}")
    return _And((_Pred(key, "gte", low), _Pred(key, "lte", high)))


def _parse_in(key: str, op: str, value: Any, at: str) -> _Node:
    pred = _Or(tuple(_Pred(key, "eq", v) for v in _scalar_list(value, at)))
    return pred if op == "$in" else _Not(pred)


def _parse_exists(key: str, op: str, value: Any, at: str) -> _Node:
    pred = _Pred(key, "exists", None)
    return pred if _flag(value, at) else _Not(pred)


def _parse_empty(key: str, op: str, value: Any, at: str) -> _Node:
    pred = _Pred(key, "empty", None)
    return pred if _flag(value, at) else _Not(pred)


def _parse_like(key: str, op: str, value: Any, at: str) -> _Node:
    return _Pred(key, op[1:], _pattern(value, at))


def _parse_contains(key: str, op: str, value: Any, at: str) -> _Node:
    if isinstance(value, (list, tuple, dict)):
        raise _fail(at, f"$contains takes one scalar; use $any or $all for lists, got {value!r}")
    return _Pred(key, "any", (_scalar(value, at),))


def _parse_array(key: str, op: str, value: Any, at: str) -> _Node:
    return _Pred(key, op[1:], _scalar_list(value, at))


def _parse_field_not(key: str, op: str, value: Any, at: str) -> _Node:
    if not isinstance(value, Mapping):
        raise _fail(at, f"$not on a field takes an operator dict like {{'$eq': 1}}, got {value!r}")
    return _Not(_parse_operators(key, value, at))


_OPERATOR_PARSERS: dict[str, Callable[[str, str, Any, str], _Node]] = {
    "$eq": _parse_eq,
    "$ne": _parse_eq,
    "$gt": _parse_range,
    "$gte": _parse_range,
    "$lt": _parse_range,
    "$lte": _parse_range,
    "$between": _parse_between,
    "$in": _parse_in,
    "$nin": _parse_in,
    "$exists": _parse_exists,
    "$empty": _parse_empty,
    "$like": _parse_like,
    "$ilike": _parse_like,
    "$contains": _parse_contains,
    "$any": _parse_array,
    "$all": _parse_array,
    "$not": _parse_field_not,
}
assert set(_OPERATOR_PARSERS) == set(FIELD_OPERATORS)


def _parse(filter: Mapping[str, Any] | None) -> _Node | None:
    if filter is None:
        return None
    if not isinstance(filter, Mapping):
        raise _fail("filter", f"a filter must be a dict, got {type(filter).__name__} {filter!r}")
    if not filter:
        return None
    return _parse_filter(filter, "filter")


def parse_filter(filter: Mapping[str, Any] | None) -> _Node | None:
    """The validated filter tree (None for no filter), for evaluators other than SQL."""
    return _parse(filter)


def validate_filter(filter: Mapping[str, Any] | None) -> None:
    """Raise InvalidFilterError / InvalidIdentifierError if ``filter`` is not valid."""
    _parse(filter)


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
        kind = "number" if _is_number(value) else "string"
        return sa.and_(self.is_type(row, kind), row.value == sa.bindparam(None, value))

    def pred(self, op: str, value: Any) -> sa.ColumnElement[bool]:
        if op == "eq" and value is None:
            # Missing or null: no row for the key with a non-null type.
            return ~self.where(lambda r: r.type != _const("null"))
        if op == "eq":
            return self.where(lambda r: self.equals(r, value))
        if op in _COMPARATORS:
            kind = "number" if _is_number(value) else "string"
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
        return "number" if _is_number(value) else "string"

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
    node: _Node,
    meta: sa.ColumnElement[Any],
    dialect_name: str,
    indexed: Mapping[str, sa.ColumnElement[Any]],
) -> sa.ColumnElement[bool]:
    if isinstance(node, _Pred):
        expr = _BACKENDS[dialect_name](meta, node.key).pred(node.op, node.value)
        column = indexed.get(node.key)
        if column is not None and node.op == "eq" and isinstance(node.value, str):
            # Same rows (the JSON test implies it); lets the database use the index.
            return sa.and_(column == node.value, expr)
        return expr
    if isinstance(node, _Not):
        return _negate(_to_sql(node.item, meta, dialect_name, indexed))
    children = [_to_sql(child, meta, dialect_name, indexed) for child in node.items]
    if isinstance(node, _And):
        return sa.and_(*children) if children else sa.true()
    # An empty OR ($in: []) matches nothing, as in MongoDB.
    return sa.or_(*children) if children else sa.false()


def compile_filter(
    filter: Mapping[str, Any] | None,
    meta: sa.ColumnElement[Any],
    dialect_name: str,
    indexed: Mapping[str, sa.ColumnElement[Any]] | None = None,
) -> sa.ColumnElement[bool] | None:
    """Compile ``filter`` into a WHERE expression over the JSON column ``meta``.

    ``dialect_name`` is ``"sqlite"`` or ``"mysql"`` (TiDB). Returns None for None or ``{}``.
    The whole filter is validated before anything is returned. ``indexed`` maps metadata
    keys to indexed columns holding their unquoted value: string equality on those keys
    (``$eq``, ``$in``) also tests the column, so the index is used.
    """
    if dialect_name not in _BACKENDS:
        raise ValueError(f"dialect_name must be 'sqlite' or 'mysql', got {dialect_name!r}")
    node = _parse(filter)
    return None if node is None else _to_sql(node, meta, dialect_name, indexed or {})
