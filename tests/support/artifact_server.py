"""The artifact routes served alone by aiohttp on 127.0.0.1, as the :8770 server mounts them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from ringrift_fleet.execution.artifacts import artifact_routes
from tests.support.route_server import RouteServer


class ArtifactServer(RouteServer):
    """The routes the :8770 server mounts, served alone, recording each request's Range."""

    def __init__(self, root: Path, token: str) -> None:
        self.root, self.token = root, token
        self.ranges: list[str | None] = []

        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.path.startswith("/artifacts/"):
                self.ranges.append(request.headers.get("Range"))
            return await handler(request)

        super().__init__(artifact_routes(root, token), [record])
