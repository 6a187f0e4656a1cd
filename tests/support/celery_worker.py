"""Real `ringrift-fleet worker` processes (Celery prefork workers) for execution tests."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ringrift_fleet.config import P2PConfig, load_config
from tests.support.procs import PYTHON, spawn, stop, wait_for


@dataclass
class Worker:
    hostname: str
    proc: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def fleet_env(redis_url: str, root: Path, **extra: str) -> dict[str, str]:
    """RINGRIFT_* variables for one test fleet (broker, state and artifact dirs)."""
    env = {
        "RINGRIFT_BROKER_URL": redis_url,
        "RINGRIFT_P2P_STATE_DIR": str(root / "state"),
        "RINGRIFT_P2P_ARTIFACT_DIR": str(root / "artifacts"),
        "RINGRIFT_P2P_RUN_LEASE_TTL": "3",
    }
    env.update(extra)
    return env


def config_for(env: dict[str, str]) -> P2PConfig:
    return load_config(env)


def start_worker(
    args: Sequence[str], env: dict[str, str], log: Path, hostname: str, timeout: float = 60
) -> Worker:
    """Start `ringrift-fleet worker ARGS` and wait until Celery says it is ready."""
    proc = spawn([PYTHON, "-m", "ringrift_fleet", "worker", *args], env=env, log=log)
    worker = Worker(hostname, proc, log)
    ready = wait_for(lambda: f"{hostname} ready." in worker.log_text(), timeout, interval=0.2)
    if not ready:
        stop(proc)
        raise RuntimeError(
            f"worker {hostname} not ready in {timeout}s:\n{worker.log_text()[-3000:]}"
        )
    return worker


def start_workers(
    specs: Sequence[tuple[Sequence[str], str, Path]], env: dict[str, str], timeout: float = 90
) -> list[Worker]:
    """Start several workers at once ((args, hostname, log) each) and wait for all."""
    workers = [
        Worker(
            host, spawn([PYTHON, "-m", "ringrift_fleet", "worker", *args], env=env, log=log), log
        )
        for args, host, log in specs
    ]
    ok = wait_for(
        lambda: all(f"{w.hostname} ready." in w.log_text() for w in workers), timeout, 0.2
    )
    if not ok:
        for w in workers:
            stop(w.proc)
        late = [w.hostname for w in workers if f"{w.hostname} ready." not in w.log_text()]
        raise RuntimeError(f"workers not ready in {timeout}s: {late}")
    return workers


@contextmanager
def running_worker(
    args: Sequence[str], env: dict[str, str], log: Path, hostname: str
) -> Iterator[Worker]:
    worker = start_worker(args, env, log, hostname)
    try:
        yield worker
    finally:
        stop(worker.proc, timeout=15)


def cpu_worker_args(node: str, *queues: str) -> list[str]:
    """A one-process CPU worker for ``node``; with ``queues``, consuming only those."""
    args = ["--cpu", "--node", node, "--concurrency", "1"]
    return [*args, "--queues", ",".join(queues)] if queues else args


def start_cpu_worker(node: str, env: dict[str, str], logs: Path) -> Worker:
    """A one-process CPU worker ``node@cpu``, logging to ``logs/<node>.log``."""
    return start_worker(cpu_worker_args(node), env, logs / f"{node}.log", f"{node}@cpu")


@contextmanager
def one_worker_fleet(root: Path, node: str, **extra_env: str) -> Iterator[dict[str, Any]]:
    """A real redis-server and one CPU worker ``node``; yields what tests send with."""
    import redis

    from ringrift_fleet.execution.app import create_app
    from tests.support.redis_server import start_redis

    server = start_redis(root / "redis")
    try:
        env = fleet_env(server.url, root, **extra_env)
        with running_worker(cpu_worker_args(node), env, root / "worker.log", f"{node}@cpu") as w:
            cfg = config_for(env)
            yield {
                "env": env,
                "cfg": cfg,
                "app": create_app(cfg),
                "redis": redis.Redis.from_url(server.url),
                "worker": w,
                "artifacts": cfg.artifact_dir,
            }
    finally:
        server.stop()


def lease_holder_pid(client: object, job_id: str) -> int | None:
    """PID of the pool process holding a job's run lease (the process running it)."""
    raw = client.get(f"ringrift:run:{job_id}")  # type: ignore[attr-defined]
    if raw is None:
        return None
    return int(json.loads(raw)["pid"])
