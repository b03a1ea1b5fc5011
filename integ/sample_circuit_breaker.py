"""Sample stack: a checkout function calling a downstream "payments" service through a CircuitBreaker.

The breaker's health checker probes the payments service's health endpoint every minute; the
checkout function asks the extension (from the breaker's layer) whether the ``payments`` circuit
lets calls through, reports each call's outcome, and falls back when the circuit is open.
"""

from __future__ import annotations

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


class CircuitBreakerSampleStack(cdk.Stack):
    """One breaker, one circuit (``payments``), one protected function."""

    def __init__(self, scope: Construct, id: str = STACK_ID, *, env: cdk.Environment | None = None) -> None:
        super().__init__(scope, id, env=env, description=DESCRIPTION)
        self.breaker = CircuitBreaker(self, "Breaker")
        self.breaker.add_circuit(
            "payments",
            health_check_url=f"{PAYMENTS_BASE_URL}/health",
            schedule="rate(1 minute)",
            timeout=cdk.Duration.seconds(4),
            failure_threshold=3,
            cool_down=cdk.Duration.seconds(60),
            half_open_trials=2,
            expected_status_codes=[200],
        )
        self.checkout = pattern_function(
            self,
            "Checkout",
            code_path=CHECKOUT_CODE,
            handler="checkout.handler",
            description="Sample checkout: charges the payments service through the circuit breaker",
            environment={"PAYMENTS_URL": f"{PAYMENTS_BASE_URL}/charges"},
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
