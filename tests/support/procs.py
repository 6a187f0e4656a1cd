"""Start real processes for tests and end them by PID, bounded in time."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ringrift_fleet.localhost import free_port as free_port  # re-exported for the tests

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return True
        except Exception:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def spawn(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own process group, output to ``log`` (or discarded)."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONPATH", str(REPO))
    if env:
        full_env.update(env)
    try:
        return subprocess.Popen(
            list(argv),
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd or REPO,
            start_new_session=True,
        )
    finally:
        if log:  # the child holds its own copy of the descriptor
            out.close()  # type: ignore[union-attr]


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """End a process we started, and its group, by PID; SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextlib.contextmanager
def running(argv: Sequence[str], **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    proc = spawn(argv, **kwargs)  # type: ignore[arg-type]
    try:
        yield proc
    finally:
        stop(proc)
