# mypy: disallow-any-explicit
"""HTTP heartbeat membership: the fallback when SWIM is off or unhealthy.

Every ``HEARTBEAT_INTERVAL`` each node POSTs its summary to every peer's
``/heartbeat``; a peer heard from (its heartbeat arrived, or it answered ours)
within ``PEER_TIMEOUT`` is alive.  Slow (seconds to tens of seconds) and
O(N²) messages, but it needs nothing but the :8770 server every node runs.

``heartbeat_routes(manager)`` gives the route the status server mounts;
``serve_heartbeats`` runs a minimal server of its own until then (and in tests).

Mixed modes (a host-by-host rollout): every coordinator answers ``/heartbeat``
whatever its membership mode, and every heartbeat and every answer says whether
its sender speaks SWIM (``"swim": true|false``).  A SWIM or hybrid node runs
this manager beside SWIM, beating only to peers SWIM does not hold alive, and
counts a peer that says it speaks no SWIM alive while its heartbeats arrive
(``membership/hybrid.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping

from aiohttp import ClientSession, ClientTimeout, web

from ringrift_fleet.config import P2PConfig, get_p2p_config
from ringrift_fleet.errors import ValidationError
from ringrift_fleet.http_input import parse_json, read_body, same_secret
from ringrift_fleet.jsontypes import JSONMapping
from ringrift_fleet.membership.base import (
    ListenerSet,
    MemberInfo,
    MembershipEvent,
    MembershipListener,
    MembershipSummary,
    cancel_task,
)

log = logging.getLogger(__name__)

MAX_HEARTBEAT_BYTES = 256 * 1024
LEAVE_TIMEOUT = 0.5  # s: telling the peers we leave, at most


def parse_heartbeat(payload: object) -> tuple[str, int, dict[str, object]]:
    """(node_id, incarnation, summary) from a heartbeat body, or a ValidationError naming the field."""
    if not isinstance(payload, dict):
        raise ValidationError("heartbeat: expected a JSON object")
    node_id = payload.get("node_id")
    if not isinstance(node_id, str) or not 0 < len(node_id) <= 128:
        raise ValidationError(
            f"heartbeat.node_id: expected a non-empty string, got {node_id!r:.60}"
        )
    inc = payload.get("incarnation", 0)
    if type(inc) is not int or inc < 0:
        raise ValidationError(f"heartbeat.incarnation: expected an integer >= 0, got {inc!r:.60}")
    summary = payload.get("summary", {})
    if not isinstance(summary, dict):
        raise ValidationError("heartbeat.summary: expected a JSON object")
    return node_id, inc, summary


def expired(last_seen: Mapping[str, float], now: float, timeout: float) -> set[str]:
    """Names not heard from within ``timeout`` (the whole liveness rule, kept pure)."""
    return {name for name, seen in last_seen.items() if now - seen > timeout}


class HttpHeartbeatMembership:
    """Liveness from HTTP heartbeats, behind the same interface as SWIM."""

    def __init__(
        self,
        node_id: str,
        peers: Mapping[str, str],
        config: P2PConfig | None = None,
        summary: Callable[[], JSONMapping] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        speaks_swim: bool = False,
        beat_to: Callable[[str], bool] | None = None,
    ) -> None:
        self.node_id = node_id
        self.peers = {n: url.rstrip("/") for n, url in peers.items() if n != node_id}
        self.config = config or get_p2p_config()
        self.summary = summary or (lambda: {})
        self.clock = clock
        self.incarnation = int(time.time())
        self._metadata: dict[str, object] = {}
        self._listeners = ListenerSet()
        self._last_seen: dict[str, float] = {}
        self._state: dict[str, str] = {}  # name -> "alive" | "dead"
        self._info: dict[str, tuple[int, dict[str, object]]] = {}  # name -> (incarnation, summary)
        # Whether this node runs SWIM beside us (said in every heartbeat and answer),
        # which peers we POST to (None: all), and what each peer last said of itself.
        self.speaks_swim = speaks_swim
        self.beat_to = beat_to
        self._peer_swim: dict[str, bool] = {}
        # Graceful leave (a rolling restart): when we stop, every peer is told, and
        # marks us "left" (not "dead": the scheduler keeps our host's jobs); a peer's
        # heartbeats from the life it left (the same ``boot``), still in flight, do
        # not bring it back.
        self.leaving = False
        self.boot = uuid.uuid4().hex[:16]  # this life of ours
        self._left: dict[str, str | None] = {}  # peer -> the boot it left with
        self._task: asyncio.Task[None] | None = None
        self._session: ClientSession | None = None
        self.sent = 0
        self.failed = 0
        self.received = 0
        self.rejected = 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        if self.leaving:  # started again in this process: peers must hear us again
            self.leaving = False
            self.boot = uuid.uuid4().hex[:16]
        self._session = ClientSession(timeout=ClientTimeout(total=self._request_timeout()))
        self._task = asyncio.create_task(self._loop())

    async def stop(self, *, leave: bool = True) -> None:
        """Stop beating; with ``leave`` (a real stop, not a restart of SWIM beside us)
        tell every peer first, so that they see "left" rather than "dead"."""
        task, self._task = self._task, None
        await cancel_task(task)
        session = self._session
        if leave and session is not None and task is not None:
            self.leaving = True  # from now on our answers say so too
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    asyncio.gather(*(self._post(n, url) for n, url in self.peers.items())),
                    LEAVE_TIMEOUT,
                )
        self._session = None
        if session is not None:
            await session.close()

    @property
    def started(self) -> bool:
        return self._task is not None

    def _request_timeout(self) -> float:
        return min(self.config.HEARTBEAT_INTERVAL, 5.0)

    async def _loop(self) -> None:
        while True:
            started = self.clock()
            await self.beat_once()
            self.check(self.clock())
            elapsed = self.clock() - started
            await asyncio.sleep(max(0.05, self.config.HEARTBEAT_INTERVAL - elapsed))

    async def beat_once(self) -> None:
        """POST our heartbeat to every peer at once (or those ``beat_to`` picks); a peer
        that answers is alive."""
        pick = self.beat_to
        await asyncio.gather(
            *(self._post(n, url) for n, url in self.peers.items() if pick is None or pick(n))
        )

    async def _post(self, name: str, url: str) -> None:
        session = self._session
        if session is None:
            return
        body = {
            "node_id": self.node_id,
            "incarnation": self.incarnation,
            "swim": self.speaks_swim,
            "leaving": self.leaving,
            "boot": self.boot,
            "summary": {**dict(self.summary()), "metadata": self._metadata},
        }
        headers = {}
        if self.config.CLUSTER_KEY:
            headers["Authorization"] = f"Bearer {self.config.CLUSTER_KEY}"
        self.sent += 1
        try:
            async with session.post(f"{url}/heartbeat", json=body, headers=headers) as resp:
                if resp.status == 200:
                    answer: object = None
                    with contextlib.suppress(Exception):  # an older peer may say less
                        answer = await resp.json(content_type=None)
                    if isinstance(answer, dict) and isinstance(answer.get("swim"), bool):
                        self._peer_swim[name] = answer["swim"]
                    if isinstance(answer, dict) and answer.get("leaving") is True:
                        boot = answer.get("boot")  # it is stopping: not a sign of life
                        self.left(name, boot if isinstance(boot, str) else None)
                    elif not self.leaving:
                        self.seen(name, self.clock())
                else:
                    self.failed += 1
                    log.debug("heartbeat to %s: HTTP %s", name, resp.status)
        except Exception as exc:  # refused, timed out, reset: the peer stays unseen
            self.failed += 1
            log.debug("heartbeat to %s failed: %s", name, exc)

    # --- what we learn -------------------------------------------------------------------------

    def record_heartbeat(self, payload: object) -> None:
        """A heartbeat arrived (the route calls this).  Raises ValidationError when malformed."""
        name, inc, summary = parse_heartbeat(payload)
        body: JSONMapping = payload if isinstance(payload, dict) else {}  # parse_heartbeat checked
        if name == self.node_id:
            raise ValidationError(f"heartbeat.node_id: {name!r} is this node")
        swim = body.get("swim")
        if swim is not None and not isinstance(swim, bool):
            raise ValidationError(f"heartbeat.swim: expected true or false, got {swim!r:.60}")
        leaving = body.get("leaving", False)
        if not isinstance(leaving, bool):
            raise ValidationError(f"heartbeat.leaving: expected true or false, got {leaving!r:.60}")
        boot = body.get("boot")
        if boot is not None and not (isinstance(boot, str) and 0 < len(boot) <= 64):
            raise ValidationError(f"heartbeat.boot: expected a short string, got {boot!r:.60}")
        self.received += 1
        if leaving:
            self.left(name, boot)
            return
        if boot is not None and name in self._left and self._left[name] == boot:
            return  # sent by the life that left, before it did
        self._left.pop(name, None)
        if swim is not None:
            self._peer_swim[name] = swim
        old = self._info.get(name)
        self._info[name] = (inc, summary)
        meta_changed = old is not None and old[1].get("metadata") != summary.get("metadata")
        self.seen(name, self.clock())
        if meta_changed:
            self._emit("metadata", name)

    def peer_speaks_swim(self, name: str) -> bool | None:
        """What ``name`` last said of itself (None: it never said)."""
        return self._peer_swim.get(name)

    def mark_speaks_swim(self, name: str) -> None:
        """SWIM heard ``name`` join: whatever its old heartbeats said, it speaks SWIM now."""
        self._peer_swim[name] = True

    def seen(self, name: str, now: float) -> None:
        self._last_seen[name] = now
        was = self._state.get(name)
        if was != "alive":
            self._state[name] = "alive"
            self._emit("join" if was is None else "alive", name)

    def left(self, name: str, boot: str | None) -> None:
        """``name`` stops gracefully: "left", no longer alive, never declared dead."""
        self._left[name] = boot
        self._last_seen.pop(name, None)
        if self._state.get(name) == "alive":
            self._state[name] = "left"
            self._emit("left", name)

    def check(self, now: float) -> None:
        """Declare dead every peer unheard for PEER_TIMEOUT."""
        for name in expired(self._last_seen, now, self.config.PEER_TIMEOUT):
            if self._state.get(name) == "alive":
                self._state[name] = "dead"
                self._emit("dead", name)

    def _emit(self, kind: str, name: str) -> None:
        inc, summary = self._info.get(name, (0, {}))
        meta = summary.get("metadata", {})
        self._listeners.emit(
            MembershipEvent(kind, name, inc, meta if isinstance(meta, dict) else {}, time.time())
        )

    # --- the Membership interface ----------------------------------------------------------------

    def is_peer_alive(self, name: str) -> bool:
        return self._state.get(name) == "alive" and name not in expired(
            {name: self._last_seen.get(name, -1e18)}, self.clock(), self.config.PEER_TIMEOUT
        )

    def get_alive_peers(self) -> list[str]:
        dead = expired(self._last_seen, self.clock(), self.config.PEER_TIMEOUT)
        return sorted(n for n, s in self._state.items() if s == "alive" and n not in dead)

    def get_membership_summary(self) -> MembershipSummary:
        now = self.clock()
        alive = set(self.get_alive_peers())
        members: dict[str, MemberInfo] = {
            n: {
                "state": "alive" if n in alive else ("left" if n in self._left else "dead"),
                "incarnation": self._info.get(n, (0, {}))[0],
                "last_seen_s": round(now - self._last_seen[n], 3) if n in self._last_seen else None,
                "metadata": self.peer_metadata(n) or {},
            }
            for n in sorted(set(self.peers) | set(self._state))
        }
        return {
            "node_id": self.node_id,
            "backend": "http",
            "started": self.started,
            "alive_count": len(alive) + 1,
            "suspect_count": 0,
            "dead_count": sum(1 for m in members.values() if m["state"] == "dead"),
            "members": members,
        }

    def add_listener(self, callback: MembershipListener) -> None:
        self._listeners.add(callback)

    def peer_metadata(self, name: str) -> JSONMapping | None:
        if name == self.node_id:
            return dict(self._metadata)
        info = self._info.get(name)
        if info is None:
            return None
        meta = info[1].get("metadata", {})
        return dict(meta) if isinstance(meta, dict) else {}

    def set_local_metadata(self, metadata: JSONMapping) -> None:
        self._metadata = dict(metadata)
        self.incarnation += 1

    def get_swim_health(self) -> dict[str, object]:
        """The HTTP fallback's own health (it has no SWIM): started and reaching peers?"""
        return {
            "backend": "http",
            "healthy": self.started,
            "started": self.started,
            "alive": len(self.get_alive_peers()),
            "heartbeats_sent": self.sent,
            "heartbeats_failed": self.failed,
            "heartbeats_received": self.received,
            "heartbeats_rejected": self.rejected,
        }


