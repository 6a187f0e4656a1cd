"""``distributed_hosts.yaml``: the fleet's host list, its Raft voters and coordinator ports.

Every host reads the same file to know its peers, so a mistake in it misleads
the whole fleet.  Loading therefore checks everything and reports every
problem at once, each as ``file:line: host NAME: field ...``, before anything
starts.  The file is normally generated from the Ansible inventory
(:func:`from_ansible`) so operators keep one list of hosts.

Schema (see docs/inventory.md)::

    hosts:
      NAME: {ssh_host, ssh_user, ssh_port, tailscale_ip | address, gpu, gpu_count,
             gpu_vram_gb, memory_gb, cpus, role, status, selfplay_enabled,
             training_enabled, status_port, swim_port, raft_port}
    raft_voters: [NAME, ...]          # 0, 1, 3, 5 or 7 names; never even
    coordinator: {status_port, swim_port, raft_port, broker_host, broker_port, flower_port}
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ringrift_fleet.config import get_p2p_config
from ringrift_fleet.errors import InventoryError
from ringrift_fleet.placement import (
    CPU,
    UNKNOWN,
    can_train,
    gpu_power,
    normalize_gpu_name,
    typical_vram_gb,
)
from ringrift_fleet.placement import gpu_tier as _gpu_tier

log = logging.getLogger(__name__)

# What a host runs besides its coordinator (every host runs one):
#   gpu    – one Celery worker per GPU, on the queues of its GPU's tier
#   cpu    – one CPU Celery worker (sync, evaluation bookkeeping, CPU self-play)
#   broker – Redis and Flower; no workers unless selfplay/training is enabled explicitly
ROLES = ("gpu", "cpu", "broker")
STATUSES = ("ready", "offline", "retired")
HOST_FIELDS = (
    "ssh_host",
    "ssh_user",
    "ssh_port",
    "tailscale_ip",
    "address",
    "gpu",
    "gpu_count",
    "gpu_vram_gb",
    "memory_gb",
    "cpus",
    "role",
    "status",
    "selfplay_enabled",
    "training_enabled",
    "status_port",
    "swim_port",
    "raft_port",
)
COORDINATOR_FIELDS = (
    "status_port",
    "swim_port",
    "raft_port",
    "broker_host",
    "broker_port",
    "flower_port",
)
TOP_LEVEL_KEYS = ("hosts", "raft_voters", "coordinator")
DEFAULT_SSH_USER = "root"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")


@dataclass(frozen=True)
class CoordinatorSettings:
    """Fleet-wide defaults for the per-host daemons, and where the broker lives."""

    status_port: int = 8770
    swim_port: int = 7946
    raft_port: int = 4321
    broker_host: str | None = None  # a host name; None = the host whose role is broker
    broker_port: int = 6379
    flower_port: int = 5555


@dataclass(frozen=True)
class HostSpec:
    """One host as the fleet sees it; built only by the loader, so always valid."""

    name: str
    address: str  # how peers reach it: tailscale_ip, else address, else ssh_host
    ssh_host: str
    ssh_user: str = DEFAULT_SSH_USER
    ssh_port: int = 22
    gpu: str = CPU  # a GPU_POWER_RANKINGS key, or "UNKNOWN"
    gpu_count: int = 0
    gpu_vram_gb: float = 0.0
    memory_gb: float = 0.0  # 0 = not stated
    cpus: int = 0  # 0 = not stated
    role: str = "cpu"
    status: str = "ready"
    selfplay_enabled: bool = True
    training_enabled: bool = False
    status_port: int = 8770
    swim_port: int = 7946
    raft_port: int = 4321
    line: int | None = field(default=None, compare=False)  # source line, when known

    @property
    def gpu_power(self) -> float:
        return gpu_power(self.gpu)

    @property
    def tier(self) -> str:
        """The Celery queue tier of this host's GPU (placement.TIERS)."""
        return "cpu" if self.gpu_count == 0 else _gpu_tier(self.gpu_power)

    @property
    def is_active(self) -> bool:
        return self.status == "ready"


