"""Webhook notifications (Slack, Discord, generic JSON) that never hurt the caller.

A notification is a side effect of something more important (a training run
finishing, a leader change), so sending one must never raise into the caller,
never block it, and never pile up without bound.  ``send_webhook_notification``
only filters, rate-limits and enqueues; one daemon thread per process posts
with a per-attempt timeout and a bounded retry with exponential back-off.

Both call forms of the RingRift P2P module work::

    send_webhook_notification(event_type=..., title=..., message=..., severity=..., details=...)
    send_webhook_notification(WebhookConfig(url=..., events=[...]), event=..., payload={...})

The first goes to every URL set in RINGRIFT_SLACK_WEBHOOK_URL,
RINGRIFT_DISCORD_WEBHOOK_URL and RINGRIFT_WEBHOOK_URL (generic JSON), filtered
by RINGRIFT_WEBHOOK_EVENTS (comma-separated; empty = all) and
RINGRIFT_WEBHOOK_MIN_SEVERITY (default info).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import logging
import os
import queue
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ringrift_fleet.errors import ValidationError

log = logging.getLogger(__name__)

SEVERITIES = ("info", "warning", "error", "critical")
KINDS = ("auto", "slack", "discord", "generic")

# One colour per severity: green, amber, red, dark red (Slack hex; Discord int).
SEVERITY_COLORS = {
    "info": "#2eb67d",
    "warning": "#ecb22e",
    "error": "#e01e5a",
    "critical": "#8b0000",
}

ENV_SLACK = "RINGRIFT_SLACK_WEBHOOK_URL"
ENV_DISCORD = "RINGRIFT_DISCORD_WEBHOOK_URL"
ENV_GENERIC = "RINGRIFT_WEBHOOK_URL"
ENV_EVENTS = "RINGRIFT_WEBHOOK_EVENTS"
ENV_MIN_SEVERITY = "RINGRIFT_WEBHOOK_MIN_SEVERITY"

QUEUE_SIZE = 256  # pending notifications per process; beyond this new ones are dropped
FAILURE_LOG_INTERVAL = 60.0  # s between warnings about one failing destination
RETRY_AFTER_CAP = 30.0  # s: the most a 429's Retry-After may delay one retry


@dataclass(frozen=True)
class WebhookConfig:
    """One destination and its rules.

    ``events`` empty = every event.  ``rate_limit`` notifications per
    ``rate_window`` seconds at most (critical ones always pass).  Each attempt
    waits at most ``timeout`` s; failures (network, 5xx, 429) are retried
    ``max_retries`` times after ``backoff``, 2×``backoff``, … seconds.
    """

    url: str
    events: Sequence[str] = ()
    min_severity: str = "info"
    kind: str = "auto"
    timeout: float = 5.0
    max_retries: int = 3
    backoff: float = 1.0
    rate_limit: int = 30
    rate_window: float = 60.0
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "events", tuple(self.events or ()))
        parsed = urllib.parse.urlsplit(self.url or "")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValidationError(f"WebhookConfig.url: expected an http(s) URL, got {self.url!r}")
        if self.min_severity not in SEVERITIES:
            raise ValidationError(
                f"WebhookConfig.min_severity: {self.min_severity!r} is not one of "
                f"{', '.join(SEVERITIES)}"
            )
        if self.kind not in KINDS:
            raise ValidationError(
                f"WebhookConfig.kind: {self.kind!r} is not one of {', '.join(KINDS)}"
            )
        for name in ("timeout", "rate_window"):
            if not getattr(self, name) > 0:
                raise ValidationError(
                    f"WebhookConfig.{name}: expected a positive number of seconds"
                )
        if self.backoff < 0 or self.max_retries < 0 or self.rate_limit < 1:
            raise ValidationError(
                "WebhookConfig: backoff and max_retries must be >= 0, rate_limit >= 1"
            )

    @property
    def resolved_kind(self) -> str:
        """slack / discord / generic: the given kind, or guessed from the URL."""
        if self.kind != "auto":
            return self.kind
        parts = urllib.parse.urlsplit(self.url)
        host = (parts.hostname or "").lower()
        if host == "hooks.slack.com":
            return "slack"
        if host in ("discord.com", "discordapp.com") and parts.path.startswith("/api/webhooks"):
            return "discord"
        return "generic"

    def wants(self, event: str, severity: str) -> bool:
        if self.events and event not in self.events:
            return False
        return SEVERITIES.index(severity) >= SEVERITIES.index(self.min_severity)


@dataclass(frozen=True)
class Notification:
    event: str
    title: str
    message: str = ""
    severity: str = "info"
    details: Mapping[str, Any] = field(default_factory=dict)
    timestamp: float = field(default_factory=time.time)
    source: str = ""


# --- payloads (pure) -------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=str)


def slack_payload(n: Notification) -> dict[str, Any]:
    """An incoming-webhook message with one attachment coloured by severity."""
    fields = [
        {"title": str(k), "value": _clip(_value(v), 500), "short": len(_value(v)) < 40}
        for k, v in list(n.details.items())[:20]
    ]
    return {
        "text": f"[{n.severity.upper()}] {n.title}",
        "attachments": [
            {
                "color": SEVERITY_COLORS[n.severity],
                "title": _clip(n.title, 250),
                "text": _clip(n.message, 3000),
                "fields": fields,
                "footer": f"ringrift_fleet · {n.event}" + (f" · {n.source}" if n.source else ""),
                "ts": int(n.timestamp),
            }
        ],
    }


def discord_payload(n: Notification) -> dict[str, Any]:
    """A webhook message with one embed, within Discord's documented field limits."""
    return {
        "embeds": [
            {
                "title": _clip(n.title, 256),
                "description": _clip(n.message, 4096),
                "color": int(SEVERITY_COLORS[n.severity].lstrip("#"), 16),
                "fields": [
                    {"name": _clip(str(k), 256), "value": _clip(_value(v), 1024), "inline": True}
                    for k, v in list(n.details.items())[:25]
                ],
                "footer": {
                    "text": _clip(
                        f"{n.event} · {n.severity}" + (f" · {n.source}" if n.source else ""), 2048
                    )
                },
                "timestamp": datetime.fromtimestamp(n.timestamp, timezone.utc).isoformat(),
            }
        ]
    }


