"""JobSource: its own validation when constructed, the ready-made sources against the events AWS
documents (DMS stop reasons evaluated with the same JSONata engine the emulator runs, Bedrock Data
Automation's job id from its invocation ARN, Macie's periodic jobs), and flows that run them in the
local emulator, Macie's through ``MacieJobStatusForwarder``'s handler."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdk_serverless_patterns.callback import sources
from cdk_serverless_patterns.callback.sources import JobSource

TASK = "arn:aws:dms:us-east-1:123456789012:task:AAAABBBB0CCCCDDDDEEEEE1FFFF2GGG3FFFFFF3"
INVOCATION = "arn:aws:bedrock:us-east-1:123456789012:data-automation-invocation/25010344-03f7-4167-803a-837afdc7ce98"


def partner(**overrides: Any) -> JobSource:
    props: dict[str, Any] = {
        "namespace": "partner",
        "event_pattern": {"source": ["com.example.partner"]},
        "job_id_path": "$.detail.id",
        "status_path": "$.detail.state",
        "success_statuses": ["DONE"],
        "failure_statuses": ["ERROR", "LOST"],
    }
    return JobSource(**{**props, **overrides})


def problems_of(**overrides: Any) -> str:
    from cdk_serverless_patterns.core import PropError

    with pytest.raises(PropError) as raised:
        partner(**overrides)
    assert str(raised.value).startswith("JobSource has invalid props:")
    return str(raised.value)


# --- validation when constructed ---------------------------------------------------------------------------


def test_a_bad_source_fails_when_constructed_naming_every_bad_field() -> None:
    text = problems_of(
        namespace="bad#ns",
        event_pattern={"detail-type": [], "weird": ["x"]},
        job_id_path="detail.jobId",
        success_statuses=["DONE"],
        failure_statuses=["DONE"],
        stale_tolerance_seconds=-1,
        status_expression="  ",
        error_names={"NOPE": "Partner Failed"},
        reuses_job_ids="yes",
        claim_bound=True,
    )
    for fragment in (
        "- namespace: 'bad#ns'",
        "- job_id_path: 'detail.jobId'",
        "- failure_statuses: DONE cannot mean both",
        "- event_pattern: unknown top-level fields ['weird']",
        "- event_pattern: must filter on 'source'",
        "- stale_tolerance_seconds: must be a whole number of seconds from 0 to 300, got -1",
        "- status_expression: must be a non-empty JSONata expression",
        "- error_names: 'NOPE' are not failure statuses",
        "- error_names: 'Partner Failed': an error name is 1-128 characters",
        "- reuses_job_ids: must be True or False",
        "- claim_bound: only the callback-URL handler writes claims",
    ):
        assert fragment in text, f"{fragment!r} missing from:\n{text}"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"stale_tolerance_seconds": True}, "stale_tolerance_seconds: must be a whole number"),
        ({"stale_tolerance_seconds": 2.5}, "stale_tolerance_seconds: must be a whole number"),
        ({"stale_tolerance_seconds": 301}, "got 301"),
        ({"status_expression": "{% $e.detail.state %}"}, "status_expression: is the bare JSONata expression"),
        ({"status_expression": "x" * 4097}, "status_expression: is 4097 characters"),
        ({"status_expression": 5}, "status_expression: must be a non-empty JSONata expression"),
        ({"error_names": {"ERROR": "States.Timeout"}}, "not with 'States.'"),
        ({"error_names": {"ERROR": ""}}, "error_names: '': an error name"),
        ({"error_names": {"ERROR": "P" * 129}}, "an error name is 1-128 characters"),
        ({"error_names": {"ERROR": "1Partner"}}, "starts with a"),
        ({"error_names": {"DONE": "Partner.Done"}}, "error_names: 'DONE' are not failure statuses"),
        ({"error_names": ["ERROR"]}, "error_names: must be a mapping"),
        ({"success_statuses": "DONE"}, "success_statuses: needs at least one status (a sequence of strings"),
        ({"claim_bound": True}, "claim_bound: only the callback-URL handler writes claims"),
    ],
)
def test_each_bad_new_field_is_named(overrides: dict[str, Any], fragment: str) -> None:
    text = problems_of(**overrides)
    assert fragment in text, f"{fragment!r} missing from:\n{text}"


def test_the_edges_of_the_new_fields_are_accepted() -> None:
    for tolerance in (0, 300):
        assert partner(stale_tolerance_seconds=tolerance, reuses_job_ids=True).stale_tolerance_seconds == tolerance
    longest = "P" + "a" * 127
    assert partner(error_names={"ERROR": longest, "LOST": "Partner.Job-Lost_2"}).error_names["ERROR"] == longest
    assert partner(status_expression="$e.detail.state").status_expression == "$e.detail.state"


def test_replacing_a_field_validates_again() -> None:
    import dataclasses

    from cdk_serverless_patterns.core import PropError

    with pytest.raises(PropError, match="namespace"):
        dataclasses.replace(partner(), namespace="a#b")


def test_a_valid_source_imports_no_cdk() -> None:
    """The happy path of a JobSource stays CDK-free (the error class is loaded only for an error)."""
    import subprocess
    import sys

    code = (
        "import sys; from cdk_serverless_patterns.callback.sources import JobSource; "
        "JobSource.dms_replication_task(); JobSource.macie_classification_job(); "
        "assert 'aws_cdk' not in sys.modules, 'aws_cdk imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize(
    "source",
    [
        JobSource.translate_text_translation_job(),
        JobSource.bedrock_data_automation(),
        JobSource.dms_replication_task(),
        JobSource.macie_classification_job(),
        JobSource.macie_classification_job(scheduled_runs=True),
        JobSource.callback_url(namespaces=["vendor"]),
    ],
    ids=["translate", "bda", "dms", "macie", "macie-periodic", "callback-url"],
)
def test_ready_made_sources_are_valid_and_their_errors_are_short_and_catchable(source: JobSource) -> None:
    assert source.problems() == []
    for status, name in source.error_names.items():
        assert status in source.failure_statuses
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,127}", name) and " " not in name, name


def test_callback_pattern_still_names_a_bad_source_by_its_position() -> None:
    """A JobSource cannot be built bad, but a list can hold something else, or a source changed
    after construction (a frozen dataclass can still be forced): the pattern names it by index."""
    import aws_cdk as cdk

    from cdk_serverless_patterns import CallbackPattern
    from cdk_serverless_patterns.core import PropError

    forced = JobSource.translate_text_translation_job(namespace="ok")
    object.__setattr__(forced, "namespace", "bad#ns")
    with pytest.raises(PropError) as raised:
        CallbackPattern(
            cdk.Stack(cdk.App(), "S"),
            "Callback",
            sources=[JobSource.translate_text_translation_job(), forced, "dms"],  # type: ignore[list-item]
        )
    text = str(raised.value)
    assert "sources[1].namespace: 'bad#ns'" in text and "sources[2]: must be a JobSource, got str" in text


# --- DMS: the stop reason decides -----------------------------------------------------------------------------


def dms_event(event_type: str, message: str | None) -> dict[str, Any]:
    """An event as the DMS EventBridge documentation shows it."""
    detail: dict[str, Any] = {
        "type": "REPLICATION_TASK",
        "category": "StateChange",
        "eventType": event_type,
        "eventId": "DMS-EVENT-0079" if event_type == sources.DMS_STOPPED else "DMS-EVENT-0078",
        "resourceLink": "https://console.aws.amazon.com/dms/v2/home?region=us-east-1#taskDetails/taskName",
    }
    if message is not None:
        detail["detailMessage"] = message
    return {
        "version": "0",
        "id": "11a11b11-222b-333a-44d4-01234a5b67890",
        "detail-type": "DMS Replication Task State Change",
        "source": "aws.dms",
        "account": "123456789012",
        "time": "2024-04-14T17:16:30Z",
        "region": "us-east-1",
        "resources": [TASK],
        "detail": detail,
    }


def status_of(source: JobSource, event: dict[str, Any]) -> Any:
    """The status the resumer computes: the source's status expression over ``$e``, evaluated with
    jsonata-python (the engine the local emulator runs the resumer's JSONata with)."""
    import jsonata

    assert source.status_expression is not None
    expression = jsonata.Jsonata(source.status_expression)
    expression.assign("e", event)
    return expression.evaluate(None)


def outcome(source: JobSource, status: str) -> tuple[str, str | None]:
    if status in source.success_statuses:
        return "SUCCEEDED", None
    if status in source.failure_statuses:
        return "FAILED", source.error_names.get(status)
    return "IGNORED", None


@pytest.mark.parametrize(
    ("event_type", "message", "expected"),
    [
        (sources.DMS_STOPPED, "Stop Reason FULL_LOAD_ONLY_FINISHED", ("SUCCEEDED", None)),
        (
            sources.DMS_STOPPED,
            "Replication task has stopped. Stop Reason FULL_LOAD_ONLY_FINISHED.",
            ("SUCCEEDED", None),
        ),
        (sources.DMS_STOPPED, "Stop Reason NORMAL", ("SUCCEEDED", None)),
        (sources.DMS_STOPPED, "Stop Reason STOPPED_AFTER_FULL_LOAD", ("SUCCEEDED", None)),
        (sources.DMS_STOPPED, "Stop Reason STOPPED_AFTER_CACHED_EVENTS", ("SUCCEEDED", None)),
        (sources.DMS_STOPPED, "Stop Reason STOPPED_AT_SERVER_TIME", ("SUCCEEDED", None)),
        (sources.DMS_STOPPED, "Stop Reason FATAL_ERROR", ("FAILED", "DMS.FatalError")),
        (sources.DMS_STOPPED, "Stop Reason RECOVERABLE_ERROR", ("FAILED", "DMS.RecoverableError")),
        (
            sources.DMS_STOPPED,
            "Stop Reason EXPRESS_LICENSE_LIMITS_REACHED",
            ("FAILED", "DMS.ExpressLicenseLimitsReached"),
        ),
        (sources.DMS_STOPPED, "Stop Reason STOPPED_DUE_TO_LOW_DISK", ("FAILED", "DMS.StoppedDueToLowDisk")),
        (sources.DMS_STOPPED, "Stop Reason RECYCLE_TASK", ("FAILED", "DMS.RecycleTask")),
        (sources.DMS_STOPPED, "Replication task stopped", ("FAILED", "DMS.UnknownStopReason")),
        (sources.DMS_STOPPED, "Stop Reason SOMETHING_NEW_IN_2030", ("FAILED", "DMS.UnknownStopReason")),
        (sources.DMS_STOPPED, None, ("FAILED", "DMS.UnknownStopReason")),
        (sources.DMS_STOPPED, "", ("FAILED", "DMS.UnknownStopReason")),
        (
            sources.DMS_FAILED,
            "Last Error Task error notification received ...",
            ("FAILED", "DMS.ReplicationTaskFailed"),
        ),
        ("REPLICATION_TASK_STARTED", "Replication task started, with flag, fresh start", ("IGNORED", None)),
    ],
)
def test_a_dms_stop_succeeds_only_for_a_normal_stop_reason(
    event_type: str, message: str | None, expected: tuple[str, str | None]
) -> None:
    source = JobSource.dms_replication_task()
    assert outcome(source, status_of(source, dms_event(event_type, message))) == expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=st.one_of(st.none(), st.text(max_size=200), st.from_regex(r"Stop Reason [A-Za-z_ .,:]{0,40}")))
