"""The reference README examples run as written against ringrift_fleet.

Each example is kept verbatim (``app.p2p`` renamed ``ringrift_fleet``) in
``tests/unit/seed_examples/``; here each one is executed and what it prints or
sends is checked.  Webhook examples name real Slack/Discord URLs, so the one
transport seam (``notifications._post``) is pointed at a local recording server:
the example code itself runs unchanged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ringrift_fleet import notifications
from ringrift_fleet.config import reload_feature_flags, reload_p2p_config
from ringrift_fleet.models import JobStatus, JobType, NodeHealth, NodeRole
from tests.support.prereq import need
from tests.support.webhook_server import RecordingServer, recording_server

pytestmark = pytest.mark.timeout(60)

EXAMPLES = Path(__file__).parent / "seed_examples"
REFERENCE_DIRS = (
    Path("/work/shared/reference"),
    Path(__file__).parents[2] / "shared" / "reference",
    Path(__file__).parents[3] / "shared" / "reference",  # shared/ beside the clone (CI)
)
ORCHESTRATION = "001_02381373b298663c.txt"
ADAPTER = "000_1b0aaf31d1295677.txt"

# example file -> (reference document, section heading, index of the python block in it)
SOURCES = {
    "orchestration_config.py": (ORCHESTRATION, "`config.py` - Configuration", 0),
    "orchestration_models_enums.py": (ORCHESTRATION, "`models.py` - Data Structures", 0),
    "orchestration_resource_metrics.py": (ORCHESTRATION, "`models.py` - Data Structures", 1),
    "orchestration_training.py": (ORCHESTRATION, "`training.py` - Training Coordination", 0),
    "orchestration_webhooks.py": (ORCHESTRATION, "`notifications.py` - Webhooks", 0),
    "adapter_configuration.py": (ADAPTER, "Configuration", 0),
    "adapter_training.py": (ADAPTER, "Training Coordination", 0),
    "adapter_webhooks.py": (ADAPTER, "Webhook Notifications", 0),
    # run by tests/integration/test_consensus_examples.py (they start SWIM and Raft)
    "adapter_swim.py": (ADAPTER, "SWIM Adapter", 0),
    "adapter_raft.py": (ADAPTER, "Raft State Machines", 0),
    "adapter_hybrid_coordinator.py": (ADAPTER, "Hybrid Coordinator", 0),
}


def example_code(name: str) -> str:
    """The example as copied: the file minus its four-line provenance header."""
    text = (EXAMPLES / name).read_text()
    header, _, code = text.partition("# fmt: off\n")
    assert header.startswith("# Seed example:"), name
    return code


def python_blocks(document: str) -> list[tuple[str, str]]:
    """(section heading, code) for every ```python block of a reference document."""
    blocks: list[tuple[str, str]] = []
    heading = ""
    lines = document.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        match = re.match(r"#{2,3} (.+)", lines[i])
        if match:
            heading = match.group(1).strip()
        if lines[i].startswith("```python"):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            blocks.append((heading, "".join(lines[i + 1 : end])))
            i = end
        i += 1
    return blocks


