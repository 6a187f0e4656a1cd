"""The Raft job ledger: the one module that imports pysyncobj.

pysyncobj 0.3.17 replicates method calls; this wrapper replicates exactly one
method, ``apply_op``, whose argument is a plain-dict operation for
the pure state machine in :mod:`ringrift_fleet.consensus.ledger`.  How each of
the library's sharp edges is handled:

* its wire format is pickle, so a ``password`` (derived from CLUSTER_KEY) is
  always set: unauthenticated peers cannot feed us pickles;
* ``journalFile`` and ``fullDumpFile`` both live in the state directory — a
  dump alone loses every entry since the last compaction on restart;
* ``appendEntriesUseBatch=False``: with batching a synchronous write waits for
  the next batch (~100 ms); without, a loopback commit takes well under 1 ms;
* election timeouts, heartbeat period, connection timeouts and the leader's
  fallback are sub-second (P2PConfig.RAFT_*), so failover is sub-second;
* a replicated method that raises blocks the log forever: ``ledger.apply`` is
  total and idempotent by id, and the method ids cannot shift under a rename
  because there is one replicated method and operation names carry versions;
* a ``sync=True`` call from pysyncobj's own thread deadlocks: ``propose``
  refuses to run there;
* replicated state is plain dicts (the lock that guards reads sits outside
  the serialised attributes);
* commands are not queued while no leader is known (``commandsWaitLeader``
  off): a caller gets a prompt failure instead of a write that may land later;
* importing it replaces ``socket.inet_ntop`` process-wide with a Windows-only
  shim that raises ``TypeError`` on Linux (psutil's connection listing, for
  one, then fails): the C implementation is put back right after the import.
"""

from __future__ import annotations

import _socket
import contextlib
import gzip
import logging
import os
import pickle
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pysyncobj import (
    FAIL_REASON,
    SERIALIZER_STATE,
    SyncObj,
    SyncObjConf,
    SyncObjConsumer,
    replicated,
)

if os.name != "nt":
    socket.inet_ntop = _socket.inet_ntop

from ringrift_fleet.config import P2PConfig, get_p2p_config
from ringrift_fleet.consensus import ledger as sm
from ringrift_fleet.consensus.api import Ledger
from ringrift_fleet.consensus.dump_child import ForkedDump, Progress
from ringrift_fleet.consensus.voters import Voter, voters_from_inventory
from ringrift_fleet.localhost import free_port

log = logging.getLogger(__name__)

# Failures after which the operation certainly was not appended anywhere, so
# trying again until the deadline cannot apply it twice.
_RETRYABLE = {FAIL_REASON.MISSING_LEADER, FAIL_REASON.QUEUE_FULL}
_REASONS = {
    FAIL_REASON.QUEUE_FULL: "queue full",
    FAIL_REASON.MISSING_LEADER: "no leader (no quorum)",
    FAIL_REASON.DISCARDED: "discarded by a new leader",
    FAIL_REASON.NOT_LEADER: "leader changed before commit (outcome unknown)",
    FAIL_REASON.LEADER_CHANGED: "leader changed before commit (outcome unknown)",
    FAIL_REASON.REQUEST_DENIED: "request denied",
    FAIL_REASON.UNKNOWN_OUTCOME: "outcome unknown",
}


class _RateLimitTruncation(logging.Filter):
    """pysyncobj logs "truncating already-applied log entries" at CRITICAL each time
    a follower receives an append overlapping entries it already holds (it deletes
    and re-adds identical entries; the benchmark checks the replicas stay equal).
    Under write load that is many lines a second: pass one a minute, with a count."""

    def __init__(self, every: float = 60.0) -> None:
        super().__init__()
        self.every = every
        self.last = -every
        self.hidden = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("truncating already-applied"):
            return True
        now = time.monotonic()
        if now - self.last < self.every:
            self.hidden += 1
            return False
        if self.hidden:
            record.msg = f"{record.msg} (and {self.hidden} more like it in the last minute)"
        self.last, self.hidden = now, 0
        return True


_truncation_filter = _RateLimitTruncation()
logging.getLogger("pysyncobj.syncobj").addFilter(_truncation_filter)

_FOLLOWER, _CANDIDATE, _LEADER = 0, 1, 2  # pysyncobj's _RAFT_STATE values
_STATE_NAMES = {_FOLLOWER: "follower", _CANDIDATE: "candidate", _LEADER: "leader"}


