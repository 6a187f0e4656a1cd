"""Plain-data histograms that the code fills and ``ringrift_fleet.metrics`` exports.

A leaf (no Prometheus import): the ledger and the scheduler record into a
:class:`Histogram` as things happen, and the metrics collector reads its
:meth:`~Histogram.snapshot` at scrape time.  Thread-safe: observations come
from the event loop and worker threads, scrapes from the status server's
thread.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence

# ringrift_ledger_op_duration_seconds: a Raft commit takes milliseconds, a write
# without a quorum waits out its timeout (2 s by default)
LEDGER_OP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)  # fmt: skip

Key = tuple[str, ...]


class Histogram:
    """Observations per label tuple, counted into fixed upper bounds (+Inf last)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(float(b) for b in buckets)
        if list(self.buckets) != sorted(set(self.buckets)):
            raise ValueError(f"histogram buckets must increase strictly: {self.buckets}")
        self._lock = threading.Lock()
        self._counts: dict[Key, list[int]] = {}  # per bucket, +Inf last (not cumulative)
        self._sums: dict[Key, float] = {}

    def observe(self, key: Key, seconds: float) -> None:
        seconds = max(0.0, float(seconds))
        i = bisect.bisect_left(self.buckets, seconds)  # first bound >= seconds
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = [0] * (len(self.buckets) + 1)
            counts[i] += 1
            self._sums[key] = self._sums.get(key, 0.0) + seconds

    def snapshot(self) -> dict[Key, tuple[list[int], float]]:
        """key -> (cumulative counts per bucket, +Inf last; sum of the observations)."""
        with self._lock:
            out = {}
            for key, counts in self._counts.items():
                total, cumulative = 0, []
                for n in counts:
                    total += n
                    cumulative.append(total)
                out[key] = (cumulative, self._sums[key])
            return out
