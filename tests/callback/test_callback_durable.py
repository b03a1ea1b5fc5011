"""The Durable Functions backend: ``wait_for_job`` run end to end by the SDK's local runner, against moto DynamoDB.

The durable function parks on ``wait_for_callback``; the test plays CallbackPattern's resumer as the
contract describes it (find the token record by ``<namespace>#<jobId>``, resume the callback id
through the runner's callback API with the event detail or an error, delete the record). The
early-completion race is played both ways: the completion recorded before the function starts,
and the completion landing between the function's look and its token write.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.execution import InvocationStatus
from aws_durable_execution_sdk_python.lambda_service import ErrorObject
from aws_durable_execution_sdk_python_testing import DurableFunctionTestRunner
from moto import mock_aws

from cdk_serverless_patterns.testing.moto import create_callback_table, load_runtime_module

# The handler below calls this copy; the SDK's runner is given that handler, not the module's name.
durable_callback = load_runtime_module(
    "callback_durable", "durable_callback", name="durable_callback__test_callback_durable"
)

REGION = "us-east-1"
TABLE = "callback-tokens"
DETAIL = {"jobId": "job-1", "jobStatus": "COMPLETED", "outputDataConfig": {"s3Uri": "s3://out/job-1/"}}


class RunnerCallbacks:
    """The Lambda durable-callback APIs, answered by the local runner (its stand-in for the service).

    Only for the narrow race, where the helper completes its own callback; the runner exposes these
    operations as methods rather than as an HTTP endpoint a boto3 client could be pointed at.
    """

    def __init__(self) -> None:
        self.runner: DurableFunctionTestRunner | None = None
        self.calls: list[str] = []

    def send_durable_execution_callback_success(self, *, CallbackId: str, Result: bytes) -> None:
        assert self.runner is not None
        self.calls.append("success")
        self.runner.send_callback_success(CallbackId, Result)

    def send_durable_execution_callback_failure(self, *, CallbackId: str, Error: dict[str, Any]) -> None:
        assert self.runner is not None
        self.calls.append("failure")
        self.runner.send_callback_failure(CallbackId, ErrorObject.from_dict(Error))


@dataclass
class World:
    dynamodb: Any
    callbacks: RunnerCallbacks

    def record(self, key: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.dynamodb.get_item(
            TableName=TABLE, Key={"id": {"S": key}}, ConsistentRead=True
        ).get("Item")
        return item

    def put_completion(self, key: str, status: str, *, output: Any = None, error: str = "", cause: str = "") -> None:
        item = {"id": {"S": key}, "kind": {"S": "completion"}, "status": {"S": status}, "ttl": {"N": "1999999999"}}
        if output is not None:
            item["output"] = {"S": json.dumps(output)}
        if error:
            item["error"] = {"S": error}
        if cause:
            item["cause"] = {"S": cause}
        self.dynamodb.put_item(TableName=TABLE, Item=item)

    def runner(self, **wait_options: Any) -> DurableFunctionTestRunner:
        """A runner for a durable function that waits for one Translate job and reports what happened."""
        dynamodb, callbacks = self.dynamodb, self.callbacks

        @durable_execution
        def handler(event: dict[str, Any], context: DurableContext) -> dict[str, Any]:
            try:
                detail = durable_callback.wait_for_job(
                    context,
                    table_name=TABLE,
                    namespace=event.get("namespace", "translate"),
                    job_id=event["jobId"],
                    timeout=event.get("timeout", 3600),
                    dynamodb=dynamodb,
                    lambda_client=callbacks,
                    **wait_options,
                )
            except durable_callback.JobFailedError as failed:
                return {"failed": {"error": failed.error, "cause": failed.cause}}
            except durable_callback.JobTimedOutError:
                return {"timedOut": True}
            return {"detail": detail}

        runner = DurableFunctionTestRunner(handler=handler, poll_interval=0.05, region=REGION)
        callbacks.runner = runner
        return runner


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_callback_table(dynamodb, TABLE)
        yield World(dynamodb, RunnerCallbacks())


def resume(world: World, runner: DurableFunctionTestRunner, key: str, *, success: bool, **failure: str) -> None:
    """What CallbackPattern's resumer does for a ``backend = "durable"`` record (the contract)."""
    record = world.record(key)
    assert record is not None and record["backend"] == {"S": "durable"}
    callback_id = record["callbackId"]["S"]
    if success:
        runner.send_callback_success(callback_id, json.dumps(DETAIL).encode())
    else:
        error, cause = failure["error"], failure["cause"]
        data = json.dumps({"error": error, "cause": cause})
        runner.send_callback_failure(callback_id, ErrorObject(message=cause, type=error, data=data, stack_trace=None))
    world.dynamodb.delete_item(TableName=TABLE, Key={"id": {"S": key}})


def result_of(runner: DurableFunctionTestRunner, arn: str) -> dict[str, Any]:
    outcome = runner.wait_for_result(arn, timeout=30)
    assert outcome.status is InvocationStatus.SUCCEEDED, outcome.error
    assert outcome.result is not None
    parsed: dict[str, Any] = json.loads(outcome.result)
    return parsed