class _FleetSyncObj(SyncObj):
    """pysyncobj 0.3.17 with five changes, all made at its message and tick seams.

    pysyncobj keeps its state in name-mangled attributes (``_SyncObj__x``);
    this subclass reads a few of them and overrides two private methods
    (``_SyncObj__onMessageReceived`` and ``_onTick``).  The version is pinned
    below 0.4 in pyproject and ``tests/unit/test_raft_sync_obj.py`` fails if
    the internals it relies on move.

    * **Appends never delete entries the follower already holds.**  The leader
      advances a follower's next index when it sends and rewinds it when an
      older reply arrives, so under write load it resends entries the follower
      has.  pysyncobj deletes everything after ``prevLogIdx`` before adding the
      new entries (Raft deletes only on a *conflict*: same index, other term),
      and logs CRITICAL "truncating already-applied log entries" when those
      were applied -- identical entries deleted and re-added, several times a
      second under load.  Entries the follower holds with the same index and
      term are dropped from the message first (a log holding an entry of the
      leader's term matches the leader's log up to it: Log Matching), so the
      truncation, and its CRITICAL, only happen on a real conflict.
    * **Pre-vote** (Raft thesis 9.6).  A follower whose election timer fires
      asks the others "would you vote for me in term+1?" without raising its
      term; only with a majority of yeses does it start a real election.  A
      voter grants it only when it is not leading, has heard no leader for
      the minimum election timeout, and the asker's log is as up to date as
      its own.  So a voter that rejoins, or stalls for a moment on a busy host,
      cannot depose a healthy leader by bumping the term (pysyncobj steps a
      leader down on any vote request with a higher term).
    * **A second signal before anyone stands.**  Silence alone is what a leader
      starved of CPU for a second looks like too, and then every follower's
      timer fires together: pre-vote cannot help.  So a follower neither asks
      for nor grants a pre-vote while the leader it follows still looks alive:
      its Raft connection is up and membership (SWIM or heartbeats) holds it
      alive.  A killed leader's connection drops at once (its kernel resets
      it), a crashed or cut-off host's connection times out; membership's
      "gone" counts once the leader has also been silent for two election
      timeouts (a verdict from a starved or restarting detector alone moves
      nothing); and silence over ``silence_cap`` counts on its own, so a
      leader that answers pings but not Raft is still replaced.  Every
      election names which of these it saw.
    * **A reset stands at once.**  When the leader's connection resets (a killed
      process), followers do not wait out the election timeout: they stand one
      after another, ``RAFT_ELECT_ON_RESET`` apart by name, still through the
      pre-vote, which a voter grants without the usual silence when its own
      connection to that leader is down too.
    * **Handover**: ``request_handover`` makes a leader that is shutting down
      send Raft's TimeoutNow to a caught-up follower, which starts its
      election at once instead of after a timeout.
    * **A record of every leader change**: why this node stopped leading or
      started an election (logged), and counts for /status and /metrics.

    Attributes set before ``SyncObj.__init__`` are in its property set, so log
    compaction never serialises them.
    """

    def __init__(
        self,
        self_address: str,
        others: list[str],
        *,
        conf: SyncObjConf,
        consumers: list[Any],
        names: Mapping[str, str],
        reset_step: float = 0.0,
    ) -> None:
        self._names = dict(names)
        self._reset_step = reset_step
        # (leader, its connection was up) at the last tick: a change to down is a reset
        self._leader_link: tuple[Any, bool] | None = None
        # name -> alive, as membership sees it: replaced whole from the event loop
        # (RaftLedger.watch), read here on the Raft thread; a name missing is unknown
        self._peer_alive: Mapping[str, bool] = {}
        self._silence_cap = max(
            4 * conf.raftMaxTimeout, conf.connectionTimeout + conf.raftMinTimeout
        )
        # Membership's "gone" counts only after this much Raft silence as well:
        # a verdict reached while the leader still spoke recently is membership's
        # own trouble (a starved or restarting detector, a peer not yet relearned),
        # and a real death is seen sooner by the connection (a reset) anyway.
        self._membership_confirm = 2 * conf.raftMaxTimeout
        self._deferred_logged_at = 0.0
        self._refusals_logged: dict[str, float] = {}  # asker -> when last logged
        # set by _before_tick for the one tick in which pysyncobj may start a real
        # election (read by the _SyncObj__connectedToAnyone gate below)
        self._election_allowed = False
        self._last_tick_at = time.monotonic()
        # A node that has just started treats its start as word from a leader: a
        # voter that is restarting must not help a stalled one depose the leader
        # before it has even connected (see _answer_pre_vote).
        self._started_at = time.monotonic()
        self._heard_leader_at = self._started_at
        self._pre_round = 0
        self._pre_round_at = 0.0
        self._pre_votes: set[str] = set()
        self._pre_vote_won = False
        self._election_reason = ""
        self._election_gone = ""
        self._stop_reason: str | None = None
        self._handover_requested = False
        self._handover_sent_at = 0.0
        self._handover_to: str | None = None
        self._last_leader: str | None = None
        self._counts = {
            "leader_changes": 0,
            "elections_started": 0,
            "stepdowns": 0,
            "pre_votes_started": 0,
            "elections_deferred": 0,
            "own_stalls": 0,
            "appends_trimmed": 0,
            "leader_resets": 0,
        }
        self._last_change: dict[str, Any] | None = None
        conf.onStateChanged = self._state_changed
        super().__init__(self_address, others, conf=conf, consumers=consumers)

    # --- helpers over pysyncobj's private state -------------------------------------------

    def _p(self, name: str) -> Any:
        return getattr(self, "_SyncObj__" + name)

    def _name(self, node: Any) -> str:
        node_id = getattr(node, "id", str(node))
        return self._names.get(node_id, node_id)

    def _last_log(self) -> tuple[int, int]:
        entry = self._p("raftLog")[-1]
        return int(entry[2]), int(entry[1])  # (term, index)

    def counts(self) -> dict[str, Any]:
        return {**self._counts, "last_leader_change": self._last_change}

    def request_handover(self) -> None:
        self._handover_requested = True

    def set_peer_view(self, alive: Mapping[str, bool]) -> None:
        """Membership's verdicts by voter name (the event loop replaces the mapping)."""
        self._peer_alive = alive

    def _leader_gone(self, now: float) -> str | None:
        """Why the leader this node last followed counts as gone, or None while it
        still looks alive (connection up; heard from within the silence cap, and
        within two election timeouts if membership reports it gone)."""
        leader = self._p("raftLeader")
        if leader is None or leader == self.selfNode:
            return "no leader known"
        name = self._name(leader)
        if leader not in self._p("connectedNodes"):
            return f"the connection to {name} is down"
        silent = now - self._heard_leader_at
        if self._peer_alive.get(name) is False and silent >= self._membership_confirm:
            return f"membership reports {name} gone and it has been silent for {silent:.1f}s"
        if silent >= self._silence_cap:
            return f"{name} silent for {silent:.1f}s with its connection up"
        return None

    # --- the message seam ---------------------------------------------------------------

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "pre_vote":
            self._answer_pre_vote(node, message)
            return
        if kind == "pre_vote_granted":
            self._count_pre_vote(node, message)
            return
        term = self.raftCurrentTerm
        if (
            kind in ("append_entries", "request_vote")
            and int(message.get("term", 0)) > term
            and self._p("raftState") == _LEADER
            and self._handover_to is None
        ):
            what = "a vote request" if kind == "request_vote" else "appends"
            self._stop_reason = (
                f"deposed: {self._name(node)} sent {what} for term {message['term']} (ours {term})"
            )
        if kind == "append_entries" and int(message.get("term", 0)) >= term:
            self._heard_leader_at = time.monotonic()
            message = self._trim_known_entries(message)
        super()._SyncObj__onMessageReceived(node, message)

    def _trim_known_entries(self, message: dict[str, Any]) -> dict[str, Any]:
        """Drop the entries this follower already holds (same index and term)."""
        entries = message.get("entries")
        if not entries or message.get("transmission") is not None:
            return message
        prev = message.get("prevLogIdx")
        journal = self._p("raftLog")
        first, last = int(journal[0][1]), int(journal[-1][1])
        if prev is None or not first <= prev <= last:
            return message  # pysyncobj answers "resend from my end"
        if journal[prev - first][2] != message.get("prevLogTerm"):
            return message  # a real mismatch: pysyncobj handles it
        held = 0
        for _cmd, idx, term in entries:
            if idx > last or journal[idx - first][2] != term:
                break
            held += 1
        if held == 0:
            return message
        if held == len(entries) and journal[-1][2] == message["term"]:
            # Everything sent is held, and our last entry is of the leader's own
            # term, so our log matches the leader's up to it: keep all of it.
            new_prev = (last, journal[-1][2])
        else:
            new_prev = (entries[held - 1][1], entries[held - 1][2])
        self._counts["appends_trimmed"] += 1
        return {
            **message,
            "prevLogIdx": new_prev[0],
            "prevLogTerm": new_prev[1],
            "entries": entries[held:],
        }

    def _answer_pre_vote(self, node: Any, message: dict[str, Any]) -> None:
        refusal = self._pre_vote_refusal(node, message, time.monotonic())
        if refusal is None:
            self._p("transport").send(
                node,
                {
                    "type": "pre_vote_granted",
                    "round": message.get("round"),
                    "term": message["term"],
                },
            )
            return
        # said at most every 10 s per asker: a refused election is what an operator
        # reading a slow failover needs to see, an asker whose link flaps is not
        name = self._name(node)
        now = time.monotonic()
        if now - self._refusals_logged.get(name, -1e9) >= 10.0:
            self._refusals_logged[name] = now
            log.info(
                "raft: refused %s a pre-vote for term %s: %s", name, message.get("term"), refusal
            )

    def _pre_vote_refusal(self, node: Any, message: dict[str, Any], now: float) -> str | None:
        """Why this voter will not vote for ``node`` in the term it asks about, or None."""
        conf = self._p("conf")
        if int(message.get("term", 0)) <= self.raftCurrentTerm:
            return "its term is not past ours"
        if self._p("raftState") == _LEADER:
            return "we lead"
        # silent for an election timeout, or its connection reset here too
        if now - self._heard_leader_at < conf.raftMinTimeout and not self._leader_link_down():
            return f"we heard the leader {now - self._heard_leader_at:.2f}s ago"
        if now - self._started_at < 2 * conf.raftMaxTimeout:
            return "we started moments ago"
        theirs = (message.get("last_log_term", -1), message.get("last_log_index", -1))
        if theirs < self._last_log():
            return f"its log (term, index) {theirs} is behind ours {self._last_log()}"
        if self._leader_gone(now) is None and self._p("raftLeader") != node:
            return "the leader we follow still looks alive here"
        return None

    def _count_pre_vote(self, node: Any, message: dict[str, Any]) -> None:
        if (
            message.get("round") != self._pre_round
            or message.get("term") != self.raftCurrentTerm + 1
            or self._p("raftState") == _LEADER
            or self._heard_leader_at > self._pre_round_at  # a leader spoke since: stale
        ):
            return
        self._pre_votes.add(self._name(node))
        if len(self._pre_votes) > (len(self._p("otherNodes")) + 1) / 2:
            self._pre_vote_won = True
            self._SyncObj__raftElectionDeadline = 0.0  # elect on the next tick
            heard = time.monotonic() - self._heard_leader_at
            self._election_reason = (
                f"no leader heard for {heard:.2f}s ({self._election_gone}); "
                f"pre-vote granted by {', '.join(sorted(self._pre_votes - {self._name(self.selfNode)}))}"
            )

    # --- the tick seam --------------------------------------------------------------------

    def _onTick(self, timeToWait: float = 0.0) -> None:  # pysyncobj's names
        self._before_tick()
        super()._onTick(timeToWait)
        self._after_tick()

    def _before_tick(self) -> None:
        self._election_allowed = False
        state = self._p("raftState")
        now = time.monotonic()
        gap, self._last_tick_at = now - self._last_tick_at, now
        if state == _LEADER and gap > self._p("conf").leaderFallbackTimeout / 2:
            self._forgive_own_stall(now)
        if state == _LEADER:
            if self._handover_requested:
                self._try_handover(now)
            return
        self._watch_leader_link(now)
        if self.selfNode is None or self._p("raftElectionDeadline") >= now:
            return
        others = self._p("otherNodes")
        if not others:
            self._election_allowed = True  # a lone voter elects itself
            return
        if not self._p("connectedNodes"):
            return  # nobody to ask: pysyncobj waits too
        if self._pre_vote_won and self._heard_leader_at > self._pre_round_at:
            self._pre_vote_won = False  # a leader spoke after the round began
            self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
            return
        if self._p("transferInProgress") or self._pre_vote_won:
            # pysyncobj starts the real election in this tick
            reason = self._election_reason
            if self._p("transferInProgress"):
                reason = "the leader handed leadership over (TimeoutNow)"
            self._pre_vote_won = False
            self._counts["elections_started"] += 1
            self._election_allowed = True
            log.info("raft: starting an election for term %d: %s", self.raftCurrentTerm + 1, reason)
            return
        gone = self._leader_gone(now)
        if gone is None:
            # the leader is silent but its connection is up and membership holds it
            # alive (or has not for long): a stall (a busy host), not a death;
            # look again after a timeout
            self._counts["elections_deferred"] += 1
            if now - self._deferred_logged_at >= 60.0:
                self._deferred_logged_at = now
                log.info(
                    "raft: no word from the leader for %.2fs, but it looks alive "
                    "(connection up; membership %s): not standing",
                    now - self._heard_leader_at,
                    "reports it gone, not yet confirmed by Raft silence"
                    if self._peer_alive.get(self._name(self._p("raftLeader"))) is False
                    else "holds it alive",
                )
            self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
            return
        self._election_gone = gone
        self._pre_round += 1
        self._pre_round_at = now
        self._pre_votes = {self._name(self.selfNode)}
        self._counts["pre_votes_started"] += 1
        last_term, last_index = self._last_log()
        ask = {
            "type": "pre_vote",
            "term": self.raftCurrentTerm + 1,
            "round": self._pre_round,
            "last_log_index": last_index,
            "last_log_term": last_term,
        }
        transport = self._p("transport")
        for node in others:
            transport.send(node, ask)
        self._SyncObj__raftElectionDeadline = now + self._next_round_in()

    def _next_round_in(self) -> float:
        """When to ask again if this round wins no majority.  While the leader's
        connection is down, at this voter's next turn in the reset's stagger: a voter
        that had not yet seen the reset when asked refused, and the 30-host soak's
        first reset election waited a whole election timeout for that (1.9 s)."""
        if not self._leader_link_down():
            return float(self._SyncObj__generateRaftTimeout())
        standing = len(self._p("otherNodes"))  # every voter but the leader, and this one
        return standing * self._reset_step + random.uniform(0.0, self._reset_step / 4)

    def _standing_rank(self, leader: Any) -> int:
        names = sorted(
            [self._name(n) for n in self._p("otherNodes") if n != leader]
            + [self._name(self.selfNode)]
        )
        return names.index(self._name(self.selfNode))

    def _watch_leader_link(self, now: float) -> None:
        """The leader's connection just closed: stand now, not after the timeout.

        A killed coordinator's kernel resets its sockets at once, so every follower
        sees the reset within milliseconds, while the election timer would wait
        ``RAFT_MIN_TIMEOUT``-``RAFT_MAX_TIMEOUT`` more.  The followers go one after
        another, ``reset_step`` apart in name order, so the first one's pre-vote and
        election are done before the next one's timer fires (no split vote).  Still
        through the pre-vote: a voter whose own connection to the leader is up, and
        that heard it recently, says no, so one follower's flapping link moves
        nothing."""
        leader = self._p("raftLeader")
        if leader is None or leader == self.selfNode:
            self._leader_link = None
            return
        up = leader in self._p("connectedNodes")
        was, self._leader_link = self._leader_link, (leader, up)
        if up or was is None or was[0] != leader or not was[1] or self._reset_step <= 0:
            return
        self._counts["leader_resets"] += 1
        rank = self._standing_rank(leader)
        soon = now + rank * self._reset_step + random.uniform(0.0, self._reset_step / 4)
        soon = min(soon, self._p("raftElectionDeadline"))  # a timer already due stays due
        self._SyncObj__raftElectionDeadline = soon
        log.info(
            "raft: the connection to the leader %s reset; standing in %.2fs (rank %d)",
            self._name(leader),
            max(0.0, soon - now),
            rank,
        )

    def _leader_link_down(self) -> bool:
        leader = self._p("raftLeader")
        return (
            self._reset_step > 0
            and leader is not None
            and leader != self.selfNode
            and leader not in self._p("connectedNodes")
        )

    def _SyncObj__connectedToAnyone(self) -> bool:  # pysyncobj's name
        """The one check pysyncobj makes before it starts a real election (bumps the
        term, asks for votes), used as the gate: only in a tick where this class
        allowed one (pre-vote won, a hand-over, a lone voter).  Without it, an
        election deadline that passed between ``_before_tick``'s look and
        pysyncobj's (a thread switch on a busy host) started an election with no
        pre-vote, deposing a healthy leader: seen in the 30-host soak."""
        if not self._election_allowed:
            return False  # the deadline stays passed: next tick goes through the pre-vote
        return bool(self._p("connectedNodes")) or not self._p("otherNodes")

    def _forgive_own_stall(self, now: float) -> None:
        """This leader's process was stalled (no tick for over half the fallback
        timeout): the followers' answers wait unread in its sockets, and pysyncobj
        would step down on this tick, before reading them, for a silence that was
        its own.  Give every follower half a fallback timeout from now to be heard;
        one that is really gone still costs the leader its quorum after that."""
        floor = now - self._p("conf").leaderFallbackTimeout / 2
        responses = self._p("lastResponseTime")
        for node in list(responses):
            responses[node] = max(responses[node], floor)
        self._counts["own_stalls"] += 1

    def _try_handover(self, now: float) -> None:
        conf = self._p("conf")
        if now - self._handover_sent_at < conf.raftMaxTimeout:
            return
        match, last = self._p("raftMatchIndex"), self._last_log()[1]
        ready = sorted(
            (self._name(n), n)
            for n in self._p("otherNodes")
            if n in self._p("connectedNodes") and match.get(n, 0) == last
        )
        if not ready:
            return  # nobody caught up yet: the next tick tries again
        name, node = ready[0]
        self._handover_to = name
        self._handover_sent_at = now
        self._stop_reason = f"handed leadership to {name} (shutting down)"
        log.info("raft: handing leadership to %s (shutting down)", name)
        self.transferLeadership(node)

    def _after_tick(self) -> None:
        leader = self._getLeader()
        name = self._name(leader) if leader is not None else None
        if name is None or name == self._last_leader:
            return
        previous, self._last_leader = self._last_leader, name
        if previous is None:
            log.info("raft: the leader is %s (term %d)", name, self.raftCurrentTerm)
            return
        self._counts["leader_changes"] += 1
        self._last_change = {
            "at": time.time(),
            "from": previous,
            "to": name,
            "term": self.raftCurrentTerm,
        }
        log.info(
            "raft: the leader is now %s (term %d; was %s)", name, self.raftCurrentTerm, previous
        )

    def _state_changed(self, old: int, new: int) -> None:
        """pysyncobj's onStateChanged (raft thread): say why, every time."""
        term = self.raftCurrentTerm
        if old == _LEADER and new != _LEADER:
            self._counts["stepdowns"] += 1
            reason = self._stop_reason or (
                "lost quorum: fewer than a majority of voters answered within "
                f"{self._p('conf').leaderFallbackTimeout:g}s"
            )
            log.warning("raft: stopped leading (term %d): %s", term, reason)
            self._stop_reason = None
        if new == _LEADER:
            log.info("raft: leading from term %d", term)


