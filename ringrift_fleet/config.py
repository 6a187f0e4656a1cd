"""Configuration in one place: defaults, then environment overrides, validated once.

Every field of :class:`P2PConfig` can be overridden with ``RINGRIFT_P2P_<FIELD>``;
the aliases users know from the RingRift P2P module (``RINGRIFT_P2P_PORT`` …)
work too.  A bad value fails at start with the variable's name and what it
accepts, never later in the middle of a run.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ringrift_fleet.errors import ConfigError

ENV_PREFIX = "RINGRIFT_P2P_"

# Relative throughput of a GPU for RingRift self-play and training, H100 = 1.0.
# The seven seed values are the reference module's; the rest are placed by
# their FP16/BF16 tensor throughput and memory bandwidth relative to H100
# (rented fleets mostly train small nets, where bandwidth dominates).
GPU_POWER_RANKINGS: dict[str, float] = {
    "GH200": 1.2,  # Grace Hopper, 96 GB HBM3 (seed value)
    "H200": 1.1,  # H100 silicon with 141 GB HBM3e: faster on memory-bound work
    "H100": 1.0,  # baseline, 80 GB HBM3 (seed value)
    "A100": 0.8,  # 80 GB HBM2e (seed value)
    "L40S": 0.75,  # Ada datacenter, 48 GB; close to A100 on small nets
    "RTX_5090": 0.7,  # consumer flagship, 32 GB GDDR7 (seed value)
    "RTX_6000_ADA": 0.65,  # Ada workstation, 48 GB
    "L40": 0.6,  # Ada datacenter, 48 GB, lower clocks than L40S
    "RTX_4090": 0.5,  # previous gen consumer, 24 GB (seed value)
    "A6000": 0.45,  # Ampere workstation, 48 GB
    "A40": 0.45,  # Ampere datacenter twin of the A6000, 48 GB
    "A10": 0.4,  # entry datacenter, 24 GB (seed value)
    "RTX_3090": 0.4,  # Ampere consumer, 24 GB; about an A10
    "V100": 0.35,  # Volta, 16/32 GB, no BF16
    "L4": 0.3,  # Ada inference card, 24 GB, low power budget
    "A4000": 0.25,  # Ampere workstation, 16 GB
    "T4": 0.15,  # Turing inference card, 16 GB
    "CPU": 0.1,  # CPU-only fallback (seed value)
}

# Rank given to a GPU the normaliser does not know: conservative, so an exotic
# card is never trusted with training until someone adds it to the table.
UNKNOWN_GPU_POWER = 0.3

_STALE_DEFAULT = 1000  # P2PConfig.TRAINING_MIN_GAMES_WHEN_STALE

MEMBERSHIP_MODES = ("http", "swim", "hybrid")
CONSENSUS_MODES = ("bully", "raft", "hybrid")


def _default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "ringrift_fleet")


def _default_hosts_file() -> str:
    system = Path("/etc/ringrift/distributed_hosts.yaml")
    return str(system) if system.exists() else "distributed_hosts.yaml"


@dataclass(frozen=True)
class P2PConfig:
    """Every tunable of a fleet node.  Field names are the reference module's."""

    # --- the reference module's constants -------------------------------------
    DEFAULT_PORT: int = 8770  # :8770 status / heartbeat / artifacts server
    HEARTBEAT_INTERVAL: float = 5.0  # s between HTTP heartbeats (fallback membership)
    PEER_TIMEOUT: float = 15.0  # s unseen before an HTTP-heartbeat peer is dead
    LEADER_LEASE_DURATION: float = 30.0  # s a Bully leader's lease lasts
    LOAD_MAX_FOR_NEW_JOBS: float = 0.8  # load_score above which a host gets no new work
    DISK_CRITICAL_THRESHOLD: float = 70.0  # % disk use above which jobs are rejected
    CPU_OVERLOAD_THRESHOLD: float = 90.0  # % CPU counted as overloaded
    MEMORY_OVERLOAD_THRESHOLD: float = 90.0  # % RAM counted as overloaded
    GPU_MEMORY_OVERLOAD_THRESHOLD: float = 95.0  # % VRAM counted as overloaded

    # --- identity and files ----------------------------------------------------
    NODE_ID: str = field(default_factory=socket.gethostname)
    # address the :8770 server, SWIM and Raft bind to; "" = this host's inventory
    # address (ADVERTISE_HOST first), loopback without an inventory (resolve_bind_host)
    BIND_HOST: str = ""
    ADVERTISE_HOST: str = ""  # address peers reach us on; "" = from the inventory
    HOSTS_FILE: str = field(default_factory=_default_hosts_file)
    STATE_DIR: str = field(default_factory=_default_state_dir)
    ARTIFACT_DIR: str = ""  # "" = <STATE_DIR>/artifacts
    WORKLOADS_FILE: str = ""  # command templates; "" = the built-in reference game
    CLUSTER_KEY: str = ""  # HMAC key for SWIM, bearer token for mutating HTTP routes
    GAMES_KEEP_FILES: int = 2000  # newest games files kept per board config and host; 0 = all
    MODELS_KEEP: int = 10  # newest model files kept per config and host, besides the champion
    EVALUATIONS_KEEP: int = 50  # newest evaluation jobs' artifacts kept per config and host

    # --- broker ------------------------------------------------------------------
    BROKER_URL: str = "redis://127.0.0.1:6379/0"
    RESULT_BACKEND: str = ""  # "" = the broker URL
    # Sentinel set (docs/deploy.md): "host:port,host:port,…" replaces BROKER_URL; every
    # Redis client (Celery, fences, Flower) then follows the primary Sentinel names.
    BROKER_SENTINELS: str = ""  # "" = the single broker at BROKER_URL
    BROKER_MASTER_NAME: str = "ringrift"  # the name the Sentinels monitor the primary under
    BROKER_PASSWORD: str = ""  # Redis requirepass (either mode); "" = none or in the URL
    BROKER_SENTINEL_PASSWORD: str = ""  # the Sentinels' own requirepass; "" = none
    BROKER_WAIT_TIMEOUT: float = 0.5  # s a fence/slot write waits for one replica (WAIT 1)
    RESULT_EXPIRES: float = 7 * 24 * 3600.0  # s results stay in Redis
    MAX_REDELIVERIES: int = 3  # a job that kills its worker this often is failed
    # attempts a job may lose to its whole worker's or host's death (kill -9, a reboot,
    # a preempted host) besides those: such a death is rarely the job's doing
    MAX_LOST_ATTEMPTS: int = 5
    SELFPLAY_TIME_LIMIT: float = 2 * 3600.0  # hard limit, s
    TRAINING_TIME_LIMIT: float = 8 * 3600.0
    EVALUATION_TIME_LIMIT: float = 2 * 3600.0
    SYNC_TIME_LIMIT: float = 3600.0
    # s a sync from several hosts (a games sync) spends before it stops; the sources
    # it did not reach wait for the next sync.  Without it one slow source after
    # another held a training cycle for ten minutes on a loaded 30-host fleet.
    SYNC_SOURCES_BUDGET: float = 300.0
    SOFT_LIMIT_FRACTION: float = 0.9  # soft limit = hard limit × this
    RUN_LEASE_TTL: float = 30.0  # s a job's run key lives without a heartbeat (worker died)
    FLOWER_ADDRESS: str = "127.0.0.1"  # Flower binds here; non-loopback needs basic auth
    FLOWER_PORT: int = 5555
    FLOWER_BASIC_AUTH: str = ""  # "user:pass[,user2:pass2]"; "" = loopback only

    # --- placement -----------------------------------------------------------------
    TRAINING_MIN_VRAM_GB: float = 24.0  # a GPU needs this much VRAM to train
    TRAINING_MIN_POWER: float = 0.5  # … and at least this GPU_POWER_RANKINGS value

    # --- SWIM membership ---------------------------------------------------------
    SWIM_PORT: int = 7946
    SWIM_PING_INTERVAL: float = 0.5  # protocol period, s
    SWIM_PING_TIMEOUT: float = 0.2  # direct-ping timeout, s
    SWIM_SUSPICION_MULT: float = 1.5  # min suspicion = this × log N × period (measured)
    SWIM_INDIRECT_PROBES: int = 3

    # --- Raft / Bully consensus ----------------------------------------------------
    RAFT_PORT: int = 4321
    RAFT_PASSWORD: str = ""  # "" = derived from CLUSTER_KEY
    # Election timeout range, s.  0.8 s is eight missed heartbeats: a leader whose
    # process is starved of CPU for half a second on a busy host (seen at 0.5-0.9 s
    # with load 10 on 2 cores) keeps its leadership; a dead one is replaced in ~1-2 s.
    RAFT_MIN_TIMEOUT: float = 0.8
    RAFT_MAX_TIMEOUT: float = 1.6
    RAFT_APPEND_ENTRIES_PERIOD: float = 0.1  # leader heartbeat, s
    # When the leader's Raft connection resets (its process died: the kernel closes
    # its sockets at once), followers stand without waiting out the election timeout,
    # one after another this many seconds apart (by name); 0 = wait the timeout.
    RAFT_ELECT_ON_RESET: float = 0.2
    RAFT_TICK_PERIOD: float = (
        0.05  # pysyncobj tick thread's poll timeout, s (idle CPU vs timer slack)
    )
    BULLY_PRIORITY: int = 0  # higher wins a Bully election; ties broken by name

    # --- scheduler -----------------------------------------------------------------
    SCHEDULER_TICK: float = 1.0  # s between plans on the leader
    SCHEDULER_BOARD_CONFIGS: str = ""  # "square8_2p,hex8_3p,…"; "" = all 12 board configs
    SCHEDULER_CONFIG_WEIGHTS: str = ""  # "square19_4p=2,hex8_2p=0.5"; unlisted configs weigh 1
    SCHEDULER_FAIRSHARE_WINDOW: float = 3600.0  # s of self-play history fair share looks at
    SCHEDULER_PREFETCH: float = 0.25  # queued self-play beyond free slots, × tier capacity
    # ... and at least this many seconds of self-play queued per slot (by the measured
    # run time of a job), for fleets of jobs shorter than the leader's round trip;
    # 0 (the default) = the prefetch alone: deep queues cost the leader a read per
    # queued job and strand more work behind a dead worker (docs/benchmarks.md)
    SCHEDULER_QUEUE_AHEAD: float = 0.0
    SCHEDULER_REAP_GRACE: float = 60.0  # s past a job's hard limit before it is reaped
    SCHEDULER_LEDGER_RETENTION: float = 86400.0  # s a finished job stays in the ledger
    SCHEDULER_LEDGER_MAX_FINISHED: int = 20000  # … and at most this many finished jobs
    QUEUE_CHECK_INTERVAL: float = 30.0  # s between looks for queues nobody consumes
    SELFPLAY_GAMES_PER_JOB: int = 16  # games per self-play job on the smallest board
    EVAL_GAMES: int = 40  # games a candidate plays against the champion
    EVAL_PROMOTION_MARGIN: float = 0.05  # candidate promoted when its win rate >= 0.5 + this
    # when a config trains (training.TrainingThresholds; the demo profile has its own)
    TRAINING_MIN_GAMES: int = 5000  # new games since the last run that start a run
    TRAINING_STALENESS_HOURS: float = 24.0  # after this long a config trains with fewer …
    # … but at least this many new games (unset: 1000, or TRAINING_MIN_GAMES if lower)
    TRAINING_MIN_GAMES_WHEN_STALE: int = _STALE_DEFAULT
    TRAINING_MIN_HOURS_BETWEEN_RUNS: float = 2.0  # never two runs of a config closer; 0 = off

    # --- the process -----------------------------------------------------------------
    MALLOC_TRIM_INTERVAL: float = 60.0  # s between glibc malloc_trim calls (malloc.py); 0 = off
    # a stall this long (no Python code ran) is logged with every thread's stack; 0 = off
    COORDINATOR_STALL_S: float = 2.0

    @property
    def artifact_dir(self) -> Path:
        return Path(self.ARTIFACT_DIR) if self.ARTIFACT_DIR else Path(self.STATE_DIR) / "artifacts"

    @property
    def state_dir(self) -> Path:
        return Path(self.STATE_DIR)

    @property
    def result_backend(self) -> str:
        return self.RESULT_BACKEND or self.BROKER_URL

    @property
    def raft_password(self) -> str:
        return self.RAFT_PASSWORD or ("raft:" + self.CLUSTER_KEY)

    def time_limit(self, job_type: str) -> float:
        """Hard time limit in seconds for a job type name (selfplay, training, …)."""
        return float(getattr(self, f"{job_type.upper()}_TIME_LIMIT"))

    @property
    def longest_time_limit(self) -> float:
        return max(self.time_limit(t) for t in ("selfplay", "training", "evaluation", "sync"))

    def replace(self, **changes: Any) -> P2PConfig:
        """A validated copy with some fields changed (tests, CLI flags)."""
        if (
            "TRAINING_MIN_GAMES" in changes
            and "TRAINING_MIN_GAMES_WHEN_STALE" not in changes
            and _stale_floor(self.TRAINING_MIN_GAMES) == self.TRAINING_MIN_GAMES_WHEN_STALE
        ):  # still derived from TRAINING_MIN_GAMES: follow it
            changes["TRAINING_MIN_GAMES_WHEN_STALE"] = _stale_floor(changes["TRAINING_MIN_GAMES"])
        new = dataclasses.replace(self, **changes)
        _validate(new, {name: f"P2PConfig.{name}" for name in changes})
        return new


