# mypy: disallow-any-explicit
"""The SWIM state machine, sans I/O: datagrams and clock ticks in, datagrams and events out.

:class:`SwimNode` never touches a socket or a clock.  The transport (or the
simulator) calls :meth:`SwimNode.handle` when a datagram arrives,
:meth:`SwimNode.tick` when :meth:`SwimNode.next_deadline` passes, and sends
what they return.  Randomness comes from an injected ``random.Random``, so a
seeded simulation of 1,000 nodes replays exactly.

What it implements (SWIM, Das et al. 2002, with HashiCorp's Lifeguard
refinements, Dadgar et al. 2018):

* one probe per protocol period, round-robin over a shuffled member list;
  direct ping, then ``indirect_probes`` ping-reqs through random members, who
  answer with a nack when the target stays silent;
* suspicion refuted by the suspect raising its incarnation; the suspicion
  timeout starts at its maximum and shrinks towards the minimum as independent
  confirmations arrive; a "local health multiplier" stretches our own probe
  interval and timeout while we miss acks or nacks (we are probably the sick one);
* updates piggybacked on every message, each retransmitted about
  ``λ·log10(N+1)`` times, the least-sent first;
* a periodic push-pull digest exchange with a random member, escalating to a
  full state exchange when the digests differ, plus reconnect syncs to dead
  members and to seeds that are not members (yet), so a healed partition, or
  islands formed at start, converge to one view;
* "you are dead to me" notices: any message we send to a member we hold
  suspect, dead or left carries that verdict first, so a live member refutes
  at the first contact (Lifeguard's buddy system, generalised);
* graceful leave, dead members forgotten after ``dead_retention``, and joins
  through seeds with exponential back-off;
* a fallback probe that does not ride on UDP (memberlist's TCP ping): when the
  direct ping goes unanswered the core asks the shell, alongside the ping-reqs,
  to ping the target over TCP (a :class:`FallbackProbe` in the output); a reply
  handed back through :meth:`SwimNode.fallback_ack` before the period ends
  spares the target a suspicion.  Lossy UDP then costs no false deaths, while
  a dead process, which answers neither, is suspected exactly as before; when
  its host refuses the connection (:meth:`SwimNode.fallback_refused`: the host
  is up, nothing listens on the SWIM port) the suspicion runs one protocol
  period instead of waiting for confirmations;
* a death is pushed: whoever learns of it pings ``verdict_push`` random members
  at once with the verdict first, so it spreads in round trips, not periods.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

from ringrift_fleet.errors import ValidationError
from ringrift_fleet.jsontypes import JSONMapping
from ringrift_fleet.membership.base import MembershipEvent
from ringrift_fleet.membership.swim import codec
from ringrift_fleet.membership.swim.codec import (
    ACK,
    ALIVE,
    DEAD,
    LEFT,
    NACK,
    PING,
    PING_REQ,
    SUSPECT,
    SYNC,
    SYNC_BUCKETS,
    SYNC_ENTRIES,
    SYNC_REPLY_ALWAYS,
    SYNC_REPLY_IF_DIFFERENT,
    Addr,
    DecodeError,
    Message,
    Update,
)
from ringrift_fleet.membership.swim.config import SwimConfig
from ringrift_fleet.membership.swim.state import (
    FallbackProbe,
    Member,
    Output,
    Stats,
    Suspicion,
)

__all__ = ["FallbackProbe", "Member", "Output", "Stats", "Suspicion", "SwimConfig", "SwimNode"]


@dataclass(slots=True)
class _Probe:
    target: str
    seq: int
    direct_deadline: float
    end: float
    indirect_sent: bool = False
    expected_nacks: int = 0
    nacks: int = 0
    acked: bool = False
    fallback_acked: bool = False  # only the fallback channel answered
    refused: bool = False  # the target's host refused the fallback connection


@dataclass(slots=True)
class _Forward:
    requester: Addr
    requester_name: str
    seq: int
    nack_deadline: float


@dataclass(slots=True)
class _Queued:
    update: Update
    wire: bytes
    sent: int = 0


N_BUCKETS = 128  # push-pull compares this many digests before sending entries
LEAVE_DIRECT = 64  # a leaving node tells this many members directly, the rest by gossip
MAX_CORRECTED_PEERS = 64  # stale gossipers awaiting a correction (bounded memory)
MAX_CORRECTIONS_PER_PEER = 8

_LIVE = (ALIVE, SUSPECT)


@functools.lru_cache(maxsize=65536)
def _bucket(name: str) -> int:
    return hashlib.blake2b(name.encode(), digest_size=2).digest()[0] % N_BUCKETS


@functools.lru_cache(maxsize=65536)
def _entry_hash(name: str, incarnation: int) -> int:
    return int.from_bytes(
        hashlib.blake2b(f"{name}\0{incarnation}".encode(), digest_size=8).digest(), "big"
    )


_GONE = (DEAD, LEFT)


class SwimNode:
    """One member's view of the cluster."""

    def __init__(
        self,
        name: str,
        addr: Addr,
        *,
        key: bytes = b"",
        config: SwimConfig | None = None,
        seeds: Iterable[Addr] = (),
        metadata: JSONMapping | None = None,
        incarnation: int = 0,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.addr = addr
        self.key = key
        self.config = config or SwimConfig()
        self.seeds: list[Addr] = [(str(h), int(p)) for h, p in seeds if (h, p) != tuple(addr)]
        self.rng = rng or random.Random()
        self.incarnation = incarnation
        self.metadata: JSONMapping = dict(metadata or {})
        self._check_metadata(self.metadata)
        self.stats = Stats()
        self.members: dict[str, Member] = {}
        self.lhm = 0  # local health score (Lifeguard)
        self.started = False
        self.leaving = False
        self._seq = 0
        self._live: list[str] = []  # alive or suspect, for O(1) random choice
        self._live_pos: dict[str, int] = {}
        # Ordered (dicts, not sets) so that a seeded simulation replays exactly
        # whatever PYTHONHASHSEED is: random picks are made from these.
        self._gone: dict[str, None] = {}  # dead or left, not yet forgotten
        self._suspects: dict[str, None] = {}  # members with a running suspicion timer
        # sender -> members it gossiped a stale verdict on, which we hold alive at
        # a newer incarnation: our next datagram to it carries the correction.
        self._corrections: dict[str, dict[str, None]] = {}
        self._probe_order: list[str] = []
        self._probe_idx = 0
        self._probe: _Probe | None = None
        self._suspect_ping: tuple[int, str, float] | None = None  # (seq, member, deadline)
        self._told: dict[str, float] = {}  # accuser -> when we last pinged it our refutation
        self._push_period_end, self._pushes_left = -math.inf, 0  # verdict pushes (budget)
        self._carry: tuple[str, bytes] | None = None  # the verdict a push carries first
        self._forwards: dict[int, _Forward] = {}
        self._queue: dict[str, _Queued] = {}
        self._revive: list[str] = []
        self._full_sent: dict[Addr, float] = {}
        self._digest: str | None = None
        self._buckets: str | None = None
        self._sums = [0] * N_BUCKETS  # per bucket, the sum of live members' entry hashes
        self._track(name, None, incarnation)
        self._out: list[tuple[Addr, bytes]] = []
        self._events: list[MembershipEvent] = []
        self._fallback: list[FallbackProbe] = []
        self._next_probe = 0.0
        self._next_sync = 0.0
        self._next_reconnect = 0.0
        self._next_revive = 0.0
        self._next_join: float | None = None
        self._join_backoff = self.config.join_retry_initial

    # --- public API ----------------------------------------------------------------------

    def start(self, now: float) -> Output:
        """Announce ourselves and, when there are seeds, start joining through them."""
        self.started = True
        cfg = self.config
        self._next_probe = now + self.rng.uniform(0, cfg.ping_interval)
        self._next_sync = now + self.rng.uniform(0.5, 1.0) * cfg.sync_interval
        self._next_reconnect = now + self.rng.uniform(0.5, 1.0) * cfg.reconnect_interval
        self._enqueue(self._self_update())
        if self.seeds:
            self._next_join = now
        return self.tick(now)

    def leave(self, now: float) -> Output:
        """Tell members directly (all of them, up to LEAVE_DIRECT), and the rest by
        gossip, that we leave on purpose.  A member that misses it suspects us and
        declares us dead, and the scheduler treats a death as lost work, so the
        goodbye is worth a datagram per member.  Calling it again repeats it."""
        self.leaving = True
        update = Update(LEFT, self.name, self.incarnation)
        self._enqueue(update)
        targets = self._random_live(LEAVE_DIRECT, exclude=())
        for name in targets:
            m = self.members[name]
            self._send(m.addr, m.name, Message(PING, self.name, self._next_seq(), target=m.name))
        return self._flush()

    def set_metadata(self, now: float, metadata: JSONMapping) -> Output:
        """Replace our metadata: a new incarnation, so the newest wins everywhere."""
        self._check_metadata(metadata)
        self.metadata = dict(metadata)
        self.incarnation += 1
        self._track(self.name, self.incarnation - 1, self.incarnation)
        self._enqueue(self._self_update())
        return self._flush()

    def add_seeds(self, seeds: Iterable[Addr]) -> None:
        for h, p in seeds:
            seed = (str(h), int(p))
            if seed != tuple(self.addr) and seed not in self.seeds:
                self.seeds.append(seed)

    def learn(
        self, now: float, name: str, addr: Addr, incarnation: int = 0, **meta: object
    ) -> None:
        """Add a member as if it had joined (simulation bootstrap); emits no event."""
        if name == self.name or name in self.members:
            return
        self.members[name] = Member(name, addr, incarnation, ALIVE, dict(meta), now)
        self._live_add(name)
        self._track(name, None, incarnation)

    def learn_many(self, now: float, members: Iterable[tuple[str, Addr]]) -> None:
        """:meth:`learn` for a whole cluster at once (a 1,000-node bootstrap is 10⁶ of these)."""
        known, live, pos, sums = self.members, self._live, self._live_pos, self._sums
        for name, addr in members:
            if name == self.name or name in known:
                continue
            known[name] = Member(name, addr, 0, ALIVE, {}, now)
            pos[name] = len(live)
            live.append(name)
            sums[_bucket(name)] += _entry_hash(name, 0)
        self._digest = None

    def handle(self, now: float, data: bytes, src: Addr) -> Output:
        """A datagram arrived from ``src``.  Bad ones are dropped and counted, never raised."""
        self.stats.received += 1
        self.stats.bytes_received += len(data)
        try:
            msg = codec.decode(data, self.key)
        except DecodeError as exc:
            self.stats.drop(exc.reason)
            return self._flush()
        if not self.started or msg.sender == self.name:
            self.stats.drop("not_for_us")
            return self._flush()
        for u in msg.updates:
            self._apply(now, u, gossip=True, source=msg.sender)
        if msg.sender in self._corrections and msg.kind != PING:  # a PING's ack carries it
            self._tell_accuser(now, msg.sender)
        if msg.kind == PING:
            self._on_ping(now, msg, src)
        elif msg.kind == ACK:
            self._on_ack(now, msg)
        elif msg.kind == NACK:
            if self._probe is not None and msg.seq == self._probe.seq:
                self._probe.nacks += 1
        elif msg.kind == PING_REQ:
            self._on_ping_req(now, msg, src)
        elif msg.kind == SYNC:
            self._on_sync(now, msg, src)
        return self._flush()

    def answer_fallback(self, now: float, data: bytes) -> tuple[bytes | None, Output]:
        """A fallback ping arrived (over TCP): the sealed ACK to send back on the same
        connection, or None when it is not a valid ping for us, plus what else the
        piggybacked gossip made us send."""
        self.stats.received += 1
        self.stats.bytes_received += len(data)
        try:
            msg = codec.decode(data, self.key)
        except DecodeError as exc:
            self.stats.drop(exc.reason)
            return None, self._flush()
        if not self.started or msg.sender == self.name or msg.kind != PING:
            self.stats.drop("not_for_us")
            return None, self._flush()
        for u in msg.updates:
            self._apply(now, u, gossip=True, source=msg.sender)
        if msg.target != self.name:
            self.stats.drop("not_for_us")
            return None, self._flush()
        return self._pack(msg.sender, Message(ACK, self.name, msg.seq)), self._flush()

    def fallback_ack(self, now: float, data: bytes) -> Output:
        """The reply to one of our :class:`FallbackProbe` effects arrived.  A valid ACK
        from the probed member, for the probe still running, counts as its answer;
        anything else (late, forged, garbled) is dropped and counted."""
        self.stats.received += 1
        self.stats.bytes_received += len(data)
        try:
            msg = codec.decode(data, self.key)
        except DecodeError as exc:
            self.stats.drop(exc.reason)
            return self._flush()
        if not self.started or msg.kind != ACK or msg.sender == self.name:
            self.stats.drop("not_for_us")
            return self._flush()
        for u in msg.updates:
            self._apply(now, u, gossip=True, source=msg.sender)
        p = self._probe
        if p is not None and p.seq == msg.seq and p.target == msg.sender:
            if not p.fallback_acked:
                self.stats.fallback_acks += 1
            p.fallback_acked = True
        else:  # the probe ended (a dead verdict may be on its way) or a stray reply
            self.stats.drop("late_fallback")
        return self._flush()

    def fallback_refused(self, now: float, seq: int, target: str) -> Output:
        """The host of ``target`` refused our fallback probe's connection: it is up
        and nothing listens on the SWIM port, so the process is gone (crashed,
        killed, between a stop and a start).  Stronger than silence, which a lossy
        or congested path also gives: if the probe ends unanswered, the suspicion
        runs one protocol period without waiting for Lifeguard's confirmations.
        Still a suspicion, not a verdict: a member that is in fact alive refutes it
        as any other.  ``now`` is unused; it keeps the shell's calls uniform."""
        p = self._probe
        if p is not None and p.seq == seq and p.target == target:
            if not p.refused:
                self.stats.fallback_refusals += 1
            p.refused = True
        else:  # the probe ended meanwhile
            self.stats.drop("late_fallback")
        return self._flush()

    def tick(self, now: float) -> Output:
        """Time is ``now``: run every timer that is due."""
        if not self.started:
            return self._flush()
        self._tick_join(now)
        self._tick_probe(now)
        self._tick_forwards(now)
        self._tick_suspect_ping(now)
        self._tick_suspicions(now)
        self._tick_revive(now)
        if now >= self._next_sync:
            self._next_sync = now + self.config.sync_interval * self.rng.uniform(0.8, 1.2)
            self._sync_random(now)
            self._forget(now)
        if now >= self._next_reconnect:
            # Scaled by cluster size so the whole cluster makes about one reconnect
            # attempt per reconnect_interval per 10 members, whatever N is: one
            # successful cross-partition sync is enough to start the heal cascade.
            scale = max(1.0, (len(self._live) + 1) / 10)
            jitter = self.rng.uniform(0.5, 1.5)
            self._next_reconnect = now + self.config.reconnect_interval * scale * jitter
            self._reconnect(now)
        return self._flush()

    def next_deadline(self) -> float:
        """The time :meth:`tick` must next be called (it may be called earlier)."""
        times = [self._next_sync, self._next_reconnect]
        p = self._probe
        if p is None:
            times.append(self._next_probe)
        else:
            times.append(p.end)
            if not p.indirect_sent and not p.acked:
                times.append(p.direct_deadline)
        if self._next_join is not None:
            times.append(self._next_join)
        if self._revive:
            times.append(self._next_revive)
        if self._suspect_ping is not None:
            times.append(self._suspect_ping[2])
        times.extend(f.nack_deadline for f in self._forwards.values())
        for name in self._suspects:
            s = self.members[name].suspicion
            if s is not None:
                times.append(s.deadline)
        return min(times)

    # --- views -----------------------------------------------------------------------------

    @property
    def scale(self) -> int:
        return 1 + self.lhm

    def live_names(self) -> list[str]:
        """Members believed alive or suspect (SWIM counts a suspect as alive), not us."""
        return list(self._live)

    def alive_names(self) -> list[str]:
        return [n for n in self._live if self.members[n].state == ALIVE]

    def state_of(self, name: str) -> str | None:
        if name == self.name:
            return LEFT if self.leaving else ALIVE
        m = self.members.get(name)
        return m.state if m else None

    def digest(self) -> str:
        """A hash of who is live at which incarnation: equal digests, nothing to sync."""
        self._refresh_digests()
        assert self._digest is not None
        return self._digest

    def bucket_digests(self) -> str:
        """The same, split into N_BUCKETS buckets by name: only differing buckets travel."""
        self._refresh_digests()
        assert self._buckets is not None
        return self._buckets

    def _refresh_digests(self) -> None:
        if self._digest is None:
            sums = self._sums
            self._buckets = "".join(f"{v & 0xFFFF:04x}" for v in sums)
            self._digest = f"{sum(sums) & 0xFFFFFFFFFFFFFFFF:016x}"

    def _track(self, name: str, before: int | None, after: int | None) -> None:
        """Keep the digest sums current: ``name`` was live at ``before``, is at ``after``."""
        b = _bucket(name)
        if before is not None:
            self._sums[b] -= _entry_hash(name, before)
        if after is not None:
            self._sums[b] += _entry_hash(name, after)
        self._digest = None

    # --- incoming messages -------------------------------------------------------------------

    def _on_ping(self, now: float, msg: Message, src: Addr) -> None:
        if msg.target != self.name:
            self.stats.drop("not_for_us")
            return
        self._send(src, msg.sender, Message(ACK, self.name, msg.seq))

    def _on_ack(self, now: float, msg: Message) -> None:
        fwd = self._forwards.pop(msg.seq, None)
        if fwd is not None:
            self._send(fwd.requester, fwd.requester_name, Message(ACK, self.name, fwd.seq))
            return
        if self._suspect_ping is not None and msg.seq == self._suspect_ping[0]:
            self._suspect_ping = None
        p = self._probe
        if p is not None and msg.seq == p.seq and not p.acked:
            p.acked = True
            self.lhm = max(0, self.lhm - 1)

    def _on_ping_req(self, now: float, msg: Message, src: Addr) -> None:
        assert msg.target_addr is not None
        seq = self._next_seq()
        self._forwards[seq] = _Forward(src, msg.sender, msg.seq, now + self.config.ping_timeout)
        self._send(msg.target_addr, msg.target, Message(PING, self.name, seq, target=msg.target))

    def _on_sync(self, now: float, msg: Message, src: Addr) -> None:
        """Push-pull anti-entropy, in as few bytes as the difference needs.

        digest (REPLY_IF_DIFFERENT) -> bucket digests (BUCKETS) -> entries of the
        differing buckets (ENTRIES) -> our entries of the buckets still differing.
        Joins and reconnects ask for everything (REPLY_ALWAYS).
        """
        for u in msg.entries:
            self._apply(now, u, gossip=False, source=msg.sender)
        flags = msg.flags
        if flags & SYNC_REPLY_ALWAYS:
            # Joins (strangers) are answered per sender; requests from members we
            # know share one budget, so a healed partition's many reconnects cannot
            # make the few members of the smaller side stream their state non-stop.
            slot: Addr = ("", 0) if msg.sender in self.members else src
            gap = min(1.0, self.config.sync_interval / 2)
            if now - self._full_sent.get(slot, -math.inf) < gap:
                self.stats.drop("sync_rate_limited")
                return
            self._full_sent[slot] = now
            # A bare request (reconnect) is answered with ours and a request for theirs.
            back = 0 if msg.entries else SYNC_REPLY_ALWAYS
            self._send_state(src, msg.sender, back, None)
        elif flags & SYNC_REPLY_IF_DIFFERENT:
            if msg.digest != self.digest():
                reply = Message(SYNC, self.name, self._next_seq(), flags=SYNC_BUCKETS)
                reply.digest = self.bucket_digests()
                self._send(src, msg.sender, reply)
        elif flags & (SYNC_BUCKETS | SYNC_ENTRIES):
            theirs = msg.digest
            if len(theirs) != 4 * N_BUCKETS:
                self.stats.drop("malformed")
                return
            ours = self.bucket_digests()
            differ = {
                i for i in range(N_BUCKETS) if ours[4 * i : 4 * i + 4] != theirs[4 * i : 4 * i + 4]
            }
            if differ:
                back = SYNC_ENTRIES if flags & SYNC_BUCKETS else 0
                self._send_state(src, msg.sender, back, differ)

    # --- applying membership facts --------------------------------------------------------------

    def _apply(self, now: float, u: Update, *, gossip: bool, source: str = "") -> None:
        if u.node == self.name:
            self._about_self(now, u)
            return
        m = self.members.get(u.node)
        if u.kind == ALIVE:
            self._apply_alive(now, u, m, "" if gossip else source)
            return
        if m is None:
            return  # a verdict about someone we never met: nothing to do
        if not gossip and u.kind in (SUSPECT, DEAD):
            # A full state's verdicts are second-hand and maybe stale (the other
            # side of a healed partition).  Our own probes judge members we hold
            # alive; only a newer incarnation is news worth suspecting over.
            if u.incarnation > m.incarnation and m.state in _LIVE:
                self._suspect(now, m, u.incarnation, u.origin or source)
            return
        if u.incarnation < m.incarnation and m.state == ALIVE and gossip:
            self._correct(source, m.name)
        if u.kind == SUSPECT:
            if m.state in _GONE or u.incarnation < m.incarnation:
                return
            if m.state == SUSPECT and u.incarnation == m.incarnation:
                assert m.suspicion is not None
                if m.suspicion.confirm(u.origin):
                    self._enqueue(u)
                return
            self._suspect(now, m, u.incarnation, u.origin)
            return
        # DEAD or LEFT.  At one incarnation a member's own goodbye outranks our
        # guess: DEAD then LEFT ends as "left" everywhere, LEFT then DEAD stays.
        if u.incarnation < m.incarnation:
            return
        correction = u.kind == LEFT and m.state == DEAD
        if u.incarnation == m.incarnation and m.state in _GONE and not correction:
            return
        was_live = m.state in _LIVE
        self._set_state(now, m, u.kind, u.incarnation)
        self._enqueue(u)
        if u.kind == DEAD and was_live:
            self._push_verdict(now, m.name, source)

    def _correct(self, sender: str, member: str) -> None:
        """``sender`` gossips a verdict on ``member`` older than the refutation we
        hold.  Once a refutation has spent its retransmissions, such a stale
        suspicion can circle among the few who missed it until it times out as a
        false death (seen at 1,000 members and 10 % loss); telling each stale
        gossiper directly ends it within a round trip."""
        if not sender or sender == self.name:
            return
        pending = self._corrections.get(sender)
        if pending is None:
            if len(self._corrections) >= MAX_CORRECTED_PEERS:
                # The oldest goes: one we never got to send to must not block the rest.
                del self._corrections[next(iter(self._corrections))]
            pending = self._corrections[sender] = {}
        if len(pending) < MAX_CORRECTIONS_PER_PEER:
            pending[member] = None

    def _apply_alive(self, now: float, u: Update, m: Member | None, source: str) -> None:
        assert u.addr is not None
        meta = dict(u.metadata or {})
        if m is None:
            m = Member(u.node, u.addr, u.incarnation, ALIVE, meta, now)
            self.members[u.node] = m
            self._live_add(u.node)
            self._probe_insert(u.node)
            self._track(u.node, None, u.incarnation)
            self._emit("join", m, now)
            self._enqueue(u)
            return
        if u.incarnation <= m.incarnation:
            # A peer talks to it at the incarnation we buried: ask it directly.
            buried = source and m.state in _GONE and u.incarnation == m.incarnation
            if buried and u.node not in self._revive:
                self._revive.append(u.node)
            return
        changed_meta = meta != dict(m.metadata)
        m.addr, m.metadata, m.wire = u.addr, meta, None
        if m.state != ALIVE:
            self._set_state(now, m, ALIVE, u.incarnation)
        else:
            self._track(m.name, m.incarnation, u.incarnation)
            m.incarnation = u.incarnation
        if changed_meta:
            self._emit("metadata", m, now)
        self._enqueue(u)

    def _about_self(self, now: float, u: Update) -> None:
        if self.leaving:
            return
        if u.kind == ALIVE:
            if u.incarnation > self.incarnation:  # an older life of ours is still gossiped
                self._track(self.name, self.incarnation, u.incarnation + 1)
                self.incarnation = u.incarnation + 1
                self._enqueue(self._self_update())
            return
        if u.incarnation < self.incarnation:
            # Someone still holds a verdict we already refuted: tell them again,
            # first thing, since our refutation may have run out of retransmits.
            self._enqueue(self._self_update())
        else:
            self._track(self.name, self.incarnation, u.incarnation + 1)
            self.incarnation = u.incarnation + 1
            self.stats.refutations += 1
            self.lhm = min(self.config.lhm_max, self.lhm + 1)
            self._enqueue(self._self_update())
        self._tell_accuser(now, u.origin)

    def _tell_accuser(self, now: float, origin: str) -> None:
        """Ping whoever suspected us, so our refutation reaches it in one round trip
        (it rides first on the ping) rather than whenever gossip gets there."""
        m = self.members.get(origin) if origin and origin != self.name else None
        if m is None or m.state not in _LIVE:
            return
        if now - self._told.get(origin, -math.inf) < self.config.ping_interval:
            return
        self._told[origin] = now
        self._send(m.addr, m.name, Message(PING, self.name, self._next_seq(), target=m.name))

    def _suspect(self, now: float, m: Member, incarnation: int, origin: str) -> None:
        n = len(self._live) + 1
        lo, hi = self.config.suspicion_bounds(n)
        k = max(0, min(self.config.suspicion_confirmations, n - 2))
        self._set_state(now, m, SUSPECT, incarnation)
        m.suspicion = Suspicion(now, lo, hi, k, {origin})
        self._suspects[m.name] = None
        self._enqueue(Update(SUSPECT, m.name, incarnation, origin=origin))

    def _set_state(self, now: float, m: Member, state: str, incarnation: int) -> None:
        was = m.state
        self._track(
            m.name,
            m.incarnation if was in _LIVE else None,
            incarnation if state in _LIVE else None,
        )
        m.state, m.incarnation, m.since = state, incarnation, now
        m.suspicion = None
        self._suspects.pop(m.name, None)
        if state in _LIVE and was in _GONE:
            self._gone.pop(m.name, None)
            self._live_add(m.name)
            self._probe_insert(m.name)
        elif state in _GONE and was in _LIVE:
            self._live_remove(m.name)
            self._gone[m.name] = None
            if self._probe is not None and self._probe.target == m.name:
                self._probe = None
        if state != was:
            kind = {ALIVE: "alive", SUSPECT: "suspect", DEAD: "dead", LEFT: "left"}[state]
            self._emit(kind, m, now)

    # --- timers -----------------------------------------------------------------------------------

    def _tick_join(self, now: float) -> None:
        if self._next_join is None:
            return
        if self._live:  # someone answered: we are in
            self._join_succeeded()
            return
        if now < self._next_join:
            return
        for seed in self.rng.sample(self.seeds, min(3, len(self.seeds))):
            self._send_state(seed, "", SYNC_REPLY_ALWAYS, None)
        self._next_join = now + self._join_backoff
        self._join_backoff = min(self._join_backoff * 2, self.config.join_retry_max)

    def _join_succeeded(self) -> None:
        self._next_join = None
        self._join_backoff = self.config.join_retry_initial

    def _tick_probe(self, now: float) -> None:
        p = self._probe
        cfg = self.config
        if p is not None and not p.acked and not p.indirect_sent and now >= p.direct_deadline:
            p.indirect_sent = True
            target = self.members.get(p.target)
            if target is not None:
                helpers = self._random_live(cfg.indirect_probes, exclude=(p.target,))
                p.expected_nacks = len(helpers)
                for h in helpers:
                    hm = self.members[h]
                    req = Message(
                        PING_REQ, self.name, p.seq, target=p.target, target_addr=target.addr
                    )
                    self._send(hm.addr, hm.name, req)
                if cfg.fallback_probe:
                    self._send_fallback(now, p, target)
        if p is not None and now >= p.end:
            self._probe = None
            self._finish_probe(now, p)
        if self._probe is None and now >= self._next_probe:
            self._next_probe = now + cfg.ping_interval * self.scale
            target = self._next_target()
            if target is not None:
                self._start_probe(now, target)
            self._ping_a_suspect(now, target.name if target else "")

    def _ping_a_suspect(self, now: float, probed: str) -> None:
        """Each period also ping one suspect, our verdict attached.

        Gossip alone can miss a suspecter under loss once the refutation has used
        up its retransmissions; this way the suspect answers us directly with its
        new incarnation well before our timer runs out.  Silence is our own,
        independent confirmation (Lifeguard), which shortens the timeout for a
        member that is really gone."""
        cands = [n for n in self._suspects if n != probed]
        if cands:
            m = self.members[self.rng.choice(cands)]
            seq = self._next_seq()
            self._suspect_ping = (seq, m.name, now + self.config.ping_timeout * self.scale)
            self._send(m.addr, m.name, Message(PING, self.name, seq, target=m.name))

    def _tick_suspect_ping(self, now: float) -> None:
        sp = self._suspect_ping
        if sp is None or now < sp[2]:
            return
        self._suspect_ping = None
        m = self.members.get(sp[1])
        if m is None or m.state != SUSPECT or m.suspicion is None:
            return
        if m.suspicion.confirm(self.name):
            self._enqueue(Update(SUSPECT, m.name, m.incarnation, origin=self.name))

    def _start_probe(self, now: float, target: Member) -> None:
        cfg = self.config
        seq = self._next_seq()
        self._probe = _Probe(
            target.name,
            seq,
            now + cfg.ping_timeout * self.scale,
            now + cfg.ping_interval * self.scale,
        )
        self.stats.probes += 1
        self._send(target.addr, target.name, Message(PING, self.name, seq, target=target.name))

    def _send_fallback(self, now: float, p: _Probe, target: Member) -> None:
        """Ask the shell to ping ``target`` over TCP, answer due before the period ends."""
        ping = Message(PING, self.name, p.seq, target=target.name)
        payload = self._pack(target.name, ping)
        self.stats.fallback_probes += 1
        self._fallback.append(
            FallbackProbe(p.seq, target.name, target.addr, payload, max(0.0, p.end - now))
        )

    def _finish_probe(self, now: float, p: _Probe) -> None:
        if p.acked:
            return
        # Lifeguard: when helpers were asked, only their missing nacks count
        # against our own health; a dead target with nacking helpers is not our fault.
        # (As in memberlist, this holds even when the fallback answered: UDP failed.)
        penalty = max(0, p.expected_nacks - p.nacks) if p.expected_nacks else 1
        self.lhm = min(self.config.lhm_max, self.lhm + penalty)
        if p.fallback_acked:  # alive over TCP: a lossy link, not a death
            self.stats.fallback_saves += 1
            return
        self.stats.probe_failures += 1
        m = self.members.get(p.target)
        if m is None or m.state in _GONE:
            return
        if m.state == SUSPECT:
            assert m.suspicion is not None
            if p.refused:
                m.suspicion.settle(self._refused_timeout())
            if m.suspicion.confirm(self.name):
                self._enqueue(Update(SUSPECT, m.name, m.incarnation, origin=self.name))
            return
        self._suspect(now, m, m.incarnation, self.name)
        if p.refused:
            assert m.suspicion is not None
            m.suspicion.settle(self._refused_timeout())

    def _refused_timeout(self) -> float:
        """How long a suspect whose host refused our fallback keeps to refute: one
        protocol period (stretched while we are unwell), not Lifeguard's seconds
        of waiting for others to confirm what the refusal already says."""
        return self.config.ping_interval * self.scale

    def _tick_forwards(self, now: float) -> None:
        for seq in [s for s, f in self._forwards.items() if now >= f.nack_deadline]:
            f = self._forwards.pop(seq)
            self._send(f.requester, f.requester_name, Message(NACK, self.name, f.seq))

    def _tick_suspicions(self, now: float) -> None:
        expired = []
        for name in self._suspects:
            m = self.members[name]
            if m.suspicion is not None and now >= m.suspicion.deadline:
                expired.append(m)
        for m in expired:
            self._set_state(now, m, DEAD, m.incarnation)
            self._enqueue(Update(DEAD, m.name, m.incarnation, origin=self.name))
            self._push_verdict(now, m.name, "")

    def _push_verdict(self, now: float, name: str, source: str) -> None:
        """``name`` just became dead to us: tell ``verdict_push`` random members now.

        Piggybacked on probes alone a verdict moves one message per member per
        protocol period, and the 30-host soak saw the last observer learn of a
        death about a second after the first; pushed by everyone who learns it,
        it reaches all in a few round trips.  The carrier is a plain ping (the
        verdict rides first, as the newest update): members of any version apply
        it, and their ack is ignored.  At most ``3 × verdict_push`` pushes a
        period, so a healed partition's many verdicts cannot flood the network."""
        k, queued = self.config.verdict_push, self._queue.get(name)
        if k <= 0 or queued is None:
            return
        if now >= self._push_period_end:
            self._push_period_end = now + self.config.ping_interval
            self._pushes_left = 3 * k
        try:
            # carried outside the retransmit count: pushes spent it, and the
            # simulation saw observers left out of every later copy
            self._carry = (name, queued.wire)
            for peer in self._random_live(min(k, self._pushes_left), exclude=(name, source)):
                self._pushes_left -= 1
                self.stats.verdict_pushes += 1
                pm = self.members[peer]
                msg = Message(PING, self.name, self._next_seq(), target=peer)
                self._send(pm.addr, pm.name, msg)
        finally:
            self._carry = None

    def _tick_revive(self, now: float) -> None:
        if not self._revive or now < self._next_revive:
            return
        self._next_revive = now + self.config.ping_interval
        # Random picks: peers that revive in parallel then cover different members.
        self.rng.shuffle(self._revive)
        batch, self._revive = (
            self._revive[: self.config.revivals_per_period],
            self._revive[self.config.revivals_per_period :],
        )
        for name in batch:
            m = self.members.get(name)
            if m is not None and m.state in _GONE:
                self._send(m.addr, m.name, Message(PING, self.name, self._next_seq(), target=name))

    def _sync_random(self, now: float) -> None:
        pick = self._random_live(1, exclude=())
        if pick:
            m = self.members[pick[0]]
            msg = Message(SYNC, self.name, self._next_seq(), flags=SYNC_REPLY_IF_DIFFERENT)
            msg.digest = self.digest()
            self._send(m.addr, m.name, msg)

    def _sync_request(self, addr: Addr, dest: str) -> None:
        """Ask for a full state (and offer ours): cheap when nobody is there to answer."""
        self._send(addr, dest, Message(SYNC, self.name, self._next_seq(), flags=SYNC_REPLY_ALWAYS))

    def _reconnect(self, now: float) -> None:
        """Full sync with a dead member (a healed partition) and with a seed we do not
        know as a member: alone, any seed; else one of the seeds no member of our
        view lives at.  Without the second, hosts that joined each other while the
        rest could not answer (a fleet starting on a loaded network, a partition
        older than ``dead_retention``) stay an island with a view of their own."""
        if self._gone:
            name = self.rng.choice(sorted(self._gone))
            m = self.members[name]
            self._sync_request(m.addr, m.name)
        if not self.seeds:
            return
        if not self._live:
            if self._next_join is None:
                self._sync_request(self.rng.choice(self.seeds), "")
            return
        known = {(str(m.addr[0]), int(m.addr[1])) for m in self.members.values()}
        strangers = [seed for seed in self.seeds if seed not in known]
        if strangers:
            self._sync_request(self.rng.choice(strangers), "")

    def _forget(self, now: float) -> None:
        horizon = now - self.config.dead_retention
        for name in [n for n in self._gone if self.members[n].since <= horizon]:
            self._gone.pop(name, None)
            del self.members[name]
            self._queue.pop(name, None)
            self._told.pop(name, None)
            self._corrections.pop(name, None)

    # --- sending --------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _self_update(self) -> Update:
        return Update(ALIVE, self.name, self.incarnation, self.addr, self.metadata)

    def _enqueue(self, u: Update) -> None:
        self._queue[u.node] = _Queued(u, codec.encode_update(u))

    def _verdict_on(self, dest: str) -> bytes | None:
        """The update telling ``dest`` what we think of it, when that is not "alive"."""
        m = self.members.get(dest)
        if m is None or m.state == ALIVE:
            return None
        origin = self.name
        if m.state == LEFT:
            return codec.encode_update(Update(LEFT, dest, m.incarnation))
        return codec.encode_update(Update(m.state, dest, m.incarnation, origin=origin))

    def _send(self, addr: Addr, dest: str, msg: Message) -> None:
        """Send ``msg`` with as much piggybacked gossip as fits, least-sent first."""
        self._emit_datagram(addr, self._pack(dest, msg))

    def _pack(self, dest: str, msg: Message) -> bytes:
        """``msg`` for ``dest``, sealed, with as much piggybacked gossip as fits."""
        prefix = codec.body_prefix(msg)
        budget = self.config.max_datagram - codec.overhead(prefix, msg.kind == SYNC)
        chosen: list[bytes] = []
        # First, what dest must hear whatever the retransmit counts say: our
        # verdict on it, and, while we leave, our goodbye.
        verdict = self._verdict_on(dest) if dest else None
        goodbye = (
            codec.encode_update(Update(LEFT, self.name, self.incarnation)) if self.leaving else None
        )
        carry = self._carry
        firsts = [verdict, goodbye, carry[1] if carry else None]
        for name in self._corrections.pop(dest, ()) if dest else ():
            m = self.members.get(name)
            if m is not None and m.state == ALIVE:
                firsts.append(
                    codec.encode_update(Update(ALIVE, name, m.incarnation, m.addr, m.metadata))
                )
        for first in firsts:
            if first is not None and len(first) + 1 <= budget:
                chosen.append(first)
                budget -= len(first) + 1
        if self._queue:
            limit = self.config.retransmits(len(self._live) + 1)
            for q in sorted(self._queue.values(), key=lambda q: q.sent):
                if (
                    (q.update.node == dest and verdict is not None)
                    or (q.update.node == self.name and goodbye is not None)
                    or (carry is not None and q.update.node == carry[0])
                ):
                    continue
                if len(q.wire) + 1 > budget:
                    continue
                chosen.append(q.wire)
                budget -= len(q.wire) + 1
                q.sent += 1
                if q.sent >= limit:
                    del self._queue[q.update.node]
                if budget < 16:
                    break
        entries = [codec.encode_update(u) for u in msg.entries] if msg.kind == SYNC else None
        return codec.seal(self.key, codec.assemble(prefix, entries, chosen))

    def _send_state(self, addr: Addr, dest: str, flags: int, buckets: set[int] | None) -> None:
        """Our view (all of it, or the members in ``buckets``) in as many datagrams as it
        takes.  ``flags`` ride on the *last* datagram, so a request to answer is read
        after everything before it was merged."""
        self.stats.full_syncs_sent += 1
        members: list[Update] = []
        if buckets is None or _bucket(self.name) in buckets:
            members.append(self._self_update())
        entries = [codec.encode_update(u) for u in members]
        for m in self.members.values():
            if buckets is not None and _bucket(m.name) not in buckets:
                continue
            key = (m.state, m.incarnation)
            if m.wire is None or m.wire[0] != key:
                if m.state == ALIVE:
                    u = Update(ALIVE, m.name, m.incarnation, m.addr, m.metadata)
                elif m.state == LEFT:
                    u = Update(LEFT, m.name, m.incarnation)
                else:
                    u = Update(m.state, m.name, m.incarnation, origin=self.name)
                m.wire = (key, codec.encode_update(u))
            entries.append(m.wire[1])
        entries.reverse()  # popped from the end: self first
        digest = self.bucket_digests() if flags & SYNC_ENTRIES else self.digest()
        verdict = self._verdict_on(dest) if dest else None
        while True:
            probe = Message(SYNC, self.name, self._seq + 1, flags=flags, digest=digest)
            budget = self.config.max_datagram - codec.overhead(codec.body_prefix(probe), True)
            budget -= len(verdict) + 1 if verdict else 0
            chunk: list[bytes] = []
            while entries and (not chunk or len(entries[-1]) + 1 <= budget):
                chunk.append(entries.pop())
                budget -= len(chunk[-1]) + 1
            last = not entries
            msg = Message(SYNC, self.name, self._next_seq(), flags=flags if last else 0)
            msg.digest = digest if last else ""
            body = codec.assemble(codec.body_prefix(msg), chunk, [verdict] if verdict else [])
            self._emit_datagram(addr, codec.seal(self.key, body))
            if last:
                return

    def _emit_datagram(self, addr: Addr, data: bytes) -> None:
        self.stats.sent += 1
        self.stats.bytes_sent += len(data)
        self._out.append((addr, data))

    def _emit(self, kind: str, m: Member, now: float) -> None:
        self._events.append(MembershipEvent(kind, m.name, m.incarnation, m.metadata, now))

    def _flush(self) -> Output:
        out, self._out = self._out, []
        events, self._events = self._events, []
        if self._fallback:
            fallback, self._fallback = self._fallback, []
            return Output(out, events, fallback)
        return Output(out, events)

    # --- member sets --------------------------------------------------------------------------------

    def _live_add(self, name: str) -> None:
        if name not in self._live_pos:
            self._live_pos[name] = len(self._live)
            self._live.append(name)

    def _live_remove(self, name: str) -> None:
        i = self._live_pos.pop(name, None)
        if i is None:
            return
        last = self._live.pop()
        if i < len(self._live):
            self._live[i] = last
            self._live_pos[last] = i

    def _random_live(self, k: int, exclude: tuple[str, ...]) -> list[str]:
        pool = len(self._live)
        if k <= 0 or pool == 0:
            return []
        if pool <= 4 * k + len(exclude):
            cands = [n for n in self._live if n not in exclude]
            return self.rng.sample(cands, min(k, len(cands)))
        picked: list[str] = []
        for _ in range(8 * k):  # bounded: the pool is much larger than k
            n = self._live[self.rng.randrange(pool)]
            if n not in exclude and n not in picked:
                picked.append(n)
                if len(picked) == k:
                    break
        return picked

    def _probe_insert(self, name: str) -> None:
        pos = self.rng.randint(self._probe_idx, len(self._probe_order))
        self._probe_order.insert(pos, name)

    def _next_target(self) -> Member | None:
        for _ in range(2):
            while self._probe_idx < len(self._probe_order):
                name = self._probe_order[self._probe_idx]
                self._probe_idx += 1
                m = self.members.get(name)
                if m is not None and m.state in _LIVE:
                    return m
            self._probe_order = list(self._live)
            self.rng.shuffle(self._probe_order)
            self._probe_idx = 0
        return None

    @staticmethod
    def _check_metadata(metadata: JSONMapping) -> None:
        try:
            size = codec.metadata_size(metadata)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"metadata: not JSON-serialisable: {exc}") from None
        if size > codec.MAX_METADATA:
            raise ValidationError(
                f"metadata: {size} bytes encoded, at most {codec.MAX_METADATA} fit a datagram"
            )