def test_every_dms_stop_event_ends_the_wait_whatever_its_message(message: str | None) -> None:
    """No stop message leaves a waiter parked: each is success or failure, never IGNORED."""
    source = JobSource.dms_replication_task()
    status = status_of(source, dms_event(sources.DMS_STOPPED, message))
    assert isinstance(status, str)
    assert outcome(source, status)[0] != "IGNORED", status


def test_dms_success_reasons_can_be_narrowed_and_bad_ones_are_refused() -> None:
    from cdk_serverless_patterns.core import PropError

    strict = JobSource.dms_replication_task(success_stop_reasons=["full_load_only_finished"])
    assert outcome(strict, status_of(strict, dms_event(sources.DMS_STOPPED, "Stop Reason NORMAL"))) == (
        "FAILED",
        "DMS.Normal",
    )
    assert outcome(strict, status_of(strict, dms_event(sources.DMS_STOPPED, "Stop Reason FULL_LOAD_ONLY_FINISHED")))[
        0
    ] == ("SUCCEEDED")
    with pytest.raises(PropError, match="success_stop_reasons"):
        JobSource.dms_replication_task(success_stop_reasons=["NOT A REASON"])
    with pytest.raises(PropError, match="success_stop_reasons"):
        JobSource.dms_replication_task(success_stop_reasons=[])


