"""Raft among real coordinator processes on 127.0.0.1: leaders, failover, claims, restarts."""

from __future__ import annotations

import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.coordinators import LocalFleet, make_op
from tests.support.procs import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def fleet3(tmp_path: Path) -> Iterator[LocalFleet]:
    fleet = LocalFleet(tmp_path / "fleet", voters=3)
    try:
        fleet.start_all()
        yield fleet
    finally:
        fleet.stop_all()


class LeaderWatch:
    """Polls every node's /status in the background and records (term, leader) claims."""

    def __init__(self, fleet: LocalFleet) -> None:
        self.fleet = fleet
        self.claims: dict[int, set[str]] = defaultdict(set)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < deadline:
            for name, term in self.fleet.leaders().items():
                self.claims[int(term)].add(name)
            time.sleep(0.02)

    def __enter__(self) -> LeaderWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def kill_leader_and_time(fleet: LocalFleet, leader: str) -> tuple[str | None, float]:
    t0 = time.monotonic()
    fleet.kill(leader, signal.SIGKILL)
    new = fleet.wait_leader(10, exclude=leader)
    return new, time.monotonic() - t0


@pytest.mark.timeout(90)
def test_sigkilled_leader_is_replaced_quickly_with_one_leader_per_term(fleet3: LocalFleet) -> None:
    leader = fleet3.wait_leader(10)
    assert leader, "no leader elected"
    # membership (HTTP heartbeats through each /heartbeat route) sees the other two
    for name in fleet3.nodes:
        others = sorted(n for n in fleet3.nodes if n != name)
        assert wait_for(lambda n=name, o=others: fleet3.status(n)["peers"] == o, 10), name
        assert fleet3.status(name)["alive_peers"] == 2
    follower = next(n for n in fleet3.nodes if n != leader)
    assert fleet3.op(follower, make_op("add_work.v1", work_id="before", payload={}))["ok"]
    with LeaderWatch(fleet3) as watch:
        killed_at = time.time()
        new, took = kill_leader_and_time(fleet3, leader)
        seen_at = time.time()
        time.sleep(0.5)
    assert new is not None and new != leader, fleet3.log(follower)
    # /status says since when the new leader leads: after the kill, before we saw it
    since = fleet3.status(new)["leader_since"]
    assert isinstance(since, float) and killed_at < since <= seen_at, (killed_at, since, seen_at)
    assert all(fleet3.status(n)["leader_since"] is None for n in fleet3.running() if n != new), (
        "a follower says it leads"
    )
    # The target (p50 <= 1 s, max <= 2 s) is met in benchmarks/consensus.py over
    # many kills.  Here: a new leader well inside one Bully lease (30 s), with
    # slack for status polling on a loaded 2-core CI box.
    assert took < 5.0, f"failover took {took:.2f}s"
    for term, names in watch.claims.items():
        assert len(names) == 1, f"two leaders in term {term}: {names}"
    status = fleet3.status(new)
    assert status is not None and status["term"] > 0
    assert status["work_queue"]["pending"] == 1
    # the survivors keep accepting writes through either of them
    other = next(n for n in fleet3.running() if n != new)
    assert fleet3.op(other, make_op("add_work.v1", work_id="after", payload={}))["ok"]


@pytest.mark.timeout(90)
def test_racing_claims_of_one_work_id_succeed_exactly_once(fleet3: LocalFleet) -> None:
    assert fleet3.wait_leader(10)
    ids = [f"job-{i}" for i in range(15)]
    for work_id in ids:
        assert fleet3.op("n0", make_op("add_work.v1", work_id=work_id, payload={}))["ok"]
    wins: dict[str, list[str]] = defaultdict(list)
    lock = threading.Lock()
    barrier = threading.Barrier(len(fleet3.nodes))

    def claimer(name: str) -> None:
        barrier.wait(10)
        for work_id in ids:
            r = fleet3.op(name, make_op("claim_work.v1", work_id=work_id, node=name))
            if r["ok"]:
                with lock:
                    wins[work_id].append(name)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in fleet3.nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(wins) == sorted(ids)
    assert all(len(w) == 1 for w in wins.values()), dict(wins)
    time.sleep(0.3)  # the last commit reaches every follower
    for name in fleet3.nodes:
        work = fleet3.ledger(name)["work"]
        assert {w: work[w]["claimed_by"] for w in ids} == {w: v[0] for w, v in wins.items()}


@pytest.mark.timeout(120)
def test_killing_every_voter_and_restarting_brings_the_ledger_back_whole(tmp_path: Path) -> None:
    fleet = LocalFleet(tmp_path / "fleet", voters=3)
    try:
        fleet.start_all()
        assert fleet.wait_leader(10)
        for i in range(40):
            body = make_op("add_work.v1", work_id=f"w{i}", payload={"i": i}, priority=i % 3)
            assert fleet.op(f"n{i % 3}", body)["ok"]
        for i in range(0, 40, 4):
            assert fleet.op("n1", make_op("claim_work.v1", work_id=f"w{i}", node="n1"))["ok"]
        assert fleet.op(
            "n2", make_op("put_record.v1", kind="model", key="champion", value={"v": 7})
        )["ok"]
        time.sleep(0.3)  # followers apply the last commit
        before = fleet.ledger("n0")
        assert len(before["work"]) == 40
        assert all(fleet.ledger(n) == before for n in fleet.nodes)
        for name in list(fleet.nodes):
            fleet.kill(name, signal.SIGKILL)
        fleet.start_all()
        leader = fleet.wait_leader(15)
        assert leader

        def kept(state: dict[str, Any]) -> dict[str, Any]:
            """The ledger less what a new election rewrites (its term, the scheduler's
            leader mark): every job, claim and model record must come back as it was."""
            records = {k: v for k, v in state["records"].items() if k != "scheduler.leader"}
            return {**{k: v for k, v in state.items() if k != "term"}, "records": records}

        def restored(name: str) -> bool:
            # whole again, and past the old term (the new leader's first write, which
            # a follower applies a moment after the restored state is there)
            now = fleet.ledger(name)
            return kept(now) == kept(before) and now["term"] > before["term"]

        for name in fleet.nodes:
            assert wait_for(lambda n=name: restored(n), 15), (name, fleet.ledger(name))
        # ... and the restarted fleet keeps working
        assert fleet.op(leader, make_op("claim_work.v1", work_id="w1", node="n0"))["ok"]
        assert not fleet.op(leader, make_op("claim_work.v1", work_id="w0", node="n2"))["ok"]
    finally:
        fleet.stop_all()


