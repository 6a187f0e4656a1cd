"""Command workloads (WORKLOADS_FILE) through a real worker: artifacts, failures, stops."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ringrift_fleet.execution.dispatch import job_outcome, send_job
from ringrift_fleet.execution.fencing import stored_result
from tests.support.celery_worker import lease_holder_pid, one_worker_fleet
from tests.support.procs import PYTHON, REPO, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

NODE = "exec-cmd"
SCRIPT = REPO / "tests" / "support" / "execution_script.py"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("exec-cmd")
    workloads = root / "workloads.yaml"
    workloads.write_text(
        "# the gauntlet stand-in replaces the reference evaluation\n"
        "evaluation:\n"
        f"  command: [{PYTHON}, {SCRIPT}, --candidate, '{{candidate}}', --champion,"
        " '{champion}', --games, '{games}', --out, '{output_dir}']\n"
        "  env: {GAUNTLET_JOB: '{job_id}'}\n"
    )
    with one_worker_fleet(
        root,
        NODE,
        RINGRIFT_P2P_WORKLOADS_FILE=str(workloads),
        RINGRIFT_P2P_MAX_REDELIVERIES="2",
        RINGRIFT_P2P_EVALUATION_TIME_LIMIT="12",
        RINGRIFT_P2P_SOFT_LIMIT_FRACTION="0.4",  # soft limit 4.8 s, room to stop before 12 s
    ) as fleet:
        yield fleet


def _eval(fleet: dict[str, Any], job_id: str, mode: str) -> str:
    return send_job(
        "evaluation",
        {
            "board_type": "hex8",
            "num_players": 2,
            "candidate": f"fake/{mode}",
            "champion": "random",
            "games": 10,
        },
        queue="any",
        job_id=job_id,
        app=fleet["app"],
    )


def _outcome(fleet: dict[str, Any], task_id: str, timeout: float = 60) -> dict[str, Any]:
    result = fleet["app"].AsyncResult(task_id)
    assert wait_for(lambda: job_outcome(result) is not None, timeout, 0.1), task_id
    out = job_outcome(result)
    assert out is not None
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_command_runs_and_its_files_become_artifacts(fleet: dict[str, Any]) -> None:
    out = _outcome(fleet, _eval(fleet, "cmd-ok", "ok"))
    assert out["status"] == "completed" and out["exit_code"] == 0
    assert out["win_rate"] == 0.75  # from the command's result.json
    names = sorted(a["name"] for a in out["artifacts"])
    assert names == ["evaluations/hex8_2p/cmd-ok/pid", "evaluations/hex8_2p/cmd-ok/report.txt"]
    assert (fleet["artifacts"] / names[1]).read_text() == "10 games\n"
    assert not (fleet["artifacts"] / ".work" / "cmd-ok").exists(), "the work dir is removed"
    log = Path(out["log"]).read_text()
    assert "gauntlet fake/ok vs random, 10 games" in log


def test_failing_command_fails_the_job_with_its_exit_code(fleet: dict[str, Any]) -> None:
    out = _outcome(fleet, _eval(fleet, "cmd-fail", "fail"))
    assert out["status"] == "failed"
    assert "exited with 3" in out["error"] and "something broke" in out["error"]
    # What a failed command left stays for a look, until swept with its log.
    assert (fleet["artifacts"] / ".work" / "cmd-fail").is_dir()
    assert fleet["worker"].proc.poll() is None


def test_soft_time_limit_stops_the_group_and_keeps_finished_files(fleet: dict[str, Any]) -> None:
    out = _outcome(fleet, _eval(fleet, "cmd-slow", "slow"), 60)
    assert out["status"] == "partial" and out["stopped"] == "SoftTimeLimitExceeded"
    parts = [a["name"] for a in out["artifacts"] if "/part-" in a["name"]]
    assert len(parts) >= 3  # about 4.8 s of 0.2 s parts, fewer on a loaded machine
    assert not any(n.endswith(".tmp") for n in parts)
    pid = int((fleet["artifacts"] / "evaluations/hex8_2p/cmd-slow/pid").read_text())
    assert wait_for(lambda: not _alive(pid), 5)


def test_revoke_terminates_the_process_group(fleet: dict[str, Any]) -> None:
    task_id = _eval(fleet, "cmd-revoke", "slow")
    work = fleet["artifacts"] / ".work" / "cmd-revoke"
    assert wait_for(lambda: len(list(work.glob("part-*.txt"))) >= 3, 30)
    pid = int((work / "pid").read_text())
    assert _alive(pid)
    fleet["app"].control.revoke(task_id, terminate=True, signal="SIGTERM")
    assert wait_for(lambda: not _alive(pid), 15)
    assert wait_for(
        lambda: (fleet["artifacts"] / "evaluations/hex8_2p/cmd-revoke/part-0.txt").exists(), 15
    )
    assert _outcome(fleet, task_id, 15)["status"] == "failed"  # Celery: REVOKED
    # What finished is kept and recorded as a partial result.
    assert wait_for(lambda: stored_result(fleet["redis"], "cmd-revoke") is not None, 15)
    kept = stored_result(fleet["redis"], "cmd-revoke")
    assert kept is not None and kept["status"] == "partial" and kept["stopped"] == "Terminated"
    assert any(a["name"].endswith("/part-2.txt") for a in kept["artifacts"])
    assert fleet["worker"].proc.poll() is None


def test_job_that_kills_its_worker_is_failed_after_the_cap(fleet: dict[str, Any]) -> None:
    r = fleet["redis"]
    started = time.monotonic()
    out = _outcome(fleet, _eval(fleet, "cmd-killer", "kill-parent"), 120)
    assert out["status"] == "failed"
    assert "MAX_REDELIVERIES=2" in out["error"] and "started 2 times" in out["error"]
    assert int(r.get("ringrift:deliveries:cmd-killer:1")) == 3
    assert lease_holder_pid(r, "cmd-killer") is None
    assert time.monotonic() - started < 90
    # The worker survives and runs the next job.
    assert _outcome(fleet, _eval(fleet, "cmd-after-killer", "ok"))["status"] == "completed"
    assert fleet["worker"].proc.poll() is None
