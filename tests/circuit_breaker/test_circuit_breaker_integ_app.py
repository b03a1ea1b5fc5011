"""The circuit-breaker integration-test app (integ/integ_circuit_breaker.py), synthesized offline.

The CDK integ-runner cannot read this aws-cdk-lib's cloud assembly yet (schema 55; it reads up to 53), so these tests
check what it would deploy: the test-case stack is the sample stack (nag-clean), the assertion stack
holds the API calls and expected results the app declares, cfn-lint finds no error, and a normalized
snapshot per stack shows any change. The helpers are ``cdk_serverless_patterns.testing.integ``; the
app is synthesized once (``circuit_breaker_integ_assembly`` in conftest.py).
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from aws_cdk.assertions import Template
from syrupy.extensions.json import JSONSnapshotExtension

from cdk_serverless_patterns.testing.checks import CheckedAssembly
from cdk_serverless_patterns.testing.integ import (
    assert_expected,
    call_chain,
    depends_on,
    export_target,
    granted_actions,
    imported_export,
    integ_app_problems,
    normalize_integ_template,
    resource_ref,
    sdk_calls,
)
from cdk_serverless_patterns.testing.moto import create_circuit_table, load_runtime_module

#: The app these tests cover (tests/callback/test_callback_integ_app.py checks every app has such a line).
APP = "integ_circuit_breaker"
SAMPLE_STACK = "IntegServerlessPatternsCircuitBreaker"
TEST_CASE_STACKS = [SAMPLE_STACK]
ASSERTION_STACK = "CircuitBreakerInteg/DefaultTest/DeployAssert"
#: Test-case stack -> the sample app's stack it must equal.
SAMPLE_APP_STACKS = {SAMPLE_STACK: "ServerlessPatternsCircuitBreaker"}


# ---------------------------------------------------------------------------------- test cases
def test_the_app_is_sound(
    circuit_breaker_integ_assembly: CheckedAssembly, sample_templates: dict[str, dict[str, Any]]
) -> None:
    """Registered test cases, one environment, the sample app's stacks, nag and cfn-lint clean."""
    problems = integ_app_problems(
        circuit_breaker_integ_assembly,
        test_case_stacks=TEST_CASE_STACKS,
        assertion_stack=ASSERTION_STACK,
        sample_templates={integ: sample_templates[sample] for integ, sample in SAMPLE_APP_STACKS.items()},
    )
    assert not problems, "\n".join(problems)


def test_circuit_breaker_assertions_open_the_probe_circuit(circuit_breaker_integ_assembly: CheckedAssembly) -> None:
    import integ_circuit_breaker as cb

    templates = circuit_breaker_integ_assembly.templates
    template = templates[ASSERTION_STACK]
    all_calls = sdk_calls(template)
    invokes = sdk_calls(template, "Lambda", "invoke")
    checker = resource_ref(templates, SAMPLE_STACK, "BreakerHealthChecker", "AWS::Lambda::Function")
    checks = {
        k: v
        for k, v in invokes.items()
        if export_target(templates, imported_export(v.parameters["FunctionName"])) == checker
    }
    assert len(checks) == cb.FAILURE_THRESHOLD

    # Invoked one after the other with the probe circuit; only the last invocation opens it.
    order = call_chain(checks, all_calls=all_calls)
    for attempt, logical_id in enumerate(order, start=1):
        call = checks[logical_id]
        event = json.loads(call.parameters["Payload"])
        assert event == cb.probe_circuit_config()
        assert event["url"].split("/")[2].endswith(".invalid")  # never resolves: every probe fails
        expected = call.expected["$ObjectLike"]
        assert expected["StatusCode"] == 200
        answer = expected["Payload"]["$SerializedJson"]["$ObjectLike"]
        assert answer["circuitId"] == cb.PROBE_CIRCUIT and answer["probe"] == {"healthy": False}
        if attempt < cb.FAILURE_THRESHOLD:
            assert (answer["state"], answer["transitions"]) == ("CLOSED", [])
        else:
            assert (answer["state"], answer["transitions"]) == ("OPEN", [{"from": "CLOSED", "to": "OPEN"}])

    # Then the circuit's item says OPEN with the failure count, read from the sample's own table.
    table = resource_ref(templates, SAMPLE_STACK, "BreakerStateTable", "AWS::DynamoDB::Table")
    items = sdk_calls(template, "DynamoDB", "getItem")
    (stored,) = [v for v in items.values() if v.parameters["Key"] == {"circuitId": {"S": cb.PROBE_CIRCUIT}}]
    assert export_target(templates, imported_export(stored.parameters["TableName"])) == table
    assert stored.parameters["ConsistentRead"] is True
    assert stored.expected == {
        "$ObjectLike": {
            "Item": {
                "state": {"S": "OPEN"},
                "consecutiveFailures": {"N": str(cb.FAILURE_THRESHOLD)},
                "updatedBy": {"S": "health-checker"},
            }
        }
    }
    assert stored.waits  # polled by a waiter state machine
    assert depends_on(all_calls, stored.logical_id) == [order[-1]]


