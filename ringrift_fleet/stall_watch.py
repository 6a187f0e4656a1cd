"""Noticing when a coordinator's Python code stops running, and where it was.

A voter whose Raft thread is not scheduled for a few seconds loses its
leadership although its process is alive (the 60-minute soak saw leaders
silent 3-4 s).  A thread here wakes every quarter of ``COORDINATOR_STALL_S``;
when it wakes that much late, no Python code could run (one thread held the
interpreter in a long C call, or the process got no CPU): it logs how long,
with every other thread's stack as it is the moment the stall ends, and counts
it (``/status`` ``stalls``, ``ringrift_coordinator_stalls_total``).

The stacks are taken under the interpreter lock (``sys._current_frames``), so
they show where each thread was when the watch got the lock back: a thread
that held it in a C call (pickling, JSON, copying the ledger) is just past
that call.  An earlier version had ``faulthandler``'s C watchdog dump the
stacks while the stall lasted; that reads frames without the lock while the
holder may run, and under load it hung a coordinator half-way through a dump
(make test, 2026-12-06), so it is not used.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

STACK_LIMIT = 12  # innermost frames logged per thread


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


def held_for(woke_at: float, now: float, period: float) -> float:
    """How long past its period the watch thread was kept from running."""
    return max(0.0, now - woke_at - period)


def thread_stacks(skip: int | None = None) -> str:
    """Every thread's innermost frames, named, but the thread ``skip``."""
    names = {t.ident: t.name for t in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        if ident == skip:
            continue
        stack = "".join(traceback.format_stack(frame, limit=STACK_LIMIT))
        parts.append(f"thread {names.get(ident, ident)}:\n{stack}")
    return "\n".join(parts)


class StallWatch:
    """A thread that notices stalls of ``threshold_s`` or more and logs them."""

    def __init__(
        self,
        threshold_s: float,
        stats: StallStats | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold_s = threshold_s
        self.stats = stats if stats is not None else StallStats()
        self.stats.threshold_s = threshold_s
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

    def _run(self) -> None:
        period = self.threshold_s / 4
        woke_at = self._clock()
        while not self._stop.wait(period):
            now = self._clock()
            held = held_for(woke_at, now, period)
            if held >= self.threshold_s:
                try:
                    stacks = thread_stacks(skip=threading.get_ident())
                except Exception as exc:  # a diagnosis must never stop the watch
                    stacks = f"(stacks unavailable: {exc})"
                log.warning(
                    "coordinator stalled %.1fs: no Python code ran; the threads as it ended:\n%s",
                    held,
                    stacks,
                )
                self.stats.note(held, time.time())  # counted once it can be read about
            woke_at = now