@dataclass(frozen=True)
class Inventory:
    hosts: tuple[HostSpec, ...]
    raft_voters: tuple[str, ...] = ()
    coordinator: CoordinatorSettings = field(default_factory=CoordinatorSettings)
    path: str = field(default="<string>", compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def host(self, name: str) -> HostSpec:
        for h in self.hosts:
            if h.name == name:
                return h
        known = ", ".join(h.name for h in self.hosts)
        raise InventoryError([f"{self.path}: no host named {name!r} (hosts: {known})"])

    def names(self) -> list[str]:
        return [h.name for h in self.hosts]

    def voters(self) -> list[HostSpec]:
        return [self.host(n) for n in self.raft_voters]

    def active_hosts(self) -> list[HostSpec]:
        return [h for h in self.hosts if h.is_active]

    def broker(self) -> HostSpec | None:
        name = self.coordinator.broker_host
        return self.host(name) if name else None

    @property
    def broker_url(self) -> str | None:
        """``redis://<broker address>:<port>/0``, or None when no host is the broker."""
        b = self.broker()
        return f"redis://{b.address}:{self.coordinator.broker_port}/0" if b else None


# --- YAML with line numbers ------------------------------------------------------------


class _Located(dict[Any, Any]):
    """A mapping that remembers where it and each of its keys came from."""

    line: int | None = None
    key_lines: dict[Any, int]
    duplicates: list[tuple[Any, int]]


# libyaml's parser when PyYAML was built with it (about 10x faster); same safe constructors.
_SafeBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_SafeBase):  # type: ignore[valid-type,misc]
    pass


def _construct_located(loader: _LineLoader, node: yaml.MappingNode) -> _Located:
    own = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)  # puts the pairs of ``<<: *x`` merges first
    merged = len(node.value) - own
    out = _Located()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    out.duplicates = []
    from_merge: set[Any] = set()
    for i, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            key = str(key)
        line = key_node.start_mark.line + 1
        if key in from_merge:  # a key of the mapping itself (or a later merge) wins
            from_merge.discard(key)
            del out[key]
        elif key in out:  # keep the first definition; report the later one
            out.duplicates.append((key, line))
            continue
        if i < merged:
            from_merge.add(key)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = line
    return out


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_located)


MAX_YAML_DEPTH = 64  # an inventory nests 3 or 4 levels; the constructor recurses per level
MAX_ALIAS_NODES = 100_000  # nodes that aliases may add in all (``<<: *defaults`` adds a few)


def _check_shape(text: str, path: str) -> None:
    """Refuse, from the parser's events and before anything is built, what would cost far
    more than the text: aliases that expand past MAX_ALIAS_NODES nodes (a "billion
    laughs" bomb, 700 bytes that print as gigabytes), an alias inside its own anchor,
    and nesting deeper than MAX_YAML_DEPTH.  Each with the line of the culprit."""
    sizes: dict[str, int] = {}  # anchor -> nodes it stands for, expanded
    stack: list[tuple[str | None, list[int]]] = []  # open collections: anchor, [size]
    added = 0
    for event in yaml.parse(text, Loader=_SafeBase):
        mark = event.start_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= MAX_YAML_DEPTH:
                raise InventoryError([f"{where}: nested deeper than {MAX_YAML_DEPTH} levels"])
            stack.append((event.anchor, [1]))
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, (size,) = stack.pop()
        elif isinstance(event, yaml.ScalarEvent):
            anchor, size = event.anchor, 1
        elif isinstance(event, yaml.AliasEvent):
            anchor, size = None, sizes.get(event.anchor or "", 1)
            if any(event.anchor == a for a, _ in stack):
                raise InventoryError(
                    [f"{where}: alias *{event.anchor} is inside its own anchor (a cycle)"]
                )
            added += size
            if added > MAX_ALIAS_NODES:
                raise InventoryError(
                    [
                        f"{where}: alias *{event.anchor}: aliases expand to more than "
                        f"{MAX_ALIAS_NODES} values (an alias bomb?): write the values out"
                    ]
                )
        else:
            continue
        if anchor is not None:
            sizes[anchor] = size
        if stack:
            stack[-1][1][0] += size


def _line_of(d: Any, key: Any = None) -> int | None:
    if not isinstance(d, _Located):
        return None
    return d.key_lines.get(key, d.line) if key is not None else d.line


# --- validation --------------------------------------------------------------------------


