"""The connection forms every entry point accepts (library, adapters, CLI, doctor).

* ``mysql+pymysql://USER:PASSWORD@HOST:4000/DB`` (or ``mysql://``): TiDB;
* ``sqlite:///path.db``, ``sqlite://`` (in memory): the embedded engine;
* a bare file path ending in ``.db``, ``.sqlite`` or ``.sqlite3`` (``kb.db``,
  ``data/kb.sqlite``): the embedded engine in that file.

Any other string without ``://`` is refused with the forms above, rather than guessed.
"""

from __future__ import annotations

import os
from typing import Any

from tidb_jina._errors import ConfigurationError

EMBEDDED_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def embedded_url(connection: Any) -> Any:
    """``connection`` with a bare database-file path turned into a ``sqlite:///`` URL
    (everything else is returned as it is, for the engine factory to check)."""
    if not isinstance(connection, str) or "://" in connection or not connection.strip():
        return connection
    path = connection.strip()
    if path.lower().endswith(EMBEDDED_SUFFIXES):
        return f"sqlite:///{os.path.expanduser(path)}"  # "~/kb.db": in the home folder
    raise ConfigurationError(
        f"{path!r} is neither a database URL nor a database file: use "
        "'mysql+pymysql://USER:PASSWORD@HOST:4000/DB' for TiDB, or a file path ending in "
        f"{', '.join(EMBEDDED_SUFFIXES)} (or 'sqlite:///{path}') for the embedded engine"
    )
