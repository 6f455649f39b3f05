"""The adapters' serialised configuration (issue 18, seventh round).

LlamaIndex's ``TiDBVectorStore.to_dict()`` did not carry ``snapshot_file`` (nor the
auto-embedding model's dimension and options); ``from_dict`` / ``from_json`` failed with a
raw ``TypeError`` (``stores_text`` is not a constructor argument); a pickled store came
back without its table (``AttributeError`` on first use). A round trip now gives an equal
configuration, and no password or API key is ever written down.

The LangChain store has no serialised form of its own (langchain-core's ``VectorStore``
is not ``Serializable``): its retriever's ``to_json()`` holds a ``repr``, which must not
hold the password either, and pickling it says what to do instead of a raw error.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.schema import TextNode
from llama_index.core.vector_stores.types import VectorStoreQuery

from llama_index_tidb_jina import TiDBVectorStore
from tidb_jina import ConfigurationError
from tidb_jina.store import AutoEmbedding

SECRET = "s3cret-pw"
TIDB = "mysql+pymysql://root@tidb.invalid:4000/test"  # no password: no I/O before use


def _copies(store: TiDBVectorStore) -> list[TiDBVectorStore]:
    return [
        TiDBVectorStore.from_dict(store.to_dict()),
        TiDBVectorStore.from_json(store.to_json()),
        pickle.loads(pickle.dumps(store)),
    ]


def _config(store: TiDBVectorStore) -> tuple[Any, ...]:
    """Everything the store's table was configured with."""
    table = store.client
    settings = table._settings
    if not isinstance(settings.snapshot_file, bool):  # a PathLike comes back as its str
        settings = dataclasses.replace(settings, snapshot_file=os.fspath(settings.snapshot_file))
    return (
        store.to_dict(),
        settings,
        table._declared_dimension,
        str(table.engine.url),
        table.auto_embedding,
        table.auto_embedding.options if table.auto_embedding else None,
    )


def _options(tmp_path: Path) -> list[dict[str, Any]]:
    db = f"sqlite:///{tmp_path / 'cfg.db'}"
    (tmp_path / "snaps").mkdir(exist_ok=True)
    return [
        {"connection_string": db},
        {"connection_string": db, "table_name": "t2", "distance_strategy": "l2"},
        {"connection_string": db, "distance_strategy": "inner_product", "vector_dimension": 8},
        {"connection_string": db, "flat_metadata": True},
        {"connection_string": db, "snapshot_file": True},
        {"connection_string": db, "snapshot_file": tmp_path / "snaps"},  # a PathLike
        {"connection_string": db, "snapshot_file": str(tmp_path / "snaps")},
        {"connection_string": TIDB, "auto_embedding": "jina_ai/jina-embeddings-v3"},
        {
            "connection_string": TIDB,
            "auto_embedding": AutoEmbedding(
                "jina_ai/jina-embeddings-v3", options={"dimensions": 256, "task": "text-matching"}
            ),
        },
        {
            "connection_string": TIDB,
            "auto_embedding": AutoEmbedding("huggingface/BAAI/bge-m3", dimension=1024),
            "distance_strategy": "l2",
        },
    ]


@pytest.mark.parametrize("case", range(10))
def test_a_round_trip_gives_an_equal_configuration(tmp_path, case):
    options = _options(tmp_path)[case]
    store = TiDBVectorStore(**options)
    for copy in _copies(store):
        assert _config(copy) == _config(store)
        copy.close()
    store.close()


def test_snapshot_file_is_carried(tmp_path):
    (tmp_path / "snaps").mkdir()
    store = TiDBVectorStore(f"sqlite:///{tmp_path / 's.db'}", snapshot_file=tmp_path / "snaps")
    assert store.to_dict()["snapshot_file"] == str(tmp_path / "snaps")
    for copy in _copies(store):
        assert copy.client._settings.snapshot_file == str(tmp_path / "snaps")
        copy.close()
    store.close()


def test_a_copy_searches_the_same_rows(tmp_path):
    store = TiDBVectorStore(f"sqlite:///{tmp_path / 'rows.db'}", distance_strategy="l2")
    nodes = [
        TextNode(id_=f"n{i}", text=f"text {i}", embedding=[float(i), 1.0, 0.0]) for i in range(6)
    ]
    store.add(nodes)
    query = VectorStoreQuery(query_embedding=[2.2, 1.0, 0.0], similarity_top_k=3)
    expected = store.query(query)
    assert expected.ids == ["n2", "n3", "n1"]
    for copy in _copies(store):
        got = copy.query(query)
        assert got.ids == expected.ids and got.similarities == expected.similarities
        copy.close()
    store.close()


