"""The fleet at its users' scale: N real hosts under scripted chaos, as one JSON line.

Each host is a network namespace on one bridge (tests/support/netns.py: the subnet
is blackholed in the main namespace first; everything is removed on exit, also on
SIGTERM/SIGINT).  Every host runs ``ringrift-fleet coordinator`` (the command
systemd runs, with ``--hosts-file`` of a generated distributed_hosts.yaml and
RINGRIFT_CLUSTER_KEY set; SWIM membership, Raft among 3 or 5 voters) and a CPU
worker ``ringrift-fleet worker --cpu --concurrency 1`` (at ``--worker-nice``, 19 by
default: on a GPU host the games run on the GPU and leave the coordinator its CPU;
here every host's games share the same few cores).  One more namespace holds
redis-server and the sampler; nothing in the main namespace ever talks to a host.
``--broker sentinel``: three more namespaces instead, each with a redis-server and
a Sentinel as the Ansible broker role runs them (a primary and two replicas, AOF
everysec, passwords, quorum 2, down-after 5 s, failover-timeout 60 s); the fleet is
given only the Sentinels (RINGRIFT_BROKER_SENTINELS) and finds the primary itself.

Workload: the built-in reference game with short self-play jobs on two cheap board
configs: ``--games-per-job`` (RINGRIFT_P2P_SELFPLAY_GAMES_PER_JOB, default 1000; with
``--promote`` unset unless given, so the demo's 8 apply) games
of the random engine take a few seconds (40 take 0.2-0.5 s).  ``--promote`` runs the
coordinators as ``ringrift-fleet coordinator --demo`` (the demo's small training
thresholds and CPU training), so training, evaluation, sync and promotions happen:
the production thresholds (5,000 games, 2 h between runs) and no training on a CPU
mean a CPU fleet never promotes.  The demo policy plays 8 games a self-play job
(sub-second jobs) unless --games-per-job sets the variable (the demo honours it).
The recorded hour runs ``--promote --games-per-job 2000``: jobs of ~20 s on this
machine's shared cores, ~1,700 an hour with ~10 promotions (GPU self-play jobs
last minutes).  The demo's sub-second jobs (~20,000 an hour) are the stress
variant: they measure how fast one leader places work, and on two cores that
bounds the busy fraction near 0.2-0.3 (docs/benchmarks.md).

Chaos (seeded, logged with timestamps; ``--schedule full`` by default, ``ci`` is
the 5-minute cluster test's shorter one): kill -9 the Raft leader's coordinator
every 10 min (systemd restarts it 10 s later); kill -9 a whole worker (its process
group) every 5 min, restarted 10 s later; a 60 s partition of two hosts (iptables
DROP on eth0 inside their namespaces); 10 % packet loss on one host (iptables
``-m statistic --mode random --probability 0.1``) for half the run; a non-voter's
coordinator restarted (SIGTERM, started again); a host that leaves gracefully
(SIGTERM to coordinator and worker) and comes back 60 s later.  With
``--broker sentinel`` also kill -9 of the Redis the Sentinels name primary at 17.5,
37.5 and 57.5 minutes (off the other faults' 5-minute grid), started again 15 s later
(the role's RestartSec) without ``replicaof``: the Sentinels make it a replica.

Measured (sampler in the broker's namespace: every coordinator's /status and the
run leases in Redis once a second; psutil on the coordinator PIDs every 5 s; the
ledger and the Celery results in Redis at the end):

  jobs_completed   ledger jobs completed (those still held at the end)
  jobs_pruned      finished jobs the leader folded into the history records under the
                   age or count cap (an extra field): jobs_completed leaves them out,
                   and the ledger-based lost/run-twice checks no longer see them (the
                   Celery results still do)
  jobs_lost        placed jobs cancelled, failed because the fleet lost them (workers
                   died until attempts ran out), or claimed/running with no run lease,
                   no stored result and no broker message after the settle; also
                   jobs the leader's /status events say it gave up, pruned before the end
  jobs_failed      jobs whose workload itself failed (an extra field; listed in detail);
                   a stage job (sync/training/evaluation) cancelled because its host
                   died is neither: its cycle restarts elsewhere (detail: stage_jobs_cancelled)
  jobs_run_twice   jobs whose workload completed (a stored non-refused, non-duplicate
                   Celery result) in two attempts, or whose attempt started twice
                   (ringrift:deliveries:<job>:<attempt> > 1), or whose ledger result is
                   not from its current attempt
  results_refused  Celery results a worker returned as "refused" (fenced stale attempts)
  leader_changes   changes of the leader most coordinators name, over the samples
  leaderless_max_s longest stretch of samples with no coordinator claiming leadership
                   (the detail's leaderless_per_leader_kill_s: each kill -> the first
                   sample naming another leader; ..._declared_s: -> the time that
                   leader's /status says it began to lead, without the sampler's round)
  detect_p50/p99_s per (death, observer): death -> the time the observer's membership
                   declared the host dead (its /status "since", on the one clock all
                   namespaces share); the detail's detect_sampled_*: -> the first
                   sample whose /status lacked the host (adds the sampler's round)
                   from its peers (1 s sampling: resolution 1 s)
                   (detail detect_by_event: per fault, the first, median and
                   last observer's declared time: how far a verdict lags)
  false_dead       (observer, peer, 10 s bucket) where a peer up and outside any chaos
                   window was missing from an observer's peers
  requeue_p50/p99_s worker killed while running a job -> the leader's "re-placed" event
                   for it (else: its next attempt seen holding the run lease)
  worker_busy_fraction  run leases held by up workers / up workers, in samples with no
                   host in a chaos window (the detail's worker_busy_fraction_per_host:
                   each host's samples outside its own windows)
  coordinator_*    RSS (MB, median over coordinators) at start (after warm-up) and end,
                   slope (median of per-coordinator least squares, never-restarted ones),
                   CPU % of one core (median over coordinators and 5 s intervals);
                   ``_second_half``: the slope over the run's second half only (flat
                   once the ledger holds SCHEDULER_LEDGER_MAX_FINISHED jobs: lower
                   it with --env to see the bound within a short run)
  status_p99_ms    /status latency over the bridge, hosts outside chaos windows (a lossy
                   host pays 1 s SYN retransmits; all hosts: in the detail line)
  promotions       sum of promotions in the leader's /status at the end
  runs_stopped_lease_lost  running copies that stopped because their run lease was
                   gone (the workers' "run lease taken over" lines): work thrown away
                   and run again; per primary kill in the detail
  broker_*         (--broker sentinel) primary kills, failovers seen, the longest: kill
                   -> the first sample whose Sentinel majority names another primary;
                   the detail's broker_failovers adds, per kill, when every
                   coordinator's /status named it (coordinators_followed_s) and when
                   the sampler could read Redis again (sampler_blind_s).  A primary
                   kill is a fault on every host: busy fractions leave its window out;
                   /status latency in it is the detail's
                   status_p99_ms_during_broker_failover

Time series: <out>/series.json (samples, RSS per coordinator, chaos events) and
<out>/busy.csv, <out>/rss.csv; ``--plot`` writes docs/img/fleet_soak_busy.png and
docs/img/fleet_soak_rss.png with matplotlib when it is installed.

  sudo python benchmarks/fleet_soak.py [--hosts 30] [--minutes 30] [--voters 3|5]
        [--seed 1] [--schedule full|ci] [--broker single|sentinel] [--promote]
        [--out DIR] [--plot]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KEY = "fleet-soak-cluster-key-0123456789abcdef"
SUBNET = "10.207.0"  # this benchmark's range; blackholed in the main namespace by NetnsLab
REDIS_PORT = 6379
SENTINEL_PORT = 26379
STATUS_PORT = 8770
# --broker sentinel: the Ansible broker role's defaults (ansible/roles/broker/defaults)
BROKER_NODES = 3  # a primary and two replicas, a Sentinel beside each
BROKER_DOWN_AFTER_MS = 5000  # broker_sentinel_down_after_ms
BROKER_FAILOVER_TIMEOUT_MS = 60000  # broker_sentinel_failover_timeout_ms
BROKER_RESTART_S = 15.0  # broker_sentinel_restart_sec: 3 x down-after, Sentinel moves first
# the end-of-run read of the ledger and of Redis (tens of thousands of keys) on a
# machine the fleet still loads: 300 s was too short for a 60-minute run's 24,000 jobs
COLLECT_TIMEOUT_S = 900.0
SAMPLE_EVERY = 1.0
PSUTIL_EVERY = 5.0
RESTART_AFTER = 10.0  # systemd's RestartSec
LEADER_WAIT_S = 30  # a leader kill waits this long for one leader before it is skipped
BOARD_CONFIGS = "hex8_2p,square8_2p"
WARMUP_S = 20.0  # samples this close to a coordinator's start are not judged
CHAOS_GRACE_S = 20.0  # after a fault ends, its hosts are still "in chaos" this long
PY = sys.executable
REPLACED_MARKS = ("re-placed", "placed again", "re-enqueued")
GIVEN_UP = " given up: "  # the leader's event: "<job> given up: <reason>"
# a failed job whose error says the fleet lost it (its workers died, attempts ran out)
# counts as lost; any other failure is the workload's own (jobs_failed)
# a worker's line when a running copy found its run lease gone (Celery's log format)
LEASE_LOST_LINE = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}): INFO/[^\]]*\] job \S+ attempt \d+ "
    r"stopped: run lease taken over",
    re.M,
)
INFRA_FAILURES = ("MAX_REDELIVERIES", "worker was lost", "given up", "lease", "attempts")


def nice_session(pid: int, nice: int) -> None:
    """Give the session that ``pid`` leads (a worker and its pool) the CPU weight of
    ``nice``.  With the kernel's autogroups on (``kernel.sched_autogroup_enabled``,
    the default on desktop and many cloud kernels) every session is its own
    scheduling group and a process's own nice counts only inside its group: each
    worker session at nice 19 still got the share of a coordinator at nice 0.
    systemd's per-unit cgroups do the same in production (``CPUWeight=``)."""
    with contextlib.suppress(OSError):  # no autogroups: the process's own nice applies
        Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")


