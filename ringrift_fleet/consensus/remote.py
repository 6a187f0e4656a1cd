# mypy: disallow-any-explicit
"""The ledger over HTTP: routes a voter serves, and the client non-leaders use.

A host that is not a Raft voter, and every Bully follower, forwards writes to
the leader's ``POST /consensus/op`` and keeps a read copy fetched from
``GET /consensus/ledger``.  Both routes need the cluster token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aiohttp import web

from ringrift_fleet.consensus import ledger as sm
from ringrift_fleet.consensus import state_json
from ringrift_fleet.consensus.api import Ledger
from ringrift_fleet.http_input import bearer_ok, read_json_object
from ringrift_fleet.jsontypes import JSONMapping, JSONValue

log = logging.getLogger(__name__)

# What a non-voter waits for a whole copy (a delta gets the caller's timeout).
FULL_COPY_TIMEOUT_S = 15.0
# "behind" answers in a row from a new leader before a copy gives up on its
# changes and takes the whole replica (one a second: a new leader applies what
# it has within a heartbeat or two of its election)
MAX_BEHIND = 10


class ReplicaBodies:
    """Encodes ``GET /consensus/ledger`` answers off the event loop, and the whole
    replica once for every asker that was waiting when the encoding began.

    After a leader change every non-voter asks the new leader for the whole
    replica at once; encoding it (about 1.5 kB a job) once per asker, on the
    event loop, silenced a 30-host fleet's leader for minutes -- /status,
    heartbeats and SWIM with it -- until membership called it dead.  Now one
    encoding serves the crowd, and still never a state older than the request:
    a body is reused only by requests that arrived before its encoding began,
    or while the replica has not changed since.
    """

    def __init__(self) -> None:
        # (encoding began, id(ledger), ledger version then, body)
        self._full: tuple[float, int, object, bytes] | None = None
        self._lock: asyncio.Lock | None = None
        self.full_encoded = 0
        self.full_served = 0
        self.deltas_served = 0
        self.deltas_encoded = 0
        self.behind_served = 0
        # the deltas of the replica's current version, by the revision asked from:
        # non-voters poll every second and most ask from the same revision, so one
        # scan of the ledger (O(jobs), under the Raft thread's lock) answers them all
        self._deltas: dict[tuple[object, ...], bytes] = {}
        # answers are encoded on the executor's threads, several at once: the cache
        # is read and replaced under this lock (iterating it while another thread
        # added to it raised "dictionary changed size during iteration": a 500)
        self._deltas_lock = threading.Lock()

    async def answer(
        self, ledger: Ledger, since: int | None, asker: tuple[str, int] | None = None
    ) -> bytes:
        """The replica's changes since revision ``since`` when that can be told,
        else the whole replica.  ``asker``: (history, term) of a copy another leader
        gave; it gets changes only from a leader of the same history whose replica
        has seen that term, and "behind" (keep the copy, ask again) from one that
        has not applied as far yet -- a new leader a moment after its election."""
        if since is not None and asker is not None and asker[0] != ledger.history():
            since = None
        if since is not None:
            delta = await asyncio.to_thread(self._encode_delta, ledger, since, asker)
            if delta is not None:
                return delta
        arrived = time.monotonic()
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one encoding at a time; the waiting ones reuse it
            cached = self._full
            fresh = cached is not None and (
                cached[1] == id(ledger)
                and (
                    cached[0] >= arrived
                    or (cached[2] is not None and cached[2] == ledger.version())
                )
            )
            if cached is None or not fresh:
                began, version = time.monotonic(), ledger.version()
                body = await asyncio.to_thread(self._encode_full, ledger)
                cached = self._full = (began, id(ledger), version, body)
                self.full_encoded += 1
            self.full_served += 1
            return cached[3]

    @staticmethod
    def _head(ledger: Ledger) -> dict[str, object]:
        head = {"term": ledger.term(), "leader": ledger.leader(), "version": ledger.version()}
        history = ledger.history()
        return head if history is None else {**head, "history": history}

    def _encode_delta(
        self, ledger: Ledger, since: int, asker: tuple[str, int] | None = None
    ) -> bytes | None:
        """A copy that says where it is gets only what it lacks (small); None when
        it is too far behind (or ahead) for that."""
        head = self._head(ledger)
        key = (id(ledger), head["version"], head["term"], head["leader"], since)
        with self._deltas_lock:
            cached = self._deltas.get(key) if head["version"] is not None else None
        if cached is not None and asker is None:
            self.deltas_served += 1
            return cached
        with ledger.reading() as state:
            head = self._head(ledger)
            if asker is not None:  # a copy another leader of this history gave
                if asker[1] > state.get("term", 0):
                    return None  # a term this replica never saw: not the same history
                if since > state.get("rev", 0):
                    self.behind_served += 1  # not applied that far yet: ask again
                    return json.dumps({**head, "behind": True}, default=str).encode()
            delta = sm.changes(state, since)
            if delta is None:
                return None
            copied = state_json.copy_of(delta)  # a C-speed copy under the lock...
        body = state_json.encode_copy(head, "changes", copied).encode()  # ...JSON after
        self.deltas_encoded += 1
        self.deltas_served += 1
        if head["version"] is not None and key[1:4] == (
            head["version"],
            head["term"],
            head["leader"],
        ):  # nothing changed between the key and the read: keep it for the next asker
            with self._deltas_lock:
                if any(k[:4] != key[:4] for k in self._deltas):
                    self._deltas = {}  # only the current version's deltas are kept
                self._deltas[key] = body
        return body

    def _encode_full(self, ledger: Ledger) -> bytes:
        with ledger.reading() as state:
            head, frozen = self._head(ledger), state_json.freeze(state)
        return state_json.encode_under(head, frozen).encode()

    def counts(self) -> dict[str, int]:
        return {
            "full_encoded": self.full_encoded,
            "full_served": self.full_served,
            "deltas_served": self.deltas_served,
            "deltas_encoded": self.deltas_encoded,
            "behind_served": self.behind_served,
        }


def ledger_routes(
    get_ledger: Callable[[], Ledger | None], token: str, bodies: ReplicaBodies | None = None
) -> list[web.RouteDef]:
    """``POST /consensus/op`` applies an operation through this node's ledger;
    ``GET /consensus/ledger`` returns this node's replica (for standby copies)."""
    replica = bodies or ReplicaBodies()

    async def post_op(request: web.Request) -> web.Response:
        op = await read_json_object(request)
        if not isinstance(op.get("op"), str) or op["op"] not in sm.OPERATIONS:
            known = ", ".join(sorted(sm.OPERATIONS))
            return web.json_response(
                {"error": f"field 'op': {op.get('op')!r} is not one of {known}"}, status=400
            )
        ledger = get_ledger()
        if ledger is None:
            return web.json_response({"ok": False, "reason": "no ledger on this node"}, status=503)
        if request.headers.get(FORWARDED) and ledger.forwards_over_http and not ledger.is_leader():
            # one hop only: a write forwarded to a node that no longer leads fails now,
            # rather than wandering on and landing after its sender gave up
            return web.json_response({"ok": False, "reason": "not the leader (forwarded write)"})
        # A forwarded write speaks for a non-leader, whose idea of the term may lag
        # one election: stamp it with ours.  Results stay fenced by their tokens.
        # The leader stamps its own term: a sender on the other backend during a
        # consensus switch may know a higher (foreign) term, which must not raise ours.
        term = op.get("term")
        if (
            not isinstance(term, int)
            or isinstance(term, bool)
            or term < ledger.term()
            or ledger.is_leader()
        ):
            op["term"] = ledger.term()
        result = await asyncio.to_thread(ledger.timed_propose, op)
        return web.json_response(result)

    async def get_state(request: web.Request) -> web.Response:
        if not bearer_ok(request, token):  # job payloads are not for everyone who can GET
            return web.json_response({"error": "needs Authorization: Bearer"}, status=401)
        ledger = get_ledger()
        if ledger is None:
            return web.json_response({"error": "no ledger on this node"}, status=503)
        query = request.query
        numbers: dict[str, int | None] = {}
        for name in ("since", "term"):
            raw = query.get(name, "")
            try:
                numbers[name] = int(raw) if raw else None
            except ValueError:
                return web.json_response(
                    {"error": f"query {name!r}: {raw!r} is not a whole number"}, status=400
                )
        since, term, history = numbers["since"], numbers["term"], query.get("history")
        if (history is None) != (term is None):
            return web.json_response(
                {"error": "query 'history' and 'term' go together"}, status=400
            )
        asker = None if history is None or term is None else (history, term)
        # the whole replica goes out only to a new copy or one too far behind
        body = await replica.answer(ledger, since, asker)
        return web.Response(body=body, content_type="application/json")

    return [web.post("/consensus/op", post_op), web.get("/consensus/ledger", get_state)]


