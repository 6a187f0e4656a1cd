"""The fallback probe (memberlist's TCP ping), in the sans-I/O core and the simulator.

The core never opens a socket: an unanswered direct ping makes it emit a
``FallbackProbe`` effect beside the ping-reqs, and the reply comes back through
``SwimNode.fallback_ack``.  The simulator plays the shell, with a fallback
channel that UDP loss does not touch.
"""

from __future__ import annotations

import random
import statistics

import pytest

from ringrift_fleet.membership.simulation import Simulation
from ringrift_fleet.membership.swim import codec
from ringrift_fleet.membership.swim.protocol import FallbackProbe, SwimConfig, SwimNode

KEY = b"k"


def _node(name: str, port: int, **kw: object) -> SwimNode:
    node = SwimNode(name, ("127.0.0.1", port), key=KEY, rng=random.Random(1), **kw)  # type: ignore[arg-type]
    node.start(0.0)
    return node


def _unanswered_probe(a: SwimNode) -> tuple[float, FallbackProbe | None]:
    """Tick ``a`` (every datagram lost) until its direct ping to b times out;
    returns the time and the fallback probe the core asked for, if any."""
    t = 0.0
    while t < 5.0:
        t += 0.01
        out = a.tick(t)
        if out.fallback:
            assert len(out.fallback) == 1
            return t, out.fallback[0]
        if a.stats.probes and a._probe is not None and a._probe.indirect_sent:
            return t, None
    raise AssertionError("a never probed b")


def _pair(**cfg: object) -> tuple[SwimNode, SwimNode]:
    config = SwimConfig(**cfg)  # type: ignore[arg-type]
    a, b = _node("a", 1, config=config), _node("b", 2, config=config)
    a.learn(0.0, "b", b.addr)
    b.learn(0.0, "a", a.addr)
    return a, b


def _run_to_probe_end(a: SwimNode, t: float) -> None:
    seq = a._probe.seq if a._probe is not None else -1
    for _ in range(200):
        t += 0.01
        a.tick(t)
        if a._probe is None or a._probe.seq != seq:
            return
    raise AssertionError("the probe never ended")


def test_an_unanswered_direct_ping_asks_the_shell_for_a_fallback_probe() -> None:
    a, _ = _pair()
    _, fb = _unanswered_probe(a)
    assert fb is not None and fb.target == "b" and fb.addr == ("127.0.0.1", 2)
    cfg = a.config
    assert 0 < fb.timeout <= cfg.ping_interval - cfg.ping_timeout + 0.011
    ping = codec.decode(fb.payload, KEY)
    assert ping.kind == codec.PING and ping.target == "b" and ping.seq == fb.seq
    assert a.stats.fallback_probes == 1


def test_a_fallback_ack_spares_the_target_a_suspicion() -> None:
    a, b = _pair()
    t, fb = _unanswered_probe(a)
    assert fb is not None
    reply, _ = b.answer_fallback(t, fb.payload)
    assert reply is not None
    a.fallback_ack(t + 0.01, reply)
    _run_to_probe_end(a, t)
    assert a.state_of("b") == "alive"
    assert (a.stats.fallback_acks, a.stats.fallback_saves, a.stats.probe_failures) == (1, 1, 0)


def test_without_a_fallback_ack_the_target_is_suspected_as_before() -> None:
    a, _ = _pair()
    t, fb = _unanswered_probe(a)
    assert fb is not None
    _run_to_probe_end(a, t)
    assert a.state_of("b") == "suspect"
    assert a.stats.probe_failures == 1 and a.stats.fallback_saves == 0


@pytest.mark.parametrize("forgery", ["wrong_key", "wrong_seq", "wrong_sender", "a_ping"])
def test_a_forged_or_stray_fallback_reply_does_not_count(forgery: str) -> None:
    a, _ = _pair()
    t, fb = _unanswered_probe(a)
    assert fb is not None
    msg = {
        "wrong_key": codec.Message(codec.ACK, "b", fb.seq),
        "wrong_seq": codec.Message(codec.ACK, "b", fb.seq + 1000),
        "wrong_sender": codec.Message(codec.ACK, "c", fb.seq),
        "a_ping": codec.Message(codec.PING, "b", fb.seq, target="a"),
    }[forgery]
    reply = codec.encode(msg, b"other-key" if forgery == "wrong_key" else KEY)
    a.fallback_ack(t + 0.01, reply)
    _run_to_probe_end(a, t)
    assert a.state_of("b") == "suspect"
    assert a.stats.fallback_acks == 0 and sum(a.stats.dropped.values()) >= 1


