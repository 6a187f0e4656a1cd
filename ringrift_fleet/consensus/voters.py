"""Who votes: the inventory's ``raft_voters`` reduced to the addresses consensus needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ringrift_fleet.config import P2PConfig


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


def _attr(obj: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value not in (None, ""):
            return value
    return default


def voters_from_inventory(inventory: Any, config: P2PConfig) -> list[Voter]:
    """The inventory's voters in its order; per-host ports override the config's."""
    names = list(_attr(inventory, "raft_voters", default=[]) or [])
    hosts = {(_attr(h, "name")): h for h in _attr(inventory, "hosts", default=[]) or []}
    out = []
    for name in names:
        host = hosts.get(name)
        if host is None:
            continue
        out.append(
            Voter(
                name=name,
                host=str(_attr(host, "address", "ssh_host", default=name)),
                raft_port=int(_attr(host, "raft_port", default=config.RAFT_PORT)),
                status_port=int(_attr(host, "status_port", default=config.DEFAULT_PORT)),
                priority=int(_attr(host, "bully_priority", default=config.BULLY_PRIORITY)),
            )
        )
    return out


def load_inventory(path: str) -> Any:
    """The foundation's inventory loader (raises InventoryError naming file:line)."""
    from ringrift_fleet import inventory as inv_mod

    return inv_mod.load(path)
