"""``vector_store.tidb_vector_client.execute(sql, params)``: the peer's raw-SQL door.

``test_travel_agent_guide_runs`` is the "Advanced usage example: travel agent" of the
TiDB Cloud / langchain-community LangChain guide, line by line, on every engine. Only the
imports and the embeddings differ (the guide uses OpenAI; here Jina's API is served by
the loopback fake server, whose lexical vectors score lower than OpenAI's, so the
retriever's threshold is 0.2 instead of 0.85, and word overlap ranks the "Small airport"
review second where OpenAI ranks the LAX one).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.documents import Document

from langchain_tidb_jina import JinaEmbeddings, TiDBVectorClient, TiDBVectorStore
from tidb_jina import InvalidInputError
from tidb_jina.testing import FakeEmbeddingServer


@pytest.fixture
def guide_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with FakeEmbeddingServer(api_key="jina_*") as server:
        monkeypatch.setenv("JINA_API_BASE_URL", server.url)
        yield


@pytest.fixture
def vector_store(guide_env: None, store_url: str, table_name: str) -> Iterator[TiDBVectorStore]:
    embeddings = JinaEmbeddings(jina_api_key="jina_*", model_name="jina-embeddings-v2-base-en")
    store = TiDBVectorStore.from_documents(
        documents=[Document(page_content="TiDB is a distributed SQL database")],
        embedding=embeddings,
        table_name=table_name,
        connection_string=store_url,
        distance_strategy="cosine",
    )
    yield store
    store.tidb_vector_client.execute("DROP TABLE IF EXISTS airplan_routes")
    store.drop_vectorstore()
    store.close()


def test_travel_agent_guide_runs(vector_store: TiDBVectorStore, table_name: str) -> None:
    TABLE_NAME = table_name
    embeddings = vector_store.embeddings
    assert embeddings is not None

    # --- the guide, from "Prepare data" on ---
    # Create a table to store flight plan data.
    created = vector_store.tidb_vector_client.execute(
        """CREATE TABLE airplan_routes (
            id INT AUTO_INCREMENT PRIMARY KEY,
            airport_code VARCHAR(10),
            airline_code VARCHAR(10),
            destination_code VARCHAR(10),
            route_details TEXT,
            duration TIME,
            frequency INT,
            airplane_type VARCHAR(50),
            price DECIMAL(10, 2),
            layover TEXT
        );"""
    )
    assert created == {"success": True, "result": 0, "error": None}

    # Insert some sample data into airplan_routes and the vector table.
    inserted = vector_store.tidb_vector_client.execute(
        """INSERT INTO airplan_routes (
            airport_code,
            airline_code,
            destination_code,
            route_details,
            duration,
            frequency,
            airplane_type,
            price,
            layover
        ) VALUES
        ('JFK', 'DL', 'LAX', 'Non-stop from JFK to LAX.', '06:00:00', 5, 'Boeing 777', 299.99, 'None'),
        ('LAX', 'AA', 'ORD', 'Direct LAX to ORD route.', '04:00:00', 3, 'Airbus A320', 149.99, 'None'),
        ('EFGH', 'UA', 'SEA', 'Daily flights from SFO to SEA.', '02:30:00', 7, 'Boeing 737', 129.99, 'None');
        """  # noqa: E501
    )
    assert inserted == {"success": True, "result": 3, "error": None}
    vector_store.add_texts(
        texts=[
            "Clean lounges and excellent vegetarian dining options. Highly recommended.",
            "Comfortable seating in lounge areas and diverse food selections, including "
            "vegetarian.",
            "Small airport with basic facilities.",
        ],
        metadatas=[
            {"airport_code": "JFK"},
            {"airport_code": "LAX"},
            {"airport_code": "EFGH"},
        ],
    )

    # Perform a semantic search
    retriever = vector_store.as_retriever(
        search_type="similarity_score_threshold",
        search_kwargs={"k": 3, "score_threshold": 0.2},
    )
    semantic_query = (
        "Could you recommend a US airport with clean lounges and good vegetarian dining options?"
    )
    reviews = retriever.invoke(semantic_query)
    for r in reviews:
        print("-" * 80)
        print(r.page_content)
        print(r.metadata)
        print("-" * 80)
    assert [r.metadata["airport_code"] for r in reviews] == ["JFK", "EFGH"]

    # Retrieve detailed airport information
    # Extracting airport codes from the metadata
    airport_codes = [review.metadata["airport_code"] for review in reviews]

    # Executing a query to get the airport details
    search_query = "SELECT * FROM airplan_routes WHERE airport_code IN :codes"
    params = {"codes": tuple(airport_codes)}

    airport_details = vector_store.tidb_vector_client.execute(search_query, params)
    rows = airport_details.get("result")
    assert airport_details["success"] and airport_details["error"] is None
    assert [(row[1], row[2], row[3]) for row in rows] == [
        ("JFK", "DL", "LAX"),
        ("EFGH", "UA", "SEA"),
    ]
    # SQLite reads "INT AUTO_INCREMENT" as a type name: ids are numbered on TiDB only.
    numbers = [row[0] for row in rows]
    if vector_store.vector_table.is_tidb:  # increasing, not necessarily 1, 3 on a cluster
        assert all(isinstance(n, int) for n in numbers) and numbers == sorted(numbers)
    else:
        assert numbers == [None, None]

    # Streamline the process
    search_query = f"""
        SELECT
            VEC_Cosine_Distance(se.embedding, :query_vector) as distance,
            ar.*,
            se.document as airport_review
        FROM
            airplan_routes ar
        JOIN
            {TABLE_NAME} se ON ar.airport_code = JSON_UNQUOTE(JSON_EXTRACT(se.meta, '$.airport_code'))
        ORDER BY distance ASC
        LIMIT 5;
    """  # noqa: E501 (the guide's own f-string: a table name, no values)
    query_vector = embeddings.embed_query(semantic_query)
    params = {"query_vector": str(query_vector)}
    airport_details = vector_store.tidb_vector_client.execute(search_query, params)
    joined = airport_details.get("result")
    assert [(row[2], row[-1][:5]) for row in joined] == [
        ("JFK", "Clean"),
        ("EFGH", "Small"),
        ("LAX", "Comfo"),
    ]
    distances = [row[0] for row in joined]
    assert distances == sorted(distances)
    hits = vector_store.similarity_search_with_score(semantic_query, k=1)
    assert distances[0] == pytest.approx(hits[0][1], abs=1e-5)  # SQL and store agree

    # Clean up data
    dropped = vector_store.tidb_vector_client.execute("DROP TABLE airplan_routes")
    assert dropped == {"success": True, "result": 0, "error": None}


def test_values_are_bound_never_spliced(vector_store: TiDBVectorStore) -> None:
    client = vector_store.tidb_vector_client
    client.execute("CREATE TABLE airplan_routes (id INT PRIMARY KEY, code VARCHAR(10))")
    client.execute("INSERT INTO airplan_routes VALUES (1, 'JFK'), (2, 'LAX')")
    hostile = "JFK' OR '1'='1"
    found = client.execute("SELECT id FROM airplan_routes WHERE code = :c", {"c": hostile})
    assert found == {"success": True, "result": [], "error": None}
    found = client.execute("SELECT id FROM airplan_routes WHERE code IN :c", {"c": ["LAX"]})
    assert [tuple(r) for r in found["result"]] == [(2,)]
    updated = client.execute("UPDATE airplan_routes SET code = :c WHERE id = 1", {"c": "SFO"})
    assert updated == {"success": True, "result": 1, "error": None}
    assert client.execute("SELECT code FROM airplan_routes WHERE id = 1")["result"][0][0] == "SFO"


def test_sql_errors_come_back_in_the_result_and_roll_back(
    vector_store: TiDBVectorStore, caplog: pytest.LogCaptureFixture
) -> None:
    client = vector_store.tidb_vector_client
    missing = client.execute("SELECT * FROM no_such_table_here")
    assert missing["success"] is False and missing["result"] is None
    assert "no_such_table_here" in missing["error"]
    assert "SQL execution error" in caplog.text
    client.execute("CREATE TABLE airplan_routes (id INT PRIMARY KEY)")
    duplicate = client.execute("INSERT INTO airplan_routes VALUES (1), (1)")
    assert duplicate["success"] is False
    assert client.execute("SELECT COUNT(*) FROM airplan_routes")["result"][0][0] == 0


@pytest.mark.parametrize(
    ("sql", "params", "match"),
    [
        ("", None, "non-empty SQL text"),
        (None, None, "non-empty SQL text"),
        ("SELECT :a", ("x",), "params must be a dict"),
        ("SELECT :a", ["x"], "params must be a dict"),
    ],
)
def test_calls_that_cannot_be_statements_raise(
    vector_store: TiDBVectorStore, sql: Any, params: Any, match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        vector_store.tidb_vector_client.execute(sql, params)


def test_the_client_is_the_table_too(vector_store: TiDBVectorStore) -> None:
    client = vector_store.tidb_vector_client
    assert isinstance(client, TiDBVectorClient)
    assert client.vector_table is vector_store.vector_table
    assert client.count() == 1  # VectorTable's API, forwarded
    assert "TiDBVectorClient(" in repr(client)
    assert copy.copy(client).vector_table is vector_store.vector_table
    rows = client.execute(f"SELECT document FROM {vector_store.table_name}")["result"]
    assert [r[0] for r in rows] == ["TiDB is a distributed SQL database"]


def test_raw_changes_to_the_vector_table_are_seen_by_the_next_search(
    vector_store: TiDBVectorStore,
) -> None:
    """The embedded engine's in-memory copy of the vectors must not serve rows deleted or
    changed through ``execute`` (it is checked against the database's change token)."""
    vector_store.add_texts(["TiDB vectors", "TiDB rows"], [{"k": 1}, {"k": 2}], ids=["a", "b"])
    client, table = vector_store.tidb_vector_client, vector_store.table_name
    before = {d.id for d in vector_store.similarity_search("TiDB", k=5)}
    assert {"a", "b"} <= before  # the search has filled the copy
    deleted = client.execute(f"DELETE FROM {table} WHERE id = :id", {"id": "a"})
    assert deleted == {"success": True, "result": 1, "error": None}
    changed = client.execute(
        f"UPDATE {table} SET document = :d WHERE id = :id", {"d": "new", "id": "b"}
    )
    assert changed["result"] == 1
    after = {d.id: d.page_content for d in vector_store.similarity_search("TiDB", k=5)}
    assert "a" not in after and after["b"] == "new"
