"""Giving the heap memory a coordinator has freed back to the system (glibc only).

A coordinator's threads -- the Raft thread, and the executor threads that
encode ledger copies and deltas for the non-voters, apply ledger reads and
talk to Redis -- allocate and free large transient buffers all day.  glibc
keeps what a thread freed in that thread's arena for its next allocation, so
the process's RSS climbed with the churn while the Python heap stayed flat:
in a 12-host soak (under tracemalloc) the Raft leader held seven thread arenas,
~110 MB, and one ``malloc_trim(0)`` gave back 63 MB of its 321 MB (49 MB again
three minutes later; docs/benchmarks.md, "The leader's RSS").  So it trims every
``MALLOC_TRIM_INTERVAL`` seconds, on an executor thread (ctypes lets go of the
GIL for the call, so the event loop runs on meanwhile).

Elsewhere (musl, macOS) there is no ``malloc_trim`` and this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

log = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    fn = getattr(libc, "malloc_trim", None)
    if fn is not None:
        fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def _rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def available() -> bool:
    return _malloc_trim() is not None


def trim() -> bool:
    """Give every arena's free pages back; True when the C library released any."""
    fn = _malloc_trim()
    return bool(fn(0)) if fn is not None else False


@dataclass
class TrimStats:
    """What the trims gave back (``/status`` ``memory``)."""

    trims: int = 0
    released_mb: float = 0.0  # RSS before minus after, summed over the trims
    last_released_mb: float = 0.0
    last_ms: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "malloc_trim": available(),
            "rss_mb": round(_rss_mb(), 1),
            "trims": self.trims,
            "trim_released_mb": round(self.released_mb, 1),
            "last_trim_released_mb": round(self.last_released_mb, 1),
            "last_trim_ms": round(self.last_ms, 1),
        }


def _trim_measured(stats: TrimStats) -> None:
    before = _rss_mb()
    t0 = time.perf_counter()
    trim()
    stats.last_ms = (time.perf_counter() - t0) * 1000
    released = max(0.0, before - _rss_mb())
    stats.trims += 1
    stats.last_released_mb = released
    stats.released_mb += released
    log.debug("malloc_trim gave back %.1f MB in %.1f ms", released, stats.last_ms)


async def trim_every(interval: float, stats: TrimStats) -> None:
    """Trim every ``interval`` s until cancelled; ``interval`` <= 0 or no
    ``malloc_trim``: return at once."""
    if interval <= 0 or not available():
        return
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(_trim_measured, stats)
        except Exception:  # memory housekeeping must never stop the coordinator
            log.exception("malloc_trim failed")
