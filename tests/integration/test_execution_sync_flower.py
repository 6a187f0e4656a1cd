"""Artifact sync against a real aiohttp server on 127.0.0.1, and Flower with and without auth."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ringrift_fleet.execution.artifacts import ArtifactStore
from ringrift_fleet.execution.sync import SyncError, sync_artifacts
from tests.support.artifact_server import ArtifactServer
from tests.support.procs import PYTHON, REPO, free_port, port_open, running, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOKEN = "s3cret-cluster-key"


@pytest.fixture
def source(tmp_path: Path) -> Iterator[tuple[ArtifactStore, ArtifactServer]]:
    store = ArtifactStore(tmp_path / "source")
    store.put_bytes("models/hex8_2p/v0001.json", b'{"weights": [1, 2, 3]}')
    store.put_bytes("games/hex8_2p/big.jsonl.gz", os.urandom(3 << 20))
    with ArtifactServer(store.root, TOKEN) as server:
        yield store, server


def test_sync_fetches_missing_verifies_and_skips_present(
    source: tuple[ArtifactStore, ArtifactServer], tmp_path: Path
) -> None:
    src, server = source
    dest = ArtifactStore(tmp_path / "dest")
    names = ["models/hex8_2p/v0001.json", "games/hex8_2p/big.jsonl.gz"]
    report = sync_artifacts(dest, server.url, names, token=TOKEN)
    assert [a["name"] for a in report.fetched] == names and report.skipped == []
    for n in names:
        assert dest.path(n).read_bytes() == src.path(n).read_bytes()
        assert dest.entry(n)["sha256"] == src.entry(n)["sha256"]  # type: ignore[index]
    again = sync_artifacts(dest, server.url, names, token=TOKEN)
    assert again.fetched == [] and again.skipped == names
    assert not list(dest.partial_dir.iterdir())


def test_sync_by_prefix_fetches_every_games_file_the_source_holds_there(
    source: tuple[ArtifactStore, ArtifactServer], tmp_path: Path
) -> None:
    src, server = source
    src.put_bytes("games/hex8_2p/small.jsonl.gz", b"one game")
    src.put_bytes("games/hex8_2pX/other.jsonl.gz", b"another config")
    dest = ArtifactStore(tmp_path / "dest")
    dest.put_bytes("games/hex8_2p/small.jsonl.gz", b"one game")  # made here already
    report = sync_artifacts(dest, server.url, None, prefix="games/hex8_2p/", token=TOKEN)
    assert [a["name"] for a in report.fetched] == ["games/hex8_2p/big.jsonl.gz"]
    assert report.skipped == ["games/hex8_2p/small.jsonl.gz"]
    assert dest.names("games/") == ["games/hex8_2p/big.jsonl.gz", "games/hex8_2p/small.jsonl.gz"]


def test_sync_by_prefix_from_several_sources_takes_each_ones_files_and_survives_a_dead_one(
    source: tuple[ArtifactStore, ArtifactServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ringrift_fleet.config import reload_p2p_config
    from ringrift_fleet.execution.jobs import validate_job
    from ringrift_fleet.execution.tasks import run_sync
    from ringrift_fleet.execution.workloads import JobContext

    _, first = source
    other = ArtifactStore(tmp_path / "other")
    other.put_bytes("games/hex8_2p/from-other.jsonl.gz", b"games made on the other host")
    dest = ArtifactStore(tmp_path / "dest")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("RINGRIFT_CLUSTER_KEY", TOKEN)
    reload_p2p_config()
    try:
        with ArtifactServer(other.root, TOKEN) as second:
            kwargs = {"prefix": "games/hex8_2p/", "source": [first.url, dead, second.url]}
            result = run_sync(validate_job("sync", {**kwargs, "job_id": "s1"}), JobContext(dest))
    finally:
        monkeypatch.delenv("RINGRIFT_CLUSTER_KEY")
        reload_p2p_config()
    assert sorted(result["fetched"]) == [
        "games/hex8_2p/big.jsonl.gz",
        "games/hex8_2p/from-other.jsonl.gz",
    ]
    assert list(result["failed_sources"]) == [dead]
    assert dest.names("games/") == sorted(result["fetched"])


def test_a_sync_from_several_sources_stops_at_its_budget_when_one_never_answers(
    source: tuple[ArtifactStore, ArtifactServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source that takes the connection and never answers (a stalled host) used to
    hold a games sync for its whole request timeout, source after source; now the
    sources share a budget and those not reached are deferred, not failed."""
    import socket
    import time

    from ringrift_fleet.config import reload_p2p_config
    from ringrift_fleet.execution.jobs import validate_job
    from ringrift_fleet.execution.tasks import run_sync
    from ringrift_fleet.execution.workloads import JobContext

    _, first = source
    other = ArtifactStore(tmp_path / "other")
    other.put_bytes("games/hex8_2p/from-other.jsonl.gz", b"games made on the other host")
    dest = ArtifactStore(tmp_path / "dest")
    stalled = socket.socket()
    stalled.bind(("127.0.0.1", 0))
    stalled.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
    silent = f"http://127.0.0.1:{stalled.getsockname()[1]}"
    monkeypatch.setenv("RINGRIFT_CLUSTER_KEY", TOKEN)
    monkeypatch.setenv("RINGRIFT_P2P_SYNC_SOURCES_BUDGET", "2")
    reload_p2p_config()
    try:
        with ArtifactServer(other.root, TOKEN) as second:
            sources = [first.url, silent, second.url]
            kwargs = {"prefix": "games/hex8_2p/", "source": sources}
            began = time.monotonic()
            result = run_sync(validate_job("sync", {**kwargs, "job_id": "s1"}), JobContext(dest))
            took = time.monotonic() - began
    finally:
        stalled.close()
        monkeypatch.delenv("RINGRIFT_CLUSTER_KEY")
        monkeypatch.delenv("RINGRIFT_P2P_SYNC_SOURCES_BUDGET")
        reload_p2p_config()
    assert took < 15.0, f"held {took:.1f} s by a silent source (request timeout 30 s)"
    assert result["status"] == "completed"
    assert silent in result["deferred_sources"] or silent in result["failed_sources"]
    reached = set(sources) - set(result["deferred_sources"]) - set(result["failed_sources"])
    assert silent not in reached
    # what it fetched is installed; what it deferred is named, nothing half-done
    assert dest.names("games/") == sorted(result["fetched"])
    assert set(result["deferred_sources"]) | set(result["failed_sources"]) | reached == set(sources)


