"""Consensus benchmark: failover, synchronous ledger writes, idle cost, /status latency.

Prints ONE JSON line.  Everything runs as real processes on 127.0.0.1:

* failover: 3 coordinator processes; SIGKILL the leader KILLS times and time
  until a survivor accepts a ledger write again (the outage a scheduler sees);
  the killed voter is restarted before the next kill.  Then the same with
  ``RAFT_ELECT_ON_RESET=0`` (followers wait out the election timer instead of
  standing when the dead leader's connection resets), side by side.
* sync writes: 3 bare Raft voter processes (this file with ``--voter``); the
  leader's and then a follower's process each add work items back to back
  for WRITE_SECONDS, every call waiting for the majority commit.
* idle: CPU and RSS of each idle coordinator (status server, ticks, Raft
  heartbeats) over IDLE_SECONDS.
* /status: 100 concurrent clients, keep-alive, against one coordinator.
* Bully (CONSENSUS_MODE=bully, 1 s lease): the same kill loop, fewer kills.
* idle leader changes: 3 idle coordinators beside one busy-looping process per
  CPU for CHANGES_SECONDS, /status sampled every 0.5 s; reported per hour
  (extrapolated from the window, which the JSON line states).  Target 0.

Usage: python benchmarks/consensus.py [--kills N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.coordinators import (  # noqa: E402
    LocalFleet,
    cpu_seconds,
    make_op,
    post_json,
    rss_mb,
)
from tests.support.procs import PYTHON, free_port, stop, wait_for  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


# --- failover ---------------------------------------------------------------------------


def write_ok(fleet: LocalFleet, name: str, work_id: str) -> bool:
    try:
        body = make_op("add_work.v1", work_id=work_id, payload={})
        return bool(fleet.op(name, body, timeout=1.0)["ok"])
    except OSError:
        return False


def measure_failover(
    workdir: Path, kills: int, mode: str = "raft", env: dict[str, str] | None = None
) -> list[float]:
    fleet = LocalFleet(
        workdir / f"failover-{mode}", voters=3, mode=mode, extra_env={**EXTRA_ENV, **(env or {})}
    )
    times: list[float] = []
    try:
        fleet.start_all()
        for k in range(kills):
            leader = fleet.wait_leader(15)
            if leader is None:
                raise RuntimeError(f"no leader before kill {k}")
            survivor = next(n for n in fleet.running() if n != leader)
            assert write_ok(fleet, survivor, f"pre-{k}")
            t0 = time.monotonic()
            fleet.kill(leader, signal.SIGKILL)
            deadline = t0 + 10
            n = 0
            while time.monotonic() < deadline:
                n += 1
                if write_ok(fleet, survivor, f"k{k}-{n}"):
                    break
            times.append(time.monotonic() - t0)
            fleet.start(leader)
            if not fleet.wait_up(leader, 20):
                raise RuntimeError(f"{leader} did not restart: {fleet.log(leader)}")
            time.sleep(1.0)  # let it reconnect and catch up before the next kill
        same = wait_for(lambda: len({json.dumps(fleet.ledger(n)) for n in fleet.nodes}) == 1, 10)
        RAW["replicas_identical_after_failover"] = [float(same)]
    finally:
        fleet.stop_all()
    return times


# --- synchronous writes --------------------------------------------------------------------


def voter_main(name: str, cluster: str, state_dir: str) -> None:
    """A bare Raft voter that benchmarks on request (stdin/stdout lines)."""
    from ringrift_fleet.config import load_config
    from ringrift_fleet.consensus.raft_state import RaftLedger
    from ringrift_fleet.consensus.voters import Voter

    voters = [Voter(n, "127.0.0.1", p, 0) for n, p in json.loads(cluster)]
    config = load_config({"RINGRIFT_P2P_BIND_HOST": "127.0.0.1", "RINGRIFT_CLUSTER_KEY": "bench"})
    ledger = RaftLedger(name, voters, config=config, state_dir=state_dir)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "role":
            print("leader" if ledger.is_leader() else f"follower {ledger.leader()}", flush=True)
        elif cmd[0] == "bench":
            seconds, writers = float(cmd[1]), int(cmd[2])
            print(f"done {bench_writes(ledger, name, seconds, writers):.1f}", flush=True)
        elif cmd[0] == "hash":
            import hashlib

            with ledger.reading() as state:
                text = json.dumps(state, sort_keys=True)
            print(hashlib.sha256(text.encode()).hexdigest(), flush=True)
        elif cmd[0] == "quit":
            break
    ledger.close()


def bench_writes(ledger: Any, name: str, seconds: float, writers: int) -> float:
    """Synchronous add_work calls per second from ``writers`` threads (each waits for commit)."""
    import threading

    counts = [0] * writers
    end = time.monotonic() + seconds

    def writer(w: int) -> None:
        n = 0
        while time.monotonic() < end:
            if ledger.add_work(f"{name}-{writers}-{w}-{n}", {"n": n}):
                n += 1
        counts[w] = n

    t0 = time.monotonic()
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return sum(counts) / (time.monotonic() - t0)


def measure_writes(workdir: Path, seconds: float, writers: int) -> dict[str, float]:
    names = ["v0", "v1", "v2"]
    cluster = json.dumps([(n, free_port()) for n in names])
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        for n in names:
            procs[n] = subprocess.Popen(
                [PYTHON, __file__, "--voter", n, "--cluster", cluster, "--state", str(workdir / n)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        for p in procs.values():
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"

        def ask(n: str, text: str) -> str:
            p = procs[n]
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write(text + "\n")
            p.stdin.flush()
            return p.stdout.readline().strip()

        roles: dict[str, str] = {}

        def settled() -> bool:
            roles.update({n: ask(n, "role") for n in names})
            return list(roles.values()).count("leader") == 1 and all(
                r == "leader" or r.split()[-1] != "None" for r in roles.values()
            )

        if not wait_for(settled, 15, 0.1):
            raise RuntimeError(f"no leader among bench voters: {roles}")
        leader = next(n for n, r in roles.items() if r == "leader")
        follower = next(n for n in names if n != leader)
        out: dict[str, float] = {}
        for who, node in (("leader", leader), ("follower", follower)):
            for w in (1, writers):
                out[f"{who}_{w}"] = float(ask(node, f"bench {seconds} {w}").split()[1])
        # every replica must hold the same ledger after all that
        hashes: set[str] = set()
        for _ in range(50):
            time.sleep(0.1)
            hashes = {ask(n, "hash") for n in names}
            if len(hashes) == 1:
                break
        out["replicas_identical"] = float(len(hashes) == 1)
        return out
    finally:
        for p in procs.values():
            if p.poll() is None and p.stdin is not None:
                try:
                    p.stdin.write("quit\n")
                    p.stdin.flush()
                except OSError:
                    pass
        for p in procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                stop(p)  # type: ignore[arg-type]


# --- idle cost and /status latency -------------------------------------------------------------


async def status_load(url: str, clients: int, per_client: int, interval: float) -> list[float]:
    """``clients`` concurrent keep-alive clients; each sends ``per_client`` GETs, one every
    ``interval`` seconds (0 = back to back, i.e. saturation).  Latencies in ms."""
    import aiohttp

    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(k: int) -> None:
            await asyncio.sleep(interval * k / clients)  # spread the clients over a period
            for _ in range(per_client):
                t0 = time.perf_counter()
                async with session.get(url) as resp:
                    await resp.read()
                    assert resp.status == 200
                took = time.perf_counter() - t0
                latencies.append(took * 1000)
                if interval:
                    await asyncio.sleep(max(0.0, interval - took))

        await asyncio.wait_for(asyncio.gather(*(client(k) for k in range(clients))), 300)
    return latencies


def scrape_until(base: str, stop: threading.Event, every: float = 1.0) -> None:
    """GET /metrics every ``every`` s until ``stop`` (bounded by the caller's join)."""
    for _ in range(600):
        if stop.wait(every):
            return
        with contextlib.suppress(OSError):
            urllib.request.urlopen(base + "/metrics", timeout=5).read()


def measure_scrapes(base: str, pid: int, idle_cpu: float, n: int = 50) -> dict[str, float]:
    """CPU milliseconds one /metrics scrape costs the coordinator (its idle CPU subtracted)."""
    size = len(urllib.request.urlopen(base + "/metrics", timeout=5).read())
    c0, t0 = cpu_seconds(pid), time.monotonic()
    took = []
    for _ in range(n):
        s = time.perf_counter()
        urllib.request.urlopen(base + "/metrics", timeout=5).read()
        took.append((time.perf_counter() - s) * 1000)
    wall = time.monotonic() - t0
    cpu = cpu_seconds(pid) - c0 - idle_cpu * wall
    return {
        "scrape_cpu_ms": round(max(cpu, 0.0) / n * 1000, 2),
        "scrape_p50_ms": round(pct(took, 50), 2),
        "scrape_bytes": size,
    }


# figures whose spread over --rounds is reported too (key_min, key_max)
SPREAD = ("status_p99_ms", "status_p99_ms_with_1hz_scrapes", "scrape_cpu_ms", "scrape_p50_ms")


def median_of_rounds(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the rounds; min and max of the ones in SPREAD."""
    out: dict[str, float] = {"rounds": len(rounds)}
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        out[key] = round(statistics.median(values), 2)
        if key in SPREAD and len(rounds) > 1:
            out[f"{key}_min"], out[f"{key}_max"] = min(values), max(values)
    return out


EXTRA_ENV: dict[str, str] = {}  # --env K=V, for tuning runs
RAW: dict[str, list[float]] = {}  # series behind the summary, for --plot
STATUS_INTERVAL = 0.1  # each of the 100 clients polls 10 times a second: 1,000 req/s offered


def measure_idle_and_status(workdir: Path, idle_seconds: float) -> dict[str, float]:
    fleet = LocalFleet(workdir / "idle", voters=3, extra_env={"RINGRIFT_P2P_SCHEDULER_TICK": "1.0"})
    try:
        fleet.start_all()
        leader = fleet.wait_leader(15)
        assert leader
        for i in range(200):  # a ledger with something in it
            post_json(
                fleet.nodes[leader].url + "/consensus/op",
                make_op("add_work.v1", work_id=f"w{i}", payload={"i": i}),
            )
        time.sleep(2.0)
        pids = {n: c.proc.pid for n, c in fleet.nodes.items() if c.proc is not None}
        term_before = max((fleet.status(n) or {}).get("term", 0) for n in fleet.nodes)
        before = {n: cpu_seconds(p) for n, p in pids.items()}
        t0 = time.monotonic()
        time.sleep(idle_seconds)
        elapsed = time.monotonic() - t0
        cpu = {n: (cpu_seconds(p) - before[n]) / elapsed * 100 for n, p in pids.items()}
        rss = {n: rss_mb(p) for n, p in pids.items()}
        # elections while nothing failed: the price of short timeouts on a busy machine
        term_after = max((fleet.status(n) or {}).get("term", 0) for n in fleet.nodes)
        url = fleet.nodes[leader].url + "/status"
        slow = asyncio.run(status_load(url, 100, 10, 1.0))
        RAW["status_1hz_ms"] = slow
        paced = asyncio.run(status_load(url, 100, 50, STATUS_INTERVAL))
        RAW["status_paced_ms"] = paced
        scrape = measure_scrapes(fleet.nodes[leader].url, pids[leader], cpu[leader] / 100)
        # the paced load again while Prometheus-like scrapes arrive every second
        stop_scraping = threading.Event()
        scraper = threading.Thread(
            target=scrape_until, args=(fleet.nodes[leader].url, stop_scraping), daemon=True
        )
        scraper.start()
        try:
            scraped = asyncio.run(status_load(url, 100, 50, STATUS_INTERVAL))
        finally:
            stop_scraping.set()
            scraper.join(10)
        RAW["status_paced_scraped_ms"] = scraped
        t0 = time.monotonic()
        saturated = asyncio.run(status_load(url, 100, 30, 0.0))
        saturated_rps = len(saturated) / (time.monotonic() - t0)
        RAW["status_saturated_ms"] = saturated
        return {
            "idle_cpu_pct": round(max(cpu.values()), 2),
            "idle_cpu_pct_leader": round(cpu[leader], 2),
            "rss_mb": round(max(rss.values()), 1),
            "idle_spurious_elections": term_after - term_before,
            "status_p50_ms": round(pct(paced, 50), 2),
            "status_p99_ms": round(pct(paced, 99), 2),
            "status_clients": 100,
            "status_client_interval_s": STATUS_INTERVAL,
            "status_requests": len(paced),
            "status_1hz_p50_ms": round(pct(slow, 50), 2),
            "status_1hz_p99_ms": round(pct(slow, 99), 2),
            "status_saturated_p50_ms": round(pct(saturated, 50), 2),
            "status_saturated_p99_ms": round(pct(saturated, 99), 2),
            "status_saturated_rps": round(saturated_rps),
            "status_p99_ms_with_1hz_scrapes": round(pct(scraped, 99), 2),
            **scrape,
        }
    finally:
        fleet.stop_all()


# --- idle leader changes on loaded voters -------------------------------------------------

HOG = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end:\n    pass\n"


def measure_idle_leader_changes(workdir: Path, seconds: float, hogs: int) -> dict[str, Any]:
    """Three idle voters beside ``hogs`` busy-looping processes (a GPU host's CPU busy
    feeding its GPUs): every voter's /status every 0.5 s, and each voter's own
    count of leader changes.  Target: no change at all."""
    fleet = LocalFleet(workdir / "idle-changes", voters=3, extra_env=dict(EXTRA_ENV))
    procs: list[subprocess.Popen[bytes]] = []
    changes = 0
    leaderless = 0.0
    samples = 0
    try:
        fleet.start_all()
        if fleet.wait_leader(20) is None:
            raise RuntimeError("no leader before the idle run")
        time.sleep(2.0)  # the first leader's term settles
        hog = HOG.format(s=seconds + 30)  # bounded even if this process dies
        procs = [subprocess.Popen([PYTHON, "-c", hog], start_new_session=True) for _ in range(hogs)]
        last: str | None = None
        start = time.monotonic()
        end = start + seconds
        while time.monotonic() < end:
            t = time.monotonic()
            views = {(fleet.status(n) or {}).get("leader_id") for n in fleet.nodes}
            samples += 1
            leader = views.pop() if len(views) == 1 else None
            if leader is None:
                leaderless += 0.5
            elif last is not None and leader != last:
                changes += 1
            last = leader or last
            time.sleep(max(0.0, 0.5 - (time.monotonic() - t)))
        elapsed = time.monotonic() - start
        counted = [
            int(((fleet.status(n) or {}).get("raft_detail") or {}).get("leader_changes", 0))
            for n in fleet.nodes
        ]
    finally:
        for proc in procs:  # our own hogs, by PID (each leads its own session)
            proc.kill()
            proc.wait(30)
        fleet.stop_all()
    return {
        "idle_leader_changes_per_h": round(changes * 3600 / elapsed, 2),
        "idle_leader_changes": changes,
        "idle_leader_changes_counted_by_voters": max(counted),
        "idle_leaderless_samples_s": leaderless,
        "idle_changes_window_s": round(elapsed, 1),
        "idle_changes_samples": samples,
        "idle_changes_cpu_hogs": hogs,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--write-seconds", type=float, default=5.0)
    parser.add_argument("--idle-seconds", type=float, default=15.0)
    parser.add_argument(
        "--rounds", type=int, default=1, help="idle//status rounds: median, with min and max"
    )
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--only", choices=("writes", "idle", "failover", "bully", "idle-changes"))
    parser.add_argument("--changes-seconds", type=float, default=240.0)
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--bully-kills", type=int, default=6)
    parser.add_argument("--voter")
    parser.add_argument("--cluster")
    parser.add_argument("--state")
    parser.add_argument("--env", action="append", default=[], help="K=V for the coordinators")
    parser.add_argument("--plot", help="write a PNG of failover times and /status latency here")
    args = parser.parse_args()
    EXTRA_ENV.update(kv.split("=", 1) for kv in args.env)
    if args.voter:
        voter_main(args.voter, args.cluster, args.state)
        return
    result: dict[str, Any] = {"benchmark": "consensus"}
    with tempfile.TemporaryDirectory(prefix="bench-consensus-") as tmp:
        work = Path(tmp)
        if args.only in (None, "writes"):
            writes = measure_writes(work / "writes", args.write_seconds, args.writers)
            result.update(
                leader_sync_writes_per_s=round(writes[f"leader_{args.writers}"], 1),
                follower_sync_writes_per_s=round(writes[f"follower_{args.writers}"], 1),
                sync_writers=args.writers,
                leader_sync_writes_per_s_1_writer=round(writes["leader_1"], 1),
                follower_sync_writes_per_s_1_writer=round(writes["follower_1"], 1),
                replicas_identical_after_writes=bool(writes["replicas_identical"]),
            )
        if args.only in (None, "idle"):
            rounds = [
                measure_idle_and_status(work / f"round{i}", args.idle_seconds)
                for i in range(max(1, args.rounds))
            ]
            result.update(median_of_rounds(rounds))
        if args.only in (None, "idle-changes"):
            result.update(measure_idle_leader_changes(work, args.changes_seconds, args.hogs))
        if args.only in (None, "bully"):
            lease = "1.0"
            bully = measure_failover(
                work, args.bully_kills, "bully", {"RINGRIFT_P2P_LEADER_LEASE_DURATION": lease}
            )
            result.update(
                bully_lease_s=float(lease),
                bully_failover_p50_s=round(statistics.median(bully), 3),
                bully_failover_max_s=round(max(bully), 3),
                bully_failover_kills=len(bully),
                bully_replicas_identical_after_failover=bool(
                    RAW["replicas_identical_after_failover"][0]
                ),
            )
        if args.only in (None, "failover"):
            failover = measure_failover(work, args.kills)
            RAW["failover_s"] = failover
            result.update(
                failover_p50_s=round(statistics.median(failover), 3),
                failover_p99_s=round(pct(failover, 99), 3),
                failover_max_s=round(max(failover), 3),
                failover_kills=len(failover),
                replicas_identical_after_failover=bool(RAW["replicas_identical_after_failover"][0]),
            )
            # side by side: the same kills with the reset ignored (the election timer
            # alone, as before RAFT_ELECT_ON_RESET)
            timer = measure_failover(
                work / "timer", args.kills, env={"RINGRIFT_P2P_RAFT_ELECT_ON_RESET": "0"}
            )
            result.update(
                failover_timer_only_p50_s=round(statistics.median(timer), 3),
                failover_timer_only_max_s=round(max(timer), 3),
            )
    result["cpus"] = os.cpu_count()
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    if args.plot:
        plot(args.plot, result)
    print(json.dumps(result))


def plot(path: str, result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    failover = RAW.get("failover_s", [])
    if failover:
        left.bar(range(1, len(failover) + 1), failover, color="tab:blue")
        left.axhline(1.0, color="tab:orange", linestyle="--", label="p50 target 1 s")
        left.axhline(2.0, color="tab:red", linestyle="--", label="max target 2 s")
        left.set_xlabel("leader kill (SIGKILL)")
        left.set_ylabel("seconds until a survivor commits a write")
        left.set_title("Raft failover, 3 coordinator processes")
        left.legend()
    for key, label in (
        ("status_1hz_ms", "100 clients, 1 req/s each"),
        ("status_paced_ms", "100 clients, 10 req/s each"),
        ("status_saturated_ms", "100 clients, back to back"),
    ):
        series = sorted(RAW.get(key, []))
        if series:
            ys = [i / len(series) for i in range(1, len(series) + 1)]
            right.plot(series, ys, label=label)
    right.axvline(20, color="tab:red", linestyle="--", label="p99 target 20 ms")
    right.set_xscale("log")
    right.set_xlabel("GET /status latency (ms)")
    right.set_ylabel("fraction of requests")
    right.set_title("/status under 100 concurrent clients")
    right.legend()
    fig.suptitle(
        f"benchmarks/consensus.py on {result.get('cpus')} shared cores, "
        f"load avg {result.get('load_avg_1m')}"
    )
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
