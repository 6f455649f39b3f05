"""Masking database passwords in text we show: messages, ``doctor()`` reports, CLI errors.

The URL parser refuses the ambiguous forms (a raw ``@`` in the password) and moves a
``?password=`` into the URL's password, so SQLAlchemy masks it in every ``repr``. This
module is the second line: any text that reaches the user is scrubbed of every form the
password can take, found in the connection as the user wrote it (userinfo, percent-encoded
or not, ``?password=``/``?passwd=``, and the pieces of a password with a raw ``@``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, unquote_plus

MASK = "***"
_SECRETS_ATTR = "_tidb_jina_secrets"
_MIN_SECRET = 3  # shorter pieces would mask ordinary words; such passwords are not secret
_QUERY_PASSWORD = re.compile(r"[?&](?:password|passwd)=([^&#]*)", re.IGNORECASE)


def connection_secrets(connection: Any) -> list[str]:
    """Every string in ``connection`` (URL text, ``sqlalchemy.URL`` or ``Engine``) that is
    a password or a piece of one, longest first."""
    found: set[str] = set(getattr(connection, _SECRETS_ATTR, ()))
    url = getattr(connection, "url", connection)  # an Engine's URL
    if hasattr(url, "password") and hasattr(url, "query"):
        if url.password:
            found.add(str(url.password))
        for key in ("password", "passwd"):
            value = url.query.get(key)
            if isinstance(value, str):
                found.add(value)
    elif isinstance(connection, str) and "://" in connection:
        found.update(_from_text(connection))
    pieces = set()
    for secret in found:
        pieces.update({secret, unquote(secret), unquote_plus(secret)})
        pieces.update(p for p in secret.split("@") if len(p) >= _MIN_SECRET + 1)
    return sorted((p for p in pieces if len(p) >= _MIN_SECRET), key=len, reverse=True)


def remember_secrets(engine: Any, engine_args: dict[str, Any]) -> None:
    """Keep on ``engine`` a password given in ``connect_args`` (not in its URL), so
    :func:`connection_secrets` finds it."""
    connect_args = engine_args.get("connect_args") or {}
    given = [connect_args.get(k) for k in ("password", "passwd")]
    secrets = tuple(str(v) for v in given if isinstance(v, str) and v)
    if secrets:
        setattr(engine, _SECRETS_ATTR, secrets)


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def _from_text(url: str) -> set[str]:
    found = {m.group(1) for m in _QUERY_PASSWORD.finditer(url)}
    rest = url.split("://", 1)[1].split("?", 1)[0]
    if "@" in rest:
        userinfo = rest[: rest.rfind("@")]  # the last "@" ends the user info
        if ":" in userinfo:
            found.add(userinfo.split(":", 1)[1])
    return {f for f in found if f}


def chain_leaks(exc: BaseException, secrets: list[str]) -> bool:
    """Whether ``exc`` or anything it wraps (``__cause__``, ``__context__``, a driver's
    ``orig``) shows a secret; such an error must not be chained to one we raise."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        text = f"{current}{current!r}"
        if any(secret in text for secret in secrets):
            return True
        for nxt in (current.__cause__, current.__context__, getattr(current, "orig", None)):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return False
