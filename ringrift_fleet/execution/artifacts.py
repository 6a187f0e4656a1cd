"""Artifacts (games, models) under the artifact directory, with a manifest, and their HTTP routes.

Layout of ``<artifact_dir>``::

    manifest.db                   SQLite (WAL): name -> size, sha256, created
    games/<board>_<n>p/<job_id>.jsonl.gz
    models/<board>_<n>p/v0001.json
    logs/<job_id>.log             command workload output (not in the manifest)
    .work/<job_id>/               a command's output dir, removed once adopted
    .tmp/  .partial/              in-flight writes and resumable downloads

Logs and work dirs a failed job left are swept once they are older than the
job's result in Redis (``sweep``), so a log lives as long as the result
naming it.

An artifact's *name* is its path relative to the artifact directory, with ``/``.
Every file is written to ``.tmp`` and renamed into place, and only then entered
in the manifest, so a crash leaves either the old state or the new one, never
half a file.  The manifest is an indexed SQLite table rather than one JSON file
because a host keeps tens of thousands of games files: a register is one row,
not a rewrite of everything, and a lookup or a folder's listing reads only
what it asks for.  A ``manifest.json`` left by an older release is imported
once and renamed ``manifest.json.imported``.

Games are kept ``games_keep`` files per board config (newest first; 0 keeps
all): training reads only the newest games, and a disk past
DISK_CRITICAL_THRESHOLD takes its host out of the fleet.

:func:`artifact_routes` gives the ``GET /artifacts`` (manifest; ``?prefix=``
narrows it), ``GET /artifacts/{name}`` (file, with Range for resuming) and
``POST /artifacts/bundle`` (many small files in one response, see
:mod:`~ringrift_fleet.execution.sync`) routes the :8770 server mounts; both want ``Authorization: Bearer
<CLUSTER_KEY>``.  With no key configured they answer loopback clients only.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import logging
import math
import os
import shutil
import sqlite3
import stat
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from aiohttp import web

from ringrift_fleet.errors import ValidationError
from ringrift_fleet.http_input import same_secret

log = logging.getLogger(__name__)

MANIFEST = "manifest.db"
LEGACY_MANIFEST = "manifest.json"
GAMES = "games/"
SWEEP_EVERY_S = 3600.0  # job logs and leftover work dirs are swept at most this often
_HIDDEN = (".tmp", ".partial", "logs", ".work")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS artifacts (
    name TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS artifacts_by_created ON artifacts (created);
"""


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
        or (len(parts) == 1 and name.startswith(("manifest.", ".manifest")))
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


def _prefix_range(prefix: str) -> tuple[str, str | None]:
    """The names starting with ``prefix`` are those in [lo, hi): an index range."""
    nxt = ord(prefix[-1]) + 1 if prefix else 0
    if not prefix or nxt > 0x10FFFF or 0xD800 <= nxt < 0xE000:  # no bound: filter after
        return prefix, None
    return prefix, prefix[:-1] + chr(nxt)


def games_folder(name: str) -> str | None:
    """``games/<config>/`` for a games file (however deep), else None."""
    parts = name.split("/")
    if len(parts) < 3 or parts[0] + "/" != GAMES:
        return None
    return f"{parts[0]}/{parts[1]}/"


class Adoption(NamedTuple):
    """A finished file to move into the store (``sha256`` when already known)."""

    src: Path
    name: str
    sha256: str | None = None
    created: float | None = None