def _stale_floor(min_games: Any) -> Any:
    """TRAINING_MIN_GAMES_WHEN_STALE when only TRAINING_MIN_GAMES was set: its default,
    or MIN_GAMES when that is lower (lowering one knob must not need the other)."""
    if isinstance(min_games, int) and not isinstance(min_games, bool):
        return min(_STALE_DEFAULT, min_games)
    return _STALE_DEFAULT


# Documented aliases: variable name → field.  RINGRIFT_BROKER_URL and
# RINGRIFT_RESULT_BACKEND are the execution layer's names for the broker.
ENV_ALIASES: dict[str, str] = {
    "RINGRIFT_P2P_PORT": "DEFAULT_PORT",
    "RINGRIFT_P2P_HEARTBEAT_INTERVAL": "HEARTBEAT_INTERVAL",
    "RINGRIFT_P2P_LEADER_LEASE": "LEADER_LEASE_DURATION",
    "RINGRIFT_BROKER_URL": "BROKER_URL",
    "RINGRIFT_RESULT_BACKEND": "RESULT_BACKEND",
    "RINGRIFT_BROKER_SENTINELS": "BROKER_SENTINELS",
    "RINGRIFT_BROKER_MASTER_NAME": "BROKER_MASTER_NAME",
    "RINGRIFT_BROKER_PASSWORD": "BROKER_PASSWORD",
    "RINGRIFT_BROKER_SENTINEL_PASSWORD": "BROKER_SENTINEL_PASSWORD",
    "RINGRIFT_CLUSTER_KEY": "CLUSTER_KEY",
}

