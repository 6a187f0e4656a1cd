"""A full read of the ledger (the scheduler's view re-reads it every five minutes)
copies in chunks and lets the Raft thread apply in between, and still ends
consistent: what changed during the read comes back in the next read since its
revision."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ringrift_fleet.consensus import api
from ringrift_fleet.consensus import ledger as sm
from ringrift_fleet.models import JobStatus
from tests.support.memory_ledger import MemoryLedger

JOBS = 3 * api.FULL_READ_CHUNK + 7


class Interleaved(MemoryLedger):
    """Runs ``between`` (as the Raft thread would apply an entry) when the reader
    takes the lock for the second time."""

    def __init__(self) -> None:
        super().__init__("a")
        self.holds = 0
        self.trigger = -1
        self.between: list[sm.Op] = []

    @contextmanager
    def reading(self) -> Iterator[sm.State]:
        self.holds += 1
        if self.holds == self.trigger:
            for op in self.between:  # not under the reader's hold: it was let go
                assert sm.apply(self.state, op)["ok"], op
        with self.lock:
            yield self.state


def test_a_full_read_lets_writes_in_between_chunks_and_the_next_read_catches_up() -> None:
    led = Interleaved()
    for i in range(JOBS):
        assert led.add_work(f"j{i:04d}", {"n": i})
    last = f"j{JOBS - 1:04d}"
    assert led.cancel_work(last)
    holds_before = led.holds
    led.trigger = holds_before + 2  # between the first and the second chunk
    led.between = [
        sm.make_op("assign.v1", now=1.0, term=1, job_id="j0000", node="h1", job_type="selfplay"),
        sm.make_op("add_work.v1", now=1.0, term=1, work_id="late", payload={}),
        sm.make_op("prune_work.v1", now=1.0, term=1, ids=[last], records=[]),
    ]
    full = led.read_since(("scheduler.config",), -1)
    holds = led.holds - holds_before
    assert holds >= 1 + JOBS // api.FULL_READ_CHUNK, f"one hold for {JOBS} items: {holds}"
    by_id = {w.work_id: w for w in full.items}
    assert "late" not in by_id  # added after the read began: not in it...
    delta = led.read_since(("scheduler.config",), full.rev)
    assert "late" in {w.work_id for w in delta.items}  # ...but in the next read
    # whatever the full read saw of j0000, the next read gives its latest form
    assert {w.work_id: w for w in delta.items}["j0000"].status is JobStatus.CLAIMED
    # pruned meanwhile: the next read names it, and drops it if the full read had it
    assert last in delta.forgotten and delta.ids is None
    assert delta.vanished({**by_id, last: None}) == [last]
    assert {w.work_id: w for w in delta.items}["j0000"].claimed_by == "h1"
    # a fresh full read equals the full read plus the changes since its revision
    merged = {**by_id, **{w.work_id: w for w in delta.items}}
    for gone in delta.vanished(merged):
        del merged[gone]
    fresh = {w.work_id: w for w in led.read_since(("scheduler.config",), -1).items}
    assert merged == fresh


def test_a_read_hands_out_copies_that_share_nothing_with_the_replica() -> None:
    led = MemoryLedger("a")
    payload = {"kwargs": {"board_type": "hex8", "seeds": [1, 2]}}
    assert led.add_work("j1", payload, work_type="selfplay")
    (item,) = led.read_since((), -1).items
    assert item.payload == led.state["work"]["j1"]["payload"]
    item.payload["kwargs"]["seeds"].append(3)  # type: ignore[index,union-attr]  # the reader's own
    assert led.state["work"]["j1"]["payload"]["kwargs"]["seeds"] == [1, 2]
    (again,) = led.read_since((), -1).items
    assert again.payload == payload


def test_json_copy_is_deep_and_keeps_the_types() -> None:
    from ringrift_fleet.jsontypes import json_copy

    original = {"a": [1, {"b": None, "c": (2.5, [True])}], "s": "x"}
    copied = json_copy(original)
    assert copied == original and copied is not original
    assert type(copied["a"][1]["c"]) is tuple  # type: ignore[index]
    copied["a"][1]["c"][1].append(False)  # type: ignore[index]
    assert original["a"][1]["c"][1] == [True]  # type: ignore[index]


def test_coordinators_started_together_do_not_read_the_whole_ledger_in_step() -> None:
    """Every view re-reads the whole ledger every FULL_READ_EVERY_S: 30 coordinators
    started in the same second did it in the same second, each copying 20,000 jobs,
    and on shared cores that stalled the voters (the 30-host soak, 22:53)."""
    from ringrift_fleet.scheduler.beat import FULL_READ_EVERY_S, FULL_READ_JITTER
    from ringrift_fleet.scheduler.settings import SchedulerPolicy
    from tests.support.memory_ledger import Clock, idle_beat

    clock = Clock(1_000.0)
    beats = [idle_beat(MemoryLedger(f"n{i}"), SchedulerPolicy(), clock) for i in range(30)]
    for b in beats:
        b.refresh()  # the first read is whole, at once, on every one
    due = sorted(b._next_full_read - clock.t for b in beats)
    low, high = (
        FULL_READ_EVERY_S * (1 - FULL_READ_JITTER),
        FULL_READ_EVERY_S * (1 + FULL_READ_JITTER),
    )
    assert all(low <= d <= high for d in due), due
    assert due[-1] - due[0] > FULL_READ_EVERY_S * FULL_READ_JITTER  # spread, not in step
    assert len({round(d, 3) for d in due}) == len(due)