class ArtifactStore:
    """The artifact directory of one host; safe to share between worker processes."""

    def __init__(self, root: Path | str, *, games_keep: int = 0) -> None:
        if games_keep < 0:
            raise ValidationError(f"games_keep={games_keep}: expected 0 (keep all) or more")
        self.root = Path(root)
        self.games_keep = games_keep
        self._ready = False

    # --- paths ------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.root / check_name(name)

    @property
    def tmp_dir(self) -> Path:
        return self.root / ".tmp"

    @property
    def partial_dir(self) -> Path:
        return self.root / ".partial"

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def regular_file(self, path: Path) -> bool:
        """Is ``path`` a regular file (not a symbolic link) inside the store, through no
        link that leads out of it?  Only such files are registered and served."""
        try:
            if not stat.S_ISREG(path.lstat().st_mode):
                return False
            return path.resolve().is_relative_to(self.root.resolve())
        except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
            return False

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

    def _connect(self) -> sqlite3.Connection:
        # One connection per operation: worker processes fork, and a connection
        # must not cross a fork; opening one costs well under a millisecond.
        # synchronous stays FULL: a registered artifact survives a power cut, as
        # its (fsynced) file does.
        return sqlite3.connect(self.manifest_path, timeout=30.0, isolation_level=None)

    def _ensure(self) -> None:
        """Create the table, and import an older release's manifest.json, once."""
        if self._ready:
            return
        with self._locked():
            try:
                con = self._connect()
                try:
                    con.execute("PRAGMA journal_mode=WAL")
                    con.executescript(_SCHEMA)
                    self._import_legacy(con)
                finally:
                    con.close()
            except sqlite3.DatabaseError as exc:
                raise ValidationError(
                    f"{self.manifest_path}: not a usable manifest ({exc})"
                ) from None
        self._ready = True

    def _import_legacy(self, con: sqlite3.Connection) -> None:
        legacy = self.root / LEGACY_MANIFEST
        try:
            data = json.loads(legacy.read_text())
        except FileNotFoundError:
            return
        except ValueError as exc:
            raise ValidationError(f"{legacy}: not valid JSON ({exc})") from None
        arts = data.get("artifacts") if isinstance(data, dict) else None
        rows = []
        for name, info in arts.items() if isinstance(arts, dict) else ():
            if isinstance(info, dict) and isinstance(name, str):
                # ValidationError is a ValueError: a name outside the store is skipped.
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    check_name(name)
                    created = float(info.get("created", 0.0))
                    rows.append((name, int(info["size"]), str(info["sha256"]), created))
        # Rows already here win (a crash between commit and rename imports twice).
        con.execute("BEGIN IMMEDIATE")
        con.executemany("INSERT OR IGNORE INTO artifacts VALUES (?, ?, ?, ?)", rows)
        con.execute("COMMIT")
        os.replace(legacy, legacy.with_name(LEGACY_MANIFEST + ".imported"))
        log.info("imported %d artifacts from %s into %s", len(rows), legacy, MANIFEST)

    @contextlib.contextmanager
    def _db(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        self._ensure()
        con = self._connect()
        try:
            if write:
                con.execute("BEGIN IMMEDIATE")
            yield con
            if write:
                con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    @staticmethod
    def _where(prefix: str) -> tuple[str, tuple[str, ...]]:
        lo, hi = _prefix_range(prefix)
        if hi is None:
            return "name >= ?", (lo,)
        return "name >= ? AND name < ?", (lo, hi)

    def listing(self, prefix: str = "") -> list[dict[str, Any]]:
        """``{name, size, sha256, created}`` of every artifact under ``prefix``, by name."""
        where, args = self._where(prefix)
        with self._db() as con:
            rows = con.execute(
                f"SELECT name, size, sha256, created FROM artifacts WHERE {where} ORDER BY name",
                args,
            ).fetchall()
        return [
            {"name": n, "size": size, "sha256": sha, "created": created}
            for n, size, sha, created in rows
            if n.startswith(prefix)
        ]

    def manifest(self, prefix: str = "") -> dict[str, dict[str, Any]]:
        """name -> {"size", "sha256", "created"} for every artifact (under ``prefix``)."""
        return {a.pop("name"): a for a in self.listing(prefix)}

    def entry(self, name: str) -> dict[str, Any] | None:
        with self._db() as con:
            row = con.execute(
                "SELECT size, sha256, created FROM artifacts WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else {"size": row[0], "sha256": row[1], "created": row[2]}

    def entries(self, names: list[str]) -> dict[str, dict[str, Any]]:
        """:meth:`entry` of several names in one read (those the manifest lacks left out)."""
        out: dict[str, dict[str, Any]] = {}
        with self._db() as con:
            for name in names:
                row = con.execute(
                    "SELECT size, sha256, created FROM artifacts WHERE name = ?", (name,)
                ).fetchone()
                if row is not None:
                    out[name] = {"size": row[0], "sha256": row[1], "created": row[2]}
        return out

    def names(self, prefix: str = "") -> list[str]:
        return [a["name"] for a in self.listing(prefix)]

    def newest(self, prefix: str, limit: int | None = None) -> list[str]:
        """Names under ``prefix``, newest first (what training reads)."""
        where, args = self._where(prefix)
        with self._db() as con:
            rows = con.execute(
                f"SELECT name FROM artifacts WHERE {where} ORDER BY created DESC, name DESC"
                " LIMIT ?",
                (*args, -1 if limit is None else limit),
            ).fetchall()
        return [n for (n,) in rows if n.startswith(prefix)]

    def keeps(self, name: str, created: float) -> bool:
        """Would a games file made at ``created`` survive retention here?  A sync asks
        before fetching, so a host does not download what it would delete at once."""
        folder = games_folder(name)
        if not self.games_keep or folder is None:
            return True
        where, args = self._where(folder)
        with self._db() as con:
            row = con.execute(
                f"SELECT created FROM artifacts WHERE {where}"
                " ORDER BY created DESC, name DESC LIMIT 1 OFFSET ?",
                (*args, self.games_keep - 1),
            ).fetchone()
        return row is None or created > row[0]

    def register(
        self, name: str, *, sha256: str | None = None, created: float | None = None
    ) -> dict[str, Any]:
        """Record an artifact already in place; returns its ``{name, size, sha256}``.

        ``created`` defaults to now; a sync passes the source's, so that "newest"
        means the same on every host.  Registering a games file may evict the
        oldest of its folder beyond ``games_keep``: rows first, then files.
        """
        path = self.path(name)
        if not self.regular_file(path):
            raise ValidationError(
                f"artifact {name!r}: {path} is not a regular file inside the store "
                "(a symbolic link, or a link out of it, is never registered)"
            )
        digest = sha256 or sha256_file(path)
        size = path.stat().st_size
        when = time.time() if created is None or not math.isfinite(created) else created
        with self._db(write=True) as con:
            evicted = self._insert(con, name, size, digest, when)
        self._unlink_evicted(evicted)
        return {"name": name, "size": size, "sha256": digest}

    def _insert(
        self, con: sqlite3.Connection, name: str, size: int, digest: str, when: float
    ) -> list[str]:
        """One manifest row, and the games files retention evicts for it (rows only)."""
        con.execute(
            "INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?)", (name, size, digest, when)
        )
        return self._evict(con, name)

    def _unlink_evicted(self, evicted: list[str]) -> None:
        for old in evicted:
            with contextlib.suppress(FileNotFoundError):
                (self.root / old).unlink()
        if evicted:
            log.info("games retention: removed %d old file(s) of %s", len(evicted), evicted[0])

    def _evict(self, con: sqlite3.Connection, name: str) -> list[str]:
        folder = games_folder(name)
        if not self.games_keep or folder is None:
            return []
        where, args = self._where(folder)
        old = [
            n
            for (n,) in con.execute(
                f"SELECT name FROM artifacts WHERE {where}"
                " ORDER BY created DESC, name DESC LIMIT -1 OFFSET ?",
                (*args, self.games_keep),
            )
        ]
        con.executemany("DELETE FROM artifacts WHERE name = ?", [(n,) for n in old])
        return old

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

    def adopt(self, src: Path, name: str, *, created: float | None = None) -> dict[str, Any]:
        """Move a finished file (same filesystem) into the store as ``name``.

        Only a regular file is adopted: a symbolic link (which a job could point at
        anything the worker can read) is refused, as is a folder of the store that
        links out of it."""
        return self.adopt_many([Adoption(Path(src), name, None, created)])[0]

    def adopt_many(self, files: list[Adoption]) -> list[dict[str, Any]]:
        """Adopt several finished files: each renamed into place, each folder synced
        once, and every row written in one manifest transaction.

        What a bundled sync receives: per file, one rename instead of a folder sync
        and a manifest commit each.  A file that cannot be adopted refuses the whole
        call before anything moves."""
        moves: list[tuple[Path, Path, Adoption]] = []
        for f in files:
            try:
                regular = stat.S_ISREG(f.src.lstat().st_mode)
            except OSError as exc:
                raise ValidationError(f"artifact {f.name!r}: cannot adopt {f.src}: {exc}") from None
            if not regular:
                raise ValidationError(
                    f"artifact {f.name!r}: {f.src} is not a regular file (symbolic links are refused)"
                )
            dest = self.path(f.name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.parent.resolve().is_relative_to(self.root.resolve()):
                raise ValidationError(f"artifact {f.name!r}: {dest.parent} links out of the store")
            moves.append((f.src, dest, f))
        rows = []
        for src, dest, f in moves:
            digest = f.sha256 or sha256_file(src)
            size = src.stat().st_size
            os.replace(src, dest)
            when = time.time() if f.created is None or not math.isfinite(f.created) else f.created
            rows.append((f.name, size, digest, when))
        for folder in sorted({dest.parent for _src, dest, _f in moves}):
            _fsync_dir(folder)
        evicted: list[str] = []
        if rows:
            with self._db(write=True) as con:
                for name, size, digest, when in rows:
                    evicted += self._insert(con, name, size, digest, when)
        self._unlink_evicted(evicted)
        return [{"name": n, "size": size, "sha256": digest} for n, size, digest, _w in rows]

    # --- housekeeping -------------------------------------------------------------------
    def sweep(self, older_than_s: float, *, now: float | None = None) -> int:
        """Remove job logs and leftover work directories untouched for ``older_than_s``.

        Command workloads leave a log per job, and a work directory when they
        fail; a fleet runs hundreds of jobs an hour, so these would fill the
        disk.  Cheap enough to call after every job: a marker file makes it
        run at most once per SWEEP_EVERY_S per host.  Returns what it removed.
        """
        now = time.time() if now is None else now
        logs = self.root / "logs"
        marker = logs / ".last-sweep"
        with contextlib.suppress(FileNotFoundError):
            if marker.stat().st_mtime > now - SWEEP_EVERY_S:
                return 0
        logs.mkdir(parents=True, exist_ok=True)
        marker.touch()
        os.utime(marker, (now, now))  # claimed first: other processes skip this round
        cutoff = now - older_than_s
        removed = 0
        for folder, is_tree in ((logs, False), (self.root / ".work", True)):
            with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith(".") and not is_tree:
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                            continue
                        if is_tree and entry.is_dir(follow_symlinks=False):
                            shutil.rmtree(entry.path, ignore_errors=True)
                        else:
                            os.unlink(entry.path)
                        removed += 1
        if removed:
            log.info(
                "removed %d job log(s) and work dir(s) older than %.0f s", removed, older_than_s
            )
        return removed

    def remove(self, names: list[str]) -> int:
        """Forget artifacts and delete their files (rows first, then files, as games
        retention does); folders left empty go too.  Returns the rows removed."""
        if not names:
            return 0
        checked = [check_name(n) for n in names]
        with self._db(write=True) as con:
            before = con.total_changes
            con.executemany("DELETE FROM artifacts WHERE name = ?", [(n,) for n in checked])
            removed = con.total_changes - before
        for name in checked:
            path = self.root / name
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            for parent in path.parents:
                if parent == self.root or not parent.is_relative_to(self.root):
                    break
                try:
                    parent.rmdir()  # only when empty
                except OSError:
                    break
        return removed

    def has(self, name: str, sha256: str | None = None) -> bool:
        info = self.entry(name)
        if info is None or not self.regular_file(self.path(name)):
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
    return scheme.lower() == "bearer" and same_secret(value.strip(), token)


def artifact_routes(artifact_dir: Path, token: str) -> list[web.RouteDef]:
    """``GET /artifacts`` and ``GET /artifacts/{name}`` for the :8770 server."""
    store = ArtifactStore(artifact_dir)
    # Threads of their own: on the loop's shared executor a sync's requests queued
    # behind the coordinator's ledger encodings, and a loaded soak's games sync
    # from 29 sources took 41 s.
    pool = ThreadPoolExecutor(2, thread_name_prefix="artifacts")

    def deny() -> web.Response:
        return web.json_response(
            {"error": "unauthorized: send Authorization: Bearer <CLUSTER_KEY>"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    async def list_artifacts(request: web.Request) -> web.StreamResponse:
        if not _authorized(request, token):
            return deny()
        prefix = request.query.get("prefix", "")
        # Off the event loop: a whole listing of a big store must not stall /status.
        listing = await asyncio.get_running_loop().run_in_executor(pool, store.listing, prefix)
        return web.json_response({"artifacts": listing})

    async def get_artifact(request: web.Request) -> web.StreamResponse:
        if not _authorized(request, token):
            return deny()
        name = request.match_info["name"]
        try:
            check_name(name)
        except ValidationError:
            return web.json_response({"error": f"no artifact {name!r}"}, status=404)
        path = store.root / name
        info = await asyncio.get_running_loop().run_in_executor(pool, store.entry, name)
        # never through a symbolic link: its target could be anything this user can read
        if info is None or not store.regular_file(path):
            return web.json_response({"error": f"no artifact {name!r}"}, status=404)
        # FileResponse answers Range requests (206) itself: that is what resumes use.
        return web.FileResponse(path, headers={"X-Artifact-SHA256": str(info["sha256"])})

    async def get_bundle(request: web.Request) -> web.StreamResponse:
        if not _authorized(request, token):
            return deny()
        try:
            names = bundle_request(await request.read())
        except ValidationError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        loop = asyncio.get_running_loop()
        infos = await loop.run_in_executor(pool, store.entries, names)
        resp = web.StreamResponse(headers={"Content-Type": BUNDLE_TYPE})
        await resp.prepare(request)
        left = list(names)
        try:
            while left:
                # a few MiB of files per trip to the thread, not one trip per file
                read = await loop.run_in_executor(pool, _bundled_files, store, left, infos)
                left = left[len(read) :]
                for name, data, missing in read:
                    head = (
                        {"name": name, "error": missing}
                        if missing
                        else {"name": name, "size": len(data), "sha256": infos[name]["sha256"]}
                    )
                    await resp.write(json.dumps(head).encode() + b"\n" + data)
            await resp.write_eof()
        except ConnectionResetError:
            # the fetching worker went away (killed, restarted): it fetches again later,
            # and what it already stored is checked by its digest
            log.info(
                "bundle for %s: the client went away with %d of %d files unsent",
                request.remote,
                len(left),
                len(names),
            )
        return resp

    return [
        web.get("/artifacts", list_artifacts),
        web.post(BUNDLE_PATH, get_bundle),
        web.get("/artifacts/{name:.+}", get_artifact),
    ]


# --- bundles: many small files in one response -----------------------------------------

BUNDLE_PATH = "/artifacts/bundle"
BUNDLE_TYPE = "application/x-ringrift-bundle"
BUNDLE_MAX_NAMES = 512  # names one bundle request may ask for
BUNDLE_FILE_MAX = 4 << 20  # larger files go alone (resumable with Range)
BUNDLE_HEAD_MAX = 8192  # bytes of one entry's header line


def bundle_request(body: bytes) -> list[str]:
    """The names of a bundle request ``{"names": [...]}``, checked."""
    try:
        data = json.loads(body)
    except ValueError:
        raise ValidationError("bundle request: body is not JSON") from None
    names = data.get("names") if isinstance(data, dict) else None
    if not isinstance(names, list) or not 0 < len(names) <= BUNDLE_MAX_NAMES:
        raise ValidationError(f"bundle request: names must be a list of 1 to {BUNDLE_MAX_NAMES}")
    for i, n in enumerate(names):
        if not isinstance(n, str):
            raise ValidationError(f"bundle request: names[{i}] is not a string")
        check_name(n)
    return names


BUNDLE_READ_BYTES = 8 << 20  # bytes of files one trip to the routes' thread reads


def _bundled_files(
    store: ArtifactStore, names: list[str], infos: dict[str, dict[str, Any]]
) -> list[tuple[str, bytes, str | None]]:
    """The first of ``names`` (at least one, about BUNDLE_READ_BYTES at most):
    (name, bytes, None), or (name, b"", why it is not in the bundle)."""
    out: list[tuple[str, bytes, str | None]] = []
    size = 0
    for name in names:
        if out and size >= BUNDLE_READ_BYTES:
            break
        data, missing = _bundled_file(store, name, infos)
        out.append((name, data, missing))
        size += len(data)
    return out


def _bundled_file(
    store: ArtifactStore, name: str, infos: dict[str, dict[str, Any]]
) -> tuple[bytes, str | None]:
    """(bytes, None) of a file a bundle carries, or (b"", why it does not)."""
    info, path = infos.get(name), store.root / name
    if info is None or not store.regular_file(path):
        return b"", "no such artifact"
    if int(info["size"]) > BUNDLE_FILE_MAX:
        return b"", f"larger than {BUNDLE_FILE_MAX} bytes: fetch it alone"
    try:
        with open(path, "rb") as f:
            data = f.read(BUNDLE_FILE_MAX + 1)
    except OSError as exc:
        return b"", f"unreadable: {exc.strerror}"
    if len(data) > BUNDLE_FILE_MAX:
        return b"", f"larger than {BUNDLE_FILE_MAX} bytes: fetch it alone"
    return data, None
