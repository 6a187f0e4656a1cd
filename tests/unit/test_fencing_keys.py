"""The fencing key layout other parts rely on (pure)."""

from __future__ import annotations

from ringrift_fleet.execution import fencing


def test_key_names_are_the_documented_ones() -> None:
    assert fencing.fence_key("j1") == "ringrift:fence:j1"
    assert fencing.run_key("j1") == "ringrift:run:j1"
    assert fencing.done_key("j1") == "ringrift:done:j1"
    assert fencing.deliveries_key("j1", 2) == "ringrift:deliveries:j1:2"
    for name in ("fence_key", "run_key", "done_key", "deliveries_key"):
        assert f"ringrift:{name.split('_')[0]}:" in (fencing.__doc__ or "")


def test_lease_records_who_holds_it() -> None:
    import json
    import os

    lease = json.loads(fencing.new_lease("w@cpu", "tok", 3))
    assert lease["owner"] == "w@cpu" and lease["pid"] == os.getpid()
    assert lease["token"] == "tok" and lease["attempt"] == 3
    assert lease["host"] == fencing.host_identity()
    assert fencing.new_lease("w", None, 1) != fencing.new_lease("w", None, 1)  # unique nonce
