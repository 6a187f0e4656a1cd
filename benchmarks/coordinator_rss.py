"""Coordinator memory benchmark: resident set size of a real coordinator and CLI weight.

Prints ONE JSON line.  A coordinator runs on every GPU host beside the
workers, so what it holds resident (and whether that grows) is memory the
GPU jobs do not get; ``ringrift-fleet --help`` is what an operator feels first.

* rss_start_mb / rss_end_mb / rss_growth_mb / rss_peak_mb: VmRSS of a real
  ``ringrift-fleet coordinator`` process (one-host inventory on 127.0.0.1, a
  real redis-server as broker, the scheduler attached: the leader plans and
  sends Celery tasks), sampled every second.  "start" is the first sample
  after a warm-up (the scheduler imports Celery on its first leader tick),
  "end" the last; growth = end - start.
* nosched_*: the same with ``--no-scheduler`` (membership, consensus, server).
  Consensus is the default (Bully); ``--raft`` runs both with Raft and SWIM
  (what voter hosts run; pysyncobj is then loaded).
* busy_*: the coordinator of ``ringrift-fleet up`` (demo profile, one CPU
  worker running the reference workload) while the loop really runs:
  self-play results come back, training, evaluation and promotions happen.
  busy_games / busy_promotions say how much happened while it was sampled;
  busy_ledger_start_kb / busy_ledger_end_kb: the replicated ledger's size as
  JSON, the state a busy coordinator rightly grows with (jobs, history).
* rss_at_health_mb: the first sample, as soon as /health answers.
* python_floor_rss_mb: a bare interpreter (``import time; sleep``), the floor.
* coordinator_modules / coordinator_heavy: modules the scheduler-attached
  coordinator imported over its whole run (from ``-X importtime``), and which
  of the heavy third-party packages are among them.
* import_mb: what each piece adds to a fresh interpreter's RSS, imported in
  the coordinator's order (each figure is the increment over those before it;
  numpy and pysyncobj last: what was cut, and what only Raft voters load).
* cli_help_s: median wall time of ``python -m ringrift_fleet --help`` (5 runs,
  interpreter start included); import_modules: modules in ``sys.modules``
  after ``import ringrift_fleet.cli; build_parser()``; help_heavy: heavy
  packages imported for that (should be none).

Usage: python benchmarks/coordinator_rss.py [--duration S] [--warmup S] [--busy]
           [--samples FILE] [--baseline FILE --plot PNG]

``--samples`` writes this run's per-second RSS series (JSON) so a later run
can draw it as its ``--baseline`` on the ``--plot``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ringrift_fleet.localhost import free_port, redis_argv, redis_binary  # noqa: E402
from tests.support.imports import HEAVY, imported, one_host_inventory, tops  # noqa: E402

PYTHON = sys.executable


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    env.update(extra or {})
    return env


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End a process this benchmark started (its own group), by PID; bounded."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
            return bool(resp.status == 200)
    except (OSError, ValueError):
        return False


def _wait(pred: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return False


def _round(x: float) -> float:
    return round(x, 1)


def sample(pid: int, seconds: float) -> list[float]:
    """VmRSS once a second for ``seconds`` (bounded); stops early if the process ends."""
    out: list[float] = []
    for _ in range(int(seconds) + 1):
        v = rss_mb(pid)
        if v is None:
            break
        out.append(v)
        time.sleep(1.0)
    return out


RAFT_ENV = {
    "RINGRIFT_RAFT_ENABLED": "true",
    "RINGRIFT_CONSENSUS_MODE": "raft",
    "RINGRIFT_SWIM_ENABLED": "true",
    "RINGRIFT_MEMBERSHIP_MODE": "swim",
}


def _summary(log: Path, at_health: float, warm: list[float], steady: list[float]) -> dict[str, Any]:
    """RSS over the run, and what the process imported (its ``-X importtime`` log)."""
    modules = imported(log.read_text(errors="replace"))
    return {
        "rss_at_health_mb": _round(at_health),
        "rss_start_mb": _round(steady[0]),
        "rss_end_mb": _round(steady[-1]),
        "rss_growth_mb": _round(steady[-1] - steady[0]),
        "rss_peak_mb": _round(max(warm + steady)),
        "modules": len(modules),
        "heavy": sorted(set(HEAVY) & tops(modules)),
        "series": [round(v, 2) for v in warm + steady],
    }


def run_coordinator(
    workdir: Path,
    *,
    scheduler: bool,
    broker_url: str,
    duration: float,
    warmup: float,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One coordinator, one-host inventory: RSS samples and imported modules."""
    name = "h0"
    status_port = free_port()
    hosts = one_host_inventory(name, status_port)
    hosts_file = workdir / "distributed_hosts.yaml"
    hosts_file.write_text(yaml.safe_dump(hosts))
    log = workdir / "coordinator.log"
    env = _env(
        {
            "RINGRIFT_P2P_STATE_DIR": str(workdir / "state"),
            "RINGRIFT_P2P_BIND_HOST": "127.0.0.1",
            "RINGRIFT_BROKER_URL": broker_url,
            "PYTHONPROFILEIMPORTTIME": "1",
            **(extra_env or {}),
        }
    )
    argv = [PYTHON, "-m", "ringrift_fleet", "coordinator", "--node", name]
    argv += ["--hosts-file", str(hosts_file), "--log-level", "WARNING"]
    if not scheduler:
        argv.append("--no-scheduler")
    proc = _spawn(argv, env, log)
    try:
        if not _wait(lambda: _healthy(status_port) or proc.poll() is not None, 60):
            raise RuntimeError(f"coordinator did not answer /health in 60 s; see {log}")
        if proc.poll() is not None:
            raise RuntimeError(f"coordinator exited {proc.returncode}; see {log}")
        at_health = rss_mb(proc.pid) or 0.0
        warm = sample(proc.pid, warmup)
        steady = sample(proc.pid, duration)
        if len(steady) < 2 or proc.poll() is not None:
            raise RuntimeError(f"coordinator ended during sampling; see {log}")
    finally:
        _stop(proc)
    return _summary(log, at_health, warm, steady)


