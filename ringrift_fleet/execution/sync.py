"""Pull missing artifacts from another host's ``/artifacts`` endpoint.

Small files (games) travel in bundles: one ``POST /artifacts/bundle`` answers
up to BUNDLE_NAMES of them, each entry a JSON header line and the file's bytes,
and the whole bundle is entered in the manifest in one transaction.  A sync of
thousands of games files one request each spent minutes on connections, folder
syncs and manifest commits; a worker killed meanwhile lost the attempt.  A
source of an older release (404 or 405 there) is asked one file at a time.

Resumable: bytes already fetched wait in ``.partial/<sha256>`` and the next try
asks for the rest with ``Range``.  Verified: a file whose sha256 differs from the
source's manifest is discarded, never installed.  Atomic: the verified file is
renamed into place and only then entered in the local manifest.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import http.client
import json
import math
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ringrift_fleet.errors import ValidationError
from ringrift_fleet.execution.artifacts import (
    BUNDLE_FILE_MAX,
    BUNDLE_HEAD_MAX,
    BUNDLE_MAX_NAMES,
    BUNDLE_PATH,
    Adoption,
    ArtifactStore,
    check_name,
    games_folder,
)

CHUNK = 1 << 20
BUNDLE_NAMES = 256  # files one bundle request asks for
BUNDLE_BYTES = 32 << 20  # ... and at most about this many bytes of them
assert BUNDLE_NAMES <= BUNDLE_MAX_NAMES


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


# One thread at a time per ``.partial/<sha256>`` (several sources synced at once may
# offer the same file): striped, so the locks stay a fixed few.
_PARTIAL_LOCKS = [threading.Lock() for _ in range(64)]


def _download(
    source: str,
    w: _Wanted,
    store: ArtifactStore,
    token: str,
    timeout: float,
    should_stop: Callable[[], bool],
) -> dict[str, Any]:
    """One file alone, resuming its ``.partial/<sha256>`` with ``Range``."""
    with _PARTIAL_LOCKS[hash(w.sha) % len(_PARTIAL_LOCKS)]:
        if store.has(w.name, w.sha):  # another source's thread fetched it meanwhile
            info = store.entry(w.name) or {}
            return {"name": w.name, "size": info.get("size", w.size), "sha256": w.sha}
        return _download_unlocked(source, w, store, token, timeout, should_stop)


def _download_unlocked(
    source: str,
    w: _Wanted,
    store: ArtifactStore,
    token: str,
    timeout: float,
    should_stop: Callable[[], bool],
) -> dict[str, Any]:
    name, expected_sha, expected_size, created = w
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
    wanted: list[_Wanted] = []
    local = store.manifest(listed)  # one read, not one per name
    kept = _Retention(store)
    for name in names:
        sha, size, created = _entry(source, name, remote[name])
        mine = local.get(name)
        if mine is not None and mine["sha256"] == sha and store.regular_file(store.path(name)):
            report.skipped.append(name)
        elif prefix and created is not None and not kept.takes(name, created):
            report.skipped.append(name)  # older than every games file kept here
        else:
            wanted.append(_Wanted(name, sha, size, created))
    done = len(report.skipped)
    bundles = True
    for batch in _batches(wanted, store):
        got = None
        if bundles and len(batch) > 1:
            got = _fetch_bundle(source, batch, store, token, timeout, should_stop, named=not prefix)
            bundles = got is not None  # None: a source of an older release
        if got is not None:
            report.fetched += got.fetched
            report.skipped += got.skipped
        else:
            for w in batch:
                report.fetched.append(_download(source, w, store, token, timeout, should_stop))
        done += len(batch)
        if progress:
            progress(done, len(names))
    if progress and not wanted:
        progress(len(names), len(names))
    return report


class _Retention:
    """Would local games retention keep a file, counting the newer ones this sync
    takes before it?  (Names come newest first, and a bundle is entered in the
    manifest only once it has arrived, so the manifest alone would not say.)"""

    def __init__(self, store: ArtifactStore) -> None:
        self.store, self.keep = store, store.games_keep
        self.folders: dict[str, list[float]] = {}  # folder -> -created, ascending

    def takes(self, name: str, created: float) -> bool:
        folder = games_folder(name)
        if not self.keep or folder is None:
            return True
        times = self.folders.get(folder)
        if times is None:
            times = sorted(-float(i["created"]) for i in self.store.listing(folder))
            self.folders[folder] = times
        if len(times) >= self.keep and -created >= times[self.keep - 1]:
            return False
        bisect.insort(times, -created)
        return True


class _Wanted(NamedTuple):
    name: str
    sha: str
    size: int
    created: float | None


def _bundles(w: _Wanted, store: ArtifactStore) -> bool:
    """Small, and not half-fetched already (that one resumes with Range, alone)."""
    return w.size <= BUNDLE_FILE_MAX and not (store.partial_dir / w.sha).exists()


def _batches(wanted: list[_Wanted], store: ArtifactStore) -> Iterator[list[_Wanted]]:
    """Runs of small files up to BUNDLE_NAMES / BUNDLE_BYTES; any other file alone."""
    batch: list[_Wanted] = []
    size = 0
    for w in wanted:
        if not _bundles(w, store):
            if batch:
                yield batch
                batch, size = [], 0
            yield [w]
            continue
        if batch and (len(batch) >= BUNDLE_NAMES or size + w.size > BUNDLE_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(w)
        size += w.size
    if batch:
        yield batch


def _fetch_bundle(
    source: str,
    batch: list[_Wanted],
    store: ArtifactStore,
    token: str,
    timeout: float,
    should_stop: Callable[[], bool],
    *,
    named: bool,
) -> SyncReport | None:
    """Fetch ``batch`` in one request; None when the source has no bundle route.

    Every file that arrived whole and verified is adopted, also when the
    connection breaks or ``should_stop`` cuts the bundle short (the error is
    raised after): the next try skips them.  A file the source no longer has
    (games retention there, since its manifest was read) is skipped; asked for
    by name, it is an error."""
    url = f"{source}{BUNDLE_PATH}"
    body = json.dumps({"names": [w.name for w in batch]}).encode()
    req = _request(url, token, {"Content-Type": "application/json"})
    req.data, req.method = body, "POST"
    store.partial_dir.mkdir(parents=True, exist_ok=True)
    received: list[Adoption] = []
    report = SyncReport()
    error: str | None = None
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            for w in batch:
                if should_stop():
                    error = f"{url}: stopped after {len(received)} of {len(batch)} files"
                    break
                head = _bundle_head(resp.readline(BUNDLE_HEAD_MAX + 1), url)
                if head.get("name") != w.name:
                    raise SyncError(f"{url}: entry for {head.get('name')!r}, expected {w.name!r}")
                if "error" in head:
                    if named:
                        raise SyncError(f"{url}: {w.name}: {head['error']}")
                    report.skipped.append(w.name)
                    continue
                size = head.get("size")
                if size != w.size or isinstance(size, bool):
                    # never read more than the manifest promised (and bundles carry
                    # only small files): a wrong size is a changed file, or a lie
                    raise SyncError(f"{url}: {w.name}: size {size!r}, manifest {w.size}")
                data = resp.read(size)
                if len(data) != size:
                    raise SyncError(f"{url}: {w.name}: connection ended inside the file")
                digest = hashlib.sha256(data).hexdigest()
                if digest != w.sha:
                    # changed at the source since its manifest was read: not installed
                    raise SyncError(
                        f"{url}: {w.name}: sha256 mismatch (got {digest}, manifest {w.sha})"
                    )
                # this thread's own name: a sync from several sources runs threads,
                # and two sources may offer the same file
                part = store.partial_dir / f"{w.sha}.{os.getpid()}-{threading.get_native_id()}"
                with open(part, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                received.append(Adoption(part, w.name, digest, w.created))
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 405) and not received:
            return None
        error = f"{url}: HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        error = f"{url}: {exc!r}"
    except SyncError as exc:
        error = str(exc)
    report.fetched = store.adopt_many(received)
    if error:
        raise SyncError(f"{error} ({len(received)} file(s) of the bundle kept)")
    return report


def _bundle_head(line: bytes, url: str) -> dict[str, Any]:
    if len(line) > BUNDLE_HEAD_MAX or not line.endswith(b"\n"):
        raise SyncError(f"{url}: bundle entry header missing or too long")
    try:
        head = json.loads(line)
    except ValueError:
        raise SyncError(f"{url}: bundle entry header is not JSON") from None
    if not isinstance(head, dict):
        raise SyncError(f"{url}: bundle entry header is not an object")
    return head


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _entry(source: str, name: str, info: dict[str, Any]) -> tuple[str, int, float | None]:
    """(sha256, size, created) of a source's manifest entry, checked: the sha names
    a file under ``.partial/`` before anything is verified, so it must be a digest
    and nothing else."""
    sha, size = info.get("sha256"), info.get("size")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise SyncError(
            f"{source}: manifest entry {name!r}: sha256 {str(sha)[:80]!r} is not 64 hex digits"
        )
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise SyncError(
            f"{source}: manifest entry {name!r}: size {str(size)[:40]!r} is not a byte count"
        )
    return sha, size, _created(info)


def _created(info: dict[str, Any]) -> float | None:
    """The source's creation time, if it sent a usable one (older sources do not)."""
    value = info.get("created")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