_PORT_FIELDS = {"DEFAULT_PORT", "SWIM_PORT", "RAFT_PORT", "FLOWER_PORT"}
_PERCENT_FIELDS = {
    "DISK_CRITICAL_THRESHOLD",
    "CPU_OVERLOAD_THRESHOLD",
    "MEMORY_OVERLOAD_THRESHOLD",
    "GPU_MEMORY_OVERLOAD_THRESHOLD",
}
_FRACTION_FIELDS = {"LOAD_MAX_FOR_NEW_JOBS", "SOFT_LIMIT_FRACTION"}
_NONNEG_FIELDS = {
    "TRAINING_MIN_VRAM_GB",
    "TRAINING_MIN_POWER",
    "TRAINING_MIN_HOURS_BETWEEN_RUNS",
    "MALLOC_TRIM_INTERVAL",
    "SCHEDULER_QUEUE_AHEAD",
    "RAFT_ELECT_ON_RESET",
}
_ANY_INT_FIELDS = {"BULLY_PRIORITY"}
# Training reads the newest 1,000 games, at least one per file: keeping fewer
# files than that could starve it, so the floor is that (0 turns retention off).
GAMES_KEEP_MIN = 1000
# The stall watch wakes every quarter of COORDINATOR_STALL_S: below this it would
# report the ordinary scheduling jitter of a loaded host as stalls.
STALL_MIN_S = 0.5
_URL_FIELDS = {"BROKER_URL"}


