"""events.py without a deployment: EventBridge's input rules, schedule expressions, the scheduler
runner and EventBridge's dead-letter queue, against the in-process emulator (moto, no CDK)."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from cdk_serverless_patterns.local import Emulator
from cdk_serverless_patterns.local.events import (
    ScheduleExpressionError,
    ScheduleRunner,
    input_transform,
    next_fire,
    target_input,
)
from cdk_serverless_patterns.local.lambda_environment import wait_for

EVENT = {
    "version": "0",
    "id": "7bf73129-1428-4cd3-a780-95db273d1602",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "123456789012",
    "time": 1447277394,  # moto holds a Unix timestamp
    "region": "us-east-1",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
    "detail": {"instance-id": "i-0123456789", "state": "RUNNING", "tags": ["a", "b"], "n": 3},
}
PATHS = {"instance": "$.detail.instance-id", "state": "$.detail.state", "tags": "$.detail.tags", "n": "$.detail.n"}


def _transform(template: str, paths: dict[str, str] | None = None) -> bytes:
    return input_transform(
        {"InputPathsMap": PATHS if paths is None else paths, "InputTemplate": template},
        {**EVENT, "time": "2015-11-11T21:29:54Z"},
        rule_arn="arn:aws:events:us-east-1:123456789012:rule/r",
        rule_name="r",
    )


# --------------------------------------------------------------------------- input transformer
def test_values_are_text_inside_strings_and_json_outside() -> None:
    out = _transform('{"instance": "<instance>", "tags": <tags>, "n": <n>, "state": <state>, "t": "<tags>"}')
    assert json.loads(out) == {
        "instance": "i-0123456789",
        "tags": ["a", "b"],
        "n": 3,
        "state": "RUNNING",
        "t": '["a", "b"]',
    }


def test_a_text_template_stays_text() -> None:
    """EventBridge's documented example: a string template gives a string."""
    assert _transform('"instance <instance> is in <state>"') == b'"instance i-0123456789 is in RUNNING"'


def test_a_missing_path_is_null_outside_quotes_and_empty_inside() -> None:
    out = _transform('{"a": <gone>, "b": "<gone>"}', {"gone": "$.detail.nothing"})
    assert json.loads(out) == {"a": None, "b": ""}


def test_quotes_in_values_keep_the_output_json() -> None:
    event = {**EVENT, "detail": {"say": 'he said "hi"\\'}}
    out = input_transform({"InputPathsMap": {"say": "$.detail.say"}, "InputTemplate": '{"s": "<say>"}'}, event)
    assert json.loads(out) == {"s": 'he said "hi"\\'}


def test_the_whole_event_path_is_the_event_as_sent() -> None:
    out = input_transform(
        {"InputPathsMap": {"e": "$"}, "InputTemplate": '{"event": <e>}'}, {**EVENT, "ingestion-time": 5.0}
    )
    assert json.loads(out)["event"] == EVENT


def test_predefined_variables() -> None:
    out = _transform('{"rule": "<aws.events.rule-name>", "arn": "<aws.events.rule-arn>", "e": <aws.events.event.json>}')
    parsed = json.loads(out)
    assert parsed["rule"] == "r" and parsed["arn"].endswith(":rule/r")
    assert parsed["e"]["detail"]["state"] == "RUNNING"


def test_target_input_input_path_and_whole_event() -> None:
    assert json.loads(target_input({"Input": '{"fixed": 1}'}, EVENT)) == {"fixed": 1}
    assert json.loads(target_input({"InputPath": "$.detail.state"}, EVENT)) == "RUNNING"
    whole = json.loads(target_input({}, {**EVENT, "ingestion-time": 1.0}))
    assert whole["time"] == "2015-11-11T21:29:54Z"  # ISO 8601 to the second, as EventBridge sends it
    assert "ingestion-time" not in whole


# --------------------------------------------------------------------------- expressions
NOON = datetime.datetime(2024, 1, 1, 12, 0, 30, tzinfo=datetime.UTC)  # a Monday


def test_rate_and_fast_rate() -> None:
    assert next_fire("rate(5 minutes)", NOON) == NOON + datetime.timedelta(minutes=5)
    assert next_fire("rate(1 minute)", NOON, fast=60) == NOON + datetime.timedelta(seconds=1)
    assert next_fire("rate(2 hours)", NOON) == NOON + datetime.timedelta(hours=2)


def test_cron_fields_weekdays_and_time_zones() -> None:
    assert next_fire("cron(0/15 * * * ? *)", NOON) == datetime.datetime(2024, 1, 1, 12, 15, tzinfo=datetime.UTC)
    assert next_fire("cron(0 8 ? * MON-FRI *)", NOON) == datetime.datetime(2024, 1, 2, 8, 0, tzinfo=datetime.UTC)
    assert next_fire("cron(0 0 1 * ? *)", NOON) == datetime.datetime(2024, 2, 1, tzinfo=datetime.UTC)
    paris = next_fire("cron(0 9 * * ? *)", NOON, timezone="Europe/Paris")
    assert paris == datetime.datetime(2024, 1, 2, 8, 0, tzinfo=datetime.UTC)


