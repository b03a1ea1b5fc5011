"""The integration-test apps (integ/integ_<pattern>.py), synthesized offline.

The CDK integ-runner cannot read this aws-cdk-lib's cloud assembly yet (DESIGN.md), so these tests
check what it would deploy: the test-case stacks are the sample stacks (nag-clean), the assertion
stacks hold the API calls and expected results the apps declare, cfn-lint finds no error, and a
normalized snapshot per stack shows any change.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template
from syrupy.extensions.json import JSONSnapshotExtension

from cdk_serverless_patterns.testing import normalize_template
from cdk_serverless_patterns.testing.checks import (
    CheckedAssembly,
    cfn_lint_findings,
    format_table,
    synth_with_checks,
)

# One integ app per pattern: (module in integ/, test-case stack -> the sample app's stack it must equal).
APPS = {
    "integ_callback": {"IntegServerlessPatternsCallback": "ServerlessPatternsCallback"},
    "integ_circuit_breaker": {"IntegServerlessPatternsCircuitBreaker": "ServerlessPatternsCircuitBreaker"},
}
PROBE_STACK = "IntegServerlessPatternsCallbackProbe"
ASSERTION_STACKS = {
    "integ_callback": "CallbackInteg/DefaultTest/DeployAssert",
    "integ_circuit_breaker": "CircuitBreakerInteg/DefaultTest/DeployAssert",
}
TEST_CASE_STACKS = {
    "integ_callback": ["IntegServerlessPatternsCallback", PROBE_STACK],
    "integ_circuit_breaker": ["IntegServerlessPatternsCircuitBreaker"],
}
SDK_CALL = "Custom::DeployAssert@SdkCall"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def integ_assemblies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CheckedAssembly]:
    """Both integ apps synthesized once, in this process, with the cdk-nag packs.

    With the variables the CDK CLI (and so the integ-runner) sets for an app, so that the apps are
    tested as the runner would synthesize them.
    """
    import integ_callback  # integ/ is on sys.path (tests/conftest.py)
    import integ_circuit_breaker

    with pytest.MonkeyPatch.context() as env:
        env.setenv("CDK_DEFAULT_ACCOUNT", "123456789012")
        env.setenv("CDK_DEFAULT_REGION", "us-east-1")
        return {
            module.__name__: synth_with_checks(module.build_app(outdir=str(tmp_path_factory.mktemp(module.__name__))))
            for module in (integ_callback, integ_circuit_breaker)
        }


def _sdk_calls(template: Mapping[str, Any], service: str, api: str) -> dict[str, dict[str, Any]]:
    """The assertion stack's API calls of service.api, with their JSON-encoded properties decoded."""
    calls = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != f"{SDK_CALL}{service}{api}":
            continue
        props = dict(resource["Properties"])
        props["parameters"] = {k: _decode(v) for k, v in props.get("parameters", {}).items()}
        if "expected" in props:
            props["expected"] = json.loads(props["expected"])
        props["DependsOn"] = resource.get("DependsOn", [])
        calls[logical_id] = props
    return calls


def _decode(value: Any) -> Any:
    """A parameter as the assertion provider decodes it (JSON.parse of each top-level value)."""
    if isinstance(value, str):
        return json.loads(value)
    return value  # a token (Fn::Join around an import): checked as it is


def _token(value: Any) -> Any:
    """The token inside a string parameter, which the provider encodes as ``Fn::Join ['"', token, '"']``."""
    parts = value["Fn::Join"][1]
    assert value["Fn::Join"][0] == "" and parts[0] == parts[2] == '"' and len(parts) == 3, value
    return parts[1]


def _imports(value: Any) -> str:
    """The export a string parameter imports from a test-case stack."""
    return str(_token(value)["Fn::ImportValue"])


def _depends_on(calls: Mapping[str, Mapping[str, Any]], logical_id: str) -> list[str]:
    return [d for d in calls[logical_id]["DependsOn"] if d in calls]


