"""Tables remember what filled them: embedding model, dimension, metric (``_table_meta``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sqlalchemy as sa

from tidb_jina import SchemaError
from tidb_jina.store import VectorTable
from tidb_jina.store._metrics import DistanceMetric
from tidb_jina.store._table_meta import TableMeta, model_name, peer_metric
from tidb_jina.testing import LexicalEmbedder


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'meta.db'}"


def test_a_new_table_records_model_dimension_and_metric(url):
    with VectorTable(url, table_name="docs", embedder=LexicalEmbedder(dimension=16)) as t:
        t.add_texts(["TiDB is a database"], ids=["a"])
    with VectorTable(url, table_name="docs") as t:
        assert t.recorded == TableMeta(
            model="lexical", dimension=16, metric=DistanceMetric.COSINE, server_model=None
        )
    # The record lives in the file itself: a copy of the file carries it.
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        info = conn.exec_driver_sql(
            "SELECT info FROM _tidb_jina_meta WHERE table_name = 'docs'"
        ).scalar_one()
    engine.dispose()
    assert json.loads(info)["model"] == "lexical"


def test_opening_with_another_model_names_both_unless_told(url):
    with VectorTable(url, table_name="docs", embedder=LexicalEmbedder(dimension=16)) as t:
        t.add_texts(["TiDB is a database"], ids=["a"])
    other = LexicalEmbedder(dimension=16, model="intfloat/multilingual-e5-large")
    t = VectorTable(url, table_name="docs", embedder=other)
    with t, pytest.raises(SchemaError, match=r"lexical.*multilingual-e5-large"):
        t.count()
    t = VectorTable(url, table_name="docs", embedding_model="jina-embeddings-v3")
    with t, pytest.raises(SchemaError, match="check_metadata=False"):
        t.search(np.ones(16), k=1)
    with VectorTable(url, table_name="docs", embedder=other, check_metadata=False) as t:
        assert t.count() == 1
        t.add_texts(["more"], ids=["b"])  # explicitly allowed
        assert t.count() == 2


def test_an_embed_callable_of_another_model_is_refused_before_embedding(url):
    with VectorTable(url, table_name="docs", embedder=LexicalEmbedder(dimension=16)) as t:
        t.add_texts(["first"], ids=["a"])
    calls = []
    other = LexicalEmbedder(dimension=16, model="jina-embeddings-v3")

    def spy(texts):
        calls.append(texts)
        return other.embed_documents(texts)

    spy.__self__ = other  # type: ignore[attr-defined]  # looks like a bound method
    with VectorTable(url, table_name="docs") as t:
        with pytest.raises(SchemaError, match="jina-embeddings-v3"):
            t.add_texts(["second"], ids=["b"], embed=spy)
        assert t.count() == 1
    assert calls == []


def test_metric_is_read_from_the_table_and_a_different_one_refused(url):
    with VectorTable(url, table_name="docs", metric="l2") as t:
        t.upsert([[3.0, 4.0], [1.0, 0.0]], ids=["far", "near"])
    with VectorTable(url, table_name="docs") as t:  # no metric given: the table's
        assert t.metric is DistanceMetric.L2
        hits = t.search([0.0, 0.0], k=2)
        assert [h.id for h in hits] == ["near", "far"]
        assert hits[1].distance == pytest.approx(5.0)  # Euclidean, not cosine
    t = VectorTable(url, table_name="docs", metric="cosine")
    with t, pytest.raises(SchemaError, match=r"l2 distance.*metric='cosine'"):
        t.count()
    with VectorTable(url, table_name="docs", metric="cosine", check_metadata=False) as t:
        assert t.search([1.0, 0.0], k=1)[0].distance == pytest.approx(0.0)


async def test_the_async_view_follows_the_recorded_metric(url):
    with VectorTable(url, table_name="docs", metric="l2") as t:
        t.upsert([[3.0, 4.0]], ids=["a"])
    table = VectorTable(url, table_name="docs")
    hits = await table.aio.search([0.0, 0.0], k=1)
    assert hits[0].distance == pytest.approx(5.0)
    assert table.search([0.0, 0.0], k=1)[0].distance == pytest.approx(5.0)
    await table.aclose()


def test_an_older_table_without_a_record_opens_as_before(url):
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # our schema as it was created before the record
        conn.exec_driver_sql(
            "CREATE TABLE docs (id VARCHAR(512) PRIMARY KEY, embedding VECTOR(2) NOT NULL, "
            "document TEXT, meta JSON, create_time DATETIME DEFAULT CURRENT_TIMESTAMP, "
            "update_time DATETIME DEFAULT CURRENT_TIMESTAMP)"
        )
    engine.dispose()
    with VectorTable(url, table_name="docs", embedder=LexicalEmbedder(dimension=2)) as t:
        assert t.recorded is None and t.metric is DistanceMetric.COSINE
        t.upsert([[1.0, 0.0]], ids=["a"])
        assert t.count() == 1


def test_drop_forgets_the_record_and_a_new_table_gets_its_own(url):
    with VectorTable(url, table_name="docs", metric="l2") as t:
        t.upsert([[1.0, 0.0]], ids=["a"])
        t.drop()
    with VectorTable(url, table_name="docs", embedding_model="m2") as t:
        t.upsert([[1.0, 0.0, 0.0]], ids=["a"])
        assert t.recorded is not None
        assert (t.recorded.model, t.recorded.metric) == ("m2", DistanceMetric.COSINE)
    # A table dropped by plain SQL leaves a stale record; a new table replaces it.
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE docs")
    engine.dispose()
    with VectorTable(url, table_name="docs", embedding_model="m3") as t:
        t.upsert([[1.0, 0.0]], ids=["a"])
        assert t.recorded is not None and t.recorded.model == "m3"


# --- TiDB: the table comment, and the peers' column comment ------------------------------


def test_tidb_records_the_meta_as_the_table_comment(stub, make_stub_table):
    make_stub_table(embedding_model="jina-embeddings-v3", metric="l2").create(1024)
    (ddl,) = [s for s in stub.sql("CREATE") if "CREATE TABLE" in s]
    comment = ddl.split("COMMENT=", 1)[1].strip().strip("'").replace('\\"', '"')
    assert json.loads(comment) == {
        "tidb_jina": 1,
        "model": "jina-embeddings-v3",
        "dimension": 1024,
        "metric": "l2",
        "server_model": None,
    }


def test_tidb_table_comment_is_checked_on_open(stub, make_stub_table):
    stub.add_table("docs", 1024)
    recorded = TableMeta(model="jina-embeddings-v3", dimension=1024, metric=DistanceMetric.COSINE)
    stub.reply("TABLE_COMMENT", columns=["TABLE_COMMENT"], rows=[(recorded.to_json(),)])
    table = make_stub_table(embedding_model="intfloat/multilingual-e5-large")
    with pytest.raises(SchemaError, match=r"jina-embeddings-v3.*multilingual-e5-large"):
        table.count()
    assert make_stub_table(embedding_model="jina-embeddings-v3").recorded == recorded


@pytest.mark.parametrize(
    ("comment", "function"), [("hnsw(distance=l2)", "VEC_L2_DISTANCE"), ("", "VEC_COSINE_DISTANCE")]
)
def test_a_peer_table_is_searched_by_its_hnsw_comment_metric(
    stub, make_stub_table, comment, function
):
    """langchain-community / llama-index (tidb-vector) DDL, with or without the comment."""
    clause = f" COMMENT '{comment}'" if comment else ""
    with stub.engine().begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE langchain_vector (id VARCHAR(36) PRIMARY KEY, "
            f"embedding VECTOR(3) NOT NULL{clause}, document TEXT, meta JSON, "
            "create_time DATETIME DEFAULT CURRENT_TIMESTAMP, update_time DATETIME DEFAULT "
            "CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP)"
        )
    table = make_stub_table(table_name="langchain_vector", vector_index=False)
    stub.reset()
    table.search([1.0, 0.0, 0.0], k=2)
    (search,) = [s for s in stub.sql("SELECT") if "DISTANCE(" in s]
    assert function in search
    assert table.metric.sql_function == function
    if comment:
        assert table.recorded == TableMeta(metric=DistanceMetric.L2, origin="peer")
        with pytest.raises(SchemaError, match="l2"):
            make_stub_table(table_name="langchain_vector", metric="cosine").count()


def test_helpers():
    assert peer_metric("hnsw(distance=cosine)") is DistanceMetric.COSINE
    assert peer_metric("hnsw(distance=l2)") is DistanceMetric.L2
    assert peer_metric("") is None and peer_metric("distance=bogus") is None
    assert model_name(LexicalEmbedder(model="m").embed_documents) == "m"
    assert model_name(object()) is None
    assert TableMeta.from_json("a plain comment") is None
    assert TableMeta.from_json('{"other": 1}') is None
    assert TableMeta.from_json("{not json") is None


async def test_async_add_texts_records_and_checks_the_model(url):
    table = VectorTable(url, table_name="docs", embedder=LexicalEmbedder(dimension=8))
    await table.aio.add_texts(["first"], ids=["a"])
    assert table.recorded is not None and table.recorded.model == "lexical"
    other = LexicalEmbedder(dimension=8, model="another-model")
    with pytest.raises(SchemaError, match="another-model"):
        await table.aio.add_texts(["second"], ids=["b"], embed=other.aembed_documents)
    assert table.count() == 1
    await table.aclose()


def test_the_langchain_store_follows_a_peer_tables_metric(stub):
    """langchain-community users switch with their arguments unchanged (no strategy)."""
    from langchain_tidb_jina import ProviderEmbeddings, TiDBVectorStore

    with stub.engine().begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE langchain_vector (id VARCHAR(36) PRIMARY KEY, "
            "embedding VECTOR(3) NOT NULL COMMENT 'hnsw(distance=l2)', document TEXT, "
            "meta JSON, create_time DATETIME, update_time DATETIME)"
        )
    store = TiDBVectorStore(
        embedding=ProviderEmbeddings(provider=LexicalEmbedder(dimension=3)),
        engine=stub.engine(),
    )
    stub.reset()
    store.similarity_search_by_vector([1.0, 0.0, 0.0], k=1)
    assert any("VEC_L2_DISTANCE(" in s for s in stub.sql("SELECT"))
    assert store.distance_strategy == "l2"


def test_the_llamaindex_store_follows_a_peer_tables_metric(stub):
    from llama_index.core.vector_stores import VectorStoreQuery

    from llama_index_tidb_jina import TiDBVectorStore

    with stub.engine().begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE llama_vectors (id VARCHAR(36) PRIMARY KEY, "
            "embedding VECTOR(3) NOT NULL COMMENT 'hnsw(distance=l2)', document TEXT, "
            "meta JSON, create_time DATETIME, update_time DATETIME)"
        )
    store = TiDBVectorStore(stub.engine(), table_name="llama_vectors")
    assert store.distance_strategy is None  # not given: the table decides
    stub.reset()
    store.query(VectorStoreQuery(query_embedding=[1.0, 0.0, 0.0], similarity_top_k=1))
    assert any("VEC_L2_DISTANCE(" in s for s in stub.sql("SELECT"))
    assert store.client.metric.value == "l2"


def test_the_same_model_under_another_name_is_not_refused(url):
    """The Jina API name, the Hugging Face id (TEI, local) and a local copy's path."""
    hub = LexicalEmbedder(dimension=16, model="jinaai/jina-embeddings-v3")
    with VectorTable(url, table_name="docs", embedder=hub) as t:
        t.add_texts(["TiDB is a database"], ids=["a"])
    for alias in ("jina-embeddings-v3", "Jina-Embeddings-V3", "/models/jina-embeddings-v3/"):
        api = LexicalEmbedder(dimension=16, model=alias)
        with VectorTable(url, table_name="docs", embedder=api) as t:
            t.add_texts(["TiDB stores vectors"], ids=["b"])
            assert t.count() == 2
    other = LexicalEmbedder(dimension=16, model="jinaai/jina-embeddings-v4")
    t = VectorTable(url, table_name="docs", embedder=other)
    with t, pytest.raises(SchemaError, match="jina-embeddings-v4"):
        t.count()


