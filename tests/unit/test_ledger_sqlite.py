"""The Bully ledger's SQLite store: what survives a restart, and what never gets in."""

from __future__ import annotations

from pathlib import Path

from ringrift_fleet.consensus import ledger as sm
from ringrift_fleet.consensus import sqlite_ledger
from ringrift_fleet.consensus.sqlite_ledger import SqliteStore


def op(name: str, **args: object) -> dict[str, object]:
    return sm.make_op(name, now=1.0, term=1, **args)


def test_reopening_replays_the_journal_to_the_same_state(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    store = SqliteStore(path)
    for i in range(5):
        assert store.apply(op("add_work.v1", work_id=f"w{i}", payload={"i": i}))["ok"]
    assert store.apply(op("claim_work.v1", work_id="w2", node="a"))["ok"]
    assert not store.apply(op("claim_work.v1", work_id="w2", node="b"))["ok"]
    with store.reading() as state:
        before = sm.new_state() | state
    store.close()
    again = SqliteStore(path)
    with again.reading() as state:
        assert state == before
    again.close()


def test_snapshots_compact_the_journal_without_losing_anything(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sqlite_ledger, "COMPACT_EVERY", 3)
    path = tmp_path / "l.sqlite"
    store = SqliteStore(path)
    for i in range(8):
        assert store.apply(op("add_work.v1", work_id=f"w{i}", payload={}))["ok"]
    store.close()
    again = SqliteStore(path)
    with again.reading() as state:
        assert sorted(state["work"]) == [f"w{i}" for i in range(8)]
    rows = again._db.execute("SELECT COUNT(*) FROM ops").fetchone()[0]
    assert rows < 8
    again.close()


def test_refused_and_unserialisable_operations_leave_no_trace(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    store = SqliteStore(path)
    assert not store.apply(op("claim_work.v1", work_id="nope", node="a"))["ok"]
    bad = store.apply(op("add_work.v1", work_id="x", payload={"f": float("inf")}))
    assert not bad["ok"]
    store.close()
    again = SqliteStore(path)
    with again.reading() as state:
        assert state == sm.new_state()
    assert again._db.execute("SELECT COUNT(*) FROM ops").fetchone()[0] == 0
    again.close()


def test_install_replaces_the_state_durably(tmp_path: Path) -> None:
    leader_state = sm.new_state()
    sm.apply(leader_state, op("add_work.v1", work_id="from-leader", payload={}))
    path = tmp_path / "l.sqlite"
    store = SqliteStore(path)
    store.apply(op("add_work.v1", work_id="stale", payload={}))
    store.install(leader_state, seq=7)
    store.close()
    again = SqliteStore(path)
    with again.reading() as state:
        assert list(state["work"]) == ["from-leader"]
    assert again.seq == 7
    again.close()


def test_apply_at_takes_the_leaders_operations_in_order_only(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "l.sqlite")
    assert store.apply_at(op("add_work.v1", work_id="a", payload={}), 1) == "applied"
    assert store.apply_at(op("add_work.v1", work_id="a", payload={}), 1) == "have"
    assert store.apply_at(op("add_work.v1", work_id="c", payload={}), 3) == "gap"
    with store.reading() as state:
        assert sorted(state["work"]) == ["a"]
    assert store.apply_at(op("add_work.v1", work_id="b", payload={}), 2) == "applied"
    assert store.seq == 2
    store.close()


def test_an_encoded_copy_is_kept_on_disk_until_read_and_then_is_the_same(tmp_path: Path) -> None:
    """A Raft voter's rollback mirror: written often, read only on a switch back to
    Bully, so it must not sit decoded in the voter's memory meanwhile."""
    import json

    source = sm.new_state()
    for i in range(3):
        assert sm.apply(source, op("add_work.v1", work_id=f"w{i}", payload={"i": i}))["ok"]
    source["term"] = 7
    path = tmp_path / "l.sqlite"
    store = SqliteStore(path)
    store.install_encoded(json.dumps(source), term=7, seq=42)
    assert not store.loaded
    assert (store.term(), store.seq) == (7, 42)  # answered without decoding
    assert not store.loaded
    with store.reading() as state:
        assert state == source
    assert store.loaded
    # a write after a cold install lands on the installed state, durably
    claim = sm.make_op("claim_work.v1", now=1.0, term=7, work_id="w1", node="a")
    assert store.apply(claim)["ok"]
    store.close()
    again = SqliteStore(path)
    with again.reading() as state:
        assert state["work"]["w1"]["status"] == "claimed" and set(state["work"]) == set(
            source["work"]
        )
    assert (again.term(), again.seq) == (7, 43)
    again.close()
