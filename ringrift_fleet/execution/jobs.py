"""Task arguments: checked before any work, so a bad job fails at once and names its field.

Every task takes keyword arguments only.  Common to all:

* ``job_id: str`` — the job's identity for run keys and artifact names; an ad-hoc
  ``celery call`` without one uses the Celery task id.
* ``fence: {"token": str, "attempt": int, "term": int}`` — optional, set by the
  scheduler; see :mod:`ringrift_fleet.execution.fencing`.
* ``seed: int`` — optional; derived from ``job_id`` when absent, so a rerun of the
  same job produces the same games.

Per type (``*`` = required):

* ``ringrift.selfplay``: ``board_type*``, ``num_players*``, ``num_games*`` (1–100000),
  ``engine_mode`` (``auto`` | ``random`` | ``model``; ``auto`` plays the model when one
  is given), ``model`` (artifact name), ``temperature`` (> 0, default 1.0).
* ``ringrift.training``: ``board_type*``, ``num_players*``, ``games`` (artifact names;
  default every local games file of the config), ``version`` (int ≥ 1; default next
  local), ``l2`` (ridge strength, default 0.01), ``min_games`` (default 1).
* ``ringrift.evaluation``: ``candidate*``, ``champion*`` (artifact names, or
  ``"random"`` for the untrained player), ``board_type*``, ``num_players*``,
  ``games*`` (1–10000), ``temperature`` (default 0.25), ``model_sources`` (1 to
  ``MAX_SOURCES`` ``http://host:port`` URLs: where to fetch the candidate or champion
  from when this host lacks it; the scheduler adds them, see ``fetch_missing_models``
  in :mod:`ringrift_fleet.execution.workloads.evaluation`).
* ``ringrift.sync``: ``artifacts`` (non-empty list of names) or ``prefix`` (every
  artifact the source holds under it, e.g. ``games/hex8_2p/``; exactly one of the
  two), ``source*`` (``http://host:port`` of a host serving ``/artifacts``; with
  ``prefix`` also a list of them, each adding what the earlier ones lacked).
* ``ringrift.noop``: nothing else.

Unknown fields are rejected too: a typo (``boardtype``) must not silently run a default.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from ringrift_fleet.errors import ValidationError
from ringrift_fleet.execution.boards import check_board
from ringrift_fleet.models import as_float, as_int, as_str

TASK_NAMES: dict[str, str] = {
    "selfplay": "ringrift.selfplay",
    "training": "ringrift.training",
    "evaluation": "ringrift.evaluation",
    "sync": "ringrift.sync",
    "noop": "ringrift.noop",
}
ENGINE_MODES = ("auto", "random", "model")
RANDOM_CHAMPION = "random"

_COMMON = {"job_id", "fence", "seed"}
_FIELDS: dict[str, dict[str, bool]] = {  # field -> required
    "selfplay": {
        "board_type": True,
        "num_players": True,
        "num_games": True,
        "engine_mode": False,
        "model": False,
        "temperature": False,
    },
    "training": {
        "board_type": True,
        "num_players": True,
        "games": False,
        "version": False,
        "l2": False,
        "min_games": False,
    },
    "evaluation": {
        "candidate": True,
        "champion": True,
        "board_type": True,
        "num_players": True,
        "games": True,
        "temperature": False,
        "model_sources": False,
    },
    "sync": {"artifacts": False, "prefix": False, "source": True},
    "noop": {},
}


@dataclass(frozen=True)
class Fence:
    """The fence a scheduled attempt carries; ``token`` must match the published one."""

    token: str
    attempt: int = 1
    term: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, "attempt": self.attempt, "term": self.term}


@dataclass(frozen=True)
class JobSpec:
    """A validated job: its type, identity, fence, seed and type-specific fields."""

    job_type: str
    job_id: str
    fence: Fence | None
    seed: int
    fields: Mapping[str, Any]

    @property
    def attempt(self) -> int:
        return self.fence.attempt if self.fence else 1

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


def fields_of(job_type: str) -> tuple[str, ...]:
    """The fields a job type accepts (command templates may refer to these)."""
    return (*sorted(_COMMON), *_FIELDS[job_type])


def seed_from(job_id: str) -> int:
    """A stable 32-bit seed from a job id."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:4], "big")


def parse_fence(value: Any, ctx: str) -> Fence | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError(f"{ctx}.fence: expected an object with token, attempt, term")
    unknown = set(value) - {"token", "attempt", "term"}
    if unknown:
        raise ValidationError(f"{ctx}.fence: unknown field {sorted(unknown)[0]!r}")
    if "token" not in value:
        raise ValidationError(f"{ctx}.fence.token: missing required field")
    return Fence(
        token=as_str(value["token"], "fence.token", ctx),
        attempt=as_int(value.get("attempt", 1), "fence.attempt", ctx, lo=1),
        term=as_int(value.get("term", 0), "fence.term", ctx, lo=0),
    )


def _artifact_name(value: Any, name: str, ctx: str) -> str:
    text = as_str(value, name, ctx)
    parts = text.split("/")
    if text.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValidationError(f"{ctx}.{name}: {text!r} is not a relative artifact name")
    return text


def _model_ref(value: Any, name: str, ctx: str) -> str:
    if value == RANDOM_CHAMPION:
        return RANDOM_CHAMPION
    return _artifact_name(value, name, ctx)


