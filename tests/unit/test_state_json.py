"""The replica's JSON written outside its lock is the JSON written under it."""

from __future__ import annotations

import enum
import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ringrift_fleet.consensus import ledger as sm
from ringrift_fleet.consensus import state_json


class Colour(str, enum.Enum):  # marshal refuses str subclasses: the JSON fallback
    RED = "red"


class Opaque:  # what json.dumps(default=str) prints as its str()
    def __str__(self) -> str:
        return "<opaque>"


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.just(Colour.RED),
    st.just(Opaque()),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), inner, max_size=4),
    ),
    max_leaves=20,
)
states = st.dictionaries(st.text(max_size=6), values, max_size=6)


@settings(max_examples=300, deadline=None)
@given(states)
def test_the_text_is_what_json_dumps_writes(state: dict[str, Any]) -> None:
    frozen = state_json.freeze(state)
    assert state_json.encode(frozen) == json.dumps(state, default=str)
    head = {"term": 3, "leader": "h1", "version": None}
    assert state_json.encode_under(head, frozen) == json.dumps(
        {**head, "state": state}, default=str
    )


def test_a_real_ledger_with_nan_and_an_empty_head() -> None:
    state = sm.new_state()
    op = sm.make_op(
        "put_record.v1", now=1.0, term=1, kind="k", key="x", value={"f": math.inf, "n": 1}
    )
    sm.apply(state, op)
    frozen = state_json.freeze(state)
    assert state_json.encode(frozen) == json.dumps(state, default=str)
    assert state_json.encode_under({}, frozen) == json.dumps({"state": state}, default=str)


def test_mappings_larger_than_a_chunk_with_values_marshal_refuses() -> None:
    work = {f"job{i}": {"status": "pending", "n": i, "tags": [i, str(i)]} for i in range(1000)}
    work["job500"]["kind"] = Colour.RED  # one chunk falls back to JSON text
    state: dict[str, Any] = {"work": work, "assign": {}, "rev": 7}
    assert len(work) > 3 * state_json.CHUNK
    frozen = state_json.freeze(state)
    assert state_json.encode(frozen) == json.dumps(state, default=str)


def test_the_copy_is_the_state_when_frozen_not_when_encoded() -> None:
    """Items are mutated in place by apply: what is encoded after the lock is let go
    must be the state as it was under the lock."""
    state: dict[str, Any] = {"work": {"j1": {"status": "running", "tags": [1]}}, "rev": 4}
    before = json.dumps(state)
    frozen = state_json.freeze(state)
    state["work"]["j1"]["status"] = "completed"
    state["work"]["j1"]["tags"].append(2)
    state["work"]["j2"] = {"status": "pending"}
    state["rev"] = 6
    assert state_json.encode(frozen) == before
    assert json.loads(state_json.encode(frozen))["work"] == {
        "j1": {"status": "running", "tags": [1]}
    }


@settings(max_examples=200, deadline=None)
@given(values, st.dictionaries(st.sampled_from(["term", "leader", "version"]), scalars))
def test_a_delta_copied_under_the_lock_encodes_as_json_dumps_would(
    value: Any, head: dict[str, Any]
) -> None:
    """``GET /consensus/ledger?since=`` copies the delta under the lock and writes
    its JSON after: the body is what ``json.dumps`` wrote under the lock."""
    piece = state_json.copy_of(value)
    assert state_json.encode_copy(head, "changes", piece) == json.dumps(
        {**head, "changes": value}, default=str
    )


def test_a_delta_copy_does_not_see_later_changes() -> None:
    rows = [{"work_id": "j1", "status": "running"}]
    piece = state_json.copy_of({"work": rows})
    rows[0]["status"] = "completed"
    assert json.loads(state_json.encode_copy({}, "changes", piece)) == {
        "changes": {"work": [{"work_id": "j1", "status": "running"}]}
    }