class _LedgerState(SyncObjConsumer):
    """The replicated state; pysyncobj serialises the attributes set after init."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # set before super().__init__: never serialised
        super().__init__()
        self.state: sm.State = sm.new_state()

    # Code version 0: the method id never changes; meanings are versioned in op names.
    @replicated
    def apply_op(self, op: Any) -> dict[str, Any]:
        with self._lock:
            if isinstance(op, dict) and op.get("op") == sm.BATCH:
                return sm.apply_batch(self.state, op)
            return sm.apply(self.state, op)

    def _deserialize(self, data: dict[str, Any]) -> None:
        with self._lock:
            super()._deserialize(data)
            sm.order_by_revision(self.state)  # a dump or snapshot of an older version


# gzip level of the Raft full dump (log compaction, every 300 s or 5,000 entries,
# on every voter).  Its GzipFile default (level 9) takes 202 ms for a 7,700-job
# ledger on a quiet core against 40 ms at level 1, for 478 kB against 580 kB
# (benchmarks/ledger_full_read.py).  The dump is written by a forked child
# (dump_child), so this is CPU time off the Raft thread, but still a core's.
DUMP_GZIP_LEVEL = 1


def _write_dump(f: BinaryIO, state: _LedgerState, rest: tuple[object, ...]) -> None:
    """The dump in pysyncobj's own file format (a gzip of the pickled
    ``([own attributes, consumer state], *rest)``), so voters of either version read
    each other's dumps and snapshot transmissions.  pysyncobj's own attributes are
    written empty: nothing of this class's should come back from a dump."""
    data = ([{}, state._serialize()], *rest)
    with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=DUMP_GZIP_LEVEL) as g:
        pickle.dump(data, g)


