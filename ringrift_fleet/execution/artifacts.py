"""Artifacts (games, models) under the artifact directory, with a manifest, and their HTTP routes.

Layout of ``<artifact_dir>``::

    manifest.json                 {"artifacts": {name: {"size", "sha256", "created"}}}
    games/<board>_<n>p/<job_id>.jsonl.gz
    models/<board>_<n>p/v0001.json
    logs/<job_id>.log             command workload output (not in the manifest)
    .tmp/  .partial/              in-flight writes and resumable downloads

An artifact's *name* is its path relative to the artifact directory, with ``/``.
Every file is written to ``.tmp`` and renamed into place, and the manifest is
updated under a file lock and replaced atomically, so a crash leaves either the
old state or the new one, never half a file or half a manifest.

:func:`artifact_routes` gives the ``GET /artifacts`` (manifest) and
``GET /artifacts/{name}`` (file, with Range for resuming) routes the :8770
server mounts; both want ``Authorization: Bearer <CLUSTER_KEY>``.  With no key
configured they answer loopback clients only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import ipaddress
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

from ringrift_fleet.errors import ValidationError

MANIFEST = "manifest.json"
_HIDDEN = (".tmp", ".partial", "logs", ".work")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_name(name: str) -> str:
    """An artifact name must stay inside the artifact directory."""
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts)
        or parts[0] in _HIDDEN
        or name == MANIFEST
    ):
        raise ValidationError(f"artifact name {name!r}: not a relative path inside the store")
    return name


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class ArtifactStore:
    """The artifact directory of one host; safe to share between worker processes."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # --- paths ------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.root / check_name(name)

    @property
    def tmp_dir(self) -> Path:
        return self.root / ".tmp"

    @property
    def partial_dir(self) -> Path:
        return self.root / ".partial"

    def log_path(self, job_id: str) -> Path:
        return self.root / "logs" / f"{job_id}.log"

    def work_dir(self, job_id: str) -> Path:
        return self.root / ".work" / job_id

    # --- manifest -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".manifest.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_manifest(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads((self.root / MANIFEST).read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise ValidationError(f"{self.root / MANIFEST}: not valid JSON ({exc})") from None
        arts = data.get("artifacts", {}) if isinstance(data, dict) else {}
        return dict(arts) if isinstance(arts, dict) else {}

    def _write_manifest(self, arts: dict[str, dict[str, Any]]) -> None:
        data = json.dumps({"artifacts": dict(sorted(arts.items()))}, indent=1).encode()
        self._atomic_write(self.root / MANIFEST, data)

    def manifest(self) -> dict[str, dict[str, Any]]:
        """name -> {"size", "sha256", "created"} for every artifact."""
        with self._locked():
            return self._read_manifest()

    def entry(self, name: str) -> dict[str, Any] | None:
        return self.manifest().get(name)

    def names(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self.manifest() if n.startswith(prefix))

    def register(self, name: str, *, sha256: str | None = None) -> dict[str, Any]:
        """Record an artifact already in place; returns its ``{name, size, sha256}``."""
        path = self.path(name)
        digest = sha256 or sha256_file(path)
        info = {"size": path.stat().st_size, "sha256": digest, "created": time.time()}
        with self._locked():
            arts = self._read_manifest()
            arts[name] = info
            self._write_manifest(arts)
        return {"name": name, "size": info["size"], "sha256": digest}

    # --- writing ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _replacing(self, dest: Path) -> Iterator[Path]:
        """Yield a temporary path; on success it is synced and renamed over ``dest``."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp_dir / f"{uuid.uuid4().hex}-{dest.name}"
        try:
            yield tmp
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _atomic_write(self, dest: Path, data: bytes) -> None:
        with self._replacing(dest) as tmp:
            tmp.write_bytes(data)

    def writing(self, name: str) -> contextlib.AbstractContextManager[Path]:
        """Yield a temporary path; on success it is renamed to ``name`` (then call ``register``)."""
        return self._replacing(self.path(name))

    def put_bytes(self, name: str, data: bytes) -> dict[str, Any]:
        self._atomic_write(self.path(name), data)
        return self.register(name, sha256=hashlib.sha256(data).hexdigest())

    def adopt(self, src: Path, name: str) -> dict[str, Any]:
        """Move a finished file (same filesystem) into the store as ``name``."""
        dest = self.path(name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = sha256_file(src)
        os.replace(src, dest)
        _fsync_dir(dest.parent)
        return self.register(name, sha256=digest)

    def has(self, name: str, sha256: str | None = None) -> bool:
        info = self.entry(name)
        if info is None or not self.path(name).is_file():
            return False
        return sha256 is None or info.get("sha256") == sha256


# --- HTTP routes --------------------------------------------------------------------------


def _authorized(request: web.Request, token: str) -> bool:
    if not token:
        peer = request.remote or ""
        with contextlib.suppress(ValueError):
            return ipaddress.ip_address(peer).is_loopback
        return False
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), token)


def artifact_routes(artifact_dir: Path, token: str) -> list[web.RouteDef]:
    """``GET /artifacts`` and ``GET /artifacts/{name}`` for the :8770 server."""
    store = ArtifactStore(artifact_dir)

    def deny() -> web.Response:
        return web.json_response(
            {"error": "unauthorized: send Authorization: Bearer <CLUSTER_KEY>"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    async def list_artifacts(request: web.Request) -> web.StreamResponse:
        if not _authorized(request, token):
            return deny()
        arts = store.manifest()
        return web.json_response(
            {
                "artifacts": [
                    {"name": n, "size": a["size"], "sha256": a["sha256"]} for n, a in arts.items()
                ]
            }
        )

    async def get_artifact(request: web.Request) -> web.StreamResponse:
        if not _authorized(request, token):
            return deny()
        name = request.match_info["name"]
        try:
            info = store.manifest().get(check_name(name))
        except ValidationError:
            info = None
        path = store.root / name
        if info is None or not path.is_file():
            return web.json_response({"error": f"no artifact {name!r}"}, status=404)
        # FileResponse answers Range requests (206) itself: that is what resumes use.
        return web.FileResponse(path, headers={"X-Artifact-SHA256": str(info["sha256"])})

    return [
        web.get("/artifacts", list_artifacts),
        web.get("/artifacts/{name:.+}", get_artifact),
    ]
