"""Table tests of plan(): what the leader does for each situation a fleet gets into."""

from __future__ import annotations

import pytest

from ringrift_fleet.errors import ConfigError
from ringrift_fleet.models import JobStatus, JobType, NodeHealth, ResourceMetrics
from ringrift_fleet.scheduler.actions import (
    Dispatch,
    Enqueue,
    FailJob,
    Notify,
    Release,
    SetState,
)
from ringrift_fleet.scheduler.policy import elo_delta, plan
from ringrift_fleet.scheduler.settings import SchedulerPolicy, parse_board_configs
from ringrift_fleet.scheduler.snapshot import (
    BoardConfig,
    ConfigState,
    Host,
    Job,
    Outcome,
    Snapshot,
    Stage,
)
from ringrift_fleet.training import TrainingThresholds

ONE = (BoardConfig("hex8", 2),)
THRESH = TrainingThresholds(MIN_GAMES=100, MIN_GAMES_WHEN_STALE=10, MIN_HOURS_BETWEEN_RUNS=0)


def policy(**kw: object) -> SchedulerPolicy:
    base: dict[str, object] = {
        "configs": ONE,
        "thresholds": THRESH,
        "prefetch": 0.0,
        "queue_ahead_s": 0.0,
    }
    base.update(kw)
    return SchedulerPolicy(**base)  # type: ignore[arg-type]


def gpu(node: str, power: float = 1.0, slots: int = 1, **kw: object) -> Host:
    return Host(
        node_id=node,
        gpu_type="H100" if power >= 1.0 else "A10",
        gpu_power=power,
        gpu_vram_gb=80.0 if power >= 1.0 else 24.0,
        slots=slots,
        can_train=power >= 0.5,
        **kw,  # type: ignore[arg-type]
    )


