"""The deployment test bed from Python: nspawn hosts, SSH, ansible from the controller namespace.

``scripts/deploy-testbed/up.sh`` and ``down.sh`` do the work (and clean up after
themselves on failure); this wraps them for pytest fixtures and runs commands
inside the controller namespace, the only place that addresses the hosts.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "deploy-testbed"
VENV_BIN = REPO / ".venv" / "bin"
VAULT_PASSWORD = "testbed-vault-password"
# One test bed per machine: its namespaces, bridge and 10.203.0.0/24 are fixed.
LOCK_FILE = Path("/run/lock/ringrift-deploy-testbed.lock")
SECRETS = {
    "vault_cluster_key": "testbed-cluster-key-0123456789abcdef",
    "vault_broker_password": "testbedBrokerPassword0123456789",
    "vault_flower_password": "testbedFlowerPw0123",
}


@contextlib.contextmanager
def exclusive(timeout: float = 1200) -> Iterator[None]:
    """Hold the machine-wide test bed lock (another `make test` may be running)."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "w") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{LOCK_FILE} held for over {timeout:.0f}s") from None
                time.sleep(2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# `make test` runs this level beside the others on the same cores (load ~10 on 2
# cores): the containers' coordinators then go up to ~1 s without CPU, and the
# default 0.8-1.6 s Raft election timeouts turn that into elections.  A host that
# busy is what RINGRIFT_P2P_RAFT_*_TIMEOUT are for (docs/consensus.md).
BUSY_BOX_ENV = {"RINGRIFT_P2P_RAFT_MIN_TIMEOUT": "1.5", "RINGRIFT_P2P_RAFT_MAX_TIMEOUT": "3.0"}


@dataclass
class NspawnTestbed:
    rundir: Path
    hosts: dict[str, str] = field(default_factory=dict)  # name -> address
    ctl_ns: str = "rrdep-ctl"

    @classmethod
    def up(cls, rundir: Path, count: int = 3, timeout: float = 900) -> NspawnTestbed:
        subprocess.run(
            [str(SCRIPTS / "up.sh"), str(rundir), str(count)], check=True, timeout=timeout
        )
        env = dict(
            line.split("=", 1)
            for line in (rundir / "testbed.env").read_text().splitlines()
            if "=" in line
        )
        hosts = {f"h{i}": env[f"HOST_{i}"] for i in range(1, count + 1)}
        return cls(rundir=rundir, hosts=hosts, ctl_ns=env["CTL_NS"])

    def down(self) -> None:
        subprocess.run([str(SCRIPTS / "down.sh"), str(self.rundir)], check=False, timeout=120)

    @property
    def key(self) -> Path:
        return self.rundir / "id_ed25519"

    def ctl(
        self, argv: list[str], timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the controller namespace (output captured, never raises on rc)."""
        full_env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"}
        full_env["PATH"] = f"{VENV_BIN}:{full_env.get('PATH', '')}"
        full_env.update(env or {})
        return subprocess.run(
            ["ip", "netns", "exec", self.ctl_ns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            check=False,
            cwd=REPO,
        )

    def ssh(self, host: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.ctl(
            [
                "ssh",
                "-q",
                "-i",
                str(self.key),
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "ConnectTimeout=5",
                f"root@{self.hosts[host]}",
                command,
            ],
            timeout=timeout,
        )

    def write_inventory(self, wheelhouse: Path) -> Path:
        """A YAML inventory with the secrets in an Ansible Vault file, as docs/deploy.md shows."""
        inv = self.rundir / "inventory"
        all_vars = inv / "group_vars" / "all"
        all_vars.mkdir(parents=True, exist_ok=True)
        hosts: dict[str, dict[str, object]] = {}
        for name, addr in self.hosts.items():
            hosts[name] = {"ansible_host": addr, "memory_gb": 2, "cpus": 1}
        # The broker is the production default (docs/deploy.md): a Sentinel set on the
        # voters, h1 its first primary; those hosts keep their workers.
        doc = {
            "all": {
                "hosts": hosts,
                "children": {
                    "voters": {"hosts": {n: None for n in self.hosts}},
                    "broker": {"hosts": {n: None for n in self.hosts}},
                },
            }
        }
        (inv / "hosts.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
        settings = {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "common_install_source": "wheelhouse",
            "common_wheelhouse_dir": str(wheelhouse),
            "common_fleet_cli": str(VENV_BIN / "ringrift-fleet"),
            "common_build_dir": str(self.rundir / "build"),
            "common_cluster_key": "{{ vault_cluster_key }}",
            "common_broker_password": "{{ vault_broker_password }}",
            "flower_password": "{{ vault_flower_password }}",
            # Raft among the three voters: a new leader within seconds of a kill.
            "common_raft_enabled": True,
            "common_consensus_mode": "raft",
            "coordinator_leader_wait_retries": 90,
            "coordinator_leader_wait_delay": 1,
            # Long enough that the survivors elect a new leader before systemd
            # brings the killed coordinator back.
            "coordinator_restart_sec": 15,
            "common_extra_env": dict(BUSY_BOX_ENV),
        }
        (all_vars / "main.yml").write_text(yaml.safe_dump(settings, sort_keys=False))
        password_file = self.rundir / "vault-password"
        password_file.write_text(VAULT_PASSWORD)
        password_file.chmod(0o600)
        plain = all_vars / "vault.yml"
        plain.write_text(yaml.safe_dump(SECRETS))
        subprocess.run(
            [
                str(VENV_BIN / "ansible-vault"),
                "encrypt",
                "--vault-password-file",
                str(password_file),
                str(plain),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return inv / "hosts.yml"

    def ansible_env(self) -> dict[str, str]:
        """Only what docs/deploy.md sets: the settings come from ./ansible.cfg.

        An ANSIBLE_CONFIG inherited from the caller's shell is dropped, so the
        test sees what an operator following the docs sees.
        """
        return {"ANSIBLE_VAULT_PASSWORD_FILE": str(self.rundir / "vault-password")}

    def playbook(
        self, inventory: Path, *extra: str, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """docs/deploy.md's command, from the checkout root: ``ansible-playbook -i INV
        ansible/deploy.yml ...`` (ansible-playbook from the venv on PATH)."""
        return self.ctl(
            ["ansible-playbook", "-i", str(inventory), "ansible/deploy.yml", *extra],
            timeout=timeout,
            env=self.ansible_env(),
        )


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP lines -> {host: {ok: n, changed: n, failed: n, …}}."""
    result: dict[str, dict[str, int]] = {}
    in_recap = False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        if in_recap and ":" in line:
            host, _, counts = line.partition(":")
            fields = dict(part.split("=") for part in counts.split() if "=" in part)
            result[host.strip()] = {k: int(v) for k, v in fields.items()}
    return result


def quote(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
