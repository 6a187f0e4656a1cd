"""The real deployment: `ansible-playbook deploy.yml` over SSH into three
systemd-nspawn containers running real systemd, each in its own network
namespace; ansible, celery and curl run in a controller namespace.

One fleet for the module (booting and deploying is the expensive part); the
tests run in file order and each checks what a user would see.
"""

from __future__ import annotations

import functools
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
PASSWORD = SECRETS["vault_broker_password"]
MASTER_NAME = "ringrift"  # common_broker_master_name's default
REDIS_CLI = shutil.which("redis-cli") or str(VENV_BIN / "redis-cli")


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


def _broker_env(bed: NspawnTestbed) -> dict[str, str]:
    """What an operator's `celery` needs for the test bed's Sentinel set (the
    variables the play writes into fleet.env; docs/deploy.md, "Check")."""
    return {
        "RINGRIFT_BROKER_SENTINELS": ",".join(f"{a}:26379" for a in bed.hosts.values()),
        "RINGRIFT_BROKER_MASTER_NAME": MASTER_NAME,
        "RINGRIFT_BROKER_PASSWORD": PASSWORD,
        "RINGRIFT_BROKER_SENTINEL_PASSWORD": PASSWORD,  # common_sentinel_password unset
    }


def _redis(bed: NspawnTestbed, host: str, *args: str, port: int = 6379) -> str:
    """redis-cli from the controller, authenticated, against one host's Redis or Sentinel."""
    argv = [REDIS_CLI, "-h", bed.hosts[host], "-p", str(port), "--no-auth-warning"]
    proc = bed.ctl([*argv, "-a", PASSWORD, *args], timeout=15)
    return proc.stdout + proc.stderr


def _info(bed: NspawnTestbed, host: str, section: str = "replication") -> dict[str, str]:
    text = _redis(bed, host, "INFO", section)
    return dict(ln.strip().split(":", 1) for ln in text.splitlines() if ":" in ln)


def _primary_per_sentinel(bed: NspawnTestbed) -> dict[str, str | None]:
    """Each Sentinel's answer to SENTINEL get-master-addr-by-name, as a host name."""
    by_addr = {a: h for h, a in bed.hosts.items()}
    views: dict[str, str | None] = {}
    for h in bed.hosts:
        words = _redis(bed, h, "SENTINEL", "get-master-addr-by-name", MASTER_NAME, port=26379)
        views[h] = by_addr.get(words.split()[0]) if words.split() else None
    return views


def _agreed_primary(bed: NspawnTestbed) -> str | None:
    """The primary every Sentinel names, once that host's Redis says it is one."""
    named = set(_primary_per_sentinel(bed).values())
    if len(named) != 1:
        return None
    primary = named.pop()
    if primary is None or _info(bed, primary).get("role") != "master":
        return None
    return primary


def _replicating(bed: NspawnTestbed, host: str, primary: str) -> bool:
    info = _info(bed, host)
    return (
        info.get("role") == "slave"
        and info.get("master_host") == bed.hosts[primary]
        and info.get("master_link_status") == "up"
    )


def _selfplay(bed: NspawnTestbed, games: int, board: str = "hex8") -> str:
    """`celery call ringrift.selfplay` from the controller; returns the task id."""
    kwargs = {"board_type": board, "num_players": 2, "num_games": games}
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
        env=_broker_env(bed),
        timeout=60,
    )
    assert call.returncode == 0, call.stdout + call.stderr
    return call.stdout.strip().splitlines()[-1]


