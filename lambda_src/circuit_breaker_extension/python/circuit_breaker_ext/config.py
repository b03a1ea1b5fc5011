"""The extension's settings, read once from the environment the construct sets (see the contract).

Imported before the first ``event/next``, so it imports nothing beyond ``os`` (no dataclasses:
they cost ~10 ms to import).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_PORT = 4243
DEFAULT_CACHE_TTL_MS = 2000
DEFAULT_FAILURE_RATE = 50.0
DEFAULT_MIN_CALLS = 10
DEFAULT_WINDOW_MS = 60_000
DEFAULT_SLOW_CALL_MS = 5000


class ConfigError(ValueError):
    """An environment variable has a value the extension cannot use."""


class Settings:
    __slots__ = (
        "cache_ttl_ms",
        "circuits",
        "failure_rate",
        "min_calls",
        "port",
        "slow_call_ms",
        "table",
        "token",
        "window_ms",
    )

    def __init__(
        self,
        *,
        table: str,
        port: int = DEFAULT_PORT,
        cache_ttl_ms: int = DEFAULT_CACHE_TTL_MS,
        circuits: tuple[str, ...] = (),
        failure_rate: float = DEFAULT_FAILURE_RATE,
        min_calls: int = DEFAULT_MIN_CALLS,
        window_ms: int = DEFAULT_WINDOW_MS,
        slow_call_ms: int = DEFAULT_SLOW_CALL_MS,
        token: str = "",
    ) -> None:
        self.table = table
        self.port = port
        self.cache_ttl_ms = cache_ttl_ms
        self.circuits = circuits
        self.failure_rate = failure_rate  # percentage of failed (or slow) calls that trips the circuit
        self.min_calls = min_calls
        self.window_ms = window_ms
        self.slow_call_ms = slow_call_ms
        self.token = token  # the function's AWS_SESSION_TOKEN: callers must present it

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        problems: list[str] = []

        def number(name: str, default: float, low: float, high: float) -> float:
            raw = source.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                problems.append(f"{name}={raw!r} is not a number")
                return default
            if not low <= value <= high:
                problems.append(f"{name}={raw!r} must be between {low:g} and {high:g}")
                return default
            return value

        table = source.get("CIRCUIT_BREAKER_TABLE", "").strip()
        if not table:
            problems.append("CIRCUIT_BREAKER_TABLE is not set")
        settings = cls(
            table=table,
            port=int(number("CIRCUIT_BREAKER_PORT", DEFAULT_PORT, 1, 65535)),
            cache_ttl_ms=int(number("CIRCUIT_BREAKER_CACHE_TTL_MS", DEFAULT_CACHE_TTL_MS, 0, 3_600_000)),
            circuits=tuple(c.strip() for c in source.get("CIRCUIT_BREAKER_CIRCUITS", "").split(",") if c.strip()),
            failure_rate=number("CIRCUIT_BREAKER_FAILURE_RATE", DEFAULT_FAILURE_RATE, 0.0001, 100),
            min_calls=int(number("CIRCUIT_BREAKER_MIN_CALLS", DEFAULT_MIN_CALLS, 1, 1_000_000)),
            window_ms=int(number("CIRCUIT_BREAKER_WINDOW_MS", DEFAULT_WINDOW_MS, 1, 86_400_000)),
            slow_call_ms=int(number("CIRCUIT_BREAKER_SLOW_CALL_MS", DEFAULT_SLOW_CALL_MS, 1, 86_400_000)),
            token=source.get("AWS_SESSION_TOKEN", ""),
        )
        if problems:
            raise ConfigError("; ".join(problems))
        return settings
