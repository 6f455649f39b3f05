"""Error answers, read and mapped to our exceptions (shared by every provider client).

``error_info`` reads an error body in any of the shapes the services use: Jina's
``{"detail": str, "code"}``, its over-long ``{"detail": {"message"}}`` and 422
``{"detail", "errors": [...]}``, TEI's ``{"error", "error_type"}``, HF's ``{"error"}``, an
empty body (TEI's 401) or plain text (Cloudflare's 52x). ``map_error`` turns it into the
``EmbeddingError`` subclass whose message says what to do. Only statuses in
``RETRY_STATUSES`` are retried, so only their message says "on every attempt".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from tidb_jina._errors import (
    AuthenticationError,
    EmbeddingError,
    InputTooLongError,
    InsufficientBalanceError,
    InvalidRequestError,
    ModelNotFoundError,
    PermissionDeniedError,
    ProviderUnavailableError,
    RateLimitError,
)
from tidb_jina.embeddings._http import _ErrorInfo

__all__ = ["CLOUDFLARE_STATUSES", "RETRY_STATUSES", "error_info", "map_error"]

CLOUDFLARE_STATUSES = frozenset(range(520, 528))
"""Cloudflare's own 52x answers (origin down, timed out, unreachable, ...): Jina's API is
served through Cloudflare, so these are transient like a 502."""
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504}) | CLOUDFLARE_STATUSES
"""HTTP statuses that are retried; every other error status fails at once."""

_TOO_LONG = re.compile(
    r"too long|exceed|must have less than|context length|token limit|maximum.*tokens",
    re.IGNORECASE,
)


def error_info(response: httpx.Response, scrub: Callable[[str], str]) -> _ErrorInfo:
    """Status, human detail and machine code of an error answer (scrubbed, at most 500
    characters of detail)."""
    detail, code = "", None
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        detail = response.text.strip()
    else:
        if isinstance(body, dict):
            raw = body.get("detail") or body.get("error") or body.get("message") or ""
            # Jina's over-long answer is {"detail": {"message": ...}}; its 422s can be
            # {"error": {"message": ...}}.
            if isinstance(raw, dict) and isinstance(raw.get("message"), str):
                raw = raw["message"]
            detail = raw if isinstance(raw, str) else orjson.dumps(raw).decode()
            errors = body.get("errors")
            if isinstance(errors, list) and errors:
                detail = f"{detail} {orjson.dumps(errors).decode()}".strip()
            code = body.get("code") or body.get("error_type")
            code = scrub(str(code))[:100] if code is not None else None
        else:
            detail = response.text.strip()
    detail = scrub(detail)[:500] or response.reason_phrase
    return _ErrorInfo(response.status_code, detail, code)


def map_error(client: Any, info: _ErrorInfo) -> EmbeddingError:
    """The ``EmbeddingError`` for an error answer, its message saying how to fix it.

    ``client`` supplies ``provider_name``, the ``*_hint`` texts and ``_invalid_hint``.
    """
    status, detail, code = info.status, info.detail, info.code
    where = f"{client.provider_name} answered {status}" + (f" {code}" if code else "")
    said = f"{where}: {detail.rstrip('.')}"
    lowered = f"{code or ''} {detail}".lower()
    kw: dict[str, Any] = {"status_code": status, "code": code}
    if status == 401:
        return AuthenticationError(f"{said}. The API key was rejected. {client.key_hint}", **kw)
    if status == 402 or (status == 403 and ("balance" in lowered or "credit" in lowered)):
        return InsufficientBalanceError(f"{said}. {client.balance_hint}", **kw)
    if status == 403:
        return PermissionDeniedError(
            f"{said}. The key is valid but may not do this; check its permissions or plan",
            **kw,
        )
    if status in (404, 410) or (
        status == 400
        and "model" in lowered
        and ("not found" in lowered or "not_found" in lowered or "unknown" in lowered)
    ):
        return ModelNotFoundError(f"{said}. {client.model_hint}", **kw)
    if status == 429:
        return RateLimitError(
            f"{said}. Rate limited on every attempt; lower max_concurrency / "
            "max_batch_size (limits=BatchLimits(...)), wait, or upgrade the plan",
            **kw,
        )
    if status in RETRY_STATUSES:
        return ProviderUnavailableError(
            f"{said}. The service failed on every attempt; try again later", **kw
        )
    if status >= 500:
        return ProviderUnavailableError(
            f"{said}. The server cannot handle this request (not retried: the same "
            "request would fail again); check base_url and that the server is the "
            f"{client.provider_name} API",
            **kw,
        )
    if status == 413:
        return InvalidRequestError(
            f"{said}. The request body is too large; lower max_batch_chars "
            "(limits=BatchLimits(max_batch_chars=...))",
            **kw,
        )
    if status in (400, 422) and _TOO_LONG.search(detail):
        return InputTooLongError(f"{said}. {client.too_long_hint}", **kw)
    return InvalidRequestError(
        f"{said}. The request does not fit this model; {client._invalid_hint(info)}", **kw
    )
