"""An indexed metadata key: same answers as the plain filter, but through an index."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from tidb_jina import InvalidIdentifierError, InvalidInputError
from tidb_jina.store import VectorTable
from tidb_jina.store._crud import where_clause
from tidb_jina.store._filter_tree import parse_filter
from tidb_jina.store._schema import build_table

METAS = [
    {"ref_doc_id": "d1"},
    {"ref_doc_id": "d1", "x": 1},
    {"ref_doc_id": "d2"},
    {"ref_doc_id": 5},  # a number: never equal to the string "5"
    {"other": "d1"},
    {},
]


@pytest.fixture
def pair(tmp_path):
    """The same rows in an indexed table and a plain one."""
    url = f"sqlite:///{tmp_path / 'ix.db'}"
    tables = []
    for name, key in (("indexed", "ref_doc_id"), ("plain", None)):
        t = VectorTable(url, table_name=name, indexed_key=key)
        t.upsert(
            [[1.0, float(i)] for i in range(6)], ids=[str(i) for i in range(6)], metadatas=METAS
        )
        tables.append(t)
    return tables


@pytest.mark.parametrize(
    "flt",
    [
        {"ref_doc_id": "d1"},
        {"ref_doc_id": "5"},
        {"ref_doc_id": 5},
        {"ref_doc_id": {"$in": ["d1", "d2", "5"]}},
        {"ref_doc_id": {"$ne": "d1"}},
        {"ref_doc_id": {"$nin": ["d1"]}},
        {"$not": {"ref_doc_id": "d2"}},
        {"ref_doc_id": "d1", "x": 1},
    ],
)
def test_same_rows_as_without_the_index(pair, flt):
    indexed, plain = pair
    assert [r.id for r in indexed.get(filter=flt)] == [r.id for r in plain.get(filter=flt)]
    assert indexed.count(flt) == plain.count(flt)


def test_equality_uses_the_index(pair):
    indexed, _ = pair
    where = where_clause(indexed.table, parse_filter({"ref_doc_id": "d1"}), "sqlite", "ref_doc_id")
    stmt = sa.delete(indexed.table).where(where)
    sql = str(stmt.compile(indexed.engine, compile_kwargs={"literal_binds": True}))
    with indexed.engine.connect() as conn:
        plan = " ".join(str(r) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    assert "ix_indexed_ref_doc_id" in plan, plan
    assert indexed.delete(filter={"ref_doc_id": "d1"}) == 2
    assert indexed.count() == 4


def test_indexed_values_must_be_short_scalars(pair):
    indexed, _ = pair
    for bad in ({"ref_doc_id": {"nested": 1}}, {"ref_doc_id": ["a"]}, {"ref_doc_id": "x" * 513}):
        with pytest.raises(InvalidInputError, match="indexed"):
            indexed.upsert([[1.0, 0.0]], ids=["new"], metadatas=[bad])
    assert indexed.count() == 6
    with pytest.raises(InvalidIdentifierError):
        VectorTable("sqlite://", indexed_key="ref.doc'id")


def test_tables_without_the_column_still_filter_correctly(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    VectorTable(url, table_name="old").upsert(
        [[1.0, 0.0]], ids=["a"], metadatas=[{"ref_doc_id": "d"}]
    )
    reopened = VectorTable(url, table_name="old", indexed_key="ref_doc_id")
    assert [r.id for r in reopened.get(filter={"ref_doc_id": "d"})] == ["a"]


def test_tidb_ddl_and_filter():
    dialect = mysql.pymysql.dialect()
    table = build_table("docs", 3, "mysql", indexed_key="ref_doc_id")
    ddl = " ".join(str(sa.schema.CreateTable(table).compile(dialect=dialect)).split())
    assert (
        "meta_ref_doc_id VARCHAR(512) GENERATED ALWAYS AS "
        "(JSON_UNQUOTE(JSON_EXTRACT(meta, '$.ref_doc_id'))) VIRTUAL" in ddl
    )
    (index,) = table.indexes
    assert str(sa.schema.CreateIndex(index, if_not_exists=True).compile(dialect=dialect)) == (
        "CREATE INDEX IF NOT EXISTS ix_docs_ref_doc_id ON docs (meta_ref_doc_id)"
    )
    store = VectorTable(
        "mysql://root@127.0.0.1:4000/t", table_name="docs", indexed_key="ref_doc_id"
    )
    where = where_clause(table, parse_filter({"ref_doc_id": "d1"}), "mysql", store.indexed_key)
    assert str(where.compile(dialect=dialect)).startswith("docs.meta_ref_doc_id = %s AND ")
