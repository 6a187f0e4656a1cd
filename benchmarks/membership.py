"""Membership benchmark: real processes (ours and swim-p2p) and the 10/100/1,000 simulation.

Prints ONE JSON line on stdout (progress goes to stderr)::

    {"swim": {...}, "swim_p2p": {...} | {"error": ...}, "sim": {"10": {...}, ...}}

Real processes (N=5 agents on 127.0.0.1, `ringrift_fleet.membership.swim.agent`):
  detect_*      seconds from SIGKILL to each survivor's first "dead" event for the
                victim (one sample per kill and survivor); a kill not detected within
                the timeout is counted at the timeout (censored)
  rejoin_p50_s  seconds from restarting the victim (same name and port) until a
                survivor reports it alive again (p50 over kills and survivors)
  false_dead    "dead" events in a separate N=5 cluster run with 10 % of every
                node's outgoing datagrams dropped and nothing killed
  false_dead_30pct  the same over 120 s with 30 % of every node's *incoming*
                datagrams dropped (UDP only, as an INPUT firewall rule would; the
                fallback probe's TCP is untouched); ours only.  Beside it
                suspect_30pct, the "suspect" events of that run, and
                fallback_saves_30pct, the probes only the fallback answered
  idle_cpu_pct  mean CPU % per node over an idle window after forming
  rss_mb        mean RSS per node after forming
  rss_growth_mb largest RSS growth of the never-killed nodes from forming to the end
Simulation (virtual time, no loss): detection p50/p99 over (victim, survivor) pairs
and bytes sent per node per second over a 30 s window with 3 crashes.

Environment knobs: MEMBERSHIP_BENCH_KILLS (10), MEMBERSHIP_BENCH_P2P_KILLS (3),
MEMBERSHIP_BENCH_LOSS_WINDOW (40), MEMBERSHIP_BENCH_LOSS30_WINDOW (120),
MEMBERSHIP_BENCH_SKIP_P2P=1, MEMBERSHIP_BENCH_ONLY=false_dead_30pct (only that
figure: ``{"swim": {"false_dead_30pct": ..., ...}}``), MEMBERSHIP_BENCH_NO_FALLBACK=1
(agents run without the fallback probe, to show what it prevents).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ringrift_fleet.membership.simulation import Simulation  # noqa: E402

N = 5
P2P_CACHE = REPO / "build" / "bench-swim-p2p"


def log(msg: str) -> None:
    print(f"[membership bench] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def wait_for(pred: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if pred():
                return True
        time.sleep(step)
    return False


def free_udp_port() -> int:
    """A port free for UDP *and* TCP (the fallback probe listens on the SWIM port)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free for both UDP and TCP in 50 tries")


class Cluster:
    """N agent processes of one backend; each writes events (JSON lines) and stats."""

    def __init__(
        self,
        backend: str,
        workdir: Path,
        loss: float = 0.0,
        pythonpath: str = "",
        loss_in: float = 0.0,
    ) -> None:
        self.backend = backend
        self.dir = workdir
        self.loss = loss
        self.loss_in = loss_in
        self.names = [f"n{i}" for i in range(N)]
        self.ports = {n: free_udp_port() for n in self.names}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, str(REPO)) if p)

    def label(self, name: str) -> str:
        """How members name each other: our SWIM by name, swim-p2p by address."""
        return name if self.backend == "swim" else f"127.0.0.1:{self.ports[name]}"

    def start(self, name: str) -> None:
        argv = [sys.executable, "-m", "ringrift_fleet.membership.swim.agent"]
        argv += ["--backend", self.backend, "--name", name, "--port", str(self.ports[name])]
        argv += ["--key", "bench", "--loss", str(self.loss)]
        if self.loss_in:
            argv += ["--loss-in", str(self.loss_in)]
        if os.environ.get("MEMBERSHIP_BENCH_NO_FALLBACK") == "1" and self.backend == "swim":
            argv += ["--no-fallback"]
        argv += ["--events-file", str(self.dir / f"{name}.jsonl")]
        argv += ["--stats-file", str(self.dir / f"{name}.json")]
        for seed in self.names[:2]:
            if seed != name:
                argv += ["--seed", f"127.0.0.1:{self.ports[seed]}"]
        out = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115
        self.procs[name] = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)

    def state(self, observer: str, member: str) -> str | None:
        data = json.loads((self.dir / f"{observer}.json").read_text())
        return data["states"].get(self.label(member))

    def all_alive(self, among: list[str]) -> bool:
        return all(self.state(o, m) in ("alive", "suspect") for o in among for m in among if m != o)

    def events(self, observer: str) -> list[dict[str, Any]]:
        path = self.dir / f"{observer}.jsonl"
        if not path.exists():
            return []
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]

    def first_event(
        self, observer: str, member: str, kinds: tuple[str, ...], since: float
    ) -> float | None:
        for e in self.events(observer):
            if e["node"] == self.label(member) and e["kind"] in kinds and e["at"] >= since:
                return float(e["at"]) - since
        return None


