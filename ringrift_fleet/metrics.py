"""Prometheus metrics of one coordinator, read from its state at scrape time.

Every metric the coordinator exports is defined here, in one place.  Nothing in
the rest of the code updates a metric inline: :class:`FleetCollector` is a
``prometheus_client`` custom collector that, on each scrape, reads

* the /status snapshot the status server already keeps (leadership, term,
  membership, Raft, the ledger's counts, the scheduler's per-config state);
* the local ledger replica, for jobs by type and state (one pass under the
  ledger's read lock), and the ledger's own timing of the writes it proposed
  (``Ledger.op_latency``, a plain :class:`~ringrift_fleet.histograms.Histogram`);
* this host's resources (psutil/NVML, at most every few seconds);
* the broker (queue depths; only on a coordinator with the scheduler attached,
  the only kind that uses a broker).

Each coordinator has its own :class:`~prometheus_client.CollectorRegistry`
(the status server's), so several coordinators in one process never clash on
the global registry.  Conventions: ``ringrift_`` names, base units (seconds,
ratios 0–1), ``_total`` for counters, labels limited to this node, hosts, board
configs, job types, job states and queues — never job ids.

:func:`families` is the pure part: status snapshot + ledger counts + probes in,
metric families out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ringrift_fleet.histograms import LEDGER_OP_BUCKETS, Histogram

log = logging.getLogger(__name__)

PROBE_EVERY_S = 5.0  # host resources and the broker are read at most this often
BROKER_TIMEOUT_S = 1.0
JOB_STATES = ("pending", "claimed", "running", "completed", "failed", "cancelled")
MEMBER_STATES = ("alive", "suspect", "dead")
STAGES = ("idle", "sync", "training", "evaluation")
# ringrift_job_duration_seconds: self-play jobs take seconds to minutes, training hours
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0)  # fmt: skip


@dataclass
class Probes:
    """What the collector read besides the status snapshot (each part optional)."""

    jobs: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (type, state) -> n
    replaced: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (type, cause) -> n
    host: Mapping[str, float] | None = None  # ResourceMetrics.to_dict() of this host
    disk_critical_ratio: float | None = None
    broker_up: bool | None = None  # None: this coordinator uses no broker
    broker_errors: int = 0
    queues: Mapping[str, int] = field(default_factory=dict)
    leader_changes: int = 0
    webhooks: Mapping[str, int] = field(default_factory=dict)  # outcome -> count
    # (op, outcome) -> (cumulative counts, +Inf last; sum of seconds): Ledger.op_latency
    ledger_ops: Mapping[tuple[str, ...], tuple[Sequence[int], float]] = field(default_factory=dict)
    ledger_op_buckets: Sequence[float] = LEDGER_OP_BUCKETS
    # this host's workers' reports (execution/worker_report.py): worker -> report
    workers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and value == value:
        return float(value)
    return None


def replacement_cause(error: Any) -> str:
    """The cause of a job's last re-placement, from the error the ledger recorded
    (the causes of ``ringrift_job_replacements_total``)."""
    text = str(error or "").lower()
    if "declared dead" in text or (text.startswith("node ") and text.endswith(" lost")):
        return "host_death"
    if "hard limit" in text:
        return "hard_limit"
    if "leader died while sending" in text:
        return "sender_died"
    if "lease" in text:
        return "lease_lost"
    if "send failed" in text:
        return "send_failed"
    if "fence" in text or "refused" in text or "running on" in text:
        return "worker_refused"
    return "job_failed"


def ledger_counts(
    work: Iterable[Mapping[str, Any]],
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """Jobs by (type, state), and jobs placed more than once by (type, cause)."""
    jobs: Counter[tuple[str, str]] = Counter()
    replaced: Counter[tuple[str, str]] = Counter()
    for item in work:
        kind = str(item.get("work_type", "unknown"))
        jobs[(kind, str(item.get("status", "unknown")))] += 1
        attempts = item.get("attempts")
        if isinstance(attempts, int) and attempts > 1:
            replaced[(kind, replacement_cause(item.get("error")))] += attempts - 1
    return dict(jobs), dict(replaced)


def families(node: str, status: Mapping[str, Any], probes: Probes) -> list[Metric]:
    """The metric families for ``status`` (a /status snapshot) and ``probes`` (pure)."""
    out: list[Metric] = []

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
        g = GaugeMetricFamily(name, doc, labels=("node", *labels))
        out.append(g)
        return g

    def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
        c = CounterMetricFamily(name, doc, labels=("node", *labels))
        out.append(c)
        return c

    # --- leadership ---------------------------------------------------------------------
    is_leader = 1.0 if status.get("role") == "leader" else 0.0
    gauge("ringrift_is_leader", "1 while this node leads (schedules)").add_metric([node], is_leader)
    gauge(
        "ringrift_term", "consensus term (Raft) or lease epoch (Bully) this node sees"
    ).add_metric([node], _num(status.get("term")) or 0.0)
    leader = status.get("leader_id")
    info = gauge("ringrift_leader", "1 for the node this node believes leads", ("leader",))
    if isinstance(leader, str) and leader:
        info.add_metric([node, leader], 1.0)
    counter(
        "ringrift_leader_changes",
        "changes of (leader, term) this node has seen since it started",
    ).add_metric([node], float(probes.leader_changes))
    gauge("ringrift_is_voter", "1 when this node votes in Raft").add_metric(
        [node], 1.0 if status.get("is_voter") else 0.0
    )

    # --- membership ---------------------------------------------------------------------
    gauge(
        "ringrift_alive_peers", "peers membership sees alive (not counting this node)"
    ).add_metric([node], _num(status.get("alive_peers")) or 0.0)
    membership = status.get("membership")
    membership = membership if isinstance(membership, Mapping) else {}
    members = gauge("ringrift_members", "members by state, as this node sees them", ("state",))
    for state in MEMBER_STATES:
        value = _num(membership.get(f"{state}_count"))
        if value is not None:
            members.add_metric([node, state], value)
    alive = gauge(
        "ringrift_member_alive",
        "1 if this node sees the member (host) alive, 0 if suspect or dead "
        "(not `host`: Prometheus targets carry that label)",
        ("member",),
    )
    listed = membership.get("members")
    if isinstance(listed, Mapping):
        for host, m in sorted(listed.items()):
            seen = m.get("state") if isinstance(m, Mapping) else None
            alive.add_metric([node, str(host)], 1.0 if seen == "alive" else 0.0)
        if node not in listed:
            alive.add_metric([node, node], 1.0)
    swim = (status.get("swim_raft") or {}).get("swim") if isinstance(status, Mapping) else None
    health = swim.get("health") if isinstance(swim, Mapping) else None
    if isinstance(health, Mapping):
        sent = _num(health.get("datagrams_sent"))
        if sent is not None:
            c = counter(
                "ringrift_swim_datagrams", "SWIM datagrams this node sent/received", ("direction",)
            )
            c.add_metric([node, "sent"], sent)
            c.add_metric([node, "received"], _num(health.get("datagrams_received")) or 0.0)
        dropped = health.get("dropped")
        if isinstance(dropped, Mapping):
            d = counter("ringrift_swim_dropped_datagrams", "SWIM datagrams dropped", ("reason",))
            for reason, n in sorted(dropped.items()):
                if _num(n) is not None:
                    d.add_metric([node, str(reason)], _num(n) or 0.0)
        lhm = _num(health.get("local_health_multiplier"))
        if lhm is not None:
            gauge(
                "ringrift_swim_local_health_multiplier", "Lifeguard local health (0 = healthy)"
            ).add_metric([node], lhm)
        for key, name, doc in (
            ("probes", "ringrift_swim_probes", "SWIM probes (pings) this node sent"),
            (
                "probe_failures",
                "ringrift_swim_probe_failures",
                "SWIM probes no one answered in time (each starts a suspicion)",
            ),
            (
                "refutations",
                "ringrift_swim_refutations",
                "suspicions of this node that it refuted (false suspicions)",
            ),
        ):
            value = _num(health.get(key))
            if value is not None:
                counter(name, doc).add_metric([node], value)
        fallback = health.get("fallback")
        saved = _num(fallback.get("suspicions_avoided")) if isinstance(fallback, Mapping) else None
        if saved is not None:
            counter(
                "ringrift_swim_suspicions_avoided",
                "failed UDP probes the TCP fallback answered (no suspicion started)",
            ).add_metric([node], saved)
        rec = _num(health.get("recoveries"))
        if rec is not None:
            counter("ringrift_swim_recoveries", "SWIM transport restarts").add_metric([node], rec)

    stalls = status.get("stalls")
    if isinstance(stalls, Mapping) and _num(stalls.get("stalls")) is not None:
        counter(
            "ringrift_coordinator_stalls",
            "times no Python code of this coordinator ran for COORDINATOR_STALL_S or more",
        ).add_metric([node], _num(stalls.get("stalls")) or 0.0)
        gauge(
            "ringrift_coordinator_stall_max_seconds", "the longest such stall since start"
        ).add_metric([node], _num(stalls.get("max_s")) or 0.0)
    # --- Raft and the ledger --------------------------------------------------------------
    raft = status.get("raft_detail")
    if isinstance(raft, Mapping) and "commit_idx" in raft:
        gauge("ringrift_raft_commit_index", "Raft commit index").add_metric(
            [node], _num(raft.get("commit_idx")) or 0.0
        )
        gauge("ringrift_raft_log_entries", "entries in this node's Raft log").add_metric(
            [node], _num(raft.get("log_len")) or 0.0
        )
        gauge("ringrift_raft_has_quorum", "1 while this node's Raft sees a quorum").add_metric(
            [node], 1.0 if raft.get("has_quorum") else 0.0
        )
        voters = raft.get("connected_voters")
        gauge("ringrift_raft_connected_voters", "other voters connected to this node").add_metric(
            [node], float(len(voters)) if isinstance(voters, list) else 0.0
        )
        dump = raft.get("dump")
        if isinstance(dump, Mapping):
            if _num(dump.get("last_s")) is not None:
                gauge(
                    "ringrift_raft_dump_seconds",
                    "how long this voter's last full dump (log compaction) took to write",
                ).add_metric([node], _num(dump.get("last_s")) or 0.0)
            if _num(dump.get("failed")) is not None:
                counter(
                    "ringrift_raft_dump_failures",
                    "full dumps that failed or were killed (the log stays until the next)",
                ).add_metric([node], _num(dump.get("failed")) or 0.0)
        if _num(raft.get("leader_changes")) is not None:  # when consensus counts them itself
            counter("ringrift_raft_leader_changes", "leader changes Raft counted").add_metric(
                [node], _num(raft.get("leader_changes")) or 0.0
            )
    queue = status.get("work_queue")
    queue = queue if isinstance(queue, Mapping) else {}
    items = gauge("ringrift_work_items", "ledger items by state", ("state",))
    for state in JOB_STATES:
        if _num(queue.get(state)) is not None:
            items.add_metric([node, state], _num(queue.get(state)) or 0.0)
    if _num(queue.get("total")) is not None:
        gauge("ringrift_ledger_items", "jobs the ledger holds (live + retained)").add_metric(
            [node], _num(queue.get("total")) or 0.0
        )
    if _num(queue.get("pruned")) is not None:
        counter(
            "ringrift_ledger_pruned_jobs", "finished jobs folded into history records"
        ).add_metric([node], _num(queue.get("pruned")) or 0.0)
    if probes.ledger_ops:
        ops = HistogramMetricFamily(
            "ringrift_ledger_op_duration_seconds",
            "from proposing a ledger operation on this node (its own, or one a non-voter "
            "forwarded) until it was committed and applied, or refused",
            labels=("node", "op", "outcome"),
        )
        les = [str(le) for le in probes.ledger_op_buckets] + ["+Inf"]
        for (op, outcome), (cumulative, total) in sorted(probes.ledger_ops.items()):
            buckets = list(zip(les, (float(n) for n in cumulative), strict=True))
            ops.add_metric([node, op.removesuffix(".v1"), outcome], buckets, total)
        out.append(ops)
    jobs = gauge("ringrift_jobs", "ledger jobs by type and state", ("job_type", "state"))
    for (kind, state), n in sorted(probes.jobs.items()):
        jobs.add_metric([node, kind, state], float(n))
    replaced = gauge(
        "ringrift_job_extra_attempts",
        "extra attempts of the jobs the ledger holds, by the cause of the last re-placement",
        ("job_type", "cause"),
    )
    for (kind, cause), n in sorted(probes.replaced.items()):
        replaced.add_metric([node, kind, cause], float(n))
    # --- the training loop (scheduler section) --------------------------------------------
    sched = status.get("scheduler")
    if isinstance(sched, Mapping) and sched:
        games = counter("ringrift_games", "self-play games recorded per board config", ("config",))
        for cfg, n in sorted((sched.get("games") or {}).items()):
            if _num(n) is not None:
                games.add_metric([node, str(cfg)], _num(n) or 0.0)
        configs = sched.get("configs") or {}
        elo = gauge("ringrift_model_elo", "Elo of the champion model per board config", ("config",))
        gen = gauge("ringrift_model_generation", "training cycles started per config", ("config",))
        promo = counter("ringrift_model_promotions", "models promoted per config", ("config",))
        stage = gauge(
            "ringrift_config_stage", "1 for the config's current stage", ("config", "stage")
        )
        trained = gauge(
            "ringrift_last_training_timestamp_seconds",
            "when the config's last training cycle finished (Unix time)",
            ("config",),
        )
        for cfg, st in sorted(configs.items()) if isinstance(configs, Mapping) else ():
            if not isinstance(st, Mapping):
                continue
            labels = [node, str(cfg)]
            elo.add_metric(labels, _num(st.get("champion_elo")) or 1500.0)
            gen.add_metric(labels, _num(st.get("generation")) or 0.0)
            promo.add_metric(labels, _num(st.get("promotions")) or 0.0)
            for s in STAGES:
                stage.add_metric([*labels, s], 1.0 if st.get("stage") == s else 0.0)
            if _num(st.get("last_training_at")) is not None:
                trained.add_metric(labels, _num(st.get("last_training_at")) or 0.0)
        dead = sched.get("dead_hosts")
        if isinstance(dead, list):
            gauge("ringrift_scheduler_dead_hosts", "hosts the scheduler treats as dead").add_metric(
                [node], float(len(dead))
            )

    # --- this host ------------------------------------------------------------------------
    if probes.host is not None:
        h = probes.host
        for key, name, doc in (
            ("cpu_percent", "ringrift_host_cpu_ratio", "CPU use of this host (0-1)"),
            ("memory_percent", "ringrift_host_memory_ratio", "memory use of this host (0-1)"),
            ("disk_percent", "ringrift_host_disk_used_ratio", "disk use of the state dir (0-1)"),
            ("gpu_utilization_percent", "ringrift_host_gpu_busy_ratio", "mean GPU busy (0-1)"),
            ("gpu_memory_percent", "ringrift_host_gpu_memory_ratio", "mean GPU memory use (0-1)"),
        ):
            value = _num(h.get(key))
            if value is not None:
                gauge(name, doc).add_metric([node], value / 100.0)
        for key, name, doc in (
            (
                "load_score",
                "ringrift_host_load_score",
                "the scheduler's composite load of this host (0-1; no new work above "
                "LOAD_MAX_FOR_NEW_JOBS)",
            ),
            ("load1", "ringrift_host_load1", "1-minute load average of this host"),
        ):
            value = _num(h.get(key))
            if value is not None:
                gauge(name, doc).add_metric([node], value)
        gauge("ringrift_host_has_gpu", "1 when this host has a GPU").add_metric(
            [node], 1.0 if h.get("has_gpu") else 0.0
        )
    if probes.workers:
        worker_families(gauge, counter, node, probes.workers)
    if probes.disk_critical_ratio is not None:
        gauge(
            "ringrift_disk_critical_threshold_ratio",
            "DISK_CRITICAL_THRESHOLD (0-1): above it the host takes no new work",
        ).add_metric([node], probes.disk_critical_ratio)

    # --- broker and webhooks --------------------------------------------------------------
    if probes.broker_up is not None:
        gauge(
            "ringrift_broker_up", "1 when this node reached the broker at the last probe"
        ).add_metric([node], 1.0 if probes.broker_up else 0.0)
        counter("ringrift_broker_errors", "failed broker probes on this node").add_metric(
            [node], float(probes.broker_errors)
        )
        depth = gauge("ringrift_queue_messages", "messages waiting in a Celery queue", ("queue",))
        for q, n in sorted(probes.queues.items()):
            depth.add_metric([node, q], float(n))
    stuck = status.get("queues_without_consumers")  # execution/consumers.py's finding
    if isinstance(stuck, Mapping) and isinstance(stuck.get("queues"), list):
        listed = [q for q in stuck["queues"] if isinstance(q, Mapping) and q.get("queue")]
        gauge(
            "ringrift_queues_without_consumers",
            "queues holding messages that no live worker consumes (leader's last check)",
        ).add_metric([node], float(len(listed)))
        unconsumed = gauge(
            "ringrift_queue_unconsumed_messages",
            "messages waiting in a queue no live worker consumes",
            ("queue",),
        )
        for q in listed:
            unconsumed.add_metric([node, str(q["queue"])], _num(q.get("messages")) or 0.0)
    if probes.webhooks:
        hooks = counter(
            "ringrift_webhook_notifications",
            "webhook notifications by outcome (sent, failed, dropped, rate_limited, filtered)",
            ("outcome",),
        )
        for outcome, n in sorted(probes.webhooks.items()):
            hooks.add_metric([node, outcome], float(n))

    # --- the status server itself ---------------------------------------------------------
    gauge("ringrift_status_age_seconds", "age of the /status snapshot").add_metric(
        [node], _num(status.get("snapshot_age_s")) or 0.0
    )
    gauge("ringrift_uptime_seconds", "seconds since this coordinator started").add_metric(
        [node], _num(status.get("uptime_s")) or 0.0
    )
    return out


def worker_families(
    gauge: Callable[..., GaugeMetricFamily],
    counter: Callable[..., CounterMetricFamily],
    node: str,
    workers: Mapping[str, Mapping[str, Any]],
) -> None:
    """This host's workers, from the reports they push (execution/worker_report.py)."""
    up = gauge("ringrift_worker_up", "1 while the worker reports (every 5 s)", ("worker",))
    running = gauge("ringrift_worker_tasks_running", "tasks the worker runs now", ("worker",))
    conc = gauge(
        "ringrift_worker_concurrency", "processes of the worker (one per GPU)", ("worker",)
    )
    done = counter(
        "ringrift_worker_tasks", "tasks the worker finished since it started", ("worker", "task")
    )
    busy_s = counter(
        "ringrift_worker_busy_seconds",
        "process-seconds the worker spent running tasks (rate / concurrency = busy fraction)",
        ("worker",),
    )
    busy, slots = 0, 0
    for name, rep in sorted(workers.items()):
        live = bool(rep.get("up"))
        up.add_metric([node, name], 1.0 if live else 0.0)
        if not live:
            continue
        n, c = int(rep.get("running", 0)), int(rep.get("concurrency", 1))
        running.add_metric([node, name], float(n))
        conc.add_metric([node, name], float(c))
        busy_s.add_metric([node, name], float(rep.get("busy_seconds", 0.0)))
        for task, count in sorted((rep.get("processed") or {}).items()):
            done.add_metric([node, name, str(task)], float(count))
        busy, slots = busy + min(n, c), slots + c
    if slots:
        gauge(
            "ringrift_host_worker_busy_ratio",
            "busy fraction of this host's worker processes (one per GPU), from their reports",
        ).add_metric([node], busy / slots)


