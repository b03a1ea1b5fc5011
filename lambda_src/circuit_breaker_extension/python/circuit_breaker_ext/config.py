"""The extension's settings, read once from the environment the construct sets (see the contract)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_PORT = 4243
DEFAULT_CACHE_TTL_MS = 2000
DEFAULT_FAILURE_RATE = 50.0
DEFAULT_MIN_CALLS = 10
DEFAULT_WINDOW_MS = 60_000
DEFAULT_SLOW_CALL_MS = 5000


class ConfigError(ValueError):
    """An environment variable has a value the extension cannot use."""


@dataclass(frozen=True)
class Settings:
    table: str
    port: int
    cache_ttl_ms: int
    circuits: tuple[str, ...]
    failure_rate: float  # percentage of failed (or slow) calls that trips the circuit
    min_calls: int
    window_ms: int
    slow_call_ms: int
    token: str  # the function's AWS_SESSION_TOKEN: callers must present it

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