def test_a_fallback_ping_for_another_member_or_garbage_gets_no_answer() -> None:
    _, b = _pair()
    for_c = codec.encode(codec.Message(codec.PING, "a", 7, target="c"), KEY)
    assert b.answer_fallback(0.1, for_c)[0] is None
    assert b.answer_fallback(0.1, b"\x00junk")[0] is None
    wrong_key = codec.encode(codec.Message(codec.PING, "a", 7, target="b"), b"x")
    assert b.answer_fallback(0.1, wrong_key)[0] is None
    good = codec.encode(codec.Message(codec.PING, "a", 7, target="b"), KEY)
    reply = b.answer_fallback(0.1, good)[0]
    assert reply is not None
    ack = codec.decode(reply, KEY)
    assert ack.kind == codec.ACK and ack.seq == 7 and ack.sender == "b"


def test_a_suspect_answering_a_fallback_ping_refutes_our_verdict() -> None:
    """The fallback ping carries our verdict first, like any message to a suspect."""
    _, b = _pair()
    verdict = codec.Update(codec.SUSPECT, "b", 0, origin="a")
    ping = codec.encode(codec.Message(codec.PING, "a", 3, target="b", updates=[verdict]), KEY)
    reply, _ = b.answer_fallback(0.1, ping)
    assert reply is not None and b.incarnation == 1
    assert codec.Update(codec.ALIVE, "b", 1, b.addr, {}) in codec.decode(reply, KEY).updates


def test_the_fallback_probe_can_be_switched_off() -> None:
    a, _ = _pair(fallback_probe=False)
    _, fb = _unanswered_probe(a)
    assert fb is None and a.stats.fallback_probes == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_false_death_nor_suspicion_at_thirty_percent_loss(seed: int) -> None:
    """N=5, 120 s of 30 % datagram loss: the fallback answers every UDP miss."""
    sim = Simulation(5, seed=seed, loss=0.30)
    sim.run_for(120.0)
    assert sim.false_dead() == []
    assert [o for o in sim.observed if o.event.kind == "suspect"] == []
    assert sum(n.stats.fallback_saves for n in sim.nodes.values()) > 20


def test_without_the_fallback_thirty_percent_loss_kills_live_members() -> None:
    """The same run with no fallback channel: what the fallback prevents."""
    sim = Simulation(5, seed=1, loss=0.30, fallback_loss=None)
    sim.run_for(120.0)
    assert len(sim.false_dead()) >= 3


def test_real_deaths_are_still_detected_fast_at_five_members() -> None:
    """A crashed process answers no fallback either: p50 <= 2 s, max <= 3 s."""
    samples: list[float] = []
    for seed in range(1, 6):
        sim = Simulation(5, seed=seed)
        sim.run_for(3.0)
        t0 = sim.now
        sim.crash("n3")
        sim.run_for(8.0)
        seen = sim.detections("n3", t0)
        assert set(seen) == {"n0", "n1", "n2", "n4"}
        samples += seen.values()
    assert statistics.median(samples) <= 2.0 and max(samples) <= 3.0


def test_a_partition_cuts_the_fallback_too() -> None:
    sim = Simulation(5, seed=4)
    sim.run_for(2.0)
    sim.partition(["n0"], ["n1", "n2", "n3", "n4"])
    assert sim.run_until_true(lambda: sim.all_see("n0", ("dead",)), 10.0) is not None


def _four(**cfg: object) -> SwimNode:
    """``a`` knowing three members (enough for Lifeguard's confirmations to count)."""
    config = SwimConfig(**cfg)  # type: ignore[arg-type]
    a = _node("a", 1, config=config)
    for i, name in enumerate(("b", "c", "d"), start=2):
        a.learn(0.0, name, ("127.0.0.1", i))
    return a