class _Problems:
    """Collects every problem, each located as precisely as the source allows."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self._lines: dict[str, int] = {}

    def _fmt(self, line: int | None, host: str | None, text: str) -> str:
        where = f"{self.path}:{line}" if line else self.path
        return f"{where}: host {host}: {text}" if host else f"{where}: {text}"

    def error(self, line: int | None, host: str | None, text: str) -> None:
        self.errors.append(self._fmt(line, host, text))
        self._lines[self.errors[-1]] = line or 0

    def sorted(self, items: list[str]) -> list[str]:
        """In file order; problems without a line (whole-file ones) last."""
        return sorted(items, key=lambda m: self._lines.get(m) or 1 << 30)

    def warn(self, line: int | None, host: str | None, text: str) -> None:
        self.warnings.append(self._fmt(line, host, text))
        self._lines[self.warnings[-1]] = line or 0


def _suggest(word: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_MISSING = object()


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            parsed = float(value.strip())
        except ValueError:
            return None
        return parsed if math.isfinite(parsed) else None
    return None


def _integer(value: Any) -> int | None:
    num = _number(value)
    if num is None or num != int(num):
        return None
    return int(num)


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
    return None


class _Reader:
    """Typed access to one mapping's fields; a bad value is recorded, the default used."""

    def __init__(
        self, data: Mapping[str, Any], problems: _Problems, host: str | None, prefix: str = ""
    ) -> None:
        self.data = data
        self.p = problems
        self.host = host
        self.prefix = prefix  # section name for messages, e.g. "coordinator."

    def line(self, key: str | None = None) -> int | None:
        return _line_of(self.data, key)

    def bad(self, key: str, text: str) -> None:
        self.p.error(self.line(key), self.host, f"{self.prefix}{key} {text}")

    def get(self, key: str) -> Any:
        value = self.data.get(key, _MISSING)
        return _MISSING if value is None else value

    def string(self, key: str, default: str = "") -> str:
        value = self.get(key)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.bad(key, f"must be a string, got {value!r}")
            return default
        return str(value).strip()

    def port(self, key: str, default: int) -> int:
        value = self.get(key)
        if value is _MISSING:
            return default
        port = _integer(value)
        if port is None or not 1 <= port <= 65535:
            self.bad(key, f"must be a port number 1-65535, got {value!r}")
            return default
        return port

    def count(self, key: str, default: int, hi: int) -> int:
        value = self.get(key)
        if value is _MISSING:
            return default
        n = _integer(value)
        if n is None or not 0 <= n <= hi:
            self.bad(key, f"must be a whole number 0-{hi}, got {value!r}")
            return default
        return n

    def amount(self, key: str, default: float) -> float:
        value = self.get(key)
        if value is _MISSING:
            return default
        n = _number(value)
        if n is None:
            self.bad(key, f"must be a number, got {value!r}")
            return default
        if n < 0:
            self.bad(key, f"must not be negative, got {value!r}")
            return default
        return n

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is _MISSING:
            return default
        b = _boolean(value)
        if b is None:
            self.bad(key, f"must be true or false, got {value!r}")
            return default
        return b

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(key)
        if value is _MISSING:
            return default
        text = str(value).strip().lower()
        if text not in choices:
            self.bad(key, f"must be one of {', '.join(choices)}, got {value!r}")
            return default
        return text

    def unknown_keys(self, allowed: tuple[str, ...], what: str) -> None:
        for key in self.data:
            if key not in allowed:
                self.p.error(
                    self.line(key),
                    self.host,
                    f"unknown {what} {key!r}{_suggest(str(key), allowed)}",
                )


def _valid_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(text))


