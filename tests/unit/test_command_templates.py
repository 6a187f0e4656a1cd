"""WORKLOADS_FILE templates: checked at load time, with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringrift_fleet.errors import ConfigError
from ringrift_fleet.execution.jobs import validate_job
from ringrift_fleet.execution.workloads.commands import load_templates, template_values


def _load(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "workloads.yaml"
    path.write_text(text)
    return load_templates(path)


def test_good_file_loads(tmp_path: Path) -> None:
    t = _load(
        tmp_path,
        "selfplay:\n"
        "  command: python3 run.py --board {board_type} --n {num_players} --out '{output_dir}'\n"
        "  env: {CUDA_LAUNCH_BLOCKING: '1', JOB: '{job_id}'}\n"
        "training:\n"
        "  command: [train, --config, '{config}', --games, '{games}']\n"
        "  cwd: /opt/ringrift\n",
    )
    assert t["selfplay"].argv[:3] == ("python3", "run.py", "--board")
    assert t["selfplay"].argv[-1] == "{output_dir}"
    assert t["training"].cwd == "/opt/ringrift" and t["selfplay"].env["JOB"] == "{job_id}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "selfplay:\n  command: run --board {boardtype}\n",
            r"workloads.yaml:2: selfplay.command: unknown field \{boardtype\}",
        ),
        (
            "training:\n  command: [a, '{candidate}']\n",
            r":2: training.command: unknown field \{candidate\}",
        ),
        (
            "selfplay:\n  command: run\n  env: {X: '{nope}'}\n",
            r":3: selfplay.env.X: unknown field \{nope\}",
        ),
        ("mining:\n  command: run\n", r"workloads.yaml:1: mining: unknown job type"),
        ("selfplay:\n  cmd: run\n", r":2: selfplay.cmd: unknown key"),
        ("selfplay:\n  env: {}\n", r"selfplay.command: missing"),
        ("selfplay:\n  command: []\n", r"selfplay.command: empty command"),
        ("selfplay:\n  command: {a: 1}\n", r"expected a string or a list"),
        ("selfplay: [\n", r"not valid YAML"),
        ("- a\n", r"expected a mapping of job type"),
        ("selfplay:\n  command: run {board_type\n", r"bad template"),
    ],
)
def test_bad_templates_are_rejected_at_load(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, text)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"WORKLOADS_FILE=.*nope\.yaml: no such file"):
        load_templates(tmp_path / "nope.yaml")


def test_values_fill_every_allowed_field(tmp_path: Path) -> None:
    spec = validate_job(
        "training",
        {"board_type": "hex8", "num_players": 4, "games": ["g/a", "g/b"], "job_id": "t-9"},
    )
    v = template_values(
        spec, node="n1", output_dir=tmp_path, store_root=tmp_path, log=tmp_path / "l"
    )
    assert v["config"] == "hex8_4p" and v["games"] == "g/a,g/b" and v["job_id"] == "t-9"
    assert v["attempt"] == "1" and v["node"] == "n1" and v["version"] == ""