def _dump_writer(
    state: _LedgerState, dump: ForkedDump
) -> Callable[[str, tuple[object, ...]], None]:
    """pysyncobj's ``serializer`` hook: starts the forked dump and returns.

    pysyncobj then renames its ``<dump>.tmp`` over the dump; that file must not
    exist, so the rename fails (pysyncobj notes a failure it does not report) and the
    ``serializeChecker`` below decides, once the child is done, what became of it."""

    def write(filename: str, rest: tuple[object, ...]) -> None:
        try:
            os.unlink(filename)
        except FileNotFoundError:
            pass
        except OSError as exc:  # it would be renamed over the dump: write none
            log.warning("raft dump: cannot remove %s: %s", filename, exc)
            dump.refuse()
            return
        dump.start(lambda f: _write_dump(f, state, rest))

    return write


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


_SERIALIZER_STATE = {
    Progress.IDLE: SERIALIZER_STATE.NOT_SERIALIZING,
    Progress.RUNNING: SERIALIZER_STATE.SERIALIZING,
    Progress.DONE: SERIALIZER_STATE.SUCCESS,
    Progress.FAILED: SERIALIZER_STATE.FAILED,
}


def _dump_reader(state: _LedgerState) -> Callable[[str], tuple[object, ...]]:
    """The ``deserializer`` hook: loads the ledger state from a dump (this version's
    or pysyncobj's default writer's) and hands pysyncobj the rest of it."""

    def read(filename: str) -> tuple[object, ...]:
        with open(filename, "rb") as f, gzip.GzipFile(fileobj=f) as g:
            # our own dump, or one a voter sent over the password-authenticated Raft link
            data = pickle.load(g)
        own = data[0]
        if isinstance(own, list) and len(own) > 1:
            state._deserialize(own[1])
        return tuple(data[1:])

    return read


