"""Webhooks reach a real (local) HTTP server in the right format, and never hurt the caller."""

from __future__ import annotations

import logging
import time

import pytest

from ringrift_fleet import notifications
from ringrift_fleet.errors import ValidationError
from ringrift_fleet.notifications import (
    SEVERITY_COLORS,
    Notification,
    Notifier,
    WebhookConfig,
    send_webhook_notification,
)
from tests.support.webhook_server import recording_server

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def no_env_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        notifications.ENV_SLACK,
        notifications.ENV_DISCORD,
        notifications.ENV_GENERIC,
        notifications.ENV_EVENTS,
        notifications.ENV_MIN_SEVERITY,
    ):
        monkeypatch.delenv(var, raising=False)


def test_env_form_posts_slack_attachment_and_discord_embed(monkeypatch: pytest.MonkeyPatch) -> None:
    with recording_server() as server:
        monkeypatch.setenv("RINGRIFT_SLACK_WEBHOOK_URL", server.url("/slack"))
        monkeypatch.setenv("RINGRIFT_DISCORD_WEBHOOK_URL", server.url("/discord"))
        queued = send_webhook_notification(
            event_type="training_complete",
            title="Training Complete: hex8_2p",
            message="Elo +15.3 after 2.5h training",
            severity="warning",
            details={"board_type": "hex8", "elo_change": 15.3},
        )
        assert queued is True
        assert notifications.flush(10)
        by_path = {r.path: r for r in server.requests}
    assert set(by_path) == {"/slack", "/discord"}
    slack = by_path["/slack"].body
    attachment = slack["attachments"][0]
    assert attachment["color"] == SEVERITY_COLORS["warning"]
    assert attachment["title"] == "Training Complete: hex8_2p"
    assert attachment["text"] == "Elo +15.3 after 2.5h training"
    assert {f["title"]: f["value"] for f in attachment["fields"]} == {
        "board_type": "hex8",
        "elo_change": "15.3",
    }
    assert by_path["/slack"].headers["Content-Type"] == "application/json"
    embed = by_path["/discord"].body["embeds"][0]
    assert embed["color"] == int(SEVERITY_COLORS["warning"][1:], 16)
    assert embed["title"] == "Training Complete: hex8_2p"
    assert embed["description"] == "Elo +15.3 after 2.5h training"
    assert {f["name"]: f["value"] for f in embed["fields"]} == {
        "board_type": "hex8",
        "elo_change": "15.3",
    }
    assert embed["timestamp"].endswith("+00:00")


def test_env_filter_and_min_severity(monkeypatch: pytest.MonkeyPatch) -> None:
    with recording_server() as server:
        monkeypatch.setenv("RINGRIFT_WEBHOOK_URL", server.url())
        monkeypatch.setenv("RINGRIFT_WEBHOOK_EVENTS", "model_promoted, leader_changed")
        monkeypatch.setenv("RINGRIFT_WEBHOOK_MIN_SEVERITY", "warning")
        notifier = Notifier()
        assert not send_webhook_notification(
            event_type="training_complete", severity="error", notifier=notifier
        )
        assert not send_webhook_notification(
            event_type="model_promoted", severity="info", notifier=notifier
        )
        assert send_webhook_notification(
            event_type="model_promoted", severity="warning", notifier=notifier
        )
        assert notifier.flush(10)
        assert [b["event"] for b in server.bodies()] == ["model_promoted"]
        assert notifier.stats["filtered"] == 2


def test_config_form_generic_json_and_event_filter() -> None:
    with recording_server() as server:
        notifier = Notifier()
        config = WebhookConfig(url=server.url(), events=["training_complete", "model_promoted"])
        assert config.resolved_kind == "generic"
        assert send_webhook_notification(
            config,
            event="training_complete",
            payload={"model": "hex8_2p_v3", "accuracy": 0.76},
            notifier=notifier,
        )
        assert not send_webhook_notification(
            config, event="node_joined", payload={}, notifier=notifier
        )
        assert notifier.flush(10)
        assert len(server.requests) == 1
        body = server.requests[0].body
    assert body["event"] == "training_complete"
    assert body["title"] == "Training complete"
    assert body["severity"] == "info"
    assert body["details"] == {"model": "hex8_2p_v3", "accuracy": 0.76}
    assert body["source"]


