"""What a Raft voter holds per job beside its replica: the Bully mirror, now and before.

Prints ONE JSON line.  Each mode runs in a fresh process (so one mode's heap
does not hide in another's RSS) and applies ``--jobs`` self-play jobs (added,
assigned, started, result accepted: the ops a real leader commits, each
pickled and unpickled as pysyncobj hands it to the state machine) to a
ledger state, then reports the process's RSS growth per job:

* ``replica``: the Raft replica alone;
* ``mirror``: plus what ``HandoverRaft._mirror`` does now every 5 s on every
  voter: the replica encoded once as JSON and written into the Bully
  ``SqliteStore``'s snapshot, kept there undecoded until a rollback reads it
  (``SqliteStore.install_encoded``); one round every ``--mirror-every`` jobs
  (50: ~5 s at 10 jobs/s);
* ``decoded_mirror``: what it did before: ``sm_copy`` of the replica installed
  decoded (``SqliteStore.install``), a second copy of the ledger held in memory.

Usage: python benchmarks/ledger_holders.py [--jobs N] [--mirror-every K]
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import pickle
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ringrift_fleet.consensus import ledger as sm  # noqa: E402
from ringrift_fleet.consensus.handover import sm_copy  # noqa: E402
from ringrift_fleet.consensus.sqlite_ledger import SqliteStore  # noqa: E402

CONFIGS = [f"{b}_{p}p" for b in ("square8", "square19", "hex8", "hexagonal") for p in (2, 3, 4)]


def job_ops(seq: int, term: int = 1) -> list[dict[str, object]]:
    """One self-play job's ledger ops, its result shaped as in ledger_growth.py."""
    config = CONFIGS[seq % len(CONFIGS)]
    job_id, node = f"selfplay:{config}:{seq}", f"gpu-{seq % 30:02d}"
    name = f"games/{config}/{job_id.replace(':', '_')}.jsonl.gz"
    fence = sm.fence_for(term, job_id, 1)
    payload = {
        "config": config,
        "kwargs": {"board_type": config.rsplit("_", 1)[0], "num_games": 16},
        "hard_limit_s": 7200.0,
    }
    result = {
        "job_id": job_id,
        "job_type": "selfplay",
        "attempt": 1,
        "fence": fence,
        "node": node,
        "worker": f"{node}@gpu0",
        "status": "completed",
        "artifacts": [{"name": name, "size": 52311, "sha256": "ab" * 32}],
        "games": 16,
        "games_path": name,
        "config": config,
    }
    now = 1_800_000_000.0 + seq
    return [
        sm.make_op(
            "add_work.v1", now=now, term=term, work_id=job_id, payload=payload, work_type="selfplay"
        ),
        sm.make_op("assign.v1", now=now, term=term, job_id=job_id, node=node, job_type="selfplay"),
        sm.make_op("start_work.v1", now=now, term=term, work_id=job_id, node=node),
        sm.make_op(
            "accept_result.v1", now=now, term=term, job_id=job_id, fence=fence, result=result
        ),
    ]


def run(mode: str, jobs: int, every: int) -> float:
    rss = psutil.Process().memory_info
    state = sm.new_state()
    store = SqliteStore(Path(tempfile.mkdtemp()) / "bully.sqlite")
    gc.collect()
    start = rss().rss
    for seq in range(1, jobs + 1):
        for op in job_ops(seq):
            assert sm.apply(state, pickle.loads(pickle.dumps(op)))["ok"]
        if seq % every:
            continue
        if mode == "mirror":
            store.install_encoded(json.dumps(state, default=str), 1, seq)
        elif mode == "decoded_mirror":
            store.install(sm_copy(state), seq)
    gc.collect()
    store.close()
    return round((rss().rss - start) / jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--mirror-every", type=int, default=50)
    args = parser.parse_args()
    if not (1 <= args.jobs <= 50_000 and 1 <= args.mirror_every <= args.jobs):
        parser.error("--jobs 1..50000, --mirror-every 1..jobs")
    out: dict[str, object] = {"jobs": args.jobs, "mirror_every": args.mirror_every}
    fork = multiprocessing.get_context("fork")
    for mode in ("replica", "mirror", "decoded_mirror"):
        with ProcessPoolExecutor(max_workers=1, mp_context=fork) as pool:
            out[f"{mode}_rss_b_per_job"] = pool.submit(
                run, mode, args.jobs, args.mirror_every
            ).result()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
