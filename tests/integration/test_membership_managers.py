"""The managers users call, in one asyncio loop over real UDP and HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from ringrift_fleet.config import P2PConfig
from ringrift_fleet.errors import ConfigError
from ringrift_fleet.membership.base import SWIM_RECOVERED, Membership, MembershipEvent
from ringrift_fleet.membership.http import HttpHeartbeatMembership, serve_heartbeats
from ringrift_fleet.membership.hybrid import HybridMembershipManager
from ringrift_fleet.membership.swim.protocol import SwimConfig
from ringrift_fleet.membership.swim_adapter import SwimMembershipManager
from tests.support.procs import free_port

pytestmark = pytest.mark.integration

# Quick but tolerant of a loaded 2-core CI box (suspicion lasts 1-3 s).
FAST = SwimConfig(ping_interval=0.25, ping_timeout=0.12, suspicion_mult=4.0, sync_interval=1.0)


async def until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 60))


def _swim(name: str, port: int, seeds: list[int], **kw: object) -> SwimMembershipManager:
    return SwimMembershipManager(
        name,
        bind=("127.0.0.1", port),
        seeds=[("127.0.0.1", p) for p in seeds],
        cluster_key=b"managers",
        swim_config=FAST,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.timeout(60)
def test_listeners_hear_changes_learned_by_gossip_and_metadata_and_leave() -> None:
    async def body() -> None:
        ports = [free_port(socket.SOCK_DGRAM) for _ in range(3)]
        # n2 knows only n0: n1 can learn of n2 only through gossip or sync.
        a = _swim("n0", ports[0], [])
        b = _swim("n1", ports[1], [ports[0]])
        c = _swim("n2", ports[2], [ports[0]], metadata={"gpu": "H100"})
        heard: list[MembershipEvent] = []
        b.add_listener(heard.append)
        assert isinstance(b, Membership)
        for m in (a, b, c):
            await m.start()
        try:
            assert await until(lambda: b.get_alive_peers() == ["n0", "n2"], 10)
            assert any(e.kind == "join" and e.node == "n2" for e in heard)
            assert b.peer_metadata("n2") == {"gpu": "H100"}

            c.set_local_metadata({"gpu": "H100", "gpu_count": 8})
            assert await until(lambda: (b.peer_metadata("n2") or {}).get("gpu_count") == 8, 10)
            assert any(e.kind == "metadata" and e.node == "n2" for e in heard)

            summary = b.get_membership_summary()
            assert summary["alive_count"] == 3
            assert summary["members"]["n2"]["metadata"] == {"gpu": "H100", "gpu_count": 8}

            # n2 says goodbye directly to every member it knows; once it knows n1,
            # n1 hearing "left" does not hang on n0's gossip outrunning suspicion.
            assert await until(lambda: c.get_alive_peers() == ["n0", "n1"], 10)
            stopped = time.time()
            await c.stop()
            assert await until(lambda: not b.is_peer_alive("n2"), 10)
            learned = time.time()
            assert summary_state(b, "n2") == "left"
            # /status says since when: the time n1 learned it, by n1's clock
            since = b.get_membership_summary()["members"]["n2"].get("since")
            assert since is not None and stopped <= since <= learned, (stopped, since, learned)
            assert any(e.kind == "left" and e.node == "n2" for e in heard)
            assert not any(e.kind == "dead" for e in heard)
        finally:
            for m in (a, b, c):
                await m.stop()

    run(body)


def summary_state(m: SwimMembershipManager, name: str) -> str:
    return str(m.get_membership_summary()["members"][name]["state"])


@pytest.mark.timeout(60)
def test_check_and_recover_restarts_an_unhealthy_swim_at_most_once_per_interval() -> None:
    async def body() -> None:
        ports = [free_port(socket.SOCK_DGRAM) for _ in range(2)]
        a = _swim("n0", ports[0], [ports[1]])
        b = _swim("n1", ports[1], [ports[0]], recovery_min_interval=300.0)
        heard: list[MembershipEvent] = []
        b.add_listener(heard.append)
        await a.start()
        await b.start()
        try:
            assert await until(lambda: b.is_peer_alive("n0"), 10)
            assert b.get_swim_health()["healthy"]
            assert not await b.check_and_recover(), "a healthy SWIM is left alone"

            assert b._transport is not None
            b._transport.close()  # the socket dies under it
            assert not b.get_swim_health()["healthy"]
            assert await b.check_and_recover()
            assert b.get_swim_health()["healthy"] and b.get_swim_health()["recoveries"] == 1
            assert [e.kind for e in heard if e.kind == SWIM_RECOVERED] == [SWIM_RECOVERED]
            assert await until(lambda: b.is_peer_alive("n0"), 10), "it rejoined"

            assert b._transport is not None
            b._transport.close()
            assert not await b.check_and_recover(), "rate-limited: once per 5 minutes"
        finally:
            await a.stop()
            await b.stop()

    run(body)


@pytest.mark.timeout(60)
def test_a_cpu_starved_swim_is_reported_but_not_restarted() -> None:
    """Local health at its ceiling (we miss acks: our own process is slow) is a
    warning. Restarting the socket would forget every member and, in the 30-host
    soak, made a starved leader look gone to the voters that followed it."""

    async def body() -> None:
        ports = [free_port(socket.SOCK_DGRAM) for _ in range(2)]
        a = _swim("n0", ports[0], [ports[1]])
        b = _swim("n1", ports[1], [ports[0]], recovery_min_interval=0.0)
        heard: list[MembershipEvent] = []
        b.add_listener(heard.append)
        await a.start()
        await b.start()
        try:
            assert await until(lambda: b.is_peer_alive("n0"), 10)
            assert b._node is not None
            b._node.lhm = b._node.config.lhm_max  # what a starved process reaches
            health = b.get_swim_health()
            assert health["healthy"], health
            assert any("local health" in w for w in health["warnings"]), health
            assert not await b.check_and_recover()
            assert b.get_swim_health()["recoveries"] == 0
            assert b.is_peer_alive("n0"), "members are not forgotten"
            assert not [e for e in heard if e.kind == SWIM_RECOVERED]
        finally:
            await a.stop()
            await b.stop()

    run(body)


@pytest.mark.timeout(60)
def test_a_restarted_swim_outranks_its_own_earlier_incarnations() -> None:
    """Refutations raise a member's incarnation by one each; after many, it can
    pass the wall clock that a fresh start takes as its incarnation. A restarted
    socket must still outrank what peers hold, or they would ignore its news
    (here: its new metadata) until they suspected it again."""

    async def body() -> None:
        ports = [free_port(socket.SOCK_DGRAM) for _ in range(2)]
        a = _swim("n0", ports[0], [ports[1]])
        b = _swim("n1", ports[1], [ports[0]], recovery_min_interval=0.0)
        await a.start()
        await b.start()
        try:
            assert await until(lambda: a.is_peer_alive("n1"), 10)
            assert b._node is not None
            b._node.incarnation = int(time.time()) + 10_000  # many refutations
            b.set_local_metadata({"round": 1})
            assert await until(lambda: (a.peer_metadata("n1") or {}).get("round") == 1, 10)
            held = a.get_membership_summary()["members"]["n1"]["incarnation"]

            assert b._transport is not None
            b._transport.close()  # the socket dies under it
            assert await b.check_and_recover()
            assert b._node is not None and b._node.incarnation > held
            b.set_local_metadata({"round": 2})
            assert await until(lambda: (a.peer_metadata("n1") or {}).get("round") == 2, 10), (
                a.get_membership_summary()["members"]["n1"]
            )
            assert a.is_peer_alive("n1")
        finally:
            await a.stop()
            await b.stop()

    run(body)


@pytest.mark.timeout(60)
def test_from_distributed_hosts_seeds_from_the_inventory(tmp_path: Path) -> None:
    """Every other host is a seed, except a retired one: its address may be someone
    else's by now, and the seeds a view lacks are asked again and again."""
    ports = [free_port(socket.SOCK_DGRAM) for _ in range(2)]
    retired = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # what it would receive
    retired.bind(("127.0.0.1", 0))
    retired.setblocking(False)
    inv = tmp_path / "distributed_hosts.yaml"
    inv.write_text(
        "hosts:\n"
        f"  gpu-a: {{ssh_host: 127.0.0.1, address: 127.0.0.1, gpu: H100, gpu_count: 8,"
        f" swim_port: {ports[0]}, status_port: 18770, raft_port: 14321}}\n"
        f"  gpu-b: {{ssh_host: 127.0.0.1, address: 127.0.0.1, gpu: RTX_4090,"
        f" swim_port: {ports[1]}, status_port: 18771, raft_port: 14322}}\n"
        f"  gpu-old: {{ssh_host: 127.0.0.1, address: 127.0.0.1, gpu: A10, status: retired,"
        f" swim_port: {retired.getsockname()[1]}, status_port: 18772, raft_port: 14323}}\n"
    )
    cfg = P2PConfig(
        BIND_HOST="127.0.0.1", CLUSTER_KEY="inv", SWIM_PING_INTERVAL=0.2, SWIM_PING_TIMEOUT=0.08
    )

    async def body() -> None:
        a = SwimMembershipManager.from_distributed_hosts(
            node_id="gpu-a", hosts_file=str(inv), config=cfg
        )
        b = SwimMembershipManager.from_distributed_hosts(
            node_id="gpu-b", hosts_file=str(inv), config=cfg
        )
        await a.start()
        await b.start()
        try:
            assert await until(lambda: a.get_alive_peers() == ["gpu-b"], 10)
            meta = a.peer_metadata("gpu-b") or {}
            assert meta["gpu"] == "RTX_4090" and meta["host"] == "gpu-b"
            assert (b.peer_metadata("gpu-a") or {})["gpu_count"] == 8
            await asyncio.sleep(SwimConfig().reconnect_interval * 1.6)  # a reconnect or two
        finally:
            await a.stop()
            await b.stop()

    try:
        run(body)
        with pytest.raises(BlockingIOError):
            retired.recvfrom(65536)  # nothing was sent to the retired host
    finally:
        retired.close()


