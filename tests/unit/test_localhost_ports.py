"""Ports for a fleet laid out on one address are distinct, even when the kernel
offers the same free port twice in a row."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from ringrift_fleet import localhost


class RepeatingSocket:
    """A socket whose bind(port 0) gets the offered ports in turn."""

    offers: list[int] = []

    def __init__(self, *args: Any) -> None:
        self.port = RepeatingSocket.offers.pop(0)

    def __enter__(self) -> RepeatingSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def bind(self, addr: tuple[str, int]) -> None:
        return None

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


def test_a_port_offered_again_is_not_handed_out_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(localhost, "_GIVEN", localhost.collections.deque(maxlen=16))
    RepeatingSocket.offers = [40001, 40001, 40001, 40002, 40001, 40003]
    monkeypatch.setattr(localhost.socket, "socket", RepeatingSocket)
    assert [localhost.free_port() for _ in range(3)] == [40001, 40002, 40003]


def test_real_ports_are_distinct_and_bindable() -> None:
    ports = [localhost.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))
