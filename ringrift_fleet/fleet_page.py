"""The fleet page: ``GET /`` on :8770, and the read-only JSON it polls (``GET /fleet.json``).

One self-contained HTML file (``fleet_page.html``: no CDN, no external font,
no mutating control) that fetches ``fleet.json`` every two seconds and draws
the leader and term, every host with its state, GPUs, load, disk and running
jobs, the queue depths, the recent events, and per board config the champion's
Elo over model versions.  Neither route needs a token: nothing in them is
secret (no addresses, no keys, no fence tokens).

The Elo curve: the ledger keeps only each config's current champion and Elo,
so this coordinator remembers every (version, Elo) it has seen since it
started (a tick handler, on every node, so a new leader's page is not empty).
The lasting history is Prometheus' ``ringrift_model_elo``.

:func:`summary` is pure (status snapshot + ledger rows + host figures in, the
JSON out); :class:`FleetPage` does the reading, at most once a second however
many browsers watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

from aiohttp import web

MAX_POINTS = 200  # Elo points kept per config
GAMES_WINDOW_S = 3600.0  # games per hour are measured over (up to) this window
CACHE_S = 1.0
EVENTS = 20


class EloHistory:
    """(model version, Elo) per config, as seen in the scheduler's records (pure state)."""

    def __init__(self) -> None:
        self.points: dict[str, list[dict[str, Any]]] = {}
        self.games: dict[str, deque[tuple[float, int]]] = {}

    def observe(self, configs: Mapping[str, Any], games: Mapping[str, Any], now: float) -> None:
        for key, st in configs.items():
            if not isinstance(st, Mapping):
                continue
            version = int(st.get("promotions") or 0)
            elo = st.get("champion_elo")
            if not isinstance(elo, (int, float)):
                continue
            pts = self.points.setdefault(str(key), [])
            if not pts or pts[-1]["version"] != version or pts[-1]["elo"] != elo:
                pts.append(
                    {"version": version, "elo": float(elo), "model": st.get("champion"), "at": now}
                )
                del pts[:-MAX_POINTS]
        for key, n in games.items():
            if isinstance(n, int):
                window = self.games.setdefault(str(key), deque())
                window.append((now, n))
                while len(window) > 2 and now - window[1][0] >= GAMES_WINDOW_S:
                    window.popleft()

    def games_per_hour(self, key: str) -> float | None:
        window = self.games.get(key)
        if not window or len(window) < 2:
            return None
        (t0, n0), (t1, n1) = window[0], window[-1]
        return round((n1 - n0) * 3600.0 / (t1 - t0), 1) if t1 - t0 >= 10.0 else None


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def running_jobs(work: Iterable[Mapping[str, Any]]) -> dict[str, Counter[str]]:
    """Host -> job type -> jobs claimed or running there."""
    out: dict[str, Counter[str]] = {}
    for item in work:
        host = item.get("claimed_by")
        if host and item.get("status") in ("claimed", "running"):
            out.setdefault(str(host), Counter())[str(item.get("work_type"))] += 1
    return out


