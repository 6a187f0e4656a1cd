"""`ringrift-fleet --help` and a sending coordinator stay light: what they do not import.

Each check runs in a fresh interpreter, since this test process has imported
everything already.  No timings here (benchmarks/coordinator_rss.py measures).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.imports import HEAVY, tops
from tests.support.procs import REPO


def modules_after(code: str) -> set[str]:
    """Top-level packages in sys.modules after running ``code`` in a new interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.timeout(60)
def test_building_the_parser_imports_nothing_heavy() -> None:
    mods = modules_after("import ringrift_fleet.cli as cli\ncli.build_parser()")
    assert tops(mods) & set(HEAVY) == set()
    assert "ringrift_fleet.commands.coordinator" in mods  # every subcommand was registered


@pytest.mark.timeout(60)
def test_help_lists_every_command_without_heavy_imports() -> None:
    code = (
        "import contextlib, io\n"
        "import ringrift_fleet.cli as cli\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):\n"
        "    cli.main(['--help'])\n"
        "for name in cli.COMMANDS:\n"
        "    with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):\n"
        "        cli.main([name, '--help'])\n"
        "import sys\nsys.stderr.write(buf.getvalue())\n"
    )
    script = f"{code}import json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    for name in ("up", "worker", "coordinator", "status", "inventory", "flower"):
        assert f"usage: ringrift-fleet {name}" in out.stderr
    assert tops(set(json.loads(out.stdout))) & set(HEAVY) == set()


@pytest.mark.timeout(60)
def test_sending_side_of_celery_leaves_the_workloads_out() -> None:
    """What a leader loads to validate and send a job: Celery, but no numpy, no game."""
    mods = modules_after(
        "from ringrift_fleet.celery import app\n"
        "from ringrift_fleet.execution.dispatch import send_job\n"
        "from ringrift_fleet.execution.jobs import validate_job\n"
        "validate_job('selfplay', {'job_id': 'j', 'board_type': 'hex8', 'num_players': 2,"
        " 'num_games': 4})\n"
        "app.AsyncResult('j.a1')\n"
    )
    assert "celery" in tops(mods)
    assert not {"numpy", "matplotlib"} & tops(mods)
    assert "ringrift_fleet.execution.tasks" not in mods
    assert not any(m.startswith("ringrift_fleet.execution.workloads") for m in mods)


@pytest.mark.timeout(60)
def test_a_finalized_app_still_defines_every_task() -> None:
    """Workers (and `celery call`) finalize the app: the deferred tasks must all be there."""
    code = (
        "from ringrift_fleet.celery import app\n"
        "from ringrift_fleet.execution.jobs import TASK_NAMES\n"
        "missing = [n for n in TASK_NAMES.values() if n not in app.tasks]\n"
        "assert not missing, missing\n"
        "assert app.tasks['ringrift.training'].acks_late\n"
    )
    mods = modules_after(code)
    assert "ringrift_fleet.execution.tasks" in mods
