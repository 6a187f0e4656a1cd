"""The non-voters' leader poll: a small answer from voters of this release, the
whole /status from a voter of the previous one (a roll in either order)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ringrift_fleet.consensus.backends import RemoteLeadership
from ringrift_fleet.consensus.voters import Voter
from tests.support.coordinators import LocalFleet, get_json
from tests.support.procs import wait_for

pytestmark = pytest.mark.integration


class FakeVoter:
    """A voter's status server that answers fixed bodies and records the paths asked."""

    def __init__(self, bodies: dict[str, object]) -> None:
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.paths.append(self.path)
                body = bodies.get(self.path)
                data = json.dumps(body).encode()
                self.send_response(404 if body is None else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def voters() -> Iterator[tuple[FakeVoter, FakeVoter]]:
    new = FakeVoter({"/consensus/leader": {"leader_id": "v1", "term": 8, "is_leader": True}})
    old = FakeVoter({"/status": {"leader_id": "v2", "term": 9, "role": "leader", "peers": []}})
    try:
        yield new, old
    finally:
        new.close()
        old.close()


def test_the_poll_asks_for_the_small_answer_and_reads_status_only_from_older_voters(
    voters: tuple[FakeVoter, FakeVoter],
) -> None:
    new, old = voters
    remote = RemoteLeadership(
        [Voter("v1", "127.0.0.1", 1, new.port), Voter("v2", "127.0.0.1", 2, old.port)], token=""
    )
    remote.poll_once()
    assert (remote.leader(), remote.term()) == ("v2", 9)  # the newest term wins
    assert new.paths == ["/consensus/leader"]  # never the whole /status
    assert old.paths == ["/consensus/leader", "/status"]  # 404, then the old way


def test_a_voter_naming_no_leader_or_answering_garbage_is_skipped() -> None:
    silent = FakeVoter({"/consensus/leader": {"leader_id": None, "term": 3, "is_leader": False}})
    garbage = FakeVoter({"/consensus/leader": {"leader_id": "x", "term": "7"}})
    try:
        remote = RemoteLeadership(
            [Voter("a", "127.0.0.1", 1, silent.port), Voter("b", "127.0.0.1", 2, garbage.port)],
            token="",
        )
        remote.poll_once()
        assert (remote.leader(), remote.term()) == (None, 0)
    finally:
        silent.close()
        garbage.close()


@pytest.mark.timeout(90)
def test_every_coordinator_answers_who_leads_and_a_non_voter_follows_it(tmp_path: Path) -> None:
    fleet = LocalFleet(tmp_path / "fleet", voters=3, non_voters=1)
    try:
        fleet.start_all()
        leader = fleet.wait_leader(15)
        assert leader
        assert wait_for(lambda: (fleet.status("n3") or {}).get("leader_id") == leader, 10)
        term = (fleet.status(leader) or {})["term"]
        for name in fleet.nodes:
            answer = get_json(fleet.nodes[name].url + "/consensus/leader", timeout=2)
            assert answer == {"leader_id": leader, "term": term, "is_leader": name == leader}
    finally:
        fleet.stop_all()
