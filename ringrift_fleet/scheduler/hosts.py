# mypy: disallow-any-explicit
"""Where the scheduler's view of hosts comes from: inventory, membership, probes.

Two sources, one shape (``list[Host]`` of alive hosts):

* :class:`FleetHosts` — a coordinator in a real fleet: the inventory says what
  each host has (GPUs, slots, status), membership says who is alive, and the
  metrics each coordinator publishes (:class:`MetricsBoard`, or membership
  metadata ``metrics``) say how loaded it is;
* :class:`LocalHosts` — ``ringrift-fleet up``: this machine only, probed directly.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import redis

from ringrift_fleet.config import P2PConfig
from ringrift_fleet.errors import ValidationError
from ringrift_fleet.jsontypes import JSONMapping
from ringrift_fleet.models import ResourceMetrics
from ringrift_fleet.placement import can_train, gpu_power, normalize_gpu_name
from ringrift_fleet.scheduler.snapshot import Host

if TYPE_CHECKING:
    from ringrift_fleet.inventory import HostSpec, Inventory
    from ringrift_fleet.membership.base import Membership

PROBE_EVERY_S = 5.0
METRICS_PREFIX = "ringrift:metrics:"
METRICS_TTL_S = 30  # a host that stops reporting falls back to "no figures" after this


class MetricsBoard:
    """Every coordinator posts its host's ResourceMetrics to Redis; the leader reads them.

    Soft state with a TTL (Redis is transport, not truth): a malformed or
    missing entry just means no figures for that host.
    """

    def __init__(self, redis: redis.Redis) -> None:
        self.redis = redis

    def publish(self, node: str, metrics: ResourceMetrics) -> None:
        self.redis.set(METRICS_PREFIX + node, json.dumps(metrics.to_dict()), ex=METRICS_TTL_S)

    def read(self, nodes: list[str]) -> dict[str, ResourceMetrics]:
        if not nodes:
            return {}
        out: dict[str, ResourceMetrics] = {}
        raws = self.redis.mget([METRICS_PREFIX + n for n in nodes])
        if not isinstance(raws, list):  # a synchronous client answers a list
            return out
        for node, raw in zip(nodes, raws, strict=True):
            if not isinstance(raw, (bytes, str)):
                continue
            with contextlib.suppress(ValueError, ValidationError):
                out[node] = ResourceMetrics.from_dict(json.loads(raw), f"{node}.metrics")
        return out


class LocalHosts:
    """This machine as the whole fleet; resources probed at most every few seconds."""

    def __init__(
        self,
        node_id: str,
        config: P2PConfig,
        *,
        slots: int,
        gpu: str = "CPU",
        vram_gb: float = 0.0,
        probe: Callable[[], ResourceMetrics] | None = None,
    ) -> None:
        self.node_id = node_id
        self.config = config
        self.slots = max(1, slots)
        self.gpu = normalize_gpu_name(gpu) if gpu != "CPU" else "CPU"
        self.vram_gb = vram_gb
        self._probe = probe
        self._metrics = ResourceMetrics(has_gpu=self.gpu != "CPU")
        self._probed_at = -PROBE_EVERY_S

    def metrics(self) -> ResourceMetrics:
        now = time.monotonic()
        if self._probe is not None and now - self._probed_at >= PROBE_EVERY_S:
            self._probed_at = now
            with contextlib.suppress(Exception):  # a failed probe keeps the last reading
                self._metrics = self._probe()
        return self._metrics

    def __call__(self) -> list[Host]:
        return [
            Host(
                node_id=self.node_id,
                gpu_type=self.gpu,
                gpu_power=gpu_power(self.gpu),
                gpu_vram_gb=self.vram_gb,
                slots=self.slots,
                can_train=can_train(self.gpu, self.vram_gb, self.config),
                metrics=self.metrics(),
            )
        ]

    def address(self, node: str) -> str | None:
        if node != self.node_id:
            return None
        return f"http://127.0.0.1:{self.config.DEFAULT_PORT}"


class FleetHosts:
    """Alive hosts from membership, described by the inventory and their metadata."""

    def __init__(
        self,
        node_id: str,
        config: P2PConfig,
        inventory: Inventory | None,
        membership: Membership | None,
        board: MetricsBoard | None = None,
    ) -> None:
        self.node_id = node_id
        self.config = config
        self.inventory = inventory
        self.membership = membership
        self.board = board

    def _spec(self, name: str) -> HostSpec | None:
        if self.inventory is None:
            return None
        try:
            return self.inventory.host(name)
        except Exception:
            return None

    def _metadata(self, name: str) -> JSONMapping:
        if self.membership is None or name == self.node_id:
            return {}
        try:
            return self.membership.peer_metadata(name) or {}
        except Exception:
            return {}

    def alive(self) -> list[str]:
        peers: list[str] = []
        if self.membership is not None:
            try:
                peers = list(self.membership.get_alive_peers())
            except Exception:
                peers = []
        return sorted({self.node_id, *peers})

    def __call__(self) -> list[Host]:
        out = []
        names = self.alive()
        posted: dict[str, ResourceMetrics] = {}
        if self.board is not None:
            with contextlib.suppress(Exception):  # no figures beats no scheduling
                posted = self.board.read(names)
        for name in names:
            spec = self._spec(name)
            if spec is None and self.inventory is not None:
                continue  # not one of ours: membership may know coordinators we do not run work on
            gpu = getattr(spec, "gpu", "CPU") if spec is not None else "CPU"
            count = int(getattr(spec, "gpu_count", 0) or 0) if spec is not None else 0
            vram = float(getattr(spec, "gpu_vram_gb", 0.0) or 0.0) if spec is not None else 0.0
            cpus = int(getattr(spec, "cpus", 0) or 0) if spec is not None else 0
            if spec is not None and not getattr(spec, "selfplay_enabled", True):
                continue
            meta = self._metadata(name)
            metrics = ResourceMetrics(has_gpu=gpu != "CPU")
            reported = meta.get("metrics")
            if isinstance(reported, Mapping):
                with contextlib.suppress(ValidationError):  # a malformed report is ignored
                    metrics = ResourceMetrics.from_dict(reported, f"{name}.metrics")
            metrics = posted.get(name, metrics)
            out.append(
                Host(
                    node_id=name,
                    gpu_type=gpu,
                    gpu_power=gpu_power(gpu),
                    gpu_vram_gb=vram,
                    slots=count if count > 0 else max(1, cpus // 4 or 1),
                    can_train=bool(getattr(spec, "training_enabled", True))
                    and can_train(gpu, vram, self.config),
                    metrics=metrics,
                    status=str(getattr(spec, "status", "ready")) if spec is not None else "ready",
                )
            )
        return out

    def address(self, node: str) -> str | None:
        """The base URL of a host's :8770 server (for ``/artifacts``)."""
        spec = self._spec(node)
        if spec is None:
            return None
        return f"http://{spec.address}:{getattr(spec, 'status_port', self.config.DEFAULT_PORT)}"
