"""Issue 17 (TiDB): what TiDB's own sources say, checked on the wire and as compiled SQL.

Each group pins one finding of the audit against ``pingcap/tidb``:

1. ``VEC_COSINE_DISTANCE`` is NULL for an all-zero vector (``builtin_vec.go``): zero
   vectors are refused on cosine tables, NULL distances are left out, never raised.
2. ``utf8mb4_bin`` is PAD SPACE (``pkg/util/collate``): new tables use the NO PAD
   ``utf8mb4_0900_bin``; ids ending in a space are refused on PAD SPACE tables.
3. ``until``, ``ilike``, ``tablesample``, ``tidb_current_tso`` are reserved in
   ``parser.y`` but not in SQLAlchemy's MySQL list: they are quoted.
4. Deletes and ``clear()`` go in primary-key batches, one transaction each.
5. Full-text without an index is a clear error; ``full_text=True`` puts the index in
   ``CREATE TABLE``; every refusal of the vector index DDL is handled one way.

The same behaviours on real engines (embedded always, TiDB when ``TIDB_DATABASE_URL`` is
set) are in ``test_fidelity_behaviour.py``.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects.mysql.reserved_words import RESERVED_WORDS_MYSQL

from tidb_jina import (
    ConfigurationError,
    DatabaseError,
    InvalidInputError,
    InvalidVectorError,
    UnsupportedFeatureError,
)
from tidb_jina.store._backend_tidb import results_from_rows
from tidb_jina.store._metrics import DistanceMetric
from tidb_jina.store._schema import ID_COLLATION, build_table, pads_spaces
from tidb_jina.store._tidb_names import TIDB_ONLY_RESERVED_WORDS, TIDB_RESERVED_WORDS
from tidb_jina.testing import MySQLRecorder

DIALECT = mysql.pymysql.dialect()
AUDITED_WORDS = ("until", "ilike", "tablesample", "tidb_current_tso")
NO_FULLTEXT_INDEX = r"no full-text index.*create_full_text_index\(\)"
SEARCH = r"AS distance\s+FROM"  # a vector search (or the KNN inside a post-filter)


def _flat(sql: str) -> str:
    return " ".join(sql.split())


def _sql(recorder: MySQLRecorder, *kinds: str) -> list[str]:
    return [_flat(s) for s in recorder.sql(*kinds)]


def _loaded(table):
    assert table.exists()
    return table


# --- 1. zero vectors and NULL distances -------------------------------------------------


def test_an_all_zero_vector_is_refused_on_a_cosine_table_before_anything_is_sent(
    stub, make_stub_table
):
    table = make_stub_table(dimension=3)
    with pytest.raises(InvalidVectorError, match=r"vector 1 is all zeros.*metric='l2'"):
        table.upsert([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], ids=["a", "z"])
    assert not [s for s in _sql(stub) if s.startswith(("CREATE", "INSERT"))]
    l2 = make_stub_table(MySQLRecorder(), dimension=3, metric="l2")
    assert l2.upsert([[0.0, 0.0, 0.0]], ids=["z"]) == ["z"], "L2 has a distance for zeros"


def test_an_all_zero_query_is_refused_on_a_cosine_table(stub, make_stub_table):
    stub.add_table("docs", 3)
    table = _loaded(make_stub_table())
    stub.reset()
    with pytest.raises(InvalidVectorError, match="query vector is all zeros"):
        table.search([0.0, 0.0, 0.0], k=3)
    with pytest.raises(InvalidVectorError, match="query vector is all zeros"):
        table.max_marginal_relevance_search(np.zeros(3), k=2)
    assert _sql(stub, "SELECT") == []


def test_null_distances_are_left_out_and_their_slots_refilled_by_one_exact_query(
    stub, make_stub_table
):
    stub.add_table("docs", 3)
    table = _loaded(make_stub_table())
    # A table filled by another tool: two rows hold zero vectors, TiDB sorts them first.
    stub.reply(
        SEARCH,
        columns=["id", "document", "meta", "distance"],
        rows=[("z1", "zero", "{}", None), ("z2", "zero", "{}", None), ("a", "A", "{}", 0.25)],
        times=1,
    )
    stub.reset()
    hits = table.search([1.0, 0.0, 0.0], k=3)
    first, exact = _sql(stub, "SELECT")
    assert first.endswith("FROM docs ORDER BY distance LIMIT 3"), "the index-friendly shape"
    assert exact == (
        "SELECT docs.id, docs.document, docs.meta, "
        "VEC_COSINE_DISTANCE(docs.embedding, '[1.0,0.0,0.0]') AS distance FROM docs "
        "WHERE VEC_COSINE_DISTANCE(docs.embedding, '[1.0,0.0,0.0]') IS NOT NULL "
        "ORDER BY distance LIMIT 3"
    )
    assert [h.id for h in hits] == ["doc-0", "doc-1", "doc-2"], "the exact query's rows"


def test_null_distances_that_leave_k_rows_cost_no_second_query(stub, make_stub_table):
    stub.add_table("docs", 3)
    table = _loaded(make_stub_table())
    stub.reply(
        SEARCH,
        columns=["id", "document", "meta", "distance"],
        rows=[("z", None, None, None), ("a", "A", "{}", 0.1), ("b", "B", "{}", 0.2)],
    )
    stub.reset()
    hits = table.search([1.0, 0.0, 0.0], k=2)
    assert [(h.id, h.distance) for h in hits] == [("a", 0.1), ("b", 0.2)]
    assert len(_sql(stub, "SELECT")) == 1
    stub.reset()
    post = table.search([1.0, 0.0, 0.0], k=3, filter={"g": 1}, prefilter=False)
    assert [h.id for h in post] == ["a", "b"] and len(_sql(stub, "SELECT")) == 1, (
        "post-filter only: fewer rows, never a second statement"
    )


def test_null_distances_under_a_threshold_are_counted_and_their_slots_refilled(
    stub, make_stub_table
):
    stub.add_table("docs", 3)
    table = _loaded(make_stub_table())
    # The outer threshold must not hide the NULL rows that took slots of the inner LIMIT.
    stub.reply(
        SEARCH,
        columns=["id", "document", "meta", "distance"],
        rows=[("z1", "zero", "{}", None), ("a", "A", "{}", 0.25)],
        times=1,
    )
    stub.reply(
        "IS NOT NULL",
        columns=["id", "document", "meta", "distance"],
        rows=[("a", "A", "{}", 0.25), ("b", "B", "{}", 0.5)],
    )
    stub.reset()
    hits = table.search([1.0, 0.0, 0.0], k=2, max_distance=0.5)
    first, exact = _sql(stub, "SELECT")
    assert first.endswith(
        "LIMIT 2) AS candidates WHERE candidates.distance <= 0.5e0 "
        "OR candidates.distance IS NULL ORDER BY candidates.distance"
    )
    assert "IS NOT NULL ORDER BY distance LIMIT 2) AS candidates" in exact
    assert exact.endswith("WHERE candidates.distance <= 0.5e0 ORDER BY candidates.distance")
    assert [(h.id, h.distance) for h in hits] == [("a", 0.25), ("b", 0.5)]


def test_rows_without_a_distance_never_raise():
    stmt = sa.select(sa.literal_column("id"), sa.literal_column("distance"))
    rows = [
        type("Row", (), {"id": "z", "document": None, "meta": None, "distance": None})(),
        type("Row", (), {"id": "a", "document": "A", "meta": {}, "distance": 0.5})(),
    ]
    results = results_from_rows(rows, DistanceMetric.COSINE, stmt)
    assert [(r.id, r.score) for r in results] == [("a", 0.5)]


def test_a_text_only_hybrid_hit_without_a_vector_keeps_its_rank_with_distance_nan():
    # Peers' tables may hold NULL embeddings; zero ones have no cosine distance either.
    from tidb_jina.store._results import Record
    from tidb_jina.store._search import _distances_for

    class Rows:
        metric = DistanceMetric.COSINE

        def get(self, ids, *, include_embeddings=False):
            vectors = {"a": [1.0, 0.0, 0.0], "n": None, "z": [0.0, 0.0, 0.0]}
            return [Record(i, "t", {}, vectors[i]) for i in ids]

    found = _distances_for(Rows(), ["a", "n", "z"], np.array([1.0, 0.0, 0.0], np.float32))
    assert found["a"] == pytest.approx(0.0)
    assert np.isnan(found["n"]) and np.isnan(found["z"])


# --- 2. ids and collations --------------------------------------------------------------


def test_new_tables_compare_ids_no_pad_and_send_trailing_spaces_as_they_are(stub, make_stub_table):
    table = make_stub_table(dimension=3)
    table.upsert([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], ids=["a", "a "])
    (create,) = [s for s in _sql(stub) if s.startswith("CREATE TABLE")]
    assert f"id VARCHAR(512) CHARACTER SET utf8mb4 COLLATE {ID_COLLATION} NOT NULL" in create
    (insert,) = _sql(stub, "INSERT")
    assert "('a', '[1.0,0.0,0.0]'" in insert and "('a ', '[0.0,1.0,0.0]'" in insert
    table.delete(["a "])
    assert _sql(stub, "DELETE") == ["DELETE FROM docs WHERE docs.id IN ('a ')"]


@pytest.mark.parametrize("collation", ["utf8mb4_bin", "utf8mb4_general_ci", "utf8_bin"])
def test_ids_ending_in_a_space_are_refused_on_pad_space_tables(stub, make_stub_table, collation):
    stub.add_table("docs", 3, id_length=36, id_collation=collation)  # a peer's table
    table = _loaded(make_stub_table())
    stub.reset()
    calls = [
        lambda: table.upsert([[1.0, 0.0, 0.0]], ids=["a "]),
        lambda: table.delete(["x", "a "]),
        lambda: table.get(["a "]),
        lambda: table.search([1.0, 0.0, 0.0], ids=["a "]),
        lambda: table.add_texts(["t"], ids=["a "], embed=lambda texts: [[1.0, 0.0, 0.0]]),
    ]
    for call in calls:
        with pytest.raises(InvalidInputError, match=r"ends in a space.*PAD SPACE.*new table"):
            call()
    assert _sql(stub) == [], "refused before any statement"
    assert table.upsert([[1.0, 0.0, 0.0]], ids=[" a"]) == [" a"], "leading spaces are fine"


def test_a_no_pad_existing_table_takes_any_id(stub, make_stub_table):
    stub.add_table("docs", 3, id_collation="utf8mb4_0900_bin")
    table = make_stub_table()
    assert table.upsert([[1.0, 0.0, 0.0]] * 2, ids=["a", "a "]) == ["a", "a "]


def test_pad_space_follows_tidbs_collation_list():
    assert [c for c in ("binary", "utf8mb4_0900_bin", "UTF8MB4_0900_AI_CI") if pads_spaces(c)] == []
    assert all(pads_spaces(c) for c in ("utf8mb4_bin", "utf8_bin", "latin1_bin", "ascii_bin"))
    assert not pads_spaces(None), "the embedded engine reports none: SQLite compares exactly"
    ddl = _flat(str(sa.schema.CreateTable(build_table("t", 3, "sqlite")).compile()))
    assert "COLLATE" not in ddl, "the embedded engine's BINARY comparison is exact already"


# --- 3. identifiers TiDB reserves -------------------------------------------------------


def test_tidbs_reserved_words_come_from_its_grammar():
    assert set(AUDITED_WORDS) <= TIDB_ONLY_RESERVED_WORDS
    assert not set(AUDITED_WORDS) & RESERVED_WORDS_MYSQL, "SQLAlchemy would not quote them"
    assert {"select", "table", "rank", "groups", "array"} <= TIDB_RESERVED_WORDS
    assert not {"docs", "comment", "vector", "json", "document"} & TIDB_RESERVED_WORDS


def _bare(word: str, sql: str) -> bool:
    """True if ``word`` appears as an unquoted identifier in ``sql``."""
    return bool(re.search(rf"(?<![`\w.'\"]){word}(?![`\w'\"])", sql, re.IGNORECASE))


@pytest.mark.parametrize("word", sorted(TIDB_ONLY_RESERVED_WORDS))
def test_a_reserved_table_name_is_quoted_in_every_statement(make_stub_table, word):
    recorder = MySQLRecorder(starter=True)
    table = make_stub_table(recorder, table_name=word, dimension=3, indexed_key="ref_doc_id")
    table.upsert([[1.0, 0.0, 0.0]], ids=["a"], metadatas=[{"ref_doc_id": "d"}])
    table.search([1.0, 0.0, 0.0], k=2, filter={"ref_doc_id": "d"})
    table.create_full_text_index()
    table.full_text_search("hello")
    table.delete(filter={"ref_doc_id": "d"})
    table.clear()
    table.drop()
    sent = [s for s in _sql(recorder) if word in s.lower()]
    assert len(sent) >= 10
    assert [s for s in sent if _bare(word, s)] == []
    assert any(s.startswith(f"CREATE TABLE IF NOT EXISTS `{word}` (") for s in sent)
    assert f"DROP TABLE `{word}`" in sent


@pytest.mark.parametrize("word", AUDITED_WORDS)
def test_reserved_table_names_are_quoted_by_any_mysql_dialect(word):
    table = build_table(word, 3, "mysql", indexed_key="ref_doc_id")
    create = _flat(str(sa.schema.CreateTable(table).compile(dialect=DIALECT)))
    select = _flat(str(sa.select(table.c.id).where(table.c.id == "a").compile(dialect=DIALECT)))
    assert create.startswith(f"CREATE TABLE `{word}` (")
    assert select == f"SELECT `{word}`.id FROM `{word}` WHERE `{word}`.id = %s"
    index = _flat(str(sa.schema.CreateIndex(next(iter(table.indexes))).compile(dialect=DIALECT)))
    assert index == f"CREATE INDEX ix_{word}_ref_doc_id ON `{word}` (meta_ref_doc_id)"


@pytest.mark.parametrize("word", AUDITED_WORDS)
def test_a_reserved_metadata_key_is_a_json_path_string(stub, make_stub_table, word):
    stub.add_table("docs", 3)
    table = _loaded(make_stub_table())
    stub.reset()
    table.upsert([[1.0, 0.0, 0.0]], ids=["a"], metadatas=[{word: 1}])
    table.search([1.0, 0.0, 0.0], k=2, filter={word: {"$in": [1, 2]}, "$or": [{word: 1}]})
    table.count(filter={word: {"$exists": True}})
    for sql in _sql(stub, "INSERT", "SELECT"):
        assert not _bare(word, sql), sql
    assert any(f"'$.\\\"{word}\\\"'" in s for s in _sql(stub, "SELECT"))


def test_a_reserved_indexed_key_becomes_a_prefixed_column(make_stub_table):
    recorder = MySQLRecorder()
    table = make_stub_table(recorder, dimension=3, indexed_key="until")
    table.upsert([[1.0, 0.0, 0.0]], metadatas=[{"until": "x"}])
    (create,) = [s for s in _sql(recorder) if s.startswith("CREATE TABLE")]
    assert "meta_until VARCHAR(512) GENERATED ALWAYS AS " in create
    assert not _bare("until", create.replace("'$.until'", ""))


# --- 4. bounded deletes -----------------------------------------------------------------


def _walk(recorder: MySQLRecorder, batches: list[list[str]], top: str) -> None:
    """Answer a primary-key walk: MAX(id), then one id batch per SELECT, one DELETE each."""
    recorder.reply(r"^\s*SELECT max\(docs\.id\)", columns=["max_1"], rows=[(top,)])
    for batch in reversed(batches):  # later rules answer first
        rows = [(i,) for i in batch]
        recorder.reply(r"^\s*SELECT docs\.id\s+FROM docs", columns=["id"], rows=rows, times=1)
        recorder.reply(r"^\s*DELETE FROM docs", rowcount=len(batch), times=1)


def test_clear_deletes_in_primary_key_batches_one_transaction_each(stub, make_stub_table):
    stub.add_table("docs", 3)
    table = _loaded(make_stub_table())
    table._backend.delete_batch_rows = 3
    _walk(stub, [["a", "b", "c"], ["d", "e", "f"], ["g"]], top="g")
    stub.reset()
    assert table.clear() == 7
    sent = [s for s in _sql(stub) if s.startswith(("SELECT", "DELETE"))]
    assert sent == [
        "SELECT max(docs.id) AS max_1 FROM docs",
        "SELECT docs.id FROM docs WHERE docs.id <= 'g' ORDER BY docs.id LIMIT 3",
        "DELETE FROM docs WHERE docs.id IN ('a', 'b', 'c')",
        "SELECT docs.id FROM docs WHERE docs.id <= 'g' AND docs.id > 'c' ORDER BY docs.id LIMIT 3",
        "DELETE FROM docs WHERE docs.id IN ('d', 'e', 'f')",
        "SELECT docs.id FROM docs WHERE docs.id <= 'g' AND docs.id > 'f' ORDER BY docs.id LIMIT 3",
        "DELETE FROM docs WHERE docs.id IN ('g')",
    ]
    kinds = [s.kind for s in stub.statements if s.kind in ("DELETE", "COMMIT")]
    assert kinds == ["DELETE", "COMMIT"] * 3, "each batch is its own transaction"
    assert "TRUNCATE" not in " ".join(_sql(stub))


def test_delete_by_filter_rechecks_the_filter_and_reports_the_servers_total(stub, make_stub_table):
    stub.add_table("docs", 3)
    table = _loaded(make_stub_table())
    table._backend.delete_batch_rows = 2
    _walk(stub, [["a", "b"], ["c", "d"], []], top="z")
    stub.reply(r"^\s*DELETE FROM docs WHERE docs\.id IN \('c', 'd'\)", rowcount=1, times=1)
    stub.reset()
    assert table.delete(filter={"lang": "en"}) == 3, "the DELETEs' own counts, summed"
    selects = [s for s in _sql(stub, "SELECT") if "docs.id FROM" in s]
    deletes = _sql(stub, "DELETE")
    assert len(selects) == 3 and len(deletes) == 2
    assert all("JSON_EXTRACT(docs.meta" in s for s in selects + deletes)


def test_the_default_batch_is_1000_rows_and_ids_go_in_committed_chunks(stub, make_stub_table):
    stub.add_table("docs", 3)
    table = _loaded(make_stub_table())
    assert table._backend.delete_batch_rows == 1000
    stub.reset()
    table.delete([f"id-{i}" for i in range(2_000)])
    deletes = [s for s in stub.statements if s.kind == "DELETE"]
    assert [s.sql.count("'id-") for s in deletes] == [900, 900, 200]
    assert stub.count("COMMIT") == 3


def test_an_empty_table_clears_with_one_read(stub, make_stub_table):
    stub.add_table("docs", 3)
    table = _loaded(make_stub_table())
    stub.reset()
    assert table.clear() == 0
    assert _sql(stub) == ["SELECT max(docs.id) AS max_1 FROM docs"]


# --- 5. full-text and index DDL ---------------------------------------------------------


def test_full_text_search_without_an_index_names_create_full_text_index(make_stub_table):
    starter = MySQLRecorder(starter=True)
    starter.add_table("docs", 3)
    table = _loaded(make_stub_table(starter))
    starter.reset()
    for call in (
        lambda: table.full_text_search("hello"),
        lambda: table.hybrid_search([1.0, 0.0, 0.0], "hello"),
    ):
        with pytest.raises(ConfigurationError, match=NO_FULLTEXT_INDEX):
            call()
    assert "FTS_MATCH_WORD" not in " ".join(_sql(starter))
    table.create_full_text_index()
    starter.reset()
    table.full_text_search("hello")
    table.full_text_search("again")
    assert [s for s in _sql(starter) if "STATISTICS" in s] == [], "known after creating it"
    assert len([s for s in _sql(starter) if "FTS_MATCH_WORD" in s]) == 2


def test_an_existing_full_text_index_is_found_once_per_table(make_stub_table):
    starter = MySQLRecorder(starter=True)
    starter.add_table("docs", 3, indexes={"some_other_name": "fulltext"})
    table = _loaded(make_stub_table(starter))
    starter.reset()
    table.full_text_search("hello")
    table.full_text_search("again")
    (check,) = [s for s in _sql(starter) if "STATISTICS" in s]
    assert "COLUMN_NAME = 'document'" in check


def test_full_text_true_puts_the_index_in_create_table(make_stub_table):
    starter = MySQLRecorder(starter=True)
    table = make_stub_table(starter, dimension=3, full_text=True)
    table.upsert([[1.0, 0.0, 0.0]], documents=["hello"])
    (create,) = [s for s in _sql(starter) if s.startswith("CREATE TABLE")]
    # the column list ends with the index; the table's JSON COMMENT (issue 16) follows it
    assert (
        "PRIMARY KEY (id), FULLTEXT INDEX ftidx_docs (document) WITH PARSER MULTILINGUAL )COMMENT="
        in create
    )
    starter.reset()
    table.full_text_search("hello")
    assert [s for s in _sql(starter) if "FTS_MATCH_WORD" in s]
    assert [s for s in _sql(starter) if "STATISTICS" in s] == [], "known: created with it"


def test_full_text_true_where_the_server_cannot_fails_before_any_table_exists(make_stub_table):
    starter = MySQLRecorder(starter=True)
    starter.fail(r"^\s*CREATE TABLE", 8200, "Unsupported add columnar index: full-text search")
    table = make_stub_table(starter, dimension=3, full_text=True)
    for _ in range(2):
        with pytest.raises(DatabaseError, match="full-text search"):
            table.upsert([[1.0, 0.0, 0.0]], documents=["hello"])
    assert starter.tables == {} and not table.exists()
    assert _sql(starter, "INSERT") == []
    assert not [s for s in _sql(starter) if s.startswith(("CREATE FULLTEXT", "CREATE VECTOR"))]


SKIPPED_FULLTEXT = ("Warning", 1214, "The used table type doesn't support FULLTEXT indexes")


def test_full_text_true_where_the_server_skips_the_index_takes_the_new_table_back(
    make_stub_table,
):
    # TiDB builds without full-text search skip an inline FULLTEXT INDEX with warning 1214
    # and create the table anyway (pkg/ddl buildTableInfo): no table may stay like that.
    starter = MySQLRecorder(starter=True)
    starter.reply(
        r"^\s*SHOW WARNINGS", columns=["Level", "Code", "Message"], rows=[SKIPPED_FULLTEXT]
    )
    table = make_stub_table(starter, dimension=3, full_text=True)
    with pytest.raises(UnsupportedFeatureError, match=r"warning 1214.*full_text=False"):
        table.upsert([[1.0, 0.0, 0.0]], documents=["hello"])
    sent = _sql(starter)
    create = next(i for i, s in enumerate(sent) if s.startswith("CREATE TABLE"))
    assert sent[create + 1] == "SHOW WARNINGS", "read at once, on the CREATE's connection"
    assert sent[create + 2 :] == ["SELECT docs.id FROM docs LIMIT 1", "DROP TABLE docs"]
    assert starter.tables == {} and _sql(starter, "INSERT") == []


def test_a_skipped_full_text_index_on_a_table_someone_else_made_is_refused_not_dropped(
    make_stub_table,
):
    starter = MySQLRecorder(starter=True)
    exists = ("Note", 1050, "Table 'test.docs' already exists")
    starter.reply(
        r"^\s*SHOW WARNINGS",
        columns=["Level", "Code", "Message"],
        rows=[exists, SKIPPED_FULLTEXT],
    )
    table = make_stub_table(starter, dimension=3, full_text=True)
    with pytest.raises(UnsupportedFeatureError, match="warning 1214"):
        table.upsert([[1.0, 0.0, 0.0]], documents=["hello"])
    assert not [s for s in _sql(starter) if s.startswith("DROP")]
    assert list(starter.tables) == ["docs"] and _sql(starter, "INSERT") == []


def test_a_table_without_full_text_never_reads_warnings(stub, make_stub_table):
    make_stub_table(dimension=3).upsert([[1.0, 0.0, 0.0]], ids=["a"])
    assert "SHOW WARNINGS" not in _sql(stub)


def test_every_refused_vector_index_ddl_is_handled_one_way(stub, make_stub_table, caplog):
    stub.fail("CREATE VECTOR INDEX", 8200, "Unsupported add vector index: unsupported partition")
    table = make_stub_table(dimension=3)
    with caplog.at_level(logging.WARNING, logger="tidb_jina"):
        table.upsert([[1.0, 0.0, 0.0]], ids=["a"])  # creates the table: index refused
        table.upsert([[0.0, 1.0, 0.0]], ids=["b"])
    assert len(_sql(stub, "INSERT")) == 2, "both writes go on"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unsupported partition" in warnings[0]
    status = table.index_status()
    assert status.kind == "exact" and "unsupported partition" in status.note
    assert "create_vector_index()" in status.note
    with pytest.raises(DatabaseError, match="unsupported partition"):
        table.create_vector_index()  # asked for explicitly: the error itself


def test_a_full_text_index_only_tiflash_reports_is_found_too(make_stub_table):
    starter = MySQLRecorder(starter=True)
    starter.add_table("docs", 3, indexes={"ft": "fulltext"})
    starter.reply(r"INFORMATION_SCHEMA\.STATISTICS", columns=["INDEX_NAME"], rows=[])
    table = _loaded(make_stub_table(starter))
    starter.reset()
    table.full_text_search("hello")
    checks = [s for s in _sql(starter) if "INFORMATION_SCHEMA" in s]
    assert len(checks) == 2 and "INDEX_KIND = 'FullText'" in checks[1]
    assert [s for s in _sql(starter) if "FTS_MATCH_WORD" in s]
