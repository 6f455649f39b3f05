"""Argument checks of the LangChain ``TiDBVectorStore``: constructor and keywords."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.embeddings import Embeddings

from tidb_jina import ConfigurationError, InvalidInputError, SchemaError
from tidb_jina.store import VectorTable

__all__ = ["check_wrapped", "known_dimension", "no_extra", "one_embedding", "require_table"]


def one_embedding(
    embedding_function: Embeddings | None, embedding: Embeddings | None, *, optional: bool = False
) -> Embeddings | None:
    if (
        embedding_function is not None
        and embedding is not None
        and embedding_function is not embedding
    ):
        raise ConfigurationError("pass embedding= or embedding_function=, not both")
    chosen = embedding if embedding is not None else embedding_function
    if chosen is None and optional:
        return None  # the table embeds (auto-embedding)
    if chosen is None:
        raise ConfigurationError(
            "TiDBVectorStore needs embeddings: pass embedding=JinaEmbeddings(...) (or "
            "embedding_function=, langchain-community's name), or let the table embed "
            "with auto_embedding='jina_ai/jina-embeddings-v3'"
        )
    if not isinstance(chosen, Embeddings):
        raise ConfigurationError(
            f"embedding must be a langchain_core Embeddings, not {type(chosen).__name__}"
        )
    return chosen


def known_dimension(embedding: Embeddings | None) -> int | None:
    """The model's output size when the embeddings know it without a call (ours do)."""
    dimension = getattr(embedding, "dimension", None)
    return dimension if isinstance(dimension, int) and not isinstance(dimension, bool) else None


def check_wrapped(
    table: VectorTable,
    connection_string: Any,
    engine: Any,
    engine_args: Any,
    snapshot_file: Any = False,
) -> None:
    if not isinstance(table, VectorTable):
        raise ConfigurationError(
            f"vector_table must be a tidb_jina.store.VectorTable, not {type(table).__name__}"
        )
    if connection_string is not None or engine is not None or engine_args:
        raise ConfigurationError(
            "vector_table= already has its connection; drop connection_string, engine and "
            "engine_args"
        )
    if snapshot_file is not False:
        raise ConfigurationError(
            "vector_table= is already built; pass snapshot_file= to its VectorTable(...) "
            "instead of to the store"
        )


def require_table(table: VectorTable, exists: bool) -> None:
    if not exists:
        raise SchemaError(
            f"table {table.table_name!r} does not exist in this database; create it with "
            "TiDBVectorStore.from_texts(...) / from_documents(...), or check table_name "
            "and the connection string"
        )


def no_extra(kwargs: Mapping[str, Any], method: str) -> None:
    """Unknown keyword arguments are errors, never silently ignored."""
    if kwargs:
        names = ", ".join(sorted(kwargs))
        raise InvalidInputError(f"{method}() got unsupported keyword arguments: {names}")
