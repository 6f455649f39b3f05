"""Machinery shared by every provider client, written once for sync and async.

A client describes *what* to send (``_build_*`` methods returning a ``_Call``) and *how to read
the answer* (``_parse_*`` methods); this module does the rest:

- **Batching** by input count and by total characters (``plan_batches``), so one request never
  carries more than the provider accepts or a huge share of a token-per-minute budget.
- **Bounded concurrency**: async batches run under an ``asyncio.Semaphore``; sync batches run
  on a thread pool of the same size, so sync callers get the same throughput.
- **Retries** with exponential backoff and jitter on 429, 500, 502, 503, 504, timeouts and
  dropped connections, honouring ``Retry-After``; never on 400/401/402/403/404/422, which are
  mapped to a specific ``EmbeddingError`` subclass whose message says what to do.
- **API keys** live in ``_Secret`` objects: resolved from the argument or the environment at
  first use (a missing key is ``MissingAPIKeyError`` then, never ``Bearer None``) and never in
  ``repr``/``str``/logs/exceptions/``to_dict()``.

Sync and async differ only in ``_send_sync`` / ``_send_async`` and ``_map_sync`` /
``_map_async``; request building, response parsing, error mapping and backoff are shared.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, ClassVar, Literal, TypeVar, cast

import httpx
import numpy as np
import orjson

from tidb_jina._components import first_non_number
from tidb_jina._errors import (
    EmbeddingError,
    MissingAPIKeyError,
    ProviderUnavailableError,
    ResponseFormatError,
)
from tidb_jina.embeddings._config import (
    BatchLimits,
    ClientConfig,
    ClientOptions,
    RetryPolicy,
    TimeoutLike,
    Timeouts,
    build_config,
    named_parameters,
)
from tidb_jina.embeddings._http import (
    DeadlineClient,
    _Call,
    _ErrorInfo,
    _Retry,
    _Secret,
    parse_retry_after,
    request_async,
    request_sync,
    resolve_secret,
)
from tidb_jina.embeddings._inputs import plan_batches, validate_texts
from tidb_jina.embeddings._keys import host_of, is_plain_http_remote, is_provider_host
from tidb_jina.embeddings._status import RETRY_STATUSES, error_info, map_error

logger = logging.getLogger("tidb_jina.embeddings")

T = TypeVar("T")
Kind = Literal["query", "document"]

DEFAULT_TIMEOUT = Timeouts().to_httpx()
"""10 s to connect, 60 s per read or write, and 60 s for a whole call (``Timeouts.deadline``):
a 128-input batch of long texts can take a while."""
_USER_AGENT = "tidb-jina (python; httpx)"


class BaseEmbeddingClient:
    """Config, HTTP clients, retries, batching and error mapping for one provider.

    Subclasses set the class attributes and implement ``_build_embed_call`` and
    ``_parse_embeddings``; optionally ``_prepare_sync`` / ``_prepare_async`` (e.g. TEI ``/info``).
    """

    provider_name: str = "provider"
    api_key_env: tuple[str, ...] = ()
    api_key_required: bool = True
    key_hint: str = ""
    balance_hint: str = ""
    model_hint: str = ""
    too_long_hint: str = "pass truncate=True or split long texts into chunks before embedding"

    key_hosts: ClassVar[tuple[str, ...]] = ()
    """Hosts (and their subdomains) that may receive a key from the environment."""
    base_url: str = ""
    _url_from_env = False  # base_url came from JINA_API_BASE_URL (see ``_keys``)
    _refused_env_key = False
    _warned_plain_http = False

    default_limits: ClassVar[BatchLimits]
    """The provider's batch limits; ``limits=`` fields left as ``None`` take these."""

    def __init__(
        self,
        *,
        api_key: str | None,
        retry: RetryPolicy | None,
        limits: BatchLimits | None,
        timeout: TimeoutLike,
        options: ClientOptions,
        http_client: httpx.Client | None,
        async_http_client: httpx.AsyncClient | None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None,
    ) -> None:
        cls = type(self)
        self._config: ClientConfig = build_config(
            cls.__name__,
            retry=retry,
            limits=limits,
            timeout=timeout,
            defaults=cls.default_limits,
            options=options,
            valid=named_parameters(cls.__init__),
        )
        self._explicit_key = _Secret(api_key) if api_key else None
        self._key: _Secret | None = None
        self._transport = transport
        self._http_client = http_client
        self._async_http_client = async_http_client
        self._owned_client: httpx.Client | None = None
        self._owned_async_client: httpx.AsyncClient | None = None
        self._owned_async_loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    # ---- options: the config objects, and their fields under the flat names ---------------

    @property
    def retry(self) -> RetryPolicy:
        """How transient failures are retried."""
        return self._config.retry

    @property
    def limits(self) -> BatchLimits:
        """Batch size, characters per request and concurrency (every field set)."""
        return self._config.limits

    @property
    def timeouts(self) -> Timeouts:
        """HTTP timeouts per phase."""
        return self._config.timeouts

    @property
    def timeout(self) -> httpx.Timeout:
        """``timeouts`` as the ``httpx.Timeout`` given to the HTTP clients."""
        return self._config.timeouts.to_httpx()

    @property
    def max_retries(self) -> int:
        return self._config.retry.max_retries

    @property
    def backoff_base(self) -> float:
        return self._config.retry.backoff_base

    @property
    def backoff_max(self) -> float:
        return self._config.retry.backoff_max

    @property
    def max_retry_after(self) -> float:
        return self._config.retry.max_retry_after

    # ``build_config`` fills every BatchLimits field from ``default_limits``.
    @property
    def max_batch_size(self) -> int:
        return cast(int, self._config.limits.max_batch_size)

    @property
    def max_batch_chars(self) -> int:
        return cast(int, self._config.limits.max_batch_chars)

    @property
    def max_concurrency(self) -> int:
        return cast(int, self._config.limits.max_concurrency)

    # ---- configuration -------------------------------------------------------------------

    def _api_key(self) -> _Secret | None:
        """Resolve the key at first use (not in the constructor, so env can be set later)."""
        if self._key is None:
            self._key = self._explicit_key or self._environment_key()
        if self._key is None and self.api_key_required:
            raise MissingAPIKeyError(self._missing_key_message())
        plain = self._key is not None and is_plain_http_remote(self.base_url)
        if plain and not self._warned_plain_http:
            self._warned_plain_http = True
            logger.warning(
                "Sending the %s API key over plain http to %s: anyone on the network "
                "path can read it. Use an https:// base_url.",
                self.provider_name,
                host_of(self.base_url),
            )
        return self._key

    def _environment_key(self) -> _Secret | None:
        """The key from the environment, if this client's server may receive it (see
        ``_keys``: the provider's own hosts, or for Jina the ``JINA_API_BASE_URL`` URL)."""
        key = resolve_secret(None, self.api_key_env)
        if key is None or self._url_from_env or is_provider_host(self.base_url, self.key_hosts):
            return key
        if self._refused_env_key:  # said once per client
            return None
        self._refused_env_key = True
        logger.info(
            "%s is set but not sent to %s: a key from the environment goes only to %s's "
            "own hosts; pass api_key= to send one there.",
            " / ".join(self.api_key_env),
            host_of(self.base_url),
            self.provider_name,
        )
        return None

    def _missing_key_message(self) -> str:
        names = " or ".join(self.api_key_env)
        if self._refused_env_key:
            return (
                f"{names} is set, but a key from the environment is only sent to "
                f"{self.provider_name}'s own hosts ({', '.join(self.key_hosts)}), and "
                f"base_url points at {host_of(self.base_url)}. Pass api_key=... to send a "
                "key to this server."
            )
        return f"No {self.provider_name} API key: pass api_key=... or set {names}. {self.key_hint}"

    def _headers(self) -> dict[str, str]:
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
        }
        key = self._api_key()
        if key is not None:
            headers["Authorization"] = f"Bearer {key.get()}"
        return headers

    def _scrub(self, text: str) -> str:
        """Remove the key from text that came from elsewhere (e.g. an echoed error body)."""
        for secret in (self._key, self._explicit_key):
            if secret is not None and secret.get():
                text = text.replace(secret.get(), "**********")
        return text

    # ---- HTTP clients --------------------------------------------------------------------

    def _pool_limits(self) -> httpx.Limits:
        return httpx.Limits(max_connections=max(10, self.max_concurrency * 2))

    def _sync_client(self) -> httpx.Client:
        if self._http_client is not None:
            return self._http_client
        with self._lock:
            if self._owned_client is None:
                transport = (
                    self._transport if isinstance(self._transport, httpx.BaseTransport) else None
                )
                limits = self._pool_limits()
                if transport is not None:
                    self._owned_client = httpx.Client(
                        timeout=self.timeout, limits=limits, transport=transport
                    )
                else:  # environment proxies work, and keep the deadline
                    self._owned_client = DeadlineClient(timeout=self.timeout, limits=limits)
            return self._owned_client

    def _async_client(self) -> httpx.AsyncClient:
        if self._async_http_client is not None:
            return self._async_http_client
        loop = asyncio.get_running_loop()
        # An AsyncClient's pool is bound to the loop it first ran on; asyncio.run() twice
        # (notebooks, sync wrappers) would otherwise fail with "Event loop is closed".
        if self._owned_async_client is None or self._owned_async_loop is not loop:
            transport = (
                self._transport if isinstance(self._transport, httpx.AsyncBaseTransport) else None
            )
            self._owned_async_client = httpx.AsyncClient(
                timeout=self.timeout, limits=self._pool_limits(), transport=transport
            )
            self._owned_async_loop = loop
        return self._owned_async_client

    def close(self) -> None:
        """Close the HTTP client this object created (an injected one is left open)."""
        if self._owned_client is not None:
            self._owned_client.close()
            self._owned_client = None

    async def aclose(self) -> None:
        """Close both HTTP clients this object created (injected ones are left open)."""
        self.close()
        if self._owned_async_client is not None:
            client, self._owned_async_client = self._owned_async_client, None
            if self._owned_async_loop is asyncio.get_running_loop():
                await client.aclose()
            self._owned_async_loop = None

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ---- one request, with retries ---------------------------------------------------------

    def _send_sync(self, call: _Call, parse: Callable[[Any, _Call], T]) -> T:
        client = self._sync_client()
        headers = self._headers()
        body = None if call.payload is None else orjson.dumps(call.payload)
        attempt = 0
        while True:
            try:
                response = request_sync(
                    client,
                    call.method,
                    call.url,
                    content=body,
                    headers=headers,
                    timeout=self.timeout,
                    deadline=self.timeouts.deadline,
                )
                return self._handle(response, call, parse)
            except httpx.TransportError as exc:
                retry = self._transport_retry(call, exc)
            except _Retry as exc:
                retry = exc
            time.sleep(self._next_delay(attempt, retry))
            attempt += 1

    async def _send_async(self, call: _Call, parse: Callable[[Any, _Call], T]) -> T:
        client = self._async_client()
        headers = self._headers()
        body = None if call.payload is None else orjson.dumps(call.payload)
        attempt = 0
        while True:
            try:
                response = await request_async(
                    client,
                    call.method,
                    call.url,
                    content=body,
                    headers=headers,
                    timeout=self.timeout,
                    deadline=self.timeouts.deadline,
                )
                return self._handle(response, call, parse)
            except httpx.TransportError as exc:
                retry = self._transport_retry(call, exc)
            except _Retry as exc:
                retry = exc
            await asyncio.sleep(self._next_delay(attempt, retry))
            attempt += 1

    def _handle(self, response: httpx.Response, call: _Call, parse: Callable[[Any, _Call], T]) -> T:
        """Parse a success; raise ``_Retry`` for a retryable status, the mapped error else."""
        if response.is_success:
            data = _json_or_none(response.content)
            if data is _NOT_JSON:
                # Scrub, then cut: the body may echo the request, key included. Raised
                # outside the ``except``, so the decoder's error (which keeps the whole
                # unscrubbed document in ``.doc``) is not chained as the context.
                start = self._scrub(response.text)[:80]
                raise ResponseFormatError(
                    f"{self.provider_name} answered {response.status_code} with a body that is "
                    f"not JSON (starts with {start!r}); check the base URL",
                    status_code=response.status_code,
                )
            return parse(data, call)
        error = self._map_error(response, call)
        if response.status_code in RETRY_STATUSES:
            raise _Retry(error, parse_retry_after(response.headers.get("Retry-After")))
        raise error

    def _transport_retry(self, call: _Call, exc: httpx.TransportError) -> _Retry:
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        error = ProviderUnavailableError(
            f"The request to {self.provider_name} at {call.url} {kind} "
            f"({type(exc).__name__}: {self._scrub(str(exc)) or 'no detail'}) on every attempt; "
            "check the network and the base URL, or raise timeout= for slow servers"
        )
        # No __cause__: the raw httpx error's text is not scrubbed and could echo headers.
        return _Retry(error)

    def _next_delay(self, attempt: int, retry: _Retry) -> float:
        """Seconds to wait before the next attempt; raises the final error when out of tries."""
        if attempt >= self.max_retries:
            final = retry.final
            if self.max_retries:
                final.args = (f"{final.args[0]} (gave up after {attempt + 1} attempts)",)
            raise final from None
        step = min(self.backoff_max, self.backoff_base * 2**attempt)
        delay = step / 2 + random.uniform(0, step / 2)  # "equal jitter": never 0, never in sync
        if retry.retry_after is not None:
            delay = min(retry.retry_after, self.max_retry_after) + random.uniform(0, step / 4)
        logger.info(
            "%s request failed (%s); retrying in %.2f s (attempt %d of %d)",
            self.provider_name,
            type(retry.final).__name__,
            delay,
            attempt + 2,
            self.max_retries + 1,
        )
        return delay

    # ---- error mapping -----------------------------------------------------------------------

    def _map_error(self, response: httpx.Response, call: _Call) -> EmbeddingError:
        return map_error(self, error_info(response, self._scrub))

    def _invalid_hint(self, info: _ErrorInfo) -> str:
        return "check the model name and the options passed to the client"

    # ---- many requests, bounded concurrency ---------------------------------------------

    def _map_sync(self, calls: Sequence[_Call], parse: Callable[[Any, _Call], T]) -> list[T]:
        """Send ``calls`` on up to ``max_concurrency`` threads; results in call order."""
        if len(calls) <= 1 or self.max_concurrency == 1:
            return [self._send_sync(call, parse) for call in calls]
        with ThreadPoolExecutor(
            max_workers=min(self.max_concurrency, len(calls)),
            thread_name_prefix="tidb-jina-embed",
        ) as pool:
            futures = [pool.submit(self._send_sync, call, parse) for call in calls]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            for future in futures:
                if future in done and future.exception() is not None:
                    raise future.exception()  # type: ignore[misc]
            return [future.result() for future in futures]

    async def _map_async(self, calls: Sequence[_Call], parse: Callable[[Any, _Call], T]) -> list[T]:
        """Send ``calls`` with at most ``max_concurrency`` in flight; results in call order."""
        if len(calls) <= 1:
            return [await self._send_async(call, parse) for call in calls]
        semaphore = asyncio.Semaphore(self.max_concurrency)

        async def one(call: _Call) -> T:
            async with semaphore:
                return await self._send_async(call, parse)

        tasks = [asyncio.ensure_future(one(call)) for call in calls]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [task.result() for task in tasks]

    # ---- the embedding pipeline -----------------------------------------------------------

    _dimension: int | None = None

    def _prepare_sync(self) -> None:
        """Hook: one-time set-up before the first request (no-op by default)."""

    async def _prepare_async(self) -> None:
        """Hook: one-time set-up before the first request (no-op by default)."""

    def _batch_limits(self) -> tuple[int, int]:
        return self.max_batch_size, self.max_batch_chars

    def _plan_calls(self, texts: list[str], kind: Kind) -> list[_Call]:
        count, chars = self._batch_limits()
        return [
            self._build_embed_call(texts[start:end], kind)
            for start, end in plan_batches(texts, count, chars)
        ]

    def _build_embed_call(self, texts: list[str], kind: Kind) -> _Call:
        raise NotImplementedError

    def _parse_embeddings(self, data: Any, call: _Call) -> np.ndarray:
        raise NotImplementedError

    def _finish(self, parts: list[np.ndarray]) -> np.ndarray:
        """Join per-batch matrices and learn or check the dimension."""
        expected = self._dimension or int(parts[0].shape[1])
        for part in parts:
            if part.shape[1] != expected:
                raise ResponseFormatError(
                    f"{self.provider_name} returned {part.shape[1]}-dimensional vectors but "
                    f"{expected} were expected; check the model and dimensions options"
                )
        self._dimension = expected
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def _empty(self) -> np.ndarray:
        return np.empty((0, self._dimension or 0), dtype=np.float32)

    def _embed_sync(self, texts: Iterable[str], kind: Kind) -> np.ndarray:
        items = validate_texts(texts)
        if not items:
            return self._empty()
        self._prepare_sync()
        return self._finish(self._map_sync(self._plan_calls(items, kind), self._parse_embeddings))

    async def _embed_async(self, texts: Iterable[str], kind: Kind) -> np.ndarray:
        items = validate_texts(texts)
        if not items:
            return self._empty()
        await self._prepare_async()
        calls = self._plan_calls(items, kind)
        return self._finish(await self._map_async(calls, self._parse_embeddings))

    def _embed_one_sync(self, text: str) -> np.ndarray:
        return self._embed_sync(validate_texts([text], "text"), "query")[0]

    async def _embed_one_async(self, text: str) -> np.ndarray:
        return (await self._embed_async(validate_texts([text], "text"), "query"))[0]

    # ---- public embedding API (same for every provider) ------------------------------------

    @property
    def dimension(self) -> int | None:
        """Output dimension: known up front for known models or ``dimensions=``, else learned."""
        return self._dimension

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts to be stored and searched: float32 array of shape ``(len(texts), d)``."""
        return self._embed_sync(texts, "document")

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one search query: float32 array of shape ``(d,)``."""
        return self._embed_one_sync(text)

    async def aembed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Async ``embed_documents``."""
        return await self._embed_async(texts, "document")

    async def aembed_query(self, text: str) -> np.ndarray:
        """Async ``embed_query``."""
        return await self._embed_one_async(text)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed many search queries: float32 array of shape ``(len(texts), d)``.

        Row ``i`` is what ``embed_query(texts[i])`` gives (the query task or prompt), but
        the queries share requests: one per batch of ``max_batch_size`` inputs and
        ``max_batch_chars`` characters, as ``embed_documents`` batches. Texts are checked
        as ``embed_documents`` checks them, before any request.
        """
        return self._embed_sync(texts, "query")

    async def aembed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Async ``embed_queries``."""
        return await self._embed_async(texts, "query")


def rows_to_matrix(rows: Sequence[Any], provider: str) -> np.ndarray:
    """A float32 ``(n, d)`` matrix from equal-length numeric rows, or ResponseFormatError."""
    bad = first_non_number(rows)
    if bad is not None:  # NumPy would read true as 1.0 and "0.5" as 0.5
        # Only the type is named: a string value may echo the request (or its key).
        raise ResponseFormatError(
            f"{provider} returned an embedding component of type {type(bad[1]).__name__} "
            f"in row {bad[0]}; components must be numbers"
        )
    matrix = _float32_or_none(rows)
    if matrix is None:
        # Raised outside the ``except``: NumPy's message quotes the offending value, which
        # may echo the request, so it must not be chained as the context.
        raise ResponseFormatError(
            f"{provider} returned embeddings that are not equal-length lists of numbers"
        )
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise ResponseFormatError(
            f"{provider} returned embeddings of shape {matrix.shape}; expected (n, d)"
        )
    if not np.isfinite(matrix).all():
        raise ResponseFormatError(f"{provider} returned NaN or infinite values in embeddings")
    return matrix


_NOT_JSON = object()


def _json_or_none(content: bytes) -> Any:
    """The parsed body, or ``_NOT_JSON`` (the decoder's error, holding the body, dropped)."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def _float32_or_none(rows: Sequence[Any]) -> np.ndarray | None:
    try:
        return np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError):
        return None
