"""Hugging Face embeddings: the Inference Providers router or a self-hosted TEI server.

Three ways to point the client at a server:

- no ``base_url`` (and no ``HF_INFERENCE_ENDPOINT``): HF's serverless route
  ``https://router.huggingface.co/hf-inference/models/{model}/pipeline/feature-extraction``;
  needs ``HF_TOKEN`` with the "Inference Providers" permission;
- ``base_url`` of a Text Embeddings Inference server (self-hosted, or an HF Inference
  Endpoint running TEI): ``POST {base_url}/embed``; ``GET {base_url}/info`` is read once to cap
  the batch at the server's ``max_client_batch_size`` and learn the model; a key is optional;
- ``base_url`` ending in ``/feature-extraction``: that URL is used as is.

The body always carries a *list* of inputs, so a 2-deep answer is one pooled vector per input
and a 3-deep answer means token-level output, which is rejected with a clear error (pooling
without the attention mask would be a guess). ``normalize``, ``truncate``,
``truncation_direction`` and ``prompt_name`` go at the top level of the body.

Model conventions (unless ``use_model_prompts=False`` or overridden by ``query_prefix`` /
``passage_prefix``): multilingual-e5 gets ``query: `` / ``passage: ``, Qwen3-Embedding gets
``Instruct: ...\\nQuery:`` in front of queries and nothing in front of documents.
``embed_query`` and ``embed_queries`` (many queries per request) apply the query side.

Defaults (``DEFAULT_HF_LIMITS``, a ``BatchLimits``) and why: ``max_batch_size=32`` (TEI's
default ``max_client_batch_size``; the serverless route runs on CPU),
``max_batch_chars=100_000`` (well under TEI's 2 MB payload limit), ``max_concurrency=4`` (no
published serverless rate limit; be polite).
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from tidb_jina._errors import ConfigurationError, ModelNotFoundError, ResponseFormatError
from tidb_jina.embeddings._base import (
    BaseEmbeddingClient,
    Kind,
    _Call,
    _ErrorInfo,
    rows_to_matrix,
)
from tidb_jina.embeddings._config import BatchLimits, ClientOptions, RetryPolicy, TimeoutLike
from tidb_jina.embeddings._http import _Secret, resolve_secret, resolve_url
from tidb_jina.embeddings._inputs import plan_batches
from tidb_jina.embeddings._keys import HF_HOSTS
from tidb_jina.embeddings._models import hf_model_info

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "DEFAULT_HF_BATCH_CHARS",
    "DEFAULT_HF_BATCH_SIZE",
    "DEFAULT_HF_CONCURRENCY",
    "DEFAULT_HF_LIMITS",
    "HF_ROUTER_URL",
    "HuggingFaceClient",
]

HF_ROUTER_URL = "https://router.huggingface.co"
DEFAULT_HF_PROVIDER = "hf-inference"
DEFAULT_HF_BATCH_SIZE = 32
DEFAULT_HF_BATCH_CHARS = 100_000
DEFAULT_HF_CONCURRENCY = 4
DEFAULT_HF_LIMITS = BatchLimits(
    max_batch_size=DEFAULT_HF_BATCH_SIZE,
    max_batch_chars=DEFAULT_HF_BATCH_CHARS,
    max_concurrency=DEFAULT_HF_CONCURRENCY,
)

ENDPOINT_KEY_ENV = "HF_INFERENCE_ENDPOINT_API_KEY"
"""The key of the server in ``HF_INFERENCE_ENDPOINT`` (TEI's ``--api-key``): sent to that
server only. ``HF_TOKEN`` is never sent to a server that is not on a Hugging Face host."""
TEI_KEY_HINT = (
    "This Text Embeddings Inference server was started with --api-key: pass that same key "
    f"as api_key= (or {ENDPOINT_KEY_ENV} with HF_INFERENCE_ENDPOINT); HF_TOKEN from the "
    "environment is not sent to a self-hosted server."
)
_TEI_BATCH = re.compile(r"maximum allowed batch size (\d+)")


class HuggingFaceClient(BaseEmbeddingClient):
    """Embeds texts with a Hugging Face model (serverless router or self-hosted TEI)."""

    provider_name = "Hugging Face"
    default_limits = DEFAULT_HF_LIMITS
    api_key_env = ("HF_TOKEN", "HUGGINGFACEHUB_API_TOKEN")
    key_hosts = HF_HOSTS
    key_hint = (
        "Create a token with the 'Inference Providers' permission at "
        "https://huggingface.co/settings/tokens and pass it as api_key= or HF_TOKEN."
    )
    balance_hint = (
        "The monthly included Inference Providers credits are used up; add billing or PRO at "
        "https://huggingface.co/settings/billing, or serve the model yourself with TEI "
        "(base_url=...)."
    )
    model_hint = (
        "The model is not served at this route; on the serverless router only warm models work "
        "(https://huggingface.co/models?inference=warm&pipeline_tag=feature-extraction); "
        "otherwise run it on a TEI server and pass base_url=."
    )

    def __init__(
        self,
        *,
        model: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        router_url: str = HF_ROUTER_URL,
        provider: str = DEFAULT_HF_PROVIDER,
        normalize: bool = True,
        truncate: bool = True,
        truncation_direction: str | None = None,
        prompt_name: str | None = None,
        query_prompt_name: str | None = None,
        passage_prompt_name: str | None = None,
        use_model_prompts: bool = True,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        bill_to: str | None = None,
        retry: RetryPolicy | None = None,
        limits: BatchLimits | None = None,
        timeout: TimeoutLike = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        super().__init__(
            api_key=api_key,
            retry=retry,
            limits=limits,
            timeout=timeout,
            options=options,
            http_client=http_client,
            async_http_client=async_http_client,
            transport=transport,
        )
        # HF_INFERENCE_ENDPOINT names a server of its own (TEI, an endpoint), not Hugging
        # Face: HF_TOKEN goes there only when it is on a Hugging Face host (``_keys``).
        url = resolve_url(base_url, "HF_INFERENCE_ENDPOINT", None)
        self._endpoint_from_env = not base_url and url is not None
        if url is None:
            if not model:
                raise ConfigurationError(
                    "model is required for the Hugging Face router, e.g. "
                    "model='intfloat/multilingual-e5-large'; or pass base_url= of a TEI server"
                )
            self.mode = "router"
            self.base_url = f"{router_url.rstrip('/')}/{provider}"
            self.embed_url = f"{self.base_url}/models/{model}/pipeline/feature-extraction"
        elif url.endswith("/feature-extraction"):
            self.mode = "endpoint"
            self.base_url = self.embed_url = url
        else:
            self.mode = "tei"
            self.base_url = url
            self.embed_url = f"{url}/embed"
        # A self-hosted TEI server without --api-key needs no token, and its 401 means
        # the server's own --api-key, not a Hugging Face token.
        self.api_key_required = self.mode != "tei"
        if self.mode == "tei":
            self.key_hint = TEI_KEY_HINT
        if truncation_direction not in (None, "left", "right"):
            raise ConfigurationError("truncation_direction must be 'left', 'right' or None")
        self.model: str = model or ""
        self.normalize = normalize
        self.truncate = truncate
        self.truncation_direction = truncation_direction
        self.query_prompt_name = query_prompt_name or prompt_name
        self.passage_prompt_name = passage_prompt_name or prompt_name
        self.use_model_prompts = use_model_prompts
        self._query_prefix = query_prefix
        self._passage_prefix = passage_prefix
        self.bill_to = bill_to
        self.server_info: dict[str, Any] | None = None
        self._server_batch_size: int | None = None
        self._info_lock = threading.Lock()
        self._dimension = hf_model_info(self.model).dimension if self.model else None

    def __repr__(self) -> str:
        key = "'**********'" if self._explicit_key or self._key else "None"
        return (
            f"HuggingFaceClient(model={self.model!r}, mode={self.mode!r}, "
            f"base_url={self.base_url!r}, api_key={key})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The client's settings, safe to log or serialize: the API key is never included."""
        return {
            "provider": "huggingface",
            "model": self.model,
            "mode": self.mode,
            "base_url": self.base_url,
            "normalize": self.normalize,
            "truncate": self.truncate,
            "truncation_direction": self.truncation_direction,
            "query_prompt_name": self.query_prompt_name,
            "passage_prompt_name": self.passage_prompt_name,
            "query_prefix": self.query_prefix,
            "passage_prefix": self.passage_prefix,
            "max_batch_size": self.max_batch_size,
            "max_batch_chars": self.max_batch_chars,
            "max_concurrency": self.max_concurrency,
            "max_retries": self.max_retries,
        }

    # ---- prompt conventions --------------------------------------------------------------

    @property
    def query_prefix(self) -> str:
        """Text put in front of each query (model convention unless overridden)."""
        if self._query_prefix is not None:
            return self._query_prefix
        return hf_model_info(self.model).query_prefix if self.use_model_prompts else ""

    @property
    def passage_prefix(self) -> str:
        """Text put in front of each document (model convention unless overridden)."""
        if self._passage_prefix is not None:
            return self._passage_prefix
        return hf_model_info(self.model).passage_prefix if self.use_model_prompts else ""

    def _environment_key(self) -> _Secret | None:
        """``HF_INFERENCE_ENDPOINT_API_KEY`` for the server in ``HF_INFERENCE_ENDPOINT``;
        else ``HF_TOKEN`` under the Hugging Face host rule."""
        if self._endpoint_from_env:
            own = resolve_secret(None, (ENDPOINT_KEY_ENV,))
            if own is not None:
                return own
        return super()._environment_key()

    def _headers(self) -> dict[str, str]:
        headers = super()._headers()
        if self.bill_to:
            headers["X-HF-Bill-To"] = self.bill_to
        return headers

    # ---- TEI /info, read once ---------------------------------------------------------------

    def _info_call(self) -> _Call | None:
        if self.mode != "tei" or self.server_info is not None:
            return None
        return _Call("GET", f"{self.base_url}/info")

    def _parse_info(self, data: Any, call: _Call) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ResponseFormatError("TEI /info did not answer with a JSON object")
        model_type = data.get("model_type")
        if isinstance(model_type, dict) and model_type and "embedding" not in model_type:
            # Echoed fields are scrubbed: a server can put anything in them.
            kind = self._scrub(str(next(iter(model_type))))[:40]
            raise ConfigurationError(
                f"The TEI server at {self.base_url} serves a {kind} model "
                f"({self._scrub(str(data.get('model_id')))[:200]}), not an embedding model; "
                "start TEI with an embedding model"
            )
        return {
            key: self._scrub(value) if isinstance(value, str) else value
            for key, value in data.items()
        }

    def _apply_info(self, info: dict[str, Any]) -> None:
        self.server_info = info
        batch = info.get("max_client_batch_size")
        if isinstance(batch, int) and batch > 0:
            self._server_batch_size = batch
        if not self.model and isinstance(info.get("model_id"), str):
            self.model = info["model_id"]
            if self._dimension is None:
                self._dimension = hf_model_info(self.model).dimension

    def _prepare_sync(self) -> None:
        with self._info_lock:
            call = self._info_call()
            if call is None:
                return
            try:
                info = self._send_sync(call, self._parse_info)
            except ModelNotFoundError:  # not TEI (e.g. a proxy without /info): use our defaults
                info = {}
            self._apply_info(info)

    async def _prepare_async(self) -> None:
        call = self._info_call()
        if call is None:
            return
        try:
            info = await self._send_async(call, self._parse_info)
        except ModelNotFoundError:
            info = {}
        self._apply_info(info)

    # ---- request builder and parser (shared by sync and async) ----------------------------

    def _batch_limits(self) -> tuple[int, int]:
        count = self.max_batch_size
        if self._server_batch_size is not None:
            count = min(count, self._server_batch_size)
        return count, self.max_batch_chars

    def _plan_calls(self, texts: list[str], kind: Kind) -> list[_Call]:
        """Batches by count and characters as sent: the prefix counts (Qwen3's query
        instruction is about 90 characters, so 32 queries add about 3,000)."""
        prefix = self.query_prefix if kind == "query" else self.passage_prefix
        count, chars = self._batch_limits()
        sent = [prefix + text for text in texts] if prefix else texts
        return [
            self._build_embed_call(texts[start:end], kind)
            for start, end in plan_batches(sent, count, chars)
        ]

    def build_payload(self, texts: list[str], kind: Kind) -> dict[str, Any]:
        """The JSON body for ``texts``: prefixed inputs (always a list) and top-level options."""
        prefix = self.query_prefix if kind == "query" else self.passage_prefix
        payload: dict[str, Any] = {
            "inputs": [prefix + text for text in texts] if prefix else list(texts),
            "normalize": self.normalize,
            "truncate": self.truncate,
        }
        if self.truncation_direction:
            payload["truncation_direction"] = self.truncation_direction
        prompt_name = self.query_prompt_name if kind == "query" else self.passage_prompt_name
        if prompt_name:
            payload["prompt_name"] = prompt_name
        return payload

    def _build_embed_call(self, texts: list[str], kind: Kind) -> _Call:
        return _Call("POST", self.embed_url, self.build_payload(texts, kind), len(texts))

    def _parse_embeddings(self, data: Any, call: _Call) -> np.ndarray:
        if not isinstance(data, list) or not data:
            raise ResponseFormatError(
                f"Hugging Face answered {type(data).__name__} instead of a list of vectors; "
                "check that the model is a feature-extraction model"
            )
        if isinstance(data[0], (int, float)) and call.size == 1:
            data = [data]  # a single pooled vector for a single input
        if isinstance(data[0], list) and data[0] and isinstance(data[0][0], list):
            raise ResponseFormatError(
                f"{self.model or 'The model'} returned token-level embeddings (one vector per "
                "token) instead of one vector per text: it has no pooling layer. Use a "
                "sentence-transformers model (e.g. intfloat/multilingual-e5-large, BAAI/bge-m3) "
                "or serve it with TEI, which pools"
            )
        if len(data) != call.size:
            raise ResponseFormatError(
                f"Hugging Face returned {len(data)} vectors for {call.size} inputs"
            )
        return rows_to_matrix(data, self.provider_name)

    def _invalid_hint(self, info: _ErrorInfo) -> str:
        match = _TEI_BATCH.search(info.detail)
        if match:
            return f"the server accepts at most {match.group(1)} inputs per request; pass " + (
                f"max_batch_size={match.group(1)}"
            )
        if "prompt" in info.detail.lower():
            return "the model defines no such prompt_name; remove prompt_name"
        return "check the model name and the options passed to the client"
