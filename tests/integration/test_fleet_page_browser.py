"""The fleet page in a real headless Chromium, against a real one-machine fleet
(`ringrift-fleet up`: Redis, coordinator with the scheduler, CPU worker) that has
promoted a model: the page loads without script errors, shows the leader, the
host and an Elo plot with data.  Set RINGRIFT_UPDATE_SCREENSHOT=1 to refresh
docs/img/fleet-page.png from this run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.support.coordinators import get_json
from tests.support.prereq import need_command
from tests.support.procs import PYTHON, REPO, spawn, stop, wait_for

pytestmark = pytest.mark.integration

SCREENSHOT = REPO / "docs" / "img" / "fleet-page.png"


def chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=90)


def promoted(url: str) -> bool:
    try:
        doc = get_json(url + "/fleet.json", timeout=2)
    except (OSError, ValueError):
        return False
    return any(len(c["elo_history"]) >= 2 for c in doc["configs"])


@pytest.mark.timeout(300)
def test_fleet_page_in_headless_chromium(tmp_path: Path) -> None:
    browser = need_command("chromium")
    log = tmp_path / "up.log"
    argv = [PYTHON, "-m", "ringrift_fleet", "up", "--duration", "260", "--no-flower"]
    argv += ["--state-dir", str(tmp_path / "up"), "--cpu-workers", "2"]
    proc = spawn(argv, log=log)
    try:
        found: list[str] = []

        def url_printed() -> bool:
            m = re.search(r"coordinator \S+: (http://127\.0\.0\.1:\d+)/status", log.read_text())
            found[:] = [m.group(1)] if m else []
            return bool(m)

        assert wait_for(url_printed, 60, 0.25), log.read_text()[-3000:]
        url = found[0]
        with urllib.request.urlopen(url + "/", timeout=5) as resp:  # no token needed
            html = resp.read().decode()
            assert resp.headers["Content-Type"].startswith("text/html")
        assert "<script src" not in html and "http://" not in html and "https://" not in html
        assert "<form" not in html and "method=" not in html.lower()  # no mutating controls
        # the demo trains, evaluates and promotes within a couple of minutes on 2 cores
        assert wait_for(lambda: promoted(url), 200, 1.0), log.read_text()[-3000:]

        out = chromium(
            browser, tmp_path / "profile", "--virtual-time-budget=8000", "--dump-dom", url + "/"
        )
        dom = out.stdout
        assert out.returncode == 0, out.stderr[-2000:]
        assert re.search(r'id="leader">local<', dom), dom[:3000]
        assert 'data-errors="0"' in dom, dom[:3000]
        assert re.search(r'data-loaded="[1-9]', dom), dom[:3000]
        assert 'data-host="local"' in dom
        points = [int(n) for n in re.findall(r'data-points="(\d+)"', dom)]
        assert len(points) >= 1 and max(points) >= 2, points  # an Elo curve after a promotion
        assert "Uncaught" not in out.stderr, out.stderr[-2000:]

        shot = tmp_path / "fleet-page.png"
        out = chromium(
            browser,
            tmp_path / "profile2",
            "--virtual-time-budget=8000",
            "--hide-scrollbars",
            "--window-size=1400,1100",
            f"--screenshot={shot}",
            url + "/",
        )
        assert out.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", out.stderr[
            -2000:
        ]
        if os.environ.get("RINGRIFT_UPDATE_SCREENSHOT"):
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, SCREENSHOT)
    finally:
        stop(proc, timeout=20)
