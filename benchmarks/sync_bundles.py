"""A games sync of many small files: one request per file (what a source of an older
release still gets) against bundles, side by side on loopback.

The source is the real artifact routes served by aiohttp in a thread; the older
release is the same routes without ``POST /artifacts/bundle``.  Each round syncs
``--files`` games files of ``--size`` bytes into an empty store, once each way,
alternating which goes first.  Prints one JSON line: median, min and max seconds
of each mode, and the requests each made.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aiohttp import web  # noqa: E402

from ringrift_fleet.execution.artifacts import (  # noqa: E402
    BUNDLE_PATH,
    ArtifactStore,
    artifact_routes,
)
from ringrift_fleet.execution.sync import sync_artifacts  # noqa: E402
from tests.support.route_server import RouteServer  # noqa: E402

FOLDER = "games/square8_2p/"


def serve(root: Path, bundles: bool, counts: dict[str, int]) -> RouteServer:
    routes = [
        r
        for r in artifact_routes(root, "")
        if bundles or not (isinstance(r, web.RouteDef) and r.path == BUNDLE_PATH)
    ]

    @web.middleware
    async def count(request: web.Request, handler: object) -> web.StreamResponse:
        counts[request.method] = counts.get(request.method, 0) + 1
        return await handler(request)  # type: ignore[operator, no-any-return]

    return RouteServer(routes, [count])


def one_sync(src: Path, bundles: bool, work: Path) -> tuple[float, dict[str, int]]:
    counts: dict[str, int] = {}
    dest = ArtifactStore(Path(tempfile.mkdtemp(dir=work)))
    with serve(src, bundles, counts) as server:
        t = time.perf_counter()
        report = sync_artifacts(dest, server.url, None, prefix=FOLDER, token="")
        took = time.perf_counter() - t
    if len(report.fetched) != len(ArtifactStore(src).names(FOLDER)):
        raise SystemExit(f"sync fetched {len(report.fetched)} files: expected every one")
    return took, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--size", type=int, default=8000, help="bytes per games file")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = ArtifactStore(work / "src")
        for i in range(args.files):
            src.put_bytes(f"{FOLDER}job-{i:06d}.jsonl.gz", os.urandom(args.size))
        times: dict[str, list[float]] = {"one_by_one": [], "bundles": []}
        requests: dict[str, dict[str, int]] = {}
        for r in range(args.rounds):
            order = [False, True] if r % 2 == 0 else [True, False]
            for bundles in order:
                mode = "bundles" if bundles else "one_by_one"
                took, counts = one_sync(src.root, bundles, work)
                times[mode].append(took)
                requests[mode] = counts
    out: dict[str, object] = {"files": args.files, "size": args.size, "rounds": args.rounds}
    for mode, xs in times.items():
        out[f"{mode}_s_median"] = round(statistics.median(xs), 3)
        out[f"{mode}_s_min"] = round(min(xs), 3)
        out[f"{mode}_s_max"] = round(max(xs), 3)
        out[f"{mode}_requests"] = requests[mode]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