def _build_host(
    name: str, data: Any, line: int | None, coord: CoordinatorSettings, p: _Problems
) -> HostSpec | None:
    if not isinstance(data, Mapping):
        p.error(line, name, f"expected a mapping of host fields, got {data!r}")
        return None
    r = _Reader(data, p, name)
    r.unknown_keys((*HOST_FIELDS, "name"), "field")
    tailscale_ip = r.string("tailscale_ip")
    if tailscale_ip:
        try:
            ipaddress.ip_address(tailscale_ip)
        except ValueError:
            r.bad("tailscale_ip", f"must be an IP address, got {tailscale_ip!r}")
    explicit_address = r.string("address")
    ssh_host = r.string("ssh_host")
    address = tailscale_ip or explicit_address or ssh_host
    if not address:
        p.error(line, name, "needs tailscale_ip, address or ssh_host: peers cannot reach it")
    for key, value in (("address", explicit_address), ("ssh_host", ssh_host)):
        if value and not _valid_address(value):
            r.bad(key, f"must be an IP address or host name, got {value!r}")

    gpu_raw = r.string("gpu")
    key = normalize_gpu_name(gpu_raw, warn=False)
    gpu_count = r.count("gpu_count", 0 if key == CPU else 1, 64)
    gpu = key if gpu_count > 0 else CPU
    if gpu_count > 0 and gpu == CPU:
        r.bad("gpu_count", f"is {gpu_count} but gpu is not set (name the GPU model)")
    if gpu == UNKNOWN:
        p.warn(r.line("gpu"), name, f"unknown GPU {gpu_raw!r}: ranked conservatively, never trains")
    gpu_vram = r.amount("gpu_vram_gb", typical_vram_gb(gpu) if gpu_count else 0.0)
    if gpu_count == 0 and gpu_vram > 0:
        r.bad("gpu_vram_gb", "is set on a host without GPUs (set gpu and gpu_count)")
        gpu_vram = 0.0

    default_role = "gpu" if gpu_count > 0 else "cpu"
    role = r.choice("role", ROLES, default_role)
    if role == "gpu" and gpu_count == 0:
        r.bad("role", "is gpu but the host has no GPU (set gpu and gpu_count)")
    status = r.choice("status", STATUSES, "ready")
    workers = role != "broker"
    capable = gpu_count > 0 and can_train(gpu, gpu_vram, get_p2p_config())
    training = r.flag("training_enabled", workers and capable)
    if training and not capable:
        p.warn(
            r.line("training_enabled"),
            name,
            f"training_enabled but {gpu} with {gpu_vram:g} GB is below TRAINING_MIN_POWER/"
            "TRAINING_MIN_VRAM_GB: the scheduler will not send it training",
        )
    return HostSpec(
        name=name,
        address=address,
        ssh_host=ssh_host or address,
        ssh_user=r.string("ssh_user", DEFAULT_SSH_USER) or DEFAULT_SSH_USER,
        ssh_port=r.port("ssh_port", 22),
        gpu=gpu,
        gpu_count=gpu_count,
        gpu_vram_gb=gpu_vram,
        memory_gb=r.amount("memory_gb", 0.0),
        cpus=r.count("cpus", 0, 4096),
        role=role,
        status=status,
        selfplay_enabled=r.flag("selfplay_enabled", workers),
        training_enabled=training,
        status_port=r.port("status_port", coord.status_port),
        swim_port=r.port("swim_port", coord.swim_port),
        raft_port=r.port("raft_port", coord.raft_port),
        line=line,
    )


def _build_coordinator(data: Any, p: _Problems) -> CoordinatorSettings:
    if data is None:
        return CoordinatorSettings()
    if not isinstance(data, Mapping):
        p.error(_line_of(data), None, f"coordinator must be a mapping, got {data!r}")
        return CoordinatorSettings()
    r = _Reader(data, p, None, prefix="coordinator.")
    r.unknown_keys(COORDINATOR_FIELDS, "coordinator setting")
    d = CoordinatorSettings()

    broker = r.string("broker_host") or None
    return CoordinatorSettings(
        status_port=r.port("status_port", d.status_port),
        swim_port=r.port("swim_port", d.swim_port),
        raft_port=r.port("raft_port", d.raft_port),
        broker_host=broker,
        broker_port=r.port("broker_port", d.broker_port),
        flower_port=r.port("flower_port", d.flower_port),
    )


def _check_ports(hosts: list[HostSpec], p: _Problems) -> None:
    seen: dict[tuple[str, str, int], str] = {}
    for h in hosts:
        if h.status == "retired":
            continue
        if h.status_port == h.raft_port:
            p.error(h.line, h.name, f"status_port and raft_port are both {h.status_port}")
        for proto, key, port in (
            ("tcp", "status_port", h.status_port),
            ("tcp", "raft_port", h.raft_port),
            ("udp", "swim_port", h.swim_port),
        ):
            slot = (h.address, proto, port)
            other = seen.get(slot)
            if other and other != h.name:
                p.error(
                    h.line,
                    h.name,
                    f"{key} {port} on {h.address} is already used by host {other}; "
                    "hosts sharing an address need their own ports",
                )
            seen.setdefault(slot, h.name)


