"""SQLite's ``memdb`` VFS: which ``file:...?vfs=memdb`` URIs name a private database (and a
URI's parameters as SQLite reads them, for ``_watch`` too).

A ``memdb`` name that starts with ``/`` is one in-memory database shared by every
connection of the process that opens it; any other name is private to the connection
that opens it, as ``sqlite://`` is. A private one must live in one connection (a pool of
several gave each its own empty database: searches answered from another connection
missed every row, or failed with "no such table"), and nothing else can watch it.
"""

from __future__ import annotations

from typing import Any


def private_memdb(database: str, vfs: Any) -> bool:
    """True for a private ``memdb`` database: ``database`` the URI as given
    (``file:name``), ``vfs`` its ``vfs`` parameter (a tuple when repeated: SQLite takes
    the last)."""
    if isinstance(vfs, (tuple, list)):
        vfs = vfs[-1] if vfs else None
    if vfs != "memdb" or not database.startswith("file:"):
        return False
    name = database[len("file:") :].split("?", 1)[0].split("#", 1)[0]
    if name.startswith("//"):  # file://authority/path: the path starts at its "/"
        slash = name.find("/", 2)
        name = name[slash:] if slash >= 0 else ""
    return not name.startswith("/")


def uri_parameters(where: str) -> list[str]:
    """The ``key=value`` parameters of the URI ``where`` as SQLite reads them: after the
    first ``?``, up to ``#``, split at ``&`` (empty ones included)."""
    return where.split("?", 1)[1].split("#", 1)[0].split("&") if "?" in where else []


def uri_vfs(where: str) -> str | None:
    """The ``vfs`` parameter SQLite takes from the URI ``where`` (the last one given)."""
    found = None
    for part in uri_parameters(where):
        key, _, value = part.partition("=")
        if key == "vfs":
            found = value
    return found