@pytest.mark.parametrize("severity", ["info", "warning", "error", "critical"])
def test_slack_colour_by_severity(severity: str) -> None:
    body = notifications.slack_payload(Notification(event="e", title="t", severity=severity))
    assert body["attachments"][0]["color"] == SEVERITY_COLORS[severity]
    assert body["text"].startswith(f"[{severity.upper()}]")
    assert len(set(SEVERITY_COLORS.values())) == 4


def test_retry_500_then_200() -> None:
    with recording_server(script=[500, 200]) as server:
        notifier = Notifier()
        config = WebhookConfig(url=server.url(), backoff=0.05, max_retries=3)
        assert send_webhook_notification(config, event="training_complete", notifier=notifier)
        assert notifier.flush(10)
        assert len(server.requests) == 2
        assert server.requests[0].body == server.requests[1].body
    assert notifier.stats["sent"] == 1 and notifier.stats["retries"] == 1
    assert notifier.stats["failed"] == 0


def test_retries_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    with recording_server(script=[503, 503, 503, 503]) as server:
        notifier = Notifier()
        config = WebhookConfig(url=server.url("/secret-token-path"), backoff=0.01, max_retries=2)
        with caplog.at_level(logging.WARNING, logger="ringrift_fleet.notifications"):
            assert send_webhook_notification(config, event="a", notifier=notifier)
            assert notifier.flush(10)
        assert len(server.requests) == 3  # 1 + max_retries, then given up
    assert notifier.stats["failed"] == 1 and notifier.stats["retries"] == 2
    assert "failed after 3 attempt(s): HTTP 503" in caplog.text
    assert "secret-token-path" not in caplog.text  # webhook URLs are secrets


def test_client_error_is_not_retried() -> None:
    with recording_server(script=[404]) as server:
        notifier = Notifier()
        config = WebhookConfig(url=server.url(), backoff=0.01, max_retries=3)
        assert send_webhook_notification(config, event="a", notifier=notifier)
        assert notifier.flush(10)
        assert len(server.requests) == 1
    assert notifier.stats["failed"] == 1 and notifier.stats["retries"] == 0


def test_hanging_server_does_not_block_the_caller() -> None:
    with recording_server(script=[None]) as server:
        notifier = Notifier()
        config = WebhookConfig(url=server.url(), timeout=1.5, max_retries=0)
        started = time.monotonic()
        assert send_webhook_notification(config, event="leader_changed", notifier=notifier)
        assert time.monotonic() - started < 1.0  # returned long before the 1.5 s timeout
        assert server.wait_for_requests(1, 10)
        assert notifier.flush(0.1) is False  # still waiting on the hung server
        assert notifier.flush(15) is True  # gave up after its timeout
        assert notifier.stats["failed"] == 1
        # the delivery thread survived and still works
        assert send_webhook_notification(config, event="after", notifier=notifier)
        assert notifier.flush(10)
        assert [b["event"] for b in server.bodies()] == ["leader_changed", "after"]
    assert notifier.stats["sent"] == 1


def test_queue_is_bounded() -> None:
    with recording_server(script=[None]) as server:
        notifier = Notifier(queue_size=1)
        config = WebhookConfig(url=server.url(), timeout=2.0, max_retries=0)
        assert send_webhook_notification(config, event="first", notifier=notifier)
        assert server.wait_for_requests(1, 10)  # first is in flight, queue empty
        assert send_webhook_notification(config, event="second", notifier=notifier)
        assert not send_webhook_notification(config, event="third", notifier=notifier)
        assert notifier.stats["dropped"] == 1
        server.release.set()
        assert notifier.flush(15)


