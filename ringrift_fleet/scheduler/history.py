# mypy: disallow-any-explicit
"""What finished jobs leave behind once the ledger forgets them.

The ledger keeps a job only until ``ledger_retention_s`` after it finished;
then the leader folds it into one small record per board config and prunes it
in the same ledger operation.  A coordinator that runs for weeks thus holds
the live jobs plus one record per config, not every job it ever ran.

What the planner still needs from forgotten jobs, and so what a record keeps:
games played (the training trigger counts them), which hosts hold games files
of the config (a games sync needs a source), which hosts hold each recent
model (a champion is distributed from them), and the highest self-play
sequence number (ids are never reused).  Everything here is pure.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from ringrift_fleet.models import JobStatus, JobType, WorkItem

SUMMARY_KIND = "scheduler.history"
MAX_MODELS = 16  # recent models per config whose hosts are remembered
NO_CONFIG = "-"  # record key for jobs that name no board config
_SEQ = re.compile(r"^selfplay:(?P<key>[^:]+):(?P<seq>\d+)$")


def config_of(w: WorkItem) -> str:
    return str(w.payload.get("config") or NO_CONFIG)


def selfplay_seq(work_id: str) -> tuple[str, int] | None:
    """``selfplay:<config>:<n>`` → (config, n)."""
    m = _SEQ.match(work_id)
    return (m["key"], int(m["seq"])) if m else None


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


@dataclass
class History:
    """One config's finished jobs, summarised.  ``add`` folds in one job."""

    games: int = 0
    game_nodes: dict[str, int] = field(default_factory=dict)  # host -> games files made there
    models: dict[str, list[str]] = field(default_factory=dict)  # model -> hosts, oldest first
    selfplay_seq: int = 0
    jobs: int = 0  # finished jobs folded in

    @classmethod
    def from_dict(cls, raw: object) -> History:
        """Tolerant: a malformed field reads as empty rather than stopping the scheduler."""
        if not isinstance(raw, Mapping):
            return cls()
        nodes = raw.get("game_nodes")
        models = raw.get("models")
        return cls(
            games=_count(raw.get("games")),
            game_nodes={
                str(k): _count(v) for k, v in (nodes.items() if isinstance(nodes, Mapping) else ())
            },
            models={
                str(k): [str(n) for n in v]
                for k, v in (models.items() if isinstance(models, Mapping) else ())
                if isinstance(v, list)
            },
            selfplay_seq=_count(raw.get("selfplay_seq")),
            jobs=_count(raw.get("jobs")),
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "games": self.games,
            "game_nodes": dict(self.game_nodes),
            "models": {k: list(v) for k, v in self.models.items()},
            "selfplay_seq": self.selfplay_seq,
            "jobs": self.jobs,
        }

    def add(self, w: WorkItem) -> None:
        seq = selfplay_seq(w.work_id)
        if seq:
            self.selfplay_seq = max(self.selfplay_seq, seq[1])
        if not w.status.is_terminal:
            return
        self.jobs += 1
        if w.status is not JobStatus.COMPLETED:
            return
        result, kwargs = w.result or {}, w.payload.get("kwargs", {})
        node = str(result.get("node") or w.claimed_by or "")
        if w.work_type is JobType.SELFPLAY:
            self.games += _count(result.get("games"))
            if result.get("games_path") and node:
                self.game_nodes[node] = self.game_nodes.get(node, 0) + 1
        elif w.work_type is JobType.TRAINING and result.get("model") and w.claimed_by:
            self._holds(str(result["model"]), w.claimed_by)
        elif w.work_type is JobType.EVALUATION and w.claimed_by:
            fetched = result.get("models_fetched")
            for model in fetched if isinstance(fetched, list) else ():
                self._holds(str(model), w.claimed_by)  # it copied them from model_sources
        elif (
            w.work_type is JobType.SYNC
            and isinstance(kwargs, Mapping)
            and kwargs.get("model")
            and not result.get("skipped")
            and w.claimed_by
        ):
            self._holds(str(kwargs["model"]), w.claimed_by)

    def _holds(self, model: str, node: str) -> None:
        hosts = self.models.pop(model, [])  # re-inserted: the newest model goes last
        if node not in hosts:
            hosts.append(node)
        self.models[model] = hosts

    def trimmed(self, keep: Collection[str | None] = ()) -> History:
        """Forget the hosts of all but the ``MAX_MODELS`` newest models, never of
        a model in ``keep`` (the config's champion: after 16 rejected candidates
        in a row it is the oldest, and still what new hosts must be given)."""
        while len(self.models) > MAX_MODELS:
            victim = next((m for m in self.models if m not in keep), None)
            if victim is None:
                break
            del self.models[victim]
        return self

    def merged(self, other: History) -> History:
        """Both together (a record plus the jobs the ledger still holds)."""
        out = History.from_dict(self.to_dict())
        out.games += other.games
        out.jobs += other.jobs
        out.selfplay_seq = max(out.selfplay_seq, other.selfplay_seq)
        for node, n in other.game_nodes.items():
            out.game_nodes[node] = out.game_nodes.get(node, 0) + n
        for model, hosts in other.models.items():
            for node in hosts:
                out._holds(model, node)
        return out


def summarise(items: Iterable[WorkItem]) -> dict[str, History]:
    """Per config, what ``items`` add up to."""
    out: dict[str, History] = {}
    for w in items:
        out.setdefault(config_of(w), History()).add(w)
    return out


def fold(
    records: Mapping[str, object],
    forgotten: Iterable[WorkItem],
    champions: Mapping[str, str | None] | None = None,
) -> list[tuple[str, str, dict[str, object]]]:
    """The summary records to write when ``forgotten`` jobs leave the ledger;
    each config's champion (``champions``) keeps its hosts however old it is.

    Values are absolute (the record as read, plus these jobs), so writing them
    twice does no harm.
    """
    added = summarise(forgotten)
    champ = champions or {}
    return [
        (
            SUMMARY_KIND,
            key,
            History.from_dict(records.get(key)).merged(h).trimmed((champ.get(key),)).to_dict(),
        )
        for key, h in sorted(added.items())
    ]
