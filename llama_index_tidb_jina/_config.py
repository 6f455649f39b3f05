"""``TiDBVectorStore``'s serialised configuration, and the store made again from it.

``to_dict()`` / ``to_json()`` carry every option that can be written down without a
secret: the table, metric, dimension, ``flat_metadata``, ``snapshot_file``, the
auto-embedding model with its dimension and options, and the connection URL with any
password masked (``***``). ``from_dict`` / ``from_json`` (and pickling) make an equal store
from that. Never carried:

* the password (in the URL or its query): a URL that had one needs
  ``from_dict(data, connection_string=URL)``; pickling such a store is refused, since
  the copy could not connect;
* ``engine_args`` (they may hold secrets, such as ``connect_args={"password": ...}``, and
  objects such as an ``ssl.SSLContext``) and a given ``Engine`` (the copy makes its own
  from the URL): pass ``engine_args=`` to ``from_dict`` again;
* ``drop_existing_table`` (a copy must never drop the table its original filled);
* the auto-embedding ``api_key`` (the copy reads ``JINA_API_KEY`` / ``HF_TOKEN``, or the
  key already stored on the server).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from tidb_jina import ConfigurationError
from tidb_jina.store import AutoEmbedding

# Fields the store derives from its options (not constructor arguments).
_DERIVED = ("class_name", "stores_text", "is_embedding_query")
_AUTO = ("auto_embedding_model", "auto_embedding_dimension", "auto_embedding_options")


# Every key ``to_dict()`` writes; ``from_dict``'s ``data`` holds no other (a dict or JSON
# from elsewhere must not carry ``drop_existing_table``, ``engine_args`` or a
# ``connection_string``: those are given as ``from_dict``'s keyword arguments).
SERIALISED = frozenset(
    (
        *_DERIVED,
        *_AUTO,
        "flat_metadata",
        "table_name",
        "distance_strategy",
        "vector_dimension",
        "database_url",
        "snapshot_file",
    )
)


def check_data(data: Mapping[str, Any], class_name: str) -> None:
    """Refuse a ``from_dict`` ``data`` with keys ``to_dict()`` never writes (a hand-made
    or hostile dict with ``drop_existing_table: true`` dropped the table) or another
    class's ``class_name``."""
    if not isinstance(data, Mapping):
        raise ConfigurationError(
            f"from_dict() takes the dict of to_dict(), not {type(data).__name__}"
        )
    extra = sorted(str(key) for key in data if key not in SERIALISED)
    if extra:
        raise ConfigurationError(
            f"from_dict() data holds {', '.join(map(repr, extra))}, which to_dict() never "
            "writes; pass options that are not serialised as keyword arguments, e.g. "
            "from_dict(data, connection_string=URL, engine_args={...}, "
            "drop_existing_table=True)"
        )
    given = data.get("class_name", class_name)
    if given != class_name:
        raise ConfigurationError(
            f"from_dict() data is a {given!r}, not a {class_name!r}: use {given}.from_dict"
        )


def has_password(url: str) -> bool:
    """True when ``url`` (as ``to_dict`` holds it) had a password, now masked."""
    if not url:
        return False
    parsed = sa.make_url(url)
    return parsed.password is not None or any(k in parsed.query for k in ("password", "passwd"))


def init_kwargs(data: Mapping[str, Any]) -> dict[str, Any]:
    """``TiDBVectorStore(**...)`` arguments for a ``to_dict()`` (and ``from_dict``'s
    keyword arguments, which win)."""
    kwargs = {k: v for k, v in data.items() if k not in _DERIVED and k not in _AUTO}
    url = kwargs.pop("database_url", "") or ""
    if kwargs.get("connection_string") is None:
        if has_password(url):
            raise ConfigurationError(
                f"the store's URL {url!r} had a password, which to_dict()/to_json() never "
                "hold: pass it again, from_dict(data, connection_string="
                "'mysql+pymysql://USER:PASSWORD@HOST:4000/DB')"
            )
        kwargs["connection_string"] = url or None  # none: $TIDB_DATABASE_URL
    model = data.get("auto_embedding_model")
    if model and kwargs.get("auto_embedding") is None:
        kwargs["auto_embedding"] = AutoEmbedding(
            model,
            dimension=data.get("auto_embedding_dimension"),
            options=data.get("auto_embedding_options"),
        )
    return kwargs
