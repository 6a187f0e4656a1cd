"""The soak counts a job the leader gave up even when the ledger's count cap pruned it
before the end (the 60-minute run of 0d10f0a counted one of two such sync jobs)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from fleet_soak import classify_jobs


def job(status: str, work_type: str = "sync", attempts: int = 3, error: str = "") -> dict[str, Any]:
    return {
        "status": status,
        "work_type": work_type,
        "attempts": attempts,
        "max_attempts": 3,
        "error": error,
        "claimed_by": "h12",
    }


WORKER_DIED = "lost its run lease (6.8s without it): its worker died"


def test_a_pruned_job_given_up_after_its_last_attempt_is_lost() -> None:
    work = {"sync:hex8_2p:g14": job("cancelled", error=f"attempt 2 on h12 {WORKER_DIED}")}
    given_up = {
        "sync:hex8_2p:g14": f"attempt 3 on h12 {WORKER_DIED}",  # in the ledger: judged there
        "sync:square8_2p:g8": f"attempt 3 on h19 {WORKER_DIED}",  # pruned before the end
        "sync:hex8_2p:g9": "host h1 declared dead",  # by design: its cycle starts again
        "training:hex8_2p:g3": f"attempt 1 on h4 {WORKER_DIED}",  # before its last attempt
    }
    lost, failed, superseded = classify_jobs(work, {}, set(), set(), set(), given_up)
    assert [x.split()[0] for x in lost] == ["sync:hex8_2p:g14", "sync:square8_2p:g8"]
    assert "pruned before the end" in lost[1]
    assert failed == []
    assert sorted(x.split()[0] for x in superseded) == ["sync:hex8_2p:g9", "training:hex8_2p:g3"]


def test_without_given_up_jobs_the_ledger_alone_decides() -> None:
    work = {
        "selfplay:a:1": job("completed", "selfplay", 1),
        "selfplay:a:2": job("failed", "selfplay", 1, error="ValueError: bad board"),
        "sync:a:g1": job("cancelled", attempts=1, error="host h3 declared dead"),
        "selfplay:a:3": job("running", "selfplay", 1),
    }
    lost, failed, superseded = classify_jobs(work, {}, {"selfplay:a:3"}, set(), set(), {})
    assert lost == [] and len(failed) == 1 and superseded == ["sync:a:g1 on h12"]
    lost, _, _ = classify_jobs(work, {}, set(), set(), set(), {})
    assert lost == ["selfplay:a:3 running on h12: no lease, result or message"]


def test_the_two_budgets_reasons_are_judged_by_what_spent_them() -> None:
    """Out of losses: lost.  Out of its own failures: the workload's, unless the last
    failure says the fleet lost it.  A stage job of a dead host: by design."""
    lease = f"attempt 6 on h3 {WORKER_DIED}"
    work = {
        "sync:a:g1": job("cancelled", attempts=6, error=lease),
        "selfplay:a:1": job("cancelled", "selfplay", 3, error="ValueError: bad board"),
        "selfplay:a:2": job("cancelled", "selfplay", 3, error="its worker was lost each time"),
        "training:a:g2": job("cancelled", "training", 1, error="host h4 declared dead"),
    }
    given_up = {
        "sync:a:g1": f"{lease}; 6 attempts lost to worker or host deaths (MAX_LOST_ATTEMPTS=5)",
        "selfplay:a:1": "failed 3 time(s) (MAX_REDELIVERIES=3)",
        "selfplay:a:2": "failed 3 time(s) (MAX_REDELIVERIES=3)",
        "training:a:g2": "host h4 declared dead",
        "selfplay:a:9": "failed 3 time(s) (MAX_REDELIVERIES=3)",  # pruned: no error left
    }
    lost, failed, superseded = classify_jobs(work, {}, set(), set(), set(), given_up)
    assert sorted(x.split()[0] for x in lost) == ["selfplay:a:2", "sync:a:g1"]
    assert sorted(x.split()[0] for x in failed) == ["selfplay:a:1", "selfplay:a:9"]
    assert [x.split()[0] for x in superseded] == ["training:a:g2"]
