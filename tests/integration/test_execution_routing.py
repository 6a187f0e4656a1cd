"""Routing with real workers playing a mixed fleet: an H100, a T4 and a CPU box.

There is no GPU here, so the workers are told their GPU with ``--gpu-type``;
everything else (queues each computes, the broker, delivery) is real.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import redis

from ringrift_fleet.execution.app import create_app
from ringrift_fleet.execution.dispatch import job_outcome, send_job
from ringrift_fleet.execution.queues import route_for
from ringrift_fleet.models import JobType
from tests.support.celery_worker import config_for, fleet_env, start_workers
from tests.support.procs import stop, wait_for
from tests.support.redis_server import start_redis

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

H100, T4, CPU = "gpu-a@gpu0", "gpu-b@gpu0", "cpu-c@cpu"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("exec-routing")
    server = start_redis(root / "redis")
    env = fleet_env(server.url, root)
    workers = []
    try:
        workers = start_workers(
            [
                (
                    [
                        "--node",
                        "gpu-a",
                        "--gpu-index",
                        "0",
                        "--gpu-type",
                        "NVIDIA H100 80GB HBM3",
                        "--gpu-vram-gb",
                        "80",
                    ],
                    H100,
                    root / "h100.log",
                ),
                (
                    [
                        "--node",
                        "gpu-b",
                        "--gpu-index",
                        "0",
                        "--gpu-type",
                        "Tesla T4",
                        "--gpu-vram-gb",
                        "16",
                    ],
                    T4,
                    root / "t4.log",
                ),
                (["--node", "cpu-c", "--cpu", "--concurrency", "1"], CPU, root / "cpu.log"),
            ],
            env,
        )
        yield {"app": create_app(config_for(env)), "workers": workers, "url": server.url}
    finally:
        for w in workers:
            stop(w.proc, timeout=15)
        server.stop()


def _run_all(
    fleet: dict[str, Any], jobs: list[tuple[str, dict[str, Any], str]]
) -> list[dict[str, Any]]:
    app = fleet["app"]
    ids = [
        send_job(jt, kw, queue=q, job_id=f"route-{jt}-{q}-{i}", app=app)
        for i, (jt, kw, q) in enumerate(jobs)
    ]
    results = [app.AsyncResult(t) for t in ids]
    assert wait_for(lambda: all(job_outcome(r) is not None for r in results), 120, 0.1)
    outs = [job_outcome(r) for r in results]
    assert all(o is not None and o["status"] == "completed" for o in outs), outs
    return [o for o in outs if o is not None]


def test_training_reaches_only_a_training_capable_worker(fleet: dict[str, Any]) -> None:
    games = {"board_type": "hex8", "num_players": 2, "num_games": 30}
    _run_all(fleet, [("selfplay", games, route_for(JobType.SELFPLAY, host="gpu-a"))])
    train = {"board_type": "hex8", "num_players": 2}
    queues = [
        route_for(JobType.TRAINING),  # "normal": at least t3
        route_for(JobType.TRAINING, size="small"),  # t4 queue: still only trainers listen
        route_for(JobType.TRAINING, tier="t1"),
    ]
    outs = _run_all(fleet, [("training", train, q) for q in queues for _ in range(2)])
    assert {o["worker"] for o in outs} == {H100}
    assert all(o["model"].startswith("models/hex8_2p/v") for o in outs)


def test_cpu_worker_never_receives_gpu_work(fleet: dict[str, Any]) -> None:
    sp = {"board_type": "square8", "num_players": 2, "num_games": 2}
    gpu_jobs = [("selfplay", sp, route_for(JobType.SELFPLAY, tier="t4")) for _ in range(8)]
    gpu_jobs += [
        (
            "evaluation",
            {
                "board_type": "square8",
                "num_players": 2,
                "candidate": "random",
                "champion": "random",
                "games": 2,
            },
            route_for(JobType.EVALUATION, size="small"),
        )
        for _ in range(4)
    ]
    strong = [("selfplay", sp, route_for(JobType.SELFPLAY, tier="t1")) for _ in range(4)]
    cpu = [("selfplay", sp, route_for(JobType.SELFPLAY, tier="cpu")) for _ in range(4)]
    outs = _run_all(fleet, gpu_jobs + strong + cpu)
    by_worker = Counter(o["worker"] for o in outs[: len(gpu_jobs)])
    assert CPU not in by_worker and set(by_worker) <= {H100, T4}
    assert {o["worker"] for o in outs[len(gpu_jobs) : len(gpu_jobs) + 4]} == {H100}
    assert {o["worker"] for o in outs[-4:]} == {CPU}


def test_sending_subscribes_to_no_result_channel(fleet: dict[str, Any]) -> None:
    """Celery's Redis backend subscribed the sender to every task's result channel,
    and the leader, which reads results by key, never read that connection: two
    entries per attempt ever sent stayed in its memory, and the replies piled up
    unread.  The sender (this process) must open no pub/sub connection, and the
    results must still be stored and read."""
    app = fleet["app"]
    sp = {"board_type": "square8", "num_players": 2, "num_games": 1}
    queue = route_for(JobType.SELFPLAY, tier="cpu")
    ids = [send_job("selfplay", sp, queue=queue, job_id=f"nosub-{i}", app=app) for i in range(8)]
    results = [app.AsyncResult(t) for t in ids]
    assert wait_for(lambda: all(job_outcome(r) is not None for r in results), 120, 0.1)
    assert all((job_outcome(r) or {}).get("status") == "completed" for r in results)
    me = psutil.Process()  # psutil < 6 names it connections()
    conns = me.net_connections("tcp") if hasattr(me, "net_connections") else me.connections("tcp")
    ours = {f"{c.laddr.ip}:{c.laddr.port}" for c in conns}
    client = redis.Redis.from_url(fleet["url"])
    try:
        clients: list[dict[str, str]] = client.client_list()  # type: ignore[assignment]
    finally:
        client.close()
    pubsub = [c for c in clients if c["addr"] in ours and c["cmd"] in ("subscribe", "unsubscribe")]
    assert not pubsub, pubsub
