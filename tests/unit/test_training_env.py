"""Training thresholds from the environment, and the demo profile honouring what the
user set (fleet soak: ``--demo`` ignored RINGRIFT_P2P_SELFPLAY_GAMES_PER_JOB, and the
thresholds had no variable at all)."""

from __future__ import annotations

import logging

import pytest

from ringrift_fleet.assembly import Scheduling, scheduler_policy
from ringrift_fleet.config import known_env_vars, load_config, unknown_env_warnings
from ringrift_fleet.errors import ConfigError
from ringrift_fleet.training import should_trigger_training

VARS = {
    "RINGRIFT_P2P_TRAINING_MIN_GAMES": "300",
    "RINGRIFT_P2P_TRAINING_STALENESS_HOURS": "6",
    "RINGRIFT_P2P_TRAINING_MIN_GAMES_WHEN_STALE": "100",
    "RINGRIFT_P2P_TRAINING_MIN_HOURS_BETWEEN_RUNS": "0",
}


def test_the_training_thresholds_come_from_the_environment() -> None:
    assert set(VARS) <= known_env_vars() and unknown_env_warnings(VARS) == []
    policy = scheduler_policy(load_config(VARS), Scheduling())
    t = policy.thresholds
    assert (t.MIN_GAMES, t.STALENESS_HOURS, t.MIN_GAMES_WHEN_STALE) == (300, 6.0, 100)
    assert t.MIN_HOURS_BETWEEN_RUNS == 0.0
    assert should_trigger_training(300, 0.1, thresholds=t)  # the default would wait for 5000
    assert not should_trigger_training(299, 0.1, thresholds=t)
    # lowering MIN_GAMES alone is enough: the stale floor follows it down
    only = scheduler_policy(load_config({"RINGRIFT_P2P_TRAINING_MIN_GAMES": "300"}), Scheduling())
    assert only.thresholds.MIN_GAMES_WHEN_STALE == 300


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RINGRIFT_P2P_TRAINING_MIN_GAMES": "lots"}, "RINGRIFT_P2P_TRAINING_MIN_GAMES='lots': "),
        ({"RINGRIFT_P2P_TRAINING_MIN_GAMES": "0"}, "expected a positive integer"),
        ({"RINGRIFT_P2P_TRAINING_STALENESS_HOURS": "0"}, "a positive number of hours"),
        ({"RINGRIFT_P2P_TRAINING_MIN_HOURS_BETWEEN_RUNS": "-1"}, "a number of hours >= 0"),
        (
            {
                "RINGRIFT_P2P_TRAINING_MIN_GAMES": "500",
                "RINGRIFT_P2P_TRAINING_MIN_GAMES_WHEN_STALE": "600",
            },
            "RINGRIFT_P2P_TRAINING_MIN_GAMES_WHEN_STALE=600: must not exceed TRAINING_MIN_GAMES "
            "(500, from RINGRIFT_P2P_TRAINING_MIN_GAMES)",
        ),
    ],
)
def test_a_bad_threshold_names_its_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_demo_keeps_what_the_user_set_and_says_which_values_are_its_own(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"RINGRIFT_P2P_SELFPLAY_GAMES_PER_JOB": "1000", "RINGRIFT_P2P_TRAINING_MIN_GAMES": "90"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    caplog.set_level(logging.INFO, "ringrift_fleet.scheduler.service")
    demo = scheduler_policy(load_config(env), Scheduling(demo=True))
    assert demo.games_per_job == 1000 and demo.thresholds.MIN_GAMES == 90
    assert demo.eval_games == 24 and demo.thresholds.MIN_HOURS_BETWEEN_RUNS == 0.0  # demo's
    (line,) = [r.getMessage() for r in caplog.records if "demo profile" in r.getMessage()]
    assert "SELFPLAY_GAMES_PER_JOB=1000 (RINGRIFT_P2P_SELFPLAY_GAMES_PER_JOB)" in line
    assert "EVAL_GAMES=24 (demo)" in line
    for k in env:
        monkeypatch.delenv(k)
    plain = scheduler_policy(load_config({}), Scheduling(demo=True))
    assert plain.games_per_job == 8 and plain.thresholds.MIN_GAMES == 48
