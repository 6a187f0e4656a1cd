"""A death is pushed, not only piggybacked: whoever learns that a member is dead
pings a few random members at once with the verdict first, so the last observer
hears of it a round trip after the first, not protocol periods later."""

from __future__ import annotations

import random
import statistics

import pytest

from ringrift_fleet.errors import ValidationError
from ringrift_fleet.membership.simulation import Simulation
from ringrift_fleet.membership.swim import codec
from ringrift_fleet.membership.swim.protocol import SwimConfig, SwimNode

KEY = b"k"
NAMES = [f"m{i}" for i in range(1, 9)]


def _node(**cfg: object) -> SwimNode:
    a = SwimNode("a", ("127.0.0.1", 1), key=KEY, rng=random.Random(3), config=SwimConfig(**cfg))  # type: ignore[arg-type]
    a.start(0.0)
    for i, name in enumerate(NAMES, start=2):
        a.learn(0.0, name, ("127.0.0.1", i))
    return a


def _dead_from(sender: str, *victims: str) -> bytes:
    """A NACK from ``sender`` carrying "dead" verdicts (gossip, as any message may)."""
    ups = [codec.Update(codec.DEAD, v, 0, origin=sender) for v in victims]
    return codec.encode(codec.Message(codec.NACK, sender, 1, updates=ups), KEY)


def _pushes(out_datagrams: list[tuple[tuple[str, int], bytes]]) -> list[tuple[str, list[str]]]:
    """(recipient, the members its datagram calls dead) for each ping sent."""
    by_port = {i: n for i, n in enumerate(NAMES, start=2)}
    found = []
    for addr, data in out_datagrams:
        msg = codec.decode(data, KEY)
        if msg.kind == codec.PING:
            dead = [u.node for u in msg.updates if u.kind == codec.DEAD]
            found.append((by_port[addr[1]], dead))
    return found


def test_a_member_that_becomes_dead_is_pushed_to_three_others_at_once() -> None:
    a = _node()
    out = a.handle(0.1, _dead_from("m2", "m1"), ("127.0.0.1", 3))
    pushes = _pushes(out.datagrams)
    assert len(pushes) == 3 and a.stats.verdict_pushes == 3
    recipients = {to for to, _ in pushes}
    assert not recipients & {"m1", "m2"}, "neither the dead nor who told us"
    assert all(dead[:1] == ["m1"] for _, dead in pushes), pushes
    # the pushes did not spend the update's retransmissions: later probes still carry it
    assert a._queue["m1"].sent == 0
    # the same verdict again is no news: nothing pushed
    again = a.handle(0.2, _dead_from("m3", "m1"), ("127.0.0.1", 4))
    assert _pushes(again.datagrams) == []


def test_our_own_verdict_is_pushed_too() -> None:
    a = _node(suspicion_mult=0.1)
    a.handle(
        0.0,
        codec.encode(
            codec.Message(
                codec.NACK, "m2", 1, updates=[codec.Update(codec.SUSPECT, "m1", 0, origin="m2")]
            ),
            KEY,
        ),
        ("127.0.0.1", 3),
    )
    out = a.tick(10.0)  # the suspicion ran out: our verdict
    assert a.state_of("m1") == "dead"
    pushes = [p for p in _pushes(out.datagrams) if p[1][:1] == ["m1"]]
    assert len(pushes) >= 3


def test_pushes_are_bounded_per_period_and_can_be_switched_off() -> None:
    a = _node()
    out = a.handle(0.1, _dead_from("m2", *NAMES[2:]), ("127.0.0.1", 3))  # six deaths at once
    assert 0 < len(_pushes(out.datagrams)) <= 9 and a.stats.verdict_pushes <= 9
    off = _node(verdict_push=0)
    out = off.handle(0.1, _dead_from("m2", "m1"), ("127.0.0.1", 3))
    assert _pushes(out.datagrams) == [] and off.stats.verdict_pushes == 0
    with pytest.raises(ValidationError, match="verdict_push"):
        SwimConfig(verdict_push=-1)


def test_the_last_observer_hears_of_a_death_soon_after_the_first() -> None:
    """Simulated, N=30, eight kills: the spread from first to last verdict, pushed
    and not (every other setting alike)."""

    def spreads(push: int) -> list[float]:
        out = []
        for seed in range(1, 9):
            sim = Simulation(30, seed=seed, config=SwimConfig(verdict_push=push))
            sim.run_for(8.0)
            t0 = sim.now
            sim.crash("n7")
            sim.run_for(15.0)
            seen = sim.detections("n7", t0)
            assert len(seen) == 29, (push, seed)
            out.append(max(seen.values()) - min(seen.values()))
        return out

    pushed, piggybacked = spreads(3), spreads(0)
    assert statistics.median(pushed) < statistics.median(piggybacked) / 2, (pushed, piggybacked)
    assert max(pushed) < max(piggybacked), (pushed, piggybacked)