def test_rate_limit_with_critical_bypass() -> None:
    now = [1000.0]
    notifier = Notifier(clock=lambda: now[0])
    with recording_server() as server:
        config = WebhookConfig(url=server.url(), rate_limit=3, rate_window=60.0)
        results = [
            send_webhook_notification(config, event=f"e{i}", notifier=notifier) for i in range(5)
        ]
        assert results == [True, True, True, False, False]
        assert send_webhook_notification(
            config, event="down", severity="critical", notifier=notifier
        )
        now[0] += 61.0
        assert send_webhook_notification(config, event="later", notifier=notifier)
        assert notifier.flush(10)
        assert [b["event"] for b in server.bodies()] == ["e0", "e1", "e2", "down", "later"]
    assert notifier.stats["rate_limited"] == 2


def test_malformed_calls_never_raise(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier()
    with caplog.at_level(logging.WARNING, logger="ringrift_fleet.notifications"):
        assert (
            send_webhook_notification(event_type="x", severity="urgent", notifier=notifier) is False
        )
        assert send_webhook_notification(title="no event", notifier=notifier) is False
    assert "severity 'urgent' is not one of info, warning, error, critical" in caplog.text
    assert send_webhook_notification(event_type="nobody_listening") is False  # no URLs set


def test_odd_details_are_serialised() -> None:
    class Thing:
        def __str__(self) -> str:
            return "thing!"

    with recording_server() as server:
        notifier = Notifier()
        config = WebhookConfig(url=server.url(), kind="discord")
        assert send_webhook_notification(
            config,
            event="e",
            payload={"obj": Thing(), "nested": {"a": [1, 2]}},
            title="x" * 500,
            notifier=notifier,
        )
        assert notifier.flush(10)
        embed = server.bodies()[0]["embeds"][0]
    assert {f["name"]: f["value"] for f in embed["fields"]} == {
        "obj": '"thing!"',
        "nested": '{"a": [1, 2]}',
    }
    assert len(embed["title"]) == 256


def test_bad_env_url_is_skipped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RINGRIFT_SLACK_WEBHOOK_URL", "hooks.slack.com/no-scheme")
    with caplog.at_level(logging.WARNING, logger="ringrift_fleet.notifications"):
        assert notifications.configs_from_env() == []
    assert (
        "RINGRIFT_SLACK_WEBHOOK_URL ignored: WebhookConfig.url: expected an http(s) URL"
        in caplog.text
    )


def test_webhook_config_validation_and_kind_detection() -> None:
    with pytest.raises(ValidationError, match=r"WebhookConfig\.url"):
        WebhookConfig(url="ftp://example.com/x")
    with pytest.raises(ValidationError, match=r"WebhookConfig\.min_severity"):
        WebhookConfig(url="https://example.com/x", min_severity="loud")
    with pytest.raises(ValidationError, match=r"WebhookConfig\.kind"):
        WebhookConfig(url="https://example.com/x", kind="teams")
    assert WebhookConfig(url="https://hooks.slack.com/services/T/B/X").resolved_kind == "slack"
    assert WebhookConfig(url="https://discord.com/api/webhooks/1/abc").resolved_kind == "discord"
    assert WebhookConfig(url="https://discord.com/other").resolved_kind == "generic"
    assert WebhookConfig(url="https://example.com/hook", kind="slack").resolved_kind == "slack"
    assert WebhookConfig(url="https://example.com/hook", events=["a"]).events == ("a",)


def test_a_dead_endpoint_is_warned_about_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with recording_server(script=[500] * 5) as server:
        notifier = Notifier()
        config = WebhookConfig(url=server.url(), max_retries=0)
        with caplog.at_level(logging.WARNING, logger="ringrift_fleet.notifications"):
            for i in range(5):
                assert send_webhook_notification(config, event=f"e{i}", notifier=notifier)
            assert notifier.flush(10)
        assert len(server.requests) == 5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"webhook e0 for http://127.0.0.1:{server.port}/… failed after 1 attempt(s): HTTP 500"
    ]
    assert notifier.stats["failed"] == 5
