"""``VectorTable.aio``: the async twin of every VectorTable method, from the same code.

There is one implementation. For TiDB and file databases the async view runs the very
same synchronous methods on an async driver (aiomysql / aiosqlite) through SQLAlchemy's
greenlet bridge, as SQLAlchemy's own ``AsyncSession`` does: every database round trip
awaits on the event loop, nothing blocks it on I/O, and no executor thread is involved.
Pooled async connections belong to one event loop, so each loop gets its own engine.

An in-memory database (it lives in one connection) and an ``Engine`` passed in by the
caller (its driver is synchronous) are served from a worker thread instead.
"""

from __future__ import annotations

import asyncio
import copy
import functools
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from tidb_jina.embeddings._base import validate_texts
from tidb_jina.store._engine import connect_async
from tidb_jina.store._results import SearchResult
from tidb_jina.store._table import VectorTable


def _twin(name: str) -> Callable[..., Any]:
    @functools.wraps(getattr(VectorTable, name))
    async def method(self: AsyncVectorTable, *args: Any, **kwargs: Any) -> Any:
        return await self._run(name, *args, **kwargs)

    method.__doc__ = f"Async :meth:`VectorTable.{name}` (same arguments and result)."
    return method


class AsyncVectorTable:
    """The async view of a :class:`VectorTable` (get it as ``table.aio``)."""

    def __init__(self, table: VectorTable) -> None:
        self._table = table
        self._views: dict[int, tuple[asyncio.AbstractEventLoop, VectorTable, AsyncEngine]] = {}

    def __repr__(self) -> str:
        return f"{self._table!r}.aio"

    @property
    def native(self) -> bool:
        """True when calls run on an async driver, False when on a worker thread."""
        return self._table._async_source is not None

    async def _run(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if not self.native:
            return await asyncio.to_thread(getattr(self._table, name), *args, **kwargs)
        view = self._view_for(asyncio.get_running_loop())
        return await greenlet_spawn(getattr(view, name), *args, **kwargs)

    def _view_for(self, loop: asyncio.AbstractEventLoop) -> VectorTable:
        entry = self._views.get(id(loop))
        if entry is not None and entry[0] is loop:
            return entry[1]
        for key in [k for k, (lp, _, _) in self._views.items() if lp.is_closed()]:
            del self._views[key]
        url, engine_args, verify_tls = self._table._async_source  # type: ignore[misc]
        engine = connect_async(url, engine_args=engine_args, verify_tls=verify_tls)
        view = copy.copy(self._table)  # shares the lazy table state (_state)
        view.engine = engine.sync_engine
        view._engine_lock = nullcontext()
        self._views[id(loop)] = (loop, view, engine)
        return view

    async def dispose(self) -> None:
        """Close the async connection pool of the running event loop."""
        entry = self._views.pop(id(asyncio.get_running_loop()), None)
        if entry is not None:
            await entry[2].dispose()

    async def add_texts(self, texts: Any, **kwargs: Any) -> list[str]:
        """Async :meth:`VectorTable.add_texts`: embeds with the provider's async API."""
        table = self._table
        if table.server_embeds:
            return await self._run("add_texts", texts, **kwargs)
        text_list = validate_texts(texts)
        vectors = await table.text_embedder().aembed_documents(text_list)
        return await self.upsert(vectors, documents=text_list, **kwargs)

    async def search_text(self, text: str, **kwargs: Any) -> list[SearchResult]:
        """Async :meth:`VectorTable.search_text`: embeds with the provider's async API."""
        return await self.search(await self.query_vector(text), **kwargs)

    async def query_vector(self, text: str) -> Any:
        """Async :meth:`VectorTable.query_vector`."""
        table = self._table
        if table.server_embeds:
            return await self._run("query_vector", text)
        (text,) = validate_texts([text], "query")
        return await table.text_embedder().aembed_query(text)

    exists = _twin("exists")
    create = _twin("create")
    drop = _twin("drop")
    upsert = _twin("upsert")
    delete = _twin("delete")
    clear = _twin("clear")
    count = _twin("count")
    get = _twin("get")
    search = _twin("search")
    max_marginal_relevance_search = _twin("max_marginal_relevance_search")
    full_text_search = _twin("full_text_search")
    hybrid_search = _twin("hybrid_search")
    create_full_text_index = _twin("create_full_text_index")
    create_vector_index = _twin("create_vector_index")
    index_status = _twin("index_status")