def measure_real(
    backend: str, kills: int, loss_window: float, detect_timeout: float, pythonpath: str = ""
) -> dict[str, float | int]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{backend}-") as tmp:
        c = Cluster(backend, Path(tmp), pythonpath=pythonpath)
        try:
            for n in c.names:
                c.start(n)
            if not wait_for(lambda: c.all_alive(c.names), 40):
                raise RuntimeError(f"{backend}: {N} nodes did not form a cluster in 40 s")
            procs = {n: psutil.Process(c.procs[n].pid) for n in c.names}
            time.sleep(2.0)
            rss0 = {n: p.memory_info().rss for n, p in procs.items()}
            cpu0 = {n: sum(p.cpu_times()[:2]) for n, p in procs.items()}
            idle = 10.0
            time.sleep(idle)
            idle_cpu = statistics.mean(
                (sum(p.cpu_times()[:2]) - cpu0[n]) / idle * 100 for n, p in procs.items()
            )
            log(f"{backend}: formed; idle cpu {idle_cpu:.2f} %/node")
            keep = c.names[:2]  # never killed: their RSS is watched over the whole run
            victims = c.names[2:]
            detect: list[float] = []
            rejoin: list[float] = []
            for k in range(kills):
                victim = victims[k % len(victims)]
                survivors = [n for n in c.names if n != victim]
                t0 = time.time()
                c.procs[victim].send_signal(signal.SIGKILL)
                c.procs[victim].wait(5)
                wait_for(
                    lambda v=victim, s=survivors: all(c.state(o, v) == "dead" for o in s),
                    detect_timeout,
                    0.1,
                )
                for o in survivors:
                    dt = c.first_event(o, victim, ("dead",), t0)
                    detect.append(detect_timeout if dt is None else min(dt, detect_timeout))
                t1 = time.time()
                c.start(victim)
                wait_for(lambda: c.all_alive(c.names), detect_timeout, 0.1)
                for o in survivors:
                    dt = c.first_event(o, victim, ("alive", "join"), t1)
                    rejoin.append(detect_timeout if dt is None else min(dt, detect_timeout))
                log(
                    f"{backend}: kill {k + 1}/{kills}: detect max {max(detect[-len(survivors) :]):.2f} s"
                )
                time.sleep(1.0)
            growth = max(
                (procs[n].memory_info().rss - rss0[n]) / 2**20
                for n in keep
                if procs[n].is_running()
            )
            result: dict[str, float | int] = {
                "detect_p50_s": round(pct(detect, 50), 3),
                "detect_p99_s": round(pct(detect, 99), 3),
                "detect_max_s": round(max(detect), 3),
                "rejoin_p50_s": round(pct(rejoin, 50), 3),
                "idle_cpu_pct": round(idle_cpu, 2),
                "rss_mb": round(statistics.mean(v / 2**20 for v in rss0.values()), 1),
                "rss_growth_mb": round(growth, 2),
            }
        finally:
            c.stop_all()
    result["false_dead"] = measure_false_dead(backend, loss_window, pythonpath)
    order = ["detect_p50_s", "detect_p99_s", "detect_max_s", "rejoin_p50_s", "false_dead"]
    order += ["idle_cpu_pct", "rss_mb", "rss_growth_mb"]
    return {k: result[k] for k in order}