def run_async(runner: DurableFunctionTestRunner, **event: Any) -> str:
    arn: str = runner.run_async(input=json.dumps(event), execution_timeout=60)
    return arn


# --- parks and resumes ------------------------------------------------------------------------------------


def test_function_parks_with_a_token_record_and_resumes_with_the_event_detail(world: World) -> None:
    with world.runner() as runner:
        arn = run_async(runner, jobId="job-1")
        callback_id = runner.wait_for_callback(arn, timeout=30)

        record = world.record("translate#job-1")
        assert record is not None
        assert record["kind"] == {"S": "token"} and record["backend"] == {"S": "durable"}
        assert record["callbackId"] == {"S": callback_id}
        assert record["durableExecutionArn"] == {"S": arn}
        assert int(record["ttl"]["N"]) > 0 and record["createdAt"]["S"].endswith("Z")
        assert "callbackSecretHash" not in record

        resume(world, runner, "translate#job-1", success=True)
        assert result_of(runner, arn) == {"detail": DETAIL}
    assert world.record("translate#job-1") is None
    assert world.callbacks.calls == []  # the helper never resumed itself


def test_failure_without_error_data_keeps_the_cause_and_names_a_generic_error(world: World) -> None:
    """The SDK surfaces only ErrorMessage and ErrorData of a callback failure, never ErrorType."""
    with world.runner() as runner:
        arn = run_async(runner, jobId="job-4")
        runner.wait_for_callback(arn, timeout=30)
        record = world.record("translate#job-4")
        assert record is not None
        error = ErrorObject(message="unsupported language", type="Translate.FAILED", data=None, stack_trace=None)
        runner.send_callback_failure(record["callbackId"]["S"], error)
        assert result_of(runner, arn) == {"failed": {"error": "JobFailed", "cause": "unsupported language"}}


def test_job_failure_raises_job_failed_with_error_and_cause(world: World) -> None:
    with world.runner() as runner:
        arn = run_async(runner, jobId="job-2")
        runner.wait_for_callback(arn, timeout=30)
        resume(world, runner, "translate#job-2", success=False, error="Translate.FAILED", cause="unsupported language")
        assert result_of(runner, arn) == {"failed": {"error": "Translate.FAILED", "cause": "unsupported language"}}


def test_callback_secret_is_stored_only_as_its_hash(world: World) -> None:
    with world.runner(callback_secret="per-job-secret") as runner:
        arn = run_async(runner, jobId="job-3")
        runner.wait_for_callback(arn, timeout=30)
        record = world.record("translate#job-3")
        assert record is not None
        assert record["callbackSecretHash"] == {"S": hashlib.sha256(b"per-job-secret").hexdigest()}
        assert "per-job-secret" not in json.dumps(record)
        resume(world, runner, "translate#job-3", success=True)
        result_of(runner, arn)


def test_two_namespaces_with_the_same_job_id_wait_apart(world: World) -> None:
    with world.runner() as runner:
        first = run_async(runner, jobId="12345", namespace="translate")
        second = runner.run_async(
            input=json.dumps({"jobId": "12345", "namespace": "macie"}), execution_timeout=60, execution_name="second"
        )
        runner.wait_for_callback(first, timeout=30)
        runner.wait_for_callback(second, timeout=30)
        assert world.record("translate#12345") != world.record("macie#12345")
        resume(world, runner, "macie#12345", success=False, error="Macie.CANCELLED", cause="cancelled")
        assert result_of(runner, second)["failed"]["error"] == "Macie.CANCELLED"
        assert world.record("translate#12345") is not None  # the other waiter still waits
        resume(world, runner, "translate#12345", success=True)
        assert result_of(runner, first) == {"detail": DETAIL}


# --- the early-completion race -------------------------------------------------------------------------------


def test_completion_recorded_before_the_function_waits_proceeds_without_waiting(world: World) -> None:
    world.put_completion("translate#fast", "SUCCEEDED", output=DETAIL)
    with world.runner() as runner:
        outcome = runner.run(input=json.dumps({"jobId": "fast"}), execution_timeout=30)
    assert outcome.status is InvocationStatus.SUCCEEDED
    assert json.loads(outcome.result or "null") == {"detail": DETAIL}
    # never parked: only the look-up and consume steps ran, no wait_for_callback context and no callback
    assert [(op.operation_type.value, op.name) for op in outcome.operations] == [
        ("STEP", "wait for translate job: look for completion"),
        ("STEP", "wait for translate job: consume completion"),
    ]
    assert world.callbacks.calls == []
    assert world.record("translate#fast") is None  # the completion was consumed, no token left behind


