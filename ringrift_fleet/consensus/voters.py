# mypy: disallow-any-explicit
"""Who votes: the inventory's ``raft_voters`` reduced to the addresses consensus needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ringrift_fleet.config import P2PConfig

if TYPE_CHECKING:
    from ringrift_fleet.inventory import Inventory


@dataclass(frozen=True)
class Voter:
    """One voter host: where its Raft port and its :8770 status server listen."""

    name: str
    host: str
    raft_port: int
    status_port: int
    priority: int = 0  # Bully: higher wins, then the name

    @property
    def raft_address(self) -> str:
        return f"{self.host}:{self.raft_port}"

    @property
    def status_url(self) -> str:
        return f"http://{self.host}:{self.status_port}"


def _attr(obj: object, name: str, *more: str) -> object:
    """The first of ``name, *more`` that ``obj`` (an inventory object or a dict) sets."""
    for n in (name, *more):
        value = obj.get(n) if isinstance(obj, dict) else getattr(obj, n, None)
        if value not in (None, ""):
            return value
    return None


def _items(value: object) -> list[object]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _port(host: object, name: str, default: int) -> int:
    value = _attr(host, name)
    if value is None:
        return default
    if isinstance(value, (int, float, str)):
        return int(value)
    raise ValueError(f"inventory host {_attr(host, 'name')!r}: {name} must be an integer")


def voters_from_inventory(inventory: object, config: P2PConfig) -> list[Voter]:
    """The inventory's voters in its order; per-host ports override the config's.

    ``inventory`` is an :class:`~ringrift_fleet.inventory.Inventory` or the same
    shape as plain dicts."""
    names = _items(_attr(inventory, "raft_voters"))
    hosts = {_attr(h, "name"): h for h in _items(_attr(inventory, "hosts"))}
    out = []
    for name in names:
        host = hosts.get(name)
        if host is None or not isinstance(name, str):
            continue
        address = _attr(host, "address", "ssh_host")
        out.append(
            Voter(
                name=name,
                host=name if address is None else str(address),
                raft_port=_port(host, "raft_port", config.RAFT_PORT),
                status_port=_port(host, "status_port", config.DEFAULT_PORT),
                priority=_port(host, "bully_priority", config.BULLY_PRIORITY),
            )
        )
    return out


def load_inventory(path: str) -> Inventory:
    """The foundation's inventory loader (raises InventoryError naming file:line)."""
    from ringrift_fleet import inventory as inv_mod

    return inv_mod.load(path)