@dataclass(frozen=True)
class RaftSettings:
    """pysyncobj knobs derived from P2PConfig (kept together so tests can see them)."""

    min_timeout: float
    max_timeout: float
    append_entries_period: float
    connection_timeout: float
    connection_retry: float
    leader_fallback: float
    tick_period: float
    reset_step: float = 0.0

    @classmethod
    def from_config(cls, config: P2PConfig) -> RaftSettings:
        return cls(
            min_timeout=config.RAFT_MIN_TIMEOUT,
            max_timeout=config.RAFT_MAX_TIMEOUT,
            append_entries_period=config.RAFT_APPEND_ENTRIES_PERIOD,
            connection_timeout=max(2.0, 2 * config.RAFT_MAX_TIMEOUT),
            connection_retry=max(0.2, config.RAFT_MIN_TIMEOUT),
            # A leader steps down when no majority answered for this long.  At one
            # election timeout, one follower's 1.6 s hiccup on a busy host (while the
            # third voter restarts) cost leadership: twice in the 30-host soak's
            # first 20 minutes.  1.5 timeouts stays below the 2 timeouts after
            # which a follower may stand (connection timeout, membership confirmed
            # by silence), so a cut-off leader still steps down before anyone else
            # can be elected: never two leaders.
            leader_fallback=1.5 * config.RAFT_MAX_TIMEOUT,
            tick_period=config.RAFT_TICK_PERIOD,
            reset_step=config.RAFT_ELECT_ON_RESET,
        )


