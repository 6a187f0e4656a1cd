"""aiohttp routes served alone on 127.0.0.1 from a thread, as the :8770 server mounts them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp import web

from tests.support.procs import free_port


class RouteServer:
    """``with RouteServer(routes) as s:`` serves ``routes`` at ``s.url`` until the block ends."""

    def __init__(
        self, routes: Iterable[web.AbstractRouteDef], middlewares: Sequence[Any] = ()
    ) -> None:
        self.routes, self.middlewares = list(routes), list(middlewares)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(middlewares=self.middlewares)
        app.add_routes(self.routes)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> RouteServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
