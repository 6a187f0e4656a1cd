"""Models: the seed's enums, the load score, overload rules and strict JSON round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringrift_fleet.config import reload_p2p_config
from ringrift_fleet.errors import ValidationError
from ringrift_fleet.models import (
    JobAssignment,
    JobStatus,
    JobType,
    NodeHealth,
    NodeRole,
    NodeSummary,
    ResourceMetrics,
    WorkItem,
)


def test_seed_enum_members() -> None:
    assert {m.name for m in NodeRole} == {"LEADER", "FOLLOWER", "CANDIDATE"}
    assert {"SELFPLAY", "TRAINING", "EVALUATION", "SYNC"} == {m.name for m in JobType}
    assert {"PENDING", "RUNNING", "COMPLETED", "FAILED"} <= {m.name for m in JobStatus}
    assert {m.name for m in NodeHealth} == {"HEALTHY", "DEGRADED", "UNHEALTHY", "OFFLINE"}
    assert JobStatus.COMPLETED.is_terminal and not JobStatus.RUNNING.is_terminal
    assert JobStatus.CLAIMED.is_active and not JobStatus.PENDING.is_active
    assert json.dumps(JobType.SELFPLAY) == '"selfplay"'  # str enums serialise as their value


def test_load_score_is_the_documented_weighted_composite() -> None:
    m = ResourceMetrics(
        cpu_percent=45.0, memory_percent=60.0, gpu_memory_percent=80.0, disk_percent=55.0
    )
    assert m.load_score == pytest.approx(0.35 * 0.45 + 0.2 * 0.60 + 0.35 * 0.80 + 0.1 * 0.55)
    # on a CPU host the VRAM weight moves to CPU: an absent GPU cannot hide a busy CPU
    cpu_host = ResourceMetrics(cpu_percent=80.0, has_gpu=False, gpu_memory_percent=0.0)
    assert cpu_host.load_score == pytest.approx(0.7 * 0.8)
    assert ResourceMetrics().load_score == 0.0
    assert ResourceMetrics(100, 100, 100, 100).load_score == 1.0


@given(
    st.floats(0, 100),
    st.floats(0, 100),
    st.floats(0, 100),
    st.floats(0, 100),
    st.floats(0, 100),
)
def test_load_score_bounded_and_monotone_in_cpu(
    cpu: float, mem: float, vram: float, disk: float, more: float
) -> None:
    a = ResourceMetrics(cpu, mem, vram, disk)
    b = ResourceMetrics(max(cpu, more), mem, vram, disk)
    assert 0.0 <= a.load_score <= 1.0
    assert a.load_score <= b.load_score


@pytest.mark.parametrize(
    ("metrics", "over"),
    [
        (
            ResourceMetrics(
                cpu_percent=45.0, memory_percent=60.0, gpu_memory_percent=80.0, disk_percent=55.0
            ),
            [],
        ),
        (ResourceMetrics(cpu_percent=91.0), ["cpu"]),
        (ResourceMetrics(memory_percent=95.0), ["memory"]),
        (ResourceMetrics(gpu_memory_percent=96.0), ["gpu_memory"]),
        (ResourceMetrics(gpu_memory_percent=96.0, has_gpu=False), []),
        (ResourceMetrics(disk_percent=70.5), ["disk"]),
        (ResourceMetrics(disk_percent=70.0), []),
    ],
)
def test_is_overloaded_when_any_resource_is_over_its_threshold(
    metrics: ResourceMetrics, over: list[str]
) -> None:
    assert metrics.overloaded_resources() == over
    assert metrics.is_overloaded is bool(over)


def test_disk_threshold_follows_the_config(fresh_config: pytest.MonkeyPatch) -> None:
    m = ResourceMetrics(disk_percent=60.0)
    fresh_config.setenv("RINGRIFT_P2P_DISK_CRITICAL_THRESHOLD", "50")
    reload_p2p_config()
    assert m.is_overloaded
    fresh_config.setenv("RINGRIFT_P2P_DISK_CRITICAL_THRESHOLD", "65")
    reload_p2p_config()
    assert not m.is_overloaded


def roundtrip(obj: Any) -> Any:
    return type(obj).from_dict(json.loads(json.dumps(obj.to_dict())))


def test_models_round_trip_through_json() -> None:
    metrics = ResourceMetrics(10.5, 20.0, 30.0, 40.0, 50.0, has_gpu=True)
    summary = NodeSummary(
        node_id="gh200-1",
        host="100.64.0.1",
        role=NodeRole.LEADER,
        health=NodeHealth.DEGRADED,
        gpu_type="GH200",
        gpu_count=1,
        gpu_vram_gb=96.0,
        gpu_power=1.2,
        metrics=metrics,
        is_voter=True,
        jobs_running=2,
        last_seen=1700000000.5,
    )
    item = WorkItem(
        "job-1",
        JobType.TRAINING,
        {"board_type": "hex8"},
        priority=5,
        claimed_by="n1",
        result={"elo": 3},
    )
    assignment = JobAssignment(
        "job-1", "n1", attempt=2, fence_token="7:3", status=JobStatus.RUNNING
    )
    for obj in (metrics, summary, item, assignment):
        assert roundtrip(obj) == obj


@given(
    st.text(min_size=1, max_size=20),
    st.sampled_from(list(JobType)),
    st.sampled_from(list(JobStatus)),
    st.integers(0, 10),
    st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
)
def test_work_items_round_trip(
    work_id: str, kind: JobType, status: JobStatus, attempts: int, payload: dict[str, Any]
) -> None:
    item = WorkItem(work_id, kind, payload, status=status, attempts=attempts, created_at=1.0)
    assert roundtrip(item) == item


@pytest.mark.parametrize(
    ("cls", "data", "message"),
    [
        (NodeSummary, {}, "node.node_id: missing required field"),
        (NodeSummary, {"node_id": ""}, "node.node_id: expected a non-empty string"),
        (
            NodeSummary,
            {"node_id": "a", "role": "king"},
            "node.role: 'king' is not one of leader, follower, candidate",
        ),
        (
            NodeSummary,
            {"node_id": "a", "gpu_count": True},
            "node.gpu_count: expected an integer, got True",
        ),
        (NodeSummary, {"node_id": "a", "gpu_count": 2.5}, "node.gpu_count: expected an integer"),
        (
            NodeSummary,
            {"node_id": "a", "status_port": 0},
            "node.status_port: 0 is outside [1, 65535]",
        ),
        (
            NodeSummary,
            {"node_id": "a", "metrics": {"cpu_percent": 101}},
            "node.metrics.cpu_percent: 101 is outside",
        ),
        (
            NodeSummary,
            {"node_id": "a", "metrics": {"cpu_percent": "hot"}},
            "node.metrics.cpu_percent: expected a number",
        ),
        (
            NodeSummary,
            {"node_id": "a", "metrics": [1]},
            "node.metrics: expected an object, got list",
        ),
        (NodeSummary, ["node_id"], "node: expected an object, got list"),
        (
            ResourceMetrics,
            {"disk_percent": float("nan")},
            "metrics.disk_percent: expected a number",
        ),
        (ResourceMetrics, {"has_gpu": "yes"}, "metrics.has_gpu: expected true or false"),
        (WorkItem, {"work_id": "j"}, "work_item.work_type: missing required field"),
        (
            WorkItem,
            {"work_id": "j", "work_type": "mining"},
            "work_item.work_type: 'mining' is not one of",
        ),
        (
            WorkItem,
            {"work_id": "j", "work_type": "sync", "payload": [1]},
            "work_item.payload: expected an object",
        ),
        (
            WorkItem,
            {"work_id": "j", "work_type": "sync", "max_attempts": 0},
            "work_item.max_attempts: 0 is outside",
        ),
        (JobAssignment, {"job_id": "j"}, "assignment.node_id: missing required field"),
        (
            JobAssignment,
            {"job_id": "j", "node_id": "n", "attempt": 0},
            "assignment.attempt: 0 is outside",
        ),
    ],
)
def test_malformed_input_names_the_field(cls: Any, data: Any, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        cls.from_dict(data)
    assert str(info.value).startswith(message), str(info.value)


@given(
    st.dictionaries(
        st.sampled_from(["node_id", "role", "gpu_count", "metrics", "health", "x"]),
        st.none()
        | st.integers()
        | st.text(max_size=5)
        | st.booleans()
        | st.lists(st.integers(), max_size=2),
    )
)
def test_any_mapping_gives_a_summary_or_a_validation_error(data: dict[str, Any]) -> None:
    try:
        NodeSummary.from_dict(data)
    except ValidationError as exc:
        assert str(exc).startswith("node")
