"""Metadata filters evaluated with NumPy over the embedded search's snapshot.

SQLite parses a row's JSON for every condition (about a microsecond per row each), so a
filtered search over 100,000 rows spends most of its time there. The embedded search
keeps the parsed metadata of its vector snapshot instead, as one typed column per key
that a filter uses, and evaluates the common operators as array operations:
``$eq $ne $in $nin $gt $gte $lt $lte $between $exists $empty`` and the logical ones.
``$like``, ``$ilike`` and the array operators are left to SQL: :func:`mask` returns None
and the caller runs the filter in SQLite.

The semantics are those of :mod:`tidb_jina.store._filters`, exactly: values compare with
Python's own ``==`` and ``<`` on the decoded JSON, restricted to one JSON type (numbers
with numbers, strings with strings, booleans only as booleans), so integers stay exact
and strings order by code point like SQLite's BINARY collation on UTF-8. Every result is
a total boolean array, so negation is plain ``~`` (missing keys match ``$ne``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tidb_jina.store._filters import _And, _Node, _Not, _Or, _Pred

MISSING, NULL, FALSE, TRUE, NUMBER, STRING, ARRAY, OBJECT = range(8)
_SUPPORTED = frozenset({"eq", "gt", "gte", "lt", "lte", "exists", "empty"})
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
_ABSENT = object()


class KeyColumn:
    """One metadata key over all rows: its JSON type, its value, and "is it empty"."""

    __slots__ = ("empty", "kind", "values")

    def __init__(self, metas: Sequence[dict[str, Any] | None], key: str) -> None:
        n = len(metas)
        self.kind = np.empty(n, dtype=np.int8)
        self.values = np.empty(n, dtype=object)
        self.empty = np.zeros(n, dtype=bool)
        for i, meta in enumerate(metas):
            value = meta.get(key, _ABSENT) if meta else _ABSENT
            kind = _kind(value)
            self.kind[i] = kind
            if kind in (NUMBER, STRING):
                self.values[i] = value
            # empty: missing, null, "" or []
            self.empty[i] = kind in (MISSING, NULL) or (kind in (STRING, ARRAY) and not value)


def _kind(value: Any) -> int:
    if value is _ABSENT:
        return MISSING
    if value is None:
        return NULL
    if value is True:
        return TRUE
    if value is False:
        return FALSE
    if isinstance(value, (int, float)):
        return NUMBER
    if isinstance(value, str):
        return STRING
    return ARRAY if isinstance(value, list) else OBJECT


def supported(node: _Node) -> bool:
    """Whether :func:`mask` can evaluate ``node`` (else SQL must)."""
    if isinstance(node, _Pred):
        return node.op in _SUPPORTED
    if isinstance(node, _Not):
        return supported(node.item)
    return all(supported(child) for child in node.items)


def mask(node: _Node, column: Callable[[str], KeyColumn], n: int) -> np.ndarray:
    """Boolean array: which of the ``n`` rows match ``node`` (``supported`` must hold)."""
    if isinstance(node, _Pred):
        return _leaf(node, column(node.key))
    if isinstance(node, _Not):
        return ~mask(node.item, column, n)
    parts = [mask(child, column, n) for child in node.items]
    if isinstance(node, _And):
        return np.logical_and.reduce(parts) if parts else np.ones(n, dtype=bool)
    assert isinstance(node, _Or)
    return np.logical_or.reduce(parts) if parts else np.zeros(n, dtype=bool)


def _leaf(node: _Pred, col: KeyColumn) -> np.ndarray:
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
    compare = operator.eq if op == "eq" else _COMPARE[op]
    out = np.zeros(col.kind.shape[0], dtype=bool)
    rows = np.flatnonzero(col.kind == kind)
    if rows.size:
        out[rows] = np.asarray(compare(col.values[rows], value), dtype=bool)
    return out
