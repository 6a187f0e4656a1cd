"""The beat's pure parts: reading the ledger into a snapshot, and task arguments."""

from __future__ import annotations

from ringrift_fleet.models import JobStatus, JobType, WorkItem
from ringrift_fleet.scheduler.actions import Enqueue
from ringrift_fleet.scheduler.beat import RECORD_KIND, LedgerView, task_kwargs
from ringrift_fleet.scheduler.settings import SchedulerPolicy, parse_board_configs
from ringrift_fleet.scheduler.snapshot import ConfigState, Stage

POLICY = SchedulerPolicy(configs=parse_board_configs("hex8_2p,square8_2p", ""))


def item(work_id: str, status: JobStatus, node: str = "a", **result: object) -> WorkItem:
    key = work_id.split(":")[1]
    kind = JobType(work_id.split(":")[0])
    return WorkItem(
        work_id,
        kind,
        payload={"config": key, "kwargs": {"board_type": "hex8", "num_players": 2}},
        status=status,
        attempts=1,
        claimed_by=node,
        created_at=100.0,
        updated_at=160.0,
        result={"node": node, **result} if result else None,
    )


def test_the_view_counts_games_once_and_never_reuses_an_id() -> None:
    view = LedgerView(POLICY)
    items = [
        item("selfplay:hex8_2p:1", JobStatus.COMPLETED, games=8, games_path="g/1.jsonl.gz"),
        item("selfplay:hex8_2p:7", JobStatus.RUNNING),
        item("selfplay:square8_2p:2", JobStatus.COMPLETED, node="b", games=16, games_path="g/2"),
    ]
    records = {"hex8_2p": ConfigState(selfplay_seq=3).to_dict()}
    for _ in range(3):  # every tick re-reads the ledger: counts must not grow
        view.refresh(items, records, 200.0, lambda n: 1.0)
    assert dict(view.games) == {"hex8_2p": 8, "square8_2p": 16}
    assert view.states["hex8_2p"].selfplay_seq == 7  # the ledger holds id 7
    assert view.states["square8_2p"].selfplay_seq == 2
    live = view.live_jobs()
    assert [(j.job_id, j.status, j.started_at) for j in live] == [
        ("selfplay:hex8_2p:7", JobStatus.RUNNING, 160.0)
    ]
    assert view.usage.totals(200.0)["hex8_2p"] > 0


def test_a_malformed_record_is_ignored_not_fatal() -> None:
    view = LedgerView(POLICY)
    view.refresh([], {"hex8_2p": {"stage": "flying"}}, 0.0, lambda n: 1.0)
    assert view.states["hex8_2p"] == ConfigState()
    assert RECORD_KIND == "scheduler.config"


def test_stage_outcomes_come_from_terminal_items() -> None:
    view = LedgerView(POLICY)
    st = ConfigState(stage=Stage.TRAINING, generation=2, target_node="a")
    done = item("training:hex8_2p:g2", JobStatus.COMPLETED, model="m.npz")
    view.refresh([done], {"hex8_2p": st.to_dict()}, 0.0, lambda n: 1.0)
    out = view.outcomes()
    assert out["training:hex8_2p:g2"].ok and out["training:hex8_2p:g2"].result["model"] == "m.npz"


def test_games_sync_pulls_from_the_host_with_most_games_elsewhere() -> None:
    from ringrift_fleet.execution.jobs import validate_job

    view = LedgerView(POLICY)
    items = [
        item("selfplay:hex8_2p:1", JobStatus.COMPLETED, node="a", games=1, games_path="g/1"),
        item("selfplay:hex8_2p:2", JobStatus.COMPLETED, node="b", games=1, games_path="g/2"),
        item("selfplay:hex8_2p:3", JobStatus.COMPLETED, node="b", games=1, games_path="g/3"),
        item("selfplay:hex8_2p:4", JobStatus.COMPLETED, node="t", games=1, games_path="g/4"),
    ]
    view.refresh(items, {}, 0.0, lambda n: 1.0)
    sync = Enqueue(
        "sync:hex8_2p:g1",
        JobType.SYNC,
        "hex8_2p",
        "t",
        "node.t",
        {"board_type": "hex8", "num_players": 2, "kind": "games", "target": "t"},
    )
    urls = {"a": "http://10.0.0.1:8770", "b": "http://10.0.0.2:8770"}
    built = task_kwargs(sync, view, urls.get)
    # every host with games but the target, the one that made most first
    assert built == {
        "prefix": "games/hex8_2p/",
        "source": ["http://10.0.0.2:8770", "http://10.0.0.1:8770"],
    }
    validate_job("sync", {**built, "job_id": "s"})
    # every game already on the training host: nothing to send
    only_local = LedgerView(POLICY)
    only_local.refresh(items[3:], {}, 0.0, lambda n: 1.0)
    assert task_kwargs(sync, only_local, urls.get) is None


