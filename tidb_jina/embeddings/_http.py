"""HTTP plumbing of the provider clients: secrets, URLs, one call's deadline.

- ``_Secret`` holds an API key so that ``repr``/``str``/pickling cannot show it.
- ``resolve_url`` / ``resolve_secret`` read the argument, else the environment.
- **A whole-request deadline.** httpx's timeouts are per phase: ``read=1`` bounds each
  socket read, so a server that trickles one byte every half second keeps a "1 second"
  call alive for as long as it likes. Every call here gets one deadline (``Timeouts.deadline``)
  covering connect, send and read:

  - async: ``asyncio.wait_for`` around the whole call, whatever ``AsyncClient`` is used;
  - sync: the clients we build (``DeadlineClient``, environment proxies included) run on
    ``_DeadlineBackend``, whose sockets cut every connect,
    read and write to the time left before the deadline of the call running on that
    thread (a ``ContextVar``). An ``httpx.Client`` passed in by the caller gets each phase
    timeout capped at the deadline, which bounds each socket operation but not their sum.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from tidb_jina._errors import EmbeddingError

__all__ = [
    "DeadlineClient",
    "DeadlineExceeded",
    "parse_retry_after",
    "request_async",
    "request_sync",
    "resolve_secret",
    "resolve_url",
]


class _Secret:
    """An API key that cannot leak through ``repr``, ``str``, f-strings or pickling."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'**********'"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("API keys are not serialized; pass api_key again or use the environment")

    # copy/deepcopy (e.g. pydantic model_copy) share the immutable secret instead of pickling it
    def __copy__(self) -> _Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Secret:
        return self


def resolve_secret(explicit: str | None, env_names: Iterable[str]) -> _Secret | None:
    """The key from the argument, else the first non-empty environment variable, else None."""
    if explicit:
        return _Secret(explicit)
    for name in env_names:
        value = os.environ.get(name, "").strip()
        if value:
            return _Secret(value)
    return None


def resolve_url(
    explicit: str | None, env_name: str, default: str | None, *, strip: str = ""
) -> str | None:
    """The base URL from the argument, else the environment, else ``default``; no trailing
    ``/`` and, when given, no trailing ``strip`` (``"/v1"``: llama-index writes Jina's base
    URL as ``https://api.jina.ai/v1``, and we add ``/v1/...`` ourselves)."""
    url = explicit or os.environ.get(env_name, "").strip() or default
    if not url:
        return None
    url = url.rstrip("/")
    if strip and url.lower().endswith(strip):
        url = url[: -len(strip)].rstrip("/")
    return url


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds, decimal, or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class _Call:
    """One HTTP request to make (with retries): the product of a ``_build_*`` method."""

    method: str
    url: str
    payload: Any = None
    size: int = 0  # number of inputs, for the parser's completeness check


class _Retry(Exception):
    """Raised inside a retry loop: retry, or raise ``final`` once attempts run out."""

    def __init__(self, final: EmbeddingError, retry_after: float | None = None) -> None:
        super().__init__(str(final))
        self.final = final
        self.retry_after = retry_after


@dataclass
class _ErrorInfo:
    """What an error response said: status, human detail, machine code."""

    status: int
    detail: str
    code: str | None = None


# ---- the deadline ----------------------------------------------------------------------------

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "tidb_jina_http_deadline", default=None
)


class DeadlineExceeded(httpx.TimeoutException):
    """The whole call (connect + send + read) took longer than its deadline."""


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` cut to the time left before this thread's deadline (raises at 0)."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise error("the request's whole-call deadline passed")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose reads and writes never outlive the current call's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(
            ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend with every stream wrapped in ``_DeadlineStream``."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(
            host, port, _left(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_unix_socket(
            path, _left(timeout, httpcore.ConnectTimeout), socket_options
        )
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class DeadlineClient(httpx.Client):
    """``httpx.Client`` whose transports honour the current call's deadline: the default
    one and the proxy ones httpx builds from ``HTTP(S)_PROXY`` / ``ALL_PROXY``
    (``trust_env``). Passing ``transport=`` to ``httpx.Client`` (as ``DeadlineTransport``
    would need) turns environment proxies off, so the backend is swapped in instead."""

    def _init_transport(self, *args: Any, **kwargs: Any) -> httpx.BaseTransport:
        return _on_deadline_backend(super()._init_transport(*args, **kwargs))

    def _init_proxy_transport(self, *args: Any, **kwargs: Any) -> httpx.BaseTransport:
        return _on_deadline_backend(super()._init_proxy_transport(*args, **kwargs))


def _on_deadline_backend(transport: httpx.BaseTransport) -> httpx.BaseTransport:
    """``transport`` with its httpcore pool (plain, HTTP proxy or SOCKS proxy) on sockets
    that honour the deadline."""
    pool = getattr(transport, "_pool", None)
    if not hasattr(pool, "_network_backend"):
        raise RuntimeError("httpx/httpcore changed: tidb_jina cannot bound the call's deadline")
    pool._network_backend = _DeadlineBackend()  # type: ignore[union-attr]
    return transport


def _phase_timeouts(timeout: httpx.Timeout, deadline: float | None) -> httpx.Timeout:
    """Each phase's timeout, none longer than the whole call's deadline."""
    if deadline is None:
        return timeout

    def cap(value: float | None) -> float:
        return deadline if value is None else min(value, deadline)

    return httpx.Timeout(
        connect=cap(timeout.connect),
        read=cap(timeout.read),
        write=cap(timeout.write),
        pool=cap(timeout.pool),
    )


def request_sync(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    content: bytes | None,
    headers: dict[str, str],
    timeout: httpx.Timeout,
    deadline: float | None,
) -> httpx.Response:
    """One HTTP call that ends by ``deadline`` seconds from now (see the module docstring)."""
    token = _DEADLINE.set(None if deadline is None else time.monotonic() + deadline)
    try:
        return client.request(
            method,
            url,
            content=content,
            headers=headers,
            timeout=_phase_timeouts(timeout, deadline),
        )
    except httpx.TimeoutException as exc:
        if _DEADLINE.get() is not None and _passed():
            raise DeadlineExceeded(_deadline_text(deadline)) from exc
        raise
    finally:
        _DEADLINE.reset(token)


async def request_async(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    content: bytes | None,
    headers: dict[str, str],
    timeout: httpx.Timeout,
    deadline: float | None,
) -> httpx.Response:
    """Async :func:`request_sync`: ``asyncio.wait_for`` bounds the whole call."""
    call = client.request(
        method, url, content=content, headers=headers, timeout=_phase_timeouts(timeout, deadline)
    )
    try:
        # wait_for cancels the call at the deadline (asyncio.timeout needs Python 3.11).
        return await asyncio.wait_for(call, deadline)
    except asyncio.TimeoutError as exc:
        raise DeadlineExceeded(_deadline_text(deadline)) from exc


def _passed() -> bool:
    deadline = _DEADLINE.get()
    return deadline is not None and time.monotonic() >= deadline - 0.01


def _deadline_text(deadline: float | None) -> str:
    return f"the whole request took longer than its {deadline:g} s deadline"
