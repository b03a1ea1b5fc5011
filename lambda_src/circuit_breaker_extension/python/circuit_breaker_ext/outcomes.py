"""Sliding-window aggregation of the outcomes a function reports for one circuit.

A call is *failed* when the function says so and *slow* when it took at least the slow-call
duration. Once the window holds at least ``min_calls`` calls, a failure rate or a slow-call rate
at or above ``failure_rate`` percent says the circuit should trip.

Memory does not grow with the call rate: calls are counted in ``BUCKETS`` time buckets of
``window_ms / BUCKETS`` each (calls, failures, slow calls per bucket), at most ``BUCKETS`` of them
per circuit whatever the rate or the window. The window slides one bucket at a time: it holds the
current (partly elapsed) bucket and the ``BUCKETS - 1`` before it, so a call leaves it between
``window_ms - window_ms / BUCKETS`` and ``window_ms`` after it was reported: the rate is computed
over the window to within one bucket. O(1) per outcome: running totals, and a deque of buckets
evicted from the left.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

#: Time buckets per window (the window slides in steps of ``window_ms / BUCKETS``).
BUCKETS = 100


@dataclass(frozen=True)
class Verdict:
    calls: int
    failures: int
    slow: int
    trip: bool

    @property
    def failure_rate(self) -> float:
        return 100.0 * self.failures / self.calls if self.calls else 0.0

    @property
    def slow_rate(self) -> float:
        return 100.0 * self.slow / self.calls if self.calls else 0.0

    def describe(self, window_ms: int) -> str:
        return (
            f"{self.failures} of {self.calls} calls failed ({self.failure_rate:.0f}%) and {self.slow} were slow "
            f"({self.slow_rate:.0f}%) in the last {window_ms} ms"
        )


class OutcomeWindow:
    def __init__(self, *, window_ms: int, min_calls: int, failure_rate: float, slow_call_ms: int) -> None:
        self.window_ms = window_ms
        self.min_calls = min_calls
        self.failure_rate = failure_rate
        self.slow_call_ms = slow_call_ms
        self._width = window_ms / BUCKETS  # ms per bucket
        # [bucket index, calls, failures, slow], oldest first; index = floor(now_ms / width)
        self._buckets: deque[list[int]] = deque()
        self._total = 0
        self._failures = 0
        self._slow = 0

    @property
    def buckets(self) -> int:
        """How many buckets are held now (never more than BUCKETS)."""
        return len(self._buckets)

    def add(self, now_ms: float, success: bool, duration_ms: float) -> Verdict:
        failed = int(not success)
        slow = int(duration_ms >= self.slow_call_ms)
        index = self._index(now_ms)
        self._evict(index)
        buckets = self._buckets
        if buckets and buckets[-1][0] >= index:  # the current bucket (or a clock that went back: the newest)
            bucket = buckets[-1]
            bucket[1] += 1
            bucket[2] += failed
            bucket[3] += slow
        else:
            buckets.append([index, 1, failed, slow])
        self._total += 1
        self._failures += failed
        self._slow += slow
        return self._verdict()

    def verdict(self, now_ms: float) -> Verdict:
        self._evict(self._index(now_ms))
        return self._verdict()

    def reset(self) -> None:
        self._buckets.clear()
        self._total = 0
        self._failures = 0
        self._slow = 0

    def _verdict(self) -> Verdict:
        calls = self._total
        threshold = self.failure_rate * calls / 100.0
        trip = calls >= self.min_calls and (self._failures >= threshold or self._slow >= threshold)
        return Verdict(calls=calls, failures=self._failures, slow=self._slow, trip=trip)

    def _index(self, now_ms: float) -> int:
        return math.floor(now_ms / self._width)

    def _evict(self, current: int) -> None:
        """Drops the buckets older than the BUCKETS most recent ones (the current one included)."""
        oldest = current - BUCKETS + 1
        buckets = self._buckets
        while buckets and buckets[0][0] < oldest:
            _, calls, failed, slow = buckets.popleft()
            self._total -= calls
            self._failures -= failed
            self._slow -= slow