def now() -> float:
    return time.time()


# ------------------------------------------------------------------------------------------
# the sampler and the collector: run inside the broker's namespace (ip netns exec)
# ------------------------------------------------------------------------------------------


def _get(url: str, timeout: float, token: str = "") -> tuple[Any, float]:
    import urllib.request

    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = json.loads(r.read())
        return body, (time.perf_counter() - started) * 1000.0
    except (OSError, ValueError):
        return None, (time.perf_counter() - started) * 1000.0


def _slim(status: dict[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(status, dict):
        return None
    sched = status.get("scheduler") or {}
    configs = sched.get("configs") or {}
    members = (status.get("membership") or {}).get("members") or {}
    broker = status.get("broker") or {}
    return {
        "role": status.get("role"),
        # the broker as this coordinator sees it: up, and (Sentinel set) which primary
        "broker_up": broker.get("up"),
        "broker_primary": (broker.get("topology") or {}).get("majority"),
        "leader_since": status.get("leader_since"),  # when it began to lead (its clock)
        # since when (the observer's clock: one kernel, one clock) each dead or left
        # member has been so: detection without the sampler's round in it
        "down_since": {
            n: m.get("since")
            for n, m in members.items()
            if isinstance(m, dict) and m.get("state") in ("dead", "left")
        },
        "leader_id": status.get("leader_id"),
        "term": status.get("term"),
        "peers": status.get("peers") or [],
        "uptime_s": status.get("uptime_s"),
        # the leader's re-placements (its clock is time.time, as the sampler's)
        "replaced": [
            [e.get("at"), e.get("text")]
            for e in sched.get("events") or []
            if isinstance(e, dict) and any(m in str(e.get("text")) for m in REPLACED_MARKS)
        ],
        "promotions": sum(
            int(c.get("promotions", 0) or 0) for c in configs.values() if isinstance(c, dict)
        ),
        # jobs the leader gave up: one the count cap prunes before the end is
        # missing from the final ledger, so the soak learns of it here
        "given_up": [
            [e.get("at"), e.get("text")]
            for e in sched.get("events") or []
            if isinstance(e, dict) and GIVEN_UP in str(e.get("text"))
        ],
    }


def broker_client(spec: dict[str, Any], timeout: float) -> Any:
    """A Redis client for the broker ``spec`` (``Soak.broker_spec``): the one Redis, or
    whichever node the Sentinels name primary (found again after a failover)."""
    import redis
    from redis.sentinel import Sentinel

    if spec["mode"] != "sentinel":
        return redis.Redis(host=spec["host"], port=REDIS_PORT, socket_timeout=timeout)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        [tuple(a) for a in spec["sentinels"]],
        sentinel_kwargs={"password": spec["sentinel_password"], "socket_timeout": 1.0},
        password=spec["password"],
        socket_timeout=timeout,
    )
    return sentinel.master_for(spec["master"], socket_timeout=timeout)  # type: ignore[no-untyped-call]


def sentinel_primary(spec: dict[str, Any]) -> str | None:
    """The primary a majority of the Sentinels name ("host:port"), else None (as the
    coordinators' /status judges it: one Sentinel not yet told must not hide a move)."""
    import redis

    votes: Counter[str] = Counter()
    for host, port in spec["sentinels"]:
        c = redis.Redis(host=host, port=port, password=spec["sentinel_password"],
                        socket_timeout=0.5, socket_connect_timeout=0.5)  # fmt: skip
        try:
            got = c.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", spec["master"])  # type: ignore[no-untyped-call]
            if got:
                votes[
                    f"{got[0].decode() if isinstance(got[0], bytes) else got[0]}:{int(got[1])}"
                ] += 1
        except redis.RedisError:
            continue
        finally:
            c.close()
    top = votes.most_common(1)
    return top[0][0] if top and top[0][1] * 2 > len(spec["sentinels"]) else None


def sampler_main(args: argparse.Namespace) -> int:
    """Every second: each coordinator's /status and Redis's run leases, one JSON line."""
    from concurrent.futures import ThreadPoolExecutor

    import redis

    hosts: dict[str, str] = json.loads(args.hosts_json)
    spec: dict[str, Any] = json.loads(args.broker_json)
    client = broker_client(spec, 2.0)
    stop_file = Path(args.stop_file)
    deadline = time.monotonic() + args.max_seconds
    pool = ThreadPoolExecutor(max(4, len(hosts)))
    with open(args.out, "a") as out:
        while not stop_file.exists() and time.monotonic() < deadline:
            started = time.monotonic()
            at = now()
            names = list(hosts)
            views = list(
                pool.map(
                    lambda n: _get(f"http://{hosts[n]}:{STATUS_PORT}/status", 1.5),
                    names,
                )
            )
            leases: dict[str, Any] = {}
            try:
                keys = list(client.scan_iter("ringrift:run:*", count=500))
                values = client.mget(keys) if keys else []
                for k, v in zip(keys, values, strict=True):
                    if v is None:
                        continue
                    with contextlib.suppress(ValueError, TypeError):
                        lease = json.loads(v)
                        job = k.decode().removeprefix("ringrift:run:")
                        leases[job] = [lease.get("owner"), lease.get("attempt")]
            except redis.RedisError:
                leases = {"_error": True}
            line: dict[str, Any] = {
                "at": at,
                "status": {n: _slim(v[0]) for n, v in zip(names, views, strict=True)},
                "ms": {
                    n: round(v[1], 1) for n, v in zip(names, views, strict=True) if v[0] is not None
                },
                "leases": leases,
            }
            if spec["mode"] == "sentinel":
                line["primary"] = sentinel_primary(spec)
            out.write(json.dumps(line) + "\n")
            out.flush()
            time.sleep(max(0.0, SAMPLE_EVERY - (time.monotonic() - started)))
    pool.shutdown(wait=False)
    return 0


def _read_keys(client: Any, pattern: str, chunk: int = 1000) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of every key matching ``pattern``, one MGET per ``chunk`` keys."""
    keys = list(client.scan_iter(pattern, count=chunk))
    for i in range(0, len(keys), chunk):
        part = keys[i : i + chunk]
        for key, raw in zip(part, client.mget(part), strict=True):
            if raw is not None:
                yield key, raw


def collect_main(args: argparse.Namespace) -> int:
    """The ledger (from the leader) and the Celery results/fences in Redis, as JSON."""
    started = time.monotonic()
    hosts: dict[str, str] = json.loads(args.hosts_json)
    client = broker_client(json.loads(args.broker_json), 30.0)
    leader = None
    views: dict[str, Any] = {}
    for name, addr in hosts.items():
        views[name], _ = _get(f"http://{addr}:{STATUS_PORT}/status", 5.0)
        if views[name] and views[name].get("role") == "leader":
            leader = name
    ledger = None
    status = views.get(leader) if leader else None
    errors: list[str] = []
    # the leader's replica; after the settle any voter's is the same (bounded: each once)
    for name in [leader, *hosts] if leader else list(hosts):
        if name is None:
            continue
        body, ms = _get(f"http://{hosts[name]}:{STATUS_PORT}/consensus/ledger", 60.0, KEY)
        if isinstance(body, dict) and isinstance(body.get("state"), dict):
            ledger = body["state"]
            break
        errors.append(f"{name}: no ledger ({ms:.0f} ms): {str(body)[:200]}")
    took = {"ledger_s": round(time.monotonic() - started, 1)}
    results: dict[str, Any] = {}
    # tens of thousands of results at the end of an hour: read them 1,000 to a round
    # trip (one GET each took over ten minutes beside the still-running fleet)
    for key, raw in _read_keys(client, "celery-task-meta-*"):
        with contextlib.suppress(ValueError, TypeError):
            meta = json.loads(raw)
            res = meta.get("result")
            results[key.decode().removeprefix("celery-task-meta-")] = {
                "state": meta.get("status"),
                "status": res.get("status") if isinstance(res, dict) else None,
                "duplicate": bool(res.get("duplicate")) if isinstance(res, dict) else False,
                "job_id": res.get("job_id") if isinstance(res, dict) else None,
                "attempt": res.get("attempt") if isinstance(res, dict) else None,
            }
    took["results_s"] = round(time.monotonic() - started - took["ledger_s"], 1)
    deliveries = {
        key.decode().removeprefix("ringrift:deliveries:"): int(raw)
        for key, raw in _read_keys(client, "ringrift:deliveries:*")
    }
    live: dict[str, list[str]] = {"run": [], "done": []}
    for kind in live:
        live[kind] = [
            k.decode().removeprefix(f"ringrift:{kind}:")
            for k in client.scan_iter(f"ringrift:{kind}:*", count=1000)
        ]
    queued: list[str] = []
    for key in client.scan_iter("*", count=1000, _type="list"):
        for raw in client.lrange(key, 0, -1):
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                queued.append(json.loads(raw).get("headers", {}).get("id"))
    for raw in client.hvals("unacked"):
        with contextlib.suppress(ValueError, TypeError, AttributeError, IndexError):
            queued.append(json.loads(raw)[0].get("headers", {}).get("id"))
    took["all_s"] = round(time.monotonic() - started, 1)
    print(f"collector: {json.dumps(took)}", file=sys.stderr)
    json.dump(
        {
            "leader": leader,
            "ledger": ledger,
            "errors": errors,
            "took": took,
            "leader_status": status,
            "results": results,
            "deliveries": deliveries,
            "live": live,
            "queued": [q for q in queued if q],
        },
        sys.stdout,
    )
    return 0


# ------------------------------------------------------------------------------------------
# the soak: namespaces, processes, chaos, measurement (main namespace, as root)
# ------------------------------------------------------------------------------------------


@dataclass
class ChaosEvent:
    at: float  # seconds after the chaos clock starts
    kind: str  # leader_kill, worker_kill, partition, loss, restart_nonvoter, leave
    duration: float = 0.0
    hosts: list[str] = field(default_factory=list)  # filled when it fires
    started: float = 0.0  # wall clock when it fired
    ended: float = 0.0  # wall clock when the fault was undone (restart, heal, return)
    note: str = ""
    target: str = ""  # broker_kill: the Redis node ("addr:port") it killed


def schedule(kind: str, minutes: float, broker: str = "single") -> list[ChaosEvent]:
    """The scripted faults, by offset (s) from the start of the chaos clock; with a
    Sentinel set (``broker``) also kill -9 of the Redis primary every 20 minutes."""
    total = minutes * 60.0
    ev: list[ChaosEvent] = []
    if broker == "sentinel":
        # off the 5-minute grid of the other kills: one fault's effect at a time
        at = [float(t) for t in range(1050, int(total) - 60, 1200)] or [0.55 * total]
        if kind == "ci":
            at = [125.0]
        ev += [ChaosEvent(t, "broker_kill", BROKER_RESTART_S) for t in at]
    if kind == "ci":  # the cluster test: every fault once or twice in 5 minutes
        ev += [ChaosEvent(t, "worker_kill", RESTART_AFTER) for t in (30.0, 110.0, 200.0)]
        ev += [ChaosEvent(t, "leader_kill", RESTART_AFTER) for t in (60.0, 170.0)]
        ev.append(ChaosEvent(85.0, "partition", 30.0))
        ev.append(ChaosEvent(20.0, "loss", 0.6 * total))
        ev.append(ChaosEvent(140.0, "restart_nonvoter"))
        ev.append(ChaosEvent(230.0, "leave", 30.0))
    else:
        t = 300.0
        while t < total - 60:
            ev.append(ChaosEvent(t, "worker_kill", RESTART_AFTER))
            t += 300.0
        t = 600.0
        while t < total - 60:
            ev.append(ChaosEvent(t, "leader_kill", RESTART_AFTER))
            t += 600.0
        if not any(e.kind == "leader_kill" for e in ev):  # runs shorter than 11 minutes
            ev.append(ChaosEvent(0.5 * total, "leader_kill", RESTART_AFTER))
        if not any(e.kind == "worker_kill" for e in ev):
            ev.append(ChaosEvent(0.2 * total, "worker_kill", RESTART_AFTER))
        ev.append(ChaosEvent(0.4 * total, "partition", min(60.0, 0.15 * total)))
        ev.append(ChaosEvent(0.25 * total, "loss", 0.5 * total))
        ev.append(ChaosEvent(0.6 * total, "restart_nonvoter"))
        ev.append(ChaosEvent(0.8 * total, "leave", min(60.0, 0.1 * total)))
    return sorted(ev, key=lambda e: e.at)


class Soak:
    def __init__(self, opts: argparse.Namespace, workdir: Path, say: Callable[[str], None]):
        from tests.support.netns import NetnsLab

        self.opts = opts
        self.workdir = workdir
        self.say = say
        self.rng = random.Random(opts.seed)
        self.n = opts.hosts
        self.brokers = BROKER_NODES if opts.broker == "sentinel" else 1
        self.lab = NetnsLab(opts.subnet, self.n + self.brokers, tag="sk" + os.urandom(2).hex())
        self.broker_procs: list[subprocess.Popen[bytes] | None] = [None] * self.brokers
        self.names = [f"h{i}" for i in range(self.n)]
        self.voters = self.names[: opts.voters]
        self.coord: dict[str, subprocess.Popen[bytes]] = {}
        self.worker: dict[str, subprocess.Popen[bytes]] = {}
        self.coord_started: dict[str, float] = {}
        self.coord_restarts: dict[str, int] = dict.fromkeys(self.names, 0)
        self.worker_down: dict[str, list[list[float]]] = {n: [] for n in self.names}
        self.events: list[ChaosEvent] = []
        self.rss: list[dict[str, Any]] = []  # {"at", "host", "rss_mb", "cpu_pct"}
        self.samples_path = workdir / "samples.jsonl"
        self.stop_file = workdir / "sampler.stop"
        self.sampler: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []
        self._busy_hosts: set[str] = set()  # hosts a fault is on now

    # --- addresses and environment ---------------------------------------------------------

    def ns(self, host: str) -> str:
        return self.lab.names[self.names.index(host)]

    @property
    def broker_ns(self) -> str:
        return self.lab.names[self.n]

    @property
    def broker_addr(self) -> str:
        return self.lab.address(self.n)

    def broker_addr_of(self, i: int) -> str:
        return self.lab.address(self.n + i)

    @property
    def broker_spec(self) -> dict[str, Any]:
        """What the sampler and collector connect to (``broker_client``)."""
        if self.opts.broker != "sentinel":
            return {"mode": "single", "host": self.broker_addr}
        from tests.support.sentinel import MASTER, PASSWORD, SENTINEL_PASSWORD

        return {
            "mode": "sentinel",
            "sentinels": [[self.broker_addr_of(i), SENTINEL_PORT] for i in range(self.brokers)],
            "master": MASTER,
            "password": PASSWORD,
            "sentinel_password": SENTINEL_PASSWORD,
        }

    def broker_env(self) -> dict[str, str]:
        """The fleet's broker variables: the one Redis's URL, or only the Sentinel set
        (as the Ansible role writes them: a coordinator finds the primary itself)."""
        spec = self.broker_spec
        if spec["mode"] != "sentinel":
            return {"RINGRIFT_BROKER_URL": f"redis://{self.broker_addr}:{REDIS_PORT}/0"}
        return {
            "RINGRIFT_BROKER_SENTINELS": ",".join(f"{a}:{p}" for a, p in spec["sentinels"]),
            "RINGRIFT_BROKER_MASTER_NAME": spec["master"],
            "RINGRIFT_BROKER_PASSWORD": spec["password"],
            "RINGRIFT_BROKER_SENTINEL_PASSWORD": spec["sentinel_password"],
        }

    def addr(self, host: str) -> str:
        return self.lab.address(self.names.index(host))

    def env(self, host: str) -> dict[str, str]:
        root = self.workdir / host
        env = {
            **self.broker_env(),
            "RINGRIFT_P2P_STATE_DIR": str(root / "state"),
            "RINGRIFT_P2P_ARTIFACT_DIR": str(root / "artifacts"),
            "RINGRIFT_P2P_NODE_ID": host,
            "RINGRIFT_CLUSTER_KEY": KEY,
            "RINGRIFT_SWIM_ENABLED": "true",
            "RINGRIFT_MEMBERSHIP_MODE": "swim",
            "RINGRIFT_RAFT_ENABLED": "true",
            "RINGRIFT_CONSENSUS_MODE": "raft",
            "RINGRIFT_P2P_SCHEDULER_BOARD_CONFIGS": BOARD_CONFIGS,
            "RINGRIFT_P2P_SCHEDULER_PREFETCH": "1",
            # the namespaces share two cores: host load is the soak's own, not overload
            "RINGRIFT_P2P_LOAD_MAX_FOR_NEW_JOBS": "1.0",
            "RINGRIFT_P2P_DISK_CRITICAL_THRESHOLD": "100",
            "RINGRIFT_P2P_RUN_LEASE_TTL": str(self.opts.lease_ttl),
            "PYTHONUNBUFFERED": "1",
            "HOME": str(root),
        }
        if self.opts.games_per_job is not None or not self.opts.promote:
            per_job = self.opts.games_per_job or 1000
            env["RINGRIFT_P2P_SELFPLAY_GAMES_PER_JOB"] = str(per_job)
        odd = self.names.index(host) % 2 == 1 if host in self.names else False
        for item in [*self.opts.env, *(self.opts.env_odd if odd else [])]:
            k, _, v = item.partition("=")
            env[k] = v
        return env

    def write_inventory(self) -> Path:
        import yaml

        doc = {
            "hosts": {
                n: {"address": self.addr(n), "role": "cpu", "cpus": 4, "status": "ready"}
                for n in self.names
            },
            "raft_voters": self.voters,
        }
        path = self.workdir / "distributed_hosts.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    # --- processes ---------------------------------------------------------------------------

    def _spawn(self, host: str, what: str, argv: list[str]) -> subprocess.Popen[bytes]:
        (self.workdir / host).mkdir(parents=True, exist_ok=True)
        return self.lab.spawn(
            self.ns(host), argv, self.env(host), self.workdir / host / f"{what}.log"
        )

    def start_coordinator(self, host: str) -> None:
        argv = [PY, "-m", "ringrift_fleet", "coordinator", "--node", host]
        if self.opts.promote:
            argv.append("--demo")
        argv += ["--hosts-file", str(self.hosts_file)]
        self.coord[host] = self._spawn(host, "coordinator", argv)
        self.coord_started[host] = now()

    def start_worker(self, host: str) -> None:
        argv = [PY, "-m", "ringrift_fleet", "worker", "--cpu", "--node", host]
        if self.opts.worker_nice:
            # the games a GPU host plays run on its GPU, not on the coordinator's CPU;
            # here N CPU workers share the machine's cores with N coordinators
            argv = ["nice", "-n", str(self.opts.worker_nice), *argv]
        argv += ["--concurrency", "1", "--loglevel", "info"]
        proc = self._spawn(host, "worker", argv)
        self.worker[host] = proc
        if self.opts.worker_nice:
            nice_session(proc.pid, self.opts.worker_nice)

    def kill(self, proc: subprocess.Popen[bytes] | None, sig: int, wait: float = 20) -> float:
        """Signal ``proc``'s group; the seconds until it exited (a SIGKILLed process in
        uninterruptible I/O dies only when that I/O ends: its peers cannot see it
        gone before then).  -1 when it was not running."""
        if proc is None or proc.poll() is not None:
            return -1.0
        sent = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return time.monotonic() - sent
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            return time.monotonic() - sent

    def _cli(self, i: int, port: int, password: str, *cmd: str) -> str:
        """redis-cli against broker node ``i``, from inside its own namespace ("" on error)."""
        argv = ["redis-cli", "-h", self.broker_addr_of(i), "-p", str(port)]
        argv += ["-a", password, "--no-auth-warning", *cmd]
        r = self.lab.ns(self.lab.names[self.n + i], *argv, check=False, timeout=10)
        return r.stdout if r.returncode == 0 else ""

    def start_redis_node(self, i: int, replica_of: tuple[str, int] | None) -> None:
        """Node ``i`` of the Sentinel set as the broker role runs it (AOF everysec,
        passwords); a restarted old primary starts without ``replicaof``: the Sentinels
        turn it into a replica of the new primary."""
        from tests.support.sentinel import redis_node_argv

        d = self.workdir / f"broker{i}"
        d.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server") or "redis-server"
        argv = redis_node_argv(binary, self.broker_addr_of(i), REDIS_PORT, d, replica_of)
        ns = self.lab.names[self.n + i]
        self.broker_procs[i] = self.lab.spawn(ns, argv, {}, d / "redis.log")

    def start_sentinel_set(self) -> None:
        from tests.support.sentinel import MASTER, PASSWORD, SENTINEL_PASSWORD, sentinel_conf

        primary = (self.broker_addr_of(0), REDIS_PORT)
        for i in range(self.brokers):
            self.start_redis_node(i, primary if i else None)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the replicas' first sync
            info = self._cli(0, REDIS_PORT, PASSWORD, "INFO", "replication")
            if info.count("state=online") >= self.brokers - 1:
                break
            time.sleep(0.3)
        else:
            raise RuntimeError(f"the replicas did not sync in 30 s (see {self.workdir}/broker*)")
        binary = shutil.which("redis-server") or "redis-server"
        for i in range(self.brokers):
            d = self.workdir / f"broker{i}"
            conf = d / "sentinel.conf"
            conf.write_text(
                sentinel_conf(
                    self.broker_addr_of(i),
                    SENTINEL_PORT,
                    d,
                    primary,
                    quorum=self.brokers // 2 + 1,
                    down_after_ms=BROKER_DOWN_AFTER_MS,
                    failover_timeout_ms=BROKER_FAILOVER_TIMEOUT_MS,
                )
            )
            ns = self.lab.names[self.n + i]
            self.lab.spawn(ns, [binary, str(conf), "--sentinel"], {}, d / "sentinel.log")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # each Sentinel knows the others and the replicas
            views = [
                self._cli(i, SENTINEL_PORT, SENTINEL_PASSWORD, "SENTINEL", "MASTER", MASTER)
                for i in range(self.brokers)
            ]
            pairs = [dict(zip(v.split()[::2], v.split()[1::2], strict=False)) for v in views]
            if all(
                p.get("num-other-sentinels") == str(self.brokers - 1)
                and p.get("num-slaves") == str(self.brokers - 1)
                for p in pairs
            ):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"the Sentinels did not find each other in 30 s ({self.workdir})")
        self.say(
            f"Sentinel set: primary {primary[0]}:{REDIS_PORT}, "
            f"{self.brokers - 1} replicas, {self.brokers} Sentinels "
            f"(down-after {BROKER_DOWN_AFTER_MS} ms)"
        )

    def start(self) -> None:
        self.lab.open()
        self.hosts_file = self.write_inventory()
        if self.opts.broker == "sentinel":
            self.start_sentinel_set()
        else:
            redis_dir = self.workdir / "redis"
            redis_dir.mkdir(parents=True, exist_ok=True)
            binary = shutil.which("redis-server") or "redis-server"
            argv = [binary, "--port", str(REDIS_PORT), "--bind", self.broker_addr]
            argv += ["--save", "", "--appendonly", "no", "--dir", str(redis_dir)]
            argv += ["--protected-mode", "no"]
            self.broker_procs[0] = self.lab.spawn(self.broker_ns, argv, {}, redis_dir / "redis.log")
            time.sleep(0.5)
            self.say(f"redis on {self.broker_addr}:{REDIS_PORT} in {self.broker_ns}")
        for host in self.names:
            self.start_coordinator(host)
        self.say(f"{self.n} coordinators starting ({len(self.voters)} voters)")
        for host in self.names:
            self.start_worker(host)
        self.say(f"{self.n} CPU workers starting (concurrency 1)")
        hosts = {h: self.addr(h) for h in self.names}
        argv = [PY, str(Path(__file__).resolve()), "_sample", "--hosts-json", json.dumps(hosts)]
        argv += ["--broker-json", json.dumps(self.broker_spec), "--out", str(self.samples_path)]
        argv += ["--stop-file", str(self.stop_file)]
        argv += ["--max-seconds", str(self.opts.minutes * 60 + 1800)]
        self.sampler = self.lab.spawn(self.broker_ns, argv, {}, self.workdir / "sampler.log")
        threading.Thread(target=self._psutil_loop, daemon=True).start()

    def latest(self) -> dict[str, Any] | None:
        """The sampler's newest line."""
        try:
            with open(self.samples_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 400_000))
                lines = f.read().splitlines()
            for raw in reversed(lines):
                with contextlib.suppress(ValueError):
                    return json.loads(raw)
        except OSError:
            pass
        return None

    def leader(self) -> str | None:
        s = self.latest()
        if not s:
            return None
        leaders = [n for n, v in s["status"].items() if v and v["role"] == "leader"]
        if len(leaders) == 1:
            return leaders[0]
        # The leader's own /status may have timed out under load: the leader most
        # hosts name, if a majority of those that answered name the same one.
        named = Counter(v.get("leader_id") for v in s["status"].values() if v)
        answered = sum(named.values())
        top = [(n, c) for n, c in named.most_common(1) if n is not None]
        if not leaders and top and top[0][1] * 2 > answered:
            return str(top[0][0])
        return None

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            s = self.latest()
            if s:
                up = [v for v in s["status"].values() if v]
                full = [v for v in up if len(v["peers"]) >= self.n - 1]
                if len(up) == self.n and len(full) == self.n and self.leader():
                    return True
            time.sleep(1)
        return False

    def _psutil_loop(self) -> None:
        import psutil

        procs: dict[int, Any] = {}
        while not self._stop.is_set():
            at = now()
            for host, proc in list(self.coord.items()):
                if proc.poll() is not None:
                    continue
                try:
                    p = procs.get(proc.pid)
                    if p is None:
                        p = procs[proc.pid] = psutil.Process(proc.pid)
                        p.cpu_percent(None)
                        continue
                    self.rss.append(
                        {
                            "at": at,
                            "host": host,
                            "pid": proc.pid,
                            "rss_mb": p.memory_info().rss / 1e6,
                            "cpu_pct": p.cpu_percent(None),
                        }
                    )
                except psutil.Error:
                    continue
            self._stop.wait(PSUTIL_EVERY)

    # --- chaos -------------------------------------------------------------------------------

    def pick(self, candidates: list[str]) -> str | None:
        free = [h for h in candidates if h not in self._busy_hosts]
        return self.rng.choice(free) if free else None

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        t = threading.Timer(delay, fn)
        t.daemon = True
        self._timers.append(t)
        t.start()

    def fire(self, e: ChaosEvent) -> None:
        e.started = now()
        non_voters = [h for h in self.names if h not in self.voters]
        if e.kind == "leader_kill":
            leader = self.leader()
            waited = 0
            while leader is None and waited < LEADER_WAIT_S and not self._stop.is_set():
                self._stop.wait(1.0)  # churn or a slow sample: try again, bounded
                waited += 1
                leader = self.leader()
            if leader is None:
                e.note = f"no single leader seen for {LEADER_WAIT_S} s: skipped"
                return
            if waited:
                e.note = f"killed after waiting {waited} s for a single leader"
            e.hosts = [leader]
            exited = self.kill(self.coord[leader], signal.SIGKILL)
            e.note = "; ".join(filter(None, [e.note, f"exited {exited:.2f} s after SIGKILL"]))
            self.coord_restarts[leader] += 1
            self._busy_hosts.add(leader)

            def back() -> None:
                if not self._stop.is_set():
                    self.start_coordinator(leader)
                e.ended = now()
                self._busy_hosts.discard(leader)

            self.later(e.duration, back)
        elif e.kind == "worker_kill":
            s = self.latest() or {}
            running = {
                str(owner).split("@")[0]
                for j, (owner, _a) in (s.get("leases") or {}).items()
                if j != "_error"
            }
            # a worker that is running a job, so the kill costs a re-placement
            host = self.pick(sorted(running & set(self.names))) or self.pick(self.names)
            if host is None:
                e.note = "no free host"
                return
            e.hosts = [host]
            e.note = "running " + ",".join(
                f"{j}#{a}"
                for j, (owner, a) in (s.get("leases") or {}).items()
                if j != "_error" and str(owner).startswith(f"{host}@")
            )
            self.kill(self.worker[host], signal.SIGKILL)
            self.worker_down[host].append([e.started, 0.0])
            self._busy_hosts.add(host)

            def wback() -> None:
                if not self._stop.is_set():
                    self.start_worker(host)
                e.ended = now()
                self.worker_down[host][-1][1] = e.ended
                self._busy_hosts.discard(host)

            self.later(e.duration, wback)
        elif e.kind == "partition":
            chosen: list[str] = []
            for _ in range(2):
                h = self.pick([x for x in non_voters if x not in chosen])
                if h:
                    chosen.append(h)
            e.hosts = chosen
            for h in chosen:
                self._busy_hosts.add(h)
                self.lab.cut(self.ns(h))

            def heal() -> None:
                for h in chosen:
                    self.lab.heal(self.ns(h))
                    self._busy_hosts.discard(h)
                e.ended = now()

            self.later(e.duration, heal)
        elif e.kind == "loss":
            h = self.pick(non_voters)
            if h is None:
                return
            e.hosts = [h]
            self._busy_hosts.add(h)
            rule = ["-m", "statistic", "--mode", "random", "--probability", "0.1", "-j", "DROP"]
            for chain, flag in (("INPUT", "-i"), ("OUTPUT", "-o")):
                self.lab.ns(self.ns(h), "iptables", "-I", chain, flag, "eth0", *rule)

            lossy: str = h

            def unloss() -> None:
                for chain, flag in (("INPUT", "-i"), ("OUTPUT", "-o")):
                    self.lab.ns(
                        self.ns(lossy), "iptables", "-D", chain, flag, "eth0", *rule, check=False
                    )
                self._busy_hosts.discard(lossy)
                e.ended = now()

            self.later(e.duration, unloss)
        elif e.kind == "broker_kill":
            self.kill_broker_primary(e)
        elif e.kind == "restart_nonvoter":
            h = self.pick(non_voters)
            if h is None:
                return
            e.hosts = [h]
            self.kill(self.coord[h], signal.SIGTERM)
            self.coord_restarts[h] += 1
            self.start_coordinator(h)
            e.ended = now()
        elif e.kind == "leave":
            h = self.pick(non_voters)
            if h is None:
                return
            e.hosts = [h]
            self._busy_hosts.add(h)
            self.kill(self.coord[h], signal.SIGTERM)
            self.kill(self.worker[h], signal.SIGTERM, wait=60)
            self.coord_restarts[h] += 1
            self.worker_down[h].append([e.started, 0.0])

            def comeback() -> None:
                if not self._stop.is_set():
                    self.start_coordinator(h)
                    self.start_worker(h)
                e.ended = now()
                self.worker_down[h][-1][1] = e.ended
                self._busy_hosts.discard(h)

            self.later(e.duration, comeback)
        self.say(f"chaos {e.kind} on {','.join(e.hosts) or e.target or '-'} {e.note}".rstrip())

    def kill_broker_primary(self, e: ChaosEvent) -> None:
        """kill -9 the Redis the Sentinels name primary (as the sampler last saw it);
        systemd starts it again BROKER_RESTART_S later, and it rejoins as a replica."""
        primary = (self.latest() or {}).get("primary")
        waited = 0
        while primary is None and waited < LEADER_WAIT_S and not self._stop.is_set():
            self._stop.wait(1.0)  # the Sentinels still moving an earlier primary: bounded
            waited += 1
            primary = (self.latest() or {}).get("primary")
        addrs = [f"{self.broker_addr_of(i)}:{REDIS_PORT}" for i in range(self.brokers)]
        if primary not in addrs:
            e.note = f"no primary the Sentinels agree on (saw {primary!r}): skipped"
            return
        i = addrs.index(primary)
        e.target = primary
        exited = self.kill(self.broker_procs[i], signal.SIGKILL)
        self.broker_procs[i] = None
        e.note = f"exited {exited:.2f} s after SIGKILL"

        def back() -> None:
            if not self._stop.is_set():
                self.start_redis_node(i, None)
            e.ended = now()

        self.later(e.duration, back)

    def run_chaos(self, total_s: float) -> None:
        plan = schedule(self.opts.schedule, self.opts.minutes, self.opts.broker)
        self.chaos_t0 = now()
        self.say(f"chaos clock started: {len(plan)} faults over {total_s:.0f} s")
        for e in plan:
            while not self._stop.is_set() and now() - self.chaos_t0 < e.at:
                time.sleep(0.2)
            if self._stop.is_set():
                return
            if e.at >= total_s:
                break
            self.fire(e)
            self.events.append(e)
        while not self._stop.is_set() and now() - self.chaos_t0 < total_s:
            time.sleep(0.5)

    # --- the end -----------------------------------------------------------------------------

    def undo_faults(self) -> None:
        for t in self._timers:
            t.cancel()
        for e in self.events:
            if e.ended:
                continue
            if e.kind == "broker_kill" and e.target:
                i = [f"{self.broker_addr_of(j)}:{REDIS_PORT}" for j in range(self.brokers)]
                if e.target in i and self.broker_procs[i.index(e.target)] is None:
                    self.start_redis_node(i.index(e.target), None)
            for h in e.hosts:
                if e.kind == "partition":
                    self.lab.heal(self.ns(h))
                if e.kind in ("leader_kill", "leave"):
                    self.start_coordinator(h)
                if e.kind in ("worker_kill", "leave"):
                    self.start_worker(h)
                    if self.worker_down[h] and not self.worker_down[h][-1][1]:
                        self.worker_down[h][-1][1] = now()
                if e.kind == "loss":
                    rule = ["-m", "statistic", "--mode", "random", "--probability", "0.1"]
                    for chain, flag in (("INPUT", "-i"), ("OUTPUT", "-o")):
                        self.lab.ns(
                            self.ns(h), "iptables", "-D", chain, flag, "eth0", *rule,
                            "-j", "DROP", check=False,
                        )  # fmt: skip
            e.ended = now()

    def lease_losses(self) -> list[float]:
        """When a running copy stopped because its run lease was gone ("run lease taken
        over"), from every worker's log: work thrown away and started again."""
        out = []
        for host in self.names:
            with contextlib.suppress(OSError):
                text = (self.workdir / host / "worker.log").read_text(errors="replace")
                for m in LEASE_LOST_LINE.finditer(text):
                    with contextlib.suppress(ValueError):
                        at = time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
                        out.append(time.mktime(at) + int(m.group(2)) / 1000.0)
        return sorted(out)

    def sentinel_tilts(self) -> list[str]:
        """The Sentinels' TILT entries ("<time> broker<i>"): a Sentinel whose own timer
        ran 2 s late (the machine stalled) acts on nothing for 30 s, no failover."""
        out = []
        for i in range(self.brokers if self.opts.broker == "sentinel" else 0):
            log = self.workdir / f"broker{i}" / "sentinel.log"
            with contextlib.suppress(OSError):
                for raw in log.read_text(errors="replace").splitlines():
                    if "+tilt" in raw:
                        out.append(f"{' '.join(raw.split()[3:5])} broker{i}")
        return sorted(out)

    def collect(self) -> dict[str, Any]:
        hosts = {h: self.addr(h) for h in self.names}
        argv = ["ip", "netns", "exec", self.broker_ns, PY, str(Path(__file__).resolve())]
        argv += ["_collect", "--hosts-json", json.dumps(hosts)]
        argv += ["--broker-json", json.dumps(self.broker_spec)]
        try:
            r = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=COLLECT_TIMEOUT_S,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                cwd=REPO,
            )
        except subprocess.TimeoutExpired:
            # what the samples show still counts; the job figures are then unknown
            return {"errors": [f"the collector ran past {COLLECT_TIMEOUT_S:.0f} s"]}
        if r.returncode != 0:
            raise RuntimeError(f"collector failed: {r.stderr[-2000:]}")
        return json.loads(r.stdout)

    def close(self) -> None:
        self._stop.set()
        for t in self._timers:
            t.cancel()
        with contextlib.suppress(OSError):
            self.stop_file.touch()
        if self.sampler is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.sampler.wait(5)
        for proc in list(self.worker.values()):
            self.kill(proc, signal.SIGKILL, wait=5)
        for proc in list(self.coord.values()):
            self.kill(proc, signal.SIGKILL, wait=5)
        self.lab.close()


