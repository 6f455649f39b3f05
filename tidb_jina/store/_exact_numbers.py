"""Exact number comparisons on TiDB, whose JSON compares integers with doubles loosely.

TiDB's ``CompareBinaryJSON`` (pingcap/tidb ``pkg/types/json_binary_functions.go``)
compares an INTEGER / UNSIGNED INTEGER with a DOUBLE as two float64 values that are
*equal when they differ by less than 1e-8* (``compareFloat64PrecisionLoss``). So
``{"n": 1}`` would equal a filter ``1.000000001``, and ``2**53 + 1`` would equal
``2.0**53``: a filter matching rows it must not. ``MEMBER OF`` uses the same comparison.
Integers with integers and doubles with doubles compare exactly.

So a number is never compared across those kinds. The filter value becomes one *bound*
for stored integers and one for stored doubles, chosen so that the same-kind, exact
comparison gives Python's (and SQLite's) answer for ``stored <op> value``:

* a float ``f`` against stored integers ``i``: ``i > f`` iff ``i > floor(f)``,
  ``i >= f`` iff ``i >= ceil(f)`` (likewise ``<`` / ``<=``), ``i == f`` only when ``f``
  is integral;
* an integer ``n`` against stored doubles ``d``: ``float(n)`` when it is exact, else the
  nearest double ``g`` (no double lies strictly between ``n`` and ``g``, so ``d > n`` iff
  ``d >= g`` when ``g > n``), and ``d == n`` never.

A bound is ``(op, value)`` for the comparison to run, or True / False when every / no
stored number of that kind satisfies it.
"""

from __future__ import annotations

import math

__all__ = ["Bound", "float_bound", "int_bound"]

Bound = tuple[str, int] | tuple[str, float] | bool

# Integers TiDB's JSON holds exactly: INTEGER (signed 64-bit) and UNSIGNED INTEGER.
_STORED_MIN, _STORED_MAX = -(2**63), 2**64 - 1


def int_bound(op: str, value: int | float) -> Bound:
    """The bound that makes ``stored_int <op'> bound`` equal ``stored_int <op> value``."""
    if not isinstance(value, float):
        return op, value
    if op == "eq":
        if not value.is_integer():
            return False
        bound = int(value)
    elif op in ("gt", "lte"):
        bound = math.floor(value)
    else:  # gte, lt
        bound = math.ceil(value)
    if bound > _STORED_MAX:  # above every stored integer
        return op in ("lt", "lte")
    if bound < _STORED_MIN:  # below every stored integer
        return op in ("gt", "gte")
    return op, bound


# The nearest double g of an integer n, when g != n: comparisons with n become these
# comparisons with g (g above n: d > n iff d >= g; g below n: d < n iff d <= g).
_G_ABOVE: dict[str, str | bool] = {
    "eq": False,
    "gt": "gte",
    "gte": "gte",
    "lt": "lt",
    "lte": "lt",
}
_G_BELOW: dict[str, str | bool] = {
    "eq": False,
    "gt": "gt",
    "gte": "gt",
    "lt": "lte",
    "lte": "lte",
}


def float_bound(op: str, value: int | float) -> Bound:
    """The bound that makes ``stored_double <op'> bound`` equal ``stored_double <op> value``."""
    if isinstance(value, float):
        return op, value
    nearest = float(value)  # the filter language keeps integers within 64 bits: finite
    if nearest == value:  # exact (Python compares int and float exactly)
        return op, nearest
    new_op = (_G_ABOVE if nearest > value else _G_BELOW)[op]
    if new_op is False:
        return False
    return str(new_op), nearest
