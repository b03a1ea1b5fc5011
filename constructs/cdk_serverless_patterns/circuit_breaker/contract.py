"""The names the circuit breaker's parts must agree on, without the CDK.

``CircuitBreaker`` (the construct), the extension and its client (``lambda_src/circuit_breaker_extension``),
the health checker (``lambda_src/circuit_breaker_health_checker``), the ``serverless-patterns circuit``
command and ``testing`` all read and write the same items, events and environment. The runtime code
ships alone and keeps its own copies; ``tests/circuit_breaker/test_circuit_breaker_contract.py``
asserts they equal these.
"""

from __future__ import annotations

import re

# --- the state table: one item per circuit ---------------------------------------------------
#: Partition key (String) of the state table.
TABLE_KEY = "circuitId"
CLOSED = "CLOSED"
OPEN = "OPEN"
HALF_OPEN = "HALF_OPEN"
#: Operator states: set by ``serverless-patterns circuit open|disable``, never overwritten by checks or trips.
FORCED_OPEN = "FORCED_OPEN"
DISABLED = "DISABLED"
#: Every state a circuit item can hold.
CIRCUIT_STATES = (CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, DISABLED)
OPERATOR_STATES = (FORCED_OPEN, DISABLED)
#: States in which the client lets a call through without a trial.
PASSING_STATES = (CLOSED, DISABLED)
#: ``updatedBy`` of an item, by writer.
UPDATED_BY_HEALTH_CHECKER = "health-checker"
UPDATED_BY_EXTENSION = "extension"
UPDATED_BY_OPERATOR = "operator"
#: What a circuit id may be (the construct refuses others; the extension and client answer them 400).
CIRCUIT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")

# --- state-change events and metrics -----------------------------------------------------------
EVENT_SOURCE = "cdk-serverless-patterns.circuit-breaker"
EVENT_DETAIL_TYPE = "Circuit State Changed"
METRIC_NAMESPACE = "CdkServerlessPatterns/CircuitBreaker"

# --- the extension -----------------------------------------------------------------------------
#: Port of the extension on 127.0.0.1 (2773 belongs to AWS's Parameters and Secrets extension).
EXTENSION_PORT = 4243
#: The name Lambda registers the extension under (the launcher's file name in ``extensions/``).
EXTENSION_NAME = "circuit-breaker"
#: Header carrying the function's ``AWS_SESSION_TOKEN`` to the extension.
TOKEN_HEADER = "X-Circuit-Breaker-Token"
#: What the client does when the extension cannot answer.
FAIL_OPEN = "fail_open"
FAIL_CLOSED = "fail_closed"
ON_EXTENSION_ERROR = (FAIL_OPEN, FAIL_CLOSED)

# --- environment variables the construct sets ---------------------------------------------------
ENV_TABLE = "CIRCUIT_BREAKER_TABLE"
ENV_PORT = "CIRCUIT_BREAKER_PORT"
ENV_CACHE_TTL_MS = "CIRCUIT_BREAKER_CACHE_TTL_MS"
ENV_CIRCUITS = "CIRCUIT_BREAKER_CIRCUITS"
ENV_ON_EXTENSION_ERROR = "CIRCUIT_BREAKER_ON_EXTENSION_ERROR"
ENV_FAILURE_RATE = "CIRCUIT_BREAKER_FAILURE_RATE"
ENV_MIN_CALLS = "CIRCUIT_BREAKER_MIN_CALLS"
ENV_WINDOW_MS = "CIRCUIT_BREAKER_WINDOW_MS"
ENV_SLOW_CALL_MS = "CIRCUIT_BREAKER_SLOW_CALL_MS"
#: The health checker's own.
ENV_EVENT_BUS = "CIRCUIT_BREAKER_EVENT_BUS"
ENV_METRIC_NAMESPACE = "CIRCUIT_BREAKER_METRIC_NAMESPACE"

# --- Lambda assets ------------------------------------------------------------------------------
EXTENSION_ASSET = "circuit_breaker_extension"
HEALTH_CHECKER_ASSET = "circuit_breaker_health_checker"