# ------------------------------------------------------------------------------------------
# analysis (pure: samples, events, collected state -> figures)
# ------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, round(q * (len(v) - 1))))
    return round(v[k], 3)


def load_samples(path: Path) -> list[dict[str, Any]]:
    out = []
    if path.exists():
        for raw in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(raw))
    return out


def chaos_windows(events: list[dict[str, Any]], end: float) -> dict[str, list[tuple[float, float]]]:
    """Per host: the times a fault is on it (plus the grace after)."""
    win: dict[str, list[tuple[float, float]]] = {}
    for e in events:
        stop = (e["ended"] or end) + CHAOS_GRACE_S
        for h in e["hosts"]:
            win.setdefault(h, []).append((e["started"], stop))
    return win


def in_windows(t: float, wins: list[tuple[float, float]]) -> bool:
    return any(a <= t <= b for a, b in wins)


def broker_windows(events: list[dict[str, Any]], end: float) -> list[tuple[float, float]]:
    """When a Redis primary kill is on the whole fleet (plus the grace after)."""
    return [
        (e["started"], (e["ended"] or end) + CHAOS_GRACE_S)
        for e in events
        if e["kind"] == "broker_kill" and e.get("target")
    ]


def broker_failovers(
    samples: list[dict[str, Any]], events: list[dict[str, Any]], t0: float
) -> list[dict[str, Any]]:
    """Per primary kill, until the next one: when the Sentinels' majority named another
    primary (``failover_s``; None when none did: the killed node came back as primary
    first), when every coordinator's /status did (``coordinators_followed_s``), and
    when the sampler could read Redis again after it first could not
    (``sampler_blind_s``: the broker outage as a client saw it)."""
    kills = [e for e in events if e["kind"] == "broker_kill" and e.get("target")]
    out = []
    for i, e in enumerate(kills):
        until = kills[i + 1]["started"] if i + 1 < len(kills) else float("inf")
        after = [s for s in samples if e["started"] <= s["at"] < until]
        moved = next((s for s in after if s.get("primary") not in (None, e["target"])), None)
        item: dict[str, Any] = {
            "at_s": round(e["started"] - t0, 1),
            "killed": e["target"],
            "promoted": moved["primary"] if moved else None,
            "failover_s": round(moved["at"] - e["started"], 2) if moved else None,
            "coordinators_followed_s": None,
            "sampler_blind_s": None,
        }
        if moved:
            new = moved["primary"]
            for s in after:
                views = [v for v in s["status"].values() if v]
                if (
                    s["at"] >= moved["at"]
                    and views
                    and all(v.get("broker_primary") == new for v in views)
                ):
                    item["coordinators_followed_s"] = round(s["at"] - e["started"], 2)
                    break
        blind = next((s for s in after if "_error" in (s.get("leases") or {})), None)
        if blind is None:
            item["sampler_blind_s"] = 0.0
        else:
            back = next(
                (
                    s
                    for s in after
                    if s["at"] > blind["at"] and "_error" not in (s.get("leases") or {})
                ),
                None,
            )
            if back is not None:
                item["sampler_blind_s"] = round(back["at"] - e["started"], 2)
        out.append(item)
    return out