def _ordered(calls: Mapping[str, Mapping[str, Any]], *, all_calls: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Logical ids of ``calls`` in the order their DependsOn chain runs them (each depends on the one before)."""
    remaining = set(calls)
    order: list[str] = []
    while remaining:
        ready = [c for c in remaining if not (set(_depends_on(all_calls, c)) & remaining)]
        assert len(ready) == 1, f"calls {sorted(remaining)} are not one chain (ready: {ready})"
        order.append(ready[0])
        remaining.remove(ready[0])
    return order


def _all_sdk_calls(template: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    calls: dict[str, dict[str, Any]] = {}
    for resource in template["Resources"].values():
        if resource["Type"].startswith(SDK_CALL):
            name = resource["Type"][len(SDK_CALL) :]
            for service in ("StepFunctions", "EventBridge", "DynamoDB", "Lambda", "S3"):
                if name.startswith(service):
                    calls.update(_sdk_calls(template, service, name[len(service) :]))
    return calls


def _walk_exports(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if "Fn::ImportValue" in value:
            yield str(value["Fn::ImportValue"])
        for item in value.values():
            yield from _walk_exports(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_exports(item)


def _export_target(templates: Mapping[str, Mapping[str, Any]], export: str) -> tuple[str, Any]:
    """The stack and value an exported output refers to (e.g. ``("Stack", {"Ref": "Workflow193EF7C1"})``)."""
    stack, _, _ = export.partition(":")
    for output in templates[stack].get("Outputs", {}).values():
        if output.get("Export", {}).get("Name") == export:
            return stack, output["Value"]
    raise AssertionError(f"{export} is not exported by {stack}")


def _ref(templates: Mapping[str, Mapping[str, Any]], stack: str, prefix: str, type_: str) -> tuple[str, Any]:
    """The one resource of ``stack`` whose logical id starts with ``prefix``, as an export refers to it."""
    matches = [k for k, r in templates[stack]["Resources"].items() if k.startswith(prefix) and r["Type"] == type_]
    assert len(matches) == 1, f"{stack}: {prefix}* of type {type_}: {matches}"
    return stack, {"Ref": matches[0]}


# The one place a stack's own id shows in its resources: the Sid CDK gives a rule's SQS policy statement.
_STACK_DERIVED_SID = re.compile(r'"Sid": "AllowEventRule[A-Za-z0-9]+"')


def _resources_without_stack_ids(template: Mapping[str, Any]) -> Any:
    text = json.dumps(normalize_template(dict(template))["Resources"], sort_keys=True)
    return json.loads(_STACK_DERIVED_SID.sub('"Sid": "AllowEventRule<stack>"', text))


# ---------------------------------------------------------------------------------- test cases
def test_every_integ_app_is_covered_here() -> None:
    """A new integ/integ_<pattern>.py joins APPS (and gets these checks and its snapshots)."""
    assert {path.stem for path in (ROOT / "integ").glob("integ_*.py")} == set(APPS)


def test_integ_manifest_registers_the_test_cases(integ_assemblies: dict[str, CheckedAssembly]) -> None:
    """integ.json (what the integ-runner reads) lists the test-case stacks and the assertion stack."""
    for module, assembly in integ_assemblies.items():
        manifest = json.loads((assembly.outdir / "integ.json").read_text())
        (case,) = manifest["testCases"].values()
        assert case["stacks"] == TEST_CASE_STACKS[module]
        assert case["assertionStack"] == ASSERTION_STACKS[module]
        assert set(assembly.templates) == {*TEST_CASE_STACKS[module], ASSERTION_STACKS[module]}


def test_all_stacks_share_one_environment(integ_assemblies: dict[str, CheckedAssembly]) -> None:
    """The assertion stack refers to the test cases' resources: CDK allows that only within one environment."""
    for module, assembly in integ_assemblies.items():
        manifest = json.loads((assembly.outdir / "manifest.json").read_text())
        environments = {
            artifact["displayName"]: artifact["environment"]
            for artifact in manifest["artifacts"].values()
            if artifact["type"] == "aws:cloudformation:stack"
        }
        assert len(environments) == len(TEST_CASE_STACKS[module]) + 1
        assert set(environments.values()) == {"aws://unknown-account/unknown-region"}, environments


def test_test_case_stacks_are_the_sample_stacks(
    integ_assemblies: dict[str, CheckedAssembly], sample_templates: dict[str, dict[str, Any]]
) -> None:
    """Same resources as the sample app's stacks; only exports for the assertion stack are added."""
    for module, pairs in APPS.items():
        for integ_stack, sample_stack in pairs.items():
            integ_template = integ_assemblies[module].templates[integ_stack]
            sample_template = sample_templates[sample_stack]
            assert _resources_without_stack_ids(integ_template) == _resources_without_stack_ids(sample_template)
            outputs = integ_template["Outputs"]
            assert {k: v for k, v in outputs.items() if k in sample_template["Outputs"]} == sample_template["Outputs"]
            added = set(outputs) - set(sample_template["Outputs"])
            assert added and all(k.startswith("ExportsOutput") for k in added), added


def test_probe_stack_waits_on_the_pattern(integ_assemblies: dict[str, CheckedAssembly]) -> None:
    """The callback probe: a CallbackPattern, a rule for the probe's event source, a workflow waiting on it."""
    import integ_callback

    template = Template.from_json(integ_assemblies["integ_callback"].templates[PROBE_STACK])
    template.resource_count_is("AWS::StepFunctions::StateMachine", 2)  # the resumer and the probe workflow
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": [integ_callback.PROBE_EVENT_SOURCE],
                "detail-type": [integ_callback.PROBE_DETAIL_TYPE],
                "detail": {"status": Match.array_with(["SUCCEEDED"])},
            }
        },
    )
    template.has_resource_properties(
        "AWS::DynamoDB::Table", {"TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": True}}
    )
    template.has_resource("AWS::DynamoDB::Table", {"DeletionPolicy": "Delete"})  # the probe leaves nothing behind


