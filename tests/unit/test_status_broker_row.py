"""`ringrift-fleet status` shows the broker section of /status."""

from __future__ import annotations

from ringrift_fleet.commands.status import render


def test_the_table_says_whether_the_broker_is_up() -> None:
    base = {"node_id": "n0", "role": "leader", "leader_id": "n0", "term": 3}
    up = render({**base, "broker": {"url": "redis://:***@h:6379/0", "up": True}})
    assert "broker" in up and "redis://:***@h:6379/0 up" in up
    down = render(
        {**base, "broker": {"url": "redis://h:6379/0", "up": False, "last_error": "ping: refused"}}
    )
    assert "redis://h:6379/0 DOWN (ping: refused)" in down
    assert "broker" not in render(base)  # an older coordinator without the section
