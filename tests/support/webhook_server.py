"""A local HTTP server on 127.0.0.1 that records webhook POSTs (stands in for Slack/Discord)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class RecordingServer:
    """Answers each POST with the next scripted status (200 when the script is empty).

    A status of ``None`` in the script means "hang": hold the connection open
    until the server closes (at most ``hang_limit`` seconds), answering nothing.
    """

    port: int = 0
    script: list[int | None] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    hang_limit: float = 15.0
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for_requests(self, count: int, timeout: float) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.requests) >= count, timeout)

    def bodies(self) -> list[Any]:
        return [r.body for r in self.requests]


@contextlib.contextmanager
def recording_server(script: list[int | None] | None = None) -> Iterator[RecordingServer]:
    state = RecordingServer(script=list(script or []))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw
            with state.arrived:
                state.requests.append(Recorded(self.path, dict(self.headers), body))
                status = state.script.pop(0) if state.script else 200
                state.arrived.notify_all()
            if status is None:
                state.release.wait(state.hang_limit)
                return
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = int(server.server_address[1])
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
