"""The leader forgets old finished jobs; what the scheduler knows of them stays.

The ledger here is the real state machine (tests/support/memory_ledger.py);
its clock and the beat's are driven, so a day passes in a test.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ringrift_fleet.scheduler.beat import RECORD_KIND, Beat
from ringrift_fleet.scheduler.history import SUMMARY_KIND
from ringrift_fleet.scheduler.settings import SchedulerPolicy, parse_board_configs
from ringrift_fleet.scheduler.snapshot import ConfigState, Stage
from tests.support.memory_ledger import Clock, MemoryLedger, idle_beat

DAY = 86400.0


def finish(ledger: MemoryLedger, job_id: str, node: str, result: dict[str, Any]) -> None:
    kind = "training" if job_id.startswith("training:") else "selfplay"
    assert ledger.add_work(job_id, {"config": "hex8_2p", "kwargs": {}}, work_type=kind)
    a = ledger.assign(job_id, node, kind)
    assert a is not None and ledger.start_work(job_id, node)
    assert ledger.accept_result(job_id, a.fence_token, {"node": node, **result})


def beat_on(ledger: MemoryLedger, clock: Clock, **policy: Any) -> Beat:
    return idle_beat(
        ledger, SchedulerPolicy(configs=parse_board_configs("hex8_2p", ""), **policy), clock
    )


def test_old_finished_jobs_are_forgotten_and_their_games_still_count() -> None:
    clock = Clock(1_000_000.0)
    ledger = MemoryLedger("lead")
    ledger.clock = clock
    for i in range(1, 8):
        node = "a" if i % 2 else "b"
        path = f"games/hex8_2p/{i}.jsonl.gz"
        finish(ledger, f"selfplay:hex8_2p:{i}", node, {"games": 4, "games_path": path})
    finish(ledger, "training:hex8_2p:g1", "t", {"model": "m1"})
    stage = ConfigState(stage=Stage.TRAINING, generation=1, target_node="t")
    assert ledger.put_record(RECORD_KIND, "hex8_2p", stage.to_dict())
    clock.t += 60
    assert ledger.add_work("selfplay:hex8_2p:8", {"config": "hex8_2p"}, work_type="selfplay")

    beat = beat_on(ledger, clock, prune_batch=3)
    beat.refresh()
    before = (dict(beat.view.games), beat.view.game_sources("hex8_2p"))
    assert before == ({"hex8_2p": 28}, {"a": 4, "b": 3})
    assert beat.prune() == 0, "nothing is a day old yet"

    clock.t += DAY
    forgotten = [beat.prune() for _ in range(4)]  # bounded batches of 3
    assert forgotten == [3, 3, 1, 0]
    stats = ledger.get_queue_stats()
    assert stats["pruned"] == 7 and stats["total"] == 2
    # the stage job the training cycle still points at stays, and so does live work
    assert {w.work_id for w in ledger.items()} == {"training:hex8_2p:g1", "selfplay:hex8_2p:8"}
    beat.refresh()
    assert (dict(beat.view.games), beat.view.game_sources("hex8_2p")) == before
    assert beat.view.model_hosts("hex8_2p", "m1") == {"t"}
    assert beat.status()["pruned_jobs"] == 7

    # a new leader starting from the ledger alone sees the same, and reuses no id
    successor = beat_on(ledger, clock)
    successor.refresh()
    assert dict(successor.view.games) == {"hex8_2p": 28}
    assert successor.view.states["hex8_2p"].selfplay_seq == 8
    assert ledger.records(SUMMARY_KIND)["hex8_2p"]["jobs"] == 7


def test_pruning_skips_jobs_already_gone_and_refuses_live_ones() -> None:
    clock = Clock(1_000_000.0)
    ledger = MemoryLedger("lead")
    ledger.clock = clock
    finish(ledger, "selfplay:hex8_2p:1", "a", {"games": 2, "games_path": "games/hex8_2p/1"})
    clock.t += 2 * DAY
    # "ghost" is not there (forgotten already, say): skipped, not an error
    assert ledger.prune_work(["selfplay:hex8_2p:1", "ghost"], []) == 1
    # live work the proposer believed finished (a stale view): refused, nothing lost
    assert ledger.add_work("selfplay:hex8_2p:2", {"config": "hex8_2p"}, work_type="selfplay")
    assert ledger.prune_work(["selfplay:hex8_2p:2"], []) is None
    assert "pending" in str(ledger.last_error)
    assert ledger.get("selfplay:hex8_2p:2") is not None


STEPS = st.lists(
    st.tuples(
        st.integers(1, 6),  # which job moves on a step
        st.sampled_from(["a", "b"]),  # where it is placed
        st.sampled_from(["done", "done", "fail", "cancel", "prune"]),  # how it ends
        st.booleans(),  # tick after this step?
    ),
    max_size=80,
)


def _job_id(n: int) -> str:
    return f"selfplay:hex8_2p:{n}" if n % 2 else f"training:hex8_2p:g{n}"


def _seen(beat: Beat) -> dict[str, Any]:
    v = beat.view
    return {
        "items": {k: (w.status, w.claimed_by, w.attempts) for k, w in v.items.items()},
        "live": sorted((j.job_id, j.status, j.node_id, j.attempt) for j in v.live_jobs()),
        "active": sorted(v.active),  # what the leader's every-tick loops walk
        "games": dict(v.games),
        "sources": v.game_sources("hex8_2p"),
        "models": {m: v.model_hosts("hex8_2p", m) for m in ("m2", "m4", "m6")},
        "seq": v.states["hex8_2p"].selfplay_seq,
    }


def _step(ledger: MemoryLedger, beat: Beat, clock: Clock, n: int, node: str, end: str) -> None:
    """Move job ``n`` one step on: added, placed, started, then ended as ``end`` says."""
    job, kind = _job_id(n), "selfplay" if n % 2 else "training"
    w, cur = ledger.get(job), ledger.current(job)
    clock.t += 7
    if end == "prune":
        clock.t += 2 * DAY
        beat.prune()
    elif w is None:
        ledger.add_work(job, {"config": "hex8_2p"}, work_type=kind)
    elif w.status.value == "pending":
        ledger.assign(job, node, kind)
    elif w.status.value == "claimed" and w.claimed_by:
        ledger.start_work(job, w.claimed_by)
    elif w.status.value == "running" and cur is not None:
        if end == "done":
            result = {"node": cur.node_id, "games": n, "games_path": f"games/hex8_2p/{n}"}
            assert ledger.accept_result(job, cur.fence_token, {**result, "model": f"m{n}"})
        elif end == "fail":
            assert ledger.fail_work(job, "oom", cur.fence_token)
        else:
            assert ledger.cancel_work(job)


@settings(max_examples=150, deadline=None)
@given(STEPS)
def test_a_view_kept_up_by_changes_equals_a_fresh_read(steps: list[Any]) -> None:
    clock = Clock(1_000_000.0)
    ledger = MemoryLedger("lead")
    ledger.clock = clock
    beat = beat_on(ledger, clock)
    beat.full_read_every_s = math.inf  # one full read, then only changes: under test here
    beat.refresh()
    for n, node, end, tick in steps:
        _step(ledger, beat, clock, n, node, end)
        if tick:
            beat.refresh()
            live = {k for k, w in beat.view.items.items() if not w.status.is_terminal}
            assert set(beat.view.active) == live
    beat.refresh()
    fresh = beat_on(ledger, clock)
    fresh.refresh()
    assert _seen(beat) == _seen(fresh)
