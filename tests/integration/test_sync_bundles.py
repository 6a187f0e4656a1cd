"""Games travel in bundles: one request for hundreds of small files, against a real
aiohttp server on 127.0.0.1 -- and what a cut, a corrupt entry, an older source or a
hostile request does to them."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from ringrift_fleet.execution.artifacts import (
    BUNDLE_FILE_MAX,
    BUNDLE_MAX_NAMES,
    BUNDLE_PATH,
    ArtifactStore,
    artifact_routes,
)
from ringrift_fleet.execution.sync import BUNDLE_NAMES, SyncError, sync_artifacts
from tests.support.route_server import RouteServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOKEN = "bundle-key"
FOLDER = "games/square8_2p/"


class Recorder:
    """Routes the :8770 server mounts, with every request's method and path recorded;
    ``bundle`` replaces the bundle route (None drops it, as an older release has none)."""

    def __init__(self, root: Path, bundle: object = "real") -> None:
        self.requests: list[tuple[str, str]] = []
        routes = [
            r
            for r in artifact_routes(root, TOKEN)
            if bundle == "real" or not (isinstance(r, web.RouteDef) and r.path == BUNDLE_PATH)
        ]
        if callable(bundle):
            routes.append(web.post(BUNDLE_PATH, bundle))

        @web.middleware
        async def record(request: web.Request, handler: Callable[..., object]) -> object:
            self.requests.append((request.method, request.path))
            return await handler(request)  # type: ignore[misc]

        self.server = RouteServer(routes, [record])

    def count(self, method: str, path_start: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p.startswith(path_start))


def games(store: ArtifactStore, n: int, size: int = 600) -> list[str]:
    names = []
    for i in range(n):
        name = f"{FOLDER}job-{i:04d}.jsonl.gz"
        store.put_bytes(name, os.urandom(size))
        store.register(name, created=10_000.0 + i)
        names.append(name)
    return names


def same(dest: ArtifactStore, src: ArtifactStore, names: list[str]) -> None:
    for n in names:
        assert dest.path(n).read_bytes() == src.path(n).read_bytes(), n
        assert dest.entry(n)["sha256"] == src.entry(n)["sha256"]  # type: ignore[index]
        assert dest.entry(n)["created"] == src.entry(n)["created"]  # type: ignore[index]


def test_a_games_sync_of_600_files_takes_three_requests_not_600(tmp_path: Path) -> None:
    src = ArtifactStore(tmp_path / "src")
    names = games(src, 600)
    rec = Recorder(src.root)
    with rec.server:
        dest = ArtifactStore(tmp_path / "dest")
        report = sync_artifacts(dest, rec.server.url, None, prefix=FOLDER, token=TOKEN)
        assert sorted(a["name"] for a in report.fetched) == names
        bundles = rec.count("POST", BUNDLE_PATH)
        assert bundles == -(-600 // BUNDLE_NAMES), rec.requests
        assert rec.count("GET", "/artifacts/") == 0, "no file fetched alone"
        same(dest, src, names)
        assert not [p for p in dest.partial_dir.iterdir()], "no leftovers"
        again = sync_artifacts(dest, rec.server.url, None, prefix=FOLDER, token=TOKEN)
        assert again.fetched == [] and rec.count("POST", BUNDLE_PATH) == bundles


def test_retention_counts_the_newer_files_of_the_same_sync(tmp_path: Path) -> None:
    """The manifest learns of a bundle only once it arrived: the sync itself must
    count what it takes, or it downloads 600 files to delete 590 of them."""
    src = ArtifactStore(tmp_path / "src")
    names = games(src, 600)
    rec = Recorder(src.root)
    with rec.server:
        dest = ArtifactStore(tmp_path / "dest", games_keep=10)
        report = sync_artifacts(dest, rec.server.url, None, prefix=FOLDER, token=TOKEN)
    newest = sorted(names)[-10:]
    assert sorted(a["name"] for a in report.fetched) == newest
    assert sorted(dest.names(FOLDER)) == newest
    assert len(report.skipped) == 590


def test_a_source_of_an_older_release_is_asked_one_file_at_a_time(tmp_path: Path) -> None:
    src = ArtifactStore(tmp_path / "src")
    names = games(src, 40)
    rec = Recorder(src.root, bundle=None)
    with rec.server:
        dest = ArtifactStore(tmp_path / "dest")
        report = sync_artifacts(dest, rec.server.url, None, prefix=FOLDER, token=TOKEN)
    assert sorted(a["name"] for a in report.fetched) == names
    assert rec.count("POST", BUNDLE_PATH) == 1, "asked once, then not again"
    assert rec.count("GET", "/artifacts/") == 40
    same(dest, src, names)


def _bundle_of(
    src: ArtifactStore, names: list[str], damage: Callable[[int, bytes], bytes]
) -> bytes:
    out = b""
    for i, n in enumerate(names):
        data = src.path(n).read_bytes()
        head = {"name": n, "size": len(data), "sha256": src.entry(n)["sha256"]}  # type: ignore[index]
        out += damage(i, json.dumps(head).encode() + b"\n" + data)
    return out


@pytest.mark.parametrize("fault", ["cut", "corrupt", "lie"])
def test_what_arrived_whole_before_a_fault_is_kept_and_not_fetched_again(
    tmp_path: Path, fault: str
) -> None:
    """A bundle cut after 30 files (the source's coordinator killed), with a
    corrupt 31st file, or one whose header lies about its size (never read): the
    30 are installed and verified, the bad one never is, and the next sync asks
    only for the rest."""
    src = ArtifactStore(tmp_path / "src")
    names = games(src, 100)

    def damage(i: int, entry: bytes) -> bytes:
        if i < 30:
            return entry
        if fault == "corrupt" and i == 30:
            return entry[:-1] + bytes([entry[-1] ^ 0xFF])
        if fault == "lie" and i == 30:  # a header promising a terabyte
            head, _, data = entry.partition(b"\n")
            return json.dumps({**json.loads(head), "size": 10**12}).encode() + b"\n" + data
        return b"" if fault == "cut" else entry

    async def broken(request: web.Request) -> web.StreamResponse:
        asked = json.loads(await request.read())["names"]
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(_bundle_of(src, asked, damage))
        return resp

    rec = Recorder(src.root, bundle=broken)
    dest = ArtifactStore(tmp_path / "dest")
    with rec.server, pytest.raises(SyncError) as err:
        sync_artifacts(dest, rec.server.url, None, prefix=FOLDER, token=TOKEN)
    assert "30 file(s) of the bundle kept" in str(err.value)
    if fault == "corrupt":
        assert "sha256 mismatch" in str(err.value)
    if fault == "lie":
        assert "size 1000000000000, manifest 600" in str(err.value)
    got = dest.names(FOLDER)
    newest_first = sorted(names, reverse=True)
    assert sorted(got) == sorted(newest_first[:30])
    same(dest, src, got)
    assert not [p for p in dest.partial_dir.iterdir()], "nothing unverified left behind"
    rec2 = Recorder(src.root)
    with rec2.server:
        report = sync_artifacts(dest, rec2.server.url, None, prefix=FOLDER, token=TOKEN)
    assert sorted(a["name"] for a in report.fetched) == sorted(newest_first[30:])
    same(dest, src, names)


def test_a_file_gone_from_the_source_meanwhile_is_skipped_by_a_games_sync(
    tmp_path: Path,
) -> None:
    """Games retention at the source removed a file between its manifest and the
    bundle: a games sync takes the others; a sync by name reports it."""
    src = ArtifactStore(tmp_path / "src")
    names = games(src, 20)
    real = {r.path: r for r in artifact_routes(src.root, TOKEN) if isinstance(r, web.RouteDef)}
    bundle = real[BUNDLE_PATH].handler

    async def evicting(request: web.Request) -> web.StreamResponse:
        src.remove([names[5]])
        return await bundle(request)  # type: ignore[no-any-return]

    rec = Recorder(src.root, bundle=evicting)
    with rec.server:
        dest = ArtifactStore(tmp_path / "dest")
        report = sync_artifacts(dest, rec.server.url, None, prefix=FOLDER, token=TOKEN)
        assert names[5] in report.skipped
        assert sorted(a["name"] for a in report.fetched) == [n for n in names if n != names[5]]
        src.put_bytes(names[5], b"back")
        dest2 = ArtifactStore(tmp_path / "dest2")
        with pytest.raises(SyncError, match="no such artifact"):
            sync_artifacts(dest2, rec.server.url, names[:10], token=TOKEN)


def test_a_stopped_sync_keeps_what_arrived(tmp_path: Path) -> None:
    src = ArtifactStore(tmp_path / "src")
    games(src, 300)
    asked = 0

    def stop() -> bool:
        nonlocal asked
        asked += 1
        return asked > 50

    rec = Recorder(src.root)
    with rec.server:
        dest = ArtifactStore(tmp_path / "dest")
        with pytest.raises(SyncError, match="stopped after 50 of"):
            sync_artifacts(dest, rec.server.url, None, prefix=FOLDER, token=TOKEN, should_stop=stop)
    assert len(dest.names(FOLDER)) == 50


def test_a_large_file_goes_alone_and_small_ones_in_a_bundle(tmp_path: Path) -> None:
    src = ArtifactStore(tmp_path / "src")
    names = games(src, 5)
    big = f"{FOLDER}big.jsonl.gz"
    src.put_bytes(big, os.urandom(BUNDLE_FILE_MAX + 1))
    src.register(big, created=10_002.5)
    rec = Recorder(src.root)
    with rec.server:
        dest = ArtifactStore(tmp_path / "dest")
        sync_artifacts(dest, rec.server.url, None, prefix=FOLDER, token=TOKEN)
    assert rec.count("GET", f"/artifacts/{big}") == 1
    assert rec.count("POST", BUNDLE_PATH) == 2, "the small files before and after the big one"
    same(dest, src, [*names, big])


def _post(url: str, body: bytes, token: str = TOKEN) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json", "not JSON"),
        (b"[]", "names must be a list"),
        (b'{"names": []}', "names must be a list"),
        (json.dumps({"names": ["x"] * (BUNDLE_MAX_NAMES + 1)}).encode(), "names must be a list"),
        (b'{"names": [7]}', "names[0] is not a string"),
        (b'{"names": ["../../etc/passwd"]}', "passwd"),
        (b'{"names": ["/etc/passwd"]}', "passwd"),
    ],
)
def test_a_hostile_bundle_request_gets_a_clear_400_and_the_server_stays_up(
    tmp_path: Path, body: bytes, says: str
) -> None:
    src = ArtifactStore(tmp_path / "src")
    names = games(src, 2)
    rec = Recorder(src.root)
    with rec.server:
        url = rec.server.url + BUNDLE_PATH
        status, answer = _post(url, body)
        assert status == 400 and says in str(answer["error"])
        assert _post(url, b'{"names": ["x"]}', token="wrong")[0] == 401
        dest = ArtifactStore(tmp_path / "dest")
        report = sync_artifacts(dest, rec.server.url, None, prefix=FOLDER, token=TOKEN)
        assert len(report.fetched) == len(names), "still serving"


def test_a_symbolic_link_in_the_source_store_is_never_bundled(tmp_path: Path) -> None:
    src = ArtifactStore(tmp_path / "src")
    names = games(src, 3)
    secret = tmp_path / "secret"
    secret.write_bytes(b"not for the fleet")
    link = src.path(names[1])
    link.unlink()
    link.symlink_to(secret)
    rec = Recorder(src.root)
    with rec.server:
        dest = ArtifactStore(tmp_path / "dest")
        report = sync_artifacts(dest, rec.server.url, None, prefix=FOLDER, token=TOKEN)
    assert names[1] in report.skipped
    assert not dest.path(names[1]).exists()
    assert sorted(dest.names(FOLDER)) == [names[0], names[2]]


def test_a_sync_from_several_sources_reads_some_at_once_and_takes_a_shared_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sources one by one took 41 s for 29 sources on a loaded soak.  Now up to
    SYNC_PARALLEL answer at once; a file two sources hold (one synced it from the
    other earlier) is fetched whole once and reported once."""
    import asyncio

    from ringrift_fleet.config import reload_p2p_config
    from ringrift_fleet.execution.jobs import validate_job
    from ringrift_fleet.execution.tasks import SYNC_PARALLEL, run_sync
    from ringrift_fleet.execution.workloads import JobContext

    in_flight, most = 0, 0

    @web.middleware
    async def slow(request: web.Request, handler: Callable[..., object]) -> object:
        nonlocal in_flight, most
        in_flight += 1  # every server's loop is its own thread: += under the GIL is enough here
        most = max(most, in_flight)
        try:
            await asyncio.sleep(0.3)  # a loaded coordinator's answer
            return await handler(request)  # type: ignore[misc]
        finally:
            in_flight -= 1

    stores = [ArtifactStore(tmp_path / f"src{i}") for i in range(6)]
    shared = f"{FOLDER}shared.jsonl.gz"
    for i, s in enumerate(stores):
        s.put_bytes(f"{FOLDER}only-{i}-a.jsonl.gz", os.urandom(500))
        s.put_bytes(f"{FOLDER}only-{i}-b.jsonl.gz", os.urandom(500))
    body = os.urandom(700)
    for s in stores[:2]:
        s.put_bytes(shared, body)
        s.register(shared, created=1.0)
    servers = [RouteServer(artifact_routes(s.root, TOKEN), [slow]) for s in stores]
    dest = ArtifactStore(tmp_path / "dest")
    monkeypatch.setenv("RINGRIFT_CLUSTER_KEY", TOKEN)
    reload_p2p_config()
    try:
        for srv in servers:
            srv.__enter__()
        kwargs = {"prefix": FOLDER, "source": [srv.url for srv in servers]}
        result = run_sync(validate_job("sync", {**kwargs, "job_id": "s1"}), JobContext(dest))
    finally:
        for srv in servers:
            srv.__exit__(None, None, None)
        monkeypatch.delenv("RINGRIFT_CLUSTER_KEY")
        reload_p2p_config()
    assert 2 <= most <= SYNC_PARALLEL, most
    assert result["fetched"].count(shared) == 1
    assert sorted(result["fetched"]) == sorted(dest.names(FOLDER))
    assert len(dest.names(FOLDER)) == 13
    assert dest.path(shared).read_bytes() == body
    assert not [p for p in dest.partial_dir.iterdir()], "no leftovers"
    assert result["failed_sources"] == {} and result["deferred_sources"] == []


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"sha256": "../../../escaped", "size": 5}, "is not 64 hex digits"),
        ({"sha256": "A" * 64, "size": 5}, "is not 64 hex digits"),
        ({"sha256": "0" * 64, "size": -1}, "is not a byte count"),
        ({"sha256": "0" * 64, "size": "5"}, "is not a byte count"),
    ],
)
def test_a_hostile_manifest_entry_is_refused_naming_it_and_nothing_is_written(
    tmp_path: Path, entry: dict[str, object], says: str
) -> None:
    """The sha names a file under .partial/ before anything is verified: a source
    whose manifest says "../../../escaped" must not make the sync write there."""
    name = f"{FOLDER}evil.jsonl.gz"

    async def manifest(request: web.Request) -> web.Response:
        return web.json_response({"artifacts": [{"name": name, "created": 1.0, **entry}]})

    async def file(request: web.Request) -> web.Response:
        return web.Response(body=b"hello")

    server = RouteServer([web.get("/artifacts", manifest), web.get("/artifacts/{name:.+}", file)])
    dest = ArtifactStore(tmp_path / "store" / "dest")
    with server, pytest.raises(SyncError) as err:
        sync_artifacts(dest, server.url, None, prefix=FOLDER, token=TOKEN)
    assert says in str(err.value) and name in str(err.value)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "store" / "escaped").exists()
    assert dest.names(FOLDER) == []


def test_a_client_that_goes_away_mid_bundle_is_no_error_and_the_server_serves_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker killed while it fetches a bundle (the soak kills them every five
    minutes) left a traceback at ERROR in every source's log; it is an ordinary
    event, noted at INFO."""
    import logging
    import socket
    import time
    from urllib.parse import urlsplit

    src = ArtifactStore(tmp_path / "src")
    names = games(src, 120, size=128 * 1024)  # 15 MB: more than the socket buffers hold
    rec = Recorder(src.root)
    caplog.set_level(logging.INFO)
    with rec.server:
        url = urlsplit(rec.server.url)
        body = json.dumps({"names": names}).encode()
        with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
            sock.sendall(
                f"POST {BUNDLE_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        # closed with a reset while the server still writes
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "went away" not in caplog.text:
            time.sleep(0.05)
        dest = ArtifactStore(tmp_path / "dest")
        report = sync_artifacts(dest, rec.server.url, None, prefix=FOLDER, token=TOKEN)
    assert len(report.fetched) == len(names), "still serving"
    assert "went away" in caplog.text, caplog.text[-2000:]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