def sampler_stalls(
    samples: list[dict[str, Any]], t0: float, over_s: float = 5.0
) -> list[list[float]]:
    """[start (s from t0), length] of gaps between the sampler's rounds over ``over_s``:
    the machine itself stalled (the sampler's round is 1-3 s even under the soak's load)."""
    return [
        [round(a["at"] - t0, 1), round(b["at"] - a["at"], 1)]
        for a, b in itertools.pairwise(samples)
        if b["at"] - a["at"] > over_s
    ]


def _slope_mb_per_h(rows: list[dict[str, Any]]) -> float | None:
    """Least-squares RSS slope of one process's samples, MB per hour."""
    if len(rows) < 4:
        return None
    xs = [(r["at"] - rows[0]["at"]) / 3600.0 for r in rows]
    ys = [r["rss_mb"] for r in rows]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    if den <= 0:
        return None
    return float(sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den)


def given_up_as(why: str, last_error: str, work_type: str, max_attempts: int) -> str:
    """How a job the leader gave up counts: "lost", "failed" (by its workload) or
    "superseded" (a stage job whose cycle ends by design), from the leader's reason."""
    if "MAX_LOST_ATTEMPTS" in why or "all the ledger allows" in why:
        return "lost"  # its worker or host died more often than the budget allows
    if "MAX_REDELIVERIES=" in why:  # its own failures: the workload's, unless the
        # last one says the fleet lost it (its worker process killed, say)
        return "lost" if any(m in last_error for m in INFRA_FAILURES) else "failed"
    if "declared dead" in why:
        return "superseded"  # a stage job: its cycle starts again on a host with the games
    attempt = re.search(r"attempt (\d+) on ", why)
    if attempt and int(attempt.group(1)) >= max_attempts:
        return "lost"  # an older leader's reason: out of attempts
    return "superseded" if work_type != "selfplay" else "lost"


