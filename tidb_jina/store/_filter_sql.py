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
  numbers never across INTEGER/DOUBLE: TiDB compares those within 1e-8, so stored
  integers meet an integer bound and doubles a double bound, see ``_exact_numbers``)
  and ``MEMBER OF`` for arrays.
* SQLite: a correlated ``json_each(meta)`` row selected by ``key = :key``. SQLite's JSON
  paths compare the raw, still-escaped key text, so ``$."q\\"x"`` or a key stored as
  ``\\u00fc`` cannot be addressed by path at all; ``json_each`` compares decoded keys.

Large lists stay one small statement. An ``Or`` of equalities on one key (``$in``, an
``$or`` of ``{key: value}``, LlamaIndex ``IN``) of :data:`MEMBERSHIP_MIN` values or more
is one membership test per JSON type, with the values bound as *one* JSON array: SQLite
``kv.value IN (SELECT value FROM json_each(:array))`` (SQLite builds a lookup table once
per statement), TiDB ``doc MEMBER OF (CAST(:array AS JSON))``. The type guard keeps
``1 == 1.0`` and ``true != 1`` exactly as the single comparisons do. Other wide
``AND`` / ``OR`` lists are nested in parenthesised groups of :data:`_FAN_IN`, so the
parsed expression stays far below SQLite's depth limit of 1000 ("Expression tree is too
large").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from tidb_jina._errors import InvalidFilterError
from tidb_jina.store._exact_numbers import Bound, float_bound, int_bound
from tidb_jina.store._filter_tree import (
    And,
    Filter,
    Node,
    Not,
    Or,
    Pred,
    check_metadata_key,
    is_number,
)

__all__ = ["MEMBERSHIP_MIN", "compile_filter", "json_path"]

_LIKE_ESCAPE = "\\"
# An Or of at least this many equalities on one key becomes one membership test.
MEMBERSHIP_MIN = 8
# Children per parenthesised AND / OR group (SQLite parses "a OR b OR ..." left-deep).
_FAN_IN = 64


def json_path(key: str) -> str:
    """The MySQL/TiDB JSON path ``$."<key>"`` addressing the literal top-level ``key``.

    TiDB's path parser (``pkg/types/json_path_expr.go``, ``parseJSONPathMember``) reads
    a double-quoted member as a JSON string literal: ``json.dumps`` escapes ``"``, ``\\``
    and control characters, and ``*``, ``**``, ``.``, ``[``, spaces and non-ASCII are
    literal inside the quotes. The one exception is a member named exactly ``*``: TiDB
    keeps only the unquoted name and treats ``"*"`` as the wildcard ``.*`` (it would test
    every member), so that key is refused with InvalidFilterError.
    """
    key = check_metadata_key(key)
    if key == "*":
        raise InvalidFilterError(
            "invalid filter: the metadata key '*' cannot be filtered on TiDB: its JSON path "
            'syntax reads the member "*" as a wildcard over every key; rename the key'
        )
    # A JSON string literal is exactly the quoted member syntax of MySQL paths.
    return "$." + json.dumps(key, ensure_ascii=False)


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


class _Parens(sa.sql.expression.ColumnElement[Any]):
    """``(<expr>)`` always: SQLAlchemy flattens nested AND / OR and drops a Grouping."""

    _traverse_internals = [("inner", InternalTraversal.dp_clauseelement)]  # noqa: RUF012
    inherit_cache = True
    type = sa.types.NullType()  # as _MemberOf: no "= 1" appended inside AND / OR

    def __init__(self, inner: sa.ColumnElement[Any]) -> None:
        self.inner = inner


@compiles(_Parens)
def _compile_parens(element: _Parens, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.inner, **kw)})"


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
            return sa.and_(
                is_array, _balanced(sa.and_, [self.has_element(row, [v]) for v in values])
            )
        return sa.and_(is_array, self.has_element(row, values)) if values else sa.false()

    def has_element(self, row: Any, values: Sequence[Any]) -> sa.ColumnElement[bool]:
        # CASE keeps json_each from parsing a non-array value (a plain string is not JSON).
        array = sa.case((self.is_type(row, "array"), row.value), else_=_const("[]"))
        element = sa.func.json_each(array).table_valued("value", "type").alias("el")
        return _exists_in(element, self.one_of(element.c, values))

    def one_of(self, row: Any, values: Sequence[Any]) -> sa.ColumnElement[bool]:
        """``row`` equals one of the non-null ``values`` (same JSON type)."""
        if len(values) < MEMBERSHIP_MIN:
            return _balanced(sa.or_, [self.equals(row, v) for v in values])
        numbers, strings, flags = _split_by_kind(values)
        parts = [self.is_type(row, "true" if flag else "false") for flag in flags]
        for kind, group in (("number", numbers), ("string", strings)):
            if group:
                listed = sa.select(_json_each_values(group)).scalar_subquery()
                parts.append(sa.and_(self.is_type(row, kind), row.value.in_(listed)))
        return sa.or_(*parts)

    def member(self, values: Sequence[Any], column: Any) -> sa.ColumnElement[bool]:
        """The key's value equals one of ``values`` (no None), in one EXISTS."""
        condition = self.where(lambda r: self.one_of(r, values))
        strings = [v for v in values if isinstance(v, str)]
        if column is None or len(strings) != len(values):
            return condition
        # All strings on an indexed key: the column narrows first (the index is used).
        return sa.and_(
            column.in_(sa.select(_json_each_values(strings)).scalar_subquery()), condition
        )


