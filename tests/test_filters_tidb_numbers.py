"""Review of issue 14: numbers compare exactly in the TiDB SQL too.

TiDB's JSON comparison (pingcap/tidb ``pkg/types/json_binary_functions.go``,
``CompareBinaryJSON``) treats an INTEGER and a DOUBLE as equal when they differ by less
than 1e-8 (``compareFloat64PrecisionLoss``), and converts the integer to float64 first,
so ``{"n": 1}`` equalled a filter ``1.000000001`` and ``2**53 + 1`` equalled ``2.0**53``.
``MEMBER OF`` uses the same comparison. The compiler now compares stored integers with
an integer bound and stored doubles with a double bound (``_exact_numbers``); these
tests check the bounds against Python's exact comparisons and the SQL that uses them.
"""

from __future__ import annotations

import json
import math
import operator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects.mysql import pymysql

from tidb_jina.store._exact_numbers import float_bound, int_bound
from tidb_jina.store._filter_sql import MEMBERSHIP_MIN, compile_filter
from tidb_jina.store._filter_tree import parse_filter

OPS = {
    "eq": operator.eq,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
EDGE_INTS = [
    0,
    1,
    -1,
    2**53 - 1,
    2**53,
    2**53 + 1,
    2**53 + 2,
    -(2**53) - 1,
    2**62 + 1,
    2**63 - 1,
    -(2**63),
    -(2**63) + 1,
    2**63,
    2**64 - 1,
]
EDGE_FLOATS = [
    0.0,
    -0.0,
    0.5,
    -0.5,
    1.0,
    1.000000001,
    0.999999999,
    -1.5,
    float(2**53),
    float(2**53) + 2,
    float(2**63),
    float(-(2**63)),
    float(2**64),
    1e300,
    -1e300,
    5e-324,
]


def _holds(bound: Any, stored: int | float, cast: type) -> bool:
    """``stored <op'> bound`` compared the way TiDB compares same-kind JSON numbers."""
    if isinstance(bound, bool):
        return bound
    op, value = bound
    assert type(value) is cast, bound  # never a cross-kind comparison
    return bool(OPS[op](stored, value))


@pytest.mark.parametrize("op", OPS)
def test_integer_bounds_give_the_exact_answer_at_the_edges(op):
    for stored in EDGE_INTS:
        for value in EDGE_FLOATS + EDGE_INTS[:12]:  # filter integers are signed 64-bit
            want = OPS[op](stored, value)
            assert _holds(int_bound(op, value), stored, int) == want, (stored, op, value)


@pytest.mark.parametrize("op", OPS)
def test_double_bounds_give_the_exact_answer_at_the_edges(op):
    for stored in EDGE_FLOATS + [float(i) for i in EDGE_INTS]:
        for value in EDGE_INTS[:12] + EDGE_FLOATS:
            want = OPS[op](stored, value)
            assert _holds(float_bound(op, value), stored, float) == want, (stored, op, value)


near = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from(EDGE_INTS[:12]).flatmap(lambda n: st.integers(n - 3, n + 3)),
)
finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(list(OPS)), near, st.one_of(finite, near.map(float)))
def test_integer_bounds_are_exact(op, stored, value):
    assert _holds(int_bound(op, value), stored, int) == OPS[op](stored, value)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(list(OPS)), st.one_of(finite, near.map(float)), near)
def test_double_bounds_are_exact(op, stored, value):
    if not -(2**63) <= value <= 2**63 - 1:
        return
    assert _holds(float_bound(op, value), stored, float) == OPS[op](stored, value)


# --- the SQL ----------------------------------------------------------------------------


def _mysql(filter: dict[str, Any]) -> tuple[str, list[Any]]:
    table = sa.table("t", sa.column("id"), sa.column("meta", sa.JSON()))
    where = compile_filter(parse_filter(filter), table.c.meta, "mysql")
    assert where is not None
    compiled = sa.select(table.c.id).where(where).compile(dialect=pymysql.dialect())
    return str(compiled), list(compiled.params.values())


INT_TYPES = "IN ('INTEGER', 'UNSIGNED INTEGER')"
DOUBLE_TYPES = "IN ('DOUBLE', 'DECIMAL')"


def test_a_float_is_compared_with_integers_as_an_integer_bound():
    sql, params = _mysql({"n": {"$gt": 1.000000001}})
    assert INT_TYPES in sql and DOUBLE_TYPES in sql
    assert "1" in params and "1.000000001" in params  # floor for integers, as is for doubles
    assert "'INTEGER', 'UNSIGNED INTEGER', 'DOUBLE'" not in sql  # never one mixed guard


def test_a_non_integral_float_never_equals_a_stored_integer():
    sql, params = _mysql({"n": 1.000000001})
    assert INT_TYPES not in sql and DOUBLE_TYPES in sql
    assert params == ['$."n"', "1.000000001"]


def test_an_integer_no_double_can_equal_is_only_compared_with_integers():
    sql, params = _mysql({"n": 2**53 + 1})
    assert INT_TYPES in sql and DOUBLE_TYPES not in sql
    assert params == ['$."n"', str(2**53 + 1)]
    _, params = _mysql({"n": {"$gte": 2**53 + 1}})  # doubles: > 2.0**53, the double below
    assert str(2**53 + 1) in params and "9007199254740992.0" in params


def test_a_large_in_list_is_one_exact_member_of_per_kind():
    values = [1, 1.5, 2**53 + 1, 2.0, *range(100, 100 + MEMBERSHIP_MIN)]
    sql, params = _mysql({"n": {"$in": values}})
    assert sql.count("MEMBER OF") == 2
    arrays = [json.loads(p) for p in params if p.startswith("[")]
    ints, doubles = sorted(arrays, key=lambda a: type(a[0]) is float)
    assert all(type(v) is int for v in ints) and all(type(v) is float for v in doubles)
    assert 2**53 + 1 in ints and 2 in ints and 1.5 not in ints  # 1.5 equals no integer
    assert 1.5 in doubles and 2**53 + 1 not in doubles  # 2**53 + 1 equals no double
    assert not any(math.isnan(v) for v in doubles)
