"""``ringrift-fleet status``: a coordinator's /status as a table for people or JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ringrift_fleet.config import get_p2p_config
from ringrift_fleet.errors import FleetError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show a coordinator's view: leader, peers, work queue",
        description="Fetch /status from a coordinator and print it.",
    )
    parser.add_argument(
        "--host",
        default=None,
        help="HOST, HOST:PORT or URL of a coordinator (default 127.0.0.1:DEFAULT_PORT)",
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    parser.set_defaults(func=run)


def status_url(host: str | None, default_port: int) -> str:
    """Normalise --host into the /status URL."""
    text = (host or f"127.0.0.1:{default_port}").strip()
    if not text.startswith(("http://", "https://")):
        if ":" not in text:
            text = f"{text}:{default_port}"
        text = "http://" + text
    return text.rstrip("/") + "/status"


def fetch_status(url: str, timeout: float) -> dict[str, Any]:
    import urllib.error  # http.client and email: only when a status is fetched
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise FleetError(f"--host: {url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FleetError(f"--host: cannot reach {url}: {reason}") from None
    except ValueError as exc:
        raise FleetError(f"--host: {url} did not return JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FleetError(f"--host: {url} returned {type(data).__name__}, not a status object")
    return data


def render(status: dict[str, Any]) -> str:
    """The table people read: who leads, who is alive, what the queue holds."""
    sr = status.get("swim_raft") or {}
    queue = status.get("work_queue") or {}
    rows = [
        ("node", status.get("node_id")),
        ("role", status.get("role")),
        ("leader", status.get("leader_id") or "(none)"),
        ("term", status.get("term")),
        ("consensus", f"{sr.get('consensus_mode')} ({sr.get('consensus_backend')})"),
        ("membership", sr.get("membership_mode")),
        ("voters", ", ".join(status.get("voters") or []) or "-"),
        ("alive peers", f"{status.get('alive_peers', 0)}: {', '.join(status.get('peers') or [])}"),
    ]
    broker = status.get("broker") or {}
    if broker:
        up = broker.get("up")
        text = f"{broker.get('url', '?')} {'up' if up else 'DOWN' if up is False else 'unknown'}"
        if up is False and broker.get("last_error"):
            text += f" ({broker['last_error']})"
        rows.append(("broker", text))
        from ringrift_fleet.execution.redis_clients import topology_rows

        rows.extend(topology_rows(broker.get("topology")))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    states = ("pending", "claimed", "running", "completed", "failed", "cancelled")
    if any(isinstance(queue.get(s), int) for s in states):
        lines.append("")
        lines.append("work queue")
        # finished jobs leave the ledger a day after they end (history keeps the counts)
        shown = (*states, "pruned")
        lines.append("  ".join(f"{s:>9}" for s in shown))
        lines.append("  ".join(f"{queue.get(s, 0):>9}" for s in shown))
    for warning in sr.get("warnings") or []:
        lines.append(f"warning: {warning}")
    from ringrift_fleet.execution.consumers import render_lines  # not needed for --help

    lines += render_lines(status.get("queues_without_consumers"))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise FleetError(f"--timeout {args.timeout}: expected a positive number of seconds")
    url = status_url(args.host, get_p2p_config().DEFAULT_PORT)
    status = fetch_status(url, args.timeout)
    print(json.dumps(status, indent=2, sort_keys=True) if args.json else render(status))
    return 0
