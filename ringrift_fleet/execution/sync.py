"""Pull missing artifacts from another host's ``/artifacts`` endpoint.

Resumable: bytes already fetched wait in ``.partial/<sha256>`` and the next try
asks for the rest with ``Range``.  Verified: a file whose sha256 differs from the
source's manifest is discarded, never installed.  Atomic: the verified file is
renamed into place and only then entered in the local manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ringrift_fleet.errors import ValidationError
from ringrift_fleet.execution.artifacts import ArtifactStore, check_name

CHUNK = 1 << 20


class SyncError(RuntimeError):
    """The source failed us (unreachable, refused, corrupt data); the message says which."""


@dataclass
class SyncReport:
    fetched: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _request(url: str, token: str, headers: dict[str, str] | None = None) -> urllib.request.Request:
    req = urllib.request.Request(url, headers=dict(headers or {}))
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    return req


def fetch_manifest(
    source: str, token: str, timeout: float, prefix: str = ""
) -> dict[str, dict[str, Any]]:
    """The source's manifest, only the part under ``prefix`` (the source filters)."""
    url = f"{source}/artifacts" + (
        f"?{urllib.parse.urlencode({'prefix': prefix})}" if prefix else ""
    )
    try:
        with urllib.request.urlopen(_request(url, token), timeout=timeout) as resp:
            data = json.load(resp)
    except urllib.error.HTTPError as exc:
        raise SyncError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SyncError(f"{url}: {exc}") from None
    except ValueError:
        raise SyncError(f"{url}: manifest is not JSON") from None
    items = data.get("artifacts") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise SyncError(f"{url}: manifest has no 'artifacts' list")
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            out[item["name"]] = item
    return out


def _download(
    source: str,
    name: str,
    expected_sha: str,
    expected_size: int,
    created: float | None,
    store: ArtifactStore,
    token: str,
    timeout: float,
    should_stop: Callable[[], bool],
) -> dict[str, Any]:
    store.partial_dir.mkdir(parents=True, exist_ok=True)
    part = store.partial_dir / expected_sha
    have = part.stat().st_size if part.exists() else 0
    if have > expected_size:
        part.unlink()
        have = 0
    url = f"{source}/artifacts/{name}"
    headers = {"Range": f"bytes={have}-"} if have else {}
    if have < expected_size or expected_size == 0:
        try:
            with urllib.request.urlopen(_request(url, token, headers), timeout=timeout) as resp:
                if have and resp.status != 206:  # server ignored Range: start over
                    have = 0
                with open(part, "ab" if have else "wb") as f:
                    while block := resp.read(CHUNK):
                        f.write(block)
                        if should_stop():
                            raise SyncError(f"{url}: stopped; {f.tell()} bytes kept for resume")
                    f.flush()
                    os.fsync(f.fileno())
        except urllib.error.HTTPError as exc:
            raise SyncError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise SyncError(f"{url}: {exc} (partial download kept for resume)") from None
    h = hashlib.sha256()
    with open(part, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    if h.hexdigest() != expected_sha:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise SyncError(f"{url}: sha256 mismatch (got {h.hexdigest()}, manifest {expected_sha})")
    return store.adopt(part, name, created=created)


def sync_artifacts(
    store: ArtifactStore,
    source: str,
    names: list[str] | None,
    *,
    prefix: str | None = None,
    token: str,
    timeout: float = 30.0,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> SyncReport:
    """Fetch each of ``names`` that is missing (or differs) locally from ``source``.

    With ``prefix`` instead of ``names``: every artifact ``source`` holds under it,
    newest first, and of games only what local retention would keep (a host
    does not download a file to delete it at once, nor again on the next sync).
    """
    for n in names or ():
        check_name(n)
    listed = os.path.commonpath(names) if names else prefix or ""
    remote = fetch_manifest(source, token, timeout, listed)
    if names is None:
        names = sorted(
            (n for n in remote if prefix and n.startswith(prefix)),
            key=lambda n: (_created(remote[n]) or 0.0, n),
            reverse=True,
        )
        for n in names:
            check_name(n)  # the source's manifest is input too
    missing = [n for n in names if n not in remote]
    if missing:
        raise ValidationError(f"ringrift.sync.artifacts: {source} has no artifact {missing[0]!r}")
    report = SyncReport()
    for i, name in enumerate(names):
        info = remote[name]
        sha, size, created = str(info["sha256"]), int(info["size"]), _created(info)
        if store.has(name, sha):
            report.skipped.append(name)
        elif prefix and created is not None and not store.keeps(name, created):
            report.skipped.append(name)  # older than every games file kept here
        else:
            report.fetched.append(
                _download(source, name, sha, size, created, store, token, timeout, should_stop)
            )
        if progress:
            progress(i + 1, len(names))
    return report


def _created(info: dict[str, Any]) -> float | None:
    """The source's creation time, if it sent a usable one (older sources do not)."""
    value = info.get("created")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
