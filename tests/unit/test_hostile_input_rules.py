"""The pure parts of the hostile-input defences: secret comparison, JSON depth, YAML shape."""

from __future__ import annotations

import json
import time

import pytest

from ringrift_fleet import inventory
from ringrift_fleet.errors import InventoryError
from ringrift_fleet.http_input import MAX_JSON_DEPTH, parse_json, same_secret


@pytest.mark.parametrize(
    ("given", "expected", "same"),
    [
        ("abc", "abc", True),
        ("abc", "abd", False),
        ("clé", "clé", True),
        ("clé", "cle", False),
        ("\udcff\udcfe", "key", False),  # undecodable header bytes, as aiohttp hands them over
        ("", "key", False),
    ],
)
def test_same_secret_takes_any_text(given: str, expected: str, same: bool) -> None:
    assert same_secret(given, expected) is same


def test_parse_json_refuses_deep_nesting_as_a_value_error() -> None:
    with pytest.raises(ValueError, match="nested deeper than"):
        parse_json(b"[" * 100_000 + b"]" * 100_000)  # a RecursionError inside json
    deep: object = 1
    for _ in range(MAX_JSON_DEPTH + 1):
        deep = [deep]
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_JSON_DEPTH}"):
        parse_json(json.dumps(deep).encode())
    ok: object = 1
    for _ in range(MAX_JSON_DEPTH):
        ok = {"k": ok}
    assert parse_json(json.dumps(ok).encode()) == ok
    with pytest.raises(ValueError):
        parse_json(b"\xff")


BOMB = "\n".join(
    [
        'a: &a ["x","x","x","x","x","x","x","x","x"]',
        *(
            f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]"
            for p, c in zip("abcdefg", "bcdefgh", strict=True)
        ),
        "hosts: *h",
    ]
)


def test_an_alias_bomb_is_refused_from_the_events_in_well_under_a_second() -> None:
    started = time.monotonic()
    with pytest.raises(InventoryError) as info:
        inventory.loads(BOMB, "hosts.yaml")
    assert time.monotonic() - started < 2.0  # was 16-27 s (the repr of 4.8 M values)
    assert info.value.problems == [
        "hosts.yaml:6: alias *e: aliases expand to more than 100000 values (an alias bomb?): "
        "write the values out"
    ]


def test_merges_and_modest_aliases_still_load() -> None:
    text = """\
hosts:
  gpu-1: &base {address: 10.0.0.1, gpu: h100, gpu_count: 2}
  gpu-2: {<<: *base, address: 10.0.0.2}
  gpu-3: {<<: *base, address: 10.0.0.3}
raft_voters: [gpu-1]
"""
    inv = inventory.loads(text, "hosts.yaml", warn=False)
    assert [h.gpu_count for h in inv.hosts] == [2, 2, 2]


def test_a_voter_whose_host_entry_is_broken_is_not_a_key_error() -> None:
    # found by tests/integration/test_fuzz_hostile.py: a KeyError traceback before
    text = "hosts:\n  '-': {}\n  '0': {address: 10.0.0.1}\nraft_voters:\n- '-'\n"
    with pytest.raises(InventoryError) as info:
        inventory.loads(text, "hosts.yaml")
    assert info.value.problems == [
        "hosts.yaml:2: host name '-' must be letters, digits, '.', '_' or '-'"
    ]
