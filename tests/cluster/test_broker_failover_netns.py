"""The broker survives the loss of its primary's host (issue 13), on three hosts.

Three network namespaces, each a host with what a deployed fleet host runs: a
Redis node (the first the primary, the others its replicas; AOF and passwords on),
a Sentinel (quorum 2, down-after 1 s), ``ringrift-fleet coordinator`` (SWIM, Raft
among the three, the scheduler placing real self-play jobs) and a one-process CPU
Celery worker — every fleet process given only the Sentinel set.  The test
``kill -9``s the primary Redis while jobs run and asserts what an operator relies
on: Sentinel promotes a replica; the fleet goes on sending and completing jobs
through it; every job placed before the kill completes, once (0 lost, 0 accepted
twice, 0 executed twice); no process was restarted; /status and ``ringrift-fleet
status`` name the new primary and the failover.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from ringrift_fleet.commands.status import render
from tests.support.netns import NetnsLab
from tests.support.prereq import need_command
from tests.support.procs import PYTHON, wait_for
from tests.support.sentinel import (
    MASTER,
    PASSWORD,
    SENTINEL_PASSWORD,
    executions,
    redis_node_argv,
    sentinel_conf,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

SUBNET = "10.209.0"  # this test's range; blackholed in the main namespace by NetnsLab
KEY = "broker-failover-key"
REDIS_PORT, SENTINEL_PORT, STATUS = 6379, 26379, "http://127.0.0.1:8770"
T = TypeVar("T")


class BrokerFleet:
    """Host ``h<i>`` is namespace ``lab.names[i]`` at ``lab.address(i)``."""

    def __init__(self, lab: NetnsLab, workdir: Path) -> None:
        self.lab, self.workdir = lab, workdir
        self.names = [f"h{i}" for i in range(lab.count)]
        self.procs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self.hosts_file = workdir / "distributed_hosts.yaml"
        doc = {
            "hosts": {
                h: {"address": self.addr(h), "role": "cpu", "cpus": 2, "status": "ready"}
                for h in self.names
            },
            "raft_voters": self.names,
        }
        self.hosts_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    def ns(self, host: str) -> str:
        return self.lab.names[self.names.index(host)]

    def addr(self, host: str) -> str:
        return self.lab.address(self.names.index(host))

    def dir(self, host: str) -> Path:
        d = self.workdir / host
        d.mkdir(parents=True, exist_ok=True)
        return d

    def env(self, host: str) -> dict[str, str]:
        root = self.dir(host)
        return {
            "RINGRIFT_BROKER_SENTINELS": ",".join(
                f"{self.addr(h)}:{SENTINEL_PORT}" for h in self.names
            ),
            "RINGRIFT_BROKER_MASTER_NAME": MASTER,
            "RINGRIFT_BROKER_PASSWORD": PASSWORD,
            "RINGRIFT_BROKER_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
            "RINGRIFT_P2P_BROKER_WAIT_TIMEOUT": "0.5",
            "RINGRIFT_P2P_NODE_ID": host,
            "RINGRIFT_P2P_STATE_DIR": str(root / "state"),
            "RINGRIFT_P2P_ARTIFACT_DIR": str(root / "artifacts"),
            "RINGRIFT_CLUSTER_KEY": KEY,
            "RINGRIFT_SWIM_ENABLED": "true",
            "RINGRIFT_MEMBERSHIP_MODE": "swim",
            "RINGRIFT_RAFT_ENABLED": "true",
            "RINGRIFT_CONSENSUS_MODE": "raft",
            "RINGRIFT_P2P_SCHEDULER_TICK": "0.2",
            "RINGRIFT_P2P_SCHEDULER_BOARD_CONFIGS": "hex8_2p",
            "RINGRIFT_P2P_SELFPLAY_GAMES_PER_JOB": "4",
            "RINGRIFT_P2P_SCHEDULER_PREFETCH": "1",
            "RINGRIFT_P2P_RUN_LEASE_TTL": "3",
            # three hosts share the test machine's cores: its load is not theirs
            "RINGRIFT_P2P_LOAD_MAX_FOR_NEW_JOBS": "1.0",
            "RINGRIFT_P2P_DISK_CRITICAL_THRESHOLD": "100",
            "PYTHONUNBUFFERED": "1",
            "HOME": str(root),
        }

    def spawn(self, host: str, what: str, argv: list[str], env: dict[str, str]) -> None:
        log = self.dir(host) / f"{what}.log"
        self.procs[(host, what)] = self.lab.spawn(self.ns(host), argv, env, log)

    # -- the broker: a Redis node and a Sentinel on every host ---------------------------

    def start_broker(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        primary = (self.addr("h0"), REDIS_PORT)
        for h in self.names:
            d = self.dir(h) / "redis"
            d.mkdir(exist_ok=True)
            argv = redis_node_argv(
                binary, self.addr(h), REDIS_PORT, d, None if h == "h0" else primary
            )
            self.spawn(h, "redis", argv, {})
        assert wait_for(self.replicas_online, 20, 0.2), self.log("h0", "redis")
        for h in self.names:
            d = self.dir(h) / "sentinel"
            d.mkdir(exist_ok=True)
            conf = d / "sentinel.conf"
            conf.write_text(sentinel_conf(self.addr(h), SENTINEL_PORT, d, primary))
            self.spawn(h, "sentinel", [binary, str(conf), "--sentinel"], {})
        assert wait_for(self.sentinels_ready, 30, 0.3), self.log("h0", "sentinel")

    def cli(self, host: str, port: int, *args: str, on: str | None = None) -> list[str]:
        """redis-cli from inside ``host``'s namespace to ``on``'s address; [] on failure."""
        password = SENTINEL_PASSWORD if port == SENTINEL_PORT else PASSWORD
        target = self.addr(on or host)
        argv = ["redis-cli", "-h", target, "-p", str(port), "-a", password, "--no-auth-warning"]
        r = self.lab.ns(self.ns(host), *argv, *args, check=False, timeout=5)
        return r.stdout.split() if r.returncode == 0 and "ERR" not in r.stdout else []

    def replicas_online(self) -> bool:
        info = self.cli("h0", REDIS_PORT, "INFO", "replication")
        return "connected_slaves:2" in info and sum("state=online" in x for x in info) == 2

    def sentinel_field(self, host: str, name: str) -> str | None:
        reply = self.cli(host, SENTINEL_PORT, "SENTINEL", "MASTER", MASTER)
        pairs = dict(zip(reply[::2], reply[1::2], strict=False))
        return pairs.get(name)

    def sentinels_ready(self) -> bool:
        return all(
            self.sentinel_field(h, "num-other-sentinels") == "2"
            and self.sentinel_field(h, "num-slaves") == "2"
            for h in self.names
        )

    def primary(self, among: list[str]) -> str | None:
        """``addr:port`` of the primary the Sentinels of ``among`` agree on."""
        seen = set()
        for h in among:
            reply = self.cli(h, SENTINEL_PORT, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
            if len(reply) != 2:
                return None
            seen.add(":".join(reply))
        return seen.pop() if len(seen) == 1 else None

    # -- the fleet: a coordinator and a worker on every host ------------------------------

    def start_fleet(self) -> None:
        for h in self.names:
            argv = [PYTHON, "-m", "ringrift_fleet", "coordinator", "--node", h]
            argv += ["--hosts-file", str(self.hosts_file), "--log-level", "INFO"]
            self.spawn(h, "coordinator", argv, self.env(h))
        for h in self.names:
            argv = [PYTHON, "-m", "ringrift_fleet", "worker", "--cpu", "--node", h]
            argv += ["--concurrency", "1", "--loglevel", "info"]
            self.spawn(h, "worker", argv, self.env(h))

    def status(self, host: str) -> dict[str, Any] | None:
        body = self.lab.http_json(self.ns(host), f"{STATUS}/status", timeout=2)
        return body if isinstance(body, dict) else None

    def leader(self) -> str | None:
        views = [self.status(h) for h in self.names]
        leaders = {str(v["node_id"]) for v in views if v and v.get("role") == "leader"}
        agreed = {v.get("leader_id") for v in views if v}
        if len(leaders) == 1 and agreed == leaders:
            return leaders.pop()
        return None

    def ledger(self, host: str) -> dict[str, Any]:
        body = self.lab.http_json(self.ns(host), f"{STATUS}/consensus/ledger", token=KEY, timeout=5)
        return body["state"] if isinstance(body, dict) and "state" in body else {}

    def log(self, host: str, what: str) -> str:
        path = self.dir(host) / f"{what}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else f"(no {what} log)"

    def logs(self) -> str:
        return "\n".join(
            f"--- {h} {w}\n{self.log(h, w)}" for h in self.names for w in ("coordinator", "worker")
        )

    def alive(self, what: str) -> list[str]:
        return [h for h in self.names if (p := self.procs.get((h, what))) and p.poll() is None]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[BrokerFleet]:
    need_command("redis-server")
    need_command("redis-cli")
    lab = NetnsLab(SUBNET, 3)
    try:
        lab.open()
        f = BrokerFleet(lab, tmp_path)
        f.start_broker()
        f.start_fleet()
        yield f
    finally:
        lab.close()


def until(fn: Callable[[], T | None], timeout: float, interval: float = 0.3) -> T | None:
    """The first true value ``fn`` returns within ``timeout`` (bounded), else None."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() >= deadline:
            return value or None
        time.sleep(interval)


