"""Backward-compatible names for the filter modules (to be removed once nothing imports it).

The language and its tree live in :mod:`tidb_jina.store._filter_tree`, the SQL compiler
in :mod:`tidb_jina.store._filter_sql`, the NumPy evaluator in
:mod:`tidb_jina.store._filter_numpy`. Only :func:`compile_filter` here still accepts a
dict (it parses, then compiles); the real one takes the parsed :class:`Filter`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from tidb_jina.store import _filter_sql
from tidb_jina.store._filter_sql import json_path
from tidb_jina.store._filter_tree import (
    FIELD_OPERATORS,
    LOGICAL_OPERATORS,
    OPERATORS,
    And,
    Filter,
    Node,
    Not,
    Or,
    Pred,
    check_metadata_key,
    escape_like,
    parse_filter,
    validate_filter,
)

__all__ = [
    "FIELD_OPERATORS",
    "LOGICAL_OPERATORS",
    "OPERATORS",
    "Filter",
    "check_metadata_key",
    "compile_filter",
    "escape_like",
    "json_path",
    "parse_filter",
    "validate_filter",
]

# The old private node names. ``_Node`` also admits a Filter: ``parse_filter`` now
# returns one, and ``_filter_numpy`` takes either.
_And, _Or, _Not, _Pred = And, Or, Not, Pred
_Node = Node | Filter


def compile_filter(
    filter: Mapping[str, Any] | Filter | None,
    meta: sa.ColumnElement[Any],
    dialect_name: str,
    indexed: Mapping[str, sa.ColumnElement[Any]] | None = None,
) -> sa.ColumnElement[bool] | None:
    """Parse ``filter`` unless it is a parsed Filter already, then compile it to SQL."""
    return _filter_sql.compile_filter(parse_filter(filter), meta, dialect_name, indexed)
