"""Finished jobs are capped by count as well as by age, and the overflow is folded, not lost.

The real ledger state machine (tests/support/memory_ledger.py) and the real beat,
with a driven clock.
"""

from __future__ import annotations

import pytest

from ringrift_fleet.config import load_config
from ringrift_fleet.consensus import ledger as sm
from ringrift_fleet.errors import ConfigError
from ringrift_fleet.scheduler.history import SUMMARY_KIND
from ringrift_fleet.scheduler.settings import SchedulerPolicy, parse_board_configs
from tests.support.memory_ledger import Clock, MemoryLedger, idle_beat


def finish(ledger: MemoryLedger, n: int, clock: Clock) -> None:
    job_id = f"selfplay:hex8_2p:{n}"
    assert ledger.add_work(job_id, {"config": "hex8_2p", "kwargs": {}}, work_type="selfplay")
    a = ledger.assign(job_id, "a", "selfplay")
    assert a is not None and ledger.start_work(job_id, "a")
    path = f"games/hex8_2p/{n}.jsonl.gz"
    assert ledger.accept_result(
        job_id, a.fence_token, {"node": "a", "games": 4, "games_path": path}
    )
    clock.t += 1.0


def test_prunable_takes_the_oldest_beyond_the_cap_whatever_their_age() -> None:
    clock = Clock(1_000.0)
    ledger = MemoryLedger("lead")
    ledger.clock = clock
    for n in range(1, 11):
        finish(ledger, n, clock)
    assert ledger.add_work("selfplay:hex8_2p:11", {"config": "hex8_2p"}, work_type="selfplay")
    ids = [f"selfplay:hex8_2p:{n}" for n in range(1, 11)]
    with ledger.reading() as state:
        assert sm.prunable(state, before=0.0) == []  # nothing is old
        assert sm.prunable(state, before=0.0, max_finished=4) == ids[:6]  # the oldest six
        assert sm.prunable(state, before=0.0, max_finished=10) == []
        assert sm.prunable(state, before=0.0, max_finished=0) == ids  # never live work
        # age still applies on top of the cap, and `keep` is never taken
        assert sm.prunable(state, before=1_008.0, max_finished=4) == ids[:8]
        # a kept job counts toward the cap: at most 4 finished jobs stay, it among them
        kept = frozenset({ids[0]})
        assert sm.prunable(state, before=0.0, keep=kept, max_finished=4) == ids[1:7]
        # a batch is the front of the whole answer
        assert sm.prunable(state, before=0.0, max_finished=4, limit=2) == ids[:2]
        assert sm.prunable(state, before=1_008.0, max_finished=4, limit=7) == ids[:7]
        # the counts a caller keeps up give the same answer as counting here
        by_status = sm.counts(state)
        assert sm.prunable(state, 0.0, kept, 4, None, by_status) == ids[1:7]


def test_the_beat_keeps_at_most_the_cap_and_still_counts_every_game() -> None:
    clock = Clock(1_000_000.0)
    ledger = MemoryLedger("lead")
    ledger.clock = clock
    policy = SchedulerPolicy(
        configs=parse_board_configs("hex8_2p", ""), ledger_max_finished=20, prune_batch=512
    )
    beat = idle_beat(ledger, policy, clock)
    for n in range(1, 51):
        finish(ledger, n, clock)
    beat.refresh()
    assert beat.prune() == 30  # well inside the day-long age retention
    assert len(ledger.items()) == 20
    assert {w.work_id for w in ledger.items()} == {f"selfplay:hex8_2p:{n}" for n in range(31, 51)}
    assert ledger.records(SUMMARY_KIND)["hex8_2p"]["jobs"] == 30
    beat.refresh()
    assert dict(beat.view.games) == {"hex8_2p": 200}  # 50 jobs × 4 games: none lost
    assert beat.view.states["hex8_2p"].selfplay_seq == 50
    assert beat.prune() == 0


def test_the_cap_comes_from_the_environment() -> None:
    cfg = load_config({"RINGRIFT_P2P_SCHEDULER_LEDGER_MAX_FINISHED": "5000"})
    assert SchedulerPolicy.from_config(cfg).ledger_max_finished == 5000
    assert SchedulerPolicy.from_config(load_config({})).ledger_max_finished == 20_000
    with pytest.raises(ConfigError, match="RINGRIFT_P2P_SCHEDULER_LEDGER_MAX_FINISHED"):
        load_config({"RINGRIFT_P2P_SCHEDULER_LEDGER_MAX_FINISHED": "0"})


@pytest.mark.parametrize("rate_per_min", [30, 300])
def test_the_cap_holds_when_jobs_finish_faster_than_a_batch_an_interval(
    rate_per_min: int,
) -> None:
    """A 30-host soak finished 780 jobs a minute against one 512-job batch a minute:
    the ledger grew past its cap by 268 jobs a minute.  Ticking once a second, with
    batches of 10 against up to 300 jobs a minute (30 batches' worth), the ledger must
    stay near its cap (the cap plus what finishes in a prune interval), not grow."""
    clock = Clock(1_000_000.0)
    ledger = MemoryLedger("lead")
    ledger.clock = clock
    policy = SchedulerPolicy(
        configs=parse_board_configs("hex8_2p", ""),
        ledger_max_finished=100,
        prune_batch=10,
        prune_interval_s=60.0,
    )
    beat = idle_beat(ledger, policy, clock)
    n, held = 0, []
    for second in range(20 * 60):  # 20 simulated minutes, one tick a second
        for _ in range(rate_per_min // 60 + (second % 60 < rate_per_min % 60)):
            n += 1
            finish(ledger, n, Clock(0.0))  # finish's own clock step is not this test's
        clock.t += 1.0
        report = beat.tick()
        assert report.leader and not report.error, report
        held.append(len(ledger.items()))
    assert n == rate_per_min * 20
    assert max(held[-300:]) <= 100 + rate_per_min, (max(held[-300:]), held[-1])
    assert ledger.records(SUMMARY_KIND)["hex8_2p"]["jobs"] == n - len(ledger.items())
