"""What the scheduler counts for /metrics: job durations, re-placements by cause, fence
refusals — on the real ledger state machine (tests/support/memory_ledger.py)."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import CollectorRegistry, generate_latest

from ringrift_fleet.metrics import JobDurations, SchedulerCollector
from ringrift_fleet.models import JobType
from ringrift_fleet.scheduler.actions import HARD_LIMIT, HOST_DEAD, Enqueue, Release
from ringrift_fleet.scheduler.beat import Beat, TickReport
from ringrift_fleet.scheduler.settings import SchedulerPolicy, parse_board_configs
from tests.support.memory_ledger import Clock, MemoryLedger, idle_beat, sharing

POLICY = SchedulerPolicy(configs=parse_board_configs("hex8_2p", ""))


def running(ledger: MemoryLedger, job_id: str, node: str, kind: str = "selfplay") -> str:
    assert ledger.add_work(job_id, {"config": "hex8_2p", "kwargs": {}}, work_type=kind)
    a = ledger.assign(job_id, node, kind)
    assert a is not None and ledger.start_work(job_id, node)
    return a.fence_token


def scrape(beat: Beat) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SchedulerCollector("n1", beat))
    return generate_latest(registry).decode()


def test_durations_histogram_is_cumulative_with_sum_and_count() -> None:
    d = JobDurations(buckets=(10.0, 60.0))
    for kind, s in (("selfplay", 3.0), ("selfplay", 30.0), ("selfplay", 900.0), ("training", 61)):
        d.observe(kind, s)
    assert d.snapshot() == {"selfplay": ([1, 2, 3], 933.0), "training": ([0, 0, 1], 61.0)}


def test_the_beat_counts_re_placements_by_cause_durations_and_refusals() -> None:
    clock = Clock(1_000_000.0)
    ledger = MemoryLedger("n1")
    ledger.clock = clock
    beat = idle_beat(ledger, POLICY, clock)
    running(ledger, "selfplay:hex8_2p:1", "x")
    running(ledger, "selfplay:hex8_2p:2", "a")
    token = running(ledger, "training:hex8_2p:g1", "a", "training")
    beat.refresh()  # the first read: jobs already complete are not timed again
    beat.on_membership(SimpleNamespace(kind="dead", node="x", at=clock.t))
    beat.apply(
        [
            Release("selfplay:hex8_2p:1", "x", 1, "host x declared dead", HOST_DEAD),
            Release("selfplay:hex8_2p:2", "a", 1, "ran 9000s, past its hard limit", HARD_LIMIT),
        ],
        TickReport(leader=True),
    )
    assert ledger.accept_result("training:hex8_2p:g1", token, {"node": "a", "run_seconds": 42.5})
    beat.refresh()
    beat.slots_refused += 1  # what _send counts when another leader took the slot

    text = scrape(beat)
    assert (
        'ringrift_job_replacements_total{cause="host_death",job_type="selfplay",node="n1"} 1.0'
        in text
    )
    assert (
        'ringrift_job_replacements_total{cause="hard_limit",job_type="selfplay",node="n1"} 1.0'
        in text
    )
    assert (
        'ringrift_job_duration_seconds_bucket{job_type="training",le="30.0",node="n1"} 0.0' in text
    )
    assert (
        'ringrift_job_duration_seconds_bucket{job_type="training",le="60.0",node="n1"} 1.0' in text
    )
    assert 'ringrift_job_duration_seconds_count{job_type="training",node="n1"} 1.0' in text
    assert 'ringrift_job_duration_seconds_sum{job_type="training",node="n1"} 42.5' in text
    assert 'ringrift_fence_refusals_total{node="n1",where="send_slot"} 1.0' in text
    assert 'ringrift_fence_refusals_total{node="n1",where="leader_term"} 0.0' in text
    assert "job_id" not in text and "hex8_2p:1" not in text  # never a job id in a label


def test_a_deposed_leaders_refused_write_is_a_fence_refusal() -> None:
    clock = Clock(1_000_000.0)
    new = MemoryLedger("n2", term=2)
    running(new, "selfplay:hex8_2p:1", "a")  # the ledger has applied term 2
    old = sharing(new, "n1", 1)
    beat = idle_beat(old, POLICY, clock)
    beat.refresh()
    enqueue = Enqueue("selfplay:hex8_2p:2", JobType.SELFPLAY, "hex8_2p", "a", "node.a", {})
    report = TickReport(leader=True)
    beat.apply([enqueue], report)
    assert report.refused
    assert beat.counts().fence_refusals["leader_term"] == 1
    assert 'ringrift_fence_refusals_total{node="n1",where="leader_term"} 1.0' in scrape(beat)
