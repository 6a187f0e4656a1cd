"""The whole replica as JSON, without holding its lock -- or the GIL -- for the
encoding.

A voter's replica is guarded by the lock the Raft thread applies entries under.
``json.dumps`` of a 10,000-job replica under that lock took ~200 ms on a quiet
core (seconds on a loaded 2-core host), and the C encoder never lets the GIL go
meanwhile: the Raft thread sent no heartbeat and answered no append for that
long, every time the Bully mirror (every few seconds) or a ``GET
/consensus/ledger`` full copy ran.  Items are mutated in place by ``apply``, so a
consistent copy must be taken under the lock; ``marshal`` copies them at C speed
(~1/3 of the JSON encoding's time), item by item so that a large mapping never
becomes one long C call, and the JSON is written afterwards, item by item, in a
Python loop that hands the GIL over every few milliseconds.

The text is byte for byte what ``json.dumps(state, default=str)`` writes, so
readers of every version decode it as before.
"""

from __future__ import annotations

import json
import marshal
from collections.abc import Mapping
from typing import Any

# one copied value: marshal bytes, or (for what marshal refuses: a str enum, an
# object ``default=str`` would print) its JSON text, written under the lock
_Piece = bytes | str


class Frozen:
    """A consistent copy of a state, taken under its lock, not yet JSON."""

    __slots__ = ("parts",)

    def __init__(self, parts: list[tuple[str, _Piece | list[tuple[str, _Piece]]]]) -> None:
        self.parts = parts


def _copy(value: Any) -> _Piece:
    try:
        return marshal.dumps(value)
    except ValueError:
        return json.dumps(value, default=str)


def _key(key: Any) -> str:
    """``"key": `` as json.dumps writes a member's key (its conversions included)."""
    return json.dumps({key: None})[1:-5]


def _member(key: Any, piece: _Piece) -> str:
    if isinstance(piece, str):
        return _key(key) + piece
    return json.dumps({key: marshal.loads(piece)}, default=str)[1:-1]


def freeze(state: Mapping[str, Any]) -> Frozen:
    """Call with the state's lock held.  Mappings one level down (the jobs, their
    assignments, the records) are copied one value at a time."""
    parts: list[tuple[str, _Piece | list[tuple[str, _Piece]]]] = []
    for key, value in state.items():
        if type(value) is dict:
            parts.append((key, [(k, _copy(v)) for k, v in value.items()]))
        else:
            parts.append((key, _copy(value)))
    return Frozen(parts)


def encode(frozen: Frozen) -> str:
    """The frozen state as ``json.dumps(state, default=str)`` writes it; call
    without the lock."""
    members: list[str] = []
    for key, part in frozen.parts:
        if isinstance(part, list):
            inner = ", ".join(_member(k, piece) for k, piece in part)
            members.append(f"{_key(key)}{{{inner}}}")
        else:
            members.append(_member(key, part))
    return "{" + ", ".join(members) + "}"


def encode_under(head: Mapping[str, Any], frozen: Frozen, field: str = "state") -> str:
    """``json.dumps({**head, field: state}, default=str)``, the state encoded
    outside the lock."""
    front = json.dumps(dict(head), default=str)[:-1]
    joint = ", " if head else ""
    return f"{front}{joint}{json.dumps(field)}: {encode(frozen)}}}"
