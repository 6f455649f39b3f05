"""The metadata filter language, and the tree it is parsed into once.

A filter is a MongoDB-style dict. Top-level entries are ANDed; a top-level key is either a
logical operator or a metadata field name. Field names are *literal* top-level keys of the
``meta`` JSON object: ``"a.b"`` is the key ``a.b``, never a nested path.

Logical operators (top level, or inside one another)::

    $and / $or / $nor   list of filter dicts (``$and: []`` sets no condition,
                        ``$or: []`` matches nothing, ``$nor: []`` matches everything)
    $not                one filter dict

``{}`` sets no condition, also when nested (``{"$or": [{}]}`` matches everything, as in
MongoDB). A filter that is true for every row by its structure alone (``{}``,
``$and: []``, ``$nin: []``, and any AND / OR / NOT of them, at any depth) counts as no
filter: reads return every row and ``delete()`` refuses it. An adapter that builds an
*empty group* must build the group's identity (an empty ``$or`` matches nothing), which
is what the LlamaIndex translator does.

Limits: a filter nests at most :data:`MAX_FILTER_DEPTH` dicts/lists deep and holds at
most :data:`MAX_FILTER_VALUES` values (a ``$in`` list of 10,000 is fine); beyond them
``InvalidFilterError`` says so. String values must not contain NUL (metadata strings
cannot hold it either, see ``_validate``), so a filter never compares a truncated text.

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

The tree
--------

:func:`parse_filter` validates a filter dict once, where it enters the library, and
returns a :class:`Filter`: the root :data:`Node` plus what the engines want to know up
front. The SQL compiler (``_filter_sql``) and the NumPy evaluator (``_filter_numpy``)
take the tree and never see the dict; the LlamaIndex translator builds the tree. A
``Filter`` passed where a dict is accepted is used as it is, never parsed again.

Four frozen node types:

* ``Pred(key, op, value)``: one positive test of the literal top-level ``key``. ``op`` is
  ``eq`` (a scalar; None means missing or null), ``gt gte lt lte`` (a number or a
  string), ``exists`` and ``empty`` (value None), ``like`` and ``ilike`` (the pattern),
  ``any`` and ``all`` (a tuple of scalars).
* ``And(items)`` / ``Or(items)``: every / some child matches. An empty ``And`` matches
  everything (a nested ``{}``), an empty ``Or`` nothing (``$in: []``).
* ``Not(item)``: the complement, records lacking the key included; each engine must make
  its result total before negating (SQL: ``NOT COALESCE(expr, FALSE)``).

The other operators reduce to these: ``$ne v`` is ``Not(eq v)``; ``$in`` an ``Or`` of
``eq`` and ``$nin`` its ``Not``; ``$between`` an ``And`` of ``gte`` and ``lte``;
``$contains v`` is ``any (v,)``; ``$nor`` is ``Not(Or(...))``; ``$exists: false`` and
``$empty: false`` are the ``Not`` of the positive test; several operators on one field,
or several entries in one dict, are an ``And`` (a single one is its own node).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tidb_jina._errors import InvalidFilterError, InvalidIdentifierError

__all__ = [
    "FIELD_OPERATORS",
    "LOGICAL_OPERATORS",
    "MAX_FILTER_DEPTH",
    "MAX_FILTER_VALUES",
    "OPERATORS",
    "And",
    "Filter",
    "Node",
    "Not",
    "Or",
    "Pred",
    "check_metadata_key",
    "escape_like",
    "is_number",
    "parse_filter",
    "sets_no_condition",
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
# Nesting of dicts/lists in one filter (LlamaIndex groups count one level each). Far
# beyond any real filter, far below Python's recursion limit and SQLite's expression
# depth (1000) once compiled.
MAX_FILTER_DEPTH = 32
# Scalars in one filter, all operators together: ten $in lists of 10,000 values.
MAX_FILTER_VALUES = 100_000

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


# ------------------------------------------------------------------------------ tree


@dataclass(frozen=True)
class And:
    """Every child matches (an empty And matches every record)."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """At least one child matches (an empty Or matches no record)."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    """The child does not match; records lacking its key match."""

    item: Node


@dataclass(frozen=True)
class Pred:
    """A positive leaf: ``op`` is one of eq gt gte lt lte exists like ilike any all empty."""

    key: str
    op: str
    value: Any


Node = And | Or | Not | Pred


@dataclass(frozen=True)
class Filter:
    """A valid filter, parsed: make one with :func:`parse_filter` (or from a built tree).

    ``keys`` are the metadata keys it reads (whether :mod:`tidb_jina.store._filter_numpy`
    can evaluate it is that module's :func:`supported`). Two filters are equal when their
    trees are.
    """

    node: Node
    keys: frozenset[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", frozenset(_keys(self.node)))

    def __repr__(self) -> str:
        return f"Filter({self.node!r})"


def _keys(node: Node) -> Iterator[str]:
    if isinstance(node, Pred):
        yield node.key
    elif isinstance(node, Not):
        yield from _keys(node.item)
    else:
        for child in node.items:
            yield from _keys(child)


def parse_filter(filter: Mapping[str, Any] | Filter | None) -> Filter | None:
    """Validate ``filter`` once and return its tree; None when it sets no condition.

    None and ``{}`` set none. A :class:`Filter` is returned as it is, so a parsed filter
    passed down is never parsed again. Raises InvalidFilterError (InvalidIdentifierError
    for a bad key) naming the place in the dict, before anything runs.
    """
    if filter is None:
        return None
    if isinstance(filter, Filter):  # built elsewhere (an adapter): still never "all rows"
        return None if sets_no_condition(filter.node) else filter
    if not isinstance(filter, Mapping):
        raise _fail("filter", f"a filter must be a dict, got {type(filter).__name__} {filter!r}")
    if not filter:
        return None
    check_filter_size(filter)
    node = _parse_filter(filter, "filter")
    # A filter that can only be true ({"$and": []}, {"$nor": []}, nested {} in $and)
    # sets no condition, exactly like {}: delete() refuses it instead of emptying the
    # table because an adapter built an empty list of conditions.
    return None if sets_no_condition(node) else Filter(node)


def sets_no_condition(node: Node) -> bool:
    """True when ``node`` holds for every record by construction.

    By structure, through every level: an empty AND or NOR, ``$nin: []``, a nested
    ``{}``, and any AND / OR / NOT built from them (``{"$or": [{"k": {"$nin": []}},
    {"tenant": "acme"}]}`` is true for every row, so ``delete()`` refuses it like
    ``{}``). Tautologies over values (``$exists: true`` OR ``$exists: false``) are
    legitimate filters and are not detected.
    """
    return _constant(node) is True


def _constant(node: Node) -> bool | None:
    """True / False when ``node`` holds for every / no record by structure, else None."""
    if isinstance(node, Pred):
        return None
    if isinstance(node, Not):
        inner = _constant(node.item)
        return None if inner is None else not inner
    results = [_constant(child) for child in node.items]
    absorbing = isinstance(node, Or)  # True absorbs an OR, False absorbs an AND
    if absorbing in results:
        return absorbing
    return (not absorbing) if all(r is not None for r in results) else None


def check_filter_size(filter: Any) -> None:
    """Raise InvalidFilterError if ``filter`` nests deeper than :data:`MAX_FILTER_DEPTH`
    or holds more than :data:`MAX_FILTER_VALUES` values (iterative: no RecursionError)."""
    stack: list[tuple[Any, int]] = [(filter, 1)]
    values = 0
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            values += 1
            if values > MAX_FILTER_VALUES:
                raise InvalidFilterError(
                    f"invalid filter: it holds more than {MAX_FILTER_VALUES} values; split "
                    "the operation into several calls"
                )
            continue
        if depth > MAX_FILTER_DEPTH:
            raise InvalidFilterError(
                f"invalid filter: it nests more than {MAX_FILTER_DEPTH} levels deep; "
                "flatten it (a list of alternatives is one $in or one $or)"
            )
        stack.extend((child, depth + 1) for child in children)


def validate_filter(filter: Mapping[str, Any] | Filter | None) -> None:
    """Raise InvalidFilterError / InvalidIdentifierError if ``filter`` is not valid."""
    parse_filter(filter)


# -------------------------------------------------------------------------- parser


def _parse_filter(filter: Any, where: str) -> Node:
    if not isinstance(filter, Mapping):
        raise _fail(where, f"a filter must be a dict, got {type(filter).__name__} {filter!r}")
    items: list[Node] = []
    for key, value in filter.items():
        if isinstance(key, str) and key.startswith("$"):
            items.append(_parse_logical(key, value, where))
        else:
            items.append(_parse_field(key, value, where))
    # {} nested inside $and/$or/$not sets no condition (it matches everything), as in
    # MongoDB; empty *groups* are $and: [] / $or: [] (see the module docstring).
    return items[0] if len(items) == 1 else And(tuple(items))


def _parse_logical(op: str, value: Any, where: str) -> Node:
    at = f"{where}.{op}" if where != "filter" else op
    if op == "$not":
        return Not(_parse_filter(value, at))
    if op in ("$and", "$or", "$nor"):
        if not isinstance(value, (list, tuple)):
            raise _fail(at, f"{op} takes a list of filter dicts, got {value!r}")
        children = tuple(_parse_filter(v, f"{at}[{i}]") for i, v in enumerate(value))
        if op == "$and":
            return And(children)
        return Or(children) if op == "$or" else Not(Or(children))
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


def _parse_field(key: Any, value: Any, where: str) -> Node:
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
    return Pred(key, "eq", _scalar(value, at))


def _parse_operators(key: str, ops: Mapping[Any, Any], at: str) -> Node:
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
    return items[0] if len(items) == 1 else And(items)


def _parse_operator(key: str, op: str, value: Any, at: str) -> Node:
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
    if isinstance(value, str) and "\x00" in value:
        raise _fail(
            at,
            f"{value!r} contains a NUL character; metadata strings cannot hold NUL (it is "
            "refused at write time), so this can never match",
        )
    return value


def is_number(value: Any) -> bool:
    """Numbers are int and float, never bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _orderable(value: Any, at: str) -> Any:
    value = _scalar(value, at)
    if not (is_number(value) or isinstance(value, str)):
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


def _parse_eq(key: str, op: str, value: Any, at: str) -> Node:
    if isinstance(value, (list, tuple, dict)):
        raise _fail(
            at,
            f"{op} compares with one scalar; use $contains / $any / $all for array "
            f"membership or $in for a list of candidates, got {value!r}",
        )
    pred = Pred(key, "eq", _scalar(value, at))
    return pred if op == "$eq" else Not(pred)


def _parse_range(key: str, op: str, value: Any, at: str) -> Node:
    return Pred(key, op[1:], _orderable(value, at))


def _parse_between(key: str, op: str, value: Any, at: str) -> Node:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _fail(at, f"$between takes [low, high], got {value!r}")
    low, high = (_orderable(v, f"{at}[{i}]") for i, v in enumerate(value))
    if is_number(low) != is_number(high):
        raise _fail(at, f"$between bounds must both be numbers or both strings: {value!r}")
    return And((Pred(key, "gte", low), Pred(key, "lte", high)))


def _parse_in(key: str, op: str, value: Any, at: str) -> Node:
    pred = Or(tuple(Pred(key, "eq", v) for v in _scalar_list(value, at)))
    return pred if op == "$in" else Not(pred)


def _parse_exists(key: str, op: str, value: Any, at: str) -> Node:
    pred = Pred(key, "exists", None)
    return pred if _flag(value, at) else Not(pred)


def _parse_empty(key: str, op: str, value: Any, at: str) -> Node:
    pred = Pred(key, "empty", None)
    return pred if _flag(value, at) else Not(pred)


def _parse_like(key: str, op: str, value: Any, at: str) -> Node:
    return Pred(key, op[1:], _pattern(value, at))


def _parse_contains(key: str, op: str, value: Any, at: str) -> Node:
    if isinstance(value, (list, tuple, dict)):
        raise _fail(at, f"$contains takes one scalar; use $any or $all for lists, got {value!r}")
    return Pred(key, "any", (_scalar(value, at),))


def _parse_array(key: str, op: str, value: Any, at: str) -> Node:
    return Pred(key, op[1:], _scalar_list(value, at))


def _parse_field_not(key: str, op: str, value: Any, at: str) -> Node:
    if not isinstance(value, Mapping):
        raise _fail(at, f"$not on a field takes an operator dict like {{'$eq': 1}}, got {value!r}")
    return Not(_parse_operators(key, value, at))


_OPERATOR_PARSERS: dict[str, Callable[[str, str, Any, str], Node]] = {
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
