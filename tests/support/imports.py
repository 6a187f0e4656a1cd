"""What a process imported: the packages that cost megabytes, and the modules
``-X importtime`` (PYTHONPROFILEIMPORTTIME) listed, and a one-host inventory for
a lone coordinator.  Shared by the import-weight tests and the RSS benchmark."""

from __future__ import annotations

import socket
from typing import Any

from ringrift_fleet.localhost import free_port

# Packages a parser, a help text or a sending coordinator has no use for; each
# costs megabytes resident.
HEAVY = (
    "numpy",
    "celery",
    "kombu",
    "aiohttp",
    "pysyncobj",
    "matplotlib",
    "redis",
    "yaml",
    "psutil",
    "pynvml",
)


def imported(log: str) -> set[str]:
    """Every module an ``-X importtime`` log says was imported."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in log.splitlines()
        if line.startswith("import time:") and "|" in line and "imported package" not in line
    }


def tops(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def one_host_inventory(name: str, status_port: int) -> dict[str, Any]:
    """distributed_hosts.yaml for one coordinator on 127.0.0.1 (its own Raft voter)."""
    return {
        "hosts": {
            name: {
                "address": "127.0.0.1",
                "gpu": "NVIDIA H100 80GB HBM3",
                "gpu_count": 1,
                "status_port": status_port,
                "raft_port": free_port(),
                "swim_port": free_port(socket.SOCK_DGRAM),
            }
        },
        "raft_voters": [name],
    }
