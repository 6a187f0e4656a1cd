"""Names for the JSON-shaped data that crosses module seams (HTTP bodies, ledger
operations, Celery kwargs), so that seams say "JSON" instead of ``Any``.

``JSONValue`` is what ``json.loads`` can return; code that reads a field narrows it
with ``isinstance`` (the data came from a peer or a file and is not trusted)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
JSONObject: TypeAlias = "dict[str, JSONValue]"
#: A read-only view of a JSON object; values are typed loosely (``object``) so that
#: dataclass-built payloads fit without copying.
JSONMapping: TypeAlias = "Mapping[str, object]"
