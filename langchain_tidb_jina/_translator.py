"""``TiDBTranslator``: LangChain's structured queries in tidb-jina's filter language.

``SelfQueryRetriever`` (langchain-classic) asks an LLM to write a ``StructuredQuery``
(``and(eq("genre", "scifi"), gt("year", 2000))``) and hands it to a translator, which
turns it into the store's search arguments. Every ``Comparator`` and ``Operator`` that
langchain-core defines has a counterpart here:

=============== ==================================================================
LangChain       tidb-jina filter
=============== ==================================================================
eq ne gt gte    ``$eq $ne $gt $gte $lt $lte`` (numbers with numbers, strings with
lt lte          strings, as everywhere in the filter language)
in / nin        ``$in`` / ``$nin`` (a single value becomes a one-element list)
like            ``$like``: a value with ``%`` is a LIKE pattern as written; any other
                value matches as a substring (``%value%``, its ``%`` / ``_`` escaped)
contain         an array field holding the value (``$contains``; a list value:
                ``$all``), or a string field containing it as a substring
and / or        ``$and`` / ``$or``
not             ``$not`` (several arguments: ``$nor``, none of them matches)
=============== ==================================================================

``SelfQueryRetriever`` *replaces* a ``filter`` in its ``search_kwargs`` with the generated
one, so a restriction put there (a tenant, an owner) silently stops applying whenever
the LLM writes a filter. ``TiDBTranslator(base_filter={...})`` ANDs the restriction with
every generated filter instead, and applies it alone when there is none.

Date values the query constructor writes (``{"date": "2024-01-31", "type": "date"}``),
and Python ``date`` / ``datetime`` objects, become their ISO text, which compares
correctly with ISO dates stored as strings (in the same format).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from langchain_core.structured_query import (
    Comparator,
    Comparison,
    Operation,
    Operator,
    StructuredQuery,
    Visitor,
)

from tidb_jina import InvalidFilterError
from tidb_jina.store import escape_like, validate_filter

__all__ = ["TiDBTranslator"]

_SIMPLE = {
    Comparator.EQ: "$eq",
    Comparator.NE: "$ne",
    Comparator.GT: "$gt",
    Comparator.GTE: "$gte",
    Comparator.LT: "$lt",
    Comparator.LTE: "$lte",
}


class TiDBTranslator(Visitor):
    """Translate ``langchain_core.structured_query`` objects into ``TiDBVectorStore``
    search arguments (``(query, {"filter": {...}})``).

    Use it with langchain-classic's ``SelfQueryRetriever.from_llm(...,
    structured_query_translator=TiDBTranslator())``.
    """

    allowed_comparators = tuple(Comparator)
    """Every comparator langchain-core defines."""
    allowed_operators = tuple(Operator)
    """Every logical operator langchain-core defines."""

    def __init__(self, base_filter: Mapping[str, Any] | None = None) -> None:
        """``base_filter``: a filter ANDed with every generated one (and used alone when
        the LLM writes none), e.g. ``{"tenant": "acme"}``. Put restrictions here, not in
        ``SelfQueryRetriever(search_kwargs={"filter": ...})``: LangChain replaces that
        filter with the generated one whenever the LLM writes a filter."""
        validate_filter(base_filter)
        self.base_filter = dict(base_filter) if base_filter else None

    def visit_operation(self, operation: Operation) -> dict[str, Any]:
        self._validate_func(operation.operator)
        args = [arg.accept(self) for arg in operation.arguments]
        if not args:
            raise InvalidFilterError(f"{operation.operator.value}() needs at least one condition")
        if operation.operator is Operator.NOT:
            return {"$not": args[0]} if len(args) == 1 else {"$nor": args}
        return {f"${operation.operator.value}": args}

    def visit_comparison(self, comparison: Comparison) -> dict[str, Any]:
        comparator = comparison.comparator
        self._validate_func(comparator)
        field = _field(comparison.attribute)
        value = _plain(comparison.value)
        if comparator in _SIMPLE:
            return {field: {_SIMPLE[comparator]: value}}
        if comparator in (Comparator.IN, Comparator.NIN):
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            return {field: {f"${comparator.value}": values}}
        if comparator is Comparator.LIKE:
            return {field: {"$like": _like_pattern(value)}}
        # CONTAIN: an array holding the value, or a string containing it.
        if isinstance(value, (list, tuple)):
            return {field: {"$all": list(value)}}
        if isinstance(value, str):
            return {
                "$or": [
                    {field: {"$contains": value}},
                    {field: {"$like": f"%{escape_like(value)}%"}},
                ]
            }
        return {field: {"$contains": value}}

    def visit_structured_query(
        self, structured_query: StructuredQuery
    ) -> tuple[str, dict[str, Any]]:
        query = structured_query.query
        generated = (
            None if structured_query.filter is None else structured_query.filter.accept(self)
        )
        filters = [f for f in (self.base_filter, generated) if f]
        if not filters:
            return query, {}
        return query, {"filter": filters[0] if len(filters) == 1 else {"$and": filters}}


def _plain(value: Any) -> Any:
    """The query constructor's typed values (dates) and Python dates as ISO text.

    A typed value without its text (``{"type": "date"}``) is an error: read as None it
    would become ``$eq None``, which matches every record lacking the field.
    """
    if isinstance(value, Mapping) and value.get("type") in ("date", "datetime"):
        kind = value["type"]
        text = value.get(kind)
        if not isinstance(text, str):
            raise InvalidFilterError(
                f"a {kind} value needs its ISO text, e.g. {{'type': '{kind}', '{kind}': "
                f"'2024-01-31'}}; got {dict(value)!r}"
            )
        return text
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _field(attribute: str) -> str:
    if attribute.startswith("$"):
        raise InvalidFilterError(
            f"attribute {attribute!r}: names starting with '$' are filter operators, not "
            "metadata fields; rename the metadata key (self-query cannot filter on it)"
        )
    return attribute


def _like_pattern(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidFilterError(f"like() compares text; got {value!r}, use eq() for other values")
    return value if "%" in value else f"%{escape_like(value)}%"