def test_dms_reuses_task_arns_and_its_rule_filters_the_event_types_itself() -> None:
    source = JobSource.dms_replication_task(stale_tolerance_seconds=5)
    assert source.reuses_job_ids and source.stale_tolerance_seconds == 5
    assert source.rule_pattern() == {
        "source": ["aws.dms"],
        "detail-type": ["DMS Replication Task State Change"],
        "detail": {"eventType": [sources.DMS_FAILED, sources.DMS_STOPPED]},
    }


# --- Bedrock Data Automation ------------------------------------------------------------------------------------


def test_bda_errors_are_short_names_per_failure_detail_type() -> None:
    source = JobSource.bedrock_data_automation()
    assert source.error_names == {
        "Bedrock Data Automation Job Failed With Client Error": "BedrockDataAutomation.ClientError",
        "Bedrock Data Automation Job Failed With Service Error": "BedrockDataAutomation.ServiceError",
    }
    assert not source.reuses_job_ids


def test_the_one_line_jsonata_turns_the_invocation_arn_into_the_event_job_id() -> None:
    import jsonata

    expression = jsonata.Jsonata(sources.BDA_JOB_ID_JSONATA)
    expression.assign("states", {"result": {"InvocationArn": INVOCATION}})
    assert expression.evaluate(None) == "25010344-03f7-4167-803a-837afdc7ce98"


