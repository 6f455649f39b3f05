"""A loopback HTTP server that speaks the Jina, Hugging Face router and TEI contracts.

``FakeEmbeddingServer`` runs a real ``ThreadingHTTPServer`` on ``127.0.0.1`` (free port) in a
background thread, so clients are exercised over real sockets, keep-alive, timeouts and
dropped connections. It serves:

- ``POST /v1/embeddings`` and ``POST /v1/rerank`` (Jina): bearer auth, per-model field
  validation (a field the model does not accept is a 422), dimension ranges,
  ``embedding_type`` float/base64; more than 2,048 inputs (v4: 512) is a 400, as the live
  API answers; an over-long input with ``truncate=false``, or a late-chunking request whose
  joined inputs exceed the model's context, is a 400 whose ``detail`` is an object
  (``{"detail": {"message": ...}}``, no ``code``); rerank takes ``truncation`` and at most
  ``rerank_max_documents`` (1,024) documents; Cloudflare's 52x come as plain text;
- ``POST /{provider}/models/{model}/pipeline/feature-extraction`` (HF router): top-level
  ``normalize``/``truncate``/``truncation_direction``/``prompt_name`` only; a single input
  comes back as ``[[...]]`` as TEI sends it; token-level output for models listed in
  ``token_level_models``;
- ``GET /info`` and ``POST /embed`` (TEI): ``max_client_batch_size`` (422 beyond, as TEI
  really answers), ``max_input_length``, a body over ``tei_payload_limit`` bytes (2 MB,
  TEI's default) is a plain-text 413, ``{"error", "error_type"}`` bodies, unknown fields
  ignored, and a 401 with an empty body.

Each of these contracts is pinned by ``tests/embeddings/test_fake_contracts.py``.

Vectors are ``lexical_embedding`` of the input text, so texts sharing words rank together.

Fault knobs: ``latency_s``; ``fail_every=N`` (every Nth API request answers ``fail_status``,
with ``Retry-After: retry_after`` when set); ``inject(...)`` queues one-off faults for the next
requests (an HTTP status, ``"drop"`` to close the connection without an answer,
``"partial"`` to omit the last embedding, or a float to delay that answer by that many
seconds); ``max_concurrency`` (429 ``RATE_CONCURRENCY_LIMIT_EXCEEDED`` beyond it, like Jina's
free tier at 5). Every request is logged in ``requests`` (the Authorization header is
replaced by whether it matched).

    with FakeEmbeddingServer(api_key="test-key") as server:
        client = JinaClient(api_key="test-key", base_url=server.url)
        client.embed_documents(["hello world"])
        assert server.requests[0].body["task"] == "retrieval.passage"
"""

from __future__ import annotations

import base64
import random
import re
import threading
import time
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from tidb_jina.embeddings._models import HF_MODELS, JINA_MODELS, jina_model_info
from tidb_jina.testing._lexical import lexical_embedding

__all__ = ["FakeEmbeddingServer", "RecordedRequest"]

Fault = int | float | str

_ROUTER = re.compile(r"^/(?P<provider>[^/]+)/models/(?P<model>.+)/pipeline/feature-extraction$")
_WORD = re.compile(r"\w+")
_DEFAULT_HF_DIMENSION = 384
JINA_MAX_INPUTS = 2048
TEI_PAYLOAD_LIMIT = 2_000_000
"""TEI's default ``--payload-limit`` in bytes: a larger ``/embed`` body is a 413."""
"""The live Jina API answers 400 to more inputs in one request (512 for v4)."""
JINA_MAX_RERANK_DOCUMENTS = 1024
"""Documents per rerank request that the fake accepts (Jina's own MCP server's cap)."""


@dataclass
class RecordedRequest:
    """One request the fake server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    authorized: bool
    status: int = 0
    at: float = field(default_factory=time.monotonic)


class _Reply(Exception):
    """Raised by route handlers to answer with an error status."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


class _Drop(Exception):
    """Close the connection without answering."""


def _tokens(text: str) -> int:
    return len(_WORD.findall(text))


def _too_long(what: str, limit: int, model: str) -> _Reply:
    """Jina's over-long answer: a 400 whose ``detail`` is an object, with no ``code``."""
    return _Reply(
        400,
        {
            "detail": {
                "message": f"The {what} is too long: it exceeds the maximum of {limit} tokens "
                f"for {model}. Use truncate=true or shorter inputs."
            }
        },
    )


