"""A real redis-server on 127.0.0.1 for one test (or module)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ringrift_fleet.localhost import redis_argv
from tests.support.prereq import need
from tests.support.procs import free_port, port_open, spawn, stop, wait_for


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]
    dir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        stop(self.proc)


def start_redis(workdir: Path, port: int | None = None) -> RedisServer:
    binary = shutil.which("redis-server")
    need(binary is not None, "redis-server (Debian package redis-server; `make deps`)")
    assert binary is not None
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = spawn(
        redis_argv(binary, port, workdir),
        log=workdir / "redis.log",
    )
    if not wait_for(lambda: port_open(port), 10):
        stop(proc)
        raise RuntimeError(f"redis-server did not open port {port}; see {workdir / 'redis.log'}")
    return RedisServer(port=port, proc=proc, dir=workdir)
