"""Hosts as network namespaces on one bridge, for cluster tests.

Safety rules: before any namespace gets an address, the subnet is blackholed in
the main namespace, so nothing here can leak to a real network and the main
namespace never talks to the test hosts; tests address hosts only from inside
namespaces (``NetnsLab.run``/``curl``).  Everything is removed on ``close``.
Partitions are iptables DROP rules on a host's ``eth0`` inside its namespace,
so its loopback (used to probe it) keeps working.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.prereq import need_command, need_root
from tests.support.procs import REPO


def sh(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=timeout)


@dataclass
class NetnsLab:
    """``count`` namespaces ``<tag>n<i>`` with addresses ``<subnet>.<10+i>`` on one bridge."""

    subnet: str  # e.g. "10.202.0" (a /24)
    count: int
    tag: str = field(default_factory=lambda: "c5" + secrets.token_hex(2))
    names: list[str] = field(default_factory=list)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _done: list[list[str]] = field(default_factory=list)  # undo commands, newest last

    def __post_init__(self) -> None:
        need_root("network namespaces")
        for cmd in ("ip", "iptables", "curl"):
            need_command(cmd)

    @property
    def bridge(self) -> str:
        return f"{self.tag}br"

    def address(self, i: int) -> str:
        return f"{self.subnet}.{10 + i}"

    def open(self) -> NetnsLab:
        route = f"{self.subnet}.0/24"
        found = sh("ip", "route", "show", "exact", route).stdout.strip()
        if found.startswith("blackhole"):
            # a killed run left it (or a run beside this one holds it): the subnet is
            # already sealed off, so use it and leave it as found
            pass
        elif found:
            raise RuntimeError(f"{route} is routed here ({found!r}); pick another subnet")
        else:
            sh("ip", "route", "add", "blackhole", route)
            self._done.append(["ip", "route", "del", "blackhole", route])
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self._done.append(["ip", "link", "del", self.bridge])
        sh("ip", "link", "set", self.bridge, "up")
        for i in range(self.count):
            ns, veth = f"{self.tag}n{i}", f"{self.tag}v{i}"
            sh("ip", "netns", "add", ns)
            self._done.append(["ip", "netns", "del", ns])
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self._done.append(["ip", "link", "del", veth])
            sh("ip", "link", "set", veth, "master", self.bridge, "up")
            self.ns(ns, "ip", "link", "set", "lo", "up")
            self.ns(ns, "ip", "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            self.ns(ns, "ip", "link", "set", "eth0", "up")
            self.names.append(ns)
        return self

    def ns(
        self, ns: str, *argv: str, check: bool = True, timeout: float = 20
    ) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", ns, *argv, check=check, timeout=timeout)

    def spawn(
        self, ns: str, argv: Sequence[str], env: dict[str, str], log: Path
    ) -> subprocess.Popen[bytes]:
        out = open(log, "ab")  # noqa: SIM115 - handed to the child
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **env}
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
        self._procs.append(proc)
        return proc

    def http_json(
        self, ns: str, url: str, body: Any = None, token: str = "", timeout: float = 3
    ) -> Any:
        """curl from inside ``ns``; None when it cannot connect or the answer is not JSON."""
        argv = ["curl", "-s", "-m", str(timeout)]
        if token:
            argv += ["-H", f"Authorization: Bearer {token}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
        r = self.ns(ns, *argv, url, check=False, timeout=timeout + 5)
        try:
            return json.loads(r.stdout) if r.returncode == 0 else None
        except ValueError:
            return None

    def cut(self, ns: str) -> None:
        """Drop everything on the host's eth0, both ways (loopback still works)."""
        for chain, flag in (("INPUT", "-i"), ("OUTPUT", "-o")):
            self.ns(ns, "iptables", "-I", chain, flag, "eth0", "-j", "DROP")

    def heal(self, ns: str) -> None:
        for chain, flag in (("INPUT", "-i"), ("OUTPUT", "-o")):
            self.ns(ns, "iptables", "-D", chain, flag, "eth0", "-j", "DROP", check=False)

    def separate(self, ns: str, address: str) -> None:
        """Drop what ``ns`` exchanges with ``address`` (a partition between two hosts,
        each keeping its other links)."""
        self.ns(ns, "iptables", "-I", "INPUT", "-s", address, "-j", "DROP")
        self.ns(ns, "iptables", "-I", "OUTPUT", "-d", address, "-j", "DROP")

    def unseparate(self, ns: str, address: str) -> None:
        self.ns(ns, "iptables", "-D", "INPUT", "-s", address, "-j", "DROP", check=False)
        self.ns(ns, "iptables", "-D", "OUTPUT", "-d", address, "-j", "DROP", check=False)

    def close(self) -> None:
        import signal

        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
        for cmd in reversed(self._done):
            sh(*cmd, check=False)
        self._done.clear()