def test_task_arguments_match_the_execution_schema() -> None:
    from ringrift_fleet.execution.jobs import validate_job

    view = LedgerView(POLICY)
    base = {"board_type": "hex8", "num_players": 2}
    cases = [
        (JobType.SELFPLAY, {**base, "num_games": 8}),
        (JobType.TRAINING, {**base, "generation": 3, "base_model": None, "games_up_to": 50}),
        (JobType.EVALUATION, {**base, "candidate": "m3", "champion": None, "games": 10}),
    ]
    for kind, kwargs in cases:
        a = Enqueue("x:hex8_2p:1", kind, "hex8_2p", "a", "node.a", kwargs)
        built = task_kwargs(a, view, lambda n: None)
        assert built is not None
        validate_job(kind.value, {**built, "job_id": "x"})  # raises on a field it rejects
    ev = task_kwargs(
        Enqueue("e", JobType.EVALUATION, "hex8_2p", "a", "node.a", cases[2][1]),
        view,
        lambda n: None,
    )
    assert ev is not None and ev["champion"] == "random"


def test_the_champion_is_known_where_it_was_trained_or_synced() -> None:
    from ringrift_fleet.execution.jobs import validate_job

    trained = item("training:hex8_2p:g1", JobStatus.COMPLETED, node="t", model="m1")
    synced = WorkItem(
        "distribute:hex8_2p:g1:b",
        JobType.SYNC,
        payload={"config": "hex8_2p", "kwargs": {"kind": "model", "model": "m1"}},
        status=JobStatus.COMPLETED,
        claimed_by="b",
        result={"fetched": ["m1"]},
    )
    pending = WorkItem(
        "distribute:hex8_2p:g1:c",
        JobType.SYNC,
        payload={"config": "hex8_2p", "kwargs": {"kind": "model", "model": "m1"}},
        status=JobStatus.CLAIMED,
        claimed_by="c",
    )
    view = LedgerView(POLICY)
    view.refresh([trained, synced, pending], {}, 0.0, lambda n: 1.0)
    assert view.model_hosts("hex8_2p", "m1") == {"t", "b"}
    assert view.model_hosts("hex8_2p", "m0") == frozenset()
    sp = Enqueue(
        "selfplay:hex8_2p:9",
        JobType.SELFPLAY,
        "hex8_2p",
        "b",
        "node.b",
        {"board_type": "hex8", "num_players": 2, "num_games": 4, "model": "m1"},
    )
    built = task_kwargs(sp, view, lambda n: None)
    assert built is not None and built["model"] == "m1"
    validate_job("selfplay", {**built, "job_id": "x"})


def test_an_evaluation_names_where_to_fetch_the_champion_its_host_lacks() -> None:
    """Soak defect: an evaluation ran on a host without the champion and failed."""
    from ringrift_fleet.execution.jobs import validate_job

    champion = item("training:hex8_2p:g1", JobStatus.COMPLETED, node="a", model="m1")
    candidate = item("training:hex8_2p:g2", JobStatus.COMPLETED, node="b", model="m2")
    view = LedgerView(POLICY)
    view.refresh([champion, candidate], {}, 0.0, lambda n: 1.0)
    urls = {"a": "http://10.0.0.1:8770", "b": "http://10.0.0.2:8770"}
    kwargs = {"board_type": "hex8", "num_players": 2, "candidate": "m2", "champion": "m1"}
    ev = Enqueue("evaluation:hex8_2p:g2", JobType.EVALUATION, "hex8_2p", "b", "node.b", kwargs)
    built = task_kwargs(ev, view, urls.get)
    assert built is not None and built["model_sources"] == ["http://10.0.0.1:8770"]
    validate_job("evaluation", {**built, "job_id": "x"})
    # on the host that holds both, the task stays as older workers accept it
    on_a = Enqueue("e", JobType.EVALUATION, "hex8_2p", "a", "node.a", {**kwargs, "candidate": "m1"})
    assert "model_sources" not in (task_kwargs(on_a, view, urls.get) or {})
    # a fetch it reports counts: the host now holds the champion
    done = WorkItem(
        "evaluation:hex8_2p:g2",
        JobType.EVALUATION,
        payload={"config": "hex8_2p", "kwargs": kwargs},
        status=JobStatus.COMPLETED,
        claimed_by="b",
        result={"models_fetched": ["m1"], "win_rate": 0.4},
    )
    view.refresh([champion, candidate, done], {}, 0.0, lambda n: 1.0)
    assert view.model_hosts("hex8_2p", "m1") == {"a", "b"}
