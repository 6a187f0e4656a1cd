"""The real ``ringrift-fleet inventory`` command on real Ansible inventories (ansible-inventory runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from ringrift_fleet import inventory
from tests.support.prereq import need
from tests.support.procs import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

EXAMPLE = REPO / "inventory.example"
EXAMPLE_HOSTS = {
    "gh200-lambda-1",
    "gh200-lambda-2",
    "h100-lambda-1",
    "h100-nebius-1",
    "h100-nebius-2",
    "rtx4090-vast-1",
    "rtx4090-vast-2",
    "rtx5090-vast-1",
    "cpu-hetzner-1",
    "broker-hetzner-1",
}


def fleet(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    ansible = Path(sys.executable).parent / "ansible-inventory"
    need(
        ansible.exists() or shutil.which("ansible-inventory") is not None,
        "ansible-inventory (ansible-core, `make deps`)",
    )
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO)
    full_env["ANSIBLE_LOCAL_TEMP"] = str(tmp_path / "ansible-tmp")
    full_env["ANSIBLE_HOME"] = str(tmp_path / "ansible-home")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ringrift_fleet", "inventory", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=tmp_path,
        timeout=90,
        check=False,
    )


def test_generate_from_the_example_then_validate(tmp_path: Path) -> None:
    out = tmp_path / "distributed_hosts.yaml"
    gen = fleet(tmp_path, "generate", "-i", str(EXAMPLE), "-o", str(out))
    assert gen.returncode == 0, gen.stderr
    assert "10 hosts (9 ready, 26 GPUs)" in gen.stdout
    assert gen.stderr == ""

    inv = inventory.load(out)
    assert set(inv.names()) == EXAMPLE_HOSTS
    assert inv.raft_voters == ("gh200-lambda-1", "h100-nebius-1", "cpu-hetzner-1")
    assert inv.broker_url == "redis://100.64.0.52:6379/0"
    gh = inv.host("gh200-lambda-1")
    assert (gh.gpu, gh.gpu_vram_gb, gh.ssh_user, gh.address) == (
        "GH200",
        96.0,
        "ubuntu",
        "100.64.0.11",
    )
    rtx = inv.host("rtx4090-vast-2")
    assert (rtx.gpu, rtx.gpu_count, rtx.ssh_port, rtx.tier) == ("RTX_4090", 2, 40188, "t3")
    assert inv.host("h100-nebius-2").status == "offline"
    assert inv.host("broker-hetzner-1").role == "broker"

    val = fleet(tmp_path, "validate", str(out))
    assert val.returncode == 0, val.stderr
    lines = val.stdout.splitlines()
    assert lines[0].split() == [
        "HOST",
        "ADDRESS",
        "GPU",
        "VRAM",
        "TIER",
        "ROLE",
        "STATUS",
        "VOTER",
        "TRAIN",
    ]
    row = next(line.split() for line in lines if line.startswith("h100-nebius-1 "))
    assert row == [
        "h100-nebius-1",
        "100.64.0.31",
        "8x",
        "H100",
        "80",
        "t1",
        "gpu",
        "ready",
        "yes",
        "yes",
    ]
    assert lines[-1].endswith(
        "voters: gh200-lambda-1, h100-nebius-1, cpu-hetzner-1; broker: broker-hetzner-1"
    )

    # the same Ansible file validates directly too
    direct = fleet(tmp_path, "validate", "--ansible", str(EXAMPLE))
    assert direct.returncode == 0, direct.stderr
    assert direct.stdout.splitlines()[1:-1] == lines[1:-1]


def test_yaml_inventory_with_group_vars_and_host_vars(tmp_path: Path) -> None:
    inv_dir = tmp_path / "inv"
    (inv_dir / "group_vars").mkdir(parents=True)
    (inv_dir / "host_vars").mkdir()
    (inv_dir / "hosts.yml").write_text(
        textwrap.dedent(
            """\
            all:
              children:
                gpu:
                  hosts:
                    g1: {ansible_host: 192.0.2.1}
                    g2: {ansible_host: 192.0.2.2}
                    g3: {ansible_host: 192.0.2.3, gpu: "NVIDIA A10"}
                voters:
                  hosts:
                    g1:
                    g2:
                    c1:
                broker:
                  hosts:
                    c1: {ansible_host: 192.0.2.9}
            """
        )
    )
    (inv_dir / "group_vars" / "all.yml").write_text(
        "ringrift_status_port: 9870\nansible_user: fleet\n"
    )
    (inv_dir / "group_vars" / "gpu.yml").write_text("gpu: NVIDIA H100 80GB HBM3\ngpu_count: 4\n")
    (inv_dir / "host_vars" / "g2.yml").write_text("gpu_vram_gb: 94\nstatus_port: 9871\n")
    out = tmp_path / "dh.yaml"
    gen = fleet(tmp_path, "generate", "-i", str(inv_dir / "hosts.yml"), "-o", str(out))
    assert gen.returncode == 0, gen.stderr
    inv = inventory.load(out)
    assert inv.names() == ["c1", "g1", "g2", "g3"]
    assert inv.raft_voters == ("g1", "g2", "c1")
    g1, g2, g3, c1 = (inv.host(n) for n in ("g1", "g2", "g3", "c1"))
    assert (g1.gpu, g1.gpu_count, g1.gpu_vram_gb, g1.ssh_user) == ("H100", 4, 80.0, "fleet")
    assert (g2.gpu_vram_gb, g2.status_port, g1.status_port) == (94.0, 9871, 9870)
    assert (g3.gpu, g3.training_enabled) == ("A10", False)  # host var beats group var
    assert c1.role == "broker" and inv.coordinator.status_port == 9870


def test_ini_with_group_vars_dir(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "inventory.ini").write_text(
        "[gpu]\nn1 ansible_host=192.0.2.1\nn2 ansible_host=192.0.2.2\nn3 ansible_host=192.0.2.3\n"
        "[voters:children]\ngpu\n"
    )
    (tmp_path / "group_vars" / "gpu.yml").write_text("gpu: RTX_5090\n")
    gen = fleet(tmp_path, "generate", "-i", "inventory.ini", "-o", "-")
    assert gen.returncode == 0, gen.stderr
    inv = inventory.loads(gen.stdout)
    assert [h.gpu for h in inv.hosts] == ["RTX_5090"] * 3
    assert inv.raft_voters == ("n1", "n2", "n3")


def test_bad_ansible_inventory_lists_every_problem_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "inventory.ini").write_text(
        "[gpu]\n"
        "gpu-1 ansible_host=192.0.2.1 gpu=h100\n"
        "gpu-2 ansible_host=192.0.2.2 gpu=h100 gpu_vram_gb=80GB\n"
        "gpu-3 ansible_host=192.0.2.3 gpu=h100 status=broken ssh_port=0\n"
        "gpu-4 ansible_host=192.0.2.4 gpu=QuantumCard\n"
        "[voters]\ngpu-1\ngpu-2\n"
    )
    out = tmp_path / "distributed_hosts.yaml"
    out.write_text("previous: content\n")
    gen = fleet(tmp_path, "generate", "-i", "inventory.ini", "-o", str(out))
    assert gen.returncode == 2
    assert "Traceback" not in gen.stderr
    assert gen.stderr.splitlines() == [
        "inventory.ini: host gpu-2: gpu_vram_gb must be a number, got '80GB'",
        "inventory.ini: host gpu-3: status must be one of ready, offline, retired, got 'broken'",
        "inventory.ini: host gpu-3: ssh_port must be a port number 1-65535, got 0",
        "inventory.ini: raft_voters has 2 hosts: use an odd number (3 or 5), or a split vote "
        "can leave the fleet without a leader",
        f"ringrift-fleet inventory generate: 4 problems; {out} not written",
    ]
    assert out.read_text() == "previous: content\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_unknown_gpu_is_a_warning_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "inventory.ini").write_text("x1 ansible_host=192.0.2.1 gpu=QuantumCard\n")
    gen = fleet(tmp_path, "generate", "-i", "inventory.ini", "-o", "dh.yaml")
    assert gen.returncode == 0, gen.stderr
    assert gen.stderr.splitlines() == [
        "warning: inventory.ini: host x1: unknown GPU 'QuantumCard': ranked conservatively, "
        "never trains"
    ]
    assert yaml.safe_load((tmp_path / "dh.yaml").read_text())["hosts"]["x1"]["gpu"] == "UNKNOWN"


def test_unreadable_inputs_are_one_line_errors(tmp_path: Path) -> None:
    missing = fleet(tmp_path, "generate", "-i", "nope.ini", "-o", "dh.yaml")
    assert missing.returncode == 2
    assert missing.stderr.splitlines()[0] == "nope.ini: no such file or directory"
    (tmp_path / "broken.yml").write_text("all: [unclosed\n")
    broken = fleet(tmp_path, "generate", "-i", "broken.yml", "-o", "dh.yaml")
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert broken.stderr.startswith("broken.yml: ansible-inventory could not read it:")
    assert not (tmp_path / "dh.yaml").exists()
    (tmp_path / "dh.yaml").write_text("hosts:\n  a:\n    ssh_host: 1.2.3.4\n    gpu_count: -1\n")
    val = fleet(tmp_path, "validate", "dh.yaml")
    assert val.returncode == 2
    assert val.stderr.splitlines() == [
        "dh.yaml:4: host a: gpu_count must be a whole number 0-64, got -1",
        "ringrift-fleet inventory validate: 1 problem",
    ]