def test_circuit_breaker_expectations_hold_for_the_real_health_checker(
    circuit_breaker_integ_assembly: CheckedAssembly, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The health checker's own code, on moto, answers and writes what the assertions expect, in order."""
    import boto3
    import integ_circuit_breaker as cb
    from moto import mock_aws

    template = circuit_breaker_integ_assembly.templates[ASSERTION_STACK]
    all_calls = sdk_calls(template)
    invokes = sdk_calls(template, "Lambda", "invoke")
    checks = {k: v for k, v in invokes.items() if json.loads(v.parameters["Payload"]) == cb.probe_circuit_config()}
    (stored,) = [
        v
        for v in sdk_calls(template, "DynamoDB", "getItem").values()
        if v.parameters["Key"] == {"circuitId": {"S": cb.PROBE_CIRCUIT}}
    ]

    real_getaddrinfo = socket.getaddrinfo

    def offline_dns(host: Any, *args: Any, **kwargs: Any) -> Any:
        if str(host).endswith(".invalid"):  # RFC 6761: never resolves; answered here without a DNS query
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", offline_dns)
    monkeypatch.setenv("CIRCUIT_BREAKER_TABLE", "integ-circuit-state")
    # A fresh copy of the module (its table name is read from the environment at import).
    checker = load_runtime_module(
        "circuit_breaker_health_checker", "health_checker", name="integ_health_checker_under_test"
    )
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        create_circuit_table(dynamodb, "integ-circuit-state")
        for logical_id in call_chain(checks, all_calls=all_calls):
            event = json.loads(checks[logical_id].parameters["Payload"])
            answer = checker.handler(event, None)
            # What Lambda's Invoke returns for it (the provider turns the payload bytes into a string).
            assert_expected(checks[logical_id].expected, {"StatusCode": 200, "Payload": json.dumps(answer)})
        item = dict(dynamodb.get_item(**{**stored.parameters, "TableName": "integ-circuit-state"}))
        item.pop("ResponseMetadata")
        assert_expected(stored.expected, item)


def test_circuit_breaker_assertions_follow_the_schedule_to_the_fallback(
    circuit_breaker_integ_assembly: CheckedAssembly,
) -> None:
    import integ_circuit_breaker as cb

    templates = circuit_breaker_integ_assembly.templates
    template = templates[ASSERTION_STACK]
    all_calls = sdk_calls(template)

    # The sample's own scheduled circuit: it probes a URL that never answers 200, so it must open.
    sample_template = Template.from_json(templates[SAMPLE_STACK])
    schedules = sample_template.find_resources("AWS::Scheduler::Schedule")
    (schedule,) = schedules.values()
    scheduled = json.loads(schedule["Properties"]["Target"]["Input"])
    assert scheduled["circuitId"] == cb.SAMPLE_CIRCUIT and scheduled["expectedStatusCodes"] == [200]

    items = sdk_calls(template, "DynamoDB", "getItem")
    (opened_id,) = [k for k, v in items.items() if v.parameters["Key"] == {"circuitId": {"S": cb.SAMPLE_CIRCUIT}}]
    assert items[opened_id].expected == {"$ObjectLike": {"Item": {"state": {"S": "OPEN"}}}}
    assert items[opened_id].waits

    checkout = resource_ref(templates, SAMPLE_STACK, "Checkout", "AWS::Lambda::Function")
    invokes = sdk_calls(template, "Lambda", "invoke")
    (order_id,) = [
        k
        for k, v in invokes.items()
        if export_target(templates, imported_export(v.parameters["FunctionName"])) == checkout
    ]
    order = invokes[order_id]
    assert json.loads(order.parameters["Payload"]) == cb.ORDER
    answer = order.expected["$ObjectLike"]["Payload"]["$SerializedJson"]["$ObjectLike"]
    assert answer == {"orderId": cb.ORDER["orderId"], "status": "queued"}
    assert depends_on(all_calls, order_id) == [opened_id]  # only once the circuit is OPEN


def test_assertion_providers_may_make_their_calls(circuit_breaker_integ_assembly: CheckedAssembly) -> None:
    """Each API call's IAM action is granted to the assertion providers (else the call fails in the account)."""
    needed = {"lambda:InvokeFunction", "dynamodb:GetItem"}
    granted = granted_actions(circuit_breaker_integ_assembly.templates[ASSERTION_STACK])
    assert needed <= granted, f"{APP}: not granted {needed - granted}"


# ---------------------------------------------------------------------------------- snapshots
def test_snapshots(circuit_breaker_integ_assembly: CheckedAssembly, snapshot: Any) -> None:
    """One JSON snapshot per stack of the app (__snapshots__/test_circuit_breaker_integ_app/)."""
    json_snapshot = snapshot.use_extension(JSONSnapshotExtension)
    for name, template in sorted(circuit_breaker_integ_assembly.templates.items()):
        assert normalize_integ_template(template) == json_snapshot(name=name.replace("/", "-"))
