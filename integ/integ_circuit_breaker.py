#!/usr/bin/env python3
"""Integration test of the circuit breaker, for the CDK integ-runner and a real AWS account.

The test case is the circuit-breaker **sample stack** of ``integ/sample_circuit_breaker.py``,
unchanged. The assertions check the breaker's behaviour on the deployed resources:

1. *the health checker opens a circuit*: invoked ``FAILURE_THRESHOLD`` times with a circuit whose
   health-check URL cannot answer (the ``.invalid`` top-level domain never resolves, RFC 2606),
   it keeps the circuit CLOSED while counting failures, then moves it to OPEN; the circuit's item
   in the state table says OPEN with the failure count.
2. *the schedule drives the sample's circuit*: the sample's ``payments`` circuit probes
   ``https://payments.example.com/health`` every minute and expects HTTP 200, which that host
   never gives; within minutes of the deployment the scheduled checks have opened it.
3. *a protected function short-circuits*: with ``payments`` OPEN, the sample checkout function
   (through the extension in the breaker's layer) queues the order instead of calling payments.

Run it against an account with ``npx integ-runner --language python --directory integ`` once a
release of the runner reads this aws-cdk-lib's cloud assembly (schema 55; it stops at 53); the unit tests
synthesize it offline (tests/circuit_breaker/test_circuit_breaker_integ_app.py).
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from aws_cdk.integ_tests_alpha import ExpectedResult, IApiCall, IntegTest, Match
from sample_circuit_breaker import CircuitBreakerSampleStack

SAMPLE_STACK_ID = "IntegServerlessPatternsCircuitBreaker"
#: A circuit only the assertions use: its URL never resolves, so every probe fails.
PROBE_CIRCUIT = "integ-unreachable"
PROBE_URL = "https://circuit-breaker-integ.invalid/health"
FAILURE_THRESHOLD = 3
#: The sample's scheduled circuit and its protected function's order.
SAMPLE_CIRCUIT = "payments"
ORDER = {"orderId": "integ-order-1", "amountCents": 1299}


def probe_circuit_config() -> dict[str, Any]:
    """The health checker's event for the probe circuit (the layout the schedules pass)."""
    return {
        "circuitId": PROBE_CIRCUIT,
        "url": PROBE_URL,
        "timeoutMs": 2000,
        "failureThreshold": FAILURE_THRESHOLD,
        "coolDownMs": 3_600_000,  # stays OPEN for the rest of the test
        "halfOpenTrials": 1,
        "expectedStatusCodes": [200],
        "allowHttp": False,
    }


def _circuit_item(integ: IntegTest, stack: CircuitBreakerSampleStack, circuit_id: str) -> IApiCall:
    return integ.assertions.aws_api_call(
        "DynamoDB",
        "getItem",
        {
            "TableName": stack.breaker.table.table_name,
            "Key": {"circuitId": {"S": circuit_id}},
            "ConsistentRead": True,
        },
    )


def add_health_checker_assertions(integ: IntegTest, stack: CircuitBreakerSampleStack) -> IApiCall:
    """Invokes the health checker FAILURE_THRESHOLD times, in order; the last invocation opens the circuit."""
    previous: IApiCall | None = None
    for attempt in range(1, FAILURE_THRESHOLD + 1):
        opens = attempt == FAILURE_THRESHOLD
        expected_state: dict[str, Any] = {
            "circuitId": PROBE_CIRCUIT,
            "state": "OPEN" if opens else "CLOSED",
            "probe": {"healthy": False},
            "transitions": [{"from": "CLOSED", "to": "OPEN"}] if opens else [],
        }
        invoke = integ.assertions.invoke_function(
            function_name=stack.breaker.health_checker.function_name,
            payload=json.dumps(probe_circuit_config()),
        ).expect(
            ExpectedResult.object_like(
                {"StatusCode": 200, "Payload": Match.serialized_json(Match.object_like(expected_state))}
            )
        )
        if previous is not None:
            previous.next(invoke)
        previous = invoke
    assert previous is not None
    stored = (
        _circuit_item(integ, stack, PROBE_CIRCUIT)
        .expect(
            ExpectedResult.object_like(
                {
                    "Item": {
                        "state": {"S": "OPEN"},
                        "consecutiveFailures": {"N": str(FAILURE_THRESHOLD)},
                        "updatedBy": {"S": "health-checker"},
                    }
                }
            )
        )
        .wait_for_assertions(total_timeout=cdk.Duration.minutes(2), interval=cdk.Duration.seconds(5))
    )
    return previous.next(stored)


def add_schedule_assertions(integ: IntegTest, stack: CircuitBreakerSampleStack) -> IApiCall:
    """The scheduled checks open the sample's circuit; the protected checkout then queues orders."""
    circuit = stack.breaker.circuits[SAMPLE_CIRCUIT]
    opened = (
        _circuit_item(integ, stack, SAMPLE_CIRCUIT)
        .expect(ExpectedResult.object_like({"Item": {"state": {"S": "OPEN"}}}))
        # failure_threshold scheduled checks, one a minute, plus Scheduler's first-run delay.
        .wait_for_assertions(
            total_timeout=cdk.Duration.minutes(circuit.failure_threshold + 10), interval=cdk.Duration.seconds(30)
        )
    )
    checkout = integ.assertions.invoke_function(
        function_name=stack.checkout.function_name, payload=json.dumps(ORDER)
    ).expect(
        ExpectedResult.object_like(
            {
                "StatusCode": 200,
                "Payload": Match.serialized_json(Match.object_like({"orderId": ORDER["orderId"], "status": "queued"})),
            }
        )
    )
    return opened.next(checkout)


def build_app(outdir: str | None = None) -> cdk.App:
    """The integration-test app (sample stack and assertion stack), without synthesizing it."""
    app = cdk.App(outdir=outdir) if outdir else cdk.App()
    # Environment-agnostic, like the assertion stack IntegTest adds: the assertions refer to the test
    # case's resources, which CDK allows only within one environment; the runner picks account and region.
    stack = CircuitBreakerSampleStack(app, SAMPLE_STACK_ID)
    integ = IntegTest(app, "CircuitBreakerInteg", test_cases=[stack])
    add_health_checker_assertions(integ, stack)
    add_schedule_assertions(integ, stack)
    return app


if __name__ == "__main__":
    build_app().synth()