BENCH_KEY = "coordinator-rss-bench"


def ledger_kb(port: int) -> float | None:
    """Size of the coordinator's ledger replica as JSON (its job state), in kB."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/consensus/ledger")
    req.add_header("Authorization", f"Bearer {BENCH_KEY}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return round(len(resp.read()) / 1024, 1)
    except (OSError, ValueError):
        return None


def run_busy(
    workdir: Path, *, duration: float, warmup: float, extra_env: dict[str, str] | None = None
) -> dict[str, Any]:
    """The coordinator of a one-machine fleet doing real work (what `up` starts)."""
    import io

    from ringrift_fleet.local_fleet import LocalFleet, UpOptions

    opts = UpOptions(
        state_dir=workdir,
        flower=False,
        cpu_workers=1,
        node_id="bench",
        env={
            "PYTHONPROFILEIMPORTTIME": "1",
            "PYTHONPATH": str(REPO),
            "RINGRIFT_CLUSTER_KEY": BENCH_KEY,
            **(extra_env or {}),
        },
    )
    fleet = LocalFleet(opts, out=io.StringIO())
    try:
        fleet.start()
        coord = next(c for c in fleet.children if c.name == "coordinator")
        at_health = rss_mb(coord.proc.pid) or 0.0
        warm = sample(coord.proc.pid, warmup)
        before = fleet.status() or {}
        ledger_start = ledger_kb(fleet.status_port)
        steady = sample(coord.proc.pid, duration)
        after = fleet.status() or {}
        ledger_end = ledger_kb(fleet.status_port)
        if len(steady) < 2 or coord.proc.poll() is not None:
            raise RuntimeError(f"coordinator ended during sampling; see {coord.log}")
    finally:
        fleet.stop()

    def games(status: dict[str, Any]) -> int:
        counts = (status.get("scheduler") or {}).get("games") or {}
        return sum(int(v) for v in counts.values())

    return {
        **_summary(coord.log, at_health, warm, steady),
        "games": games(after) - games(before),
        "ledger_start_kb": ledger_start,
        "ledger_end_kb": ledger_end,
        "promotions": fleet.promotions(after),
    }


def python_floor() -> float:
    proc = subprocess.Popen(
        [PYTHON, "-c", "import time; time.sleep(30)"], env=_env(), start_new_session=True
    )
    try:
        time.sleep(1.0)
        return _round(rss_mb(proc.pid) or 0.0)
    finally:
        _stop(proc)


# What a coordinator loads, in the order it loads it; the last two for reference.
IMPORT_STEPS = (
    "asyncio",
    "yaml",
    "aiohttp.web",
    "ringrift_fleet.node",
    "redis",
    "celery.result",
    "ringrift_fleet.execution.dispatch",
    "ringrift_fleet.scheduler.service",
    "ringrift_fleet.resources",
    "numpy",
    "pysyncobj",
)


def import_costs() -> dict[str, float]:
    """RSS increment (MB) of each step of IMPORT_STEPS in one fresh interpreter."""
    code = (
        "import importlib, json, sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "def rss():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmRSS:'):\n"
        "            return int(line.split()[1]) / 1024\n"
        "out, prev = {}, rss()\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
        "    now = rss()\n"
        "    out[name], prev = round(now - prev, 1), now\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [PYTHON, "-c", code, *IMPORT_STEPS],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    costs: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return costs


def cli_weight() -> dict[str, Any]:
    code = (
        "import sys, json, ringrift_fleet.cli as c; c.build_parser(); "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [PYTHON, "-c", code], env=_env(), capture_output=True, text=True, timeout=60, check=True
    )
    mods = json.loads(out.stdout)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run(
            [PYTHON, "-m", "ringrift_fleet", "--help"],
            env=_env(),
            capture_output=True,
            timeout=60,
            check=True,
        )
        times.append(time.perf_counter() - t0)
    return {
        "cli_help_s": round(statistics.median(times), 3),
        "import_modules": len(mods),
        "help_heavy": sorted(tops(set(mods)) & set(HEAVY)),
    }


def idle_runs(
    root: Path, args: argparse.Namespace, result: dict[str, Any], series: dict[str, list[float]]
) -> None:
    """The `ringrift-fleet coordinator` runs, with and without the scheduler, on one Redis."""
    port = free_port()
    redis = _spawn(redis_argv(redis_binary(), port, root), _env(), root / "redis.log")
    try:
        url = f"redis://127.0.0.1:{port}/0"
        if not _wait(lambda: _port_open(port), 10):
            raise RuntimeError("redis-server did not open its port")
        for sched in (True, False):
            workdir = root / ("sched" if sched else "nosched")
            workdir.mkdir()
            r = run_coordinator(
                workdir,
                scheduler=sched,
                broker_url=url,
                duration=args.duration,
                warmup=args.warmup,
                extra_env=RAFT_ENV if args.raft else None,
            )
            prefix = "" if sched else "nosched_"
            result[prefix + "rss_at_health_mb"] = r["rss_at_health_mb"]
            result[prefix + "rss_start_mb"] = r["rss_start_mb"]
            result[prefix + "rss_end_mb"] = r["rss_end_mb"]
            result[prefix + "rss_growth_mb"] = r["rss_growth_mb"]
            result[prefix + "rss_peak_mb"] = r["rss_peak_mb"]
            result[prefix + "coordinator_modules"] = r["modules"]
            result[prefix + "coordinator_heavy"] = r["heavy"]
            series["scheduler" if sched else "no_scheduler"] = r["series"]
    finally:
        _stop(redis)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--duration", type=float, default=60.0, help="sampling seconds per run")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds before 'start'")
    ap.add_argument(
        "--busy", action="store_true", help="also measure `up`'s coordinator with a worker"
    )
    ap.add_argument("--raft", action="store_true", help="idle runs with Raft and SWIM")
    ap.add_argument("--only-busy", action="store_true", help="the busy run alone (long runs)")
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="extra environment for the busy run (e.g. a short ledger retention)",
    )
    ap.add_argument("--samples", type=Path, help="write the RSS series (JSON) here")
    ap.add_argument("--baseline", type=Path, help="a --samples file to draw beside this run")
    ap.add_argument("--plot", type=Path, help="draw the RSS series to this PNG")
    ap.add_argument("--label", default="after", help="this run's legend label")
    ap.add_argument("--baseline-label", default="before", help="the baseline's legend label")
    ap.add_argument(
        "--replot", type=Path, help="draw this saved --samples file instead of measuring"
    )
    args = ap.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env if "=" in item)
    if len(extra_env) != len(args.env):
        ap.error("--env wants VAR=VALUE")
    if args.replot:
        if not args.plot:
            ap.error("--replot needs --plot")
        baseline = json.loads(args.baseline.read_text()) if args.baseline else {}
        plot(
            json.loads(args.replot.read_text()),
            baseline,
            args.plot,
            (args.baseline_label, args.label),
        )
        return
    series: dict[str, list[float]] = {}
    result: dict[str, Any] = {}
    result.update(cli_weight())
    result["python_floor_rss_mb"] = python_floor()
    result["import_mb"] = import_costs()
    with tempfile.TemporaryDirectory(prefix="coord-rss-") as tmp:
        root = Path(tmp)
        if not args.only_busy:
            idle_runs(root, args, result, series)
        if args.busy or args.only_busy:
            r = run_busy(
                root / "busy", duration=args.duration, warmup=args.warmup, extra_env=extra_env
            )
            for key in ("rss_at_health_mb", "rss_start_mb", "rss_end_mb", "rss_growth_mb"):
                result["busy_" + key] = r[key]
            result["busy_rss_peak_mb"] = r["rss_peak_mb"]
            result["busy_games"] = r["games"]
            result["busy_promotions"] = r["promotions"]
            result["busy_ledger_start_kb"] = r["ledger_start_kb"]
            result["busy_ledger_end_kb"] = r["ledger_end_kb"]
            result["busy_coordinator_heavy"] = r["heavy"]
            series["busy"] = r["series"]
    result["duration_s"] = args.duration
    if extra_env:
        result["busy_env"] = extra_env
    result["consensus"] = "raft+swim" if args.raft else "bully+http"
    if args.samples:
        args.samples.write_text(json.dumps(series))
    if args.plot:
        baseline = json.loads(args.baseline.read_text()) if args.baseline else {}
        plot(series, baseline, args.plot, (args.baseline_label, args.label))
    print(json.dumps(result))


def plot(
    series: dict[str, list[float]],
    baseline: dict[str, list[float]],
    path: Path,
    labels: tuple[str, str] = ("before", "after"),
) -> None:
    """RSS over time per mode: this run solid, the baseline dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    colours = {"scheduler": "tab:blue", "no_scheduler": "tab:orange", "busy": "tab:green"}
    for mode, colour in colours.items():
        if mode in baseline:
            ys = baseline[mode]
            ax.plot(range(len(ys)), ys, "--", color=colour, label=f"{mode}, {labels[0]}")
        if mode in series:
            ys = series[mode]
            ax.plot(range(len(ys)), ys, "-", color=colour, label=f"{mode}, {labels[1]}")
    ax.set_xlabel("seconds after /health answered")
    ax.set_ylabel("coordinator VmRSS (MB)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    main()
