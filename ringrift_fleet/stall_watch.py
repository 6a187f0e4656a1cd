"""Noticing when a coordinator's Python code stops running, and what held it.

A voter whose Raft thread is not scheduled for a few seconds loses its
leadership although its process is alive (the 60-minute soak saw leaders
silent 3-4 s).  Inside the process nothing can see such a stall while it lasts:
every Python thread, a watchdog thread included, waits for the interpreter
lock (or the whole process waits for a CPU).  So the evidence comes from
:mod:`faulthandler`'s watchdog, a C thread that needs no lock: this module's
thread re-arms it every quarter of ``COORDINATOR_STALL_S``; when no re-arm
comes in time, the C thread writes every thread's Python stack to stderr (the
journal) while the stall is still going on.  When the watch thread runs again
it logs how long it was held and counts the stall (``/status`` ``stalls``,
``ringrift_coordinator_stalls_total``).

Stacks waiting in ``select``/``sleep``/``lock.acquire`` are idle; a thread in
Python code or a C call (pickling, ``gc``, JSON) at the time of the dump is
the one that held the lock.  If every thread is idle the process itself was
not given a CPU.
"""

from __future__ import annotations

import faulthandler
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

log = logging.getLogger(__name__)


@dataclass
class StallStats:
    """Stalls seen since start (``/status`` ``stalls``)."""

    threshold_s: float = 0.0
    stalls: int = 0
    max_s: float = 0.0
    last_s: float = 0.0
    last_at: float | None = None  # wall clock of the last stall's end

    def note(self, held_s: float, at: float) -> None:
        self.stalls += 1
        self.max_s = max(self.max_s, held_s)
        self.last_s = held_s
        self.last_at = at

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold_s": self.threshold_s,
            "stalls": self.stalls,
            "max_s": round(self.max_s, 3),
            "last_s": round(self.last_s, 3),
            "last_at": self.last_at,
        }


def held_for(armed_at: float, now: float, period: float) -> float:
    """How long past its period the watch thread was kept from running."""
    return max(0.0, now - armed_at - period)


class StallWatch:
    """A thread that notices stalls of ``threshold_s`` or more and has them dumped."""

    def __init__(
        self,
        threshold_s: float,
        stats: StallStats | None = None,
        *,
        file: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold_s = threshold_s
        self.stats = stats if stats is not None else StallStats()
        self.stats.threshold_s = threshold_s
        self._file = file
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Start watching; False (and nothing started) when ``threshold_s`` <= 0."""
        if self.threshold_s <= 0 or self._thread is not None:
            return False
        self._thread = threading.Thread(target=self._run, name="stall-watch", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        faulthandler.cancel_dump_traceback_later()

    def _arm(self) -> None:
        out = self._file if self._file is not None else sys.stderr
        try:
            faulthandler.dump_traceback_later(self.threshold_s, repeat=False, file=out)
        except (ValueError, OSError, RuntimeError) as exc:  # no usable file descriptor
            log.warning("stall watch cannot arm the stack dump: %s", exc)

    def _run(self) -> None:
        period = self.threshold_s / 4
        armed_at = self._clock()
        self._arm()
        while not self._stop.wait(period):
            now = self._clock()
            held = held_for(armed_at, now, period)
            if held >= self.threshold_s:
                self.stats.note(held, time.time())
                log.warning(
                    "coordinator stalled %.1fs: no Python code ran (stacks of every "
                    "thread were written to stderr at %.1fs into it)",
                    held,
                    self.threshold_s,
                )
            armed_at = now
            self._arm()
