"""Queues that hold messages no worker consumes: noticed, shown, logged.

A job sent to a queue nobody consumes waits in Redis for ever, ``PENDING``,
without a word: ``celery call ringrift.training`` on a fleet of CPU boxes goes
to ``training.t3``, which only a GPU able to train consumes.  The leader's
coordinator looks every ``QUEUE_CHECK_INTERVAL`` seconds (30 by default, never
every tick):

1. the broker's view: every queue a client or worker declared (kombu's
   ``_kombu.binding.*`` sets, a bounded SCAN) plus the fleet's own queue names,
   and the messages each holds (``LLEN`` of kombu's Redis lists, all priority
   levels);
2. only when some queue holds messages, the workers' view: Celery's
   ``inspect active_queues`` with a one-second timeout (one broadcast; every
   live worker's main process answers, busy or not).

A queue with messages that no answering worker consumes in two checks in a
row (one late reply must not raise an alarm) is reported: in ``/status`` as
the ``queues_without_consumers`` section, in ``ringrift-fleet status``, and as
one warning log line per queue at most every ``WARN_EVERY_S`` (5 minutes).
The leader publishes its finding in Redis so that every coordinator's
``/status`` shows it; the others only read that key.

The decision is pure (:func:`unconsumed`, :func:`hint`); the I/O is the
:class:`QueueWatch` around it, run in a daemon thread so a slow broker never
holds up a tick.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ringrift_fleet.execution.queues import ANY_QUEUE, CPU_QUEUE, all_queues

log = logging.getLogger(__name__)

SECTION = "queues_without_consumers"
PUBLISH_KEY = "ringrift:queues_without_consumers"
WARN_EVERY_S = 300.0
INSPECT_TIMEOUT_S = 1.0
CONFIRM_CHECKS = 2  # checks in a row a queue must be seen unconsumed before it is reported
BINDING_PREFIX = "_kombu.binding."
BINDING_SEP = "\x06\x16"
SCAN_MAX_CALLS = 200  # bounded: at COUNT 1000, a keyspace of 200,000 keys
# Celery's own broadcast and event exchanges: their queues are not work queues.
_INTERNAL = ("celery.pidbox", "reply.celery.pidbox", "celeryev")


# --- the decision (pure) ----------------------------------------------------------------


def hint(queue: str) -> str:
    """What a person does about messages waiting in ``queue`` with nobody consuming it."""
    kind, _, tier = queue.partition(".")
    if kind == "training" and tier:
        return (
            f"no running worker can train at tier {tier} or above (a GPU with enough power "
            "and VRAM); to train on a CPU box, pin the job to it: "
            "celery -A ringrift_fleet call ringrift.training --queue node.<host> ..."
        )
    if kind in ("selfplay", "evaluation") and tier:
        return (
            f"no GPU worker of tier {tier} or above is running; CPU workers take "
            "--queue cpu, node.<host> or any"
        )
    if kind == "node" and tier:
        return f"no worker runs on host {tier} (ringrift-fleet worker --node {tier})"
    if queue == CPU_QUEUE:
        return "no CPU worker is running (ringrift-fleet worker --cpu)"
    if queue == ANY_QUEUE:
        return "no worker is running at all"
    return "no worker consumes this queue (a typo in --queue? workers: ringrift-fleet worker)"


def unconsumed(depths: Mapping[str, int], consumers: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """Queues holding messages that no worker consumes: queue -> messages waiting.

    ``consumers`` maps each worker that answered to the queues it consumes.
    """
    consumed = {q for queues in consumers.values() for q in queues}
    return {q: n for q, n in sorted(depths.items()) if n > 0 and q not in consumed}


def parse_binding(member: bytes | str) -> str | None:
    """The queue of one member of a kombu ``_kombu.binding.<exchange>`` set."""
    text = member.decode(errors="replace") if isinstance(member, bytes) else member
    parts = text.split(BINDING_SEP)
    return parts[2] if len(parts) == 3 and parts[2] else None


def render_lines(section: Any) -> list[str]:
    """The ``ringrift-fleet status`` lines for the section (nothing when all is well)."""
    if not isinstance(section, Mapping):
        return []
    out = []
    for entry in section.get("queues") or []:
        if not isinstance(entry, Mapping):
            continue
        out.append(
            f"warning: queue {entry.get('queue')} holds {entry.get('messages')} message(s) "
            f"that no worker consumes: {entry.get('hint')}"
        )
    return out


# --- the I/O around it ------------------------------------------------------------------


Inspect = Callable[[float], "Mapping[str, Iterable[str]] | None"]


class QueueWatch:
    """Checks the broker now and then (leader) or reads the leader's finding (others)."""

    def __init__(
        self,
        broker_url: Any,  # a URL, or a redis_clients.BrokerSpec (Sentinel set)
        node_id: str,
        *,
        nodes: Iterable[str] = (),
        interval: float = 30.0,
        inspect: Inspect | None = None,
        app_factory: Callable[[], Any] | None = None,
        warn_every: float = WARN_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.broker_url = broker_url
        self.node_id = node_id
        self.nodes = tuple(nodes)
        self.interval = interval
        self.warn_every = warn_every
        self.clock = clock
        self.wall = wall
        self._inspect = inspect
        self._app_factory = app_factory
        self._client: Any = None
        self._app: Any = None
        self._seen: dict[str, int] = {}  # queue -> checks in a row it was unconsumed
        self._since: dict[str, float] = {}  # queue -> wall time first seen unconsumed
        self._warned: dict[str, float] = {}  # queue -> clock of its last warning
        self._next = 0.0
        self._thread: threading.Thread | None = None
        self._section: dict[str, Any] = {"queues": [], "checked_at": None}
        self.checks = 0

    # -- what /status shows ------------------------------------------------------------

    def section(self) -> dict[str, Any]:
        return self._section

    # -- driving it ----------------------------------------------------------------------

    def due(self) -> bool:
        return self.clock() >= self._next and not (self._thread and self._thread.is_alive())

    def start_check(self, leader: bool) -> None:
        """Run :meth:`check` in a daemon thread when one is due (never two at once)."""
        if not self.due():
            return
        self._next = self.clock() + self.interval
        self._thread = threading.Thread(
            target=self.check, args=(leader,), name="queue-watch", daemon=True
        )
        self._thread.start()

    def check(self, leader: bool) -> None:
        """One check: the leader looks at the broker and publishes; the others read."""
        try:
            if leader:
                self._section = self._look()
                self._publish(self._section)
            else:
                self._section = self._read_published()
        except Exception as exc:  # the broker is down or odd: say so, try again later
            self._section = {
                "queues": self._section.get("queues", []),
                "checked_at": self._section.get("checked_at"),
                "error": f"{type(exc).__name__}: {exc}",
            }
            log.debug("queue check failed: %s", exc)
        self.checks += 1

    # -- the leader's look ------------------------------------------------------------

    def _redis(self) -> Any:
        if self._client is None:
            from ringrift_fleet.execution.redis_clients import BrokerSpec, redis_client

            spec = self.broker_url
            if not isinstance(spec, BrokerSpec):
                spec = BrokerSpec(url=str(spec))
            self._client = redis_client(spec, timeout=5, connect_timeout=3)
        return self._client

    def declared_queues(self) -> set[str]:
        """Work queues the broker knows of: kombu's bindings (bounded scan) + ours."""
        client = self._redis()
        names = set(all_queues(self.nodes))
        cursor, calls = 0, 0
        keys: list[bytes] = []
        while calls < SCAN_MAX_CALLS:
            cursor, batch = client.scan(cursor, match=BINDING_PREFIX + "*", count=1000)
            keys += batch
            calls += 1
            if cursor == 0:
                break
        for key in keys:
            exchange = key.decode(errors="replace")[len(BINDING_PREFIX) :]
            if exchange in _INTERNAL:
                continue
            for member in client.smembers(key):
                queue = parse_binding(member)
                if queue:
                    names.add(queue)
        return names

    def consumers(self) -> Mapping[str, Iterable[str]] | None:
        if self._inspect is not None:
            return self._inspect(INSPECT_TIMEOUT_S)
        if self._app is None:
            if self._app_factory is None:
                from ringrift_fleet.execution.app import create_app

                self._app_factory = create_app
            self._app = self._app_factory()
        replies = self._app.control.inspect(timeout=INSPECT_TIMEOUT_S).active_queues() or {}
        return {w: [q.get("name", "") for q in qs or []] for w, qs in replies.items()}

    def _look(self) -> dict[str, Any]:
        from ringrift_fleet.execution.dispatch import queue_depths

        depths = queue_depths(self._redis(), sorted(self.declared_queues()))
        waiting = {q: n for q, n in depths.items() if n > 0}
        workers: Mapping[str, Iterable[str]] = {}
        if waiting:
            workers = self.consumers() or {}
        stuck = unconsumed(waiting, workers)
        now, wall = self.clock(), self.wall()
        self._seen = {q: self._seen.get(q, 0) + 1 for q in stuck}
        self._since = {q: self._since.get(q, wall) for q in stuck}
        confirmed = [q for q in stuck if self._seen[q] >= CONFIRM_CHECKS]
        for q in confirmed:
            if now - self._warned.get(q, -float("inf")) >= self.warn_every:
                self._warned[q] = now
                log.warning(
                    "queue %s holds %d message(s) and no worker consumes it "
                    "(%d worker(s) answered): %s",
                    q,
                    stuck[q],
                    len(workers),
                    hint(q),
                )
        self._warned = {q: t for q, t in self._warned.items() if q in stuck}
        return {
            "queues": [
                {"queue": q, "messages": stuck[q], "since": self._since[q], "hint": hint(q)}
                for q in confirmed
            ],
            "checked_at": wall,
            "checked_by": self.node_id,
            "workers_answering": len(workers) if waiting else None,
        }

    def _publish(self, section: Mapping[str, Any]) -> None:
        ttl = max(1, int(3 * self.interval))
        self._redis().set(PUBLISH_KEY, json.dumps(section), ex=ttl)

    def _read_published(self) -> dict[str, Any]:
        raw = self._redis().get(PUBLISH_KEY)
        if raw is None:
            return {"queues": [], "checked_at": None, "note": "the leader has not checked yet"}
        data = json.loads(raw)
        return data if isinstance(data, dict) else {"queues": [], "checked_at": None}


def attach(node: Any) -> QueueWatch:
    """Check queues from ``node`` (a CoordinatorNode): a tick handler and a /status section."""
    cfg = node.config
    nodes: tuple[str, ...] = ()
    if node.inventory is not None:
        try:
            nodes = tuple(node.inventory.names())
        except Exception:  # an odd inventory object: the broker's bindings still count
            nodes = ()

    def app() -> Any:
        from ringrift_fleet.execution.app import create_app

        return create_app(cfg)

    from ringrift_fleet.execution.redis_clients import broker_spec

    watch = QueueWatch(
        broker_spec(cfg),
        node.node_id,
        nodes=nodes,
        interval=cfg.QUEUE_CHECK_INTERVAL,
        app_factory=app,
    )

    async def on_tick() -> None:
        lead = node.leadership
        leader = lead is None or bool(lead.is_leader())
        watch.start_check(leader)

    node.add_tick_handler(on_tick)
    node.add_status_section(SECTION, watch.section)
    return watch
