"""`ringrift-fleet worker` and `flower` plans: pure, from detected GPUs and flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringrift_fleet.cli import main
from ringrift_fleet.commands.flower import plan_flower
from ringrift_fleet.commands.worker import Gpu, plan_worker
from ringrift_fleet.config import reload_p2p_config
from ringrift_fleet.errors import ConfigError

H100 = Gpu(0, "NVIDIA H100 80GB HBM3", 80.0)


def _opt(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_one_gpu_worker_pins_the_gpu_and_trains() -> None:
    gpus = [H100, Gpu(1, "NVIDIA H100 80GB HBM3", 80.0)]
    plan = plan_worker(node="gh-1", gpus=gpus, gpu_index=1)
    assert plan.hostname == "gh-1@gpu1" and plan.concurrency == 1
    assert plan.env["CUDA_VISIBLE_DEVICES"] == "1" and plan.tier == "t1" and plan.trains
    assert _opt(plan.argv, "--queues").split(",")[0] == "training.t1"
    assert plan.argv[1:6] == ["-m", "celery", "-A", "ringrift_fleet", "worker"]
    assert _opt(plan.argv, "--prefetch-multiplier") == "1"


def test_all_gpus_one_process_each() -> None:
    gpus = [Gpu(i, "NVIDIA GeForce RTX 4090", 24.0) for i in range(4)]
    plan = plan_worker(node="rtx", gpus=gpus)
    assert plan.concurrency == 4 and plan.hostname == "rtx@gpus"
    assert plan.env["RINGRIFT_WORKER_GPUS"] == "0,1,2,3"
    assert plan.tier == "t3" and plan.trains  # RTX 4090: power 0.5, 24 GB


def test_weak_or_small_gpu_does_not_train() -> None:
    assert not plan_worker(node="a", gpus=[Gpu(0, "NVIDIA A10", 24.0)]).trains
    assert not plan_worker(node="a", gpus=[Gpu(0, "A100", 16.0)]).trains
    mixed = plan_worker(node="m", gpus=[H100, Gpu(1, "Tesla T4", 16.0)])
    assert mixed.tier == "t4" and not mixed.trains


def test_cpu_worker_without_gpus() -> None:
    plan = plan_worker(node="box", gpus=[], cpu_count=8)
    assert plan.hostname == "box@cpu" and plan.concurrency == 4
    assert _opt(plan.argv, "--queues") == "cpu,node.box,any"
    assert plan.env["CUDA_VISIBLE_DEVICES"] == ""
    forced = plan_worker(node="box", gpus=[H100], cpu=True, cpu_count=2)
    assert forced.tier == "cpu" and forced.concurrency == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gpu_index": 3, "gpus": [H100]}, "--gpu-index 3: this host has GPUs 0"),
        ({"gpu_index": 0, "gpus": []}, "--gpu-index 0: this host has no GPU"),
        ({"concurrency": 0, "gpus": [H100]}, "--concurrency 0"),
        ({"queues": " , ", "gpus": [H100]}, "--queues"),
        ({"loglevel": "loud", "gpus": [H100]}, "--loglevel 'loud'"),
        ({"node": "a b", "gpus": []}, "--node 'a b'"),
    ],
)
def test_worker_flag_errors_name_the_flag(kwargs: dict[str, object], message: str) -> None:
    kwargs.setdefault("node", "n")
    with pytest.raises(ConfigError, match=message):
        plan_worker(**kwargs)  # type: ignore[arg-type]


def test_queues_override() -> None:
    plan = plan_worker(node="n", gpus=[H100], queues="selfplay.t1, node.n")
    assert plan.queues == ("selfplay.t1", "node.n")


def test_worker_dry_run_prints_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["worker", "--node", "n1", "--gpu-type", "GH200", "--gpu-vram-gb", "96", "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0 and "--hostname n1@gpus" in out and "training.t1" in out
    assert main(["worker", "--gpu-vram-gb", "96", "--dry-run"]) == 2
    assert "--gpu-vram-gb needs --gpu-type" in capsys.readouterr().err


def test_flower_plans() -> None:
    argv, env = plan_flower("0.0.0.0", 5555, "ops:pw, dev:pw2")
    assert "--address=0.0.0.0" in argv and env == {"FLOWER_BASIC_AUTH": "ops:pw,dev:pw2"}
    assert not any("pw" in a for a in argv)
    argv, env = plan_flower("127.0.0.1", 5555, "")
    assert env == {}
    for addr in ("0.0.0.0", "10.0.0.5", "flower.example"):
        with pytest.raises(ConfigError, match="loopback only"):
            plan_flower(addr, 5555, "")
    with pytest.raises(ConfigError, match="entry 2 is not user:password"):
        plan_flower("127.0.0.1", 5555, "a:b,nopassword")


def test_worker_refuses_a_bad_workloads_file_before_starting(
    fresh_config: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "workloads.yaml"
    bad.write_text("training:\n  command: train --cfg {confg}\n")
    fresh_config.setenv("RINGRIFT_P2P_WORKLOADS_FILE", str(bad))
    reload_p2p_config()
    assert main(["worker", "--cpu", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "workloads.yaml:2: training.command: unknown field {confg}" in err
    assert "Traceback" not in err