def _accepts(name: str, kind: type) -> str:
    if name in _PORT_FIELDS:
        return "an integer port 1-65535"
    if name in _PERCENT_FIELDS:
        return "a percentage 0-100"
    if name in _FRACTION_FIELDS:
        return "a number in (0, 1]"
    if name in _NONNEG_FIELDS:
        return "a number of hours >= 0" if name.endswith("_HOURS_BETWEEN_RUNS") else "a number >= 0"
    if name.endswith("_HOURS"):
        return "a positive number of hours"
    if name in _ANY_INT_FIELDS:
        return "an integer"
    if name == "GAMES_KEEP_FILES":
        return f"0 (keep every games file) or an integer >= {GAMES_KEEP_MIN}"
    if name == "COORDINATOR_STALL_S":
        return f"0 (no stall watch) or a number of seconds >= {STALL_MIN_S}"
    if name in _URL_FIELDS:
        return "a redis:// or rediss:// URL"
    if kind is int:
        return "a positive integer"
    if kind is float:
        return "a positive number of seconds" if _is_duration(name) else "a positive number"
    return "a string"


def _is_duration(name: str) -> bool:
    return any(
        w in name
        for w in ("INTERVAL", "TIMEOUT", "LEASE", "LIMIT", "TICK", "PERIOD", "EXPIRES", "BUDGET")
    )


def _field_types() -> dict[str, type]:
    kinds: dict[str, type] = {}
    for f in dataclasses.fields(P2PConfig):
        annotation = str(f.type)
        kinds[f.name] = int if annotation == "int" else float if annotation == "float" else str
    return kinds


