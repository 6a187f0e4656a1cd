# mypy: disallow-any-explicit
"""SWIM wire format: HMAC-authenticated, size-bounded datagrams holding compact JSON.

Why JSON and not ``struct``: member metadata is a free-form mapping, so a binary
format would embed JSON anyway; the standard-library parser is hardened and,
with the size bound checked *before* parsing, costs microseconds; and a
captured datagram can be read by eye.  Compactness comes from positional
arrays with one-letter tags instead of objects with key names.

Layout::

    b"RS1" | HMAC-SHA256(key, b"RS1" + body)[:16] | body (UTF-8 JSON array)

The MAC is checked before the body is parsed, so a forged datagram costs one
HMAC and never reaches the JSON parser.  Every field is then type- and
range-checked here, so the protocol core only ever sees well-formed messages.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import NamedTuple

from ringrift_fleet.jsontypes import JSONMapping

MAGIC = b"RS1"
MAC_LEN = 16
HEADER_LEN = len(MAGIC) + MAC_LEN
# Tailscale's tun MTU is 1280; minus IPv6 (40) and UDP (8) headers leaves 1232.
MAX_DATAGRAM = 1200
MAX_NAME = 128
MAX_METADATA = 512  # encoded bytes: an alive update always fits one datagram
MAX_INT = 2**53 - 1  # exact in every JSON implementation

Addr = tuple[str, int]

# update kinds, as the protocol names them, and their one-letter wire tags
ALIVE, SUSPECT, DEAD, LEFT = "alive", "suspect", "dead", "left"
_TAG = {ALIVE: "a", SUSPECT: "s", DEAD: "d", LEFT: "l"}
_KIND = {v: k for k, v in _TAG.items()}

# message kinds
PING, ACK, PING_REQ, NACK, SYNC = "p", "a", "r", "n", "s"

# SYNC flags
SYNC_REPLY_IF_DIFFERENT = 1  # send me your full state if our digests differ
SYNC_REPLY_ALWAYS = 2  # send me your full state (join, reconnect)
SYNC_BUCKETS = 4  # digest holds per-bucket digests: send entries of buckets that differ
SYNC_ENTRIES = 8  # entries of differing buckets; answer with yours of those still differing


class DecodeError(ValueError):
    """Why a datagram was dropped: ``reason`` is the counter it is counted under."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class Update(NamedTuple):
    """One membership fact: gossiped on pings and acks, and the unit of a full state."""

    kind: str  # ALIVE | SUSPECT | DEAD | LEFT
    node: str
    incarnation: int
    addr: Addr | None = None  # ALIVE only
    metadata: JSONMapping | None = None  # ALIVE only
    origin: str = ""  # SUSPECT / DEAD: who declared it (Lifeguard confirmations)


@dataclass(slots=True)
class Message:
    kind: str  # PING | ACK | PING_REQ | NACK | SYNC
    sender: str
    seq: int
    target: str = ""  # PING, PING_REQ
    target_addr: Addr | None = None  # PING_REQ
    flags: int = 0  # SYNC
    digest: str = ""  # SYNC
    entries: list[Update] = field(default_factory=list)  # SYNC: (part of) a full state
    updates: list[Update] = field(default_factory=list)  # piggybacked gossip


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode_update(u: Update) -> bytes:
    if u.kind == ALIVE:
        assert u.addr is not None
        return _dumps(["a", u.node, u.incarnation, u.addr[0], u.addr[1], dict(u.metadata or {})])
    if u.kind == LEFT:
        return _dumps(["l", u.node, u.incarnation])
    return _dumps([_TAG[u.kind], u.node, u.incarnation, u.origin])


def metadata_size(metadata: JSONMapping) -> int:
    return len(_dumps(dict(metadata)))


def _head(msg: Message) -> list[str | int]:
    if msg.kind == PING:
        return [PING, msg.sender, msg.seq, msg.target]
    if msg.kind == PING_REQ:
        assert msg.target_addr is not None
        return [PING_REQ, msg.sender, msg.seq, msg.target, msg.target_addr[0], msg.target_addr[1]]
    if msg.kind == SYNC:
        return [SYNC, msg.sender, msg.seq, msg.flags, msg.digest]
    return [msg.kind, msg.sender, msg.seq]


def body_prefix(msg: Message) -> bytes:
    """The body without its closing lists; ``assemble`` adds entries and updates."""
    return _dumps(_head(msg))[:-1]


def assemble(prefix: bytes, entries: list[bytes] | None, updates: list[bytes]) -> bytes:
    parts = [prefix]
    if entries is not None:
        parts += [b",[", b",".join(entries), b"]"]
    parts += [b",[", b",".join(updates), b"]]"]
    return b"".join(parts)


def overhead(prefix: bytes, with_entries: bool) -> int:
    """Bytes a datagram with this prefix takes before any entry or update."""
    # ``,[]`` for the entries when present, ``,[]]`` for the updates: see assemble().
    return HEADER_LEN + len(prefix) + (3 if with_entries else 0) + 4


