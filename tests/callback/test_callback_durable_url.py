"""Both halves together: a durable function waits with a per-job secret, a third party calls back over HTTPS.

The durable function (SDK local runner) stores its token record with ``callbackSecretHash``; the
callback-URL handler verifies the third party's secret against it and puts the completion event on
the callback bus; EventBridge (moto) delivers it to an SQS queue standing where the pattern's rule
target is; the test plays the resumer from that delivered event, exactly as the contract describes:
it resumes only the record carrying the claim the event names (a claim-bound source), with the
event's ``detail.output`` (the callback-URL source's ``output_path``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.execution import InvocationStatus
from aws_durable_execution_sdk_python.lambda_service import ErrorObject
from aws_durable_execution_sdk_python_testing import DurableFunctionTestRunner
from moto import mock_aws

from cdk_serverless_patterns.testing.moto import create_callback_table, load_runtime_module

durable_callback = load_runtime_module(
    "callback_durable", "durable_callback", name="durable_callback__test_callback_durable_url"
)
cbh = load_runtime_module(
    "callback_url", "callback_url_handler", name="callback_url_handler__test_callback_durable_url"
)

REGION, TABLE, BUS = "us-east-1", "callback-tokens", "callback-bus"
SECRET = "c0ffee-per-job"


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_callback_table(dynamodb, TABLE)
        events = boto3.client("events", region_name=REGION)
        events.create_event_bus(Name=BUS)
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="resumer-input")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(
            Name="callback-url-source",
            EventBusName=BUS,
            EventPattern=json.dumps({"source": [cbh.EVENT_SOURCE], "detail-type": [cbh.EVENT_DETAIL_TYPE]}),
        )
        events.put_targets(Rule="callback-url-source", EventBusName=BUS, Targets=[{"Id": "q", "Arn": queue_arn}])
        yield {"dynamodb": dynamodb, "events": events, "sqs": sqs, "queue_url": queue_url}


def _runner(aws: dict[str, Any]) -> DurableFunctionTestRunner:
    @durable_execution
    def handler(event: dict[str, Any], context: DurableContext) -> dict[str, Any]:
        try:
            detail = durable_callback.wait_for_job(
                context,
                table_name=TABLE,
                namespace="vendor",
                job_id=event["jobId"],
                timeout=3600,
                callback_secret=event["secret"],  # in real code: generated in a step, handed to the vendor
                dynamodb=aws["dynamodb"],
            )
        except durable_callback.JobFailedError as failed:
            return {"failed": [failed.error, failed.cause]}
        return {"detail": detail}

    return DurableFunctionTestRunner(handler=handler, poll_interval=0.05, region=REGION)


def _post(aws: dict[str, Any], job_id: str, body: dict[str, Any], secret: str) -> int:
    handler = cbh.CallbackUrlHandler(
        settings=cbh.Settings(
            table_name=TABLE, event_bus_name=BUS, namespaces=frozenset({"vendor"}), auth_mode="secret"
        ),
        dynamodb=aws["dynamodb"],
        events=aws["events"],
        secrets=None,
    )
    event = {
        "pathParameters": {"namespace": "vendor", "jobId": job_id},
        "headers": {"X-Callback-Secret": secret, "Content-Type": "application/json"},
        "body": json.dumps(body),
    }
    status: int = handler.handle(event)["statusCode"]
    return status


def _play_resumer(aws: dict[str, Any], runner: DurableFunctionTestRunner) -> int:
    """Resumes every durable waiter named by a delivered event; returns how many events it saw."""
    messages = aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10).get("Messages", [])
    for message in messages:
        detail = json.loads(message["Body"])["detail"]
        key = {"id": {"S": f"{detail['namespace']}#{detail['jobId']}"}}
        record = aws["dynamodb"].get_item(TableName=TABLE, Key=key, ConsistentRead=True)["Item"]
        assert record["backend"] == {"S": "durable"}
        assert record["callbackRequestId"] == {"S": detail["claimId"]}  # the claim binds the event to the record
        callback_id = record["callbackId"]["S"]
        if detail["status"] == "SUCCEEDED":
            runner.send_callback_success(callback_id, json.dumps(detail["output"]).encode())
        else:
            data = json.dumps({"error": detail["error"], "cause": detail["cause"]})
            error = ErrorObject(message=detail["cause"], type=detail["error"], data=data, stack_trace=None)
            runner.send_callback_failure(callback_id, error)
        aws["dynamodb"].delete_item(TableName=TABLE, Key=key)
        aws["sqs"].delete_message(QueueUrl=aws["queue_url"], ReceiptHandle=message["ReceiptHandle"])
    return len(messages)


def test_third_party_callback_resumes_the_durable_function(aws: dict[str, Any]) -> None:
    with _runner(aws) as runner:
        arn = runner.run_async(input=json.dumps({"jobId": "v-1", "secret": SECRET}), execution_timeout=60)
        runner.wait_for_callback(arn, timeout=30)

        assert _post(aws, "v-1", {"status": "SUCCEEDED", "output": {"pages": 3}}, "forged") == 403
        assert _play_resumer(aws, runner) == 0  # nothing was published: the function still waits

        assert _post(aws, "v-1", {"status": "SUCCEEDED", "output": {"pages": 3}}, SECRET) == 202
        assert _post(aws, "v-1", {"status": "FAILED"}, SECRET) == 409  # the replay changes nothing
        assert _play_resumer(aws, runner) == 1

        outcome = runner.wait_for_result(arn, timeout=30)
    assert outcome.status is InvocationStatus.SUCCEEDED
    assert json.loads(outcome.result or "null") == {"detail": {"pages": 3}}


def test_third_party_failure_callback_fails_the_wait(aws: dict[str, Any]) -> None:
    with _runner(aws) as runner:
        arn = runner.run_async(input=json.dumps({"jobId": "v-2", "secret": SECRET}), execution_timeout=60)
        runner.wait_for_callback(arn, timeout=30)
        body = {"status": "FAILED", "error": "Vendor.Rejected", "cause": "scan unreadable"}
        assert _post(aws, "v-2", body, SECRET) == 202
        assert _play_resumer(aws, runner) == 1
        outcome = runner.wait_for_result(arn, timeout=30)
    assert json.loads(outcome.result or "null") == {"failed": ["Vendor.Rejected", "scan unreadable"]}