def _parse(name: str, var: str, raw: str, kind: type) -> Any:
    text = raw.strip()
    try:
        if kind is int:
            return int(text)
        if kind is float:
            value = float(text)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(text)
            return value
    except ValueError:
        raise ConfigError(f"{var}={raw!r}: expected {_accepts(name, kind)}") from None
    return text


def _validate(cfg: P2PConfig, origin: Mapping[str, str]) -> None:
    """Check every field; ``origin`` maps a field to the variable it came from."""
    kinds = _field_types()

    def where(name: str) -> str:
        return origin.get(name, f"P2PConfig.{name} (default)")

    def fail(name: str) -> None:
        value = getattr(cfg, name)
        raise ConfigError(f"{where(name)}={value!r}: expected {_accepts(name, kinds[name])}")

    for name, kind in kinds.items():
        value = getattr(cfg, name)
        if name in _PORT_FIELDS:
            if not (isinstance(value, int) and 1 <= value <= 65535):
                fail(name)
        elif name in _PERCENT_FIELDS:
            if not 0 <= value <= 100:
                fail(name)
        elif name in _FRACTION_FIELDS:
            if not 0 < value <= 1:
                fail(name)
        elif name in _NONNEG_FIELDS:
            if value < 0:
                fail(name)
        elif name in _URL_FIELDS:
            if not str(value).startswith(("redis://", "rediss://", "unix://")):
                fail(name)
        elif name == "GAMES_KEEP_FILES":
            if not (value == 0 or value >= GAMES_KEEP_MIN):
                fail(name)
        elif name == "COORDINATOR_STALL_S":
            if not (value == 0 or value >= STALL_MIN_S):
                fail(name)
        elif kind in (int, float) and name not in _ANY_INT_FIELDS and not value > 0:
            fail(name)
    if not cfg.NODE_ID.strip():
        raise ConfigError(f"{where('NODE_ID')}: the node id must not be empty")
    _validate_broker(cfg, where, origin)
    if cfg.PEER_TIMEOUT <= cfg.HEARTBEAT_INTERVAL:
        raise ConfigError(
            f"{where('PEER_TIMEOUT')}={cfg.PEER_TIMEOUT!r}: must be above HEARTBEAT_INTERVAL "
            f"({cfg.HEARTBEAT_INTERVAL!r}, from {where('HEARTBEAT_INTERVAL')}), or every peer "
            "would be declared dead between two heartbeats; set RINGRIFT_P2P_PEER_TIMEOUT too "
            f"(three heartbeats: {_at_least_3x(cfg.HEARTBEAT_INTERVAL)}). The older 15/60/90 s set: "
            + SEED_000_TIMINGS
        )
    if cfg.TRAINING_MIN_GAMES_WHEN_STALE > cfg.TRAINING_MIN_GAMES:
        raise ConfigError(
            f"{where('TRAINING_MIN_GAMES_WHEN_STALE')}={cfg.TRAINING_MIN_GAMES_WHEN_STALE!r}: "
            f"must not exceed TRAINING_MIN_GAMES ({cfg.TRAINING_MIN_GAMES!r}, from "
            f"{where('TRAINING_MIN_GAMES')}): a stale config trains with fewer new games, not more"
        )
    if cfg.SWIM_PING_TIMEOUT >= cfg.SWIM_PING_INTERVAL:
        raise ConfigError(
            f"{where('SWIM_PING_TIMEOUT')}={cfg.SWIM_PING_TIMEOUT!r}: must be below "
            f"SWIM_PING_INTERVAL ({cfg.SWIM_PING_INTERVAL!r})"
        )
    if cfg.RAFT_MIN_TIMEOUT >= cfg.RAFT_MAX_TIMEOUT:
        raise ConfigError(
            f"{where('RAFT_MIN_TIMEOUT')}={cfg.RAFT_MIN_TIMEOUT!r}: must be below "
            f"RAFT_MAX_TIMEOUT ({cfg.RAFT_MAX_TIMEOUT!r})"
        )
    if cfg.RAFT_APPEND_ENTRIES_PERIOD >= cfg.RAFT_MIN_TIMEOUT:
        raise ConfigError(
            f"{where('RAFT_APPEND_ENTRIES_PERIOD')}={cfg.RAFT_APPEND_ENTRIES_PERIOD!r}: must be "
            f"below RAFT_MIN_TIMEOUT ({cfg.RAFT_MIN_TIMEOUT!r})"
        )