def seal(key: bytes, body: bytes) -> bytes:
    mac = hmac.new(key, MAGIC + body, hashlib.sha256).digest()[:MAC_LEN]
    return MAGIC + mac + body


def encode(msg: Message, key: bytes) -> bytes:
    """Encode a whole message (tests and tools; the protocol packs piggyback by size)."""
    entries = [encode_update(u) for u in msg.entries] if msg.kind == SYNC else None
    return seal(key, assemble(body_prefix(msg), entries, [encode_update(u) for u in msg.updates]))


# --- decoding: everything from the network is checked here --------------------------


def _name(v: object) -> str:
    if not isinstance(v, str) or not 0 < len(v) <= MAX_NAME:
        raise DecodeError("malformed", f"bad name {v!r:.40}")
    return v


def _int(v: object) -> int:
    if type(v) is not int or not 0 <= v <= MAX_INT:
        raise DecodeError("malformed", f"bad integer {v!r:.40}")
    return v


def _addr(host: object, port: object) -> Addr:
    if not isinstance(host, str) or not 0 < len(host) <= 255:
        raise DecodeError("malformed", f"bad host {host!r:.40}")
    if type(port) is not int or not 0 < port < 65536:
        raise DecodeError("malformed", f"bad port {port!r:.40}")
    return (host, port)


def _update(raw: object) -> Update:
    if type(raw) is not list or not raw:
        raise DecodeError("malformed", f"bad update {raw!r:.60}")
    kind = _KIND.get(raw[0]) if type(raw[0]) is str else None
    if kind is None:
        raise DecodeError("malformed", f"bad update {raw!r:.60}")
    if kind == ALIVE:  # the common case, checked inline: it dominates decoding time
        if len(raw) != 6:
            raise DecodeError("malformed", "bad alive update")
        _, node, inc, host, port, meta = raw
        if (
            type(node) is str
            and 0 < len(node) <= MAX_NAME
            and type(inc) is int
            and 0 <= inc <= MAX_INT
            and type(host) is str
            and 0 < len(host) <= 255
            and type(port) is int
            and 0 < port < 65536
            and type(meta) is dict
        ):
            return Update(ALIVE, node, inc, (host, port), meta)
        raise DecodeError("malformed", f"bad alive update {raw!r:.60}")
    if kind == LEFT:
        if len(raw) != 3:
            raise DecodeError("malformed", "bad left update")
        return Update(LEFT, _name(raw[1]), _int(raw[2]))
    if len(raw) != 4:
        raise DecodeError("malformed", f"bad {kind} update")
    return Update(kind, _name(raw[1]), _int(raw[2]), origin=_name(raw[3]))


def _updates(raw: object) -> list[Update]:
    if not isinstance(raw, list):
        raise DecodeError("malformed", "updates must be a list")
    return [_update(u) for u in raw]


def decode(data: bytes, key: bytes) -> Message:
    """Check size, MAC and shape; raise :class:`DecodeError` naming the drop reason."""
    if len(data) > MAX_DATAGRAM:
        raise DecodeError("oversized", f"{len(data)} bytes")
    if len(data) < HEADER_LEN + 2:
        raise DecodeError("truncated", f"{len(data)} bytes")
    if not data.startswith(MAGIC):
        raise DecodeError("garbage", "bad magic")
    body = data[HEADER_LEN:]
    expected = hmac.new(key, MAGIC + body, hashlib.sha256).digest()[:MAC_LEN]
    if not hmac.compare_digest(expected, data[len(MAGIC) : HEADER_LEN]):
        raise DecodeError("forged", "MAC mismatch")
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise DecodeError("malformed", f"not JSON: {exc}") from None
    if not isinstance(raw, list) or len(raw) < 4 or raw[0] not in (PING, ACK, PING_REQ, NACK, SYNC):
        raise DecodeError("malformed", "bad message header")
    kind, sender, seq = raw[0], _name(raw[1]), _int(raw[2])
    if kind == PING and len(raw) == 5:
        return Message(kind, sender, seq, target=_name(raw[3]), updates=_updates(raw[4]))
    if kind == PING_REQ and len(raw) == 7:
        return Message(
            kind,
            sender,
            seq,
            target=_name(raw[3]),
            target_addr=_addr(raw[4], raw[5]),
            updates=_updates(raw[6]),
        )
    if kind in (ACK, NACK) and len(raw) == 4:
        return Message(kind, sender, seq, updates=_updates(raw[3]))
    if kind == SYNC and len(raw) == 7:
        digest = raw[4]
        if not isinstance(digest, str) or len(digest) > 600:
            raise DecodeError("malformed", "bad digest")
        return Message(
            kind,
            sender,
            seq,
            flags=_int(raw[3]),
            digest=digest,
            entries=_updates(raw[5]),
            updates=_updates(raw[6]),
        )
    raise DecodeError("malformed", f"bad {kind!r} message of {len(raw)} fields")
