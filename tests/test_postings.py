"""Equality postings (``_filter_typed.Postings``) give exactly the rows the mask gives.

A ``$eq`` on a number or a string takes its rows from the column's postings (rows grouped
by value) instead of a pass over every row. A filter is an access-control boundary: one
row too many is a leak. Every column below is checked value by value against
``np.flatnonzero(mask(...) & alive)``, the way every other filter is evaluated, and a
store's answers against the general path's and the pure-Python reference's.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from _filter_reference import matches

from tidb_jina.store import VectorTable, _filter_numpy
from tidb_jina.store._filter_numpy import KeyColumn, kind_of, mask, positions
from tidb_jina.store._filter_tree import parse_filter
from tidb_jina.store._filter_typed import Postings, prepare

# (json_type, value) as SQLite reports them; None: the key is missing
ROWS = [
    ("integer", 0),
    ("integer", 1),
    ("real", 1.0),
    ("true", 1),
    ("false", 0),
    ("integer", -1),
    ("real", -0.0),
    ("integer", 32767),
    ("integer", -32767),
    ("text", "1"),
    ("text", ""),
    ("text", "a"),
    ("text", "é"),
    ("text", "e\u0301"),
    ("text", "\U0001f600"),
    ("null", None),
    ("array", "[]"),
    ("object", "{}"),
    (None, None),
    ("integer", 7),
    ("integer", 7),
    ("text", "a"),
]
VALUES = [0, 1, 1.0, -0.0, True, False, -1, 7, 7.5, 32767, -32767, 32768, -32768, 2**53 - 1]
VALUES += ["1", "", "a", "é", "e\u0301", "\U0001f600", "b", "A"]


def _column(rows):
    return KeyColumn([t for t, _ in rows], [v for _, v in rows])


def _prepared(rows):
    col = _column(rows)
    kinds = col.kind
    prepare(col.typed, kinds == kind_of("integer"), kinds == kind_of("text"), col.values)
    return col


def _reference(col, value, alive):
    node = parse_filter({"k": value}).node
    matched = mask(node, lambda key: col, len(col.kind))
    return np.flatnonzero(matched if alive is None else matched & alive)


@pytest.mark.parametrize("made", ["at-load", "second-equality"])
@pytest.mark.parametrize("dead", [False, True], ids=["all-alive", "some-deleted"])
def test_postings_give_the_masks_rows(made, dead):
    alive = None
    if dead:
        alive = np.ones(len(ROWS), dtype=bool)
        alive[[1, 7, 12, 20]] = False
    for value in VALUES:
        col = _prepared(ROWS) if made == "at-load" else _column(ROWS)
        node = parse_filter({"k": value}).node
        for _ in range(3):  # the lazy postings come at the second equality
            got = positions(node, lambda key, col=col: col, len(ROWS), alive)
            want = _reference(_column(ROWS), value, alive)
            assert got.tolist() == want.tolist(), (value, made, dead)
        typed = col.typed
        if isinstance(value, str):
            assert isinstance(typed.string_rows, Postings), value
        elif not isinstance(value, bool):
            assert isinstance(typed.number_rows, Postings), value


def test_the_postings_are_the_path_taken(monkeypatch):
    """With postings, one equality never builds a mask (else this test proves nothing)."""
    col = _prepared(ROWS)
    values = (7, "a", 7.5, "zzz", 32768)
    want = [_reference(_column(ROWS), value, None).tolist() for value in values]

    def no_mask(*args, **kwargs):
        raise AssertionError("a mask was built")

    monkeypatch.setattr(_filter_numpy, "_leaf", no_mask)
    monkeypatch.setattr(_filter_numpy, "mask", no_mask)
    for value, rows in zip(values, want, strict=True):
        node = parse_filter({"k": value}).node
        found = positions(node, lambda key: col, len(ROWS), None)
        assert found.tolist() == rows
    assert not found.flags.writeable  # a view of the postings: never written through


@pytest.mark.parametrize(
    "numbers",
    [[0, 32768], [-32768, 1], [0, 0.5], [1, 2**53], [1, math.inf], [1, 1e300]],
    ids=["above-int16", "int16-min", "fraction", "big", "inf", "huge"],
)
def test_columns_beyond_int16_integers_keep_the_mask(numbers):
    rows = [("integer" if float(v).is_integer() else "real", v) for v in numbers]
    rows += [("text", "x"), (None, None)]
    col = _prepared(rows)
    assert not isinstance(col.typed.number_rows, Postings)
    for value in [*numbers, 0, 1, 0.5, -32768, 32768]:
        if isinstance(value, float) and not math.isfinite(value):
            continue  # not a valid filter value
        node = parse_filter({"k": value}).node
        got = positions(node, lambda key, col=col: col, len(rows), None)
        assert got.tolist() == _reference(_column(rows), value, None).tolist(), value


def test_many_distinct_strings_use_int32_codes():
    strings = [f"s{i:05d}" for i in range(40_000)]
    rows = [("text", s) for s in strings] + [("integer", 3), (None, None), ("text", "s00007")]
    col = _column(rows)
    for value in ("s00007", "s39999", "s40000", "", 3):
        node = parse_filter({"k": value}).node
        for _ in range(2):
            got = positions(node, lambda key, col=col: col, len(rows), None)
        assert got.tolist() == _reference(_column(rows), value, None).tolist(), value
    assert isinstance(col.typed.string_rows, Postings)
    assert col.typed.string_rows.keys.dtype == np.int32
    assert col.typed.nbytes() >= col.typed.string_rows.nbytes() > 0


def test_only_a_lone_equality_uses_postings():
    """$ne, $in, $not and groups still take the mask: same rows as the reference."""
    col = _prepared(ROWS)
    filters = [
        {"k": {"$ne": 7}},
        {"k": {"$in": [7, "a"]}},
        {"$not": {"k": 7}},
        {"$and": [{"k": 7}, {"k": 7}]},
        {"$or": [{"k": "a"}, {"k": 1}]},
        {"k": {"$eq": 7}},
    ]
    for flt in filters:
        node = parse_filter(flt).node
        got = positions(node, lambda key: col, len(ROWS), None)
        matched = mask(node, lambda key: _column(ROWS), len(ROWS))
        assert got.tolist() == np.flatnonzero(matched).tolist(), flt


METAS = [
    {"tenant": t, "n": n, "mixed": m}
    for t, n, m in itertools.islice(
        itertools.product(
            ["acme", "Acme", "acme ", "", "é"], [0, 1, -1, 7], [1, 1.0, True, "1", None]
        ),
        100,
    )
]


@pytest.mark.parametrize("cache", [True, False], ids=["snapshot", "general"])
def test_store_equalities_match_the_reference_before_and_after_writes(tmp_path, cache):
    table = VectorTable(f"sqlite:///{tmp_path / 'p.db'}", table_name="p", search_cache=cache)
    n = len(METAS)
    rng = np.random.default_rng(3)
    table.upsert(
        rng.normal(size=(n, 8)).astype(np.float32), ids=[str(i) for i in range(n)], metadatas=METAS
    )
    q = rng.normal(size=8).astype(np.float32)
    table.search(q, k=1)  # loads the snapshot: the columns and their postings
    metas = dict(enumerate(METAS))
    filters = [{"tenant": t} for t in ("acme", "Acme", "acme ", "", "é", "ACME")]
    filters += [{"n": v} for v in (0, 1, -1, 7, 7.0, 2, True)]
    filters += [{"mixed": v} for v in (1, 1.0, True, "1", False, 0)]

    def check():
        for flt in filters:
            for _ in range(2):  # a first and a second equality on each column
                got = {h.id for h in table.search(q, k=n, filter=flt)}
                want = {str(i) for i, m in metas.items() if matches(flt, m)}
                assert got == want, flt

    check()
    # a write: the columns are rebuilt (postings again at the second equality)
    table.upsert(
        rng.normal(size=(2, 8)).astype(np.float32),
        ids=["0", "new"],
        metadatas=[{"tenant": "other", "n": 7}, {"tenant": "acme", "n": 1}],
    )
    metas[0] = {"tenant": "other", "n": 7}
    metas["new"] = {"tenant": "acme", "n": 1}
    table.delete(ids=["5", "6"])
    del metas[5], metas[6]
    metas = {str(k): v for k, v in metas.items()}
    check()
    table.close()