SENTINEL_DEFAULT_PORT = 26379
_MASTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def parse_sentinels(raw: str, var: str = "RINGRIFT_BROKER_SENTINELS") -> list[tuple[str, int]]:
    """``"h1:26379,h2,[::1]:26380"`` → ``[("h1", 26379), ("h2", 26379), ("::1", 26380)]``;
    a ConfigError naming ``var`` and the bad entry otherwise ("" → [])."""
    out: list[tuple[str, int]] = []
    for i, entry in enumerate(e.strip() for e in raw.split(",")):
        if not entry:
            if raw.strip():
                raise ConfigError(f"{var}={raw!r}: entry {i + 1} is empty")
            continue
        host, port = entry, str(SENTINEL_DEFAULT_PORT)
        if entry.startswith("["):
            host, sep, rest = entry[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ConfigError(f"{var}={raw!r}: entry {entry!r} is not [ipv6]:port")
            port = rest[1:] or port
        elif entry.count(":") == 1:
            host, port = entry.split(":")
        if not host or any(c in host for c in "/@; "):
            raise ConfigError(f"{var}={raw!r}: entry {entry!r} is not host:port")
        if not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ConfigError(f"{var}={raw!r}: entry {entry!r}: port must be 1-65535")
        if (host, int(port)) in out:
            raise ConfigError(f"{var}={raw!r}: {host}:{port} is listed twice")
        out.append((host, int(port)))
    return out


def _validate_broker(
    cfg: P2PConfig, where: Callable[[str], str], origin: Mapping[str, str]
) -> None:
    if not cfg.BROKER_SENTINELS.strip():
        return
    parse_sentinels(cfg.BROKER_SENTINELS, where("BROKER_SENTINELS"))
    if not _MASTER_NAME.fullmatch(cfg.BROKER_MASTER_NAME):
        raise ConfigError(
            f"{where('BROKER_MASTER_NAME')}={cfg.BROKER_MASTER_NAME!r}: expected a Sentinel "
            "master name (letters, digits, '.', '_', '-')"
        )
    if "BROKER_URL" in origin:
        raise ConfigError(
            f"{origin['BROKER_URL']} and {where('BROKER_SENTINELS')} both name the broker: "
            "set only one (the Sentinel set finds the primary itself)"
        )


# The slower timings of the P2P adapter README (seed 000); docs/configuration.md says
# why 5/15/30 s (seed 001) are the defaults and when to choose these instead.
SEED_000_TIMINGS = (
    "RINGRIFT_P2P_HEARTBEAT_INTERVAL=15 RINGRIFT_P2P_PEER_TIMEOUT=60 "
    "RINGRIFT_P2P_LEADER_LEASE_DURATION=90 (docs/configuration.md)"
)


def _at_least_3x(interval: float) -> str:
    return f"RINGRIFT_P2P_PEER_TIMEOUT={interval * 3:g}"


def load_config(env: Mapping[str, str] | None = None) -> P2PConfig:
    """Build a validated config from defaults and ``env`` (default: ``os.environ``)."""
    env = os.environ if env is None else env
    kinds = _field_types()
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for alias, name in ENV_ALIASES.items():
        if alias in env:
            values[name] = _parse(name, alias, env[alias], kinds[name])
            origin[name] = alias
    for name, kind in kinds.items():
        var = ENV_PREFIX + name
        if var not in env:
            continue
        value = _parse(name, var, env[var], kind)
        if name in values and values[name] != value:
            raise ConfigError(
                f"{var}={env[var]!r} contradicts {origin[name]}={env[origin[name]]!r}: set only one"
            )
        values[name] = value
        origin[name] = var
    if "TRAINING_MIN_GAMES" in values and "TRAINING_MIN_GAMES_WHEN_STALE" not in values:
        values["TRAINING_MIN_GAMES_WHEN_STALE"] = _stale_floor(values["TRAINING_MIN_GAMES"])
    cfg = P2PConfig(**values)
    _validate(cfg, origin)
    return cfg


def set_by_user(cfg: P2PConfig, name: str, env: Mapping[str, str] | None = None) -> str | None:
    """Where the user chose field ``name``: its variable (or alias) when the environment
    sets it, ``P2PConfig.<name>`` when code set a non-default value, None when it is
    the default (a profile such as the demo may then pick its own)."""
    env = os.environ if env is None else env
    for var in (ENV_PREFIX + name, *(a for a, f in ENV_ALIASES.items() if f == name)):
        if var in env:
            return var
    default = next(f for f in dataclasses.fields(P2PConfig) if f.name == name).default
    if name == "TRAINING_MIN_GAMES_WHEN_STALE":  # derived from TRAINING_MIN_GAMES when unset
        default = _stale_floor(cfg.TRAINING_MIN_GAMES)
    if default is not dataclasses.MISSING and getattr(cfg, name) != default:
        return f"P2PConfig.{name}"
    return None


@functools.lru_cache(maxsize=1)
def get_p2p_config() -> P2PConfig:
    """The process-wide config, read from the environment once."""
    return load_config()


def reload_p2p_config() -> P2PConfig:
    """Forget the cached config and read the environment again (tests, SIGHUP)."""
    get_p2p_config.cache_clear()
    return get_p2p_config()


# --- feature flags -----------------------------------------------------------------


@dataclass(frozen=True)
class FeatureFlags:
    """Which protocols run.  ``*_ENABLED=false`` always wins: it is the instant rollback."""

    swim_enabled: bool = False
    membership_mode: str = "http"
    raft_enabled: bool = False
    consensus_mode: str = "bully"

    @property
    def effective_membership_mode(self) -> str:
        return self.membership_mode if self.swim_enabled else "http"

    @property
    def effective_consensus_mode(self) -> str:
        return self.consensus_mode if self.raft_enabled else "bully"

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.membership_mode != "http" and not self.swim_enabled:
            out.append(
                f"RINGRIFT_MEMBERSHIP_MODE={self.membership_mode} needs SWIM, but "
                "RINGRIFT_SWIM_ENABLED is false: using HTTP heartbeats (rollback)"
            )
        if self.consensus_mode != "bully" and not self.raft_enabled:
            out.append(
                f"RINGRIFT_CONSENSUS_MODE={self.consensus_mode} needs Raft, but "
                "RINGRIFT_RAFT_ENABLED is false: using Bully election (rollback)"
            )
        return out


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse_bool(var: str, raw: str) -> bool:
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{var}={raw!r}: expected true or false")


def _parse_choice(var: str, raw: str, choices: tuple[str, ...]) -> str:
    text = raw.strip().lower()
    if text not in choices:
        raise ConfigError(f"{var}={raw!r}: expected one of {', '.join(choices)}")
    return text


def load_feature_flags(env: Mapping[str, str] | None = None) -> FeatureFlags:
    env = os.environ if env is None else env
    return FeatureFlags(
        swim_enabled=_parse_bool(
            "RINGRIFT_SWIM_ENABLED", env.get("RINGRIFT_SWIM_ENABLED", "false")
        ),
        membership_mode=_parse_choice(
            "RINGRIFT_MEMBERSHIP_MODE",
            env.get("RINGRIFT_MEMBERSHIP_MODE", "http"),
            MEMBERSHIP_MODES,
        ),
        raft_enabled=_parse_bool(
            "RINGRIFT_RAFT_ENABLED", env.get("RINGRIFT_RAFT_ENABLED", "false")
        ),
        consensus_mode=_parse_choice(
            "RINGRIFT_CONSENSUS_MODE", env.get("RINGRIFT_CONSENSUS_MODE", "bully"), CONSENSUS_MODES
        ),
    )


@functools.lru_cache(maxsize=1)
def get_feature_flags() -> FeatureFlags:
    return load_feature_flags()


def reload_feature_flags() -> FeatureFlags:
    get_feature_flags.cache_clear()
    return get_feature_flags()


# --- every RINGRIFT_* variable the fleet reads, for the misspelling warning ------------------

# Variables read outside P2PConfig and the feature flags (worker env set by
# ``ringrift-fleet worker``, webhooks, test-only knobs, deploy scripts).
# tests/unit/test_config_env.py greps the package for RINGRIFT_* names and fails
# when one is missing here, so a new variable cannot be warned about as a typo.
OTHER_ENV_VARS = frozenset(
    {
        "RINGRIFT_SWIM_ENABLED",
        "RINGRIFT_MEMBERSHIP_MODE",
        "RINGRIFT_RAFT_ENABLED",
        "RINGRIFT_CONSENSUS_MODE",
        "RINGRIFT_SWIM_INJECT_LOSS",
        "RINGRIFT_SWIM_INJECT_LOSS_IN",
        "RINGRIFT_WORKER_NODE",
        "RINGRIFT_WORKER_GPUS",
        "RINGRIFT_WORKER_TIER",
        "RINGRIFT_SLACK_WEBHOOK_URL",
        "RINGRIFT_DISCORD_WEBHOOK_URL",
        "RINGRIFT_WEBHOOK_URL",
        "RINGRIFT_WEBHOOK_EVENTS",
        "RINGRIFT_WEBHOOK_MIN_SEVERITY",
        "RINGRIFT_WHEELHOUSE_PYTHON",
        "RINGRIFT_TESTBED_PREFIX",
        "RINGRIFT_TESTBED_CACHE",
        "RINGRIFT_TESTBED_BOOT_TIMEOUT",
    }
)


def known_env_vars() -> frozenset[str]:
    """Every RINGRIFT_* variable something in the fleet reads."""
    fields = {ENV_PREFIX + f.name for f in dataclasses.fields(P2PConfig)}
    return frozenset(fields | set(ENV_ALIASES) | OTHER_ENV_VARS)


def unknown_env_warnings(env: Mapping[str, str] | None = None) -> list[str]:
    """One line per RINGRIFT_* variable nothing reads, naming the closest known one."""
    import difflib

    env = os.environ if env is None else env
    known = known_env_vars()
    out = []
    for var in sorted(v for v in env if v.startswith("RINGRIFT_") and v not in known):
        close = difflib.get_close_matches(var, sorted(known), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        out.append(f"{var} is not a variable ringrift_fleet reads: ignored{hint}")
    return out


# --- where the inventory comes from, and directories that must be usable -----------------

HOSTS_FILE_VAR = ENV_PREFIX + "HOSTS_FILE"


def resolve_hosts_file(
    flag: str | None,
    *,
    standalone: bool = False,
    env: Mapping[str, str] | None = None,
    defaults: tuple[str, ...] = ("/etc/ringrift/distributed_hosts.yaml", "distributed_hosts.yaml"),
) -> str | None:
    """The inventory a coordinator must read, or None for an explicit fleet of one.

    ``--hosts-file`` wins, then ``RINGRIFT_P2P_HOSTS_FILE`` (an empty value
    means "no inventory"), then the first default that exists.  A path that
    was asked for but cannot be read, or no inventory without ``--standalone``
    or the empty variable, is a ConfigError naming the input: with Ansible
    setting the variable on every host, a typo must not start N leaders.
    """
    env = os.environ if env is None else env
    var = env.get(HOSTS_FILE_VAR)
    if standalone:
        if flag:
            raise ConfigError(f"--standalone and --hosts-file {flag}: choose one")
        return None
    if flag:
        _check_readable(flag, f"--hosts-file {flag}")
        return flag
    if var is not None:
        if not var.strip():
            return None  # explicitly no inventory
        _check_readable(var, f"{HOSTS_FILE_VAR}={var}")
        return var
    for path in defaults:
        if os.path.exists(path):
            _check_readable(path, f"{path} (the default inventory)")
            return path
    raise ConfigError(
        f"no inventory: {HOSTS_FILE_VAR} is not set and {' and '.join(defaults)} do not exist; "
        "pass --hosts-file, or --standalone (or an empty "
        f"{HOSTS_FILE_VAR}=) to run a fleet of one on purpose"
    )


def _check_readable(path: str, named: str) -> None:
    if not os.path.exists(path):
        raise ConfigError(f"{named}: no such file")
    if os.path.isdir(path):
        raise ConfigError(f"{named}: is a directory, expected distributed_hosts.yaml")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{named}: cannot read: {exc.strerror or exc}") from None


def ensure_writable_dir(path: str | os.PathLike[str], named: str) -> Path:
    """Create ``path`` (and parents) and check we can write in it, or a ConfigError."""
    import tempfile

    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        if not p.is_dir():
            raise NotADirectoryError(20, "not a directory")
        with tempfile.NamedTemporaryFile(dir=p, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{named}: cannot use {p} as a directory: {exc.strerror or exc}"
        ) from None
    return p


def check_state_dirs(cfg: P2PConfig, env: Mapping[str, str] | None = None) -> None:
    """STATE_DIR and ARTIFACT_DIR exist (created) and are writable, or one line naming them."""
    env = os.environ if env is None else env
    state_var = ENV_PREFIX + "STATE_DIR"
    state_named = f"{state_var}={cfg.STATE_DIR}" if state_var in env else f"{state_var} (unset)"
    ensure_writable_dir(cfg.state_dir, state_named)
    art_var = ENV_PREFIX + "ARTIFACT_DIR"
    if cfg.ARTIFACT_DIR:
        art_named = f"{art_var}={cfg.ARTIFACT_DIR}" if art_var in env else "ARTIFACT_DIR"
    else:
        art_named = f"{art_var} (unset: {state_named}/artifacts)"
    ensure_writable_dir(cfg.artifact_dir, art_named)


def resolve_bind_host(cfg: P2PConfig, inventory_address: str | None) -> str:
    """Where the :8770 server, SWIM and Raft listen when BIND_HOST is "" (the default).

    This host's private address from the inventory (what peers reach), else
    ADVERTISE_HOST, else loopback: never every interface unless asked for
    with ``RINGRIFT_P2P_BIND_HOST=0.0.0.0``.
    """
    if cfg.BIND_HOST:
        return cfg.BIND_HOST
    return cfg.ADVERTISE_HOST or inventory_address or "127.0.0.1"
