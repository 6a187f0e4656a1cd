"""No-op tasks per second: the fleet's path versus plain Celery, same broker, same worker.

Fleet path, per task: ``route_for`` picks the queue, ``publish_fence`` stores the
attempt's fence, ``send_job`` validates and sends ``ringrift.noop``; the worker
validates again, checks the fence, takes the run lease (SET NX), counts the
delivery, keeps the lease alive from a thread, and stores the result once.
Plain path: ``send_task("ringrift.plain_noop")`` with no checks at all.

Starts its own redis-server and one ``ringrift-fleet worker`` (2 processes),
alternates the two paths for a few rounds, and prints one JSON line:
``{"fleet_tasks_per_s", "celery_tasks_per_s", "ratio", …}`` (best round of each).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ringrift_fleet.config import load_config  # noqa: E402
from ringrift_fleet.execution.app import create_app  # noqa: E402
from ringrift_fleet.execution.dispatch import send_job  # noqa: E402
from ringrift_fleet.execution.fencing import publish_fence  # noqa: E402
from ringrift_fleet.execution.queues import route_for  # noqa: E402
from ringrift_fleet.localhost import free_port, redis_argv, redis_binary  # noqa: E402
from ringrift_fleet.models import JobType  # noqa: E402

TASKS = int(os.environ.get("BENCH_DISPATCH_TASKS", "500"))
ROUNDS = int(os.environ.get("BENCH_DISPATCH_ROUNDS", "2"))
CONCURRENCY = 2
DEADLINE_S = 240.0


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _finished(client: redis.Redis, ids: list[str]) -> int:
    pipe = client.pipeline(transaction=False)
    for tid in ids:
        pipe.exists(f"celery-task-meta-{tid}")
    return sum(int(x) for x in pipe.execute())


def _completed(client: redis.Redis, ids: list[str]) -> int:
    """How many of these tasks stored a result whose status is "completed"."""
    raws = client.mget([f"celery-task-meta-{tid}" for tid in ids])
    return sum(
        1
        for raw in raws
        if raw and (json.loads(raw).get("result") or {}).get("status") == "completed"
    )


def _measure(client: redis.Redis, send: Callable[[int], str], sent: list[str]) -> float:
    started = time.perf_counter()
    ids = [send(i) for i in range(TASKS)]
    sent.extend(ids)
    pending = ids
    deadline = time.monotonic() + DEADLINE_S
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} tasks unfinished after {DEADLINE_S}s")
        done = _finished(client, pending[:500])
        if done == len(pending[:500]):
            pending = pending[500:]
        else:
            time.sleep(0.01)
    return TASKS / (time.perf_counter() - started)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RINGRIFT_BROKER_URL": url,
        "RINGRIFT_P2P_STATE_DIR": str(work / "state"),
        "RINGRIFT_P2P_ARTIFACT_DIR": str(work / "artifacts"),
    }
    redis_proc = subprocess.Popen(
        redis_argv(redis_binary(prefer_bundled=False), port, work),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    worker = None
    try:
        client = redis.Redis.from_url(url)
        _wait(lambda: _ping(client), 10, "redis-server")
        log = open(work / "worker.log", "wb")  # noqa: SIM115
        worker = subprocess.Popen(
            [sys.executable, "-m", "ringrift_fleet", "worker", "--cpu", "--node", "bench",
             "--concurrency", str(CONCURRENCY), "--loglevel", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
        )  # fmt: skip
        cfg = load_config(env)
        app = create_app(cfg)
        _wait(lambda: bool(app.control.ping(timeout=0.5)), 60, "the worker")
        queue = route_for(JobType.SELFPLAY, tier="cpu")
        run_id = f"{os.getpid()}-{time.time_ns()}"

        round_no = [0]

        def fleet(i: int) -> str:
            job_id = f"bench-{run_id}-{round_no[0]}-{i}"
            token = f"tok-{i}"
            publish_fence(client, job_id, token, ttl=600)
            return send_job(
                "noop",
                {},
                queue=route_for(JobType.SELFPLAY, tier="cpu"),
                job_id=job_id,
                fence={"token": token, "attempt": 1, "term": 1},
                app=app,
            )

        def plain(i: int) -> str:
            return str(app.send_task("ringrift.plain_noop", kwargs={}, queue=queue).id)

        # Warm up both paths (imports, connections, pool processes).
        for _ in range(20):
            fleet(-1)
            plain(-1)
        time.sleep(1)
        fleet_rates, plain_rates = [], []
        fleet_ids: list[str] = []
        plain_ids: list[str] = []
        for rnd in range(ROUNDS):
            round_no[0] = rnd
            fleet_rates.append(_measure(client, fleet, fleet_ids))
            plain_rates.append(_measure(client, plain, plain_ids))
        fleet_done = _completed(client, fleet_ids)
        if fleet_done != len(fleet_ids):
            raise RuntimeError(f"only {fleet_done} of {len(fleet_ids)} fleet tasks completed")
        best_fleet, best_plain = max(fleet_rates), max(plain_rates)
        print(
            json.dumps(
                {
                    "fleet_tasks_per_s": round(best_fleet, 1),
                    "celery_tasks_per_s": round(best_plain, 1),
                    "ratio": round(best_fleet / best_plain, 3),
                    "fleet_completed": fleet_done,
                    "tasks_per_round": TASKS,
                    "rounds": ROUNDS,
                    "worker_concurrency": CONCURRENCY,
                    "fleet_rounds": [round(x, 1) for x in fleet_rates],
                    "celery_rounds": [round(x, 1) for x in plain_rates],
                    "cpus": os.cpu_count(),
                }
            )
        )
        return 0
    finally:
        if worker is not None:
            _stop(worker)
        _stop(redis_proc)
        shutil.rmtree(work, ignore_errors=True)


def _ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


if __name__ == "__main__":
    sys.exit(main())
