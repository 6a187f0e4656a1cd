"""A Redis Sentinel set on 127.0.0.1: one primary, replicas and Sentinels (real
redis-server processes; ``redis-server --sentinel`` is what the Debian package
``redis-sentinel`` runs).  Passwords on both the Redis nodes and the Sentinels, so
the clients' password paths are exercised too."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

import redis
from redis import Redis

from tests.support.prereq import need
from tests.support.procs import free_port, port_open, spawn, stop, wait_for

MASTER = "ringrift"
PASSWORD = "redis-test-pw"
SENTINEL_PASSWORD = "sentinel-test-pw"


RAN = re.compile(r"job (?P<job>\S+) attempt (?P<attempt>\d+) ran to the end on ")


def redis_node_argv(
    binary: str, bind: str, port: int, workdir: Path, primary: tuple[str, int] | None = None
) -> list[str]:
    """A Redis node of the set: AOF on, passwords on, a replica of ``primary`` if given."""
    argv = [binary, "--port", str(port), "--bind", bind, "--dir", str(workdir)]
    argv += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
    argv += ["--requirepass", PASSWORD, "--masterauth", PASSWORD]
    argv += ["--repl-diskless-sync-delay", "0"]  # default 5 s: a slow first sync
    if primary is not None:
        argv += ["--replicaof", primary[0], str(primary[1])]
    return argv


def sentinel_conf(
    bind: str,
    port: int,
    workdir: Path,
    primary: tuple[str, int],
    *,
    quorum: int = 2,
    down_after_ms: int = 1000,
    failover_timeout_ms: int = 5000,
) -> str:
    """A Sentinel's configuration file (``redis-server <file> --sentinel``)."""
    return "\n".join(
        [
            f"port {port}",
            f"bind {bind}",
            f"dir {workdir}",
            f"requirepass {SENTINEL_PASSWORD}",
            f"sentinel sentinel-pass {SENTINEL_PASSWORD}",
            f"sentinel monitor {MASTER} {primary[0]} {primary[1]} {quorum}",
            f"sentinel auth-pass {MASTER} {PASSWORD}",
            f"sentinel down-after-milliseconds {MASTER} {down_after_ms}",
            f"sentinel failover-timeout {MASTER} {failover_timeout_ms}",
            f"sentinel parallel-syncs {MASTER} 1",
            "",
        ]
    )


def executions(log: str) -> Counter[str]:
    """Jobs a worker log shows run to the end (the task's line before it stores the
    result; a copy answered from the stored result, or refused, did not run).  Not
    Celery's "succeeded" line: a failover can fail the task's SUCCESS after the job ran
    and its result was stored."""
    return Counter(m.group("job") for m in RAN.finditer(log))


@dataclass
class Node:
    port: int
    proc: subprocess.Popen[bytes] | None
    dir: Path