def _http(name: str, peers: dict[str, str], key: str = "") -> HttpHeartbeatMembership:
    cfg = P2PConfig(HEARTBEAT_INTERVAL=0.2, PEER_TIMEOUT=1.0, CLUSTER_KEY=key)
    return HttpHeartbeatMembership(name, peers, config=cfg, summary=lambda: {"role": "gpu"})


@pytest.mark.timeout(60)
def test_http_heartbeats_find_peers_and_declare_the_silent_dead() -> None:
    async def body() -> None:
        pa, pb = free_port(), free_port()
        a = _http("a", {"b": f"http://127.0.0.1:{pb}"}, key="tok")
        b = _http("b", {"a": f"http://127.0.0.1:{pa}"}, key="tok")
        ra, _ = await serve_heartbeats(a, "127.0.0.1", pa)
        rb, _ = await serve_heartbeats(b, "127.0.0.1", pb)
        heard: list[MembershipEvent] = []
        a.add_listener(heard.append)
        await a.start()
        await b.start()
        try:
            assert await until(lambda: a.is_peer_alive("b") and b.is_peer_alive("a"), 5)
            assert (a.get_membership_summary()["members"]["b"]["metadata"]) == {}
            await b.stop(leave=False)  # silent, as a killed process
            await rb.cleanup()
            assert await until(lambda: not a.is_peer_alive("b"), 5)
            assert await until(
                lambda: [e.kind for e in heard if e.node == "b"] == ["join", "dead"], 2
            )
        finally:
            await a.stop()
            await ra.cleanup()

    run(body)


