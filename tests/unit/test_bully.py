"""Bully's pure parts: who ranks first, and the lease rule that keeps leaders unique."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ringrift_fleet.consensus.bully import LeaseBook, rank
from ringrift_fleet.consensus.voters import Voter
from ringrift_fleet.hybrid_coordinator import BULLY, RAFT, REMOTE, RaftUnavailable, choose_consensus


def v(name: str, priority: int = 0) -> Voter:
    return Voter(name, "127.0.0.1", 1, 2, priority)


def test_rank_prefers_priority_then_name() -> None:
    order = rank([v("c"), v("a"), v("b", priority=5), v("d", priority=5)])
    assert [x.name for x in order] == ["b", "d", "a", "c"]


def test_a_voter_grants_one_holder_until_the_grant_expires() -> None:
    book = LeaseBook()
    assert book.request("a", 1, 1.0, now=10.0)["granted"]
    refused = book.request("b", 2, 1.0, now=10.5)
    assert refused == {"granted": False, "holder": "a", "epoch": 1, "max_epoch": 1}
    assert book.request("a", 1, 1.0, now=10.9)["granted"]  # renewal by the holder
    assert not book.request("b", 2, 1.0, now=11.8)["granted"]  # renewed until 11.9
    assert book.request("b", 2, 1.0, now=12.0)["granted"]


def test_stale_epochs_and_nonsense_are_refused() -> None:
    book = LeaseBook()
    assert book.request("a", 5, 1.0, now=0.0)["granted"]
    assert not book.request("b", 4, 1.0, now=2.0)["granted"]  # expired, but an older epoch
    assert not book.request("", 9, 1.0, now=2.0)["granted"]
    assert not book.request("b", 9, -1.0, now=2.0)["granted"]
    assert book.request("b", 6, 1.0, now=2.0)["granted"]


def test_choose_consensus_never_falls_back_for_lack_of_quorum() -> None:
    assert choose_consensus("raft", True, None) == RAFT
    assert choose_consensus("hybrid", True, None) == RAFT  # no quorum is not "unavailable"
    assert choose_consensus("hybrid", True, "port in use") == BULLY
    assert choose_consensus("bully", True, None) == BULLY
    assert choose_consensus("raft", False, None) == REMOTE
    try:
        choose_consensus("raft", True, "pysyncobj missing")
    except RaftUnavailable as exc:
        assert "pysyncobj missing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("raft mode must refuse to fall back")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from("abc"),
            st.integers(0, 5),
            st.floats(0.0, 0.5),
            st.sets(st.integers(0, 2)),  # which voters the request reaches (lossy network)
        ),
        max_size=60,
    )
)
def test_a_majority_never_backs_two_holders_at_once(
    requests: list[tuple[str, int, float, set[int]]],
) -> None:
    """Requests reach arbitrary subsets of three voters; no instant has two majority holders."""
    books = [LeaseBook() for _ in range(3)]
    now = 0.0
    for candidate, epoch, dt, reached in requests:
        now += dt
        for i in reached:
            books[i].request(candidate, epoch, 1.0, now)
        holders = [b.holder(now) for b in books]
        backed = {h.holder for h in holders if h is not None}
        majority = [
            name for name in backed if sum(1 for h in holders if h and h.holder == name) >= 2
        ]
        assert len(majority) <= 1
