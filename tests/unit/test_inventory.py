"""distributed_hosts.yaml: what loads, what it means, and every mistake reported at once."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ringrift_fleet import inventory
from ringrift_fleet.errors import FleetError, InventoryError
from ringrift_fleet.inventory import CoordinatorSettings, HostSpec, Inventory

GOOD = textwrap.dedent(
    """\
    # a small fleet
    hosts:
      gh200-1:
        tailscale_ip: 100.64.0.1
        ssh_host: 192.0.2.1
        ssh_user: ubuntu
        gpu: NVIDIA GH200 480GB
        memory_gb: 432
        cpus: 72
      h100-1:
        address: h100-1.example.net
        gpu: h100
        gpu_count: 8
      rtx-1:
        ssh_host: 203.0.113.5
        ssh_port: 40122
        gpu: RTX_4090
        gpu_count: 2
        status: offline
      cpu-1:
        ssh_host: 198.51.100.1
      broker-1:
        ssh_host: 198.51.100.2
        role: broker
    raft_voters: [gh200-1, h100-1, cpu-1]
    coordinator:
      status_port: 9770
    """
)


def edited(old: str, new: str, text: str = GOOD) -> str:
    """GOOD with one change; fails loudly if the change does not apply."""
    assert old in text, old
    return text.replace(old, new)


def problems_of(text: str, path: str = "distributed_hosts.yaml") -> list[str]:
    with pytest.raises(InventoryError) as info:
        inventory.loads(text, path)
    return info.value.problems


def test_good_file_loads_with_meaning() -> None:
    inv = inventory.loads(GOOD, "hosts.yaml")
    assert inv.names() == ["gh200-1", "h100-1", "rtx-1", "cpu-1", "broker-1"]

    gh = inv.host("gh200-1")
    assert gh.address == "100.64.0.1"  # tailscale_ip wins over ssh_host
    assert (gh.ssh_host, gh.ssh_user, gh.ssh_port) == ("192.0.2.1", "ubuntu", 22)
    assert (gh.gpu, gh.gpu_count, gh.gpu_vram_gb) == ("GH200", 1, 96.0)
    assert gh.gpu_power == 1.2 and gh.tier == "t1"
    assert gh.training_enabled and gh.selfplay_enabled and gh.role == "gpu"
    assert gh.line == 3

    h100 = inv.host("h100-1")
    assert h100.address == h100.ssh_host == "h100-1.example.net"
    assert (h100.gpu, h100.gpu_count) == ("H100", 8)

    cpu = inv.host("cpu-1")
    assert (cpu.gpu, cpu.gpu_count, cpu.role, cpu.tier) == ("CPU", 0, "cpu", "cpu")
    assert not cpu.training_enabled

    broker = inv.host("broker-1")
    assert broker.role == "broker" and not broker.selfplay_enabled
    assert inv.coordinator.broker_host == "broker-1"
    assert inv.broker_url == "redis://198.51.100.2:6379/0"

    # fleet-wide ports flow into every host unless overridden
    assert {h.status_port for h in inv.hosts} == {9770}
    assert {h.swim_port for h in inv.hosts} == {7946}

    assert [h.name for h in inv.voters()] == ["gh200-1", "h100-1", "cpu-1"]
    assert [h.name for h in inv.active_hosts()] == ["gh200-1", "h100-1", "cpu-1", "broker-1"]
    assert inv.warnings == ()


def test_unknown_host_name_is_an_error_naming_it() -> None:
    inv = inventory.loads(GOOD)
    with pytest.raises(InventoryError, match="no host named 'gpu-42'"):
        inv.host("gpu-42")


def test_list_form_is_accepted() -> None:
    text = textwrap.dedent(
        """\
        hosts:
          - name: a
            ssh_host: 10.0.0.1
            gpu: A100
          - name: b
            ssh_host: 10.0.0.2
        """
    )
    inv = inventory.loads(text)
    assert inv.names() == ["a", "b"]
    assert inv.host("a").gpu == "A100" and inv.host("a").line == 2


def test_the_documented_message_shape() -> None:
    text = edited("    cpus: 72\n", "    cpus: 72\n    gpu_vram_gb: lots\n")
    assert problems_of(text) == [
        "distributed_hosts.yaml:10: host gh200-1: gpu_vram_gb must be a number, got 'lots'"
    ]


def test_every_problem_is_reported_at_once_in_file_order() -> None:
    text = textwrap.dedent(
        """\
        hosts:
          gpu-1:
            ssh_host: 10.0.0.1
            gpu: h100
          gpu-3:
            ssh_host: 10.0.0.3
            gpu: h100
            gpu_vram_gb: eighty
            ssh_port: 70000
            status: broken
            gpu_cont: 2
            training_enabled: maybe
          gpu-3:
            ssh_host: 10.0.0.4
          bad name!:
            ssh_host: 10.0.0.5
          nowhere: {}
        raft_voter: [gpu-1]
        raft_voters: [gpu-1, gpu-9]
        coordinator:
          status_port: abc
          swim_prot: 1
        """
    )
    problems = problems_of(text, "dh.yaml")
    assert problems == [
        "dh.yaml:8: host gpu-3: gpu_vram_gb must be a number, got 'eighty'",
        "dh.yaml:9: host gpu-3: ssh_port must be a port number 1-65535, got 70000",
        "dh.yaml:10: host gpu-3: status must be one of ready, offline, retired, got 'broken'",
        "dh.yaml:11: host gpu-3: unknown field 'gpu_cont' (did you mean 'gpu_count'?)",
        "dh.yaml:12: host gpu-3: training_enabled must be true or false, got 'maybe'",
        "dh.yaml:13: host gpu-3: is defined again (first at line 5): names must be unique",
        "dh.yaml:15: host name 'bad name!' must be letters, digits, '.', '_' or '-'",
        "dh.yaml:17: host nowhere: needs tailscale_ip, address or ssh_host: peers cannot reach it",
        "dh.yaml:18: unknown key 'raft_voter' (did you mean 'raft_voters'?)",
        "dh.yaml:19: raft_voters has 2 hosts: use an odd number (3 or 5), or a split vote can "
        "leave the fleet without a leader",
        "dh.yaml:19: raft_voters names unknown host 'gpu-9' (did you mean 'gpu-3'?)",
        "dh.yaml:21: coordinator.status_port must be a port number 1-65535, got 'abc'",
        "dh.yaml:22: unknown coordinator setting 'swim_prot' (did you mean 'swim_port'?)",
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("raft_voters: [gh200-1, h100-1, cpu-1, rtx-1]", "raft_voters has 4 hosts"),
        ("raft_voters: [gh200-1, h100-1]", "raft_voters has 2 hosts"),
        ("raft_voters: [gh200-1, h100-1, gh200-1]", "raft_voters names gh200-1 more than once"),
        ("raft_voters: [gh200-1, h100-1, gpu-77]", "raft_voters names unknown host 'gpu-77'"),
        ("raft_voters: gh200-1", "raft_voters must be a list of host names"),
    ],
)
def test_voter_list_errors(change: str, expected: str) -> None:
    text = edited("raft_voters: [gh200-1, h100-1, cpu-1]", change)
    problems = problems_of(text)
    assert len(problems) == 1 and expected in problems[0], problems
    assert problems[0].startswith("distributed_hosts.yaml:25: ")


def test_retired_voter_is_an_error_offline_voter_a_warning() -> None:
    retired = edited(
        "raft_voters: [gh200-1, h100-1, cpu-1]", "raft_voters: [gh200-1, h100-1, rtx-1]"
    )
    inv = inventory.loads(retired)  # rtx-1 is offline: allowed, but warned about
    assert any("rtx-1: is a raft voter but offline" in w for w in inv.warnings)
    text = edited("status: offline", "status: retired", retired)
    assert "host rtx-1: is a raft voter but retired" in problems_of(text)[0]


def test_no_voters_means_raft_is_not_configured() -> None:
    inv = inventory.loads(edited("raft_voters: [gh200-1, h100-1, cpu-1]\n", ""))
    assert inv.raft_voters == () and inv.voters() == []
    inv1 = inventory.loads(edited("[gh200-1, h100-1, cpu-1]", "[gh200-1]"))
    assert inv1.raft_voters == ("gh200-1",)  # one voter: a single-host demo fleet


def test_unknown_gpu_is_a_warning_not_an_error() -> None:
    inv = inventory.loads(edited("gpu: RTX_4090", "gpu: Radeon Instinct MI300X"))
    rtx = inv.host("rtx-1")
    assert rtx.gpu == "UNKNOWN" and not rtx.training_enabled
    assert inv.warnings == (
        "<string>:17: host rtx-1: unknown GPU 'Radeon Instinct MI300X': ranked conservatively, "
        "never trains",
    )


def test_gpu_count_without_gpu_and_vram_without_gpu_are_errors() -> None:
    text = edited(
        "  cpu-1:\n    ssh_host: 198.51.100.1\n",
        "  cpu-1:\n    ssh_host: 198.51.100.1\n    gpu_count: 2\n",
    )
    assert "host cpu-1: gpu_count is 2 but gpu is not set" in problems_of(text)[0]
    text = edited("role: broker", "role: broker\n    gpu_vram_gb: 24")
    assert "host broker-1: gpu_vram_gb is set on a host without GPUs" in problems_of(text)[0]
    text = edited("role: broker", "role: gpu")
    assert "host broker-1: role is gpu but the host has no GPU" in problems_of(text)[0]


def test_training_flag_on_weak_gpu_warns() -> None:
    text = edited("gpu: RTX_4090", "gpu: T4\n    training_enabled: true")
    inv = inventory.loads(text)
    assert inv.host("rtx-1").training_enabled
    assert any("rtx-1: training_enabled but T4" in w for w in inv.warnings)


def test_local_hosts_sharing_an_address_need_their_own_ports() -> None:
    clash = textwrap.dedent(
        """\
        hosts:
          n1: {address: 127.0.0.1}
          n2: {address: 127.0.0.1}
        """
    )
    problems = problems_of(clash)
    assert "host n2: status_port 8770 on 127.0.0.1 is already used by host n1" in problems[0]
    assert len(problems) == 3  # status, raft (TCP) and swim (UDP)
    ok = textwrap.dedent(
        """\
        hosts:
          n1: {address: 127.0.0.1, status_port: 18770, swim_port: 17946, raft_port: 14321}
          n2: {address: 127.0.0.1, status_port: 18771, swim_port: 17947, raft_port: 14322}
          n3: {address: 127.0.0.1, status_port: 18772, swim_port: 17948, raft_port: 14323}
        raft_voters: [n1, n2, n3]
        """
    )
    inv = inventory.loads(ok)
    assert [h.raft_port for h in inv.voters()] == [14321, 14322, 14323]
    same = edited("raft_port: 14321", "raft_port: 18770", ok)
    assert "host n1: status_port and raft_port are both 18770" in problems_of(same)[0]


def test_broker_settings() -> None:
    two = edited(
        "  cpu-1:\n    ssh_host: 198.51.100.1\n",
        "  cpu-1:\n    ssh_host: 198.51.100.1\n    role: broker\n",
    )
    assert "several hosts have role broker (cpu-1, broker-1)" in problems_of(two)[0]
    chosen = edited(
        "coordinator:\n", "coordinator:\n  broker_host: cpu-1\n  broker_port: 6380\n", two
    )
    inv = inventory.loads(chosen)
    assert inv.broker_url == "redis://198.51.100.1:6380/0"
    wrong = edited("coordinator:\n", "coordinator:\n  broker_host: nope\n")
    assert "coordinator.broker_host names unknown host 'nope'" in problems_of(wrong)[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "<string>: empty inventory"),
        ("- just\n- a list\n", "<string>: expected a mapping with hosts"),
        ("hosts: [\n", "<string>:2: not valid YAML"),
        (
            "hosts:\n  a: {ssh_host: 1.2.3.4}\nhosts:\n  b: {}\n",
            "<string>:3: top-level key 'hosts' appears twice",
        ),
        ("raft_voters: []\n", "<string>:1: hosts must be a non-empty mapping"),
        (
            "hosts:\n  a:\n    tailscale_ip: not-an-ip\n",
            "<string>:3: host a: tailscale_ip must be an IP",
        ),
        (
            "hosts:\n  a:\n    address: 'bad host'\n",
            "<string>:3: host a: address must be an IP address or host name",
        ),
        ("hosts:\n  a: [1, 2]\n", "<string>:2: host a: expected a mapping of host fields"),
    ],
)
def test_malformed_files(text: str, expected: str) -> None:
    problems = problems_of(text, "<string>")
    assert problems[0].startswith(expected), problems


def test_load_reports_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match=r"missing\.yaml: cannot read"):
        inventory.load(tmp_path / "missing.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00hosts")
    with pytest.raises(InventoryError, match="not UTF-8"):
        inventory.load(binary)


def test_dump_round_trips() -> None:
    inv = inventory.loads(GOOD)
    again = inventory.loads(inventory.dump(inv))
    assert again == inv
    assert again.coordinator.broker_host == "broker-1"


def test_write_atomic_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "distributed_hosts.yaml"
    target.write_text("old\n")
    inventory.write_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["distributed_hosts.yaml"]
    with pytest.raises(OSError):
        inventory.write_atomic(tmp_path / "no-such-dir" / "x.yaml", "data")
    assert [p.name for p in tmp_path.iterdir()] == ["distributed_hosts.yaml"]


# --- round trip as a property -------------------------------------------------------------

_gpus = st.sampled_from(["", "h100", "NVIDIA GH200 480GB", "RTX_4090", "A10", "T4", "cpu"])


@st.composite
def fleets(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 6))
    hosts: dict[str, Any] = {}
    for i in range(n):
        spec: dict[str, Any] = {"address": f"10.206.0.{i + 1}"}
        gpu = draw(_gpus)
        if gpu:
            spec["gpu"] = gpu
            if gpu != "cpu":
                spec["gpu_count"] = draw(st.integers(1, 8))
                if draw(st.booleans()):
                    spec["gpu_vram_gb"] = draw(st.sampled_from([16, 24, 40, 80.5]))
        if draw(st.booleans()):
            spec["status"] = draw(st.sampled_from(["ready", "offline"]))
        if draw(st.booleans()):
            spec["selfplay_enabled"] = draw(st.booleans())
        if draw(st.booleans()):
            spec["ssh_port"] = draw(st.integers(1, 65535))
        if draw(st.booleans()):
            spec["status_port"] = draw(st.integers(1024, 65535))
            spec["raft_port"] = spec["status_port"] - 1
        hosts[f"host-{i}"] = spec
    voters = [f"host-{i}" for i in range(n)][: draw(st.sampled_from([0, 1, 3, 5]))]
    if len(voters) % 2 == 0:
        voters = voters[:1]
    return {"hosts": hosts, "raft_voters": voters}


@settings(max_examples=60, deadline=None)
@given(fleets())
def test_dump_round_trips_for_any_valid_fleet(doc: dict[str, Any]) -> None:
    inv = inventory.loads(yaml.safe_dump(doc), warn=False)
    assert inventory.loads(inventory.dump(inv), warn=False) == inv


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_an_inventory_or_an_inventory_error(text: str) -> None:
    try:
        inventory.loads(text, warn=False)
    except InventoryError as exc:
        assert exc.problems and all(p.startswith("<string>") for p in exc.problems)


# --- Ansible mapping (pure: the JSON ansible-inventory prints) --------------------------------


def ansible_json() -> dict[str, Any]:
    common = {"ringrift_status_port": 8770, "ringrift_broker_port": 6380}
    return {
        "_meta": {
            "hostvars": {
                "gh-1": {
                    **common,
                    "ansible_host": "192.0.2.1",
                    "ansible_user": "ubuntu",
                    "tailscale_ip": "100.64.0.1",
                    "gpu": "NVIDIA GH200 480GB",
                    "provider": "lambda",
                },
                "h-1": {**common, "ansible_host": "192.0.2.2", "gpu": "h100", "gpu_count": 8},
                "c-1": {**common, "ansible_host": "192.0.2.3", "ansible_port": 2222},
                "b-1": {**common, "ansible_host": "192.0.2.4"},
            }
        },
        "all": {"children": ["ungrouped", "lambda", "voters", "broker"]},
        "lambda": {"hosts": ["gh-1", "h-1"]},
        "ungrouped": {"hosts": ["c-1"]},
        "voters": {"hosts": ["gh-1", "h-1", "c-1"]},
        "broker": {"hosts": ["b-1"]},
    }


def test_from_ansible_data_maps_groups_and_vars() -> None:
    inv = inventory.from_ansible_data(ansible_json(), "inventory.ini")
    assert inv.names() == ["b-1", "c-1", "gh-1", "h-1"]
    assert inv.raft_voters == ("gh-1", "h-1", "c-1")
    assert inv.coordinator.broker_host == "b-1" and inv.coordinator.broker_port == 6380
    gh = inv.host("gh-1")
    assert (gh.address, gh.ssh_host, gh.ssh_user, gh.gpu) == (
        "100.64.0.1",
        "192.0.2.1",
        "ubuntu",
        "GH200",
    )
    assert inv.host("c-1").ssh_port == 2222
    assert inv.broker_url == "redis://192.0.2.4:6380/0"


def test_from_ansible_data_reports_problems_by_host() -> None:
    data = ansible_json()
    data["_meta"]["hostvars"]["h-1"]["gpu_vram_gb"] = "80GB"
    data["_meta"]["hostvars"]["c-1"]["ringrift_status_port"] = 9999
    data["voters"]["hosts"].append("b-1")
    with pytest.raises(InventoryError) as info:
        inventory.from_ansible_data(data, "inventory.ini")
    assert info.value.problems == [
        "inventory.ini: ringrift_status_port differs between hosts (8770 on b-1, gh-1, h-1; "
        "9999 on c-1): set it once in group_vars/all, or per host as status_port",
    ]
    data["_meta"]["hostvars"]["c-1"]["ringrift_status_port"] = 8770
    with pytest.raises(InventoryError) as info:
        inventory.from_ansible_data(data, "inventory.ini")
    assert info.value.problems == [
        "inventory.ini: host h-1: gpu_vram_gb must be a number, got '80GB'",
        "inventory.ini: raft_voters has 4 hosts: use an odd number (3 or 5), or a split vote "
        "can leave the fleet without a leader",
    ]


def test_specs_are_frozen_values() -> None:
    inv = inventory.loads(GOOD)
    with pytest.raises(AttributeError):
        inv.hosts[0].gpu = "H100"  # type: ignore[misc]
    assert HostSpec(name="x", address="a", ssh_host="a") == HostSpec(
        name="x", address="a", ssh_host="a", line=7
    )
    assert Inventory(hosts=()).coordinator == CoordinatorSettings()
