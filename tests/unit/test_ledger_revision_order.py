"""Every seam a whole state enters through puts it in revision order.

Readers take "what changed since revision r" from the end of the maps
(``ledger.changed_since``); a state listed in another order -- an older version's
dump, snapshot, full copy or SQLite snapshot -- would hide changes from them.
"""

from __future__ import annotations

import json
from pathlib import Path

from pysyncobj.serializer import Serializer

from ringrift_fleet.consensus import ledger as sm
from ringrift_fleet.consensus.raft_state import _dump_reader, _LedgerState
from ringrift_fleet.consensus.remote import RemoteLedger
from ringrift_fleet.consensus.sqlite_ledger import SqliteStore


def _ledger_in_another_order() -> tuple[sm.State, sm.State]:
    """A ledger where early jobs changed last, and the same ledger listed by id (the
    order an older version's copy may use)."""
    state = sm.new_state()
    ops: list[dict[str, object]] = []
    for n in range(6):
        ops.append(sm.make_op("add_work.v1", now=1.0, term=1, work_id=f"j{n}", payload={}))
    for n in (0, 1):
        ops.append(
            sm.make_op("assign.v1", now=2.0, term=1, job_id=f"j{n}", node="h", job_type="selfplay")
        )
        ops.append(sm.make_op("start_work.v1", now=3.0, term=1, work_id=f"j{n}", node="h"))
    for o in ops:
        assert sm.apply(state, o)["ok"], o
    assert list(state["work"])[-2:] == ["j0", "j1"]  # changed last, listed last
    by_id = json.loads(json.dumps(state))
    by_id["work"] = dict(sorted(by_id["work"].items()))
    by_id["assign"] = dict(sorted(by_id["assign"].items()))
    assert not sm.in_revision_order(by_id)
    return state, by_id


def _check(got: sm.State, want: sm.State) -> None:
    assert sm.in_revision_order(got)
    assert got == want
    before_last = want["work"]["j1"].get("rev", 0) - 1
    assert [w["work_id"] for w in sm.changed_since(got, before_last)] == ["j1"]


def test_a_raft_dump_in_another_order_loads_in_revision_order(tmp_path: Path) -> None:
    state, by_id = _ledger_in_another_order()
    dump = tmp_path / "old.dump"
    Serializer(str(dump), 2**16, False, None, None, None).serialize(
        ([{}, {"state": by_id}], ("e", 2, 1), ("e", 1, 1), set()), 2
    )
    fresh = _LedgerState()
    _dump_reader(fresh)(str(dump))
    _check(fresh.state, state)


def test_a_full_copy_in_another_order_is_installed_in_revision_order() -> None:
    state, by_id = _ledger_in_another_order()
    copy = RemoteLedger("c", lambda: None, lambda: None, lambda: 1, token="t")
    copy.install(by_id)
    with copy.reading() as held:
        _check(held, state)


def test_a_sqlite_snapshot_in_another_order_opens_in_revision_order(tmp_path: Path) -> None:
    state, by_id = _ledger_in_another_order()
    store = SqliteStore(tmp_path / "l.sqlite")
    store.install(by_id, 7)
    _check(store.state, state)
    store.install_encoded(json.dumps(by_id), 1, 8)  # decoded only when read
    _check(store.state, state)
    store.close()
    _check(SqliteStore(tmp_path / "l.sqlite").state, state)
