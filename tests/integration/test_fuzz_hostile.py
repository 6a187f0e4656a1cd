"""Hypothesis as a hostile client: random requests to a real coordinator's :8770 server and
random YAML to ``ringrift-fleet inventory validate``.

The properties: no 5xx and no traceback in the coordinator's log, whatever the
method, path, headers, token or body; and the CLI exits 0 or 2 with no
traceback, whatever the file holds.  Bounded (a few hundred examples, no
deadline) so the module runs in well under a minute; ``FUZZ_SCALE=20`` multiplies
the examples for a longer hunt.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringrift_fleet.consensus.ledger import OPERATIONS
from tests.support.coordinators import CLUSTER_KEY, LocalFleet
from tests.support.procs import PYTHON, REPO
from tests.support.raw_http import raw_request

pytestmark = pytest.mark.integration

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))  # FUZZ_SCALE=20 for a long hunt
FUZZ = settings(
    max_examples=int(120 * SCALE),
    deadline=None,
    database=None,  # nothing written into the tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- the :8770 routes --------------------------------------------------------------------

ROUTES = [
    "/status",
    "/health",
    "/metrics",
    "/heartbeat",
    "/consensus/op",
    "/consensus/ledger",
    "/artifacts",
    "/artifacts/models/x/v0001.json",
    "/consensus/bully/lease",
    "/consensus/bully/ping",
    "/consensus/bully/release",
    "/consensus/bully/replicate",
    "/consensus/bully/yield",
    "/consensus/bully/store",
    "/fleet.json",
    "/",
    "/no/such/route",
]
# bytes that would end the request line or a header: the framing, not the content
FRAMING = b"\r\n"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def header_bytes(max_size: int = 40) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=max_size).map(lambda b: bytes(c for c in b if c not in FRAMING))


@st.composite
def targets(draw: st.DrawFn) -> bytes:
    route = draw(st.sampled_from(ROUTES))
    kind = draw(st.sampled_from(["plain", "suffix", "query", "raw"]))
    if kind == "suffix":
        return (route.rstrip("/") + "/" + urllib.parse.quote(draw(st.text(max_size=30)))).encode()
    if kind == "query":
        key = draw(st.sampled_from(["since", "prefix", "x"]))
        return f"{route}?{key}={urllib.parse.quote(draw(st.text(max_size=30)))}".encode()
    if kind == "raw":  # undecoded bytes, ../, %00 and the like, as sent
        return route.encode() + draw(header_bytes(30)).replace(b" ", b"")
    return route.encode()


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "op", "heartbeat", "bully", "empty"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "empty":
        return b""
    if kind == "op":
        value: Any = {
            "op": draw(st.sampled_from(sorted(OPERATIONS)) | st.text(max_size=10)),
            "args": draw(json_values),
        }
        if draw(st.booleans()):
            value["term"] = draw(json_values)
        if draw(st.booleans()):
            value["args"] = draw(st.dictionaries(st.sampled_from(ARG_NAMES), json_values))
    elif kind == "bully":  # the lease, release, replicate and yield messages' fields
        value = draw(
            st.dictionaries(
                st.sampled_from(BULLY_FIELDS),
                st.integers() | st.floats() | st.sampled_from(["n0", "n1", ""]) | json_values,
            )
        )
    elif kind == "heartbeat":
        value = {
            "node_id": draw(st.text(max_size=10) | json_values),
            "incarnation": draw(st.integers() | json_values),
            "summary": draw(json_values),
        }
    else:
        value = draw(json_values)
    return json.dumps(value).encode()


BULLY_FIELDS = ["candidate", "epoch", "duration", "holder", "op", "seq", "leader", "to", "term"]
ARG_NAMES = [
    "work_id",
    "payload",
    "job_id",
    "node_id",
    "token",
    "attempt",
    "status",
    "result",
    "error",
    "priority",
    "work_type",
    "name",
    "version",
    "path",
]


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
    method = draw(
        st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"PATCH", b"OPTIONS"])
    )
    headers: list[tuple[bytes, bytes]] = []
    token = draw(st.sampled_from(["none", "good", "text", "bytes", "scheme"]))
    if token == "good":
        headers.append((b"Authorization", b"Bearer " + CLUSTER_KEY.encode()))
    elif token == "text":
        headers.append((b"Authorization", ("Bearer " + draw(st.text(max_size=20))).encode()))
    elif token == "bytes":
        headers.append((b"Authorization", b"Bearer " + draw(header_bytes())))
    elif token == "scheme":
        headers.append((b"Authorization", draw(header_bytes())))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(
            st.sampled_from(
                [b"Content-Type", b"Content-Encoding", b"Range", b"Accept", b"X-Forwarded-For"]
            )
        )
        value = draw(
            st.sampled_from([b"application/json", b"gzip", b"deflate", b"br", b"bytes=5-1"])
            | header_bytes()
        )
        headers.append((name, value))
    return method, draw(targets()), headers, draw(bodies())


@pytest.fixture(scope="module", params=["raft", "bully"])
def node(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalFleet]:
    fleet = LocalFleet(tmp_path_factory.mktemp("fuzz") / "fleet", voters=1, mode=request.param)
    try:
        fleet.start_all()
        assert fleet.wait_leader(15), fleet.log("n0")
        store = fleet.workdir / "n0" / "artifacts" / "models" / "x"
        store.mkdir(parents=True, exist_ok=True)
        yield fleet
    finally:
        fleet.stop_all()


@pytest.mark.timeout(180)
def test_no_request_gets_a_5xx_or_a_traceback(node: LocalFleet) -> None:
    port = node.nodes["n0"].status_port
    seen: dict[int, int] = {}

    @FUZZ
    @given(requests())
    def one(req: tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]) -> None:
        method, target, headers, body = req
        resp = raw_request(port, method, target, headers, body, timeout=10)
        seen[resp.status] = seen.get(resp.status, 0) + 1
        assert 100 <= resp.status < 500, (req, resp.head[:300], resp.body[:300])

    one()
    assert len(seen) > 3, seen  # the requests reached more than one kind of answer
    assert raw_request(port, "GET", "/status").status == 200
    text = (node.workdir / "n0.log").read_text(errors="replace")
    assert "Traceback" not in text and "Error handling request" not in text, text[-4000:]
    assert node.running() == ["n0"]


# --- inventory validate ---------------------------------------------------------------------

YAML_CHARS = "abcdhost:_- \n\t{}[],&*!|>'\"#%@`?0123456789.<=~é\x85\u2028"


@st.composite
def inventories(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["chars", "mutated", "aliases"]))
    if kind == "chars":
        return draw(st.text(alphabet=YAML_CHARS, max_size=300))
    hosts = draw(
        st.dictionaries(
            st.text(alphabet="abcgpu-0123", min_size=1, max_size=6),
            st.dictionaries(
                st.sampled_from(
                    ["address", "gpu", "gpu_count", "gpu_vram_gb", "role", "status", "status_port"]
                ),
                json_values,
                max_size=4,
            ),
            max_size=4,
        )
    )
    doc: dict[str, Any] = {"hosts": hosts}
    if draw(st.booleans()):
        doc["raft_voters"] = draw(st.lists(st.sampled_from([*hosts, "nobody"]), max_size=4))
    text = yaml.safe_dump(doc)
    if kind == "aliases":  # anchors, aliases and merges, deep and wide
        width = draw(st.integers(1, 12))
        levels = draw(st.integers(1, 10))
        lines = [f"x0: &a0 [{', '.join(['1'] * width)}]"]
        for i in range(1, levels):
            lines.append(f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
        return "\n".join(lines) + f"\n{text}" + f"extra: *a{levels - 1}\n"
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(alphabet=YAML_CHARS, max_size=8)) + text[at:]
    return text


@pytest.mark.timeout(120)
def test_inventory_validate_never_tracebacks_in_process(tmp_path: Path) -> None:
    from ringrift_fleet.cli import main

    path = tmp_path / "distributed_hosts.yaml"
    codes: dict[int, int] = {}

    @settings(FUZZ, max_examples=int(100 * SCALE))
    @given(inventories())
    def one(text: str) -> None:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["inventory", "validate", str(path)])  # an exception fails the test
        codes[code] = codes.get(code, 0) + 1
        assert code in (0, 2), (text, err.getvalue())
        assert "Traceback" not in err.getvalue()
        if code == 2:
            assert err.getvalue().strip(), text  # a refusal always says why

    one()
    assert 2 in codes, codes


@pytest.mark.timeout(120)
def test_inventory_validate_cli_exits_0_or_2(tmp_path: Path) -> None:
    """The real command in a process, on fewer examples (each is an interpreter start)."""
    path = tmp_path / "distributed_hosts.yaml"

    @settings(FUZZ, max_examples=int(8 * SCALE))
    @given(inventories())
    def one(text: str) -> None:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        proc = subprocess.run(
            [PYTHON, "-m", "ringrift_fleet", "inventory", "validate", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=REPO,
        )
        assert proc.returncode in (0, 2), (text, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, (text, proc.stderr[-2000:])

    one()
