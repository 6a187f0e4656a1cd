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