@pytest.mark.timeout(60)
def test_http_heartbeats_a_stopping_peer_leaves_and_comes_back() -> None:
    """A graceful stop (a rolling restart) is "left", never "dead", even while the
    stopping process still answers; its next life is alive again."""

    async def body() -> None:
        pa, pb = free_port(), free_port()
        a = _http("a", {"b": f"http://127.0.0.1:{pb}"})
        b = _http("b", {"a": f"http://127.0.0.1:{pa}"})
        ra, _ = await serve_heartbeats(a, "127.0.0.1", pa)
        rb, _ = await serve_heartbeats(b, "127.0.0.1", pb)
        heard: list[MembershipEvent] = []
        a.add_listener(heard.append)
        await a.start()
        await b.start()
        b2: HttpHeartbeatMembership | None = None
        try:
            assert await until(lambda: a.is_peer_alive("b"), 5)
            await b.stop()  # its server still answers (it stops after membership)
            assert not a.is_peer_alive("b")
            await asyncio.sleep(1.5)  # past PEER_TIMEOUT
            await rb.cleanup()
            assert [e.kind for e in heard if e.node == "b"] == ["join", "left"]
            assert a.get_membership_summary()["members"]["b"]["state"] == "left"
            b2 = _http("b", {"a": f"http://127.0.0.1:{pa}"})
            rb, _ = await serve_heartbeats(b2, "127.0.0.1", pb)
            await b2.start()
            assert await until(lambda: a.is_peer_alive("b"), 5)
            assert [e.kind for e in heard if e.node == "b"] == ["join", "left", "alive"]
        finally:
            if b2 is not None:
                await b2.stop()
            await rb.cleanup()
            await a.stop()
            await ra.cleanup()

    run(body)