@pytest.fixture
def clean_env(fresh_config: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Documented defaults: no RINGRIFT_* variables from the surrounding shell."""
    for var in [v for v in os.environ if v.startswith("RINGRIFT_")]:
        fresh_config.delenv(var)
    reload_p2p_config()
    reload_feature_flags()
    yield fresh_config


def run_example(name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": f"seed_example_{name[:-3]}"}
    exec(compile(example_code(name), str(EXAMPLES / name), "exec"), namespace)
    return namespace


@pytest.fixture
def webhook_sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RecordingServer, list[str]]]:
    """Every webhook POST goes to a local recording server; the URLs it was meant for are kept."""
    intended: list[str] = []
    real_post = notifications._post
    with recording_server() as server:

        def to_local(
            url: str, body: bytes, headers: Mapping[str, str], timeout: float
        ) -> tuple[int, float | None]:
            intended.append(url)
            return real_post(server.url("/" + url.split("://", 1)[1]), body, headers, timeout)

        monkeypatch.setattr(notifications, "_post", to_local)
        yield server, intended
        assert notifications.flush(10)


# --- the examples, run -------------------------------------------------------------------------


def test_orchestration_config(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = run_example("orchestration_config.py")
    assert capsys.readouterr().out.splitlines() == [
        "Port: 8770",
        "Heartbeat: 5.0s",
        "Leader lease: 30.0s",
        "1.0",
        "1.2",
    ]
    assert isinstance(ns["config"], ns["P2PConfig"])


def test_orchestration_config_honours_the_documented_overrides(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("RINGRIFT_P2P_PORT", "8771")
    clean_env.setenv("RINGRIFT_P2P_HEARTBEAT_INTERVAL", "10")
    clean_env.setenv("RINGRIFT_P2P_LEADER_LEASE", "60")
    clean_env.setenv("RINGRIFT_P2P_PEER_TIMEOUT", "30")
    reload_p2p_config()
    run_example("orchestration_config.py")
    assert capsys.readouterr().out.splitlines()[:3] == [
        "Port: 8771",
        "Heartbeat: 10.0s",
        "Leader lease: 60.0s",
    ]


def test_orchestration_model_enums() -> None:
    ns = run_example("orchestration_models_enums.py")
    assert ns["role"] is NodeRole.LEADER
    assert ns["job"] is JobType.SELFPLAY
    assert ns["status"] is JobStatus.RUNNING
    assert ns["health"] is NodeHealth.HEALTHY


def test_orchestration_resource_metrics(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_example("orchestration_resource_metrics.py")
    # 0.35·45 + 0.2·60 + 0.35·80 + 0.1·55 = 61.25 %, and nothing is over its threshold
    assert capsys.readouterr().out.splitlines() == ["Load score: 0.6125", "Overloaded: False"]


def test_orchestration_training(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = run_example("orchestration_training.py")
    assert capsys.readouterr().out.splitlines() == ["Min games: 5000", "Staleness hours: 24.0"]
    assert ns["priority"] > 0
    should_train = ns["should_train"]
    assert should_train and should_train.should_train is True
    assert "6000 new games" in should_train.reason


def test_orchestration_webhooks(webhook_sink: tuple[RecordingServer, list[str]]) -> None:
    server, intended = webhook_sink
    run_example("orchestration_webhooks.py")
    assert notifications.flush(10)
    assert intended == ["https://hooks.slack.com/..."]
    (request,) = server.requests
    attachment = request.body["attachments"][0]  # Slack's own format, chosen from the URL
    assert attachment["footer"].startswith("ringrift_fleet · training_complete")
    assert {f["title"]: f["value"] for f in attachment["fields"]} == {
        "model": "hex8_2p_v3",
        "accuracy": "0.76",
    }


def test_adapter_configuration(clean_env: pytest.MonkeyPatch) -> None:
    ns = run_example("adapter_configuration.py")
    config = ns["config"]
    # this README's comments quote older defaults; the foundation issue fixes 5/15/30 s
    assert (config.HEARTBEAT_INTERVAL, config.PEER_TIMEOUT, config.LEADER_LEASE_DURATION) == (
        5.0,
        15.0,
        30.0,
    )
    assert config.DISK_CRITICAL_THRESHOLD == 70.0


def test_adapter_training(clean_env: pytest.MonkeyPatch) -> None:
    ns = run_example("adapter_training.py")
    assert ns["should_train"] is True  # 5000 games >= MIN_GAMES, 12 h > the 2 h rate limit
    assert "MIN_GAMES" in ns["reason"]
    assert ns["priority"] > 0


def test_adapter_webhooks(
    clean_env: pytest.MonkeyPatch, webhook_sink: tuple[RecordingServer, list[str]]
) -> None:
    server, intended = webhook_sink
    # the README's "Configure via environment" step, with its placeholder URLs
    clean_env.setenv("RINGRIFT_SLACK_WEBHOOK_URL", "https://hooks.slack.com/...")
    clean_env.setenv("RINGRIFT_DISCORD_WEBHOOK_URL", "https://discord.com/api/webhooks/...")
    run_example("adapter_webhooks.py")
    assert notifications.flush(10)
    assert sorted(intended) == [
        "https://discord.com/api/webhooks/...",
        "https://hooks.slack.com/...",
    ]
    bodies = server.bodies()
    slack = next(b for b in bodies if "attachments" in b)["attachments"][0]
    discord = next(b for b in bodies if "embeds" in b)["embeds"][0]
    assert slack["title"] == discord["title"] == "Training Complete: hex8_2p"
    assert slack["text"] == discord["description"] == "Elo +15.3 after 2.5h training"
    assert slack["color"] == notifications.SEVERITY_COLORS["info"]
    assert discord["color"] == int(notifications.SEVERITY_COLORS["info"][1:], 16)


# --- the copies still match the reference ---------------------------------------------------------


def test_every_foundation_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(SOURCES)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_copy_matches_the_reference(name: str) -> None:
    ref_dir = next((d for d in REFERENCE_DIRS if d.is_dir()), None)
    need(ref_dir is not None, "the reference documents (/work/shared/reference)")
    assert ref_dir is not None
    document, heading, index = SOURCES[name]
    blocks = [code for h, code in python_blocks((ref_dir / document).read_text()) if h == heading]
    assert example_code(name) == blocks[index].replace("app.p2p", "ringrift_fleet")


def reference_imports() -> list[str]:
    """Every ``from app.p2p… import …`` statement of both reference documents, renamed."""
    ref_dir = next((d for d in REFERENCE_DIRS if d.is_dir()), None)
    need(ref_dir is not None, "the reference documents (/work/shared/reference)")
    assert ref_dir is not None
    out: list[str] = []
    for document in (ORCHESTRATION, ADAPTER):
        text = (ref_dir / document).read_text()
        out += re.findall(r"^from app\.p2p[.\w]* import [^\n]+", text, flags=re.M)
        # the module paths the file tables name (`swim_adapter.py`, `models.py` …)
        for module in re.findall(r"^\| `(\w+)\.py`", text, flags=re.M):
            out.append(f"import app.p2p.{module}")
    return sorted({line.replace("app.p2p", "ringrift_fleet") for line in out})


def test_the_seed_import_paths_are_the_ones_the_examples_use() -> None:
    lines = reference_imports()
    for needed in (
        "from ringrift_fleet.swim_adapter import SwimMembershipManager",
        "from ringrift_fleet.raft_state import create_replicated_work_queue",
        "from ringrift_fleet.hybrid_coordinator import HybridCoordinator",
        "import ringrift_fleet.notifications",
    ):
        assert needed in lines, lines
    code = "".join(example_code(name) for name in SOURCES)
    for line in lines:
        if line.startswith("from "):
            assert line in code, f"no seed example imports through: {line}"


@pytest.mark.parametrize("statement", reference_imports())
def test_every_seed_module_path_imports(statement: str) -> None:
    exec(statement, {})


def test_the_seed_key_classes_import_from_their_seed_modules() -> None:
    # the "Key Classes" lists under SWIM Adapter and Raft State Machines
    from ringrift_fleet.models import JobAssignment as ModelJobAssignment
    from ringrift_fleet.raft_state import (
        JobAssignment,
        ReplicatedJobAssignments,
        ReplicatedWorkQueue,
        WorkItem,
        create_replicated_work_queue,
    )
    from ringrift_fleet.swim_adapter import (
        HybridMembershipManager,
        SwimConfig,
        SwimMembershipManager,
    )

    assert JobAssignment is ModelJobAssignment
    assert callable(create_replicated_work_queue)
    assert issubclass(ReplicatedWorkQueue, object) and WorkItem and ReplicatedJobAssignments
    assert SwimConfig().ping_interval > 0
    assert SwimMembershipManager.from_distributed_hosts and HybridMembershipManager