@dataclass
class SentinelSet:
    workdir: Path
    replicas: int = 2
    sentinels: int = 3
    quorum: int = 2
    down_after_ms: int = 1000
    failover_timeout_ms: int = 5000
    redis: list[Node] = field(default_factory=list)
    sentinel: list[Node] = field(default_factory=list)

    # -- what clients are given ----------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {
            "RINGRIFT_BROKER_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in self.sentinel),
            "RINGRIFT_BROKER_MASTER_NAME": MASTER,
            "RINGRIFT_BROKER_PASSWORD": PASSWORD,
            "RINGRIFT_BROKER_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
            "RINGRIFT_P2P_BROKER_WAIT_TIMEOUT": "0.5",
        }

    def client(self, port: int) -> Redis:
        return Redis(port=port, password=PASSWORD, socket_timeout=2)

    def sentinel_client(self, port: int) -> Redis:
        return Redis(port=port, password=SENTINEL_PASSWORD, socket_timeout=1)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> SentinelSet:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> SentinelSet:
        binary = shutil.which("redis-server")
        need(binary is not None, "redis-server (Debian package redis-server; `make deps`)")
        assert binary is not None
        ports = [free_port() for _ in range(1 + self.replicas)]
        for i, port in enumerate(ports):
            d = self.workdir / f"redis{i}"
            d.mkdir(parents=True, exist_ok=True)
            upstream = ("127.0.0.1", ports[0]) if i else None
            argv = redis_node_argv(binary, "127.0.0.1", port, d, upstream)
            self.redis.append(Node(port, spawn(argv, log=d / "redis.log"), d))
        for n in self.redis:
            if not wait_for(partial(port_open, n.port), 10):
                raise RuntimeError(f"redis-server did not open {n.port}; see {n.dir}/redis.log")
        primary = self.client(ports[0])
        ok = wait_for(lambda: self._replicas_online(primary), 15, 0.1)
        if not ok:
            raise RuntimeError(f"replicas did not connect: {primary.info('replication')}")
        for i in range(self.sentinels):
            port = free_port()
            d = self.workdir / f"sentinel{i}"
            d.mkdir(parents=True, exist_ok=True)
            conf = d / "sentinel.conf"
            conf.write_text(
                sentinel_conf(
                    "127.0.0.1",
                    port,
                    d,
                    ("127.0.0.1", ports[0]),
                    quorum=self.quorum,
                    down_after_ms=self.down_after_ms,
                    failover_timeout_ms=self.failover_timeout_ms,
                )
            )
            argv = [binary, str(conf), "--sentinel"]
            self.sentinel.append(Node(port, spawn(argv, log=d / "sentinel.log"), d))
        for n in self.sentinel:
            if not wait_for(partial(port_open, n.port), 10):
                raise RuntimeError(f"sentinel did not open {n.port}; see {n.dir}/sentinel.log")
        if not wait_for(self._sentinels_see_each_other, 20, 0.2):
            raise RuntimeError("the Sentinels did not discover each other and the replicas")
        return self

    def _replicas_online(self, primary: Redis) -> bool:
        info = cast(dict[str, Any], primary.info("replication"))
        states = [info.get(f"slave{i}", {}).get("state") for i in range(self.replicas)]
        return states == ["online"] * self.replicas

    def _sentinels_see_each_other(self) -> bool:
        try:
            for s in self.sentinel:
                m = self.sentinel_client(s.port).execute_command("SENTINEL MASTER", MASTER)  # type: ignore[no-untyped-call]
                if int(m["num-other-sentinels"]) < self.sentinels - 1:
                    return False
                if int(m["num-slaves"]) < self.replicas:
                    return False
            return True
        except redis.RedisError:
            return False

    def primary_port(self) -> int | None:
        """The primary the Sentinels agree on (None while they disagree or are down)."""
        seen = set()
        for s in self.sentinel:
            try:
                c = self.sentinel_client(s.port)
                _, port = c.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", MASTER)  # type: ignore[no-untyped-call]
                seen.add(int(port))
            except (redis.RedisError, TypeError):
                return None
        return seen.pop() if len(seen) == 1 else None

    def node(self, port: int) -> Node:
        return next(n for n in self.redis if n.port == port)

    def kill_primary(self) -> int:
        port = self.primary_port()
        assert port is not None, "no agreed primary to kill"
        n = self.node(port)
        assert n.proc is not None
        stop(n.proc, sig=signal.SIGKILL)
        n.proc = None
        return port

    def restart(self, port: int) -> None:
        """Bring a killed node back (it rejoins as a replica: Sentinel reconfigures it)."""
        n = self.node(port)
        binary = shutil.which("redis-server")
        assert binary is not None
        # no replicaof: it starts as a primary, and Sentinel demotes it
        n.proc = spawn(redis_node_argv(binary, "127.0.0.1", port, n.dir), log=n.dir / "redis.log")
        wait_for(lambda: port_open(port), 10)

    def pids(self) -> dict[str, int]:
        out = {f"redis:{n.port}": n.proc.pid for n in self.redis if n.proc is not None}
        out.update({f"sentinel:{n.port}": n.proc.pid for n in self.sentinel if n.proc})
        return out

    def stop(self) -> None:
        for n in [*self.sentinel, *self.redis]:
            if n.proc is not None:
                stop(n.proc, timeout=5)
                n.proc = None
