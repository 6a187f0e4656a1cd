"""A local fleet of coordinator processes on 127.0.0.1, for consensus tests and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.procs import PYTHON, free_port, spawn, stop, wait_for

CLUSTER_KEY = "test-cluster-key"


@dataclass
class Coordinator:
    name: str
    status_port: int
    raft_port: int
    swim_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.status_port}"


def get_json(url: str, timeout: float = 1.0, token: str | None = None) -> Any:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def post_json(url: str, body: Any, *, token: str | None = CLUSTER_KEY, timeout: float = 3.0) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


@dataclass
class LocalFleet:
    """N voters (and optional non-voters) as separate `ringrift-fleet coordinator` processes."""

    workdir: Path
    voters: int = 3
    non_voters: int = 0
    mode: str = "raft"  # raft | bully | hybrid
    extra_env: dict[str, str] = field(default_factory=dict)
    # True: the scheduler places work (needs a broker in extra_env); False:
    # --no-scheduler, consensus only (the policy only releases dead hosts' jobs)
    scheduler: bool = False
    nodes: dict[str, Coordinator] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for i in range(self.voters + self.non_voters):
            name = f"n{i}"
            self.nodes[name] = Coordinator(name, free_port(), free_port(), free_port())
        self.hosts_file = self.workdir / "distributed_hosts.yaml"
        doc = {
            "hosts": {
                c.name: {
                    "address": "127.0.0.1",
                    "status_port": c.status_port,
                    "raft_port": c.raft_port,
                    "swim_port": c.swim_port,
                }
                for c in self.nodes.values()
            },
            "raft_voters": [f"n{i}" for i in range(self.voters)],
        }
        self.hosts_file.write_text(yaml.safe_dump(doc))

    def env(self, name: str) -> dict[str, str]:
        env = {
            "RINGRIFT_P2P_STATE_DIR": str(self.workdir / name),
            "RINGRIFT_P2P_BIND_HOST": "127.0.0.1",
            "RINGRIFT_CLUSTER_KEY": CLUSTER_KEY,
            "RINGRIFT_P2P_SCHEDULER_TICK": "0.2",
            "RINGRIFT_RAFT_ENABLED": "false" if self.mode == "bully" else "true",
            "RINGRIFT_CONSENSUS_MODE": self.mode,
            "RINGRIFT_SWIM_ENABLED": "false",
            "RINGRIFT_MEMBERSHIP_MODE": "http",
            "RINGRIFT_P2P_HEARTBEAT_INTERVAL": "0.5",
            "RINGRIFT_P2P_PEER_TIMEOUT": "2.0",
        }
        env.update(self.extra_env)
        return env

    def start(self, name: str) -> Coordinator:
        c = self.nodes[name]
        argv = [PYTHON, "-m", "ringrift_fleet", "coordinator", "--node", name]
        argv += ["--hosts-file", str(self.hosts_file), "--log-level", "INFO"]
        if not self.scheduler:
            argv.append("--no-scheduler")
        c.proc = spawn(argv, env=self.env(name), log=self.workdir / f"{name}.log")
        return c

    def start_all(self, timeout: float = 30.0) -> None:
        for name in self.nodes:
            self.start(name)
        for name in self.nodes:
            assert self.wait_up(name, timeout), f"{name} did not come up; see {self.log(name)}"

    def wait_up(self, name: str, timeout: float) -> bool:
        return wait_for(lambda: self.status(name) is not None, timeout, 0.1)

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text()[-3000:] if path.exists() else "(no log)"

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        c = self.nodes[name]
        if c.proc is not None:
            stop(c.proc, sig=sig)
            c.proc = None

    def stop_all(self) -> None:
        for name in self.nodes:
            self.kill(name, signal.SIGTERM)

    def running(self) -> list[str]:
        return [n for n, c in self.nodes.items() if c.proc is not None and c.proc.poll() is None]

    def status(self, name: str) -> dict[str, Any] | None:
        try:
            return get_json(self.nodes[name].url + "/status", timeout=0.5)
        except (OSError, ValueError):
            return None

    def leaders(self) -> dict[str, int]:
        """Nodes that say they lead, with the term each leads in."""
        out = {}
        for name in self.running():
            s = self.status(name)
            if s and s.get("role") == "leader":
                out[name] = s.get("term")
        return out

    def wait_leader(self, timeout: float, exclude: str | None = None) -> str | None:
        """A leader every running voter agrees on (bounded wait)."""
        found: list[str] = []

        def agreed() -> bool:
            views = [self.status(n) for n in self.running() if int(n[1:]) < self.voters]
            names = {v.get("leader_id") for v in views if v}
            leaders = self.leaders()
            if len(names) == 1 and None not in names and len(leaders) == 1:
                (leader,) = names
                if leader != exclude and leader in leaders:
                    found[:] = [leader]
                    return True
            return False

        wait_for(agreed, timeout, 0.02)
        return found[0] if found else None

    def ledger(self, name: str) -> dict[str, Any]:
        """The node's replica of the ledger (plain state dict)."""
        body = get_json(self.nodes[name].url + "/consensus/ledger", timeout=2, token=CLUSTER_KEY)
        return body["state"]

    def op(self, name: str, body: Any, *, timeout: float = 3.0) -> Any:
        return post_json(self.nodes[name].url + "/consensus/op", body, timeout=timeout)


def make_op(name: str, **args: Any) -> dict[str, Any]:
    return {"op": name, "now": time.time(), "term": 0, **args}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