@dataclass(eq=False)  # identity: two writers may send equal operations
class _Pending:
    op: dict[str, Any]
    result: sm.Result | None = None


class GroupCommit:
    """Concurrent writers share log entries: whoever finds no flush in flight commits
    everything queued as one ``batch.v1`` entry; the others wait for their result.

    A lone writer pays nothing extra (its op goes alone, unwrapped).  Under
    contention a caller waits at most for the flush in flight plus its own,
    each bounded by the timeout.
    """

    def __init__(
        self, commit: Callable[[dict[str, Any], float], sm.Result], max_batch: int = sm.MAX_BATCH
    ) -> None:
        self._commit = commit
        self._max = max_batch
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._flushing = False

    def submit(self, op: dict[str, Any], timeout: float) -> sm.Result:
        return self.submit_many([op], timeout)[0]

    def submit_many(self, ops: Sequence[dict[str, Any]], timeout: float) -> list[sm.Result]:
        """Commit ``ops`` in order, as few entries as the batch limit allows (one
        writer's tick of results: one round trip to a majority, not one per job)."""
        mine = [_Pending(op) for op in ops]
        deadline = time.monotonic() + timeout
        with self._cond:
            self._queue.extend(mine)
        while True:
            with self._cond:
                while any(p.result is None for p in mine) and self._flushing:
                    left = deadline - time.monotonic()
                    if left <= 0:  # those no flush took yet give up; in flight: wait
                        for p in mine:
                            if p.result is None and p in self._queue:
                                self._queue.remove(p)
                                p.result = {"ok": False, "reason": "no quorum within the timeout"}
                    self._cond.wait(max(left, 0.05))
                if all(p.result is not None for p in mine):
                    return [p.result or {"ok": False, "reason": "no result"} for p in mine]
                # ours first (in order: a job's start goes before its result), then
                # whatever else waits, up to the limit; the rest stays queued in order
                self._flushing = True
                batch = [p for p in mine if p.result is None][: self._max]
                taken = set(map(id, batch))
                rest = [p for p in self._queue if id(p) not in taken]
                room = self._max - len(batch)
                batch += rest[:room]
                self._queue = rest[room:]
            try:
                results = self._flush(batch, max(deadline - time.monotonic(), 0.05))
            except Exception as exc:  # never leave the waiters hanging
                log.exception("raft commit failed")
                results = [{"ok": False, "reason": f"commit failed: {exc}"}] * len(batch)
            with self._cond:
                for pending, result in zip(batch, results, strict=True):
                    pending.result = result
                self._flushing = False
                self._cond.notify_all()

    def _flush(self, batch: list[_Pending], timeout: float) -> list[sm.Result]:
        if len(batch) == 1:
            return [self._commit(batch[0].op, timeout)]
        out = self._commit({"op": sm.BATCH, "ops": [p.op for p in batch]}, timeout)
        results = out.get("results")
        if out.get("ok") and isinstance(results, list) and len(results) == len(batch):
            return results
        return [out] * len(batch)


