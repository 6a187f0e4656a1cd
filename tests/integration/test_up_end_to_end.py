"""`ringrift-fleet up --until-promotions 1`: the whole loop on this machine, then nothing left."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.support.procs import PYTHON, REPO, wait_for
from tests.support.webhook_server import recording_server

pytestmark = pytest.mark.integration


def _ours(marker: str) -> list[psutil.Process]:
    """Processes still running that belong to this run (its state dir is in their env)."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.pid == os.getpid():
                continue
            cmd = " ".join(p.info["cmdline"] or [])
            env = p.environ() if marker not in cmd else {}
            if marker in cmd or any(marker in v for v in env.values()):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _up(
    tmp_path: Path, hook: str, *args: str, sigint_ignored: bool = False
) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop("RINGRIFT_BROKER_URL", None)
    env["RINGRIFT_WEBHOOK_URL"] = hook
    env["PYTHONPATH"] = str(REPO)
    return subprocess.Popen(
        [PYTHON, "-m", "ringrift_fleet", "up", "--state-dir", str(tmp_path / "fleet"), *args],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_ignore_sigint if sigint_ignored else None,
    )


def _finish(proc: subprocess.Popen[str], timeout: float, marker: str) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate(timeout=30)
        _reap(marker)
        pytest.fail(f"`up` did not finish in {timeout}s:\n{out[-4000:]}")
    return out


def _reap(marker: str) -> None:
    """After a failure: end this run's processes by PID.  ``up`` starts each child in
    its own session, so killing ``up``'s group alone left a coordinator, a worker
    and Redis running (and loading the rest of the test run) for 11 minutes."""
    for p in _ours(marker):
        try:
            p.kill()
        except (psutil.Error, OSError):
            continue


@pytest.mark.timeout(300)
def test_up_runs_the_loop_to_a_promotion_and_leaves_nothing(tmp_path: Path) -> None:
    marker = str(tmp_path / "fleet")
    with recording_server() as hook:
        proc = _up(tmp_path, hook.url(), "--until-promotions", "1")
        try:
            out = _finish(proc, 240, marker)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                _reap(marker)
        assert proc.returncode == 0, out[-4000:]
        # every stage of the loop, in the terminal
        for text in (
            "CPU worker",
            "games=",
            ": sync on",
            ": training on",
            ": evaluation on",
            "notify training_complete",
            "notify model_promoted",
            "goal of 1 reached",
        ):
            assert text in out, f"{text!r} missing from:\n{out[-4000:]}"
        assert f"state and artifacts: {marker}" in out
        # the webhook got the events
        assert wait_for(
            lambda: (
                {"training_complete", "model_promoted"}
                <= {b.get("event") for b in hook.bodies() if isinstance(b, dict)}
            ),
            10,
        ), hook.bodies()
        promoted = next(b for b in hook.bodies() if b.get("event") == "model_promoted")
        assert promoted["details"]["win_rate"] >= 0.55
    # artifacts on disk: games, a model
    arts = Path(marker) / "artifacts"
    assert list(arts.rglob("*.jsonl.gz")), "no games written"
    assert [p for p in arts.rglob("*") if "model" in p.name or p.parent.name == "models"]
    time.sleep(0.5)
    left = _ours(marker)
    assert not left, [(p.pid, p.cmdline()) for p in left]


@pytest.mark.timeout(120)
def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """``up`` started the way a shell without job control starts a background job
    (``up &`` in a script): with SIGINT ignored.  Python then installs no
    KeyboardInterrupt handler of its own, and ``kill -INT`` once left the whole
    fleet running; ``up`` must handle the signal whatever it inherited."""
    marker = str(tmp_path / "fleet")
    with recording_server() as hook:
        proc = _up(tmp_path, hook.url(), "--no-flower", sigint_ignored=True)
        try:
            assert wait_for(lambda: len(_ours(marker)) >= 3, 60, 0.5), "fleet never started"
            time.sleep(3)
            os.killpg(proc.pid, signal.SIGINT)
            out = _finish(proc, 60, marker)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                _reap(marker)
    assert "all processes stopped" in out, out[-3000:]
    time.sleep(0.5)
    left = _ours(marker)
    assert not left, [(p.pid, p.cmdline()) for p in left]


@pytest.mark.timeout(60)
def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    r = subprocess.run(
        [PYTHON, "-m", "ringrift_fleet", "up", "--until-promotions", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert r.returncode == 2
    assert "--until-promotions 0" in r.stderr and "Traceback" not in r.stderr
