# mypy: disallow-any-explicit
"""Fair share of self-play across board configs.

Share is counted in compute — GPU-seconds of self-play weighted by the GPU's
power (H100-seconds) — not in jobs: a square19 4-player job runs many times
longer than a square8 2-player one, and counting jobs is how the reference
system let small boards take most of the fleet.  Weighting by power keeps an
hour of a CPU slot from counting as much as an hour of a GH200.  Each new
job goes to the config furthest below its weighted share of the last window,
with work already queued or running charged at its expected length, so a burst
of new slots is spread instead of handed to one config.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence

from ringrift_fleet.scheduler.snapshot import BoardConfig


def pick_configs(
    configs: Sequence[BoardConfig],
    charge: Mapping[str, float],
    job_seconds: Mapping[str, float],
    count: int,
) -> list[str]:
    """Config keys for ``count`` new self-play jobs, most under-served first.

    ``charge`` is each config's GPU-seconds in the window plus what is queued or
    running; ``job_seconds`` the expected length of one of its jobs.
    """
    live = [c for c in configs if c.weight > 0]
    if count <= 0 or not live:
        return []
    heap = [(charge.get(c.key, 0.0) / c.weight, c.key, c.weight) for c in live]
    heapq.heapify(heap)
    out: list[str] = []
    for _ in range(count):
        served, key, weight = heapq.heappop(heap)
        out.append(key)
        heapq.heappush(heap, (served + job_seconds.get(key, 1.0) / weight, key, weight))
    return out


def share_ratios(usage: Mapping[str, float], configs: Sequence[BoardConfig]) -> dict[str, float]:
    """Each config's share of ``usage`` divided by the share its weight owes it."""
    total = sum(usage.get(c.key, 0.0) for c in configs)
    weights = sum(c.weight for c in configs if c.weight > 0)
    if total <= 0 or weights <= 0:
        return {c.key: 1.0 for c in configs if c.weight > 0}
    return {
        c.key: (usage.get(c.key, 0.0) / total) / (c.weight / weights)
        for c in configs
        if c.weight > 0
    }


class UsageWindow:
    """Self-play GPU-seconds per config over a trailing window, in fixed buckets.

    The shell feeds it finished intervals; time is passed in, so the simulator
    and the beat share it.  Memory is bounded by the number of buckets a window holds.
    """

    def __init__(self, window_s: float = 3600.0, bucket_s: float = 60.0) -> None:
        self.window_s = window_s
        self.bucket_s = bucket_s
        self._buckets: dict[int, dict[str, float]] = {}

    def add(self, key: str, start: float, end: float, power: float = 1.0) -> None:
        """Count ``[start, end)`` of one GPU of ``power`` running ``key``'s self-play."""
        if end <= start:
            return
        start = max(start, end - self.window_s - self.bucket_s)  # older parts never count
        first, last = math.floor(start / self.bucket_s), math.floor(end / self.bucket_s)
        for b in range(first, last + 1):
            lo = max(start, b * self.bucket_s)
            hi = min(end, (b + 1) * self.bucket_s)
            if hi > lo:
                bucket = self._buckets.setdefault(b, {})
                bucket[key] = bucket.get(key, 0.0) + (hi - lo) * power

    def totals(self, now: float) -> dict[str, float]:
        """Compute per config in the buckets that overlap ``(now - window, now]``."""
        first = math.floor((now - self.window_s) / self.bucket_s)
        for b in [b for b in self._buckets if b < first]:
            del self._buckets[b]
        out: dict[str, float] = {}
        for b, data in self._buckets.items():
            if b * self.bucket_s <= now:
                for k, v in data.items():
                    out[k] = out.get(k, 0.0) + v
        return out


def window_totals(
    intervals: Iterable[tuple[str, float, float, float]], start: float, end: float
) -> dict[str, float]:
    """Exact compute per config inside ``[start, end)`` from (key, start, end, power)."""
    out: dict[str, float] = {}
    for key, a, b, power in intervals:
        lo, hi = max(a, start), min(b, end)
        if hi > lo:
            out[key] = out.get(key, 0.0) + (hi - lo) * power
    return out