class RaftLedger(Ledger):
    """A Raft voter holding the job ledger; writes commit on a majority of voters."""

    def __init__(
        self,
        node_id: str,
        voters: list[Voter],
        *,
        config: P2PConfig | None = None,
        state_dir: str | Path | None = None,
        op_timeout: float = 2.0,
        bind_wait: float = 3.0,
    ) -> None:
        super().__init__()
        config = config or get_p2p_config()
        by_name = {v.name: v for v in voters}
        if node_id not in by_name:
            raise ValueError(f"node {node_id!r} is not one of the Raft voters {sorted(by_name)}")
        self.node_id = node_id
        self.op_timeout = op_timeout
        self.voters = list(voters)
        self._names = {v.raft_address: v.name for v in voters}
        me = by_name[node_id]
        directory = Path(state_dir or config.state_dir) / "raft"
        directory.mkdir(parents=True, exist_ok=True)
        settings = RaftSettings.from_config(config)
        self._state = _LedgerState()
        self._dump = ForkedDump(str(directory / f"{node_id}.dump"))
        self._dumps = {"done": 0, "failed": 0}
        conf = SyncObjConf(
            password=config.raft_password,
            journalFile=str(directory / f"{node_id}.journal"),
            fullDumpFile=str(directory / f"{node_id}.dump"),
            appendEntriesUseBatch=False,
            # never split an entry into "transmission" chunks: pysyncobj marks the last
            # chunk by the command's length, not the pickled entry's (protocol 2 pickles
            # bytes >= 0x80 as two), so a large entry (adopt_state.v1 of a few hundred
            # jobs) ends early on the followers, fails to unpickle, and is re-sent
            # forever: the leader loses its quorum.  One TCP message per entry instead.
            appendEntriesBatchSizeBytes=2**28,
            raftMinTimeout=settings.min_timeout,
            raftMaxTimeout=settings.max_timeout,
            appendEntriesPeriod=settings.append_entries_period,
            connectionTimeout=settings.connection_timeout,
            connectionRetryTime=settings.connection_retry,
            leaderFallbackTimeout=settings.leader_fallback,
            autoTickPeriod=settings.tick_period,
            commandsWaitLeader=False,
            useFork=False,
            # The dump (log compaction) is written by a forked child (dump_child):
            # on the Raft thread it took 2-12 s in the 60-minute soak, with no
            # heartbeat sent or vote answered meanwhile.  Split, each voter dumps in
            # its own window of the period, so the children do not compete for the
            # same cores at once (py-spy once found all three voters dumping).
            logCompactionSplit=True,
            serializer=_dump_writer(self._state, self._dump),
            serializeChecker=self._dump_progress,
            deserializer=_dump_reader(self._state),
            bindAddress=f"{config.BIND_HOST}:{me.raft_port}",
            dynamicMembershipChange=False,
            bindRetryTime=0.2,
        )
        others = [v.raft_address for v in voters if v.name != node_id]
        self._sync = _FleetSyncObj(
            me.raft_address,
            others,
            conf=conf,
            consumers=[self._state],
            names=self._names,
            reset_step=settings.reset_step,
        )
        self._notifier = None if others else getattr(self._sync, "_SyncObj__pipeNotifier", None)
        self._group = GroupCommit(self._propose_now)
        if not self._wait_bound(bind_wait):
            self.close()
            raise OSError(f"cannot bind the Raft port {conf.bindAddress} (in use?)")

    def _dump_progress(self) -> int:
        """pysyncobj's ``serializeChecker``, on the Raft thread's every tick."""
        progress = self._dump.poll()
        if progress in (Progress.DONE, Progress.FAILED):
            self._dumps[progress.value] += 1
        if progress is Progress.DONE:
            # as pysyncobj does after its own dumps: a snapshot being sent to a lagging
            # follower restarts from the new dump (its log now starts there)
            serializer = getattr(getattr(self, "_sync", None), "_SyncObj__serializer", None)
            sending = getattr(serializer, "_Serializer__transmissions", None)
            if isinstance(sending, dict):
                for t in sending.values():
                    with contextlib.suppress(Exception):
                        t["file"].close()
                sending.clear()
        state: int = _SERIALIZER_STATE[progress]
        return state

    def set_peer_view(self, alive: Mapping[str, bool]) -> None:
        """Membership's verdicts by voter name: a follower stands for election only
        when the leader also looks gone there (or its connection is down)."""
        self._sync.set_peer_view(dict(alive))

    def _wait_bound(self, timeout: float) -> bool:
        transport = getattr(self._sync, "_SyncObj__transport", None)
        deadline = time.monotonic() + timeout
        while transport is not None and not transport.ready:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    # --- backend ------------------------------------------------------------------------

    def propose(self, op: dict[str, Any], timeout: float | None = None) -> sm.Result:
        if self._on_raft_thread():
            return {"ok": False, "reason": "synchronous write from the Raft thread would deadlock"}
        return self._group.submit(op, self.op_timeout if timeout is None else timeout)

    def propose_many(
        self, ops: Sequence[dict[str, Any]], timeout: float | None = None
    ) -> list[sm.Result]:
        if self._on_raft_thread():
            return [
                {"ok": False, "reason": "synchronous write from the Raft thread would deadlock"}
            ] * len(ops)
        return self._group.submit_many(ops, self.op_timeout if timeout is None else timeout)

    def _propose_now(self, op: dict[str, Any], timeout: float) -> sm.Result:
        """Commit one log entry, retrying only while it certainly was not appended."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return {"ok": False, "reason": "no quorum within the timeout"}
            code, result = self._commit(op, left)
            if code == FAIL_REASON.SUCCESS:
                return result if isinstance(result, dict) else {"ok": False, "reason": "no result"}
            if code in _RETRYABLE and time.monotonic() + delay < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            if code is None:
                return {"ok": False, "reason": "no quorum within the timeout"}
            return {"ok": False, "reason": _REASONS.get(code, f"raft error {code!r}")}

    def _commit(self, op: dict[str, Any], timeout: float) -> tuple[int | None, Any]:
        """Hand ``op`` to pysyncobj and wait for its callback; (None, None) on timeout.

        A lone voter has nobody whose reply would wake its poller, so its
        commit would wait for the next tick (20 writes/s); poking pysyncobj's
        wake-up pipe while waiting takes that to thousands.
        """
        done = threading.Event()
        box: list[Any] = [None, None]

        def on_result(result: Any, error: int) -> None:
            box[0], box[1] = error, result
            done.set()

        self._state.apply_op(op, callback=on_result)
        if self._notifier is None:
            done.wait(timeout)
        else:
            end = time.monotonic() + timeout
            while not done.wait(0.0005) and time.monotonic() < end:
                self._notifier.notify()
        return (box[0], box[1]) if done.is_set() else (None, None)

    def _on_raft_thread(self) -> bool:
        thread = getattr(self._sync, "_SyncObj__thread", None)
        return thread is not None and threading.current_thread() is thread

    @contextmanager
    def reading(self) -> Iterator[sm.State]:
        with self._state._lock:
            yield self._state.state

    def is_leader(self) -> bool:
        return bool(self._sync._isLeader())

    def leader(self) -> str | None:
        node = self._sync._getLeader()
        if node is None:
            return None
        name: str = self._names.get(node.id, node.id)
        return name

    def term(self) -> int:
        return int(self._sync.raftCurrentTerm)

    def version(self) -> Any:
        return self._sync.raftLastApplied

    def history(self) -> str | None:
        return "raft:" + ",".join(sorted(v.name for v in self.voters))

    def has_quorum(self) -> bool:
        return bool(self._sync.hasQuorum)

    def raft_status(self) -> dict[str, Any]:
        """A plain summary of the Raft state for /status and /metrics."""
        s = self._sync.getStatus()
        return {
            "state": {0: "follower", 1: "candidate", 2: "leader"}.get(s["state"], str(s["state"])),
            "has_quorum": bool(s["has_quorum"]),
            "log_len": s["log_len"],
            "commit_idx": s["commit_idx"],
            "last_applied": s["last_applied"],
            "connected_voters": sorted(
                self._names.get(v.raft_address, v.name)
                for v in self.voters
                if v.name != self.node_id
                and s.get(f"partner_node_status_server_{v.raft_address}") == 2
            ),
            # leader_changes: times this node saw the leader move from one voter
            # to another; stepdowns: times this node stopped leading (each logged
            # with its reason); elections_started: real elections (after a won
            # pre-vote or a handover) this node began.
            **self._sync.counts(),
            # the full dump (log compaction) of this voter, written by a child process
            "dump": {
                "running": self._dump.running,
                "last_s": _round(self._dump.last_seconds, 3),
                "raft_thread_ms": _round(
                    None if self._dump.last_stall_s is None else self._dump.last_stall_s * 1000,
                    2,
                ),
                **self._dumps,
            },
        }

    def close(self, handover_timeout: float = 2.0) -> None:
        """Leave the cluster; a leader first hands leadership to a caught-up follower.

        The follower starts its election at once (TimeoutNow) rather than after
        an election timeout, so a rolling restart is leaderless for a few
        milliseconds, not most of a second.  Bounded by ``handover_timeout``.
        """
        if len(self.voters) > 1 and self.is_leader():
            self._sync.request_handover()
            deadline = time.monotonic() + handover_timeout
            # Until another voter leads: stepping down alone is not enough, our
            # vote for the successor must leave the socket before destroy().
            while time.monotonic() < deadline and (
                self.is_leader() or self.leader() in (None, self.node_id)
            ):
                time.sleep(0.01)
            if self.is_leader():
                log.warning(
                    "raft: no follower took leadership within %gs; stopping anyway",
                    handover_timeout,
                )
        try:
            self._sync.destroy()
        except Exception:  # already gone; nothing to release
            log.debug("raft destroy failed", exc_info=True)
        # the Raft thread may be polling or starting a dump: let it end first
        thread = getattr(self._sync, "_SyncObj__thread", None)
        if isinstance(thread, threading.Thread) and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        self._dump.stop()


class ReplicatedWorkQueue(RaftLedger):
    """The seed name: the Raft ledger seen as a work queue (it is the whole ledger)."""

    @property
    def assignments(self) -> ReplicatedJobAssignments:
        return ReplicatedJobAssignments(self)


class ReplicatedJobAssignments:
    """Job → node with attempts and fence tokens, over the same Raft ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def assign(self, job_id: str, node_id: str, job_type: str) -> Any:
        return self.ledger.assign(job_id, node_id, job_type)

    def current(self, job_id: str) -> Any:
        return self.ledger.current(job_id)

    def jobs_of(self, node_id: str) -> Any:
        return self.ledger.jobs_of(node_id)

    def reassign_jobs_of(self, node_id: str) -> list[str]:
        return self.ledger.reassign_jobs_of(node_id)

    def accept_result(
        self, job_id: str, fence_token: str, result: Mapping[str, Any] | None = None
    ) -> bool:
        return self.ledger.accept_result(job_id, fence_token, dict(result or {}))