def test_at_fires_once_and_bad_expressions_are_named() -> None:
    assert next_fire("at(2024-01-01T13:00:00)", NOON) == datetime.datetime(2024, 1, 1, 13, tzinfo=datetime.UTC)
    assert next_fire("at(2023-01-01T13:00:00)", NOON) is None
    with pytest.raises(ScheduleExpressionError, match="out of range"):
        next_fire("cron(0 0 32 * ? *)", NOON)
    with pytest.raises(ScheduleExpressionError, match="not a number"):
        next_fire("cron(0 0 ? * FUNDAY *)", NOON)
    with pytest.raises(ScheduleExpressionError, match="every 5"):
        next_fire("every 5", NOON)


# --------------------------------------------------------------------------- scheduler runner
def _schedule(aws: Emulator, name: str, target: dict[str, Any], state: str = "ENABLED") -> None:
    aws.session.client("scheduler").create_schedule(
        Name=name,
        ScheduleExpression="rate(1 minute)",
        FlexibleTimeWindow={"Mode": "OFF"},
        State=state,
        Target={"RoleArn": "arn:aws:iam::123456789012:role/scheduler", **target},
    )


def test_runner_fires_a_schedule_with_context_attributes_and_skips_disabled_ones(aws: Emulator) -> None:
    sqs = aws.session.client("sqs")
    url = sqs.create_queue(QueueName="ticks")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    _schedule(
        aws,
        "tick",
        {"Arn": arn, "Input": '{"at": "<aws.scheduler.scheduled-time>", "n": "<aws.scheduler.attempt-number>"}'},
    )
    _schedule(aws, "off", {"Arn": arn, "Input": "{}"}, state="DISABLED")
    runner = ScheduleRunner(
        aws.session, account="123456789012", region="us-east-1", fast=60, tick=0.05, log=lambda _: None
    )
    try:
        runner.start()
        messages = wait_for(lambda: sqs.receive_message(QueueUrl=url).get("Messages"), timeout=10)
        assert messages, "the schedule never fired"
        body = json.loads(messages[0]["Body"])
        assert body["n"] == "1" and len(body["at"]) == 20 and body["at"].endswith("Z")
        assert runner.run_due(force=True) == 1  # the DISABLED schedule never fires
    finally:
        runner.close()


def test_runner_sends_an_undeliverable_schedule_to_its_dead_letter_queue(aws: Emulator) -> None:
    sqs = aws.session.client("sqs")
    dlq = sqs.create_queue(QueueName="schedule-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    _schedule(
        aws,
        "lost",
        {
            "Arn": "arn:aws:sqs:us-east-1:123456789012:no-such-queue",
            "Input": '{"x": 1}',
            "RetryPolicy": {"MaximumRetryAttempts": 1, "MaximumEventAgeInSeconds": 60},
            "DeadLetterConfig": {"Arn": dlq_arn},
        },
    )
    runner = ScheduleRunner(aws.session, account="123456789012", region="us-east-1", fast=60, log=lambda _: None)
    try:
        assert runner.run_due(force=True) == 1
        messages = wait_for(
            lambda: sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"]).get("Messages"), timeout=10
        )
        assert messages, "nothing reached the dead-letter queue"
        attributes = {key: value["StringValue"] for key, value in messages[0]["MessageAttributes"].items()}
        assert attributes["X-Amz-Scheduler-Attempt"] == "2"  # the first attempt and one retry
        assert attributes["X-Amz-Scheduler-Error-Code"] == "AWS.SimpleQueueService.NonExistentQueue"
        assert attributes["X-Amz-Scheduler-Schedule-Arn"].endswith(":schedule/default/lost")
        assert json.loads(messages[0]["Body"]) == {"x": 1}
    finally:
        runner.close()


def test_a_rule_target_whose_function_is_missing_goes_to_the_dead_letter_queue(aws: Emulator) -> None:
    sqs = aws.session.client("sqs")
    dlq = sqs.create_queue(QueueName="rule-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = aws.session.client("events")
    events.put_rule(Name="orders", EventPattern=json.dumps({"source": ["shop"]}), State="ENABLED")
    function = "arn:aws:lambda:us-east-1:123456789012:function:gone"
    events.put_targets(Rule="orders", Targets=[{"Id": "f", "Arn": function, "DeadLetterConfig": {"Arn": dlq_arn}}])
    result = events.put_events(Entries=[{"Source": "shop", "DetailType": "Order", "Detail": '{"id": 1}'}])
    assert result["FailedEntryCount"] == 0
    messages = wait_for(lambda: sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"]).get("Messages"))
    assert messages, "nothing reached the rule's dead-letter queue"
    attributes = {key: value["StringValue"] for key, value in messages[0]["MessageAttributes"].items()}
    assert attributes["ERROR_CODE"] == "ResourceNotFoundException"
    assert attributes["TARGET_ARN"] == function and attributes["RULE_ARN"].endswith(":rule/orders")
    assert json.loads(messages[0]["Body"])["detail"] == {"id": 1}