def test_test_case_stacks_are_nag_clean(integ_assemblies: dict[str, CheckedAssembly]) -> None:
    """cdk-nag's packs leave no finding on the test-case stacks; the assertion stacks are test scaffolding."""
    for module, assembly in integ_assemblies.items():
        stacks = TEST_CASE_STACKS[module]
        findings = [f for f in assembly.nag_findings if f.path.split("/")[0] in stacks]
        assert not findings, "unacknowledged cdk-nag findings:\n" + format_table(findings)
        # Not vacuous: the packs did evaluate every test-case stack (their acknowledged findings are reported).
        report = json.loads((assembly.outdir / "validation-report.json").read_text())
        evaluated = {
            construct["constructPath"].split("/")[0]
            for plugin in report["pluginReports"]
            if plugin["pluginName"] == "AwsSolutions"
            for violation in plugin.get("suppressedViolations", []) + plugin.get("violations", [])
            for construct in violation["violatingConstructs"]
        }
        assert set(stacks) <= evaluated, f"cdk-nag did not evaluate {set(stacks) - evaluated}"


def test_cfn_lint_finds_no_error(integ_assemblies: dict[str, CheckedAssembly]) -> None:
    for assembly in integ_assemblies.values():
        findings = [f for f in cfn_lint_findings(assembly.templates) if f.severity == "error"]
        assert not findings, "cfn-lint errors:\n" + format_table(findings)


# ---------------------------------------------------------------------------------- assertions
def test_circuit_breaker_assertions_open_the_probe_circuit(integ_assemblies: dict[str, CheckedAssembly]) -> None:
    import integ_circuit_breaker as cb

    templates = integ_assemblies["integ_circuit_breaker"].templates
    sample = "IntegServerlessPatternsCircuitBreaker"
    template = templates[ASSERTION_STACKS["integ_circuit_breaker"]]
    all_calls = _all_sdk_calls(template)
    invokes = _sdk_calls(template, "Lambda", "invoke")
    checker = _ref(templates, sample, "BreakerHealthChecker", "AWS::Lambda::Function")
    checks = {
        k: v
        for k, v in invokes.items()
        if _export_target(templates, _imports(v["parameters"]["FunctionName"])) == checker
    }
    assert len(checks) == cb.FAILURE_THRESHOLD

    # Invoked one after the other with the probe circuit; only the last invocation opens it.
    order = _ordered(checks, all_calls=all_calls)
    for attempt, logical_id in enumerate(order, start=1):
        call = checks[logical_id]
        event = json.loads(call["parameters"]["Payload"])
        assert event == cb.probe_circuit_config()
        assert event["url"].split("/")[2].endswith(".invalid")  # never resolves: every probe fails
        expected = call["expected"]["$ObjectLike"]
        assert expected["StatusCode"] == 200
        answer = expected["Payload"]["$SerializedJson"]["$ObjectLike"]
        assert answer["circuitId"] == cb.PROBE_CIRCUIT and answer["probe"] == {"healthy": False}
        if attempt < cb.FAILURE_THRESHOLD:
            assert (answer["state"], answer["transitions"]) == ("CLOSED", [])
        else:
            assert (answer["state"], answer["transitions"]) == ("OPEN", [{"from": "CLOSED", "to": "OPEN"}])

    # Then the circuit's item says OPEN with the failure count, read from the sample's own table.
    table = _ref(templates, sample, "BreakerStateTable", "AWS::DynamoDB::Table")
    items = _sdk_calls(template, "DynamoDB", "getItem")
    (stored,) = [v for k, v in items.items() if v["parameters"]["Key"] == {"circuitId": {"S": cb.PROBE_CIRCUIT}}]
    assert _export_target(templates, _imports(stored["parameters"]["TableName"])) == table
    assert stored["parameters"]["ConsistentRead"] is True
    assert stored["expected"] == {
        "$ObjectLike": {
            "Item": {
                "state": {"S": "OPEN"},
                "consecutiveFailures": {"N": str(cb.FAILURE_THRESHOLD)},
                "updatedBy": {"S": "health-checker"},
            }
        }
    }
    assert "stateMachineArn" in stored  # polled by a waiter state machine
    stored_id = next(k for k, v in items.items() if v is stored)
    assert _depends_on(all_calls, stored_id) == [order[-1]]


