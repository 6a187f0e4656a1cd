"""Environment hygiene: misspelled variables, where the inventory comes from, usable
directories, the bind address, and the seeds' older timing set (issue 11)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ringrift_fleet.config import (
    ENV_PREFIX,
    HOSTS_FILE_VAR,
    check_state_dirs,
    known_env_vars,
    load_config,
    resolve_bind_host,
    resolve_hosts_file,
    unknown_env_warnings,
)
from ringrift_fleet.errors import ConfigError
from tests.support.unprivileged import error_of, world_dir

PACKAGE = Path(__file__).parents[2] / "ringrift_fleet"
ANSIBLE = Path(__file__).parents[2] / "ansible"


# --- misspelled variables ---------------------------------------------------------------------


def test_a_misspelled_variable_is_named_with_the_closest_known_one() -> None:
    (line,) = unknown_env_warnings({"RINGRIFT_P2P_HEARTBEAT_INTERVALL": "3", "HOME": "/root"})
    assert line.startswith("RINGRIFT_P2P_HEARTBEAT_INTERVALL ")
    assert "did you mean RINGRIFT_P2P_HEARTBEAT_INTERVAL?" in line


def test_known_variables_and_aliases_give_no_warning() -> None:
    env = {
        "RINGRIFT_P2P_PORT": "1",
        "RINGRIFT_P2P_LEADER_LEASE": "1",
        "RINGRIFT_BROKER_URL": "redis://x",
        "RINGRIFT_SWIM_ENABLED": "true",
        "RINGRIFT_SLACK_WEBHOOK_URL": "x",
        "RINGRIFT_P2P_SCHEDULER_TICK": "1",
        "RINGRIFT_WORKER_NODE": "a",
    }
    assert unknown_env_warnings(env) == []


def test_a_variable_far_from_any_known_one_is_still_named() -> None:
    (line,) = unknown_env_warnings({"RINGRIFT_ZZZZZZZZZZZZZZZZZZZZZZZZ": "1"})
    assert "RINGRIFT_ZZZZZZZZZZZZZZZZZZZZZZZZ is not a variable" in line and "mean" not in line


def test_every_ringrift_variable_the_code_and_ansible_name_is_known() -> None:
    """A variable added anywhere in the package or the ansible templates must be known,
    or the misspelling warning would call it a typo."""
    names: set[str] = set()
    for path in [*PACKAGE.rglob("*.py"), *ANSIBLE.rglob("*.j2")]:
        names |= set(re.findall(r"RINGRIFT_[A-Z0-9_]*[A-Z0-9]", path.read_text()))
    # prefixes built at run time, not variables
    names -= {"RINGRIFT_P2P", "RINGRIFT_MEMBERSHIP"}
    names = {n for n in names if not n.endswith("_PREFIX") or n == "RINGRIFT_TESTBED_PREFIX"}
    missing = sorted(names - known_env_vars())
    assert missing == [], missing


def test_every_config_field_is_known() -> None:
    import dataclasses

    from ringrift_fleet.config import P2PConfig

    for f in dataclasses.fields(P2PConfig):
        assert ENV_PREFIX + f.name in known_env_vars()


# --- where the inventory comes from -------------------------------------------------------------


def test_a_set_but_missing_hosts_file_variable_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "typo.yaml")
    with pytest.raises(ConfigError, match=rf"^{HOSTS_FILE_VAR}={re.escape(missing)}: no such file"):
        resolve_hosts_file(None, env={HOSTS_FILE_VAR: missing})


def test_an_unreadable_hosts_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        resolve_hosts_file(None, env={HOSTS_FILE_VAR: str(tmp_path)})
    with world_dir() as d:  # as root, checked as nobody: root reads any file
        locked = d / "locked.yaml"
        locked.write_text("hosts: {}\n")
        locked.chmod(0)
        err = error_of(lambda: resolve_hosts_file(None, env={HOSTS_FILE_VAR: str(locked)}))
    assert err.startswith(f"ConfigError: {HOSTS_FILE_VAR}={locked}: cannot read"), err
    assert "\n" not in err


def test_no_inventory_must_be_chosen(tmp_path: Path) -> None:
    absent = (str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"))
    with pytest.raises(ConfigError, match="--standalone"):
        resolve_hosts_file(None, env={}, defaults=absent)
    assert resolve_hosts_file(None, standalone=True, env={}, defaults=absent) is None
    assert resolve_hosts_file(None, env={HOSTS_FILE_VAR: ""}, defaults=absent) is None
    with pytest.raises(ConfigError, match="choose one"):
        resolve_hosts_file("x.yaml", standalone=True, env={})


def test_the_flag_then_the_variable_then_the_defaults(tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in ("a.yaml", "b.yaml", "c.yaml"))
    for p in (a, b, c):
        p.write_text("hosts: {}\n")
    env = {HOSTS_FILE_VAR: str(b)}
    assert resolve_hosts_file(str(a), env=env) == str(a)
    assert resolve_hosts_file(None, env=env) == str(b)
    assert resolve_hosts_file(None, env={}, defaults=(str(tmp_path / "no"), str(c))) == str(c)
    with pytest.raises(ConfigError, match=r"^--hosts-file .*: no such file"):
        resolve_hosts_file(str(tmp_path / "nope.yaml"), env=env)


def test_ansible_sets_the_hosts_file_variable_on_every_host() -> None:
    template = (ANSIBLE / "roles/common/templates/fleet.env.j2").read_text()
    assert re.search(r"^RINGRIFT_P2P_HOSTS_FILE=\{\{", template, flags=re.M)


# --- usable directories -------------------------------------------------------------------------


def test_a_state_dir_under_a_file_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    env = {"RINGRIFT_P2P_STATE_DIR": str(blocker / "state")}
    cfg = load_config(env)
    with pytest.raises(ConfigError) as info:
        check_state_dirs(cfg, env)
    msg = str(info.value)
    assert msg.startswith(f"RINGRIFT_P2P_STATE_DIR={blocker / 'state'}: cannot use")
    assert "\n" not in msg


def test_an_artifact_dir_that_is_a_file_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    env = {"RINGRIFT_P2P_STATE_DIR": str(tmp_path / "s"), "RINGRIFT_P2P_ARTIFACT_DIR": str(blocker)}
    with pytest.raises(ConfigError, match=r"^RINGRIFT_P2P_ARTIFACT_DIR="):
        check_state_dirs(load_config(env), env)
    check_state_dirs(load_config({"RINGRIFT_P2P_STATE_DIR": str(tmp_path / "ok")}), {})
    assert (tmp_path / "ok" / "artifacts").is_dir()


def test_a_read_only_state_dir_is_named() -> None:
    with world_dir() as d:  # as root, checked as nobody: root writes anywhere
        ro = d / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        env = {"RINGRIFT_P2P_STATE_DIR": str(ro)}
        err = error_of(lambda: check_state_dirs(load_config(env), env))
    assert err.startswith(f"ConfigError: RINGRIFT_P2P_STATE_DIR={ro}: "), err
    assert "\n" not in err


# --- the bind address ---------------------------------------------------------------------------


def test_the_default_bind_is_the_inventory_address_else_loopback() -> None:
    cfg = load_config({})
    assert cfg.BIND_HOST == ""
    assert resolve_bind_host(cfg, "100.64.0.7") == "100.64.0.7"
    assert resolve_bind_host(cfg, None) == "127.0.0.1"
    adv = load_config({"RINGRIFT_P2P_ADVERTISE_HOST": "10.0.0.2"})
    assert resolve_bind_host(adv, "100.64.0.7") == "10.0.0.2"
    everywhere = load_config({"RINGRIFT_P2P_BIND_HOST": "0.0.0.0"})
    assert resolve_bind_host(everywhere, "100.64.0.7") == "0.0.0.0"


# --- the seeds' two timing sets -----------------------------------------------------------------


def test_the_older_heartbeat_alone_says_what_else_to_set() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"RINGRIFT_P2P_HEARTBEAT_INTERVAL": "15"})
    msg = str(info.value)
    assert "RINGRIFT_P2P_PEER_TIMEOUT" in msg and "RINGRIFT_P2P_PEER_TIMEOUT=45" in msg
    assert "RINGRIFT_P2P_PEER_TIMEOUT=60" in msg and "RINGRIFT_P2P_LEADER_LEASE_DURATION=90" in msg


def test_the_older_set_as_the_error_gives_it_loads() -> None:
    cfg = load_config(
        {
            "RINGRIFT_P2P_HEARTBEAT_INTERVAL": "15",
            "RINGRIFT_P2P_PEER_TIMEOUT": "60",
            "RINGRIFT_P2P_LEADER_LEASE_DURATION": "90",
        }
    )
    assert (cfg.HEARTBEAT_INTERVAL, cfg.PEER_TIMEOUT, cfg.LEADER_LEASE_DURATION) == (15, 60, 90)
    default = load_config({})
    assert (default.HEARTBEAT_INTERVAL, default.PEER_TIMEOUT, default.LEADER_LEASE_DURATION) == (
        5,
        15,
        30,
    )
