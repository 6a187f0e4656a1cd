"""What keeping a host's artifact manifest costs as the number of artifacts grows.

For N artifacts spread over the 12 board configs: the time to register one
more (what every self-play job and every synced file pays), to look one up
(every sync checks each file it is offered), and to list one config's folder
(what ``GET /artifacts?prefix=`` and training read).  Each is set against the
single-JSON-file manifest of the previous release, reconstructed here as it
worked: read and parse the whole file, change one entry, write it all back
and rename it over the old one.  Then the effect of games retention: the size
of a folder's listing after 10,000 self-play jobs with and without it.
Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ringrift_fleet.execution.artifacts import ArtifactStore  # noqa: E402

CONFIGS = [f"{b}_{n}p" for b in ("square8", "square19", "hex8", "hexagonal") for n in (2, 3, 4)]
SIZES = (1_000, 10_000, 50_000)
SAMPLES = 50
SHA = "0" * 64


def _name(i: int) -> str:
    return f"games/{CONFIGS[i % len(CONFIGS)]}/job-{i:07d}.jsonl.gz"


def _fill(store: ArtifactStore, n: int) -> None:
    """N rows at once (the benchmark's set-up, not what it measures)."""
    with store._db(write=True) as con:
        con.executemany(
            "INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?)",
            [(_name(i), 1000, SHA, float(i)) for i in range(n)],
        )


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def _sqlite(root: Path, n: int) -> dict[str, float]:
    store = ArtifactStore(root)
    _fill(store, n)
    reg, look, folder = [], [], []
    for k in range(SAMPLES):
        name = _name(n + k)
        store.path(name).parent.mkdir(parents=True, exist_ok=True)
        store.path(name).write_bytes(b"g")
        t = time.perf_counter()
        store.register(name, sha256=SHA)
        reg.append(time.perf_counter() - t)
        t = time.perf_counter()
        store.entry(_name(k * 7 % n))
        look.append(time.perf_counter() - t)
        t = time.perf_counter()
        store.listing(f"games/{CONFIGS[k % len(CONFIGS)]}/")
        folder.append(time.perf_counter() - t)
    return {
        "register_ms": _median_ms(reg),
        "lookup_ms": _median_ms(look),
        "list_folder_ms": _median_ms(folder),
        "disk_mb": round(sum(p.stat().st_size for p in root.glob("manifest.db*")) / 1e6, 2),
    }


def _json(root: Path, n: int) -> dict[str, float]:
    """The previous release's manifest: one JSON file, rewritten whole per register."""
    path = root / "manifest.json"
    arts = {_name(i): {"size": 1000, "sha256": SHA, "created": float(i)} for i in range(n)}
    path.write_text(json.dumps({"artifacts": arts}, indent=1))
    reg, look = [], []
    for k in range(min(SAMPLES, 10)):
        t = time.perf_counter()
        data = json.loads(path.read_text())["artifacts"]
        data[_name(n + k)] = {"size": 1000, "sha256": SHA, "created": time.time()}
        tmp = root / "manifest.tmp"
        with open(tmp, "wb") as f:
            f.write(json.dumps({"artifacts": dict(sorted(data.items()))}, indent=1).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        reg.append(time.perf_counter() - t)
        t = time.perf_counter()
        json.loads(path.read_text())["artifacts"].get(_name(k))
        look.append(time.perf_counter() - t)
    return {
        "register_ms": _median_ms(reg),
        "lookup_ms": _median_ms(look),
        "disk_mb": round(path.stat().st_size / 1e6, 2),
    }


def _retention(root: Path, keep: int, jobs: int) -> int:
    """Rows left in one config's folder after ``jobs`` self-play files there."""
    store = ArtifactStore(root, games_keep=keep)
    folder = root / "games" / CONFIGS[0]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(jobs):
        name = f"games/{CONFIGS[0]}/job-{i:07d}.jsonl.gz"
        (root / name).write_bytes(b"g")
        store.register(name, sha256=SHA, created=float(i))
    return len(store.names(f"games/{CONFIGS[0]}/"))


def main() -> None:
    out: dict[str, object] = {"benchmark": "artifact_manifest", "samples": SAMPLES}
    for n in SIZES:
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            out[f"n{n}"] = {"sqlite": _sqlite(Path(a), n), "json": _json(Path(b), n)}
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        out["retention_10000_jobs"] = {
            "kept_with_2000": _retention(Path(a), 2000, 10_000),
            "kept_without": _retention(Path(b), 0, 10_000),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
