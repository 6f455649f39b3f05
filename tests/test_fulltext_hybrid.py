"""Full-text and hybrid search: FTS5 in sync with the table, RRF checked by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from tidb_jina import InvalidInputError, UnsupportedFeatureError
from tidb_jina._maths import reciprocal_rank_fusion, weighted_fusion
from tidb_jina.store import VectorTable
from tidb_jina.store._schema import build_table
from tidb_jina.store._tidb import fulltext_search_statement

DATA = Path(__file__).resolve().parent.parent / "examples" / "data"

DOCS = {
    "tidb": "TiDB is a distributed SQL database",
    "vec": "TiDB supports vector search and full-text search",
    "jina": "Jina AI builds embedding models for search",
    "pasta": "Pasta with tomato sauce",
    "kyoto": "Kyoto temples in autumn",
}
# Hand-made 3-d vectors: axis 0 = databases, 1 = search/AI, 2 = everything else.
VECTORS = {
    "tidb": [1.0, 0.1, 0.0],
    "vec": [0.7, 0.7, 0.0],
    "jina": [0.1, 1.0, 0.0],
    "pasta": [0.0, 0.0, 1.0],
    "kyoto": [0.0, 0.2, 1.0],
}


@pytest.fixture
def table(tmp_path):
    t = VectorTable(f"sqlite:///{tmp_path / 'ft.db'}", table_name="docs")
    ids = list(DOCS)
    t.upsert(
        [VECTORS[i] for i in ids],
        ids=ids,
        documents=[DOCS[i] for i in ids],
        metadatas=[{"n": n} for n in range(len(ids))],
    )
    return t


def test_full_text_ranks_by_bm25_and_scales_scores(table):
    hits = table.full_text_search("vector search", k=5)
    assert [h.id for h in hits] == ["vec", "jina"]
    assert hits[0].score == 1.0 and 0 < hits[1].score < 1
    assert hits[0].text_score > hits[1].text_score > 0
    assert all(math.isnan(h.distance) for h in hits)


@pytest.mark.parametrize(
    "query", ['What is "TiDB"?', "TiDB AND (", "NEAR(tidb sql)", "tidb* OR -x", "col:tidb"]
)
def test_user_text_is_never_parsed_as_fts5_syntax(table, query):
    hits = table.full_text_search(query, k=5)
    assert "tidb" in {h.id for h in hits}


def test_queries_without_words_return_nothing(table):
    assert table.full_text_search("?!  ...", k=3) == []
    assert table.full_text_search("   ", k=3) == []
    with pytest.raises(InvalidInputError, match="string"):
        table.full_text_search(None, k=3)  # type: ignore[arg-type]


def test_index_follows_inserts_updates_and_deletes(table):
    assert [h.id for h in table.full_text_search("tomato")] == ["pasta"]
    table.upsert([[0, 0, 1]], ids=["pasta"], documents=["Risotto with mushrooms"])
    assert table.full_text_search("tomato") == []
    assert [h.id for h in table.full_text_search("risotto")] == ["pasta"]
    table.upsert([[0, 0, 1]], ids=["soup"], documents=["Tomato soup"])
    assert [h.id for h in table.full_text_search("tomato")] == ["soup"]
    table.delete(["soup"])
    assert table.full_text_search("tomato") == []
    table.clear()
    assert table.full_text_search("tidb") == []


def test_index_built_from_existing_rows_and_by_a_second_handle(table, tmp_path):
    other = VectorTable(f"sqlite:///{tmp_path / 'ft.db'}", table_name="docs")
    other.upsert([[1, 0, 0]], ids=["new"], documents=["A new TiDB release"])
    assert "new" in {h.id for h in table.full_text_search("release")}


def test_full_text_with_filter(table):
    hits = table.full_text_search("search", k=5, filter={"n": {"$gte": 2}})
    assert [h.id for h in hits] == ["jina"]


def test_hybrid_rrf_matches_a_hand_computation(table):
    query = np.array([0.8, 0.6, 0.0], dtype=np.float32)
    vector_rank = [h.id for h in table.search(query, k=40)]
    text_rank = [h.id for h in table.full_text_search("search engine", k=40)]
    assert text_rank == ["jina", "vec"] or text_rank == ["vec", "jina"]
    expected = {}
    for ranking in (vector_rank, text_rank):
        for rank, key in enumerate(ranking, start=1):
            expected[key] = expected.get(key, 0.0) + 1 / (60 + rank)
    best = 2 / 61
    hits = table.hybrid_search(query, "search engine", k=3)
    want = sorted(expected, key=lambda key: -expected[key])[:3]
    assert [h.id for h in hits] == want
    for h in hits:
        assert h.score == pytest.approx(expected[h.id] / best)
        assert h.distance == pytest.approx(
            1
            - float(np.dot(VECTORS[h.id], query))
            / (np.linalg.norm(VECTORS[h.id]) * np.linalg.norm(query)),
            abs=1e-5,
        )
    assert {h.id: h.text_score is not None for h in hits} == {h.id: h.id in text_rank for h in hits}


def test_text_only_hits_get_their_real_vector_distance(table):
    query = np.array([0.0, 0.0, 1.0], dtype=np.float32)  # pasta / kyoto side
    hits = table.hybrid_search(query, "distributed SQL", k=5, num_candidates=2)
    tidb = next(h for h in hits if h.id == "tidb")
    assert tidb.distance == pytest.approx(1.0, abs=1e-6)  # orthogonal to the query
    assert tidb.text_score > 0


def test_weighted_fusion_alpha_extremes(table):
    query = np.array([0.0, 0.1, 1.0], dtype=np.float32)
    vector_only = table.hybrid_search(query, "tidb sql", k=3, fusion="weighted", alpha=1.0)
    assert [h.id for h in vector_only] == [h.id for h in table.search(query, k=3)]
    text_only = table.hybrid_search(query, "tidb sql", k=1, fusion="weighted", alpha=0.0)
    assert [h.id for h in text_only] == [table.full_text_search("tidb sql", k=1)[0].id]
    with pytest.raises(InvalidInputError, match="fusion"):
        table.hybrid_search(query, "x", fusion="max")
    with pytest.raises(InvalidInputError, match="alpha"):
        table.hybrid_search(query, "tidb", fusion="weighted", alpha=1.5)


def test_fusion_maths():
    scores = reciprocal_rank_fusion([["a", "b"], ["b", "c"]], k=1)
    assert scores["b"] == pytest.approx((1 / 3 + 1 / 2) / 1.0)
    assert scores["a"] == pytest.approx((1 / 2) / 1.0)
    assert weighted_fusion({"a": 0.5}, {"a": 2.0, "b": 4.0}, alpha=0.5) == {
        "a": pytest.approx(0.5 * 0.5 + 0.5 * 0.5),
        "b": pytest.approx(0.5),
    }


async def test_async_twins(table):
    hits = await table.aio.full_text_search("tomato")
    assert [h.id for h in hits] == ["pasta"]
    fused = await table.aio.hybrid_search([1.0, 0.0, 0.0], "tidb", k=2)
    assert fused[0].id == "tidb"
    await table.aio.dispose()


def test_drop_removes_the_full_text_index(table, tmp_path):
    table.full_text_search("tidb")
    table.drop()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ft.db'}")
    with engine.connect() as conn:
        names = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master")}
    assert not any(n.startswith("docs") for n in names), names


def test_tidb_full_text_needs_starter_and_compiles_to_fts_match_word():
    with pytest.raises(UnsupportedFeatureError, match="TiDB Cloud Starter"):
        VectorTable("mysql://root@127.0.0.1:4000/test", full_text=True)
    self_managed = VectorTable("mysql://root@127.0.0.1:4000/test")
    with pytest.raises(UnsupportedFeatureError, match="Starter"):
        self_managed.full_text_search("tidb")
    starter = "mysql://u.root:p@gateway01.us-west-2.prod.aws.tidbcloud.com:4000/test"
    VectorTable(starter, full_text=True)  # accepted: no I/O until first use
    t = build_table("docs", 3, "mysql")
    stmt = fulltext_search_statement(t, "what is tidb", 5, None)
    sql = " ".join(str(stmt.compile(dialect=mysql.pymysql.dialect())).split())
    assert sql == (
        "SELECT docs.id, docs.document, docs.meta, FTS_MATCH_WORD(%s, docs.document) AS "
        "text_score FROM docs WHERE FTS_MATCH_WORD(%s, docs.document) "
        "ORDER BY text_score DESC LIMIT %s"
    )


# --- Chinese and Japanese on the embedded engine ----------------------------------------

SEEDS = Path(__file__).parent.parent / "examples" / "seeds" / "multilingual.jsonl"
# Which seed documents TiDB's MULTILINGUAL parser matches for each query: it segments
# Chinese and Japanese into words and ORs the query's terms (reference/protocols.md 3.7;
# docs.pingcap.com "Full-text search with SQL"). The embedded engine must agree.
MULTILINGUAL_MATCHES = {
    "首都": {"capital-zh", "capital-ja"},  # "capital", inside both sentences
    "東京": {"capital-ja"},  # a two-character word at the start of a sentence
    "北京": {"capital-zh"},
    "博物馆": {"capital-zh"},
    "公園": {"capital-ja"},
    "日本": {"capital-ja"},
    "寺": {"capital-ja"},  # one character
    "capital": {"capital-en"},
    "TOKYO": {"capital-en"},  # case-insensitive
    "東京 capital": {"capital-en", "capital-ja"},  # terms are OR-ed
    "大阪": set(),
}


def test_one_cjk_character_matches_wherever_it_appears(seeds):
    """The one known difference: TiDB's segmenter keeps 首都 whole, so 首 alone finds
    nothing there; the embedded engine (no dictionary) finds the character anywhere."""
    assert {h.id for h in seeds.full_text_search("首", k=10)} == {"capital-zh", "capital-ja"}


@pytest.fixture
def seeds(tmp_path):
    records = [json.loads(line) for line in SEEDS.read_text(encoding="utf-8").splitlines()]
    t = VectorTable(f"sqlite:///{tmp_path / 'cjk.db'}", table_name="seeds")
    t.upsert(
        np.eye(len(records), dtype=np.float32),
        ids=[r["id"] for r in records],
        documents=[r["text"] for r in records],
        metadatas=[{"lang": r["lang"]} for r in records],
    )
    yield t
    t.close()


@pytest.mark.parametrize(("query", "expected"), MULTILINGUAL_MATCHES.items())
def test_cjk_words_match_inside_sentences_as_tidb_multilingual_does(seeds, query, expected):
    assert {h.id for h in seeds.full_text_search(query, k=10)} == expected


def test_cjk_ranking_prefers_more_matched_terms(seeds):
    seeds.upsert([[0.0, 0.0, 1.0]], ids=["tokyo-2"], documents=["東京の首都機能と東京タワー"])
    hits = seeds.full_text_search("東京 首都", k=10)
    assert hits[0].id == "tokyo-2"  # 東京 twice and 首都
    assert {h.id for h in hits} == {"tokyo-2", "capital-ja", "capital-zh"}
    assert hits[0].score == 1.0 and all(0 < h.score <= 1 for h in hits)


def test_cjk_index_follows_updates_deletes_and_plain_sql_writes(seeds, tmp_path):
    seeds.full_text_search("首都")  # index built
    seeds.upsert([[1.0, 0.0, 0.0]], ids=["capital-ja"], documents=["大阪は食べ物がおいしい。"])
    assert {h.id for h in seeds.full_text_search("首都")} == {"capital-zh"}
    assert [h.id for h in seeds.full_text_search("大阪")] == ["capital-ja"]
    seeds.delete(["capital-zh"])
    assert seeds.full_text_search("北京") == []
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'cjk.db'}")
    with engine.begin() as conn:  # another tool, with none of our SQL functions
        conn.exec_driver_sql(
            "INSERT INTO seeds (id, embedding, document, meta) "
            "VALUES ('plain', x'0000803f0000000000000000', '上海也是一座大城市', '{}')"
        )
        conn.exec_driver_sql("UPDATE seeds SET document = 'Osaka' WHERE id = 'capital-ja'")
    engine.dispose()
    assert [h.id for h in seeds.full_text_search("上海")] == ["plain"]
    assert seeds.full_text_search("大阪") == []
    assert [h.id for h in seeds.full_text_search("osaka")] == ["capital-ja"]


def test_a_pre_cjk_index_migrates_on_first_search(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    t = VectorTable(url, table_name="docs")
    t.upsert([[1.0, 0.0], [0.0, 1.0]], ids=["ja", "en"], documents=["東京は首都です", "Tokyo"])
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the index and triggers tidb-jina 0.x created
        for statement in _old_fulltext_ddl("docs"):
            conn.exec_driver_sql(statement)
    engine.dispose()
    fresh = VectorTable(url, table_name="docs")
    assert [h.id for h in fresh.full_text_search("首都")] == ["ja"]
    assert [h.id for h in fresh.full_text_search("tokyo")] == ["en"]
    with fresh.engine.connect() as conn:
        names = set(conn.exec_driver_sql("SELECT name FROM sqlite_master").scalars())
    assert "docs__fts" not in names and "docs__fts_ai" not in names
    assert {"docs__fts2", "docs__fts2_pending", "docs__fts2_ai"} <= names
    fresh.upsert([[1.0, 1.0]], ids=["new"], documents=["首都圏"])  # no old trigger fires
    assert {h.id for h in fresh.full_text_search("首都")} == {"ja", "new"}
    t.close()
    fresh.close()


def _old_fulltext_ddl(table: str) -> list[str]:
    insert = f"INSERT INTO {table}__fts(rowid, document) VALUES (new.rowid, new.document);"
    delete = (
        f"INSERT INTO {table}__fts({table}__fts, rowid, document) "
        "VALUES ('delete', old.rowid, old.document);"
    )
    return [
        f"CREATE VIRTUAL TABLE {table}__fts USING fts5(document, content={table}, "
        "content_rowid='rowid', tokenize='unicode61 remove_diacritics 2')",
        f"CREATE TRIGGER {table}__fts_ai AFTER INSERT ON {table} BEGIN {insert} END",
        f"CREATE TRIGGER {table}__fts_ad AFTER DELETE ON {table} BEGIN {delete} END",
        f"CREATE TRIGGER {table}__fts_au AFTER UPDATE OF document ON {table} "
        f"BEGIN {delete} {insert} END",
        f"INSERT INTO {table}__fts({table}__fts) VALUES ('rebuild')",
    ]


def test_query_analysis():
    from tidb_jina.store._fulltext import analyse, match_expression, query_terms

    assert query_terms("東京タワー, Tokyo!") == ["東京", "京タ", "タワ", "ワー", "tokyo"]
    assert query_terms("寺") == ["寺"]
    assert analyse("ＴｉＤＢの首都").split() == ["tidb", "の", "首", "都", "の首", "首都"]
    assert match_expression('"x" OR') == '"x" OR "or"'
    assert match_expression("\u3002\u3001\uff01") is None


def test_english_bm25_is_the_old_unicode61_index_exactly(tmp_path):
    """On English text the CJK-aware index ranks and scores as the plain unicode61 index
    over the document column (earlier versions) did."""
    from tidb_jina.store._fulltext import match_expression
    from tidb_jina.testing import LexicalEmbedder

    docs = [p.strip() for f in sorted(DATA.rglob("*.md")) for p in f.read_text().split("\n\n")]
    docs = [d for d in docs if d]
    url = f"sqlite:///{tmp_path / 'en.db'}"
    t = VectorTable(url, table_name="d", embedder=LexicalEmbedder(dimension=8), full_text=True)
    t.add_texts(docs, ids=[str(i) for i in range(len(docs))])
    queries = ["TiDB vector index", "embedding models", "TiFlash replica", "what is hybrid?"]
    ours = {
        q: [(h.id, round(h.text_score, 9)) for h in t.full_text_search(q, k=10)] for q in queries
    }
    t.close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE VIRTUAL TABLE old USING fts5(document, content=d, content_rowid='rowid', "
            "tokenize='unicode61 remove_diacritics 2')"
        )
        conn.exec_driver_sql("INSERT INTO old(old) VALUES('rebuild')")
        for q in queries:
            rows = conn.exec_driver_sql(
                "SELECT d.id, -bm25(old) AS s FROM old JOIN d ON d.rowid = old.rowid "
                "WHERE old MATCH ? ORDER BY s DESC LIMIT 10",
                (match_expression(q),),
            ).all()
            assert ours[q] == [(r[0], round(r[1], 9)) for r in rows], q
            assert ours[q], q
    engine.dispose()