# --- Macie --------------------------------------------------------------------------------------------------------


def test_macie_periodic_jobs_are_opt_in_and_then_reuse_their_job_id() -> None:
    one_time = JobSource.macie_classification_job()
    periodic = JobSource.macie_classification_job(scheduled_runs=True, stale_tolerance_seconds=10)
    assert one_time.success_statuses == ("JOB_COMPLETED",) and not one_time.reuses_job_ids
    assert set(periodic.success_statuses) == {"JOB_COMPLETED", "SCHEDULED_RUN_COMPLETED"}
    assert periodic.reuses_job_ids and periodic.stale_tolerance_seconds == 10
    assert one_time.error_names == {"JOB_CANCELLED": "Macie.JobCancelled"}
    assert periodic.rule_pattern()["detail"] == {
        "eventType": ["JOB_CANCELLED", "JOB_COMPLETED", "SCHEDULED_RUN_COMPLETED"]
    }


def test_the_callback_url_source_is_claim_bound() -> None:
    assert JobSource.callback_url(namespaces=["vendor"]).claim_bound


# --- flows in the local emulator ------------------------------------------------------------------------------------


def build_sources_app() -> tuple[dict[str, Any], dict[str, str]]:
    """A CallbackPattern with the Bedrock Data Automation, DMS and periodic Macie sources, and
    one workflow per source that starts a job and waits for it."""
    import aws_cdk as cdk
    from aws_cdk import aws_stepfunctions as sfn

    from cdk_serverless_patterns import CallbackPattern

    app = cdk.App(context={"aws:cdk:enable-path-metadata": True})
    stack = cdk.Stack(app, "SourceFlows")
    bda = JobSource.bedrock_data_automation()
    dms = JobSource.dms_replication_task()
    macie = JobSource.macie_classification_job(scheduled_runs=True)
    pattern = CallbackPattern(stack, "Callback", sources=[bda, dms, macie])

    def finish(name: str, wait: sfn.Parallel) -> sfn.IChainable:
        wait.add_catch(sfn.Pass(stack, f"{name} failed"), errors=["States.ALL"], result_path="$.error")
        return wait

    # Bedrock Data Automation, started by an aws-sdk task (answered locally: moto has no BDA); the
    # job id of its events is derived from the returned InvocationArn with the documented JSONata.
    start_bda = sfn.CustomState(
        stack,
        "Invoke data automation",
        state_json={
            "Type": "Task",
            "QueryLanguage": "JSONata",
            "Resource": "arn:aws:states:::aws-sdk:bedrockdataautomationruntime:invokeDataAutomationAsync",
            "Arguments": {"InputConfiguration": {"S3Uri": "{% $states.input.input %}"}},
            "Output": "{% $merge([$states.input, {'bda': {'jobId': " + sources.BDA_JOB_ID_JSONATA + "}}]) %}",
        },
    )
    bda_wait = pattern.wait_for_job(
        "Wait for data automation", source=bda, job_id_path="$.bda.jobId", timeout=cdk.Duration.minutes(5)
    )
    # The same in a JSONPath workflow, with the intrinsic functions.
    start_bda_jsonpath = sfn.Pass(
        stack,
        "Derive the job id",
        parameters={"jobId.$": sources.BDA_JOB_ID_INTRINSIC},
        result_path="$.bda",
    )
    bda_wait_jsonpath = pattern.wait_for_job(
        "Wait for data automation (JSONPath)", source=bda, job_id_path="$.bda.jobId", timeout=cdk.Duration.minutes(5)
    )
    dms_wait = pattern.wait_for_job(
        "Wait for the task", source=dms, job_id_path="$.task", timeout=cdk.Duration.minutes(5)
    )
    macie_wait = pattern.wait_for_job(
        "Wait for the next run", source=macie, job_id_path="$.jobId", timeout=cdk.Duration.minutes(5)
    )
    machines = {
        "Bda": sfn.StateMachine(
            stack, "Bda", definition_body=sfn.DefinitionBody.from_chainable(start_bda.next(finish("Bda", bda_wait)))
        ),
        "BdaJsonPath": sfn.StateMachine(
            stack,
            "BdaJsonPath",
            definition_body=sfn.DefinitionBody.from_chainable(
                start_bda_jsonpath.next(finish("BdaJsonPath", bda_wait_jsonpath))
            ),
        ),
        "Dms": sfn.StateMachine(
            stack, "Dms", definition_body=sfn.DefinitionBody.from_chainable(finish("Dms", dms_wait))
        ),
        "Macie": sfn.StateMachine(
            stack, "Macie", definition_body=sfn.DefinitionBody.from_chainable(finish("Macie", macie_wait))
        ),
    }
    for machine in machines.values():
        pattern.grant_wait(machine)
    from cdk_serverless_patterns.testing.resources import logical_id

    template = app.synth().get_stack_by_name("SourceFlows").template
    ids = {name: logical_id(template, machine) for name, machine in machines.items()}
    ids["resumer"] = logical_id(template, pattern.resumer)
    ids["table"] = logical_id(template, pattern.table)
    return template, ids