def test_a_copy_never_drops_the_table(tmp_path):
    """``drop_existing_table`` is not carried: a copy made after the store filled its
    table finds the rows (a copy that dropped them would lose the user's data)."""
    store = TiDBVectorStore(f"sqlite:///{tmp_path / 'keep.db'}", drop_existing_table=True)
    store.add([TextNode(id_="a", text="a", embedding=[1.0, 0.0])])
    query = VectorStoreQuery(query_embedding=[1.0, 0.0], similarity_top_k=1)
    for copy in _copies(store):
        assert copy.query(query).ids == ["a"]
        copy.close()
    store.close()


@pytest.mark.parametrize(
    "url",
    [
        f"mysql+pymysql://root:{SECRET}@tidb.invalid:4000/test",
        f"mysql+pymysql://root@tidb.invalid:4000/test?password={SECRET}",
    ],
)
def test_a_password_is_never_written_down_and_must_be_given_again(url):
    store = TiDBVectorStore(
        url,
        auto_embedding=AutoEmbedding("jina_ai/jina-embeddings-v3", api_key=f"jina_{SECRET}"),
        engine_args={"connect_args": {"read_timeout": 30, "init_command": f"SET @x='{SECRET}'"}},
    )
    for text in (str(store.to_dict()), store.to_json(), repr(store)):
        assert SECRET not in text
    with pytest.raises(ConfigurationError, match="connection_string="):
        TiDBVectorStore.from_dict(store.to_dict())
    with pytest.raises(ConfigurationError, match="had a password"):
        TiDBVectorStore.from_json(store.to_json())
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(store)
    again = TiDBVectorStore.from_dict(store.to_dict(), connection_string=url)
    assert again.to_dict() == store.to_dict()
    assert again.client.engine.url == store.client.engine.url  # the password is back
    assert again.client.auto_embedding == store.client.auto_embedding
    assert again.client.auto_embedding.api_key is None  # read from the environment


def test_langchain_store_leaks_no_password_and_explains_pickling(tmp_path):
    pytest.importorskip("langchain_core")
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from langchain_tidb_jina import TiDBVectorStore as LangChainStore

    store = LangChainStore(
        f"mysql+pymysql://root:{SECRET}@tidb.invalid:4000/test",
        embedding=DeterministicFakeEmbedding(size=4),
        snapshot_file=False,
    )
    retriever = store.as_retriever()
    for text in (repr(store), str(retriever.to_json()), repr(retriever)):
        assert SECRET not in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(store)
    local = LangChainStore(
        f"sqlite:///{tmp_path / 'lc.db'}", embedding=DeterministicFakeEmbedding(size=4)
    )
    with pytest.raises(TypeError, match="TiDBVectorStore\\(connection_string="):
        pickle.dumps(local)
    local.vector_table.close()


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"drop_existing_table": True}, "'drop_existing_table', which to_dict"),
        ({"engine_args": {"connect_args": {"timeout": 1}}}, "'engine_args', which"),
        ({"connection_string": "sqlite:///elsewhere.db"}, "'connection_string', which"),
        ({"class_name": "SimpleVectorStore"}, "not a 'TiDBVectorStore'"),
    ],
)
def test_from_dict_data_holds_only_what_to_dict_writes(tmp_path, extra, match):
    """A dict (or JSON) from elsewhere with ``drop_existing_table: true`` dropped the
    table its original filled; options that are never serialised are keyword arguments."""
    store = TiDBVectorStore(f"sqlite:///{tmp_path / 'keep.db'}")
    store.add([TextNode(text="kept", embedding=[1.0, 0.0], id_="n1")])
    data = {**store.to_dict(), **extra}
    with pytest.raises(ConfigurationError, match=match):
        TiDBVectorStore.from_dict(data)
    import json

    with pytest.raises(ConfigurationError, match=match):
        TiDBVectorStore.from_json(json.dumps(data))
    assert store.client.count() == 1  # nothing dropped
    again = TiDBVectorStore.from_dict(store.to_dict(), drop_existing_table=False)
    assert again.client.count() == 1
