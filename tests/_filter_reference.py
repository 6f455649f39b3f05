"""A pure-Python reference evaluator of the metadata filter language (no SQL).

Written independently of ``tidb_jina.store._filter_tree`` from the semantics table in that
module's docstring, so the SQL compiled for each engine can be checked against it.
Assumes the filter is valid (validation is tested separately).
"""

from __future__ import annotations

import re
from typing import Any

_MISSING = object()


def matches(filter: dict[str, Any] | None, metadata: dict[str, Any]) -> bool:
    """True if ``metadata`` (a decoded JSON object) matches ``filter``."""
    if not filter:
        return True
    return all(_entry(key, value, metadata) for key, value in filter.items())


def _entry(key: str, value: Any, metadata: dict[str, Any]) -> bool:
    if key == "$and":
        return all(matches(f, metadata) for f in value)
    if key == "$or":
        return any(matches(f, metadata) for f in value)
    if key == "$nor":
        return not any(matches(f, metadata) for f in value)
    if key == "$not":
        return not matches(value, metadata)
    actual = metadata.get(key, _MISSING)
    if isinstance(value, dict):
        return _operators(value, actual)
    return _eq(actual, value)


def _operators(ops: dict[str, Any], actual: Any) -> bool:
    return all(_OPS[op](actual, arg) for op, arg in ops.items())


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _eq(actual: Any, value: Any) -> bool:
    if value is None:
        return actual is _MISSING or actual is None
    if actual is _MISSING:
        return False
    return _kind(actual) == _kind(value) and actual == value


def _ordered(actual: Any, value: Any, compare: Any) -> bool:
    if actual is _MISSING or _kind(actual) != _kind(value):
        return False
    return bool(compare(actual, value))


def _like_regex(pattern: str, *, fold: bool) -> re.Pattern[str]:
    out: list[str] = []
    chars = iter(pattern.lower() if fold else pattern)
    for ch in chars:
        if ch == "\\":
            out.append(re.escape(next(chars)))
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _like(actual: Any, pattern: str, *, fold: bool) -> bool:
    if not isinstance(actual, str):
        return False
    text = actual.lower() if fold else actual
    return _like_regex(pattern, fold=fold).fullmatch(text) is not None


def _has(actual: Any, value: Any) -> bool:
    return any(_eq(element, value) for element in actual)


def _any(actual: Any, values: list[Any]) -> bool:
    return isinstance(actual, list) and any(_has(actual, v) for v in values)


def _all(actual: Any, values: list[Any]) -> bool:
    return isinstance(actual, list) and all(_has(actual, v) for v in values)


def _empty(actual: Any) -> bool:
    return actual is _MISSING or actual is None or actual == "" or actual == []


_OPS: dict[str, Any] = {
    "$eq": _eq,
    "$ne": lambda a, v: not _eq(a, v),
    "$gt": lambda a, v: _ordered(a, v, lambda x, y: x > y),
    "$gte": lambda a, v: _ordered(a, v, lambda x, y: x >= y),
    "$lt": lambda a, v: _ordered(a, v, lambda x, y: x < y),
    "$lte": lambda a, v: _ordered(a, v, lambda x, y: x <= y),
    "$between": lambda a, v: (
        _ordered(a, v[0], lambda x, y: x >= y) and _ordered(a, v[1], lambda x, y: x <= y)
    ),
    "$in": lambda a, v: any(_eq(a, x) for x in v),
    "$nin": lambda a, v: not any(_eq(a, x) for x in v),
    "$exists": lambda a, v: (a is not _MISSING) == v,
    "$like": lambda a, v: _like(a, v, fold=False),
    "$ilike": lambda a, v: _like(a, v, fold=True),
    "$contains": lambda a, v: _any(a, [v]),
    "$any": _any,
    "$all": _all,
    "$empty": lambda a, v: _empty(a) == v,
    "$not": lambda a, v: not _operators(v, a),
}


# --- LlamaIndex MetadataFilters -------------------------------------------------------
# Written from LlamaIndex's group semantics (AND: all, OR: any, NOT: none of the items)
# and the operator table in llama_index_tidb_jina._filters, with the empty groups
# following the same identities: an empty OR matches nothing, an empty AND or NOT
# matches everything.

_LI_OPS = {
    "==": "$eq",
    "!=": "$ne",
    ">": "$gt",
    ">=": "$gte",
    "<": "$lt",
    "<=": "$lte",
    "in": "$in",
    "nin": "$nin",
    "any": "$any",
    "all": "$all",
    "contains": "$contains",
}


def li_matches(filters: Any, metadata: dict[str, Any]) -> bool:
    """True if ``metadata`` matches a LlamaIndex ``MetadataFilters`` (duck-typed)."""
    results = [_li_item(item, metadata) for item in filters.filters]
    condition = str(getattr(filters.condition, "value", filters.condition) or "and")
    if condition == "and":
        return all(results)
    if condition == "or":
        return any(results)
    assert condition == "not", condition
    return not any(results)


def _li_item(item: Any, metadata: dict[str, Any]) -> bool:
    if hasattr(item, "filters"):
        return li_matches(item, metadata)
    op = str(getattr(item.operator, "value", item.operator))
    actual = metadata.get(item.key, _MISSING)
    if op == "text_match":
        return isinstance(actual, str) and item.value in actual
    if op == "text_match_insensitive":
        return isinstance(actual, str) and item.value.lower() in actual.lower()
    if op == "is_empty":
        return _empty(actual)
    return bool(_OPS[_LI_OPS[op]](actual, item.value))
