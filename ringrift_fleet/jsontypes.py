"""Names for the JSON-shaped data that crosses module seams (HTTP bodies, ledger
operations, Celery kwargs), so that seams say "JSON" instead of ``Any``.

``JSONValue`` is what ``json.loads`` can return; code that reads a field narrows it
with ``isinstance`` (the data came from a peer or a file and is not trusted)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias, TypeVar, cast

_T = TypeVar("_T")

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
JSONObject: TypeAlias = "dict[str, JSONValue]"
#: A read-only view of a JSON object; values are typed loosely (``object``) so that
#: dataclass-built payloads fit without copying.
JSONMapping: TypeAlias = "Mapping[str, object]"


# A job's result as it is stored (Celery's result backend, the run store, the ledger)
# keeps each list to this many items, with its length beside it (``<key>_count``).
# A games sync listed every file it fetched or already held: 560 kB a result, for a
# day in Redis and in every ledger replica.  The files themselves are in the host's
# manifest (``GET /artifacts``); nothing reads a long list from a result.
RESULT_LIST_MAX = 64


def capped_lists(value: Mapping[str, object], limit: int = RESULT_LIST_MAX) -> dict[str, object]:
    """A copy of ``value`` whose top-level lists hold at most ``limit`` items."""
    out = dict(value)
    for key, item in value.items():
        if isinstance(item, list) and len(item) > limit:
            out[key] = item[:limit]
            out.setdefault(f"{key}_count", len(item))
    return out


def json_copy(value: _T) -> _T:
    """A deep copy of JSON-shaped data (dicts, lists, tuples of them and scalars).

    What a ledger read hands out: every coordinator copies its whole replica
    (20,000 jobs) on a full read, and with ``copy.deepcopy`` (its memo and
    dispatch) that read took 344.7 ms against 199.0 ms with this
    (``benchmarks/ledger_full_read.py``, docs/benchmarks.md).  No
    memo, so shared sub-objects come out as separate copies and a cycle would
    recurse without end: neither occurs in data that went through JSON or
    pickle from a ledger state.  Other objects are returned as they are (the
    scalars are immutable)."""
    return cast(_T, _copy(value))


def _copy(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {k: _copy(v) for k, v in value.items()}
    if kind is list:
        return [_copy(v) for v in value]
    if kind is tuple:
        return tuple(_copy(v) for v in value)
    return value
