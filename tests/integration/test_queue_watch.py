"""No silent waits: a queue with messages and no consumer is reported, and bad input is one line.

Real redis-server, real `ringrift-fleet worker --cpu` and real `ringrift-fleet
coordinator` processes; jobs are sent with the `celery` CLI a user types.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.celery_worker import (
    cpu_worker_args,
    fleet_env,
    running_worker,
    start_cpu_worker,
)
from tests.support.coordinators import LocalFleet
from tests.support.procs import PYTHON, REPO, stop, wait_for
from tests.support.redis_server import start_redis

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

NODE = "cpu-a"
CHECK_S = 0.5


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A redis-server, one CPU worker (the fleet's only worker) and two coordinators."""
    root = tmp_path_factory.mktemp("queue-watch")
    server = start_redis(root / "redis")
    env = fleet_env(server.url, root)
    coordinators = LocalFleet(
        root / "coord",
        voters=1,
        non_voters=1,
        mode="raft",
        extra_env={
            "RINGRIFT_BROKER_URL": server.url,
            "RINGRIFT_P2P_QUEUE_CHECK_INTERVAL": str(CHECK_S),
        },
    )
    worker = None
    try:
        worker = start_cpu_worker(NODE, env, root)
        coordinators.start_all()
        leader = coordinators.wait_leader(30)
        assert leader is not None, coordinators.log("n0")
        follower = next(n for n in coordinators.nodes if n != leader)
        yield {
            "env": {**os.environ, **env, "PYTHONPATH": str(REPO)},
            "root": root,
            "coordinators": coordinators,
            "leader": leader,
            "follower": follower,
            "url": server.url,
        }
    finally:
        coordinators.stop_all()
        if worker is not None:
            stop(worker.proc, timeout=15)
        server.stop()