def measure_false_dead(backend: str, window: float, pythonpath: str) -> int:
    with tempfile.TemporaryDirectory(prefix=f"bench-{backend}-loss-") as tmp:
        c = Cluster(backend, Path(tmp), loss=0.10, pythonpath=pythonpath)
        try:
            for n in c.names:
                c.start(n)
            if not wait_for(lambda: c.all_alive(c.names), 40):
                raise RuntimeError(f"{backend}: no cluster at 10 % loss in 40 s")
            time.sleep(window)
            dead = sum(1 for n in c.names for e in c.events(n) if e["kind"] == "dead")
            log(f"{backend}: {dead} false dead over {window:.0f} s at 10 % loss")
            return dead
        finally:
            c.stop_all()


def measure_false_dead_30pct(window: float) -> dict[str, int]:
    """Our SWIM, N=5, ``window`` s of 30 % loss at input, nothing killed."""
    with tempfile.TemporaryDirectory(prefix="bench-swim-loss30-") as tmp:
        c = Cluster("swim", Path(tmp), loss_in=0.30)
        try:
            for n in c.names:
                c.start(n)
            if not wait_for(lambda: c.all_alive(c.names), 40):
                raise RuntimeError("swim: no cluster at 30 % loss in 40 s")
            # Count from the moment the cluster is whole: joining under loss is not the test.
            t0 = time.time()
            time.sleep(window)
            evs = [e for n in c.names for e in c.events(n) if e["at"] >= t0]
            dead = sum(1 for e in evs if e["kind"] == "dead")
            suspect = sum(1 for e in evs if e["kind"] == "suspect")
            saves = 0
            for n in c.names:
                with contextlib.suppress(Exception):
                    health = json.loads((c.dir / f"{n}.json").read_text())["health"]
                    saves += int(health.get("fallback", {}).get("suspicions_avoided", 0))
            log(f"swim: {dead} false dead, {suspect} suspect over {window:.0f} s at 30 % loss")
            return {
                "false_dead_30pct": dead,
                "suspect_30pct": suspect,
                "fallback_saves_30pct": saves,
            }
        finally:
            c.stop_all()


def swim_p2p_path() -> str:
    """Where swim-p2p can be imported from, installing it into build/ if need be."""
    if importlib.util.find_spec("swim") is not None:
        return ""
    if not (P2P_CACHE / "swim").exists():
        log("installing swim-p2p into build/bench-swim-p2p (benchmark only)")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--target",
                str(P2P_CACHE),
                "swim-p2p>=1.2.0",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pip install swim-p2p failed: {proc.stderr.strip()[-300:]}")
    return str(P2P_CACHE)


