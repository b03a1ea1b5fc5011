"""Sample: a checkout function that charges a downstream "payments" service through the circuit breaker.

The breaker's layer puts ``circuit_breaker_client`` on the function's path (``/opt/python``) and runs
the extension beside the function. While the ``payments`` circuit is OPEN (or an operator holds it
FORCED_OPEN) the charge short-circuits to a fallback that queues the order instead of waiting on a
failing service; every real call reports its outcome, so a burst of failures trips the circuit
before the next health check does.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from circuit_breaker_client import protected  # type: ignore[import-not-found, unused-ignore]

TIMEOUT_S = 3.0


class PaymentsError(Exception):
    """The payments service failed (5xx, timeout, connection): counts against the circuit."""


class OrderRejected(Exception):
    """The payments service refused this order (4xx): the caller's problem, not the service's."""


def queue_for_later(order: dict[str, Any]) -> dict[str, Any]:
    """The fallback while the circuit is open: accept the order, charge it when payments recovers."""
    return {"orderId": order["orderId"], "status": "queued", "reason": "payments is unavailable; charged later"}


@protected("payments", fallback=queue_for_later, failure_on=(PaymentsError,))  # type: ignore[untyped-decorator, unused-ignore]
def charge(order: dict[str, Any]) -> dict[str, Any]:
    """POSTs the charge; only service failures (not rejected orders) count against the circuit."""
    request = urllib.request.Request(
        os.environ["PAYMENTS_URL"],
        data=json.dumps({"orderId": order["orderId"], "amountCents": order["amountCents"]}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Idempotency-Key": str(order["orderId"])},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        if error.code < 500:
            raise OrderRejected(f"payments rejected order {order['orderId']}: HTTP {error.code}") from error
        raise PaymentsError(f"payments failed: HTTP {error.code}") from error
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise PaymentsError(f"payments unreachable: {error}") from error
    return {"orderId": order["orderId"], "status": "charged", "payment": json.loads(body or b"{}")}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """``{"orderId": "o-1", "amountCents": 1299}`` -> charged, queued (circuit open) or rejected."""
    order_id, amount = event.get("orderId"), event.get("amountCents")
    if not isinstance(order_id, str) or not order_id or not isinstance(amount, int) or amount <= 0:
        return {"status": "invalid", "reason": "orderId (non-empty string) and amountCents (positive int) are required"}
    order = {"orderId": order_id, "amountCents": amount}
    try:
        result: dict[str, Any] = charge(order)
    except OrderRejected as error:
        return {"orderId": order_id, "status": "rejected", "reason": str(error)}
    except PaymentsError as error:
        return {"orderId": order_id, "status": "failed", "reason": str(error)}
    return result
