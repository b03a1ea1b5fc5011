"""Sample stack: a checkout function calling a downstream "payments" service through a CircuitBreaker.

The breaker's health checker probes the payments service's health endpoint every minute; the
checkout function asks the extension (from the breaker's layer) whether the ``payments`` circuit
lets calls through, reports each call's outcome, and falls back when the circuit is open.

Two CDK context values let ``serverless-patterns demo`` point the sample at a local stand-in of the
service without changing what it synthesizes by default:

- ``payments_base_url`` (default ``https://payments.example.com``): the service's base URL. Plain
  ``http://`` is accepted only for ``localhost`` / ``127.0.0.1`` (the demo's local payments service);
  any other ``http://`` URL is refused by the construct as usual.
- ``payments_cool_down_seconds`` (default 60): how long the circuit stays OPEN before a trial. The
  demo deploys with a few seconds so it shows OPEN -> HALF_OPEN -> CLOSED without waiting a minute.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import aws_cdk as cdk

from cdk_serverless_patterns import CircuitBreaker
from cdk_serverless_patterns.core import acknowledge, pattern_function
from constructs import Construct

STACK_ID = "ServerlessPatternsCircuitBreaker"
DESCRIPTION = "cdk-serverless-patterns: circuit breaker in front of a payments service"
#: The sample's own function: sample code stays in integ/, out of the wheel.
CHECKOUT_CODE = Path(__file__).resolve().parent / "functions" / "circuit_breaker_checkout"
PAYMENTS_BASE_URL = "https://payments.example.com"
COOL_DOWN_SECONDS = 60
#: Hosts for which a plain http:// base URL is accepted (a local stand-in of the service).
LOCAL_HOSTS = ("localhost", "127.0.0.1")


def payments_settings(stack: cdk.Stack) -> tuple[str, bool, int]:
    """The payments base URL, whether it may be plain http, and the cool-down, from CDK context."""
    base_url = str(stack.node.try_get_context("payments_base_url") or PAYMENTS_BASE_URL).rstrip("/")
    parsed = urllib.parse.urlsplit(base_url)
    allow_http = parsed.scheme == "http" and parsed.hostname in LOCAL_HOSTS
    cool_down = stack.node.try_get_context("payments_cool_down_seconds")
    return base_url, allow_http, int(cool_down) if cool_down is not None else COOL_DOWN_SECONDS


class CircuitBreakerSampleStack(cdk.Stack):
    """One breaker, one circuit (``payments``), one protected function."""

    def __init__(self, scope: Construct, id: str = STACK_ID, *, env: cdk.Environment | None = None) -> None:
        super().__init__(scope, id, env=env, description=DESCRIPTION)
        base_url, allow_http, cool_down_seconds = payments_settings(self)
        self.breaker = CircuitBreaker(self, "Breaker")
        self.breaker.add_circuit(
            "payments",
            health_check_url=f"{base_url}/health",
            schedule="rate(1 minute)",
            timeout=cdk.Duration.seconds(4),
            failure_threshold=3,
            cool_down=cdk.Duration.seconds(cool_down_seconds),
            half_open_trials=2,
            expected_status_codes=[200],
            allow_http=allow_http,
        )
        self.checkout = pattern_function(
            self,
            "Checkout",
            code_path=CHECKOUT_CODE,
            handler="checkout.handler",
            description="Sample checkout: charges the payments service through the circuit breaker",
            environment={"PAYMENTS_URL": f"{base_url}/charges"},
            timeout=cdk.Duration.seconds(10),
        )
        acknowledge(
            self.checkout,
            "The checkout function is invoked synchronously by its caller, which receives every error; an "
            "asynchronous dead-letter queue would never receive anything.",
            "Serverless-LambdaDLQ",
        )
        self.breaker.protect(self.checkout, circuits=["payments"])

        cdk.CfnOutput(
            self,
            "CircuitBreakerTableName",
            value=self.breaker.table.table_name,
            description="State table of the circuit breaker (serverless-patterns circuit status --table ...)",
        )
        cdk.CfnOutput(
            self,
            "CheckoutFunctionName",
            value=self.checkout.function_name,
            description="The sample function protected by the breaker",
        )
        cdk.CfnOutput(
            self,
            "HealthCheckDeadLetterQueueUrl",
            value=self.breaker.dead_letter_queue.queue_url,
            description="Health-check invocations that could not run",
        )
