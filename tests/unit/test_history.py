"""Forgetting finished jobs must not change what the scheduler decides from them."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ringrift_fleet.models import JobStatus, JobType, WorkItem
from ringrift_fleet.scheduler.beat import LedgerView
from ringrift_fleet.scheduler.history import MAX_MODELS, SUMMARY_KIND, History, fold
from ringrift_fleet.scheduler.settings import SchedulerPolicy, parse_board_configs

POLICY = SchedulerPolicy(configs=parse_board_configs("hex8_2p,square8_2p", ""))
CONFIGS = ("hex8_2p", "square8_2p")
NODES = ("a", "b", "c")
MODELS = ("m1", "m2", "m3")


def _job(
    i: int, kind: str, config: str, node: str, status: str, model: str, games: int
) -> WorkItem:
    result: dict[str, Any] | None = None
    kwargs: dict[str, Any] = {}
    if kind == "selfplay":
        work_id = f"selfplay:{config}:{i}"
        result = {"node": node, "games": games, "games_path": f"games/{config}/{i}.jsonl.gz"}
    elif kind == "training":
        work_id = f"training:{config}:g{i}"
        result = {"node": node, "model": model}
    else:
        work_id = f"distribute:{config}:g{i}:{node}"
        kwargs = {"kind": "model", "model": model}
        result = {"fetched": [model]}
    return WorkItem(
        work_id,
        JobType(kind),
        payload={"config": config, "kwargs": kwargs},
        status=JobStatus(status),
        attempts=1,
        claimed_by=node,
        created_at=float(i),
        updated_at=float(i) + 1,
        result=result if status == "completed" else None,
    )


JOBS = st.lists(
    st.tuples(
        st.sampled_from(["selfplay", "training", "sync"]),
        st.sampled_from(CONFIGS),
        st.sampled_from(NODES),
        st.sampled_from(["completed", "completed", "failed", "cancelled", "running"]),
        st.sampled_from(MODELS),
        st.integers(0, 20),
        st.integers(0, 2),  # which pruning round forgets it (2: never)
    ),
    max_size=30,
)


def _seen(view: LedgerView) -> dict[str, Any]:
    return {
        "games": dict(view.games),
        "sources": {k: view.game_sources(k) for k in CONFIGS},
        "models": {(k, m): view.model_hosts(k, m) for k in CONFIGS for m in MODELS},
        "seq": {k: view.states[k].selfplay_seq for k in CONFIGS},
    }


@settings(max_examples=200, deadline=None)
@given(JOBS)
def test_the_view_is_the_same_after_any_pruning(jobs: list[Any]) -> None:
    items = [_job(i + 1, *j[:6]) for i, j in enumerate(jobs)]
    whole = LedgerView(POLICY)
    whole.refresh(items, {}, 100.0, lambda n: 1.0)

    records: dict[str, Any] = {}
    remaining = list(items)
    for round_ in (0, 1):  # two leaders' prunes in turn, each from the records as written
        gone = [
            w
            for w, j in zip(items, jobs, strict=True)
            if j[6] == round_ and w.status.is_terminal and w in remaining
        ]
        for _kind, key, value in fold(records, gone):
            assert _kind == SUMMARY_KIND
            records[key] = value
        remaining = [w for w in remaining if w not in gone]
    pruned = LedgerView(POLICY)
    pruned.refresh(remaining, {}, 100.0, lambda n: 1.0, records)
    assert _seen(pruned) == _seen(whole) == _expected(items)


def _expected(items: list[WorkItem]) -> dict[str, Any]:
    """What the jobs add up to, counted here without the code under test."""
    done = [w for w in items if w.status is JobStatus.COMPLETED]
    games: dict[str, int] = {}
    sources: dict[str, dict[str, int]] = {k: {} for k in CONFIGS}
    models: dict[tuple[str, str], set[str]] = {(k, m): set() for k in CONFIGS for m in MODELS}
    for w in done:
        key, node, r = w.payload["config"], str(w.claimed_by), w.result or {}
        if w.work_type is JobType.SELFPLAY:
            if r["games"]:
                games[key] = games.get(key, 0) + r["games"]
            sources[key][node] = sources[key].get(node, 0) + 1
        elif w.work_type is JobType.TRAINING:
            models[key, r["model"]].add(node)
        else:
            models[key, w.payload["kwargs"]["model"]].add(node)
    seq = {k: 0 for k in CONFIGS}
    for w in items:
        parts = w.work_id.split(":")
        if parts[0] == "selfplay":
            seq[parts[1]] = max(seq[parts[1]], int(parts[2]))
    return {
        "games": games,
        "sources": sources,
        "models": {k: frozenset(v) for k, v in models.items()},
        "seq": seq,
    }


def test_folding_the_same_jobs_twice_writes_the_same_values() -> None:
    jobs = [_job(1, "selfplay", "hex8_2p", "a", "completed", "m1", 8)]
    first = fold({}, jobs)
    assert first == [
        (
            SUMMARY_KIND,
            "hex8_2p",
            {
                "games": 8,
                "game_nodes": {"a": 1},
                "models": {},
                "selfplay_seq": 1,
                "jobs": 1,
            },
        )
    ]
    assert fold({}, jobs) == first  # a retried prune of the same view


def test_a_record_remembers_hosts_of_recent_models_only() -> None:
    h = History()
    for i in range(MAX_MODELS + 5):
        h.add(_job(i, "training", "hex8_2p", "t", "completed", f"m{i}", 0))
    h.trimmed()
    assert len(h.models) == MAX_MODELS
    assert "m0" not in h.models and h.models[f"m{MAX_MODELS + 4}"] == ["t"]


def test_the_champion_keeps_its_hosts_after_many_rejected_candidates() -> None:
    """m0 was promoted and given to hosts a and b; then more candidates than the
    record keeps were trained and rejected.  A new host still needs m0, from a or b:
    neither the pruned record nor the scheduler's view may forget where it is."""
    champion = [
        _job(0, "training", "hex8_2p", "a", "completed", "m0", 0),
        _job(1, "sync", "hex8_2p", "b", "completed", "m0", 0),
    ]
    rejected = [
        _job(i, "training", "hex8_2p", "t", "completed", f"m{i}", 0)
        for i in range(2, MAX_MODELS + 6)
    ]
    ((_kind, key, record),) = fold({}, champion + rejected, {"hex8_2p": "m0"})
    assert key == "hex8_2p"
    kept = History.from_dict(record)
    assert kept.models["m0"] == ["a", "b"] and len(kept.models) == MAX_MODELS
    # without the champion named, the oldest model goes first, as before
    ((_k, _key, plain),) = fold({}, champion + rejected)
    assert "m0" not in History.from_dict(plain).models

    view = LedgerView(POLICY)
    records = {"hex8_2p": {"champion": "m0", "generation": 1}}
    view.refresh(rejected, records, 0.0, lambda n: 1.0, {"hex8_2p": record})
    assert view.model_hosts("hex8_2p", "m0") == frozenset({"a", "b"})
    # the view over the live jobs alone (nothing pruned yet) keeps it too
    view = LedgerView(POLICY)
    view.refresh(champion + rejected, records, 0.0, lambda n: 1.0, {})
    assert view.model_hosts("hex8_2p", "m0") == frozenset({"a", "b"})


def test_a_malformed_record_reads_as_empty_not_as_an_error() -> None:
    for raw in (None, [], {"games": "many", "game_nodes": [1], "models": {"m": "a"}}):
        assert History.from_dict(raw) == History()
    view = LedgerView(POLICY)
    view.refresh([], {}, 0.0, lambda n: 1.0, {"hex8_2p": {"games": -3}})
    assert dict(view.games) == {}