def generic_payload(n: Notification) -> dict[str, Any]:
    return {
        "event": n.event,
        "title": n.title,
        "message": n.message,
        "severity": n.severity,
        "details": dict(n.details),
        "timestamp": datetime.fromtimestamp(n.timestamp, timezone.utc).isoformat(),
        "source": n.source,
    }


def render(config: WebhookConfig, n: Notification) -> bytes:
    kind = config.resolved_kind
    body = (
        slack_payload(n)
        if kind == "slack"
        else discord_payload(n)
        if kind == "discord"
        else generic_payload(n)
    )
    return json.dumps(body, default=str).encode("utf-8")


# --- delivery ---------------------------------------------------------------------------------


def _post(
    url: str, body: bytes, headers: Mapping[str, str], timeout: float
) -> tuple[int, float | None]:
    """POST once: (HTTP status or 0 for a network failure, Retry-After seconds if given)."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "ringrift-fleet", **headers},
    )
    try:
        with urllib.request.urlopen(
            request, timeout=timeout
        ) as response:  # http(s) only: WebhookConfig checks
            response.read(65536)
            return int(response.status), None
    except urllib.error.HTTPError as exc:
        retry_after = None
        with contextlib.suppress(TypeError, ValueError):
            retry_after = float(exc.headers.get("Retry-After", ""))
        return int(exc.code), retry_after
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.debug("webhook %s: %s", url, exc)
        return 0, None


class Notifier:
    """Filters, rate-limits and enqueues; a daemon thread delivers.  Thread-safe."""

    def __init__(
        self,
        *,
        queue_size: int = QUEUE_SIZE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._queue: queue.Queue[tuple[WebhookConfig, Notification]] = queue.Queue(queue_size)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._sent: dict[str, collections.deque[float]] = {}
        self._failure_logged: dict[str, float] = {}
        self._failures_quiet: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self.stats: collections.Counter[str] = collections.Counter()

    def send(self, config: WebhookConfig, n: Notification) -> bool:
        """Queue ``n`` for ``config``; False when filtered, rate-limited or the queue is full."""
        if not config.wants(n.event, n.severity):
            self.stats["filtered"] += 1
            return False
        with self._lock:
            if n.severity != "critical" and not self._admit(config):
                self.stats["rate_limited"] += 1
                return False
            try:
                self._queue.put_nowait((config, n))
            except queue.Full:
                self.stats["dropped"] += 1
                if self.stats["dropped"] == 1 or self.stats["dropped"] % 100 == 0:
                    log.warning(
                        "webhook queue full: dropped %d notifications", self.stats["dropped"]
                    )
                return False
            self._pending += 1
            self.stats["queued"] += 1
            self._ensure_thread()
        return True

    def _admit(self, config: WebhookConfig) -> bool:
        now = self._clock()
        window = self._sent.setdefault(config.url, collections.deque())
        while window and window[0] <= now - config.rate_window:
            window.popleft()
        if len(window) >= config.rate_limit:
            return False
        window.append(now)
        return True

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="ringrift-webhooks", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            config, n = self._queue.get()
            try:
                ok = self._deliver(config, n)
                self.stats["sent" if ok else "failed"] += 1
            except Exception:  # a bug here must not kill the thread or lose later messages
                self.stats["failed"] += 1
                log.exception("webhook delivery to %s crashed", config.url)
            finally:
                with self._lock:
                    self._pending -= 1
                    if self._pending == 0:
                        self._idle.notify_all()

    def _deliver(self, config: WebhookConfig, n: Notification) -> bool:
        body = render(config, n)
        delay = config.backoff
        for attempt in range(config.max_retries + 1):
            status, retry_after = _post(config.url, body, config.headers, config.timeout)
            if 200 <= status < 300:
                return True
            retryable = status == 0 or status == 429 or status >= 500
            if not retryable or attempt == config.max_retries:
                self._log_failure(config, n, attempt + 1, status)
                return False
            self.stats["retries"] += 1
            wait = delay if retry_after is None else min(max(retry_after, delay), RETRY_AFTER_CAP)
            self._sleep(wait)
            delay *= 2
        return False

    def _log_failure(
        self, config: WebhookConfig, n: Notification, attempts: int, status: int
    ) -> None:
        """A warning per destination per FAILURE_LOG_INTERVAL; the rest at debug (a dead
        endpoint must not flood the log with one line per notification)."""
        now = time.monotonic()
        why = f"HTTP {status}" if status else "no response"
        with self._lock:
            last = self._failure_logged.get(config.url)
            loud = last is None or now - last >= FAILURE_LOG_INTERVAL
            if loud:
                self._failure_logged[config.url] = now
                quiet, self._failures_quiet[config.url] = self._failures_quiet.get(config.url, 0), 0
            else:
                self._failures_quiet[config.url] = self._failures_quiet.get(config.url, 0) + 1
        if not loud:
            log.debug("webhook %s to %s failed: %s", n.event, _redact(config.url), why)
            return
        more = f" ({quiet} more failures since the last warning)" if quiet else ""
        log.warning(
            "webhook %s for %s failed after %d attempt(s): %s%s",
            n.event,
            _redact(config.url),
            attempts,
            why,
            more,
        )

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued notification is delivered or given up; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True


def _redact(url: str) -> str:
    """Webhook URLs are secrets: log the host only."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…"