def _done(work: dict[str, dict[str, Any]]) -> set[str]:
    return {k for k, w in work.items() if w["status"] == "completed"}


def test_killing_the_primary_redis_host_loses_no_job_and_runs_none_twice(
    fleet: BrokerFleet,
) -> None:
    f = fleet
    lead = until(f.leader, 60, 0.5)
    assert lead, f.logs()
    # real jobs flowing on every host's worker before the kill
    assert wait_for(lambda: len(_done(f.ledger(lead).get("work", {}))) >= 6, 60, 0.5), f.logs()
    old = f.primary(f.names)
    assert old == f"{f.addr('h0')}:{REDIS_PORT}", old
    pids = {k: p.pid for k, p in f.procs.items()}

    before = f.ledger(lead)["work"]
    placed_before = set(before) - _done(before)
    f.procs[("h0", "redis")].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()

    survivors = ["h1", "h2"]
    new = until(lambda: p if (p := f.primary(survivors)) != old else None, 30, 0.2)
    assert new, "no replica was promoted\n" + f.log("h1", "sentinel")
    assert new in {f"{f.addr(h)}:{REDIS_PORT}" for h in survivors}
    failover_s = time.monotonic() - killed_at

    def resumed() -> bool:
        done = _done(f.ledger(lead).get("work", {}))
        return placed_before <= done and len(done - set(before)) >= 6

    assert wait_for(resumed, 60, 0.5), (
        f"not resumed: {sorted(placed_before - _done(f.ledger(lead).get('work', {})))} open\n"
        + f.logs()
    )
    resumed_s = time.monotonic() - killed_at

    # nobody restarted: every fleet process, and every surviving broker process, is the
    # one started at the beginning, still running
    for what in ("coordinator", "worker"):
        assert f.alive(what) == f.names, (what, f.logs())
    assert f.alive("redis") == survivors and f.alive("sentinel") == f.names
    assert {k: p.pid for k, p in f.procs.items()} == pids

    # exactly once: accepted from the attempt the ledger holds, executed by one worker
    state = f.ledger(lead)
    work = state["work"]
    for job_id in _done(work):
        assert state["assign"][job_id]["status"] == "completed"
        assert work[job_id]["result"]["attempt"] == state["assign"][job_id]["attempt"]
    runs: Counter[str] = Counter()
    for h in f.names:
        runs += executions((f.dir(h) / "worker.log").read_text(errors="replace"))
    assert _done(work) <= set(runs), sorted(_done(work) - set(runs))
    twice = {j: n for j, n in runs.items() if n > 1}
    assert not twice, f"jobs executed more than once: {twice}"
    assert not placed_before - _done(work)

    # what an operator sees: the new primary and the failover in /status and the CLI
    # Sentinel may fail over again while the test watches (a just-promoted replica that
    # stalls past down-after on a loaded box): /status must follow to the primary the
    # Sentinels name now, with the whole history from the killed one.
    addrs = {f"{f.addr(h)}:{REDIS_PORT}" for h in survivors}
    seen: dict[str, Any] = {}

    def shows_failover() -> bool:
        now = f.primary(survivors)
        topo = ((f.status(lead) or {}).get("broker") or {}).get("topology") or {}
        failovers = topo.get("failovers") or []
        seen.update(now=now, failovers=failovers)
        return (
            now in addrs
            and topo.get("primary") == now
            and bool(failovers)
            and failovers[0].get("from") == old
            and failovers[-1].get("to") == now
        )

    assert wait_for(shows_failover, 20, 0.5), (
        f"primary now {seen.get('now')} (first promoted {new}); /status broker: "
        + json.dumps((f.status(lead) or {}).get("broker"), indent=1)
        + "\n"
        + f.logs()
    )
    now, last = seen["now"], seen["failovers"][-1]
    text = render(f.status(lead) or {})
    assert f"broker primary   {now}" in text, text
    assert f"last failover    {last['from']} -> {now}" in text, text
    logs = [(f.dir(h) / "coordinator.log").read_text(errors="replace") for h in f.names]
    assert any("broker failover" in text for text in logs)
    print(
        f"failover_s={failover_s:.2f} resumed_s={resumed_s:.2f} "
        f"placed_before={len(placed_before)} completed={len(_done(work))}"
    )