FORWARDED = "X-Ringrift-Forwarded"


def http_json(
    url: str,
    *,
    token: str,
    body: JSONMapping | None = None,
    timeout: float = 2.0,
    forwarded: bool = False,
) -> tuple[int, JSONValue]:
    """One blocking request; (status, decoded body), (0, reason) when unreachable."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    req.add_header("Content-Type", "application/json")
    if forwarded:
        req.add_header(FORWARDED, "1")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None
    except (OSError, ValueError) as exc:
        return 0, str(exc)


class RemoteLedger(Ledger):
    """Writes go to the leader's status server; reads come from a fetched copy.

    ``leader_url`` says where the leader is right now (from membership
    metadata, a voter's /status, or the Bully election); ``None`` means no
    leader is known and every write fails at once.
    """

    forwards_over_http = True

    def __init__(
        self,
        node_id: str,
        leader_url: Callable[[], str | None],
        leader_name: Callable[[], str | None],
        term: Callable[[], int],
        *,
        token: str,
        op_timeout: float = 2.0,
    ) -> None:
        super().__init__()
        self.node_id = node_id
        self.op_timeout = op_timeout
        self._leader_url = leader_url
        self._leader_name = leader_name
        self._term = term
        self._token = token
        self._lock = threading.Lock()
        self._copy: sm.State = sm.new_state()
        self._source: tuple[str, int] | None = None  # whose whole copy this is
        # the history the copy's revisions belong to (ReplicaBodies.answer): a later
        # leader of the same history is asked for changes, not a whole copy
        self._history: str | None = None
        self._behind = 0  # "behind" answers in a row (bounded: then a whole copy)
        self.copied_at = 0.0

    def propose(self, op: dict[str, object], timeout: float | None = None) -> sm.Result:
        url = self._leader_url()
        if url is None:
            return {"ok": False, "reason": "no leader known"}
        status, body = http_json(
            url + "/consensus/op",
            token=self._token,
            body=op,
            timeout=self.op_timeout if timeout is None else timeout,
            forwarded=True,
        )
        if status == 200 and isinstance(body, dict) and isinstance(body.get("ok"), bool):
            return dict[str, object](body)
        return {"ok": False, "reason": f"leader at {url} answered {status}: {body}"}

    def refresh(self, timeout: float = 2.0) -> bool:
        """Bring the local read copy up to the leader's replica: what changed since
        the copy's revision when the leader can say, the whole replica otherwise."""
        url = self._leader_url()
        if url is None:
            return False
        # Revisions number one history: from a new leader (or term) of another
        # history or none named, a whole copy first, then its changes.
        source = (url, self._term())
        with self._lock:
            rev, term = int(self._copy.get("rev", 0)), int(self._copy.get("term", 0))
            same, history = source == self._source, self._history
        query = ""
        if rev > 0 and same:
            query = f"?since={rev}"
        elif rev > 0 and history is not None and self._behind < MAX_BEHIND:
            query = "?" + urllib.parse.urlencode({"since": rev, "history": history, "term": term})
        status, body = http_json(
            url + "/consensus/ledger" + query,
            token=self._token,
            # a whole copy of a big ledger takes longer than a delta; giving up on it
            # after a second only made every copy ask again, every second
            timeout=timeout if rev > 0 else max(timeout, FULL_COPY_TIMEOUT_S),
        )
        if status != 200 or not isinstance(body, dict):
            return False
        if body.get("behind") is True and not same:
            self._behind += 1  # a new leader not yet applied as far as our copy
            return False
        self._behind = 0
        named = body.get("history")
        delta = body.get("changes")
        if isinstance(delta, dict):
            with self._lock:  # readers hold the lock too: they never see half of it
                try:
                    sm.apply_changes(self._copy, delta)
                except (KeyError, TypeError, AttributeError) as exc:
                    log.warning(
                        "ledger changes from %s unusable (%s): next time a whole copy", url, exc
                    )
                    self._source, self._history = None, None
                    return False
                self.copied_at = time.time()
                self._source = source
            return True
        state = body.get("state")
        if not sm.is_state(state):
            return False
        self.install(state)
        self._source = source
        self._history = named if isinstance(named, str) else None
        return True

    def install(self, state: sm.State) -> None:
        """Take ``state`` as the read copy (no numbering to keep).  It is kept, not
        copied: the caller hands over a state nobody else holds (one decoded just
        now), and a deep copy of a big ledger costs as much again in time and RSS."""
        sm.order_by_revision(state)  # an older version's leader sends its own order
        with self._lock:
            self._copy = state
            self._history = None  # refresh names it when a leader did
            self.copied_at = time.time()

    @contextmanager
    def reading(self) -> Iterator[sm.State]:
        with self._lock:
            yield self._copy

    def version(self) -> float:
        return self.copied_at

    def is_leader(self) -> bool:
        return False

    def leader(self) -> str | None:
        return self._leader_name()

    def term(self) -> int:
        return self._term()
