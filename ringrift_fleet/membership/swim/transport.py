"""The asyncio UDP shell around :class:`SwimNode`: a socket, a timer, nothing else.

Every decision lives in the protocol core; this module only moves bytes and
calls ``tick`` when the core's next deadline comes.  ``inject_loss`` drops that
fraction of outgoing datagrams, so tests and the benchmark can impose packet
loss on real processes without ``tc netem``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from ringrift_fleet.membership.base import MembershipEvent
from ringrift_fleet.membership.swim.codec import Addr
from ringrift_fleet.membership.swim.protocol import Output, SwimNode

log = logging.getLogger(__name__)

EventSink = Callable[[list[MembershipEvent]], None]


class UdpSwimTransport(asyncio.DatagramProtocol):
    def __init__(
        self,
        node: SwimNode,
        bind: Addr,
        on_events: EventSink,
        *,
        inject_loss: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self.bind = bind
        self.on_events = on_events
        self.inject_loss = inject_loss
        self.clock = clock
        self.errors = 0  # exceptions caught around the core: should stay 0
        self.last_received: float | None = None
        self._rng = random.Random()
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._closed = False

    @property
    def running(self) -> bool:
        return self._transport is not None and not self._closed

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=self.bind)
        self._transport = transport
        self._dispatch(self.node.start(self.clock()))

    async def leave(self, linger: float) -> None:
        """Announce a graceful leave, again halfway (one lost datagram must not
        turn a goodbye into a death), and keep answering for ``linger`` seconds."""
        for _ in range(2):
            if not self.running:
                return
            self._dispatch(self.node.leave(self.clock()))
            await asyncio.sleep(linger / 2)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._transport.close()

    # --- asyncio.DatagramProtocol --------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self._closed:
            return
        now = self.clock()
        self.last_received = now
        try:
            out = self.node.handle(now, data, (str(addr[0]), int(addr[1])))
        except Exception:  # the core drops bad input itself; this is the last resort
            self.errors += 1
            log.exception("SWIM core failed on a datagram from %s", addr)
            return
        self._dispatch(out)

    def error_received(self, exc: Exception) -> None:
        log.debug("SWIM socket error: %s", exc)  # ICMP unreachable from a dead peer: normal

    # --- timers and sending ----------------------------------------------------------------

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        if self._closed:
            return
        try:
            out = self.node.tick(self.clock())
        except Exception:
            self.errors += 1
            log.exception("SWIM core failed on a tick")
            out = Output([], [])
        self._dispatch(out)

    def _dispatch(self, out: Output) -> None:
        transport = self._transport
        if transport is not None and not self._closed:
            for addr, data in out.datagrams:
                if self.inject_loss and self._rng.random() < self.inject_loss:
                    continue
                try:
                    transport.sendto(data, addr)
                except OSError as exc:  # unresolvable or unreachable address: the peer is gone
                    log.debug("SWIM send to %s failed: %s", addr, exc)
        if out.events:
            self.on_events(out.events)
        self._reschedule()

    def _reschedule(self) -> None:
        if self._closed:
            return
        due = self.node.next_deadline()
        if due >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, due - self.clock())
        self._timer_at = due
        self._timer = loop.call_later(delay, self._on_timer)
