# mypy: disallow-any-explicit
"""Who leads, as a voter sees it: a small answer for the non-voters' poll.

Every non-voter asks every voter once a second.  Asking for the whole ``/status``
(membership summary, queue statistics, Raft detail) made that poll the largest
load on the voters of a 30-host fleet; this answer is a few bytes.  A voter of the
previous release has no such route: the poll then reads its ``/status``, so a
rolling deploy may upgrade non-voters and voters in either order."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from ringrift_fleet.consensus.api import Leadership
from ringrift_fleet.consensus.remote import http_json

LEADER_PATH = "/consensus/leader"


def leader_route(leadership: Callable[[], Leadership | None]) -> web.RouteDef:
    """``GET /consensus/leader``: ``{"leader_id", "term", "is_leader"}`` (no token:
    ``/status`` shows the same to anyone)."""

    async def get_leader(_request: web.Request) -> web.Response:
        lead = leadership()
        if lead is None:
            return web.json_response({"leader_id": None, "term": 0, "is_leader": False})
        return web.json_response(
            {"leader_id": lead.leader(), "term": lead.term(), "is_leader": lead.is_leader()}
        )

    return web.get(LEADER_PATH, get_leader)


def read_leader(base_url: str, timeout: float = 0.5) -> tuple[int, str] | None:
    """(term, leader) as the voter at ``base_url`` sees it, or None when it names
    none or cannot be read; falls back to ``/status`` on a voter without the route."""
    status, body = http_json(base_url + LEADER_PATH, token="", timeout=timeout)
    if status == 404:
        status, body = http_json(base_url + "/status", token="", timeout=timeout)
    if status != 200 or not isinstance(body, dict):
        return None
    term, leader = body.get("term"), body.get("leader_id")
    if isinstance(term, int) and not isinstance(term, bool) and isinstance(leader, str) and leader:
        return term, leader
    return None
