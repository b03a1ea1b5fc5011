"""The callback integration-test app (integ/integ_callback.py), synthesized offline.

The CDK integ-runner cannot read this aws-cdk-lib's cloud assembly yet (schema 55; it reads up to 53), so these tests
check what it would deploy: the test-case stacks are the sample stack (nag-clean) and a probe stack,
the assertion stack holds the API calls and expected results the app declares, cfn-lint finds no
error, and a normalized snapshot per stack shows any change. The helpers are
``cdk_serverless_patterns.testing.integ``; the app is synthesized once (``callback_integ_assembly``
in conftest.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Match, Template
from syrupy.extensions.json import JSONSnapshotExtension

from cdk_serverless_patterns.testing.checks import CheckedAssembly
from cdk_serverless_patterns.testing.integ import (
    depends_on,
    expected_mismatch,
    export_target,
    granted_actions,
    imported_export,
    integ_app_problems,
    normalize_integ_template,
    resource_ref,
    sdk_calls,
    string_token,
)

#: The app these tests cover (test_every_integ_app_is_covered_here reads this line in every pattern's test).
APP = "integ_callback"
SAMPLE_STACK = "IntegServerlessPatternsCallback"
PROBE_STACK = "IntegServerlessPatternsCallbackProbe"
TEST_CASE_STACKS = [SAMPLE_STACK, PROBE_STACK]
ASSERTION_STACK = "CallbackInteg/DefaultTest/DeployAssert"
#: Test-case stack -> the sample app's stack it must equal.
SAMPLE_APP_STACKS = {SAMPLE_STACK: "ServerlessPatternsCallback"}
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------- test cases
def test_every_integ_app_is_covered_here() -> None:
    """Every integ/integ_<pattern>.py has a tests/<pattern>/test_<pattern>_integ_app.py naming it in its APP
    (and so gets these checks and its snapshots)."""
    covered = {
        match.group(1)
        for path in (ROOT / "tests").glob("*/test_*_integ_app.py")
        if (match := re.search(r'^APP = "(integ_\w+)"$', path.read_text(), re.MULTILINE))
    }
    assert {path.stem for path in (ROOT / "integ").glob("integ_*.py")} == covered


def test_the_app_is_sound(
    callback_integ_assembly: CheckedAssembly, sample_templates: dict[str, dict[str, Any]]
) -> None:
    """Registered test cases, one environment, the sample app's stacks, nag and cfn-lint clean."""
    problems = integ_app_problems(
        callback_integ_assembly,
        test_case_stacks=TEST_CASE_STACKS,
        assertion_stack=ASSERTION_STACK,
        sample_templates={integ: sample_templates[sample] for integ, sample in SAMPLE_APP_STACKS.items()},
    )
    assert not problems, "\n".join(problems)


def test_probe_stack_waits_on_the_pattern(callback_integ_assembly: CheckedAssembly) -> None:
    """The callback probe: a CallbackPattern, a rule for the probe's event source, a workflow waiting on it."""
    import integ_callback

    template = Template.from_json(callback_integ_assembly.templates[PROBE_STACK])
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


