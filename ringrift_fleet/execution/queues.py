"""Which Celery queue a job goes to, and which queues a worker consumes: pure functions.

Queue names (tiers from :data:`ringrift_fleet.placement.TIERS`, strongest first):

* ``training.<tier>``, ``selfplay.<tier>``, ``evaluation.<tier>`` for GPU tiers
  ``t1``–``t4``.  A queue means "needs at least this tier": a worker consumes its
  own tier's queue *and every weaker tier's*, so a strong GPU left without its own
  work pulls weaker work instead of idling, and work never starves while a
  stronger GPU is up.  ``training.*`` queues are consumed only by workers whose
  GPU can train (:func:`ringrift_fleet.placement.can_train`: power and VRAM).
* ``cpu``: work for CPU-only workers.  Only CPU workers consume it, and CPU
  workers consume no tier queue, so a CPU worker never receives GPU work.
* ``node.<name>``: work pinned to one host (sync, local evaluation, training the
  scheduler placed next to its synced games).  Every worker of that host consumes it.
* ``any``: ad-hoc jobs with no placement (``celery call`` without ``--queue``);
  every worker consumes it.

Job sizes pick the lowest tier allowed when the caller names no tier or host:
``small`` → t4, ``normal`` → t3, ``large`` → t1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ringrift_fleet.errors import ValidationError
from ringrift_fleet.models import JobType
from ringrift_fleet.placement import TIERS

GPU_TIERS: tuple[str, ...] = tuple(t for t in TIERS if t != "cpu")
CPU_QUEUE = "cpu"
ANY_QUEUE = "any"
SIZES: dict[str, str] = {"small": GPU_TIERS[-1], "normal": "t3", "large": GPU_TIERS[0]}
TIERED_KINDS: dict[JobType, str] = {
    JobType.TRAINING: "training",
    JobType.SELFPLAY: "selfplay",
    JobType.EVALUATION: "evaluation",
}


def node_queue(host: str) -> str:
    if not host or any(c.isspace() for c in host):
        raise ValidationError(f"host: {host!r} is not a node name")
    return f"node.{host}"


def tier_queue(kind: str, tier: str) -> str:
    return f"{kind}.{tier}"


def _job_type(job_type: JobType | str) -> JobType:
    try:
        return JobType(job_type)
    except ValueError:
        allowed = ", ".join(t.value for t in JobType)
        raise ValidationError(f"job_type: {job_type!r} is not one of {allowed}") from None


def route_for(
    job_type: JobType | str,
    size: str = "normal",
    *,
    tier: str | None = None,
    host: str | None = None,
) -> str:
    """The queue for a job: pinned to ``host``, else for ``tier``, else by ``size``."""
    jt = _job_type(job_type)
    if host is not None:
        return node_queue(host)
    if jt is JobType.SYNC:
        raise ValidationError("sync jobs are pinned: pass the host that should fetch")
    kind = TIERED_KINDS[jt]
    if tier is None:
        if size not in SIZES:
            raise ValidationError(f"size: {size!r} is not one of {', '.join(SIZES)}")
        tier = SIZES[size]
    if tier == "cpu":
        if jt is JobType.TRAINING:
            raise ValidationError(
                "tier 'cpu' cannot train: pin the job to a host (host=...) to train on a CPU box"
            )
        return CPU_QUEUE
    if tier not in GPU_TIERS:
        raise ValidationError(f"tier: {tier!r} is not one of {', '.join(TIERS)}")
    return tier_queue(kind, tier)


@dataclass(frozen=True)
class WorkerQueues:
    """What one worker consumes and why, as computed for ``ringrift-fleet worker``."""

    node: str
    tier: str
    trains: bool
    queues: tuple[str, ...]


def worker_queues(node: str, tier: str, *, trains: bool) -> WorkerQueues:
    """The queues of a worker on ``node`` whose GPU is in ``tier`` ("cpu" for none)."""
    if tier == "cpu":
        return WorkerQueues(node, tier, False, (CPU_QUEUE, node_queue(node), ANY_QUEUE))
    if tier not in GPU_TIERS:
        raise ValidationError(f"tier: {tier!r} is not one of {', '.join(TIERS)}")
    weaker = GPU_TIERS[GPU_TIERS.index(tier) :]
    queues: list[str] = []
    if trains:
        queues += [tier_queue("training", t) for t in weaker]
    queues += [tier_queue("evaluation", t) for t in weaker]
    queues += [tier_queue("selfplay", t) for t in weaker]
    queues += [node_queue(node), ANY_QUEUE]
    return WorkerQueues(node, tier, trains, tuple(queues))


def all_queues(nodes: Sequence[str] = ()) -> tuple[str, ...]:
    """Every queue name the fleet uses (for inspection and queue-depth probes)."""
    out = [tier_queue(k, t) for k in TIERED_KINDS.values() for t in GPU_TIERS]
    out += [CPU_QUEUE, ANY_QUEUE, *(node_queue(n) for n in nodes)]
    return tuple(out)
