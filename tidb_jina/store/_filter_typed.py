"""Typed forms of a filter column, so comparisons run as NumPy array operations.

A :class:`~tidb_jina.store._filter_numpy.KeyColumn` holds one key's values as Python
objects; comparing them element by element costs about 50 ns a row. Each column is
therefore also kept, on first use, as

* numbers: one float64 array (NaN where the row holds no number). Exact for integers
  below 2**53 in magnitude, where float64 and Python's int comparison agree; a column or
  a filter value from 2**53 on (2**53 + 1 reads as 2**53 in float64) keeps the object
  path;
* strings: dictionary-encoded, the distinct strings sorted by Python's own ordering
  (code points, as SQLite's BINARY collation on UTF-8) and one int32 code per row
  (-1: not a string). ``$eq`` compares codes; a range is a code range, found by
  ``searchsorted`` on the sorted distinct strings.

Booleans are never numbers here (``kind`` keeps them apart). Anything else returns None
and the caller compares the objects as before: the semantics stay exactly those of
``_filter_numpy``.

``$eq`` also has postings (:class:`Postings`): the rows of each value, so that the rows
equal to one value are a slice (``equal_rows``) instead of a pass over every row and a
``flatnonzero`` of the result (at 100,000 rows: about 2 us against 30-55 us, the pass
also evicting what the search had in the CPU's caches). Kept for numbers that are all
integers in int16's range (a tenant number, a group, a year) and for strings, sorted by
NumPy's stable sort (a radix sort on 16-bit keys: about 2 ms at 100,000 rows). Made when
the column is made with the snapshot (``prepare``), else at the second equality on the
column: a column rebuilt after a write and used once does not pay for them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_EXACT = 2.0**53


class Postings:
    """The rows of one kind of a column grouped by value: ``order`` holds their positions
    (ascending within one value: a stable sort), ``keys`` the value of each, sorted
    (int16 numbers, or string codes)."""

    __slots__ = ("keys", "order")

    def __init__(self, keys: np.ndarray, rows: np.ndarray) -> None:
        by_key = np.argsort(keys, kind="stable")  # 16-bit keys: a radix sort
        self.keys = keys[by_key]
        self.order = rows[by_key]
        self.order.flags.writeable = False  # handed out as views: never written through

    def rows(self, key: int) -> np.ndarray:
        """Positions of the rows whose value is ``key``, ascending (a view)."""
        # the key as the keys' own type: a Python int would make NumPy convert every key
        # to int64 first (20 us at 100,000 rows, against 1 us)
        typed_key = self.keys.dtype.type(key)
        lo = int(self.keys.searchsorted(typed_key, side="left"))
        hi = int(self.keys.searchsorted(typed_key, side="right"))
        return self.order[lo:hi]

    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.order.nbytes)


class Typed:
    """The typed arrays of one column (made lazily, per JSON kind)."""

    __slots__ = ("equalities", "number_rows", "numbers", "string_rows", "strings")

    def __init__(self) -> None:
        self.numbers: np.ndarray | bool | None = False  # False: not made yet
        self.strings: tuple[np.ndarray, np.ndarray] | bool | None = False
        self.number_rows: Postings | bool | None = False  # None: numbers not all int16
        self.string_rows: Postings | bool | None = False
        self.equalities = 0  # ``equal_rows`` calls: postings from the second one on

    def made(self) -> int:
        """How many of the forms are made (tried, even when they cannot answer): it
        grows when a filter adds to the column cache (the caller then keeps the cache
        within its bound: ``_embedded.keep_bound``)."""
        forms = (self.numbers, self.strings, self.number_rows, self.string_rows)
        return sum(form is not False for form in forms)  # ``is``: arrays have no truth

    def nbytes(self) -> int:
        size = 0
        if isinstance(self.numbers, np.ndarray):
            size += self.numbers.nbytes
        if isinstance(self.strings, tuple):
            uniques, codes = self.strings
            size += codes.nbytes + 8 * uniques.size + sum(len(s) + 49 for s in uniques)
        for postings in (self.number_rows, self.string_rows):
            if isinstance(postings, Postings):
                size += postings.nbytes()
        return size


def compare(
    typed: Typed,
    kind_rows: np.ndarray | None,
    values: np.ndarray,
    op: str,
    value: Any,
    is_str: bool,
) -> np.ndarray | None:
    """The mask of ``op value`` over the column (rows of kind ``kind_rows``), or None
    when the typed form cannot answer exactly. ``kind_rows`` may be None once the typed
    form of that kind is built (it is only read to build it)."""
    if is_str:
        if typed.strings is False:
            assert kind_rows is not None
            typed.strings = _strings(kind_rows, values)
        if not isinstance(typed.strings, tuple):
            return None
        return _compare_codes(typed.strings, op, value)
    if not isinstance(value, (int, float)) or abs(value) >= _EXACT:
        return None
    if typed.numbers is False:
        assert kind_rows is not None
        typed.numbers = _numbers(kind_rows, values)
    if not isinstance(typed.numbers, np.ndarray):
        return None
    numbers = typed.numbers
    target = float(value)
    if op == "eq":
        return numbers == target
    if op == "gt":
        return numbers > target
    if op == "gte":
        return numbers >= target
    if op == "lt":
        return numbers < target
    if op == "lte":
        return numbers <= target
    return None


def member(
    typed: Typed, kind_rows: np.ndarray, values: np.ndarray, wanted: set[Any], is_str: bool
) -> np.ndarray | None:
    """The mask of "the row's value is in ``wanted``" (all strings, or all non-bool
    numbers) over the column, or None when the typed form cannot answer exactly."""
    if is_str:
        if typed.strings is False:
            typed.strings = _strings(kind_rows, values)
        if not isinstance(typed.strings, tuple):
            return None
        uniques, codes = typed.strings
        targets = np.empty(len(wanted), dtype=object)
        targets[:] = list(wanted)
        at = np.searchsorted(uniques, targets, side="left")
        hit = at < uniques.size
        hit[hit] = uniques[at[hit]] == targets[hit]
        found = at[hit]
        if not found.size:
            return np.zeros(codes.shape[0], dtype=bool)
        return np.isin(codes, found.astype(codes.dtype))
    if not all(isinstance(v, (int, float)) and abs(v) < _EXACT for v in wanted):
        return None
    if typed.numbers is False:
        typed.numbers = _numbers(kind_rows, values)
    if not isinstance(typed.numbers, np.ndarray):
        return None
    targets = np.fromiter((float(v) for v in wanted), dtype=np.float64, count=len(wanted))
    return np.isin(typed.numbers, targets)  # NaN (no number) is in no target set


def equal_rows(
    typed: Typed, kind_rows: np.ndarray | None, values: np.ndarray, value: Any, is_str: bool
) -> np.ndarray | None:
    """Positions of the rows equal to ``value`` (ascending), from the column's postings;
    None when they cannot answer (not made yet, numbers beyond int16, a value that is not
    a number or a string): then ``compare``'s mask. The same rows as ``compare(...,
    "eq", value, ...)`` marks. ``kind_rows`` as for ``compare``."""
    typed.equalities += 1
    if is_str:
        if typed.strings is False:
            if kind_rows is None:
                return None
            typed.strings = _strings(kind_rows, values)
        if not isinstance(typed.strings, tuple):
            return None
        uniques, codes = typed.strings
        if typed.string_rows is False and typed.equalities > 1:
            typed.string_rows = _string_postings(codes, uniques.size)
        if not isinstance(typed.string_rows, Postings):
            return None
        left = int(np.searchsorted(uniques, value, side="left"))
        if left == uniques.size or uniques[left] != value:
            return _NO_ROWS
        return typed.string_rows.rows(left)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) >= _EXACT:
        return None
    if typed.numbers is False:
        if kind_rows is None:
            return None
        typed.numbers = _numbers(kind_rows, values)
    if not isinstance(typed.numbers, np.ndarray):
        return None
    if typed.number_rows is False and typed.equalities > 1:
        typed.number_rows = _number_postings(typed.numbers)
    if not isinstance(typed.number_rows, Postings):
        return None
    target = float(value)
    if not math.isfinite(target) or target != math.floor(target) or abs(target) > _INT16:
        return _NO_ROWS  # every number of the column is an integer within int16's range
    return typed.number_rows.rows(int(target))


_INT16 = 2**15 - 1  # keys in -32767..32767 (one value short of int16's range)
_NO_ROWS = np.empty(0, dtype=np.intp)
_NO_ROWS.flags.writeable = False


def _number_postings(numbers: np.ndarray) -> Postings | None:
    """Postings of a column whose numbers are all integers in -32767..32767, else None."""
    rows = np.flatnonzero(~np.isnan(numbers))
    picked = numbers[rows]
    if picked.size and not (
        float(picked.min()) >= -_INT16
        and float(picked.max()) <= _INT16
        and bool(np.all(picked == np.trunc(picked)))
    ):
        return None
    return Postings(picked.astype(np.int16), rows)


def _string_postings(codes: np.ndarray, distinct: int) -> Postings:
    rows = np.flatnonzero(codes >= 0)
    keys = codes[rows]
    return Postings(keys.astype(np.int16) if distinct <= _INT16 else keys, rows)


def prepare(typed: Typed, numbers: np.ndarray, strings: np.ndarray, values: np.ndarray) -> None:
    """Make the typed forms and their postings now (``numbers`` / ``strings``: masks of
    the rows of each kind), so that no filter pays for them later."""
    if numbers.any():
        typed.numbers = _numbers(np.flatnonzero(numbers), values)
        if isinstance(typed.numbers, np.ndarray):
            typed.number_rows = _number_postings(typed.numbers)
    if strings.any():
        typed.strings = _strings(np.flatnonzero(strings), values)
        typed.string_rows = _string_postings(typed.strings[1], typed.strings[0].size)


def _numbers(rows: np.ndarray, values: np.ndarray) -> np.ndarray | None:
    out = np.full(values.shape[0], np.nan)
    picked = values[rows]
    if picked.size:
        as_float = picked.astype(np.float64)
        big = np.abs(as_float) >= _EXACT
        if big.any() and np.isfinite(as_float[big]).any():
            return None  # big integers: float64 rounds them (2**53 + 1 reads as 2**53)
        # (+-inf, from a number beyond float64 such as 1e400, compares as Python's does)
        out[rows] = as_float
    return out


def _strings(rows: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes = np.full(values.shape[0], -1, dtype=np.int32)
    picked = values[rows]
    if picked.size:
        uniques, inverse = np.unique(picked, return_inverse=True)  # Python ordering
        codes[rows] = inverse.reshape(-1)
    else:
        uniques = np.empty(0, dtype=object)
    return uniques, codes


def _compare_codes(strings: tuple[np.ndarray, np.ndarray], op: str, value: str) -> np.ndarray:
    uniques, codes = strings
    left = int(np.searchsorted(uniques, value, side="left"))
    right = int(np.searchsorted(uniques, value, side="right"))
    is_str = codes >= 0
    if op == "eq":
        return (codes == left) if right > left else np.zeros(codes.shape[0], dtype=bool)
    if op == "gt":
        return codes >= right
    if op == "gte":
        return codes >= left
    if op == "lt":
        return is_str & (codes < left)
    if op == "lte":
        return is_str & (codes < right)
    raise AssertionError(op)
