"""Issue 14, items 3 and 6: the TiDB SQL for keys and large lists, checked as text.

``tidb_member_legs`` is a Python port of the member part of TiDB's JSON path parser
(pingcap/tidb ``pkg/types/json_path_expr.go``: ``parseJSONPathExpr`` and
``parseJSONPathMember``, byte by byte, including its quirk that a quoted member ``"*"``
becomes the wildcard leg). Every key we quote must parse back to exactly that one
literal member.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.mysql import pymysql

from tidb_jina._errors import InvalidFilterError
from tidb_jina.store._filter_sql import MEMBERSHIP_MIN, compile_filter, json_path
from tidb_jina.store._filter_tree import parse_filter

WILDCARD = object()


def _is_go_space(byte: int) -> bool:
    # unicode.IsSpace(rune(b)) on one byte: '\t\n\v\f\r ', U+0085 and U+00A0.
    return byte in (9, 10, 11, 12, 13, 32, 0x85, 0xA0)


def _ecmascript_identifier(text: str) -> bool:
    data = text.encode()
    return bool(data) and all(
        (i and 48 <= b <= 57) or 97 <= b <= 122 or 65 <= b <= 90 or b in (95, 36) or b >= 0x80
        for i, b in enumerate(data)
    )


def tidb_member_legs(path: str) -> list[Any]:
    """The member legs TiDB reads from ``path`` (``WILDCARD`` for ``.*``); ValueError if
    TiDB would reject it. Only ``$`` and member legs: what ``json_path`` writes."""
    data, pos = path.encode(), 0

    def skip_space() -> None:
        nonlocal pos
        while pos < len(data) and _is_go_space(data[pos]):
            pos += 1

    skip_space()
    if pos >= len(data) or data[pos] != ord("$"):
        raise ValueError("path must start with $")
    pos += 1
    skip_space()
    legs: list[Any] = []
    while pos < len(data):
        if data[pos] != ord("."):
            raise ValueError(f"unexpected byte at {pos}")
        pos += 1
        skip_space()
        if pos >= len(data):
            raise ValueError("member name expected")
        if data[pos] == ord("*"):
            legs.append(WILDCARD)
            pos += 1
        else:
            quoted = data[pos] == ord('"')
            if quoted:
                pos += 1
                start = pos
                while pos < len(data) and data[pos] != ord('"'):
                    pos += 2 if data[pos] == ord("\\") else 1
                if pos >= len(data):
                    raise ValueError("unterminated quoted member")
                raw = data[start:pos]
                pos += 1
            else:
                start = pos
                while pos < len(data) and not (_is_go_space(data[pos]) or data[pos] in b".[*"):
                    pos += 1
                raw = data[start:pos]
            key = json.loads(b'"' + raw + b'"')  # json.Valid + unquoteJSONString
            if not quoted and not _ecmascript_identifier(key):
                raise ValueError("unquoted member must be an identifier")
            # The leg keeps only the name: a quoted "*" is the wildcard (popOneLeg,
            # extractTo test dotKey == "*").
            legs.append(WILDCARD if key == "*" else key)
        skip_space()
    return legs


def test_the_port_reproduces_tidbs_wildcard_quirk() -> None:
    assert tidb_member_legs("$.*") == [WILDCARD]
    assert tidb_member_legs('$."*"') == [WILDCARD]  # why the key "*" is refused below
    assert tidb_member_legs('$."**"') == ["**"]
    assert tidb_member_legs("$.a") == ["a"]
    with pytest.raises(ValueError):
        tidb_member_legs("$.a-b")


HOSTILE_KEYS = [
    "**", "***", "*a", "a*", "[", "]", "[0]", "[*]", ".", "..", "a.b", "$", "$.a", '"', '""',
    "\\", "\\\\", '\\"', "'", " ", " lead", "trail ", "\t", "\n", "\x01", "\x1f", "\x7f",
    "ü", "ключ", "表", "😀", "\u2028", "\u00a0", "\u0085", "last", "to", "a b", "-",
]  # fmt: skip


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=[repr(k) for k in HOSTILE_KEYS])
def test_every_key_is_one_literal_member_in_tidbs_grammar(key: str) -> None:
    assert tidb_member_legs(json_path(key)) == [key]


def test_the_key_star_is_refused_on_tidb_because_its_paths_cannot_name_it() -> None:
    with pytest.raises(InvalidFilterError, match="wildcard"):
        json_path("*")
    with pytest.raises(InvalidFilterError, match="wildcard"):
        _mysql({"*": 1})
    # The embedded engine addresses it literally (json_each compares decoded keys).
    assert compile_filter(parse_filter({"*": 1}), sa.column("meta"), "sqlite") is not None


def _mysql(filter: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.String), sa.Column("meta", sa.JSON))
    where = compile_filter(parse_filter(filter), table.c.meta, "mysql")
    assert where is not None
    compiled = sa.select(table.c.id).where(where).compile(dialect=pymysql.dialect())
    return str(compiled), dict(compiled.params)


def test_a_10000_value_in_is_one_member_of_per_json_type() -> None:
    values: list[Any] = [f"s{i}" for i in range(5_000)] + list(range(5_000)) + [True, 1.5]
    sql, params = _mysql({"k": {"$in": values}})
    # integers, doubles (numbers never compared across kinds: TiDB's 1e-8 tolerance),
    # strings, booleans
    assert sql.count("MEMBER OF (CAST(%s AS JSON))") == 4
    assert len(params) <= 12 and len(sql) < 2_500  # the values are 4 bound JSON arrays
    arrays = [json.loads(p) for p in params.values() if p.startswith("[")]
    assert sorted(len(a) for a in arrays) == [1, 5_000, 5_000, 5_001]
    assert [True] in arrays
    assert "JSON_TYPE(JSON_EXTRACT(t.meta, %s)) = 'BOOLEAN'" in sql
    assert "JSON_TYPE(JSON_EXTRACT(t.meta, %s)) = 'STRING'" in sql


def test_small_in_lists_keep_the_plain_comparisons() -> None:
    sql, _ = _mysql({"k": {"$in": list(range(MEMBERSHIP_MIN - 1))}})
    assert "MEMBER OF" not in sql
    # each integer: one comparison with stored integers, one with stored doubles
    assert sql.count("= CAST(%s AS JSON)") == 2 * (MEMBERSHIP_MIN - 1)


def test_wide_and_or_lists_are_nested_in_groups() -> None:
    # 3,000 different keys: no membership, so the OR is nested in parenthesised groups
    # and SQLite's parser depth stays small.
    flt = {"$or": [{f"k{i}": {"$gt": i}} for i in range(3_000)]}
    engine = sa.create_engine("sqlite://")
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer), sa.Column("meta", sa.JSON))
    table.create(engine)
    where = compile_filter(parse_filter(flt), table.c.meta, "sqlite")
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": 1, "meta": {"k2999": 3000}}, {"id": 2, "meta": {}}])
        assert conn.execute(sa.select(table.c.id).where(where)).scalars().all() == [1]


def test_a_filter_over_the_value_limit_is_refused() -> None:
    from tidb_jina.store._filter_tree import MAX_FILTER_VALUES

    assert parse_filter({"k": {"$in": list(range(MAX_FILTER_VALUES))}}) is not None
    with pytest.raises(InvalidFilterError, match=f"more than {MAX_FILTER_VALUES} values"):
        parse_filter({"k": {"$in": list(range(MAX_FILTER_VALUES + 1))}})


def test_a_built_tree_that_sets_no_condition_is_no_condition() -> None:
    from tidb_jina.store._filter_tree import And, Filter, Not, Or

    for node in (And(()), And((And(()),)), Not(Or(())), And((Not(Or(())), And(())))):
        assert parse_filter(Filter(node)) is None
    kept = Filter(And((Or(()),)))
    assert parse_filter(kept) is kept
