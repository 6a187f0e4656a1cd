"""The scheduler's fence store behaves the same in memory as on Redis, and the fleet
simulation drives the production interpreter through it with faults injected.

The contract tests run once against a real redis-server (RedisSlots: what a
coordinator runs) and once against MemorySlots (what the simulation runs), so the
simulation's "0 lost, 0 duplicates" rests on the same send-slot semantics.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from ringrift_fleet.execution import fencing
from ringrift_fleet.scheduler.interpreter import Interpreter
from ringrift_fleet.scheduler.ports import SlotHolder, Slots
from ringrift_fleet.scheduler.settings import SchedulerPolicy
from ringrift_fleet.scheduler.simulation import FleetSim, SimParams
from ringrift_fleet.scheduler.slots import MemorySlots, RedisSlots
from tests.support.memory_ledger import Clock

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["redis", "memory"])
def slots(request: pytest.FixtureRequest) -> Iterator[Slots]:
    if request.param == "memory":
        yield MemorySlots(clock=Clock(1000.0))
        return
    server = request.getfixturevalue("redis_server")
    client = redis.Redis.from_url(server.url)
    try:
        yield RedisSlots(client)
    finally:
        client.close()


def test_a_send_slot_goes_to_the_first_leader_only(slots: Slots) -> None:
    assert slots.claim("j", 1, "5:a", 60)
    assert not slots.claim("j", 1, "6:b", 60)  # a second leader never sends it too
    assert slots.claim("j", 1, "5:a", 60)  # our own send that failed: ours to retry
    assert slots.holder("j", 1) == SlotHolder("5:a", sent=False)
    assert slots.claim("j", 2, "6:b", 60)  # another attempt is another slot
    slots.mark_sent("j", 1, "5:a", 60)
    assert slots.holder("j", 1) == SlotHolder("5:a", sent=True)
    assert not slots.claim("j", 1, "5:a", 60)  # sent: not even we send it twice
    slots.reclaim("j", 1, "5:a", 60)  # its message was lost: ours and unsent again
    assert slots.claim("j", 1, "5:a", 60)
    slots.release("j", 1)
    assert slots.holder("j", 1) is None
    slots.mark_sent("j", 1, "5:a", 60)  # only marks a slot that exists
    assert slots.holder("j", 1) is None


def _fence(slots: Slots, job: str) -> str | None:
    if isinstance(slots, MemorySlots):
        return slots.fence(job)
    assert isinstance(slots, RedisSlots)
    return fencing.current_fence(slots.client, job)


def test_slot_and_fence_are_one_step_and_a_refused_slot_writes_no_fence(slots: Slots) -> None:
    slots.publish_fence("j", "t0", 60)
    _store(slots, "j", "t0")  # an older attempt's stored result
    assert slots.claim_and_fence("j", 1, "5:a", 60, "t1", 60)
    assert _fence(slots, "j") == "t1"
    assert slots.holder("j", 1) == SlotHolder("5:a", sent=False)
    assert slots.stored_results({"j": "t0"}) == {}  # dropped with the new fence
    # a second leader sending the same attempt under its own token: refused, and the
    # workers still accept only the first leader's copy
    assert not slots.claim_and_fence("j", 1, "6:b", 60, "t2", 60)
    assert _fence(slots, "j") == "t1"
    assert slots.claim_and_fence("j", 1, "5:a", 60, "t1", 60)  # our own failed send
    slots.mark_sent_many([("j", 1), ("gone", 1)], "5:a", 60)
    assert slots.holder("j", 1) == SlotHolder("5:a", sent=True)
    assert slots.holder("gone", 1) is None  # only marks a slot that exists
    assert not slots.claim_and_fence("j", 1, "5:a", 60, "t3", 60)  # sent: never twice
    assert _fence(slots, "j") == "t1"
    # the previous send's "sent" mark rides along with the next claim, taken...
    assert slots.claim_and_fence("k", 1, "5:a", 60, "u1", 60)
    assert slots.claim_and_fence("m", 1, "5:a", 60, "v1", 60, [("k", 1)])
    assert slots.holder("k", 1) == SlotHolder("5:a", sent=True)
    assert slots.holder("m", 1) == SlotHolder("5:a", sent=False)
    # ...or refused (j#1 is sent already): the mark is written, the fence is not
    assert not slots.claim_and_fence("j", 1, "5:a", 60, "t5", 60, [("m", 1), ("gone", 2)])
    assert slots.holder("m", 1) == SlotHolder("5:a", sent=True)
    assert slots.holder("gone", 2) is None
    assert _fence(slots, "j") == "t1"


def test_a_notification_goes_out_once_across_leaders(slots: Slots) -> None:
    assert slots.notify_once("promoted:hex8_2p:g3", "5:a", 60)
    assert not slots.notify_once("promoted:hex8_2p:g3", "6:b", 60)
    assert slots.notify_once("promoted:hex8_2p:g4", "6:b", 60)


def _store(slots: Slots, job: str, token: str) -> None:
    """What a worker's complete_run leaves behind."""
    result = {"fence": {"token": token, "attempt": 1}, "games": 3}
    if isinstance(slots, MemorySlots):
        assert slots.store_result(job, token, dict(result))
    else:
        assert isinstance(slots, RedisSlots)
        slots.client.set(fencing.done_key(job), json.dumps(result))


