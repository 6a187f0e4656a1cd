"""Fast deployment checks that need no containers: the play parses, lints clean
at the production profile, and every rendered unit passes `systemd-analyze verify`
with no output at all (any warning fails)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.prereq import need

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
ROLES = ANSIBLE / "roles"
BIN = REPO / ".venv" / "bin"
UNITS = (
    "ringrift-fleet.target",
    "ringrift-coordinator.service",
    "ringrift-worker@0.service",
    "ringrift-worker@cpu.service",
    "ringrift-flower.service",
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PATH=f"{BIN}:{env.get('PATH', '')}",
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),  # lint runs from ansible/
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    return env


def _local_systemd_version() -> int:
    out = subprocess.run(
        ["systemd-analyze", "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"systemd (\d+)", out)
    assert match, out
    return int(match.group(1))


def render_units(out: Path, *overrides: str) -> None:
    """Render the roles' unit templates with the roles' defaults, as the roles do
    on a host; each override is NAME=VALUE, an -e over those defaults."""
    extra: list[str] = []
    for override in overrides:
        extra += ["-e", override]
    proc = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            "localhost,",
            str(REPO / "tests" / "deploy" / "render_units.yml"),
            "-e",
            f"units_out={out}",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def _verifiable(systemd_version: int) -> tuple[str, ...]:
    return (
        f"common_systemd_version={systemd_version}",
        # ExecStart= must name an executable that exists here for verify.
        f"common_venv={REPO / '.venv'}",
    )


def verify(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", *UNITS],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.timeout(180)
def test_playbook_syntax_check() -> None:
    proc = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "--syntax-check",
            "-i",
            str(REPO / "tests" / "deploy" / "syntax_inventory.yml"),
            str(ANSIBLE / "deploy.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=170,
        env=_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "playbook: " in proc.stdout


@pytest.mark.timeout(300)
def test_ansible_lint_production_profile_is_clean() -> None:
    proc = subprocess.run(
        [str(BIN / "ansible-lint"), "--profile", "production", "--offline", "--nocolor"],
        cwd=ANSIBLE,
        capture_output=True,
        text=True,
        timeout=290,
        env=_env(),
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "Profile 'production' was required, and it passed" in output, output[-2000:]


@pytest.mark.timeout(300)
def test_rendered_units_verify_without_any_warning(tmp_path: Path) -> None:
    need(shutil.which("systemd-analyze") is not None, "systemd-analyze (package systemd)")
    render_units(tmp_path, *_verifiable(_local_systemd_version()))
    rendered = (tmp_path / "ringrift-worker@.service").read_text()
    # What the issue asks of the worker unit, as rendered.
    for line in (
        "Restart=always",
        "KillMode=mixed",
        "Environment=CUDA_VISIBLE_DEVICES=%i",
        "EnvironmentFile=/etc/ringrift/fleet.env",
        "User=ringrift",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/ringrift /var/lib/ringrift/artifacts",
        "PrivateTmp=yes",
    ):
        assert line in rendered.splitlines(), line
    assert not any(x.startswith("PrivateDevices") for x in rendered.splitlines())  # GPU reachable
    proc = verify(tmp_path)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", (
        proc.stdout + proc.stderr
    )


@pytest.mark.timeout(300)
def test_verify_catches_a_key_this_systemd_does_not_know(tmp_path: Path) -> None:
    """The check above can fail: units rendered for a newer systemd (RestartSteps,
    from 254) warn on an older one, and the warning is what the check looks for."""
    need(shutil.which("systemd-analyze") is not None, "systemd-analyze (package systemd)")
    local = _local_systemd_version()
    need(local < 254, "a systemd older than 254, to render units it does not understand")
    render_units(tmp_path, *_verifiable(254))
    proc = verify(tmp_path)
    assert "RestartSteps" in proc.stdout + proc.stderr


@pytest.mark.timeout(120)
def test_the_documented_command_reads_the_projects_ansible_cfg() -> None:
    """docs/deploy.md runs ansible-playbook from the checkout root with no ANSIBLE_CONFIG."""
    doc = (REPO / "docs" / "deploy.md").read_text()
    assert "  ansible-playbook -i inventory.ini ansible/deploy.yml\n" in doc
    env = {k: v for k, v in _env().items() if k != "ANSIBLE_CONFIG"}
    proc = subprocess.run(
        [str(BIN / "ansible-config"), "dump", "--only-changed"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dump = proc.stdout
    assert f"CONFIG_FILE() = {REPO / 'ansible.cfg'}" in dump, dump
    assert "DEFAULT_FORKS(" in dump and ") = 20" in dump, dump
    assert "INTERPRETER_PYTHON(" in dump and "auto_silent" in dump, dump
    assert f"DEFAULT_ROLES_PATH({REPO / 'ansible.cfg'}) = ['{REPO / 'ansible' / 'roles'}']" in dump


@pytest.mark.timeout(180)
def test_the_documented_units_in_systemd_dir_are_the_roles_units_rendered(
    tmp_path: Path,
) -> None:
    """systemd/ holds the units as the roles install them with their defaults;
    the templates in the roles are the one source, so an edit there that is not
    re-rendered into systemd/ (systemd/README.md) fails here."""
    render_units(tmp_path)
    documented = REPO / "systemd"

    def files(root: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "README.md"
        }

    rendered, copies = files(tmp_path), files(documented)
    assert sorted(copies) == sorted(rendered)
    stale = [name for name in rendered if rendered[name] != copies[name]]
    assert not stale, (
        f"systemd/{stale} differ from the roles' templates; re-render them: "
        "ansible-playbook -i localhost, tests/deploy/render_units.yml -e units_out=$PWD/systemd"
    )


def test_the_unit_snippets_each_role_carries_are_the_same() -> None:
    """_restart.conf.j2 and _hardening.conf.j2 live in every role with a service
    unit (a role is self-contained); the copies must not drift apart."""
    for snippet in ("_restart.conf.j2", "_hardening.conf.j2"):
        copies = {
            role: (ROLES / role / "templates" / snippet).read_bytes()
            for role in ("coordinator", "worker", "flower")
        }
        assert len(set(copies.values())) == 1, f"{snippet} differs between {sorted(copies)}"


def test_every_role_has_a_readme_naming_each_of_its_variables() -> None:
    """A role is read on its own: its README.md lists every default it has."""
    for role in sorted(p for p in ROLES.iterdir() if p.is_dir()):
        readme = (role / "README.md").read_text()
        defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
        missing = [name for name in defaults if f"| `{name}` |" not in readme]
        assert not missing, f"{role.name}/README.md does not list {missing}"
        meta = yaml.safe_load((role / "meta" / "main.yml").read_text())
        wanted = [] if role.name == "common" else [{"role": "common"}]
        assert meta["dependencies"] == wanted, role.name


MONITORING_PLAY = """\
- name: The monitoring role, on this machine, into a scratch directory
  hosts: broker
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  roles:
    - role: monitoring
