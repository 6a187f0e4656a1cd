"""What this host has and how busy it is: psutil and NVML behind three functions.

pynvml is imported and used only here.  A host without an NVIDIA driver is a
normal CPU host, not an error: NVML's absence is noted once at debug level and
the host reports no GPUs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ringrift_fleet.config import P2PConfig, get_p2p_config
from ringrift_fleet.models import NodeHealth, NodeRole, NodeSummary, ResourceMetrics
from ringrift_fleet.placement import CPU, gpu_power, normalize_gpu_name

log = logging.getLogger(__name__)

_GIB = 1024**3


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str  # as NVML reports it, e.g. "NVIDIA H100 80GB HBM3"
    key: str  # GPU_POWER_RANKINGS key (placement.normalize_gpu_name)
    memory_total_gb: float
    memory_used_percent: float
    utilization_percent: float


_nvml_lock = threading.Lock()
_nvml_missing = False  # no library or driver: absent for this process, stop asking
_nvml_logged = False


def _import_pynvml() -> Any:
    with warnings.catch_warnings():
        # the "pynvml" distribution warns on import that it is a shim; harmless here
        warnings.simplefilter("ignore")
        import pynvml

    return pynvml


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def detect_gpus() -> list[GpuInfo]:
    """The NVIDIA GPUs NVML sees; [] without a driver (logged once, at debug level)."""
    global _nvml_missing, _nvml_logged
    with _nvml_lock:
        if _nvml_missing:
            return []
        try:
            nvml = _import_pynvml()
            nvml.nvmlInit()
        except Exception as exc:  # no library, no driver, no device: a CPU host
            permanent = isinstance(exc, ImportError) or type(exc).__name__.endswith(
                ("LibraryNotFound", "DriverNotLoaded")
            )
            if permanent or not _nvml_logged:
                log.debug("NVML unavailable (%s): reporting no GPUs", exc)
            _nvml_missing = permanent
            _nvml_logged = True
            return []
        try:
            return [_gpu_info(nvml, i) for i in range(int(nvml.nvmlDeviceGetCount()))]
        except Exception as exc:  # a driver hiccup: report nothing this time, retry next time
            log.debug("NVML query failed: %s", exc)
            return []
        finally:
            try:
                nvml.nvmlShutdown()
            except Exception as exc:
                log.debug("nvmlShutdown: %s", exc)


def _gpu_info(nvml: Any, index: int) -> GpuInfo:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    name = _text(nvml.nvmlDeviceGetName(handle))
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    total = float(memory.total)
    try:
        utilization = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except Exception:  # not supported on some cards (MIG slices, vGPUs)
        utilization = 0.0
    return GpuInfo(
        index=index,
        name=name,
        key=normalize_gpu_name(name),
        memory_total_gb=round(total / _GIB, 1),
        memory_used_percent=round(100.0 * float(memory.used) / total, 1) if total else 0.0,
        utilization_percent=utilization,
    )


_cpu_primed = False


def _cpu_percent() -> float:
    """CPU use since the last call, without sleeping.

    psutil's non-blocking form measures between calls; its first call has no
    baseline and says 0.0, so the first probe uses the 1-minute load average
    per core instead of reporting an idle host that may be busy.
    """
    global _cpu_primed
    value = float(psutil.cpu_percent(interval=None))
    if _cpu_primed:
        return value
    _cpu_primed = True
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        return value
    return round(min(100.0, 100.0 * load1 / (psutil.cpu_count() or 1)), 1)


def _existing(path: str) -> str:
    """``path``, or its nearest existing parent (a state dir not created yet)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return str(p)


def probe_resources(disk_path: str = "/", gpus: list[GpuInfo] | None = None) -> ResourceMetrics:
    """This host's use now.  GPU figures are means over its GPUs (one job per GPU)."""
    gpus = detect_gpus() if gpus is None else gpus
    gpu_memory = sum(g.memory_used_percent for g in gpus) / len(gpus) if gpus else 0.0
    gpu_util = sum(g.utilization_percent for g in gpus) / len(gpus) if gpus else 0.0
    return ResourceMetrics(
        cpu_percent=_cpu_percent(),
        memory_percent=float(psutil.virtual_memory().percent),
        gpu_memory_percent=round(gpu_memory, 1),
        disk_percent=float(psutil.disk_usage(_existing(disk_path)).percent),
        gpu_utilization_percent=round(gpu_util, 1),
        has_gpu=bool(gpus),
    )


def health_of(metrics: ResourceMetrics, config: P2PConfig | None = None) -> NodeHealth:
    """HEALTHY, or DEGRADED when any resource is over its configured threshold."""
    c = config or get_p2p_config()
    over = metrics.overloaded_resources(
        cpu=c.CPU_OVERLOAD_THRESHOLD,
        memory=c.MEMORY_OVERLOAD_THRESHOLD,
        gpu_memory=c.GPU_MEMORY_OVERLOAD_THRESHOLD,
        disk=c.DISK_CRITICAL_THRESHOLD,
    )
    return NodeHealth.DEGRADED if over else NodeHealth.HEALTHY


def host_summary(
    node_id: str,
    *,
    host: str = "",
    role: NodeRole = NodeRole.FOLLOWER,
    is_voter: bool = False,
    status_port: int = 8770,
    version: str = "",
    jobs_running: int = 0,
    disk_path: str = "/",
    gpus: list[GpuInfo] | None = None,
    metrics: ResourceMetrics | None = None,
    config: P2PConfig | None = None,
) -> NodeSummary:
    """A NodeSummary of this host as probed now (GPU model: the most common one)."""
    gpus = detect_gpus() if gpus is None else gpus
    metrics = probe_resources(disk_path, gpus) if metrics is None else metrics
    key = Counter(g.key for g in gpus).most_common(1)[0][0] if gpus else CPU
    return NodeSummary(
        node_id=node_id,
        host=host,
        role=role,
        health=health_of(metrics, config),
        gpu_type=key,
        gpu_count=len(gpus),
        gpu_vram_gb=min((g.memory_total_gb for g in gpus), default=0.0),
        gpu_power=gpu_power(key),
        metrics=metrics,
        is_voter=is_voter,
        status_port=status_port,
        version=version,
        jobs_running=jobs_running,
        last_seen=time.time(),
    )