def test_fences_and_stored_results(slots: Slots) -> None:
    slots.publish_fence("j", "t1", 60)
    _store(slots, "j", "t1")
    assert slots.stored_results({"j": "t1"}) == {
        "j": {"fence": {"token": "t1", "attempt": 1}, "games": 3}
    }
    assert slots.stored_results({"j": "t0"}) == {}  # another attempt's: not ours
    assert slots.lease_states(["j", "k"]) == {"j": True, "k": False}
    slots.publish_fence("j", "t2", 60)  # a new attempt drops the old attempt's result
    assert slots.stored_results({"j": "t1"}) == {}
    assert slots.lease_states(["j"]) == {"j": False}
    assert slots.withdraw_fence("j", "t2") is None  # t2 has not finished: voided
    assert slots.discard_unacked(["j.a1"]) == 0
    # an attempt that finished before its withdrawal keeps its result, and its fence
    slots.publish_fence("k", "t5", 60)
    _store(slots, "k", "t5")
    assert slots.withdraw_fence("k", "t5") == {"fence": {"token": "t5", "attempt": 1}, "games": 3}
    assert slots.stored_results({"k": "t5"})
    assert slots.withdraw_fence("k", "t6") is None  # another attempt's result: voided
    assert slots.withdraw_fence("k", None) is None  # unknown attempt: voided


def test_memory_slots_expire_on_their_clock() -> None:
    clock = Clock(1000.0)
    slots = MemorySlots(clock=clock)
    assert slots.claim("j", 1, "5:a", 10)
    clock.t += 11
    assert slots.holder("j", 1) is None
    assert slots.claim("j", 1, "6:b", 10)


def test_an_injected_fault_fails_the_operation_without_effect() -> None:
    slots = MemorySlots(clock=Clock(0.0), fault=lambda op: op == "claim")
    with pytest.raises(ConnectionError):
        slots.claim("j", 1, "5:a", 10)
    assert slots.holder("j", 1) is None


def test_the_simulated_fleet_runs_the_production_interpreter_through_faults() -> None:
    """Sends failing, |sent marks failing, leaders dying between slot and send: the
    real Beat and Interpreter on the real ledger still lose and duplicate nothing."""
    params = SimParams(
        hosts=8,
        duration_s=2 * 3600.0,
        seed=5,
        host_mtbf_s=3 * 3600.0,
        partition_fraction=0.5,
        down_s=(300.0, 900.0),
        send_fail_probability=0.1,
        mark_fail_probability=0.1,
        leader_change_every_s=900.0,
    )
    sim = FleetSim(params, SchedulerPolicy())
    r = sim.run()
    assert isinstance(sim.beat.effects, Interpreter)
    assert sim.faults["send_failed"] > 0 and sim.faults["mark_sent_failed"] > 0
    assert sim.faults["leader_died_mid_send"] > 0 and sim.term > 1
    assert r.host_failures > 0 and r.selfplay_jobs_done > 0
    assert r.lost_jobs == 0
    assert r.duplicate_executions == 0
