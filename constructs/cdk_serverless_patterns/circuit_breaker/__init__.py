"""The circuit-breaker pattern: circuit state in DynamoDB, scheduled health checks, a Lambda extension.

``contract`` (the names the construct, the runtime code, the toolkit and the testing helpers share)
imports without the CDK; the construct classes load on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdk_serverless_patterns._lazy import lazy_exports
from cdk_serverless_patterns.circuit_breaker import contract
from cdk_serverless_patterns.circuit_breaker.contract import (
    CIRCUIT_STATES,
    EVENT_DETAIL_TYPE,
    EVENT_SOURCE,
    EXTENSION_PORT,
    METRIC_NAMESPACE,
)

_EXPORTS = {
    "CircuitBreaker": "cdk_serverless_patterns.circuit_breaker.circuit_breaker",
    "Circuit": "cdk_serverless_patterns.circuit_breaker.health_check",
    "HealthCheck": "cdk_serverless_patterns.circuit_breaker.health_check",
}

if TYPE_CHECKING:
    from cdk_serverless_patterns.circuit_breaker.circuit_breaker import CircuitBreaker
    from cdk_serverless_patterns.circuit_breaker.health_check import Circuit, HealthCheck

__all__ = [
    "CIRCUIT_STATES",
    "EVENT_DETAIL_TYPE",
    "EVENT_SOURCE",
    "EXTENSION_PORT",
    "METRIC_NAMESPACE",
    "Circuit",
    "CircuitBreaker",
    "HealthCheck",
    "contract",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
