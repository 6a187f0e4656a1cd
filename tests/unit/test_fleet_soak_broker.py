"""The soak on a Sentinel set (``fleet_soak.py --broker sentinel``): when it kills the
Redis primary, and how it reads a failover out of its samples.  The run itself is a
benchmark (docs/benchmarks.md); these pin the arithmetic its figures come from."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from fleet_soak import LEASE_LOST_LINE, analyse, broker_failovers, sampler_stalls, schedule

A, B = "10.207.0.40:6379", "10.207.0.41:6379"


def test_the_primary_is_killed_every_20_minutes_only_on_a_sentinel_set() -> None:
    hour = schedule("full", 60, "sentinel")
    kills = [e.at for e in hour if e.kind == "broker_kill"]
    assert kills == [1050.0, 2250.0, 3450.0]
    # never on the same second as another fault: one fault's effect at a time
    others = {e.at for e in hour if e.kind != "broker_kill"}
    assert not others & set(kills)
    assert not [e for e in schedule("full", 60) if e.kind == "broker_kill"]
    short = [e for e in schedule("full", 12, "sentinel") if e.kind == "broker_kill"]
    assert len(short) == 1 and 0 < short[0].at < 12 * 60 - 60
    assert [e.at for e in schedule("ci", 5, "sentinel") if e.kind == "broker_kill"] == [125.0]


def view(primary: str | None, peers: list[str]) -> dict[str, Any]:
    return {
        "role": "follower",
        "leader_id": "h0",
        "peers": peers,
        "uptime_s": 100.0,
        "broker_up": True,
        "broker_primary": primary,
    }


def sample(
    at: float, primary: str | None, seen: dict[str, str | None], error: bool
) -> dict[str, Any]:
    peers = list(seen)
    return {
        "at": at,
        "status": {h: view(p, [x for x in peers if x != h]) for h, p in seen.items()},
        "ms": {h: 5.0 for h in seen},
        "leases": {"_error": True} if error else {"selfplay:a": ["h0@cpu", 1]},
        "primary": primary,
    }


def failover_samples() -> list[dict[str, Any]]:
    out = []
    for t in range(90, 131):
        sentinels = A if t < 106 else None if t < 107 else B
        h1 = A if t < 109 else B  # h1's coordinator hears of it last
        out.append(
            sample(float(t), sentinels, {"h0": B if t >= 107 else A, "h1": h1}, 100 <= t < 108)
        )
    return out


def kill_event() -> dict[str, Any]:
    return {
        "kind": "broker_kill",
        "hosts": [],
        "target": A,
        "started": 100.0,
        "ended": 115.0,
        "duration": 15.0,
        "note": "",
    }


def test_a_failover_is_timed_from_the_kill_to_the_sentinels_coordinators_and_readers() -> None:
    (got,) = broker_failovers(failover_samples(), [kill_event()], t0=90.0)
    assert got == {
        "at_s": 10.0,
        "killed": A,
        "promoted": B,
        "failover_s": 7.0,
        "coordinators_followed_s": 9.0,
        "sampler_blind_s": 8.0,
    }


def test_a_failover_that_never_came_is_reported_as_none() -> None:
    stuck = [sample(float(t), A, {"h0": A}, True) for t in range(100, 130)]
    (got,) = broker_failovers(stuck, [kill_event()], t0=90.0)
    assert got["failover_s"] is None and got["promoted"] is None


def test_the_busy_fraction_leaves_out_the_fleet_wide_window_of_a_primary_kill() -> None:
    samples = failover_samples()
    for s in samples:  # nobody busy while the broker moves (but leases readable)
        if 100 <= s["at"] <= 135:
            s["leases"] = {}
    line, detail = analyse(
        samples,
        [kill_event()],
        [],
        {},
        hosts=["h0", "h1"],
        worker_down={},
        coord_restarts={},
        t0=90.0,
        t_end=130.0,
    )
    assert line["worker_busy_fraction"] == 0.5  # h0 busy, h1 not: only before the kill
    assert detail["worker_busy_fraction_all"] < 0.5
    assert line["broker"] == "sentinel"
    assert line["broker_primary_kills"] == 1 and line["broker_failover_max_s"] == 7.0
    assert detail["broker_down_said_outside_broker_faults"] == 0


def test_a_kill_the_sentinels_never_acted_on_is_no_failover_and_the_next_kill_is_its_own() -> None:
    """The 60-minute run's second kill: the Sentinels were in TILT, the killed primary
    came back 15 s later and stayed primary; the next kill (20 min on) moved it.  The
    first is no failover (not one of 20 minutes), with the outage the clients saw."""
    samples = []
    for t in range(100, 200):  # A killed at 100, back and readable at 116; B promoted at 157
        primary = A if t < 157 else B
        samples.append(sample(float(t), primary, {"h0": primary}, 100 <= t < 116 or 150 <= t < 157))
    second = {**kill_event(), "started": 150.0, "ended": 165.0}
    first, later = broker_failovers(samples, [kill_event(), second], t0=90.0)
    assert first["failover_s"] is None and first["promoted"] is None
    assert first["sampler_blind_s"] == 16.0
    assert later["failover_s"] == 7.0 and later["promoted"] == B


def test_the_machine_stalls_are_the_long_gaps_between_sampler_rounds() -> None:
    at = [0.0, 1.0, 2.5, 14.1, 15.0, 21.2]
    assert sampler_stalls([{"at": 100 + t} for t in at], t0=100.0) == [[2.5, 11.6], [15.0, 6.2]]


def test_a_copy_stopped_for_its_lost_lease_is_read_from_the_worker_log() -> None:
    log = (
        "[2026-12-06 05:32:52,695: INFO/MainProcess] Task ringrift.selfplay[s:1.a1] received\n"
        "[2026-12-06 05:32:52,786: INFO/ForkPoolWorker-1] job selfplay:hex8_2p:253 attempt 1 "
        "stopped: run lease taken over by a newer attempt\n"
        "[2026-12-06 05:32:56,321: INFO/ForkPoolWorker-1] job selfplay:hex8_2p:253 attempt 1 "
        "stopped: attempt revoked: the leader placed the job again under a new attempt\n"
    )
    found = [(m.group(1), m.group(2)) for m in LEASE_LOST_LINE.finditer(log)]
    assert found == [("2026-12-06 05:32:52", "786")]  # a revocation is not a lost lease