def validate_job(job_type: str, kwargs: Mapping[str, Any], *, default_job_id: str = "") -> JobSpec:
    """Check a task's keyword arguments; raise ValidationError naming the first bad field."""
    ctx = TASK_NAMES.get(job_type)
    if ctx is None:
        raise ValidationError(f"job_type: {job_type!r} is not one of {', '.join(TASK_NAMES)}")
    if not isinstance(kwargs, Mapping):
        raise ValidationError(f"{ctx}: expected keyword arguments")
    spec = _FIELDS[job_type]
    unknown = sorted(set(kwargs) - set(spec) - _COMMON)
    if unknown:
        raise ValidationError(
            f"{ctx}.{unknown[0]}: unknown field (accepted: {', '.join(fields_of(job_type))})"
        )
    for name, required in spec.items():
        if required and name not in kwargs:
            raise ValidationError(f"{ctx}.{name}: missing required field")
    job_id = kwargs.get("job_id", default_job_id)
    job_id = as_str(job_id, "job_id", ctx)
    if len(job_id) > 200 or any(c in job_id for c in "/\\\0") or job_id.startswith("."):
        raise ValidationError(f"{ctx}.job_id: {job_id!r} must be a plain name (no '/')")
    fence = parse_fence(kwargs.get("fence"), ctx)
    seed = kwargs.get("seed")
    seed = seed_from(job_id) if seed is None else as_int(seed, "seed", ctx, lo=0, hi=2**63 - 1)
    out: dict[str, Any] = {}
    if "board_type" in spec:
        out["board_type"], out["num_players"] = check_board(
            kwargs["board_type"], kwargs["num_players"], ctx
        )
    if job_type == "selfplay":
        out["num_games"] = as_int(kwargs["num_games"], "num_games", ctx, lo=1, hi=100_000)
        mode = kwargs.get("engine_mode", "auto")
        if mode not in ENGINE_MODES:
            raise ValidationError(
                f"{ctx}.engine_mode: {mode!r} is not one of {', '.join(ENGINE_MODES)}"
            )
        model = kwargs.get("model")
        out["model"] = None if model is None else _model_ref(model, "model", ctx)
        if mode == "model" and out["model"] in (None, RANDOM_CHAMPION):
            raise ValidationError(f"{ctx}.model: engine_mode 'model' needs a model artifact")
        out["engine_mode"] = mode
        out["temperature"] = as_float(
            kwargs.get("temperature", 1.0), "temperature", ctx, lo=1e-3, hi=100.0
        )
    elif job_type == "training":
        games = kwargs.get("games")
        if games is not None:
            if not isinstance(games, list):
                raise ValidationError(f"{ctx}.games: expected a list of artifact names")
            games = [_artifact_name(g, f"games[{i}]", ctx) for i, g in enumerate(games)]
        out["games"] = games
        version = kwargs.get("version")
        out["version"] = None if version is None else as_int(version, "version", ctx, lo=1)
        out["l2"] = as_float(kwargs.get("l2", 0.01), "l2", ctx, lo=0.0, hi=1e6)
        out["min_games"] = as_int(kwargs.get("min_games", 1), "min_games", ctx, lo=1)
    elif job_type == "evaluation":
        out["candidate"] = _model_ref(kwargs["candidate"], "candidate", ctx)
        out["champion"] = _model_ref(kwargs["champion"], "champion", ctx)
        out["games"] = as_int(kwargs["games"], "games", ctx, lo=1, hi=10_000)
        out["temperature"] = as_float(
            kwargs.get("temperature", 0.25), "temperature", ctx, lo=0.0, hi=100.0
        )
        raw = kwargs.get("model_sources")
        if raw is not None:
            if not isinstance(raw, list) or not 0 < len(raw) <= MAX_SOURCES:
                raise ValidationError(f"{ctx}.model_sources: expected 1 to {MAX_SOURCES} URLs")
            raw = [_source_url(u, f"model_sources[{i}]", ctx) for i, u in enumerate(raw)]
        out["model_sources"] = raw
    elif job_type == "sync":
        names, prefix = kwargs.get("artifacts"), kwargs.get("prefix")
        if (names is None) == (prefix is None):
            raise ValidationError(f"{ctx}.artifacts: give either artifacts (a list) or prefix")
        if names is not None:
            if not isinstance(names, list) or not names:
                raise ValidationError(
                    f"{ctx}.artifacts: expected a non-empty list of artifact names"
                )
            names = [_artifact_name(n, f"artifacts[{i}]", ctx) for i, n in enumerate(names)]
        else:
            text = as_str(prefix, "prefix", ctx)
            if not text.endswith("/"):
                raise ValidationError(f"{ctx}.prefix: {text!r} must end with '/' (a folder)")
            prefix = _artifact_name(text[:-1], "prefix", ctx) + "/"
        out["artifacts"] = names
        out["prefix"] = prefix
        raw = kwargs["source"]
        if isinstance(raw, list):
            if prefix is None:
                raise ValidationError(
                    f"{ctx}.source: a list of sources needs prefix, not artifacts"
                )
            if not 0 < len(raw) <= MAX_SOURCES:
                raise ValidationError(f"{ctx}.source: expected 1 to {MAX_SOURCES} URLs")
            out["source"] = [_source_url(u, f"source[{i}]", ctx) for i, u in enumerate(raw)]
        else:
            out["source"] = _source_url(raw, "source", ctx)
    return JobSpec(job_type, job_id, fence, seed, out)


MAX_SOURCES = 64


def _source_url(value: Any, name: str, ctx: str) -> str:
    source = as_str(value, name, ctx)
    url = urlparse(source)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValidationError(f"{ctx}.{name}: {source!r} is not an http(s)://host:port URL")
    return source.rstrip("/")
