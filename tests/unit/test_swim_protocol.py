"""The SWIM state machine driven by hand or in small simulations: one behaviour per test."""

from __future__ import annotations

import itertools
import random

import pytest

from ringrift_fleet.errors import ValidationError
from ringrift_fleet.membership.simulation import Simulation
from ringrift_fleet.membership.swim import codec
from ringrift_fleet.membership.swim.protocol import Suspicion, SwimConfig, SwimNode

KEY = b"k"


def _node(name: str = "a", port: int = 1, **kw: object) -> SwimNode:
    node = SwimNode(name, ("127.0.0.1", port), key=KEY, rng=random.Random(1), **kw)  # type: ignore[arg-type]
    node.start(0.0)
    return node


def test_suspicion_timeout_shrinks_with_independent_confirmations() -> None:
    s = Suspicion(start=10.0, lo=1.0, hi=6.0, k=3, confirmers={"a"})
    deadlines = [s.deadline]
    for who in ("b", "c", "d"):
        assert s.confirm(who)
        deadlines.append(s.deadline)
    assert deadlines[0] == 16.0
    assert deadlines == sorted(deadlines, reverse=True)
    assert deadlines[-1] == pytest.approx(11.0)
    assert not s.confirm("b"), "the same member confirming twice is not independent"


def test_suspicion_bounds_grow_with_log_of_cluster_size() -> None:
    cfg = SwimConfig(ping_interval=0.5, suspicion_mult=2.0, suspicion_max_mult=3.0)
    assert cfg.suspicion_bounds(5) == (1.0, 3.0)
    lo, hi = cfg.suspicion_bounds(1000)
    assert lo == pytest.approx(3.0) and hi == pytest.approx(9.0)
    assert SwimConfig(failure_timeout=6.0).suspicion_bounds(1000) == (2.0, 6.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ping_interval": 0}, "ping_interval"),
        ({"ping_timeout": 0.6}, "ping_timeout"),
        ({"indirect_probes": -1}, "indirect_probes"),
        ({"failure_timeout": -2.0}, "failure_timeout"),
        ({"max_datagram": 100}, "max_datagram"),
    ],
)
def test_bad_swim_config_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=f"SwimConfig.{field}"):
        SwimConfig(**kwargs)  # type: ignore[arg-type]


def test_swim_config_comes_from_p2p_config() -> None:
    from ringrift_fleet.config import P2PConfig

    cfg = SwimConfig.from_p2p_config(P2PConfig(SWIM_PING_INTERVAL=0.8, SWIM_INDIRECT_PROBES=5))
    assert cfg.ping_interval == 0.8 and cfg.indirect_probes == 5


def test_junk_datagrams_are_counted_and_change_nothing() -> None:
    node = _node()
    node.learn(0.0, "b", ("127.0.0.1", 2))
    before = (node.incarnation, node.state_of("b"), node.digest())
    junk = [
        b"",
        b"\xff" * 50,
        b"x" * 5000,
        codec.encode(codec.Message(codec.PING, "evil", 1, target="a"), b"wrong-key"),
        codec.seal(KEY, b'["p","evil",1]'),
        codec.encode(
            codec.Message(
                codec.PING,
                "evil",
                1,
                target="a",
                updates=[codec.Update(codec.DEAD, "b", 9, origin="x")],
            ),
            b"wrong-key",
        ),
    ]
    for data in junk:
        out = node.handle(1.0, data, ("127.0.0.1", 9))
        assert out.datagrams == [] and out.events == []
    assert (node.incarnation, node.state_of("b"), node.digest()) == before
    assert node.stats.dropped == {
        "truncated": 1,
        "garbage": 1,
        "oversized": 1,
        "forged": 2,
        "malformed": 1,
    }


def test_a_ping_is_answered_with_an_ack_carrying_the_same_request_id() -> None:
    a, b = _node("a", 1), _node("b", 2)
    ping = codec.encode(codec.Message(codec.PING, "b", 42, target="a"), KEY)
    out = a.handle(0.1, ping, b.addr)
    assert len(out.datagrams) == 1
    addr, data = out.datagrams[0]
    ack = codec.decode(data, KEY)
    assert addr == b.addr and ack.kind == codec.ACK and ack.seq == 42