def _suspicion_after(refused: bool) -> tuple[SwimNode, str, float]:
    """``a``'s probe goes unanswered (its fallback refused or silent); returns the
    target and how long its suspicion will run."""
    a = _four()
    t, fb = _unanswered_probe(a)
    assert fb is not None
    if refused:
        a.fallback_refused(t + 0.002, fb.seq, fb.target)
    _run_to_probe_end(a, t)
    m = a.members[fb.target]
    assert m.state == "suspect" and m.suspicion is not None
    return a, fb.target, m.suspicion.deadline - m.suspicion.start


def _sealed(msg: codec.Message, *updates: codec.Update) -> bytes:
    wires = [codec.encode_update(u) for u in updates]
    return codec.seal(KEY, codec.assemble(codec.body_prefix(msg), None, wires))


def test_a_refused_fallback_runs_a_one_period_suspicion_at_once() -> None:
    """The host answered with a reset: the process is gone, no confirmations needed."""
    a, target, timeout = _suspicion_after(refused=True)
    lo, hi = a.config.suspicion_bounds(4)
    assert timeout == pytest.approx(min(lo, a.config.ping_interval * a.scale))
    assert a.stats.fallback_refusals == 1 and a.stats.probe_failures == 1
    _, _, silent = _suspicion_after(refused=False)
    assert silent == pytest.approx(hi) and timeout < silent
    # still a suspicion: a live member's refutation clears it (alive, higher incarnation)
    refute = codec.Update(codec.ALIVE, target, 1, ("127.0.0.1", 2))
    a.handle(1.0, _sealed(codec.Message(codec.ACK, target, 999), refute), ("127.0.0.1", 2))
    assert a.state_of(target) == "alive"


def test_a_refusal_settles_a_suspicion_that_gossip_started() -> None:
    a = _four()
    t, fb = _unanswered_probe(a)
    assert fb is not None
    m = a.members[fb.target]
    a._suspect(t, m, m.incarnation, "c")  # heard from c first: the longest timeout
    assert m.suspicion is not None and m.suspicion.deadline - t == pytest.approx(
        a.config.suspicion_bounds(4)[1]
    )
    a.fallback_refused(t + 0.002, fb.seq, fb.target)
    _run_to_probe_end(a, t)
    assert m.suspicion is not None
    lo = min(a.config.suspicion_bounds(4)[0], a.config.ping_interval * a.scale)
    assert m.suspicion.deadline - t == pytest.approx(lo)


def test_a_refusal_for_another_probe_changes_nothing() -> None:
    a = _four()
    t, fb = _unanswered_probe(a)
    assert fb is not None
    a.fallback_refused(t + 0.002, fb.seq + 1, fb.target)  # a stale probe's outcome
    other = next(n for n in ("b", "c", "d") if n != fb.target)
    a.fallback_refused(t + 0.002, fb.seq, other)
    _run_to_probe_end(a, t)
    m = a.members[fb.target]
    assert m.suspicion is not None
    assert m.suspicion.deadline - m.suspicion.start == pytest.approx(
        a.config.suspicion_bounds(4)[1]
    )
    assert a.stats.fallback_refusals == 0 and a.stats.dropped.get("late_fallback") == 2


def test_a_killed_process_on_a_live_host_is_declared_dead_sooner_at_thirty_members() -> None:
    """Simulated: the same kills, the host down (silence) or up (refusal)."""

    def detections(host_up: bool) -> list[float]:
        out: list[float] = []
        for seed in range(1, 7):
            sim = Simulation(30, seed=seed)
            sim.run_for(8.0)
            t0 = sim.now
            sim.crash("n7", host_up=host_up)
            sim.run_for(12.0)
            seen = sim.detections("n7", t0)
            assert len(seen) == 29, (host_up, seed, seen)
            out += seen.values()
        return sorted(out)

    silent, refused = detections(False), detections(True)
    p99 = lambda xs: xs[int(0.99 * (len(xs) - 1))]  # noqa: E731
    assert statistics.median(refused) < statistics.median(silent) - 0.3, (
        statistics.median(refused),
        statistics.median(silent),
    )
    assert p99(refused) < p99(silent), (p99(refused), p99(silent))