@pytest.mark.timeout(30)
def test_the_heartbeat_route_rejects_bad_tokens_and_names_malformed_input() -> None:
    async def body() -> None:
        a = _http("a", {}, key="tok")
        runner, port = await serve_heartbeats(a, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{port}/heartbeat"
        auth = {"Authorization": "Bearer tok"}
        try:
            async with aiohttp.ClientSession() as s:
                async with s.post(url, json={"node_id": "x"}) as r:
                    assert r.status == 401
                async with s.post(url, data=b"{not json", headers=auth) as r:
                    assert r.status == 400 and "malformed JSON" in (await r.json())["error"]
                async with s.post(url, json={"summary": {}}, headers=auth) as r:
                    assert r.status == 400 and "heartbeat.node_id" in (await r.json())["error"]
                async with s.post(url, json={"node_id": "x", "incarnation": -1}, headers=auth) as r:
                    assert r.status == 400 and "heartbeat.incarnation" in (await r.json())["error"]
                async with s.post(url, json={"node_id": "x"}, headers=auth) as r:
                    assert r.status == 200
            assert a.get_alive_peers() == ["x"] and a.rejected == 4
        finally:
            await runner.cleanup()

    run(body)


@pytest.mark.timeout(60)
def test_hybrid_answers_from_swim_and_falls_back_to_http_only_while_swim_is_unhealthy() -> None:
    async def body() -> None:
        sp = [free_port(socket.SOCK_DGRAM) for _ in range(2)]
        hp = [free_port() for _ in range(2)]
        swims = [_swim("n0", sp[0], [sp[1]]), _swim("n1", sp[1], [sp[0]])]
        https = [
            _http("n0", {"n1": f"http://127.0.0.1:{hp[1]}"}),
            _http("n1", {"n0": f"http://127.0.0.1:{hp[0]}"}),
        ]
        runners = [
            (await serve_heartbeats(h, "127.0.0.1", p))[0] for h, p in zip(https, hp, strict=True)
        ]
        hybrids = [HybridMembershipManager(s, h) for s, h in zip(swims, https, strict=True)]
        for h in hybrids:
            await h.start()
        try:
            a = hybrids[0]
            assert await until(lambda: a.get_alive_peers() == ["n1"], 10)
            assert a.authority == "swim" and a.get_membership_summary()["authority"] == "swim"

            # SWIM's socket dies: HTTP answers (and still sees n1) until recovery.
            assert swims[0]._transport is not None
            swims[0]._transport.close()
            assert a.refresh() == "http"
            assert await until(lambda: a.get_alive_peers() == ["n1"], 5)
            assert a.get_swim_health()["authority"] == "http"

            assert await a.check_and_recover()
            assert a.authority == "swim"
            assert await until(lambda: a.is_peer_alive("n1"), 10)
        finally:
            for h in hybrids:
                await h.stop()
            for r in runners:
                await r.cleanup()

    run(body)


@pytest.mark.timeout(30)
def test_the_swim_p2p_backend_says_how_to_install_it_when_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ringrift_fleet.membership.swim_p2p import SwimP2PMembership, swim_p2p_available

    for mod in [m for m in sys.modules if m == "swim" or m.startswith("swim.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "swim", None)  # makes `import swim…` fail
    assert not swim_p2p_available()
    m = SwimP2PMembership("n0", bind=("127.0.0.1", free_port(socket.SOCK_DGRAM)))
    with pytest.raises(ConfigError, match="pip install 'swim-p2p"):
        asyncio.run(m.start())
    assert m.get_alive_peers() == [] and not m.get_swim_health()["healthy"]