class FleetCollector(Collector):
    """Reads a CoordinatorNode at scrape time (thread-safe: scrapes run off the event loop)."""

    def __init__(
        self,
        node: Any,
        *,
        probe_host: Callable[[], Mapping[str, float]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self._clock = clock
        self._probe_host = probe_host
        self._lock = threading.Lock()
        self._host: Mapping[str, float] | None = None
        self._host_at = -PROBE_EVERY_S
        self._queues: dict[str, int] = {}
        self._broker_up: bool | None = None
        self._broker_at = -PROBE_EVERY_S
        self._broker_errors = 0
        self._workers: dict[str, dict[str, Any]] = {}
        self._redis: Any = None
        self._last_leader: tuple[Any, Any] | None = None
        self._leader_changes = 0

    # -- sources ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        server = self.node.status_server
        status = dict(server.status)
        status["snapshot_age_s"] = server.snapshot_age()
        return status

    def _ledger(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        ledger = self.node.ledger
        if ledger is None:
            return {}, {}
        try:
            with ledger.reading() as state:
                return ledger_counts(state["work"].values())
        except Exception as exc:  # a ledger not ready yet must not fail the scrape
            log.debug("metrics: ledger read failed: %s", exc)
            return {}, {}

    def _host_probe(self) -> Mapping[str, float] | None:
        now = self._clock()
        if self._host is None or now - self._host_at >= PROBE_EVERY_S:
            self._host_at = now
            try:
                if self._probe_host is not None:
                    self._host = self._probe_host()
                else:
                    from ringrift_fleet.resources import probe_resources

                    probed = probe_resources(str(self.node.config.state_dir))
                    self._host = {
                        **probed.to_dict(),
                        "load_score": probed.load_score,
                        "load1": os.getloadavg()[0],
                    }
            except Exception as exc:
                log.debug("metrics: resource probe failed: %s", exc)
        return self._host

    def _broker_probe(self, hosts: list[str]) -> None:
        now = self._clock()
        if now - self._broker_at < PROBE_EVERY_S:
            return
        self._broker_at = now
        from ringrift_fleet.execution.dispatch import queue_depths
        from ringrift_fleet.execution.queues import all_queues
        from ringrift_fleet.execution.worker_report import read_reports

        try:
            if self._redis is None:
                from ringrift_fleet.execution.redis_clients import redis_client

                self._redis = redis_client(self.node.config, timeout=BROKER_TIMEOUT_S)
            self._queues = queue_depths(self._redis, all_queues(hosts))
            self._broker_up = True
            self._workers = read_reports(self._redis, str(self.node.node_id))
        except Exception as exc:
            self._broker_errors += 1
            self._broker_up = False
            log.debug("metrics: broker probe failed: %s", exc)

    def _hosts(self, status: Mapping[str, Any]) -> list[str]:
        names = {self.node.node_id}
        inv: Any = getattr(self.node, "inventory", None)
        if inv is not None:
            with contextlib.suppress(Exception):
                names.update(inv.names())
        members = (status.get("membership") or {}).get("members")
        if isinstance(members, Mapping):
            names.update(str(m) for m in members)
        return sorted(names)

    def _count_leader_change(self, status: Mapping[str, Any]) -> int:
        seen = (status.get("leader_id"), status.get("term"))
        if self._last_leader is not None and seen != self._last_leader and seen[0] is not None:
            self._leader_changes += 1
        if seen[0] is not None:
            self._last_leader = seen
        return self._leader_changes

    def probes(self, status: Mapping[str, Any]) -> Probes:
        jobs, replaced = self._ledger()
        with self._lock:
            host = self._host_probe()
            if isinstance(status.get("scheduler"), Mapping):  # only a scheduler uses the broker
                self._broker_probe(self._hosts(status))
                broker_up: bool | None = self._broker_up
            else:
                broker_up = None
            changes = self._count_leader_change(status)
            queues, errors = dict(self._queues), self._broker_errors
            workers = dict(self._workers) if broker_up else {}
        latency = getattr(self.node.ledger, "op_latency", None)
        ledger_ops = latency.snapshot() if isinstance(latency, Histogram) else {}
        critical = _num(getattr(self.node.config, "DISK_CRITICAL_THRESHOLD", None))
        return Probes(
            jobs=jobs,
            replaced=replaced,
            host=host,
            disk_critical_ratio=None if critical is None else critical / 100.0,
            broker_up=broker_up,
            broker_errors=errors,
            queues=queues if broker_up else {},
            leader_changes=changes,
            webhooks=_webhook_stats(),
            workers=workers,
            ledger_ops=ledger_ops,
            ledger_op_buckets=latency.buckets if isinstance(latency, Histogram) else (),
        )

    def collect(self) -> Iterator[Metric]:
        status = self.status()
        yield from families(str(self.node.node_id), status, self.probes(status))


def _webhook_stats() -> dict[str, int]:
    """The process-wide notifier's counters (empty until a notification was sent)."""
    from ringrift_fleet import notifications

    notifier = getattr(notifications, "_default", None)
    stats = getattr(notifier, "stats", None)
    if not isinstance(stats, Mapping):
        return {}
    return {str(k): int(v) for k, v in stats.items() if isinstance(v, int)}


# --- what the scheduler counts ----------------------------------------------------------------


class JobDurations:
    """Run time of completed jobs per job type, in :data:`DURATION_BUCKETS`.

    Plain data (no Prometheus type): the scheduler's ledger view fills it as it
    sees each job complete, the collector reads it.  Thread-safe (ticks and
    scrapes run in different threads).
    """

    def __init__(self, buckets: Sequence[float] = DURATION_BUCKETS) -> None:
        self._hist = Histogram(buckets)
        self.buckets = self._hist.buckets

    def observe(self, job_type: str, seconds: float) -> None:
        self._hist.observe((job_type,), seconds)

    def snapshot(self) -> dict[str, tuple[list[int], float]]:
        """job type -> (cumulative counts per bucket, +Inf last; sum of seconds)."""
        return {key[0]: value for key, value in self._hist.snapshot().items()}


@dataclass
class SchedulerCounts:
    """What one coordinator's scheduler counted since it started (``Beat.counts()``)."""

    durations: Mapping[str, tuple[Sequence[int], float]] = field(default_factory=dict)
    buckets: Sequence[float] = DURATION_BUCKETS
    replacements: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (type, cause)
    fence_refusals: Mapping[str, int] = field(default_factory=dict)  # where -> n


def scheduler_families(node: str, counts: SchedulerCounts) -> list[Metric]:
    """Job durations, re-placements by cause and fence refusals (pure)."""
    hist = HistogramMetricFamily(
        "ringrift_job_duration_seconds",
        "run time of completed jobs (as the worker measured it), every job this node's "
        "ledger replica saw complete",
        labels=("node", "job_type"),
    )
    les = [str(le) for le in counts.buckets] + ["+Inf"]
    for kind, (cumulative, total) in sorted(counts.durations.items()):
        hist.add_metric(
            [node, kind], list(zip(les, (float(n) for n in cumulative), strict=True)), total
        )
    replaced = CounterMetricFamily(
        "ringrift_job_replacements",
        "attempts this node, as leader, placed again, by cause (host_death, lease_lost, "
        "hard_limit, sender_died, send_failed, worker_refused, job_failed)",
        labels=("node", "job_type", "cause"),
    )
    for (kind, cause), n in sorted(counts.replacements.items()):
        replaced.add_metric([node, kind, cause], float(n))
    fenced = CounterMetricFamily(
        "ringrift_fence_refusals",
        "effects refused by a fence, by where: send_slot (another leader already sent the "
        "attempt), ledger_result (a voided attempt's result), worker (the worker refused a "
        "stale or duplicate attempt), leader_term (a deposed leader's ledger write)",
        labels=("node", "where"),
    )
    for where, n in sorted(counts.fence_refusals.items()):
        fenced.add_metric([node, where], float(n))
    return [hist, replaced, fenced]


class SchedulerCollector(Collector):
    """Reads a scheduler's (``Beat``'s) counts at scrape time; registered by
    ``ringrift_fleet.scheduler.service.attach`` on the coordinator's registry."""

    def __init__(self, node_id: str, beat: Any) -> None:
        self.node_id = node_id
        self.beat = beat

    def collect(self) -> Iterator[Metric]:
        yield from scheduler_families(self.node_id, self.beat.counts())
