"""Shared setup of the emulator tests: a fresh in-process emulator per test, and small helpers
that run hand-written state machines in it (no CDK: these tests synthesize nothing)."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from cdk_serverless_patterns.local import Emulator, emulator

T = TypeVar("T")
ROLE = "arn:aws:iam::123456789012:role/states"


def wait_for(predicate: Callable[[], T | None], timeout: float = 30, what: str = "the condition") -> T:
    """The first truthy value of ``predicate`` (moto runs executions in worker threads)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} did not hold within {timeout} s")


class StepFunctions:
    """Creates and runs state machines in the emulator."""

    wait_for = staticmethod(wait_for)

    def __init__(self, aws: Emulator) -> None:
        self.sfn = aws.session.client("stepfunctions")
        self.sqs = aws.session.client("sqs")
        self._names = itertools.count()

    def create(self, definition: dict[str, Any], name: str | None = None) -> str:
        return str(
            self.sfn.create_state_machine(
                name=name or f"machine-{next(self._names)}", definition=json.dumps(definition), roleArn=ROLE
            )["stateMachineArn"]
        )

    def start(self, machine_arn: str, payload: Any = None) -> str:
        return str(
            self.sfn.start_execution(
                stateMachineArn=machine_arn, name=f"run-{next(self._names)}", input=json.dumps(payload or {})
            )["executionArn"]
        )

    def finish(self, execution_arn: str, timeout: float = 30) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            described = self.sfn.describe_execution(executionArn=execution_arn)
            return dict(described) if described["status"] != "RUNNING" else None

        return wait_for(done, timeout, f"{execution_arn} finishing")

    def run(self, definition: dict[str, Any], payload: Any = None) -> dict[str, Any]:
        """Creates the machine, runs it with ``payload`` and returns the finished execution."""
        return self.finish(self.start(self.create(definition), payload))

    def waiting_task(self, queue_url: str, **extra: Any) -> dict[str, Any]:
        """A ``.waitForTaskToken`` task that sends its token to ``queue_url``."""
        return {
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {"QueueUrl": queue_url, "MessageBody": {"token.$": "$$.Task.Token"}},
            "End": True,
            **extra,
        }

    def token(self, queue_url: str) -> str:
        """The next task token sent to ``queue_url``."""
        messages = wait_for(lambda: self.sqs.receive_message(QueueUrl=queue_url).get("Messages"), what="a task token")
        self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
        return str(json.loads(messages[0]["Body"])["token"])


@pytest.fixture()
def aws() -> Iterator[Emulator]:
    with emulator() as instance:
        yield instance


@pytest.fixture()
def states(aws: Emulator) -> StepFunctions:
    return StepFunctions(aws)


@pytest.fixture()
def queue(aws: Emulator) -> str:
    return str(aws.session.client("sqs").create_queue(QueueName="tokens")["QueueUrl"])
