"""The metadata filter language: its tree, and real SQL on SQLite against a reference.

Every case parses the filter once (``parse_filter``), runs the compiled tree on an SQLite
table set up exactly like the embedded engine's (``configure_connection``) and checks the
matching ids against ``tests/_filter_reference.py`` and, for the important cases, a
hand-written id set. The MySQL/TiDB compilation is checked as SQL text (values only in
bound parameters), and run for real when ``TIDB_DATABASE_URL`` points at a TiDB server.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.mysql import pymysql

from tests._filter_reference import matches
from tidb_jina._errors import InvalidFilterError, InvalidIdentifierError
from tidb_jina.store._filter_numpy import supported
from tidb_jina.store._filter_sql import compile_filter, json_path
from tidb_jina.store._filter_tree import (
    OPERATORS,
    And,
    Filter,
    Not,
    Or,
    Pred,
    check_metadata_key,
    escape_like,
    parse_filter,
    validate_filter,
)
from tidb_jina.store._sqlite import configure_connection

INJECTION_KEY = 'a"; DROP TABLE t; --'
INJECTION_VALUE = "x' OR 1=1 --"

RECORDS: dict[int, dict[str, Any]] = {
    1: {"n": 1, "s": "apple", "b": True, "tags": ["a", "b"], "f": 1.5},
    2: {"n": 1.0, "s": "Apple", "b": False, "tags": ["b", "c"]},
    3: {"n": 2, "s": "banana", "b": 1, "tags": [1, 2, 3]},
    4: {"n": 0, "s": "", "b": 0, "tags": []},
    5: {"n": -5, "s": "10", "tags": ["1", 1, True, None]},
    6: {"n": "10", "s": 10, "tags": "a"},
    7: {"n": None, "s": None, "tags": None, "b": None},
    8: {},
    9: {"n": 10, "s": "apple pie", "tags": [["a"], {"a": 1}]},
    10: {"n": 2.5, "s": "cherry", "obj": {"x": 1}},
    11: {"n": True, "s": "true", "tags": [True]},
    12: {"n": False, "s": "false", "tags": [False, 0]},
    13: {"s": "Ünïcödé", "u": "日本語"},
    14: {"s": "ünïcödé", "u": "日本"},
    15: {"a.b": 1, "a": {"b": 2}},
    16: {'q"x': "quoted", "b\\s": "back", INJECTION_KEY: 1},
    17: {"sp ace": "yes", "cost$": "dollar", "br[0]": "bracket", "it's": "apos"},
    18: {"s": "50%_off", "n": 100},
    19: {"s": "50 percent off", "n": 99.5},
    20: {"s": "back\\slash", "n": 1e20},
    21: {"n": -0.5, "s": "a"},
    22: {"n": 9007199254740993, "s": "z"},
    23: {"tags": ["apple", "APPLE"], "s": "APPLE"},
    24: {"s": " apple", "n": 3},
    25: {"s": "apple ", "n": 3.0},
    26: {"ключ": "значение", "e": [None]},
    27: {"tags": [1.0, "2"], "n": 1e-9},
    28: {"e": [], "n": 4},
    29: {"e": "", "obj": {}},
    30: {"e": None, "tags": [[]]},
    31: {"e": " ", "tags": ["x'", "OR 1=1"]},
    32: {"s": INJECTION_VALUE, "nl\nkey": "newline"},
}
ALL = frozenset(RECORDS)


def _but(*ids: int) -> frozenset[int]:
    return ALL - set(ids)


def _with_key(key: str) -> frozenset[int]:
    return frozenset(i for i, m in RECORDS.items() if key in m)


N_MISSING = ALL - _with_key("n")

# (filter, hand-written expected ids or None to rely on the reference evaluator only)
CASES: list[tuple[dict[str, Any], frozenset[int] | set[int] | None]] = [
    # --- $eq and the type rules
    ({"n": 1}, {1, 2}),
    ({"n": 1.0}, {1, 2}),
    ({"n": {"$eq": 1}}, {1, 2}),
    ({"n": True}, {11}),
    ({"n": False}, {12}),
    ({"n": 0}, {4}),
    ({"n": "10"}, {6}),
    ({"n": 10}, {9}),
    ({"n": 1e20}, {20}),
    ({"n": 1e-9}, {27}),
    ({"n": 9007199254740993}, {22}),
    ({"b": True}, {1}),
    ({"b": 1}, {3}),
    ({"b": False}, {2}),
    ({"b": 0}, {4}),
    ({"f": 1.5}, {1}),
    ({"s": "apple"}, {1}),
    ({"s": "apple "}, {25}),
    ({"s": ""}, {4}),
    ({"s": 10}, {6}),
    ({"s": "ünïcödé"}, {14}),
    ({"n": None}, N_MISSING | {7}),
    ({"n": {"$eq": None}}, N_MISSING | {7}),
    ({"obj": 1}, set()),
    # --- $ne: negation, missing keys match
    ({"n": {"$ne": None}}, _with_key("n") - {7}),
    ({"n": {"$ne": 1}}, _but(1, 2)),
    ({"n": {"$ne": True}}, _but(11)),
    ({"b": {"$ne": True}}, _but(1)),
    ({"s": {"$ne": "apple"}}, _but(1)),
    # --- ranges
    ({"n": {"$gt": 5}}, {9, 18, 19, 20, 22}),
    ({"n": {"$gte": 1, "$lt": 3}}, {1, 2, 3, 10}),
    ({"n": {"$lte": 0}}, {4, 5, 21}),
    ({"n": {"$lt": 0}}, {5, 21}),
    ({"n": {"$gt": 0, "$lt": 1e-8}}, {27}),
    ({"n": {"$gt": 1.5, "$ne": 2.5}}, {3, 9, 18, 19, 20, 22, 24, 25, 28}),
    ({"n": {"$between": [1, 3]}}, {1, 2, 3, 10, 24, 25}),
    ({"n": {"$between": [3, 1]}}, set()),
    ({"n": {"$gt": "1"}}, {6}),
    ({"s": {"$gt": "b"}}, {3, 10, 11, 12, 13, 14, 20, 22, 32}),
    ({"s": {"$gte": "a", "$lt": "b"}}, {1, 9, 21, 25}),
    ({"s": {"$lt": "B"}}, {2, 4, 5, 18, 19, 23, 24}),
    ({"s": {"$between": ["a", "apple"]}}, {1, 21}),
    ({"s": {"$gt": 5}}, {6}),
    # --- $in / $nin
    ({"s": {"$in": ["apple", 10]}}, {1, 6}),
    ({"s": {"$nin": ["apple", 10]}}, _but(1, 6)),
    ({"s": {"$in": []}}, set()),
    ({"s": {"$nin": []}}, ALL),
    ({"n": {"$in": [1, True, None]}}, N_MISSING | {1, 2, 7, 11}),
    (
        {"n": {"$nin": [1, "10", None]}},
        {3, 4, 5, 9, 10, 11, 12, 18, 19, 20, 21, 22, 24, 25, 27, 28},
    ),
    ({"b": {"$in": [0, False]}}, {2, 4}),
    # --- $exists
    ({"tags": {"$exists": True}}, _with_key("tags")),
    ({"tags": {"$exists": False}}, ALL - _with_key("tags")),
    ({"n": {"$exists": True, "$eq": None}}, {7}),
    ({"obj": {"$exists": True}}, {10, 29}),
    # --- $like / $ilike
    ({"s": {"$like": "apple%"}}, {1, 9, 25}),
    ({"s": {"$ilike": "apple%"}}, {1, 2, 9, 23, 25}),
    ({"s": {"$like": "%" + escape_like("50%_") + "%"}}, {18}),
    ({"s": {"$like": "50%"}}, {18, 19}),
    ({"s": {"$like": "_"}}, {21, 22}),
    ({"s": {"$like": "%\\\\%"}}, {20}),
    ({"s": {"$like": "%" + escape_like("back\\") + "%"}}, {20}),
    ({"s": {"$ilike": "ÜNÏCÖDÉ"}}, {13, 14}),
    ({"s": {"$like": "ünïcödé"}}, {14}),
    ({"s": {"$like": "_nïcödé"}}, {13, 14}),
    ({"u": {"$like": "日本_"}}, {13}),
    ({"s": {"$like": "%"}}, {i for i, m in RECORDS.items() if isinstance(m.get("s"), str)}),
    ({"s": {"$like": ""}}, {4}),
    ({"n": {"$like": "1%"}}, {6}),
    ({"s": {"$not": {"$like": "a%"}}}, _but(1, 9, 21, 25)),
    # --- arrays
    ({"tags": {"$contains": "a"}}, {1}),
    ({"tags": {"$contains": 1}}, {3, 5, 27}),
    ({"tags": {"$contains": 1.0}}, {3, 5, 27}),
    ({"tags": {"$contains": True}}, {5, 11}),
    ({"tags": {"$contains": False}}, {12}),
    ({"tags": {"$contains": 0}}, {12}),
    ({"tags": {"$contains": None}}, {5}),
    ({"tags": {"$contains": "1"}}, {5}),
    ({"tags": {"$contains": INJECTION_VALUE[:2]}}, {31}),
    ({"s": {"$contains": "apple"}}, set()),
    ({"tags": {"$any": ["c", 3]}}, {2, 3}),
    ({"tags": {"$any": []}}, set()),
    ({"tags": {"$all": ["a", "b"]}}, {1}),
    ({"tags": {"$all": [1, "2"]}}, {27}),
    ({"tags": {"$all": []}}, {1, 2, 3, 4, 5, 9, 11, 12, 23, 27, 30, 31}),
    ({"tags": {"$not": {"$contains": "b"}}}, _but(1, 2)),
    # --- $empty
    ({"e": {"$empty": True}}, _but(26, 31)),
    ({"e": {"$empty": False}}, {26, 31}),
    ({"s": {"$empty": True}}, (ALL - _with_key("s")) | {4, 7}),
    ({"obj": {"$empty": True}}, _but(10, 29)),
    ({"tags": {"$empty": False}}, {1, 2, 3, 5, 6, 9, 11, 12, 23, 27, 30, 31}),
    # --- keys that are not identifiers
    ({"a.b": 1}, {15}),
    ({"a": {"$exists": True}}, {15}),
    ({"a": 2}, set()),
    ({'q"x': "quoted"}, {16}),
    ({"b\\s": "back"}, {16}),
    ({INJECTION_KEY: 1}, {16}),
    ({"sp ace": "yes", "cost$": "dollar"}, {17}),
    ({"br[0]": "bracket", "it's": "apos"}, {17}),
    ({"ключ": "значение"}, {26}),
    ({"nl\nkey": {"$exists": True}}, {32}),
    ({"s": INJECTION_VALUE}, {32}),
    # --- logic
    ({"$or": [{"n": 1}, {"s": "banana"}]}, {1, 2, 3}),
    ({"$and": [{"n": {"$gte": 1}}, {"s": {"$like": "a%"}}]}, {1, 9, 25}),
    ({"n": {"$gte": 1}, "s": {"$like": "a%"}}, {1, 9, 25}),
    ({"$not": {"n": 1}}, _but(1, 2)),
    ({"$nor": [{"n": 1}, {"tags": {"$exists": True}}]}, ALL - _with_key("tags")),
    ({"n": {"$not": {"$gt": 1}}}, _but(3, 9, 10, 18, 19, 20, 22, 24, 25, 28)),
    (
        {"$not": {"$or": [{"n": {"$gt": 0}}, {"n": {"$lt": 0}}]}},
        _but(3, 5, 9, 10, 18, 19, 20, 21, 22, 24, 25, 27, 28, 1, 2),
    ),
    ({"$and": [{}]}, ALL),
    ({"$or": [{}, {"n": 1}]}, ALL),
    ({"$not": {}}, set()),
    # --- empty groups: the logical identities
    ({"$or": []}, set()),
    ({"$and": []}, ALL),
    ({"$nor": []}, ALL),
    ({"$and": [{"$or": []}]}, set()),
    ({"$or": [{"$or": []}, {"n": 1}]}, {1, 2}),
    ({"$not": {"$or": []}}, ALL),
    ({"n": 1, "$or": []}, set()),
    # --- large lists: one membership test per type, same semantics as single tests
    ({"n": {"$in": [1, True, None, "x", "y", "z", 4.5, 100, 3]}}, None),
    ({"s": {"$in": ["apple", 10, "a", "b", "c", "d", "e", "f", "apple "]}}, None),
    ({"s": {"$nin": ["apple", 10, "a", "b", "c", "d", "e", "f", "apple "]}}, None),
    ({"$or": [{"n": v} for v in [1, 2, 3, 4, 5, 6, 7, 8, 9.0, 99.5, False]]}, None),
    ({"b": {"$in": [True, False, 0, 1, 2, 3, 4, 5, 6]}}, None),
    ({"tags": {"$any": ["a", "c", 1, 2, 3, 4, 5, 6, 7, 8]}}, None),
    ({"$not": {"$not": {"n": 1}}}, {1, 2}),
    (
        {
            "$or": [
                {"$and": [{"n": {"$exists": True}}, {"$not": {"n": {"$in": [1, 2]}}}]},
                {"s": "apple"},
            ]
        },
        None,
    ),
    ({"$nor": [{"s": {"$ilike": "%a%"}}, {"n": {"$ne": None}}]}, None),
    ({"$and": [{"$or": [{"b": True}, {"b": 0}]}, {"$not": {"tags": {"$empty": True}}}]}, {1}),
    ({"s": {"$not": {"$in": ["apple", "Apple"], "$exists": True}}}, _but(1, 2)),
    ({"tags": {"$any": ["a", "c"], "$not": {"$all": ["a", "b"]}}}, {2}),
]


def _case_id(case: tuple[dict[str, Any], Any]) -> str:
    return json.dumps(case[0], ensure_ascii=False)[:80]


# ------------------------------------------------------------------------- fixtures


def _sqlite_engine() -> sa.Engine:
    engine = sa.create_engine("sqlite://", poolclass=sa.StaticPool)
    sa.event.listen(
        engine, "connect", lambda conn, _: configure_connection(conn, file_backed=False)
    )
    return engine


def _table(name: str, json_type: sa.types.TypeEngine[Any]) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("meta", json_type),
    )


def _rows(records: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    # Odd ids are stored with \\u escapes: key lookup must not depend on the JSON spelling.
    return [{"id": i, "meta": json.dumps(m, ensure_ascii=bool(i % 2))} for i, m in records.items()]


@pytest.fixture(scope="module")
def sqlite_db() -> Iterator[tuple[sa.Engine, sa.Table]]:
    engine = _sqlite_engine()
    table = _table("filter_cases", sa.Text())
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), _rows(RECORDS))
    yield engine, table
    engine.dispose()


def _select_ids(engine: sa.Engine, table: sa.Table, filter: dict[str, Any]) -> set[int]:
    where = compile_filter(parse_filter(filter), table.c.meta, engine.dialect.name)
    query = sa.select(table.c.id)
    if where is not None:
        query = query.where(where)
    with engine.connect() as conn:
        return set(conn.execute(query).scalars())


def _reference_ids(filter: dict[str, Any], records: dict[int, dict[str, Any]]) -> set[int]:
    return {i for i, m in records.items() if matches(filter, m)}


# ----------------------------------------------------------------- SQLite outcomes


@pytest.mark.parametrize(("filter", "expected"), CASES, ids=[_case_id(c) for c in CASES])
def test_sqlite_matches_reference_and_expectation(
    sqlite_db: tuple[sa.Engine, sa.Table], filter: dict[str, Any], expected: Any
) -> None:
    got = _select_ids(*sqlite_db, filter)
    assert got == _reference_ids(filter, RECORDS)
    if expected is not None:
        assert got == set(expected)


def test_reference_agrees_with_hand_written_expectations() -> None:
    # Guards the reference itself, so the property test below checks against truth.
    for filter, expected in CASES:
        if expected is not None:
            assert _reference_ids(filter, RECORDS) == set(expected), filter


@pytest.mark.parametrize("filter", [None, {}])
def test_no_filter_parses_and_compiles_to_none(filter: Any) -> None:
    assert parse_filter(filter) is None
    assert compile_filter(parse_filter(filter), sa.column("meta"), "sqlite") is None
    assert compile_filter(parse_filter(filter), sa.column("meta"), "mysql") is None


def test_every_operator_is_exercised() -> None:
    used: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            used.update(k for k in node if k.startswith("$"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk([case[0] for case in CASES])
    assert used >= set(OPERATORS)


def test_text_match_built_with_escape_like_matches_literal_substrings(
    sqlite_db: tuple[sa.Engine, sa.Table],
) -> None:
    # LlamaIndex TEXT_MATCH(v) == {"$like": "%" + escape_like(v) + "%"}
    for needle, expected in [("%_", {18}), ("\\", {20}), ("pie", {9}), ("PLE", {23})]:
        filter = {"s": {"$like": "%" + escape_like(needle) + "%"}}
        assert _select_ids(*sqlite_db, filter) == expected, needle


# ------------------------------------------------------------------ property test

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a dev dependency
    st = None

if st is not None:
    _KEYS = st.sampled_from(["a", "b", "a.b", 'q"x', "é"])
    _STRINGS = st.sampled_from(["", "a", "A", "ab", "b", "1", "a%", "é", "É", "a_b", "a\\b"])
    _NUMBERS = st.one_of(st.integers(-3, 3), st.sampled_from([0.5, 1.0, -2.0, 2.5]))
    _SCALARS = st.one_of(st.none(), st.booleans(), _NUMBERS, _STRINGS)
    _ORDERABLE = st.one_of(_NUMBERS, _STRINGS)
    _PATTERNS = st.sampled_from(["a%", "%a%", "_", "A%", "%\\\\%", "%é%", "", "%", "a\\_b", "_b"])
    _META_VALUES = st.one_of(
        _SCALARS, st.lists(_SCALARS, max_size=3), st.just({"x": 1}), st.just([[1]])
    )
    _METADATA = st.dictionaries(_KEYS, _META_VALUES, max_size=4)
    _SCALAR_LISTS = st.lists(_SCALARS, max_size=3)
    _BETWEEN = st.one_of(st.tuples(_NUMBERS, _NUMBERS), st.tuples(_STRINGS, _STRINGS)).map(list)
    _FIELD_OP = st.one_of(
        st.tuples(st.sampled_from(["$eq", "$ne", "$contains"]), _SCALARS),
        st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), _ORDERABLE),
        st.tuples(st.sampled_from(["$in", "$nin", "$any", "$all"]), _SCALAR_LISTS),
        st.tuples(st.sampled_from(["$exists", "$empty"]), st.booleans()),
        st.tuples(st.sampled_from(["$like", "$ilike"]), _PATTERNS),
        st.tuples(st.just("$between"), _BETWEEN),
    )
    _OP_DICT = st.lists(_FIELD_OP, min_size=1, max_size=2).map(dict)
    _FIELD_VALUE = st.one_of(_SCALARS, _OP_DICT, _OP_DICT.map(lambda d: {"$not": d}))
    _LEAF = st.dictionaries(_KEYS, _FIELD_VALUE, min_size=1, max_size=2)
    _FILTERS = st.recursive(
        _LEAF,
        lambda children: st.one_of(
            st.tuples(
                st.sampled_from(["$and", "$or", "$nor"]), st.lists(children, min_size=1, max_size=3)
            ).map(lambda t: {t[0]: t[1]}),
            children.map(lambda c: {"$not": c}),
        ),
        max_leaves=5,
    )

    @pytest.fixture(scope="module")
    def scratch_db() -> Iterator[tuple[sa.Engine, sa.Table]]:
        engine = _sqlite_engine()
        table = _table("filter_scratch", sa.Text())
        table.metadata.create_all(engine)
        yield engine, table
        engine.dispose()

    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(records=st.lists(_METADATA, min_size=1, max_size=6), filter=_FILTERS)
    @pytest.mark.slow
    def test_sql_agrees_with_reference_on_random_filters(
        scratch_db: tuple[sa.Engine, sa.Table], records: list[dict[str, Any]], filter: Any
    ) -> None:
        engine, table = scratch_db
        by_id = dict(enumerate(records, start=1))
        with engine.begin() as conn:
            conn.execute(table.delete())
            conn.execute(table.insert(), _rows(by_id))
        assert _select_ids(engine, table, filter) == _reference_ids(filter, by_id)


# --------------------------------------------------------------- invalid filters

INVALID: list[tuple[Any, str]] = [
    ({"n": {"$regex": "a"}}, "unknown operator '$regex'"),
    ({"$regex": "a"}, "unknown operator '$regex'"),
    ({"$gt": 5}, "goes inside one"),
    ({"n": {"$and": [{"n": 1}]}}, "top level"),
    ({"n": {"$or": [{"n": 1}]}}, "top level"),
    ({"n": [1, 2]}, "$in"),
    ({"n": {"x": 1}}, "not an operator"),
    ({"n": {}}, "empty operator dict"),
    ({"n": {"$eq": [1]}}, "$contains"),
    ({"n": {"$ne": {"a": 1}}}, "$any"),
    ({"n": {"$eq": object()}}, "expected a str, int, float, bool or None"),
    ({"n": math.nan}, "nan"),
    ({"n": {"$gt": math.inf}}, "inf"),
    ({"n": {"$in": [1, -math.inf]}}, "inf"),
    ({"n": 2**64}, "64-bit"),
    ({"n": {"$gt": True}}, "number or a string"),
    ({"n": {"$gt": None}}, "number or a string"),
    ({"n": {"$lte": [1]}}, "str, int, float, bool or None"),
    ({"n": {"$between": [1]}}, "[low, high]"),
    ({"n": {"$between": [1, "b"]}}, "must both be numbers or both strings"),
    ({"n": {"$in": "abc"}}, "list of scalars"),
    ({"n": {"$nin": 3}}, "list of scalars"),
    ({"n": {"$in": [[1]]}}, "str, int, float, bool or None"),
    ({"n": {"$any": "a"}}, "list of scalars"),
    ({"n": {"$all": [{"a": 1}]}}, "str, int, float, bool or None"),
    ({"n": {"$contains": [1]}}, "$any or $all"),
    ({"n": {"$exists": 1}}, "true or false"),
    ({"n": {"$empty": "yes"}}, "true or false"),
    ({"n": {"$like": 5}}, "must be a string"),
    ({"n": {"$ilike": None}}, "must be a string"),
    ({"n": {"$like": "abc\\"}}, "lone escape"),
    ({"n": {"$not": 1}}, "operator dict"),
    ({"n": {"$not": {"$foo": 1}}}, "unknown operator '$foo'"),
    ({"$or": {"n": 1}}, "list of filter dicts"),
    ({"$nor": "n"}, "list of filter dicts"),
    ({"$and": [1]}, "must be a dict"),
    ({"$not": [{"n": 1}]}, "must be a dict"),
    ([{"n": 1}], "must be a dict"),
    ("n = 1", "must be a dict"),
    ({"s": "\ud800"}, "lone surrogate"),
]


@pytest.mark.parametrize(("filter", "message"), INVALID, ids=[repr(f)[:60] for f, _ in INVALID])
def test_invalid_filters_raise_helpful_errors(filter: Any, message: str) -> None:
    with pytest.raises(InvalidFilterError) as info:
        parse_filter(filter)
    assert message.lower() in str(info.value).lower()
    with pytest.raises(InvalidFilterError):
        validate_filter(filter)


@pytest.mark.parametrize(
    "filter", [{"n": {"$regex": "a"}}, {"$gt": 5}, {"n": {"$not": {"$foo": 1}}}, {"n": {}}]
)
def test_operator_errors_list_the_valid_operators(filter: Any) -> None:
    with pytest.raises(InvalidFilterError) as info:
        validate_filter(filter)
    text = str(info.value)
    assert all(op in text for op in OPERATORS) or "$and, $or, $nor and $not" in text


def test_error_names_the_nested_location() -> None:
    with pytest.raises(InvalidFilterError, match=r"\$or\[1\]\['n'\]\.\$gt"):
        validate_filter({"$or": [{"a": 1}, {"n": {"$gt": None}}]})


def test_errors_are_raised_before_anything_is_returned() -> None:
    # The bad operator sits after valid ones: the whole filter is still rejected.
    with pytest.raises(InvalidFilterError):
        parse_filter({"a": 1, "b": {"$gt": 1, "$oops": 2}})


@pytest.mark.parametrize(
    ("filter", "message"),
    [
        ({"": 1}, "empty"),
        ({"a\x00b": 1}, "NUL"),
        ({"$or": [{"": 1}]}, "empty"),
        ({1: 1}, "must be strings"),
        ({"\udcff": 1}, "surrogate"),
    ],
)
def test_bad_keys_raise_invalid_identifier(filter: Any, message: str) -> None:
    with pytest.raises(InvalidIdentifierError, match=message):
        validate_filter(filter)


def test_unknown_dialect_is_rejected() -> None:
    with pytest.raises(ValueError, match="sqlite"):
        compile_filter(parse_filter({"a": 1}), sa.column("meta"), "postgresql")


def test_valid_filters_validate_silently() -> None:
    for filter, _ in CASES:
        assert validate_filter(filter) is None


# ----------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    "key", ["a", "a.b", 'q"x', "b\\s", "sp ace", "$d", "br[0]", "ключ", "nl\nx", " "]
)
def test_check_metadata_key_accepts_any_non_empty_string(key: str) -> None:
    assert check_metadata_key(key) == key


@pytest.mark.parametrize(
    ("key", "message"),
    [("", "empty"), ("a\x00", "NUL"), (None, "strings"), (3, "strings"), (b"a", "strings")],
)
def test_check_metadata_key_rejects(key: Any, message: str) -> None:
    with pytest.raises(InvalidIdentifierError, match=message):
        check_metadata_key(key)


@pytest.mark.parametrize(
    ("text", "escaped"),
    [("abc", "abc"), ("50%", "50\\%"), ("a_b", "a\\_b"), ("c:\\x", "c:\\\\x"), ("\\%", "\\\\\\%")],
)
def test_escape_like(text: str, escaped: str) -> None:
    assert escape_like(text) == escaped


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("a", '$."a"'),
        ("a.b", '$."a.b"'),
        ('q"x', '$."q\\"x"'),
        ("b\\s", '$."b\\\\s"'),
        ("ключ", '$."ключ"'),
        ("nl\nx", '$."nl\\nx"'),
    ],
)
def test_json_path_quotes_the_key(key: str, path: str) -> None:
    assert json_path(key) == path


def test_json_path_rejects_bad_keys() -> None:
    with pytest.raises(InvalidIdentifierError):
        json_path("")


def test_operators_are_sorted_and_complete() -> None:
    assert list(OPERATORS) == sorted(OPERATORS)
    assert set(OPERATORS) == {
        "$and", "$or", "$nor", "$not", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in",
        "$nin", "$exists", "$like", "$ilike", "$contains", "$any", "$all", "$between",
        "$empty",
    }  # fmt: skip


# ---------------------------------------------------------------- the parsed tree


def test_operators_reduce_to_the_four_node_types() -> None:
    parsed = parse_filter(
        {
            "a": {"$ne": 1},
            "b": {"$in": ["x", "y"]},
            "c": {"$between": [1, 2], "$empty": False},
            "$nor": [{"d": {"$contains": 3}}, {}],
            "e": {"$exists": False, "$all": []},
        }
    )
    assert parsed == Filter(
        And(
            (
                Not(Pred("a", "eq", 1)),
                Or((Pred("b", "eq", "x"), Pred("b", "eq", "y"))),
                And(
                    (And((Pred("c", "gte", 1), Pred("c", "lte", 2))), Not(Pred("c", "empty", None)))
                ),
                Not(Or((Pred("d", "any", (3,)), And(())))),
                And((Not(Pred("e", "exists", None)), Pred("e", "all", ()))),
            )
        )
    )


def test_a_filter_carries_its_keys_and_whether_numpy_can_run_it() -> None:
    parsed = parse_filter({"a": 1, "$or": [{"b": {"$gt": 2}}, {"a": {"$exists": True}}]})
    assert parsed is not None
    assert parsed.keys == frozenset({"a", "b"}) and supported(parsed)
    assert parsed == parse_filter({"a": 1, "$or": [{"b": {"$gt": 2}}, {"a": {"$exists": True}}]})
    assert repr(parsed).startswith("Filter(And(items=(Pred(key='a', op='eq', value=1),")
    for sql_only in [{"t": {"$like": "x%"}}, {"t": {"$contains": 1}}, {'q"k': 1}, {"ü": 1}]:
        flt = parse_filter({"a": 1, "$not": sql_only})
        assert flt is not None and not supported(flt), sql_only


def test_a_filter_is_parsed_once_and_never_by_the_compiler(filter_parses: list[str]) -> None:
    parses = filter_parses
    flt = {"$or": [{"a": 1}, {"b": {"$in": [1, 2]}}], "c": {"$exists": True}}
    parsed = parse_filter(flt)
    assert parses == ["filter", "$or[0]", "$or[1]"]
    assert parse_filter(parsed) is parsed
    validate_filter(parsed)
    for dialect_name in ("sqlite", "mysql"):
        compile_filter(parsed, sa.column("meta"), dialect_name, {"a": sa.column("meta_a")})
    assert len(parses) == 3


def test_compile_filter_takes_the_tree_not_a_dict() -> None:
    with pytest.raises(TypeError, match="parse_filter"):
        compile_filter({"a": 1}, sa.column("meta"), "sqlite")  # type: ignore[arg-type]


# -------------------------------------------------------------- MySQL / TiDB SQL


def _mysql(filter: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    table = _table("t", sa.JSON())
    where = compile_filter(parse_filter(filter), table.c.meta, "mysql")
    if where is None:  # a filter that sets no condition ({"$nin": []}, {"$and": []})
        return "", {}
    compiled = sa.select(table.c.id).where(where).compile(dialect=pymysql.dialect())
    return str(compiled), dict(compiled.params)


def test_mysql_uses_json_functions_and_type_guards() -> None:
    sql, params = _mysql({"n": {"$gt": 5}})
    assert "JSON_TYPE(JSON_EXTRACT(t.meta, %s)) IN ('INTEGER', 'UNSIGNED INTEGER')" in sql
    assert "JSON_TYPE(JSON_EXTRACT(t.meta, %s)) IN ('DOUBLE', 'DECIMAL')" in sql
    assert "JSON_EXTRACT(t.meta, %s) > CAST(%s AS JSON)" in sql
    # integers against 5, doubles against 5.0: TiDB compares across kinds within 1e-8
    assert set(params.values()) == {'$."n"', "5", "5.0"}


def test_mysql_like_unquotes_with_binary_collation_and_escape() -> None:
    sql, params = _mysql({"s": {"$like": "a%"}})
    assert "JSON_UNQUOTE(JSON_EXTRACT(t.meta, %s)) COLLATE utf8mb4_bin" in sql
    assert "LIKE %s ESCAPE '\\\\'" in sql  # MySQL string literal for one backslash
    assert "a%" in params.values()
    sql, _ = _mysql({"s": {"$ilike": "a%"}})
    assert "lower(JSON_UNQUOTE(JSON_EXTRACT(t.meta, %s)) COLLATE utf8mb4_bin) LIKE lower(%s)" in sql


def test_mysql_negations_are_null_safe() -> None:
    for filter in [
        {"n": {"$ne": 1}},
        {"n": {"$nin": [1]}},
        {"n": {"$not": {"$gt": 1}}},
        {"$not": {"n": 1}},
        {"$nor": [{"n": 1}]},
        {"n": {"$exists": False}},
    ]:
        sql, _ = _mysql(filter)
        assert "NOT coalesce(" in sql and ", false)" in sql, filter


def test_mysql_array_membership_uses_member_of() -> None:
    sql, params = _mysql({"tags": {"$contains": "a"}})
    assert "JSON_TYPE(JSON_EXTRACT(t.meta, %s)) = 'ARRAY'" in sql
    assert "CAST(%s AS JSON) MEMBER OF (JSON_EXTRACT(t.meta, %s))" in sql
    assert '"a"' in params.values()


def test_mysql_empty_and_missing_checks() -> None:
    sql, _ = _mysql({"e": {"$empty": True}})
    assert "JSON_TYPE(JSON_EXTRACT(t.meta, %s)) IS NULL" in sql
    assert "JSON_LENGTH(JSON_EXTRACT(t.meta, %s)) = 0" in sql


@pytest.mark.parametrize("filter", [f for f, _ in CASES], ids=[_case_id(c) for c in CASES])
def test_mysql_sql_text_never_contains_values_or_keys(filter: dict[str, Any]) -> None:
    sql, params = _mysql(filter)
    for value in _leaf_strings(filter):
        if len(value) > 2:
            assert value not in sql
    # Every bound parameter is a key path, a JSON literal or a pattern: all strings.
    assert all(isinstance(v, (str, int)) for v in params.values())


def _leaf_strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if not key.startswith("$"):
                yield key
            yield from _leaf_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _leaf_strings(value)
    elif isinstance(node, str):
        yield node


@pytest.mark.parametrize("dialect_name", ["mysql", "sqlite"])
def test_injection_attempts_end_up_in_parameters_only(dialect_name: str) -> None:
    table = _table("t", sa.JSON())
    filter = {
        INJECTION_KEY: INJECTION_VALUE,
        "k": {"$like": INJECTION_VALUE, "$in": [INJECTION_VALUE, 4242424]},
        "j": {"$contains": INJECTION_VALUE},
    }
    dialect = pymysql.dialect() if dialect_name == "mysql" else sa.dialects.sqlite.dialect()
    where = compile_filter(parse_filter(filter), table.c.meta, dialect_name)
    compiled = sa.select(table.c.id).where(where).compile(dialect=dialect)
    sql, params = str(compiled), list(compiled.params.values())
    for fragment in ["DROP", "OR 1=1", "4242424", "x'"]:
        assert fragment not in sql
    assert any(INJECTION_VALUE in str(p) for p in params)
    assert any("DROP TABLE" in str(p) for p in params)
    assert any("4242424" in str(p) for p in params)


# ---------------------------------------------------------------- real TiDB run

TIDB_URL = os.environ.get("TIDB_DATABASE_URL", "")


@pytest.fixture(scope="module")
def tidb_db() -> Iterator[tuple[sa.Engine, sa.Table]]:
    if not TIDB_URL:
        pytest.skip("TIDB_DATABASE_URL is not set")
    from tidb_jina.store import connect

    try:
        engine = connect(TIDB_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1")).scalar_one()
    except Exception as exc:  # the probe decides the skip; report why
        pytest.skip(f"TiDB at TIDB_DATABASE_URL is not usable: {exc.__class__.__name__}")
    table = _table(f"t_filters_{uuid.uuid4().hex[:10]}", sa.JSON())
    table.metadata.create_all(engine)
    try:
        with engine.begin() as conn:
            conn.execute(
                table.insert(),
                [{"id": i, "meta": m} for i, m in RECORDS.items() if i != 22],
            )
        yield engine, table
    finally:
        table.metadata.drop_all(engine)
        engine.dispose()


@pytest.mark.tidb
@pytest.mark.parametrize(("filter", "expected"), CASES, ids=[_case_id(c) for c in CASES])
def test_tidb_matches_reference(
    tidb_db: tuple[sa.Engine, sa.Table], filter: dict[str, Any], expected: Any
) -> None:
    # Record 22 (an integer above 2**53) is left out: JSON drivers may round it.
    records = {i: m for i, m in RECORDS.items() if i != 22}
    assert _select_ids(*tidb_db, filter) == _reference_ids(filter, records)


@pytest.mark.parametrize("dialect_name", ["mysql", "sqlite"])
def test_statement_cache_key_carries_every_value(dialect_name: str) -> None:
    # A custom SQL construct left out of the cache key would make SQLAlchemy re-run a
    # cached statement with the values of the first call.
    table = _table("t", sa.JSON())

    def cache_values(value: str, number: int) -> list[Any]:
        filter = {"tags": {"$contains": value, "$all": [value]}, "n": {"$gt": number}}
        where = compile_filter(parse_filter(filter), table.c.meta, dialect_name)
        statement = sa.select(table.c.id).where(where)
        key = statement._generate_cache_key()
        assert key is not None
        return [p.value for p in key.bindparams]

    first, second = cache_values("first", 1), cache_values("second", 2)
    assert any("first" in str(v) for v in first)
    assert any("second" in str(v) for v in second)
    assert not any("first" in str(v) for v in second)
