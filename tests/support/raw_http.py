"""HTTP/1.1 over a bare socket, for requests no well-behaved client would send.

urllib and aiohttp refuse (or re-encode) non-ASCII header bytes, odd paths and
bodies that do not match their Content-Length; a hostile client does not.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass


@dataclass
class RawResponse:
    status: int  # 0: the server closed the connection without answering
    head: bytes
    body: bytes


def raw_request(
    port: int,
    method: bytes | str,
    target: bytes | str,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    body: bytes = b"",
    *,
    timeout: float = 10.0,
    host: str = "127.0.0.1",
) -> RawResponse:
    """Send one request exactly as given (plus Host, Content-Length, Connection: close)."""
    method = method.encode() if isinstance(method, str) else method
    target = target.encode() if isinstance(target, str) else target
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: " + host.encode()]
    lines += [name + b": " + value for name, value in headers]
    lines += [b"Content-Length: " + str(len(body)).encode(), b"Connection: close"]
    data = b"\r\n".join(lines) + b"\r\n\r\n" + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, rest = raw.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return RawResponse(status, head, rest)


def closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closes ``sock`` (None if it stays open for ``seconds``).

    With ``trickle``, one byte of it is sent every 0.2 s meanwhile: a slow client.
    """
    start = time.monotonic()
    sent = 0
    sock.settimeout(0.2)
    while time.monotonic() - start < seconds:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            pass
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
        if trickle:
            try:
                sock.sendall(trickle[sent % len(trickle) : sent % len(trickle) + 1])
            except (ConnectionResetError, BrokenPipeError):
                return time.monotonic() - start
            sent += 1
    return None