def _build_voters(
    data: Any, line: int | None, names: set[str], hosts: dict[str, HostSpec], p: _Problems
) -> tuple[str, ...]:
    if data is None:
        return ()
    if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
        p.error(line, None, f"raft_voters must be a list of host names, got {data!r}")
        return ()
    voters = tuple(data)
    if len(voters) % 2 == 0 and voters:
        p.error(
            line,
            None,
            f"raft_voters has {len(voters)} hosts: use an odd number (3 or 5), or a split "
            "vote can leave the fleet without a leader",
        )
    if len(voters) > 7:
        p.error(line, None, f"raft_voters has {len(voters)} hosts: at most 7 (3 or 5 advised)")
    for v in sorted({v for v in voters if voters.count(v) > 1}):
        p.error(line, None, f"raft_voters names {v} more than once")
    for v in voters:
        if v not in names:
            p.error(
                line,
                None,
                f"raft_voters names unknown host {v!r}{_suggest(v, tuple(sorted(names)))}",
            )
        elif v not in hosts:  # named, but its entry is broken: reported already
            continue
        elif hosts[v].status == "retired":
            p.error(line, v, "is a raft voter but retired: replace it in raft_voters")
        elif hosts[v].status == "offline":
            p.warn(line, v, "is a raft voter but offline: the fleet has one vote fewer")
    return voters


def _host_entries(data: Mapping[str, Any], p: _Problems) -> list[tuple[str, Any, int | None]]:
    """(name, fields, line) per host, from the mapping form or the list-of-hosts form."""
    raw = data.get("hosts")
    entries: list[tuple[str, Any, int | None]] = []
    if isinstance(raw, Mapping) and raw:
        for key, line in getattr(raw, "duplicates", []):
            first = _line_of(raw, key)
            p.error(
                line, str(key), f"is defined again (first at line {first}): names must be unique"
            )
        for name, spec in raw.items():
            entries.append((str(name), {} if spec is None else spec, _line_of(raw, name)))
    elif isinstance(raw, list) and raw:
        for i, item in enumerate(raw):
            name = item.get("name") if isinstance(item, Mapping) else None
            if not isinstance(name, str) or not name:
                p.error(_line_of(item), None, f"hosts[{i}] needs a name, got {item!r}")
                continue
            entries.append((name, item, _line_of(item)))
    else:
        p.error(
            _line_of(data, "hosts"),
            None,
            "hosts must be a non-empty mapping of host name to fields (or a list with names)",
        )
    return entries


def _build(data: Any, path: str, warn: bool = True) -> Inventory:
    p = _Problems(path)
    if not isinstance(data, Mapping):
        raise InventoryError(
            [f"{path}: expected a mapping with hosts, raft_voters and coordinator, got {data!r}"]
        )
    for key, line in getattr(data, "duplicates", []):
        p.error(line, None, f"top-level key {key!r} appears twice (the first one is used)")
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            p.error(
                _line_of(data, key),
                None,
                f"unknown key {key!r}{_suggest(str(key), TOP_LEVEL_KEYS)}",
            )
    coord = _build_coordinator(data.get("coordinator"), p)

    hosts: list[HostSpec] = []
    entries = _host_entries(data, p)
    first_line: dict[str, int | None] = {}
    for name, spec, line in entries:
        if name in first_line:
            where = f"line {first_line[name]}" if first_line[name] else "earlier"
            p.error(line, name, f"is defined again (first at {where}): names must be unique")
            continue
        first_line[name] = line
        if not _NAME.match(name):
            p.error(line, None, f"host name {name!r} must be letters, digits, '.', '_' or '-'")
            continue
        host = _build_host(name, spec, line, coord, p)
        if host is not None:
            hosts.append(host)
    _check_ports(hosts, p)

    by_name = {h.name: h for h in hosts}
    names = set(by_name) | {name for name, _spec, _line in entries}
    voters = _build_voters(
        data.get("raft_voters"), _line_of(data, "raft_voters"), names, by_name, p
    )

    brokers = [h.name for h in hosts if h.role == "broker"]
    if coord.broker_host is None and len(brokers) > 1:
        p.error(
            None,
            None,
            f"several hosts have role broker ({', '.join(brokers)}): set coordinator.broker_host",
        )
    elif coord.broker_host is None and brokers:
        coord = CoordinatorSettings(**{**coord.__dict__, "broker_host": brokers[0]})
    elif coord.broker_host is not None and coord.broker_host not in names:
        p.error(
            _line_of(data.get("coordinator"), "broker_host"),
            None,
            f"coordinator.broker_host names unknown host {coord.broker_host!r}",
        )

    if p.errors:
        raise InventoryError(p.sorted(p.errors))
    if warn:
        for w in p.warnings:
            log.warning("%s", w)
    return Inventory(
        hosts=tuple(hosts),
        raft_voters=voters,
        coordinator=coord,
        path=path,
        warnings=tuple(p.sorted(p.warnings)),
    )


