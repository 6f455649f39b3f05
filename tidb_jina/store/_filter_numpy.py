"""Metadata filters evaluated with NumPy over the embedded search's snapshot.

SQLite parses a row's JSON for every condition (about a microsecond per row each), so a
filtered search over 100,000 rows spends most of its time there. The embedded search
keeps the parsed metadata of its vector snapshot instead, as one typed column per key
that a filter uses, and evaluates the common operators as array operations:
``$eq $ne $in $nin $gt $gte $lt $lte $between $exists $empty`` and the logical ones.
``$like``, ``$ilike`` and the array operators are left to SQL: :func:`supported` says
no and the caller runs the filter in SQLite.

It takes the parsed tree of :mod:`tidb_jina.store._filter_tree` and never parses. The
semantics are the SQL compiler's (:mod:`tidb_jina.store._filter_sql`), exactly: values
compare with Python's own ``==`` and ``<`` on SQLite's decoded JSON values, restricted to
one JSON type (numbers with numbers, strings with strings, booleans only as booleans), so
integers stay exact and strings order by code point like SQLite's BINARY collation on
UTF-8. Every result is a total boolean array, so negation is plain ``~`` (missing keys
match ``$ne``).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tidb_jina.store._filter_tree import Filter, Node, Not, Or, Pred
from tidb_jina.store._filter_typed import Typed
from tidb_jina.store._filter_typed import compare as typed_compare
from tidb_jina.store._filter_typed import equal_rows as typed_equal_rows
from tidb_jina.store._filter_typed import member as typed_member

MISSING, NULL, FALSE, TRUE, NUMBER, STRING, ARRAY, OBJECT = range(8)
_SUPPORTED = frozenset({"eq", "gt", "gte", "lt", "lte", "exists", "empty"})
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


class KeyColumn:
    """One metadata key over all rows: its JSON type, its value, and "is it empty".

    Built from SQLite's ``json_type(meta, path)`` / ``json_extract(meta, path)`` per row,
    so only this key's values are held in memory, never whole metadata objects.
    """

    __slots__ = ("empty", "kind", "typed", "values")

    def __init__(self, types: Sequence[str | None], values: Sequence[Any]) -> None:
        n = len(types)
        self.kind = np.fromiter(map(_KINDS.__getitem__, types), dtype=np.int8, count=n)
        raw = np.empty(n, dtype=object)
        raw[:] = values if isinstance(values, (list, tuple)) else list(values)
        scalar = (self.kind == NUMBER) | (self.kind == STRING)
        self.values = raw.copy()
        self.values[~scalar] = None
        # empty: missing, null, "" or [] (json_extract gives arrays as minified JSON text)
        # The string "[]" is not empty: only an ARRAY whose JSON text is [] is.
        self.empty = (self.kind == MISSING) | (self.kind == NULL)
        for kind, text in ((STRING, ""), (ARRAY, "[]")):  # the string "[]" is not empty
            rows = self.kind == kind
            self.empty[rows] = raw[rows] == text
        self.typed = Typed()  # typed arrays for fast comparisons (``_filter_typed``)


_KINDS = {
    None: MISSING,
    "null": NULL,
    "true": TRUE,
    "false": FALSE,
    "integer": NUMBER,
    "real": NUMBER,
    "text": STRING,
    "array": ARRAY,
    "object": OBJECT,
}


def kind_of(json_type: str | None) -> int:
    """The kind code of one SQLite ``json_type`` answer (None: the key is missing)."""
    return _KINDS[json_type]


# Keys SQLite's JSON paths address reliably: printable ASCII without quote or backslash
# (no JSON writer escapes these). Others are filtered in SQL through json_each.
_PATH_SAFE_KEY = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]+")


def path_safe(key: str) -> bool:
    return bool(_PATH_SAFE_KEY.fullmatch(key))


def supported(node: Filter | Node) -> bool:
    """Whether :func:`mask` can evaluate ``node`` (else SQL must)."""
    if isinstance(node, Filter):
        return supported(node.node)
    if isinstance(node, Pred):
        return node.op in _SUPPORTED and path_safe(node.key)
    if isinstance(node, Not):
        return supported(node.item)
    return all(supported(child) for child in node.items)


def mask(node: Filter | Node, column: Callable[[str], KeyColumn], n: int) -> np.ndarray:
    """Boolean array: which of the ``n`` rows match ``node`` (``supported`` must hold)."""
    if isinstance(node, Filter):
        node = node.node
    if isinstance(node, Pred):
        return _leaf(node, column(node.key))
    if isinstance(node, Not):
        return ~mask(node.item, column, n)
    if isinstance(node, Or):
        return _or_mask(node, column, n)
    parts = [mask(child, column, n) for child in node.items]
    return np.logical_and.reduce(parts) if parts else np.ones(n, dtype=bool)


def positions(
    node: Filter | Node, column: Callable[[str], KeyColumn], n: int, alive: np.ndarray | None
) -> np.ndarray:
    """Positions of the ``n`` rows that match ``node`` and are ``alive`` (None: all are),
    ascending: ``np.flatnonzero(mask(node, ...) & alive)``. One equality on a number or a
    string takes its rows from the column's postings (``_filter_typed.equal_rows``)
    without a pass over every row."""
    if isinstance(node, Filter):
        node = node.node
    if isinstance(node, Pred):  # the column is asked for once (it may be read in SQL)
        col = column(node.key)
        if node.op == "eq" and isinstance(node.value, (int, float, str)):
            found = _equal_rows(col, node.value)
            if found is not None:
                return found if alive is None else found[alive[found]]
        matched = _leaf(node, col)
    else:
        matched = mask(node, column, n)
    if alive is not None:
        matched = matched & alive  # never in place: mask may share its array
    return np.flatnonzero(matched)


def _equal_rows(col: KeyColumn, value: Any) -> np.ndarray | None:
    if isinstance(value, bool):
        return None  # booleans are kinds (``_leaf``), never numbers
    is_str = isinstance(value, str)
    typed = col.typed
    ready = isinstance(typed.strings if is_str else typed.numbers, (tuple, np.ndarray))
    rows = None if ready else np.flatnonzero(col.kind == (STRING if is_str else NUMBER))
    return typed_equal_rows(typed, rows, col.values, value, is_str)


def _or_mask(node: Or, column: Callable[[str], KeyColumn], n: int) -> np.ndarray:
    """Equalities on one key (``$in``) are one set lookup per row, not one pass per value."""
    by_key: dict[str, list[Any]] = {}
    others: list[Node] = []
    for child in node.items:
        if isinstance(child, Pred) and child.op == "eq" and child.value is not None:
            by_key.setdefault(child.key, []).append(child.value)
        else:
            others.append(child)
    out = np.zeros(n, dtype=bool)
    for key, values in by_key.items():
        out |= _member(column(key), values)
    for child in others:
        out |= mask(child, column, n)
    return out


def _member(col: KeyColumn, values: list[Any]) -> np.ndarray:
    """Same rule as ``eq`` per value: one JSON type, ``1 == 1.0``, ``True != 1``."""
    out = np.zeros(col.kind.shape[0], dtype=bool)
    for flag in {v for v in values if isinstance(v, bool)}:
        out |= col.kind == (TRUE if flag else FALSE)
    numbers = {v for v in values if not isinstance(v, (bool, str))}
    strings = {v for v in values if isinstance(v, str)}
    for kind, wanted in ((NUMBER, numbers), (STRING, strings)):
        if not wanted:
            continue
        rows = np.flatnonzero(col.kind == kind)
        if not rows.size:
            continue
        fast = typed_member(col.typed, rows, col.values, wanted, kind == STRING)
        if fast is not None:
            out |= fast
            continue
        found = [value in wanted for value in col.values[rows]]
        out[rows] |= np.asarray(found, dtype=bool)
    return out


def _leaf(node: Pred, col: KeyColumn) -> np.ndarray:
    op, value = node.op, node.value
    if op == "exists":
        return col.kind != MISSING
    if op == "empty":
        return col.empty.copy()
    if op == "eq" and value is None:
        return (col.kind == MISSING) | (col.kind == NULL)
    if op == "eq" and isinstance(value, bool):
        return col.kind == (TRUE if value else FALSE)
    kind = STRING if isinstance(value, str) else NUMBER
    typed = col.typed  # built once per column; then the rows of the kind are not needed
    ready = isinstance(typed.strings if kind == STRING else typed.numbers, (tuple, np.ndarray))
    rows = None if ready else np.flatnonzero(col.kind == kind)
    fast = typed_compare(typed, rows, col.values, op, value, kind == STRING)
    if fast is not None:
        return fast
    if rows is None:
        rows = np.flatnonzero(col.kind == kind)
    compare = operator.eq if op == "eq" else _COMPARE[op]
    out = np.zeros(col.kind.shape[0], dtype=bool)
    if rows.size:
        out[rows] = np.asarray(compare(col.values[rows], value), dtype=bool)
    return out
