# mypy: disallow-any-explicit
"""What the scheduler sees: plain frozen data, built by the shell, read by ``plan``.

A snapshot is everything one decision needs and nothing it could change: the
ledger's live jobs, the alive hosts with their GPUs and load, per-config game
counts, each config's training cursor and model registry entry, fair-share
usage, and the clock.  Keeping it inert is what lets the same ``plan`` run on a
leader, in a Hypothesis test and in a simulated day of a 50-host fleet.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TypedDict, Unpack

from ringrift_fleet.errors import ValidationError
from ringrift_fleet.execution.boards import BOARD_TYPES, PLAYER_COUNTS
from ringrift_fleet.jsontypes import JSONMapping
from ringrift_fleet.models import JobStatus, JobType, NodeHealth, ResourceMetrics

# Relative cost of one self-play game, square8 2-player = 1.  Cells grow with
# the board and turns with the players; the numbers only shape job sizes and
# first duration guesses, observed durations replace them.
BOARD_COST = {"square8": 1.0, "hex8": 1.2, "square19": 5.0, "hexagonal": 4.0}
PLAYER_COST = {2: 1.0, 3: 1.4, 4: 1.8}

if TYPE_CHECKING:
    from ringrift_fleet.scheduler.settings import SchedulerPolicy


@dataclass(frozen=True)
class BoardConfig:
    """One board type × player count the fleet trains a model for."""

    board_type: str
    num_players: int
    weight: float = 1.0  # share of self-play this config is owed, relative to the others

    @property
    def key(self) -> str:
        return f"{self.board_type}_{self.num_players}p"

    @property
    def game_cost(self) -> float:
        return BOARD_COST.get(self.board_type, 1.0) * PLAYER_COST.get(self.num_players, 1.0)

    @classmethod
    def parse(cls, key: str, weight: float = 1.0) -> BoardConfig:
        """``"hex8_3p"`` → BoardConfig; the error names the key and what is accepted."""
        board, _, players = key.strip().rpartition("_")
        if board not in BOARD_TYPES or players not in ("2p", "3p", "4p"):
            raise ValidationError(
                f"board config {key!r}: expected <board>_<n>p with board one of "
                f"{', '.join(BOARD_TYPES)} and n 2-4"
            )
        return cls(board, int(players[0]), weight)


def all_board_configs() -> tuple[BoardConfig, ...]:
    return tuple(BoardConfig(b, n) for b in BOARD_TYPES for n in PLAYER_COUNTS)


@dataclass(frozen=True)
class Host:
    """An alive host as the scheduler needs it: its slots, its queue, its health."""

    node_id: str
    gpu_type: str = "CPU"
    gpu_power: float = 0.1
    gpu_vram_gb: float = 0.0
    slots: int = 1  # jobs it runs at once (one per GPU; worker concurrency on CPU hosts)
    node_queue: str = ""  # the queue only its worker consumes; "" = node.<id>
    can_train: bool = False
    metrics: ResourceMetrics = field(default_factory=ResourceMetrics)
    status: str = "ready"  # inventory status: ready / offline / retired
    health: NodeHealth = NodeHealth.HEALTHY

    @property
    def pinned_queue(self) -> str:
        return self.node_queue or f"node.{self.node_id}"


class Stage(str, enum.Enum):
    """Where a config's training cycle is; exactly one stage job runs outside IDLE."""

    IDLE = "idle"
    SYNC = "sync"  # its games are being copied to the training host
    TRAINING = "training"
    EVALUATION = "evaluation"  # candidate vs champion


class StateChanges(TypedDict, total=False):
    """The fields of a :class:`ConfigState` that ``ConfigState.but`` may change."""

    stage: Stage
    generation: int
    target_node: str | None
    games_at_trigger: int
    games_at_last_training: int
    last_training_at: float | None
    retry_after: float
    candidate: str | None
    champion: str | None
    champion_elo: float
    promotions: int
    selfplay_seq: int


