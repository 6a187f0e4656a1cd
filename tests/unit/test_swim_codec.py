"""The wire format: what arrives from the network is authenticated and checked, or dropped."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringrift_fleet.membership.swim import codec
from ringrift_fleet.membership.swim.codec import (
    ALIVE,
    DEAD,
    LEFT,
    PING,
    PING_REQ,
    SUSPECT,
    SYNC,
    DecodeError,
    Message,
    Update,
)

KEY = b"cluster-key"


def _ping() -> Message:
    return Message(
        PING,
        "gpu-1",
        7,
        target="gpu-2",
        updates=[
            Update(ALIVE, "gpu-3", 5, ("10.0.0.3", 7946), {"gpu": "H100", "gpu_count": 8}),
            Update(SUSPECT, "gpu-4", 2, origin="gpu-1"),
            Update(DEAD, "gpu-5", 9, origin="gpu-2"),
            Update(LEFT, "gpu-6", 1),
        ],
    )


@pytest.mark.parametrize(
    "msg",
    [
        _ping(),
        Message(PING_REQ, "a", 1, target="b", target_addr=("127.0.0.1", 9000)),
        Message(codec.ACK, "a", 2),
        Message(codec.NACK, "a", 3),
        Message(SYNC, "a", 4, flags=1, digest="00ff", entries=[Update(LEFT, "x", 3)]),
    ],
)
def test_every_message_kind_round_trips(msg: Message) -> None:
    assert codec.decode(codec.encode(msg, KEY), KEY) == msg


def test_a_datagram_signed_with_another_key_is_forged() -> None:
    data = codec.encode(_ping(), b"other-key")
    with pytest.raises(DecodeError) as exc:
        codec.decode(data, KEY)
    assert exc.value.reason == "forged"


def test_a_tampered_body_is_forged() -> None:
    data = bytearray(codec.encode(_ping(), KEY))
    data[-5] ^= 0x01
    with pytest.raises(DecodeError) as exc:
        codec.decode(bytes(data), KEY)
    assert exc.value.reason == "forged"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"RS1" + b"\0" * 10, "truncated"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "garbage"),
        (b"x" * (codec.MAX_DATAGRAM + 1), "oversized"),
    ],
)
def test_junk_is_named_by_its_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as exc:
        codec.decode(data, KEY)
    assert exc.value.reason == reason


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b'["p","a",1]',
        b'["p","a",-1,"b",[]]',
        b'["p","",1,"b",[]]',
        b'["p","a",1,"b",[["a","x",1,"h",0,{}]]]',
        b'["p","a",1,"b",[["a","x",1.5,"h",1,{}]]]',
        b'["p","a",1,"b",[["z","x",1]]]',
        b'["r","a",1,"b","h",70000,[]]',
        b'["s","a",1,0,"' + b"f" * 700 + b'",[],[]]',
        b"[" * 590 + b"]" * 590,
    ],
)
def test_well_signed_but_malformed_bodies_are_malformed(body: bytes) -> None:
    with pytest.raises(DecodeError) as exc:
        codec.decode(codec.seal(KEY, body)[: codec.MAX_DATAGRAM], KEY)
    assert exc.value.reason in ("malformed", "oversized")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1500))
def test_random_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        codec.decode(data, KEY)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_any_signed_json_either_decodes_or_is_malformed(value: object) -> None:
    data = codec.seal(KEY, json.dumps(value).encode())
    try:
        msg = codec.decode(data, KEY)
    except DecodeError as exc:
        assert exc.reason in ("malformed", "oversized", "truncated")
    else:
        assert isinstance(msg, Message)
