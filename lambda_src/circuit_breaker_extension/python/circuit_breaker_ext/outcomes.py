"""Sliding-window aggregation of the outcomes a function reports for one circuit.

A call is *failed* when the function says so and *slow* when it took at least the slow-call
duration. Once the window holds at least ``min_calls`` calls, a failure rate or a slow-call rate
at or above ``failure_rate`` percent says the circuit should trip. O(1) per outcome: running
counters, and a deque evicted from the left as the window slides.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


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
        self._calls: deque[tuple[float, bool, bool]] = deque()
        self._failures = 0
        self._slow = 0

    def add(self, now_ms: float, success: bool, duration_ms: float) -> Verdict:
        failed = not success
        slow = duration_ms >= self.slow_call_ms
        self._calls.append((now_ms, failed, slow))
        self._failures += failed
        self._slow += slow
        return self.verdict(now_ms)

    def verdict(self, now_ms: float) -> Verdict:
        self._evict(now_ms)
        calls = len(self._calls)
        threshold = self.failure_rate * calls / 100.0
        trip = calls >= self.min_calls and (self._failures >= threshold or self._slow >= threshold)
        return Verdict(calls=calls, failures=self._failures, slow=self._slow, trip=trip)

    def reset(self) -> None:
        self._calls.clear()
        self._failures = 0
        self._slow = 0

    def _evict(self, now_ms: float) -> None:
        horizon = now_ms - self.window_ms
        calls = self._calls
        while calls and calls[0][0] <= horizon:
            _, failed, slow = calls.popleft()
            self._failures -= failed
            self._slow -= slow
