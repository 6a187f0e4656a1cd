"""A real redis-server on 127.0.0.1 for one test (or module)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ringrift_fleet.localhost import redis_argv
from tests.support.prereq import need
from tests.support.procs import free_port, port_open, spawn, stop, wait_for


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]
    dir: Path
    password: str = ""

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        stop(self.proc)


def start_redis(
    workdir: Path, port: int | None = None, *, broker_node: bool = False
) -> RedisServer:
    """``ringrift-fleet up``'s embedded Redis (no persistence, no password), or with
    ``broker_node`` one configured like a node of the Ansible ``broker`` role and of
    :class:`tests.support.sentinel.SentinelSet` (AOF with fsync every second,
    ``requirepass``): a single Redis compared like for like with a Sentinel set."""
    binary = shutil.which("redis-server")
    need(binary is not None, "redis-server (Debian package redis-server; `make deps`)")
    assert binary is not None
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    password = ""
    if broker_node:
        from tests.support.sentinel import PASSWORD, redis_node_argv

        argv, password = redis_node_argv(binary, "127.0.0.1", port, workdir), PASSWORD
    else:
        argv = redis_argv(binary, port, workdir)
    proc = spawn(argv, log=workdir / "redis.log")
    if not wait_for(lambda: port_open(port), 10):
        stop(proc)
        raise RuntimeError(f"redis-server did not open port {port}; see {workdir / 'redis.log'}")
    return RedisServer(port=port, proc=proc, dir=workdir, password=password)
