"""LlamaIndex ``MetadataFilters`` -> the core's parsed filter tree.

Pure translation, no SQL: the core (``tidb_jina.store._filter_tree``) owns the language
and its semantics. Groups become ``And`` / ``Or`` / ``Not`` nodes directly; each leaf is
the core operator below, validated by the core's parser once. The result is a ``Filter``
that the table uses as it is, so a LlamaIndex query is parsed once.

=========================  =====================================
LlamaIndex                 core filter operator
=========================  =====================================
EQ / NE                    ``$eq`` / ``$ne``
GT / GTE / LT / LTE        ``$gt`` / ``$gte`` / ``$lt`` / ``$lte``
IN / NIN                   ``$in`` / ``$nin``
ANY / ALL                  ``$any`` / ``$all`` (array fields)
CONTAINS                   ``$contains`` (array field holds the value)
TEXT_MATCH                 ``$like "%<escaped value>%"`` (substring)
TEXT_MATCH_INSENSITIVE     ``$ilike "%<escaped value>%"``
IS_EMPTY                   ``$empty: true`` (missing, null, "" or [])
AND / OR                   ``$and`` / ``$or``
NOT                        ``$nor`` (none of the filters match, as llama-index-core)
nested MetadataFilters     nested ``$and`` / ``$or`` / ``$nor``
=========================  =====================================

Empty groups follow the logical identities, never "match everything" by accident: an
empty OR group matches nothing (an empty tenant allow-list nested in a filter selects,
and deletes, no row), an empty AND group adds no condition, an empty NOT group (none of
nothing) excludes nothing. At the top level, ``MetadataFilters(filters=[])`` with the
default AND (what llama-index-core's auto-retriever and memory blocks build) sets no
condition; with OR it matches nothing. Groups nest at most ``MAX_FILTER_DEPTH`` deep.

Differences from llama-index-core's reference (``build_metadata_filter_fn``), all on
ill-typed data, chosen because they are what a database can index and never widen
results: values of another JSON type never match (``True != 1``; ``GT 5`` does not match
``"10"`` instead of raising ``TypeError``); CONTAINS / ANY / ALL are array operators (the
reference also does substring tests on strings); ``EQ None`` matches a missing or null
key and ``NE None`` a present non-null one (the reference matches nothing / everything);
nested ``MetadataFilters`` work (the reference raises).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from tidb_jina import InvalidFilterError
from tidb_jina.store import Filter, escape_like, parse_filter
from tidb_jina.store._filter_tree import (  # the tree's node types: no public names yet
    MAX_FILTER_DEPTH,
    And,
    Node,
    Not,
    Or,
    sets_no_condition,
)

__all__ = ["SUPPORTED_OPERATORS", "and_filters", "to_core_filter"]

_OPERATORS: dict[FilterOperator, str] = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
    FilterOperator.ANY: "$any",
    FilterOperator.ALL: "$all",
    FilterOperator.CONTAINS: "$contains",
}
_LIKE: dict[FilterOperator, str] = {
    FilterOperator.TEXT_MATCH: "$like",
    FilterOperator.TEXT_MATCH_INSENSITIVE: "$ilike",
}
_CONDITIONS: dict[FilterCondition, Callable[[tuple[Node, ...]], Node]] = {
    FilterCondition.AND: And,
    FilterCondition.OR: Or,
    # NOT: none of the filters match (``$nor``), as llama-index-core.
    FilterCondition.NOT: lambda items: Not(Or(items)),
}
SUPPORTED_OPERATORS: tuple[FilterOperator, ...] = (
    *_OPERATORS,
    *_LIKE,
    FilterOperator.IS_EMPTY,
)


def to_core_filter(filters: MetadataFilters | None) -> Filter | None:
    """Translate ``filters`` (nested to any depth) into the core's parsed filter.

    Returns None for None or an empty ``MetadataFilters`` (no restriction). Raises
    ``tidb_jina.InvalidFilterError`` for an unknown operator or condition, or a value the
    core operator does not take.
    """
    if filters is None:
        return None
    node = _group(filters, 1)
    if sets_no_condition(node):
        return None  # an empty AND (or only empty AND / NOT groups): no condition
    return Filter(node)


def and_filters(*filters: Filter | Mapping[str, Any] | None) -> Filter | None:
    """AND together filters (parsed, or core filter dicts), skipping empty ones.

    None when nothing is left. A ``Filter`` is taken as it is; a dict is parsed here.
    """
    parts = [f for f in map(parse_filter, filters) if f is not None]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else Filter(And(tuple(p.node for p in parts)))


def _group(filters: MetadataFilters, depth: int) -> Node:
    if depth > MAX_FILTER_DEPTH:
        raise InvalidFilterError(
            f"MetadataFilters nest more than {MAX_FILTER_DEPTH} groups deep; flatten them"
        )
    condition = filters.condition or FilterCondition.AND
    try:
        combine = _CONDITIONS[FilterCondition(condition)]
    except (KeyError, ValueError):
        raise InvalidFilterError(
            f"unknown filter condition {condition!r}; use one of: and, or, not"
        ) from None
    # An empty group is its condition's identity: And(()) holds, Or(()) matches
    # nothing, Not(Or(())) holds. Never And(()) for every condition: under OR that
    # would turn an empty allow-list into "every row".
    return combine(tuple(_item(item, depth) for item in filters.filters))


def _item(item: Any, depth: int) -> Node:
    if isinstance(item, MetadataFilters):
        return _group(item, depth + 1)
    if isinstance(item, MetadataFilter):
        return _leaf(item.key, item.operator, item.value)
    # ExactMatchFilter (legacy) and look-alikes: key/value, equality.
    if hasattr(item, "key") and hasattr(item, "value"):
        return _leaf(item.key, getattr(item, "operator", FilterOperator.EQ), item.value)
    raise InvalidFilterError(
        f"expected MetadataFilter or MetadataFilters, got {type(item).__name__} {item!r}"
    )


def _leaf(key: str, operator: Any, value: Any) -> Node:
    op = _operator(operator)
    if op in _LIKE:
        if not isinstance(value, str):
            raise InvalidFilterError(
                f"{op.name} on {key!r} takes a string to search for, got {value!r}"
            )
        return _field(key, _LIKE[op], f"%{escape_like(value)}%")
    if op is FilterOperator.IS_EMPTY:
        return _field(key, "$empty", True)
    if op in (FilterOperator.IN, FilterOperator.NIN, FilterOperator.ANY, FilterOperator.ALL):
        value = _as_list(key, op, value)
    return _field(key, _OPERATORS[op], value)


def _field(key: str, op: str, value: Any) -> Node:
    """The core's tree for ``{key: {op: value}}``: its parser validates key and value."""
    parsed = parse_filter({key: {op: value}})
    return And(()) if parsed is None else parsed.node  # None: no condition ($nin: [])


def _operator(operator: Any) -> FilterOperator:
    try:
        op = FilterOperator(operator)
    except ValueError:
        op = None
    if op is None or op not in SUPPORTED_OPERATORS:
        valid = ", ".join(o.name for o in SUPPORTED_OPERATORS)
        raise InvalidFilterError(f"unknown filter operator {operator!r}; valid operators: {valid}")
    return op


def _as_list(key: str, op: FilterOperator, value: Any) -> list[Any]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    raise InvalidFilterError(
        f"{op.name} on {key!r} takes a list of values, got {value!r}; use EQ for one value"
    )