def measure_sim(n: int, seed: int = 3) -> dict[str, float]:
    sim = Simulation(n, seed=seed)
    sim.run_for(3.0)
    start_bytes, start = sim.bytes_sent(), sim.now
    samples: list[float] = []
    victims = [f"n{i}" for i in (1, n // 2, n - 1)]
    for i, v in enumerate(victims):
        sim.run_until(start + 10.0 * i + 2.0)
        t0 = sim.now
        sim.crash(v)
        sim.run_until(t0 + 8.0)
        seen = sim.detections(v, t0)
        survivors = [s for s in sim.survivors() if s != v]
        samples += [seen.get(s, 8.0) for s in survivors]
    sim.run_until(start + 30.0)
    bytes_per_node_s = (sim.bytes_sent() - start_bytes) / n / (sim.now - start)
    return {
        "detect_p50_s": round(pct(samples, 50), 3),
        "detect_p99_s": round(pct(samples, 99), 3),
        "bytes_per_node_s": round(bytes_per_node_s, 1),
    }


def plot(result_file: str, out_png: str) -> None:
    """Draw a result line (saved from a run) for docs/bench/membership.md."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = json.loads(Path(result_file).read_text())
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    keys = ["detect_p50_s", "detect_p99_s", "detect_max_s", "rejoin_p50_s"]
    labels = ["detect p50", "detect p99", "detect max", "rejoin p50"]
    width = 0.38
    for i, (backend, colour) in enumerate((("swim", "tab:blue"), ("swim_p2p", "tab:orange"))):
        values = [res[backend].get(k, float("nan")) for k in keys]
        xs = [x + (i - 0.5) * width for x in range(len(keys))]
        left.bar(xs, values, width, label=backend.replace("_", "-"), color=colour)
    left.axhline(2.0, color="grey", ls="--", lw=1)
    left.axhline(4.0, color="grey", ls=":", lw=1)
    left.set_xticks(range(len(keys)), labels)
    left.set_ylabel("seconds (N = 5 processes)")
    left.set_yscale("log")
    left.set_title("kill → dead, restart → alive")
    left.legend()
    ns = sorted(res["sim"], key=int)
    right.plot([int(n) for n in ns], [res["sim"][n]["bytes_per_node_s"] for n in ns], "o-")
    base = res["sim"][ns[0]]["bytes_per_node_s"]
    right.axhline(2 * base, color="grey", ls="--", lw=1, label="2× the N=10 figure")
    right.set_xscale("log")
    right.set_ylim(0, 2.4 * base)
    right.set_xlabel("members (simulation)")
    right.set_ylabel("bytes sent per node per second")
    right.set_title("our SWIM: load per node vs N")
    right.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--plot":
        plot(sys.argv[2], sys.argv[3])
        return 0
    kills = int(os.environ.get("MEMBERSHIP_BENCH_KILLS", "10"))
    p2p_kills = int(os.environ.get("MEMBERSHIP_BENCH_P2P_KILLS", "3"))
    loss_window = float(os.environ.get("MEMBERSHIP_BENCH_LOSS_WINDOW", "40"))
    loss30_window = float(os.environ.get("MEMBERSHIP_BENCH_LOSS30_WINDOW", "120"))
    only = os.environ.get("MEMBERSHIP_BENCH_ONLY", "")
    if only not in ("", "false_dead_30pct"):
        print(f"MEMBERSHIP_BENCH_ONLY={only!r}: expected false_dead_30pct", file=sys.stderr)
        return 2
    out: dict[str, Any] = {}
    started = time.monotonic()
    if only:
        out["swim"] = measure_false_dead_30pct(loss30_window)
        print(json.dumps(out))
        return 0
    out["swim"] = measure_real("swim", kills, loss_window, detect_timeout=15.0)
    out["swim"].update(measure_false_dead_30pct(loss30_window))
    log(f"swim: {out['swim']}")
    if os.environ.get("MEMBERSHIP_BENCH_SKIP_P2P") == "1":
        out["swim_p2p"] = {"error": "skipped (MEMBERSHIP_BENCH_SKIP_P2P=1)"}
    else:
        try:
            path = swim_p2p_path()
            out["swim_p2p"] = measure_real(
                "swim-p2p", p2p_kills, loss_window / 2, detect_timeout=25.0, pythonpath=path
            )
        except Exception as exc:  # report, never fail the whole benchmark
            out["swim_p2p"] = {"error": f"{type(exc).__name__}: {exc}"}
        log(f"swim_p2p: {out['swim_p2p']}")
    out["sim"] = {}
    for n in (10, 100, 1000):
        t = time.monotonic()
        out["sim"][str(n)] = measure_sim(n)
        log(f"sim {n}: {out['sim'][str(n)]} ({time.monotonic() - t:.0f} s)")
    log(f"total {time.monotonic() - started:.0f} s")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