def test_a_suspected_member_refutes_by_raising_its_incarnation() -> None:
    a = _node("a", 1)
    verdict = codec.Update(codec.SUSPECT, "a", a.incarnation, origin="b")
    out = a.handle(
        0.1,
        codec.encode(codec.Message(codec.PING, "b", 1, target="a", updates=[verdict]), KEY),
        ("127.0.0.1", 2),
    )
    assert a.incarnation == 1 and a.stats.refutations == 1 and a.lhm == 1
    ack = codec.decode(out.datagrams[0][1], KEY)
    assert codec.Update(codec.ALIVE, "a", 1, a.addr, {}) in ack.updates


def test_a_short_outage_is_suspected_then_refuted_never_dead() -> None:
    sim = Simulation(12, seed=5)
    sim.run_for(2.0)
    others = [n for n in sim.nodes if n != "n4"]
    sim.partition(["n4"], others)
    assert (
        sim.run_until_true(lambda: any(sim.state(o, "n4") == "suspect" for o in others), 10.0)
        is not None
    )
    sim.heal()
    assert sim.run_until_true(lambda: sim.all_see("n4", ("alive",)), 10.0) is not None
    assert sim.nodes["n4"].incarnation > 0
    assert sim.false_dead() == []


def test_a_cut_off_node_distrusts_itself_not_the_others() -> None:
    sim = Simulation(12, seed=6)
    sim.run_for(2.0)
    sim.partition(["n0"], [n for n in sim.nodes if n != "n0"])
    sim.run_for(4.0)
    assert sim.nodes["n0"].lhm >= 2, "missed nacks raise the local health multiplier"
    assert all(sim.nodes[n].lhm <= 1 for n in sim.nodes if n != "n0")


def test_metadata_is_versioned_by_incarnation_and_the_newest_wins() -> None:
    sim = Simulation(20, seed=8)
    sim.run_for(1.0)
    sim.nodes["n3"].set_metadata(sim.now, {"gpu": "H100", "gpu_count": 8})
    sim._apply("n3", sim.nodes["n3"].set_metadata(sim.now, {"gpu": "H100", "gpu_count": 4}))
    assert (
        sim.run_until_true(
            lambda: all(
                sim.nodes[o].members["n3"].metadata == {"gpu": "H100", "gpu_count": 4}
                for o in sim.nodes
                if o != "n3"
            ),
            10.0,
        )
        is not None
    )
    events = [o for o in sim.observed if o.event.kind == "metadata" and o.event.node == "n3"]
    assert {o.observer for o in events} == set(sim.nodes) - {"n3"}


def test_metadata_too_large_for_a_datagram_is_refused() -> None:
    with pytest.raises(ValidationError, match="metadata"):
        _node(metadata={"blob": "x" * 2000})


def test_every_datagram_respects_the_size_bound() -> None:
    cfg = SwimConfig(max_datagram=600)
    sim = Simulation(60, seed=9, config=cfg, bootstrap="seeds")
    sizes: list[int] = []
    original = sim._apply

    def spy(name: str, out: object) -> None:
        sizes.extend(len(d) for _, d in out.datagrams)  # type: ignore[attr-defined]
        original(name, out)  # type: ignore[arg-type]

    sim._apply = spy  # type: ignore[method-assign]
    assert sim.run_until_true(sim.converged, 60.0) is not None
    assert sizes and max(sizes) <= 600


