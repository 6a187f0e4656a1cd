"""The pure part of the queue watch: which queues are stuck, and what to tell a person."""

from __future__ import annotations

from ringrift_fleet.commands.status import render
from ringrift_fleet.execution.consumers import hint, parse_binding, render_lines, unconsumed


def test_only_queues_with_messages_and_no_consumer_are_stuck() -> None:
    depths = {"training.t3": 2, "cpu": 5, "any": 0, "node.gpu-9": 1, "selfplay.t1": 0}
    consumers = {"cpu-a@cpu": ["cpu", "node.cpu-a", "any"]}
    assert unconsumed(depths, consumers) == {"node.gpu-9": 1, "training.t3": 2}
    assert unconsumed(depths, {}) == {"cpu": 5, "node.gpu-9": 1, "training.t3": 2}
    assert unconsumed({"cpu": 0}, {}) == {}


def test_every_hint_says_what_to_do() -> None:
    assert "--queue node.<host>" in hint("training.t3")
    assert "tier t1" in hint("selfplay.t1") and "--queue cpu" in hint("selfplay.t1")
    assert "ringrift-fleet worker --node gpu-9" in hint("node.gpu-9")
    assert "--cpu" in hint("cpu")
    assert "typo" in hint("trainig")


def test_kombu_bindings_name_their_queue() -> None:
    assert parse_binding(b"training.t3\x06\x16\x06\x16training.t3") == "training.t3"
    assert parse_binding("rk\x06\x16*\x06\x16q") == "q"
    assert parse_binding(b"garbage") is None


def test_status_shows_one_warning_per_stuck_queue() -> None:
    section = {
        "queues": [{"queue": "training.t3", "messages": 1, "hint": hint("training.t3")}],
        "checked_at": 1.0,
    }
    [line] = render_lines(section)
    assert line.startswith("warning: queue training.t3 holds 1 message(s) that no worker")
    assert render_lines({"queues": [], "checked_at": 1.0}) == []
    assert render_lines({"error": "ConnectionError"}) == []
    assert render_lines(None) == []
    text = render({"node_id": "n0", "queues_without_consumers": section})
    assert "warning: queue training.t3" in text
