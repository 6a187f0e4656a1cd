"""The SWIM core in deterministic simulation: 10, 100 and 1,000 members.

Virtual clock, seeded randomness, a network that loses, delays and partitions.
Each test states a property a fleet operator relies on.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ringrift_fleet.membership.simulation import Simulation

SIZES = [10, 100, 1000]


def _victims(n: int) -> list[str]:
    return [f"n{i}" for i in (1, n // 2, n - 1)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("n", SIZES)
def test_crashed_members_are_dead_everywhere_and_a_restart_is_alive_everywhere(n: int) -> None:
    sim = Simulation(n, seed=11)
    sim.run_for(2.0)
    victims = _victims(n)
    for v in victims:
        sim.crash(v)
    took = sim.run_until_true(lambda: all(sim.all_see(v, ("dead",)) for v in victims), 30.0)
    assert took is not None, "some survivor still holds a crashed member alive"
    assert took < 15.0
    assert sim.false_dead() == []

    # The same name comes back as a fresh process that remembers nothing
    # (incarnation 0, below the one buried): it must refute and be alive again.
    back = victims[0]
    sim.restart(back, incarnation=0)
    took = sim.run_until_true(
        lambda: (
            sim.all_see(back, ("alive",))
            and all(sim.state(back, o) == "alive" for o in sim.survivors() if o != back)
        ),
        30.0,
    )
    assert took is not None, "the restarted member is not alive everywhere"
    assert sim.nodes[back].incarnation > 0
    # It never met the other victims alive, so it does not resurrect them.
    assert all(sim.all_see(v, ("dead", None)) for v in victims[1:])  # type: ignore[arg-type]


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("n", "seconds", "then_crash"), [(10, 120.0, True), (100, 60.0, True), (1000, 6.0, False)]
)
def test_no_live_member_is_declared_dead_at_ten_percent_loss(
    n: int, seconds: float, then_crash: bool
) -> None:
    # At 1,000 members 10 % loss means ~15 false suspicions a second, each of
    # which must be refuted in time: 6 s of that is already ~90 refutations.
    sim = Simulation(n, seed=23, loss=0.10)
    sim.run_for(seconds)
    assert sim.false_dead() == []
    assert sim.converged()
    if then_crash:  # … and loss does not hide a real crash.
        victim = f"n{n // 3}"
        sim.crash(victim)
        assert sim.run_until_true(lambda: sim.all_see(victim, ("dead",)), 30.0) is not None
        assert sim.false_dead() == []


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("n", "cut"), [(10, 5), (100, 50), (1000, 10)])
def test_a_partition_heals_into_one_view(n: int, cut: int) -> None:
    sim = Simulation(n, seed=31)
    sim.run_for(2.0)
    names = list(sim.nodes)
    side_a, side_b = names[:cut], names[cut:]
    sim.partition(side_a, side_b)
    # Until the (larger) side b has buried side a.
    assert sim.run_until_true(lambda: sim.all_see(side_a[0], ("dead",), side_b), 40.0) is not None
    sim.heal()

    def one_view() -> bool:
        return sim.converged() and len({sim.nodes[x].digest() for x in names}) == 1

    took = sim.run_until_true(one_view, 60.0)
    assert took is not None, "views did not converge after the partition healed"
    assert sim.false_dead(since=sim.now) == []


@pytest.mark.timeout(30)
def test_members_join_through_seeds_and_converge() -> None:
    sim = Simulation(100, seed=41, bootstrap="seeds")
    took = sim.run_until_true(sim.converged, 60.0)
    assert took is not None
    joins = {(o.observer, o.event.node) for o in sim.observed if o.event.kind == "join"}
    assert len(joins) == 100 * 99


@pytest.mark.timeout(30)
def test_a_graceful_leave_is_reported_as_left_not_dead() -> None:
    sim = Simulation(20, seed=43)
    sim.run_for(2.0)
    sim.leave("n7")
    sim.run_for(0.2)
    sim.crash("n7")  # the process exits after leaving
    assert sim.run_until_true(lambda: sim.all_see("n7", ("left",)), 10.0) is not None
    assert not any(o.event.kind == "dead" and o.event.node == "n7" for o in sim.observed)


@pytest.mark.timeout(30)
def test_dead_members_are_forgotten_after_the_retention_time() -> None:
    from ringrift_fleet.membership.swim.protocol import SwimConfig

    sim = Simulation(10, seed=47, config=SwimConfig(dead_retention=20.0))
    sim.run_for(2.0)
    sim.crash("n4")
    assert sim.run_until_true(lambda: sim.all_see("n4", ("dead",)), 20.0) is not None
    assert sim.run_until_true(lambda: sim.all_see("n4", (None,)), 40.0) is not None  # type: ignore[arg-type]


def test_the_simulation_replays_exactly_with_the_same_seed() -> None:
    def run() -> list[tuple[str, str, str, float]]:
        sim = Simulation(30, seed=7, loss=0.05)
        sim.run_for(3.0)
        sim.crash("n3")
        sim.run_for(10.0)
        return [(o.observer, o.event.kind, o.event.node, round(o.t, 9)) for o in sim.observed]

    first = run()
    assert first and first == run()


@pytest.mark.timeout(120)
def test_stale_suspicions_are_corrected_before_they_time_out_at_1000_members() -> None:
    # Seeds 11 and 17 each ended in false deaths before stale gossipers were
    # corrected: a refutation had spent its retransmissions while a suspicion
    # still circled among the few who had missed it.
    for seed in (11, 17):
        sim = Simulation(1000, seed=seed, loss=0.10)
        sim.run_for(8.0)
        assert sim.false_dead() == [], seed
        assert sim.converged()


def test_a_seeded_simulation_replays_exactly_whatever_the_hash_seed() -> None:
    code = (
        "import hashlib; from ringrift_fleet.membership.simulation import Simulation\n"
        "sim = Simulation(60, seed=5, loss=0.1); sim.run_for(4.0); sim.crash('n7')\n"
        "sim.run_for(6.0)\n"
        "print(hashlib.sha256(repr([(o.observer, o.event.kind, o.event.node, round(o.t, 9))"
        " for o in sim.observed]).encode()).hexdigest())\n"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": str(h)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        for h in (0, 14, 4242)
    }
    assert len(runs) == 1, runs


@pytest.mark.timeout(60)
@pytest.mark.parametrize("n", [4, 30])
def test_islands_formed_at_start_merge_through_the_inventory_seeds(n: int) -> None:
    """Two halves that joined only each other (the rest did not answer in time)
    find each other through the seeds they do not know as members."""
    sim = Simulation(n, seed=53, bootstrap="islands")
    names = list(sim.nodes)
    half = names[: n // 2]
    assert {names[0], *sim.nodes[names[0]].members} == set(half)  # an island, to begin with
    took = sim.run_until_true(sim.converged, 60.0)
    assert took is not None, "the islands never merged"
    assert len({sim.nodes[x].digest() for x in names}) == 1
    assert sim.false_dead() == []
