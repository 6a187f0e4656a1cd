"""The real deployment: `ansible-playbook deploy.yml` over SSH into three
systemd-nspawn containers running real systemd, each in its own network
namespace; ansible, celery and curl run in a controller namespace.

One fleet for the module (booting and deploying is the expensive part); the
tests run in file order and each checks what a user would see.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from tests.deploy.testbed import (
    BUSY_BOX_ENV,
    SCRIPTS,
    SECRETS,
    VENV_BIN,
    NspawnTestbed,
    exclusive,
    recap,
)
from tests.support.prereq import need, need_root

pytestmark = pytest.mark.deploy

T = TypeVar("T")
BROKER_URL = f"redis://:{SECRETS['vault_broker_password']}@10.203.0.11:6379/0"


@dataclass
class Fleet:
    bed: NspawnTestbed
    inventory: Path
    dry_run: subprocess.CompletedProcess[str]  # --check on the fresh hosts
    first: subprocess.CompletedProcess[str]
    # /status sampled from the end of the config roll on, while the later tests
    # run jobs and restart workers (never a coordinator); checked by the last test
    hold: LeaderSampler | None = None
    hold_until: float = 0.0


def _status(bed: NspawnTestbed, host: str) -> dict[str, object] | None:
    proc = bed.ctl(["curl", "-sS", "-m", "2", f"http://{bed.hosts[host]}:8770/status"], timeout=10)
    if proc.returncode != 0:
        return None
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _unit(bed: NspawnTestbed, host: str, unit: str) -> dict[str, str]:
    out = bed.ssh(host, f"systemctl show -p ActiveState -p MainPID -p NRestarts {unit}").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _run_seconds(bed: NspawnTestbed, task_id: str) -> float | None:
    """How long a task ran, from its worker's "succeeded in Xs" log line."""
    pattern = re.compile(re.escape(f"ringrift.selfplay[{task_id}] succeeded in ") + r"([0-9.]+)s")
    for h in bed.hosts:
        log = bed.ssh(h, "journalctl -u 'ringrift-worker@*' --no-pager -n 300").stdout
        match = pattern.search(log)
        if match:
            return float(match.group(1))
    return None


