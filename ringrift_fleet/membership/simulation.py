# mypy: disallow-any-explicit
"""A deterministic discrete-event simulator for the sans-I/O SWIM core.

A virtual clock, a heap of events (datagram deliveries and node wake-ups),
and a network that loses, delays and partitions datagrams.  Everything random
comes from seeded generators, so a run with the same seed replays exactly and
a failing test can be re-run and inspected.  The nodes run the real protocol
and the real codec (HMAC and all), so byte counts are the real wire sizes.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from ringrift_fleet.membership.base import MembershipEvent
from ringrift_fleet.membership.swim.codec import Addr
from ringrift_fleet.membership.swim.protocol import Output, SwimConfig, SwimNode

_DELIVER, _WAKE, _FALLBACK, _FALLBACK_REPLY = 0, 1, 2, 3


@dataclass
class Observed:
    """An event one node emitted, at virtual time ``t``."""

    observer: str
    event: MembershipEvent
    t: float


@dataclass
class SimNetwork:
    loss: float = 0.0  # probability a datagram is dropped
    delay: tuple[float, float] = (0.001, 0.010)  # uniform one-way delay, s
    groups: dict[str, int] = field(default_factory=dict)  # partition: name -> side
    # the fallback (TCP) channel: None = absent (nobody answers); else its loss
    fallback_loss: float | None = 0.0

    def blocked(self, a: str, b: str) -> bool:
        return self.groups.get(a, 0) != self.groups.get(b, 0)


class Simulation:
    """``n`` SWIM nodes named ``n0`` … ``n{n-1}`` on a simulated network."""

    def __init__(
        self,
        n: int,
        *,
        config: SwimConfig | None = None,
        seed: int = 1,
        loss: float = 0.0,
        delay: tuple[float, float] = (0.001, 0.010),
        bootstrap: str = "full",
        key: bytes = b"simulation-key",
        fallback_loss: float | None = 0.0,
    ) -> None:
        """``bootstrap="full"``: every node starts knowing every other (a converged
        cluster); ``"seeds"``: every node joins through ``n0`` and ``n1``;
        ``"islands"``: every node has every other as a seed (an inventory) but the
        two halves start knowing only their own half, as hosts that joined each
        other while the rest could not answer.
        ``loss`` drops datagrams; ``fallback_loss`` is the loss of the fallback (TCP)
        channel, whose round trip takes two datagram delays, or None for no such
        channel (a fallback probe then always goes unanswered)."""
        self.config = config or SwimConfig()
        self.key = key
        self.now = 0.0
        self.rng = random.Random(seed)
        self.seed = seed
        self.net = SimNetwork(loss=loss, delay=delay, fallback_loss=fallback_loss)
        self.nodes: dict[str, SwimNode] = {}
        self.addr_of: dict[str, Addr] = {}
        self.name_at: dict[Addr, str] = {}
        self.crashed: dict[str, float] = {}  # name -> crash time, while down
        self.crash_times: dict[str, list[float]] = {}  # every crash, restarted or not
        self.host_up: set[str] = set()  # crashed processes whose host still answers TCP
        self.observed: list[Observed] = []
        self._heap: list[tuple[float, int, int, object]] = []
        self._seq = 0
        self._wake_at: dict[str, float] = {}
        self._restarts: dict[str, int] = {}
        names = [f"n{i}" for i in range(n)]
        for i, name in enumerate(names):
            addr = (f"10.201.{i // 250}.{i % 250 + 1}", 7946)
            self.addr_of[name] = addr
            self.name_at[addr] = name
        seeds = [self.addr_of[s] for s in names[:2]] if bootstrap == "seeds" else []
        if bootstrap == "islands":
            seeds = [self.addr_of[s] for s in names]
        for name in names:
            self.nodes[name] = self._make(name, seeds, incarnation=0)
        if bootstrap == "full":
            everyone = [(other, self.addr_of[other]) for other in names]
            for node in self.nodes.values():
                node.learn_many(0.0, everyone)
        elif bootstrap == "islands":
            half = n // 2
            for group in (names[:half], names[half:]):
                island = [(other, self.addr_of[other]) for other in group]
                for name in group:
                    self.nodes[name].learn_many(0.0, island)
        for name, node in self.nodes.items():
            self._apply(name, node.start(self.now))

    def _make(self, name: str, seeds: list[Addr], incarnation: int) -> SwimNode:
        restarts = self._restarts.get(name, 0)
        rng = random.Random(f"{self.seed}:{name}:{restarts}")  # str seeds are stable
        return SwimNode(
            name,
            self.addr_of[name],
            key=self.key,
            config=self.config,
            seeds=seeds,
            incarnation=incarnation,
            rng=rng,
        )

    # --- driving -----------------------------------------------------------------------

    def run_until(self, t_end: float, max_steps: int = 50_000_000) -> None:
        """Advance virtual time to ``t_end`` (bounded by ``max_steps`` events)."""
        steps = 0
        heap = self._heap
        while heap and heap[0][0] <= t_end and steps < max_steps:
            t, _, kind, payload = heapq.heappop(heap)
            steps += 1
            self.now = t
            if kind == _WAKE:
                name = payload
                assert isinstance(name, str)
                if self._wake_at.get(name) != t or name in self.crashed:
                    continue  # superseded by an earlier wake-up, or the node is down
                del self._wake_at[name]
                node = self.nodes[name]
                self._apply(name, node.tick(t))
            elif kind == _FALLBACK:
                # The target's shell accepted the connection: it answers on it.
                target, requester, data, deadline, seq = cast(
                    "tuple[str, str, bytes, float, int]", payload
                )
                if target in self.crashed:
                    if target in self.host_up and requester not in self.crashed:
                        # its kernel answers the connect with a reset: port closed
                        refused = self.nodes[requester].fallback_refused(t, seq, target)
                        self._apply(requester, refused)
                    continue
                reply, out = self.nodes[target].answer_fallback(t, data)
                self._apply(target, out)
                back = t + self.rng.uniform(*self.net.delay)
                if reply is not None and back <= deadline:
                    self._push(back, _FALLBACK_REPLY, (requester, reply))
            elif kind == _FALLBACK_REPLY:
                requester, data = cast("tuple[str, bytes]", payload)
                if requester not in self.crashed:
                    self._apply(requester, self.nodes[requester].fallback_ack(t, data))
            else:
                dest, data, src = cast("tuple[Addr, bytes, Addr]", payload)
                name = self.name_at.get(dest)
                if name is None or name in self.crashed:
                    continue
                self._apply(name, self.nodes[name].handle(t, data, src))
        self.now = max(self.now, t_end)

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def _push(self, t: float, kind: int, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, payload))

    def _apply(self, name: str, out: Output) -> None:
        src = self.addr_of[name]
        net = self.net
        rng = self.rng
        for dest, data in out.datagrams:
            if net.loss and rng.random() < net.loss:
                continue
            dest_name = self.name_at.get(dest)
            if dest_name is None or net.blocked(name, dest_name):
                continue
            self._push(self.now + rng.uniform(*net.delay), _DELIVER, (dest, data, src))
        for fb in out.fallback:
            if net.fallback_loss is None or (
                net.fallback_loss and rng.random() < net.fallback_loss
            ):
                continue
            target = self.name_at.get(fb.addr)
            if target is None or net.blocked(name, target):
                continue
            # A connect and a request: the shell gives up at the probe's deadline.
            deadline = self.now + fb.timeout
            there = self.now + 2 * rng.uniform(*net.delay)
            if there <= deadline:
                self._push(there, _FALLBACK, (target, name, fb.payload, deadline, fb.seq))
        for ev in out.events:
            self.observed.append(Observed(name, ev, self.now))
        node = self.nodes[name]
        due = max(node.next_deadline(), self.now + 1e-6)
        current = self._wake_at.get(name)
        if current is None or due < current or current < self.now:
            self._wake_at[name] = due
            self._push(due, _WAKE, name)

    # --- faults --------------------------------------------------------------------------

    def crash(self, name: str, *, host_up: bool = False) -> None:
        """Stop a node dead: no leave message, no more ticks, datagrams to it vanish.
        ``host_up``: only the process died (kill -9, OOM), and its host's kernel
        refuses connections to the SWIM port; otherwise the whole host is gone."""
        if host_up:
            self.host_up.add(name)
        else:
            self.host_up.discard(name)
        self.crashed[name] = self.now
        self.crash_times.setdefault(name, []).append(self.now)
        self._wake_at.pop(name, None)

    def restart(self, name: str, incarnation: int = 0) -> None:
        """Start a fresh process under the same name and address, remembering nothing."""
        self.crashed.pop(name, None)
        self.host_up.discard(name)
        self._restarts[name] = self._restarts.get(name, 0) + 1
        seeds = [self.addr_of[n] for n in self.nodes if n != name and n not in self.crashed][:3]
        self.nodes[name] = self._make(name, seeds, incarnation)
        self._wake_at.pop(name, None)
        self._apply(name, self.nodes[name].start(self.now))

    def leave(self, name: str) -> None:
        self._apply(name, self.nodes[name].leave(self.now))

    def partition(self, *sides: Iterable[str]) -> None:
        """Cut the network between ``sides``; names in no side stay with side 0."""
        self.net.groups = {n: i for i, side in enumerate(sides) for n in side}

    def heal(self) -> None:
        self.net.groups = {}

    # --- looking ---------------------------------------------------------------------------

    def survivors(self) -> list[str]:
        return [n for n in self.nodes if n not in self.crashed]

    def state(self, observer: str, member: str) -> str | None:
        return self.nodes[observer].state_of(member)

    def all_see(
        self, member: str, states: tuple[str, ...], among: Iterable[str] | None = None
    ) -> bool:
        who = list(among) if among is not None else self.survivors()
        return all(self.state(o, member) in states for o in who if o != member)

    def converged(self) -> bool:
        """Every survivor holds every survivor alive (suspect counts as alive) and
        every crashed node dead, left or forgotten."""
        live = self.survivors()
        for o in live:
            node = self.nodes[o]
            for m in live:
                if m != o and node.state_of(m) not in ("alive", "suspect"):
                    return False
            for m in self.crashed:
                if node.state_of(m) in ("alive", "suspect"):
                    return False
        return True

    def run_until_true(self, predicate: object, timeout: float, step: float = 0.5) -> float | None:
        """Advance in ``step`` until ``predicate()``; the virtual time it took, or None."""
        assert callable(predicate)
        start = self.now
        while self.now - start <= timeout:
            if predicate():
                return self.now - start
            self.run_for(step)
        return None

    def detections(
        self, member: str, since: float, kinds: tuple[str, ...] = ("dead",)
    ) -> dict[str, float]:
        """Per survivor, seconds from ``since`` until it first reported ``member`` as ``kinds``."""
        seen: dict[str, float] = {}
        for ob in self.observed:
            if ob.t >= since and ob.event.node == member and ob.event.kind in kinds:
                seen.setdefault(ob.observer, ob.t - since)
        return seen

    def false_dead(self, since: float = 0.0) -> list[Observed]:
        """ "dead" verdicts about members that were not crashed at the time."""
        out = []
        for ob in self.observed:
            if ob.t < since or ob.event.kind != "dead":
                continue
            if not any(t <= ob.t for t in self.crash_times.get(ob.event.node, ())):
                out.append(ob)
        return out

    def bytes_sent(self) -> int:
        return sum(n.stats.bytes_sent for n in self.nodes.values())
