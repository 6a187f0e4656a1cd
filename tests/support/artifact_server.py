"""The artifact routes served alone by aiohttp on 127.0.0.1, as the :8770 server mounts them."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

from ringrift_fleet.execution.artifacts import artifact_routes
from tests.support.procs import free_port


class ArtifactServer:
    """The routes the :8770 server mounts, served alone, recording each request's Range."""

    def __init__(self, root: Path, token: str) -> None:
        self.root, self.token = root, token
        self.ranges: list[str | None] = []
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.path.startswith("/artifacts/"):
                self.ranges.append(request.headers.get("Range"))
            return await handler(request)

        app = web.Application(middlewares=[record])
        app.add_routes(artifact_routes(self.root, self.token))
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> ArtifactServer:
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