class FakeEmbeddingServer:
    """A loopback Jina / HF / TEI server for offline tests. Use as a context manager."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        latency_s: float = 0.0,
        fail_every: int | None = None,
        fail_status: int = 429,
        retry_after: str | float | None = None,
        faults: Iterable[Fault] = (),
        max_concurrency: int | None = None,
        shuffle: bool = False,
        max_input_tokens: int | None = None,
        extra_models: Mapping[str, int] | None = None,
        hf_models: Collection[str] | None = None,
        token_level_models: Collection[str] = (),
        tei_model_id: str = "sentence-transformers/all-MiniLM-L6-v2",
        tei_max_client_batch_size: int = 32,
        tei_max_input_length: int = 512,
        tei_prompts: Collection[str] = (),
        rerank_max_documents: int = JINA_MAX_RERANK_DOCUMENTS,
        tei_payload_limit: int = TEI_PAYLOAD_LIMIT,
    ) -> None:
        self.api_key = api_key
        self.latency_s = latency_s
        self.fail_every = fail_every
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.max_concurrency = max_concurrency
        self.shuffle = shuffle
        self.max_input_tokens = max_input_tokens
        self.extra_models = dict(extra_models or {})
        self.hf_models = set(hf_models) if hf_models is not None else None
        self.token_level_models = set(token_level_models)
        self.tei_model_id = tei_model_id
        self.tei_max_client_batch_size = tei_max_client_batch_size
        self.tei_max_input_length = tei_max_input_length
        self.tei_prompts = set(tei_prompts)
        self.rerank_max_documents = rerank_max_documents
        self.tei_payload_limit = tei_payload_limit
        self.requests: list[RecordedRequest] = []
        self.max_in_flight = 0
        self._faults: deque[Fault] = deque(faults)
        self._lock = threading.Lock()
        self._api_calls = 0
        self._in_flight = 0
        self._rng = random.Random(0)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the Jina base URL and the TEI base URL."""
        if self._httpd is None:
            raise RuntimeError("the server is not running; use it as a context manager")
        port = self._httpd.server_address[1]
        return f"http://127.0.0.1:{port}"

    def router_url(self, model: str, provider: str = "hf-inference") -> str:
        """The fake HF router URL for ``model`` (pass as ``base_url`` or use ``url`` as
        ``router_url``)."""
        return f"{self.url}/{provider}/models/{model}/pipeline/feature-extraction"

    def start(self) -> FakeEmbeddingServer:
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.02},  # shutdown() waits up to one poll interval
            name="fake-embeddings",
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeEmbeddingServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def inject(self, *faults: Fault) -> None:
        """Queue one-off faults for the next API requests, in order."""
        with self._lock:
            self._faults.extend(faults)

    def reset(self) -> None:
        """Forget the request log and the queued faults."""
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self._api_calls = 0
            self.max_in_flight = 0

    def api_requests(self, path_prefix: str = "") -> list[RecordedRequest]:
        """Logged requests other than ``GET /info``, optionally filtered by path prefix."""
        return [r for r in self.requests if r.path != "/info" and r.path.startswith(path_prefix)]

    # ---- request pipeline (runs on the handler thread) ---------------------------------------

    def _handle(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> Any:
        auth = headers.get("authorization", "")
        authorized = self.api_key is None or auth == f"Bearer {self.api_key}"
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        logged = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        record = RecordedRequest(method, path, logged, body, authorized)
        with self._lock:
            self.requests.append(record)
        if path == "/embed" and len(raw) > self.tei_payload_limit:  # TEI's --payload-limit
            record.status = 413
            raise _Reply(413, "Failed to buffer the request body: length limit exceeded")
        try:
            result = self._dispatch(method, path, body, authorized, record)
        except _Reply as reply:
            record.status = reply.status
            raise
        record.status = 200
        return result

    def _dispatch(
        self, method: str, path: str, body: Any, authorized: bool, record: RecordedRequest
    ) -> Any:
        if method == "GET" and path == "/info":
            self._check_auth(authorized, tei=True)
            return self._tei_info()
        if method != "POST":
            raise _Reply(405, {"detail": "Method Not Allowed"})
        router = _ROUTER.match(path)
        if path not in ("/v1/embeddings", "/v1/rerank", "/embed") and router is None:
            raise _Reply(404, "Not Found")
        self._check_auth(authorized, tei=path == "/embed", hf=router is not None)
        fault = self._next_fault()
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            over = self.max_concurrency is not None and self._in_flight > self.max_concurrency
        try:
            if over:
                raise _Reply(
                    429,
                    {
                        "detail": f"Concurrency limit of {self.max_concurrency} exceeded",
                        "code": "RATE_CONCURRENCY_LIMIT_EXCEEDED",
                    },
                    self._retry_after_header(),
                )
            delay = self.latency_s + (fault if isinstance(fault, float) else 0.0)
            if delay:
                time.sleep(delay)
            if fault == "drop":
                raise _Drop
            if isinstance(fault, int) and fault >= 400:
                raise self._fault_reply(fault)
            if path == "/v1/embeddings":
                result = self._jina_embeddings(body)
            elif path == "/v1/rerank":
                result = self._jina_rerank(body)
            elif path == "/embed":
                result = self._tei_embed(body)
            else:
                assert router is not None
                result = self._router_embed(router.group("model"), body)
            if fault == "partial" and isinstance(result, dict) and result.get("data"):
                result["data"] = result["data"][:-1]
            return result
        finally:
            with self._lock:
                self._in_flight -= 1

    def _next_fault(self) -> Fault | None:
        with self._lock:
            self._api_calls += 1
            if self._faults:
                return self._faults.popleft()
            if self.fail_every and self._api_calls % self.fail_every == 0:
                return self.fail_status
        return None

    def _retry_after_header(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}

    def _fault_reply(self, status: int) -> _Reply:
        codes = {
            429: "RATE_REQUEST_LIMIT_EXCEEDED",
            500: "INTERNAL_ERROR",
            503: "SERVICE_UNAVAILABLE",
            504: "SERVICE_TIMEOUT",
        }
        headers = self._retry_after_header() if status in (429, 503) else {}
        if 520 <= status <= 527:  # Cloudflare's own answer: plain text, not the API's JSON
            return _Reply(status, f"error code: {status}", headers)
        return _Reply(
            status,
            {"detail": f"Injected failure {status}", "code": codes.get(status, "ERROR")},
            headers,
        )

    def _check_auth(self, authorized: bool, *, tei: bool = False, hf: bool = False) -> None:
        if authorized:
            return
        if tei:
            raise _Reply(401, b"")  # TEI's auth middleware answers 401 with an empty body
        if hf:
            raise _Reply(401, {"error": "Invalid credentials in Authorization header"})
        raise _Reply(
            401,
            {
                "detail": "Invalid API key. A valid key is 65 characters long and starts with "
                "'jina_'",
                "code": "AUTH_INVALID_API_KEY",
            },
        )

    # ---- Jina --------------------------------------------------------------------------------

    def _jina_invalid(self, field_name: str, message: str, value: Any = None) -> _Reply:
        return _Reply(
            422,
            {
                "detail": f"Validation error: {field_name}: {message}",
                "errors": [
                    {"field": field_name, "input": value, "message": message, "type": "value"}
                ],
            },
        )

    def _jina_embeddings(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or "model" not in body or "input" not in body:
            raise self._jina_invalid("body", "model and input are required")
        model = body["model"]
        if model in JINA_MODELS:
            info = JINA_MODELS[model]
            allowed = {"model", "input", "embedding_type", "truncate"}
            allowed |= {"task"} if info.accepts_task else set()
            allowed |= {"dimensions"} if info.max_dimensions else set()
            allowed |= {"normalized"} if info.accepts_normalized else set()
            allowed |= {"late_chunking"} if info.accepts_late_chunking else set()
            default_dim = info.dimension or 768
        elif model in self.extra_models:
            info = jina_model_info(model)
            allowed = {"model", "input", "embedding_type", "truncate", "task", "dimensions"}
            default_dim = self.extra_models[model]
        else:
            raise _Reply(
                400, {"detail": f"Model '{model}' not found", "code": "INPUT_MODEL_NOT_FOUND"}
            )
        for key in body:
            if key not in allowed:
                raise self._jina_invalid(key, f"Extra inputs are not permitted for {model}")
        texts = self._jina_inputs(body["input"])
        self._jina_check_count(model, info.max_batch_size, len(texts))
        task = body.get("task")
        if task is not None and info.tasks and task not in info.tasks:
            raise self._jina_invalid("task", f"must be one of {list(info.tasks)}", task)
        dim = body.get("dimensions", default_dim)
        upper = info.max_dimensions or 1 << 16
        if not isinstance(dim, int) or not 1 <= dim <= upper:
            raise self._jina_invalid("dimensions", f"must be between 1 and {upper}", dim)
        embedding_type = body.get("embedding_type", "float")
        if embedding_type not in ("float", "base64"):
            raise self._jina_invalid("embedding_type", "only float and base64 are served here")
        limit = self.max_input_tokens or info.max_input_tokens
        if body.get("late_chunking") and limit and len(texts) > 1:
            # Late chunking joins the inputs into one sequence, which must fit the context
            # (one input alone is an ordinary input: ``truncate`` decides below).
            total = sum(_tokens(text) for text in texts)
            if total > limit:
                raise _too_long(f"late chunking input of {total} tokens", limit, model)
        if not body.get("truncate", False) and limit:
            for i, text in enumerate(texts):
                if _tokens(text) > limit:
                    raise _too_long(f"input at index {i} ({_tokens(text)} tokens)", limit, model)
        vectors = lexical_embedding(texts, dim)
        if body.get("normalized") is False:
            vectors *= 3.0
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": (
                    base64.b64encode(vec.astype("<f4").tobytes()).decode()
                    if embedding_type == "base64"
                    else vec.tolist()
                ),
            }
            for i, vec in enumerate(vectors)
        ]
        if self.shuffle:
            with self._lock:
                self._rng.shuffle(data)
        tokens = sum(_tokens(t) for t in texts)
        return {
            "model": model,
            "object": "list",
            "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
            "data": data,
        }

    def _jina_check_count(self, model: str, model_limit: int | None, count: int) -> None:
        """More than 2,048 inputs (v4: 512) is a 400, as the live API answers."""
        if model_limit is not None and count > model_limit:
            raise _Reply(
                400,
                {
                    "detail": f"Validation error: 'body -> {model}' Each input list can contain "
                    f"at most {model_limit} items.",
                    "errors": [{"field": "", "message": "Invalid value"}],
                },
            )
        if count > JINA_MAX_INPUTS:
            raise _Reply(
                400,
                {
                    "detail": f"input length {count} is larger than the largest allowed size "
                    f"{JINA_MAX_INPUTS}"
                },
            )

    def _jina_inputs(self, raw: Any) -> list[str]:
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise self._jina_invalid("input", "must not be empty")
        texts = []
        for item in items:
            text = item.get("text") if isinstance(item, dict) else item
            if not isinstance(text, str) or not text.strip():
                raise self._jina_invalid("input", "every input must be a non-empty text", item)
            texts.append(text)
        return texts

    def _jina_rerank(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise self._jina_invalid("body", "must be an object")
        model = body.get("model", "")
        if not (model.startswith("jina-reranker") or model.startswith("jina-colbert")):
            raise _Reply(
                400, {"detail": f"Model '{model}' not found", "code": "INPUT_MODEL_NOT_FOUND"}
            )
        allowed = {"model", "query", "documents", "top_n", "return_documents", "truncation"}
        for key in body:
            if key not in allowed:
                raise self._jina_invalid(key, "Extra inputs are not permitted")
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise self._jina_invalid("query", "must be a non-empty string")
        documents = self._jina_inputs(body.get("documents"))
        if len(documents) > self.rerank_max_documents:
            raise _Reply(
                400,
                {
                    "detail": f"documents: {len(documents)} documents is more than the "
                    f"{self.rerank_max_documents} allowed in one request"
                },
            )
        truncation = body.get("truncation", False)
        if not isinstance(truncation, bool):
            raise self._jina_invalid("truncation", "must be a boolean", truncation)
        top_n = body.get("top_n", len(documents))
        if not isinstance(top_n, int) or top_n < 1:
            raise self._jina_invalid("top_n", "must be >= 1", top_n)
        vectors = lexical_embedding([query, *documents], 1024)
        scores = vectors[1:] @ vectors[0]
        order = sorted(range(len(documents)), key=lambda i: (-float(scores[i]), i))[:top_n]
        results = []
        for i in order:
            item: dict[str, Any] = {"index": i, "relevance_score": float(scores[i])}
            if body.get("return_documents", True):
                item["document"] = {"text": documents[i]}
            results.append(item)
        return {"model": model, "object": "list", "usage": {"total_tokens": 1}, "results": results}

    # ---- Hugging Face router and TEI -----------------------------------------------------------

    def _hf_dimension(self, model: str) -> int:
        info = HF_MODELS.get(model)
        return info.dimension if info and info.dimension else _DEFAULT_HF_DIMENSION

    def _hf_inputs(self, body: Any, *, tei: bool) -> list[str]:
        if not isinstance(body, dict) or "inputs" not in body:
            raise _Reply(422, {"error": "`inputs` is required", "error_type": "Validation"})
        # TEI ignores fields it does not know (no deny_unknown_fields in its types.rs); the
        # fake router stays strict, as some router models refuse extra parameters.
        allowed = {"inputs", "normalize", "truncate", "truncation_direction", "prompt_name"}
        for key in body:
            if key not in allowed and not tei:
                raise _Reply(422, {"error": f"unknown field `{key}`", "error_type": "Validation"})
        raw = body["inputs"]
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts:
            raise _Reply(400, {"error": "`inputs` cannot be empty", "error_type": "Empty"})
        if not all(isinstance(t, str) for t in texts):
            raise _Reply(422, {"error": "`inputs` must be strings", "error_type": "Validation"})
        return texts

    def _router_embed(self, model: str, body: Any) -> Any:
        if self.hf_models is not None and model not in self.hf_models:
            raise _Reply(404, "Not Found")
        texts = self._hf_inputs(body, tei=False)
        vectors = lexical_embedding(texts, self._hf_dimension(model))
        if body.get("normalize") is False:
            vectors *= 3.0
        if model in self.token_level_models:
            return [[vec.tolist(), (vec * 0.5).tolist()] for vec in vectors]
        # hf-inference serves these models through TEI: a single string is a one-row matrix.
        return vectors.tolist()

    def _tei_info(self) -> dict[str, Any]:
        return {
            "model_id": self.tei_model_id,
            "model_sha": None,
            "model_dtype": "float32",
            "model_type": {"embedding": {"pooling": "mean"}},
            "max_concurrent_requests": 512,
            "max_input_length": self.tei_max_input_length,
            "max_batch_tokens": 16384,
            "max_batch_requests": None,
            "max_client_batch_size": self.tei_max_client_batch_size,
            "auto_truncate": True,
            "tokenization_workers": 1,
            "version": "1.9.3",
            "served_model_name": self.tei_model_id,
        }

    def _tei_embed(self, body: Any) -> Any:
        texts = self._hf_inputs(body, tei=True)
        if len(texts) > self.tei_max_client_batch_size:
            raise _Reply(
                422,
                {
                    "error": f"batch size {len(texts)} > maximum allowed batch size "
                    f"{self.tei_max_client_batch_size}",
                    "error_type": "Validation",
                },
            )
        prompt = body.get("prompt_name")
        if prompt is not None and prompt not in self.tei_prompts:
            raise _Reply(
                422,
                {
                    "error": f"`prompt_name` `{prompt}` was not found in the Sentence "
                    "Transformers prompts",
                    "error_type": "Validation",
                },
            )
        if body.get("truncate") is False:
            for text in texts:
                if _tokens(text) >= self.tei_max_input_length:
                    raise _Reply(
                        422,
                        {
                            "error": "Input validation error: `inputs` must have less than "
                            f"{self.tei_max_input_length} tokens. Given: {_tokens(text)}",
                            "error_type": "Validation",
                        },
                    )
        vectors = lexical_embedding(texts, self._hf_dimension(self.tei_model_id))
        dimensions = body.get("dimensions")
        if isinstance(dimensions, int) and 0 < dimensions < vectors.shape[1]:
            vectors = vectors[:, :dimensions]
        if body.get("normalize") is False:
            vectors *= 3.0
        return vectors.tolist()


class _Handler(BaseHTTPRequestHandler):
    """Reads a request, asks the bound ``FakeEmbeddingServer``, writes the answer."""

    fake: FakeEmbeddingServer
    protocol_version = "HTTP/1.1"  # keep-alive, like the real services

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        pass

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = self.path.split("?", 1)[0]
        try:
            result = self.fake._handle(method, path, headers, raw)
        except _Drop:
            self.close_connection = True
            return
        except _Reply as reply:
            self._write(reply.status, reply.body, reply.headers)
            return
        self._write(200, result, {})

    def _write(self, status: int, body: Any, headers: Mapping[str, str]) -> None:
        if isinstance(body, bytes):
            payload, content_type = body, ""
        elif isinstance(body, str):
            payload, content_type = body.encode(), "text/plain"
        else:
            payload, content_type = orjson.dumps(body), "application/json"
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")