@pytest.mark.timeout(120)
def test_five_voters_survive_two_leader_kills(tmp_path: Path) -> None:
    fleet = LocalFleet(tmp_path / "fleet", voters=5)
    try:
        fleet.start_all()
        first = fleet.wait_leader(15)
        assert first
        assert fleet.op(first, make_op("add_work.v1", work_id="x", payload={}))["ok"]
        second, took1 = kill_leader_and_time(fleet, first)
        assert second and took1 < 3.0, (second, took1)
        third, took2 = kill_leader_and_time(fleet, second)
        assert third and took2 < 3.0, (third, took2)
        assert third not in (first, second)
        assert fleet.op(third, make_op("claim_work.v1", work_id="x", node=third))["ok"]
    finally:
        fleet.stop_all()


@pytest.mark.timeout(90)
def test_a_non_voter_follows_the_leader_and_forwards_writes(tmp_path: Path) -> None:
    fleet = LocalFleet(tmp_path / "fleet", voters=3, non_voters=1)
    try:
        fleet.start_all()
        leader = fleet.wait_leader(10)
        assert leader
        assert wait_for(lambda: fleet.status("n3")["leader_id"] == leader, 10)
        s = fleet.status("n3")
        assert s["is_voter"] is False and s["role"] == "follower"
        assert s["swim_raft"]["consensus_backend"] == "remote"
        assert fleet.op("n3", make_op("add_work.v1", work_id="via-n3", payload={}))["ok"]
        assert "via-n3" in fleet.ledger(leader)["work"]
        # n3's own read copy catches up by changes (its first copy was whole)
        assert wait_for(lambda: "via-n3" in fleet.ledger("n3")["work"], 10)
        assert fleet.op(leader, make_op("claim_work.v1", work_id="via-n3", node="n0"))["ok"]
        assert wait_for(lambda: fleet.ledger("n3")["work"]["via-n3"]["status"] == "claimed", 10)
        assert fleet.op(leader, make_op("cancel_work.v1", work_id="via-n3"))["ok"]
        new, _ = kill_leader_and_time(fleet, leader)
        assert new
        assert wait_for(lambda: fleet.status("n3")["leader_id"] == new, 10)
        assert fleet.op("n3", make_op("add_work.v1", work_id="via-n3b", payload={}))["ok"]
        # n3's copy follows the new leader too (a whole copy from it, then changes)
        assert wait_for(lambda: "via-n3b" in fleet.ledger("n3")["work"], 10)
        assert wait_for(
            lambda: fleet.op("n3", make_op("claim_work.v1", work_id="via-n3b", node="n3"))["ok"],
            10,
        )
    finally:
        fleet.stop_all()


@pytest.mark.timeout(30)
def test_a_multi_host_fleet_without_a_cluster_key_refuses_to_start(tmp_path: Path) -> None:
    fleet = LocalFleet(tmp_path / "fleet", voters=3, extra_env={"RINGRIFT_CLUSTER_KEY": ""})
    try:
        proc = fleet.start("n0").proc
        assert proc is not None and proc.wait(20) == 2
        log = fleet.log("n0")
        assert "RINGRIFT_CLUSTER_KEY is empty" in log and "Traceback" not in log
    finally:
        fleet.stop_all()


@pytest.mark.timeout(90)
def test_the_leader_reassigns_the_jobs_of_a_host_membership_declares_dead(tmp_path: Path) -> None:
    fleet = LocalFleet(tmp_path / "fleet", voters=3, non_voters=1)
    try:
        fleet.start_all()
        leader = fleet.wait_leader(10)
        assert leader
        assert fleet.op(leader, make_op("add_work.v1", work_id="g", payload={}))["ok"]
        placed = fleet.op(leader, make_op("assign.v1", job_id="g", node="n3", job_type="selfplay"))
        assert placed["ok"]
        old_fence = placed["assignment"]["fence_token"]
        assert wait_for(lambda: "n3" in fleet.status(leader)["peers"], 10)
        fleet.kill("n3")
        # PEER_TIMEOUT is 2 s in the local fleet; the leader then voids the attempt
        assert wait_for(lambda: fleet.ledger(leader)["work"]["g"]["status"] == "pending", 15)
        assert fleet.ledger(leader)["assign"]["g"]["status"] == "failed"
        # --no-scheduler: the scheduler's policy places no work but owns this decision
        events = lambda: [e["text"] for e in fleet.status(leader)["scheduler"]["events"]]  # noqa: E731
        assert wait_for(lambda: "host n3 dead: 1 job(s) re-enqueued" in events(), 5), events()
        assert fleet.status(leader)["scheduler"]["dead_hosts"] == ["n3"]
        late = make_op("accept_result.v1", job_id="g", fence=old_fence, result={"x": 1})
        assert fleet.op(leader, late)["ok"] is False  # the dead attempt's result is refused
    finally:
        fleet.stop_all()
