"""MacieJobStatusForwarder: the handler against moto's EventBridge with real subscription payloads,
and the construct (least privilege, dead-letter queue, subscription filter, cdk-nag, cfn-lint).

The payloads are built as CloudWatch Logs builds them (base64 of gzip of the JSON envelope), with
Macie's documented job events (``adminAccountId``, ``jobId``, ``eventType``, ``occurredAt``,
``description``, ``jobName``, ``runDate``). Forwarded events are read back from an SQS queue that a
rule on the bus delivers to, so the test sees what EventBridge would deliver to the resumer's rule.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from cdk_serverless_patterns.testing.moto import load_runtime_module

forwarder = load_runtime_module("callback_macie_forwarder", "macie_forwarder", name="macie_forwarder_under_test")

BUS = "callbacks"
SOURCE = "custom.macie.classification-jobs"
DETAIL_TYPE = "Macie Classification Job Status"
JOB = "ffad0e71455f38a4c7c220f3cexample"


def job_event(event_type: str, job_id: str = JOB, **extra: Any) -> dict[str, Any]:
    """A Macie job-status log event as documented."""
    return {
        "adminAccountId": "123456789012",
        "jobId": job_id,
        "eventType": event_type,
        "occurredAt": "2024-04-14T17:16:30.574809Z",
        "description": "The job finished running.",
        "jobName": "My_Macie_Job",
        **extra,
    }


def payload(messages: list[str], message_type: str = "DATA_MESSAGE", log_stream: str = JOB) -> dict[str, Any]:
    """The event CloudWatch Logs invokes a subscribed function with."""
    envelope = {
        "messageType": message_type,
        "owner": "123456789012",
        "logGroup": "/aws/macie/classificationjobs",
        "logStream": log_stream,
        "subscriptionFilters": ["MacieForwarderSubscription"],
        "logEvents": [
            {"id": f"3719{i:052d}", "timestamp": 1713114990574 + i, "message": message}
            for i, message in enumerate(messages)
        ],
    }
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(envelope).encode())).decode()}}


CONTROL = {
    "awslogs": {
        "data": base64.b64encode(
            gzip.compress(
                json.dumps(
                    {
                        "messageType": "CONTROL_MESSAGE",
                        "owner": "CloudwatchLogs",
                        "logGroup": "",
                        "logStream": "",
                        "subscriptionFilters": [],
                        "logEvents": [
                            {
                                "id": "",
                                "timestamp": 1432826855000,
                                "message": "CWL CONTROL MESSAGE: Checking health of destination Firehose.",
                            }
                        ],
                    }
                ).encode()
            )
        ).decode()
    }
}


class Bus:
    """moto's EventBridge with the forwarder's bus and a rule delivering its events to a queue."""

    def __init__(self) -> None:
        self.events = boto3.client("events", region_name="us-east-1")
        self.sqs = boto3.client("sqs", region_name="us-east-1")
        self.events.create_event_bus(Name=BUS)
        self.queue = self.sqs.create_queue(QueueName="seen")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.events.put_rule(Name="all", EventBusName=BUS, EventPattern=json.dumps({"source": [SOURCE]}))
        self.events.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}])
        self.put_calls: list[list[dict[str, Any]]] = []
        self.slept: list[float] = []
        self.events.meta.events.register("before-parameter-build.events.PutEvents", self._record)

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        self.put_calls.append([dict(e) for e in params["Entries"]])

    def delivered(self) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return seen
            for message in messages:
                seen.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture()
def bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[Bus]:
    monkeypatch.setenv("EVENT_BUS_NAME", BUS)
    monkeypatch.setenv("EVENT_SOURCE", SOURCE)
    monkeypatch.setenv("DETAIL_TYPE", DETAIL_TYPE)
    monkeypatch.setenv("EVENT_TYPES", "JOB_COMPLETED,JOB_CANCELLED,SCHEDULED_RUN_COMPLETED")
    with mock_aws():
        world = Bus()
        monkeypatch.setattr(forwarder, "_events_client", world.events)
        monkeypatch.setattr(forwarder, "_sleep", world.slept.append)
        yield world


# --- the handler --------------------------------------------------------------------------------------------


def test_each_job_status_event_is_put_unchanged_with_the_macie_source(bus: Bus) -> None:
    completed = job_event("JOB_COMPLETED")
    run = job_event("SCHEDULED_RUN_COMPLETED", job_id="periodic-1", runDate="2024-04-14T17:09:30.574809Z")
    result = forwarder.handler(payload([json.dumps(completed), json.dumps(run)]), None)

    assert result == {"messageType": "DATA_MESSAGE", "forwarded": 2, "skipped": 0}
    delivered = sorted(bus.delivered(), key=lambda e: e["detail"]["jobId"])
    assert [e["detail"] for e in delivered] == sorted([completed, run], key=lambda d: d["jobId"])
    assert {(e["source"], e["detail-type"]) for e in delivered} == {(SOURCE, DETAIL_TYPE)}
    # Dated when Macie logged it (occurredAt), not when it was forwarded: the stale check of a
    # periodic job (a reused job id) compares this time with the waiting execution's start.
    [call] = bus.put_calls
    assert {entry["Time"].isoformat() for entry in call} == {"2024-04-14T17:16:30.574809+00:00"}
    assert {entry["EventBusName"] for entry in call} == {BUS}


def test_the_job_event_is_what_the_macie_source_reads(bus: Bus) -> None:
    """The forwarded event is one the ready-made source recognizes: its pattern, job id and status."""
    from cdk_serverless_patterns.callback.sources import JobSource, path_keys

    source = JobSource.macie_classification_job()
    forwarder.handler(payload([json.dumps(job_event("JOB_CANCELLED"))]), None)
    [event] = bus.delivered()
    assert event["source"] in source.event_pattern["source"]
    assert event["detail-type"] in source.event_pattern["detail-type"]

    def at(path: str) -> Any:
        node: Any = event
        for key in path_keys(path):
            node = node[key]
        return node

    assert at(source.job_id_path) == JOB
    assert at(source.status_path) in source.failure_statuses
    assert source.error_names[at(source.status_path)] == "Macie.JobCancelled"


def test_control_messages_are_acknowledged_and_put_nothing(bus: Bus) -> None:
    assert forwarder.handler(CONTROL, None) == {"messageType": "CONTROL_MESSAGE", "forwarded": 0, "skipped": 0}
    assert bus.put_calls == [] and bus.delivered() == []


def test_malformed_lines_are_skipped_with_a_log_and_the_rest_forwarded(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="callback_macie_forwarder")
    good = job_event("JOB_COMPLETED")
    lines = [
        "not json at all",
        json.dumps(["an", "array"]),
        json.dumps({"jobId": JOB}),  # no eventType
        json.dumps({**good, "jobId": ""}),  # empty job id
        json.dumps({**good, "jobId": None}),
        json.dumps(job_event("BUCKET_ACCESS_DENIED")),  # an error event, not a forwarded status
        json.dumps(good),
    ]
    result = forwarder.handler(payload(lines), None)
    assert result["forwarded"] == 1 and result["skipped"] == 6
    assert [e["detail"] for e in bus.delivered()] == [good]
    reasons = [r.reason for r in caplog.records if r.getMessage() == "log event skipped"]  # type: ignore[attr-defined]
    assert reasons == [
        "the message is not JSON",
        "the message is not a JSON object",
        "the message has no eventType",
        "the message has no jobId",
        "the message has no jobId",
        "event type 'BUCKET_ACCESS_DENIED' is not forwarded",
    ]
    assert all(getattr(r, "logEventId", "").startswith("3719") for r in caplog.records if hasattr(r, "reason"))


def test_a_partial_putevents_failure_is_retried_until_every_event_is_on_the_bus(bus: Bus) -> None:
    """moto rejects one entry of the first call (the hook blanks its detail in that request only, so
    moto answers it with an ErrorCode as EventBridge does); the handler puts just that entry again."""
    calls = {"n": 0}

    def fail_second_entry_once(params: dict[str, Any], **_: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            entries = [dict(e) for e in params["Entries"]]
            entries[1]["Detail"] = ""
            params["Entries"] = entries

    bus.events.meta.events.register("before-parameter-build.events.PutEvents", fail_second_entry_once)
    jobs = [job_event("JOB_COMPLETED", job_id=f"job-{i}") for i in range(3)]
    assert forwarder.handler(payload([json.dumps(j) for j in jobs]), None)["forwarded"] == 3

    assert [len(call) for call in bus.put_calls] == [3, 1]
    assert json.loads(bus.put_calls[1][0]["Detail"])["jobId"] == "job-1"
    assert sorted(e["detail"]["jobId"] for e in bus.delivered()) == ["job-0", "job-1", "job-2"]


def test_entries_failing_every_attempt_raise_so_lambda_retries_and_the_dlq_gets_it(bus: Bus) -> None:
    def always_fail_first(params: dict[str, Any], **_: Any) -> None:
        entries = [dict(e) for e in params["Entries"]]
        if json.loads(entries[0]["Detail"] or "{}").get("jobId") == "job-0":
            entries[0]["Detail"] = ""
        params["Entries"] = entries

    bus.events.meta.events.register("before-parameter-build.events.PutEvents", always_fail_first)
    jobs = [job_event("JOB_COMPLETED", job_id=f"job-{i}") for i in range(2)]
    with pytest.raises(forwarder.ForwardingError, match=r"1 event\(s\) could not be put .* InvalidArgument"):
        forwarder.handler(payload([json.dumps(j) for j in jobs]), None)
    assert len(bus.put_calls) == forwarder.MAX_PUT_ATTEMPTS  # bounded: 1 call, then 3 retries of the one entry
    assert bus.slept == [0.2, 0.4, 0.8]  # with backoff, about 1.4 s in all
    assert [e["detail"]["jobId"] for e in bus.delivered()] == ["job-1"]


def test_retries_stop_before_the_invocation_times_out(bus: Bus) -> None:
    """With too little time left for a backoff, the failing entry is not retried: the invocation
    fails at once (Lambda retries it) instead of being cut off by its timeout."""

    def always_fail(params: dict[str, Any], **_: Any) -> None:
        params["Entries"] = [{**e, "Detail": ""} for e in params["Entries"]]

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return int((forwarder.DEADLINE_MARGIN_SECONDS + 0.1) * 1000)

    bus.events.meta.events.register("before-parameter-build.events.PutEvents", always_fail)
    started = time.monotonic()
    with pytest.raises(forwarder.ForwardingError):
        forwarder.handler(payload([json.dumps(job_event("JOB_COMPLETED"))]), Context())
    assert len(bus.put_calls) == 1 and bus.slept == []
    assert time.monotonic() - started < 5  # bounded, not hung


def test_a_missing_bus_fails_the_invocation_instead_of_dropping_events(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENT_BUS_NAME", "no-such-bus")
    with pytest.raises(Exception, match=r"(?i)not exist|not found"):
        forwarder.handler(payload([json.dumps(job_event("JOB_COMPLETED"))]), None)


def test_many_events_are_put_in_batches_of_ten(bus: Bus) -> None:
    jobs = [job_event("JOB_COMPLETED", job_id=f"job-{i:02d}") for i in range(23)]
    assert forwarder.handler(payload([json.dumps(j) for j in jobs]), None)["forwarded"] == 23
    assert [len(call) for call in bus.put_calls] == [10, 10, 3]
    assert len(bus.delivered()) == 23


def test_batches_respect_the_request_size_limit() -> None:
    entry = {"Source": SOURCE, "DetailType": DETAIL_TYPE, "Detail": json.dumps({"x": "y" * 100_000})}
    assert [len(b) for b in forwarder.batches([entry] * 5)] == [2, 2, 1]


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"awslogs": {}},
        {"awslogs": {"data": "!!! not base64 !!!"}},
        {"awslogs": {"data": base64.b64encode(b"not gzip").decode()}},
        {"awslogs": {"data": base64.b64encode(gzip.compress(b"not json")).decode()}},
        {"awslogs": {"data": base64.b64encode(gzip.compress(b"[1, 2]")).decode()}},
        {"awslogs": {"data": base64.b64encode(gzip.compress(b'{"messageType": "OTHER"}')).decode()}},
        {"awslogs": {"data": base64.b64encode(gzip.compress(b'{"messageType": "DATA_MESSAGE"}')).decode()}},
        {"awslogs": {"data": base64.b64encode(gzip.compress(b'{"messageType": "DATA_MESSAGE"}')[:-8]).decode()}},
    ],
    ids=["empty", "no-data", "base64", "gzip", "json", "array", "type", "no-events", "truncated"],
)
def test_a_payload_that_is_not_a_subscription_payload_raises_bad_payload(event: dict[str, Any], bus: Bus) -> None:
    with pytest.raises(forwarder.BadPayload):
        forwarder.handler(event, None)
    assert bus.put_calls == []


def test_a_gzip_bomb_is_refused_without_inflating_it(bus: Bus) -> None:
    bomb = gzip.compress(
        b'{"messageType": "DATA_MESSAGE", "logEvents": [], "pad": "' + b" " * (20 * 1024 * 1024) + b'"}'
    )
    with pytest.raises(forwarder.BadPayload, match="inflates to more than"):
        forwarder.handler({"awslogs": {"data": base64.b64encode(bomb).decode()}}, None)


def test_a_misconfigured_function_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENT_BUS_NAME", raising=False)
    with pytest.raises(RuntimeError, match="EVENT_BUS_NAME"):
        forwarder.handler(payload([json.dumps(job_event("JOB_COMPLETED"))]), None)


def test_the_event_time_falls_back_to_the_log_timestamp() -> None:
    entries, skipped = forwarder.build_entries(
        {
            "logEvents": [
                {
                    "id": "1",
                    "timestamp": 1713114990574,
                    "message": json.dumps(job_event("JOB_COMPLETED", occurredAt="soon")),
                }
            ]
        },
        event_bus=BUS,
        source=SOURCE,
        detail_type=DETAIL_TYPE,
    )
    assert skipped == 0 and entries[0]["Time"].isoformat() == "2024-04-14T17:16:30.574000+00:00"


# --- the construct ------------------------------------------------------------------------------------------


class Built:
    def __init__(self, outdir: Path) -> None:
        import aws_cdk as cdk
        from aws_cdk import aws_events as events
        from aws_cdk import aws_logs as logs
        from aws_cdk.assertions import Template

        from cdk_serverless_patterns import CallbackPattern, JobSource, MacieJobStatusForwarder
        from cdk_serverless_patterns.testing.checks import synth_with_checks

        app = cdk.App(outdir=str(outdir))
        env = cdk.Environment(account="123456789012", region="us-east-1")
        stack = cdk.Stack(app, "MacieForwarder", env=env)
        macie = JobSource.macie_classification_job(scheduled_runs=True)
        self.pattern = CallbackPattern(
            stack, "Callback", sources=[macie], event_bus=events.EventBus(stack, "Bus", event_bus_name="callbacks")
        )
        self.forwarder = MacieJobStatusForwarder(stack, "Forwarder", event_bus=self.pattern.event_bus, source=macie)
        configured = cdk.Stack(app, "MacieForwarderConfigured", env=env)
        group = logs.LogGroup(configured, "MacieJobs", log_group_name="/aws/macie/classificationjobs")
        self.configured = MacieJobStatusForwarder(
            configured,
            "Forwarder",
            event_bus=events.EventBus.from_event_bus_name(configured, "Default", "default"),
            source=JobSource.macie_classification_job(event_source="com.example.macie"),
            event_types=["JOB_COMPLETED", "JOB_CANCELLED"],
            log_group=group,
            retry_attempts=0,
        )
        self.assembly = synth_with_checks(app)
        self.template = Template.from_json(self.assembly.templates["MacieForwarder"])
        self.configured_template = Template.from_json(self.assembly.templates["MacieForwarderConfigured"])

    def stack_id(self, construct: Any) -> str:
        from cdk_serverless_patterns.testing.resources import logical_id

        return logical_id(self.assembly.templates["MacieForwarder"], construct)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return Built(tmp_path_factory.mktemp("macie-forwarder"))


def test_cdk_nag_and_cfn_lint_are_clean(built: Built) -> None:
    from cdk_serverless_patterns.testing.checks import cfn_lint_findings, format_table

    assert not built.assembly.nag_findings, format_table(built.assembly.nag_findings)
    errors = [f for f in cfn_lint_findings(built.assembly.templates) if f.severity == "error"]
    assert not errors, format_table(errors)


def test_the_subscription_filter_selects_job_statuses_of_the_macie_log_group(built: Built) -> None:
    [subscription] = built.template.find_resources("AWS::Logs::SubscriptionFilter").values()
    props = subscription["Properties"]
    assert props["LogGroupName"] == "/aws/macie/classificationjobs"
    for event_type in ("JOB_COMPLETED", "JOB_CANCELLED", "SCHEDULED_RUN_COMPLETED"):
        assert f'($.eventType = "{event_type}")' in props["FilterPattern"]
    assert "BUCKET_ACCESS_DENIED" not in props["FilterPattern"]
    # CloudWatch Logs may invoke the function, only from that log group.
    [permission] = built.template.find_resources("AWS::Lambda::Permission").values()
    assert permission["Properties"]["Principal"] == "logs.amazonaws.com"
    assert "/aws/macie/classificationjobs" in json.dumps(permission["Properties"]["SourceArn"])


def test_the_function_may_only_put_events_on_the_pattern_bus(built: Built) -> None:
    statements = [
        s
        for policy in built.template.find_resources("AWS::IAM::Policy").values()
        if "ForwarderFunction" in json.dumps(policy["Properties"]["Roles"])
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    put = [s for s in statements if "events:PutEvents" in json.dumps(s["Action"])]
    assert len(put) == 1 and put[0]["Action"] == "events:PutEvents"
    [bus_id] = built.template.find_resources("AWS::Events::EventBus").keys()
    assert put[0]["Resource"] == {"Fn::GetAtt": [bus_id, "Arn"]}
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions <= {
        "events:PutEvents",
        "sqs:SendMessage",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }, actions
    queue_arn = {"Fn::GetAtt": [built.stack_id(built.forwarder.dead_letter_queue), "Arn"]}
    assert all(s["Resource"] == queue_arn for s in statements if "sqs:" in json.dumps(s["Action"]))


def test_failed_invocations_go_to_an_encrypted_dead_letter_queue_with_an_alarm(built: Built) -> None:
    [config] = built.template.find_resources("AWS::Lambda::EventInvokeConfig").values()
    assert config["Properties"]["MaximumRetryAttempts"] == 2
    destination = config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
    queue_id = built.stack_id(built.forwarder.dead_letter_queue)
    assert destination == {"Fn::GetAtt": [queue_id, "Arn"]}
    queue = built.template.find_resources("AWS::SQS::Queue")[queue_id]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True and queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    alarms = [
        a for a in built.template.find_resources("AWS::CloudWatch::Alarm").values() if "Forwarder" in json.dumps(a)
    ]
    assert any(queue_id in json.dumps(a["Properties"]["Dimensions"]) for a in alarms)
    assert built.forwarder.dead_letter_queue is not None and len(built.forwarder.alarms) == 1


def test_the_function_is_configured_for_the_source_it_feeds(built: Built) -> None:
    [function] = [
        f
        for f in built.configured_template.find_resources("AWS::Lambda::Function").values()
        if "EVENT_SOURCE" in json.dumps(f)
    ]
    env = function["Properties"]["Environment"]["Variables"]
    assert env["EVENT_SOURCE"] == "com.example.macie"
    assert env["DETAIL_TYPE"] == "Macie Classification Job Status"
    assert env["EVENT_TYPES"] == "JOB_COMPLETED,JOB_CANCELLED"
    assert env["EVENT_BUS_NAME"] == "default"
    assert function["Properties"]["Handler"] == "macie_forwarder.handler"
    [config] = built.configured_template.find_resources("AWS::Lambda::EventInvokeConfig").values()
    assert config["Properties"]["MaximumRetryAttempts"] == 0


def test_every_bad_prop_is_reported_in_one_error() -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_events as events

    from cdk_serverless_patterns import JobSource, MacieJobStatusForwarder, PropError

    stack = cdk.Stack(cdk.App(), "S")
    bus = events.EventBus.from_event_bus_name(stack, "Bus", "callbacks")
    with pytest.raises(PropError) as raised:
        MacieJobStatusForwarder(
            stack,
            "Forwarder",
            event_bus=bus,
            source=JobSource.translate_text_translation_job(),  # an aws. source cannot be put
            event_types=["JOB_COMPLETED", "NOT_A_TYPE"],
            retry_attempts=3,
        )
    text = str(raised.value)
    for fragment in (
        "source: events cannot be put with an 'aws.' source",
        "event_types: ['NOT_A_TYPE']",
        "retry_attempts",
    ):
        assert fragment in text, f"{fragment!r} missing from:\n{text}"
    with pytest.raises(PropError, match="must include the statuses the source waits for: JOB_CANCELLED"):
        MacieJobStatusForwarder(stack, "Narrow", event_bus=bus, event_types=["JOB_COMPLETED"])
    with pytest.raises(PropError, match="SCHEDULED_RUN_COMPLETED"):
        MacieJobStatusForwarder(
            stack,
            "NoRuns",
            event_bus=bus,
            source=JobSource.macie_classification_job(scheduled_runs=True),
            event_types=["JOB_COMPLETED", "JOB_CANCELLED"],
        )


def test_the_filter_pattern_of_every_job_status_fits_cloudwatch_logs() -> None:
    from cdk_serverless_patterns.callback.macie_forwarder import job_status_filter_pattern
    from cdk_serverless_patterns.callback.sources import MACIE_JOB_STATUS_EVENT_TYPES

    assert len(job_status_filter_pattern(MACIE_JOB_STATUS_EVENT_TYPES)) <= 1024


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(
        st.one_of(
            st.text(max_size=100),
            json_values.map(json.dumps),
            st.builds(
                lambda job, kind, extra: json.dumps({"jobId": job, "eventType": kind, **extra}),
                st.one_of(st.text(max_size=30), json_values),
                st.one_of(st.sampled_from(["JOB_COMPLETED", "JOB_CANCELLED", "JOB_CREATED"]), json_values),
                st.dictionaries(st.text(max_size=10), json_values, max_size=3),
            ),
        ),
        max_size=8,
    )
)
def test_any_log_line_is_forwarded_as_a_job_event_or_skipped_never_a_crash(messages: list[str]) -> None:
    log_events = [{"id": str(i), "timestamp": 1713114990574, "message": m} for i, m in enumerate(messages)]
    entries, skipped = forwarder.build_entries(
        {"logEvents": log_events},
        event_bus=BUS,
        source=SOURCE,
        detail_type=DETAIL_TYPE,
        event_types=frozenset({"JOB_COMPLETED", "JOB_CANCELLED"}),
    )
    assert len(entries) + skipped == len(messages)
    for entry in entries:
        detail = json.loads(entry["Detail"])
        assert isinstance(detail["jobId"], str) and detail["jobId"].strip()
        assert detail["eventType"] in ("JOB_COMPLETED", "JOB_CANCELLED")
        assert forwarder.entry_size(entry) <= forwarder.MAX_REQUEST_BYTES
