"""The :8770 HTTP server: /status, /health, /metrics and the routes other parts mount.

``/status`` is answered from a snapshot that a background task rebuilds every
``refresh`` seconds when something changed (at least every ``max_age``
seconds) and keeps as ready-to-send bytes, so a hundred clients
polling at once never wait on the ledger's lock, on membership or on whatever
slow work a status section does.  Mutating routes (anything but GET/HEAD)
require ``Authorization: Bearer <CLUSTER_KEY>``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

Snapshot = Callable[[], dict[str, Any]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def bearer_ok(request: web.Request, token: str) -> bool:
    """True when the request carries the cluster token (never true without one)."""
    if not token:
        return False
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


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


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that names what is wrong with it."""
    raw = await request.read()
    try:
        data = json.loads(raw.decode("utf-8") if raw else "")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"request body is not valid JSON: {exc}"}),
            content_type="application/json",
        ) from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(
            text=json.dumps(
                {"error": f"request body must be a JSON object, got {type(data).__name__}"}
            ),
            content_type="application/json",
        )
    return data


def prometheus_text(status: dict[str, Any]) -> str:
    """A few gauges from the status snapshot in Prometheus' text format."""
    node = str(status.get("node_id", "")).replace('"', "")
    lines: list[str] = []

    def gauge(name: str, value: Any, help_text: str, labels: str = "") -> None:
        if f"# HELP {name} " not in "\n".join(lines):
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} gauge")
        label = f'node="{node}"' + (f",{labels}" if labels else "")
        lines.append(f"{name}{{{label}}} {float(value):g}")

    gauge("ringrift_is_leader", 1 if status.get("role") == "leader" else 0, "1 on the leader")
    gauge("ringrift_term", status.get("term") or 0, "consensus term (Raft) or lease epoch (Bully)")
    gauge("ringrift_alive_peers", status.get("alive_peers") or 0, "peers membership sees alive")
    queue = status.get("work_queue") or {}
    for state in ("pending", "claimed", "running", "completed", "failed", "cancelled"):
        if isinstance(queue.get(state), int):
            gauge("ringrift_work_items", queue[state], "ledger items by state", f'state="{state}"')
    raft = (status.get("raft_detail") or {}) if isinstance(status.get("raft_detail"), dict) else {}
    if "commit_idx" in raft:
        gauge("ringrift_raft_commit_index", raft["commit_idx"], "Raft commit index")
    gauge("ringrift_status_age_seconds", status.get("snapshot_age_s", 0.0), "age of /status data")
    gauge("ringrift_uptime_seconds", status.get("uptime_s", 0.0), "seconds since start")
    return "\n".join(lines) + "\n"


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
    ) -> None:
        self._snapshot = snapshot
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
        self.app.router.add_get("/status", self._get_status)
        self.app.router.add_get("/health", self._get_health)
        self.app.router.add_get("/metrics", self._get_metrics)
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

    async def _get_metrics(self, request: web.Request) -> web.Response:
        status = dict(self._status)
        status["snapshot_age_s"] = time.monotonic() - self._built_at
        return web.Response(text=prometheus_text(status), content_type="text/plain")

    async def start(self, host: str, port: int) -> None:
        self.rebuild()
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        self._task = asyncio.create_task(self._refresh_loop(), name="status-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