@pytest.fixture(scope="module")
def sources_app() -> tuple[dict[str, Any], dict[str, str]]:
    return build_sources_app()


class SourceFlows:
    def __init__(self, aws: Any, template: dict[str, Any], ids: dict[str, str]) -> None:
        self.session = aws.session
        self.deployment = aws.deploy(template)
        self.sfn = aws.session.client("stepfunctions")
        self.events = aws.session.client("events")
        self.dynamodb = aws.session.client("dynamodb")
        self.table = self.deployment.ref(ids["table"])
        self.machines = {name: self.deployment.arn(i) for name, i in ids.items() if name not in ("table",)}
        self._runs = 0

    def start(self, machine: str, **input: Any) -> str:
        self._runs += 1
        return str(
            self.sfn.start_execution(
                stateMachineArn=self.machines[machine], name=f"run-{self._runs}", input=json.dumps(input)
            )["executionArn"]
        )

    def parked(self, record_id: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            item = self.dynamodb.get_item(TableName=self.table, Key={"id": {"S": record_id}}).get("Item")
            if item and item["kind"]["S"] == "token":
                return
            time.sleep(0.02)
        raise AssertionError(f"no token parked for {record_id}")

    def put(self, source: str, detail_type: str, detail: dict[str, Any], resources: list[str] | None = None) -> None:
        entry: dict[str, Any] = {"Source": source, "DetailType": detail_type, "Detail": json.dumps(detail)}
        if resources:
            entry["Resources"] = resources
        assert self.events.put_events(Entries=[entry])["FailedEntryCount"] == 0

    def settle(self, timeout: float = 30) -> None:
        """Waits for every execution to end, so that none outlives the emulator (and reaches for AWS)."""
        deadline = time.monotonic() + timeout
        for arn in self.machines.values():
            while (
                time.monotonic() < deadline
                and self.sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]
            ):
                time.sleep(0.05)

    def finish(self, execution: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = self.sfn.describe_execution(executionArn=execution)
            if described["status"] != "RUNNING":
                return json.loads(described.get("output") or "null") or {}
            time.sleep(0.02)
        raise AssertionError(f"{execution} still running after {timeout} s")


@pytest.fixture()
def flows(sources_app: tuple[dict[str, Any], dict[str, str]]) -> Iterator[SourceFlows]:
    from cdk_serverless_patterns.local import emulator
    from cdk_serverless_patterns.local.patches.aws_sdk_parameters import route_aws_sdk

    def invoke(**arguments: Any) -> dict[str, Any]:
        assert arguments["InputConfiguration"]["S3Uri"].startswith("s3://")
        return {"InvocationArn": INVOCATION}

    route_aws_sdk("bedrockdataautomationruntime", "invokeDataAutomationAsync", invoke)
    try:
        with emulator() as aws:
            world = SourceFlows(aws, *sources_app)
            yield world
            world.settle()
    finally:
        route_aws_sdk("bedrockdataautomationruntime", "invokeDataAutomationAsync", None)


def resumer_supports(field: str) -> bool:
    """Whether the resumer (asl.py) compiles a source's ``status_expression`` / ``error_names``."""
    from cdk_serverless_patterns.callback import asl

    dms = JobSource.dms_replication_task()
    definition = json.dumps(
        asl.resumer_definition(table_name="t", sources=[dms], completion_ttl_seconds=60, durable=False)
    )
    if field == "status_expression":
        return json.dumps(dms.status_expression)[1:-1] in definition
    return "DMS.FatalError" in definition


BDA_DETAIL = {
    "job_id": "25010344-03f7-4167-803a-837afdc7ce98",
    "job_status": "SUCCESS",
    "semantic_modality": "Document",
    "input_s3_object": {"s3_bucket": "input-bucket", "name": "doc.pdf"},
    "output_s3_location": {"s3_bucket": "output-bucket", "name": "out"},
    "job_duration_in_seconds": 6,
    "error_message": "",
}


def test_bda_wait_takes_the_job_id_derived_from_the_invocation_arn(flows: SourceFlows) -> None:
    execution = flows.start("Bda", input="s3://input-bucket/doc.pdf")
    flows.parked("bedrock-data-automation#25010344-03f7-4167-803a-837afdc7ce98")
    flows.put("aws.bedrock", sources.BDA_SUCCEEDED, BDA_DETAIL)
    assert flows.finish(execution)["job"] == BDA_DETAIL


def test_bda_job_id_from_the_intrinsic_functions_of_a_jsonpath_workflow(flows: SourceFlows) -> None:
    execution = flows.start("BdaJsonPath", InvocationArn=INVOCATION)
    flows.parked("bedrock-data-automation#25010344-03f7-4167-803a-837afdc7ce98")
    flows.put("aws.bedrock", sources.BDA_SUCCEEDED, BDA_DETAIL)
    assert flows.finish(execution)["job"] == BDA_DETAIL


@pytest.mark.skipif(not resumer_supports("error_names"), reason="the resumer does not compile error_names yet")
def test_bda_failures_are_catchable_by_short_names(flows: SourceFlows) -> None:
    execution = flows.start("BdaJsonPath", InvocationArn=INVOCATION)
    flows.parked("bedrock-data-automation#25010344-03f7-4167-803a-837afdc7ce98")
    flows.put(
        "aws.bedrock",
        sources.BDA_CLIENT_ERROR,
        {**BDA_DETAIL, "job_status": "CLIENT_ERROR", "error_message": "unsupported file type"},
    )
    assert flows.finish(execution)["error"] == {
        "Error": "BedrockDataAutomation.ClientError",
        "Cause": "unsupported file type",
    }


@pytest.mark.skipif(
    not resumer_supports("status_expression"), reason="the resumer does not compile status_expression yet"
)
@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("Replication task has stopped. Stop Reason FULL_LOAD_ONLY_FINISHED.", None),
        ("Stop Reason FATAL_ERROR", "DMS.FatalError"),
        ("Replication task stopped", "DMS.UnknownStopReason"),
    ],
)
def test_a_dms_stop_resumes_by_its_stop_reason(flows: SourceFlows, message: str, error: str | None) -> None:
    execution = flows.start("Dms", task=TASK)
    flows.parked(f"dms#{TASK}")
    flows.put("aws.dms", "DMS Replication Task State Change", dms_event(sources.DMS_STOPPED, message)["detail"], [TASK])
    output = flows.finish(execution)
    if error is None:
        assert output["job"]["detailMessage"] == message
    else:
        assert output["error"]["Error"] == error and output["error"]["Cause"] == message


