"""P2PConfig: the documented defaults, every environment override, and errors naming the variable."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from ringrift_fleet.config import (
    ENV_ALIASES,
    GPU_POWER_RANKINGS,
    P2PConfig,
    _field_types,
    get_p2p_config,
    load_config,
    reload_p2p_config,
)
from ringrift_fleet.errors import ConfigError
from tests.support.procs import REPO

FIELDS = [f.name for f in dataclasses.fields(P2PConfig)]
KINDS = _field_types()


def test_documented_defaults() -> None:
    c = load_config({})
    assert c.DEFAULT_PORT == 8770
    assert c.HEARTBEAT_INTERVAL == 5.0
    assert c.PEER_TIMEOUT == 15.0
    assert c.LEADER_LEASE_DURATION == 30.0
    assert c.LOAD_MAX_FOR_NEW_JOBS == 0.8
    assert c.DISK_CRITICAL_THRESHOLD == 70.0
    assert c.BROKER_URL.startswith("redis://")
    assert c.SWIM_PORT and c.RAFT_PORT and c.STATE_DIR
    assert c.artifact_dir == c.state_dir / "artifacts"
    assert c.result_backend == c.BROKER_URL


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_config({}).DEFAULT_PORT = 1  # type: ignore[misc]


def _candidates(name: str, default: object) -> list[str]:
    """Valid non-default values to try for a field, by what it accepts."""
    kind = KINDS[name]
    if name.endswith("_PORT"):
        return [str(int(default) + 1 if int(default) < 65535 else 1024)]  # type: ignore[call-overload]
    if name == "BROKER_URL":
        return ["rediss://broker.example:6380/2"]
    if name == "NODE_ID":
        return ["node-7"]
    if kind is int:
        return [str(int(default) + 2), str(max(int(default) - 1, 1))]  # type: ignore[call-overload]
    if kind is float:
        d = float(default)  # type: ignore[arg-type]
        return [repr(min(d * 1.5, 100.0) if d else 1.5), repr(d * 0.75), repr(min(d + 0.05, 1.0))]
    return ["custom-value", "a,b", "user:secret"]


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_overridable_by_its_variable(name: str) -> None:
    default = getattr(load_config({}), name)
    var = f"RINGRIFT_P2P_{name}"
    errors = []
    for raw in _candidates(name, default):
        try:
            cfg = load_config({var: raw})
        except ConfigError as exc:  # a cross-field rule refused this one; try the next
            errors.append(str(exc))
            continue
        expected = KINDS[name](raw) if KINDS[name] is not str else raw
        if expected == default:
            continue
        assert getattr(cfg, name) == expected
        break
    else:
        pytest.fail(f"{var}: no candidate value was accepted: {errors}")


@pytest.mark.parametrize("name", [n for n in FIELDS if KINDS[n] in (int, float)])
def test_non_numbers_are_refused_naming_the_variable(name: str) -> None:
    var = f"RINGRIFT_P2P_{name}"
    with pytest.raises(ConfigError) as info:
        load_config({var: "abc"})
    message = str(info.value)
    assert message.startswith(f"{var}='abc': expected ")
    assert "\n" not in message


def test_documented_aliases() -> None:
    cfg = load_config(
        {
            "RINGRIFT_P2P_PORT": "8771",
            "RINGRIFT_P2P_HEARTBEAT_INTERVAL": "10",
            "RINGRIFT_P2P_LEADER_LEASE": "60",
            "RINGRIFT_P2P_PEER_TIMEOUT": "40",
        }
    )
    assert (cfg.DEFAULT_PORT, cfg.HEARTBEAT_INTERVAL, cfg.LEADER_LEASE_DURATION) == (
        8771,
        10.0,
        60.0,
    )
    assert ENV_ALIASES["RINGRIFT_P2P_PORT"] == "DEFAULT_PORT"
    # an alias and the field's own variable agreeing is fine; disagreeing is an error
    assert (
        load_config({"RINGRIFT_P2P_PORT": "9000", "RINGRIFT_P2P_DEFAULT_PORT": "9000"}).DEFAULT_PORT
        == 9000
    )
    with pytest.raises(
        ConfigError, match="RINGRIFT_P2P_DEFAULT_PORT='9001' contradicts RINGRIFT_P2P_PORT='9000'"
    ):
        load_config({"RINGRIFT_P2P_PORT": "9000", "RINGRIFT_P2P_DEFAULT_PORT": "9001"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RINGRIFT_P2P_PORT": "abc"}, "RINGRIFT_P2P_PORT='abc': expected an integer port 1-65535"),
        (
            {"RINGRIFT_P2P_PORT": "70000"},
            "RINGRIFT_P2P_PORT=70000: expected an integer port 1-65535",
        ),
        (
            {"RINGRIFT_P2P_PORT": "8770.5"},
            "RINGRIFT_P2P_PORT='8770.5': expected an integer port 1-65535",
        ),
        (
            {"RINGRIFT_P2P_LEADER_LEASE": "-5"},
            "RINGRIFT_P2P_LEADER_LEASE=-5.0: expected a positive number of seconds",
        ),
        (
            {"RINGRIFT_P2P_PEER_TIMEOUT": "0"},
            "RINGRIFT_P2P_PEER_TIMEOUT=0.0: expected a positive number of seconds",
        ),
        (
            {"RINGRIFT_P2P_HEARTBEAT_INTERVAL": "nan"},
            "RINGRIFT_P2P_HEARTBEAT_INTERVAL='nan': expected",
        ),
        ({"RINGRIFT_P2P_DISK_CRITICAL_THRESHOLD": "150"}, "expected a percentage 0-100"),
        ({"RINGRIFT_P2P_LOAD_MAX_FOR_NEW_JOBS": "1.5"}, "expected a number in (0, 1]"),
        (
            {"RINGRIFT_P2P_BROKER_URL": "http://x"},
            "RINGRIFT_P2P_BROKER_URL='http://x': expected a redis://",
        ),
        ({"RINGRIFT_P2P_NODE_ID": "  "}, "RINGRIFT_P2P_NODE_ID: the node id must not be empty"),
        (
            {"RINGRIFT_P2P_GAMES_KEEP_FILES": "500"},
            "RINGRIFT_P2P_GAMES_KEEP_FILES=500: expected 0 (keep every games file) or an "
            "integer >= 1000",
        ),
        (
            {"RINGRIFT_P2P_COORDINATOR_STALL_S": "0.1"},
            "RINGRIFT_P2P_COORDINATOR_STALL_S=0.1: expected 0 (no stall watch) or a number of "
            "seconds >= 0.5",
        ),
        (
            {"RINGRIFT_P2P_COORDINATOR_STALL_S": "-1"},
            "RINGRIFT_P2P_COORDINATOR_STALL_S=-1.0: expected 0 (no stall watch)",
        ),
        (
            {"RINGRIFT_P2P_HEARTBEAT_INTERVAL": "20"},
            "P2PConfig.PEER_TIMEOUT (default)=15.0: must be above HEARTBEAT_INTERVAL (20.0, from "
            "RINGRIFT_P2P_HEARTBEAT_INTERVAL)",
        ),
        (
            {"RINGRIFT_P2P_PEER_TIMEOUT": "5"},
            "RINGRIFT_P2P_PEER_TIMEOUT=5.0: must be above HEARTBEAT_INTERVAL (5.0",
        ),
    ],
)
def test_bad_values_name_the_variable_and_what_it_accepts(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env)
    assert message in str(info.value)


def test_replace_validates_too() -> None:
    cfg = load_config({})
    assert cfg.replace(DEFAULT_PORT=9999).DEFAULT_PORT == 9999
    with pytest.raises(ConfigError, match=r"P2PConfig\.PEER_TIMEOUT=1\.0"):
        cfg.replace(PEER_TIMEOUT=1.0)


def test_cached_config_reloads(fresh_config: pytest.MonkeyPatch) -> None:
    fresh_config.setenv("RINGRIFT_P2P_PORT", "8123")
    assert reload_p2p_config().DEFAULT_PORT == 8123
    assert get_p2p_config() is get_p2p_config()
    fresh_config.setenv("RINGRIFT_P2P_PORT", "8124")
    assert get_p2p_config().DEFAULT_PORT == 8123  # cached until reloaded
    assert reload_p2p_config().DEFAULT_PORT == 8124


def test_gpu_rankings_extend_the_seed_sensibly() -> None:
    r = GPU_POWER_RANKINGS
    assert (
        r["GH200"]
        > r["H200"]
        > r["H100"]
        > r["A100"]
        > r["RTX_5090"]
        > r["RTX_4090"]
        > r["A10"]
        > r["CPU"]
    )
    assert r["L40S"] > r["L40"] and r["A40"] > r["A4000"]
    assert all(0 < v <= 2 for v in r.values())


@pytest.mark.timeout(60)
def test_cli_prints_a_bad_variable_as_one_line() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), RINGRIFT_P2P_PORT="abc")
    proc = subprocess.run(
        [sys.executable, "-m", "ringrift_fleet", "inventory", "validate", "x"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "ringrift-fleet inventory: error: RINGRIFT_P2P_PORT='abc': expected an integer port 1-65535"
    ]


def test_games_retention_can_be_off_and_its_floor_is_what_training_reads() -> None:
    from ringrift_fleet.config import GAMES_KEEP_MIN
    from ringrift_fleet.execution.workloads.training import MAX_TRAINING_GAMES

    assert load_config({"RINGRIFT_P2P_GAMES_KEEP_FILES": "0"}).GAMES_KEEP_FILES == 0
    # Each games file holds at least one game, so keeping this many files never
    # drops a game the newest-first training read would have used.
    assert GAMES_KEEP_MIN >= MAX_TRAINING_GAMES


def test_the_stall_watch_can_be_off() -> None:
    assert load_config({"RINGRIFT_P2P_COORDINATOR_STALL_S": "0"}).COORDINATOR_STALL_S == 0
    assert load_config({"RINGRIFT_P2P_COORDINATOR_STALL_S": "0.5"}).COORDINATOR_STALL_S == 0.5
