"""Workers' own metrics, pushed through the coordinator of their host.

Chosen over a port per worker: a host runs one worker per GPU (up to 8), and a
port each would mean 8 more firewall/Tailscale openings and scrape targets per
host, moving as GPUs are added.  Workers already talk to the broker, and their
host's coordinator is already a scrape target, so:

* every worker's main process writes a small report (field ``<worker
  hostname>`` of the hash ``ringrift:workers:<node>``) every
  :data:`REPORT_EVERY_S`, and at once when the number of tasks it runs
  changes: tasks running now, its concurrency (one process per GPU), its busy
  process-seconds since it started, tasks finished by name, and when (``at``);
* the coordinator of that host reads its own host's hash when scraped (at most
  every few seconds, with its other broker probes; ``ringrift_fleet.metrics``)
  and exports one series per worker plus the host's busy fraction (running /
  concurrency over its live workers), which is the GPU busy fraction as the
  workers see it.

A report older than :data:`STALE_AFTER_S` shows the worker as down; one older
than :data:`FORGET_AFTER_S` is deleted (a worker gone for good).  Soft state, as
all Redis state here: a lost report costs a gap in a graph, never a job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from celery.signals import worker_ready, worker_shutdown

log = logging.getLogger(__name__)

KEY_PREFIX = "ringrift:workers:"
REPORT_EVERY_S = 5.0
SAMPLE_EVERY_S = 0.5  # running tasks are looked at this often; a change is reported at once
STALE_AFTER_S = 30.0  # no report for this long: the worker is down
FORGET_AFTER_S = 600.0  # ... and its report is deleted after this
KEY_TTL_S = 3600  # the hash of a host whose workers all stopped goes away


def key_for(node: str) -> str:
    return KEY_PREFIX + node


def make_report(
    worker: str,
    concurrency: int,
    running: int,
    processed: Mapping[str, int],
    now: float,
    busy_seconds: float = 0.0,
) -> dict[str, Any]:
    return {
        "worker": worker,
        "pid": os.getpid(),
        "concurrency": max(1, int(concurrency)),
        "running": max(0, int(running)),
        "busy_seconds": round(max(0.0, busy_seconds), 3),
        "processed": {str(k): int(v) for k, v in processed.items()},
        "at": now,
    }


def publish(client: Any, node: str, report: Mapping[str, Any]) -> None:
    key = key_for(node)
    pipe = client.pipeline(transaction=False)
    pipe.hset(key, str(report["worker"]), json.dumps(report))
    pipe.expire(key, KEY_TTL_S)
    pipe.execute()


def withdraw(client: Any, node: str, worker: str) -> None:
    """A worker that stops cleanly takes its report away (it is not down, it is gone)."""
    client.hdel(key_for(node), worker)


def parse_reports(
    raw: Mapping[Any, Any], now: float
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(worker -> report with ``up``) and the workers to forget, from the hash (pure).
    A malformed entry is skipped (and forgotten)."""
    out: dict[str, dict[str, Any]] = {}
    forget: list[str] = []
    for field, value in raw.items():
        name = field.decode() if isinstance(field, bytes) else str(field)
        try:
            rep = json.loads(value)
            at = float(rep["at"])
            running, conc = int(rep.get("running", 0)), int(rep.get("concurrency", 1))
            busy_s = float(rep.get("busy_seconds", 0.0))
            processed = rep.get("processed") or {}
            if not isinstance(processed, dict):
                raise ValueError("processed")
        except (ValueError, TypeError, KeyError):
            forget.append(name)
            continue
        age = now - at
        if age > FORGET_AFTER_S:
            forget.append(name)
            continue
        out[name] = {
            "up": age <= STALE_AFTER_S,
            "running": max(0, running),
            "concurrency": max(1, conc),
            "busy_seconds": max(0.0, busy_s),
            "processed": {str(k): int(v) for k, v in processed.items() if isinstance(v, int)},
        }
    return out, forget


def read_reports(client: Any, node: str, now: float | None = None) -> dict[str, dict[str, Any]]:
    """The reports of ``node``'s workers (one HGETALL); forgets the long-gone ones."""
    raw = client.hgetall(key_for(node))
    reports, forget = parse_reports(raw, time.time() if now is None else now)
    if forget:
        client.hdel(key_for(node), *forget)
    return reports


# --- in the worker's main process ---------------------------------------------------------


class Reporter:
    """Publishes this worker's report every :data:`REPORT_EVERY_S` from a daemon thread."""

    def __init__(self, client: Any, node: str, worker: str, concurrency: int) -> None:
        self.client, self.node, self.worker, self.concurrency = client, node, worker, concurrency
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-report", daemon=True)
        self.busy_seconds = 0.0  # process-seconds spent running tasks (sampled)

    @staticmethod
    def running() -> int:
        from celery.worker import state

        return len(state.active_requests)

    def report(self, running: int) -> dict[str, Any]:
        from celery.worker import state

        return make_report(
            self.worker,
            self.concurrency,
            running,
            dict(state.total_count),
            time.time(),
            self.busy_seconds,
        )

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        last_at, sampled = time.monotonic(), 0
        reported, published = -1, -REPORT_EVERY_S
        while not self._stop.is_set():
            now, running = time.monotonic(), self.running()
            self.busy_seconds += min(sampled, self.concurrency) * (now - last_at)
            last_at, sampled = now, running
            if running != reported or now - published >= REPORT_EVERY_S:
                try:
                    publish(self.client, self.node, self.report(running))
                    published, reported = now, running
                except Exception as exc:  # the broker may be down: the next report catches up
                    log.debug("worker report not published: %s", exc)
            self._stop.wait(SAMPLE_EVERY_S)

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            withdraw(self.client, self.node, self.worker)


_reporter: Reporter | None = None


@worker_ready.connect
def _start_reporting(sender: Any = None, **_: Any) -> None:
    global _reporter
    try:
        from ringrift_fleet.config import get_p2p_config
        from ringrift_fleet.execution.tasks import fence_client, node_name

        cfg = get_p2p_config()
        controller = getattr(sender, "controller", None)
        worker = str(getattr(sender, "hostname", "") or getattr(controller, "hostname", ""))
        conc = int(getattr(controller, "concurrency", 0) or 1)
        _reporter = Reporter(fence_client(cfg), node_name(cfg), worker, conc)
        _reporter.start()
    except Exception as exc:  # metrics must never stop a worker
        log.warning("worker metrics report disabled: %s", exc)


@worker_shutdown.connect
def _stop_reporting(**_: Any) -> None:
    if _reporter is not None:
        _reporter.stop()
