"""Where the command line connects and how it embeds: flags first, then env vars.

- database: ``--database-url``, else ``TIDB_DATABASE_URL``, else the embedded engine in
  ``./tidb_jina.db`` (a bare ``*.db`` / ``*.sqlite`` path is an embedded database file,
  as in the library);
- table: ``--table``, else ``TIDB_JINA_TABLE``, else ``tidb_jina_vectors``;
- provider: ``--provider``, else ``TIDB_JINA_PROVIDER``, else ``jina`` when a Jina key is
  set, ``hf`` when a Hugging Face token is set, else the offline ``lexical`` embedder;
- model: ``--model``, else ``TIDB_JINA_MODEL``, else the provider's default (for Hugging
  Face with ``HF_INFERENCE_ENDPOINT`` set: the model that server runs).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from tidb_jina._cli import CLIError
from tidb_jina.store import DEFAULT_TABLE_NAME

DEFAULT_DATABASE_FILE = "tidb_jina.db"
DEFAULT_HF_MODEL = "intfloat/multilingual-e5-large"
PROVIDERS = ("jina", "hf", "lexical")
JINA_KEY_ENV = ("JINA_API_KEY", "JINAAI_API_KEY")
HF_TOKEN_ENV = ("HF_TOKEN", "HUGGINGFACEHUB_API_TOKEN")
LEXICAL_NOTE = (
    "tidb-jina: note: no JINA_API_KEY or HF_TOKEN set, so texts are embedded by the offline "
    "lexical embedder (word overlap, not meaning); set one of them, or pass --provider, for "
    "real embeddings"
)


def _env(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def database_url(flag: str | None) -> str:
    """The connection URL; a bare ``*.db`` path means an embedded database file, as in
    the library (``tidb_jina.store._urls``: other bare strings are refused in both)."""
    from tidb_jina import TiDBJinaError
    from tidb_jina.store._urls import embedded_url

    value = flag or _env("TIDB_DATABASE_URL") or DEFAULT_DATABASE_FILE
    try:
        return str(embedded_url(value))
    except TiDBJinaError as exc:
        raise CLIError(f"--database-url / TIDB_DATABASE_URL: {exc}") from None


def table_name(flag: str | None) -> str:
    return flag or _env("TIDB_JINA_TABLE") or DEFAULT_TABLE_NAME


def missing_database_file(url: str) -> str | None:
    """The path of an embedded database file that does not exist (else None)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix:
        return None
    path = url[len(prefix) :].split("?", 1)[0]
    return None if path in ("", ":memory:") or Path(path).exists() else path


def provider_name(flag: str | None) -> tuple[str, bool]:
    """``(provider, chosen_automatically)``."""
    value = flag or _env("TIDB_JINA_PROVIDER")
    if value:
        if value not in PROVIDERS:
            raise CLIError(
                f"unknown provider {value!r} (from TIDB_JINA_PROVIDER); "
                f"use one of {', '.join(PROVIDERS)}"
            )
        return value, False
    if _env(*JINA_KEY_ENV):
        return "jina", True
    if _env(*HF_TOKEN_ENV):
        return "hf", True
    return "lexical", True


def embedder(provider_flag: str | None, model_flag: str | None) -> Any:
    """The ``EmbeddingProvider`` to use (the lexical one announces itself on stderr)."""
    name, automatic = provider_name(provider_flag)
    model = model_flag or _env("TIDB_JINA_MODEL")
    if name == "jina":
        from tidb_jina.embeddings import DEFAULT_JINA_MODEL, JinaClient

        return JinaClient(model=model or DEFAULT_JINA_MODEL)
    if name == "hf":
        from tidb_jina.embeddings import HuggingFaceClient

        if model is None and _env("HF_INFERENCE_ENDPOINT"):
            return HuggingFaceClient()  # the TEI server or endpoint decides the model
        return HuggingFaceClient(model=model or DEFAULT_HF_MODEL)
    from tidb_jina.testing import LexicalEmbedder

    if automatic:
        print(LEXICAL_NOTE, file=sys.stderr)
    return LexicalEmbedder(model=model or "lexical")
