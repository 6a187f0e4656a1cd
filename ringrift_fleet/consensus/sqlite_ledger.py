# mypy: disallow-any-explicit
"""The Bully fallback's ledger: the same operations as Raft, journalled in SQLite.

The file holds a snapshot of the state plus the operations applied since; on
open the snapshot is loaded and the operations replayed through the same pure
state machine Raft uses, so a restarted leader has exactly what it had
acknowledged.  WAL mode keeps readers (the status server) off the writer's
back.  Refused operations are not journalled.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ringrift_fleet.consensus import ledger as sm

log = logging.getLogger(__name__)

COMPACT_EVERY = 1000  # operations between snapshots

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshot (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER, state TEXT);
CREATE TABLE IF NOT EXISTS ops (seq INTEGER PRIMARY KEY, op TEXT NOT NULL);
"""


class SqliteStore:
    """One SQLite file: snapshot + journal, applied with :func:`ledger.apply`."""

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(_SCHEMA)
        # None while the state lives only in the file (install_encoded): decoded on
        # the first read.  _cold_term answers term() meanwhile.
        self._state: sm.State | None = None
        self._cold_term = 0
        self.state, self.seq = self._load()
        self._since_snapshot = 0

    @property
    def state(self) -> sm.State:
        with self.lock:
            if self._state is None:
                self._state, _seq = self._load()
            return self._state

    @state.setter
    def state(self, value: sm.State) -> None:
        self._state = value

    @property
    def loaded(self) -> bool:
        """Whether the state is decoded in memory (False after install_encoded
        until something reads it)."""
        return self._state is not None

    def term(self) -> int:
        """The stored state's term, without decoding a state kept only on disk."""
        with self.lock:
            if self._state is None:
                return self._cold_term
            term = self._state.get("term", 0)
            return term if isinstance(term, int) else 0

    def _load(self) -> tuple[sm.State, int]:
        row = self._db.execute("SELECT seq, state FROM snapshot WHERE id = 1").fetchone()
        state = sm.new_state() if row is None else json.loads(row[1])
        seq = 0 if row is None else int(row[0])
        for op_seq, text in self._db.execute(
            "SELECT seq, op FROM ops WHERE seq > ? ORDER BY seq", (seq,)
        ):
            sm.apply(state, json.loads(text))
            seq = op_seq
        sm.order_by_revision(state)  # a snapshot an older version wrote
        return state, seq

    def apply(self, op: Mapping[str, object]) -> sm.Result:
        """Apply and journal one operation (journalled only when it succeeds)."""
        try:
            text = json.dumps(op, allow_nan=False)
        except (TypeError, ValueError) as exc:
            return {"ok": False, "reason": f"operation is not plain JSON data: {exc}"}
        with self.lock:
            result = sm.apply(self.state, op)
            if not result["ok"]:
                return result
            try:
                self._db.execute("INSERT INTO ops (seq, op) VALUES (?, ?)", (self.seq + 1, text))
            except sqlite3.Error as exc:
                log.error("ledger journal write failed: %s; reloading from disk", exc)
                self.state, self.seq = self._load()
                return {"ok": False, "reason": f"journal write failed: {exc}"}
            self.seq += 1
            self._since_snapshot += 1
            if self._since_snapshot >= COMPACT_EVERY:
                self._snapshot()
            return result

    def _snapshot(self) -> None:
        with self.lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO snapshot (id, seq, state) VALUES (1, ?, ?)",
                    (self.seq, json.dumps(self.state)),
                )
                self._db.execute("DELETE FROM ops WHERE seq <= ?", (self.seq,))
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                raise
            self._since_snapshot = 0

    def apply_at(self, op: Mapping[str, object], seq: int) -> str:
        """Apply the leader's operation number ``seq``: "applied", "have" (already
        had it) or "gap" (an earlier one is missing: fetch a full copy)."""
        with self.lock:
            if seq <= self.seq:
                return "have"
            if seq != self.seq + 1:
                return "gap"
            self.apply(op)  # refused ones are never sent; seq advances only on success
            return "applied" if self.seq == seq else "gap"

    def install(self, state: sm.State, seq: int) -> None:
        """Replace everything with ``state`` at operation number ``seq``, atomically."""
        with self.lock:
            self.state = json.loads(json.dumps(state))
            sm.order_by_revision(self.state)
            self.seq = seq
            # the journal numbered another history (an older era may have run
            # further): drop all of it, or its rows would clash or replay on top
            self._db.execute("DELETE FROM ops")
            self._snapshot()

    def install_encoded(self, text: str, term: int, seq: int) -> None:
        """Replace everything with a state already encoded as JSON (``term`` is its
        term), kept on disk only until something reads it.

        A Raft voter's rollback copy: written every few seconds, read only on a
        switch back to Bully.  Holding it decoded cost a voter about 17 kB of RSS
        per held job (benchmarks/ledger_holders.py), more than its replica."""
        with self.lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO snapshot (id, seq, state) VALUES (1, ?, ?)",
                    (seq, text),
                )
                self._db.execute("DELETE FROM ops")
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                raise
            self._state, self._cold_term, self.seq = None, term, seq
            self._since_snapshot = 0

    @contextmanager
    def reading(self) -> Iterator[sm.State]:
        with self.lock:
            yield self.state

    def close(self) -> None:
        with self.lock:
            self._db.close()