def of(actions: list, kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def test_an_empty_fleet_gets_nothing() -> None:
    assert plan(Snapshot(now=0.0, hosts=(), policy=policy())) == []


def test_free_slots_are_filled_with_self_play_and_the_cursor_is_written_first() -> None:
    snap = Snapshot(now=0.0, hosts=(gpu("a", slots=2),), policy=policy(prefetch=0.5))
    actions = plan(snap)
    enq = of(actions, Enqueue)
    assert [e.job_id for e in enq] == [
        "selfplay:hex8_2p:1",
        "selfplay:hex8_2p:2",
        "selfplay:hex8_2p:3",
    ]
    assert all(e.queue == "node.a" and e.job_type is JobType.SELFPLAY for e in enq)
    assert enq[0].kwargs["board_type"] == "hex8" and enq[0].kwargs["num_players"] == 2
    first_set = next(i for i, a in enumerate(actions) if isinstance(a, SetState))
    assert first_set < actions.index(enq[0])
    assert of(actions, SetState)[-1].state.selfplay_seq == 3


def test_a_host_already_full_gets_no_more() -> None:
    busy = Job(
        "selfplay:hex8_2p:1", JobType.SELFPLAY, "hex8_2p", JobStatus.RUNNING, 1, 3, "a", 0, 0
    )
    snap = Snapshot(now=1.0, hosts=(gpu("a"),), jobs=(busy,), policy=policy())
    assert of(plan(snap), Enqueue) == []


@pytest.mark.parametrize(
    "host",
    [
        gpu("x", metrics=ResourceMetrics(disk_percent=71.0)),
        gpu(
            "x",
            metrics=ResourceMetrics(cpu_percent=100, memory_percent=100, gpu_memory_percent=100),
        ),
        gpu("x", status="offline"),
        gpu("x", status="retired"),
        gpu("x", health=NodeHealth.UNHEALTHY),
        gpu("x", health=NodeHealth.OFFLINE),
    ],
    ids=["disk", "load", "offline", "retired", "unhealthy", "health-offline"],
)
def test_unhealthy_hosts_get_no_new_work(host: Host) -> None:
    snap = Snapshot(now=0.0, hosts=(host, gpu("ok")), games={"hex8_2p": 10_000}, policy=policy())
    actions = plan(snap)
    placed = [a.node_id for a in actions if isinstance(a, (Enqueue, Dispatch))]
    assert placed and "x" not in placed


def test_training_starts_with_a_sync_to_the_best_training_host() -> None:
    hosts = (gpu("weak", 0.4), gpu("strong", 1.0), gpu("mid", 0.5))
    snap = Snapshot(now=0.0, hosts=hosts, games={"hex8_2p": 150}, policy=policy())
    actions = plan(snap)
    sync = [e for e in of(actions, Enqueue) if e.job_type is JobType.SYNC]
    assert len(sync) == 1 and sync[0].node_id == "strong"
    assert sync[0].job_id == "sync:hex8_2p:g1"
    state = next(a.state for a in of(actions, SetState) if a.state.stage is Stage.SYNC)
    assert state.target_node == "strong" and state.games_at_trigger == 150
    # the cursor is written before the job it names
    assert actions.index(next(a for a in actions if isinstance(a, SetState))) < actions.index(
        sync[0]
    )


def test_too_few_games_train_nothing() -> None:
    snap = Snapshot(now=0.0, hosts=(gpu("a"),), games={"hex8_2p": 9}, policy=policy())
    assert not [e for e in of(plan(snap), Enqueue) if e.job_type is not JobType.SELFPLAY]


def test_a_cpu_host_never_trains_outside_the_demo() -> None:
    cpu = Host("cpu", slots=2)
    snap = Snapshot(now=0.0, hosts=(cpu,), games={"hex8_2p": 10_000}, policy=policy())
    assert not [e for e in of(plan(snap), Enqueue) if e.job_type is JobType.SYNC]
    demo = Snapshot(
        now=0.0,
        hosts=(cpu,),
        games={"hex8_2p": 10_000},
        policy=policy(allow_cpu_training=True),
    )
    assert [e.node_id for e in of(plan(demo), Enqueue) if e.job_type is JobType.SYNC] == ["cpu"]


def test_no_second_training_for_a_config_while_one_runs() -> None:
    st = ConfigState(stage=Stage.TRAINING, generation=1, target_node="a")
    running = Job(
        "training:hex8_2p:g1", JobType.TRAINING, "hex8_2p", JobStatus.RUNNING, 1, 3, "a", 0, 0
    )
    snap = Snapshot(
        now=10.0,
        hosts=(gpu("a"), gpu("b")),
        jobs=(running,),
        games={"hex8_2p": 1_000_000},
        states={"hex8_2p": st},
        policy=policy(),
    )
    actions = plan(snap)
    assert not [e for e in of(actions, Enqueue) if e.job_type is not JobType.SELFPLAY]
    assert not [s for s in of(actions, SetState) if s.state.stage is not Stage.TRAINING]


def cycle(stage: Stage, outcome: Outcome, **state: object) -> list:
    st = ConfigState(stage=stage, generation=3, target_node="a", games_at_trigger=500, **state)  # type: ignore[arg-type]
    snap = Snapshot(
        now=7200.0,
        hosts=(gpu("a"), gpu("b"), gpu("c", metrics=ResourceMetrics(disk_percent=99))),
        outcomes={outcome.job_id: outcome},
        games={"hex8_2p": 600},
        states={"hex8_2p": st},
        policy=policy(),
    )
    return plan(snap)


def test_sync_done_starts_training_on_the_same_host() -> None:
    actions = cycle(Stage.SYNC, Outcome("sync:hex8_2p:g3", True))
    train = [e for e in of(actions, Enqueue) if e.job_type is JobType.TRAINING]
    assert [(t.job_id, t.node_id) for t in train] == [("training:hex8_2p:g3", "a")]


def test_training_done_notifies_and_evaluates_the_candidate() -> None:
    actions = cycle(
        Stage.TRAINING, Outcome("training:hex8_2p:g3", True, {"model": "m3.npz"}), champion="m2.npz"
    )
    notes = of(actions, Notify)
    assert [n.event_type for n in notes] == ["training_complete"]
    ev = [e for e in of(actions, Enqueue) if e.job_type is JobType.EVALUATION]
    assert len(ev) == 1
    assert ev[0].kwargs["candidate"] == "m3.npz" and ev[0].kwargs["champion"] == "m2.npz"


def test_a_winning_candidate_is_promoted_recorded_and_distributed() -> None:
    actions = cycle(
        Stage.EVALUATION,
        Outcome("evaluation:hex8_2p:g3", True, {"win_rate": 0.64}),
        candidate="m3.npz",
        champion="m2.npz",
        champion_elo=1600.0,
    )
    final = of(actions, SetState)[0].state
    assert final.stage is Stage.IDLE and final.champion == "m3.npz" and final.promotions == 1
    assert final.champion_elo == pytest.approx(1600.0 + elo_delta(0.64), abs=0.1)
    assert final.champion_elo > 1600.0
    assert final.games_at_last_training == 500 and final.last_training_at == 7200.0
    assert [n.event_type for n in of(actions, Notify)] == ["model_promoted"]
    dist = [e for e in of(actions, Enqueue) if e.job_type is JobType.SYNC]
    # to every other healthy host: not the training host, not the full-disk one
    assert [(d.node_id, d.kwargs["model"]) for d in dist] == [("b", "m3.npz")]


def test_a_candidate_inside_the_margin_is_not_promoted() -> None:
    actions = cycle(
        Stage.EVALUATION,
        Outcome("evaluation:hex8_2p:g3", True, {"win_rate": 0.54}),
        candidate="m3.npz",
        champion="m2.npz",
    )
    final = of(actions, SetState)[0].state
    assert final.champion == "m2.npz" and final.promotions == 0 and final.stage is Stage.IDLE
    assert [n.event_type for n in of(actions, Notify)] == ["candidate_rejected"]


def test_a_failed_stage_ends_the_cycle_with_a_notification_and_backs_off() -> None:
    actions = cycle(Stage.TRAINING, Outcome("training:hex8_2p:g3", False, error="OOM"))
    final = of(actions, SetState)[0].state
    assert final.stage is Stage.IDLE and final.retry_after > 7200.0
    note = of(actions, Notify)[0]
    assert (
        note.event_type == "training_failed" and note.severity == "error" and "OOM" in note.message
    )


def test_jobs_of_a_dead_host_are_released_and_placed_elsewhere_at_once() -> None:
    lost = Job(
        "selfplay:hex8_2p:7", JobType.SELFPLAY, "hex8_2p", JobStatus.RUNNING, 1, 3, "dead", 0, 5
    )
    snap = Snapshot(
        now=100.0,
        hosts=(gpu("dead"), gpu("b")),
        dead=frozenset({"dead"}),
        newly_dead=frozenset({"dead"}),
        jobs=(lost,),
        policy=policy(),
    )
    actions = plan(snap)
    released = [(r.job_id, r.node_id, r.attempt) for r in of(actions, Release)]
    assert released == [("selfplay:hex8_2p:7", "dead", 1)]
    d = of(actions, Dispatch)
    assert [(x.job_id, x.node_id, x.attempt) for x in d] == [("selfplay:hex8_2p:7", "b", 2)]
    assert actions.index(of(actions, Release)[0]) < actions.index(d[0])
    assert [n.event_type for n in of(actions, Notify)] == ["node_offline"]
    assert all(a.node_id != "dead" for a in of(actions, Enqueue))


def test_lost_work_goes_out_even_when_every_queue_is_full() -> None:
    lost = Job(
        "selfplay:hex8_2p:7", JobType.SELFPLAY, "hex8_2p", JobStatus.RUNNING, 1, 3, "dead", 0, 5
    )
    full = Job(
        "selfplay:hex8_2p:8", JobType.SELFPLAY, "hex8_2p", JobStatus.RUNNING, 1, 3, "b", 0, 5
    )
    snap = Snapshot(
        now=100.0, hosts=(gpu("b"),), dead=frozenset({"dead"}), jobs=(lost, full), policy=policy()
    )
    assert [(d.job_id, d.node_id) for d in of(plan(snap), Dispatch)] == [
        ("selfplay:hex8_2p:7", "b")
    ]


def test_a_job_out_of_attempts_fails_for_good() -> None:
    lost = Job(
        "selfplay:hex8_2p:7", JobType.SELFPLAY, "hex8_2p", JobStatus.RUNNING, 3, 3, "dead", 0, 5
    )
    snap = Snapshot(
        now=100.0, hosts=(gpu("b"),), dead=frozenset({"dead"}), jobs=(lost,), policy=policy()
    )
    actions = plan(snap)
    assert [f.job_id for f in of(actions, FailJob)] == ["selfplay:hex8_2p:7"]
    assert not of(actions, Dispatch)
    assert "job_failed" in [n.event_type for n in of(actions, Notify)]


def test_a_job_past_its_hard_limit_is_reaped() -> None:
    hung = Job(
        "selfplay:hex8_2p:7", JobType.SELFPLAY, "hex8_2p", JobStatus.RUNNING, 1, 3, "a", 0, 0, 100.0
    )
    young = Job(
        "selfplay:hex8_2p:8",
        JobType.SELFPLAY,
        "hex8_2p",
        JobStatus.RUNNING,
        1,
        3,
        "a",
        0,
        100,
        100.0,
    )
    snap = Snapshot(
        now=170.0, hosts=(gpu("a", slots=2),), jobs=(hung, young), policy=policy(reap_grace_s=60)
    )
    assert [r.job_id for r in of(plan(snap), Release)] == ["selfplay:hex8_2p:7"]


def test_a_training_host_that_dies_ends_the_cycle() -> None:
    st = ConfigState(stage=Stage.TRAINING, generation=2, target_node="t")
    job = Job(
        "training:hex8_2p:g2", JobType.TRAINING, "hex8_2p", JobStatus.RUNNING, 1, 3, "t", 0, 0
    )
    snap = Snapshot(
        now=50.0,
        hosts=(gpu("b"),),
        dead=frozenset({"t"}),
        jobs=(job,),
        states={"hex8_2p": st},
        policy=policy(),
    )
    actions = plan(snap)
    assert [f.job_id for f in of(actions, FailJob)] == ["training:hex8_2p:g2"]
    assert of(actions, SetState)[0].state.stage is Stage.IDLE
    assert "training_failed" in [n.event_type for n in of(actions, Notify)]


def test_after_the_backoff_a_config_trains_elsewhere_without_its_dead_host() -> None:
    """A host declared dead may only be cut off and still training (a partition); the
    policy does not wait for it (its result will be refused by its fence): after
    ``retry_backoff_s`` the config trains again on another host.  That overlap is the
    second training of one config the fleet simulation can count."""
    job = Job(
        "training:hex8_2p:g2", JobType.TRAINING, "hex8_2p", JobStatus.RUNNING, 1, 3, "t", 0, 0
    )
    pol = policy(retry_backoff_s=600.0)
    st = ConfigState(stage=Stage.TRAINING, generation=2, target_node="t")
    games = {"hex8_2p": 1_000_000}
    died = plan(
        Snapshot(
            now=50.0,
            hosts=(gpu("b"),),
            dead=frozenset({"t"}),
            jobs=(job,),
            games=games,
            states={"hex8_2p": st},
            policy=pol,
        )
    )
    ended = of(died, SetState)[0].state
    assert ended.stage is Stage.IDLE and ended.retry_after == 650.0

    def at(now: float) -> list[SetState]:
        snap = Snapshot(
            now=now,
            hosts=(gpu("b"),),
            dead=frozenset({"t"}),
            games=games,
            states={"hex8_2p": ended},
            policy=pol,
        )
        return [s for s in of(plan(snap), SetState) if s.state.stage is not Stage.IDLE]

    assert at(649.0) == []
    (started,) = at(650.0)
    assert started.state.stage is Stage.SYNC
    assert (started.state.target_node, started.state.generation) == ("b", 3)


def test_a_cursor_whose_job_never_reached_the_ledger_gets_it_under_the_same_slot() -> None:
    st = ConfigState(stage=Stage.TRAINING, generation=4, target_node="a")
    snap = Snapshot(now=50.0, hosts=(gpu("a"),), states={"hex8_2p": st}, policy=policy())
    train = [e for e in of(plan(snap), Enqueue) if e.job_type is JobType.TRAINING]
    assert [(t.slot, t.node_id) for t in train] == [("training:hex8_2p:g4#1", "a")]


def test_two_leaders_planning_from_one_state_name_the_same_slots() -> None:
    snap = Snapshot(
        now=0.0,
        hosts=(gpu("a", slots=4), gpu("b", 0.5, slots=2)),
        games={"hex8_2p": 500},
        policy=policy(configs=tuple(parse_board_configs("", ""))),
    )
    first, second = plan(snap), plan(snap)
    assert first == second
    slots = [a.slot for a in first if isinstance(a, Enqueue)]
    assert len(slots) == len(set(slots)) > 0


def test_elo_delta_is_zero_at_even_and_grows_with_the_win_rate() -> None:
    assert elo_delta(0.5) == pytest.approx(0.0)
    assert 0 < elo_delta(0.6) < elo_delta(0.8) <= 800
    assert elo_delta(1.0) == 800 and elo_delta(0.0) == -800


@pytest.mark.parametrize(
    ("keys", "weights", "message"),
    [
        ("hex9_2p", "", "hex9_2p"),
        ("hex8_5p", "", "hex8_5p"),
        ("hex8_2p,hex8_2p", "", "listed twice"),
        ("", "hex8_2p=-1", "weight of hex8_2p"),
        ("", "hex8_2p=abc", "weight of hex8_2p"),
        ("", "hex8_2p", "not <config>=<weight>"),
        ("hex8_2p", "square8_2p=2", "not a scheduled board config"),
        ("hex8_2p", "hex8_2p=0", "at least one config"),
    ],
)
def test_bad_scheduler_config_names_the_variable(keys: str, weights: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_board_configs(
            keys,
            weights,
            origin="RINGRIFT_P2P_SCHEDULER_BOARD_CONFIGS",
            weights_origin="RINGRIFT_P2P_SCHEDULER_CONFIG_WEIGHTS",
        )
    assert message in str(err.value)
    assert "RINGRIFT_P2P_SCHEDULER_" in str(err.value)


def test_default_configs_are_the_twelve_boards_with_weights_applied() -> None:
    configs = parse_board_configs("", "square19_4p=3")
    assert len(configs) == 12
    assert {c.key for c in configs} >= {"square8_2p", "hexagonal_4p", "hex8_3p", "square19_2p"}
    assert next(c for c in configs if c.key == "square19_4p").weight == 3.0


def test_policy_from_the_environment_names_the_bad_variable() -> None:
    from ringrift_fleet.config import load_config

    cfg = load_config({"RINGRIFT_P2P_SCHEDULER_CONFIG_WEIGHTS": "hex8_2p=lots"})
    with pytest.raises(ConfigError) as err:
        SchedulerPolicy.from_config(cfg)
    assert "RINGRIFT_P2P_SCHEDULER_CONFIG_WEIGHTS" in str(err.value)
    good = SchedulerPolicy.from_config(
        load_config(
            {
                "RINGRIFT_P2P_SCHEDULER_BOARD_CONFIGS": "hex8_2p,square19_4p",
                "RINGRIFT_P2P_SCHEDULER_CONFIG_WEIGHTS": "square19_4p=3",
                "RINGRIFT_P2P_EVAL_PROMOTION_MARGIN": "0.1",
            }
        )
    )
    assert [(c.key, c.weight) for c in good.configs] == [("hex8_2p", 1.0), ("square19_4p", 3.0)]
    assert good.promotion_margin == 0.1


def test_self_play_plays_the_champion_only_where_it_is_on_disk() -> None:
    st = ConfigState(champion="hex8_2p_v3.npz", promotions=1)
    snap = Snapshot(
        now=0.0,
        hosts=(gpu("has"), gpu("lacks")),
        states={"hex8_2p": st},
        champion_hosts={"hex8_2p": frozenset({"has"})},
        policy=policy(),
    )
    by_node = {e.node_id: e.kwargs for e in of(plan(snap), Enqueue)}
    assert by_node["has"]["model"] == "hex8_2p_v3.npz"
    assert "model" not in by_node["lacks"]