def summary(
    status: Mapping[str, Any],
    *,
    inventory: Any = None,
    jobs: Mapping[str, Mapping[str, int]] | None = None,
    figures: Mapping[str, Mapping[str, Any]] | None = None,
    queues: Mapping[str, int] | None = None,
    history: EloHistory | None = None,
) -> dict[str, Any]:
    """What the page shows, from a /status snapshot and what else was read (pure)."""
    node = str(status.get("node_id", ""))
    members = _map(status.get("membership")).get("members")
    states: dict[str, str] = {node: "alive"} if node else {}
    if isinstance(members, Mapping):
        for name, m in members.items():
            states[str(name)] = (
                str(m.get("state", "unknown")) if isinstance(m, Mapping) else "unknown"
            )
    specs: dict[str, Any] = {}
    if inventory is not None:
        with contextlib.suppress(Exception):
            specs = {h.name: h for h in inventory.hosts}
    for name in specs:
        states.setdefault(name, "unknown")
    voters = set(status.get("voters") or [])
    leader = status.get("leader_id")
    hosts = []
    for name in sorted(states):
        spec = specs.get(name)
        fig = (figures or {}).get(name) or {}
        hosts.append(
            {
                "name": name,
                "state": states[name],
                "leader": name == leader,
                "voter": name in voters,
                "gpu": getattr(spec, "gpu", None),
                "gpus": getattr(spec, "gpu_count", None),
                "tier": getattr(spec, "tier", None),
                "status": getattr(spec, "status", None),
                "cpu": fig.get("cpu_percent"),
                "gpu_busy": fig.get("gpu_utilization_percent") if fig.get("has_gpu") else None,
                "disk": fig.get("disk_percent"),
                "jobs": dict((jobs or {}).get(name, {})),
            }
        )
    sched = _map(status.get("scheduler"))
    configs_raw = _map(sched.get("configs"))
    games = _map(sched.get("games"))
    configs = []
    for key in sorted(set(configs_raw) | set(games)):
        st = _map(configs_raw.get(key))
        configs.append(
            {
                "config": key,
                "stage": st.get("stage"),
                "champion": st.get("champion"),
                "elo": st.get("champion_elo"),
                "promotions": st.get("promotions", 0),
                "generation": st.get("generation", 0),
                "games": games.get(key, 0),
                "games_per_hour": history.games_per_hour(key) if history else None,
                "elo_history": list(history.points.get(key, [])) if history else [],
            }
        )
    events = _list(sched.get("events"))
    # the scheduler's events include "host X dead: N job(s) re-enqueued" (its Release)
    recent = [e for e in events if isinstance(e, Mapping)]
    recent.sort(key=lambda e: e.get("at") or 0, reverse=True)
    queue = _map(status.get("work_queue"))
    stuck = status.get("queues_without_consumers")
    unconsumed = (
        {str(q.get("queue")) for q in stuck.get("queues", []) if isinstance(q, Mapping)}
        if isinstance(stuck, Mapping) and isinstance(stuck.get("queues"), list)
        else set()
    )
    return {
        "node": node,
        "leader": leader,
        "term": status.get("term"),
        "role": status.get("role"),
        "scheduler": bool(sched),
        "hosts": hosts,
        "work": {k: queue.get(k) for k in ("pending", "claimed", "running", "completed", "failed")},
        "queues": [
            {"queue": q, "messages": n, "no_consumer": q in unconsumed}
            for q, n in sorted((queues or {}).items())
            if n or q in unconsumed
        ],
        "events": [{"at": e.get("at"), "text": str(e.get("text", ""))} for e in recent[:EVENTS]],
        "configs": configs,
        "at": status.get("snapshot_at"),
    }


class FleetPage:
    """The routes and the Elo tracker of one CoordinatorNode."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.history = EloHistory()
        self._html = resources.files("ringrift_fleet").joinpath("fleet_page.html").read_bytes()
        self._cached: tuple[float, bytes] = (-CACHE_S, b"")
        self._lock = asyncio.Lock()
        self._board: Any = None

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/", self.get_page), web.get("/fleet.json", self.get_summary)]

    async def on_tick(self) -> None:
        sched = _map(self.node.status_server.status.get("scheduler"))
        if sched.get("configs"):
            self.history.observe(_map(sched["configs"]), _map(sched.get("games")), time.time())

    async def get_page(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._html,
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-cache", "Content-Security-Policy": CSP},
        )

    async def get_summary(self, request: web.Request) -> web.Response:
        async with self._lock:
            at, body = self._cached
            if time.monotonic() - at >= CACHE_S:
                body = await asyncio.to_thread(self._build)
                self._cached = (time.monotonic(), body)
        return web.Response(body=body, content_type="application/json")

    def _build(self) -> bytes:
        import json

        status = self.node.status_server.status
        jobs: dict[str, Counter[str]] = {}
        ledger = self.node.ledger
        if ledger is not None:
            with contextlib.suppress(Exception), ledger.reading() as state:
                jobs = running_jobs(state["work"].values())
        figures, queues = self._broker(status)
        doc = summary(
            status,
            inventory=self.node.inventory,
            jobs=jobs,
            figures=figures,
            queues=queues,
            history=self.history,
        )
        return json.dumps(doc, default=str, separators=(",", ":")).encode()

    def _broker(self, status: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
        """Every host's posted figures and the queue depths (only a scheduler uses a broker)."""
        own: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            from ringrift_fleet.resources import probe_resources

            own = {self.node.node_id: probe_resources(str(self.node.config.state_dir)).to_dict()}
        if not isinstance(status.get("scheduler"), Mapping):
            return own, {}
        try:
            from ringrift_fleet.execution.dispatch import queue_depths
            from ringrift_fleet.execution.queues import all_queues
            from ringrift_fleet.execution.redis_clients import redis_client
            from ringrift_fleet.scheduler.hosts import MetricsBoard

            if self._board is None:  # the broker's current primary (Sentinel set or URL)
                self._board = redis_client(self.node.config, timeout=1.0)
            names = sorted(
                {h["name"] for h in summary(status, inventory=self.node.inventory)["hosts"]}
            )
            posted = MetricsBoard(self._board).read(names)
            figures = {n: m.to_dict() for n, m in posted.items()}
            figures.update(own)
            return figures, queue_depths(self._board, all_queues(names))
        except Exception:  # broker down: the page shows the rest
            return own, {}


CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:"


def attach(node: Any) -> FleetPage:
    """Mount ``/`` and ``/fleet.json`` on ``node`` and track Elo on its ticks (before run)."""
    page = FleetPage(node)
    node.add_routes(page.routes())
    node.add_tick_handler(page.on_tick)
    return page