def _result(bed: NspawnTestbed, task_id: str, timeout: float = 180) -> str:
    """`celery result` from the controller: waits for the task, returns what it prints."""
    result = bed.ctl(
        [str(VENV_BIN / "celery"), "-A", "ringrift_fleet", "result", task_id],
        env=_broker_env(bed),
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _run_seconds(bed: NspawnTestbed, task_id: str) -> float | None:
    """How long a task ran, from its worker's "succeeded in Xs" log line."""
    pattern = re.compile(re.escape(f"ringrift.selfplay[{task_id}] succeeded in ") + r"([0-9.]+)s")
    for h in bed.hosts:
        log = bed.ssh(h, "journalctl -u 'ringrift-worker@*' --no-pager -n 300").stdout
        match = pattern.search(log)
        if match:
            return float(match.group(1))
    return None


def _poll(
    what: str,
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 1.0,
    explain: Callable[[], str] | None = None,
) -> T:
    """Bounded poll; returns the first truthy value or fails naming what was awaited
    (and what ``explain`` then shows)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            seen = f"\n{explain()}" if explain is not None else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{seen}")
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
        # heartbeats before games: the coordinator's cgroup outweighs a worker's 10 to 1
        weight = bed.ssh(host, "systemctl show -p CPUWeight ringrift-coordinator.service")
        assert weight.stdout.strip() == "CPUWeight=1000", (host, weight.stdout, weight.stderr)
        # The generated host list names all three hosts and the voters.
        hosts_yaml = bed.ssh(host, "cat /etc/ringrift/distributed_hosts.yaml").stdout
        for name in ("h1", "h2", "h3", "raft_voters"):
            assert name in hosts_yaml, (host, hosts_yaml)
    # The broker group is all three hosts: Redis and a Sentinel on each, Flower on
    # the first; every unit finds the primary through the Sentinels.
    sentinels = ",".join(f"{a}:26379" for a in bed.hosts.values())
    for host in ("h1", "h2", "h3"):
        proc = bed.ssh(host, "systemctl is-active redis-server.service redis-sentinel.service")
        assert proc.stdout.split() == ["active", "active"], (host, proc.stdout + proc.stderr)
        env = bed.ssh(host, "grep ^RINGRIFT_BROKER_ /etc/ringrift/fleet.env | cut -d= -f1,2")
        assert f'RINGRIFT_BROKER_SENTINELS="{sentinels}"' in env.stdout, (host, env.stdout)
        assert "RINGRIFT_BROKER_URL" not in env.stdout, (host, env.stdout)
    proc = bed.ssh("h1", "systemctl is-active ringrift-flower.service")
    assert proc.stdout.strip() == "active", proc.stdout + proc.stderr
    # No secret in the play's output (no_log); the vault held them.
    for secret in SECRETS.values():
        assert secret not in out


@pytest.mark.timeout(180)
def test_broker_is_private_password_protected_and_never_evicts(fleet: Fleet) -> None:
    bed = fleet.bed
    for host, addr in bed.hosts.items():
        anonymous = bed.ctl([REDIS_CLI, "-h", addr, "-p", "6379", "ping"])
        assert "NOAUTH" in anonymous.stdout + anonymous.stderr, host
        assert _redis(bed, host, "ping").strip() == "PONG", host
        # AOF and noeviction on every node: a promoted replica keeps the same guarantees.
        assert _redis(bed, host, "config", "get", "maxmemory-policy").split() == [
            "maxmemory-policy",
            "noeviction",
        ], host
        assert _redis(bed, host, "config", "get", "appendonly").split() == [
            "appendonly",
            "yes",
        ], host
        bind = _redis(bed, host, "config", "get", "bind")
        assert addr in bind and "0.0.0.0" not in bind, (host, bind)
        # Sentinel too needs the password.
        anonymous = bed.ctl([REDIS_CLI, "-h", addr, "-p", "26379", "ping"])
        assert "NOAUTH" in anonymous.stdout + anonymous.stderr, host


@pytest.mark.timeout(180)
def test_the_broker_is_a_sentinel_set_with_h1_primary(fleet: Fleet) -> None:
    """h1 (the first of `broker`) is the primary, h2 and h3 replicate it, and each
    Sentinel knows the primary, both replicas and the two other Sentinels."""
    bed = fleet.bed
    assert _poll("the Sentinels to agree on a primary", lambda: _agreed_primary(bed), 60) == "h1"
    for h in ("h2", "h3"):
        _poll(f"{h} to replicate h1", functools.partial(_replicating, bed, h, "h1"), 60)

    def complete_view() -> bool:
        for h in bed.hosts:
            text = _redis(bed, h, "SENTINEL", "master", MASTER_NAME, port=26379).split()
            view = dict(zip(text[::2], text[1::2], strict=False))
            if (view.get("num-slaves"), view.get("num-other-sentinels")) != ("2", "2"):
                return False
            if view.get("quorum") != "2":
                return False
        return True

    _poll("every Sentinel to see 2 replicas and 2 other Sentinels", complete_view, 60)


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
    task_id = _selfplay(bed, 2)
    text = _result(bed, task_id)
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


FLEET_UNITS = ("ringrift-coordinator.service", "ringrift-worker@cpu.service")


@pytest.mark.timeout(600)
def test_killing_the_broker_primary_fails_over_and_celery_call_still_completes(
    fleet: Fleet,
) -> None:
    """`systemctl kill -s KILL redis-server` on the primary: the Sentinels promote a
    replica, a `celery call` from the controller completes on a container worker, no
    coordinator or worker restarts, the old primary comes back as a replica, and the
    play run again leaves the promoted primary where it is."""
    bed = fleet.bed
    hosts = tuple(bed.hosts)
    old = _poll("the Sentinels to agree on a primary", lambda: _agreed_primary(bed), 60)
    for h in hosts:
        if h != old:
            _poll(f"{h} to replicate {old}", functools.partial(_replicating, bed, h, old), 60)
    before = {(h, u): _unit(bed, h, u) for h in hosts for u in FLEET_UNITS}
    redis_before = _unit(bed, old, "redis-server.service")

    t0 = time.monotonic()
    killed = bed.ssh(old, "systemctl kill -s KILL redis-server")
    assert killed.returncode == 0, killed.stdout + killed.stderr

    def promoted() -> str | None:
        primary = _agreed_primary(bed)
        return primary if primary not in (None, old) else None

    new = _poll(f"the Sentinels to promote a replica of {old}", promoted, 90, 0.5)
    failover_s = time.monotonic() - t0
    # The operator's `celery call` finds the new primary through the Sentinels.
    task_id = _selfplay(bed, 2)
    text = _result(bed, task_id)
    first_job_after_s = time.monotonic() - t0
    assert "'status': 'completed'" in text and "'games': 2" in text, text
    assert any(f"'node': '{h}'" in text for h in hosts), text

    # systemd brings the killed Redis back (after broker_sentinel_restart_sec), and
    # the Sentinels make it a replica of the new primary.
    _poll(
        f"{old}'s Redis to rejoin as a replica of {new}",
        lambda: _replicating(bed, old, new),
        120,
    )
    redis_after = _unit(bed, old, "redis-server.service")
    assert int(redis_after["NRestarts"]) == int(redis_before["NRestarts"]) + 1, redis_after
    # Nothing of the fleet needed a restart: same processes, no systemd restarts.
    for (h, u), was in before.items():
        now = _unit(bed, h, u)
        assert now.get("ActiveState") == "active", (h, u, now)
        assert (now.get("MainPID"), now.get("NRestarts")) == (
            was.get("MainPID"),
            was.get("NRestarts"),
        ), (h, u, was, now)

    # The play again, after the failover: it must not fight Sentinel for the primary.
    again = bed.playbook(fleet.inventory, "--tags", "broker")
    assert again.returncode == 0, (again.stdout + again.stderr)[-6000:]
    changed = {h: c["changed"] for h, c in recap(again.stdout).items() if c["changed"]}
    assert changed == {}, (changed, again.stdout[-6000:])
    assert _primary_per_sentinel(bed) == {h: new for h in hosts}
    assert _replicating(bed, old, new)
    conf = bed.ssh(old, "grep -E '^(replicaof|slaveof) ' /etc/redis/redis.conf").stdout
    assert conf.split() == ["replicaof", bed.hosts[new], "6379"], conf
    print(
        json.dumps(
            {
                "failover_s": round(failover_s, 1),
                "first_job_after_s": round(first_job_after_s, 1),
                "old_primary": old,
                "new_primary": new,
            }
        )
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
    # Size the job to outlast the play's first steps: time a small one first.
    # The largest board's games are the slowest (~8x hex8's): even a quick box
    # gets ~100 s of work within the task's limit of 100,000 games.
    probe = _selfplay(bed, 400, "hexagonal")
    _result(bed, probe, timeout=120)
    took = _poll("the probe job's run time", lambda: _run_seconds(bed, probe), 60)
    # ~100 s of work: it must outlast the play's steps before the drain, even on a busy box
    games = max(400, min(100_000, int(400 * 100 / max(took, 0.01))))
    task_id = _selfplay(bed, games, "hexagonal")

    # "received" is not enough: a message prefetched behind another job is not running
    # yet, and a warm shutdown rightly hands it back to the queue instead of waiting.
    started = f"job {task_id} attempt 1 started on"

    def running_on() -> str | None:
        for h in ("h1", "h2", "h3"):
            log = bed.ssh(h, "journalctl -u 'ringrift-worker@*' --no-pager -n 200").stdout
            if started in log:
                return h
        return None

    node = _poll(
        "the long job to start on a worker",
        running_on,
        60,
        explain=lambda: "\n".join(
            f"{h}: "
            + bed.ssh(h, f"journalctl -u 'ringrift-worker@*' --no-pager | grep -F {task_id}").stdout
            for h in ("h1", "h2", "h3")
        ),
    )
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
    received = journal.find(started)
    done = journal.find(f"ringrift.selfplay[{task_id}] succeeded")
    drain = journal.lower().find("warm shutdown", received)
    assert received >= 0 and done >= 0 and drain >= 0, journal[-3000:]
    # The shutdown began while the job ran, and waited for it to finish.
    assert received < drain < done, journal[-3000:]
    result = _result(bed, task_id, timeout=120)
    assert "'status': 'completed'" in result, result
    assert f"'games': {games}" in result and "'attempt': 1" in result, result
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
