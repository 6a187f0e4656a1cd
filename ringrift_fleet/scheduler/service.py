# mypy: disallow-any-explicit
"""Plugging the scheduler into a coordinator.

:func:`attach` is the whole integration: a tick handler (run off the event
loop on a thread of its own, since ledger writes block), ``scheduler`` and ``broker`` sections in
``/status`` and a membership listener for deaths.  It is called by one
function only, :func:`ringrift_fleet.assembly.build_coordinator`, which
``ringrift-fleet coordinator`` (systemd), ``ringrift-fleet up``, the tests and
the benchmarks all run.  ``--demo`` (``ringrift-fleet up``) picks
:func:`demo_policy`: small thresholds, CPU training, on one machine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar, Unpack

import redis

from ringrift_fleet.config import ENV_PREFIX, P2PConfig, set_by_user
from ringrift_fleet.execution.broker import LostMessages
from ringrift_fleet.execution.redis_clients import FailoverWatch, redis_client, replica_wait
from ringrift_fleet.metrics import SchedulerCollector
from ringrift_fleet.models import JobType
from ringrift_fleet.notifications import send_webhook_notification
from ringrift_fleet.resources import probe_resources
from ringrift_fleet.scheduler.beat import Beat
from ringrift_fleet.scheduler.hosts import PROBE_EVERY_S, FleetHosts, LocalHosts, MetricsBoard
from ringrift_fleet.scheduler.ports import Results, ResultsMany, Sender, TaskValue
from ringrift_fleet.scheduler.settings import PolicyFields, SchedulerPolicy
from ringrift_fleet.training import TrainingThresholds

if TYPE_CHECKING:  # the node is the I/O shell that runs us; we only name its type
    from celery import Celery

    from ringrift_fleet.node import CoordinatorNode

Hosts = FleetHosts | LocalHosts

log = logging.getLogger(__name__)

_Knob = TypeVar("_Knob", int, float)

# The one-machine demo: small enough that a 2-core box without a GPU goes from
# the first self-play game to a promoted model in a couple of minutes.
DEMO_MIN_GAMES = 48
DEMO_GAMES_PER_JOB = 8
DEMO_EVAL_GAMES = 24


def demo_policy(
    config: P2PConfig,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Unpack[PolicyFields],
) -> SchedulerPolicy:
    """The demo's profile: small thresholds and jobs, CPU training.

    What the user set explicitly (``RINGRIFT_P2P_SELFPLAY_GAMES_PER_JOB``,
    ``…_EVAL_GAMES``, ``…_TRAINING_*`` in ``env``, or a non-default value in
    ``config``) holds here too; only the knobs left at their defaults take the
    demo's values.  One log line says which value each knob has and why.
    """

    def pick(name: str, demo: _Knob) -> _Knob:
        origin = set_by_user(config, name, env)
        value = getattr(config, name) if origin else demo
        chosen.append(f"{name}={value:g} ({origin or 'demo'})")
        return value

    chosen: list[str] = []
    games_per_job = pick("SELFPLAY_GAMES_PER_JOB", DEMO_GAMES_PER_JOB)
    eval_games = pick("EVAL_GAMES", DEMO_EVAL_GAMES)
    min_games = pick("TRAINING_MIN_GAMES", DEMO_MIN_GAMES)
    stale_games = pick("TRAINING_MIN_GAMES_WHEN_STALE", min(DEMO_MIN_GAMES, min_games))
    values: PolicyFields = {
        "thresholds": TrainingThresholds(
            MIN_GAMES=min_games,
            MIN_GAMES_WHEN_STALE=min(stale_games, min_games),
            STALENESS_HOURS=pick("TRAINING_STALENESS_HOURS", 24.0),
            MIN_HOURS_BETWEEN_RUNS=pick("TRAINING_MIN_HOURS_BETWEEN_RUNS", 0.0),
        ),
        "allow_cpu_training": True,
        "games_per_job": games_per_job,
        "eval_games": eval_games,
        "retry_backoff_s": 5.0,
        "load_max": 1.0,  # the demo's own jobs saturate the 2 cores; that is not overload
        "disk_critical": 100.0,
        # one job at a time a host, unless SCHEDULER_PREFETCH (or _QUEUE_AHEAD) says more
        "prefetch": pick("SCHEDULER_PREFETCH", 0.0),
    }
    values.update(overrides)
    log.info(
        "demo profile: %s; a knob marked (demo) takes %s<NAME> to change",
        ", ".join(chosen),
        ENV_PREFIX,
    )
    return SchedulerPolicy.from_config(config, **values)


# Celery is imported only when a broker is used: a consensus-only coordinator does
# not load it (celery.result + execution.dispatch: ~20 MB RSS, docs/bench/coordinator_rss.md).


def _celery_reader() -> Results:
    from celery.result import AsyncResult

    from ringrift_fleet.celery import app

    def read(task_id: str) -> tuple[str, TaskValue]:
        r = AsyncResult(task_id, app=app)
        state = r.state
        return state, (r.result if state in ("SUCCESS", "FAILURE", "REVOKED") else None)

    return read


# result keys one MGET asks for at most (a tick's live attempts: a few per host)
RESULTS_PER_MGET = 500
_READY = ("SUCCESS", "FAILURE", "REVOKED")


def celery_results_many(app: Celery | None = None) -> ResultsMany | None:
    """The live attempts' task states in one MGET per RESULTS_PER_MGET, as
    ``_celery_reader`` reads each (its key, its decoding, PENDING for no key).

    None when the result backend has no MGET (then each is read on its own)."""
    if app is None:
        from ringrift_fleet.celery import app as fleet_app

        app = fleet_app
    backend = app.backend
    if not callable(getattr(backend, "mget", None)):
        return None

    def read_many(task_ids: Sequence[str]) -> dict[str, tuple[str, TaskValue]]:
        out: dict[str, tuple[str, TaskValue]] = {}
        for start in range(0, len(task_ids), RESULTS_PER_MGET):
            chunk = list(task_ids[start : start + RESULTS_PER_MGET])
            raws = backend.mget([backend.get_key_for_task(t) for t in chunk])
            for task_id, raw in zip(chunk, raws, strict=True):
                if not raw:
                    out[task_id] = ("PENDING", None)
                    continue
                try:
                    meta = backend.decode_result(raw)
                    state = str(meta["status"])
                    value = meta.get("result") if state in _READY else None
                except Exception:  # not Celery's: left out, read (and refused) on its own
                    continue
                out[task_id] = (state, value)
        return out

    return read_many


def _celery_sender() -> Sender:
    from ringrift_fleet.execution.dispatch import send_job

    def send(
        job_type: JobType,
        kwargs: Mapping[str, object],
        *,
        queue: str,
        job_id: str,
        fence: Mapping[str, object],
    ) -> str:
        return send_job(job_type, kwargs, queue=queue, job_id=job_id, fence=fence)

    return send


def build_beat(
    node: CoordinatorNode, policy: SchedulerPolicy, hosts: Hosts, client: redis.Redis | None
) -> Beat:
    """A Beat on this coordinator's ledger and leadership, sending through Celery.

    ``client`` None: no broker (consensus only, ``--no-scheduler``): nothing is
    sent or read back; the policy then only releases the jobs of lost hosts.
    """
    ledger, leadership = node.ledger, node.leadership
    if ledger is None or leadership is None:
        raise RuntimeError("build_beat: the coordinator's consensus is not prepared")
    beat = Beat(
        ledger=ledger,
        leadership=leadership,
        redis=client,
        policy=policy,
        hosts=hosts,
        send=_celery_sender() if client is not None else _no_sender,
        read_result=_celery_reader() if client is not None else _nothing_sent,
        read_results=celery_results_many() if client is not None else None,
        address=hosts.address,
        notify=send_webhook_notification,
    )
    if client is not None:
        beat.replicate = replica_wait(node.config, client)
        beat.lost_messages = LostMessages(client)
    return beat


def _no_sender(job_type: JobType, kwargs: Mapping[str, object], **_: object) -> str:
    raise RuntimeError("consensus-only coordinator: the policy places no work")


def _nothing_sent(task_id: str) -> tuple[str, TaskValue]:
    return "PENDING", None


def attach(
    node: CoordinatorNode,
    policy: SchedulerPolicy,
    hosts: Hosts | None = None,
    *,
    broker: bool = True,
) -> Beat:
    """Run the scheduler on ``node`` (a CoordinatorNode); call before ``node.run()``.

    Builds the node's consensus objects first (``prepare``: nothing runs yet), so
    the Beat exists from here on.  ``broker=False`` (consensus only) opens no
    broker connection: no metrics board, no failover watch, nothing sent.
    """
    node.coordinator.prepare()
    client = redis_client(node.config, timeout=5) if broker else None
    board = MetricsBoard(client) if client is not None else None
    directory = hosts or FleetHosts(
        node.node_id, node.config, node.inventory, node.membership, board
    )
    beat = build_beat(node, policy, directory, client)
    if node.membership is not None:
        node.membership.add_listener(beat.on_membership)
    # The Sentinels' view (primary, replicas) for /status, and the broker_failover event.
    failover = (
        FailoverWatch(node.config, notify=send_webhook_notification, client=client)
        if client is not None
        else None
    )
    last_post = {"at": -PROBE_EVERY_S}

    def post_metrics() -> None:
        """Every coordinator tells the leader how loaded its host is (every few seconds)."""
        now = time.monotonic()
        if board is None or now - last_post["at"] < PROBE_EVERY_S:
            return
        last_post["at"] = now
        try:
            board.publish(node.node_id, probe_resources(str(node.config.state_dir)))
        except Exception as exc:  # the broker may be down; scheduling goes on without figures
            log.debug("could not post metrics: %s", exc)

    node.add_tick_handler(tick_handler(beat.tick, post_metrics))
    if failover is not None and failover.spec.sentinel:
        look, every = failover.poll, failover.every_s
        node.add_background("broker-watch", lambda: watch_loop(look, every))
    node.add_status_section("scheduler", beat.status)
    # job durations, re-placements by cause, fence refusals: /metrics
    node.status_server.registry.register(SchedulerCollector(node.node_id, beat))
    node.add_status_section(
        "broker",
        lambda: {
            **beat.broker_status(),
            "topology": failover.status() if failover is not None else {},
        },
    )
    return beat


def tick_handler(
    tick: Callable[[], object], post_metrics: Callable[[], None]
) -> Callable[[], Awaitable[None]]:
    """The coordinator's tick: the beat (and this host's figures) on a thread of
    their own.

    Not the event loop's shared default executor: there a leader's tick queued
    behind whatever else waits on it -- encodings of the ledger for every
    non-voter that asks after a failover, writes forwarded through this node
    that wait out a lost quorum, pings -- and the 60-minute soak saw a new
    leader's first tick come 10.8 s and 16 s after it began to lead.  One thread:
    ticks never overlap anyway.
    """
    own = ThreadPoolExecutor(1, thread_name_prefix="beat")

    def both() -> None:
        post_metrics()
        tick()

    async def on_tick() -> None:
        await asyncio.get_running_loop().run_in_executor(own, both)

    return on_tick


async def watch_loop(look: Callable[[], object], every_s: float) -> None:
    """The Sentinels' view, looked at every ``every_s`` on a thread of its own.

    Neither on the tick nor on the shared executor: a broker failover is when the
    beat's tick waits on the broker and the shared executor fills with waits, and
    it is when an operator reads /status for the new primary.  (CI once
    saw /status name no failover 15 s after the jobs had resumed on the new
    primary, the look then riding on the tick and the shared executor.)  One look
    at a time, ``every_s`` apart: up to 2 commands per Sentinel, SENTINEL_TIMEOUT_S
    each when one is down.  Runs until cancelled."""
    own = ThreadPoolExecutor(1, thread_name_prefix="broker-watch")
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                await loop.run_in_executor(own, look)
            except Exception as exc:  # the view is for people; scheduling goes on without it
                log.debug("broker topology: %s", exc)
            await asyncio.sleep(every_s)
    finally:
        own.shutdown(wait=False)


def local_hosts(
    config: P2PConfig, node_id: str, *, slots: int, gpu: str, vram_gb: float
) -> LocalHosts:
    """Without an inventory: this machine is the fleet (``ringrift-fleet up``)."""
    return LocalHosts(
        node_id,
        config,
        slots=slots,
        gpu=gpu,
        vram_gb=vram_gb,
        probe=lambda: probe_resources(config.STATE_DIR),
    )