def _listing(url: str) -> list[dict[str, Any]]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return list(json.load(resp)["artifacts"])


def test_a_games_sync_fetches_only_what_retention_keeps_and_never_again(
    source: tuple[ArtifactStore, ArtifactServer], tmp_path: Path
) -> None:
    src, server = source
    for i in range(6):
        name = f"games/hex8_3p/job-{i}.jsonl.gz"
        src.put_bytes(name, f"games of job {i}".encode())
        src.register(name, created=1_000.0 + i)
    # The source filters its manifest: only that folder travels, with creation times.
    listed = _listing(f"{server.url}/artifacts?prefix=games/hex8_3p/")
    assert [a["name"] for a in listed] == [f"games/hex8_3p/job-{i}.jsonl.gz" for i in range(6)]
    assert [a["created"] for a in listed] == [1_000.0 + i for i in range(6)]

    dest = ArtifactStore(tmp_path / "dest", games_keep=2)
    dest.put_bytes("games/hex8_3p/made-here.jsonl.gz", b"local")
    dest.register("games/hex8_3p/made-here.jsonl.gz", created=1_003.5)
    report = sync_artifacts(dest, server.url, None, prefix="games/hex8_3p/", token=TOKEN)
    assert [a["name"] for a in report.fetched] == [
        "games/hex8_3p/job-5.jsonl.gz",
        "games/hex8_3p/job-4.jsonl.gz",
    ], "newest first, and nothing older than what this host keeps"
    assert dest.newest("games/hex8_3p/") == [a["name"] for a in report.fetched]
    assert dest.entry("games/hex8_3p/job-5.jsonl.gz")["created"] == 1_005.0  # type: ignore[index]
    downloads = len(server.ranges)
    again = sync_artifacts(dest, server.url, None, prefix="games/hex8_3p/", token=TOKEN)
    assert again.fetched == [] and len(server.ranges) == downloads, "no churn on the next sync"