def test_callback_assertions_drive_the_three_paths(callback_integ_assembly: CheckedAssembly) -> None:
    import integ_callback as cb

    templates = callback_integ_assembly.templates
    template = templates[ASSERTION_STACK]
    all_calls = sdk_calls(template)
    probe = templates[PROBE_STACK]
    workflow = resource_ref(templates, PROBE_STACK, "Workflow", "AWS::StepFunctions::StateMachine")
    table = resource_ref(templates, PROBE_STACK, "CallbackTable", "AWS::DynamoDB::Table")
    (rule,) = Template.from_json(probe).find_resources("AWS::Events::Rule").values()
    pattern = rule["Properties"]["EventPattern"]

    starts = sdk_calls(template, "StepFunctions", "startExecution")
    puts = sdk_calls(template, "EventBridge", "putEvents")
    records = sdk_calls(template, "DynamoDB", "getItem")
    describes = sdk_calls(template, "StepFunctions", "describeExecution")

    def start_of(job_id: str) -> str:
        (found,) = [
            k
            for k, v in starts.items()
            if export_target(templates, imported_export(v.parameters["stateMachineArn"])) == workflow
            and json.loads(v.parameters["input"])["jobId"] == job_id
        ]
        return found

    def put_of(job_id: str, status: str) -> str:
        found = []
        for logical_id, call in puts.items():
            (entry,) = call.parameters["Entries"]
            detail = json.loads(entry["Detail"])
            if detail.get("jobId") == job_id:
                # The event is one the probe's rule matches (else nothing would resume the workflow).
                assert entry["Source"] in pattern["source"] and entry["DetailType"] in pattern["detail-type"]
                assert detail["status"] in pattern["detail"]["status"] and detail["status"] == status
                assert call.expected == {"$ObjectLike": {"FailedEntryCount": 0}}
                found.append(logical_id)
        assert len(found) == 1, found
        return found[0]

    def record_of(job_id: str, kind: str) -> str:
        (found,) = [k for k, v in records.items() if v.parameters["Key"] == {"id": {"S": f"integ#{job_id}"}}]
        call = records[found]
        assert export_target(templates, imported_export(call.parameters["TableName"])) == table
        assert call.expected == {"$ObjectLike": {"Item": {"kind": {"S": kind}}}}
        assert call.waits
        return found

    def describe_of(start: str) -> dict[str, Any]:
        (found,) = [
            v
            for v in describes.values()
            if string_token(v.parameters["executionArn"]) == {"Fn::GetAtt": [start, "apiCallResponse.executionArn"]}
        ]
        assert found.waits  # waits for the end of the execution
        return dict(found.expected["$ObjectLike"])

    # 1. wait, then event: the token is parked before the event is put.
    start = start_of(cb.JOB_WAIT_FIRST)
    token = record_of(cb.JOB_WAIT_FIRST, "token")
    put = put_of(cb.JOB_WAIT_FIRST, "SUCCEEDED")
    assert depends_on(all_calls, token) == [start] and depends_on(all_calls, put) == [token]
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
    assert depends_on(all_calls, put) == [start] and depends_on(all_calls, completion) == [put]
    assert json.loads(starts[start].parameters["input"])["delaySeconds"] == cb.EARLY_EVENT_DELAY_SECONDS
    assert describe_of(start) == {
        "status": "SUCCEEDED",
        "output": {"$SerializedJson": {"$ObjectLike": {"job": {"answer": 42}}}},
    }

    # 3. failure: the parked workflow fails with "<namespace>.<status>".
    start = start_of(cb.JOB_FAILED)
    token = record_of(cb.JOB_FAILED, "token")
    put = put_of(cb.JOB_FAILED, "FAILED")
    assert depends_on(all_calls, token) == [start] and depends_on(all_calls, put) == [token]
    assert describe_of(start) == {"status": "FAILED", "error": "integ.FAILED"}


def test_callback_probe_assertions_pass_on_moto(callback_integ_assembly: CheckedAssembly) -> None:
    """The probe stack deployed into moto (with the local bridges), and the assertion stack's API calls
    run against it as CloudFormation would: each call once its dependencies are done (DependsOn and
    Fn::GetAtt), concurrently otherwise; waiters poll until their expected result matches."""
    import threading
    import time

    import integ_callback as cb

    from cdk_serverless_patterns.local import emulator

    templates = callback_integ_assembly.templates
    calls = sdk_calls(templates[ASSERTION_STACK])
    sample = SAMPLE_STACK  # needs Amazon Translate, which moto lacks: its chain is left out

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
            refs = list(references(call.parameters))
            if any(kind == "import" and ref.partition(":")[0] == sample for kind, ref in refs) or any(
                kind == "call" and ref in skipped for kind, ref in refs
            ):
                skipped.add(logical_id)
    run = {k: v for k, v in calls.items() if k not in skipped}
    assert len(run) == 12 and len(skipped) == 3, (sorted(run), sorted(skipped))

    with emulator() as aws:
        session: Any = aws.session
        deployment = aws.deploy(templates[PROBE_STACK])
        clients = {"StepFunctions": "stepfunctions", "EventBridge": "events", "DynamoDB": "dynamodb"}
        results: dict[str, dict[str, Any]] = {}
        done = {logical_id: threading.Event() for logical_id in run}
        failures: list[str] = []
        stop = threading.Event()  # the first failure ends the run
        jsii_lock = threading.Lock()  # the jsii kernel (aws-cdk-lib's matchers) serves one call at a time

        def resolve(value: Any) -> Any:
            if isinstance(value, dict) and "Fn::Join" in value:
                token = string_token(value)
                if "Fn::ImportValue" in token:
                    _, target = export_target(templates, token["Fn::ImportValue"])
                    return deployment.ref(target["Ref"])
                call_id, attribute = token["Fn::GetAtt"]
                return results[call_id][attribute.removeprefix("apiCallResponse.")]
            return value

        def mismatch(expected: Any, actual: Any) -> str | None:
            with jsii_lock:
                return expected_mismatch(expected, actual)

        def execute(logical_id: str) -> None:
            call = run[logical_id]
            try:
                needs = set(depends_on(run, logical_id)) | {r for k, r in references(call.parameters) if k == "call"}
                for need in needs:
                    while not done[need].wait(0.05):
                        if stop.is_set():
                            return
                    if need not in results:
                        return
                client = session.client(clients[call.service])
                api = re.sub(r"(?<!^)([A-Z])", r"_\1", call.api).lower()
                parameters = {key: resolve(value) for key, value in call.parameters.items()}
                if api == "start_execution":
                    parameters.setdefault("name", logical_id[-40:])  # moto needs a name (DESIGN: known gap)
                    execution_input = json.loads(parameters["input"])
                    if execution_input.get("delaySeconds") == cb.EARLY_EVENT_DELAY_SECONDS:
                        # The account's 2 minutes of "work" before the wait step, shortened offline.
                        parameters["input"] = json.dumps({**execution_input, "delaySeconds": 6})
                deadline = time.monotonic() + (30 if call.waits else 0)
                while not stop.is_set():
                    response = json.loads(json.dumps(getattr(client, api)(**parameters), default=str))
                    response.pop("ResponseMetadata", None)
                    problem = mismatch(call.expected, response) if call.expected is not None else None
                    if problem is None:
                        results[logical_id] = response
                        return
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{call.service}.{call.api} {parameters}: {problem}")
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