class _MySQLField:
    """One key, read with ``JSON_EXTRACT(meta, :path)`` (TiDB: only documented functions)."""

    TYPES: ClassVar[dict[str, tuple[str, ...]]] = {
        "number": ("INTEGER", "UNSIGNED INTEGER", "DOUBLE", "DECIMAL"),
        "integer": ("INTEGER", "UNSIGNED INTEGER"),
        "double": ("DOUBLE", "DECIMAL"),
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
        if (op == "eq" or op in _COMPARATORS) and is_number(value):
            return self.number(op, value)
        if op == "eq" or op in _COMPARATORS:
            # JSON-to-JSON comparison: binary for strings (no PAD SPACE, unlike
            # utf8mb4_bin on the unquoted text), booleans only with booleans.
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

    def number(self, op: str, value: int | float) -> sa.ColumnElement[bool]:
        """``doc <op> value`` exactly: integers against an integer bound, doubles against
        a double bound (TiDB compares INTEGER with DOUBLE within 1e-8; see
        :mod:`tidb_jina.store._exact_numbers`)."""
        parts = []
        for kind, bound in (("integer", int_bound(op, value)), ("double", float_bound(op, value))):
            if bound is False:
                continue
            if bound is True:
                parts.append(self.is_type(kind))
            else:
                bound_op, bound_value = bound
                compare = _COMPARATORS[bound_op](self.doc, _CastJSON(bound_value))
                parts.append(sa.and_(self.is_type(kind), compare))
        return sa.or_(*parts) if parts else sa.false()

    def array_pred(self, op: str, values: tuple[Any, ...]) -> sa.ColumnElement[bool]:
        members = [_MemberOf(_CastJSON(v), self.doc) for v in values]
        if op == "all":
            return sa.and_(self.is_type("array"), _balanced(sa.and_, members))
        if not members:
            return sa.false()
        return sa.and_(self.is_type("array"), _balanced(sa.or_, members))

    def member(self, values: Sequence[Any], column: Any) -> sa.ColumnElement[bool]:
        """The key's value equals one of ``values`` (no None): one ``MEMBER OF`` per type."""
        numbers, strings, flags = _split_by_kind(values)
        # Numbers: integers MEMBER OF integers, doubles MEMBER OF doubles (exact).
        as_ints = _exact_members(int_bound, numbers)
        as_doubles = _exact_members(float_bound, numbers)
        parts = []
        groups = (("integer", as_ints), ("double", as_doubles), ("string", strings))
        for kind, group in (*groups, ("boolean", flags)):
            if group:
                parts.append(sa.and_(self.is_type(kind), _MemberOf(self.doc, _CastJSON(group))))
        condition = sa.or_(*parts) if parts else sa.false()
        if column is None or len(strings) != len(values):
            return condition
        return sa.and_(column.in_(strings), condition)


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


def _split_by_kind(values: Sequence[Any]) -> tuple[list[Any], list[str], list[bool]]:
    """Numbers, strings and booleans (each once; bool is not a number here)."""
    numbers = [v for v in values if is_number(v)]
    strings = [v for v in values if isinstance(v, str)]
    flags = sorted({v for v in values if isinstance(v, bool)})
    return list(dict.fromkeys(numbers)), list(dict.fromkeys(strings)), flags


def _exact_members(bound: Callable[[str, Any], Bound], numbers: Sequence[Any]) -> list[Any]:
    """The ``eq`` bounds of ``numbers`` for one stored kind (values that can never be
    equal to a number of that kind are left out), each once."""
    out = [b[1] for b in (bound("eq", v) for v in numbers) if isinstance(b, tuple)]
    return list(dict.fromkeys(out))


def _json_each_values(values: Sequence[Any]) -> sa.ColumnElement[Any]:
    """SQLite: the ``value`` column of ``json_each(:array)`` over ``values`` bound once."""
    array = sa.bindparam(None, json.dumps(list(values), ensure_ascii=False), sa.String)
    return sa.func.json_each(array).table_valued("value").alias("lst").c.value


def _balanced(
    combine: Callable[..., sa.ColumnElement[bool]], parts: Sequence[sa.ColumnElement[bool]]
) -> sa.ColumnElement[bool]:
    """``combine(*parts)`` nested in parenthesised groups of at most ``_FAN_IN`` terms."""
    if not parts:  # the identities: AND of nothing holds, OR of nothing does not
        return sa.true() if combine is sa.and_ else sa.false()
    if len(parts) <= _FAN_IN:
        return combine(*parts)
    groups = [
        _Parens(_balanced(combine, parts[i : i + _FAN_IN])) for i in range(0, len(parts), _FAN_IN)
    ]
    return _balanced(combine, groups)


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
    if isinstance(node, And):
        children = [_to_sql(child, meta, dialect_name, indexed) for child in node.items]
        return _balanced(sa.and_, children) if children else sa.true()
    # An empty OR ($in: []) matches nothing, as in MongoDB.
    return _or_to_sql(node, meta, dialect_name, indexed)


def _or_to_sql(
    node: Or,
    meta: sa.ColumnElement[Any],
    dialect_name: str,
    indexed: Mapping[str, sa.ColumnElement[Any]],
) -> sa.ColumnElement[bool]:
    """Equalities on one key, from ``MEMBERSHIP_MIN`` up, become one membership test."""
    by_key: dict[str, list[Any]] = {}
    for child in node.items:
        if isinstance(child, Pred) and child.op == "eq" and child.value is not None:
            by_key.setdefault(child.key, []).append(child.value)
    grouped = [key for key, values in by_key.items() if len(values) >= MEMBERSHIP_MIN]
    parts = [
        _BACKENDS[dialect_name](meta, key).member(by_key[key], indexed.get(key)) for key in grouped
    ]
    for child in node.items:
        if not (
            isinstance(child, Pred)
            and child.key in grouped
            and child.op == "eq"
            and child.value is not None
        ):
            parts.append(_to_sql(child, meta, dialect_name, indexed))
    return _balanced(sa.or_, parts) if parts else sa.false()


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