def test_joining_retries_unanswered_seeds_with_back_off() -> None:
    node = SwimNode("a", ("127.0.0.1", 1), key=KEY, seeds=[("127.0.0.1", 2)], rng=random.Random(2))
    times = []
    out = node.start(0.0)
    now = 0.0
    for _ in range(2000):  # bounded: 100 s in 50 ms steps
        syncs = [d for _, d in out.datagrams if codec.decode(d, KEY).kind == codec.SYNC]
        if syncs:
            times.append(now)
        now += 0.05
        out = node.tick(now)
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(times)]
    assert gaps[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(gaps) <= 15.1


def test_an_update_is_piggybacked_about_lambda_log_n_times_then_dropped() -> None:
    node = _node("a", 1)
    for i in range(9):
        node.learn(0.0, f"m{i}", ("127.0.0.1", 100 + i))
    verdict = codec.Update(codec.DEAD, "m0", 0, origin="x")
    node.handle(
        0.0,
        codec.encode(codec.Message(codec.ACK, "m1", 999, updates=[verdict]), KEY),
        ("127.0.0.1", 101),
    )
    assert node.state_of("m0") == "dead"
    limit = node.config.retransmits(len(node.live_names()) + 1)  # ceil(3 × log10(9 + 1))
    assert limit == 3
    carried = 0
    for seq in range(20):  # answer 20 pings from m2: each ack piggybacks what is queued
        ping = codec.encode(codec.Message(codec.PING, "m2", seq, target="a"), KEY)
        for _, data in node.handle(0.1, ping, ("127.0.0.1", 102)).datagrams:
            carried += verdict in codec.decode(data, KEY).updates
    assert carried == limit


def test_a_leaving_node_says_goodbye_to_every_member_directly() -> None:
    sim = Simulation(20, seed=9)
    sim.run_for(1.0)
    out = sim.nodes["n7"].leave(sim.now)
    told = set()
    for addr, data in out.datagrams:
        msg = codec.decode(data, sim.key)
        if codec.Update(codec.LEFT, "n7", 0) in msg.updates:
            told.add(sim.name_at[addr])
    assert told == set(sim.nodes) - {"n7"}


def _verdict(node: SwimNode, now: float, update: codec.Update) -> list[str]:
    ping = codec.Message(codec.PING, "c", 1, target=node.name, updates=[update])
    return [e.kind for e in node.handle(now, codec.encode(ping, KEY), ("127.0.0.1", 3)).events]


def test_a_goodbye_heard_after_a_death_verdict_corrects_it_to_left() -> None:
    a = _node("a", 1)
    a.learn(0.0, "b", ("127.0.0.1", 2), incarnation=5)
    assert _verdict(a, 0.1, codec.Update(codec.DEAD, "b", 5, origin="c")) == ["dead"]
    assert _verdict(a, 0.2, codec.Update(codec.LEFT, "b", 5)) == ["left"]
    assert a.state_of("b") == "left"
    # ...and a death verdict arriving after the goodbye changes nothing.
    assert _verdict(a, 0.3, codec.Update(codec.DEAD, "b", 5, origin="c")) == []
    assert a.state_of("b") == "left"
    # An older incarnation's goodbye does not bury a newer life.
    a.learn(0.4, "d", ("127.0.0.1", 4), incarnation=7)
    assert _verdict(a, 0.5, codec.Update(codec.LEFT, "d", 6)) == []
    assert a.state_of("d") == "alive"


def test_a_stale_verdict_is_answered_with_the_refutation_we_hold() -> None:
    a = _node("a", 1)
    a.learn(0.0, "b", ("127.0.0.1", 2), incarnation=1)
    a.learn(0.0, "c", ("127.0.0.1", 3))
    stale = codec.Update(codec.SUSPECT, "b", 0, origin="c")
    # A ping carrying it: the ack tells the gossiper b is alive at incarnation 1.
    ping = codec.Message(codec.PING, "c", 7, target="a", updates=[stale])
    out = a.handle(0.1, codec.encode(ping, KEY), ("127.0.0.1", 3))
    [(addr, data)] = out.datagrams
    ack = codec.decode(data, KEY)
    assert addr == ("127.0.0.1", 3) and ack.kind == codec.ACK
    assert codec.Update(codec.ALIVE, "b", 1, ("127.0.0.1", 2), {}) in ack.updates
    assert a.state_of("b") == "alive"
    # An ack carrying a stale death: nothing answers an ack, so we ping the gossiper.
    dead = codec.Update(codec.DEAD, "b", 0, origin="c")
    ack_in = codec.Message(codec.ACK, "c", 99, updates=[dead])
    out = a.handle(1.0, codec.encode(ack_in, KEY), ("127.0.0.1", 3))
    msgs = [(addr, codec.decode(d, KEY)) for addr, d in out.datagrams]
    assert any(
        addr == ("127.0.0.1", 3)
        and m.kind == codec.PING
        and codec.Update(codec.ALIVE, "b", 1, ("127.0.0.1", 2), {}) in m.updates
        for addr, m in msgs
    )


def test_pending_corrections_are_bounded_and_the_oldest_make_room() -> None:
    from ringrift_fleet.membership.swim.protocol import MAX_CORRECTED_PEERS

    a = _node("a", 1)
    a.learn(0.0, "b", ("127.0.0.1", 2), incarnation=1)
    # Acks from strangers we cannot ping back: their corrections wait.
    for i in range(MAX_CORRECTED_PEERS + 5):
        stale = codec.Update(codec.SUSPECT, "b", 0, origin=f"s{i}")
        ack = codec.Message(codec.ACK, f"s{i}", 1, updates=[stale])
        a.handle(0.1, codec.encode(ack, KEY), ("127.0.0.1", 1000 + i))
    assert len(a._corrections) == MAX_CORRECTED_PEERS
    assert "s0" not in a._corrections and f"s{MAX_CORRECTED_PEERS + 4}" in a._corrections