def test_peer_comment_variants():
    """tidb-vector writes the enum member's name when given its own DistanceStrategy
    on Python 3.11+ (f-string of a str-mixin enum)."""
    assert peer_metric("hnsw(distance=DistanceStrategy.EUCLIDEAN)") is DistanceMetric.L2
    assert peer_metric("hnsw(distance=DistanceStrategy.COSINE)") is DistanceMetric.COSINE
    assert peer_metric("HNSW(DISTANCE=L2)") is DistanceMetric.L2
    assert peer_metric("hnsw(distance='l2')") is DistanceMetric.L2


def test_two_writers_creating_one_table_with_different_models(url):
    """The record is written in the table's own creating transaction (BEGIN IMMEDIATE):
    whoever creates the table records its model; the other is refused, nothing mixed."""
    import threading

    barrier = threading.Barrier(2)
    outcome: dict[str, object] = {}

    def create(model: str) -> None:
        table = VectorTable(
            url, table_name="docs", embedder=LexicalEmbedder(dimension=16, model=model)
        )
        barrier.wait()
        try:
            table.add_texts([f"written with {model}"], ids=[model])
            outcome[model] = "ok"
        except SchemaError as exc:
            outcome[model] = exc
        finally:
            table.close()

    threads = [threading.Thread(target=create, args=(m,)) for m in ("model-a", "model-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [m for m, result in outcome.items() if result == "ok"]
    assert len(winners) == 1, outcome
    (loser,) = {"model-a", "model-b"} - set(winners)
    assert isinstance(outcome[loser], SchemaError)
    with VectorTable(url, table_name="docs") as t:
        assert t.recorded is not None and t.recorded.model == winners[0]
        assert [r.id for r in t.get([winners[0], loser])] == [winners[0]]


def test_a_very_long_model_id_is_recorded_cut_and_still_matches(url):
    long_id = "org/" + "m" * 600
    with VectorTable(url, table_name="docs", embedding_model=long_id) as t:
        t.upsert([[1.0, 0.0]], ids=["a"])
    with VectorTable(url, table_name="docs", embedding_model=long_id) as t:
        assert t.count() == 1  # no spurious "another model"
        assert t.recorded is not None and len(t.recorded.model or "") == 400


def test_the_langchain_store_refuses_another_model_unless_told(url):
    from langchain_tidb_jina import ProviderEmbeddings, TiDBVectorStore

    def store(model: str, **kwargs: object) -> TiDBVectorStore:
        embeddings = ProviderEmbeddings(provider=LexicalEmbedder(dimension=8, model=model))
        return TiDBVectorStore(url, embeddings, table_name="lc", **kwargs)

    store("model-a").add_texts(["first"], ids=["a"])
    with pytest.raises(SchemaError, match=r"model-a.*model-b"):
        store("model-b").add_texts(["second"], ids=["b"])
    assert store("model-b", check_metadata=False).add_texts(["second"], ids=["b"]) == ["b"]
    with VectorTable(url, table_name="lc") as t:
        assert t.count() == 2 and t.recorded is not None and t.recorded.model == "model-a"


def test_a_late_chunking_embed_still_names_its_model() -> None:
    """The grouped embed a late-chunking client gets (core and LangChain) names the
    client's model, so the table checks and records it like embed_documents."""
    from tidb_jina.embeddings._late import rows_embed
    from tidb_jina.store._table_meta import model_name

    class LateClient:
        late_chunking = True
        model = "jina-embeddings-v3"

        def embed_grouped(self, texts, keys):
            return [[float(len(keys))] for _ in texts]

    embed = rows_embed(LateClient(), ['{"source": "a"}', None])
    assert embed is not None and model_name(embed) == "jina-embeddings-v3"
    assert embed(["x", "y"]) == [[2.0], [2.0]]
