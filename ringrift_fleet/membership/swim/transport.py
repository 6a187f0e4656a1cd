# mypy: disallow-any-explicit
"""The asyncio shell around :class:`SwimNode`: a UDP socket, a TCP port, a timer.

Every decision lives in the protocol core; this module only moves bytes and
calls ``tick`` when the core's next deadline comes.  ``inject_loss`` drops that
fraction of outgoing datagrams and ``inject_loss_in`` that fraction of incoming
ones (as a firewall rule on INPUT would), so tests and the benchmark can impose
packet loss on real processes without ``tc netem``; neither touches TCP.

The fallback probe (docs/membership.md) runs over TCP on the SWIM port number:
one connection per probe, carrying one length-prefixed sealed PING and, back,
one sealed ACK.  The listener answers through :meth:`SwimNode.answer_fallback`;
the prober hands the reply to :meth:`SwimNode.fallback_ack`, and a refused
connection (the host up, its SWIM port closed: the process is gone) to
:meth:`SwimNode.fallback_refused`.  A silent one needs nothing: the core's
probe period simply ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
import time
from collections.abc import Callable

from ringrift_fleet.membership.base import MembershipEvent
from ringrift_fleet.membership.swim.codec import Addr
from ringrift_fleet.membership.swim.protocol import FallbackProbe, Output, SwimNode

log = logging.getLogger(__name__)

EventSink = Callable[[list[MembershipEvent]], None]

_LEN = struct.Struct("!H")  # frame: 2-byte length, then one sealed message
FALLBACK_READ_TIMEOUT = 2.0  # s a fallback connection may take to send its ping
MAX_FALLBACK_IN_FLIGHT = 64  # outgoing fallback probes at once (each ends by its timeout)
MAX_FALLBACK_SERVING = 256  # incoming fallback connections answered at once


async def _read_frame(reader: asyncio.StreamReader, limit: int) -> bytes | None:
    head = await reader.readexactly(_LEN.size)
    (size,) = _LEN.unpack(head)
    if size == 0 or size > limit:
        return None
    return await reader.readexactly(size)


class UdpSwimTransport(asyncio.DatagramProtocol):
    def __init__(
        self,
        node: SwimNode,
        bind: Addr,
        on_events: EventSink,
        *,
        inject_loss: float = 0.0,
        inject_loss_in: float = 0.0,
        fallback_listen: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self.bind = bind
        self.on_events = on_events
        self.inject_loss = inject_loss
        self.inject_loss_in = inject_loss_in
        self.fallback_listen = fallback_listen
        self.clock = clock
        self.errors = 0  # exceptions caught around the core: should stay 0
        self.last_received: float | None = None
        self._rng = random.Random()
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._closed = False
        self._server: asyncio.Server | None = None
        self._probes: set[asyncio.Task[None]] = set()
        self._serving = 0
        self.fallback_error: str | None = None  # why we do not answer fallback pings
        self.fallback_sent = 0
        self.fallback_answered = 0  # fallback pings we answered
        self.fallback_skipped = 0  # probes not sent: too many in flight

    @property
    def running(self) -> bool:
        return self._transport is not None and not self._closed

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=self.bind)
        self._transport = transport
        if self.fallback_listen:
            await self._listen_tcp()
        self._dispatch(self.node.start(self.clock()))

    async def _listen_tcp(self) -> None:
        """Answer fallback pings on the SWIM port over TCP.  If that port is taken
        for TCP we still run (UDP works), but peers cannot save us from suspicion
        on a lossy link: said in the log and in the health report."""
        host, _ = self.bind
        port = self._transport.get_extra_info("sockname")[1] if self._transport else self.bind[1]
        try:
            self._server = await asyncio.start_server(self._answer, host, port)
        except OSError as exc:
            self.fallback_error = f"cannot listen on TCP {host}:{port}: {exc.strerror}"
            log.error("SWIM fallback probes will not be answered: %s", self.fallback_error)

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
        if self._server is not None:
            self._server.close()
        for task in list(self._probes):
            task.cancel()

    # --- the fallback probe over TCP ------------------------------------------------------

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._serving >= MAX_FALLBACK_SERVING or self._closed:
            writer.close()
            return
        self._serving += 1
        try:
            data = await asyncio.wait_for(
                _read_frame(reader, self.node.config.max_datagram), FALLBACK_READ_TIMEOUT
            )
            if data is None or self._closed:
                return
            try:
                reply, out = self.node.answer_fallback(self.clock(), data)
            except Exception:
                self.errors += 1
                log.exception("SWIM core failed on a fallback ping")
                return
            self._dispatch(out)
            if reply is not None:
                writer.write(_LEN.pack(len(reply)) + reply)
                await writer.drain()
                self.fallback_answered += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
            log.debug("SWIM fallback connection dropped: %s", exc)
        finally:
            self._serving -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _start_fallback(self, probe: FallbackProbe) -> None:
        if len(self._probes) >= MAX_FALLBACK_IN_FLIGHT:
            self.fallback_skipped += 1
            return
        self.fallback_sent += 1
        task = asyncio.get_running_loop().create_task(self._fallback(probe))
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    async def _fallback(self, probe: FallbackProbe) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(probe.timeout):
                reader, writer = await asyncio.open_connection(*probe.addr)
                writer.write(_LEN.pack(len(probe.payload)) + probe.payload)
                await writer.drain()
                reply = await _read_frame(reader, self.node.config.max_datagram)
        except ConnectionRefusedError:
            # the host is up and nothing listens on the SWIM port: the process is gone
            if not self._closed:
                self._hand(lambda now: self.node.fallback_refused(now, probe.seq, probe.target))
            return
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log.debug("SWIM fallback probe of %s failed: %s", probe.target, exc)
            return
        finally:
            if writer is not None:
                writer.close()
        if reply is None or self._closed:
            return
        self._hand(lambda now: self.node.fallback_ack(now, reply))

    def _hand(self, call: Callable[[float], Output]) -> None:
        """Give the core what a fallback probe came back with; send what it answers."""
        try:
            out = call(self.clock())
        except Exception:
            self.errors += 1
            log.exception("SWIM core failed on a fallback probe's outcome")
            return
        self._dispatch(out)

    # --- asyncio.DatagramProtocol --------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[object, int]) -> None:
        if self._closed:
            return
        if self.inject_loss_in and self._rng.random() < self.inject_loss_in:
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
            for probe in out.fallback:
                self._start_fallback(probe)
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
