"""The broker's primary killed again and again: how long until Sentinel names a new
one, how long until jobs complete again, and whether any job was lost or run twice.

Starts (on 127.0.0.1) three redis-server (a primary and two replicas, AOF and
passwords on) and three Sentinels (down-after 1 s), one ``ringrift-fleet
coordinator`` with the scheduler placing real self-play jobs, and one CPU Celery
worker, all given only the Sentinel set.  Then ``--kills`` times: ``kill -9`` the
current primary, time the promotion and the first job completed after the kill,
bring the killed node back (Sentinel makes it a replica) and wait until it is in
sync.  At the end every job placed before a kill must have completed, and the
worker's log must show no job executed twice.

Measured first, in the same run: the Beat's fenced send path (per send: slot
``SET NX`` and fence in one script that also marks the previous send "sent",
Celery publish; per tick of 10 sends: the last "sent" mark, then one ``WAIT 1``
when replicas exist) in sends per second through the Sentinel set versus a single
redis-server configured like every node of the set (AOF, password), both built by
the production code (``create_app``, ``redis_client``); and fence writes per second
with a ``WAIT 1`` each.  ``--rounds`` rounds (≥ 5); within a round the two sides
take turns tick by tick.  ``--throughput-only`` stops there.

Prints one JSON line: ``{"failover_s", "first_job_after_s", "jobs_lost",
"jobs_run_twice", "fence_writes_per_s_with_wait", "dispatch_ratio", …}``, every
figure as median/min/max over its rounds, with the load average before and after
the send-path rounds (the machine is shared: say what else ran).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from ringrift_fleet.config import load_config  # noqa: E402
from ringrift_fleet.execution.app import create_app  # noqa: E402
from ringrift_fleet.execution.dispatch import send_job  # noqa: E402
from ringrift_fleet.execution.fencing import publish_fence  # noqa: E402
from ringrift_fleet.execution.redis_clients import redis_client, replica_wait  # noqa: E402
from ringrift_fleet.scheduler.slots import RedisSlots  # noqa: E402
from tests.integration.test_broker_sentinel_failover import (  # noqa: E402
    _done,
    executions,
    fleet_env,
)
from tests.support.celery_worker import cpu_worker_args, start_workers  # noqa: E402
from tests.support.coordinators import LocalFleet  # noqa: E402
from tests.support.procs import stop, wait_for  # noqa: E402
from tests.support.redis_server import start_redis  # noqa: E402
from tests.support.sentinel import SentinelSet  # noqa: E402

SENDS = 200  # per send-path round
ROUNDS = 7  # alternating Sentinel set / single Redis, reported as median / min / max
WARMUP = 20  # sends before the first round: connections, Lua scripts, kombu's producer
PER_TICK = 10  # sends per Beat tick (one WAIT 1 after them)


def spread(values: list[float], digits: int = 3) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


class SendPath:
    """The Beat's fenced send path on one broker, built once (as a coordinator keeps
    its app and client) through the same code as production: ``create_app``,
    ``redis_client`` and the Interpreter's calls on ``RedisSlots``.  Per send: slot
    and fence in one script (``claim_and_fence``) carrying the previous send's "sent"
    mark, the Celery publish; per ``per_tick`` sends: the last mark, then one ``WAIT
    1`` (the Beat's one per tick, a no-op on a broker without replicas)."""

    def __init__(self, cfg: Any, per_tick: int = PER_TICK) -> None:
        self.app = create_app(cfg)
        self.client = redis_client(cfg, timeout=5)
        self.slots = RedisSlots(self.client)
        self.wait = replica_wait(cfg, self.client)
        self.queue = f"bench.nobody.{uuid.uuid4().hex[:6]}"
        self.per_tick, self.sent = per_tick, 0

    def tick(self) -> float:
        """One Beat tick's sends (``per_tick`` of them, the marks, the WAIT): seconds taken."""
        t0 = time.perf_counter()
        sent: list[tuple[str, int]] = []  # sent, "sent" mark not yet written
        for _ in range(self.per_tick):
            i, self.sent = self.sent, self.sent + 1
            job = f"bench:{self.queue}:{i}"
            if not self.slots.claim_and_fence(job, 1, "bench", 600, f"tok{i}", 600, sent):
                raise RuntimeError(f"slot of {job} already taken")
            sent = []
            send_job(
                "noop",
                {},
                queue=self.queue,
                job_id=job,
                fence={"token": f"tok{i}", "attempt": 1, "term": 1},
                app=self.app,
            )
            sent.append((job, 1))
        self.slots.mark_sent_many(sent, "bench", 600)
        self.wait()
        return time.perf_counter() - t0

    def fence_writes(self) -> float:
        """``per_tick`` fence writes with a ``WAIT 1`` each (what a WAIT per write
        would cost): seconds taken."""
        t0 = time.perf_counter()
        for _ in range(self.per_tick):
            i, self.sent = self.sent, self.sent + 1
            publish_fence(self.client, f"bench:fence:{self.queue}:{i}", f"t{i}", 600)
            self.wait()
        return time.perf_counter() - t0

    def empty_queue(self) -> None:
        self.client.delete(self.queue)  # both sides keep an empty queue between rounds

    def close(self) -> None:
        self.app.close()
        self.client.close()


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def throughput(cfg: Any, single_cfg: Any, rounds: int, sends: int) -> dict[str, Any]:
    """Sends per second on each side, ``rounds`` times.  Within a round the two sides
    take turns tick by tick (10 sends and a WAIT each; who goes first alternates), so
    a burst of the machine's other load falls on both alike.  Median / min / max of
    each side and of the per-round ratio, never the best round."""
    sides = {"sentinel": SendPath(cfg), "single": SendPath(single_cfg)}
    rates: dict[str, list[float]] = {k: [] for k in sides}
    fences: dict[str, list[float]] = {k: [] for k in sides}
    ticks = max(1, sends // PER_TICK)
    load = [loadavg()]
    try:
        for side in sides.values():
            for _ in range(max(1, WARMUP // PER_TICK)):
                side.tick()
            side.empty_queue()
        for _ in range(rounds):
            spent = dict.fromkeys(sides, 0.0)
            fenced = dict.fromkeys(sides, 0.0)
            for t in range(ticks):
                order = list(sides) if t % 2 == 0 else list(reversed(sides))
                for name in order:
                    spent[name] += sides[name].tick()
                for name in order:
                    fenced[name] += sides[name].fence_writes()
            for name, side in sides.items():
                side.empty_queue()
                rates[name].append(ticks * PER_TICK / spent[name])
                fences[name].append(ticks * PER_TICK / fenced[name])
        load.append(loadavg())
    finally:
        for side in sides.values():
            side.close()
    ratios = [a / b for a, b in zip(rates["sentinel"], rates["single"], strict=True)]
    return {
        "rounds": rounds,
        "sends_per_round": ticks * PER_TICK,
        "sends_per_s_sentinel": spread(rates["sentinel"], 1),
        "sends_per_s_single": spread(rates["single"], 1),
        "dispatch_ratio": spread(ratios),
        "fence_writes_per_s_with_wait": spread(fences["sentinel"], 1),
        "fence_writes_per_s_single": spread(fences["single"], 1),
        "loadavg_before_after": load,
        "cpus": os.cpu_count(),
    }


def work(f: LocalFleet) -> dict[str, dict[str, Any]]:
    try:
        return dict(f.ledger("n0")["work"])
    except Exception:
        return {}


def failovers(
    f: LocalFleet, s: SentinelSet, env: dict[str, str], root: Path, args: Any, workers: list[Any]
) -> dict[str, Any]:
    """``args.kills`` kills of the primary with real jobs running (see the module doc)."""
    out: dict[str, Any] = {"kills": 0}
    f.start_all(timeout=60)
    workers += start_workers([(cpu_worker_args("n0"), "n0@cpu", root / "w-n0.log")], env)
    assert f.wait_leader(30), f.log("n0")
    assert wait_for(lambda: len(_done(work(f))) >= 2, 120, 0.5), f.log("n0")
    failover, first_job = [], []
    placed: set[str] = set()
    for _ in range(args.kills):
        before = work(f)
        done_before = _done(before)
        placed |= set(before) - done_before
        old = s.kill_primary()
        t0 = time.monotonic()
        if not wait_for(lambda o=old: s.primary_port() not in (None, o), args.timeout, 0.05):
            out["error"] = f"no promotion within {args.timeout} s"
            break
        failover.append(time.monotonic() - t0)
        if not wait_for(lambda d=done_before: len(_done(work(f)) - d) >= 1, args.timeout, 0.1):
            out["error"] = f"no job completed within {args.timeout} s of a kill"
            break
        first_job.append(time.monotonic() - t0)
        s.restart(old)  # it comes back as a replica of the new primary
        new = s.client(s.primary_port() or 0)

        def synced(new: Any = new) -> bool:
            try:
                info = new.info("replication")
                states = [info.get(f"slave{i}", {}).get("state") for i in range(2)]
                return states == ["online", "online"]
            except Exception:
                return False

        wait_for(synced, 30, 0.2)
        out["kills"] += 1
    # every job placed before a kill must complete (bounded wait)
    wait_for(lambda: placed <= _done(work(f)), 120, 0.5)
    final = work(f)
    runs = executions(workers[0].log_text())
    out.update(
        failover_s=spread(failover),
        first_job_after_s=spread(first_job),
        jobs_lost=len(placed - _done(final)),
        lost_detail={
            j: {k: final.get(j, {}).get(k) for k in ("status", "attempts", "error")}
            for j in sorted(placed - _done(final))
        },
        jobs_run_twice=sum(1 for n in runs.values() if n > 1),
        jobs_completed=len(_done(final)),
        jobs_placed_before_kills=len(placed),
        worker_restarted=workers[0].proc.poll() is not None,
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=90.0, help="s per kill before giving up")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="send-path rounds per side")
    ap.add_argument("--sends", type=int, default=SENDS, help="sends per round")
    ap.add_argument(
        "--throughput-only",
        action="store_true",
        help="measure the send path only (no coordinator, worker or kills)",
    )
    args = ap.parse_args()
    if args.rounds < 5:
        ap.error(f"--rounds {args.rounds}: at least 5 (a median of fewer says little)")
    if args.sends < 20:
        ap.error(f"--sends {args.sends}: at least 20 per round")
    if args.kills < 0:
        ap.error(f"--kills {args.kills}: must be 0 or more")
    root = Path(tempfile.mkdtemp(prefix="broker-failover-"))
    s = SentinelSet(root / "broker")
    single: Any = None
    workers: list[Any] = []
    out: dict[str, Any] = {}
    f: LocalFleet | None = None
    try:
        s.start()
        # the single Redis as the broker role deploys every node: AOF, password
        single = start_redis(root / "single", broker_node=True)
        env = fleet_env(root, s)
        out.update(
            throughput(
                load_config(env),
                load_config({"RINGRIFT_BROKER_URL": single.url}),
                args.rounds,
                args.sends,
            )
        )
        if not args.throughput_only:
            f = LocalFleet(root / "coord", voters=1, scheduler=True, extra_env=env)
            doc = yaml.safe_load(f.hosts_file.read_text())
            for spec in doc["hosts"].values():
                spec.update({"cpus": 2, "status": "ready"})
            f.hosts_file.write_text(yaml.safe_dump(doc))
            out.update(failovers(f, s, env, root, args, workers))
    finally:
        for w in workers:
            stop(w.proc, timeout=15)
        if f is not None:
            f.stop_all()
        s.stop()
        if single is not None:
            single.stop()
    print(json.dumps(out))
    return 0 if "error" not in out else 1


if __name__ == "__main__":
    sys.exit(main())