def _matcher(encoded: Any) -> Any:
    """An integ-tests expected result as the aws-cdk-lib matcher its assertion provider builds from it."""
    from aws_cdk.assertions import Match as CdkMatch

    def convert(value: Any) -> Any:
        if isinstance(value, list):
            return [convert(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, inner),) = value.items()
            makers: dict[str, Callable[[Any], Any]] = {
                "$ObjectLike": CdkMatch.object_like,
                "$ArrayWith": CdkMatch.array_with,
                "$SerializedJson": CdkMatch.serialized_json,
                "$StringLike": CdkMatch.string_like_regexp,
            }
            if key in makers:
                return makers[key](convert(inner))
        return {key: convert(item) for key, item in value.items()}

    converted = convert(encoded)
    return converted if hasattr(converted, "test") else CdkMatch.exact(converted)


def _assert_matches(encoded: Any, actual: Any) -> None:
    result = _matcher(encoded).test(actual)
    result.finished()
    assert not result.has_failed(), result.render_mismatch()


def test_circuit_breaker_expectations_hold_for_the_real_health_checker(
    integ_assemblies: dict[str, CheckedAssembly], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The health checker's own code, on moto, answers and writes what the assertions expect, in order."""
    import importlib.util
    import socket

    import boto3
    import integ_circuit_breaker as cb
    from moto import mock_aws

    template = integ_assemblies["integ_circuit_breaker"].templates[ASSERTION_STACKS["integ_circuit_breaker"]]
    all_calls = _all_sdk_calls(template)
    invokes = _sdk_calls(template, "Lambda", "invoke")
    checks = {k: v for k, v in invokes.items() if json.loads(v["parameters"]["Payload"]) == cb.probe_circuit_config()}
    (stored,) = [
        v
        for v in _sdk_calls(template, "DynamoDB", "getItem").values()
        if v["parameters"]["Key"] == {"circuitId": {"S": cb.PROBE_CIRCUIT}}
    ]

    real_getaddrinfo = socket.getaddrinfo

    def offline_dns(host: Any, *args: Any, **kwargs: Any) -> Any:
        if str(host).endswith(".invalid"):  # RFC 6761: never resolves; answered here without a DNS query
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", offline_dns)
    monkeypatch.setenv("CIRCUIT_BREAKER_TABLE", "integ-circuit-state")
    path = ROOT / "lambda_src" / "circuit_breaker_health_checker" / "health_checker.py"
    spec = importlib.util.spec_from_file_location("integ_health_checker_under_test", path)
    assert spec and spec.loader
    checker = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, checker)  # its dataclasses look their module up
    spec.loader.exec_module(checker)
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(
            TableName="integ-circuit-state",
            KeySchema=[{"AttributeName": "circuitId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "circuitId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for logical_id in _ordered(checks, all_calls=all_calls):
            event = json.loads(checks[logical_id]["parameters"]["Payload"])
            answer = checker.handler(event, None)
            # What Lambda's Invoke returns for it (the provider turns the payload bytes into a string).
            _assert_matches(checks[logical_id]["expected"], {"StatusCode": 200, "Payload": json.dumps(answer)})
        item = dict(dynamodb.get_item(**{**stored["parameters"], "TableName": "integ-circuit-state"}))
        item.pop("ResponseMetadata")
        _assert_matches(stored["expected"], item)


def test_circuit_breaker_assertions_follow_the_schedule_to_the_fallback(
    integ_assemblies: dict[str, CheckedAssembly],
) -> None:
    import integ_circuit_breaker as cb

    templates = integ_assemblies["integ_circuit_breaker"].templates
    sample = "IntegServerlessPatternsCircuitBreaker"
    template = templates[ASSERTION_STACKS["integ_circuit_breaker"]]
    all_calls = _all_sdk_calls(template)

    # The sample's own scheduled circuit: it probes a URL that never answers 200, so it must open.
    sample_template = Template.from_json(templates[sample])
    schedules = sample_template.find_resources("AWS::Scheduler::Schedule")
    (schedule,) = schedules.values()
    scheduled = json.loads(schedule["Properties"]["Target"]["Input"])
    assert scheduled["circuitId"] == cb.SAMPLE_CIRCUIT and scheduled["expectedStatusCodes"] == [200]

    items = _sdk_calls(template, "DynamoDB", "getItem")
    (opened_id,) = [k for k, v in items.items() if v["parameters"]["Key"] == {"circuitId": {"S": cb.SAMPLE_CIRCUIT}}]
    assert items[opened_id]["expected"] == {"$ObjectLike": {"Item": {"state": {"S": "OPEN"}}}}
    assert "stateMachineArn" in items[opened_id]

    checkout = _ref(templates, sample, "Checkout", "AWS::Lambda::Function")
    invokes = _sdk_calls(template, "Lambda", "invoke")
    (order_id,) = [
        k
        for k, v in invokes.items()
        if _export_target(templates, _imports(v["parameters"]["FunctionName"])) == checkout
    ]
    order = invokes[order_id]
    assert json.loads(order["parameters"]["Payload"]) == cb.ORDER
    answer = order["expected"]["$ObjectLike"]["Payload"]["$SerializedJson"]["$ObjectLike"]
    assert answer == {"orderId": cb.ORDER["orderId"], "status": "queued"}
    assert _depends_on(all_calls, order_id) == [opened_id]  # only once the circuit is OPEN


def test_assertion_providers_may_make_their_calls(integ_assemblies: dict[str, CheckedAssembly]) -> None:
    """Each API call's IAM action is granted to the assertion providers (else the call fails in the account)."""
    needed = {
        "integ_callback": {
            "events:PutEvents",
            "dynamodb:GetItem",
            "states:StartExecution",
            "states:DescribeExecution",
            "s3:PutObject",
        },
        "integ_circuit_breaker": {"lambda:InvokeFunction", "dynamodb:GetItem"},
    }
    for module, assembly in integ_assemblies.items():
        granted: set[str] = set()
        for resource in assembly.templates[ASSERTION_STACKS[module]]["Resources"].values():
            if resource["Type"] == "AWS::IAM::Role":
                for policy in resource["Properties"].get("Policies", []):
                    for statement in policy["PolicyDocument"]["Statement"]:
                        if statement["Effect"] == "Allow":
                            actions = statement["Action"]
                            granted.update([actions] if isinstance(actions, str) else actions)
        assert needed[module] <= granted, f"{module}: not granted {needed[module] - granted}"


def test_callback_assertions_drive_the_three_paths(integ_assemblies: dict[str, CheckedAssembly]) -> None:
    import integ_callback as cb

    templates = integ_assemblies["integ_callback"].templates
    template = templates[ASSERTION_STACKS["integ_callback"]]
    all_calls = _all_sdk_calls(template)
    probe = templates[PROBE_STACK]
    workflow = _ref(templates, PROBE_STACK, "Workflow", "AWS::StepFunctions::StateMachine")
    table = _ref(templates, PROBE_STACK, "CallbackTable", "AWS::DynamoDB::Table")
    (rule,) = Template.from_json(probe).find_resources("AWS::Events::Rule").values()
    pattern = rule["Properties"]["EventPattern"]

    starts = _sdk_calls(template, "StepFunctions", "startExecution")
    puts = _sdk_calls(template, "EventBridge", "putEvents")
    records = _sdk_calls(template, "DynamoDB", "getItem")
    describes = _sdk_calls(template, "StepFunctions", "describeExecution")

    def start_of(job_id: str) -> str:
        (found,) = [
            k
            for k, v in starts.items()
            if _export_target(templates, _imports(v["parameters"]["stateMachineArn"])) == workflow
            and json.loads(v["parameters"]["input"])["jobId"] == job_id
        ]
        return found

    def put_of(job_id: str, status: str) -> str:
        found = []
        for logical_id, call in puts.items():
            (entry,) = call["parameters"]["Entries"]
            detail = json.loads(entry["Detail"])
            if detail.get("jobId") == job_id:
                # The event is one the probe's rule matches (else nothing would resume the workflow).
                assert entry["Source"] in pattern["source"] and entry["DetailType"] in pattern["detail-type"]
                assert detail["status"] in pattern["detail"]["status"] and detail["status"] == status
                assert call["expected"] == {"$ObjectLike": {"FailedEntryCount": 0}}
                found.append(logical_id)
        assert len(found) == 1, found
        return found[0]

    def record_of(job_id: str, kind: str) -> str:
        (found,) = [k for k, v in records.items() if v["parameters"]["Key"] == {"id": {"S": f"integ#{job_id}"}}]
        call = records[found]
        assert _export_target(templates, _imports(call["parameters"]["TableName"])) == table
        assert call["expected"] == {"$ObjectLike": {"Item": {"kind": {"S": kind}}}}
        assert "stateMachineArn" in call
        return found

    def describe_of(start: str) -> dict[str, Any]:
        (found,) = [
            v
            for v in describes.values()
            if _token(v["parameters"]["executionArn"]) == {"Fn::GetAtt": [start, "apiCallResponse.executionArn"]}
        ]
        assert "stateMachineArn" in found  # waits for the end of the execution
        return dict(found["expected"]["$ObjectLike"])

    # 1. wait, then event: the token is parked before the event is put.
    start = start_of(cb.JOB_WAIT_FIRST)
    token = record_of(cb.JOB_WAIT_FIRST, "token")
    put = put_of(cb.JOB_WAIT_FIRST, "SUCCEEDED")
    assert _depends_on(all_calls, token) == [start] and _depends_on(all_calls, put) == [token]
    assert describe_of(start) == {
        "status": "SUCCEEDED",
        "output": {
            "$SerializedJson": {
                "$ObjectLike": {"jobId": cb.JOB_WAIT_FIRST, "job": {"jobId": cb.JOB_WAIT_FIRST, "answer": 42}}
            }
        },
    }

    # 2. event before the wait step: put right after the start, while the workflow still works (delays).
    start = start_of(cb.JOB_EVENT_FIRST)
    put = put_of(cb.JOB_EVENT_FIRST, "SUCCEEDED")
    completion = record_of(cb.JOB_EVENT_FIRST, "completion")
    assert _depends_on(all_calls, put) == [start] and _depends_on(all_calls, completion) == [put]
    assert json.loads(starts[start]["parameters"]["input"])["delaySeconds"] == cb.EARLY_EVENT_DELAY_SECONDS
    assert describe_of(start) == {
        "status": "SUCCEEDED",
        "output": {"$SerializedJson": {"$ObjectLike": {"job": {"answer": 42}}}},
    }

    # 3. failure: the parked workflow fails with "<namespace>.<status>".
    start = start_of(cb.JOB_FAILED)
    token = record_of(cb.JOB_FAILED, "token")
    put = put_of(cb.JOB_FAILED, "FAILED")
    assert _depends_on(all_calls, token) == [start] and _depends_on(all_calls, put) == [token]
    assert describe_of(start) == {"status": "FAILED", "error": "integ.FAILED"}


def test_callback_probe_assertions_pass_on_moto(integ_assemblies: dict[str, CheckedAssembly]) -> None:
    """The probe stack deployed into moto (with the local bridges), and the assertion stack's API calls
    run against it as CloudFormation would: each call once its dependencies are done (DependsOn and
    Fn::GetAtt), concurrently otherwise; waiters poll until their expected result matches."""
    import threading
    import time

    import boto3
    import integ_callback as cb
    from moto import mock_aws

    from cdk_serverless_patterns.local import moto_bridge

    templates = integ_assemblies["integ_callback"].templates
    calls = _all_sdk_calls(templates[ASSERTION_STACKS["integ_callback"]])
    sample = "IntegServerlessPatternsCallback"  # needs Amazon Translate, which moto lacks: its chain is left out

    def references(value: Any) -> Iterator[tuple[str, str]]:
        if isinstance(value, dict):
            if "Fn::ImportValue" in value:
                yield "import", str(value["Fn::ImportValue"])
            elif "Fn::GetAtt" in value:
                yield "call", str(value["Fn::GetAtt"][0])
            for item in value.values():
                yield from references(item)
        elif isinstance(value, list):
            for item in value:
                yield from references(item)

    skipped: set[str] = set()
    for _ in calls:  # a fixed point: calls on the sample, and calls using their results
        for logical_id, call in calls.items():
            refs = list(references(call["parameters"]))
            if any(kind == "import" and ref.partition(":")[0] == sample for kind, ref in refs) or any(
                kind == "call" and ref in skipped for kind, ref in refs
            ):
                skipped.add(logical_id)
    run = {k: v for k, v in calls.items() if k not in skipped}
    assert len(run) == 12 and len(skipped) == 3, (sorted(run), sorted(skipped))

    moto_bridge.install()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        session: Any = boto3.Session(region_name="us-east-1")
        deployment = moto_bridge.deploy_template(templates[PROBE_STACK], session)
        clients = {"StepFunctions": "stepfunctions", "EventBridge": "events", "DynamoDB": "dynamodb"}
        results: dict[str, dict[str, Any]] = {}
        done = {logical_id: threading.Event() for logical_id in run}
        failures: list[str] = []
        stop = threading.Event()  # the first failure ends the run
        jsii_lock = threading.Lock()  # the jsii kernel (aws-cdk-lib's matchers) serves one call at a time

        def resolve(value: Any) -> Any:
            if isinstance(value, dict) and "Fn::Join" in value:
                token = _token(value)
                if "Fn::ImportValue" in token:
                    _, target = _export_target(templates, token["Fn::ImportValue"])
                    return deployment.ref(target["Ref"])
                call_id, attribute = token["Fn::GetAtt"]
                return results[call_id][attribute.removeprefix("apiCallResponse.")]
            return value

        def mismatch(expected: Any, actual: Any) -> str | None:
            with jsii_lock:
                result = _matcher(expected).test(actual)
                result.finished()
                return str(result.render_mismatch()) if result.has_failed() else None

        def execute(logical_id: str) -> None:
            call = run[logical_id]
            try:
                needs = set(_depends_on(run, logical_id)) | {
                    r for k, r in references(call["parameters"]) if k == "call"
                }
                for need in needs:
                    while not done[need].wait(0.05):
                        if stop.is_set():
                            return
                    if need not in results:
                        return
                client = session.client(clients[call["service"]])
                api = re.sub(r"(?<!^)([A-Z])", r"_\1", call["api"]).lower()
                parameters = {key: resolve(value) for key, value in call["parameters"].items()}
                if api == "start_execution":
                    parameters.setdefault("name", logical_id[-40:])  # moto needs a name (DESIGN: known gap)
                    execution_input = json.loads(parameters["input"])
                    if execution_input.get("delaySeconds") == cb.EARLY_EVENT_DELAY_SECONDS:
                        # The account's 2 minutes of "work" before the wait step, shortened offline.
                        parameters["input"] = json.dumps({**execution_input, "delaySeconds": 6})
                deadline = time.monotonic() + (30 if "stateMachineArn" in call else 0)
                while not stop.is_set():
                    response = json.loads(json.dumps(getattr(client, api)(**parameters), default=str))
                    response.pop("ResponseMetadata", None)
                    problem = mismatch(call["expected"], response) if "expected" in call else None
                    if problem is None:
                        results[logical_id] = response
                        return
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{call['service']}.{call['api']} {parameters}: {problem}")
                    time.sleep(0.05)
            except Exception as error:
                failures.append(f"{logical_id}: {error}")
                stop.set()
            finally:
                done[logical_id].set()

        threads = [threading.Thread(target=execute, args=(logical_id,), daemon=True) for logical_id in run]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        assert not failures, "\n".join(failures)
        assert set(results) == set(run)


def test_callback_assertions_run_the_sample_through_translate(integ_assemblies: dict[str, CheckedAssembly]) -> None:
    import integ_callback as cb

    templates = integ_assemblies["integ_callback"].templates
    sample = "IntegServerlessPatternsCallback"
    template = templates[ASSERTION_STACKS["integ_callback"]]
    all_calls = _all_sdk_calls(template)
    bucket = _ref(templates, sample, "Documents", "AWS::S3::Bucket")
    workflow = _ref(templates, sample, "Workflow", "AWS::StepFunctions::StateMachine")

    (put_id, put), *others = _sdk_calls(template, "S3", "putObject").items()
    assert not others
    assert _export_target(templates, _imports(put["parameters"]["Bucket"])) == bucket
    assert put["parameters"]["Key"].startswith("input/")  # where the workflow points Translate
    starts = _sdk_calls(template, "StepFunctions", "startExecution")
    (start_id,) = [
        k
        for k, v in starts.items()
        if _export_target(templates, _imports(v["parameters"]["stateMachineArn"])) == workflow
    ]
    assert json.loads(starts[start_id]["parameters"]["input"]) == {"sourceLanguage": "en", "targetLanguages": ["de"]}
    assert _depends_on(all_calls, start_id) == [put_id]
    (describe,) = [
        v
        for v in _sdk_calls(template, "StepFunctions", "describeExecution").values()
        if _token(v["parameters"]["executionArn"]) == {"Fn::GetAtt": [start_id, "apiCallResponse.executionArn"]}
    ]
    assert describe["expected"] == {
        "$ObjectLike": {
            "status": "SUCCEEDED",
            "output": {"$SerializedJson": {"$ObjectLike": {"job": {"jobStatus": "COMPLETED"}}}},
        }
    }
    assert put["parameters"]["Key"] == cb.TRANSLATE_INPUT_KEY


def test_waits_fit_in_a_custom_resource(integ_assemblies: dict[str, CheckedAssembly]) -> None:
    """CloudFormation waits at most an hour for a custom resource: every waiter gives up before that."""
    for module, assembly in integ_assemblies.items():
        template = Template.from_json(assembly.templates[ASSERTION_STACKS[module]])
        waiters = template.find_resources("AWS::StepFunctions::StateMachine")
        assert waiters, f"{module}: no waiter state machine"
        for logical_id, waiter in waiters.items():
            parts = waiter["Properties"]["DefinitionString"]["Fn::Join"][1]
            definition = "".join(part for part in parts if isinstance(part, str))
            retry = re.search(r'"IntervalSeconds":(\d+),"MaxAttempts":(\d+)', definition)
            assert retry, f"{module} {logical_id}: no retry in {definition[:300]}"
            interval, attempts = int(retry.group(1)), int(retry.group(2))
            assert interval * attempts < 3600, f"{module} {logical_id}: waits {interval * attempts} s"


# ---------------------------------------------------------------------------------- snapshots
def _without_salt(template: dict[str, Any]) -> dict[str, Any]:
    """Assertion custom resources carry a ``salt`` (Date.now() at synthesis) so they run on every deploy."""
    result: dict[str, Any] = json.loads(json.dumps(template))
    for resource in result.get("Resources", {}).values():
        if resource.get("Type", "").startswith("Custom::DeployAssert") and "salt" in resource.get("Properties", {}):
            resource["Properties"]["salt"] = "<salt>"
    return result


@pytest.mark.parametrize("module", sorted(APPS))
def test_snapshots(integ_assemblies: dict[str, CheckedAssembly], module: str, snapshot: Any) -> None:
    """One JSON snapshot per stack of each integ app (tests/__snapshots__/test_integ_apps/)."""
    json_snapshot = snapshot.use_extension(JSONSnapshotExtension)
    for name, template in sorted(integ_assemblies[module].templates.items()):
        snapshot_name = f"{module}-{name.replace('/', '-')}"
        assert normalize_template(_without_salt(template)) == json_snapshot(name=snapshot_name)
