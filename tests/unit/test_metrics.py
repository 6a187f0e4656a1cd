"""ringrift_fleet.metrics: status snapshot + probes -> Prometheus families (pure), and the collector."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ringrift_fleet.histograms import Histogram
from ringrift_fleet.metrics import (
    FleetCollector,
    Probes,
    families,
    ledger_counts,
    replacement_cause,
)

STATUS: dict[str, Any] = {
    "node_id": "n1",
    "role": "leader",
    "leader_id": "n1",
    "term": 7,
    "is_voter": True,
    "alive_peers": 1,
    "membership": {
        "alive_count": 2,
        "suspect_count": 0,
        "dead_count": 1,
        "members": {"n2": {"state": "alive"}, "n3": {"state": "dead"}},
    },
    "raft_detail": {
        "commit_idx": 42,
        "log_len": 50,
        "has_quorum": True,
        "connected_voters": ["n2"],
        "dump": {"running": False, "last_s": 2.5, "raft_thread_ms": 3.1, "done": 4, "failed": 1},
    },
    "stalls": {"threshold_s": 2.0, "stalls": 3, "max_s": 4.25, "last_s": 2.1, "last_at": 1.0},
    "work_queue": {
        "pending": 3,
        "claimed": 1,
        "running": 2,
        "completed": 9,
        "total": 15,
        "pruned": 4,
    },
    "scheduler": {
        "games": {"square8_2p": 120},
        "configs": {
            "square8_2p": {
                "stage": "training",
                "generation": 3,
                "champion_elo": 1620.5,
                "promotions": 2,
                "last_training_at": 1000.0,
            }
        },
        "dead_hosts": ["n3"],
    },
    "queues_without_consumers": {"queues": [{"queue": "training.t3", "messages": 2}]},
    "swim_raft": {
        "swim": {
            "health": {
                "datagrams_sent": 30,
                "datagrams_received": 28,
                "dropped": {"malformed": 1},
                "probes": 20,
                "probe_failures": 3,
                "refutations": 1,
                "fallback": {"suspicions_avoided": 2},
                "local_health_multiplier": 0,
                "recoveries": 0,
            }
        }
    },
    "uptime_s": 12.5,
    "snapshot_age_s": 0.1,
}


class Static:
    def __init__(self, metrics: list[Any]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Any]:
        return self.metrics


def samples(status: dict[str, Any], probes: Probes) -> dict[tuple[str, frozenset[Any]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Static(families("n1", status, probes)))
    text = generate_latest(registry).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(got: dict[tuple[str, frozenset[Any]], float], name: str, **labels: str) -> float:
    return got[(name, frozenset({"node": "n1", **labels}.items()))]


def test_families_cover_leadership_membership_ledger_and_training() -> None:
    probes = Probes(
        jobs={("selfplay", "running"): 2, ("training", "pending"): 1},
        replaced={("selfplay", "host_death"): 3},
        host={"cpu_percent": 50.0, "disk_percent": 81.0, "gpu_utilization_percent": 25.0},
        disk_critical_ratio=0.7,
        broker_up=True,
        queues={"selfplay.t1": 5},
        leader_changes=2,
        webhooks={"sent": 4, "failed": 1},
    )
    got = samples(STATUS, probes)
    assert value(got, "ringrift_is_leader") == 1
    assert value(got, "ringrift_term") == 7
    assert value(got, "ringrift_leader", leader="n1") == 1
    assert value(got, "ringrift_leader_changes_total") == 2
    assert value(got, "ringrift_members", state="dead") == 1
    assert value(got, "ringrift_member_alive", member="n3") == 0
    assert value(got, "ringrift_member_alive", member="n2") == 1
    assert value(got, "ringrift_member_alive", member="n1") == 1  # itself
    assert value(got, "ringrift_raft_commit_index") == 42
    assert value(got, "ringrift_raft_has_quorum") == 1
    assert value(got, "ringrift_raft_dump_seconds") == 2.5
    assert value(got, "ringrift_raft_dump_failures_total") == 1
    assert value(got, "ringrift_coordinator_stalls_total") == 3
    assert value(got, "ringrift_coordinator_stall_max_seconds") == 4.25
    assert value(got, "ringrift_work_items", state="pending") == 3
    assert value(got, "ringrift_ledger_items") == 15
    assert value(got, "ringrift_ledger_pruned_jobs_total") == 4
    assert value(got, "ringrift_jobs", job_type="selfplay", state="running") == 2
    assert value(got, "ringrift_job_extra_attempts", job_type="selfplay", cause="host_death") == 3
    assert value(got, "ringrift_games_total", config="square8_2p") == 120
    assert value(got, "ringrift_model_elo", config="square8_2p") == 1620.5
    assert value(got, "ringrift_model_promotions_total", config="square8_2p") == 2
    assert value(got, "ringrift_config_stage", config="square8_2p", stage="training") == 1
    assert value(got, "ringrift_config_stage", config="square8_2p", stage="idle") == 0
    assert value(got, "ringrift_host_disk_used_ratio") == pytest.approx(0.81)
    assert value(got, "ringrift_disk_critical_threshold_ratio") == pytest.approx(0.7)
    assert value(got, "ringrift_host_gpu_busy_ratio") == pytest.approx(0.25)
    assert value(got, "ringrift_broker_up") == 1
    assert value(got, "ringrift_queue_messages", queue="selfplay.t1") == 5
    assert value(got, "ringrift_webhook_notifications_total", outcome="failed") == 1
    assert value(got, "ringrift_queues_without_consumers") == 1
    assert value(got, "ringrift_queue_unconsumed_messages", queue="training.t3") == 2
    # no job ids anywhere in the labels
    assert not any("job_id" in dict(labels) for _name, labels in got)


def test_a_node_without_scheduler_or_broker_exports_no_broker_series() -> None:
    status = {k: v for k, v in STATUS.items() if k != "scheduler"}
    got = samples(status | {"role": "follower"}, Probes())
    assert value(got, "ringrift_is_leader") == 0
    assert not [
        k
        for k in got
        if k[0].startswith(("ringrift_broker", "ringrift_queue_messages", "ringrift_games"))
    ]


def test_a_broken_snapshot_still_gives_metrics() -> None:
    got = samples({"error": "snapshot failed"}, Probes())
    assert value(got, "ringrift_is_leader") == 0 and value(got, "ringrift_term") == 0


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        ("node gpu-3 lost", "host_death"),
        ("host gpu-3 declared dead", "host_death"),
        ("ran 7300s, past its hard limit", "hard_limit"),
        ("its leader died while sending it", "sender_died"),
        ("attempt 1 on a lost its run lease (4.0s without it): its worker died", "lease_lost"),
        ("stale fence t3:x:a1", "worker_refused"),
        ("send failed: Connection refused", "send_failed"),
        ("send failed: timeout", "send_failed"),
        ("exit status 1", "job_failed"),
        (None, "job_failed"),
    ],
)
def test_replacement_cause(error: str | None, cause: str) -> None:
    assert replacement_cause(error) == cause


def test_ledger_counts_by_type_state_and_extra_attempts() -> None:
    work = [
        {"work_type": "selfplay", "status": "pending", "attempts": 2, "error": "node a lost"},
        {"work_type": "selfplay", "status": "completed", "attempts": 1},
        {
            "work_type": "training",
            "status": "running",
            "attempts": 3,
            "error": "x past its hard limit",
        },
    ]
    jobs, replaced = ledger_counts(work)
    assert jobs == {
        ("selfplay", "pending"): 1,
        ("selfplay", "completed"): 1,
        ("training", "running"): 1,
    }
    assert replaced == {("selfplay", "host_death"): 1, ("training", "hard_limit"): 2}


class FakeLedger:
    def __init__(self) -> None:
        self.state = {"work": {"a": {"work_type": "selfplay", "status": "running", "attempts": 1}}}

    @contextlib.contextmanager
    def reading(self) -> Iterator[dict[str, Any]]:
        yield self.state


def fake_node(name: str, status: dict[str, Any]) -> Any:
    server = SimpleNamespace(status=status, snapshot_age=lambda: 0.5)
    config = SimpleNamespace(DISK_CRITICAL_THRESHOLD=70.0, state_dir="/", BROKER_URL="")
    return SimpleNamespace(
        node_id=name, status_server=server, ledger=FakeLedger(), config=config, inventory=None
    )


def test_two_coordinators_in_one_process_have_separate_registries() -> None:
    texts = []
    for name, leader in (("a", True), ("b", False)):
        status = {
            "node_id": name,
            "role": "leader" if leader else "follower",
            "leader_id": "a",
            "term": 1,
        }
        registry = CollectorRegistry(auto_describe=False)
        registry.register(
            FleetCollector(fake_node(name, status), probe_host=lambda: {"disk_percent": 10.0})
        )
        texts.append(generate_latest(registry).decode())
    assert 'ringrift_is_leader{node="a"} 1.0' in texts[0]
    assert 'ringrift_is_leader{node="b"} 0.0' in texts[1]
    assert 'node="b"' not in texts[0]
    assert 'ringrift_jobs{job_type="selfplay",node="a",state="running"} 1.0' in texts[0]
    assert 'ringrift_status_age_seconds{node="a"} 0.5' in texts[0]


def test_leader_changes_are_counted_as_observed() -> None:
    status: dict[str, Any] = {"node_id": "a", "leader_id": "a", "term": 1}
    collector = FleetCollector(fake_node("a", status), probe_host=lambda: {})
    for leader, term in (("a", 1), ("b", 2), ("b", 2), (None, 2), ("a", 3)):
        status.update(leader_id=leader, term=term)
        probes = collector.probes(collector.status())
    assert probes.leader_changes == 2


def test_swim_probes_refutations_and_host_load() -> None:
    probes = Probes(host={"cpu_percent": 50.0, "load_score": 0.42, "load1": 3.5})
    got = samples(STATUS, probes)
    assert value(got, "ringrift_swim_probes_total") == 20
    assert value(got, "ringrift_swim_probe_failures_total") == 3
    assert value(got, "ringrift_swim_refutations_total") == 1
    assert value(got, "ringrift_swim_suspicions_avoided_total") == 2
    assert value(got, "ringrift_swim_dropped_datagrams_total", reason="malformed") == 1
    assert value(got, "ringrift_host_load_score") == pytest.approx(0.42)
    assert value(got, "ringrift_host_load1") == pytest.approx(3.5)
    # HTTP membership (no SWIM health): no SWIM series at all, rather than zeros
    quiet = samples({k: v for k, v in STATUS.items() if k != "swim_raft"}, Probes())
    assert not [name for name, _ in quiet if name.startswith("ringrift_swim_")]


def test_ledger_op_latency_is_a_histogram_per_op_and_outcome() -> None:
    hist = Histogram((0.01, 0.1))
    for op, outcome, s in (
        ("add_work.v1", "ok", 0.004),
        ("add_work.v1", "ok", 0.05),
        ("claim_work.v1", "refused", 2.0),
    ):
        hist.observe((op, outcome), s)
    got = samples(STATUS, Probes(ledger_ops=hist.snapshot(), ledger_op_buckets=hist.buckets))
    name = "ringrift_ledger_op_duration_seconds"
    assert value(got, f"{name}_bucket", op="add_work", outcome="ok", le="0.01") == 1
    assert value(got, f"{name}_bucket", op="add_work", outcome="ok", le="0.1") == 2
    assert value(got, f"{name}_count", op="add_work", outcome="ok") == 2
    assert value(got, f"{name}_sum", op="add_work", outcome="ok") == pytest.approx(0.054)
    assert value(got, f"{name}_bucket", op="claim_work", outcome="refused", le="0.1") == 0
    assert value(got, f"{name}_bucket", op="claim_work", outcome="refused", le="+Inf") == 1


def test_the_ledger_times_every_operation_it_proposes() -> None:
    from tests.support.memory_ledger import MemoryLedger

    ledger = MemoryLedger("n1")
    assert ledger.add_work("a", {})
    assert ledger.claim_work("a", "n1")
    assert not ledger.claim_work("nothing-by-this-id", "n1")  # refused by the state machine
    snap = ledger.op_latency.snapshot()
    assert sorted(snap) == [
        ("add_work.v1", "ok"),
        ("claim_work.v1", "ok"),
        ("claim_work.v1", "refused"),
    ]
    assert all(counts[-1] == 1 for counts, _ in snap.values())


def test_histogram_buckets_must_increase() -> None:
    with pytest.raises(ValueError, match="increase"):
        Histogram((0.1, 0.01))