def classify_jobs(
    work: dict[str, Any],
    assign: dict[str, Any],
    live_run: set[str],
    live_done: set[str],
    queued: set[str],
    given_up: dict[str, str],
    max_attempts: int = 3,
) -> tuple[list[str], list[str], list[str]]:
    """(lost, failed by their workload, stage jobs ended by design) from the final
    ledger, plus jobs the leader gave up (``given_up``: job -> reason) that the
    count cap pruned before the end, judged the same way (``max_attempts``: the
    soak's MAX_REDELIVERIES, for the reasons of an older leader)."""
    lost, failed, superseded = [], [], []
    kinds = {"lost": lost, "failed": failed, "superseded": superseded}
    for k, w in work.items():
        st = w.get("status")
        why = str(w.get("error") or w.get("result") or "")
        if st == "failed" and not any(m in why for m in INFRA_FAILURES):
            failed.append(f"{k}: {why[:160]}")  # the workload failed, the fleet did not
        elif st == "cancelled" and k in given_up:
            kind = given_up_as(given_up[k], why, str(w.get("work_type")), max_attempts)
            kinds[kind].append(f"{k} {st} on {w.get('claimed_by')}: {given_up[k][:160]}")
        elif (
            st == "cancelled"
            and w.get("work_type") != "selfplay"
            and int(w.get("attempts") or 0) < int(w.get("max_attempts") or 1)
        ):
            # by design: a stage job (sync, training, evaluation) whose host died ends
            # its cycle, which starts again on a host that has the games
            superseded.append(f"{k} on {w.get('claimed_by')}")
        elif st in ("failed", "cancelled"):
            lost.append(f"{k} {st}: {why[:160]}")
        elif st in ("claimed", "running"):
            cur = assign.get(k) or {}
            task = f"{k}.a{cur.get('attempt', w.get('attempts', 1))}"
            if k not in live_run and k not in live_done and task not in queued:
                lost.append(f"{k} {st} on {w.get('claimed_by')}: no lease, result or message")
    for k, why in sorted(given_up.items()):
        if k in work:
            continue  # judged above by its final state
        kind = given_up_as(why, "", k.split(":")[0], max_attempts)
        kinds[kind].append(f"{k} given up (pruned before the end): {why[:160]}")
    return lost, failed, superseded


