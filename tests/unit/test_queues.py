"""Routing is a pure function: table tests and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringrift_fleet.config import P2PConfig
from ringrift_fleet.errors import ValidationError
from ringrift_fleet.execution.queues import (
    ANY_QUEUE,
    CPU_QUEUE,
    GPU_TIERS,
    all_queues,
    route_for,
    worker_queues,
)
from ringrift_fleet.models import JobType
from ringrift_fleet.placement import can_train, gpu_tier, normalize_gpu_name

T = JobType


@pytest.mark.parametrize(
    ("job_type", "size", "tier", "host", "queue"),
    [
        (T.TRAINING, "normal", None, None, "training.t3"),
        (T.TRAINING, "large", None, None, "training.t1"),
        (T.TRAINING, "small", None, None, "training.t4"),
        (T.TRAINING, "normal", "t2", None, "training.t2"),
        (T.TRAINING, "normal", None, "gh200-1", "node.gh200-1"),
        (T.SELFPLAY, "normal", None, None, "selfplay.t3"),
        (T.SELFPLAY, "small", None, None, "selfplay.t4"),
        (T.SELFPLAY, "normal", "t1", None, "selfplay.t1"),
        (T.SELFPLAY, "normal", "cpu", None, CPU_QUEUE),
        (T.EVALUATION, "large", None, None, "evaluation.t1"),
        (T.EVALUATION, "normal", "cpu", None, CPU_QUEUE),
        (T.EVALUATION, "normal", None, "a100-2", "node.a100-2"),
        (T.SYNC, "normal", None, "rtx-7", "node.rtx-7"),
        ("selfplay", "normal", "t4", None, "selfplay.t4"),
    ],
)
def test_route_table(
    job_type: JobType | str, size: str, tier: str | None, host: str | None, queue: str
) -> None:
    assert route_for(job_type, size, tier=tier, host=host) == queue


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"job_type": T.TRAINING, "tier": "cpu"}, "tier 'cpu' cannot train"),
        ({"job_type": T.SYNC}, "sync jobs are pinned"),
        ({"job_type": T.SELFPLAY, "tier": "t9"}, "tier: 't9'"),
        ({"job_type": T.SELFPLAY, "size": "huge"}, "size: 'huge'"),
        ({"job_type": "mining"}, "job_type: 'mining'"),
        ({"job_type": T.SYNC, "host": "two words"}, "host: 'two words'"),
    ],
)
def test_route_rejects_with_the_field(kwargs: dict[str, object], message: str) -> None:
    job_type = kwargs.pop("job_type")
    with pytest.raises(ValidationError, match=message):
        route_for(job_type, **kwargs)  # type: ignore[arg-type]


def test_worker_queues_by_tier() -> None:
    h100 = worker_queues("h1", "t1", trains=True).queues
    assert h100[:4] == ("training.t1", "training.t2", "training.t3", "training.t4")
    assert "selfplay.t1" in h100 and "selfplay.t4" in h100 and "node.h1" in h100
    assert CPU_QUEUE not in h100
    a6000 = worker_queues("w", "t3", trains=False).queues
    assert not any(q.startswith("training.") for q in a6000)
    assert "selfplay.t3" in a6000 and "selfplay.t2" not in a6000
    assert worker_queues("c", "cpu", trains=True).queues == (CPU_QUEUE, "node.c", ANY_QUEUE)


GPUS = st.sampled_from(
    ["GH200", "H200", "H100", "A100", "L40S", "RTX_5090", "RTX_4090", "A6000", "A10", "T4", "L4"]
)
JOBS = st.sampled_from([T.TRAINING, T.SELFPLAY, T.EVALUATION])
TIERS = st.sampled_from([*GPU_TIERS, "cpu", None])
SIZES = st.sampled_from(["small", "normal", "large"])


@settings(deadline=None, max_examples=300)
@given(
    gpu=GPUS, vram=st.sampled_from([8.0, 16.0, 24.0, 48.0, 80.0]), job=JOBS, tier=TIERS, size=SIZES
)
def test_who_can_receive_a_routed_job(
    gpu: str, vram: float, job: JobType, tier: str | None, size: str
) -> None:
    """Training reaches only trainers; GPU work never reaches a CPU worker; CPU work only CPUs."""
    cfg = P2PConfig()
    try:
        queue = route_for(job, size, tier=tier)
    except ValidationError:
        assert job is T.TRAINING and tier == "cpu"
        return
    trains = can_train(normalize_gpu_name(gpu), vram, cfg)
    gpu_worker = worker_queues("g", gpu_tier(gpu), trains=trains).queues
    cpu_worker = worker_queues("c", "cpu", trains=False).queues
    if queue == CPU_QUEUE:
        assert queue in cpu_worker and queue not in gpu_worker
        return
    assert queue not in cpu_worker
    if job is T.TRAINING and queue in gpu_worker:
        assert trains
    # A queue for tier X is consumed by every GPU of tier X or stronger (that may do the job).
    wanted = queue.split(".")[1]
    strong_enough = GPU_TIERS.index(gpu_tier(gpu)) <= GPU_TIERS.index(wanted)
    if job is not T.TRAINING or trains:
        assert (queue in gpu_worker) == strong_enough


def test_all_queues_lists_every_consumed_queue() -> None:
    everything = set(all_queues(["n1"]))
    for tier in GPU_TIERS:
        assert set(worker_queues("n1", tier, trains=True).queues) <= everything
    assert set(worker_queues("n1", "cpu", trains=False).queues) <= everything