"""


@pytest.mark.timeout(300)
def test_the_monitoring_role_installs_valid_files_and_reruns_unchanged(tmp_path: Path) -> None:
    """The role as deploy.yml applies it (its common dependency included), with every
    path under tmp_path and the services left alone: Prometheus's configuration
    generated from the inventory, the rules and the configuration accepted by
    promtool, Grafana provisioned with the role's own dashboard; a second run
    changes nothing."""
    need(shutil.which("promtool") is not None, "promtool (package prometheus)")
    need(os.geteuid() == 0, "root (the role installs files owned by root)")
    build, etc, grafana = tmp_path / "build", tmp_path / "prometheus", tmp_path / "grafana"
    for d in (build, etc, grafana / "datasources", grafana / "dashboards"):
        d.mkdir(parents=True)
    (build / "distributed_hosts.yaml").write_text(
        yaml.safe_dump(
            {
                "hosts": {
                    "gpu-1": {"address": "10.0.0.1", "gpu": "H100", "gpu_count": 1},
                    "broker-1": {"address": "10.0.0.3", "role": "broker"},
                },
                "coordinator": {"broker_host": "broker-1"},
                "raft_voters": ["gpu-1"],
            }
        )
    )
    (tmp_path / "inventory.yml").write_text(
        yaml.safe_dump({"all": {"children": {"broker": {"hosts": {"localhost": None}}}}})
    )
    (tmp_path / "play.yml").write_text(MONITORING_PLAY)
    variables = {
        "common_fleet_cli": str(BIN / "ringrift-fleet"),
        "common_build_dir": str(build),
        "common_cluster_key": "k" * 16,
        "common_broker_password": "p" * 16,
        "monitoring_enabled": True,
        "monitoring_install_prometheus": False,
        "monitoring_manage_services": False,
        "monitoring_prometheus_config_dir": str(etc),
        "monitoring_grafana_enabled": True,
        "monitoring_grafana_provisioning_dir": str(grafana),
        "monitoring_grafana_dashboards_dir": str(grafana / "ringrift"),
        "monitoring_alertmanagers": ["10.0.0.3:9093"],
    }
    (tmp_path / "vars.yml").write_text(yaml.safe_dump(variables))

    def play() -> str:
        proc = subprocess.run(
            [
                str(BIN / "ansible-playbook"),
                "-i",
                str(tmp_path / "inventory.yml"),
                "-e",
                f"@{tmp_path / 'vars.yml'}",
                str(tmp_path / "play.yml"),
            ],
            capture_output=True,
            text=True,
            timeout=140,
            env=_env(),
            check=False,
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        recap = re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", proc.stdout)
        assert recap, proc.stdout[-2000:]
        return recap.group(1)

    assert play() != "0"
    prometheus = yaml.safe_load((etc / "prometheus.yml").read_text())
    targets = [t["targets"][0] for t in prometheus["scrape_configs"][0]["static_configs"]]
    assert sorted(targets) == ["10.0.0.1:8770", "10.0.0.3:8770"]
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "10.0.0.3:9093"
    ]
    assert (etc / "alerts.yml").read_bytes() == (
        REPO / "ringrift_fleet" / "alerts.yaml"
    ).read_bytes()
    check = subprocess.run(
        ["promtool", "check", "config", str(etc / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    dashboard = ROLES / "monitoring" / "files" / "grafana-dashboard.json"
    assert (grafana / "ringrift" / "ringrift-fleet.json").read_bytes() == dashboard.read_bytes()
    provider = yaml.safe_load((grafana / "dashboards" / "ringrift.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == str(grafana / "ringrift")
    source = yaml.safe_load((grafana / "datasources" / "ringrift.yml").read_text())
    assert source["datasources"][0]["url"] == "http://127.0.0.1:9090"
    assert play() == "0"  # idempotent
