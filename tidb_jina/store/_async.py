"""The machinery of ``VectorTable.aio``: one implementation, run on async drivers.

For TiDB and file databases the async view runs the very same synchronous methods on an
async driver (aiomysql / aiosqlite) through SQLAlchemy's greenlet bridge, as SQLAlchemy's
own ``AsyncSession`` does: every database round trip awaits on the event loop, nothing
blocks it on I/O, and no executor thread is involved. Pooled async connections belong to
one event loop, so each loop gets its own engine and its own view of the table.

An in-memory database (it lives in one connection) and an ``Engine`` passed in by the
caller (its driver is synchronous) are served from a worker thread instead.

:func:`twin` makes an ``async def`` from a sync method with the same signature, so
type checkers see ``await table.aio.search(...)`` with its real parameters.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from tidb_jina.store._engine import connect_async

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

AsyncSource = tuple[URL, dict[str, Any], bool]


class AsyncRunner(Generic[T]):
    """Runs methods of a sync object ``T`` for the running event loop.

    ``rebind(engine)`` returns a view of the object on another (async) engine's sync
    facade; views are made once per loop and share the object's state.
    """

    def __init__(self, target: T, source: AsyncSource | None, rebind: Callable[[sa.Engine], T]):
        self._target = target
        self._source = source
        self._rebind = rebind
        self._views: dict[int, tuple[asyncio.AbstractEventLoop, T, AsyncEngine]] = {}

    @property
    def native(self) -> bool:
        return self._source is not None

    async def run(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self._source is None:
            return await asyncio.to_thread(getattr(self._target, name), *args, **kwargs)
        loop = asyncio.get_running_loop()
        closed = [k for k, (lp, _, _) in self._views.items() if lp.is_closed()]
        if closed:  # pools left by finished loops: this loop closes them (no fd leak)
            await _dispose_all([self._views.pop(key)[2] for key in closed])
        view = self._view_for(loop, self._source)
        return await greenlet_spawn(getattr(view, name), *args, **kwargs)

    def _view_for(self, loop: asyncio.AbstractEventLoop, source: AsyncSource) -> T:
        entry = self._views.get(id(loop))
        if entry is not None and entry[0] is loop:
            return entry[1]
        url, engine_args, verify_tls = source
        engine = connect_async(url, engine_args=engine_args, verify_tls=verify_tls)
        view = self._rebind(engine.sync_engine)
        self._views[id(loop)] = (loop, view, engine)
        return view

    async def dispose(self) -> None:
        """Close the async connection pool of the running event loop."""
        entry = self._views.pop(id(asyncio.get_running_loop()), None)
        if entry is not None:
            await entry[2].dispose()

    def dispose_idle(self) -> None:
        """Close the async pools of event loops that are not running (closed ones too).

        Their connections are idle; a helper thread with its own loop closes them (the
        driver's worker threads answer on whichever loop asks)."""
        idle = [k for k, (loop, _, _) in self._views.items() if not loop.is_running()]
        engines = [self._views.pop(key)[2] for key in idle]
        if engines:
            worker = threading.Thread(target=asyncio.run, args=(_dispose_all(engines),))
            worker.start()
            worker.join()


async def _dispose_all(engines: list[AsyncEngine]) -> None:
    for engine in engines:
        await engine.dispose()


def twin(
    method: Callable[Concatenate[Any, P], R],
) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, R]]:
    """An ``async def`` twin of ``method`` (same parameters), run by ``self._runner``."""
    name = method.__name__

    async def run(self: Any, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = await self._runner.run(name, *args, **kwargs)
        return result

    run.__name__ = name
    run.__qualname__ = f"AsyncVectorTable.{name}"
    run.__doc__ = f"Async :meth:`VectorTable.{name}` (same arguments and result)."
    return run


def same_signature(
    method: Callable[Concatenate[Any, P], R],
) -> Callable[
    [Callable[..., Coroutine[Any, Any, R]]], Callable[Concatenate[Any, P], Coroutine[Any, Any, R]]
]:
    """Type an ``async def f(self, *args, **kwargs)`` with ``method``'s parameters."""

    def typed(function: Callable[..., Coroutine[Any, Any, R]]) -> Any:
        return function

    return typed
