"""Feature flags: validated values, gradual rollout, and ``*_ENABLED=false`` as instant rollback."""

from __future__ import annotations

import pytest

from ringrift_fleet.config import (
    FeatureFlags,
    get_feature_flags,
    load_feature_flags,
    reload_feature_flags,
)
from ringrift_fleet.errors import ConfigError


def test_defaults_are_http_and_bully() -> None:
    flags = load_feature_flags({})
    assert flags == FeatureFlags(False, "http", False, "bully")
    assert (flags.effective_membership_mode, flags.effective_consensus_mode) == ("http", "bully")
    assert flags.warnings == []


@pytest.mark.parametrize(
    ("env", "membership", "consensus"),
    [
        # the documented rollout stages
        (
            {"RINGRIFT_SWIM_ENABLED": "true", "RINGRIFT_MEMBERSHIP_MODE": "hybrid"},
            "hybrid",
            "bully",
        ),
        ({"RINGRIFT_SWIM_ENABLED": "true", "RINGRIFT_MEMBERSHIP_MODE": "swim"}, "swim", "bully"),
        (
            {
                "RINGRIFT_SWIM_ENABLED": "true",
                "RINGRIFT_MEMBERSHIP_MODE": "swim",
                "RINGRIFT_RAFT_ENABLED": "true",
                "RINGRIFT_CONSENSUS_MODE": "hybrid",
            },
            "swim",
            "hybrid",
        ),
        ({"RINGRIFT_RAFT_ENABLED": "1", "RINGRIFT_CONSENSUS_MODE": "RAFT"}, "http", "raft"),
    ],
)
def test_rollout_stages(env: dict[str, str], membership: str, consensus: str) -> None:
    flags = load_feature_flags(env)
    assert flags.effective_membership_mode == membership
    assert flags.effective_consensus_mode == consensus
    assert flags.warnings == []


def test_instant_rollback_falls_back_and_says_why() -> None:
    stage3 = {
        "RINGRIFT_MEMBERSHIP_MODE": "swim",
        "RINGRIFT_CONSENSUS_MODE": "hybrid",
    }
    flags = load_feature_flags(
        {**stage3, "RINGRIFT_SWIM_ENABLED": "false", "RINGRIFT_RAFT_ENABLED": "false"}
    )
    assert flags.membership_mode == "swim" and flags.consensus_mode == "hybrid"  # what was asked
    assert flags.effective_membership_mode == "http"  # what runs
    assert flags.effective_consensus_mode == "bully"
    assert flags.warnings == [
        "RINGRIFT_MEMBERSHIP_MODE=swim needs SWIM, but RINGRIFT_SWIM_ENABLED is false: "
        "using HTTP heartbeats (rollback)",
        "RINGRIFT_CONSENSUS_MODE=hybrid needs Raft, but RINGRIFT_RAFT_ENABLED is false: "
        "using Bully election (rollback)",
    ]
    # a mode set without ever enabling the protocol is reported the same way
    assert (
        load_feature_flags({"RINGRIFT_CONSENSUS_MODE": "raft"}).effective_consensus_mode == "bully"
    )


@pytest.mark.parametrize(
    ("var", "raw", "expected"),
    [
        ("RINGRIFT_SWIM_ENABLED", "maybe", "RINGRIFT_SWIM_ENABLED='maybe': expected true or false"),
        ("RINGRIFT_RAFT_ENABLED", "2", "RINGRIFT_RAFT_ENABLED='2': expected true or false"),
        (
            "RINGRIFT_MEMBERSHIP_MODE",
            "gossip",
            "RINGRIFT_MEMBERSHIP_MODE='gossip': expected one of http, swim, hybrid",
        ),
        (
            "RINGRIFT_CONSENSUS_MODE",
            "paxos",
            "RINGRIFT_CONSENSUS_MODE='paxos': expected one of bully, raft, hybrid",
        ),
    ],
)
def test_bad_flags_name_the_variable(var: str, raw: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_feature_flags({var: raw})
    assert str(info.value) == expected


@pytest.mark.parametrize(
    ("raw", "value"), [("TRUE", True), ("yes", True), ("on", True), ("0", False), ("off", False)]
)
def test_boolean_spellings(raw: str, value: bool) -> None:
    assert load_feature_flags({"RINGRIFT_SWIM_ENABLED": raw}).swim_enabled is value


def test_process_flags_read_from_environment(fresh_config: pytest.MonkeyPatch) -> None:
    fresh_config.setenv("RINGRIFT_SWIM_ENABLED", "true")
    fresh_config.setenv("RINGRIFT_MEMBERSHIP_MODE", "hybrid")
    assert reload_feature_flags().effective_membership_mode == "hybrid"
    fresh_config.setenv("RINGRIFT_SWIM_ENABLED", "false")
    assert get_feature_flags().effective_membership_mode == "hybrid"  # cached
    assert reload_feature_flags().effective_membership_mode == "http"  # rollback on reload
