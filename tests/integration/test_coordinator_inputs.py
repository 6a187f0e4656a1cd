"""`ringrift-fleet coordinator` with a wrong environment: one line and exit 2, never a
one-node cluster by accident; misspelled variables warned about; a truthful /status
and a loopback bind when there is no inventory (issue 11)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.coordinators import get_json
from tests.support.procs import PYTHON, free_port, running, wait_for

pytestmark = pytest.mark.integration


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No RINGRIFT_* from the surrounding shell; state in tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGRIFT_")}
    env.update(
        {
            "PYTHONPATH": str(Path(__file__).parents[2]),
            "RINGRIFT_P2P_STATE_DIR": str(tmp_path / "state"),
            "RINGRIFT_P2P_NODE_ID": "solo",
        }
    )
    env.update(extra)
    return env


def coordinator(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the coordinator in an empty directory; it must refuse, quickly."""
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    return subprocess.run(
        [PYTHON, "-m", "ringrift_fleet", "coordinator", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        env=clean_env(tmp_path, **env),
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.timeout(60)
def test_a_missing_hosts_file_variable_is_refused(tmp_path: Path) -> None:
    typo = str(tmp_path / "distributed_hots.yaml")
    line = one_line_error(coordinator(tmp_path, RINGRIFT_P2P_HOSTS_FILE=typo))
    assert f"RINGRIFT_P2P_HOSTS_FILE={typo}: no such file" in line


@pytest.mark.timeout(60)
def test_no_inventory_is_refused_unless_chosen(tmp_path: Path) -> None:
    line = one_line_error(coordinator(tmp_path))
    assert "no inventory" in line and "--standalone" in line


@pytest.mark.timeout(60)
def test_an_unusable_state_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    line = one_line_error(
        coordinator(tmp_path, "--standalone", RINGRIFT_P2P_STATE_DIR=str(blocker / "state"))
    )
    assert f"RINGRIFT_P2P_STATE_DIR={blocker / 'state'}: cannot use" in line


@pytest.mark.timeout(60)
def test_an_unusable_artifact_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    line = one_line_error(
        coordinator(tmp_path, "--standalone", RINGRIFT_P2P_ARTIFACT_DIR=str(blocker))
    )
    assert f"RINGRIFT_P2P_ARTIFACT_DIR={blocker}: cannot use" in line


@pytest.mark.timeout(60)
def test_the_old_heartbeat_alone_says_what_else_to_set(tmp_path: Path) -> None:
    line = one_line_error(
        coordinator(tmp_path, "--standalone", RINGRIFT_P2P_HEARTBEAT_INTERVAL="15")
    )
    assert "RINGRIFT_P2P_PEER_TIMEOUT" in line and "RINGRIFT_P2P_LEADER_LEASE_DURATION=90" in line


def test_help_says_where_it_binds(tmp_path: Path) -> None:
    out = subprocess.run(
        [PYTHON, "-m", "ringrift_fleet", "coordinator", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(tmp_path),
    ).stdout
    flat = " ".join(out.split())
    assert "--standalone" in flat and "RINGRIFT_P2P_BIND_HOST" in flat and "127.0.0.1" in flat


def listening_addresses(pid: int) -> set[str]:
    out = set()
    for conn in psutil.Process(pid).net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN or conn.type == 2:  # TCP listen, or UDP
            out.add(conn.laddr.ip)
    return out


@pytest.mark.timeout(90)
def test_standalone_swim_mode_reports_what_runs_and_binds_loopback(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "coordinator.log"
    env = clean_env(
        tmp_path,
        RINGRIFT_P2P_HOSTS_FILE="",
        RINGRIFT_P2P_PORT=str(port),
        RINGRIFT_P2P_RAFT_PORT=str(free_port()),
        RINGRIFT_SWIM_ENABLED="true",
        RINGRIFT_MEMBERSHIP_MODE="swim",
        RINGRIFT_P2P_HEARTBEAT_INTERVALL="3",
    )
    (tmp_path / "cwd").mkdir()
    argv = [PYTHON, "-m", "ringrift_fleet", "coordinator", "--log-level", "INFO"]
    with running(argv, env=env, log=log, cwd=tmp_path / "cwd") as proc:
        url = f"http://127.0.0.1:{port}/status"
        assert wait_for(lambda: get_json(url)["is_leader"], 30), log.read_text()
        status: dict[str, Any] = get_json(url)
        addresses = listening_addresses(proc.pid)
    text = log.read_text()
    warnings = [line for line in text.splitlines() if "RINGRIFT_P2P_HEARTBEAT_INTERVALL" in line]
    assert len(warnings) == 1, text
    assert "did you mean RINGRIFT_P2P_HEARTBEAT_INTERVAL?" in warnings[0]
    # no inventory: heartbeats answer, not SWIM, and /status says so
    sr = status["swim_raft"]
    assert sr["membership_mode"] == "http", json.dumps(sr)
    assert sr["membership_mode_configured"] == "swim"
    assert sr["swim"]["started"] is False
    assert sr["swim"]["alive_count"] == status["membership"]["alive_count"] == 1
    # no inventory: nothing listens beyond loopback
    assert addresses and addresses <= {"127.0.0.1"}, addresses
