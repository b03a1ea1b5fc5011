"""The circuit-breaker Lambda extension: circuit state from DynamoDB, cached, served on localhost.

Run by the layer's ``extensions/circuit-breaker`` launcher as ``python3 -m circuit_breaker_ext``.
It registers with the Lambda Extensions API before importing anything heavy, serves
``GET /circuits/{id}`` and ``POST /circuits/{id}/outcomes`` on ``127.0.0.1:$CIRCUIT_BREAKER_PORT``
to callers that present the function's ``AWS_SESSION_TOKEN``, and trips a circuit to ``OPEN``
from the outcomes the function reports. Standard library and boto3 only (both in the runtime).
"""

from __future__ import annotations

EXTENSION_NAME = "circuit-breaker"
