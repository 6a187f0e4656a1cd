"""GET /consensus/ledger answers: one scan of the replica serves every copy that
asks from the same revision, and never a state older than the ask."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

from ringrift_fleet.consensus import ledger as sm
from ringrift_fleet.consensus.remote import ReplicaBodies
from tests.support.memory_ledger import MemoryLedger


class VersionedLedger(MemoryLedger):
    def version(self) -> object:  # changes whenever the replica does, like Raft's applied index
        with self.lock:
            return int(self.state.get("rev", 0))


def _add(led: MemoryLedger, work_id: str) -> None:
    assert led.propose(
        sm.make_op("add_work.v1", now=1.0, term=1, work_id=work_id, payload={"n": 1})
    )["ok"]


def _ask(bodies: ReplicaBodies, led: MemoryLedger, since: int | None) -> dict[str, Any]:
    return dict(json.loads(asyncio.run(bodies.answer(led, since))))


def test_copies_at_one_revision_share_one_scan_and_each_ends_equal_to_the_replica() -> None:
    led = VersionedLedger("n0")
    for i in range(5):
        _add(led, f"j{i}")
    copy_state = copy.deepcopy(led.state)  # a non-voter's copy at this revision
    since = int(copy_state["rev"])
    for i in range(5, 8):
        _add(led, f"j{i}")
    bodies = ReplicaBodies()
    answers = [_ask(bodies, led, since) for _ in range(27)]
    assert bodies.deltas_served == 27 and bodies.deltas_encoded == 1
    assert all(a == answers[0] for a in answers)
    sm.apply_changes(copy_state, answers[0]["changes"])
    assert copy_state["work"] == led.state["work"]

    # the replica moves on: the next ask from the same revision is answered afresh
    _add(led, "j8")
    later = _ask(bodies, led, since)
    assert bodies.deltas_encoded == 2
    assert "j8" in json.dumps(later["changes"])
    # another revision asked at the same version: its own scan
    _ask(bodies, led, since + 1)
    assert bodies.deltas_encoded == 3
    assert bodies.counts()["deltas_encoded"] == 3


def test_a_ledger_without_a_version_is_scanned_for_every_ask() -> None:
    led = MemoryLedger("n0")  # version() is None: nothing says when the replica changed
    _add(led, "j0")
    bodies = ReplicaBodies()
    for _ in range(3):
        _ask(bodies, led, 0)
    assert bodies.deltas_encoded == 3


def test_answers_encoded_on_many_threads_at_once_never_fail() -> None:
    """The executor encodes several askers' deltas at once while the replica moves
    on: the shared cache must not be iterated while another thread adds to it."""
    import sys
    import threading

    led = VersionedLedger("n0")
    for i in range(50):
        _add(led, f"j{i}")
    bodies = ReplicaBodies()
    errors: list[BaseException] = []

    def ask(n: int) -> None:
        try:
            for k in range(800):
                bodies._encode_delta(led, (n * 7 + k) % 40)
        except BaseException as exc:  # the failure under test
            errors.append(exc)

    def write() -> None:
        for i in range(50, 850):
            _add(led, f"j{i}")

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=ask, args=(n,)) for n in range(10)]
        threads.append(threading.Thread(target=write))
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(old)
    assert errors == []
