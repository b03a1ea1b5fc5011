"""CircuitBreaker: circuit state in DynamoDB, scheduled health checks, and a Lambda extension layer."""

from cdk_serverless_patterns.circuit_breaker.breaker import (
    CIRCUIT_STATES,
    EVENT_DETAIL_TYPE,
    EVENT_SOURCE,
    EXTENSION_PORT,
    METRIC_NAMESPACE,
    Circuit,
    CircuitBreaker,
)

__all__ = [
    "CIRCUIT_STATES",
    "EVENT_DETAIL_TYPE",
    "EVENT_SOURCE",
    "EXTENSION_PORT",
    "METRIC_NAMESPACE",
    "Circuit",
    "CircuitBreaker",
]
