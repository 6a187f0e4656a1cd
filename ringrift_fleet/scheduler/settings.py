# mypy: disallow-any-explicit
"""The scheduler's knobs, read once from ``P2PConfig`` and checked there.

A bad board config or weight names the variable it came from, so a typo in
``RINGRIFT_P2P_SCHEDULER_CONFIG_WEIGHTS`` fails at start instead of silently
starving a board.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, TypedDict, Unpack

from ringrift_fleet.config import P2PConfig
from ringrift_fleet.errors import ConfigError, ValidationError
from ringrift_fleet.scheduler.snapshot import BoardConfig, all_board_configs

if TYPE_CHECKING:
    from ringrift_fleet.training import TrainingThresholds

_LIMITS: Mapping[str, float] = MappingProxyType(
    {"selfplay": 7200.0, "training": 28800.0, "evaluation": 7200.0, "sync": 3600.0}
)


class PolicyFields(TypedDict, total=False):
    """Keyword arguments of :class:`SchedulerPolicy` (for ``from_config``'s overrides)."""

    configs: tuple[BoardConfig, ...]
    load_max: float
    disk_critical: float
    prefetch: float
    queue_ahead_s: float
    fairshare_window_s: float
    games_per_job: int
    seconds_per_game: float
    eval_games: int
    promotion_margin: float
    time_limits: Mapping[str, float]
    reap_grace_s: float
    lease_grace_s: float
    retry_backoff_s: float
    max_attempts: int
    max_lost: int
    thresholds: TrainingThresholds | None
    allow_cpu_training: bool
    ledger_retention_s: float
    prune_interval_s: float
    prune_batch: int
    ledger_max_finished: int
    place_work: bool


@dataclass(frozen=True)
class SchedulerPolicy:
    """Everything ``plan`` needs besides the snapshot itself."""

    configs: tuple[BoardConfig, ...] = field(default_factory=all_board_configs)
    load_max: float = 0.8  # LOAD_MAX_FOR_NEW_JOBS
    disk_critical: float = 70.0  # DISK_CRITICAL_THRESHOLD, percent
    prefetch: float = 0.25  # queued jobs per host beyond its free slots, × its slots
    # ... and at least this many seconds of work queued per slot (short jobs), up to
    # QUEUE_AHEAD_MAX_PER_SLOT jobs a slot; 0 = off (SCHEDULER_QUEUE_AHEAD)
    queue_ahead_s: float = 0.0
    fairshare_window_s: float = 3600.0  # self-play history fair share looks at
    games_per_job: int = 16  # on the cheapest board; larger boards get fewer per job
    seconds_per_game: float = 10.0  # first guess at one cheapest game on one GPU
    eval_games: int = 40
    promotion_margin: float = 0.05
    time_limits: Mapping[str, float] = field(default_factory=lambda: dict(_LIMITS))
    reap_grace_s: float = 60.0
    # a started attempt whose run lease (and result) the leader has not seen for this
    # long is re-placed: its worker died (the lease itself lapses RUN_LEASE_TTL after)
    lease_grace_s: float = 2.0
    retry_backoff_s: float = 600.0  # after a failed training cycle
    # failures of a job's own (its task failed, or killed its worker process
    # MAX_REDELIVERIES times, or ran past its hard limit) before it is given up ...
    max_attempts: int = 3
    # ... and attempts it may lose besides to its whole worker's or host's death
    max_lost: int = 5
    # a training.TrainingThresholds (from_config: the TRAINING_* fields); None = its defaults
    thresholds: TrainingThresholds | None = None
    allow_cpu_training: bool = False  # the one-machine demo trains on a CPU
    # finished jobs stay in the ledger this long, then only their summary does
    ledger_retention_s: float = 86400.0
    prune_interval_s: float = 60.0
    prune_batch: int = 512  # jobs forgotten per ledger operation
    # … and at most this many finished jobs stay, whatever the job rate (the oldest
    # go first, into the same records); bounds a coordinator's memory by count
    ledger_max_finished: int = 20_000
    # False: consensus only (``ringrift-fleet coordinator --no-scheduler``): the leader
    # still releases the jobs of lost hosts, but places no new work and sends nothing
    place_work: bool = True

    def __post_init__(self) -> None:
        floor = max(self.fairshare_window_s, max(self.time_limits.values()) + self.reap_grace_s)
        if not self.ledger_retention_s >= floor:
            raise ConfigError(
                f"RINGRIFT_P2P_SCHEDULER_LEDGER_RETENTION={self.ledger_retention_s:g}: must be "
                f"at least {floor:g} s (the fair-share window and the longest job's hard limit "
                "plus the reap grace), so no job is forgotten while its result may still arrive"
            )

    @property
    def ledger_attempts(self) -> int:
        """The ledger's bound on a job's attempts: both kinds of ending together."""
        return self.max_attempts + self.max_lost

    def config(self, key: str) -> BoardConfig | None:
        for c in self.configs:
            if c.key == key:
                return c
        return None

    def games_for(self, c: BoardConfig) -> int:
        """Games per self-play job, so every config's jobs run about equally long."""
        return max(1, round(self.games_per_job / c.game_cost))

    def expected_job_seconds(self, c: BoardConfig) -> float:
        return self.games_for(c) * c.game_cost * self.seconds_per_game

    def hard_limit(self, job_type: str) -> float:
        return float(self.time_limits.get(job_type, 7200.0))

    @classmethod
    def from_config(cls, cfg: P2PConfig, **overrides: Unpack[PolicyFields]) -> SchedulerPolicy:
        from ringrift_fleet.training import TrainingThresholds

        configs = parse_board_configs(
            cfg.SCHEDULER_BOARD_CONFIGS,
            cfg.SCHEDULER_CONFIG_WEIGHTS,
            origin="RINGRIFT_P2P_SCHEDULER_BOARD_CONFIGS",
            weights_origin="RINGRIFT_P2P_SCHEDULER_CONFIG_WEIGHTS",
        )
        values: PolicyFields = {
            "configs": configs,
            "load_max": cfg.LOAD_MAX_FOR_NEW_JOBS,
            "disk_critical": cfg.DISK_CRITICAL_THRESHOLD,
            "prefetch": cfg.SCHEDULER_PREFETCH,
            "queue_ahead_s": cfg.SCHEDULER_QUEUE_AHEAD,
            "fairshare_window_s": cfg.SCHEDULER_FAIRSHARE_WINDOW,
            "games_per_job": cfg.SELFPLAY_GAMES_PER_JOB,
            "eval_games": cfg.EVAL_GAMES,
            "promotion_margin": cfg.EVAL_PROMOTION_MARGIN,
            "thresholds": TrainingThresholds.from_config(cfg),
            "reap_grace_s": cfg.SCHEDULER_REAP_GRACE,
            "max_attempts": cfg.MAX_REDELIVERIES,
            "max_lost": cfg.MAX_LOST_ATTEMPTS,
            "ledger_retention_s": cfg.SCHEDULER_LEDGER_RETENTION,
            "ledger_max_finished": cfg.SCHEDULER_LEDGER_MAX_FINISHED,
            "time_limits": MappingProxyType(
                {t: cfg.time_limit(t) for t in ("selfplay", "training", "evaluation", "sync")}
            ),
        }
        values.update(overrides)
        return cls(**values)


def parse_board_configs(
    keys: str, weights: str, *, origin: str = "board configs", weights_origin: str = "weights"
) -> tuple[BoardConfig, ...]:
    """``"square8_2p,hex8_3p"`` and ``"hex8_3p=2"`` → configs; "" means all twelve."""
    chosen = list(all_board_configs())
    if keys.strip():
        chosen = []
        for raw in keys.split(","):
            if not raw.strip():
                continue
            try:
                c = BoardConfig.parse(raw)
            except ValidationError as exc:
                raise ConfigError(f"{origin}={keys!r}: {exc}") from None
            if any(x.key == c.key for x in chosen):
                raise ConfigError(f"{origin}={keys!r}: {c.key} is listed twice")
            chosen.append(c)
    table: dict[str, float] = {}
    for part in weights.split(","):
        if not part.strip():
            continue
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(
                f"{weights_origin}={weights!r}: {part.strip()!r} is not <config>=<weight>"
            )
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise ConfigError(
                f"{weights_origin}={weights!r}: weight of {key} must be a number >= 0, got {raw!r}"
            )
        if not any(c.key == key for c in chosen):
            raise ConfigError(
                f"{weights_origin}={weights!r}: {key} is not a scheduled board config "
                f"(one of {', '.join(c.key for c in chosen)})"
            )
        table[key] = value
    out = tuple(BoardConfig(c.board_type, c.num_players, table.get(c.key, 1.0)) for c in chosen)
    if not out or all(c.weight == 0 for c in out):
        raise ConfigError(f"{weights_origin}={weights!r}: at least one config needs a weight > 0")
    return out