def _poll(what: str, predicate: Callable[[], T | None], timeout: float, interval: float = 1.0) -> T:
    """Bounded poll; returns the first truthy value or fails naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    need_root("network namespaces and systemd-nspawn")
    for cmd in ("systemd-nspawn", "debootstrap", "ssh", "ssh-keygen", "ip", "curl"):
        need(
            shutil.which(cmd) is not None or os.path.exists(f"/usr/sbin/{cmd}"),
            f"command {cmd!r} (make deps)",
        )
    wheelhouse = subprocess.run(
        [str(SCRIPTS / "build-wheelhouse.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    ).stdout.strip()
    with exclusive():
        bed = NspawnTestbed.up(tmp_path_factory.mktemp("testbed"))
        try:
            inventory = bed.write_inventory(Path(wheelhouse))
            dry_run = bed.playbook(inventory, "--check", timeout=600)
            first = bed.playbook(inventory, timeout=600)
            yield Fleet(bed=bed, inventory=inventory, dry_run=dry_run, first=first)
        finally:
            bed.down()


@pytest.mark.timeout(1500)
def test_check_mode_on_fresh_hosts_runs_and_changes_nothing(fleet: Fleet) -> None:
    out = fleet.dry_run.stdout + fleet.dry_run.stderr
    assert fleet.dry_run.returncode == 0, out[-6000:]
    counts = recap(fleet.dry_run.stdout)
    assert all(c["failed"] == 0 for c in counts.values()), counts
    assert any(c["changed"] for c in counts.values()), "a fresh host must show pending changes"
    # ... and it only predicted them: nothing was installed by the dry run.
    # (The real deploy ran since; its own test checks what it did.)


@pytest.mark.timeout(1500)
def test_deploy_brings_up_broker_coordinators_and_workers(fleet: Fleet) -> None:
    out = fleet.first.stdout + fleet.first.stderr
    assert fleet.first.returncode == 0, out[-6000:]
    counts = recap(fleet.first.stdout)
    assert set(counts) >= {"h1", "h2", "h3"}
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in counts.values()), counts
    bed = fleet.bed
    for host in ("h1", "h2", "h3"):
        units = "ringrift-fleet.target ringrift-coordinator.service ringrift-worker@cpu.service"
        proc = bed.ssh(host, f"systemctl is-active {units}")
        assert proc.stdout.split() == ["active"] * 3, (host, proc.stdout, proc.stderr)
        mode = bed.ssh(host, "stat -c '%a %U' /etc/ringrift/fleet.env").stdout.strip()
        assert mode == "600 root", (host, mode)
        # The generated host list names all three hosts and the voters.
        hosts_yaml = bed.ssh(host, "cat /etc/ringrift/distributed_hosts.yaml").stdout
        for name in ("h1", "h2", "h3", "raft_voters"):
            assert name in hosts_yaml, (host, hosts_yaml)
    proc = bed.ssh("h1", "systemctl is-active redis-server.service ringrift-flower.service")
    assert proc.stdout.split() == ["active", "active"], proc.stdout + proc.stderr
    # No secret in the play's output (no_log); the vault held them.
    for secret in SECRETS.values():
        assert secret not in out


@pytest.mark.timeout(120)
def test_broker_is_private_password_protected_and_never_evicts(fleet: Fleet) -> None:
    bed = fleet.bed
    cli = ["redis-cli", "-h", "10.203.0.11", "-p", "6379"]
    if shutil.which("redis-cli") is None:
        cli = [str(VENV_BIN / "redis-cli"), "-h", "10.203.0.11", "-p", "6379"]
    anonymous = bed.ctl([*cli, "ping"])
    assert "NOAUTH" in anonymous.stdout + anonymous.stderr
    authed = [*cli, "--no-auth-warning", "-a", SECRETS["vault_broker_password"]]
    assert bed.ctl([*authed, "ping"]).stdout.strip() == "PONG"
    policy = bed.ctl([*authed, "config", "get", "maxmemory-policy"]).stdout.split()
    assert policy == ["maxmemory-policy", "noeviction"]
    aof = bed.ctl([*authed, "config", "get", "appendonly"]).stdout.split()
    assert aof == ["appendonly", "yes"]
    bind = bed.ctl([*authed, "config", "get", "bind"]).stdout
    assert "10.203.0.11" in bind and "0.0.0.0" not in bind


@pytest.mark.timeout(120)
def test_flower_answers_with_basic_auth_only(fleet: Fleet) -> None:
    bed = fleet.bed
    url = "http://10.203.0.11:5555/api/workers"

    def code(*auth: str) -> str:
        proc = bed.ctl(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5", *auth, url]
        )
        return proc.stdout.strip()

    _poll("Flower to answer", lambda: code() not in ("", "000"), 60)
    assert code() == "401"
    assert code("-u", f"admin:{SECRETS['vault_flower_password']}") == "200"


@pytest.mark.timeout(900)
def test_second_run_changes_nothing(fleet: Fleet) -> None:
    second = fleet.bed.playbook(fleet.inventory, timeout=600)
    assert second.returncode == 0, (second.stdout + second.stderr)[-6000:]
    counts = recap(second.stdout)
    changed = {host: c["changed"] for host, c in counts.items() if c["changed"]}
    assert changed == {}, (changed, second.stdout[-6000:])


@pytest.mark.timeout(900)
def test_check_mode_on_the_deployed_fleet_reports_no_change(fleet: Fleet) -> None:
    check = fleet.bed.playbook(fleet.inventory, "--check", timeout=600)
    assert check.returncode == 0, (check.stdout + check.stderr)[-6000:]
    counts = recap(check.stdout)
    assert all(c["changed"] == 0 and c["failed"] == 0 for c in counts.values()), counts


@pytest.mark.timeout(300)
def test_selfplay_called_from_the_controller_runs_on_a_container_worker(fleet: Fleet) -> None:
    bed = fleet.bed
    env = {"RINGRIFT_BROKER_URL": BROKER_URL}
    kwargs = {"board_type": "hex8", "num_players": 2, "num_games": 2}
    call = bed.ctl(
        [
            str(VENV_BIN / "celery"),
            "-A",
            "ringrift_fleet",
            "call",
            "ringrift.selfplay",
            "--kwargs",
            json.dumps(kwargs),
        ],
        env=env,
        timeout=60,
    )
    assert call.returncode == 0, call.stdout + call.stderr
    task_id = call.stdout.strip().splitlines()[-1]
    result = bed.ctl(
        [str(VENV_BIN / "celery"), "-A", "ringrift_fleet", "result", task_id],
        env=env,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout
    node = next((h for h in ("h1", "h2", "h3") if f"'node': '{h}'" in text), None)
    assert node is not None, text
    assert "'games': 2" in text, text
    # The games are on that container's disk, written by the worker there.
    listing = bed.ssh(node, f"find /var/lib/ringrift/artifacts -name '{task_id}*'").stdout
    assert task_id in listing, (node, listing)
    journal = bed.ssh(node, "journalctl -u 'ringrift-worker@*' --no-pager").stdout
    assert f"ringrift.selfplay[{task_id}] succeeded" in journal


@pytest.mark.timeout(300)
def test_killing_the_leaders_coordinator_elects_another_and_systemd_restarts_it(
    fleet: Fleet,
) -> None:
    bed = fleet.bed
    hosts = ("h1", "h2", "h3")

    def leader() -> tuple[str, int] | None:
        for h in hosts:
            s = _status(bed, h)
            if s and s.get("leader_id"):
                return str(s["leader_id"]), int(str(s.get("term") or 0))
        return None

    old_leader, old_term = _poll("a leader", leader, 90)
    before = _unit(bed, old_leader, "ringrift-coordinator.service")
    # The exact command of the issue; then the process must die and a new one run.
    killed = bed.ssh(old_leader, "systemctl kill -s KILL ringrift-coordinator")
    assert killed.returncode == 0, killed.stderr
    survivors = [h for h in hosts if h != old_leader]

    def new_leader() -> str | None:
        for h in survivors:
            s = _status(bed, h)
            if s and s.get("leader_id") not in (None, "", old_leader):
                assert int(str(s.get("term") or 0)) > old_term, s
                return str(s["leader_id"])
        return None

    elected = _poll(f"a leader other than {old_leader}", new_leader, 60, 0.5)
    assert elected in survivors

    def restarted() -> bool:
        now = _unit(bed, old_leader, "ringrift-coordinator.service")
        return (
            now.get("ActiveState") == "active"
            and int(now.get("NRestarts", "0")) > int(before.get("NRestarts", "0"))
            and now.get("MainPID") not in ("0", before.get("MainPID"))
        )

    _poll(f"systemd to restart {old_leader}'s coordinator", restarted, 90)
    _poll(
        f"{old_leader}'s coordinator to answer /status again", lambda: _status(bed, old_leader), 60
    )


class LeaderSampler:
    """Every voter's /status every 0.5 s in a thread: the leader each sample agrees on."""

    def __init__(self, bed: NspawnTestbed, hosts: tuple[str, ...], limit_s: float) -> None:
        self.bed, self.hosts, self.limit_s = bed, hosts, limit_s
        self.samples: list[tuple[float, str | None, dict[str, object]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        end = time.monotonic() + self.limit_s
        while not self._stop.is_set() and time.monotonic() < end:
            t = time.monotonic()
            with ThreadPoolExecutor(len(self.hosts)) as pool:  # one moment, not three
                views = dict(zip(self.hosts, pool.map(self._status, self.hosts), strict=True))
            leader = self.leader_of(views)
            self.samples.append((t, leader, {h: v for h, v in views.items() if v}))
            time.sleep(max(0.0, 0.5 - (time.monotonic() - t)))

    def _status(self, host: str) -> dict[str, object] | None:
        return _status(self.bed, host)

    @staticmethod
    def leader_of(views: dict[str, dict[str, object] | None]) -> str | None:
        """The leader of one sample: ``"<split>"`` when two voters claim leadership in
        the same term (two leaders); else the one leader every answering voter names;
        else, mid-handover (the voters have not all heard yet), the claimant of the
        newest term; None (leaderless) when nobody leads.  One restarting voter that
        has not heard from the leader yet is not an outage."""
        named = {str(v["leader_id"]) for v in views.values() if v and v.get("leader_id")}
        claims = {
            h: int(str(v.get("term") or 0))
            for h, v in views.items()
            if v and v.get("role") == "leader"
        }
        if len(set(claims.values())) < len(claims):
            return "<split>"
        if len(named) == 1:
            return named.pop()
        if claims:
            return max(claims, key=lambda h: claims[h])
        return None

    def __enter__(self) -> LeaderSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def changes(self) -> list[tuple[str, str]]:
        seen = [leader for _, leader, _ in self.samples if leader]
        return [(a, b) for a, b in itertools.pairwise(seen) if a != b]

    def leaderless_s(self) -> float:
        return 0.5 * sum(1 for _, leader, _ in self.samples if leader is None)


# Five minutes without a leader change after a roll.  The sampling runs in the
# background while the later tests of this file run jobs and restart workers
# (no coordinator restarts), and the last test waits for the rest and checks.
HOLD_S = float(os.environ.get("RINGRIFT_DEPLOY_HOLD_S", "300"))


@pytest.mark.timeout(900)
def test_a_config_roll_moves_leadership_at_most_once_then_holds(fleet: Fleet) -> None:
    """`--tags config` with a changed fleet.env restarts the three voters one by
    one: followers first, the leader last, handing over as it stops."""
    bed = fleet.bed
    hosts = ("h1", "h2", "h3")
    _poll("a leader", lambda: any((_status(bed, h) or {}).get("leader_id") for h in hosts), 90)
    pids = {h: _unit(bed, h, "ringrift-coordinator.service").get("MainPID") for h in hosts}
    with LeaderSampler(bed, hosts, limit_s=900) as roll:
        deploy = bed.playbook(
            fleet.inventory,
            "--tags",
            "config",
            "-e",
            json.dumps({"common_extra_env": {**BUSY_BOX_ENV, "RINGRIFT_ROLL": "1"}}),
        )
        time.sleep(2)
    out = deploy.stdout + deploy.stderr
    assert deploy.returncode == 0, out[-6000:]
    assert "Queue the followers first and the leader last" in deploy.stdout
    for h in hosts:  # the roll did restart every voter
        pid = _unit(bed, h, "ringrift-coordinator.service").get("MainPID")
        assert pid not in (None, "0", pids[h]), (h, pids[h], pid)
    changes = roll.changes()
    assert len(changes) <= 1, f"leadership moved {len(changes)} times in one roll: {changes}"
    assert roll.leaderless_s() <= 1.0, [(round(t, 1), x) for t, x, _ in roll.samples if x is None]
    assert all(leader != "<split>" for _, leader, _ in roll.samples)
    # Then the fleet keeps its leader (test_the_leader_holds_for_five_minutes_after_the_roll).
    fleet.hold = LeaderSampler(bed, hosts, limit_s=HOLD_S).__enter__()
    fleet.hold_until = time.monotonic() + HOLD_S


@pytest.mark.timeout(600)
def test_rolling_worker_update_drains_a_running_job_first(fleet: Fleet) -> None:
    """A unit change restarts the workers batch by batch, each with a warm
    shutdown: the job running during the deploy finishes on its first attempt."""
    bed = fleet.bed
    env = {"RINGRIFT_BROKER_URL": BROKER_URL}
    celery = [str(VENV_BIN / "celery"), "-A", "ringrift_fleet"]

    def selfplay(games: int) -> str:
        kwargs = {"board_type": "hex8", "num_players": 2, "num_games": games}
        call = bed.ctl(
            [*celery, "call", "ringrift.selfplay", "--kwargs", json.dumps(kwargs)], env=env
        )
        assert call.returncode == 0, call.stdout + call.stderr
        return call.stdout.strip().splitlines()[-1]

    # Size the job to outlast the play's first steps: time a small one first.
    probe = selfplay(400)
    bed.ctl([*celery, "result", probe], env=env, timeout=120)
    took = _poll("the probe job's run time", lambda: _run_seconds(bed, probe), 60)
    # ~100 s of work: it must outlast the play's steps before the drain, even on a busy box
    games = max(400, min(200_000, int(400 * 100 / max(took, 0.01))))
    task_id = selfplay(games)

    def running_on() -> str | None:
        for h in ("h1", "h2", "h3"):
            log = bed.ssh(h, "journalctl -u 'ringrift-worker@*' --no-pager -n 200").stdout
            if f"ringrift.selfplay[{task_id}] received" in log:
                return h
        return None

    node = _poll("the long job to start on a worker", running_on, 60)
    # A changed unit (restart delay) makes every worker restart, drained first.
    deploy = bed.playbook(
        fleet.inventory,
        "--tags",
        "workers",
        "--limit",
        f"{node},localhost",  # that host's batch drains while the job still runs
        "-e",
        "worker_restart_sec=6",
    )
    assert deploy.returncode == 0, (deploy.stdout + deploy.stderr)[-6000:]
    assert "Drain the workers before they restart" in deploy.stdout
    journal = bed.ssh(node, "journalctl -u 'ringrift-worker@*' --no-pager").stdout
    received = journal.find(f"ringrift.selfplay[{task_id}] received")
    done = journal.find(f"ringrift.selfplay[{task_id}] succeeded")
    drain = journal.lower().find("warm shutdown", received)
    assert received >= 0 and done >= 0 and drain >= 0, journal[-3000:]
    # The shutdown began while the job ran, and waited for it to finish.
    assert received < drain < done, journal[-3000:]
    result = bed.ctl([*celery, "result", task_id], env=env, timeout=120)
    assert "'status': 'completed'" in result.stdout, result.stdout + result.stderr
    assert f"'games': {games}" in result.stdout and "'attempt': 1" in result.stdout, result.stdout
    units = "ringrift-worker@cpu.service"
    for h in ("h1", "h2", "h3"):
        assert bed.ssh(h, f"systemctl is-active {units}").stdout.strip() == "active", h


@pytest.mark.timeout(300)
def test_old_releases_are_pruned_but_never_the_current_one(fleet: Fleet) -> None:
    """Every deploy adds a venv; a host keeps the newest few and always its current one."""
    bed = fleet.bed
    root = "/opt/ringrift/releases"
    current = bed.ssh("h1", "readlink -f /opt/ringrift/venv").stdout.strip()
    assert current.startswith(root), current
    # four older releases, and the current one made to look oldest of all
    made = bed.ssh(
        "h1",
        f'for i in 1 2 3 4; do mkdir -p {root}/old-$i/venv && touch -d "$i days ago" {root}/old-$i; '
        f"done; touch -d '30 days ago' {current.rsplit('/', 1)[0]}",
    )
    assert made.returncode == 0, made.stderr
    run = bed.playbook(fleet.inventory, "--tags", "prune", "--limit", "h1,localhost")
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
    left = sorted(bed.ssh("h1", f"ls {root}").stdout.split())
    # the newest three by age (old-1, old-2, old-3), plus the current one kept whatever its age
    assert left == sorted(["old-1", "old-2", "old-3", current.split("/")[-2]]), left
    assert bed.ssh("h1", "systemctl is-active ringrift-coordinator").stdout.strip() == "active"
    again = bed.playbook(fleet.inventory, "--tags", "prune", "--limit", "h1,localhost")
    assert again.returncode == 0, (again.stdout + again.stderr)[-6000:]
    assert all(c["changed"] == 0 for c in recap(again.stdout).values()), again.stdout[-3000:]


@pytest.mark.timeout(HOLD_S + 120)
def test_the_leader_holds_for_five_minutes_after_the_roll(fleet: Fleet) -> None:
    """No election without a reason: from the end of the config roll, through the
    jobs and worker restarts of the tests above, the leader and term stay put."""
    hold = fleet.hold
    if hold is None:
        pytest.fail("the config roll test did not get as far as starting the hold")
    time.sleep(max(0.0, fleet.hold_until - time.monotonic()))
    hold.__exit__()
    assert hold.samples, "no /status samples"
    span = hold.samples[-1][0] - hold.samples[0][0]
    assert span >= HOLD_S - 10, f"sampled only {span:.0f} s"
    assert hold.changes() == [], hold.changes()
    assert hold.leaderless_s() == 0.0
    terms = {
        int(str(v.get("term") or 0))
        for _, _, views in hold.samples
        for v in views.values()
        if isinstance(v, dict)
    }
    assert len(terms) == 1, f"the term moved without a restart: {sorted(terms)}"
    for h in hold.hosts:
        journal = fleet.bed.ssh(h, "journalctl -u ringrift-coordinator --no-pager -n 3000").stdout
        assert "CRITICAL" not in journal, journal[-3000:]
