"""When to train and where: pure functions of counts, hours and node summaries.

The scheduler calls these every tick on the leader, so they do no I/O and are
deterministic: the same snapshot always gives the same decision and ranking.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple, overload

from ringrift_fleet.config import P2PConfig, get_p2p_config
from ringrift_fleet.errors import ValidationError
from ringrift_fleet.models import NodeHealth, NodeSummary
from ringrift_fleet.placement import can_train, gpu_power


@dataclass(frozen=True)
class TrainingThresholds:
    """When a board config has earned a training run.

    Train when MIN_GAMES new games exist; or, once the model is STALENESS_HOURS
    old, with at least MIN_GAMES_WHEN_STALE new games (a quiet config still
    improves, just less often).  Never twice within MIN_HOURS_BETWEEN_RUNS,
    whatever the counts say: a burst of games must not queue back-to-back runs.
    """

    MIN_GAMES: int = 5000
    STALENESS_HOURS: float = 24.0
    MIN_GAMES_WHEN_STALE: int = 1000
    MIN_HOURS_BETWEEN_RUNS: float = 2.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValidationError(
                    f"TrainingThresholds.{f.name}: expected a number, got {value!r}"
                )
            if not math.isfinite(value) or value < 0:
                raise ValidationError(
                    f"TrainingThresholds.{f.name}: expected a number >= 0, got {value!r}"
                )
        if self.MIN_GAMES_WHEN_STALE > self.MIN_GAMES:
            raise ValidationError(
                f"TrainingThresholds.MIN_GAMES_WHEN_STALE={self.MIN_GAMES_WHEN_STALE}: must not "
                f"exceed MIN_GAMES={self.MIN_GAMES}"
            )

    @classmethod
    def from_config(cls, cfg: P2PConfig) -> TrainingThresholds:
        """The thresholds the ``TRAINING_*`` config fields set (checked by the config module,
        so a bad value fails at start naming its variable)."""
        return cls(
            MIN_GAMES=cfg.TRAINING_MIN_GAMES,
            STALENESS_HOURS=cfg.TRAINING_STALENESS_HOURS,
            MIN_GAMES_WHEN_STALE=cfg.TRAINING_MIN_GAMES_WHEN_STALE,
            MIN_HOURS_BETWEEN_RUNS=cfg.TRAINING_MIN_HOURS_BETWEEN_RUNS,
        )


class TrainingDecision(NamedTuple):
    """``(should_train, reason)``; true only when training should start."""

    should_train: bool
    reason: str

    def __bool__(self) -> bool:
        return self.should_train


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValidationError(f"{name}: expected a number >= 0, got {value!r}")
    if value < 0:
        raise ValidationError(f"{name}: expected a number >= 0, got {value!r}")
    return float(value)


def should_trigger_training(
    games_available: int | float,
    hours_since_last_training: float | None = None,
    *,
    hours_since_train: float | None = None,
    thresholds: TrainingThresholds | None = None,
) -> TrainingDecision:
    """Whether a config with ``games_available`` new games should train now.

    ``hours_since_last_training`` and ``hours_since_train`` are the two spellings
    users know; give one (None or omitted = never trained).
    """
    t = thresholds or TrainingThresholds()
    both = hours_since_last_training is not None and hours_since_train is not None
    if both and hours_since_last_training != hours_since_train:
        raise ValidationError(
            "should_trigger_training: hours_since_last_training and hours_since_train "
            "are the same argument; give one"
        )
    hours_raw = hours_since_last_training if hours_since_train is None else hours_since_train
    games = _non_negative("games_available", games_available)
    hours = math.inf if hours_raw is None else _non_negative("hours_since_last_training", hours_raw)

    if hours < t.MIN_HOURS_BETWEEN_RUNS:
        return TrainingDecision(
            False,
            f"rate limited: last run {hours:.1f} h ago, "
            f"MIN_HOURS_BETWEEN_RUNS is {t.MIN_HOURS_BETWEEN_RUNS:g} h",
        )
    if games >= t.MIN_GAMES:
        return TrainingDecision(True, f"{games:.0f} new games >= MIN_GAMES {t.MIN_GAMES}")
    if hours >= t.STALENESS_HOURS and games >= t.MIN_GAMES_WHEN_STALE:
        age = "never trained" if math.isinf(hours) else f"model {hours:.1f} h old"
        return TrainingDecision(
            True,
            f"stale: {age} (STALENESS_HOURS {t.STALENESS_HOURS:g}) and {games:.0f} new games "
            f">= MIN_GAMES_WHEN_STALE {t.MIN_GAMES_WHEN_STALE}",
        )
    if hours >= t.STALENESS_HOURS:
        return TrainingDecision(
            False,
            f"stale but only {games:.0f} new games (MIN_GAMES_WHEN_STALE {t.MIN_GAMES_WHEN_STALE})",
        )
    return TrainingDecision(
        False,
        f"only {games:.0f} new games (MIN_GAMES {t.MIN_GAMES}; or "
        f"{t.MIN_GAMES_WHEN_STALE} after STALENESS_HOURS {t.STALENESS_HOURS:g})",
    )


# --- priorities ----------------------------------------------------------------------------

# A config's Elo below this gets a bonus: weak models gain most from a run.
ELO_REFERENCE = 1500.0
ELO_SCALE = 500.0


def calculate_config_training_priority(
    games_since_last_train: int | float,
    hours_since_last_train: float,
    current_elo: float,
    thresholds: TrainingThresholds | None = None,
) -> float:
    """How urgently a board config needs training (higher first; comparable across configs).

    games/MIN_GAMES (capped at 4) + 0.5 × hours/STALENESS_HOURS (capped at 2)
    + 0.5 × how far the Elo is below ELO_REFERENCE, in ELO_SCALE units (capped at 1).
    Rises with games and hours, falls with Elo.
    """
    t = thresholds or TrainingThresholds()
    games = _non_negative("games_since_last_train", games_since_last_train)
    hours = _non_negative("hours_since_last_train", hours_since_last_train)
    if isinstance(current_elo, bool) or not isinstance(current_elo, (int, float)):
        raise ValidationError(f"current_elo: expected a number, got {current_elo!r}")
    if not math.isfinite(current_elo):
        raise ValidationError(f"current_elo: expected a finite number, got {current_elo!r}")
    games_part = min(games / max(t.MIN_GAMES, 1), 4.0)
    hours_part = 0.5 * min(hours / max(t.STALENESS_HOURS, 1e-9), 2.0)
    elo_part = 0.5 * min(max((ELO_REFERENCE - current_elo) / ELO_SCALE, 0.0), 1.0)
    return round(games_part + hours_part + elo_part, 6)


# Data locality: a node that already holds the games skips a sync (minutes of
# transfer for a big config), worth a quarter more than the same node without.
TRAINING_DATA_BONUS = 1.25
_VRAM_FULL_CREDIT_GB = 160.0


def calculate_node_training_priority(
    gpu_type: str,
    memory_gb: float,
    current_load: float,
    has_training_data: bool,
    config: P2PConfig | None = None,
) -> float:
    """How good a node is for the next training run (0 = cannot train).

    (GPU power + 0.25 × min(VRAM, 160 GB)/160) × (1 − load%/100), × 1.25 when the
    node already holds the training data.  ``memory_gb`` is GPU memory and
    ``current_load`` a percentage (0–100), as in the reference examples.
    """
    vram = _non_negative("memory_gb", memory_gb)
    load = _non_negative("current_load", current_load)
    if load > 100:
        raise ValidationError(f"current_load: expected a percentage 0-100, got {current_load!r}")
    if not isinstance(has_training_data, bool):
        raise ValidationError(
            f"has_training_data: expected true or false, got {has_training_data!r}"
        )
    if not can_train(str(gpu_type), vram, config):
        return 0.0
    base = gpu_power(str(gpu_type)) + 0.25 * min(vram, _VRAM_FULL_CREDIT_GB) / _VRAM_FULL_CREDIT_GB
    score = base * (1.0 - load / 100.0) * (TRAINING_DATA_BONUS if has_training_data else 1.0)
    return round(score, 6)


_CONFIG_ARGS = ("games_since_last_train", "hours_since_last_train", "current_elo")
_NODE_ARGS = ("gpu_type", "memory_gb", "current_load", "has_training_data")


@overload
def calculate_training_priority(
    *,
    games_since_last_train: int | float,
    hours_since_last_train: float,
    current_elo: float,
    thresholds: TrainingThresholds | None = None,
) -> float: ...


@overload
def calculate_training_priority(
    *,
    gpu_type: str,
    memory_gb: float,
    current_load: float,
    has_training_data: bool,
    config: P2PConfig | None = None,
) -> float: ...


def calculate_training_priority(**kwargs: Any) -> float:
    """Priority of a board config, or of a node, by which arguments are given.

    Board config: ``games_since_last_train, hours_since_last_train, current_elo``
    (→ :func:`calculate_config_training_priority`).  Node: ``gpu_type, memory_gb,
    current_load, has_training_data`` (→ :func:`calculate_node_training_priority`).
    """
    config_args = [k for k in kwargs if k in (*_CONFIG_ARGS, "thresholds")]
    node_args = [k for k in kwargs if k in (*_NODE_ARGS, "config")]
    unknown = [k for k in kwargs if k not in config_args and k not in node_args]
    if unknown:
        raise ValidationError(
            f"calculate_training_priority: unknown argument {unknown[0]!r}; give either "
            f"{', '.join(_CONFIG_ARGS)} (a board config) or {', '.join(_NODE_ARGS)} (a node)"
        )
    if config_args and node_args:
        raise ValidationError(
            "calculate_training_priority: mixes board-config arguments "
            f"({', '.join(config_args)}) with node arguments ({', '.join(node_args)}); "
            "call calculate_config_training_priority or calculate_node_training_priority"
        )
    form, required = ("node", _NODE_ARGS) if node_args else ("board-config", _CONFIG_ARGS)
    missing = [k for k in required if k not in kwargs]
    if missing:
        raise ValidationError(
            f"calculate_training_priority: the {form} form needs {', '.join(missing)}"
        )
    if node_args:
        return calculate_node_training_priority(**kwargs)
    return calculate_config_training_priority(**kwargs)


# --- ranking nodes --------------------------------------------------------------------------


def rank_nodes_for_training(
    nodes: Sequence[NodeSummary],
    config: P2PConfig | None = None,
    *,
    nodes_with_data: Collection[str] = (),
) -> list[NodeSummary]:
    """Nodes that can take a training run now, best first (ties broken by node id).

    A node qualifies when its GPU can train (power and VRAM), it is HEALTHY, and
    it is not overloaded: load_score at most LOAD_MAX_FOR_NEW_JOBS and no
    resource over its threshold.  ``nodes_with_data`` hold the games already.
    """
    cfg = config or get_p2p_config()
    scored: list[tuple[float, str, NodeSummary]] = []
    for node in nodes:
        if node.health is not NodeHealth.HEALTHY or node.gpu_count < 1:
            continue
        m = node.metrics
        overloaded = m.overloaded_resources(
            cpu=cfg.CPU_OVERLOAD_THRESHOLD,
            memory=cfg.MEMORY_OVERLOAD_THRESHOLD,
            gpu_memory=cfg.GPU_MEMORY_OVERLOAD_THRESHOLD,
            disk=cfg.DISK_CRITICAL_THRESHOLD,
        )
        if overloaded or m.load_score > cfg.LOAD_MAX_FOR_NEW_JOBS:
            continue
        score = calculate_node_training_priority(
            node.gpu_type,
            node.gpu_vram_gb,
            m.load_score * 100.0,
            node.node_id in nodes_with_data,
            cfg,
        )
        if score > 0:
            scored.append((-score, node.node_id, node))
    scored.sort(key=lambda item: (item[0], item[1]))
    return [node for _, _, node in scored]