def test_callback_assertions_run_the_sample_through_translate(callback_integ_assembly: CheckedAssembly) -> None:
    import integ_callback as cb

    templates = callback_integ_assembly.templates
    template = templates[ASSERTION_STACK]
    all_calls = sdk_calls(template)
    bucket = resource_ref(templates, SAMPLE_STACK, "Documents", "AWS::S3::Bucket")
    workflow = resource_ref(templates, SAMPLE_STACK, "Workflow", "AWS::StepFunctions::StateMachine")

    (put_id, put), *others = sdk_calls(template, "S3", "putObject").items()
    assert not others
    assert export_target(templates, imported_export(put.parameters["Bucket"])) == bucket
    assert put.parameters["Key"].startswith("input/")  # where the workflow points Translate
    starts = sdk_calls(template, "StepFunctions", "startExecution")
    (start_id,) = [
        k
        for k, v in starts.items()
        if export_target(templates, imported_export(v.parameters["stateMachineArn"])) == workflow
    ]
    assert json.loads(starts[start_id].parameters["input"]) == {"sourceLanguage": "en", "targetLanguages": ["de"]}
    assert depends_on(all_calls, start_id) == [put_id]
    (describe,) = [
        v
        for v in sdk_calls(template, "StepFunctions", "describeExecution").values()
        if string_token(v.parameters["executionArn"]) == {"Fn::GetAtt": [start_id, "apiCallResponse.executionArn"]}
    ]
    assert describe.expected == {
        "$ObjectLike": {
            "status": "SUCCEEDED",
            "output": {"$SerializedJson": {"$ObjectLike": {"job": {"jobStatus": "COMPLETED"}}}},
        }
    }
    assert put.parameters["Key"] == cb.TRANSLATE_INPUT_KEY


def test_assertion_providers_may_make_their_calls(callback_integ_assembly: CheckedAssembly) -> None:
    """Each API call's IAM action is granted to the assertion providers (else the call fails in the account)."""
    needed = {
        "events:PutEvents",
        "dynamodb:GetItem",
        "states:StartExecution",
        "states:DescribeExecution",
        "s3:PutObject",
    }
    granted = granted_actions(callback_integ_assembly.templates[ASSERTION_STACK])
    assert needed <= granted, f"{APP}: not granted {needed - granted}"


# ---------------------------------------------------------------------------------- snapshots
def test_snapshots(callback_integ_assembly: CheckedAssembly, snapshot: Any) -> None:
    """One JSON snapshot per stack of the app (__snapshots__/test_callback_integ_app/)."""
    json_snapshot = snapshot.use_extension(JSONSnapshotExtension)
    for name, template in sorted(callback_integ_assembly.templates.items()):
        assert normalize_integ_template(template) == json_snapshot(name=name.replace("/", "-"))