# --- the route the :8770 server mounts ----------------------------------------------------------


def heartbeat_routes(manager: HttpHeartbeatMembership) -> list[web.RouteDef]:
    """POST /heartbeat: bearer-token auth when a cluster key is set; 400 naming the problem."""

    async def heartbeat(request: web.Request) -> web.Response:
        key = manager.config.CLUSTER_KEY
        if key:
            given = request.headers.get("Authorization", "")
            if not same_secret(given, f"Bearer {key}"):  # bytes: any text is a 401, not a 500
                manager.rejected += 1
                return web.json_response({"error": "missing or wrong cluster token"}, status=401)
        raw = await read_body(request, MAX_HEARTBEAT_BYTES + 1)  # 408 when too slow
        if len(raw) > MAX_HEARTBEAT_BYTES:
            manager.rejected += 1
            return web.json_response(
                {"error": f"heartbeat: body over {MAX_HEARTBEAT_BYTES} bytes"}, status=413
            )
        try:
            payload = parse_json(raw)  # nesting too deep is a ValueError too
        except ValueError as exc:
            manager.rejected += 1
            return web.json_response({"error": f"heartbeat: malformed JSON: {exc}"}, status=400)
        try:
            manager.record_heartbeat(payload)
        except ValidationError as exc:
            manager.rejected += 1
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(
            {
                "ok": True,
                "node_id": manager.node_id,
                "swim": manager.speaks_swim,
                "leaving": manager.leaving,
                "boot": manager.boot,
            }
        )

    return [web.post("/heartbeat", heartbeat)]


async def serve_heartbeats(
    manager: HttpHeartbeatMembership, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, int]:
    """A minimal server with only /heartbeat; returns the runner (cleanup it) and the port."""
    app = web.Application()
    app.add_routes(heartbeat_routes(manager))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    return runner, bound
