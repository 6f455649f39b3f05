"""Shared set-up for the examples: which embedder, which database, the bundled corpus.

Every example runs offline (no key, no server) and gets better with real services:

- Embeddings: Jina AI when ``JINA_API_KEY`` (or ``JINAAI_API_KEY``) is set, Hugging Face
  when ``HF_TOKEN`` (or ``HUGGINGFACEHUB_API_TOKEN``) is set, else the offline
  ``LexicalEmbedder`` (word overlap, deterministic). Each example prints which one it uses
  in its first line.
- Database: TiDB when ``TIDB_DATABASE_URL`` is set, else the embedded engine in a file
  (a temporary directory unless the example names an env var for the path).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tidb_jina import HuggingFaceClient, JinaClient
from tidb_jina.embeddings import EmbeddingProvider
from tidb_jina.testing import LexicalEmbedder

DATA = Path(__file__).resolve().parent / "data"
JINA_KEY_ENV = ("JINA_API_KEY", "JINAAI_API_KEY")
HF_TOKEN_ENV = ("HF_TOKEN", "HUGGINGFACEHUB_API_TOKEN")
JINA_MODEL = "jina-embeddings-v3"
HF_MODEL = "intfloat/multilingual-e5-large"
OFFLINE_NOTE = (
    "Embeddings: offline LexicalEmbedder (word overlap, no API key). For real embeddings "
    "set JINA_API_KEY (free key at https://jina.ai) or HF_TOKEN (Hugging Face)."
)


@dataclass(frozen=True)
class Embedder:
    """The chosen provider: ``kind`` is ``"jina"``, ``"hf"`` or ``"lexical"``."""

    kind: str
    model: str
    note: str

    @property
    def offline(self) -> bool:
        return self.kind == "lexical"


def first_env(names: tuple[str, ...]) -> str | None:
    """The value of the first of ``names`` that is set and non-empty."""
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def choose_embedder(jina_model: str = JINA_MODEL) -> Embedder:
    """Jina if its key is set, else Hugging Face if its token is set, else offline."""
    if first_env(JINA_KEY_ENV):
        return Embedder("jina", jina_model, f"Embeddings: Jina AI {jina_model} (JINA_API_KEY).")
    if first_env(HF_TOKEN_ENV):
        return Embedder("hf", HF_MODEL, f"Embeddings: Hugging Face {HF_MODEL} (HF_TOKEN).")
    return Embedder("lexical", "lexical", OFFLINE_NOTE)


def core_provider(choice: Embedder) -> EmbeddingProvider:
    """The core client for ``choice`` (keys come from the environment)."""
    if choice.kind == "jina":
        return JinaClient(model=choice.model)
    if choice.kind == "hf":
        return HuggingFaceClient(model=choice.model)
    return LexicalEmbedder()


def langchain_embeddings(choice: Embedder) -> Any:
    """A LangChain ``Embeddings`` for ``choice``."""
    from langchain_tidb_jina import HuggingFaceEndpointEmbeddings, JinaEmbeddings

    if choice.kind == "jina":
        return JinaEmbeddings(model=choice.model)
    if choice.kind == "hf":
        return HuggingFaceEndpointEmbeddings(model=choice.model)
    return _lexical_langchain_embeddings()


def _lexical_langchain_embeddings() -> Any:
    from langchain_tidb_jina import ProviderEmbeddings

    return ProviderEmbeddings(provider=LexicalEmbedder())


def llama_embed_model(choice: Embedder) -> Any:
    """A LlamaIndex ``BaseEmbedding`` for ``choice``."""
    from llama_index_tidb_jina import (
        HuggingFaceInferenceAPIEmbedding,
        JinaEmbedding,
        ProviderEmbedding,
    )

    if choice.kind == "jina":
        return JinaEmbedding(model=choice.model)
    if choice.kind == "hf":
        return HuggingFaceInferenceAPIEmbedding(model_name=choice.model)
    return ProviderEmbedding(provider=LexicalEmbedder())


@contextmanager
def database(path_env: str | None = None, filename: str = "examples.db") -> Iterator[str]:
    """``TIDB_DATABASE_URL`` if set; else an embedded database file.

    The file is ``$<path_env>`` when that is set (kept afterwards), else a temporary
    file removed on exit.
    """
    url = os.environ.get("TIDB_DATABASE_URL")
    if url:
        yield url
        return
    path = os.environ.get(path_env) if path_env else None
    if path:
        yield f"sqlite:///{path}"
        return
    with tempfile.TemporaryDirectory(prefix="tidb-jina-example-") as tmp:
        yield f"sqlite:///{Path(tmp) / filename}"


def describe_database(url: str) -> str:
    """One line saying which engine runs the example (no password)."""
    if url.startswith("sqlite"):
        return (
            f"Database: embedded engine ({url}); set TIDB_DATABASE_URL=mysql+pymysql://... "
            "to run on TiDB."
        )
    from sqlalchemy.engine import make_url

    return f"Database: TiDB ({make_url(url).render_as_string(hide_password=True)})."


def load_corpus(name: str = "corpus.jsonl") -> list[dict[str, Any]]:
    """The bundled records: ``id``, ``text`` and metadata fields."""
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def split_record(record: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """``(id, text, metadata)`` of one corpus record."""
    metadata = {k: v for k, v in record.items() if k not in ("id", "text")}
    return record["id"], record["text"], metadata


def shorten(text: str, width: int = 90) -> str:
    """``text`` on one line, cut at ``width`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."
