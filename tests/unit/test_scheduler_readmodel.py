"""The read model: what a re-placed job looks like to the planner."""

from __future__ import annotations

from ringrift_fleet.scheduler.settings import SchedulerPolicy
from tests.support.memory_ledger import Clock, MemoryLedger, idle_beat


def test_a_re_placed_attempt_runs_from_its_own_start_not_its_first_attempts() -> None:
    """Attempt 1 runs from t=1000 and its host dies at 6000; attempt 2 starts at 6000.
    The hard-limit reaper must see 2 s of run time, not 5,002 s."""
    clock = Clock(1000.0)
    led = MemoryLedger("c")
    led.clock = clock
    beat = idle_beat(led, SchedulerPolicy(), clock)
    assert led.add_work("j", {"config": "hex8_2p"}, work_type="selfplay", max_attempts=3)
    first = led.assign("j", "w1", "selfplay")
    assert first is not None and led.start_work("j", "w1")
    beat.refresh()
    assert [j.started_at for j in beat.view.live_jobs()] == [1000.0]
    clock.t = 6000.0
    assert led.fail_work("j", "host died", first.fence_token)
    second = led.assign("j", "w2", "selfplay")
    assert second is not None and second.attempt == 2 and led.start_work("j", "w2")
    clock.t = 6002.0
    beat.refresh()
    (job,) = beat.view.live_jobs()
    assert job.attempt == 2 and job.started_at == 6000.0
    clock.t = 6010.0
    beat.refresh()  # the same attempt, seen again: still its own start
    assert [j.started_at for j in beat.view.live_jobs()] == [6000.0]