def test_a_periodic_macie_run_reaches_the_waiter_through_the_forwarder(
    flows: SourceFlows, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: the log subscription payload Macie's log group produces -> the forwarder's
    handler -> the bus -> the pattern's rule and resumer -> the waiting workflow."""
    import base64
    import datetime
    import gzip

    from cdk_serverless_patterns.testing.moto import load_runtime_module

    forwarder = load_runtime_module("callback_macie_forwarder", "macie_forwarder", name="macie_forwarder_flow")
    monkeypatch.setenv("EVENT_BUS_NAME", "default")
    monkeypatch.setenv("EVENT_SOURCE", sources.MACIE_EVENT_SOURCE)
    monkeypatch.setenv("DETAIL_TYPE", sources.MACIE_DETAIL_TYPE)
    monkeypatch.setattr(forwarder, "_events_client", flows.events)

    execution = flows.start("Macie", jobId="periodic-1")
    flows.parked("macie#periodic-1")
    now = datetime.datetime.now(tz=datetime.UTC).isoformat().replace("+00:00", "Z")
    run = {
        "adminAccountId": "123456789012",
        "jobId": "periodic-1",
        "eventType": "SCHEDULED_RUN_COMPLETED",
        "occurredAt": now,
        "description": "The scheduled job run finished running.",
        "jobName": "My_Daily_Macie_Job",
        "runDate": now,
    }
    envelope = {
        "messageType": "DATA_MESSAGE",
        "logGroup": sources.MACIE_LOG_GROUP_NAME,
        "logStream": "periodic-1",
        "logEvents": [{"id": "1", "timestamp": int(time.time() * 1000), "message": json.dumps(run)}],
    }
    data = base64.b64encode(gzip.compress(json.dumps(envelope).encode())).decode()
    assert forwarder.handler({"awslogs": {"data": data}}, None)["forwarded"] == 1
    assert flows.finish(execution)["job"] == run


def test_moto_logging_of_caught_errors_is_quieted_as_the_testing_docs_say(
    flows: SourceFlows, caplog: pytest.LogCaptureFixture
) -> None:
    """docs/testing.md: one logger level keeps moto's log of errors that a Catch handles out."""
    import logging

    def failing_run() -> list[logging.LogRecord]:
        caplog.clear()
        execution = flows.start("BdaJsonPath", InvocationArn=INVOCATION)
        flows.parked("bedrock-data-automation#25010344-03f7-4167-803a-837afdc7ce98")
        flows.put("aws.bedrock", sources.BDA_SERVICE_ERROR, {**BDA_DETAIL, "error_message": "try later"})
        assert "error" in flows.finish(execution)  # caught by the workflow
        return [r for r in caplog.records if r.name.startswith("moto.stepfunctions") and r.levelno >= logging.WARNING]

    caplog.set_level(logging.WARNING)
    assert failing_run(), "moto logs the caught error by default"
    parser = logging.getLogger("moto.stepfunctions.parser")
    level = parser.level
    parser.setLevel(logging.CRITICAL)
    try:
        assert failing_run() == []
    finally:
        parser.setLevel(level)


# --- docs/testing.md's examples run as written -------------------------------------------------------------------


def docs_block(containing: str) -> str:
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "testing.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    [block] = [b for b in blocks if containing in b]
    return block


def test_the_testing_docs_emulator_example_runs() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(docs_block("def test_translate_event_resumes_the_workflow"), "docs/testing.md", "exec"), namespace)
    namespace["test_translate_event_resumes_the_workflow"]()


