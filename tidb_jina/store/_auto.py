"""Auto-embedding: tables that turn text into vectors themselves.

On TiDB Cloud Starter (AWS) the database embeds: the ``embedding`` column is generated,
``VECTOR(D) GENERATED ALWAYS AS (EMBED_TEXT('jina_ai/jina-embeddings-v3', document,
'{"task": "retrieval.passage", "task@search": "retrieval.query"}')) STORED``, and a search
orders by ``VEC_EMBED_COSINE_DISTANCE(embedding, :text)`` (reference/protocols.md 3.9).
The ``task@search`` option gives the query side its own Jina task, so queries and
passages are never mixed up. The provider key goes into TiDB's global variable
(``TIDB_EXP_EMBED_JINA_AI_API_KEY`` ...) as a bound parameter, on a raw driver cursor so
that SQLAlchemy's statement logging never sees it.

On the embedded engine (or self-managed TiDB), the same table mode calls the matching
core client (``JinaClient`` / ``HuggingFaceClient``) itself, so code written against one
runs on the other.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from tidb_jina._errors import ConfigurationError
from tidb_jina.store._metrics import DistanceMetric

_MODEL = re.compile(r"(jina_ai|huggingface)/[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
_KEY_VARIABLES = {
    "jina_ai": "TIDB_EXP_EMBED_JINA_AI_API_KEY",
    "huggingface": "TIDB_EXP_EMBED_HUGGINGFACE_API_KEY",
}
_KEY_ENV = {
    "jina_ai": ("JINA_API_KEY", "JINAAI_API_KEY"),
    "huggingface": ("HF_TOKEN", "HUGGINGFACEHUB_API_TOKEN"),
}
_EMBED_DISTANCE = {
    DistanceMetric.COSINE: "VEC_EMBED_COSINE_DISTANCE",
    DistanceMetric.L2: "VEC_EMBED_L2_DISTANCE",
}


@dataclass(frozen=True)
class AutoEmbedding:
    """Which model embeds the table's documents and queries.

    Args:
        model: ``"jina_ai/<model>"`` or ``"huggingface/<org>/<model>"`` (TiDB's names).
        dimension: the vector size; optional for known models (or ``options`` with
            ``dimensions`` for Jina's Matryoshka models).
        options: provider options passed to ``EMBED_TEXT`` (Jina models with tasks get
            ``{"task": "retrieval.passage", "task@search": "retrieval.query"}`` unless
            you set ``task`` yourself).
        api_key: the provider key, or None to use ``JINA_API_KEY`` / ``HF_TOKEN`` (or a
            key already configured on the server). Never shown in repr.
    """

    model: str
    dimension: int | None = None
    options: Mapping[str, Any] | None = None
    api_key: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not _MODEL.fullmatch(self.model):
            raise ConfigurationError(
                f"auto-embedding model {self.model!r} is not one TiDB knows: use "
                "'jina_ai/<model>' (e.g. 'jina_ai/jina-embeddings-v3') or "
                "'huggingface/<org>/<model>' (e.g. 'huggingface/BAAI/bge-m3')"
            )
        if self.provider == "huggingface" and "dimensions" in (self.options or {}):
            raise ConfigurationError(
                "Hugging Face models do not take a 'dimensions' option; pick a model "
                "with the size you need"
            )

    @property
    def provider(self) -> str:
        return self.model.split("/", 1)[0]

    @property
    def provider_model(self) -> str:
        return self.model.split("/", 1)[1]

    def resolved_options(self) -> dict[str, Any]:
        options = dict(self.options or {})
        if self.provider == "jina_ai" and "task" not in options:
            from tidb_jina.embeddings import jina_model_info

            info = jina_model_info(self.provider_model)
            if info.passage_task and info.query_task:
                options["task"] = info.passage_task
                options["task@search"] = info.query_task
        return options

    def resolved_dimension(self) -> int:
        options = self.options or {}
        if "dimensions" in options:
            return int(options["dimensions"])
        if self.dimension is not None:
            return int(self.dimension)
        from tidb_jina.embeddings import hf_model_info, jina_model_info

        info: Any = (
            jina_model_info(self.provider_model)
            if self.provider == "jina_ai"
            else hf_model_info(self.provider_model)
        )
        if info.dimension is None:
            raise ConfigurationError(
                f"the dimension of {self.model!r} is not known; pass "
                "AutoEmbedding(..., dimension=N) with the model's output size"
            )
        return int(info.dimension)

    def resolved_api_key(self) -> str | None:
        if self.api_key:
            return self.api_key
        return next((os.environ[v] for v in _KEY_ENV[self.provider] if os.environ.get(v)), None)

    @property
    def key_variable(self) -> str:
        return _KEY_VARIABLES[self.provider]

    def generated_sql(self, dialect: sa.Dialect) -> str:
        """``EMBED_TEXT('<model>', document, '<options>')``, values quoted by the dialect.

        DDL cannot bind parameters; both values are validated configuration, rendered as
        string literals by SQLAlchemy's own quoting.
        """
        model = _literal(dialect, self.model)
        options = self.resolved_options()
        if not options:
            return f"EMBED_TEXT({model}, document)"
        return f"EMBED_TEXT({model}, document, {_literal(dialect, json.dumps(options))})"

    def distance_function(self, metric: DistanceMetric) -> str:
        try:
            return _EMBED_DISTANCE[metric]
        except KeyError:
            raise ConfigurationError(
                f"auto-embedding tables search by cosine or l2 distance, not {metric.value}"
            ) from None

    def client(self) -> Any:
        """The core client that embeds like the server does (embedded engine)."""
        options = self.options or {}
        if self.provider == "jina_ai":
            from tidb_jina.embeddings import JinaClient

            return JinaClient(
                model=self.provider_model,
                api_key=self.api_key,
                dimensions=options.get("dimensions"),
            )
        from tidb_jina.embeddings import HuggingFaceClient

        return HuggingFaceClient(model=self.provider_model, api_key=self.api_key)


def _literal(dialect: sa.Dialect, value: str) -> str:
    return str(
        sa.literal(value, sa.String()).compile(
            dialect=dialect, compile_kwargs={"literal_binds": True}
        )
    )


def set_key_statement(variable: str) -> str:
    """``SET @@GLOBAL.<variable> = %s`` for a raw PyMySQL cursor (the key is bound)."""
    if variable not in _KEY_VARIABLES.values():
        raise ConfigurationError(f"unknown auto-embedding key variable {variable!r}")
    return f"SET @@GLOBAL.{variable} = %s"