def test_sync_resumes_a_partial_download_with_range(
    source: tuple[ArtifactStore, ArtifactServer], tmp_path: Path
) -> None:
    src, server = source
    name = "games/hex8_2p/big.jsonl.gz"
    data = src.path(name).read_bytes()
    dest = ArtifactStore(tmp_path / "dest")
    dest.partial_dir.mkdir(parents=True)
    sha = hashlib.sha256(data).hexdigest()
    (dest.partial_dir / sha).write_bytes(data[: len(data) // 3])  # an interrupted earlier try
    report = sync_artifacts(dest, server.url, [name], token=TOKEN)
    assert report.fetched[0]["sha256"] == sha
    assert server.ranges == [f"bytes={len(data) // 3}-"]
    assert dest.path(name).read_bytes() == data


def test_sync_rejects_corrupt_data_and_bad_tokens(
    source: tuple[ArtifactStore, ArtifactServer], tmp_path: Path
) -> None:
    src, server = source
    name = "models/hex8_2p/v0001.json"
    dest = ArtifactStore(tmp_path / "dest")
    with pytest.raises(SyncError, match="401"):
        sync_artifacts(dest, server.url, [name], token="wrong")
    src.path(name).write_bytes(b'{"weights": [6, 6, 6]}')  # changed behind the manifest's back
    with pytest.raises(SyncError, match="sha256 mismatch"):
        sync_artifacts(dest, server.url, [name], token=TOKEN)
    assert not dest.path(name).exists() and dest.entry(name) is None


def test_artifact_routes_need_the_token(source: tuple[ArtifactStore, ArtifactServer]) -> None:
    _, server = source
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{server.url}/artifacts", timeout=5)
    assert err.value.code == 401
    for bad in ("/artifacts/../manifest.json", "/artifacts/manifest.db", "/artifacts/nope"):
        req = urllib.request.Request(server.url + bad, headers={"Authorization": f"Bearer {TOKEN}"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code in (403, 404)


# --- Flower ---------------------------------------------------------------------------------


def _flower_env(redis_url: str, auth: str) -> dict[str, str]:
    return {"RINGRIFT_BROKER_URL": redis_url, "RINGRIFT_P2P_FLOWER_BASIC_AUTH": auth}


def _get(url: str, auth: str | None) -> int:
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_flower_answers_its_api_with_auth_and_refuses_without(
    redis_server: Any, tmp_path: Path
) -> None:
    port = free_port()
    argv = [PYTHON, "-m", "ringrift_fleet", "flower", "--address", "127.0.0.1", "--port", str(port)]
    env = _flower_env(redis_server.url, "ops:hunter2")
    with running(argv, env=env, log=tmp_path / "flower.log") as proc:
        assert wait_for(lambda: port_open(port), 60, 0.2), (tmp_path / "flower.log").read_text()
        url = f"http://127.0.0.1:{port}/api/workers?refresh=false"
        assert _get(url, "ops:hunter2") == 200
        assert _get(url, None) == 401
        assert _get(url, "ops:wrong") == 401
        # The password reached Flower through its environment, not its command line.
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert b"flower" in cmdline and b"hunter2" not in cmdline


def test_flower_without_credentials_binds_loopback_only(redis_server: Any) -> None:
    env = {**os.environ, **_flower_env(redis_server.url, ""), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [PYTHON, "-m", "ringrift_fleet", "flower", "--address", "0.0.0.0", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert "loopback only" in out.stderr and "RINGRIFT_P2P_FLOWER_BASIC_AUTH" in out.stderr
    assert "Traceback" not in out.stderr
    ok = subprocess.run(
        [PYTHON, "-m", "ringrift_fleet", "flower", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0 and "--address=127.0.0.1" in ok.stdout


def test_without_a_cluster_key_only_loopback_is_served(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "open")
    store.put_bytes("models/sq/v0001.json", b"{}")
    with ArtifactServer(store.root, "") as server:
        dest = ArtifactStore(tmp_path / "dest")
        report = sync_artifacts(dest, server.url, ["models/sq/v0001.json"], token="")
        assert [a["name"] for a in report.fetched] == ["models/sq/v0001.json"]
