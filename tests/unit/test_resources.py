"""Host probes: real psutil on this machine; NVML through a fake module (no NVIDIA GPU here)."""

from __future__ import annotations

import logging
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ringrift_fleet import resources
from ringrift_fleet.config import P2PConfig
from ringrift_fleet.models import NodeHealth, NodeRole, ResourceMetrics
from ringrift_fleet.resources import GpuInfo, detect_gpus, host_summary, probe_resources

CFG = P2PConfig(NODE_ID="test")


@pytest.fixture(autouse=True)
def fresh_nvml_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(resources, "_nvml_missing", False)
    monkeypatch.setattr(resources, "_nvml_logged", False)
    yield


def test_this_machine_reports_cpu_only_quietly(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """No NVIDIA driver here: no GPUs, no exception, no warning, at most one debug line."""
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG):
        warnings.simplefilter("always")
        assert detect_gpus() == []
        assert detect_gpus() == []
        metrics = probe_resources(str(tmp_path / "not-created-yet" / "state"))
        summary = host_summary("cpu-box", host="127.0.0.1", config=CFG)
    assert caught == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert len([r for r in caplog.records if "NVML" in r.getMessage()]) <= 1
    assert metrics.has_gpu is False and metrics.gpu_memory_percent == 0.0
    assert 0.0 <= metrics.cpu_percent <= 100.0
    assert 0.0 < metrics.memory_percent < 100.0
    assert 0.0 < metrics.disk_percent <= 100.0
    assert (summary.gpu_type, summary.gpu_count, summary.gpu_vram_gb, summary.gpu_power) == (
        "CPU",
        0,
        0.0,
        0.1,
    )
    assert summary.node_id == "cpu-box" and summary.last_seen > 0
    # the summary survives the wire format the heartbeats use
    assert type(summary).from_dict(summary.to_dict()) == summary


class FakeNVMLError(Exception):
    pass


class NVMLError_NotSupported(FakeNVMLError):  # named as NVML names it
    pass


class NVMLError_LibraryNotFound(FakeNVMLError):
    pass


def fake_pynvml(
    devices: list[dict[str, Any]], init_error: Exception | None = None
) -> types.ModuleType:
    """A stand-in for pynvml with the calls resources.py makes (no NVIDIA GPU on this host)."""
    mod = types.ModuleType("pynvml")
    calls: list[str] = []

    def init() -> None:
        calls.append("init")
        if init_error is not None:
            raise init_error

    def memory(handle: int) -> Any:
        d = devices[handle]
        return types.SimpleNamespace(total=d["total"], used=d["used"], free=d["total"] - d["used"])

    def utilization(handle: int) -> Any:
        if devices[handle].get("util") is None:
            raise NVMLError_NotSupported("Not Supported")
        return types.SimpleNamespace(gpu=devices[handle]["util"], memory=0)

    mod.nvmlInit = init  # type: ignore[attr-defined]
    mod.nvmlShutdown = lambda: calls.append("shutdown")  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: len(devices)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    mod.nvmlDeviceGetName = lambda h: devices[h]["name"]  # type: ignore[attr-defined]
    mod.nvmlDeviceGetMemoryInfo = memory  # type: ignore[attr-defined]
    mod.nvmlDeviceGetUtilizationRates = utilization  # type: ignore[attr-defined]
    mod.calls = calls  # type: ignore[attr-defined]
    return mod


GIB = 1024**3


def test_nvml_gpus_are_reported_and_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_pynvml(
        [
            {"name": "NVIDIA H100 80GB HBM3", "total": 80 * GIB, "used": 20 * GIB, "util": 90},
            {"name": b"NVIDIA H100 80GB HBM3", "total": 80 * GIB, "used": 60 * GIB, "util": None},
        ]
    )
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    gpus = detect_gpus()
    assert gpus == [
        GpuInfo(0, "NVIDIA H100 80GB HBM3", "H100", 80.0, 25.0, 90.0),
        GpuInfo(1, "NVIDIA H100 80GB HBM3", "H100", 80.0, 75.0, 0.0),
    ]
    assert nvml.calls == ["init", "shutdown"]  # type: ignore[attr-defined]
    metrics = probe_resources(gpus=gpus)
    assert (
        metrics.has_gpu
        and metrics.gpu_memory_percent == 50.0
        and metrics.gpu_utilization_percent == 45.0
    )
    summary = host_summary("gpu-1", role=NodeRole.LEADER, is_voter=True, gpus=gpus, config=CFG)
    assert (summary.gpu_type, summary.gpu_count, summary.gpu_vram_gb, summary.gpu_power) == (
        "H100",
        2,
        80.0,
        1.0,
    )
    assert summary.role is NodeRole.LEADER and summary.is_voter


def test_gh200_reports_its_own_key(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_pynvml([{"name": "NVIDIA GH200 480GB", "total": 95 * GIB, "used": 0, "util": 0}])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    summary = host_summary("gh", config=CFG)
    assert (summary.gpu_type, summary.gpu_power, summary.gpu_vram_gb) == ("GH200", 1.2, 95.0)


def test_missing_library_is_asked_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    nvml = fake_pynvml([], init_error=NVMLError_LibraryNotFound("NVML Shared Library Not Found"))
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    with caplog.at_level(logging.DEBUG, logger="ringrift_fleet.resources"):
        for _ in range(5):
            assert detect_gpus() == []
    assert nvml.calls == ["init"]  # type: ignore[attr-defined]
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.DEBUG


def test_transient_driver_error_is_retried_quietly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    nvml = fake_pynvml([], init_error=FakeNVMLError("GPU is lost"))
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    with caplog.at_level(logging.DEBUG, logger="ringrift_fleet.resources"):
        for _ in range(3):
            assert detect_gpus() == []
    assert nvml.calls == ["init"] * 3  # type: ignore[attr-defined]
    assert len(caplog.records) == 1


def test_query_failure_midway_reports_nothing_and_shuts_nvml_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nvml = fake_pynvml([{"name": "NVIDIA A100-SXM4-80GB", "total": 80 * GIB, "used": 0, "util": 0}])

    def broken(handle: int) -> Any:
        raise FakeNVMLError("Unknown Error")

    nvml.nvmlDeviceGetMemoryInfo = broken  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert detect_gpus() == []
    assert nvml.calls == ["init", "shutdown"]  # type: ignore[attr-defined]


def test_overloaded_host_is_degraded() -> None:
    busy = ResourceMetrics(cpu_percent=99.0, has_gpu=False)
    assert host_summary("x", gpus=[], metrics=busy, config=CFG).health is NodeHealth.DEGRADED
    full_disk = ResourceMetrics(disk_percent=71.0, has_gpu=False)
    assert host_summary("x", gpus=[], metrics=full_disk, config=CFG).health is NodeHealth.DEGRADED
    calm = ResourceMetrics(cpu_percent=20.0, disk_percent=50.0, has_gpu=False)
    assert host_summary("x", gpus=[], metrics=calm, config=CFG).health is NodeHealth.HEALTHY