# --- public entry points -------------------------------------------------------------------


def loads(text: str, path: str = "<string>", *, warn: bool = True) -> Inventory:
    """Parse and validate ``distributed_hosts.yaml`` text; every problem in one InventoryError."""
    try:
        _check_shape(text, path)  # alias bombs and deep nesting: refused before building
        data = yaml.load(text, Loader=_LineLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = getattr(exc, "problem", None) or str(exc)
        raise InventoryError([f"{where}: not valid YAML: {problem}"]) from None
    if data is None:
        raise InventoryError([f"{path}: empty inventory: expected hosts, raft_voters, coordinator"])
    return _build(data, path, warn)


def load(path: str | os.PathLike[str], *, warn: bool = True) -> Inventory:
    """Read and validate a ``distributed_hosts.yaml`` file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError([f"{p}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise InventoryError([f"{p}: not UTF-8 text: {exc.reason}"]) from None
    return loads(text, str(p), warn=warn)


def to_dict(inv: Inventory) -> dict[str, Any]:
    """The inventory as plain data in file form (fields equal to their default left out)."""
    c = inv.coordinator
    coordinator: dict[str, Any] = {
        "status_port": c.status_port,
        "swim_port": c.swim_port,
        "raft_port": c.raft_port,
        "broker_port": c.broker_port,
        "flower_port": c.flower_port,
    }
    if c.broker_host:
        coordinator["broker_host"] = c.broker_host
    hosts: dict[str, Any] = {}
    for h in inv.hosts:
        d: dict[str, Any] = {"address": h.address}
        if h.ssh_host != h.address:
            d["ssh_host"] = h.ssh_host
        d["ssh_user"] = h.ssh_user
        if h.ssh_port != 22:
            d["ssh_port"] = h.ssh_port
        if h.gpu_count:
            d.update(gpu=h.gpu, gpu_count=h.gpu_count, gpu_vram_gb=h.gpu_vram_gb)
        if h.memory_gb:
            d["memory_gb"] = h.memory_gb
        if h.cpus:
            d["cpus"] = h.cpus
        d.update(
            role=h.role,
            status=h.status,
            selfplay_enabled=h.selfplay_enabled,
            training_enabled=h.training_enabled,
        )
        for key in ("status_port", "swim_port", "raft_port"):
            if getattr(h, key) != getattr(c, key):
                d[key] = getattr(h, key)
        hosts[h.name] = d
    return {"hosts": hosts, "raft_voters": list(inv.raft_voters), "coordinator": coordinator}


def dump(inv: Inventory) -> str:
    """YAML text that :func:`loads` reads back to an equal Inventory."""
    header = "# distributed_hosts.yaml: generated by `ringrift-fleet inventory generate`.\n"
    return header + yaml.safe_dump(to_dict(inv), sort_keys=False, default_flow_style=False)


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Replace ``path`` with ``text`` in one step: readers see the old or the new file."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


# --- Ansible -----------------------------------------------------------------------------

# Ansible names for host fields; the plain field names work too.
_ANSIBLE_ALIASES = {
    "ansible_host": "ssh_host",
    "ansible_user": "ssh_user",
    "ansible_port": "ssh_port",
}
# Fleet-wide settings, set in group_vars/all: ringrift_<coordinator field>.
_COORD_VARS = {f"ringrift_{k}": k for k in COORDINATOR_FIELDS}
VOTER_GROUPS = ("voters", "raft_voters")
BROKER_GROUP = "broker"


def _ansible_inventory_binary() -> str:
    local = Path(sys.executable).parent / "ansible-inventory"
    if local.exists():
        return str(local)
    found = shutil.which("ansible-inventory")
    if not found:
        raise InventoryError(["ansible-inventory not found: install ansible-core (make deps)"])
    return found


def _run_ansible_inventory(path: str) -> dict[str, Any]:
    cmd = [_ansible_inventory_binary(), "-i", path, "--list"]
    env = dict(os.environ, ANSIBLE_INVENTORY_UNPARSED_FAILED="true", ANSIBLE_NOCOLOR="1")
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=120, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        raise InventoryError([f"{path}: ansible-inventory took over 120 s"]) from None
    if proc.returncode != 0:
        detail = " ".join(proc.stderr.split())[-600:] or f"exit status {proc.returncode}"
        raise InventoryError([f"{path}: ansible-inventory could not read it: {detail}"])
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise InventoryError([f"{path}: ansible-inventory printed no JSON: {exc}"]) from None
    if not isinstance(data, dict):
        raise InventoryError([f"{path}: ansible-inventory printed unexpected output"])
    return data


def _group_hosts(data: Mapping[str, Any], group: str, seen: set[str] | None = None) -> list[str]:
    """Hosts of ``group`` and its children, in inventory order, each once."""
    seen = set() if seen is None else seen
    if group in seen or not isinstance(data.get(group), Mapping):
        return []
    seen.add(group)
    out: list[str] = list(data[group].get("hosts", []))
    for child in data[group].get("children", []):
        out.extend(h for h in _group_hosts(data, child, seen) if h not in out)
    return out


def from_ansible_data(data: Mapping[str, Any], path: str, *, warn: bool = True) -> Inventory:
    """Build an Inventory from ``ansible-inventory --list`` JSON (pure; see from_ansible)."""
    hostvars: Mapping[str, Any] = data.get("_meta", {}).get("hostvars", {})
    names = sorted(set(_group_hosts(data, "all")) | set(hostvars))
    brokers = set(_group_hosts(data, BROKER_GROUP))
    voters: list[str] = []
    for g in VOTER_GROUPS:
        voters += [h for h in _group_hosts(data, g) if h not in voters]

    settings: dict[str, dict[str, list[str]]] = {}  # var -> repr(value) -> hosts
    values: dict[tuple[str, str], Any] = {}
    hosts: dict[str, dict[str, Any]] = {}
    for name in names:
        hv = hostvars.get(name, {}) or {}
        spec: dict[str, Any] = {f: hv[f] for f in HOST_FIELDS if f in hv}
        for var, target in _ANSIBLE_ALIASES.items():
            if var in hv:
                spec.setdefault(target, hv[var])  # ssh_host etc. win over ansible_host
        for var in _COORD_VARS:
            if var in hv:
                settings.setdefault(var, {}).setdefault(repr(hv[var]), []).append(name)
                values[(var, repr(hv[var]))] = hv[var]
        if name in brokers and len(brokers) == 1:  # 3 or 5: a Sentinel set on ordinary hosts
            spec.setdefault("role", "broker")
        hosts[name] = spec
    problems = _Problems(path)
    coordinator: dict[str, Any] = {}
    for var, seen in settings.items():
        if len(seen) > 1:
            which = "; ".join(f"{v} on {', '.join(h)}" for v, h in seen.items())
            problems.error(
                None,
                None,
                f"{var} differs between hosts ({which}): set it once in group_vars/all, "
                f"or per host as {_COORD_VARS[var]}",
            )
        coordinator[_COORD_VARS[var]] = values[(var, next(iter(seen)))]
    if len(brokers) > 1:  # a Sentinel set: Flower and monitoring look at the first host
        coordinator.setdefault("broker_host", sorted(brokers)[0])
    if problems.errors:
        raise InventoryError(problems.errors)
    doc: dict[str, Any] = {"hosts": hosts, "raft_voters": voters or None}
    if coordinator:
        doc["coordinator"] = coordinator
    return _build(doc, path, warn)


def from_ansible(
    ansible_inventory_path: str | os.PathLike[str],
    runner: Callable[[str], dict[str, Any]] = _run_ansible_inventory,
    *,
    warn: bool = True,
) -> Inventory:
    """Read an Ansible inventory (INI or YAML, with group_vars) through ``ansible-inventory``.

    Groups: ``voters`` are the Raft voters, ``broker`` hosts get role broker.
    Host variables: the host fields of distributed_hosts.yaml (``gpu``, ``gpu_count``,
    ``gpu_vram_gb`` …), ``ansible_host/_user/_port`` for ssh_*; ``ringrift_<setting>``
    in group_vars/all for the coordinator section.  Other variables are ignored.
    """
    path = str(ansible_inventory_path)
    if not Path(path).exists():
        raise InventoryError([f"{path}: no such file or directory"])
    return from_ansible_data(runner(path), path, warn=warn)
