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

Also measured, in the same run: the fenced send path (slot SET NX + fence + WAIT 1
when replicas exist + the Celery publish) in sends per second through the Sentinel
set versus a single redis-server, and fence writes per second with the WAIT.

Prints one JSON line: ``{"failover_s", "first_job_after_s", "jobs_lost",
"jobs_run_twice", "fence_writes_per_s_with_wait", …}`` (times as median/min/max).
"""

from __future__ import annotations

import argparse
import json
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

SENDS = 200  # per send-path measurement
ROUNDS = 3


def spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def send_path_rate(cfg: Any, n: int, per_tick: int = 10) -> float:
    """Fenced sends per second: the Beat's per-send Redis work plus the publish, and
    its one WAIT 1 per tick (here per ``per_tick`` sends)."""
    app = create_app(cfg)
    client = redis_client(cfg, timeout=5)
    wait = replica_wait(cfg, client)
    queue = f"bench.nobody.{uuid.uuid4().hex[:6]}"
    t0 = time.perf_counter()
    for i in range(n):
        job = f"bench:{queue}:{i}"
        client.set(f"ringrift:slot:{job}#1", "bench|claimed", nx=True, ex=600)
        publish_fence(client, job, f"tok{i}", 600)
        send_job(
            "noop",
            {},
            queue=queue,
            job_id=job,
            fence={"token": f"tok{i}", "attempt": 1, "term": 1},
            app=app,
        )
        client.set(f"ringrift:slot:{job}#1", "bench|sent", xx=True, ex=600)
        if i % per_tick == per_tick - 1:
            wait()
    rate = n / (time.perf_counter() - t0)
    client.delete(queue)
    return rate


def fence_write_rate(cfg: Any, n: int) -> float:
    client = redis_client(cfg, timeout=5)
    wait = replica_wait(cfg, client)
    t0 = time.perf_counter()
    for i in range(n):
        publish_fence(client, f"bench:fence:{i}", f"t{i}", 600)
        wait()
    return n / (time.perf_counter() - t0)


def work(f: LocalFleet) -> dict[str, dict[str, Any]]:
    try:
        return dict(f.ledger("n0")["work"])
    except Exception:
        return {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=90.0, help="s per kill before giving up")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="broker-failover-"))
    s = SentinelSet(root / "broker").start()
    single = start_redis(root / "single")
    env = fleet_env(root, s)
    cfg = load_config(env)
    f = LocalFleet(root / "coord", voters=1, scheduler=True, extra_env=env)
    doc = yaml.safe_load(f.hosts_file.read_text())
    for spec in doc["hosts"].values():
        spec.update({"cpus": 2, "status": "ready"})
    f.hosts_file.write_text(yaml.safe_dump(doc))
    workers = []
    out: dict[str, Any] = {"kills": 0}
    try:
        single_cfg = load_config({"RINGRIFT_BROKER_URL": single.url})
        # alternating rounds, best of each: the machine's other load hits both alike
        sentinel_rate = single_rate = 0.0
        for _ in range(ROUNDS):
            sentinel_rate = max(sentinel_rate, send_path_rate(cfg, SENDS))
            single_rate = max(single_rate, send_path_rate(single_cfg, SENDS))
        out["sends_per_s_sentinel"] = round(sentinel_rate, 1)
        out["sends_per_s_single"] = round(single_rate, 1)
        out["dispatch_ratio"] = round(sentinel_rate / single_rate, 3)
        out["fence_writes_per_s_with_wait"] = round(fence_write_rate(cfg, SENDS), 1)
        out["fence_writes_per_s_single"] = round(fence_write_rate(single_cfg, SENDS), 1)

        f.start_all(timeout=60)
        workers = start_workers([(cpu_worker_args("n0"), "n0@cpu", root / "w-n0.log")], env)
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
    finally:
        for w in workers:
            stop(w.proc, timeout=15)
        f.stop_all()
        s.stop()
        single.stop()
    print(json.dumps(out))
    return 0 if "error" not in out else 1


if __name__ == "__main__":
    sys.exit(main())