def wait_for_leader(ledger: Ledger, timeout: float) -> bool:
    """Bounded wait until some voter is known to lead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ledger.leader() is not None:
            return True
        time.sleep(0.02)
    return ledger.leader() is not None


def create_replicated_work_queue(
    node_id: str | None = None,
    *,
    config: P2PConfig | None = None,
    inventory: Any = None,
    state_dir: str | Path | None = None,
    wait: float = 5.0,
) -> ReplicatedWorkQueue:
    """Build the Raft work queue from configuration and inventory.

    With an inventory (given, or HOSTS_FILE when it exists) the node joins the
    inventory's ``raft_voters``.  Without one — the README's example on a
    laptop — it is a one-voter cluster on a free loopback port, keeping its
    journal under STATE_DIR, and it waits (bounded) until it leads itself.
    """
    config = config or get_p2p_config()
    node_id = node_id or config.NODE_ID
    voters: list[Voter] = []
    if inventory is None and os.path.exists(config.HOSTS_FILE):
        from ringrift_fleet.consensus.voters import load_inventory

        inventory = load_inventory(config.HOSTS_FILE)
    if inventory is not None:
        voters = voters_from_inventory(inventory, config)
    if not any(v.name == node_id for v in voters):
        if voters:
            raise ValueError(
                f"node {node_id!r} is not a Raft voter in the inventory "
                f"(voters: {', '.join(v.name for v in voters)})"
            )
        voters = [Voter(node_id, "127.0.0.1", free_port(), config.DEFAULT_PORT)]
        config = config.replace(BIND_HOST="127.0.0.1")
    queue = ReplicatedWorkQueue(node_id, voters, config=config, state_dir=state_dir)
    wait_for_leader(queue, wait)
    return queue