@dataclass(frozen=True)
class ConfigState:
    """One config's training cursor and model registry entry (one ledger record)."""

    stage: Stage = Stage.IDLE
    generation: int = 0  # training cycles started; names the stage jobs
    target_node: str | None = None  # the host this cycle trains on
    games_at_trigger: int = 0  # games counted when this cycle started
    games_at_last_training: int = 0
    last_training_at: float | None = None  # when the last cycle finished (None: never)
    retry_after: float = 0.0  # no new cycle before this (after a failure)
    candidate: str | None = None
    champion: str | None = None
    champion_elo: float = 1500.0
    promotions: int = 0
    selfplay_seq: int = 0  # self-play jobs created so far; names the next one

    def stage_job_id(self, key: str) -> str | None:
        if self.stage is Stage.IDLE:
            return None
        return f"{self.stage.value}:{key}:g{self.generation}"

    def to_dict(self) -> dict[str, object]:
        return {
            "stage": self.stage.value,
            "generation": self.generation,
            "target_node": self.target_node,
            "games_at_trigger": self.games_at_trigger,
            "games_at_last_training": self.games_at_last_training,
            "last_training_at": self.last_training_at,
            "retry_after": self.retry_after,
            "candidate": self.candidate,
            "champion": self.champion,
            "champion_elo": self.champion_elo,
            "promotions": self.promotions,
            "selfplay_seq": self.selfplay_seq,
        }

    @classmethod
    def from_dict(cls, data: JSONMapping, ctx: str = "config_state") -> ConfigState:
        from ringrift_fleet.models import as_enum, as_float, as_int

        def opt_float(name: str) -> float | None:
            v = data.get(name)
            return None if v is None else as_float(v, name, ctx)

        def opt_text(name: str) -> str | None:
            v = data.get(name)
            if v is not None and not isinstance(v, str):
                raise ValidationError(f"{ctx}.{name}: expected a string, got {v!r}")
            return v

        return cls(
            stage=as_enum(Stage, data.get("stage", "idle"), "stage", ctx),
            generation=as_int(data.get("generation", 0), "generation", ctx, lo=0),
            target_node=opt_text("target_node"),
            games_at_trigger=as_int(data.get("games_at_trigger", 0), "games_at_trigger", ctx, lo=0),
            games_at_last_training=as_int(
                data.get("games_at_last_training", 0), "games_at_last_training", ctx, lo=0
            ),
            last_training_at=opt_float("last_training_at"),
            retry_after=as_float(data.get("retry_after", 0.0), "retry_after", ctx),
            candidate=opt_text("candidate"),
            champion=opt_text("champion"),
            champion_elo=as_float(data.get("champion_elo", 1500.0), "champion_elo", ctx),
            promotions=as_int(data.get("promotions", 0), "promotions", ctx, lo=0),
            selfplay_seq=as_int(data.get("selfplay_seq", 0), "selfplay_seq", ctx, lo=0),
        )

    def but(self, **changes: Unpack[StateChanges]) -> ConfigState:
        return replace(self, **changes)


@dataclass(frozen=True)
class Job:
    """A live (not terminal) job in the ledger."""

    job_id: str
    job_type: JobType
    config_key: str
    status: JobStatus = JobStatus.PENDING  # PENDING: placed nowhere; CLAIMED: queued on node_id
    attempt: int = 0  # attempts placed so far (the live one, when CLAIMED or RUNNING)
    max_attempts: int = 3  # the ledger's bound on attempts, of both kinds
    node_id: str | None = None  # the host of the live attempt
    enqueued_at: float = 0.0
    started_at: float | None = None
    hard_limit_s: float = 7200.0
    kwargs: JSONMapping = field(default_factory=dict)
    # attempts that ended with their whole worker's or host's death (not the job's
    # own failures: those are attempt - lost, the live attempt included)
    lost: int = 0


@dataclass(frozen=True)
class Outcome:
    """How a stage job ended: its task result, or why it failed for good."""

    job_id: str
    ok: bool
    result: JSONMapping = field(default_factory=dict)
    error: str = ""
    node_id: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """Everything one ``plan`` call decides from."""

    now: float
    hosts: tuple[Host, ...]  # alive hosts (membership), healthy or not
    dead: frozenset[str] = frozenset()  # hosts membership has declared dead
    jobs: tuple[Job, ...] = ()  # live ledger jobs
    outcomes: Mapping[str, Outcome] = field(default_factory=dict)  # terminal stage jobs, by job id
    games: Mapping[str, int] = field(default_factory=dict)  # games on record per config
    states: Mapping[str, ConfigState] = field(default_factory=dict)
    # self-play compute per config in the fair-share window, in H100-seconds
    usage: Mapping[str, float] = field(default_factory=dict)
    # observed compute of one self-play job per config, in H100-seconds
    job_seconds: Mapping[str, float] = field(default_factory=dict)
    newly_dead: frozenset[str] = frozenset()  # declared dead since the last plan
    # running jobs whose attempt the leader has seen neither a run lease nor a stored
    # result for, with the (wall) time it first saw that: their worker died
    lease_gone: Mapping[str, float] = field(default_factory=dict)
    # hosts known to hold each config's current champion (trained there, or synced to)
    champion_hosts: Mapping[str, frozenset[str]] = field(default_factory=dict)
    policy: SchedulerPolicy = field(default_factory=lambda: _default_policy())

    @property
    def configs(self) -> tuple[BoardConfig, ...]:
        return self.policy.configs

    def state(self, key: str) -> ConfigState:
        return self.states.get(key) or ConfigState()


def _default_policy() -> SchedulerPolicy:
    from ringrift_fleet.scheduler.settings import SchedulerPolicy

    return SchedulerPolicy()
