"""Reading HTTP requests safely: tokens, bodies, JSON.  A leaf module (aiohttp only).

Hostile input is a 4xx, never a 500: tokens are compared as bytes (any text),
bodies that are not JSON objects or nest too deeply are 400, and a body slower
than ``BODY_TIMEOUT_S`` gets 408.  The status server, consensus and membership
routes all read requests through here; none of them needs the server itself.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any

from aiohttp import StreamReader, web

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


HEADER_TIMEOUT_S = 30.0
"""A connection must complete its request line and headers within this many seconds
(of opening, or of its previous response), or it is closed: a client trickling
header bytes holds a file descriptor for no longer than this.  Above the 15 s an
aiohttp client keeps an idle connection, so no peer reuses one the server just closed."""
BODY_TIMEOUT_S = 30.0
"""A request body must arrive within this many seconds of the handler asking for it (408)."""
BODY_TIMEOUT_KEY = web.AppKey("ringrift_body_timeout", float)


def _secret_bytes(text: str) -> bytes:
    # aiohttp decodes header bytes as UTF-8 with surrogateescape: this gives the bytes back
    return text.encode("utf-8", "surrogateescape")


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets of any text (``hmac.compare_digest`` raises
    TypeError on non-ASCII ``str``: compare their bytes instead)."""
    return hmac.compare_digest(_secret_bytes(given), _secret_bytes(expected))


def bearer_ok(request: web.Request, token: str) -> bool:
    """True when the request carries the cluster token (never true without one)."""
    if not token:
        return False
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and same_secret(given.strip(), token)


def _json_error(cls: type[web.HTTPException], text: str) -> web.HTTPException:
    return cls(text=json.dumps({"error": text}), content_type="application/json")


async def _read_upto(content: StreamReader, limit: int) -> bytes:
    """The body's first ``limit`` bytes, or all of it when shorter (one ``read`` may
    return only what has arrived so far)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit and (chunk := await content.read(limit - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def read_body(request: web.Request, limit: int | None = None) -> bytes:
    """The request body (at most ``limit`` bytes when given), or a 408 when it does not
    arrive within the server's body timeout (BODY_TIMEOUT_S unless the app sets one)."""
    timeout = request.config_dict.get(BODY_TIMEOUT_KEY, BODY_TIMEOUT_S)
    reading = request.read() if limit is None else _read_upto(request.content, limit)
    try:
        return await asyncio.wait_for(reading, timeout)
    except asyncio.TimeoutError:
        raise _json_error(
            web.HTTPRequestTimeout, f"request body not received within {timeout:g} s"
        ) from None
    except web.RequestPayloadError as exc:  # e.g. Content-Encoding: gzip on a plain body
        raise _json_error(web.HTTPBadRequest, f"request body: {exc}".splitlines()[0]) from None
    except ConnectionError:
        # the client hung up mid-body (a peer that gave up on a slow answer): nobody is
        # left to answer, and it is not this server's error -- no traceback in the log
        raise _json_error(web.HTTPBadRequest, "connection lost while reading the body") from None


MAX_JSON_DEPTH = 64
"""Request bodies nest no deeper than this (ours nest 5 or 6 levels): a deeper document
could not be serialised again (by /status, by the ledger) without a RecursionError."""


def _depth_over(data: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return False


def parse_json(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``raw`` as JSON; ValueError (with the reason) for bad UTF-8, bad JSON, or nesting
    deeper than ``max_depth`` (the parser's own RecursionError is not a ValueError)."""
    try:
        data = json.loads(raw.decode("utf-8") if raw else "")
    except RecursionError:
        data = None
    else:
        if not _depth_over(data, max_depth):
            return data
    raise ValueError(f"nested deeper than {max_depth} levels")


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that names what is wrong with it."""
    raw = await read_body(request)
    try:
        data = parse_json(raw)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _json_error(web.HTTPBadRequest, f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(
            text=json.dumps(
                {"error": f"request body must be a JSON object, got {type(data).__name__}"}
            ),
            content_type="application/json",
        )
    return data