def analyse(
    samples: list[dict[str, Any]],
    events: list[dict[str, Any]],
    rss: list[dict[str, Any]],
    collected: dict[str, Any],
    *,
    hosts: list[str],
    worker_down: dict[str, list[list[float]]],
    coord_restarts: dict[str, int],
    t0: float,
    t_end: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON line's figures, and extra detail (lists behind the counts)."""
    detail: dict[str, Any] = {}
    windows = chaos_windows(events, t_end)
    # a broker primary kill is on every host: no host's busy fraction is judged then
    fleet_wide = broker_windows(events, t_end)
    judged = [s for s in samples if t0 <= s["at"] <= t_end]

    # leadership
    leaders_seen: list[str | None] = []
    # from the last sample with a leader, over samples with none, to the next with one
    # (a slow sampling round alone is not a leaderless stretch)
    longest, last_led, gap = 0.0, judged[0]["at"] if judged else 0.0, False
    for s in judged:
        claims = [n for n, v in s["status"].items() if v and v["role"] == "leader"]
        if claims:
            if gap:
                longest = max(longest, s["at"] - last_led)
            last_led, gap = s["at"], False
        else:
            gap = True
        named = [v["leader_id"] for v in s["status"].values() if v and v.get("leader_id")]
        top = statistics.mode(named) if named else None
        if top is not None and (not leaders_seen or leaders_seen[-1] != top):
            leaders_seen.append(top)
    if judged and gap:
        longest = max(longest, judged[-1]["at"] - last_led)
    per_kill: list[float | None] = []
    per_kill_declared: list[float | None] = []
    for e in events:
        if e["kind"] != "leader_kill" or not e["hosts"]:
            continue
        after = [
            (s, n, v)
            for s in samples
            if s["at"] >= e["started"]
            for n, v in s["status"].items()
            if v and v["role"] == "leader" and n != e["hosts"][0]
        ]
        per_kill.append(round(after[0][0]["at"] - e["started"], 2) if after else None)
        # by the new leader's own clock: when it began to lead (/status leader_since)
        since = after[0][2].get("leader_since") if after else None
        began = since - e["started"] if isinstance(since, (int, float)) else None
        per_kill_declared.append(round(began, 2) if began is not None else None)
    detail["leaderless_per_leader_kill_s"] = per_kill
    detail["leaderless_per_leader_kill_declared_s"] = per_kill_declared
    # how long each killed leader took to exit: until then its peers cannot see it gone
    detail["leader_exit_after_sigkill_s"] = [
        float(m.group(1))
        for e in events
        if e["kind"] == "leader_kill"
        and (m := re.search(r"exited ([0-9.]+) s after SIGKILL", str(e.get("note"))))
    ]

    # detection: a host dies (coordinator killed / leaves / partitioned) -> peers drop it
    detect: list[float] = []
    declared: list[float] = []  # by the observer's own clock (membership "since")
    undetected = 0
    by_event: list[dict[str, Any]] = []  # the spread from first observer to last, per fault
    for e in events:
        if e["kind"] not in ("leader_kill", "leave", "partition"):
            continue
        before = len(declared)
        for victim in e["hosts"]:
            for obs in hosts:
                if (
                    obs == victim
                    or obs in e["hosts"]
                    or in_windows(e["started"], windows.get(obs, []))
                ):
                    continue
                seen = None
                for s in samples:
                    if s["at"] < e["started"]:
                        continue
                    if e["ended"] and s["at"] > e["ended"]:
                        break
                    v = s["status"].get(obs)
                    if v and victim not in v["peers"]:
                        seen = s["at"] - e["started"]
                        since = (v.get("down_since") or {}).get(victim)
                        if isinstance(since, (int, float)) and e["started"] <= since <= s["at"] + 5:
                            declared.append(since - e["started"])
                        else:  # an older coordinator, or it never said when
                            declared.append(seen)
                        break
                if seen is None:
                    undetected += 1
                else:
                    detect.append(seen)
        mine = sorted(declared[before:])
        if mine:
            by_event.append(
                {
                    "kind": e["kind"],
                    "hosts": e["hosts"],
                    "at_s": round(e["started"] - t0, 1),
                    "observers": len(mine),
                    "first_s": round(mine[0], 2),
                    "median_s": round(statistics.median(mine), 2),
                    "last_s": round(mine[-1], 2),
                }
            )
    detail["undetected_pairs"] = undetected
    detail["detect_by_event"] = by_event
    # what the 1 s sampler saw (its rounds take 2-5 s under the soak's load)
    detail["detect_sampled_p50_s"] = pct(detect, 0.5)
    detail["detect_sampled_p99_s"] = pct(detect, 0.99)

    # false dead: an up peer outside chaos missing from an up observer's peers
    bad: set[tuple[str, str, int]] = set()
    for s in judged:
        t = s["at"]
        for obs, v in s["status"].items():
            if v is None or float(v.get("uptime_s") or 0) < WARMUP_S:
                continue
            if in_windows(t, windows.get(obs, [])):
                continue
            for peer, pv in s["status"].items():
                if peer == obs or pv is None or float(pv.get("uptime_s") or 0) < WARMUP_S:
                    continue
                if in_windows(t, windows.get(peer, [])):
                    continue
                if peer not in v["peers"]:
                    bad.add((obs, peer, int(t // 10)))
    detail["false_dead_pairs"] = sorted({f"{o}->{p}" for o, p, _ in bad})[:20]

    # requeue: worker killed -> its job's next attempt holds a run lease
    requeue: list[float] = []
    for e in events:
        if e["kind"] != "worker_kill" or not e["note"].startswith("running "):
            continue
        for item in e["note"].removeprefix("running ").split(","):
            if "#" not in item:
                continue
            job, _, a = item.rpartition("#")
            said = [
                float(at) - e["started"]
                for s in samples
                if s["at"] >= e["started"]
                for v in s["status"].values()
                if v
                for at, text in v.get("replaced") or []
                if at and float(at) >= e["started"] and job in str(text)
            ]
            if said:  # the leader's event: re-placed at
                requeue.append(min(said))
                continue
            for s in samples:  # else: the next attempt seen holding its run lease
                if s["at"] < e["started"]:
                    continue
                lease = (s.get("leases") or {}).get(job)
                if lease and lease[1] is not None and a.isdigit() and int(lease[1]) > int(a):
                    requeue.append(s["at"] - e["started"])
                    break

    # busy fraction: run leases of up workers / up workers, each sample
    def worker_up(h: str, t: float) -> bool:
        return not any(a <= t <= (b or t_end) + 5 for a, b in worker_down.get(h, []))

    series = []
    busy_out: list[float] = []
    busy_all: list[float] = []
    held = quiet = 0  # host-samples: busy and all, of hosts outside their own windows
    for s in judged:
        t = s["at"]
        leases = s.get("leases") or {}
        if "_error" in leases:
            continue
        up = [h for h in hosts if worker_up(h, t)]
        busy = {str(o).split("@")[0] for j, (o, _a) in leases.items()}
        frac = len([h for h in up if h in busy]) / len(up) if up else 0.0
        series.append({"t": round(t - t0, 1), "busy": round(frac, 3)})
        busy_all.append(frac)
        broker_fault = in_windows(t, fleet_wide)
        if not broker_fault and not any(in_windows(t, w) for w in windows.values()):
            busy_out.append(frac)
        calm = [] if broker_fault else [h for h in up if not in_windows(t, windows.get(h, []))]
        quiet += len(calm)
        held += len([h for h in calm if h in busy])
    detail["worker_busy_fraction_all"] = round(statistics.fmean(busy_all), 3) if busy_all else None
    # per host: every sample of a host outside its own chaos windows (the headline
    # figure drops a whole sample while any host is in one: with the full schedule
    # that leaves mostly the first three minutes)
    detail["worker_busy_fraction_per_host"] = round(held / quiet, 3) if quiet else None
    detail["busy_samples_outside_chaos"] = len(busy_out)
    detail["busy_series"] = series

    # coordinators: RSS and CPU
    judged_rss = [r for r in rss if r["at"] >= t0]
    by_host: dict[str, list[dict[str, Any]]] = {}
    for r in judged_rss:
        by_host.setdefault(r["host"], []).append(r)
    starts, ends, slopes, late_slopes = [], [], [], []
    half = t0 + (max((r["at"] for r in judged_rss), default=t0) - t0) / 2
    for h, rows in by_host.items():
        first_pid = rows[0]["pid"]
        same = [r for r in rows if r["pid"] == first_pid]
        starts.append(rows[0]["rss_mb"])
        ends.append(rows[-1]["rss_mb"])
        if coord_restarts.get(h, 0) == 0 and len(same) >= 4:
            slope = _slope_mb_per_h(same)
            if slope is not None:
                slopes.append(slope)
            # the second half alone: flat once the ledger holds its cap of finished jobs
            late = _slope_mb_per_h([r for r in same if r["at"] >= half])
            if late is not None:
                late_slopes.append(late)
    cpu = [r["cpu_pct"] for r in judged_rss]
    detail["rss_slope_mb_per_h_per_host"] = [round(s, 2) for s in slopes]

    # jobs, from the ledger and Redis at the end
    ledger = collected.get("ledger") or {}
    work: dict[str, Any] = ledger.get("work") or {}
    assign: dict[str, Any] = ledger.get("assign") or {}
    results: dict[str, Any] = collected.get("results") or {}
    live_run = set((collected.get("live") or {}).get("run") or [])
    live_done = set((collected.get("live") or {}).get("done") or [])
    queued = set(collected.get("queued") or [])
    completed = [k for k, w in work.items() if w.get("status") == "completed"]
    given_up = {
        str(text).partition(GIVEN_UP)[0]: str(text).partition(GIVEN_UP)[2]
        for s in samples
        for v in s["status"].values()
        if v
        for _at, text in v.get("given_up") or []
    }
    lost, failed, superseded = classify_jobs(work, assign, live_run, live_done, queued, given_up)
    ran: dict[str, set[int]] = {}
    refused = 0
    for r in results.values():
        if r.get("status") == "refused":
            refused += 1
            continue
        if r.get("state") == "SUCCESS" and not r.get("duplicate") and r.get("job_id"):
            ran.setdefault(str(r["job_id"]), set()).add(int(r.get("attempt") or 0))
    twice = {j for j, a in ran.items() if len(a) > 1}
    for key, count in (collected.get("deliveries") or {}).items():
        if count > 1:
            twice.add(
                key.rpartition(":")[0] + f" (attempt {key.rpartition(':')[2]} started {count}x)"
            )
    for k in completed:
        res = work[k].get("result") or {}
        cur = assign.get(k) or {}
        if isinstance(res, dict) and "attempt" in res and res["attempt"] != cur.get("attempt"):
            twice.add(
                f"{k} (ledger result from attempt {res['attempt']}, current {cur.get('attempt')})"
            )
    detail["jobs_lost_list"] = lost[:20]
    detail["jobs_failed_list"] = failed[:20]
    detail["stage_jobs_cancelled"] = superseded[:20]
    detail["jobs_run_twice_list"] = sorted(twice)[:20]
    detail["ledger_jobs"] = len(work)
    status = collected.get("leader_status") or {}
    configs = (status.get("scheduler") or {}).get("configs") or {}
    promotions = sum(
        int(c.get("promotions", 0) or 0) for c in configs.values() if isinstance(c, dict)
    )

    status_ms = [
        ms
        for s in judged
        for h, ms in (s.get("ms") or {}).items()
        if not in_windows(s["at"], windows.get(h, []))
    ]
    all_ms = [ms for s in judged for ms in (s.get("ms") or {}).values()]
    detail["status_p99_ms_all_hosts"] = pct(all_ms, 0.99)
    detail["status_p50_ms"] = pct(status_ms, 0.5)
    # while the Redis primary is being moved: /status must not wait on the broker
    broker_ms = [ms for s in judged if in_windows(s["at"], fleet_wide)
                 for ms in (s.get("ms") or {}).values()]  # fmt: skip
    detail["status_p99_ms_during_broker_failover"] = pct(broker_ms, 0.99)
    # a coordinator that said the broker was down while no fault was on it or the broker
    detail["broker_down_said_outside_broker_faults"] = sum(
        1
        for s in judged
        if not in_windows(s["at"], fleet_wide)
        for h, v in s["status"].items()
        if v and v.get("broker_up") is False and not in_windows(s["at"], windows.get(h, []))
    )
    failovers = broker_failovers(samples, events, t0)
    detail["broker_failovers"] = failovers
    detail["sampler_stalls_over_5s"] = sampler_stalls(samples, t0)
    line = {
        "hosts": len(hosts),
        "minutes": round((t_end - t0) / 60.0, 1),
        "jobs_completed": len(completed),
        "jobs_pruned": ledger.get("pruned"),
        "jobs_lost": len(lost),
        "jobs_run_twice": len(twice),
        "jobs_failed": len(failed),
        "results_refused": refused,
        "leader_changes": max(0, len(leaders_seen) - 1),
        "leaderless_max_s": round(longest, 2),
        "detect_p50_s": pct(declared, 0.5),
        "detect_p99_s": pct(declared, 0.99),
        "false_dead": len(bad),
        "requeue_p50_s": pct(requeue, 0.5),
        "requeue_p99_s": pct(requeue, 0.99),
        "worker_busy_fraction": round(statistics.fmean(busy_out), 3) if busy_out else None,
        "coordinator_rss_mb_start": round(statistics.median(starts), 1) if starts else None,
        "coordinator_rss_mb_end": round(statistics.median(ends), 1) if ends else None,
        "coordinator_rss_slope_mb_per_h": round(statistics.median(slopes), 2) if slopes else None,
        "coordinator_rss_slope_mb_per_h_second_half": (
            round(statistics.median(late_slopes), 2) if late_slopes else None
        ),
        "coordinator_cpu_pct_p50": pct(cpu, 0.5),
        "status_p99_ms": pct(status_ms, 0.99),
        "promotions": promotions,
        "broker": "sentinel" if any(s.get("primary") for s in samples[:50]) else "single",
    }
    if failovers:
        done = [f["failover_s"] for f in failovers if f["failover_s"] is not None]
        blind = [f["sampler_blind_s"] for f in failovers if f["sampler_blind_s"] is not None]
        line["broker_primary_kills"] = len(failovers)
        line["broker_failovers"] = len(done)
        line["broker_failover_max_s"] = max(done) if done else None
        line["broker_outage_max_s"] = max(blind) if blind else None
    if not ledger:  # no ledger read at the end: unknown, not zero
        for key in ("jobs_completed", "jobs_lost", "jobs_run_twice", "jobs_failed"):
            line[key] = None
    return line, detail


def write_series(
    out: Path,
    detail: dict[str, Any],
    events: list[dict[str, Any]],
    rss: list[dict[str, Any]],
    t0: float,
) -> None:
    with open(out / "busy.csv", "w") as f:
        f.write("t_s,busy_fraction\n")
        for p in detail["busy_series"]:
            f.write(f"{p['t']},{p['busy']}\n")
    with open(out / "rss.csv", "w") as f:
        f.write("t_s,host,pid,rss_mb,cpu_pct\n")
        for r in rss:
            f.write(
                f"{r['at'] - t0:.1f},{r['host']},{r['pid']},{r['rss_mb']:.1f},{r['cpu_pct']:.1f}\n"
            )
    with open(out / "events.csv", "w") as f:
        f.write("t_s,kind,hosts,duration_s,note\n")
        for e in events:
            f.write(
                f"{e['started'] - t0:.1f},{e['kind']},{' '.join(e['hosts']) or e.get('target', '')},"
                f'{(e["ended"] or e["started"]) - e["started"]:.1f},"{e["note"]}"\n'
            )


def plot(out_dir: Path, detail: dict[str, Any], events: list[dict[str, Any]],
         rss: list[dict[str, Any]], t0: float, title: str) -> list[Path]:  # fmt: skip
    """PNG plots with matplotlib, if it is installed (it is not a dependency)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    colours = {
        "leader_kill": "red",
        "worker_kill": "orange",
        "partition": "purple",
        "loss": "grey",
        "restart_nonvoter": "blue",
        "leave": "green",
        "broker_kill": "brown",
    }
    fig, ax = plt.subplots(figsize=(10, 4))
    xs = [p["t"] / 60 for p in detail["busy_series"]]
    ax.plot(xs, [p["busy"] for p in detail["busy_series"]], lw=0.8, color="black")
    for e in events:
        a = (e["started"] - t0) / 60
        b = ((e["ended"] or e["started"]) - t0) / 60
        c = colours.get(e["kind"], "black")
        if b - a > 0.05:
            ax.axvspan(a, b, color=c, alpha=0.15)
        ax.axvline(a, color=c, lw=1, label=e["kind"])
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="lower left")
    ax.set_xlabel("minutes")
    ax.set_ylabel("workers busy (fraction)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"fleet soak: worker busy fraction, chaos marked ({title})")
    busy_png = out_dir / "fleet_soak_busy.png"
    fig.tight_layout()
    fig.savefig(busy_png, dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(10, 4))
    by: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rss:
        by.setdefault((r["host"], r["pid"]), []).append(r)
    for rows in by.values():
        ax.plot([(r["at"] - t0) / 60 for r in rows], [r["rss_mb"] for r in rows], lw=0.6)
    ax.set_xlabel("minutes")
    ax.set_ylabel("coordinator RSS (MB)")
    ax.set_title(f"fleet soak: RSS per coordinator process ({title})")
    rss_png = out_dir / "fleet_soak_rss.png"
    fig.tight_layout()
    fig.savefig(rss_png, dpi=100)
    plt.close(fig)
    return [busy_png, rss_png]


# ------------------------------------------------------------------------------------------


def run_soak(opts: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("fleet_soak: needs root (network namespaces, iptables)", file=sys.stderr)
        return 2
    if not 2 <= opts.hosts <= 200:
        print(f"fleet_soak: --hosts {opts.hosts}: expected 2..200", file=sys.stderr)
        return 2
    if opts.voters not in (1, 3, 5) or opts.voters > opts.hosts:
        print(f"fleet_soak: --voters {opts.voters}: expected 1, 3 or 5, at most --hosts",
              file=sys.stderr)  # fmt: skip
        return 2
    if opts.minutes <= 0:
        print(f"fleet_soak: --minutes {opts.minutes}: expected > 0", file=sys.stderr)
        return 2
    for item in opts.env:
        if "=" not in item:
            print(f"fleet_soak: --env {item!r}: expected NAME=VALUE", file=sys.stderr)
            return 2
    out = Path(opts.out) if opts.out else Path(tempfile.mkdtemp(prefix="fleet-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="fleet-soak-run-"))
    os.chmod(workdir, 0o755)
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} +{time.monotonic() - started:7.1f}s] {text}",
              file=sys.stderr, flush=True)  # fmt: skip

    soak = Soak(opts, workdir, say)

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    code = 1
    try:
        soak.start()
        if not soak.wait_ready(opts.startup_timeout):
            say(f"fleet not ready in {opts.startup_timeout:.0f}s (see {workdir})")
            s = soak.latest() or {"status": {}}
            say("up: " + " ".join(f"{n}:{len(v['peers']) if v else '-'}"
                                  for n, v in s["status"].items()))  # fmt: skip
            return 1
        say(f"fleet ready: leader {soak.leader()}")
        t0 = now()
        soak.run_chaos(opts.minutes * 60.0)
        t_end = now()
        say("chaos over: undoing faults, settling")
        soak.undo_faults()
        time.sleep(opts.settle)
        first = soak.collect()
        say(f"first collection: {first.get('took')} {first.get('errors') or ''}")
        time.sleep(max(2 * opts.lease_ttl, 10))
        collected = soak.collect()
        say(f"second collection: {collected.get('took')} {collected.get('errors') or ''}")
        if not collected.get("ledger") and first.get("ledger"):
            # the first read alone still counts every job (a job between states in it
            # may then look lost: the figures say which read they come from)
            collected = {**first, "errors": [*(collected.get("errors") or []),
                                             "second collection failed: figures from the first"]}  # fmt: skip
        # a job that was momentarily between states in the first read is not lost
        collected["_first"] = first
        events = [e.__dict__ for e in soak.events]
        line, detail = analyse(
            load_samples(soak.samples_path),
            events,
            soak.rss,
            collected,
            hosts=soak.names,
            worker_down=soak.worker_down,
            coord_restarts=soak.coord_restarts,
            t0=t0,
            t_end=t_end,
        )
        if opts.broker == "sentinel":
            detail["sentinel_tilts"] = soak.sentinel_tilts()
        stopped = soak.lease_losses()
        line["runs_stopped_lease_lost"] = len(stopped)
        detail["runs_stopped_lease_lost_per_broker_kill"] = [
            sum(1 for t in stopped if e["started"] <= t <= (e["ended"] or e["started"]) + 60)
            for e in events
            if e["kind"] == "broker_kill" and e.get("target")
        ]
        write_series(out, detail, events, soak.rss, t0)
        shutil.copy(soak.samples_path, out / "samples.jsonl")
        with open(out / "collected.json", "w") as f:
            json.dump(collected, f)
        if not collected.get("ledger"):
            say(f"no ledger read at the end: {collected.get('errors')}")
        with open(out / "series.json", "w") as f:
            json.dump({"line": line, "detail": detail, "events": events, "rss": soak.rss,
                       "t0": t0, "t_end": t_end}, f)  # fmt: skip
        for e in events:
            say(f"event +{e['started'] - t0:6.1f}s {e['kind']} "
                f"{','.join(e['hosts']) or e.get('target', '')} "
                f"({(e['ended'] or e['started']) - e['started']:.1f}s) {e['note']}")  # fmt: skip
        extra = {k: v for k, v in detail.items() if k != "busy_series"}
        say("detail: " + json.dumps(extra))
        if opts.plot:
            pngs = plot(REPO / "docs" / "img", detail, events, soak.rss, t0,
                        f"{opts.hosts} hosts, {opts.minutes:g} min")  # fmt: skip
            say(
                "plots: "
                + (
                    ", ".join(map(str, pngs))
                    if pngs
                    else "matplotlib is not installed: no plots (series in " + str(out) + ")"
                )
            )
        say(f"series: {out}")
        print(json.dumps(line), flush=True)
        code = 0
    except KeyboardInterrupt:
        say("interrupted: tearing down")
        code = 130
    finally:
        soak.close()
        for signum, handler in old.items():
            signal.signal(signum, handler)
        if not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"kept {workdir}")
    return code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = ap.add_subparsers(dest="cmd")
    s = sub.add_parser("_sample")
    s.add_argument("--hosts-json", required=True)
    s.add_argument("--broker-json", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--stop-file", required=True)
    s.add_argument("--max-seconds", type=float, default=7200)
    c = sub.add_parser("_collect")
    c.add_argument("--hosts-json", required=True)
    c.add_argument("--broker-json", required=True)
    ap.add_argument("--hosts", type=int, default=30)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--voters", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--schedule", choices=("full", "ci"), default="full")
    ap.add_argument(
        "--broker",
        choices=("single", "sentinel"),
        default="single",
        help="one Redis, or a Sentinel set (3 Redis, 3 Sentinels, the broker role's "
        "settings) whose primary the chaos kills every 20 minutes",
    )
    ap.add_argument(
        "--promote",
        action="store_true",
        help="demo thresholds (coordinator --demo): promotions on a CPU fleet",
    )
    ap.add_argument(
        "--worker-nice",
        type=int,
        default=19,
        help="nice of the CPU workers (0: none); their games stand in for GPU work",
    )
    ap.add_argument("--games-per-job", type=int, default=None)  # 1000; --promote: the demo's
    ap.add_argument("--lease-ttl", type=float, default=10.0, help="RINGRIFT_P2P_RUN_LEASE_TTL")
    ap.add_argument("--settle", type=float, default=30.0, help="s after the chaos before counting")
    ap.add_argument("--startup-timeout", type=float, default=300.0)
    ap.add_argument("--subnet", default=SUBNET, help="a /24 prefix, e.g. 10.207.0")
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for every coordinator and worker",
    )
    ap.add_argument(
        "--env-odd",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the odd-numbered hosts only (h1, h3, ...): a side-by-side "
        "comparison in one run",
    )
    ap.add_argument("--out", help="directory for the time series (default: a temp dir)")
    ap.add_argument("--plot", action="store_true", help="PNGs into docs/img (needs matplotlib)")
    ap.add_argument("--keep", action="store_true", help="keep the run's state dirs and logs")
    args = ap.parse_args(argv)
    if args.cmd == "_sample":
        return sampler_main(args)
    if args.cmd == "_collect":
        return collect_main(args)
    return run_soak(args)


if __name__ == "__main__":
    sys.exit(main())
