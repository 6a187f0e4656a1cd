"""The whole replica as JSON, without holding its lock -- or the GIL -- for the
encoding.

A voter's replica is guarded by the lock the Raft thread applies entries under.
``json.dumps`` of a 10,000-job replica under that lock took ~200 ms on a quiet
core (seconds on a loaded 2-core host), and the C encoder never lets the GIL go
meanwhile: the Raft thread sent no heartbeat and answered no append for that
long, every time the Bully mirror (every few seconds) or a ``GET
/consensus/ledger`` full copy ran.  Items are mutated in place by ``apply``, so a
consistent copy must be taken under the lock; ``marshal`` copies them at C speed,
``CHUNK`` values per call (about a third of the JSON encoding's time under the
lock), and the JSON is written afterwards in a Python loop that hands the GIL over
every few milliseconds.

The text is byte for byte what ``json.dumps(state, default=str)`` writes, so
readers of every version decode it as before.
"""

from __future__ import annotations

import json
import marshal
from collections.abc import Mapping
from typing import Any

# values per marshal call: one C call per chunk under the lock (short), and one
# short GIL hold per chunk when it is read back without the lock
CHUNK = 256

# what marshal refuses (a str enum, an object ``default=str`` prints) is written
# as JSON text under the lock instead
_Piece = bytes | str


class _Chunk:
    """Members of one mapping: their keys, and their values in one marshal blob (or,
    when marshal refused one of them, each value's JSON text)."""

    __slots__ = ("keys", "values")

    def __init__(self, keys: list[Any], values: bytes | list[str]) -> None:
        self.keys = keys
        self.values = values


class Frozen:
    """A consistent copy of a state, taken under its lock, not yet JSON."""

    __slots__ = ("parts",)

    def __init__(self, parts: list[tuple[str, _Piece | list[_Chunk]]]) -> None:
        self.parts = parts


def _copy(value: Any) -> _Piece:
    try:
        return marshal.dumps(value)
    except ValueError:
        return json.dumps(value, default=str)


def _chunk(mapping: Mapping[Any, Any], keys: list[Any]) -> _Chunk:
    values = [mapping[k] for k in keys]
    try:
        return _Chunk(keys, marshal.dumps(values))
    except ValueError:
        return _Chunk(keys, [json.dumps(v, default=str) for v in values])


def _key(key: Any) -> str:
    """``"key": `` as json.dumps writes a member's key (its conversions included)."""
    return json.dumps({key: None})[1:-5]


def _member(key: Any, piece: _Piece) -> str:
    if isinstance(piece, str):
        return _key(key) + piece
    return json.dumps({key: marshal.loads(piece)}, default=str)[1:-1]


def _members(chunk: _Chunk) -> str:
    if isinstance(chunk.values, list):
        return ", ".join(_key(k) + text for k, text in zip(chunk.keys, chunk.values, strict=True))
    values = marshal.loads(chunk.values)
    return ", ".join(
        json.dumps({k: v}, default=str)[1:-1] for k, v in zip(chunk.keys, values, strict=True)
    )


def freeze(state: Mapping[str, Any]) -> Frozen:
    """Call with the state's lock held.  Mappings one level down (the jobs, their
    assignments, the records) are copied ``CHUNK`` values at a time."""
    parts: list[tuple[str, _Piece | list[_Chunk]]] = []
    for key, value in state.items():
        if type(value) is dict:
            keys = list(value)
            parts.append(
                (key, [_chunk(value, keys[i : i + CHUNK]) for i in range(0, len(keys), CHUNK)])
            )
        else:
            parts.append((key, _copy(value)))
    return Frozen(parts)


def encode(frozen: Frozen) -> str:
    """The frozen state as ``json.dumps(state, default=str)`` writes it; call
    without the lock."""
    members: list[str] = []
    for key, part in frozen.parts:
        if isinstance(part, list):
            inner = ", ".join(_members(c) for c in part)
            members.append(f"{_key(key)}{{{inner}}}")
        else:
            members.append(_member(key, part))
    return "{" + ", ".join(members) + "}"


def copy_of(value: Any) -> _Piece:
    """A small value (a delta of the replica) copied under the lock: marshal at C
    speed, or its JSON text when marshal refuses it."""
    return _copy(value)


def encode_copy(head: Mapping[str, Any], key: str, piece: _Piece) -> str:
    """``json.dumps({**head, key: value}, default=str)`` for a value copied by
    :func:`copy_of`; call without the lock."""
    if isinstance(piece, str):
        front = json.dumps(dict(head), default=str)[:-1]
        joint = ", " if head else ""
        return f"{front}{joint}{_key(key)}{piece}}}"
    return json.dumps({**head, key: marshal.loads(piece)}, default=str)


def encode_under(head: Mapping[str, Any], frozen: Frozen) -> str:
    """``json.dumps({**head, "state": state}, default=str)``, the state encoded
    outside the lock."""
    front = json.dumps(dict(head), default=str)[:-1]
    joint = ", " if head else ""
    return f'{front}{joint}"state": {encode(frozen)}}}'
