"""The :8770 HTTP server: /status, /health, /metrics and the routes other parts mount.

``/status`` is answered from a snapshot that a background task rebuilds every
``refresh`` seconds when something changed (at least every ``max_age``
seconds) and keeps as ready-to-send bytes, so a hundred clients
polling at once never wait on the ledger's lock, on membership or on whatever
slow work a status section does.  Mutating routes (anything but GET/HEAD)
require ``Authorization: Bearer <CLUSTER_KEY>``.

Hostile input is a 4xx, never a 500: tokens are compared as bytes (any text),
bodies that are not JSON objects or nest too deeply are 400, a request whose
headers take longer than ``HEADER_TIMEOUT_S`` loses its connection and a body
slower than ``BODY_TIMEOUT_S`` gets 408.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ringrift_fleet.http_input import (
    BODY_TIMEOUT_KEY,
    BODY_TIMEOUT_S,
    HEADER_TIMEOUT_S,
    SAFE_METHODS,
    bearer_ok,
)

log = logging.getLogger(__name__)

Snapshot = Callable[[], dict[str, Any]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# bind addresses that already cover loopback
_ALL_OR_LOOPBACK = frozenset({"", "0.0.0.0", "::", "127.0.0.1", "localhost", "::1"})


def _client_fault(exc: BaseException | None) -> bool:
    """A request the client got wrong (bad framing, a body that does not decode)."""
    if isinstance(exc, web.RequestPayloadError):  # a body that failed to decode
        return True
    return isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 400) < 500


if TYPE_CHECKING:
    _LogAdapter = logging.LoggerAdapter[logging.Logger]
else:  # subscriptable at run time only from Python 3.11
    _LogAdapter = logging.LoggerAdapter


class _ServerLog(_LogAdapter):
    """aiohttp's request log, less one thing: it logs every malformed request (a bad
    request line, header or URL, already answered 400) as an ERROR with a traceback,
    so any client could fill the log.  Those are one DEBUG line; real errors keep theirs."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kw: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if _client_fault(exc):
            self.logger.debug("refused a malformed request: %s", str(exc).splitlines()[0])
            return
        self.logger.exception(msg, *args, exc_info=exc_info, **kw)


def make_auth_middleware(token: str) -> Any:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in SAFE_METHODS and not bearer_ok(request, token):
            reason = (
                "this node has no CLUSTER_KEY: mutating routes are disabled"
                if not token
                else "missing or wrong Authorization: Bearer <CLUSTER_KEY>"
            )
            return web.json_response({"error": reason}, status=401)
        return await handler(request)

    return auth


class StatusServer:
    """aiohttp app around a snapshot function; other parts add routes and sections."""

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        token: str,
        refresh: float = 0.25,
        max_age: float = 1.0,
        version: Callable[[], Any] | None = None,
        routes: Iterable[web.RouteDef] = (),
        header_timeout: float = HEADER_TIMEOUT_S,
        body_timeout: float = BODY_TIMEOUT_S,
    ) -> None:
        self._snapshot = snapshot
        self._header_timeout = header_timeout
        self._refresh = refresh
        self._max_age = max_age
        self._version = version or time.monotonic  # default: always changed
        self._last_version: Any = None
        self._token = token
        self._sections: dict[str, Callable[[], Any]] = {}
        self._body = b"{}"
        self._status: dict[str, Any] = {}
        self._built_at = 0.0
        self._started = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.app = web.Application(middlewares=[make_auth_middleware(token)])
        self.app[BODY_TIMEOUT_KEY] = body_timeout
        self.app.router.add_get("/status", self._get_status)
        self.app.router.add_get("/health", self._get_health)
        self.app.router.add_get("/metrics", self._get_metrics)
        self.registry = CollectorRegistry(auto_describe=False)  # per node: no global clash
        self.app.add_routes(list(routes))

    def add_routes(self, routes: Iterable[web.RouteDef]) -> None:
        """Mount more routes; only before :meth:`start`."""
        self.app.add_routes(list(routes))

    def add_status_section(self, name: str, fn: Callable[[], Any]) -> None:
        """Add ``name: fn()`` to /status (``fn`` must return JSON-able data)."""
        self._sections[name] = fn

    @property
    def status(self) -> dict[str, Any]:
        return self._status

    def rebuild(self) -> None:
        """Build a fresh snapshot now; a failing part shows as an error, never a 500."""
        try:
            status = dict(self._snapshot())
        except Exception as exc:
            log.exception("status snapshot failed")
            status = {"error": f"snapshot failed: {type(exc).__name__}: {exc}"}
        for name, fn in self._sections.items():
            try:
                status[name] = fn()
            except Exception as exc:
                log.exception("status section %s failed", name)
                status[name] = {"error": f"{type(exc).__name__}: {exc}"}
        now = time.time()
        status["snapshot_at"] = now
        status["uptime_s"] = round(time.monotonic() - self._started, 3)
        self._status = status
        self._body = json.dumps(status, default=str, separators=(",", ":")).encode()
        self._built_at = time.monotonic()

    async def _refresh_loop(self) -> None:
        """Cheap check every ``refresh`` s; full rebuild on a change or after ``max_age`` s."""
        while True:
            await asyncio.sleep(self._refresh)
            try:
                version = self._version()
            except Exception:
                version = None
            stale = time.monotonic() - self._built_at >= self._max_age
            if stale or version is None or version != self._last_version:
                self._last_version = version
                self.rebuild()

    async def _get_status(self, request: web.Request) -> web.Response:
        return web.Response(body=self._body, content_type="application/json")

    async def _get_health(self, request: web.Request) -> web.Response:
        age = time.monotonic() - self._built_at
        healthy = age < max(5.0, 10 * self._refresh)
        body = {"ok": healthy, "node_id": self._status.get("node_id"), "snapshot_age_s": age}
        return web.json_response(body, status=200 if healthy else 503)

    def snapshot_age(self) -> float:
        return time.monotonic() - self._built_at

    async def _get_metrics(self, request: web.Request) -> web.Response:
        # collectors (ringrift_fleet.metrics) read state at scrape time: off the event loop
        body = await asyncio.to_thread(generate_latest, self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self, host: str, port: int) -> None:
        self.rebuild()
        # aiohttp's keep-alive timer runs from the connection's start, and from each
        # response, until a whole request has arrived: it is the header timeout too.
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            keepalive_timeout=self._header_timeout,
            logger=_ServerLog(logging.getLogger("aiohttp.server"), {}),
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        if host not in _ALL_OR_LOOPBACK:
            # on a private address, also on loopback: the host's own scripts,
            # health checks and `curl 127.0.0.1:8770/status` keep working
            try:
                await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
            except OSError as exc:  # taken on loopback: the private address still serves
                log.warning("status server: not also on 127.0.0.1:%s (%s)", self.port, exc)
        self._task = asyncio.create_task(self._refresh_loop(), name="status-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