def test_failed_completion_recorded_before_the_function_waits_raises_at_once(world: World) -> None:
    world.put_completion("translate#fast", "FAILED", error="Translate.FAILED", cause="bad input")
    with world.runner() as runner:
        outcome = runner.run(input=json.dumps({"jobId": "fast"}), execution_timeout=30)
    assert json.loads(outcome.result or "null") == {"failed": {"error": "Translate.FAILED", "cause": "bad input"}}
    assert world.record("translate#fast") is None


def _completion_lands_before_put_item(world: World, status: str, **fields: Any) -> Callable[..., None]:
    """A botocore hook: the resumer records the completion just before the helper's token write."""
    landed: list[bool] = []

    def hook(**_: Any) -> None:
        if not landed:
            landed.append(True)
            world.put_completion("translate#racy", status, **fields)

    world.dynamodb.meta.events.register("before-call.dynamodb.PutItem", hook)
    return hook


@pytest.mark.parametrize(
    ("status", "fields", "expected"),
    [
        ("SUCCEEDED", {"output": DETAIL}, {"detail": DETAIL}),
        (
            "FAILED",
            {"error": "Job.Lost", "cause": "worker died"},
            {"failed": {"error": "Job.Lost", "cause": "worker died"}},
        ),
    ],
)
def test_completion_landing_between_the_look_and_the_token_write_resumes_the_function(
    world: World, status: str, fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    hook = _completion_lands_before_put_item(world, status, **fields)
    try:
        with world.runner() as runner:
            outcome = runner.run(input=json.dumps({"jobId": "racy"}), execution_timeout=30)
    finally:
        world.dynamodb.meta.events.unregister("before-call.dynamodb.PutItem", hook)
    assert outcome.status is InvocationStatus.SUCCEEDED, outcome.error
    assert json.loads(outcome.result or "null") == expected
    assert world.callbacks.calls == ["success" if status == "SUCCEEDED" else "failure"]
    assert world.record("translate#racy") is None


# --- timeouts and misuse ----------------------------------------------------------------------------------------


def test_wait_times_out_and_removes_its_token(world: World) -> None:
    with world.runner() as runner:
        arn = run_async(runner, jobId="slow", timeout=1)
        assert result_of(runner, arn) == {"timedOut": True}
    assert world.record("translate#slow") is None


def test_second_waiter_for_the_same_job_fails_instead_of_stealing_the_token(world: World) -> None:
    world.dynamodb.put_item(
        TableName=TABLE,
        Item={
            "id": {"S": "translate#taken"},
            "kind": {"S": "token"},
            "backend": {"S": "stepfunctions"},
            "taskToken": {"S": "someone-elses"},
        },
    )
    puts: list[int] = []

    def count(**_: Any) -> None:
        puts.append(1)

    world.dynamodb.meta.events.register("before-call.dynamodb.PutItem", count)
    try:
        with world.runner() as runner:
            outcome = runner.run(input=json.dumps({"jobId": "taken"}), execution_timeout=60)
    finally:
        world.dynamodb.meta.events.unregister("before-call.dynamodb.PutItem", count)
    assert puts == [1]  # final at once: a taken job is not retried like a transient error
    assert outcome.status is InvocationStatus.FAILED
    assert outcome.error is not None and "already has a waiter" in (outcome.error.message or "")
    assert world.record("translate#taken") == {
        "id": {"S": "translate#taken"},
        "kind": {"S": "token"},
        "backend": {"S": "stepfunctions"},
        "taskToken": {"S": "someone-elses"},
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 0}, "timeout must be between 1 second"),
        ({"timeout": 10, "heartbeat_timeout": 10}, "heartbeat_timeout"),
        ({"namespace": "a#b"}, "namespace"),
        ({"job_id": ""}, "job_id"),
        ({"job_id": 1234567890123456}, "job_id must be a non-empty string"),
        ({"job_id": None}, "job_id must be a non-empty string"),
    ],
)
def test_bad_arguments_are_rejected_before_anything_is_stored(options: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"table_name": TABLE, "namespace": "translate", "job_id": "j", "timeout": 60, **options}
    with pytest.raises(ValueError, match=message):
        durable_callback.wait_for_job(object(), **arguments)


def test_the_helpers_aws_calls_are_bounded_against_a_hung_endpoint() -> None:
    """A DynamoDB that accepts connections and never answers: the helper's client gives up after its read timeout
    per attempt (botocore's default would wait 60 s per attempt, five times)."""
    from botocore.config import Config
    from botocore.exceptions import ReadTimeoutError

    from cdk_serverless_patterns.local.server import BlackHoleServer

    config = durable_callback.BOTO_CONFIG
    assert (config.connect_timeout, config.read_timeout) == (2, 5)
    with BlackHoleServer() as hung:
        quick = config.merge(Config(read_timeout=0.2, retries={"mode": "standard", "total_max_attempts": 2}))
        client = boto3.client(
            "dynamodb",
            endpoint_url=hung.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=quick,
        )
        with pytest.raises(ReadTimeoutError):
            client.get_item(TableName="t", Key={"id": {"S": "x"}})
        assert hung.connections >= 2  # every attempt of the bounded client reached the endpoint and timed out