def celery(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "celery", "-A", "ringrift_fleet", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def call(env: dict[str, str], task: str, kwargs: dict[str, Any], *extra: str) -> str:
    out = celery(env, "call", task, "--kwargs", json.dumps(kwargs), *extra)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def stuck(fleet: dict[str, Any], name: str) -> dict[str, Any]:
    status = fleet["coordinators"].status(name) or {}
    section = status.get("queues_without_consumers") or {}
    return {q["queue"]: q for q in section.get("queues", [])}


def checked_at(fleet: dict[str, Any], name: str) -> float:
    status = fleet["coordinators"].status(name) or {}
    return float((status.get("queues_without_consumers") or {}).get("checked_at") or 0.0)


def warnings_about(fleet: dict[str, Any], name: str, queue: str) -> list[str]:
    log = (fleet["coordinators"].workdir / f"{name}.log").read_text(errors="replace")
    return [ln for ln in log.splitlines() if "WARNING" in ln and f"queue {queue} holds" in ln]


def test_training_sent_to_a_cpu_only_fleet_is_reported_not_left_waiting(
    fleet: dict[str, Any],
) -> None:
    env, leader, follower = fleet["env"], fleet["leader"], fleet["follower"]
    call(env, "ringrift.training", {"board_type": "hex8", "num_players": 2})
    # the leader notices (two checks in a row), and every coordinator's /status shows it
    assert wait_for(lambda: "training.t3" in stuck(fleet, leader), 30, 0.2), fleet[
        "coordinators"
    ].log(leader)
    entry = stuck(fleet, leader)["training.t3"]
    assert entry["messages"] == 1
    assert "--queue node.<host>" in entry["hint"]
    assert wait_for(lambda: "training.t3" in stuck(fleet, follower), 30, 0.2)
    # queues the worker consumes are never reported (they hold nothing here anyway)
    assert not {"cpu", "any", f"node.{NODE}"} & set(stuck(fleet, leader))
    # `ringrift-fleet status` says it in words
    port = fleet["coordinators"].nodes[follower].status_port
    out = subprocess.run(
        [PYTHON, "-m", "ringrift_fleet", "status", "--host", f"127.0.0.1:{port}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    assert "warning: queue training.t3 holds 1 message(s) that no worker consumes" in out.stdout
    # one warning line, not one per check: let several more checks run first
    first = checked_at(fleet, leader)
    assert wait_for(lambda: checked_at(fleet, leader) > first + 4 * CHECK_S, 30, 0.2)
    assert len(warnings_about(fleet, leader, "training.t3")) == 1
    assert warnings_about(fleet, follower, "training.t3") == []

    # a worker that consumes training.t3 arrives: the message is taken, the report clears
    trainer = cpu_worker_args("cpu-t", "training.t3")
    with running_worker(trainer, fleet["env"], fleet["root"] / "trainer.log", "cpu-t@cpu"):
        assert wait_for(lambda: "training.t3" not in stuck(fleet, leader), 60, 0.2)
        assert wait_for(lambda: "training.t3" not in stuck(fleet, follower), 30, 0.2)


def test_a_typo_queue_is_found_from_the_brokers_bindings(fleet: dict[str, Any]) -> None:
    env, leader = fleet["env"], fleet["leader"]
    kwargs = {"board_type": "hex8", "num_players": 2, "num_games": 1}
    call(env, "ringrift.selfplay", kwargs, "--queue", "node.cpu-b")  # no such host
    assert wait_for(lambda: "node.cpu-b" in stuck(fleet, leader), 30, 0.2)
    assert "no worker runs on host cpu-b" in stuck(fleet, leader)["node.cpu-b"]["hint"]


def short_result(env: dict[str, str], task_id: str) -> subprocess.CompletedProcess[str]:
    """`celery result` blocks while a task is pending: the docs wrap it in `timeout`."""
    return subprocess.run(
        ["timeout", "30", PYTHON, "-m", "celery", "-A", "ringrift_fleet", "result", task_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_celery_result_of_bad_input_is_one_line_naming_the_field(fleet: dict[str, Any]) -> None:
    env = fleet["env"]
    node_q = ("--queue", f"node.{NODE}")
    missing = "models/hex8_2p/v0009.json"
    cases = [
        (
            "ringrift.evaluation",
            {
                "candidate": missing,
                "champion": "random",
                "board_type": "hex8",
                "num_players": 2,
                "games": 2,
            },
            f"ringrift.evaluation.candidate: model '{missing}' is not on this host",
        ),
        (
            "ringrift.evaluation",
            {
                "candidate": "random",
                "champion": missing,
                "board_type": "hex8",
                "num_players": 2,
                "games": 2,
            },
            f"ringrift.evaluation.champion: model '{missing}' is not on this host",
        ),
        (
            "ringrift.selfplay",
            {"board_type": "hexx", "num_players": 2, "num_games": 1},
            "ringrift.selfplay.board_type: 'hexx' is not one of",
        ),
    ]
    for task, kwargs, message in cases:
        task_id = call(env, task, kwargs, *node_q)
        out = short_result(env, task_id)
        assert out.returncode == 1, (out.stdout, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr  # no traceback of Celery's client
        assert lines[0].startswith(f"Error: {message}"), lines
    # the exception a Python client gets back is the importable, named one
    from ringrift_fleet.execution.app import create_app
    from ringrift_fleet.execution.failures import TaskInputError
    from tests.support.celery_worker import config_for

    app = create_app(config_for({k: v for k, v in env.items() if k.startswith("RINGRIFT_")}))
    task_id = call(env, *cases[0][:2], *node_q)
    result = app.AsyncResult(task_id)
    assert wait_for(lambda: result.state == "FAILURE", 30, 0.1)
    assert isinstance(result.result, TaskInputError) and isinstance(result.result, ValueError)
    assert str(result.result) == cases[0][2]
    # and a success still prints the result
    ok = call(env, "ringrift.noop", {}, *node_q)
    out = short_result(env, ok)
    assert out.returncode == 0 and "'status': 'completed'" in out.stdout, out


def test_the_docs_show_how_to_read_a_result(fleet: dict[str, Any]) -> None:
    text = (Path(REPO) / "docs" / "execution.md").read_text()
    assert "timeout 60 celery -A ringrift_fleet result" in text
    assert "Error: ringrift.evaluation.candidate: model" in text
    assert "queues_without_consumers" in text