_default: Notifier | None = None
_default_lock = threading.Lock()


def default_notifier() -> Notifier:
    global _default
    with _default_lock:
        if _default is None:
            _default = Notifier()
            atexit.register(_default.flush, 2.0)
        return _default


def flush(timeout: float = 10.0) -> bool:
    """Deliver what the process-wide notifier holds (tests, shutdown); False on timeout."""
    return default_notifier().flush(timeout)


def configs_from_env(env: Mapping[str, str] | None = None) -> list[WebhookConfig]:
    """The destinations set in the environment; a malformed one is logged and skipped."""
    env = os.environ if env is None else env
    events = [e.strip() for e in env.get(ENV_EVENTS, "").split(",") if e.strip()]
    severity = env.get(ENV_MIN_SEVERITY, "info").strip().lower() or "info"
    if severity not in SEVERITIES:
        log.warning(
            "%s=%r: expected one of %s; using info",
            ENV_MIN_SEVERITY,
            env[ENV_MIN_SEVERITY],
            ", ".join(SEVERITIES),
        )
        severity = "info"
    out = []
    for var, kind in ((ENV_SLACK, "slack"), (ENV_DISCORD, "discord"), (ENV_GENERIC, "auto")):
        url = env.get(var, "").strip()
        if not url:
            continue
        try:
            out.append(WebhookConfig(url=url, events=events, min_severity=severity, kind=kind))
        except ValidationError as exc:
            log.warning("%s ignored: %s", var, exc)
    return out


def _source() -> str:
    try:
        from ringrift_fleet.config import get_p2p_config

        return get_p2p_config().NODE_ID
    except Exception:
        return socket.gethostname()


def send_webhook_notification(
    config: WebhookConfig | None = None,
    *,
    event: str | None = None,
    payload: Mapping[str, Any] | None = None,
    event_type: str | None = None,
    title: str | None = None,
    message: str = "",
    severity: str = "info",
    details: Mapping[str, Any] | None = None,
    notifier: Notifier | None = None,
) -> bool:
    """Queue a notification; True if at least one destination accepted it.

    Never raises and never waits for the network: a malformed call is logged
    and returns False.
    """
    try:
        name = event_type or event
        if not name:
            raise ValidationError("send_webhook_notification: give event_type (or event)")
        sev = str(severity).lower()
        if sev not in SEVERITIES:
            raise ValidationError(
                f"send_webhook_notification: severity {severity!r} is not one of "
                f"{', '.join(SEVERITIES)}"
            )
        info = dict(details or {})
        info.update(payload or {})
        n = Notification(
            event=str(name),
            title=title or str(name).replace("_", " ").capitalize(),
            message=message,
            severity=sev,
            details=info,
            source=_source(),
        )
        targets = [config] if config is not None else configs_from_env()
        sender = notifier or default_notifier()
        results = [sender.send(c, n) for c in targets]
        return any(results)
    except Exception as exc:  # the caller's work matters more than this message
        log.warning("webhook notification not sent: %s", exc)
        return False