def test_the_testing_docs_own_mock_aws_fixture_runs_workflows() -> None:
    """The fixture for tests that enter mock_aws themselves: with it, a deployed workflow executes."""
    import boto3

    from cdk_serverless_patterns.local import deploy_template

    namespace: dict[str, Any] = {}
    exec(compile(docs_block("def build_template"), "docs/testing.md", "exec"), namespace)
    template = namespace["build_template"]()
    fixture: dict[str, Any] = {}
    exec(compile(docs_block("yield\n"), "docs/testing.md", "exec"), fixture)
    aws = fixture["aws"].__wrapped__()  # the generator behind the pytest fixture
    next(aws)
    try:
        session = boto3.Session(region_name="us-east-1")
        from cdk_serverless_patterns.testing.resources import logical_id

        deployment = deploy_template(template, session)
        sfn = session.client("stepfunctions")
        run = sfn.start_execution(
            stateMachineArn=deployment.arn(logical_id(template, "Workflow")), name="r", input='{"jobId": "j"}'
        )
        table = deployment.ref(logical_id(template, "Callback/Table"))
        deadline = time.monotonic() + 30
        while "Item" not in session.client("dynamodb").get_item(TableName=table, Key={"id": {"S": "translate#j"}}):
            assert time.monotonic() < deadline, "the workflow never parked its token: it did not execute"
            time.sleep(0.05)
        sfn.stop_execution(executionArn=run["executionArn"])
    finally:
        aws.close()
